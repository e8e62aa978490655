//! Status export and per-worker control (`shared/SPEC.md` section 6): the status
//! document and the metrics of a running pool, removing one worker by pid, and a
//! reconfigure that ignores the relay settings as RoadRunner's does.

mod common;
use common::{exec_pid, pids, Events};
use roadrunner::{Config, ErrorKind, EventKind, Server, WorkerState};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn the_status_lists_the_pool_and_the_age_of_a_running_task() {
    common::isolated(|| {
        let server = Arc::new(common::started_with("pipes", "echo", 2, |c| {
            c.name = "checkout".into();
            c.max_workers = 4;
        }));
        server.exec(b"", b"one").unwrap();
        let busy = {
            let server = server.clone();
            std::thread::spawn(move || server.exec(b"!sleep:600", b"slow").unwrap())
        };
        assert!(common::wait_until(10, || {
            let status = server.status().unwrap();
            status.workers.iter().any(|w| w.task_age.is_some_and(|age| age >= Duration::from_millis(100)))
        }));
        let document: Value = serde_json::from_str(&server.status().unwrap().to_json()).unwrap();
        assert_eq!(document["name"], "checkout");
        assert_eq!(document["protocol"], 1);
        assert_eq!(document["relay"], "pipes");
        assert_eq!(document["workers_min"], 2);
        assert_eq!(document["workers_max"], 4);
        assert_eq!(document["counters"]["tasks_done"], 1);
        let workers = document["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        let mut listed: Vec<u64> = workers.iter().map(|w| w["pid"].as_u64().unwrap()).collect();
        listed.sort();
        assert_eq!(listed, pids(&server).iter().map(|&p| p as u64).collect::<Vec<_>>());
        let working: Vec<_> = workers.iter().filter(|w| w["state_name"] == "working").collect();
        assert_eq!(working.len(), 1, "{workers:?}");
        assert!(working[0]["task_ms"].as_u64().unwrap() >= 100);
        assert_eq!(working[0]["state"], WorkerState::Working as i32);
        let idle: Vec<_> = workers.iter().filter(|w| w["state_name"] == "ready").collect();
        assert_eq!(idle[0]["task_ms"], Value::Null);
        assert!(idle[0]["rss_bytes"].as_u64().unwrap() > 0);
        assert!(idle[0]["created_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
        busy.join().unwrap();
    });
}

#[test]
fn the_metrics_count_each_outcome() {
    common::isolated(|| {
        let server = common::started_with("pipes", "echo", 1, |c| {
            c.exec_ttl = Duration::from_millis(300);
            c.name = "web".into();
        });
        server.exec(b"", b"ok").unwrap();
        server.exec(b"", b"ok").unwrap();
        assert_eq!(server.exec(b"!error", b"bad").unwrap_err().kind(), ErrorKind::JobError);
        assert_eq!(server.exec(b"!sleep:5000", b"").unwrap_err().kind(), ErrorKind::ExecTtl);
        assert_eq!(server.exec(b"!crash", b"").unwrap_err().kind(), ErrorKind::WorkerError);
        let text = server.status().unwrap().to_openmetrics();
        let sample = |name: &str| -> u64 {
            let line = text.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name}: {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(sample("rr_tasks_total{pool=\"web\",outcome=\"ok\"}"), 2);
        assert_eq!(sample("rr_tasks_total{pool=\"web\",outcome=\"job_error\"}"), 1);
        assert_eq!(sample("rr_tasks_total{pool=\"web\",outcome=\"exec_ttl\"}"), 1);
        assert_eq!(sample("rr_tasks_total{pool=\"web\",outcome=\"worker_error\"}"), 1);
        assert_eq!(sample("rr_workers_retired_total{pool=\"web\",reason=\"failed\"}"), 2);
        // The first worker, and one replacement per failure (the last may be starting).
        assert!(sample("rr_workers_spawned_total{pool=\"web\"}") >= 2);
        assert_eq!(sample("rr_workers_max{pool=\"web\"}"), 1);
        assert!(text.ends_with("# EOF\n"));
    });
}

#[test]
fn removing_an_idle_worker_replaces_it() {
    common::isolated(|| {
        for kill in [false, true] {
            let server = common::started("pipes", "echo", 2);
            let events = Events::listen(&server);
            let before = pids(&server);
            server.remove_worker(before[0], kill).unwrap();
            events.wait_for("removed", |e| e.kind == EventKind::WorkerRemoved && e.pid == Some(before[0]));
            assert!(common::wait_until(10, || {
                let now = pids(&server);
                now.len() == 2 && !now.contains(&before[0]) && now.contains(&before[1])
            }));
            assert_eq!(server.stats().unwrap().retired_removed, 1);
            assert_eq!(server.exec(b"", b"served").unwrap().body(), b"served");
            // Asked to leave, not dead: no death is reported.
            server.flush_events();
            assert!(events.of(EventKind::WorkerDead).is_empty(), "{:?}", events.all());
        }
    });
}

/// A server of one worker (its pid) running a task (`context`, `body`) on another thread.
fn one_busy_worker(
    context: &'static [u8],
    body: &'static [u8],
) -> (Arc<Server>, u32, std::thread::JoinHandle<roadrunner::Result<roadrunner::Payload>>) {
    let server = Arc::new(common::started("pipes", "echo", 1));
    let pid = exec_pid(&server);
    let task = {
        let server = server.clone();
        std::thread::spawn(move || server.exec(context, body))
    };
    // Working, and long enough that the task has surely reached the worker (a worker
    // killed before it read its task would have that task run on another one).
    assert!(common::wait_until(10, || {
        server.status().unwrap().workers[0].task_age.is_some_and(|age| age >= Duration::from_millis(100))
    }));
    (server, pid, task)
}

#[test]
fn removing_a_busy_worker_gently_lets_its_task_finish() {
    common::isolated(|| {
        let (server, pid, task) = one_busy_worker(b"!sleep:400", b"finished");
        server.remove_worker(pid, false).unwrap();
        assert_eq!(task.join().unwrap().unwrap().body(), b"finished");
        assert_ne!(exec_pid(&server), pid);
        assert_eq!(server.stats().unwrap().retired_removed, 1);
    });
}

#[test]
fn killing_a_busy_worker_fails_its_task_with_a_worker_error() {
    common::isolated(|| {
        let (server, pid, task) = one_busy_worker(b"!sleep:5000", b"");
        server.remove_worker(pid, true).unwrap();
        let error = task.join().unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::WorkerError);
        assert!(error.message().contains("remove_worker"), "{error}");
        assert_ne!(exec_pid(&server), pid);
        let stats = server.stats().unwrap();
        assert_eq!((stats.retired_removed, stats.retired_failed), (1, 0), "{stats:?}");
    });
}

#[test]
fn removing_a_pid_that_is_not_a_worker_is_an_invalid_argument() {
    common::isolated(|| {
        let server = common::started("pipes", "echo", 1);
        let error = server.remove_worker(std::process::id(), true).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().contains(&std::process::id().to_string()));
        assert_eq!(pids(&server).len(), 1);
    });
}

#[test]
fn reconfigure_ignores_the_relay_settings_and_says_so() {
    common::isolated(|| {
        let server = common::started("pipes", "echo", 1);
        let events = Events::listen(&server);
        let mut next = common::config("tcp://127.0.0.1:0", "echo", 2);
        next.relay_timeout = Duration::from_secs(3);
        assert!(server.config().differs(&next));
        server.reconfigure(next).unwrap();
        let event = events.wait_for("ignored", |e| e.kind == EventKind::ReconfigureIgnored);
        assert!(event.message.unwrap().contains("tcp://127.0.0.1:0"));
        // The pool changed; the relay did not.
        assert_eq!(pids(&server).len(), 2);
        assert_eq!(server.config().relay, "pipes");
        assert_eq!(server.config().relay_timeout, Duration::from_secs(10));
        assert_eq!(server.exec(b"", b"still pipes").unwrap().body(), b"still pipes");
        // The same relay settings: nothing to say.
        server.reconfigure(common::config("pipe", "echo", 1)).unwrap();
        server.flush_events();
        assert_eq!(events.of(EventKind::ReconfigureIgnored).len(), 1);
    });
}

#[test]
fn differs_looks_only_at_the_relay_and_its_timeout() {
    let base = Config::new("php worker.php", "pipes");
    let same_relay = Config { num_workers: 9, command: "other".into(), relay: "pipe".into(), ..base.clone() };
    assert!(!base.differs(&same_relay));
    assert!(base.differs(&Config { relay: "unix:///tmp/rr.sock".into(), ..base.clone() }));
    assert!(base.differs(&Config { relay_timeout: Duration::from_secs(1), ..base.clone() }));
}
