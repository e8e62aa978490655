//! The reactor (`rr-reactor`, one thread per pool, started with its first submitted
//! task): it reads the answers of submitted tasks without blocking, posts the outcomes,
//! and gives the workers back (to the next waiting caller or task). It also ends the
//! tasks that run past exec_ttl and those that wait past allocate_timeout.
//!
//! Whoever starts a submitted task (the submitting thread, a thread that frees a
//! worker, the reactor itself) writes it to the worker and arms the worker's relay in
//! the reactor's epoll instance: one-shot (EPOLLONESHOT), so that the relay, added once
//! for the worker's life, reports nothing while the worker serves `exec` callers, and
//! arming it again is one `epoll_ctl`. Nothing wakes the reactor but the answers (and a
//! deadline earlier than the one it sleeps until). The worker's pidfd is added once too,
//! one-shot: it fires once, when the worker dies, and matters only if a submitted task
//! runs then (a child of the worker may keep the relay open after the worker died).
//!
//! Answers are read with the same parser as `exec`'s (`wire::read_answer`), resumable: a
//! read that finds no more bytes keeps what arrived and goes on at the next event.
//!
//! Measured before this design (an inbox, and the relay and pidfd added to and removed
//! from epoll for every task, `bench/bench --async`): about 13 system calls per task
//! on the reactor, 4 thread wake-ups per task at one task in flight, 13k tasks/s there
//! and 55k with 64 tasks in flight on 4 workers.

use super::retire::Leaving;
use super::submit::AsyncTask;
use super::take::Lease;
use super::Pool;
use crate::error::{Error, ErrorKind};
use crate::limits::RetireReason;
use crate::queue;
use crate::relay::{RelayError, Sent};
use crate::stats::Counters;
use crate::sync::Mutex;
use crate::sys::{self, Interest};
use crate::wire::AnswerRead;
use crate::worker::{Chunk, Outcome, TaskFailure};
use crate::Payload;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The epoll key of the reactor's own wake-up eventfd (never a worker id).
const WAKE_KEY: u64 = u64::MAX;
/// Set in the key of a worker's pidfd; the rest of a key is the worker's id.
const END_BIT: u64 = 1 << 63;
/// What `sleeps_until` holds while the reactor waits with no deadline.
const NEVER: u64 = u64::MAX;
/// What `sleeps_until` holds while the reactor is not waiting.
const AWAKE: u64 = 0;

thread_local! {
    /// Set on the reactor's thread.
    static ON_REACTOR_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The reactor of one pool.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    /// Written to wake the thread: a new earliest deadline, a stop.
    wake: OwnedFd,
    /// The submitted tasks running, by the id of their worker. A task is out of the map
    /// while the reactor moves it on.
    running: Mutex<HashMap<u64, Running>>,
    /// When the thread wakes by itself next, in nanoseconds from `epoch` (`NEVER`).
    sleeps_until: AtomicU64,
    epoch: Instant,
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
}

impl Running {
    /// `task` on the worker of `lease`, `sent` saying how far its sending got.
    pub(super) fn new(lease: Lease, task: AsyncTask, sent: Result<Sent, TaskFailure>) -> Running {
        let sending = match sent {
            Ok(Sent::Whole) => None,
            Ok(Sent::Partly(already)) => Some(Ok(already)),
            Err(failure) => Some(Err(failure)),
        };
        Running { lease, task, sending, read: AnswerRead::default(), joined: None }
    }
}

impl Reactor {
    /// Starts the reactor of `pool`.
    pub(super) fn start(pool: &Arc<Pool>) -> std::io::Result<Arc<Reactor>> {
        let reactor = Arc::new(Reactor {
            epoll: sys::epoll_create()?,
            wake: sys::eventfd()?,
            running: Mutex::new(HashMap::new()),
            sleeps_until: AtomicU64::new(NEVER),
            epoch: Instant::now(),
            quit: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        sys::epoll_add(&reactor.epoll, reactor.wake.as_raw_fd(), Interest::Read, WAKE_KEY)?;
        let (thread_reactor, weak) = (reactor.clone(), Arc::downgrade(pool));
        let thread =
            std::thread::Builder::new().name("rr-reactor".into()).spawn(move || react(&thread_reactor, &weak))?;
        *reactor.thread.lock() = Some(thread);
        Ok(reactor)
    }

    /// Hands a task that was just started (written, or partly) to the reactor.
    pub(super) fn run(&self, mut task: Running) {
        let worker = task.lease.worker();
        worker.set_reads_wait(false);
        let id = worker.id();
        let watch_end =
            worker.first_watch_of_end().then(|| worker.process().end_fd().map(|fd| fd.as_raw_fd())).flatten();
        let deadline = worker.task_deadline();
        let (read_fd, write_fd) = worker.relay_fds();
        let arm = match &task.sending {
            None => Some((read_fd, Interest::Read)),
            Some(Ok(_)) => Some((write_fd, Interest::Write)),
            // The send failed: the reactor's next pass ends the task.
            Some(Err(_)) => None,
        };
        self.running.lock().insert(id, task);
        if let Some(pidfd) = watch_end {
            let _ = sys::epoll_arm_once(&self.epoll, pidfd, Interest::Read, id | END_BIT);
        }
        match arm {
            Some((fd, interest)) => self.arm(fd, interest, id),
            None => self.wake(),
        }
        if let Some(deadline) = deadline {
            self.expect_deadline(deadline);
        }
    }

    /// Makes sure the thread looks at `deadline` (of a task just started or queued): it
    /// is woken if it sleeps until later, or if it is awake (it may have computed when to
    /// wake before this task was there); not when this is the reactor's own thread, which
    /// computes that after its pass.
    pub(super) fn expect_deadline(&self, deadline: Instant) {
        if ON_REACTOR_THREAD.get() {
            return;
        }
        let at = deadline.saturating_duration_since(self.epoch).as_nanos().clamp(1, u128::from(NEVER - 1)) as u64;
        let sleeps_until = self.sleeps_until.load(Ordering::SeqCst);
        if sleeps_until == AWAKE || at < sleeps_until {
            self.wake();
        }
    }

    /// Arms one event of `interest` on `fd` for the task of worker `id`. Cannot fail
    /// on a live descriptor; if it did, the task would wait for its deadline, so the
    /// reactor is woken to look at it at once instead.
    fn arm(&self, fd: std::os::fd::RawFd, interest: Interest, id: u64) {
        if sys::epoll_arm_once(&self.epoll, fd, interest, id).is_err() {
            self.wake();
        }
    }

    /// Makes the reactor look at every task and deadline again.
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
    // Woken by an answer, the reactor does not preempt the thread running (a worker, the
    // host): it runs when that one blocks, and often finds more answers then. Only its
    // wake-ups change; it still gets its full share of the CPU. One task in flight:
    // ~50k tasks/s without, ~70k with (`bench/bench --async`).
    let _ = sys::use_batch_scheduling();
    ON_REACTOR_THREAD.set(true);
    let mut keys = Vec::new();
    // The tasks to move on in a pass: kept from pass to pass (no allocation per pass).
    let mut ready: Vec<(u64, bool)> = Vec::new();
    let mut next_waiting_deadline: Option<Instant> = None;
    loop {
        // Computed, then published (see `expect_deadline`): a task started meanwhile saw
        // AWAKE and woke the thread, or sees this and wakes it if it is due sooner.
        let deadline = {
            let running = reactor.running.lock();
            running.values().filter_map(|r| r.lease.worker_ref().task_deadline()).chain(next_waiting_deadline).min()
        };
        let until = deadline.map_or(NEVER, |d| {
            d.saturating_duration_since(reactor.epoch).as_nanos().clamp(1, u128::from(NEVER)) as u64
        });
        reactor.sleeps_until.store(until, Ordering::SeqCst);
        if let Err(e) = sys::epoll_wait(&reactor.epoll, deadline, &mut keys) {
            // Cannot happen with a live epoll descriptor; do not spin if it does.
            eprintln!("rr-reactor: epoll_wait failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        reactor.sleeps_until.store(AWAKE, Ordering::SeqCst);
        let Some(pool) = pool.upgrade() else { break };
        let mut look_at_all = false;
        for &key in &keys {
            if key == WAKE_KEY {
                let _ = sys::eventfd_take(&reactor.wake);
                look_at_all = true;
            } else {
                ready.push((key & !END_BIT, key & END_BIT != 0));
            }
        }
        keys.clear();
        if look_at_all {
            // Woken on purpose (a task whose send failed, a relay that could not be
            // armed, new deadlines): every task is looked at; one that waits for its
            // answer is only read (nothing) and armed again.
            let all: Vec<u64> = reactor.running.lock().keys().copied().collect();
            ready.extend(all.into_iter().map(|id| (id, false)));
        }
        queue::deferring_signals(|| {
            for (id, ended) in ready.drain(..) {
                let Some(mut task) = reactor.running.lock().remove(&id) else { continue };
                if ended {
                    task.lease.worker().note_process_ended();
                }
                if let Some(task) = progress(&pool, reactor, task) {
                    reactor.running.lock().insert(id, task);
                }
            }
        });
        let now = Instant::now();
        let late: Vec<Running> = {
            let mut running = reactor.running.lock();
            let ids: Vec<u64> = running
                .iter()
                .filter(|(_, r)| r.lease.worker_ref().task_deadline().is_some_and(|deadline| deadline <= now))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| running.remove(id)).collect()
        };
        for task in late {
            conclude(&pool, task, Err(TaskFailure { error: RelayError::Timeout, delivered: true }));
        }
        next_waiting_deadline = pool.expire_waiting_tasks(now);
        if reactor.quit.load(Ordering::Acquire) && reactor.running.lock().is_empty() {
            break;
        }
    }
    // Only a stopped pool ends the reactor, and it has no task left; a pool dropped
    // without a stop (a bug) gets its tasks failed rather than lost.
    for (_, task) in std::mem::take(&mut *reactor.running.lock()) {
        task.task.ticket.complete(Err(Error::new(ErrorKind::Internal, "the pool went away while the task ran")));
    }
}

/// Moves a task on as far as it can go now, and arms the event it waits for next;
/// `Some` if it still runs.
fn progress(pool: &Arc<Pool>, reactor: &Reactor, mut task: Running) -> Option<Running> {
    if let Some(sending) = task.sending.take() {
        let already = match sending {
            Ok(already) => already,
            Err(failure) => return conclude(pool, task, Err(failure)),
        };
        let sent = task.lease.worker().continue_sending_task(task.task.context(), task.task.body(), already);
        match sent {
            Ok(Sent::Partly(already)) => {
                task.sending = Some(Ok(already));
                let worker = task.lease.worker_ref();
                reactor.arm(worker.relay_fds().1, Interest::Write, worker.id());
                return Some(task);
            }
            Ok(Sent::Whole) => {}
            Err(failure) => return conclude(pool, task, Err(failure)),
        }
    }
    loop {
        let step = match task.joined {
            None => task.lease.worker().read_outcome(&mut task.read).map(Step::Outcome),
            Some(_) => task.lease.worker().read_chunk(&mut task.read).map(Step::Chunk),
        };
        match step {
            Err(TaskFailure { error: RelayError::WouldBlock, .. }) => {
                let worker = task.lease.worker_ref();
                reactor.arm(worker.relay_fds().0, Interest::Read, worker.id());
                return Some(task);
            }
            Ok(Step::Outcome(Outcome::StreamStarted(first))) => task.joined = Some(first),
            Ok(Step::Chunk(Chunk::More(chunk))) => task.joined.as_mut().expect("a stream").append_body(&chunk),
            other => return conclude(pool, task, other),
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
fn conclude(pool: &Arc<Pool>, task: Running, result: Result<Step, TaskFailure>) -> Option<Running> {
    let Running { mut lease, task, joined, .. } = task;
    // Its relay is disarmed (one-shot): from here on the worker may serve `exec` callers.
    lease.worker().set_reads_wait(true);
    // From here on a cancel kills no worker for this task; one that came before may have
    // killed this one, which then must not run another task (the outcome posted was
    // the cancel's).
    if task.ticket.stop_running() {
        let error = lease.worker().failure(
            "the task was cancelled while it ran (rr_queue_cancel); the worker was killed",
            ErrorKind::WorkerError,
            false,
        );
        lease.worker().process().signal(libc::SIGKILL);
        Counters::bump(&pool.counters.tasks_cancelled);
        lease.retire(Leaving::Failed(&error));
        return None;
    }
    match result {
        Ok(Step::Outcome(Outcome::Answer(payload))) => {
            pool.counters.answered();
            // The worker first: it may start the next task in line while the answer is
            // being posted.
            lease.give_back_in_arrival_order();
            task.ticket.complete(Ok(payload));
        }
        Ok(Step::Outcome(Outcome::JobError(message)) | Step::Chunk(Chunk::JobError(message))) => {
            pool.counters.job_error();
            let pid = lease.worker().pid();
            lease.give_back_in_arrival_order();
            task.ticket.complete(Err(Error::job(pid, message)));
        }
        Ok(Step::Chunk(Chunk::Last(chunk))) => {
            let mut joined = joined.expect("a stream");
            joined.append_body(&chunk);
            pool.counters.answered();
            lease.give_back_in_arrival_order();
            task.ticket.complete(Ok(joined));
        }
        Ok(Step::Outcome(Outcome::StopRequested)) => {
            lease.retire(Leaving::Limit(RetireReason::StopRequested));
            pool.reroute(task, None);
        }
        Ok(Step::Outcome(Outcome::StreamStarted(_)) | Step::Chunk(Chunk::More(_))) => {
            unreachable!("progress keeps reading a stream")
        }
        Err(TaskFailure { error, delivered: false }) => {
            let failure = lease.retire_undelivered(&error);
            pool.reroute(task, Some(failure));
        }
        Err(failure) => {
            let error = pool.task_failed(lease, failure);
            task.ticket.complete(Err(error));
        }
    }
    None
}
