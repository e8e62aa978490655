//! A host that forks while it has a server: the child must leave the parent's server
//! alone (it shares its pipes to the workers but has none of its threads), and may make
//! a server of its own.

mod common;
use common::{pids, Events, Relay};
use roadrunner::{ErrorKind, EventKind, Server};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Runs `check` in a child made by fork() and returns what it reported: `Ok` or the
/// failure it described (a panic included). The child ends with `_exit`, so nothing of
/// the parent's (exit handlers, buffered output, the test harness) runs twice.
fn in_forked_child(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe");
    // SAFETY: both are new descriptors that nothing else owns.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs `check` (which uses only what the test gave it) and `_exit`s.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        drop(read_end);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("the check panicked in the child".into()));
        let report = match &outcome {
            Ok(()) => "ok".to_string(),
            Err(why) => why.clone(),
        };
        let mut pipe = std::fs::File::from(write_end);
        let _ = std::io::Write::write_all(&mut pipe, report.as_bytes());
        drop(pipe);
        // SAFETY: ends the child now, as said above.
        unsafe { libc::_exit(0) };
    }
    drop(write_end);
    // The report ends when the child closes its end (by exiting); a child that hangs is
    // killed after a deadline rather than holding up the suite.
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let reader = std::thread::spawn(move || {
        let mut report = String::new();
        let _ = std::fs::File::from(read_end).read_to_string(&mut report);
        let _ = sender.send(report);
    });
    let report = receiver.recv_timeout(Duration::from_secs(30));
    if report.is_err() {
        // SAFETY: our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: our own child, waited for once.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    reader.join().unwrap();
    let report = report.map_err(|_| "the child hung (killed after 30 s)".to_string())?;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child ended with status {status:#x}");
    if report == "ok" {
        Ok(())
    } else {
        Err(report)
    }
}

/// `result` must be the state error that names fork().
fn refused<T>(what: &str, result: roadrunner::Result<T>) -> Result<(), String> {
    match result {
        Ok(_) => Err(format!("{what}: succeeded in the forked child")),
        Err(e) if e.kind() == ErrorKind::State && e.message().contains("fork()") => Ok(()),
        Err(e) => Err(format!("{what}: {:?} {}", e.kind(), e.message())),
    }
}

fn a_forked_child_is_refused_and_the_parent_keeps_its_workers(relay: Relay) {
    let (address, _dir) = common::relay(relay);
    let server = common::started(&address, "echo", 2);
    let events = Events::listen(&server);
    let before = pids(&server);
    assert_eq!(server.exec(b"", b"before").unwrap().body(), b"before");

    let child = in_forked_child(|| {
        refused("exec", server.exec(b"", b"from the child"))?;
        refused("stats", server.stats())?;
        refused("workers", server.workers())?;
        refused("reset", server.reset())?;
        refused("reconfigure", server.reconfigure(server.config()))?;
        refused("listen", server.listen(None))?;
        refused("start", server.start())?;
        refused("stop", server.stop())?;
        server.flush_events();
        // Dropping is done by the caller below; here it must not stop anything.
        Ok(())
    });
    assert_eq!(child, Ok(()));
    let child = in_forked_child(|| {
        // SAFETY: the child's copy of `server`, dropped once, in the child only; the
        // parent's copy is untouched.
        drop(unsafe { std::ptr::read(&server) });
        Ok(())
    });
    assert_eq!(child, Ok(()), "dropping the server in a forked child");

    // The parent's pool never noticed: same workers, every task answered by them.
    assert_eq!(pids(&server), before, "the parent's workers changed");
    for i in 0..20 {
        let body = format!("after {i}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    server.flush_events();
    let failures: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::WorkerDestruct
                    | EventKind::WorkerKill
                    | EventKind::WorkerError
                    | EventKind::WorkerDead
                    | EventKind::PoolError
            )
        })
        .collect();
    assert!(failures.is_empty(), "the parent's workers were disturbed: {failures:?}");
    let stats = server.stats().unwrap();
    assert_eq!((stats.worker_errors, stats.retired_died, stats.retired_failed), (0, 0, 0), "{stats:?}");
}

fn a_forked_child_can_make_a_server_of_its_own(relay: Relay) {
    let (address, _dir) = common::relay(relay);
    let server = common::started(&address, "echo", 1);
    let parents = pids(&server);
    let child = in_forked_child(|| {
        // On another address for the socket relays: the parent's listener is the parent's.
        let (address, _dir) = common::relay(relay);
        let own = Server::new(common::config(&address, "echo", 1)).map_err(|e| e.message().to_string())?;
        own.start().map_err(|e| format!("start: {}", e.message()))?;
        let answer = own.exec(b"", b"child's own").map_err(|e| format!("exec: {}", e.message()))?;
        if answer.body() != b"child's own" {
            return Err(format!("wrong answer {:?}", answer.body()));
        }
        let workers = pids(&own);
        if workers.iter().any(|pid| parents.contains(pid)) {
            return Err(format!("the child's server uses the parent's workers {workers:?}"));
        }
        drop(own);
        let left = common::children();
        if !left.is_empty() {
            return Err(format!("the child's server left processes behind: {left:?}"));
        }
        Ok(())
    });
    assert_eq!(child, Ok(()));
    assert_eq!(pids(&server), parents);
    assert_eq!(server.exec(b"", b"still mine").unwrap().body(), b"still mine");
}

on_every_relay!(
    a_forked_child_is_refused_and_the_parent_keeps_its_workers,
    a_forked_child_can_make_a_server_of_its_own
);
