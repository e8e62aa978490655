//! Stopping a pool: for good (the server stops), or in favour of a newer one (a
//! reconfigure or reset retires it).

use super::submit::AsyncTask;
use super::supervisor::Order;
use super::{Phase, Pool, Workers};
use crate::event::EventKind;
use crate::handoff::{Claimed, Delivery};
use crate::state::WorkerState;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

impl Pool {
    /// Wakes every waiting caller to look at the pool again (its phase changed), and
    /// takes the waiting submitted tasks out of line: the caller settles them once the
    /// lock is released (`settle_orphans`).
    pub(super) fn wake_waiters(workers: &mut Workers) -> Vec<AsyncTask> {
        let mut orphans = Vec::new();
        for claimed in workers.waiters.drain() {
            match claimed {
                Claimed::Caller(caller) => caller.deliver(Delivery::Recheck),
                Claimed::Task(task) => orphans.push(task),
            }
        }
        workers.next_task_deadline = None;
        orphans
    }

    /// Retires the pool in favour of a newer one: callers and tasks waiting here move there.
    pub(crate) fn retire_pool(self: &Arc<Self>) {
        let orphans = {
            let mut workers = self.workers.lock();
            workers.phase = Phase::Retired;
            Pool::wake_waiters(&mut workers)
        };
        self.settle_orphans(orphans);
    }

    /// Stops the pool: waits for running tasks (up to `destroy_timeout`, then kills the
    /// workers that run them), then stops every worker at once. A stream that is still
    /// open then (its caller holds it) is not waited for any further: its worker was
    /// killed, and its caller gets the worker error at its next read.
    pub(crate) fn stop(self: &Arc<Self>) {
        let destroy = self.config.config.destroy_timeout;
        let (idle, orphans) = {
            let mut workers = self.workers.lock();
            if !matches!(workers.phase, Phase::Retired | Phase::Failed(_)) {
                workers.phase = Phase::Stopped;
            }
            let orphans = Pool::wake_waiters(&mut workers);
            let deadline = Instant::now() + destroy;
            while workers.busy > 0 {
                if self.changed.wait_until(&mut workers, deadline).timed_out() {
                    // Their tasks fail with a worker error, and their leases end (a
                    // stream's, when its caller next reads it).
                    for member in workers.members.values() {
                        if matches!(member.status.state(), WorkerState::Working | WorkerState::Streaming) {
                            member.process.signal(libc::SIGKILL);
                        }
                    }
                    while workers.busy > self.held_by_streams.load(Ordering::Acquire) {
                        self.changed.wait(&mut workers);
                    }
                    break;
                }
            }
            workers.members.clear();
            (std::mem::take(&mut workers.idle), orphans)
        };
        self.settle_orphans(orphans);
        // Every submitted task has its outcome now: the reactor has nothing left.
        if let Some(reactor) = self.reactor.get() {
            reactor.stop();
        }
        let _ = self.orders.send(Order::Quit);
        if let Some(supervisor) = self.supervisor.lock().take() {
            let _ = supervisor.join();
        }
        std::thread::scope(|scope| {
            for worker in idle {
                let events = &self.events;
                scope.spawn(move || worker.stop(destroy, events));
            }
        });
        self.events.emit(EventKind::PoolDestruct, None, None);
    }
}
