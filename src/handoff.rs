//! Handing a worker straight to the caller that has waited longest.
//!
//! A caller that finds no idle worker queues its slot; whoever frees a worker (a
//! caller done with its task, or the supervisor with a new worker) takes the first slot
//! off the queue and puts the worker in it. The woken caller needs no lock of the pool
//! and cannot lose the worker to a caller that arrived later, so waiting is first come,
//! first served, and each hand-off wakes exactly one thread. Each thread has one slot
//! for its whole life, so waiting allocates nothing.

use crate::worker::Worker;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Instant;

/// What a waiting caller receives.
pub(crate) enum Delivery {
    /// Nothing yet.
    Pending,
    /// A worker, already counted as busy: run the task on it.
    Worker(Worker),
    /// The pool changed (stopped, retired, failed): look at it again.
    Recheck,
}

/// Where one thread receives what is handed to it.
pub(crate) struct Slot {
    delivery: Mutex<Delivery>,
    ready: Condvar,
}

thread_local! {
    static MINE: Arc<Slot> = Arc::new(Slot { delivery: Mutex::new(Delivery::Pending), ready: Condvar::new() });
}

impl Slot {
    /// The calling thread's slot, empty.
    pub(crate) fn mine() -> Arc<Slot> {
        let slot = MINE.with(Arc::clone);
        debug_assert!(matches!(*slot.delivery.lock(), Delivery::Pending));
        slot
    }

    /// Puts `delivery` in the slot and wakes its thread.
    pub(crate) fn deliver(&self, delivery: Delivery) {
        *self.delivery.lock() = delivery;
        self.ready.notify_one();
    }

    /// Waits until something is delivered, or `deadline` (then `Pending`). Takes what
    /// was delivered, leaving the slot empty.
    pub(crate) fn receive(&self, deadline: Option<Instant>) -> Delivery {
        let mut delivery = self.delivery.lock();
        while matches!(*delivery, Delivery::Pending) {
            match deadline {
                Some(deadline) => {
                    if self.ready.wait_until(&mut delivery, deadline).timed_out() {
                        break;
                    }
                }
                None => self.ready.wait(&mut delivery),
            }
        }
        std::mem::replace(&mut *delivery, Delivery::Pending)
    }
}
