//! Helpers shared by the integration tests: the test worker, relays, event capture,
//! waiting for conditions, and the check that no child process is left.
#![allow(dead_code)]

use roadrunner::{Config, Event, EventKind, Server};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The test worker program built with the crate.
pub fn worker_path() -> &'static str {
    env!("CARGO_BIN_EXE_rr-test-worker")
}

/// A worker command line: the test worker with `args`.
pub fn worker(args: &str) -> String {
    format!("'{}' {args}", worker_path())
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` alone in this process (tests check the process's children, so they
/// cannot overlap), then asserts that it left no child process behind.
pub fn isolated(test: impl FnOnce()) {
    // A test that failed under the lock poisoned it; the next one may still run.
    let _guard: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    assert_no_children();
    test();
    assert_no_children();
}

/// The relays every behaviour is tested on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    Pipes,
    Tcp,
    Unix,
}

/// A relay setting for `kind`; keep the returned directory alive while it is used.
pub fn relay(kind: Relay) -> (String, Option<tempfile::TempDir>) {
    match kind {
        Relay::Pipes => ("pipes".into(), None),
        Relay::Tcp => ("tcp://127.0.0.1:0".into(), None),
        Relay::Unix => {
            let dir = tempfile::tempdir().expect("temp dir");
            (format!("unix://{}", dir.path().join("rr.sock").display()), Some(dir))
        }
    }
}

/// A config for the test worker with `args`, on `relay`, with `workers` workers and
/// timeouts short enough for tests.
pub fn config(relay: &str, args: &str, workers: u64) -> Config {
    let mut config = Config::new(worker(args), relay);
    config.num_workers = workers;
    config.allocate_timeout = Duration::from_secs(20);
    config.destroy_timeout = Duration::from_secs(5);
    config.relay_timeout = Duration::from_secs(10);
    config
}

/// Makes `config` speak protocol V2, with the test worker speaking it too.
pub fn v2(config: &mut Config) {
    config.protocol = roadrunner::Protocol::V2;
    config.env.push(("RR_TEST_PROTOCOL".into(), "2".into()));
}

/// A started server of the test worker.
pub fn started(relay: &str, args: &str, workers: u64) -> Server {
    started_with(relay, args, workers, |_| {})
}

/// A started server of the test worker, with `change` applied to the test config.
pub fn started_with(relay: &str, args: &str, workers: u64, change: impl FnOnce(&mut Config)) -> Server {
    let mut config = config(relay, args, workers);
    change(&mut config);
    let server = Server::new(config).expect("valid config");
    server.start().expect("server starts");
    server
}

/// Processes whose parent is this process, zombies included.
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: the fields follow the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        let ppid = rest.split_whitespace().nth(1).and_then(|f| f.parse::<u32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

/// Fails if this process has any child process, alive or zombie.
pub fn assert_no_children() {
    let left = children();
    assert!(left.is_empty(), "child processes left behind: {left:?}");
}

/// Waits up to `seconds` for `condition`; returns whether it became true.
pub fn wait_until(seconds: u64, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Collects a server's events.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// Starts collecting the events of `server`.
    pub fn listen(server: &Server) -> Events {
        let events = Events::default();
        let sink = events.0.clone();
        server.listen(Some(Box::new(move |event: &Event| sink.lock().unwrap().push(event.clone())))).unwrap();
        events
    }

    /// Everything collected so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The events of `kind` collected so far.
    pub fn of(&self, kind: EventKind) -> Vec<Event> {
        self.0.lock().unwrap().iter().filter(|e| e.kind == kind).cloned().collect()
    }

    /// Waits for an event matching `predicate`.
    pub fn wait_for(&self, what: &str, predicate: impl Fn(&Event) -> bool) -> Event {
        let mut found = None;
        let seen = wait_until(20, || {
            found = self.0.lock().unwrap().iter().find(|e| predicate(e)).cloned();
            found.is_some()
        });
        assert!(seen, "no event {what} in {:?}", self.all());
        found.unwrap()
    }
}

/// The pids of a server's current workers, sorted.
pub fn pids(server: &Server) -> Vec<u32> {
    let mut pids: Vec<u32> = server.workers().expect("workers").iter().map(|w| w.pid).collect();
    pids.sort();
    pids
}

/// The pid of the worker that runs a `!pid` task.
pub fn exec_pid(server: &Server) -> u32 {
    let answer = server.exec(b"!pid", b"").expect("pid task");
    String::from_utf8_lossy(answer.body()).parse().expect("a pid")
}

/// Kills the child that a test worker forked for `!orphan` (its pid is in the worker's
/// stderr, which the error quotes): it is not ours to reap, but must not outlive the test.
pub fn kill_orphan(error: &roadrunner::Error) {
    let orphan: i32 = error
        .message()
        .split("orphan ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("the worker's stderr names its child: {error}"));
    // SAFETY: signalling the child the worker forked, named by the worker itself.
    unsafe { libc::kill(orphan, libc::SIGKILL) };
}

/// Generates one test per relay kind for a function `fn(Relay)`.
#[macro_export]
macro_rules! on_every_relay {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn pipes() { common::isolated(|| super::$name(common::Relay::Pipes)) }
            #[test]
            fn tcp() { common::isolated(|| super::$name(common::Relay::Tcp)) }
            #[test]
            fn unix() { common::isolated(|| super::$name(common::Relay::Unix)) }
        }
    )*};
}
