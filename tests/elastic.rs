//! The elastic pool (`shared/SPEC.md` section 5): growth while callers wait, shrink
//! when extra workers idle, the ceiling, on-demand pools, and the rest of the pool's
//! behaviour (limits, reset, stop) on an elastic pool.

mod common;
use common::{children, pids, Events};
use roadrunner::{Config, ErrorKind, EventKind, Server};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn elastic(floor: u64, ceiling: u64, change: impl FnOnce(&mut Config)) -> Server {
    common::started_with("pipes", "echo", floor, |config| {
        config.max_workers = ceiling;
        config.jitter_percent = 0;
        change(config);
    })
}

/// Runs `callers` threads at once, each running `task` once; returns how long the
/// whole burst took, and checks every answer.
fn burst(server: &Arc<Server>, callers: usize, context: &'static [u8]) -> Duration {
    let started = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|i| {
            let server = server.clone();
            std::thread::spawn(move || {
                let body = format!("caller {i}");
                let answer = server.exec(context, body.as_bytes()).expect("the task runs");
                assert_eq!(answer.body(), body.as_bytes());
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    started.elapsed()
}

/// Samples how many processes this test process has, until `stop`; returns the most seen.
fn sample_children(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            most = most.max(children().len());
            std::thread::sleep(Duration::from_millis(1));
        }
        most
    })
}

#[test]
fn a_burst_of_slow_tasks_grows_the_pool_and_finishes_in_about_one_tasks_time() {
    common::isolated(|| {
        const TASK_MS: u64 = 400;
        let server = Arc::new(elastic(1, 32, |_| {}));
        let events = Events::listen(&server);
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_children(stop.clone());
        // 16 callers of a 400 ms task: one worker would take 6.4 s.
        let took = burst(&server, 16, b"!sleep:400");
        stop.store(true, Ordering::Relaxed);
        let most = sampler.join().unwrap();
        assert!(
            took < Duration::from_millis(TASK_MS * 5),
            "16 tasks of {TASK_MS} ms took {took:?}: the pool did not grow in time"
        );
        // Never more workers than callers (16), though the ceiling is 32.
        assert!(most <= 16, "{most} workers for 16 callers");
        assert!(most >= 8, "the pool grew only to {most}");
        server.flush_events();
        let grow = events.of(EventKind::PoolGrow);
        assert!(!grow.is_empty(), "no grow event");
        assert!(grow[0].message.as_deref().unwrap().contains("more worker"), "{grow:?}");
        let stats = server.stats().unwrap();
        assert!(stats.workers_spawned >= most as u64, "{stats:?}");
        assert_eq!(stats.tasks_done, 16);
    });
}

#[test]
fn the_steps_double_up_to_spawn_rate() {
    common::isolated(|| {
        let server = Arc::new(elastic(1, 64, |c| c.spawn_rate = 4));
        let events = Events::listen(&server);
        burst(&server, 24, b"!sleep:300");
        server.flush_events();
        let steps: Vec<usize> = events
            .of(EventKind::PoolGrow)
            .iter()
            .map(|e| {
                let message = e.message.as_deref().unwrap();
                message.split_whitespace().nth(1).unwrap().parse().unwrap()
            })
            .collect();
        assert!(steps.len() >= 3, "{steps:?}");
        assert_eq!(steps[..3], [1, 2, 4], "steps 1, 2, 4: {steps:?}");
        assert!(steps.iter().all(|&step| step <= 4), "a step above spawn_rate: {steps:?}");
    });
}

#[test]
fn the_ceiling_is_never_passed_even_while_workers_are_replaced() {
    common::isolated(|| {
        // max_jobs 2: workers keep leaving and being replaced under load; the ones
        // stopping count toward the ceiling too.
        let server = Arc::new(elastic(1, 4, |c| {
            c.max_jobs = 2;
            c.scale_after = Duration::from_millis(1);
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = sample_children(stop.clone());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let server = server.clone();
                std::thread::spawn(move || {
                    for n in 0..10 {
                        let body = format!("{i}/{n}");
                        assert_eq!(server.exec(b"!sleep:5", body.as_bytes()).unwrap().body(), body.as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let most = sampler.join().unwrap();
        assert!(most <= 4, "{most} worker processes with a ceiling of 4");
        let stats = server.stats().unwrap();
        assert!(stats.retired_max_jobs >= 10, "{stats:?}");
        assert!(server.workers().unwrap().len() <= 4);
    });
}

#[test]
fn idleness_shrinks_the_pool_back_to_its_floor() {
    common::isolated(|| {
        let server = Arc::new(elastic(2, 8, |c| c.scale_idle = Duration::from_millis(300)));
        let events = Events::listen(&server);
        burst(&server, 8, b"!sleep:300");
        let grown = server.stats().unwrap().workers_spawned;
        assert!(grown > 2, "the pool never grew");
        assert!(common::wait_until(20, || pids(&server).len() == 2), "{:?}", server.workers());
        // No lower than the floor, however long it idles.
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(pids(&server).len(), 2);
        server.flush_events();
        let shrunk = events.of(EventKind::PoolShrink);
        assert_eq!(shrunk.len() as u64, grown - 2, "{shrunk:?}");
        assert!(shrunk.iter().all(|e| e.pid.is_some()));
        assert_eq!(server.stats().unwrap().retired_shrink, grown - 2);
        assert_eq!(server.exec(b"", b"still serving").unwrap().body(), b"still serving");
    });
}

#[test]
fn an_on_demand_pool_starts_with_no_worker_and_serves_its_first_task() {
    common::isolated(|| {
        let server = elastic(0, 2, |c| c.scale_idle = Duration::from_millis(200));
        assert!(server.workers().unwrap().is_empty());
        assert!(children().is_empty());
        let started = Instant::now();
        assert_eq!(server.exec(b"", b"first").unwrap().body(), b"first");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(server.stats().unwrap().workers_spawned, 1);
        // Back to no worker once it idled.
        assert!(common::wait_until(20, || server.workers().unwrap().is_empty()));
        assert_eq!(server.exec(b"", b"again").unwrap().body(), b"again");
    });
}

#[test]
fn an_on_demand_pool_whose_workers_cannot_start_fails_its_caller_with_the_reason() {
    common::isolated(|| {
        let mut config = common::config("pipes", "failboot", 0);
        config.max_workers = 2;
        config.allocate_timeout = Duration::from_secs(60);
        let server = Server::new(config).unwrap();
        server.start().unwrap();
        let started = Instant::now();
        let error = server.exec(b"", b"x").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
        assert_ne!(error.kind(), ErrorKind::Timeout, "{error}");
        assert!(error.message().contains("failboot"), "{error}");
        drop(server);
    });
}

#[test]
fn no_task_is_lost_while_the_pool_grows_and_shrinks_under_load() {
    common::isolated(|| {
        let server = Arc::new(elastic(1, 6, |c| {
            c.scale_after = Duration::from_millis(2);
            c.scale_idle = Duration::from_millis(20);
        }));
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let server = server.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    for n in 0..40 {
                        let body = format!("{i}/{n}");
                        assert_eq!(server.exec(b"!sleep:3", body.as_bytes()).unwrap().body(), body.as_bytes());
                        done.fetch_add(1, Ordering::Relaxed);
                        // Load that comes and goes, so that the pool shrinks between bursts.
                        if n % 10 == 9 {
                            std::thread::sleep(Duration::from_millis(60 + 10 * i as u64));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(done.load(Ordering::Relaxed), 240);
        let stats = server.stats().unwrap();
        assert_eq!(stats.tasks_done, 240);
        assert_eq!(stats.worker_errors, 0, "{stats:?}");
        assert!(stats.retired_shrink >= 1, "the pool never shrank: {stats:?}");
        assert!(stats.workers_spawned > 2, "the pool never grew: {stats:?}");
    });
}

#[test]
fn reset_and_stop_work_on_a_grown_pool() {
    common::isolated(|| {
        let server = Arc::new(elastic(1, 8, |_| {}));
        burst(&server, 6, b"!sleep:200");
        assert!(pids(&server).len() > 1);
        server.reset().unwrap();
        // A new pool starts at its floor.
        assert_eq!(pids(&server).len(), 1);
        burst(&server, 4, b"!sleep:100");
        server.stop().unwrap();
        assert!(children().is_empty());
    });
}

#[test]
fn the_config_checks_floor_ceiling_and_rate() {
    let refused = |change: fn(&mut Config), setting: &str| {
        let mut config = common::config("pipes", "echo", 2);
        change(&mut config);
        let error = config.validate().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(setting), "{error}");
    };
    refused(|c| c.max_workers = 1, "max_workers");
    refused(|c| c.spawn_rate = 0, "spawn_rate");
    refused(|c| c.scale_after = Duration::ZERO, "scale_after");
    refused(|c| c.scale_idle = Duration::ZERO, "scale_idle");
    refused(|c| c.name = String::new(), "name");
    refused(|c| c.name = "a\nb".into(), "name");
    refused(
        |c| {
            c.num_workers = 0;
            c.max_workers = 0;
        },
        "num_workers",
    );
    let mut on_demand = common::config("pipes", "echo", 0);
    on_demand.max_workers = 3;
    assert!(on_demand.validate().is_ok());
    assert!(on_demand.is_elastic());
    assert_eq!(on_demand.ceiling(), 3);
}

/// CPU time this process used (user and system), from getrusage.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) }, 0);
    // SAFETY: filled above.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time this process uses in one second of wall time in which it has nothing to do.
fn cpu_of_an_idle_second() -> Duration {
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    cpu_time() - before
}

#[test]
fn the_supervisor_rests_after_growth_that_failed_and_on_a_retired_pool() {
    common::isolated(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fail");
        let server = Arc::new(common::started_with("pipes", &format!("failboot-if {}", path.display()), 1, |c| {
            c.max_workers = 4;
            c.scale_idle = Duration::from_millis(20);
        }));
        // From now on, new workers fail to start.
        std::fs::write(&path, b"fail").unwrap();
        // Growth while the command fails, with a worker still serving: the round fails,
        // the pool goes on with the worker it has.
        burst(&server, 3, b"!sleep:200");
        std::fs::remove_file(&path).unwrap();
        assert!(server.stats().unwrap().workers_spawned >= 1);
        let idle = cpu_of_an_idle_second();
        assert!(idle < Duration::from_millis(400), "{idle:?} of CPU in an idle second after a failed growth");

        // A retired elastic pool whose old task still runs: its supervisor waits too.
        let slow = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"!sleep:2500", b"old pool"))
        };
        assert!(common::wait_until(10, || {
            server.workers().unwrap().iter().any(|w| w.state == roadrunner::WorkerState::Working)
        }));
        server.reset().unwrap();
        let idle = cpu_of_an_idle_second();
        assert!(idle < Duration::from_millis(400), "{idle:?} of CPU in a second of a retired pool's stop");
        assert_eq!(slow.join().unwrap().unwrap().body(), b"old pool");
    });
}

#[test]
fn idle_ttl_below_scale_idle_still_shrinks_an_elastic_pool() {
    common::isolated(|| {
        let server = Arc::new(elastic(1, 4, |c| {
            c.idle_ttl = Duration::from_millis(150);
            c.scale_idle = Duration::from_millis(400);
        }));
        burst(&server, 4, b"!sleep:300");
        assert!(server.stats().unwrap().workers_spawned >= 3);
        // Extras that leave for idle_ttl are not replaced: the pool comes back to its floor.
        assert!(common::wait_until(20, || pids(&server).len() == 1), "{:?}", server.workers());
        let spawned = server.stats().unwrap().workers_spawned;
        // ... and stays there: the floor's worker alone is replaced when it idles too long.
        assert!(common::wait_until(20, || server.stats().unwrap().retired_idle_ttl >= spawned));
        let stats = server.stats().unwrap();
        assert!(
            stats.workers_spawned <= spawned + 3,
            "extras keep being replaced: {} spawns after settling at {spawned}",
            stats.workers_spawned
        );
    });
}
