//! Taking a worker for a task, and giving it back.
//!
//! A task takes an idle worker, or waits in line for one (see `handoff` for the order
//! and for the task sent on the way). From then until the worker is given back or
//! retired, it is counted busy and held by a [`Lease`]: whatever happens to the task,
//! a panic included, the lease ends in one of those two, so `busy` always comes down
//! and a stop never waits for a task that is gone.

use super::retire::Leaving;
use super::{ExecError, Phase, Pool, Workers};
use crate::error::{Error, ErrorKind};
use crate::event::EventKind;
use crate::handoff::{Claimed, Delivery, Handed, LentTask, Slot};
use crate::limits::RetireReason;
use crate::relay::{RelayError, Sent};
use crate::state::WorkerState;
use crate::stats::Counters;
use crate::sys;
use crate::worker::{Removal, TaskFailure, Worker};
use std::sync::Arc;
use std::time::Instant;

/// A worker taken for one task (see the module docs).
pub(crate) struct Lease {
    pool: Arc<Pool>,
    worker: Option<Worker>,
    /// Held by a [`super::Stream`] (counted in `Pool::held_by_streams`), not by a caller
    /// that is in the library right now.
    for_stream: bool,
}

impl Lease {
    /// Holds `worker`, already counted busy.
    pub(super) fn new(pool: &Arc<Pool>, worker: Worker) -> Lease {
        Lease { pool: pool.clone(), worker: Some(worker), for_stream: false }
    }

    /// Notes that a stream, owned by its caller, holds this lease from now on: a stop
    /// that had to kill its worker does not wait for that caller to come back.
    pub(super) fn hold_for_stream(&mut self) {
        self.for_stream = true;
        self.pool.held_by_streams.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The pool the worker belongs to.
    pub(super) fn pool(&self) -> Arc<Pool> {
        self.pool.clone()
    }

    pub(super) fn worker_ref(&self) -> &Worker {
        self.worker.as_ref().expect("a lease holds its worker until it ends")
    }

    pub(super) fn worker(&mut self) -> &mut Worker {
        self.worker.as_mut().expect("a lease holds its worker until it ends")
    }

    fn take(mut self) -> Worker {
        self.take_worker().expect("a lease holds its worker until it ends")
    }

    fn take_worker(&mut self) -> Option<Worker> {
        let worker = self.worker.take();
        if worker.is_some() && std::mem::take(&mut self.for_stream) {
            self.pool.held_by_streams.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
        worker
    }

    /// Gives the worker back after a task it answered: to a waiting caller, to the
    /// idle list, or out of the pool when one of its limits (max_jobs, ttl, max_memory)
    /// says so, when it answered more than once, or when it exited.
    pub(super) fn give_back(self) {
        self.hand_on(Some(sys::current_cpu()))
    }

    /// As `give_back`, for the reactor: the worker goes to the longest-waiting caller or
    /// task, whatever its CPU (the reactor's CPU tells nothing about who submitted).
    pub(super) fn give_back_in_arrival_order(self) {
        self.hand_on(None)
    }

    /// `give_back`, choosing among the waiters by the CPU the freeing thread runs on
    /// (see `handoff`), or strictly in arrival order with `None`.
    fn hand_on(mut self, cpu: Option<i32>) {
        let pool = self.pool.clone();
        let worker = self.worker();
        let pid = worker.pid();
        // Its host asked for it to leave (checked again under the lock below, which
        // `remove_worker` takes too).
        if worker.status().removal() != Removal::None {
            return self.retire(Leaving::Limit(RetireReason::Removed));
        }
        if let Some(reason) =
            worker.limits().after_task(worker.status().num_execs(), worker.started(), || sys::rss_bytes(pid))
        {
            return self.retire(Leaving::Limit(reason));
        }
        if let Some(extra) = worker.take_extra_output() {
            let error = worker.failure(extra, ErrorKind::WorkerError, false);
            return self.retire(Leaving::Failed(&error));
        }
        worker.status().set_state(WorkerState::Ready);
        worker.mark_idle();
        let mut workers = pool.workers.lock();
        if worker.process().has_exited() {
            // It exited right after answering, before it was idle: its watcher did not
            // find it among the idle ones, so it leaves here. Checked under the lock the
            // watcher's report takes, so one of the two always sees it.
            return pool.retire(&mut workers, self.take(), Leaving::Died, true);
        }
        if worker.status().removal() != Removal::None {
            // Asked to leave while it was being given back: `remove_worker` found it
            // neither idle nor done, so it is ours to retire.
            return pool.retire(&mut workers, self.take(), Leaving::Limit(RetireReason::Removed), true);
        }
        let next = match cpu {
            Some(cpu) => workers.waiters.pop_nearest(cpu),
            None => workers.waiters.pop_oldest(),
        };
        match next {
            // The worker stays busy: it goes straight to a waiting caller (see
            // `handoff`), with that caller's task already sent if it lent it.
            Some(Claimed::Task(task)) => {
                // The oldest in line is a submitted task: this worker runs it now.
                worker.status().set_state(WorkerState::Working);
                drop(workers);
                pool.start_async(self, task);
            }
            Some(Claimed::Caller(claimed)) => {
                worker.status().set_state(WorkerState::Working);
                drop(workers);
                let sent = claimed.lent_task().map(|task| {
                    // SAFETY: the waiter is off the queue and not yet delivered to.
                    let (context, body) = unsafe { task.parts() };
                    let deadline = pool.task_deadline();
                    self.worker().start_sending_task(context, body, deadline)
                });
                claimed.deliver(Delivery::Worker(Handed { worker: self.take(), sent }));
            }
            None => {
                workers.busy -= 1;
                workers.idle.push(self.take());
                if workers.phase != Phase::Running {
                    pool.changed.notify_all();
                }
            }
        }
    }

    /// Takes out of the pool a worker that failed before the task reached it (the task
    /// runs on another worker); returns why it failed. One killed by its host
    /// (`remove_worker`) counts as removed, not failed.
    pub(super) fn retire_undelivered(mut self, error: &RelayError) -> Error {
        let failure = self.worker().failure(error, ErrorKind::WorkerError, error.peer_closed());
        if self.worker_ref().status().removal() == Removal::Killed {
            self.retire(Leaving::Limit(RetireReason::Removed));
        } else {
            self.retire(Leaving::Failed(&failure));
        }
        failure
    }

    /// Takes the worker out of the pool, as `leaving` says (see `retire`).
    pub(super) fn retire(self, leaving: Leaving<'_>) {
        let pool = self.pool.clone();
        let worker = self.take();
        let mut workers = pool.workers.lock();
        pool.retire(&mut workers, worker, leaving, true);
    }
}

impl Drop for Lease {
    /// A lease that ends neither way is a panic on the way (a bug): the worker, in an
    /// unknown state, is killed and replaced.
    fn drop(&mut self) {
        if let Some(worker) = self.take_worker() {
            let error = worker.failure(
                "a panic in the library while the worker ran a task (a bug); the worker was stopped",
                ErrorKind::Internal,
                false,
            );
            let mut workers = self.pool.workers.lock();
            self.pool.retire(&mut workers, worker, Leaving::Failed(&error), true);
        }
    }
}

impl Pool {
    /// Takes a worker for a task, waiting until `deadline` for one (see `handoff` for
    /// the order). While it waits, `task` (if given) is lent to whoever frees a worker
    /// for it, who sends it on the way: then the second value says how that went.
    pub(super) fn allocate(
        self: &Arc<Self>,
        deadline: Instant,
        task: Option<LentTask>,
    ) -> std::result::Result<(Lease, Option<Result<Sent, TaskFailure>>), ExecError> {
        loop {
            let slot = {
                let mut workers = self.workers.lock();
                match &workers.phase {
                    Phase::Running => {}
                    Phase::Retired => return Err(ExecError::Retired),
                    Phase::Stopped => return Err(Error::state("the server was stopped").into()),
                    Phase::Failed(error) => return Err(error.clone().into()),
                }
                if let Some(lease) = self.lease_idle(&mut workers) {
                    return Ok((lease, None));
                }
                self.refuse_when_line_is_full(&workers)?;
                let slot = Slot::mine(task);
                workers.waiters.push(slot.clone(), sys::current_cpu(), Instant::now());
                self.note_pressure(&mut workers);
                slot
            };
            match slot.receive(Some(deadline)) {
                Delivery::Worker(handed) => return Ok(self.lease(handed)),
                Delivery::Recheck => continue,
                Delivery::Pending => {}
            }
            // Timed out. Leave the queue, unless a worker is already on its way to us.
            let withdrawn = self.workers.lock().waiters.remove(&slot);
            if withdrawn {
                slot.withdraw();
            } else {
                match slot.receive(None) {
                    Delivery::Worker(handed) => return Ok(self.lease(handed)),
                    Delivery::Recheck => continue,
                    Delivery::Pending => unreachable!("receive without a deadline waits for a delivery"),
                }
            }
            let (busy, members) = {
                let workers = self.workers.lock();
                (workers.busy, workers.members.len())
            };
            return Err(self.allocate_timed_out(busy, members).into());
        }
    }

    /// Takes an idle worker (see `take_idle`) for a task, counted busy, in a lease.
    pub(super) fn lease_idle(self: &Arc<Self>, workers: &mut Workers) -> Option<Lease> {
        let worker = self.take_idle(workers)?;
        workers.busy += 1;
        // Working from the moment it is counted busy: a stop that runs out of time kills
        // the busy workers by this state.
        worker.status().set_state(WorkerState::Working);
        Some(Lease::new(self, worker))
    }

    /// A queue-full error (counted, and told as an event) when max_queue callers and
    /// tasks already wait in line.
    pub(super) fn refuse_when_line_is_full(&self, workers: &Workers) -> Result<(), Error> {
        let max_queue = self.config.config.max_queue as usize;
        if max_queue == 0 || workers.waiters.len() < max_queue {
            return Ok(());
        }
        Counters::bump(&self.counters.queue_full);
        let message = format!(
            "{} callers and tasks are already waiting for a worker (max_queue {max_queue})",
            workers.waiters.len()
        );
        self.events.emit(EventKind::QueueFull, None, Some(message.clone()));
        Err(Error::new(ErrorKind::QueueFull, message))
    }

    /// The timeout of a task that got no worker within allocate_timeout (counted), with
    /// `busy` of the pool's `members` busy then.
    pub(super) fn allocate_timed_out(&self, busy: usize, members: usize) -> Error {
        Counters::bump(&self.counters.timeouts);
        let config = &self.config.config;
        let ceiling = if config.is_elastic() {
            format!(" (an elastic pool of at most {})", config.ceiling())
        } else {
            String::new()
        };
        Error::new(
            ErrorKind::Timeout,
            format!(
                "no worker became free within allocate_timeout ({} ms): {busy} of {members} workers busy{ceiling}",
                config.allocate_timeout.as_millis(),
            ),
        )
    }

    /// A worker handed over by another thread, already counted busy.
    fn lease(self: &Arc<Self>, Handed { worker, sent }: Handed) -> (Lease, Option<Result<Sent, TaskFailure>>) {
        (Lease::new(self, worker), sent)
    }

    /// Takes an idle worker that is still alive: the last in the idle list (usually the
    /// one idle the shortest time) among those given back on the calling thread's CPU,
    /// or else the last of all (a CPU-local wake-up is cheaper; see `handoff`). One that
    /// died while idle (its watcher has not reported it yet) leaves the pool here.
    fn take_idle(&self, workers: &mut Workers) -> Option<Worker> {
        let cpu = sys::current_cpu();
        while !workers.idle.is_empty() {
            let nearest = workers.idle.iter().rposition(|worker| worker.idle_on_cpu() == cpu);
            let worker = workers.idle.remove(nearest.unwrap_or(workers.idle.len() - 1));
            if !worker.process().has_exited() {
                return Some(worker);
            }
            self.retire(workers, worker, Leaving::Died, false);
        }
        None
    }
}
