//! The reactor (`rr-reactor`, one thread per pool, started with its first submitted
//! task): it waits with epoll on the relays (and pidfds) of the workers that run
//! submitted tasks, reads their answers without blocking, posts the outcomes, and gives
//! the workers back (to the next waiting caller or task). It also ends the tasks that
//! run past exec_ttl and those that wait past allocate_timeout.
//!
//! Answers are read with the same parser as `exec`'s (`wire::read_answer`), resumable: a
//! read that finds no more bytes keeps what arrived and goes on at the next event.

use super::retire::Leaving;
use super::submit::AsyncTask;
use super::take::Lease;
use super::Pool;
use crate::error::{Error, ErrorKind};
use crate::limits::RetireReason;
use crate::relay::{RelayError, Sent};
use crate::stats::Counters;
use crate::sync::Mutex;
use crate::sys::{self, Interest};
use crate::wire::AnswerRead;
use crate::worker::{Chunk, Outcome, TaskFailure};
use crate::Payload;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

/// The epoll key of the reactor's own wake-up eventfd.
const WAKE_KEY: u64 = u64::MAX;

/// What an epoll key of a running task names (its id is the key divided by 4).
const KEY_RELAY: u64 = 0;
const KEY_PIDFD: u64 = 1;
const KEY_WRITE: u64 = 2;

/// The reactor of one pool.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    /// Written to wake the thread: new tasks in `inbox`, a new earliest deadline, stop.
    wake: OwnedFd,
    inbox: Mutex<Vec<Running>>,
    quit: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A submitted task running on a worker.
pub(super) struct Running {
    lease: Lease,
    task: AsyncTask,
    /// Bytes of the task sent so far, while not all are; a failure while sending.
    sending: Option<Result<usize, TaskFailure>>,
    read: AnswerRead,
    /// A streamed answer's chunks so far (joined: first context, all bodies).
    joined: Option<Payload>,
    /// The descriptors registered with epoll: relay (read), relay (write, when it is
    /// another and the task is still being sent), pidfd.
    fds: (RawFd, RawFd, Option<RawFd>),
    /// Its id in the reactor (its epoll keys are made of it).
    id: u64,
}

impl Running {
    /// `task` on the worker of `lease`, `sent` saying how far its sending got.
    pub(super) fn new(lease: Lease, task: AsyncTask, sent: Result<Sent, TaskFailure>) -> Running {
        let sending = match sent {
            Ok(Sent::Whole) => None,
            Ok(Sent::Partly(already)) => Some(Ok(already)),
            Err(failure) => Some(Err(failure)),
        };
        Running { lease, task, sending, read: AnswerRead::default(), joined: None, fds: (-1, -1, None), id: 0 }
    }
}

impl Reactor {
    /// Starts the reactor of `pool`.
    pub(super) fn start(pool: &Arc<Pool>) -> Arc<Reactor> {
        let reactor = Arc::new(Reactor {
            epoll: sys::epoll_create().expect("an epoll instance for the reactor"),
            wake: sys::eventfd(false).expect("an eventfd for the reactor"),
            inbox: Mutex::new(Vec::new()),
            quit: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        sys::epoll_watch(&reactor.epoll, reactor.wake.as_raw_fd(), Interest::Read, WAKE_KEY, true)
            .expect("the reactor's eventfd registered");
        let (thread_reactor, weak) = (reactor.clone(), Arc::downgrade(pool));
        let thread = std::thread::Builder::new()
            .name("rr-reactor".into())
            .spawn(move || react(&thread_reactor, &weak))
            .expect("the reactor thread");
        *reactor.thread.lock() = Some(thread);
        reactor
    }

    /// Hands a running task to the reactor.
    pub(super) fn run(&self, running: Running) {
        self.inbox.lock().push(running);
        self.wake();
    }

    /// Makes the reactor look at its inbox and deadlines again.
    pub(super) fn wake(&self) {
        let _ = sys::eventfd_add(&self.wake, 1);
    }

    /// Ends the thread once it runs no task (the pool stopped: none is left) and joins it.
    pub(super) fn stop(&self) {
        self.quit.store(true, Ordering::Release);
        self.wake();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// The reactor's loop.
fn react(reactor: &Reactor, pool: &Weak<Pool>) {
    let mut running: HashMap<u64, Running> = HashMap::new();
    let mut next_id = 0u64;
    let mut keys = Vec::new();
    let mut next_waiting_deadline = None;
    loop {
        let deadline =
            running.values().filter_map(|r| r.lease.worker_ref().task_deadline()).chain(next_waiting_deadline).min();
        if let Err(e) = sys::epoll_wait(&reactor.epoll, deadline, &mut keys) {
            // Cannot happen with a live epoll descriptor; do not spin if it does.
            eprintln!("rr-reactor: epoll_wait failed: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let Some(pool) = pool.upgrade() else { break };
        let mut ready: Vec<(u64, u64)> = Vec::with_capacity(keys.len());
        for &key in &keys {
            if key == WAKE_KEY {
                let _ = sys::eventfd_take(&reactor.wake);
            } else {
                ready.push((key >> 2, key & 3));
            }
        }
        let arrived: Vec<Running> = std::mem::take(&mut *reactor.inbox.lock());
        for mut task in arrived {
            let id = next_id;
            next_id += 1;
            register(reactor, id, &mut task);
            // Its answer may be there already; level-triggered epoll would say so too,
            // but one pass now saves a round.
            if let Some(task) = progress(&pool, reactor, task) {
                running.insert(id, task);
            }
        }
        for (id, kind) in ready {
            let Some(mut task) = running.remove(&id) else { continue };
            if kind == KEY_PIDFD {
                task.lease.worker().note_process_ended();
            }
            if let Some(task) = progress(&pool, reactor, task) {
                running.insert(id, task);
            }
        }
        let now = Instant::now();
        let late: Vec<u64> = running
            .iter()
            .filter(|(_, r)| r.lease.worker_ref().task_deadline().is_some_and(|deadline| deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let task = running.remove(&id).expect("listed");
            conclude(&pool, reactor, task, Err(TaskFailure { error: RelayError::Timeout, delivered: true }));
        }
        next_waiting_deadline = pool.expire_waiting_tasks(now);
        if reactor.quit.load(Ordering::Acquire) && running.is_empty() && reactor.inbox.lock().is_empty() {
            break;
        }
    }
    // Only a stopped pool ends the reactor, and it has no task left; a pool dropped
    // without a stop (a bug) gets its tasks failed rather than lost.
    for (_, task) in running {
        task.task.ticket.complete(Err(Error::new(ErrorKind::Internal, "the pool went away while the task ran")));
    }
}

/// Registers a running task's descriptors with epoll, keyed by `id`.
fn register(reactor: &Reactor, id: u64, task: &mut Running) {
    task.id = id;
    let worker = task.lease.worker();
    worker.set_reads_wait(false);
    let (read_fd, write_fd) = worker.relay_fds();
    let pidfd = worker.process().end_fd().map(|fd| fd.as_raw_fd());
    let sending = task.sending.is_some();
    if read_fd == write_fd {
        let interest = if sending { Interest::Write } else { Interest::Read };
        let _ = sys::epoll_watch(&reactor.epoll, read_fd, interest, id << 2 | KEY_RELAY, true);
    } else {
        let _ = sys::epoll_watch(&reactor.epoll, read_fd, Interest::Read, id << 2 | KEY_RELAY, true);
        if sending {
            let _ = sys::epoll_watch(&reactor.epoll, write_fd, Interest::Write, id << 2 | KEY_WRITE, true);
        }
    }
    if let Some(pidfd) = pidfd {
        let _ = sys::epoll_watch(&reactor.epoll, pidfd, Interest::Read, id << 2 | KEY_PIDFD, true);
    }
    task.fds = (read_fd, if read_fd == write_fd || !sending { -1 } else { write_fd }, pidfd);
    // Registered: a write that fails from here on is seen by its next event.
}

/// Removes a task's descriptors from epoll (its worker leaves the reactor).
fn unregister(reactor: &Reactor, task: &mut Running) {
    let (read_fd, write_fd, pidfd) = task.fds;
    for fd in [Some(read_fd), Some(write_fd).filter(|fd| *fd >= 0), pidfd].into_iter().flatten() {
        let _ = sys::epoll_forget(&reactor.epoll, fd);
    }
    task.fds = (-1, -1, None);
    task.lease.worker().set_reads_wait(true);
}

/// Moves a task on as far as it can go now; `Some` if it still runs.
fn progress(pool: &Arc<Pool>, reactor: &Reactor, mut task: Running) -> Option<Running> {
    if let Some(sending) = task.sending.take() {
        let already = match sending {
            Ok(already) => already,
            Err(failure) => return conclude(pool, reactor, task, Err(failure)),
        };
        let sent = task.lease.worker().continue_sending_task(task.task.context(), task.task.body(), already);
        match sent {
            Ok(Sent::Partly(already)) => {
                task.sending = Some(Ok(already));
                return Some(task);
            }
            Ok(Sent::Whole) => {
                // All sent: from now on only the answer is waited for.
                let (read_fd, write_fd, _) = task.fds;
                if write_fd >= 0 {
                    let _ = sys::epoll_forget(&reactor.epoll, write_fd);
                    task.fds.1 = -1;
                } else {
                    // A socket: one registration, now for reading.
                    let key = task.id << 2 | KEY_RELAY;
                    let _ = sys::epoll_watch(&reactor.epoll, read_fd, Interest::Read, key, false);
                }
            }
            Err(failure) => return conclude(pool, reactor, task, Err(failure)),
        }
    }
    loop {
        let step = match task.joined {
            None => task.lease.worker().read_outcome(&mut task.read).map(Step::Outcome),
            Some(_) => task.lease.worker().read_chunk(&mut task.read).map(Step::Chunk),
        };
        match step {
            Err(TaskFailure { error: RelayError::WouldBlock, .. }) => return Some(task),
            Ok(Step::Outcome(Outcome::StreamStarted(first))) => task.joined = Some(first),
            Ok(Step::Chunk(Chunk::More(chunk))) => task.joined.as_mut().expect("a stream").append_body(&chunk),
            other => return conclude(pool, reactor, task, other),
        }
    }
}

/// What one read gave.
enum Step {
    Outcome(Outcome),
    Chunk(Chunk),
}

/// Ends a task with what its last read gave (or a failure), posts its outcome, and gives
/// its worker back or retires it. `None`: the task no longer runs here.
fn conclude(
    pool: &Arc<Pool>,
    reactor: &Reactor,
    mut task: Running,
    result: Result<Step, TaskFailure>,
) -> Option<Running> {
    unregister(reactor, &mut task);
    let Running { mut lease, task, joined, .. } = task;
    let cancelled = task.ticket.is_done();
    match result {
        Ok(Step::Outcome(Outcome::Answer(payload))) => {
            Counters::bump(&pool.counters.tasks_done);
            pool.complete_task(&task, Ok(payload));
            lease.give_back_in_arrival_order();
        }
        Ok(Step::Outcome(Outcome::JobError(message)) | Step::Chunk(Chunk::JobError(message))) => {
            Counters::bump(&pool.counters.tasks_done);
            Counters::bump(&pool.counters.job_errors);
            let pid = lease.worker().pid();
            lease.give_back_in_arrival_order();
            pool.complete_task(&task, Err(Error::job(pid, message)));
        }
        Ok(Step::Chunk(Chunk::Last(chunk))) => {
            let mut joined = joined.expect("a stream");
            joined.append_body(&chunk);
            Counters::bump(&pool.counters.tasks_done);
            pool.complete_task(&task, Ok(joined));
            lease.give_back_in_arrival_order();
        }
        Ok(Step::Outcome(Outcome::StopRequested)) => {
            lease.retire(Leaving::Limit(RetireReason::StopRequested));
            pool.reroute(task, None);
        }
        Ok(Step::Outcome(Outcome::StreamStarted(_)) | Step::Chunk(Chunk::More(_))) => {
            unreachable!("progress keeps reading a stream")
        }
        Err(failure) if cancelled => {
            // Cancelled while it ran: its worker was killed on purpose.
            let _ = failure;
            let error = lease.worker().failure(
                "the task was cancelled while it ran (rr_queue_cancel); the worker was killed",
                ErrorKind::WorkerError,
                false,
            );
            Counters::bump(&pool.counters.tasks_cancelled);
            task.ticket.set_running(None);
            lease.retire(Leaving::Failed(&error));
        }
        Err(TaskFailure { error, delivered: false }) => {
            let failure = lease.worker().failure(&error, ErrorKind::WorkerError, error.peer_closed());
            lease.retire(Leaving::Failed(&failure));
            pool.reroute(task, Some(failure));
        }
        Err(failure) => {
            let error = pool.task_failed(lease, failure);
            pool.complete_task(&task, Err(error));
        }
    }
    None
}
