//! Supervision limits: ttl, idle_ttl, max_memory, max_queue, jitter, loopback-only
//! TCP, and the counters and events that report them.

mod common;
use common::{exec_pid, pids, Events};
use roadrunner::{Config, ErrorKind, EventKind, Server};
use std::sync::Arc;
use std::time::Duration;

fn server(change: impl FnOnce(&mut Config)) -> Server {
    common::started_with("pipes", "echo", 1, |config| {
        config.jitter_percent = 0;
        change(config);
    })
}

#[test]
fn ttl_retires_a_worker_between_tasks() {
    common::isolated(|| {
        let server = server(|c| c.ttl = Duration::from_millis(300));
        let events = Events::listen(&server);
        let first = exec_pid(&server);
        // A task that outlives the ttl is never cut short.
        assert_eq!(server.exec(b"!sleep:450", b"whole").unwrap().body(), b"whole");
        events.wait_for("ttl event", |e| e.kind == EventKind::WorkerTtl && e.pid == Some(first));
        assert_ne!(exec_pid(&server), first);
        assert!(server.stats().unwrap().retired_ttl >= 1);
    });
}

#[test]
fn ttl_also_retires_idle_workers() {
    common::isolated(|| {
        let server = server(|c| c.ttl = Duration::from_millis(200));
        let events = Events::listen(&server);
        let first = pids(&server)[0];
        events.wait_for("ttl event of an idle worker", |e| e.kind == EventKind::WorkerTtl && e.pid == Some(first));
        assert!(common::wait_until(10, || {
            let now = pids(&server);
            now.len() == 1 && now[0] != first
        }));
    });
}

#[test]
fn idle_ttl_retires_workers_that_wait_too_long() {
    common::isolated(|| {
        let server = server(|c| {
            c.num_workers = 2;
            c.idle_ttl = Duration::from_millis(200);
        });
        let events = Events::listen(&server);
        let first = pids(&server);
        for pid in &first {
            events.wait_for("idle ttl", |e| e.kind == EventKind::WorkerIdleTtl && e.pid == Some(*pid));
        }
        assert!(common::wait_until(10, || {
            let now = pids(&server);
            now.len() == 2 && now.iter().all(|p| !first.contains(p))
        }));
        assert!(server.stats().unwrap().retired_idle_ttl >= 2);
        assert_eq!(server.exec(b"", b"still serving").unwrap().body(), b"still serving");
    });
}

#[test]
fn max_memory_retires_a_worker_after_the_task_that_grew_it() {
    common::isolated(|| {
        let server = server(|c| c.max_memory = 64 << 20);
        let events = Events::listen(&server);
        let first = exec_pid(&server);
        // The task itself completes; the worker goes afterwards.
        assert_eq!(server.exec(b"!alloc:100000000", b"grown").unwrap().body(), b"grown");
        events.wait_for("max memory event", |e| e.kind == EventKind::WorkerMaxMemory && e.pid == Some(first));
        assert_ne!(exec_pid(&server), first);
        assert_eq!(server.stats().unwrap().retired_max_memory, 1);
    });
}

#[test]
fn max_queue_refuses_callers_beyond_it_at_once() {
    common::isolated(|| {
        let server = Arc::new(server(|c| c.max_queue = 1));
        let events = Events::listen(&server);
        let busy = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"!sleep:1500", b"a").map(|p| p.body().to_vec()))
        };
        assert!(common::wait_until(10, || server.stats().unwrap().workers == 1
            && server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
        let queued = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"", b"b").map(|p| p.body().to_vec()))
        };
        assert!(common::wait_until(10, || server.stats().unwrap().waiting == 1));
        let started = std::time::Instant::now();
        let refused = server.exec(b"", b"c").unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::QueueFull);
        assert!(started.elapsed() < Duration::from_millis(500), "refused at once, not after a wait");
        assert!(refused.message().contains("max_queue 1"), "{refused}");
        assert_eq!(busy.join().unwrap().unwrap(), b"a");
        assert_eq!(queued.join().unwrap().unwrap(), b"b");
        events.wait_for("queue full event", |e| e.kind == EventKind::QueueFull);
        assert_eq!(server.stats().unwrap().queue_full, 1);
    });
}

#[test]
fn exec_ttl_has_its_own_event_and_counter() {
    common::isolated(|| {
        let server = server(|c| c.exec_ttl = Duration::from_millis(150));
        let events = Events::listen(&server);
        let pid = pids(&server)[0];
        let started = std::time::Instant::now();
        let error = server.exec(b"!sleep:5000", b"").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ExecTtl);
        assert!(started.elapsed() < Duration::from_secs(2), "the caller hears of it near the deadline");
        events.wait_for("exec ttl event", |e| e.kind == EventKind::WorkerExecTtl && e.pid == Some(pid));
        let stats = server.stats().unwrap();
        assert_eq!((stats.exec_ttl_kills, stats.worker_errors), (1, 1));
        assert_ne!(exec_pid(&server), pid);
    });
}

#[test]
fn stats_count_tasks_and_outcomes() {
    common::isolated(|| {
        let server = server(|c| {
            c.num_workers = 2;
            c.max_jobs = 3;
        });
        for _ in 0..5 {
            server.exec(b"", b"x").unwrap();
        }
        server.exec(b"!error", b"no").unwrap_err();
        server.exec(b"!crash", b"").unwrap_err();
        let stats = server.stats().unwrap();
        assert_eq!(stats.tasks_done, 6);
        assert_eq!(stats.job_errors, 1);
        assert_eq!(stats.worker_errors, 1);
        assert_eq!(stats.retired_failed, 1);
        assert_eq!(stats.retired_max_jobs, 2);
        assert!(common::wait_until(10, || server.stats().unwrap().workers == 2));
        // Counters run on across a reset.
        server.reset().unwrap();
        assert_eq!(server.stats().unwrap().tasks_done, 6);
    });
}

#[test]
fn tcp_relay_is_loopback_only_unless_asked() {
    let refused = Server::new(Config::new("w", "tcp://0.0.0.0:7000")).err().unwrap();
    assert_eq!(refused.kind(), ErrorKind::Config);
    assert!(refused.message().contains("not a loopback address"), "{refused}");
    assert!(Server::new(Config { tcp_allow_remote: true, ..Config::new("w", "tcp://0.0.0.0:7000") }).is_ok());
    assert!(Server::new(Config::new("w", "tcp://127.0.0.1:7000")).is_ok());
    assert!(Server::new(Config::new("w", "tcp://localhost:7000")).is_ok());
    assert!(Server::new(Config::new("w", "tcp://[::1]:7000")).is_ok());
}

#[test]
fn jitter_spreads_max_jobs_across_workers() {
    common::isolated(|| {
        let mut config = common::config("pipes", "echo", 1);
        config.max_jobs = 20;
        config.jitter_percent = 50;
        let server = Server::new(config).unwrap();
        server.start().unwrap();
        let mut lifetimes = Vec::new();
        let mut current = exec_pid(&server);
        let mut count = 1;
        for _ in 0..200 {
            let pid = exec_pid(&server);
            if pid == current {
                count += 1;
            } else {
                lifetimes.push(count);
                current = pid;
                count = 1;
            }
        }
        assert!(lifetimes.len() >= 8, "{lifetimes:?}");
        assert!(lifetimes.iter().all(|&n| (10..=20).contains(&n)), "{lifetimes:?}");
        let distinct: std::collections::HashSet<_> = lifetimes.iter().collect();
        assert!(distinct.len() >= 2, "workers must not all share one limit: {lifetimes:?}");
    });
}
