//! Running tasks: answers, job errors, timeouts, max_jobs, stop requests, concurrency.

mod common;
use common::{exec_pid, pids, relay, started, Events, Relay};
use roadrunner::{ErrorKind, EventKind, Server};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

fn echo_round_trips(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 2);
    let answer = server.exec(b"the context", b"the body").unwrap();
    assert_eq!(answer.context(), b"the context");
    assert_eq!(answer.body(), b"the body");

    let empty = server.exec(b"", b"").unwrap();
    assert_eq!((empty.context(), empty.body()), (&b""[..], &b""[..]));

    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i: u32| (i * 31 % 256) as u8).collect();
    let answer = server.exec(b"big", &big).unwrap();
    assert_eq!(answer.context(), b"big");
    assert!(answer.body() == &big[..], "a 3 MiB body must come back unchanged");
}

fn job_error_keeps_the_worker(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "echo", 1);
    let before = exec_pid(&server);
    let error = server.exec(b"!error", b"it went wrong").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::JobError);
    assert_eq!(error.data(), b"it went wrong");
    assert_eq!(error.pid(), Some(before));
    assert!(error.message().contains("it went wrong"), "{error}");
    assert_eq!(exec_pid(&server), before, "a job error must keep the worker");
    assert_eq!(server.workers().unwrap()[0].num_execs, 3);
}

fn many_threads_get_their_own_answers(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = Arc::new(started(&relay, "echo", 4));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    let context = format!("ctx {t}/{i}");
                    let body = format!("body of task {i} from thread {t}").repeat(i % 7 + 1);
                    let answer = server.exec(context.as_bytes(), body.as_bytes()).expect("task");
                    assert_eq!(answer.context(), context.as_bytes());
                    assert_eq!(answer.body(), body.as_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no thread failed");
    }
    let execs: u64 = server.workers().unwrap().iter().map(|w| w.num_execs).sum();
    assert_eq!(execs, 8000);
}

fn max_jobs_replaces_workers(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = common::started_with(&relay, "echo", 1, |c| c.max_jobs = 2);
    let seen: Vec<u32> = (0..6).map(|_| exec_pid(&server)).collect();
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[2], seen[3]);
    assert_eq!(seen[4], seen[5]);
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 3, "a new worker every 2 tasks: {seen:?}");
}

fn stop_request_is_retried_on_another_worker(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "stop-after-one", 1);
    let events = Events::listen(&server);
    let first = exec_pid(&server);
    // The worker asks to be replaced: the caller never sees it.
    let second = exec_pid(&server);
    assert_ne!(first, second);
    events.wait_for("destruct of the worker that asked to stop", |e| {
        e.kind == EventKind::WorkerDestruct && e.pid == Some(first)
    });
}

fn a_worker_that_always_asks_to_stop_is_bounded(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started(&relay, "stop-always", 2);
    let events = Events::listen(&server);
    let error = server.exec(b"ctx", b"body").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError);
    assert!(error.message().contains("asked to be replaced"), "{error}");
    // Let the replacements settle, then count: a bounded number, not an endless stream.
    common::wait_until(10, || server.workers().unwrap().len() == 2);
    server.flush_events();
    let spawned = events.of(EventKind::WorkerConstruct).len();
    assert!(spawned <= 2 + 4, "exec spawned {spawned} workers for one task");
}

on_every_relay!(
    echo_round_trips,
    job_error_keeps_the_worker,
    many_threads_get_their_own_answers,
    max_jobs_replaces_workers,
    stop_request_is_retried_on_another_worker,
    a_worker_that_always_asks_to_stop_is_bounded,
);

#[test]
fn context_comes_back_as_the_answers_header() {
    common::isolated(|| {
        let server = started("pipes", "echo", 1);
        let answer = server.exec(br#"{"headers":{"x":["1"]}}"#, b"").unwrap();
        assert_eq!(answer.context(), br#"{"headers":{"x":["1"]}}"#);
        assert!(answer.body().is_empty());
    });
}

#[test]
fn no_free_worker_within_allocate_timeout_is_a_timeout() {
    common::isolated(|| {
        let mut config = common::config("pipes", "echo", 1);
        config.allocate_timeout = Duration::from_millis(100);
        let server = Arc::new(Server::new(config).unwrap());
        server.start().unwrap();
        let busy = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"!sleep:1500", b"x").map(|a| a.body().to_vec()))
        };
        assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
        let error = server.exec(b"", b"").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.message().contains("allocate_timeout (100 ms)"), "{error}");
        assert_eq!(busy.join().unwrap().unwrap(), b"x");
    });
}

#[test]
fn worker_states_and_executions_are_reported() {
    common::isolated(|| {
        let server = started("pipes", "echo", 3);
        let workers = server.workers().unwrap();
        assert_eq!(workers.len(), 3);
        for worker in &workers {
            assert_eq!(worker.state, roadrunner::WorkerState::Ready);
            assert_eq!(worker.num_execs, 0);
            assert!(worker.rss_bytes > 0);
            assert!(worker.created <= std::time::SystemTime::now());
        }
        for _ in 0..10 {
            server.exec(b"", b"").unwrap();
        }
        let execs: u64 = server.workers().unwrap().iter().map(|w| w.num_execs).sum();
        assert_eq!(execs, 10);
        assert_eq!(pids(&server).len(), 3);
    });
}
