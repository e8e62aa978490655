//! The completion queue: tasks submitted without waiting (`Server::submit`), and their
//! outcomes, taken by an event loop when the queue's descriptor says some are there.
//!
//! A queue counts its waiting completions in an eventfd in semaphore mode: every
//! completion posted adds one, every completion taken reads one, both under the queue's
//! lock, so the descriptor is readable exactly while completions wait. One queue may
//! serve several servers, and several threads may take from it.
//!
//! Each submitted task has a [`Ticket`], shared by the queue (to cancel it) and by the
//! pool that runs it. A ticket completes once: the first outcome posted wins (a cancel
//! posts `Cancelled` at once; the task's own outcome, should it come later, is dropped).
//! A closed (freed) queue takes no more completions.

use crate::error::{Error, ErrorKind, Result};
use crate::process::Process;
use crate::sync::{Condvar, Mutex};
use crate::sys;
use crate::Payload;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
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
    signal: OwnedFd,
}

struct QueueState {
    ready: VecDeque<Completion>,
    /// Tasks submitted and not completed, by ticket id.
    outstanding: HashMap<u64, Arc<Ticket>>,
    closed: bool,
}

/// The next ticket id (ids are never reused).
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

impl CompletionQueue {
    /// A new, empty queue.
    pub fn new() -> Result<CompletionQueue> {
        let signal = sys::eventfd(true)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot make the queue's eventfd: {e}")))?;
        Ok(CompletionQueue {
            shared: Arc::new(QueueShared {
                state: Mutex::new(QueueState { ready: VecDeque::new(), outstanding: HashMap::new(), closed: false }),
                arrived: Condvar::new(),
                signal,
            }),
        })
    }

    /// The descriptor that is readable exactly while completions wait: for poll, epoll
    /// or an event loop. Only poll it: never read, write or close it.
    pub fn fd(&self) -> RawFd {
        self.shared.signal.as_raw_fd()
    }

    /// The next completion: `None` if none came within `timeout` (`Some(ZERO)`: do not
    /// wait; `None`: wait as long as it takes).
    pub fn next(&self, timeout: Option<Duration>) -> Option<Completion> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.shared.state.lock();
        loop {
            if let Some(completion) = state.ready.pop_front() {
                let _ = sys::eventfd_take(&self.shared.signal);
                return Some(completion);
            }
            match deadline {
                None => self.shared.arrived.wait(&mut state),
                Some(deadline) => {
                    if self.shared.arrived.wait_until(&mut state, deadline).timed_out() && state.ready.is_empty() {
                        return None;
                    }
                }
            }
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
            withdraw: Mutex::new(None),
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

/// How a pool takes back a task that waits for a worker, for a cancel: true if it was
/// still waiting (then it never runs).
pub(crate) type Withdraw = Box<dyn Fn() -> bool + Send + Sync>;

/// One submitted task, shared by its queue and the pool that runs it.
pub(crate) struct Ticket {
    id: u64,
    tag: u64,
    queue: Weak<QueueShared>,
    /// Set once an outcome was posted (or the task was given up at submission).
    done: AtomicBool,
    /// The worker running the task, while it does: a cancel kills it.
    running: Mutex<Option<Arc<Process>>>,
    /// How to take the task back while it waits for a worker.
    withdraw: Mutex<Option<Withdraw>>,
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

    /// Posts the task's outcome, unless one was posted already.
    pub(crate) fn complete(&self, result: Result<Payload>) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(queue) = self.queue.upgrade() else { return };
        let mut state = queue.state.lock();
        state.outstanding.remove(&self.id);
        if state.closed {
            return;
        }
        state.ready.push_back(Completion { tag: self.tag, result });
        let _ = sys::eventfd_add(&queue.signal, 1);
        drop(state);
        queue.arrived.notify_one();
    }

    /// The task waits for a worker: `withdraw` takes it back (for a cancel).
    pub(crate) fn set_waiting(&self, withdraw: Withdraw) {
        *self.withdraw.lock() = Some(withdraw);
    }

    /// The task runs on `process` (or stopped running, with `None`). A task cancelled
    /// in the meantime has its worker killed here.
    pub(crate) fn set_running(&self, process: Option<Arc<Process>>) {
        *self.withdraw.lock() = None;
        *self.running.lock() = process.clone();
        if let (Some(process), true) = (process, self.is_done()) {
            process.signal(libc::SIGKILL);
        }
    }

    /// Completes the task with `Cancelled`, then stops it: taken back if it waits, its
    /// worker killed if it runs.
    fn cancel(&self) {
        if self.is_done() {
            return;
        }
        let withdraw = self.withdraw.lock().take();
        self.complete(Err(Error::new(ErrorKind::Cancelled, "the task was cancelled (rr_queue_cancel)")));
        if let Some(withdraw) = withdraw {
            withdraw();
        }
        let running = self.running.lock().clone();
        if let Some(process) = running {
            process.signal(libc::SIGKILL);
        }
    }
}
