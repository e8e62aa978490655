//! Fault injection: under load from many threads, workers are killed, crash mid-task,
//! print to stdout, hang, declare huge frames, outgrow their memory and ask to stop.
//! Afterwards every task has either its right answer or a clear error, the pool is back
//! at full size, and no file descriptor or child process is left. `RR_SOAK_SECONDS`
//! makes the run longer (`make soak`).

mod common;
use common::{relay, Relay};
use roadrunner::{ErrorKind, Server, WorkerState};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: u64 = 4;
const THREADS: usize = 8;

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

fn run_faults(kind: Relay, duration: Duration) {
    let fds_before = open_fds();
    let (relay, dir) = relay(kind);
    let mut config = common::config(&relay, "echo", WORKERS);
    config.exec_ttl = Duration::from_millis(300);
    config.max_memory = 30 << 20;
    config.max_frame_bytes = 1 << 20;
    config.allocate_timeout = Duration::from_secs(30);
    config.destroy_timeout = Duration::from_secs(2);
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
                let mut tally: BTreeMap<(Fault, String), u64> = BTreeMap::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let fault = Fault::pick(xorshift(&mut rng));
                    let body = format!("thread {t} task {i}");
                    i += 1;
                    let outcome = server.exec(fault.context(), body.as_bytes());
                    let label = match &outcome {
                        Ok(answer) => {
                            assert!(
                                matches!(fault, Fault::None | Fault::Memory),
                                "{fault:?} task {body} got an answer: {answer:?}"
                            );
                            assert_eq!(answer.body(), body.as_bytes(), "an answer went to the wrong task");
                            "ok".to_string()
                        }
                        Err(error) => {
                            // A chaos kill may hit any task mid-way: that is a worker error;
                            // on a loaded machine any task may run past exec_ttl.
                            let side_effect = matches!(error.kind(), ErrorKind::WorkerError | ErrorKind::ExecTtl);
                            assert!(
                                fault.expected_error() == Some(error.kind()) || side_effect,
                                "{fault:?} task {body} failed with an unexpected error: {error}"
                            );
                            assert!(!error.message().is_empty());
                            if error.kind() == ErrorKind::JobError {
                                assert_eq!(error.data(), body.as_bytes());
                            }
                            format!("{:?}", error.kind())
                        }
                    };
                    *tally.entry((fault, label)).or_default() += 1;
                }
                tally
            })
        })
        .collect();
    let mut tally: BTreeMap<(Fault, String), u64> = BTreeMap::new();
    for thread in threads {
        for (key, count) in thread.join().expect("every task got a right answer or a clear error") {
            *tally.entry(key).or_default() += count;
        }
    }
    done.store(true, Ordering::Relaxed);
    let victims = chaos.join().unwrap();

    // The last SIGKILL may still be on its way to the pool: wait until every victim is gone.
    assert!(
        common::wait_until(20, || {
            let workers = server.workers().unwrap();
            workers.len() == WORKERS as usize
                && workers.iter().all(|w| w.state == WorkerState::Ready && !victims.contains(&w.pid))
        }),
        "the pool must come back to full size: {:?}",
        server.workers()
    );
    for i in 0..200 {
        let body = format!("after the storm {i}");
        assert_eq!(server.exec(b"", body.as_bytes()).unwrap().body(), body.as_bytes());
    }
    let stats = server.stats().unwrap();
    let tasks: u64 = tally.values().sum();
    let faults: u64 = tally.iter().filter(|((fault, _), _)| *fault != Fault::None).map(|(_, n)| n).sum();
    let children_during = common::children().len();
    drop(Arc::try_unwrap(server).ok().expect("the last reference"));
    drop(dir);
    let fds_after = open_fds();
    let children_after = common::children().len();
    eprintln!(
        "faults over {kind:?} for {duration:?}: {tasks} tasks, {faults} injected faults, {} SIGKILLs, 0 lost; \
         fds {fds_before} before / {fds_after} after; children {children_during} during / {children_after} after; {stats:?}",
        kills.load(Ordering::Relaxed)
    );
    for ((fault, outcome), count) in &tally {
        eprintln!("  {fault:?} -> {outcome}: {count}");
    }
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    assert!(tasks > 100, "the load ran ({tasks} tasks)");
}

fn soak_duration() -> Duration {
    let seconds = std::env::var("RR_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    Duration::from_secs(seconds)
}

fn faults_under_load(kind: Relay) {
    run_faults(kind, soak_duration());
}

on_every_relay!(faults_under_load);

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
