//! The server's life: start, stop, reconfigure, reset, failure, and the events of each.

mod common;
use common::{exec_pid, pids, relay, started, Events, Relay};
use roadrunner::{Config, ErrorKind, EventKind, Server, WorkerState};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn state_errors_before_start_and_after_stop() {
    common::isolated(|| {
        let server = Server::new(common::config("pipes", "echo", 2)).unwrap();
        assert_eq!(server.exec(b"", b"").unwrap_err().kind(), ErrorKind::State);
        assert_eq!(server.workers().unwrap_err().kind(), ErrorKind::State);
        assert_eq!(server.stop().unwrap_err().kind(), ErrorKind::State);
        // Only a running server is reconfigured or reset; nothing starts.
        assert_eq!(server.reconfigure(server.config()).unwrap_err().kind(), ErrorKind::State);
        assert_eq!(server.reset().unwrap_err().kind(), ErrorKind::State);
        common::assert_no_children();
        server.start().unwrap();
        assert_eq!(server.start().unwrap_err().kind(), ErrorKind::State);
        server.stop().unwrap();
        common::assert_no_children();
        let error = server.exec(b"", b"").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::State);
        assert!(error.message().contains("not started"), "{error}");
        let error = server.reset().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::State);
        assert!(error.message().contains("not started"), "{error}");
        assert_eq!(server.reconfigure(server.config()).unwrap_err().kind(), ErrorKind::State);
        common::assert_no_children();
        // A stopped server can be started again.
        server.start().unwrap();
        assert_eq!(server.exec(b"", b"again").unwrap().body(), b"again");
    });
}

#[test]
fn lifecycle_events_have_their_numbers() {
    common::isolated(|| {
        let server = Server::new(common::config("pipes", "echo", 2)).unwrap();
        let events = Events::listen(&server);
        server.start().unwrap();
        let workers = pids(&server);
        server.stop().unwrap();
        server.flush_events();
        let kinds: Vec<i32> =
            events.all().iter().filter(|e| e.kind != EventKind::WorkerStderr).map(|e| e.kind.code()).collect();
        assert_eq!(&kinds[..2], &[100, 100], "{kinds:?}");
        assert_eq!(&kinds[2..4], &[203, 200], "{kinds:?}");
        assert_eq!(&kinds[4..6], &[101, 101], "{kinds:?}");
        assert_eq!(&kinds[6..], &[204, 201], "{kinds:?}");
        let constructed: HashSet<u32> = events.of(EventKind::WorkerConstruct).iter().filter_map(|e| e.pid).collect();
        let destructed: HashSet<u32> = events.of(EventKind::WorkerDestruct).iter().filter_map(|e| e.pid).collect();
        assert_eq!(constructed, workers.iter().copied().collect());
        assert_eq!(destructed, constructed);
    });
}

fn stop_waits_for_running_tasks(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = Arc::new(started(&relay, "echo", 2));
    let running = {
        let server = server.clone();
        std::thread::spawn(move || server.exec(b"!sleep:400", b"finished"))
    };
    assert!(common::wait_until(10, || server.workers().unwrap().iter().any(|w| w.state == WorkerState::Working)));
    server.stop().unwrap();
    let answer = running.join().unwrap().expect("the running task finishes");
    assert_eq!(answer.body(), b"finished");
}

fn reconfigure_and_reset_under_load_lose_no_task(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = Arc::new(started(&relay, "echo", 4));
    let events = Events::listen(&server);
    let before: HashSet<u32> = pids(&server).into_iter().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (server, stop, done) = (server.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) || i < 200 {
                    let body = format!("{t}:{i}");
                    let answer =
                        server.exec(b"", body.as_bytes()).unwrap_or_else(|e| panic!("task {body} failed: {e}"));
                    assert_eq!(answer.body(), body.as_bytes());
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    assert!(common::wait_until(20, || done.load(Ordering::Relaxed) >= 500));
    let mut config = server.config();
    config.num_workers = 3;
    server.reconfigure(config).unwrap();
    assert_eq!(server.workers().unwrap().len(), 3);
    let mark = done.load(Ordering::Relaxed);
    assert!(common::wait_until(20, || done.load(Ordering::Relaxed) >= mark + 500));
    server.reset().unwrap();
    let mark = done.load(Ordering::Relaxed);
    assert!(common::wait_until(20, || done.load(Ordering::Relaxed) >= mark + 500));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("no task was lost or failed");
    }
    let after: HashSet<u32> = pids(&server).into_iter().collect();
    assert_eq!(after.len(), 3);
    assert!(after.is_disjoint(&before), "every worker was replaced");
    // The old pools are retired in the background: the second may still be stopping.
    assert!(
        common::wait_until(20, || events.of(EventKind::PoolDestruct).len() >= 2),
        "two old pools, destroyed: {:?}",
        events.of(EventKind::PoolDestruct)
    );
    assert_eq!(events.of(EventKind::PoolConstruct).len(), 2);
}

fn events_come_from_the_new_pool_after_reconfigure(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let events = Events::listen(&server);
    server.reset().unwrap();
    let new_worker = pids(&server)[0];
    server.exec(b"!stderr:from the new pool", b"").unwrap();
    events.wait_for("stderr of the new pool", |e| e.kind == EventKind::WorkerStderr && e.pid == Some(new_worker));
    // SAFETY: a live child of ours.
    unsafe { libc::kill(new_worker as i32, libc::SIGKILL) };
    events.wait_for("death in the new pool", |e| e.kind == EventKind::WorkerDead && e.pid == Some(new_worker));
}

on_every_relay!(
    stop_waits_for_running_tasks,
    reconfigure_and_reset_under_load_lose_no_task,
    events_come_from_the_new_pool_after_reconfigure
);

#[test]
fn reconfigure_changes_command_and_settings_but_not_the_relay() {
    common::isolated(|| {
        let server = started("pipes", "echo", 1);
        let mut config = server.config();
        config.command = common::worker("stop-after-one");
        config.num_workers = 2;
        server.reconfigure(config).unwrap();
        assert_eq!(server.workers().unwrap().len(), 2);
        // The relay is the listener's: a reconfigure ignores it (see tests/status.rs).
        let mut other = server.config();
        other.relay = "tcp://127.0.0.1:0".into();
        server.reconfigure(other).unwrap();
        assert_eq!(server.config().relay, "pipes");
        let mut bad = server.config();
        bad.num_workers = 0;
        assert_eq!(server.reconfigure(bad).unwrap_err().kind(), ErrorKind::Config);
        // A failed reconfigure leaves the running pool in place.
        assert_eq!(server.workers().unwrap().len(), 2);
        let mut failing = server.config();
        failing.command = common::worker("failboot");
        let error = server.reconfigure(failing).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Spawn);
        assert_eq!(server.exec(b"", b"still the old pool").unwrap().body(), b"still the old pool");
        assert_eq!(server.config().command, common::worker("stop-after-one"));
    });
}

#[test]
fn stop_escalates_from_stop_command_to_sigterm_to_sigkill() {
    common::isolated(|| {
        for (mode, killed) in [("ignore-stop", false), ("stubborn", true)] {
            let mut config = common::config("pipes", mode, 1);
            config.destroy_timeout = Duration::from_millis(200);
            let server = Server::new(config).unwrap();
            let events = Events::listen(&server);
            server.start().unwrap();
            let pid = pids(&server)[0];
            let started_at = Instant::now();
            server.stop().unwrap();
            assert!(started_at.elapsed() < Duration::from_secs(5));
            common::assert_no_children();
            server.flush_events();
            let kill_events = events.of(EventKind::WorkerKill);
            assert_eq!(kill_events.iter().any(|e| e.pid == Some(pid)), killed, "{mode}: {:?}", events.all());
            assert_eq!(events.of(EventKind::WorkerDestruct).len(), 1);
        }
    });
}

#[test]
fn stop_kills_a_task_that_outlives_destroy_timeout() {
    common::isolated(|| {
        let mut config = common::config("pipes", "echo", 1);
        config.destroy_timeout = Duration::from_millis(200);
        let server = Arc::new(Server::new(config).unwrap());
        server.start().unwrap();
        let hung = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"!hang", b""))
        };
        assert!(common::wait_until(10, || server.workers().unwrap()[0].state == WorkerState::Working));
        server.stop().unwrap();
        let error = hung.join().unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::WorkerError);
    });
}

#[test]
fn pool_error_then_failed_rebuild_is_a_server_failure_and_reset_recovers() {
    common::isolated(|| {
        let marker_dir = tempfile::tempdir().unwrap();
        let marker = marker_dir.path().join("broken");
        let command = format!(
            "sh -c 'if [ -e \"{}\" ]; then echo the worker cannot boot now >&2; exit 7; fi; exec {} echo'",
            marker.display(),
            common::worker_path()
        );
        let mut config = Config::new(command, "pipes");
        config.num_workers = 1;
        config.allocate_timeout = Duration::from_secs(20);
        let server = Server::new(config).unwrap();
        let events = Events::listen(&server);
        server.start().unwrap();
        let pid = exec_pid(&server);
        std::fs::write(&marker, b"").unwrap();
        // SAFETY: a live child of ours.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let pool_error = events.wait_for("pool error", |e| e.kind == EventKind::PoolError);
        assert!(pool_error.message.unwrap().contains("the worker cannot boot now"));
        let failure = events.wait_for("server failure", |e| e.kind == EventKind::ServerFailure);
        assert!(failure.message.unwrap().contains("rebuilding the pool failed too"));
        let error = server.exec(b"", b"").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Spawn);
        assert!(error.message().contains("no worker left"), "{error}");
        std::fs::remove_file(&marker).unwrap();
        server.reset().unwrap();
        assert_eq!(server.exec(b"", b"back").unwrap().body(), b"back");
    });
}

#[test]
fn dropping_the_server_with_tasks_in_flight_finishes_them_and_leaves_nothing() {
    common::isolated(|| {
        let server = Arc::new(started("pipes", "echo", 2));
        let events = Events::listen(&server);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let server = server.clone();
                std::thread::spawn(move || {
                    let mut outcomes = Vec::new();
                    for _ in 0..50 {
                        outcomes.push(server.exec(b"!sleep:2", b"x").map(|a| a.body().to_vec()));
                    }
                    outcomes
                })
            })
            .collect();
        assert!(common::wait_until(10, || server
            .workers()
            .map(|w| w.iter().any(|w| w.num_execs > 0))
            .unwrap_or(false)));
        server.stop().unwrap();
        for thread in threads {
            for outcome in thread.join().unwrap() {
                match outcome {
                    Ok(body) => assert_eq!(body, b"x"),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::State, "{e}"),
                }
            }
        }
        drop(events);
        drop(Arc::try_unwrap(server).ok().expect("the last reference"));
    });
}

#[test]
fn replacing_the_listener_drops_the_old_one_once() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    common::isolated(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let server = Server::new(common::config("pipes", "echo", 1)).unwrap();
        let first = Counted(drops.clone());
        server
            .listen(Some(Box::new(move |_| {
                let _ = &first;
            })))
            .unwrap();
        let second = Counted(drops.clone());
        server
            .listen(Some(Box::new(move |_| {
                let _ = &second;
            })))
            .unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        server.start().unwrap();
        drop(server);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_listener_may_run_tasks_and_flush_without_deadlock() {
    common::isolated(|| {
        let server = Arc::new(started("pipes", "echo", 2));
        let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let (weak, answers) = (Arc::downgrade(&server), answers.clone());
            server
                .listen(Some(Box::new(move |event: &roadrunner::Event| {
                    if event.kind == EventKind::WorkerStderr {
                        if let Some(server) = weak.upgrade() {
                            server.flush_events();
                            let answer = server.exec(b"", b"from the listener").map(|a| a.body().to_vec());
                            answers.lock().unwrap().push(answer);
                        }
                    }
                })))
                .unwrap();
        }
        server.exec(b"!stderr:ping", b"").unwrap();
        assert!(common::wait_until(10, || !answers.lock().unwrap().is_empty()));
        assert_eq!(answers.lock().unwrap()[0].as_deref().unwrap(), b"from the listener");
        server.listen(None).unwrap();
    });
}
