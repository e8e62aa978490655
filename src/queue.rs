//! The completion queue: tasks submitted without waiting (`Server::submit`), and their
//! outcomes, taken by an event loop when the queue's descriptor says some are there.
//!
//! The queue's descriptor (`ReadySignal`) is readable exactly while completions wait:
//! the completion that makes the list non-empty raises it, the one that empties the list
//! lowers it, both under the queue's lock. (Not one count per completion: with many in
//! flight, the host is woken once for a batch, and the library makes two system calls
//! per batch rather than two per task.) The reactor, which posts many completions in
//! one pass over the answers it found, raises the signals it owes at the end of the pass
//! ([`deferring_signals`]): the host it wakes would otherwise take the CPU from it at
//! each completion (measured: 43k wake-ups of the host thread per second, for 80k tasks,
//! with 64 in flight). One queue may serve several servers, and several threads may
//! take from it.
//!
//! Each submitted task has a [`Ticket`]: its id in the queue, which keeps what it knows of
//! the task (its tag, the line it waits in, the worker it runs on) in its table of
//! outstanding tasks, under its lock. The pool that runs the task holds the ticket (an id
//! and a weak reference: no allocation of its own). A ticket completes once: the first
//! outcome posted takes it out of the table and wins (a cancel posts `Cancelled` at once;
//! the task's own outcome, should it come later, is dropped). A closed (freed) queue
//! takes no more completions.

use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;
use crate::ready_signal::ReadySignal;
use crate::sync::{Condvar, Mutex};
use crate::Payload;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The outcome of one submitted task.
#[derive(Debug)]
pub struct Completion {
    /// The tag given at submission.
    pub tag: u64,
    /// The answer, or why there is none (a job error, a worker error, a timeout, `Cancelled`...).
    pub result: Result<Payload>,
}

/// Where submitted tasks report; see the module docs. Dropping it cancels what is
/// outstanding; completions never arrive after that.
pub struct CompletionQueue {
    shared: Arc<QueueShared>,
}

pub(crate) struct QueueShared {
    state: Mutex<QueueState>,
    arrived: Condvar,
    /// Readable exactly while completions wait (see the module docs).
    signal: ReadySignal,
}

struct QueueState {
    ready: VecDeque<Completion>,
    /// Threads blocked in `next` (only they need the condition variable's wake-up).
    sleepers: usize,
    /// Whether the signal is raised (it is while `ready` is not empty, but for the
    /// moments a raise is deferred).
    raised: bool,
    /// Tasks submitted and not completed, by ticket id.
    outstanding: HashMap<u64, TicketState>,
    closed: bool,
}

/// The next ticket id (ids are never reused).
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

impl CompletionQueue {
    /// A new, empty queue.
    pub fn new() -> Result<CompletionQueue> {
        let signal = ReadySignal::new()
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot make the queue's eventfd: {e}")))?;
        Ok(CompletionQueue {
            shared: Arc::new(QueueShared {
                state: Mutex::new(QueueState {
                    ready: VecDeque::new(),
                    sleepers: 0,
                    raised: false,
                    outstanding: HashMap::new(),
                    closed: false,
                }),
                arrived: Condvar::new(),
                signal,
            }),
        })
    }

    /// The descriptor that is readable exactly while completions wait: for poll, epoll
    /// or an event loop. Only poll it: never read, write or close it.
    pub fn fd(&self) -> RawFd {
        self.shared.signal.fd()
    }

    /// The next completion: `None` if none came within `timeout` (`Some(ZERO)`: do not
    /// wait; `None`: wait as long as it takes).
    pub fn next(&self, timeout: Option<Duration>) -> Option<Completion> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.shared.state.lock();
        loop {
            if let Some(completion) = state.ready.pop_front() {
                if state.ready.is_empty() && std::mem::take(&mut state.raised) {
                    self.shared.signal.lower();
                }
                return Some(completion);
            }
            if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
                return None;
            }
            state.sleepers += 1;
            match deadline {
                None => self.shared.arrived.wait(&mut state),
                Some(deadline) => {
                    self.shared.arrived.wait_until(&mut state, deadline);
                }
            }
            state.sleepers -= 1;
        }
    }

    /// Cancels every outstanding task submitted with `tag`: each completes with an error
    /// of kind `Cancelled` at once; one waiting for a worker never runs; one running has
    /// its worker killed (it may be mid-answer) and replaced. No task with that tag: a
    /// no-op.
    pub fn cancel(&self, tag: u64) {
        self.shared.cancel_where(|cancelled| cancelled == tag);
    }

    /// A ticket for a task submitted to this queue with `tag`, counted as outstanding.
    pub(crate) fn ticket(&self, tag: u64) -> Result<Ticket> {
        let id = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(Error::state("the completion queue is being freed"));
        }
        state.outstanding.insert(id, TicketState { tag, running: None, waiting_in: None });
        Ok(Ticket { id, queue: Arc::downgrade(&self.shared) })
    }

    /// Forgets a ticket whose submission failed at once (nothing is posted for it).
    pub(crate) fn forget(&self, ticket: &Ticket) {
        self.shared.state.lock().outstanding.remove(&ticket.id);
    }
}

impl QueueShared {
    /// Posts the outcome of ticket `id` if it is outstanding (dropped if the queue is
    /// being freed); false if it completed already.
    fn post(self: &Arc<Self>, id: u64, result: Result<Payload>) -> bool {
        let mut state = self.state.lock();
        let Some(ticket) = state.outstanding.remove(&id) else { return false };
        let wake = self.push(&mut state, Completion { tag: ticket.tag, result });
        drop(state);
        if wake {
            self.arrived.notify_one();
        }
        true
    }

    /// Adds `completion` to those waiting (unless the queue is being freed) and raises
    /// the signal, or owes it (see [`deferring_signals`]); whether a thread sleeps in
    /// `next` to be woken.
    fn push(self: &Arc<Self>, state: &mut QueueState, completion: Completion) -> bool {
        if state.closed {
            return false;
        }
        state.ready.push_back(completion);
        if !state.raised && !defer_signal(self) {
            self.signal.raise();
            state.raised = true;
        }
        state.sleepers > 0
    }

    /// Completes every outstanding task whose tag `picked` chooses with `Cancelled`, then
    /// stops it: taken back from the line it waits in, or its worker killed if it runs
    /// (it may be mid-answer). The worker of a task whose run ended meanwhile is not
    /// killed for it: its run ended under this lock (`Ticket::stop_running`).
    fn cancel_where(self: &Arc<Self>, picked: impl Fn(u64) -> bool) {
        let mut stopped = Vec::new();
        let mut wake = false;
        {
            let mut state = self.state.lock();
            let ids: Vec<u64> =
                state.outstanding.iter().filter(|(_, ticket)| picked(ticket.tag)).map(|(&id, _)| id).collect();
            for id in ids {
                let ticket = state.outstanding.remove(&id).expect("listed above");
                let cancelled = Error::new(ErrorKind::Cancelled, "the task was cancelled (rr_queue_cancel)");
                wake |= self.push(&mut state, Completion { tag: ticket.tag, result: Err(cancelled) });
                if let Some(process) = &ticket.running {
                    process.signal(libc::SIGKILL);
                }
                stopped.push((id, ticket.waiting_in));
            }
        }
        if wake {
            self.arrived.notify_all();
        }
        for (id, line) in stopped {
            if let Some(line) = line.and_then(|line| line.upgrade()) {
                line.withdraw(id);
            }
        }
    }

    /// Raises the signal if completions wait and it is not raised (a deferred raise).
    fn raise_if_waiting(&self) {
        let mut state = self.state.lock();
        if !state.raised && !state.ready.is_empty() {
            self.signal.raise();
            state.raised = true;
        }
    }
}

/// The signals a thread defers (see [`deferring_signals`]).
#[derive(Default)]
struct Deferred {
    /// Whether this thread defers its raises now.
    active: bool,
    /// The queues whose signal it owes a raise. Kept between passes, emptied: a pass
    /// allocates nothing for it.
    owed: Vec<Arc<QueueShared>>,
}

thread_local! {
    static DEFERRED_SIGNALS: RefCell<Deferred> = RefCell::new(Deferred::default());
}

/// Runs `body`, in which the completions this thread posts raise no signal; the signals
/// they owe are raised when it returns (or panics). Nested, only the outermost raises.
pub(crate) fn deferring_signals<T>(body: impl FnOnce() -> T) -> T {
    struct RaiseOnDrop;
    impl Drop for RaiseOnDrop {
        fn drop(&mut self) {
            let mut owed = DEFERRED_SIGNALS.with(|deferred| {
                let mut deferred = deferred.borrow_mut();
                deferred.active = false;
                std::mem::take(&mut deferred.owed)
            });
            for queue in owed.drain(..) {
                queue.raise_if_waiting();
            }
            // The emptied list goes back, with its room, for the next pass.
            DEFERRED_SIGNALS.with(|deferred| deferred.borrow_mut().owed = owed);
        }
    }
    let outermost = DEFERRED_SIGNALS.with(|deferred| !std::mem::replace(&mut deferred.borrow_mut().active, true));
    let _raise = outermost.then(|| RaiseOnDrop);
    body()
}

/// Notes that this thread owes `queue` a raise, if it defers them; false if it does not.
fn defer_signal(queue: &Arc<QueueShared>) -> bool {
    DEFERRED_SIGNALS.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        if !deferred.active {
            return false;
        }
        if !deferred.owed.iter().any(|known| Arc::ptr_eq(known, queue)) {
            deferred.owed.push(queue.clone());
        }
        true
    })
}

impl Drop for CompletionQueue {
    /// Cancels what is outstanding and drops what was not taken: no completion arrives
    /// after this. Returns at once: running tasks' workers are killed, not waited for.
    fn drop(&mut self) {
        {
            let mut state = self.shared.state.lock();
            state.closed = true;
            state.ready.clear();
        }
        self.shared.cancel_where(|_| true);
    }
}

/// Where a task waits for a worker (a pool's line), to take it back for a cancel.
pub(crate) trait TaskLine: Send + Sync {
    /// Takes the task of ticket `id` out of the line; true if it still waited there
    /// (then it never runs).
    fn withdraw(&self, id: u64) -> bool;
}

/// One submitted task: its id in its queue, which keeps the rest (`TicketState`).
/// Cloned freely (an id and a weak reference).
#[derive(Clone)]
pub(crate) struct Ticket {
    id: u64,
    queue: Weak<QueueShared>,
}

/// What a queue knows of a task it has outstanding.
struct TicketState {
    tag: u64,
    /// The worker running the task, while it does: a cancel kills it.
    running: Option<Arc<Process>>,
    /// The line the task waits in, while it waits for a worker.
    waiting_in: Option<Weak<dyn TaskLine>>,
}

impl Ticket {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Runs `change` on the task's entry in its queue, while it is outstanding; `None`
    /// once it completed (or its queue is gone).
    fn with_state<T>(&self, change: impl FnOnce(&mut TicketState) -> T) -> Option<T> {
        let queue = self.queue.upgrade()?;
        let mut state = queue.state.lock();
        state.outstanding.get_mut(&self.id).map(change)
    }

    /// Posts the task's outcome, unless one was posted already; true if this one was.
    pub(crate) fn complete(&self, result: Result<Payload>) -> bool {
        self.queue.upgrade().is_some_and(|queue| queue.post(self.id, result))
    }

    /// The task waits for a worker in `line`, which takes it back for a cancel.
    pub(crate) fn set_waiting(&self, line: Weak<dyn TaskLine>) {
        self.with_state(|ticket| ticket.waiting_in = Some(line));
    }

    /// The task runs on `process` from now on (a cancel kills it); false if its outcome
    /// was posted already (a cancel, most likely): then it must not run.
    pub(crate) fn start_running(&self, process: &Arc<Process>) -> bool {
        self.with_state(|ticket| {
            ticket.waiting_in = None;
            ticket.running = Some(process.clone());
        })
        .is_some()
    }

    /// The task's run ended (or moves to another worker): from now on a cancel kills no
    /// worker for it. True if it was cancelled before that: its worker may have been
    /// killed, and must not run another task.
    pub(crate) fn stop_running(&self) -> bool {
        self.with_state(|ticket| ticket.running = None).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        crate::sys::is_readable_now(fd).unwrap()
    }

    #[test]
    fn deferred_signals_are_raised_once_the_outermost_deferral_ends() {
        let queue = CompletionQueue::new().unwrap();
        let (first, second) = (queue.ticket(1).unwrap(), queue.ticket(2).unwrap());
        deferring_signals(|| {
            deferring_signals(|| assert!(first.complete(Ok(Payload::new(b"", b"one")))));
            assert!(!readable(queue.fd()), "raised when the inner deferral ended");
            assert!(second.complete(Ok(Payload::new(b"", b"two"))));
            assert!(!readable(queue.fd()));
        });
        assert!(readable(queue.fd()), "the owed raise was lost");
        assert_eq!(queue.next(Some(Duration::ZERO)).unwrap().tag, 1);
        assert_eq!(queue.next(Some(Duration::ZERO)).unwrap().tag, 2);
        assert!(!readable(queue.fd()));
        // And again, with the list the last deferral left behind.
        let third = queue.ticket(3).unwrap();
        deferring_signals(|| assert!(third.complete(Ok(Payload::new(b"", b"three")))));
        assert!(readable(queue.fd()));
    }
}
