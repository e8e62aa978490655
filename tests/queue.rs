//! The completion queue: tasks submitted without waiting, on every relay and in both
//! protocols: answers, job and worker errors, allocate_timeout, max_queue, exec_ttl,
//! stop requests, cancellation (waiting and running), reconfigure, reset and stop with
//! every task completed exactly once, and one queue shared by servers and threads.

mod common;
use common::{pids, relay, started_with, Relay};
use roadrunner::{Completion, CompletionQueue, ErrorKind};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));

/// Takes `count` completions (each within 30 s), by tag.
fn take(queue: &CompletionQueue, count: usize) -> HashMap<u64, Completion> {
    let mut taken = HashMap::new();
    for i in 0..count {
        let completion = queue.next(WAIT).unwrap_or_else(|| panic!("completion {i} of {count} did not come"));
        assert!(taken.insert(completion.tag, completion).is_none(), "a tag completed twice");
    }
    taken
}

fn answers_and_errors(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |_| {});
    let queue = CompletionQueue::new().unwrap();
    for tag in 0..50u64 {
        server.submit(&queue, b"ctx", format!("task {tag}").as_bytes(), tag).unwrap();
    }
    server.submit(&queue, b"!error", b"boom", 100).unwrap();
    server.submit(&queue, b"!crash", b"", 101).unwrap();
    let mut done = take(&queue, 52);
    for tag in 0..50u64 {
        let answer = done.remove(&tag).unwrap().result.unwrap();
        assert_eq!((answer.context(), answer.body()), (&b"ctx"[..], format!("task {tag}").as_bytes()));
    }
    let job = done.remove(&100).unwrap().result.unwrap_err();
    assert_eq!((job.kind(), job.data()), (ErrorKind::JobError, &b"boom"[..]));
    let crash = done.remove(&101).unwrap().result.unwrap_err();
    assert_eq!(crash.kind(), ErrorKind::WorkerError, "{crash}");
    assert!(crash.message().contains("exited with status 3"), "{crash}");
    assert!(queue.next(Some(Duration::ZERO)).is_none(), "nothing more");
    assert!(common::wait_until(10, || server.workers().unwrap().len() == 2));
    let stats = server.stats().unwrap();
    assert_eq!((stats.tasks_done, stats.job_errors, stats.worker_errors), (51, 1, 1));
    assert_eq!(server.exec(b"", b"blocking").unwrap().body(), b"blocking");
    let _ = pids(&server);
}

on_every_relay!(answers_and_errors);

fn v2_streams_are_joined(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, common::v2);
    let queue = CompletionQueue::new().unwrap();
    server.submit(&queue, b"!stream:12", b"s", 1).unwrap();
    server.submit(&queue, b"!stream-error:3", b"failed late", 2).unwrap();
    server.submit(&queue, b"", b"after", 3).unwrap();
    let mut done = take(&queue, 3);
    let joined = done.remove(&1).unwrap().result.unwrap();
    let expected: String = (0..12).map(|i| format!("s-{i}")).chain(["s-end".to_string()]).collect();
    assert_eq!((joined.context(), joined.body()), (&b"chunk"[..], expected.as_bytes()));
    let error = done.remove(&2).unwrap().result.unwrap_err();
    assert_eq!((error.kind(), error.data()), (ErrorKind::JobError, &b"failed late"[..]));
    assert_eq!(done.remove(&3).unwrap().result.unwrap().body(), b"after");
}

fn large_tasks_and_answers(kind: Relay) {
    // Larger than any pipe or socket buffer: sent and read in many steps by the reactor.
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |_| {});
    let queue = CompletionQueue::new().unwrap();
    let large: Vec<Vec<u8>> =
        (0..6u32).map(|n| (0..(1_000_000 + n * 77_777)).map(|i| (i % 251) as u8).collect()).collect();
    for (tag, body) in large.iter().enumerate() {
        server.submit(&queue, &body[..1000], body, tag as u64).unwrap();
    }
    let done = take(&queue, large.len());
    for (tag, body) in large.iter().enumerate() {
        let answer = done[&(tag as u64)].result.as_ref().unwrap();
        assert!(answer.context() == &body[..1000] && answer.body() == &body[..], "task {tag} came back changed");
    }
}

fn allocate_timeout_counts_from_submission(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |c| c.allocate_timeout = Duration::from_millis(300));
    let queue = CompletionQueue::new().unwrap();
    server.submit(&queue, b"!sleep:1500", b"held", 1).unwrap();
    server.submit(&queue, b"", b"never ran", 2).unwrap();
    let first = queue.next(WAIT).unwrap();
    assert_eq!(first.tag, 2, "the waiting task times out first");
    let error = first.result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(error.message().contains("allocate_timeout (300 ms)"), "{error}");
    assert_eq!(queue.next(WAIT).unwrap().result.unwrap().body(), b"held");
    assert_eq!(server.stats().unwrap().timeouts, 1);
}

fn max_queue_is_refused_at_submission(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |c| c.max_queue = 2);
    let queue = CompletionQueue::new().unwrap();
    server.submit(&queue, b"!sleep:500", b"", 1).unwrap();
    server.submit(&queue, b"", b"", 2).unwrap();
    server.submit(&queue, b"", b"", 3).unwrap();
    let error = server.submit(&queue, b"", b"", 4).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::QueueFull, "{error}");
    let done = take(&queue, 3);
    assert!(done.values().all(|completion| completion.result.is_ok()));
    assert!(queue.next(Some(Duration::from_millis(200))).is_none(), "nothing arrives for a refused task");
    assert_eq!(server.stats().unwrap().queue_full, 1);
}

fn exec_ttl_kills_and_replaces(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |c| c.exec_ttl = Duration::from_millis(300));
    let queue = CompletionQueue::new().unwrap();
    let before = pids(&server);
    server.submit(&queue, b"!hang", b"", 1).unwrap();
    server.submit(&queue, b"", b"next", 2).unwrap();
    let mut done = take(&queue, 2);
    let error = done.remove(&1).unwrap().result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ExecTtl, "{error}");
    assert_eq!(done.remove(&2).unwrap().result.unwrap().body(), b"next");
    assert_ne!(pids(&server), before, "the worker was replaced");
    assert_eq!(server.stats().unwrap().exec_ttl_kills, 1);
}

fn stop_requests_are_rerouted(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "stop-after-one", 2, |_| {});
    let queue = CompletionQueue::new().unwrap();
    for tag in 0..6u64 {
        server.submit(&queue, b"", format!("rerouted {tag}").as_bytes(), tag).unwrap();
    }
    let done = take(&queue, 6);
    for tag in 0..6u64 {
        assert_eq!(done[&tag].result.as_ref().unwrap().body(), format!("rerouted {tag}").as_bytes());
    }
    assert!(server.stats().unwrap().retired_stop_requested >= 1);
    // A worker that always asks: the task fails after a bounded number of tries.
    let always = started_with(&relay_of(&server), "stop-always", 1, |_| {});
    always.submit(&queue, b"", b"", 9).unwrap();
    let error = queue.next(WAIT).unwrap().result.unwrap_err();
    assert!(error.message().contains("asked to be replaced"), "{error}");
}

/// The relay `server` listens on, for a second server of the same kind (a socket
/// relay's port or path cannot be shared: a fresh one of the same kind).
fn relay_of(server: &roadrunner::Server) -> String {
    let relay = server.config().relay;
    if relay.starts_with("unix://") {
        format!("{relay}.2")
    } else {
        relay
    }
}

fn cancel_a_waiting_task(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |_| {});
    let queue = CompletionQueue::new().unwrap();
    server.submit(&queue, b"!sleep:1000", b"held", 1).unwrap();
    server.submit(&queue, b"", b"cancelled", 2).unwrap();
    server.submit(&queue, b"", b"kept", 3).unwrap();
    queue.cancel(2);
    queue.cancel(77); // nothing with that tag: nothing happens
    let first = queue.next(WAIT).unwrap();
    assert_eq!(first.tag, 2, "the cancelled task completes at once");
    assert_eq!(first.result.unwrap_err().kind(), ErrorKind::Cancelled);
    let done = take(&queue, 2);
    assert_eq!(done[&1].result.as_ref().unwrap().body(), b"held");
    assert_eq!(done[&3].result.as_ref().unwrap().body(), b"kept");
    let stats = server.stats().unwrap();
    assert_eq!((stats.tasks_done, stats.tasks_cancelled), (2, 1), "the cancelled task never ran");
}

fn cancel_a_running_task(kind: Relay) {
    for v2 in [false, true] {
        let (relay, _dir) = relay(kind);
        let server = started_with(&relay, "echo", 1, |c| {
            if v2 {
                common::v2(c)
            }
        });
        let queue = CompletionQueue::new().unwrap();
        let before = pids(&server);
        // In V2, a stream without end: cancelled mid-answer.
        let running: &[u8] = if v2 { b"!stream:100000000" } else { b"!hang" };
        server.submit(&queue, running, b"s", 5).unwrap();
        server.submit(&queue, b"", b"waited", 6).unwrap();
        assert!(common::wait_until(10, || server.stats().unwrap().waiting == 1));
        queue.cancel(5);
        let first = queue.next(WAIT).unwrap();
        assert_eq!((first.tag, first.result.unwrap_err().kind()), (5, ErrorKind::Cancelled));
        // Its worker was killed and replaced; the waiting task ran on the new one.
        let second = queue.next(WAIT).unwrap();
        assert_eq!((second.tag, second.result.unwrap().body()), (6, &b"waited"[..]));
        assert!(common::wait_until(10, || {
            let now = pids(&server);
            now.len() == 1 && now != before
        }));
        assert_eq!(server.exec(b"", b"served").unwrap().body(), b"served");
        assert!(queue.next(Some(Duration::from_millis(200))).is_none(), "one completion per task");
        assert_eq!(server.stats().unwrap().tasks_cancelled, 1);
    }
}

fn reset_and_reconfigure_lose_no_task(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |_| {});
    let queue = CompletionQueue::new().unwrap();
    let mut submitted = 0u64;
    for round in 0..4 {
        for _ in 0..30 {
            server.submit(&queue, b"!sleep:5", format!("task {submitted}").as_bytes(), submitted).unwrap();
            submitted += 1;
        }
        if round % 2 == 0 {
            server.reset().unwrap();
        } else {
            let mut config = server.config();
            config.num_workers = 3;
            server.reconfigure(config).unwrap();
        }
    }
    let done = take(&queue, submitted as usize);
    for tag in 0..submitted {
        assert_eq!(done[&tag].result.as_ref().unwrap().body(), format!("task {tag}").as_bytes());
    }
    assert!(queue.next(Some(Duration::from_millis(200))).is_none(), "one completion per task");
    assert_eq!(server.stats().unwrap().tasks_done, submitted);
}

fn stop_completes_every_task_once(kind: Relay) {
    for drop_it in [false, true] {
        let (relay, _dir) = relay(kind);
        let server = started_with(&relay, "echo", 1, |_| {});
        let queue = CompletionQueue::new().unwrap();
        server.submit(&queue, b"!sleep:300", b"running", 0).unwrap();
        for tag in 1..=5 {
            server.submit(&queue, b"", b"waiting", tag).unwrap();
        }
        assert!(common::wait_until(10, || server.stats().unwrap().waiting == 5));
        if drop_it {
            drop(server);
        } else {
            server.stop().unwrap();
            let error = server.submit(&queue, b"", b"", 9).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::State, "{error}");
        }
        let mut done = take(&queue, 6);
        assert_eq!(done.remove(&0).unwrap().result.unwrap().body(), b"running", "stop waits for a running task");
        for (tag, completion) in done {
            let error = completion.result.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::State, "task {tag}: {error}");
        }
        assert!(queue.next(Some(Duration::from_millis(200))).is_none(), "one completion per task");
    }
}

fn freeing_the_queue_cancels_what_is_outstanding(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |c| c.destroy_timeout = Duration::from_secs(20));
    let before = pids(&server);
    let queue = CompletionQueue::new().unwrap();
    server.submit(&queue, b"!hang", b"", 1).unwrap();
    server.submit(&queue, b"", b"done", 2).unwrap();
    server.submit(&queue, b"!hang", b"", 3).unwrap();
    server.submit(&queue, b"", b"waiting", 4).unwrap();
    assert!(common::wait_until(10, || server.stats().unwrap().waiting == 1));
    let started = std::time::Instant::now();
    drop(queue);
    assert!(started.elapsed() < Duration::from_secs(5), "freeing the queue does not wait for its tasks");
    // The two hanging workers were killed and replaced; the pool serves on.
    assert!(common::wait_until(20, || {
        let now = pids(&server);
        now.len() == 2 && now.iter().all(|pid| !before.contains(pid))
    }));
    assert_eq!(server.exec(b"", b"served").unwrap().body(), b"served");
    assert_eq!(server.stats().unwrap().waiting, 0);
}

fn one_queue_for_two_servers_and_many_takers(kind: Relay) {
    let (relay_a, _dir_a) = relay(kind);
    let (relay_b, _dir_b) = relay(kind);
    let a = started_with(&relay_a, "echo", 2, |_| {});
    let b = started_with(&relay_b, "echo", 1, common::v2);
    let queue = CompletionQueue::new().unwrap();
    const EACH: u64 = 200;
    let taken = std::sync::Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                // Until every task was taken (by any taker): a taker stuck in `next`
                // is woken by the time limit, at the latest.
                let give_up = std::time::Instant::now() + Duration::from_secs(60);
                while taken.lock().unwrap().len() < EACH as usize && std::time::Instant::now() < give_up {
                    if let Some(completion) = queue.next(Some(Duration::from_millis(100))) {
                        let previous = taken.lock().unwrap().insert(completion.tag, completion);
                        assert!(previous.is_none(), "a task completed twice");
                    }
                }
            });
        }
        for tag in 0..EACH {
            let server = if tag % 2 == 0 { &a } else { &b };
            server.submit(&queue, b"", format!("{tag}").as_bytes(), tag).unwrap();
        }
    });
    let taken = taken.into_inner().unwrap();
    assert_eq!(taken.len() as u64, EACH);
    for (tag, completion) in taken {
        assert_eq!(completion.result.unwrap().body(), format!("{tag}").as_bytes());
    }
}

fn callers_and_tasks_share_the_workers_in_arrival_order(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("tasks");
    let server =
        started_with(&relay, "echo", 1, |c| c.env.push(("RR_TEST_TASK_LOG".into(), log.display().to_string())));
    let queue = CompletionQueue::new().unwrap();
    std::thread::scope(|scope| {
        server.submit(&queue, b"!sleep:300", b"first", 0).unwrap();
        for (i, name) in ["task-a", "caller-b", "task-c", "caller-d", "task-e"].into_iter().enumerate() {
            if name.starts_with("task") {
                server.submit(&queue, b"", name.as_bytes(), i as u64 + 1).unwrap();
            } else {
                let server = &server;
                scope.spawn(move || assert_eq!(server.exec(b"", name.as_bytes()).unwrap().body(), name.as_bytes()));
            }
            assert!(common::wait_until(10, || server.stats().unwrap().waiting == i as u64 + 1));
        }
        take(&queue, 4);
    });
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(order, "first\ntask-a\ncaller-b\ntask-c\ncaller-d\ntask-e\n");
}

fn max_jobs_and_events(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |c| c.max_jobs = 3);
    let events = common::Events::listen(&server);
    let queue = CompletionQueue::new().unwrap();
    for tag in 0..30 {
        server.submit(&queue, b"", b"x", tag).unwrap();
    }
    let done = take(&queue, 30);
    assert!(done.values().all(|completion| completion.result.is_ok()));
    let stats = server.stats().unwrap();
    assert!(stats.retired_max_jobs >= 8, "{stats:?}");
    server.flush_events();
    let constructed = events.of(roadrunner::EventKind::WorkerConstruct).len();
    assert!(constructed >= 8, "{constructed} workers constructed; {stats:?}");
}

fn a_dead_worker_ends_its_task_even_if_its_child_holds_the_relay(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |_| {});
    let queue = CompletionQueue::new().unwrap();
    let started = std::time::Instant::now();
    // The worker's child holds every descriptor of the worker for 30 s; the worker dies.
    server.submit(&queue, b"!orphan:30", b"", 1).unwrap();
    let error = queue.next(WAIT).unwrap().result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError, "{error}");
    assert!(error.message().contains("exited with status 5"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20), "the task ended with the worker, not with its child");
    server.submit(&queue, b"", b"after", 2).unwrap();
    assert_eq!(queue.next(WAIT).unwrap().result.unwrap().body(), b"after");
    common::kill_orphan(&error);
}

/// Whether `fd` is readable within `ms` milliseconds.
fn readable(fd: i32, ms: i32) -> bool {
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, ms) };
    assert!(ready >= 0, "poll failed");
    ready == 1 && poll.revents & libc::POLLIN != 0
}

fn the_descriptor_is_readable_exactly_while_completions_wait(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 2, |_| {});
    let queue = CompletionQueue::new().unwrap();
    let fd = queue.fd();
    assert!(!readable(fd, 0), "readable with nothing submitted");
    for round in 0..20u64 {
        let count = 1 + round % 7;
        for i in 0..count {
            server.submit(&queue, b"", b"x", round * 100 + i).unwrap();
        }
        let mut taken = 0;
        while taken < count {
            assert!(readable(fd, 30_000), "round {round}: not readable while {} completions are due", count - taken);
            while let Some(completion) = queue.next(Some(Duration::ZERO)) {
                assert_eq!(completion.tag / 100, round);
                taken += 1;
            }
        }
        assert!(!readable(fd, 0), "round {round}: readable once every completion was taken");
    }
    // A blocking take empties it too.
    server.submit(&queue, b"", b"y", 1).unwrap();
    assert!(queue.next(WAIT).is_some());
    assert!(!readable(fd, 0));
}

fn a_worker_that_dies_while_a_large_task_is_written(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let server = started_with(&relay, "echo", 1, |c| c.destroy_timeout = Duration::from_secs(3));
    let queue = CompletionQueue::new().unwrap();
    let large: Vec<u8> = (0..1_000_000u32).map(|i| (i % 249) as u8).collect();
    // The worker answers, then exits once 60000 bytes of the next task wait unread: the
    // task never reached it whole, so it runs on the replacement.
    server.submit(&queue, b"!die-when-full:60000", b"first", 1).unwrap();
    assert_eq!(queue.next(WAIT).unwrap().result.unwrap().body(), b"first");
    server.submit(&queue, b"", &large, 2).unwrap();
    let second = queue.next(WAIT).expect("the task whose worker died while it was written completes");
    assert!(second.result.unwrap().body() == &large[..], "it ran on the replacement");
    // Cancelled while it is being written: cancelled, and its worker replaced.
    server.submit(&queue, b"", &large, 3).unwrap();
    queue.cancel(3);
    assert_eq!(queue.next(WAIT).unwrap().result.unwrap_err().kind(), ErrorKind::Cancelled);
    server.submit(&queue, b"", b"after", 4).unwrap();
    assert_eq!(queue.next(WAIT).unwrap().result.unwrap().body(), b"after");
    let started = std::time::Instant::now();
    server.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20), "stop waited for a task that was gone");
}

on_every_relay!(
    a_worker_that_dies_while_a_large_task_is_written,
    the_descriptor_is_readable_exactly_while_completions_wait,
    a_dead_worker_ends_its_task_even_if_its_child_holds_the_relay,
    v2_streams_are_joined,
    large_tasks_and_answers,
    allocate_timeout_counts_from_submission,
    max_queue_is_refused_at_submission,
    exec_ttl_kills_and_replaces,
    stop_requests_are_rerouted,
    cancel_a_waiting_task,
    cancel_a_running_task,
    reset_and_reconfigure_lose_no_task,
    stop_completes_every_task_once,
    freeing_the_queue_cancels_what_is_outstanding,
    one_queue_for_two_servers_and_many_takers,
    callers_and_tasks_share_the_workers_in_arrival_order,
    max_jobs_and_events,
);
