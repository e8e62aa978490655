//! Starting workers and keeping the pool full: the first `num_workers` at once, then a
//! replacement for each worker that leaves; a pool that cannot keep any worker alive
//! fails and tells its owner.

use super::take::Lease;
use super::{Member, Phase, Pool};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventKind;
use crate::factory::SpawnSettings;
use crate::handoff::{Claimed, Delivery, Handed};
use crate::limits::WorkerLimits;
use crate::placement::CpuSlot;
use crate::process::CommandSpec;
use crate::state::WorkerState;
use crate::stats::Counters;
use crate::worker::Worker;
use std::sync::Arc;

/// What `reserve_refill` found.
pub(super) enum Refill {
    /// Start this many workers (reserved: counted as starting).
    Start(usize),
    /// Workers are being started; none more is missing.
    InFlight,
    /// The pool is at its target (or not running).
    Complete,
}

/// A worker just started, with its CPU if it was pinned to one.
pub(super) struct Spawned {
    worker: Worker,
    cpu: Option<CpuSlot>,
}

impl Pool {
    /// Starts the first `num_workers` workers at once (none for an on-demand pool); if
    /// any fails, stops the others and fails.
    pub(super) fn start_workers(self: &Arc<Self>) -> Result<()> {
        let count = self.config.config.num_workers as usize;
        if count == 0 {
            return Ok(());
        }
        let results = self.spawn_many(count);
        let (started, failures): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        if let Some(Err(first)) = failures.into_iter().next() {
            let destroy = self.config.config.destroy_timeout;
            std::thread::scope(|scope| {
                for Spawned { worker, .. } in started.into_iter().flatten() {
                    let events = &self.events;
                    scope.spawn(move || worker.stop(destroy, events));
                }
            });
            return Err(first.context(format!("cannot start the pool of {count} workers")));
        }
        for spawned in started.into_iter().flatten() {
            self.admit(spawned);
        }
        Ok(())
    }

    fn spawn_settings(&self) -> SpawnSettings {
        let config = &self.config.config;
        SpawnSettings {
            relay_timeout: config.relay_timeout,
            max_frame: config.max_frame_bytes,
            protocol: config.protocol,
            codec: config.codec,
        }
    }

    /// Starts `count` workers in parallel (a slow boot costs once, not `count` times).
    fn spawn_many(&self, count: usize) -> Vec<Result<Spawned>> {
        in_parallel(count, || self.spawn_reported())
    }

    /// Starts one worker, counted and told as an event (or its failure told).
    fn spawn_reported(&self) -> Result<Spawned> {
        let spawned = self.spawn_one();
        match &spawned {
            Ok(spawned) => {
                Counters::bump(&self.counters.workers_spawned);
                self.events.emit(EventKind::WorkerConstruct, Some(spawned.worker.pid()), None)
            }
            Err(e) => self.events.emit(EventKind::WorkerError, e.pid(), Some(e.message().to_string())),
        }
        spawned
    }

    /// Starts one worker, on its own CPU with `worker_cpu_affinity`.
    fn spawn_one(&self) -> Result<Spawned> {
        let cpu = self.placement.as_ref().map(|placement| placement.take()).transpose().map_err(|e| {
            Error::new(ErrorKind::Spawn, format!("worker_cpu_affinity: cannot read the host's allowed CPUs: {e}"))
        })?;
        let pinned;
        let spec = match &cpu {
            Some(slot) => {
                pinned = CommandSpec { cpu: Some(slot.cpu()), ..self.spec.clone() };
                &pinned
            }
            None => &self.spec,
        };
        Ok(Spawned { worker: self.factory.spawn(spec, self.spawn_settings(), &self.events)?, cpu })
    }

    /// Makes a started worker a member: it goes to the longest-waiting caller, or is
    /// idle; it is stopped if the pool is no longer running.
    fn admit(self: &Arc<Self>, Spawned { mut worker, cpu }: Spawned) {
        worker.set_limits(WorkerLimits::new(&self.config.config));
        let status = worker.status().clone();
        let process = worker.process().clone();
        {
            let mut workers = self.workers.lock();
            if workers.phase != Phase::Running {
                drop(workers);
                worker.stop(self.config.config.destroy_timeout, &self.events);
                return;
            }
            workers.members.insert(status.id(), Member { status: status.clone(), process: process.clone(), _cpu: cpu });
            match workers.waiters.pop_oldest() {
                Some(Claimed::Caller(claimed)) => {
                    workers.busy += 1;
                    worker.status().set_state(WorkerState::Working);
                    drop(workers);
                    claimed.deliver(Delivery::Worker(Handed { worker, sent: None }));
                }
                Some(Claimed::Task(task)) => {
                    workers.busy += 1;
                    worker.status().set_state(WorkerState::Working);
                    drop(workers);
                    self.start_async(Lease::new(self, worker), task);
                }
                None => workers.idle.push(worker),
            }
        }
        let pool = Arc::downgrade(self);
        process.on_exit(Box::new(move |exit| {
            if let Some(pool) = pool.upgrade() {
                pool.worker_exited(&status, exit);
            }
        }));
    }

    /// Reserves the workers the pool misses to be back at its target (`num_workers`,
    /// or what an elastic pool grew to; an elastic pool also stays under its ceiling,
    /// counting the workers still stopping): counted as starting, for
    /// [`Pool::spawn_reserved`] to start.
    pub(super) fn reserve_refill(&self) -> Refill {
        let mut workers = self.workers.lock();
        if workers.phase != Phase::Running {
            return Refill::Complete;
        }
        let mut missing = workers.target.saturating_sub(Pool::have(&workers));
        if self.config.config.is_elastic() {
            missing = missing.min(self.room_under_ceiling(&workers));
        }
        if missing > 0 {
            workers.starting += missing;
            Refill::Start(missing)
        } else if workers.starting > 0 {
            Refill::InFlight
        } else {
            Refill::Complete
        }
    }

    /// Starts the `missing` workers reserved by `reserve_refill`, in parallel, and
    /// admits each as it comes up. On failure, returns the last spawn error and whether the pool has
    /// no member left.
    pub(super) fn spawn_reserved(self: &Arc<Self>, missing: usize) -> Option<(Error, bool)> {
        // Each worker is admitted as soon as it is up: a waiting caller takes the first
        // one, not the slowest boot of the round.
        let results = in_parallel(missing, || self.spawn_reported().map(|spawned| self.admit(spawned)));
        let failures = results.iter().filter(|result| result.is_err()).count();
        let last_failure = results.into_iter().filter_map(Result::err).last();
        // Counted as starting until admitted: a round reserved meanwhile does not start
        // them twice.
        let mut workers = self.workers.lock();
        workers.starting -= missing;
        let empty = workers.members.is_empty();
        if failures > 0 && !empty {
            // Growth that failed is given up while other workers serve: callers still
            // waiting ask again after scale_after. (A static pool's target is its floor.)
            let floor = self.config.config.num_workers as usize;
            workers.target = workers.target.saturating_sub(failures).max(floor);
        }
        last_failure.map(|error| (error, empty))
    }

    /// Marks the pool failed: every waiting and future caller gets `error`, and the
    /// owner is told (it rebuilds the pool). Once: a pool that is not running is left
    /// as it is.
    pub(super) fn fail(self: &Arc<Self>, error: Error) {
        let orphans = {
            let mut workers = self.workers.lock();
            if workers.phase != Phase::Running {
                return;
            }
            workers.phase = Phase::Failed(error.clone());
            Pool::wake_waiters(&mut workers)
        };
        self.settle_orphans(orphans);
        self.events.emit(EventKind::PoolError, None, Some(error.message().to_string()));
        (self.on_failure)(self, &error);
    }
}

/// Runs `run` `count` times at once, on threads of their own (`rr-spawn-wait`; inline
/// for one), and returns the results; a thread that cannot be made is a spawn error.
fn in_parallel<T: Send>(count: usize, run: impl Fn() -> Result<T> + Sync) -> Vec<Result<T>> {
    if count == 1 {
        return vec![run()];
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|_| std::thread::Builder::new().name("rr-spawn-wait".into()).spawn_scoped(scope, &run))
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle {
                Ok(handle) => {
                    handle.join().unwrap_or_else(|_| Err(Error::new(ErrorKind::Internal, "a spawn thread panicked")))
                }
                Err(e) => Err(Error::new(ErrorKind::Spawn, format!("cannot start a thread to spawn a worker: {e}"))),
            })
            .collect()
    })
}
