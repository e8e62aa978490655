//! One worker on the host side: a supervised process and the relay to it.
//!
//! A [`Worker`] is owned by exactly one party at a time (the pool's idle list, or the
//! caller running a task on it), so running a task needs no lock. What others may read
//! meanwhile (state, executions) lives in a shared [`WorkerStatus`]. This module runs
//! the task and handshake conversations and the stop sequence; it does not decide when
//! a worker is retired or replaced (that is the pool's job).
//!
//! Every wait on a worker's relay also ends when its process exits (see `relay`): a
//! child of the worker that holds the relay open cannot keep a task waiting for an
//! answer that will never come.

use crate::config::Protocol;
use crate::error::{Error, ErrorKind};
use crate::event::{EventBus, EventKind};
use crate::limits::WorkerLimits;
use crate::process::Process;
use crate::relay::{Relay, RelayError, Sent};
use crate::state::{WorkerInfo, WorkerState};
use crate::sys;
use crate::wire::{self, Answer, AnswerRead};
use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The exact context of an answer by which a worker asks to be replaced.
const STOP_REQUEST: &[u8] = br#"{"stop":true}"#;
/// The control frame that tells a worker to leave its loop.
const STOP_COMMAND: &str = r#"{"stop":true}"#;
/// How long a worker has after SIGTERM before SIGKILL, at most.
const TERM_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for a dead worker's last stderr bytes before building a message.
const STDERR_SETTLE: Duration = Duration::from_millis(500);

/// The next worker id: ids are never reused, unlike pids.
static NEXT_WORKER_ID: AtomicU64 = AtomicU64::new(1);

/// What others may read about a worker while someone else owns it.
pub(crate) struct WorkerStatus {
    /// Unique in this process for its lifetime. A worker's pid is not: once the process
    /// is reaped, a new worker may get the same pid while the pool still lists the old
    /// one (a busy worker stays listed until its caller retires it).
    id: u64,
    pid: u32,
    created: SystemTime,
    state: AtomicI32,
    num_execs: AtomicU64,
    /// When its current task began, in ns on the [`task_clock`]; 0 while it has none.
    task_started_ns: AtomicU64,
    /// Whether its host asked for it to leave ([`Removal`] as a number).
    removal: AtomicU8,
}

/// How a host asked for a worker to leave the pool (`Pool::remove_worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Removal {
    None = 0,
    /// Retire it when its task is done.
    AfterTask = 1,
    /// It was killed, task and all.
    Killed = 2,
}

/// Nanoseconds since the first call: a monotonic clock of small numbers, for the age of
/// a worker's current task (an atomic can hold it, an `Instant` cannot).
fn task_clock() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    // +1: 0 means "no task".
    base.elapsed().as_nanos() as u64 + 1
}

impl WorkerStatus {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn state(&self) -> WorkerState {
        WorkerState::from_code(self.state.load(Ordering::Acquire)).unwrap_or(WorkerState::Errored)
    }

    pub(crate) fn set_state(&self, state: WorkerState) {
        // A task's age, for status pages: set when it starts, cleared when it ends.
        match state {
            WorkerState::Working => self.task_started_ns.store(task_clock(), Ordering::Relaxed),
            WorkerState::Streaming => {}
            _ => self.task_started_ns.store(0, Ordering::Relaxed),
        }
        self.state.store(state as i32, Ordering::Release);
    }

    /// How long its current task has run, if it runs one.
    pub(crate) fn task_age(&self) -> Option<Duration> {
        match self.task_started_ns.load(Ordering::Relaxed) {
            0 => None,
            started => Some(Duration::from_nanos(task_clock().saturating_sub(started))),
        }
    }

    /// Whether (and how) its host asked for it to leave.
    pub(crate) fn removal(&self) -> Removal {
        match self.removal.load(Ordering::Acquire) {
            1 => Removal::AfterTask,
            2 => Removal::Killed,
            _ => Removal::None,
        }
    }

    /// Notes that its host asked for it to leave; a kill is never downgraded to a
    /// removal after the task.
    pub(crate) fn set_removal(&self, removal: Removal) {
        self.removal.fetch_max(removal as u8, Ordering::AcqRel);
    }

    pub(crate) fn num_execs(&self) -> u64 {
        self.num_execs.load(Ordering::Relaxed)
    }

    /// A snapshot for users.
    pub(crate) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            pid: self.pid,
            state: self.state(),
            num_execs: self.num_execs(),
            created: self.created,
            rss_bytes: sys::rss_bytes(self.pid).unwrap_or(0),
        }
    }
}

/// How a task ended, or how its answer began, when the worker itself is still sound.
pub(crate) enum Outcome {
    /// The answer: context and body.
    Answer(crate::Payload),
    /// The worker reported a job error with this message.
    JobError(Vec<u8>),
    /// The worker asked to be replaced instead of running the task.
    StopRequested,
    /// The first chunk of a streamed answer (V2): the worker is streaming, and the
    /// rest comes from [`Worker::receive_chunk`].
    StreamStarted(crate::Payload),
}

/// The next chunk of a streamed answer.
pub(crate) enum Chunk {
    /// More follow.
    More(crate::Payload),
    /// The last one: the stream is over, the worker sound.
    Last(crate::Payload),
    /// The worker ended the stream with a job error.
    JobError(Vec<u8>),
}

/// Why a task failed on a broken worker.
pub(crate) struct TaskFailure {
    /// What went wrong on the relay.
    pub error: RelayError,
    /// Whether the worker took the whole task. If not (it was gone, or died before
    /// reading all of it), no worker ran it and it may safely run on another.
    pub delivered: bool,
}

/// A worker process with its relay.
pub(crate) struct Worker {
    process: Arc<Process>,
    relay: Relay,
    protocol: Protocol,
    /// V2: the codec of its task frames.
    codec: u8,
    status: Arc<WorkerStatus>,
    limits: WorkerLimits,
    started: Instant,
    idle_since: Instant,
    /// The CPU of the thread that last gave the worker back: the worker most likely ran
    /// there too, woken by that thread's writes.
    idle_on_cpu: i32,
    /// What it wrote after its last answer, when that came with the answer (it
    /// answered more than once): it is broken, and must not run another task.
    extra_output: Option<Vec<u8>>,
    /// Set once the worker was stopped and its end reported.
    finished: bool,
    /// Whether the pool's reactor watches its pidfd already (from its first submitted task).
    end_watched: bool,
}

impl Worker {
    /// Wraps a started process whose relay answered the handshake.
    pub(crate) fn new(process: Arc<Process>, mut relay: Relay, protocol: Protocol, codec: u8) -> Worker {
        relay.watch_peer_end(process.end_fd());
        // Reads go through poll anyway (the pidfd, exec_ttl); non-blocking, the same
        // descriptor serves the reactor, which must never block on it.
        let _ = relay.make_nonblocking();
        let status = Arc::new(WorkerStatus {
            id: NEXT_WORKER_ID.fetch_add(1, Ordering::Relaxed),
            pid: process.pid(),
            created: process.created(),
            state: AtomicI32::new(WorkerState::Ready as i32),
            num_execs: AtomicU64::new(0),
            task_started_ns: AtomicU64::new(0),
            removal: AtomicU8::new(0),
        });
        let now = Instant::now();
        Worker {
            process,
            relay,
            protocol,
            codec,
            status,
            limits: WorkerLimits::none(),
            started: now,
            idle_since: now,
            idle_on_cpu: -1,
            extra_output: None,
            finished: false,
            end_watched: false,
        }
    }

    /// Its supervision limits.
    pub(crate) fn limits(&self) -> &WorkerLimits {
        &self.limits
    }

    pub(crate) fn set_limits(&mut self, limits: WorkerLimits) {
        self.limits = limits;
    }

    /// When it was started (for `ttl`).
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Since when it has been idle (for `idle_ttl`).
    pub(crate) fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// Notes that it just became idle, given back by the calling thread.
    pub(crate) fn mark_idle(&mut self) {
        self.idle_since = Instant::now();
        self.idle_on_cpu = sys::current_cpu();
    }

    /// The CPU where it most likely ran last (-1: unknown).
    pub(crate) fn idle_on_cpu(&self) -> i32 {
        self.idle_on_cpu
    }

    /// Its id, unique for the life of the host (see [`WorkerStatus`]).
    pub(crate) fn id(&self) -> u64 {
        self.status.id
    }

    pub(crate) fn pid(&self) -> u32 {
        self.status.pid
    }

    pub(crate) fn status(&self) -> &Arc<WorkerStatus> {
        &self.status
    }

    pub(crate) fn process(&self) -> &Arc<Process> {
        &self.process
    }

    /// Runs one task. An `Err` means the worker is broken and must be retired.
    /// `deadline` bounds the wait for the answer (exec_ttl).
    pub(crate) fn exec(
        &mut self,
        context: &[u8],
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Outcome, TaskFailure> {
        self.send_task(context, body, deadline)?;
        self.receive_outcome()
    }

    /// The first half of [`Worker::exec`]: sends the task. `deadline` (exec_ttl) stays
    /// set for [`Worker::receive_outcome`], which may run on another thread.
    pub(crate) fn send_task(
        &mut self,
        context: &[u8],
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), TaskFailure> {
        self.expect_quiet()?;
        self.relay.set_deadline(deadline);
        self.send_rest_of_task(context, body, 0)
    }

    /// Like [`Worker::send_task`], but sends only what the worker's pipe or socket
    /// buffer takes at once, never waiting for the worker to read. If that is not all,
    /// [`Worker::send_rest_of_task`] sends the rest (on another thread, maybe).
    pub(crate) fn start_sending_task(
        &mut self,
        context: &[u8],
        body: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Sent, TaskFailure> {
        self.expect_quiet()?;
        self.relay.set_deadline(deadline);
        let sent = wire::send_task(&mut self.relay, self.protocol, self.codec, context, body, 0, false);
        sent.map_err(|error| self.send_failure(error))
    }

    /// Sends more of a task `already` bytes of which were sent, as much as the worker's
    /// buffer takes now (never waiting); how far it got.
    pub(crate) fn continue_sending_task(
        &mut self,
        context: &[u8],
        body: &[u8],
        already: usize,
    ) -> Result<Sent, TaskFailure> {
        let sent = wire::send_task(&mut self.relay, self.protocol, self.codec, context, body, already, false);
        sent.map_err(|error| self.send_failure(error))
    }

    /// Makes reads of answers wait for bytes (`true`, the default), or fail with
    /// `RelayError::WouldBlock` (for the reactor, which polls the descriptors itself).
    pub(crate) fn set_reads_wait(&mut self, wait: bool) {
        self.relay.set_waiting(wait);
    }

    /// The descriptors answers are read from and tasks written to (one, for a socket).
    pub(crate) fn relay_fds(&self) -> (std::os::fd::RawFd, std::os::fd::RawFd) {
        (self.relay.read_fd(), self.relay.write_fd())
    }

    /// The deadline of the task it runs (exec_ttl), if any.
    pub(crate) fn task_deadline(&self) -> Option<Instant> {
        self.relay.deadline()
    }

    /// True the first time it is asked: the reactor then starts watching its pidfd
    /// (once for the worker's life: the pidfd is only ever readable once it ended).
    pub(crate) fn first_watch_of_end(&mut self) -> bool {
        !std::mem::replace(&mut self.end_watched, true)
    }

    /// Notes that its process ended (the reactor saw its pidfd): a read that finds
    /// nothing is then the end of the relay.
    pub(crate) fn note_process_ended(&mut self) {
        self.relay.set_peer_ended();
    }

    /// Sends what is left of a task `already` bytes of which were sent.
    pub(crate) fn send_rest_of_task(&mut self, context: &[u8], body: &[u8], already: usize) -> Result<(), TaskFailure> {
        let sent = wire::send_task(&mut self.relay, self.protocol, self.codec, context, body, already, true);
        sent.map(|_| ()).map_err(|error| self.send_failure(error))
    }

    /// Before a task: the worker must have written nothing since its last answer, or
    /// what it wrote could be taken for this task's answer. If it did, it is broken,
    /// and the task, not sent, may run on another worker.
    fn expect_quiet(&mut self) -> Result<(), TaskFailure> {
        self.relay.expect_quiet().map_err(|error| TaskFailure { error, delivered: false })
    }

    /// What the worker wrote after its last answer along with it (see `extra_output`).
    pub(crate) fn take_extra_output(&mut self) -> Option<RelayError> {
        self.extra_output.take().map(RelayError::Unexpected)
    }

    fn send_failure(&mut self, error: RelayError) -> TaskFailure {
        self.relay.set_deadline(None);
        // A worker that stopped reading may have taken part of the task: only a worker
        // that was gone surely never ran it.
        let delivered = matches!(error, RelayError::Timeout);
        TaskFailure { error, delivered }
    }

    /// The second half of [`Worker::exec`]: waits for the answer to the task sent (or
    /// for the first chunk of a streamed one: then the exec_ttl deadline stays set for
    /// the rest, which [`Worker::receive_chunk`] reads).
    pub(crate) fn receive_outcome(&mut self) -> Result<Outcome, TaskFailure> {
        self.read_outcome(&mut AnswerRead::default())
    }

    /// [`Worker::receive_outcome`], resumable: when reads do not wait (see
    /// [`Worker::set_reads_wait`]), a failure with `RelayError::WouldBlock` keeps what
    /// arrived in `state`, and the next call with it goes on.
    pub(crate) fn read_outcome(&mut self, state: &mut AnswerRead) -> Result<Outcome, TaskFailure> {
        let outcome = match wire::read_answer(&mut self.relay, self.protocol, state) {
            Err(RelayError::WouldBlock) => return Err(TaskFailure { error: RelayError::WouldBlock, delivered: true }),
            Ok(Answer::JobError(message)) => Outcome::JobError(message),
            Ok(Answer::Data { payload, more: true }) => {
                self.status.num_execs.fetch_add(1, Ordering::Relaxed);
                self.status.set_state(WorkerState::Streaming);
                return Ok(Outcome::StreamStarted(payload));
            }
            Ok(Answer::Data { payload, more: false }) => {
                if payload.body().is_empty() && payload.context() == STOP_REQUEST {
                    Outcome::StopRequested
                } else {
                    Outcome::Answer(payload)
                }
            }
            Err(error) => {
                self.relay.set_deadline(None);
                let delivered = !(error.peer_closed() && self.relay.peer_left_unread(&error));
                return Err(TaskFailure { error, delivered });
            }
        };
        if !matches!(outcome, Outcome::StopRequested) {
            self.status.num_execs.fetch_add(1, Ordering::Relaxed);
        }
        self.answer_complete();
        Ok(outcome)
    }

    /// Reads the next chunk of the streamed answer the worker is sending.
    pub(crate) fn receive_chunk(&mut self) -> Result<Chunk, TaskFailure> {
        self.read_chunk(&mut AnswerRead::default())
    }

    /// [`Worker::receive_chunk`], resumable (as [`Worker::read_outcome`]).
    pub(crate) fn read_chunk(&mut self, state: &mut AnswerRead) -> Result<Chunk, TaskFailure> {
        let chunk = match wire::read_answer(&mut self.relay, self.protocol, state) {
            Err(RelayError::WouldBlock) => return Err(TaskFailure { error: RelayError::WouldBlock, delivered: true }),
            Ok(Answer::Data { payload, more: true }) => return Ok(Chunk::More(payload)),
            Ok(Answer::Data { payload, more: false }) => Chunk::Last(payload),
            Ok(Answer::JobError(message)) => Chunk::JobError(message),
            Err(error) => {
                self.relay.set_deadline(None);
                return Err(TaskFailure { error, delivered: true });
            }
        };
        self.answer_complete();
        Ok(chunk)
    }

    /// Asks the worker to stop the stream it is sending, and reads and drops what it
    /// still sends until its last frame, for at most `timeout` (and never past the
    /// task's exec_ttl). An error means it did not end the stream in time, or broke.
    pub(crate) fn cancel_stream(&mut self, timeout: Duration) -> Result<(), RelayError> {
        let by = Instant::now() + timeout;
        let deadline = self.relay.deadline().map_or(by, |ttl| ttl.min(by));
        self.relay.set_deadline(Some(deadline));
        let drained = wire::send_stream_stop(&mut self.relay).and_then(|()| loop {
            match wire::receive_answer(&mut self.relay, self.protocol)? {
                Answer::Data { more: true, .. } => continue,
                Answer::Data { more: false, .. } | Answer::JobError(_) => break Ok(()),
            }
        });
        self.relay.set_deadline(None);
        if drained.is_ok() {
            self.answer_complete();
        }
        drained
    }

    /// The answer is whole (the last frame of a stream included): its deadline ends,
    /// and anything read beyond it is a second answer (or stray output); the task keeps
    /// the answer written first.
    fn answer_complete(&mut self) {
        self.relay.set_deadline(None);
        let extra = self.relay.take_buffered();
        if !extra.is_empty() {
            self.extra_output = Some(extra);
        }
    }

    /// Kills the worker (if it still runs), waits for its end, and describes what
    /// happened: `what` went wrong, how the process ended, the tail of its stderr.
    /// `closed` says the worker closed its relay: it is most likely exiting, so it gets
    /// a moment to do so and be described by its own exit rather than by our kill.
    pub(crate) fn failure(&self, what: impl fmt::Display, kind: ErrorKind, closed: bool) -> Error {
        self.status.set_state(WorkerState::Errored);
        describe_failure(&self.process, what, kind, closed)
    }

    /// Stops the worker: the stop command, then SIGTERM, then SIGKILL; waits for the
    /// exit and emits the matching events. `destroy_timeout` bounds the graceful part.
    /// Its exit hook (the pool's) stays: should it have died on its own before the
    /// stop began, that is reported as its death.
    pub(crate) fn stop(mut self, destroy_timeout: Duration, events: &EventBus) {
        self.process.request_end();
        self.status.set_state(WorkerState::Stopping);
        let pid = self.pid();
        // One deadline for the whole graceful part: a worker that does not read its
        // relay must not hold the stop up either.
        let deadline = Instant::now() + destroy_timeout;
        self.relay.set_deadline(Some(deadline));
        let _ = wire::send_control(&mut self.relay, self.protocol, STOP_COMMAND);
        let mut killed = false;
        if !self.process.wait_exit(deadline.saturating_duration_since(Instant::now())) {
            self.process.signal(libc::SIGTERM);
            if !self.process.wait_exit(TERM_GRACE.min(destroy_timeout)) {
                killed = self.process.signal(libc::SIGKILL);
                self.process.wait_exit(Duration::from_secs(3600));
            }
        }
        self.finish(events, killed, pid);
    }

    fn finish(mut self, events: &EventBus, killed: bool, pid: u32) {
        self.finished = true;
        self.status.set_state(WorkerState::Stopped);
        self.process.join_watcher();
        if killed {
            events.emit(EventKind::WorkerKill, Some(pid), None);
        }
        events.emit(EventKind::WorkerDestruct, Some(pid), None);
    }
}

/// Kills `process` if needed, waits for its end, and builds the error of kind `kind`.
/// `closed`: the process closed its relay, so it gets a moment to exit on its own.
pub(crate) fn describe_failure(process: &Process, what: impl fmt::Display, kind: ErrorKind, closed: bool) -> Error {
    if closed {
        process.wait_exit(STDERR_SETTLE);
    }
    let killed = process.kill_and_settle(STDERR_SETTLE);
    let pid = process.pid();
    let ended = match process.exit_info() {
        Some(_) if killed => "was killed by the pool".to_string(),
        Some(info) => info.description,
        None => "is still running".to_string(),
    };
    let stderr = process.stderr_tail();
    let stderr =
        if stderr.is_empty() { "(nothing on stderr)".to_string() } else { format!("its stderr ends with:\n{stderr}") };
    Error::new(kind, format!("worker {pid}: {what}; the process {ended}; {stderr}")).with_pid(pid)
}

impl Drop for Worker {
    /// A safety net: a worker dropped without `stop` (a bug, or no thread to stop it
    /// on) is killed and reaped here rather than left running.
    fn drop(&mut self) {
        if !self.finished {
            self.process.signal(libc::SIGKILL);
            self.process.wait_exit(Duration::from_secs(3600));
            self.process.join_watcher();
        }
    }
}
