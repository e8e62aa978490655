//! Counters of a server's pools, and the snapshot users read.
//!
//! The counters belong to the server and are shared by each pool it builds, so they
//! run on across reconfigures and resets.

use crate::limits::RetireReason;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a server's counters, as returned by [`crate::Server::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Tasks a worker answered (with an answer or a job error).
    pub tasks_done: u64,
    /// Tasks answered with a job error.
    pub job_errors: u64,
    /// Tasks that failed because their worker failed (crash, protocol, exec_ttl).
    pub worker_errors: u64,
    /// Tasks killed because they ran past `exec_ttl` (also counted in `worker_errors`).
    pub exec_ttl_kills: u64,
    /// Callers that got no worker within `allocate_timeout`.
    pub timeouts: u64,
    /// Callers refused because `max_queue` callers were waiting.
    pub queue_full: u64,
    /// Callers waiting for a worker right now.
    pub waiting: u64,
    /// Workers in the current pool right now.
    pub workers: u64,
    /// Workers retired after `max_jobs` executions.
    pub retired_max_jobs: u64,
    /// Workers retired after living past `ttl`.
    pub retired_ttl: u64,
    /// Workers retired after idling past `idle_ttl`.
    pub retired_idle_ttl: u64,
    /// Workers retired for using more than `max_memory`.
    pub retired_max_memory: u64,
    /// Workers retired because they asked to be.
    pub retired_stop_requested: u64,
    /// Workers removed because they failed (crash, protocol error, exec_ttl).
    pub retired_failed: u64,
    /// Workers that exited on their own while idle or right after a task.
    pub retired_died: u64,
    /// Tasks cancelled by their caller before they finished (a stream stopped).
    pub tasks_cancelled: u64,
    /// Worker processes started (the first ones, replacements and growth).
    pub workers_spawned: u64,
    /// Extra workers of an elastic pool retired after idling past `scale_idle`.
    pub retired_shrink: u64,
    /// Workers removed by their host (`Server::remove_worker`).
    pub retired_removed: u64,
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    tasks_done: AtomicU64,
    job_errors: AtomicU64,
    worker_errors: AtomicU64,
    exec_ttl_kills: AtomicU64,
    pub timeouts: AtomicU64,
    pub queue_full: AtomicU64,
    retired: [AtomicU64; RetireReason::COUNT],
    pub retired_failed: AtomicU64,
    pub retired_died: AtomicU64,
    pub tasks_cancelled: AtomicU64,
    pub workers_spawned: AtomicU64,
    /// Tasks answered without a job error, and worker errors other than exec_ttl kills:
    /// counted on their own so that metrics never see a counter go down (a difference
    /// of two counters read one after the other could).
    tasks_ok: AtomicU64,
    worker_failures: AtomicU64,
}

/// How many tasks ended each way, every figure a counter of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskOutcomes {
    /// Answered.
    pub ok: u64,
    /// Answered with a job error.
    pub job_error: u64,
    /// Failed with their worker (exec_ttl kills apart).
    pub worker_error: u64,
    /// Killed for running past exec_ttl.
    pub exec_ttl: u64,
    /// Got no worker within allocate_timeout.
    pub timeout: u64,
    /// Refused because max_queue callers waited.
    pub queue_full: u64,
    /// Cancelled by their caller.
    pub cancelled: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a task answered without a job error.
    pub(crate) fn answered(&self) {
        Counters::bump(&self.tasks_done);
        Counters::bump(&self.tasks_ok);
    }

    /// Counts a task answered with a job error.
    pub(crate) fn job_error(&self) {
        Counters::bump(&self.tasks_done);
        Counters::bump(&self.job_errors);
    }

    /// Counts a task that failed with its worker (not for exec_ttl).
    pub(crate) fn worker_error(&self) {
        Counters::bump(&self.worker_errors);
        Counters::bump(&self.worker_failures);
    }

    /// Counts a task killed for running past exec_ttl (a worker error too).
    pub(crate) fn exec_ttl_kill(&self) {
        Counters::bump(&self.worker_errors);
        Counters::bump(&self.exec_ttl_kills);
    }

    /// The tasks by outcome.
    pub(crate) fn outcomes(&self) -> TaskOutcomes {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TaskOutcomes {
            ok: read(&self.tasks_ok),
            job_error: read(&self.job_errors),
            worker_error: read(&self.worker_failures),
            exec_ttl: read(&self.exec_ttl_kills),
            timeout: read(&self.timeouts),
            queue_full: read(&self.queue_full),
            cancelled: read(&self.tasks_cancelled),
        }
    }

    /// Counts a retirement for `reason`.
    pub(crate) fn retired(&self, reason: RetireReason) {
        Counters::bump(&self.retired[reason as usize]);
    }

    /// A snapshot; `waiting` and `workers` come from the current pool.
    pub(crate) fn snapshot(&self, waiting: u64, workers: u64) -> PoolStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let retired = |reason: RetireReason| read(&self.retired[reason as usize]);
        PoolStats {
            tasks_done: read(&self.tasks_done),
            job_errors: read(&self.job_errors),
            worker_errors: read(&self.worker_errors),
            exec_ttl_kills: read(&self.exec_ttl_kills),
            timeouts: read(&self.timeouts),
            queue_full: read(&self.queue_full),
            waiting,
            workers,
            retired_max_jobs: retired(RetireReason::MaxJobs),
            retired_ttl: retired(RetireReason::Ttl),
            retired_idle_ttl: retired(RetireReason::IdleTtl),
            retired_max_memory: retired(RetireReason::MaxMemory),
            retired_stop_requested: retired(RetireReason::StopRequested),
            retired_failed: read(&self.retired_failed),
            retired_died: read(&self.retired_died),
            tasks_cancelled: read(&self.tasks_cancelled),
            workers_spawned: read(&self.workers_spawned),
            retired_shrink: retired(RetireReason::Shrink),
            retired_removed: retired(RetireReason::Removed),
        }
    }
}
