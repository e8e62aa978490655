//! Workers that fail mid-task: each failure is a clear worker error, the worker is
//! replaced, and the pool keeps serving.

mod common;
use common::{exec_pid, pids, relay, started, Events, Relay};
use roadrunner::{ErrorKind, EventKind, Server};
use std::time::Duration;

/// Runs `context` (a failing command), checks the error, then checks the pool recovers.
fn fails_then_recovers(kind: Relay, context: &[u8], expected: &[&str]) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 2);
    let events = Events::listen(&server);
    let before = pids(&server);
    let error = server.exec(context, b"payload").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    let pid = error.pid().expect("the error names the worker");
    assert!(before.contains(&pid));
    assert!(error.message().contains(&format!("worker {pid}")), "{error}");
    for words in expected {
        assert!(error.message().contains(words), "expected {words:?} in: {error}");
    }
    events.wait_for("worker error", |e| e.kind == EventKind::WorkerError && e.pid == Some(pid));
    assert!(
        common::wait_until(10, || {
            let now = pids(&server);
            now.len() == 2 && !now.contains(&pid)
        }),
        "the failed worker must be replaced: {:?}",
        pids(&server)
    );
    for i in 0..20 {
        let body = format!("after {i}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
}

fn crash_mid_task(kind: Relay) {
    fails_then_recovers(kind, b"!crash", &["exited with status 3", "crash requested"]);
}

fn stray_stdout_mid_task(kind: Relay) {
    fails_then_recovers(kind, b"!stdout", &["not a frame", "junk junk", "was killed by the pool"]);
}

fn huge_declared_frame(kind: Relay) {
    fails_then_recovers(kind, b"!huge", &["1099511627776 bytes", "max_frame_bytes"]);
}

fn truncated_frame(kind: Relay) {
    fails_then_recovers(kind, b"!truncate", &["middle of a frame", "10 of 100 bytes"]);
}

fn first_frame_without_control(kind: Relay) {
    fails_then_recovers(kind, b"!nocontrol", &["lacks the CONTROL flag"]);
}

on_every_relay!(
    crash_mid_task,
    stray_stdout_mid_task,
    huge_declared_frame,
    truncated_frame,
    first_frame_without_control
);

fn frame_limit_is_configurable(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = common::started_with(&relay, "echo", 1, |c| c.max_frame_bytes = 1000);
    assert_eq!(server.exec(b"", &[5u8; 1000]).unwrap().body().len(), 1000);
    let error = server.exec(b"", &[5u8; 1001]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError);
    assert!(error.message().contains("1001 bytes, above the limit of 1000"), "{error}");
    assert!(common::wait_until(10, || pids(&server).len() == 1));
    assert_eq!(server.exec(b"", b"ok").unwrap().body(), b"ok");
}

fn idle_worker_death_is_noticed_at_once(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 3);
    let events = Events::listen(&server);
    let victim = pids(&server)[1];
    // SAFETY: the pid belongs to our own live child (listed as a member).
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    // No task is run: the watcher alone must notice and the pool replace it.
    let dead = events.wait_for("worker dead", |e| e.kind == EventKind::WorkerDead && e.pid == Some(victim));
    assert!(dead.message.unwrap().contains("signal 9"));
    assert!(common::wait_until(10, || {
        let now = pids(&server);
        now.len() == 3 && !now.contains(&victim)
    }));
    for _ in 0..10 {
        assert_ne!(exec_pid(&server), victim);
    }
}

fn worker_that_exits_after_answering_is_replaced(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let events = Events::listen(&server);
    let first = pids(&server)[0];
    assert_eq!(server.exec(b"!exit", b"bye").unwrap().body(), b"bye");
    events.wait_for("worker dead", |e| e.kind == EventKind::WorkerDead && e.pid == Some(first));
    assert_ne!(exec_pid(&server), first);
}

on_every_relay!(
    frame_limit_is_configurable,
    idle_worker_death_is_noticed_at_once,
    worker_that_exits_after_answering_is_replaced
);

#[test]
fn exec_ttl_kills_a_task_that_runs_too_long() {
    common::isolated(|| {
        let server = common::started_with("pipes", "echo", 1, |c| c.exec_ttl = Duration::from_millis(200));
        let started_at = std::time::Instant::now();
        let error = server.exec(b"!hang", b"").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ExecTtl);
        assert!(started_at.elapsed() < Duration::from_secs(5));
        assert!(error.message().contains("exec_ttl (200 ms)"), "{error}");
        assert_eq!(server.exec(b"", b"fine").unwrap().body(), b"fine");
    });
}

#[test]
fn stderr_lines_become_events() {
    common::isolated(|| {
        let server = started("pipes", "echo", 1);
        let events = Events::listen(&server);
        let pid = pids(&server)[0];
        server.exec(b"!stderr:hello from the worker", b"").unwrap();
        let line = events.wait_for("stderr line", |e| e.kind == EventKind::WorkerStderr);
        assert_eq!(line.pid, Some(pid));
        assert_eq!(line.message.as_deref(), Some("hello from the worker"));
    });
}

/// A worker that died while idle never costs a task, whether the pool has noticed the
/// death yet or not: a task that cannot reach it runs on another worker. (A worker
/// killed while the task is on its way may have read it: that task fails, as it must,
/// since nobody can tell whether it ran.)
fn task_for_a_just_killed_worker_is_rerouted(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    for round in 0..20 {
        let victim = pids(&server)[0];
        // SAFETY: a live child of ours, not yet reaped (the pool reaps it).
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        assert!(common::wait_until(10, || is_dead(victim)));
        let body = format!("round {round}");
        let answer = server.exec(b"", body.as_bytes()).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(answer.body(), body.as_bytes());
        assert!(common::wait_until(10, || {
            let now = pids(&server);
            now.len() == 1 && now[0] != victim
        }));
    }
}

#[test]
fn task_for_a_just_killed_worker_is_rerouted_over_pipes() {
    common::isolated(|| task_for_a_just_killed_worker_is_rerouted(Relay::Pipes));
}

#[test]
fn task_for_a_just_killed_worker_is_rerouted_over_unix_sockets() {
    common::isolated(|| task_for_a_just_killed_worker_is_rerouted(Relay::Unix));
}

#[test]
fn exec_ttl_also_bounds_a_write_to_a_worker_that_stopped_reading() {
    common::isolated(|| {
        let server = common::started_with("pipes", "echo", 1, |c| c.exec_ttl = Duration::from_millis(300));
        assert_eq!(server.exec(b"!deaf", b"last one").unwrap().body(), b"last one");
        // 4 MiB cannot fit the pipe: the write itself must give up at the deadline.
        let started_at = std::time::Instant::now();
        let error = server.exec(b"", &vec![7u8; 4 << 20]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ExecTtl, "{error}");
        assert!(started_at.elapsed() < Duration::from_secs(5));
        assert_eq!(server.exec(b"", b"next").unwrap().body(), b"next");
    });
}

#[test]
fn stop_is_not_held_up_by_a_write_to_a_worker_that_stopped_reading() {
    common::isolated(|| {
        let mut config = common::config("pipes", "echo", 1);
        config.destroy_timeout = Duration::from_millis(300);
        let server = std::sync::Arc::new(Server::new(config).unwrap());
        server.start().unwrap();
        server.exec(b"!deaf", b"").unwrap();
        let blocked = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"", &vec![7u8; 4 << 20]))
        };
        assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
        let started_at = std::time::Instant::now();
        server.stop().unwrap();
        assert!(started_at.elapsed() < Duration::from_secs(5));
        // The worker never took the task, and there is no other worker to run it on now.
        assert_eq!(blocked.join().unwrap().unwrap_err().kind(), ErrorKind::State);
    });
}

/// Whether `pid` has ended: a zombie, or gone.
fn is_dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A worker that started a child of its own, which holds the worker's relay open (as a
/// shell command a PHP worker starts holds its stdout), and then died mid-task: the
/// task ends at once, not when the child lets go, with a worker error naming the
/// worker's exit and its stderr; the worker is replaced, a stop does not wait for the
/// child, and nothing of the dead worker's relay stays open.
fn a_child_holding_the_relay_does_not_keep_a_dead_workers_task_waiting(kind: Relay) {
    let fds_before = open_fds();
    let (relay, dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let first = pids(&server)[0];
    let started_at = std::time::Instant::now();
    // The child lives 60 s: before the fix, the task waited for it that long.
    let error = server.exec(b"!orphan:60", b"").unwrap_err();
    let took = started_at.elapsed();
    common::kill_orphan(&error);
    assert!(took < Duration::from_secs(20), "the task waited {took:?} for the worker's child");
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    assert!(error.message().contains(&format!("worker {first}")), "{error}");
    assert!(error.message().contains("exited with status 5"), "{error}");
    assert!(common::wait_until(10, || {
        let now = pids(&server);
        now.len() == 1 && now[0] != first
    }));
    assert_eq!(server.exec(b"", b"after").unwrap().body(), b"after");
    let stopping = std::time::Instant::now();
    drop(server);
    assert!(stopping.elapsed() < Duration::from_secs(20), "the stop took {:?}", stopping.elapsed());
    drop(dir);
    assert_eq!(open_fds(), fds_before, "a descriptor of the dead worker's relay (or another) stayed open");
}

/// A worker that writes two answers to one task: the task gets the first; a second one
/// that came with it, or that arrived before the next task is sent, reaches no other
/// task: the worker is replaced as broken, with an event that quotes what it wrote.
/// (One that arrives after the next task was sent cannot be told from its answer.)
fn a_second_answer_found_before_the_next_task_reaches_no_task(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let events = Events::listen(&server);
    // Both answers in one write: seen with the answer, the worker is retired at once.
    let first = pids(&server)[0];
    assert_eq!(server.exec(b"!twice", b"one").unwrap().body(), b"one");
    let broken = events.wait_for("worker error", |e| e.kind == EventKind::WorkerError && e.pid == Some(first));
    assert!(broken.message.as_deref().unwrap_or("").contains("after its answer"), "{broken:?}");
    for i in 0..5 {
        let body = format!("task {i}");
        let answer = server.exec(b"", body.as_bytes()).unwrap();
        assert_eq!((answer.context(), answer.body()), (&b""[..], body.as_bytes()), "a stale answer was given");
    }
    // The second answer written after the first was read: it waits on the relay, and
    // is found before the next task is sent there.
    assert!(common::wait_until(10, || pids(&server).len() == 1 && pids(&server)[0] != first));
    let second = pids(&server)[0];
    assert_eq!(server.exec(b"!twice-later:50", b"two").unwrap().body(), b"two");
    events.wait_for("the second answer", |e| {
        e.kind == EventKind::WorkerStderr
            && e.pid == Some(second)
            && e.message.as_deref() == Some("second answer written")
    });
    let answer = server.exec(b"", b"three").unwrap();
    assert_eq!((answer.context(), answer.body()), (&b""[..], &b"three"[..]), "the stale answer was given");
    let broken = events.wait_for("worker error", |e| e.kind == EventKind::WorkerError && e.pid == Some(second));
    assert!(broken.message.as_deref().unwrap_or("").contains("stale"), "{broken:?}");
    assert_ne!(exec_pid(&server), second);
}

/// Every worker that ends without the pool asking it to gets exactly one WorkerDead
/// event, wherever the pool finds it gone: its watcher, a task that takes it from the
/// idle list, or the return of the task it answered last.
fn every_worker_that_dies_gets_exactly_one_dead_event(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let events = Events::listen(&server);
    let mut dead = Vec::new();
    for round in 0..30 {
        assert!(common::wait_until(10, || pids(&server).len() == 1));
        let victim = pids(&server)[0];
        if round % 2 == 0 {
            // SAFETY: a live child of ours (listed as a member).
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            // Dead, so that the task below cannot reach it (a worker killed while a
            // task is on its way may have read it: that task would fail, as it must).
            assert!(common::wait_until(10, || is_dead(victim)));
        } else {
            server.exec(b"!exit", b"").unwrap();
        }
        dead.push(victim);
        // At once: the task may find the dead worker before its watcher reports it.
        let body = format!("round {round}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    for pid in &dead {
        events.wait_for("worker dead", |e| e.kind == EventKind::WorkerDead && e.pid == Some(*pid));
    }
    server.stop().unwrap();
    server.flush_events();
    for pid in dead {
        let count = events.of(EventKind::WorkerDead).iter().filter(|e| e.pid == Some(pid)).count();
        assert_eq!(count, 1, "worker {pid} got {count} WorkerDead events");
    }
}

on_every_relay!(
    a_child_holding_the_relay_does_not_keep_a_dead_workers_task_waiting,
    a_second_answer_found_before_the_next_task_reaches_no_task,
    every_worker_that_dies_gets_exactly_one_dead_event
);
