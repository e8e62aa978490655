//! Callers that wait for a worker: the worker freed by one caller goes to a waiting one,
//! whose small task the freeing caller sends on the way (src/handoff.rs). Every path of
//! that hand-over must end as if the waiting caller had sent its task itself.

mod common;
use common::{relay, Relay};
use roadrunner::{ErrorKind, Server};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Tasks larger than this are not sent ahead (SEND_AHEAD_MAX_BYTES in src/pool.rs).
const LARGER_THAN_SENT_AHEAD: usize = 16 * 1024 + 1;

fn server_with(
    kind: Relay,
    workers: u64,
    change: impl FnOnce(&mut roadrunner::Config),
) -> (Arc<Server>, Option<tempfile::TempDir>) {
    let (relay, dir) = relay(kind);
    (Arc::new(common::started_with(&relay, "echo", workers, change)), dir)
}

/// Runs `context`/`body` on a thread of its own.
fn exec_in_background(
    server: &Arc<Server>,
    context: &str,
    body: &[u8],
) -> JoinHandle<roadrunner::Result<(Vec<u8>, Vec<u8>)>> {
    let (server, context, body) = (server.clone(), context.to_string(), body.to_vec());
    std::thread::spawn(move || {
        server.exec(context.as_bytes(), &body).map(|a| (a.context().to_vec(), a.body().to_vec()))
    })
}

/// Joins `thread`, failing the test if it has not ended within 20 s.
fn join_in_time<T>(thread: JoinHandle<T>, what: &str) -> T {
    assert!(common::wait_until(20, || thread.is_finished()), "{what} did not return");
    thread.join().expect("no panic")
}

/// Waits until `count` callers wait for a worker.
fn wait_for_waiting(server: &Server, count: u64) {
    assert!(
        common::wait_until(10, || server.stats().unwrap().waiting == count),
        "expected {count} waiting callers, stats: {:?}",
        server.stats().unwrap()
    );
}

/// One worker, many callers, small and large bodies, answers and job errors mixed:
/// every caller gets its own outcome.
fn waiting_callers_get_their_own_outcomes(kind: Relay) {
    let (server, _dir) = server_with(kind, 1, |_| {});
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let size = if i % 10 == 3 { LARGER_THAN_SENT_AHEAD + i } else { i };
                    let body: Vec<u8> = (0..size).map(|b| (b * 7 + t + i) as u8).collect();
                    if i % 5 == 0 {
                        let error = server.exec(b"!error", &body).unwrap_err();
                        assert_eq!(error.kind(), ErrorKind::JobError);
                        assert!(error.data() == &body[..], "thread {t} task {i}: someone else's job error");
                    } else {
                        let context = format!("thread {t} task {i}");
                        let answer = server.exec(context.as_bytes(), &body).expect("task");
                        assert_eq!(answer.context(), context.as_bytes());
                        assert!(answer.body() == &body[..], "thread {t} task {i}: someone else's body");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no thread failed");
    }
    assert_eq!(server.workers().unwrap()[0].num_execs, 8 * 200);
}

/// A waiting caller's task that crashes the worker fails that caller only.
fn a_waiting_task_that_crashes_its_worker_fails_alone(kind: Relay) {
    let (server, _dir) = server_with(kind, 1, |_| {});
    let first = exec_in_background(&server, "!sleep:300", b"first");
    assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
    let crashing = exec_in_background(&server, "!crash", b"");
    wait_for_waiting(&server, 1);
    assert_eq!(first.join().unwrap().expect("the first task").1, b"first");
    let error = crashing.join().unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::WorkerError);
    assert!(error.message().contains("crash requested"), "{error}");
    assert_eq!(server.exec(b"after", b"ok").unwrap().body(), b"ok");
}

/// A worker that exits right after its answer, while callers wait for it: the task
/// handed to it never ran, so it runs on a replacement and its caller sees no error.
fn a_worker_gone_before_a_waiting_task_reached_it_is_replaced(kind: Relay) {
    let (server, _dir) = server_with(kind, 1, |_| {});
    let first = exec_in_background(&server, "!sleep:300", b"first");
    assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
    // Whichever order they are served in, every `!exit` is followed by a hand-over to a
    // worker that is exiting.
    let mut waiting = Vec::new();
    for i in 0..6 {
        let context = if i % 2 == 0 { "!exit".to_string() } else { format!("task {i}") };
        waiting.push((context.clone(), exec_in_background(&server, &context, format!("body {i}").as_bytes())));
        wait_for_waiting(&server, i + 1);
    }
    assert_eq!(first.join().unwrap().expect("the first task").1, b"first");
    for (i, (context, thread)) in waiting.into_iter().enumerate() {
        let (answer_context, body) = thread.join().unwrap().expect("no caller sees a worker that exited");
        assert_eq!((answer_context, body), (context.into_bytes(), format!("body {i}").into_bytes()));
    }
    assert_eq!(server.stats().unwrap().worker_errors, 0);
}

/// exec_ttl bounds a task that the freeing caller sent for the waiting one.
fn a_waiting_task_is_bound_by_exec_ttl(kind: Relay) {
    let (server, _dir) = server_with(kind, 1, |c| c.exec_ttl = Duration::from_millis(400));
    let first = exec_in_background(&server, "!sleep:200", b"first");
    assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
    let hanging = exec_in_background(&server, "!hang", b"");
    wait_for_waiting(&server, 1);
    assert_eq!(first.join().unwrap().expect("the first task").1, b"first");
    let handed_at = std::time::Instant::now();
    let error = join_in_time(hanging, "the task past exec_ttl").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ExecTtl, "{error}");
    // Bound by exec_ttl (400 ms), not by allocate_timeout (20 s): ample slack either way.
    let took = handed_at.elapsed();
    assert!(took < Duration::from_secs(10), "the waiting task failed after {took:?}, not at exec_ttl");
    assert_eq!(server.exec(b"after", b"ok").unwrap().body(), b"ok");
}

/// A caller that gave up waiting took its task back: no worker ever runs it.
fn a_caller_that_timed_out_never_has_its_task_run(kind: Relay) {
    let (server, _dir) = server_with(kind, 1, |c| c.allocate_timeout = Duration::from_millis(150));
    let first = exec_in_background(&server, "!sleep:600", b"first");
    assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
    let error = server.exec(b"given up", b"").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(first.join().unwrap().expect("the first task").1, b"first");
    let next = server.exec(b"next", b"mine").unwrap();
    assert_eq!((next.context(), next.body()), (&b"next"[..], &b"mine"[..]), "the answer of a task given up");
    assert_eq!(server.workers().unwrap()[0].num_execs, 2, "the task given up ran");
}

on_every_relay!(
    waiting_callers_get_their_own_outcomes,
    a_waiting_task_that_crashes_its_worker_fails_alone,
    a_worker_gone_before_a_waiting_task_reached_it_is_replaced,
    a_waiting_task_is_bound_by_exec_ttl,
    a_caller_that_timed_out_never_has_its_task_run,
);

/// Pins the calling thread, and the threads it starts from now on, to the CPU it runs
/// on: waiting callers on one CPU are served in the order they came.
fn pin_to_this_cpu() {
    // SAFETY: plain libc calls on a local cpu_set_t; 0 is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

/// The caller that frees a worker never waits for the worker to read the next waiting
/// caller's task: a worker that stops reading holds up only the caller whose task it is.
#[test]
fn a_freeing_caller_never_waits_for_the_worker_to_read_a_waiting_task() {
    common::isolated(|| {
        let (server, _dir) = server_with(Relay::Pipes, 1, |c| c.destroy_timeout = Duration::from_millis(500));
        pin_to_this_cpu();
        // The worker's stdin pipe now takes less than a task that is sent ahead.
        let size: usize =
            String::from_utf8_lossy(server.exec(b"!pipe-size:4096", b"").unwrap().body()).parse().unwrap();
        assert!(size < 16 * 1024, "the pipe is {size} bytes");
        let first = exec_in_background(&server, "!sleep:300", b"first");
        assert!(common::wait_until(10, || server.workers().unwrap()[0].state == roadrunner::WorkerState::Working));
        // Answers, then never reads its pipe again.
        let deaf = exec_in_background(&server, "!deaf", b"deaf");
        wait_for_waiting(&server, 1);
        let stuck = exec_in_background(&server, "stuck", &vec![b's'; 16 * 1024 - 16]);
        wait_for_waiting(&server, 2);
        assert_eq!(join_in_time(first, "the first task").unwrap().1, b"first");
        // The deaf task's caller frees the worker and sends the stuck task to it.
        let (context, body) = join_in_time(deaf, "the caller that freed a worker that no longer reads").unwrap();
        assert_eq!((context, body), (b"!deaf".to_vec(), b"deaf".to_vec()));
        assert!(!stuck.is_finished(), "the stuck task cannot have been answered");
        server.stop().unwrap();
        assert!(join_in_time(stuck, "the stuck task, after stop").is_err());
    });
}
