//! A host that takes its children's exit statuses itself: it ignores SIGCHLD (the
//! kernel then reaps each child the moment it exits) or it reaps every child it has.
//! The pool must still notice a worker's death, replace it, say what it knows, and stop.
//! Both change process-wide state, so they live in a test binary of their own.

mod common;
use common::{pids, Events, Relay};
use roadrunner::{ErrorKind, EventKind, Server};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// SIGCHLD ignored while it lives; the default disposition again after.
struct SigchldIgnored;

impl SigchldIgnored {
    fn new() -> SigchldIgnored {
        // SAFETY: changes a disposition; no handler code is involved.
        assert_ne!(unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) }, libc::SIG_ERR);
        SigchldIgnored
    }
}

impl Drop for SigchldIgnored {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
}

/// A task that crashes its worker fails alone, the worker is replaced, and the pool
/// serves on; returns the crashed worker's pid and what was said of its end (a worker
/// error or a death, whichever side noticed first).
fn crash_one_and_serve_on(server: &Server, events: &Events) -> (u32, String) {
    let before = pids(server);
    let error = server.exec(b"!crash", b"").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    let end = events.wait_for("the crashed worker's end", |e| {
        matches!(e.kind, EventKind::WorkerDead | EventKind::WorkerError) && e.pid.is_some()
    });
    let crashed = end.pid.expect("a pid");
    assert!(before.contains(&crashed), "{crashed} was not one of {before:?}");
    assert!(
        common::wait_until(10, || {
            let now = pids(server);
            now.len() == 2 && !now.contains(&crashed)
        }),
        "not replaced: {:?}",
        pids(server)
    );
    for i in 0..20 {
        let body = format!("task {i}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    (crashed, end.message.unwrap_or_default())
}

fn a_host_that_ignores_sigchld_keeps_a_working_pool(relay: Relay) {
    let _ignored = SigchldIgnored::new();
    let (address, _dir) = common::relay(relay);
    let server = common::started(&address, "echo", 2);
    let events = Events::listen(&server);
    let (_, message) = crash_one_and_serve_on(&server, &events);
    assert!(message.contains("taken by the host"), "the kernel reaped it, yet: {message}");
    // Killed from outside while idle: noticed and replaced too.
    let victim = pids(&server)[0];
    // SAFETY: our own child, alive (it is in the pool).
    assert_eq!(unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) }, 0);
    assert!(common::wait_until(10, || {
        let now = pids(&server);
        now.len() == 2 && !now.contains(&victim)
    }));
    assert_eq!(server.exec(b"", b"after").unwrap().body(), b"after");
    drop(server);
    // std panics when it cannot reap the child of a failed exec, which is always the
    // case here: that must be a spawn error, and spawning must go on working after it.
    let mut missing = common::config(&address, "echo", 1);
    missing.command = "/nonexistent/rr-worker".into();
    let error = Server::new(missing).unwrap().start().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Spawn, "{error}");
    // A worker that exits at once is often reaped by the kernel before its pidfd can be
    // opened: taken for gone, it fails its spawn like any worker that exits early.
    for _ in 0..10 {
        let mut instant_exit = common::config(&address, "echo", 1);
        instant_exit.command = "true".into();
        let error = Server::new(instant_exit).unwrap().start().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Spawn, "{error}");
    }
    let again = common::started(&address, "echo", 1);
    assert_eq!(again.exec(b"", b"spawning still works").unwrap().body(), b"spawning still works");
}

fn a_host_that_reaps_every_child_keeps_a_working_pool(relay: Relay) {
    let (address, _dir) = common::relay(relay);
    let server = common::started(&address, "echo", 2);
    let events = Events::listen(&server);
    // Reaps whatever child exits, until it has none left (after the server is gone).
    let reaped = Arc::new(AtomicUsize::new(0));
    let reaper = {
        let reaped = reaped.clone();
        std::thread::spawn(move || loop {
            let mut status = 0;
            // SAFETY: plain syscall with a pointer to a live c_int.
            if unsafe { libc::waitpid(-1, &mut status, 0) } > 0 {
                reaped.fetch_add(1, Ordering::SeqCst);
            } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return;
            }
        })
    };
    let _ = crash_one_and_serve_on(&server, &events);
    drop(server);
    // The reaper ends when no child is left: the pool stopped every worker it had.
    reaper.join().unwrap();
    // Who reaped which worker is a race (this thread usually wins it: it waits in
    // waitpid already); what is asserted is that the pool works and stops either way.
    let dead = events.of(EventKind::WorkerDead).len() + events.of(EventKind::WorkerError).len();
    assert!(dead >= 1, "the crash was not reported");
    println!("the host reaped {} of the workers", reaped.load(Ordering::SeqCst));
}

on_every_relay!(a_host_that_ignores_sigchld_keeps_a_working_pool, a_host_that_reaps_every_child_keeps_a_working_pool);
