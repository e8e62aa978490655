//! What a server tells its operators: a status document in JSON (like PHP-FPM's
//! `?json&full` and RoadRunner's `rr workers`) and metrics in the OpenMetrics text format
//! (`shared/SPEC.md` section 6). A [`ServerStatus`] is a snapshot; rendering it takes no
//! lock of the pool and serves whatever endpoint the host has.

use crate::config::Protocol;
use crate::state::{WorkerInfo, WorkerState};
use crate::stats::{PoolStats, TaskOutcomes};
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Every worker state, in the order status and metrics list them.
const STATES: [WorkerState; 7] = [
    WorkerState::Inactive,
    WorkerState::Ready,
    WorkerState::Working,
    WorkerState::Streaming,
    WorkerState::Stopping,
    WorkerState::Stopped,
    WorkerState::Errored,
];

/// A snapshot of a server's pool and of each of its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// The pool's name (`Config::name`).
    pub name: String,
    /// The protocol its workers speak.
    pub protocol: Protocol,
    /// The relay setting, as configured.
    pub relay: String,
    /// The floor (`num_workers`).
    pub workers_min: u64,
    /// The ceiling (`max_workers`, or `num_workers` for a static pool).
    pub workers_max: u64,
    /// How many workers the pool keeps now (between the two while it is elastic).
    pub workers_target: u64,
    /// Workers being started now.
    pub starting: u64,
    /// The server's counters, with the pool's waiting callers and members.
    pub counters: PoolStats,
    /// The server's tasks by outcome (for metrics: each a counter of its own).
    pub outcomes: TaskOutcomes,
    /// Every worker process: the members, and retired ones still stopping.
    pub workers: Vec<WorkerStatusEntry>,
}

/// One worker in a [`ServerStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatusEntry {
    /// Pid, state, executions, start time, memory.
    pub info: WorkerInfo,
    /// How long its current task has run; `None` when it has none.
    pub task_age: Option<Duration>,
}

impl ServerStatus {
    /// Workers in state `state`.
    pub fn count_in(&self, state: WorkerState) -> u64 {
        self.workers.iter().filter(|worker| worker.info.state == state).count() as u64
    }

    /// The status document, UTF-8 JSON: keys `name`, `protocol`, `relay`, `workers_min`,
    /// `workers_max`, `workers_target`, `starting`, `waiting`, `workers_by_state`,
    /// `counters`, `tasks_by_outcome` and `workers` (each with `pid`, `state`, `state_name`, `num_execs`,
    /// `created_unix_ms`, `rss_bytes`, `task_ms`, null when idle).
    pub fn to_json(&self) -> String {
        let by_state: Map<String, Value> =
            STATES.iter().map(|&state| (state.as_str().to_string(), json!(self.count_in(state)))).collect();
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|worker| {
                let info = &worker.info;
                json!({
                    "pid": info.pid,
                    "state": info.state as i32,
                    "state_name": info.state.as_str(),
                    "num_execs": info.num_execs,
                    "created_unix_ms": info.created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                    "rss_bytes": info.rss_bytes,
                    "task_ms": worker.task_age.map(|age| age.as_millis() as u64),
                })
            })
            .collect();
        let document = json!({
            "name": self.name,
            "protocol": self.protocol as u32,
            "relay": self.relay,
            "workers_min": self.workers_min,
            "workers_max": self.workers_max,
            "workers_target": self.workers_target,
            "starting": self.starting,
            "waiting": self.counters.waiting,
            "workers_by_state": by_state,
            "counters": counters_json(&self.counters),
            "tasks_by_outcome": {
                "ok": self.outcomes.ok,
                "job_error": self.outcomes.job_error,
                "worker_error": self.outcomes.worker_error,
                "exec_ttl": self.outcomes.exec_ttl,
                "timeout": self.outcomes.timeout,
                "queue_full": self.outcomes.queue_full,
                "cancelled": self.outcomes.cancelled,
            },
            "workers": workers,
        });
        document.to_string()
    }

    /// The metrics, OpenMetrics text ending `# EOF\n`, every sample labelled with
    /// `pool="<name>"`: `rr_workers{state}`, `rr_workers_min`, `rr_workers_max`,
    /// `rr_worker_memory_bytes{pid}`, `rr_tasks_total{outcome}`, `rr_queue_waiting`,
    /// `rr_workers_retired_total{reason}`, `rr_workers_spawned_total`.
    pub fn to_openmetrics(&self) -> String {
        let pool = format!("pool=\"{}\"", escape_label_value(&self.name));
        let c = &self.counters;
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(text, "# TYPE {name} {kind}");
            if name.ends_with("_bytes") {
                let _ = writeln!(text, "# UNIT {name} bytes");
            }
            let _ = writeln!(text, "# HELP {name} {help}");
            let sample_name = if kind == "counter" { format!("{name}_total") } else { name.to_string() };
            for (labels, value) in samples {
                let _ = writeln!(text, "{sample_name}{{{pool}{labels}}} {value}");
            }
        };
        let states: Vec<_> =
            STATES.iter().map(|&state| (format!(",state=\"{}\"", state.as_str()), self.count_in(state))).collect();
        family("rr_workers", "gauge", "Worker processes of the pool, by state.", &states);
        family(
            "rr_workers_min",
            "gauge",
            "Workers always running (num_workers).",
            &[(String::new(), self.workers_min)],
        );
        family("rr_workers_max", "gauge", "Most workers the pool may have.", &[(String::new(), self.workers_max)]);
        // One sample per pid: a worker still stopping may share its pid with a new one
        // (reaped, and the pid reused); the member's figure is the one kept.
        let mut by_pid = std::collections::BTreeMap::new();
        for worker in &self.workers {
            let leaving = matches!(worker.info.state, WorkerState::Stopping | WorkerState::Stopped);
            if !leaving || !by_pid.contains_key(&worker.info.pid) {
                by_pid.insert(worker.info.pid, worker.info.rss_bytes);
            }
        }
        let memory: Vec<_> = by_pid.iter().map(|(pid, rss)| (format!(",pid=\"{pid}\""), *rss)).collect();
        family("rr_worker_memory_bytes", "gauge", "Resident memory of each worker process.", &memory);
        let o = &self.outcomes;
        let outcomes = [
            ("ok", o.ok),
            ("job_error", o.job_error),
            ("worker_error", o.worker_error),
            ("exec_ttl", o.exec_ttl),
            ("timeout", o.timeout),
            ("queue_full", o.queue_full),
            ("cancelled", o.cancelled),
        ];
        let outcomes: Vec<_> =
            outcomes.iter().map(|(outcome, value)| (format!(",outcome=\"{outcome}\""), *value)).collect();
        family("rr_tasks", "counter", "Tasks by outcome.", &outcomes);
        family("rr_queue_waiting", "gauge", "Callers and tasks waiting for a worker.", &[(String::new(), c.waiting)]);
        let reasons = [
            ("max_jobs", c.retired_max_jobs),
            ("ttl", c.retired_ttl),
            ("idle_ttl", c.retired_idle_ttl),
            ("max_memory", c.retired_max_memory),
            ("stop_requested", c.retired_stop_requested),
            ("failed", c.retired_failed),
            ("died", c.retired_died),
            ("shrink", c.retired_shrink),
            ("removed", c.retired_removed),
        ];
        let reasons: Vec<_> = reasons.iter().map(|(reason, value)| (format!(",reason=\"{reason}\""), *value)).collect();
        family("rr_workers_retired", "counter", "Workers that left the pool, by reason.", &reasons);
        family("rr_workers_spawned", "counter", "Worker processes started.", &[(String::new(), c.workers_spawned)]);
        text.push_str("# EOF\n");
        text
    }
}

/// The counters as a JSON object, one key per field of [`PoolStats`].
fn counters_json(c: &PoolStats) -> Value {
    json!({
        "tasks_done": c.tasks_done,
        "job_errors": c.job_errors,
        "worker_errors": c.worker_errors,
        "exec_ttl_kills": c.exec_ttl_kills,
        "timeouts": c.timeouts,
        "queue_full": c.queue_full,
        "tasks_cancelled": c.tasks_cancelled,
        "waiting": c.waiting,
        "workers": c.workers,
        "workers_spawned": c.workers_spawned,
        "retired_max_jobs": c.retired_max_jobs,
        "retired_ttl": c.retired_ttl,
        "retired_idle_ttl": c.retired_idle_ttl,
        "retired_max_memory": c.retired_max_memory,
        "retired_stop_requested": c.retired_stop_requested,
        "retired_failed": c.retired_failed,
        "retired_died": c.retired_died,
        "retired_shrink": c.retired_shrink,
        "retired_removed": c.retired_removed,
    })
}

/// A label value as OpenMetrics writes it: backslash, double quote and newline escaped.
fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn status(name: &str) -> ServerStatus {
        let worker = |pid, state, task_age| WorkerStatusEntry {
            info: WorkerInfo { pid, state, num_execs: 3, created: SystemTime::now(), rss_bytes: 4096 },
            task_age,
        };
        ServerStatus {
            name: name.to_string(),
            protocol: Protocol::V2,
            relay: "pipes".to_string(),
            workers_min: 1,
            workers_max: 4,
            workers_target: 2,
            starting: 0,
            counters: PoolStats { tasks_done: 10, job_errors: 2, waiting: 5, ..PoolStats::default() },
            outcomes: TaskOutcomes { ok: 8, job_error: 2, ..TaskOutcomes::default() },
            workers: vec![
                worker(11, WorkerState::Ready, None),
                worker(12, WorkerState::Working, Some(Duration::from_millis(7))),
            ],
        }
    }

    #[test]
    fn json_has_the_pool_and_every_worker() {
        let value: Value = serde_json::from_str(&status("web").to_json()).unwrap();
        assert_eq!(value["name"], "web");
        assert_eq!(value["protocol"], 2);
        assert_eq!(value["workers_max"], 4);
        assert_eq!(value["waiting"], 5);
        assert_eq!(value["workers_by_state"]["working"], 1);
        assert_eq!(value["counters"]["job_errors"], 2);
        assert_eq!(value["tasks_by_outcome"]["ok"], 8);
        assert_eq!(value["workers"][0]["task_ms"], Value::Null);
        assert_eq!(value["workers"][1]["task_ms"], 7);
        assert_eq!(value["workers"][1]["state_name"], "working");
    }

    #[test]
    fn a_pid_shared_by_a_stopping_worker_and_a_new_one_gives_one_sample() {
        let mut shared = status("p");
        let mut stopping = shared.workers[0].clone();
        stopping.info.state = WorkerState::Stopping;
        stopping.info.rss_bytes = 1;
        shared.workers.insert(0, stopping);
        let text = shared.to_openmetrics();
        let samples: Vec<_> = text.lines().filter(|line| line.contains("pid=\"11\"")).collect();
        assert_eq!(samples, ["rr_worker_memory_bytes{pool=\"p\",pid=\"11\"} 4096"]);
    }

    #[test]
    fn metrics_count_outcomes_and_escape_the_name() {
        let text = status("a \"quoted\" \\ name").to_openmetrics();
        let pool = r#"pool="a \"quoted\" \\ name""#;
        assert!(text.contains(&format!("rr_tasks_total{{{pool},outcome=\"ok\"}} 8\n")), "{text}");
        assert!(text.contains(&format!("rr_workers{{{pool},state=\"working\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("rr_worker_memory_bytes{{{pool},pid=\"12\"}} 4096\n")), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
