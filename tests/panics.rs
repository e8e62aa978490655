//! A panic inside the library (a bug) never hangs or crashes the host: tasks, stops and
//! the library's threads end cleanly, and the pool keeps serving. The panics are
//! injected at the library's fault points, built in only with the `fault-injection`
//! feature (`cargo test --features fault-injection --test panics`; `make test` runs it).

mod common;
use common::{pids, started, started_with, Events};
use roadrunner::fault::{arm, fired, FaultPoint};
use roadrunner::{ErrorKind, EventKind, Server};
use std::sync::Arc;
use std::time::Duration;

/// Stops `server` on another thread and waits up to `seconds` for the stop to return.
fn stop_returns_within(server: Arc<Server>, seconds: u64) {
    let (done, stopped) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let result = server.stop();
        let _ = done.send(result);
    });
    let result = stopped.recv_timeout(Duration::from_secs(seconds)).expect("the stop never returned");
    result.expect("the stop succeeds");
}

/// A task that panics after it took a worker (counted busy) gives the worker up: the
/// worker is replaced, and a stop does not wait for that task forever.
#[test]
fn a_panic_in_a_task_does_not_leave_the_worker_busy() {
    common::isolated(|| {
        let server = Arc::new(started("pipes", "echo", 1));
        let events = Events::listen(&server);
        let first = pids(&server)[0];
        let before = fired(FaultPoint::TaskAfterAllocate);
        arm(FaultPoint::TaskAfterAllocate, 1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.exec(b"", b"boom")));
        assert!(panicked.is_err(), "the injected panic reaches the caller (the C layer turns it into a status)");
        assert_eq!(fired(FaultPoint::TaskAfterAllocate), before + 1);
        let error = events.wait_for("worker error", |e| e.kind == EventKind::WorkerError && e.pid == Some(first));
        assert!(error.message.unwrap().contains("a panic in the library"));
        assert_eq!(server.exec(b"", b"after").unwrap().body(), b"after");
        assert_ne!(pids(&server), vec![first]);
        assert_eq!(server.stats().unwrap().workers, 1);
        stop_returns_within(server, 20);
    });
}

/// A panic in the supervisor thread is reported as a pool error; the server rebuilds
/// the pool, and the old pool's workers are still stopped.
#[test]
fn a_panic_in_the_supervisor_is_a_pool_error_and_the_pool_is_rebuilt() {
    common::isolated(|| {
        let server = Arc::new(started("pipes", "echo", 2));
        let events = Events::listen(&server);
        let before = fired(FaultPoint::Supervisor);
        arm(FaultPoint::Supervisor, 1);
        // A worker that asks to be replaced sends the supervisor an order.
        let _ = server.exec(b"!stop", b"");
        let error = events.wait_for("pool error", |e| e.kind == EventKind::PoolError);
        assert_eq!(fired(FaultPoint::Supervisor), before + 1);
        let message = error.message.unwrap();
        assert!(message.contains("supervisor thread panicked"), "{message}");
        assert!(message.contains("fault injected at Supervisor"), "{message}");
        assert!(common::wait_until(20, || server.exec(b"", b"rebuilt").is_ok_and(|a| a.body() == b"rebuilt")));
        events.wait_for("the new pool", |e| e.kind == EventKind::PoolConstruct);
        assert!(common::wait_until(10, || pids(&server).len() == 2));
        stop_returns_within(server, 20);
    });
}

/// A watcher thread that panics still reaps its worker, and waits for the exit without
/// holding the lock that a kill takes: a worker that ignores the stop command and
/// SIGTERM is still killed by the stop, and reaped.
#[test]
fn a_panic_in_a_watcher_neither_leaves_a_zombie_nor_blocks_a_kill() {
    common::isolated(|| {
        let before = fired(FaultPoint::Watcher);
        arm(FaultPoint::Watcher, 1);
        let server = Arc::new(started_with("pipes", "stubborn", 1, |c| c.destroy_timeout = Duration::from_millis(300)));
        // The watcher runs on a thread of its own: it passes the point soon, not surely yet.
        assert!(
            common::wait_until(10, || fired(FaultPoint::Watcher) == before + 1),
            "the watcher's fault point was not passed"
        );
        // The watcher is gone, but the worker's stderr stays open: it can still write
        // there without dying of SIGPIPE.
        let events = Events::listen(&server);
        assert_eq!(server.exec(b"!stderr:still here", b"up").unwrap().body(), b"up");
        assert_eq!(server.exec(b"", b"and alive").unwrap().body(), b"and alive");
        assert!(events.of(EventKind::WorkerDead).is_empty(), "{:?}", events.all());
        stop_returns_within(server, 20);
        // `isolated` checks that no child, zombie or alive, is left.
    });
}

/// Without an armed fault point nothing panics (the feature alone changes nothing).
#[test]
fn unarmed_fault_points_do_nothing() {
    common::isolated(|| {
        let server = started("pipes", "echo", 2);
        for i in 0..50 {
            let body = format!("task {i}");
            assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
        }
        assert_eq!(server.exec(b"!error", b"e").unwrap_err().kind(), ErrorKind::JobError);
    });
}
