//! Handing a freed worker straight to a caller that waits for one.
//!
//! A caller that finds no idle worker queues its slot; whoever frees a worker (a
//! caller done with its task, or the supervisor with a new worker) takes a slot off
//! the queue and puts the worker in it. The woken caller needs no lock of the pool and
//! cannot lose the worker to a caller that arrived later, and each hand-off wakes
//! exactly one thread. Each thread has one slot for its whole life, so waiting
//! allocates nothing.
//!
//! Submitted tasks (see `pool::submit`) wait in the same line, on no thread: a freed
//! worker given to one starts it at once, and one first in line is never passed over.
//!
//! Which waiter: the longest-waiting one that last ran on the CPU of the thread that
//! frees the worker, so that the wake-up, and the pipe traffic that follows, stay on
//! one CPU (waking a thread on another CPU costs an interrupt there, and in a virtual
//! machine more than the round trip to the worker). A waiter is passed over at most
//! `MAX_PASSED_OVER` times, then served whatever CPU it is on.
//!
//! A small task waits in the slot along with its caller: the caller that frees a worker
//! sends that task to the worker itself before it wakes the waiter (only what the
//! worker's buffer takes at once: that caller never waits for the worker to read; the
//! waiter sends the rest, if any). The worker is then
//! at work while the waiter is being woken, and the waiter, once awake, usually finds
//! the answer already there: one wake-up of the waiting thread per task instead of two
//! (one for the worker, one for the answer).
//!
//! Measured on a 2-vCPU VM, 4 workers and 16 callers (`bench/bench --exec-loop`,
//! medians): strict arrival order ~93k tasks/s, CPU-local order ~116k, CPU-local order
//! with the task sent ahead ~150k (4 workers and 4 callers, with no waiting: ~220k).

use crate::pool::AsyncTask;
use crate::relay::Sent;
use crate::sync::{Condvar, Mutex};
use crate::worker::{TaskFailure, Worker};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// A worker for a caller's task, already counted as busy.
pub(crate) struct Handed {
    pub worker: Worker,
    /// Set when the task was sent to the worker on the way (all of it, or as much as
    /// its buffer took at once), with how that went: the caller sends the rest, if any,
    /// and reads the answer (or handles the failure) as if it had sent it all.
    pub sent: Option<Result<Sent, TaskFailure>>,
}

/// What a waiting caller receives.
// Not boxed: a delivery lives in its thread's slot and moves once; a box would cost an
// allocation per hand-off.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Delivery {
    /// Nothing yet.
    Pending,
    /// A worker: run the task on it (or finish running it).
    Worker(Handed),
    /// The pool changed (stopped, retired, failed): look at it again.
    Recheck,
}

/// How many later callers may be served before a waiting one, for CPU locality. Bounds
/// the unfairness: a caller waits for at most this many hand-offs more than in strict
/// arrival order.
const MAX_PASSED_OVER: u32 = 4;
/// How far down the queue a waiter on the same CPU is looked for: the look is made
/// under the pool's lock, once per task, and must stay short with thousands waiting.
const NEAREST_SEARCH_DEPTH: usize = 64;

/// The callers waiting for a worker, oldest first.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiting: VecDeque<Waiter>,
}

struct Waiter {
    who: Waiting,
    /// Where the caller ran when it began to wait.
    cpu: i32,
    /// How many callers that came later were served first.
    passed_over: u32,
    /// When it began to wait (an elastic pool grows when the oldest waited long).
    since: Instant,
}

impl WaitQueue {
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Queues `slot`, whose thread runs on `cpu`, waiting since `since`.
    pub(crate) fn push(&mut self, slot: Arc<Slot>, cpu: i32, since: Instant) {
        self.waiting.push_back(Waiter { who: Waiting::Caller(slot), cpu, passed_over: 0, since });
    }

    /// Queues a submitted task (it waits on no thread, so on no CPU: served in its turn).
    pub(crate) fn push_task(&mut self, task: AsyncTask, since: Instant) {
        self.waiting.push_back(Waiter { who: Waiting::Task(task), cpu: -1, passed_over: 0, since });
    }

    /// Since when the longest-waiting waiter waits.
    pub(crate) fn oldest_since(&self) -> Option<Instant> {
        self.waiting.iter().map(|waiter| waiter.since).min()
    }

    /// Takes the submitted task of ticket `id` out of the queue, if it still waits.
    pub(crate) fn remove_task(&mut self, id: u64) -> Option<AsyncTask> {
        let position = self
            .waiting
            .iter()
            .position(|waiter| matches!(&waiter.who, Waiting::Task(task) if task.ticket.id() == id))?;
        match self.waiting.remove(position)?.who {
            Waiting::Task(task) => Some(task),
            Waiting::Caller(_) => None,
        }
    }

    /// Takes out of the queue the submitted tasks whose allocate deadline is `now` or past.
    pub(crate) fn remove_tasks_due(&mut self, now: Instant) -> Vec<AsyncTask> {
        let mut due = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for waiter in self.waiting.drain(..) {
            match waiter.who {
                Waiting::Task(task) if task.deadline() <= now => due.push(task),
                who => kept.push_back(Waiter { who, ..waiter }),
            }
        }
        self.waiting = kept;
        due
    }

    /// The earliest allocate deadline of the submitted tasks in the queue.
    pub(crate) fn earliest_task_deadline(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|waiter| match &waiter.who {
                Waiting::Task(task) => Some(task.deadline()),
                Waiting::Caller(_) => None,
            })
            .min()
    }

    /// The oldest waiter.
    pub(crate) fn pop_oldest(&mut self) -> Option<Claimed> {
        self.waiting.pop_front().map(|waiter| Claimed::of(waiter.who))
    }

    /// The waiter to hand a worker freed by a thread on `cpu`: the oldest one that
    /// waits on that CPU (among the `NEAREST_SEARCH_DEPTH` oldest), unless the oldest of
    /// all was passed over often enough (or nobody there waits on this CPU).
    pub(crate) fn pop_nearest(&mut self, cpu: i32) -> Option<Claimed> {
        let oldest = self.waiting.front()?;
        // A submitted task first in line is served at once: it has no thread to wake,
        // so no CPU to prefer, and callers that came after it never pass it.
        let chosen = if oldest.passed_over >= MAX_PASSED_OVER || matches!(oldest.who, Waiting::Task(_)) {
            0
        } else {
            let nearest = self.waiting.iter().take(NEAREST_SEARCH_DEPTH).position(|waiter| waiter.cpu == cpu);
            nearest.unwrap_or(0)
        };
        for waiter in self.waiting.iter_mut().take(chosen) {
            waiter.passed_over += 1;
        }
        self.waiting.remove(chosen).map(|waiter| Claimed::of(waiter.who))
    }

    /// Takes `slot` out of the queue; false if it was no longer there (something was
    /// delivered to it, or is on its way).
    pub(crate) fn remove(&mut self, slot: &Arc<Slot>) -> bool {
        let position = self
            .waiting
            .iter()
            .position(|waiter| matches!(&waiter.who, Waiting::Caller(mine) if Arc::ptr_eq(mine, slot)));
        position.and_then(|i| self.waiting.remove(i)).is_some()
    }

    /// Empties the queue, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Claimed> + '_ {
        self.waiting.drain(..).map(|waiter| Claimed::of(waiter.who))
    }
}

/// Who waits in line for a worker.
enum Waiting {
    /// A caller, blocked in its slot.
    Caller(Arc<Slot>),
    /// A submitted task, on no thread (see `pool::submit`).
    Task(AsyncTask),
}

/// A waiter taken off the queue.
pub(crate) enum Claimed {
    /// A caller, to be delivered to (see [`ClaimedCaller`]).
    Caller(ClaimedCaller),
    /// A submitted task, to be started on the worker freed for it.
    Task(AsyncTask),
}

impl Claimed {
    fn of(who: Waiting) -> Claimed {
        match who {
            Waiting::Caller(slot) => Claimed::Caller(ClaimedCaller(Some(slot))),
            Waiting::Task(task) => Claimed::Task(task),
        }
    }
}

/// A caller taken off the queue, to be delivered to. A caller off the queue waits for
/// its delivery without a deadline (see `LentTask`), so one is always made: if the
/// claim is dropped without [`ClaimedCaller::deliver`] (a panic on the way), the caller is
/// told to look at the pool again.
pub(crate) struct ClaimedCaller(Option<Arc<Slot>>);

impl ClaimedCaller {
    /// The task the waiter offered, if any (see [`Slot::lent_task`]).
    pub(crate) fn lent_task(&self) -> Option<LentTask> {
        self.0.as_ref().and_then(|slot| slot.lent_task())
    }

    /// Puts `delivery` in the waiter's slot and wakes it.
    pub(crate) fn deliver(mut self, delivery: Delivery) {
        if let Some(slot) = self.0.take() {
            slot.deliver(delivery);
        }
    }
}

impl Drop for ClaimedCaller {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.deliver(Delivery::Recheck);
        }
    }
}

/// A waiting caller's task, lent to whoever takes the caller's slot off the queue.
///
/// It points into the caller's own `context` and `body`. They stay valid because the
/// caller does not leave the wait before something is delivered to its slot once the
/// slot was taken off the queue (a caller that times out first looks for its slot in
/// the queue, under the pool's lock, and waits for the delivery if it is gone), and only
/// the one that took the slot off the queue reads the task, before it delivers.
#[derive(Clone, Copy)]
pub(crate) struct LentTask {
    context: (*const u8, usize),
    body: (*const u8, usize),
}

// SAFETY: the bytes are only read, by one thread at a time, while the lending caller
// is blocked in `Slot::receive` (see the type's documentation).
unsafe impl Send for LentTask {}

impl LentTask {
    pub(crate) fn new(context: &[u8], body: &[u8]) -> LentTask {
        LentTask { context: (context.as_ptr(), context.len()), body: (body.as_ptr(), body.len()) }
    }

    /// The task's context and body.
    ///
    /// # Safety
    /// Only between taking the slot off the queue and delivering to it (see the type).
    pub(crate) unsafe fn parts(&self) -> (&[u8], &[u8]) {
        // SAFETY: the caller's slices, alive while it waits (see the type).
        unsafe {
            (
                std::slice::from_raw_parts(self.context.0, self.context.1),
                std::slice::from_raw_parts(self.body.0, self.body.1),
            )
        }
    }
}

struct Inbox {
    delivery: Delivery,
    task: Option<LentTask>,
}

/// Where one thread receives what is handed to it.
pub(crate) struct Slot {
    inbox: Mutex<Inbox>,
    ready: Condvar,
}

thread_local! {
    static MINE: Arc<Slot> = Arc::new(Slot::new());
}

impl Slot {
    fn new() -> Slot {
        Slot { inbox: Mutex::new(Inbox { delivery: Delivery::Pending, task: None }), ready: Condvar::new() }
    }

    /// The calling thread's slot, empty, offering `task` (if any) to be sent by
    /// whoever hands it a worker.
    pub(crate) fn mine(task: Option<LentTask>) -> Arc<Slot> {
        let slot = MINE.with(Arc::clone);
        {
            let mut inbox = slot.inbox.lock();
            debug_assert!(matches!(inbox.delivery, Delivery::Pending));
            inbox.task = task;
        }
        slot
    }

    /// The task the waiting caller offered, if any. Only for the one that took the slot
    /// off the queue, before it delivers.
    fn lent_task(&self) -> Option<LentTask> {
        self.inbox.lock().task
    }

    /// Puts `delivery` in the slot and wakes its thread.
    fn deliver(&self, delivery: Delivery) {
        self.inbox.lock().delivery = delivery;
        self.ready.notify_one();
    }

    /// Waits until something is delivered, or `deadline` (then `Pending`). Takes what
    /// was delivered, leaving the slot empty. The lent task stays lent while the result
    /// is `Pending`.
    pub(crate) fn receive(&self, deadline: Option<Instant>) -> Delivery {
        let mut inbox = self.inbox.lock();
        while matches!(inbox.delivery, Delivery::Pending) {
            match deadline {
                Some(deadline) => {
                    if self.ready.wait_until(&mut inbox, deadline).timed_out() {
                        return Delivery::Pending;
                    }
                }
                None => self.ready.wait(&mut inbox),
            }
        }
        inbox.task = None;
        std::mem::replace(&mut inbox.delivery, Delivery::Pending)
    }

    /// Takes back the lent task after leaving the queue without a delivery.
    pub(crate) fn withdraw(&self) {
        self.inbox.lock().task = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_on(cpus: &[i32]) -> (WaitQueue, Vec<Arc<Slot>>) {
        let mut queue = WaitQueue::default();
        let slots: Vec<Arc<Slot>> = cpus.iter().map(|_| Arc::new(Slot::new())).collect();
        for (slot, &cpu) in slots.iter().zip(cpus) {
            queue.push(slot.clone(), cpu, Instant::now());
        }
        (queue, slots)
    }

    /// Which of `slots` was claimed; the claim is then delivered, so that dropping it
    /// does not deliver a recheck.
    fn caller(popped: Option<Claimed>) -> ClaimedCaller {
        match popped.expect("a waiter") {
            Claimed::Caller(caller) => caller,
            Claimed::Task(_) => panic!("a task, where a caller was queued"),
        }
    }

    fn position(slots: &[Arc<Slot>], popped: Option<Claimed>) -> usize {
        let popped = caller(popped);
        let slot = popped.0.clone().expect("a claimed slot");
        popped.deliver(Delivery::Pending);
        slots.iter().position(|mine| Arc::ptr_eq(mine, &slot)).expect("one of ours")
    }

    #[test]
    fn a_freed_worker_goes_to_the_oldest_waiter_on_the_same_cpu() {
        let (mut queue, slots) = queue_on(&[0, 1, 0, 1]);
        assert_eq!(position(&slots, queue.pop_nearest(1)), 1);
        assert_eq!(position(&slots, queue.pop_nearest(1)), 3);
        assert_eq!(position(&slots, queue.pop_nearest(0)), 0);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn with_nobody_on_the_same_cpu_the_oldest_waiter_is_served() {
        let (mut queue, slots) = queue_on(&[0, 0]);
        assert_eq!(position(&slots, queue.pop_nearest(1)), 0);
        assert_eq!(position(&slots, queue.pop_nearest(-1)), 1);
        assert!(queue.pop_nearest(0).is_none());
    }

    #[test]
    fn the_oldest_waiter_is_passed_over_a_bounded_number_of_times() {
        let mut queue = WaitQueue::default();
        let oldest = Arc::new(Slot::new());
        queue.push(oldest.clone(), 0, Instant::now());
        // Workers keep being freed on CPU 1, where new callers keep arriving.
        for round in 0..MAX_PASSED_OVER {
            queue.push(Arc::new(Slot::new()), 1, Instant::now());
            let served = caller(queue.pop_nearest(1));
            assert!(!Arc::ptr_eq(served.0.as_ref().unwrap(), &oldest), "served too early, in round {round}");
        }
        queue.push(Arc::new(Slot::new()), 1, Instant::now());
        let served = caller(queue.pop_nearest(1));
        assert!(Arc::ptr_eq(served.0.as_ref().unwrap(), &oldest), "passed over more than {MAX_PASSED_OVER} times");
    }

    #[test]
    fn a_waiter_on_the_same_cpu_is_looked_for_only_near_the_front() {
        let mut cpus = vec![0; NEAREST_SEARCH_DEPTH];
        cpus.push(1);
        let (mut queue, slots) = queue_on(&cpus);
        assert_eq!(position(&slots, queue.pop_nearest(1)), 0);
        queue.push(Arc::new(Slot::new()), 0, Instant::now());
        assert_eq!(position(&slots, queue.pop_nearest(1)), NEAREST_SEARCH_DEPTH, "now within reach");
    }

    #[test]
    fn a_waiter_that_left_is_not_served() {
        let (mut queue, slots) = queue_on(&[0, 0, 0]);
        assert!(queue.remove(&slots[0]));
        assert!(!queue.remove(&slots[0]), "removed twice");
        assert_eq!(position(&slots, queue.pop_oldest()), 1);
        assert_eq!(queue.drain().count(), 1);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_lent_task_is_readable_until_delivery_and_gone_after() {
        let context = b"ctx".to_vec();
        let body = b"body".to_vec();
        let slot = Arc::new(Slot::new());
        slot.inbox.lock().task = Some(LentTask::new(&context, &body));
        let task = slot.lent_task().expect("lent");
        // SAFETY: the slot has not been delivered to; the vectors outlive this.
        let (c, b) = unsafe { task.parts() };
        assert_eq!((c, b), (&context[..], &body[..]));
        let receiver = {
            let slot = slot.clone();
            std::thread::spawn(move || matches!(slot.receive(None), Delivery::Recheck))
        };
        slot.deliver(Delivery::Recheck);
        assert!(receiver.join().unwrap());
        assert!(slot.lent_task().is_none(), "the task stays lent after the delivery was received");
    }

    #[test]
    fn a_receive_that_times_out_keeps_the_task_lent_until_withdrawn() {
        let (context, body) = (b"c".to_vec(), b"b".to_vec());
        let slot = Arc::new(Slot::new());
        slot.inbox.lock().task = Some(LentTask::new(&context, &body));
        let soon = Instant::now() + std::time::Duration::from_millis(1);
        assert!(matches!(slot.receive(Some(soon)), Delivery::Pending));
        assert!(slot.lent_task().is_some(), "a worker may already be on its way with it");
        slot.withdraw();
        assert!(slot.lent_task().is_none());
    }
}
