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
//! Each submitted task has a [`Ticket`], shared by the queue (to cancel it) and by the
//! pool that runs it. A ticket completes once: the first outcome posted wins (a cancel
//! posts `Cancelled` at once; the task's own outcome, should it come later, is dropped).
//! A closed (freed) queue takes no more completions.

use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;
use crate::ready_signal::ReadySignal;
use crate::sync::{Condvar, Mutex};
use crate::Payload;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    outstanding: HashMap<u64, Arc<Ticket>>,
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
        let tickets: Vec<Arc<Ticket>> =
            self.shared.state.lock().outstanding.values().filter(|ticket| ticket.tag == tag).cloned().collect();
        for ticket in tickets {
            ticket.cancel();
        }
    }

    /// A ticket for a task submitted to this queue with `tag`, counted as outstanding.
    pub(crate) fn ticket(&self, tag: u64) -> Result<Arc<Ticket>> {
        let ticket = Arc::new(Ticket {
            id: NEXT_TICKET.fetch_add(1, Ordering::Relaxed),
            tag,
            queue: Arc::downgrade(&self.shared),
            done: AtomicBool::new(false),
            running: Mutex::new(None),
            waiting_in: Mutex::new(None),
        });
        let mut state = self.shared.state.lock();
        if state.closed {
            return Err(Error::state("the completion queue is being freed"));
        }
        state.outstanding.insert(ticket.id, ticket.clone());
        Ok(ticket)
    }

    /// Forgets a ticket whose submission failed at once (nothing is posted for it).
    pub(crate) fn forget(&self, ticket: &Ticket) {
        ticket.done.store(true, Ordering::Release);
        self.shared.state.lock().outstanding.remove(&ticket.id);
    }
}

impl QueueShared {
    /// Posts the completion of ticket `id` (dropped if the queue is being freed).
    fn post(self: &Arc<Self>, id: u64, completion: Completion) {
        let mut state = self.state.lock();
        state.outstanding.remove(&id);
        if state.closed {
            return;
        }
        state.ready.push_back(completion);
        if !state.raised && !defer_signal(self) {
            self.signal.raise();
            state.raised = true;
        }
        let wake = state.sleepers > 0;
        drop(state);
        if wake {
            self.arrived.notify_one();
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
        let outstanding: Vec<Arc<Ticket>> = {
            let mut state = self.shared.state.lock();
            state.closed = true;
            state.ready.clear();
            state.outstanding.values().cloned().collect()
        };
        for ticket in outstanding {
            ticket.cancel();
        }
    }
}

/// Where a task waits for a worker (a pool's line), to take it back for a cancel.
pub(crate) trait TaskLine: Send + Sync {
    /// Takes the task of ticket `id` out of the line; true if it still waited there
    /// (then it never runs).
    fn withdraw(&self, id: u64) -> bool;
}

/// One submitted task, shared by its queue and the pool that runs it.
pub(crate) struct Ticket {
    id: u64,
    tag: u64,
    queue: Weak<QueueShared>,
    /// Set once an outcome was posted (or the task was given up at submission).
    done: AtomicBool,
    /// The worker running the task, while it does: a cancel kills it. Its lock also
    /// orders a cancel's kill against the end of the run (see `stop_running`).
    running: Mutex<Option<Arc<Process>>>,
    /// The line the task waits in, while it waits for a worker.
    waiting_in: Mutex<Option<Weak<dyn TaskLine>>>,
}

impl Ticket {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether its outcome was posted already (a cancel, most likely): its worker, if it
    /// gets one, need not run it.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Posts the task's outcome, unless one was posted already; true if this one was.
    pub(crate) fn complete(&self, result: Result<Payload>) -> bool {
        if self.done.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(queue) = self.queue.upgrade() {
            queue.post(self.id, Completion { tag: self.tag, result });
        }
        true
    }

    /// The task waits for a worker in `line`, which takes it back for a cancel.
    pub(crate) fn set_waiting(&self, line: Weak<dyn TaskLine>) {
        *self.waiting_in.lock() = Some(line);
    }

    /// The task runs on `process` from now on. A task cancelled in the meantime has its
    /// worker killed here.
    pub(crate) fn start_running(&self, process: &Arc<Process>) {
        *self.waiting_in.lock() = None;
        let mut running = self.running.lock();
        *running = Some(process.clone());
        if self.is_done() {
            process.signal(libc::SIGKILL);
        }
    }

    /// The task's run ended (or moves to another worker): from now on a cancel kills no
    /// worker for it. True if it was cancelled before that: its worker may have been
    /// killed, and must not run another task.
    pub(crate) fn stop_running(&self) -> bool {
        *self.running.lock() = None;
        self.is_done()
    }

    /// Completes the task with `Cancelled`, then stops it: taken back if it waits, its
    /// worker killed if it runs. Nothing if it completed already.
    fn cancel(&self) {
        if !self.complete(Err(Error::new(ErrorKind::Cancelled, "the task was cancelled (rr_queue_cancel)"))) {
            return;
        }
        let line = self.waiting_in.lock().take().and_then(|line| line.upgrade());
        if let Some(line) = line {
            line.withdraw(self.id);
        }
        if let Some(process) = &*self.running.lock() {
            process.signal(libc::SIGKILL);
        }
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
