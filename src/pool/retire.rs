//! The one way a worker leaves the pool.
//!
//! Whoever holds a worker (a task's lease, the idle list under the pool's lock) is the
//! only one that can retire it, and does so through [`Pool::retire`]: the worker stops
//! being a member, leaves the busy count if it was busy, is counted and reported for
//! the reason it leaves, and goes to the supervisor to be stopped and replaced.
//!
//! A death is told apart from a retirement by the process itself: its exit is recorded
//! with whether the pool had asked it to end (`ExitInfo::requested`), under the same
//! lock as the asking. Every worker that ends without being asked gets exactly one
//! `WorkerDead` event, from [`Pool::worker_exited`], wherever it was at the time.

use super::supervisor::Order;
use super::{Pool, Workers};
use crate::error::Error;
use crate::event::EventKind;
use crate::limits::RetireReason;
use crate::process::ExitInfo;
use crate::state::WorkerState;
use crate::stats::Counters;
use crate::sys;
use crate::worker::{Worker, WorkerStatus};

/// Why a worker leaves the pool.
pub(super) enum Leaving<'a> {
    /// A limit, or its own request: counted by reason, with the reason's event.
    Limit(RetireReason),
    /// It failed as the error says (`Worker::failure` killed it already).
    Failed(&'a Error),
    /// Its process ended on its own (its `WorkerDead` event comes from its watcher).
    Died,
}

impl Pool {
    /// Takes `worker` out of the pool for `leaving` and has the supervisor stop and
    /// replace it. `busy`: it was taken for a task. Under the pool's lock (`workers`),
    /// in the same step that lowers `busy`: a stop that sees no busy worker left then
    /// finds every retirement already queued for the supervisor.
    pub(super) fn retire(&self, workers: &mut Workers, worker: Worker, leaving: Leaving<'_>, busy: bool) {
        if let Some(member) = workers.members.remove(&worker.id()) {
            // Its CPU is free for the replacement at once (with worker_cpu_affinity).
            workers.leaving.insert(worker.id(), super::Member { _cpu: None, ..member });
        }
        let pid = worker.pid();
        match leaving {
            Leaving::Limit(reason) => {
                // Listed as stopping from now on (see `workers()`), not as idle or busy.
                worker.status().set_state(WorkerState::Stopping);
                self.counters.retired(reason);
                if let Some(kind) = reason.event() {
                    self.events.emit(kind, Some(pid), Some(reason.describe(pid)));
                }
            }
            Leaving::Failed(error) => {
                Counters::bump(&self.counters.retired_failed);
                self.events.emit(EventKind::WorkerError, Some(pid), Some(error.message().to_string()));
            }
            Leaving::Died => {
                Counters::bump(&self.counters.retired_died);
                worker.status().set_state(WorkerState::Errored);
            }
        }
        if let Err(crossbeam_channel::SendError(Order::Retire(orphan))) =
            self.orders.send(Order::Retire(Box::new(worker)))
        {
            // The supervisor is gone, which happens only once the pool has stopped.
            // Its drop kills the worker and waits for its watcher, whose report may
            // need this lock: not here, then.
            let _ = std::thread::Builder::new().name("rr-stop".into()).spawn(move || drop(orphan));
        }
        if busy {
            workers.busy -= 1;
            // Wakes a stop waiting for running tasks.
            self.changed.notify_all();
        }
    }

    /// A retired worker was stopped: it no longer counts toward the ceiling, and an
    /// elastic pool held back by the ceiling may start its replacement now.
    pub(super) fn worker_stopped(&self, id: u64) {
        let mut workers = self.workers.lock();
        if workers.leaving.remove(&id).is_some() && self.config.config.is_elastic() {
            let _ = self.orders.send(Order::Wake);
        }
    }

    /// A member's process ended. If the pool did not ask it to, it died on its own:
    /// report it, and retire it if it is idle (whoever holds a busy one finds it gone).
    pub(super) fn worker_exited(&self, status: &WorkerStatus, exit: &ExitInfo) {
        if exit.requested {
            return;
        }
        let pid = status.pid();
        self.events.emit(EventKind::WorkerDead, Some(pid), Some(format!("worker {pid} {}", exit.description)));
        let mut workers = self.workers.lock();
        if let Some(i) = workers.idle.iter().position(|w| w.id() == status.id()) {
            let dead = workers.idle.swap_remove(i);
            self.retire(&mut workers, dead, Leaving::Died, false);
        }
    }

    /// Retires idle workers that lived or idled too long, or use too much memory.
    pub(super) fn check_idle_workers(&self) {
        let mut idle_workers = Vec::new();
        {
            let mut workers = self.workers.lock();
            let mut i = 0;
            while i < workers.idle.len() {
                let worker = &workers.idle[i];
                if let Some(reason) = worker.limits().while_idle(worker.started(), worker.idle_since()) {
                    let worker = workers.idle.swap_remove(i);
                    self.forgo_idle_extra(&mut workers);
                    self.retire(&mut workers, worker, Leaving::Limit(reason), false);
                } else {
                    idle_workers.push((worker.id(), worker.pid()));
                    i += 1;
                }
            }
        }
        if self.config.config.max_memory > 0 {
            // Read /proc outside the lock, then take those still idle.
            let heavy: Vec<u64> = idle_workers
                .into_iter()
                .filter(|&(_, pid)| sys::rss_bytes(pid).is_some_and(|rss| rss > self.config.config.max_memory))
                .map(|(id, _)| id)
                .collect();
            if !heavy.is_empty() {
                let mut workers = self.workers.lock();
                for id in heavy {
                    if let Some(i) = workers.idle.iter().position(|w| w.id() == id) {
                        let worker = workers.idle.swap_remove(i);
                        self.forgo_idle_extra(&mut workers);
                        self.retire(&mut workers, worker, Leaving::Limit(RetireReason::MaxMemory), false);
                    }
                }
            }
        }
    }
}
