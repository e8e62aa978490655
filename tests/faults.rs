//! Fault injection: under load from many threads, and from one thread keeping 64 tasks
//! in flight through a completion queue (some of them cancelled), workers are killed,
//! crash mid-task, print to stdout, hang, declare huge frames, outgrow their memory and
//! ask to stop. Every submitted task completes exactly once.
//! Every worker logs the id of each task it runs; afterwards, against that log: no task
//! ran twice, every answered task ran exactly once, no answer went to another task,
//! every task has its right answer or a clear error, the pool is back at full size, and
//! no file descriptor or child process is left. `RR_SOAK_SECONDS` makes the run longer
//! (`make soak`).

mod common;
use common::{relay, Relay};
use roadrunner::{CompletionQueue, ErrorKind, Protocol, Server, WorkerState};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: u64 = 4;
const THREADS: usize = 8;
/// Tasks the submitting thread keeps in flight.
const IN_FLIGHT: usize = 64;

/// What a task asks of its worker, and which outcomes are right for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    JobError,
    Crash,
    Stdout,
    Hang,
    HugeFrame,
    Memory,
    StopRequest,
}

impl Fault {
    fn pick(roll: u64) -> Fault {
        match roll % 100 {
            0..=71 => Fault::None,
            72..=75 => Fault::JobError,
            76..=79 => Fault::Crash,
            80..=83 => Fault::Stdout,
            84..=86 => Fault::Hang,
            87..=90 => Fault::HugeFrame,
            91..=95 => Fault::Memory,
            _ => Fault::StopRequest,
        }
    }

    fn context(self) -> &'static [u8] {
        match self {
            Fault::None => b"",
            Fault::JobError => b"!error",
            Fault::Crash => b"!crash",
            Fault::Stdout => b"!stdout",
            Fault::Hang => b"!hang",
            Fault::HugeFrame => b"!huge",
            Fault::Memory => b"!alloc:40000000",
            Fault::StopRequest => b"!stop",
        }
    }

    /// The error kind this fault must produce when the task fails because of it.
    fn expected_error(self) -> Option<ErrorKind> {
        match self {
            Fault::None | Fault::Memory => None,
            Fault::JobError => Some(ErrorKind::JobError),
            Fault::Hang => Some(ErrorKind::ExecTtl),
            Fault::Crash | Fault::Stdout | Fault::HugeFrame | Fault::StopRequest => Some(ErrorKind::WorkerError),
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What one task was and how it ended, as its caller saw it.
struct TaskRecord {
    id: String,
    fault: Fault,
    /// `None`: answered with the task's own body. `Some(kind)`: failed so.
    error: Option<ErrorKind>,
    /// Answered, but with bytes that are not this task's.
    wrong_answer: bool,
    /// Cancelled by its submitter (it may have completed first).
    cancelled: bool,
}

impl TaskRecord {
    fn new(id: String, fault: Fault, outcome: &roadrunner::Result<roadrunner::Payload>, cancelled: bool) -> TaskRecord {
        let (error, wrong_answer) = match outcome {
            Ok(answer) => (None, answer.body() != id.as_bytes()),
            Err(error) => {
                assert!(!error.message().is_empty(), "{fault:?} task {id}: an error without a message");
                let wrong = error.kind() == ErrorKind::JobError && error.data() != id.as_bytes();
                (Some(error.kind()), wrong)
            }
        };
        TaskRecord { id, fault, error, wrong_answer, cancelled }
    }
}

/// Keeps `IN_FLIGHT` tasks submitted until `deadline`, cancels about one in 40 right
/// after submitting it, then takes every outstanding completion: each task must
/// complete exactly once.
fn submit_until(server: &Server, deadline: Instant) -> Vec<TaskRecord> {
    let queue = CompletionQueue::new().unwrap();
    let mut rng = 0x51f15e5d2a7c3b19u64;
    let mut outstanding: std::collections::HashMap<u64, (String, Fault, bool)> = std::collections::HashMap::new();
    let mut records = Vec::new();
    let mut next_tag = 0u64;
    loop {
        let submitting = Instant::now() < deadline;
        while submitting && outstanding.len() < IN_FLIGHT {
            let roll = xorshift(&mut rng);
            let fault = Fault::pick(roll);
            let id = format!("submitted task {next_tag}");
            match server.submit(&queue, fault.context(), id.as_bytes(), next_tag) {
                Ok(()) => {
                    let cancel = roll % 40 == 7;
                    if cancel {
                        queue.cancel(next_tag);
                    }
                    outstanding.insert(next_tag, (id, fault, cancel));
                }
                Err(error) => records.push(TaskRecord::new(id, fault, &Err(error), false)),
            }
            next_tag += 1;
        }
        if !submitting && outstanding.is_empty() {
            break;
        }
        let completion = queue.next(Some(Duration::from_secs(30))).unwrap_or_else(|| {
            panic!("{} submitted tasks never completed, e.g. {:?}", outstanding.len(), outstanding.values().next())
        });
        let (id, fault, cancelled) =
            outstanding.remove(&completion.tag).unwrap_or_else(|| panic!("tag {} completed twice", completion.tag));
        records.push(TaskRecord::new(id, fault, &completion.result, cancelled));
    }
    assert!(queue.next(Some(Duration::ZERO)).is_none(), "a completion after every task completed");
    records
}

/// The ids the workers logged, each time one ran a task (`RR_TEST_TASK_LOG`).
fn runs_logged(log: &std::path::Path) -> std::collections::HashMap<String, u64> {
    let mut runs = std::collections::HashMap::new();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for id in text.lines() {
        *runs.entry(id.to_string()).or_insert(0) += 1;
    }
    runs
}

fn run_faults(kind: Relay, protocol: Protocol, duration: Duration, shape: impl FnOnce(&mut roadrunner::Config)) {
    let fds_before = open_fds();
    let (relay, dir) = relay(kind);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("tasks.log");
    let mut config = common::config(&relay, "echo", WORKERS);
    config.exec_ttl = Duration::from_millis(300);
    config.max_memory = 30 << 20;
    config.max_frame_bytes = 1 << 20;
    config.allocate_timeout = Duration::from_secs(30);
    config.destroy_timeout = Duration::from_secs(2);
    config.env.push(("RR_TEST_TASK_LOG".into(), log.display().to_string()));
    if protocol == Protocol::V2 {
        common::v2(&mut config);
    }
    shape(&mut config);
    let server = Arc::new(Server::new(config).unwrap());
    server.start().unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let chaos = {
        let (server, done, kills) = (server.clone(), done.clone(), kills.clone());
        std::thread::spawn(move || {
            let mut rng = 0x9e3779b97f4a7c15u64;
            let mut victims = std::collections::HashSet::new();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(40));
                let workers = server.workers().unwrap();
                if workers.is_empty() {
                    continue;
                }
                let victim = workers[(xorshift(&mut rng) % workers.len() as u64) as usize].pid;
                // SAFETY: signalling a listed worker of ours; at worst it already exited
                // and is still unreaped (the pool reaps only under its own lock).
                unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                victims.insert(victim);
                kills.fetch_add(1, Ordering::Relaxed);
            }
            victims
        })
    };

    let deadline = Instant::now() + duration;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let server = server.clone();
            std::thread::spawn(move || {
                let mut rng = 0x2545f4914f6cdd1du64 ^ ((t as u64 + 1) * 0x1000193);
                let mut records = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let fault = Fault::pick(xorshift(&mut rng));
                    let id = format!("thread {t} task {i}");
                    i += 1;
                    let outcome = server.exec(fault.context(), id.as_bytes());
                    records.push(TaskRecord::new(id, fault, &outcome, false));
                }
                records
            })
        })
        .collect();
    let submitter = {
        let server = server.clone();
        std::thread::spawn(move || submit_until(&server, deadline))
    };
    let mut records = submitter.join().expect("the submitting thread returns");
    for thread in threads {
        records.append(&mut thread.join().expect("every caller returns"));
    }
    done.store(true, Ordering::Relaxed);
    let victims = chaos.join().unwrap();

    // The last SIGKILL may still be on its way to the pool: wait until every victim is gone.
    // A static pool comes back to its size; an elastic one to its floor (its extras idle).
    let floor = server.config().num_workers as usize;
    assert!(
        common::wait_until(20, || {
            let workers = server.workers().unwrap();
            workers.len() == floor && workers.iter().all(|w| w.state == WorkerState::Ready && !victims.contains(&w.pid))
        }),
        "the pool must come back to full size: {:?}",
        server.workers()
    );
    for i in 0..200 {
        let body = format!("after the storm {i}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    let stats = server.stats().unwrap();
    let children_during = common::children().len();
    drop(Arc::try_unwrap(server).ok().expect("the last reference"));
    drop(dir);
    let fds_after = open_fds();
    let children_after = common::children().len();

    // What ran, by the workers' own log, against what the callers saw.
    let runs = runs_logged(&log);
    let ids: std::collections::HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    let ran_twice: Vec<_> = records.iter().filter(|r| runs.get(&r.id).copied().unwrap_or(0) > 1).collect();
    let answered_not_run: Vec<_> = records.iter().filter(|r| r.error.is_none() && !runs.contains_key(&r.id)).collect();
    let wrong_answers: Vec<_> = records.iter().filter(|r| r.wrong_answer).collect();
    let unexpected: Vec<_> = records
        .iter()
        .filter(|r| match r.error {
            None => !matches!(r.fault, Fault::None | Fault::Memory),
            // A chaos kill may hit any task mid-way: that is a worker error; on a loaded
            // machine any task may run past exec_ttl.
            Some(ErrorKind::WorkerError | ErrorKind::ExecTtl) => false,
            Some(ErrorKind::Cancelled) => !r.cancelled,
            Some(kind) => r.fault.expected_error() != Some(kind),
        })
        .collect();
    let stop_requests_run: Vec<_> =
        records.iter().filter(|r| r.fault == Fault::StopRequest && runs.contains_key(&r.id)).collect();
    let after_the_storm = (0..200).filter(|i| runs.get(&format!("after the storm {i}")) == Some(&1)).count();
    let strangers: Vec<_> =
        runs.keys().filter(|id| !ids.contains(id.as_str()) && !id.starts_with("after the storm")).collect();
    let answered_records: Vec<_> =
        records.iter().filter(|r| r.error.is_none() || r.error == Some(ErrorKind::JobError)).collect();
    let submitted = records.iter().filter(|r| r.id.starts_with("submitted")).count();
    let cancelled = records.iter().filter(|r| r.error == Some(ErrorKind::Cancelled)).count();
    let answered = answered_records.len();
    let answered_ran_once = answered_records.iter().filter(|r| runs.get(&r.id) == Some(&1)).count();
    let failed_after_running = records
        .iter()
        .filter(|r| r.error.is_some() && r.error != Some(ErrorKind::JobError) && runs.contains_key(&r.id))
        .count();
    let failed_unrun = records
        .iter()
        .filter(|r| r.error.is_some() && r.error != Some(ErrorKind::JobError) && !runs.contains_key(&r.id))
        .count();
    let faults = records.iter().filter(|r| r.fault != Fault::None).count();
    eprintln!(
        "faults over {kind:?}, protocol {protocol:?}, for {duration:?}: {} tasks ({submitted} submitted, {cancelled} cancelled), {faults} with an injected fault, {} SIGKILLs; \
         by the workers' log: {answered} answered, {answered_ran_once} of them ran exactly once, {failed_after_running} failed after they ran, {failed_unrun} failed before any worker ran them, \
         {} ran twice, {} answered without running, {} wrong answers, {} stop requests run, {} unknown ids; \
         fds {fds_before} before / {fds_after} after; children {children_during} during / {children_after} after; {stats:?}",
        records.len(),
        kills.load(Ordering::Relaxed),
        ran_twice.len(),
        answered_not_run.len(),
        wrong_answers.len(),
        stop_requests_run.len(),
        strangers.len(),
    );
    let mut tally: BTreeMap<(Fault, String), u64> = BTreeMap::new();
    for record in &records {
        let outcome = record.error.map_or("ok".to_string(), |kind| format!("{kind:?}"));
        *tally.entry((record.fault, outcome)).or_default() += 1;
    }
    for ((fault, outcome), count) in &tally {
        eprintln!("  {fault:?} -> {outcome}: {count}");
    }
    let ids_of = |records: &[&TaskRecord]| records.iter().take(5).map(|r| r.id.clone()).collect::<Vec<_>>();
    assert!(ran_twice.is_empty(), "tasks that ran twice: {:?}", ids_of(&ran_twice));
    assert!(answered_not_run.is_empty(), "answers to tasks no worker ran: {:?}", ids_of(&answered_not_run));
    assert_eq!(answered_ran_once, answered, "every answered task ran exactly once");
    assert!(wrong_answers.is_empty(), "answers that went to another task: {:?}", ids_of(&wrong_answers));
    assert!(unexpected.is_empty(), "unexpected outcomes: {:?}", ids_of(&unexpected));
    assert!(stop_requests_run.is_empty(), "stop requests that ran: {:?}", ids_of(&stop_requests_run));
    assert!(strangers.is_empty(), "the workers ran tasks nobody submitted: {strangers:?}");
    assert_eq!(after_the_storm, 200, "the tasks after the storm each ran once");
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    assert!(answered > 100, "the load ran ({answered} tasks answered)");
    assert!(submitted > 100 && cancelled > 0, "the submitted load ran ({submitted} tasks, {cancelled} cancelled)");
}

fn soak_duration() -> Duration {
    let seconds = std::env::var("RR_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    Duration::from_secs(seconds)
}

fn faults_under_load(kind: Relay) {
    run_faults(kind, Protocol::V1, soak_duration(), |_| {});
}

fn faults_under_load_v2(kind: Relay) {
    run_faults(kind, Protocol::V2, soak_duration(), |_| {});
}

/// The same storm on an elastic pool that grows and shrinks all the time (a floor of 1,
/// growth after 2 ms of waiting, extras retired after 30 ms idle): no task is lost or
/// run twice while workers come and go for their own reasons too.
fn faults_under_load_elastic(kind: Relay) {
    run_faults(kind, Protocol::V1, soak_duration(), |config| {
        config.num_workers = 1;
        config.max_workers = WORKERS * 2;
        config.scale_after = Duration::from_millis(2);
        config.scale_idle = Duration::from_millis(30);
    });
}

on_every_relay!(faults_under_load, faults_under_load_v2, faults_under_load_elastic);

#[test]
fn no_worker_survives_a_host_killed_with_sigkill() {
    common::isolated(|| {
        for relay_kind in [Relay::Pipes, Relay::Unix] {
            let (relay, _dir) = relay(relay_kind);
            let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_rr-test-host"))
                .args([common::worker_path(), relay.as_str(), "4"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut pids = Vec::new();
            for line in std::io::BufReader::new(host.stdout.take().unwrap()).lines() {
                let line = line.unwrap();
                if line == "ready" {
                    break;
                }
                pids.push(line.parse::<i32>().unwrap());
            }
            assert_eq!(pids.len(), 4);
            host.kill().unwrap();
            host.wait().unwrap();
            let alive = |pid: &i32| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|stat| {
                        !stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')).unwrap_or(true)
                    })
                    .unwrap_or(false)
            };
            assert!(
                common::wait_until(10, || !pids.iter().any(alive)),
                "workers outlived their host: {:?}",
                pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
            );
        }
    });
}
