//! Tasks submitted without waiting (`Server::submit`): started on an idle worker by the
//! submitting thread, or queued in line with the blocking callers (first come, first
//! served), and read by the pool's reactor thread (`reactor`), which posts each outcome
//! to the task's completion queue. A submitted task is never run by a thread of its own.

use super::reactor::{Reactor, Running};
use super::take::Lease;
use super::{Phase, Pool, Workers, MAX_REROUTES_PER_TASK};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::{TaskLine, Ticket};
use crate::stats::Counters;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// A task submitted to a completion queue: its inputs (copied), its ticket, and how far
/// it got.
pub(crate) struct AsyncTask {
    pub(crate) ticket: Ticket,
    /// The context, then the body.
    input: Vec<u8>,
    context_len: usize,
    /// When it must have a worker (allocate_timeout, counted from its submission).
    deadline: Instant,
    /// Times it moved to another worker (stop requests, workers gone before it reached them).
    reroutes: usize,
    /// Why the last worker never got it, when that is why it moved.
    undelivered: Option<Error>,
}

impl AsyncTask {
    /// A task of copies of `context` and `body`, for `ticket`, to have a worker by `deadline`.
    pub(crate) fn new(ticket: Ticket, context: &[u8], body: &[u8], deadline: Instant) -> AsyncTask {
        let mut input = Vec::with_capacity(context.len() + body.len());
        input.extend_from_slice(context);
        input.extend_from_slice(body);
        AsyncTask { ticket, input, context_len: context.len(), deadline, reroutes: 0, undelivered: None }
    }

    pub(crate) fn context(&self) -> &[u8] {
        &self.input[..self.context_len]
    }

    pub(crate) fn body(&self) -> &[u8] {
        &self.input[self.context_len..]
    }

    /// When it must have a worker.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// What became of a submission.
pub(crate) enum Submitted {
    /// It runs, or waits in line.
    Accepted,
    /// The pool was retired by a reconfigure: submit it to the current pool.
    Retired(AsyncTask),
}

/// What a pool does with a task it cannot run because it was retired: its owner submits
/// it to the current pool.
pub(crate) type ResubmitHook = Box<dyn Fn(AsyncTask) + Send + Sync>;

impl Pool {
    /// Starts `task` on an idle worker now, or queues it; errors known at once (a pool
    /// stopped or failed, max_queue reached) are returned, the task dropped, and nothing
    /// posted.
    pub(crate) fn submit(self: &Arc<Self>, task: AsyncTask) -> Result<Submitted> {
        let mut workers = self.workers.lock();
        match &workers.phase {
            Phase::Running => {}
            Phase::Retired => return Ok(Submitted::Retired(task)),
            Phase::Stopped => return Err(Error::state("the server was stopped")),
            Phase::Failed(error) => return Err(error.clone()),
        }
        if let Some(lease) = self.lease_idle(&mut workers) {
            drop(workers);
            self.start_async(lease, task);
            return Ok(Submitted::Accepted);
        }
        self.refuse_when_line_is_full(&workers)?;
        self.queue_task(&mut workers, task);
        Ok(Submitted::Accepted)
    }

    /// Puts `task` in line for a worker; the reactor ends its wait at its allocate
    /// deadline.
    fn queue_task(self: &Arc<Self>, workers: &mut Workers, task: AsyncTask) {
        let deadline = task.deadline;
        let line: Weak<dyn TaskLine> = Arc::downgrade(self) as Weak<Pool>;
        task.ticket.set_waiting(line);
        workers.waiters.push_task(task, Instant::now());
        self.note_pressure(workers);
        if workers.next_task_deadline.is_none_or(|next| deadline < next) {
            workers.next_task_deadline = Some(deadline);
            if let Some(reactor) = self.reactor() {
                reactor.expect_deadline(deadline);
            }
        }
    }

    /// Runs `task` on the worker of `lease` (counted busy): sends what fits now, and
    /// gives the worker to the reactor, which sends the rest and reads the answer. A task
    /// cancelled meanwhile does not run: the worker is given back as it is.
    pub(super) fn start_async(self: &Arc<Self>, mut lease: Lease, task: AsyncTask) {
        let Some(reactor) = self.reactor() else {
            lease.give_back();
            task.ticket.complete(Err(Error::new(ErrorKind::Internal, "cannot start the pool's reactor thread")));
            return;
        };
        // Noted as running before it is written, so that a cancel from now on kills the
        // worker; a task cancelled before does not run.
        if !task.ticket.start_running(lease.worker_ref().process()) {
            lease.give_back();
            return;
        }
        let deadline = self.task_deadline();
        let worker = lease.worker();
        let sent = worker.start_sending_task(task.context(), task.body(), deadline);
        reactor.run(Running::new(lease, task, sent));
    }

    /// This pool's reactor, started on first use (`None` if its thread cannot start).
    pub(super) fn reactor(self: &Arc<Self>) -> Option<&Arc<Reactor>> {
        if let Some(reactor) = self.reactor.get() {
            return Some(reactor);
        }
        let _starting = self.reactor_start.lock();
        if self.reactor.get().is_none() {
            match Reactor::start(self) {
                Ok(reactor) => {
                    let _ = self.reactor.set(reactor);
                }
                Err(e) => eprintln!("libroadrunner: cannot start the reactor thread: {e}"),
            }
        }
        self.reactor.get()
    }

    /// Runs `task` again, on another worker: its worker asked to be replaced, or never
    /// got it (`undelivered`). Bounded, as for `exec`.
    pub(super) fn reroute(self: &Arc<Self>, mut task: AsyncTask, undelivered: Option<Error>) {
        task.reroutes += 1;
        if undelivered.is_some() {
            task.undelivered = undelivered;
        }
        if task.reroutes > MAX_REROUTES_PER_TASK {
            task.ticket.complete(Err(self.gave_up_rerouting(task.undelivered.take())));
            return;
        }
        self.resubmit_or_fail(task);
    }

    /// Submits `task` here again, or where the pool's owner says once this pool is
    /// retired; a task no pool takes completes with the reason.
    pub(super) fn resubmit_or_fail(self: &Arc<Self>, task: AsyncTask) {
        let ticket = task.ticket.clone();
        match self.submit(task) {
            Ok(Submitted::Accepted) => {}
            Ok(Submitted::Retired(task)) => (self.resubmit)(task),
            Err(error) => {
                ticket.complete(Err(error));
            }
        }
    }

    /// Tasks taken out of the queue because the pool changed phase: they go where the
    /// pool's phase says (retired: the current pool; stopped or failed: that error).
    pub(super) fn settle_orphans(self: &Arc<Self>, tasks: Vec<AsyncTask>) {
        for task in tasks {
            self.resubmit_or_fail(task);
        }
    }

    /// Completes the waiting tasks whose allocate deadline passed, with a timeout.
    /// Returns the next deadline of a waiting task.
    pub(super) fn expire_waiting_tasks(&self, now: Instant) -> Option<Instant> {
        let (expired, (busy, members), next) = {
            let mut workers = self.workers.lock();
            match workers.next_task_deadline {
                Some(next) if next <= now => {}
                next => return next,
            }
            // The earliest deadline noted may be of a task served since: the line is
            // looked through only when that deadline comes (see `Workers`).
            let expired = workers.waiters.remove_tasks_due(now);
            let next = workers.waiters.earliest_task_deadline();
            workers.next_task_deadline = next;
            (expired, (workers.busy, workers.members.len()), next)
        };
        for task in expired {
            task.ticket.complete(Err(self.allocate_timed_out(busy, members)));
        }
        next
    }
}

impl TaskLine for Pool {
    fn withdraw(&self, id: u64) -> bool {
        let withdrawn = self.workers.lock().waiters.remove_task(id).is_some();
        if withdrawn {
            Counters::bump(&self.counters.tasks_cancelled);
        }
        withdrawn
    }
}
