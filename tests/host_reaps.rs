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
/// serves on; returns the crashed worker's pid.
fn crash_one_and_serve_on(server: &Server, events: &Events) -> u32 {
    let before = pids(server);
    let error = server.exec(b"!crash", b"").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    let dead = events.wait_for("the crashed worker's death", |e| e.kind == EventKind::WorkerDead);
    let crashed = dead.pid.expect("a pid");
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
    crashed
}

fn a_host_that_ignores_sigchld_keeps_a_working_pool(relay: Relay) {
    let _ignored = SigchldIgnored::new();
    let (address, _dir) = common::relay(relay);
    let server = common::started(&address, "echo", 2);
    let events = Events::listen(&server);
    let crashed = crash_one_and_serve_on(&server, &events);
    let dead = events.of(EventKind::WorkerDead).into_iter().find(|e| e.pid == Some(crashed)).expect("its event");
    let message = dead.message.unwrap_or_default();
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
    crash_one_and_serve_on(&server, &events);
    drop(server);
    // The reaper ends when no child is left: the pool stopped every worker it had.
    reaper.join().unwrap();
    let dead = events.of(EventKind::WorkerDead).len();
    assert!(dead >= 1, "the crash was not reported");
    println!("the host reaped {} of the workers", reaped.load(Ordering::SeqCst));
}

on_every_relay!(a_host_that_ignores_sigchld_keeps_a_working_pool, a_host_that_reaps_every_child_keeps_a_working_pool);
