//! The pool: workers each running one task at a time, `num_workers` of them, or between
//! `num_workers` and `max_workers` for an elastic pool (see `elastic`).
//!
//! Callers run tasks on their own thread: `exec` takes an idle worker (waiting up to
//! `allocate_timeout`), talks to it directly, and gives it back. A supervisor thread
//! (`rr-pool`) keeps the pool at its target: it replaces workers that were retired
//! (failure, `max_jobs`, a stop request) or died on their own, which each worker's
//! watcher reports the moment it happens. When replacements keep failing and no worker
//! is left, the pool fails and tells its owner. Stopping waits for running tasks.
//!
//! One job per file: `take` (taking a worker for a task and giving it back), `retire`
//! (the one way a worker leaves the pool), `replace` (starting workers, keeping the pool
//! full), `elastic` (growing and shrinking), `remove` (one worker removed by its host),
//! `supervisor` (the thread that stops retired workers and refills), `stop`,
//! `stream` (answers read chunk by chunk), `submit` (tasks submitted to a completion
//! queue) and `reactor` (the thread that reads their answers).

mod elastic;
mod reactor;
mod remove;
mod replace;
mod retire;
mod stop;
mod stream;
mod submit;
mod supervisor;
mod take;

pub use stream::Stream;
pub(crate) use submit::{AsyncTask, ResubmitHook, Submitted};

use crate::config::ValidConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{EventBus, EventKind};
use crate::factory::Factory;
use crate::fault::{self, FaultPoint};
use crate::handoff::{LentTask, WaitQueue};
use crate::limits::RetireReason;
use crate::placement::{CpuPlacement, CpuSlot};
use crate::process::{CommandSpec, Process};
use crate::relay::{RelayError, Sent};
use crate::state::WorkerInfo;
use crate::stats::{Counters, PoolStats};
use crate::status::{ServerStatus, WorkerStatusEntry};
use crate::sync::{Condvar, Mutex};
use crate::worker::{Chunk, Outcome, Removal, TaskFailure, Worker, WorkerStatus};
use crate::Payload;
use crossbeam_channel::Sender;
use retire::Leaving;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;
use supervisor::Order;
use take::Lease;

/// How a task's answer began (see [`Pool::start_task`]).
enum Started {
    /// Whole: the worker is back in the pool.
    Answer(Payload),
    /// The first chunk of a stream; the worker, still streaming, is in the lease
    /// (boxed: a lease is large, and a stream rare next to a task).
    Stream(Box<Lease>, Payload),
}

/// How many times one `exec` moves its task to another worker (because the worker
/// asked to be replaced, or was gone before the task reached it) before it gives up: a
/// worker that always asks must not make `exec` spawn processes without end.
pub(crate) const MAX_REROUTES_PER_TASK: usize = 3;
/// Tasks up to this size (context and body) are sent to a freed worker by the caller
/// that frees it, for the waiting caller (see `handoff`). Small enough to fit in the
/// usual pipe or socket buffer (64 KiB or more) at once; what does not fit is left to
/// the waiting caller, so sending never makes the freeing caller wait for the worker.
const SEND_AHEAD_MAX_BYTES: usize = 16 * 1024;

/// Why `exec` did not run on this pool, beyond the task's own errors.
pub(crate) enum ExecError {
    /// The pool was retired by a reconfigure: run the task on the current pool.
    Retired,
    /// The task failed.
    Failed(Error),
}

impl From<Error> for ExecError {
    fn from(e: Error) -> ExecError {
        ExecError::Failed(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    /// Replaced by a newer pool: new and waiting callers go there.
    Retired,
    /// Stopped by the server: callers get a state error.
    Stopped,
    /// No worker could be kept alive.
    Failed(Error),
}

struct Workers {
    idle: Vec<Worker>,
    /// Every worker that belongs to the pool: idle, busy, not yet retired; by worker id
    /// (a pid may come back while its dead worker is still listed).
    members: HashMap<u64, Member>,
    /// Workers taken for a task (see `take::Lease`).
    busy: usize,
    /// Callers and submitted tasks waiting for a worker (served about in arrival order;
    /// see `handoff`).
    waiters: WaitQueue,
    /// The earliest allocate deadline of the submitted tasks in `waiters`, or earlier
    /// (that task may have been served since): when it comes, the reactor looks through
    /// the line for tasks that waited too long, and notes the next one. Tasks are queued
    /// in deadline order, but for those moved from a retired pool.
    next_task_deadline: Option<Instant>,
    /// Replacements being started by the supervisor.
    starting: usize,
    /// Workers retired and being stopped, by worker id: listed, and counted toward an
    /// elastic pool's ceiling, until their process is gone.
    leaving: HashMap<u64, Member>,
    /// How many workers the supervisor keeps: `num_workers`, or more while an elastic
    /// pool has grown (see `elastic`).
    target: usize,
    /// An elastic pool's growth in progress.
    growth: elastic::Growth,
    phase: Phase,
}

/// What the pool keeps of a worker that may be busy on a caller's thread.
struct Member {
    status: Arc<WorkerStatus>,
    process: Arc<Process>,
    /// Its CPU (with `worker_cpu_affinity`), freed for a replacement when it leaves.
    _cpu: Option<CpuSlot>,
}

/// A reaction of the pool's owner to a pool failure.
pub(crate) type FailureHook = Box<dyn Fn(&Arc<Pool>, &Error) + Send + Sync>;

/// A pool of workers.
pub(crate) struct Pool {
    config: ValidConfig,
    spec: CommandSpec,
    /// Where workers are pinned, with `worker_cpu_affinity`.
    placement: Option<Arc<CpuPlacement>>,
    factory: Arc<dyn Factory>,
    events: EventBus,
    workers: Mutex<Workers>,
    /// Signalled when a busy worker is given back or retired (stop waits for them).
    changed: Condvar,
    orders: Sender<Order>,
    /// Busy workers whose lease a stream holds, outside any call into the library.
    held_by_streams: AtomicUsize,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// Reads the answers of submitted tasks; started with the first one.
    reactor: OnceLock<Arc<reactor::Reactor>>,
    /// Held while the reactor starts (two submitting threads start one).
    reactor_start: Mutex<()>,
    on_failure: FailureHook,
    /// Where submitted tasks go once this pool is retired.
    resubmit: ResubmitHook,
    counters: Arc<Counters>,
}

impl Pool {
    /// Starts `num_workers` workers at once; if any fails, stops the others and fails.
    pub(crate) fn start(
        config: ValidConfig,
        factory: Arc<dyn Factory>,
        events: EventBus,
        counters: Arc<Counters>,
        on_failure: FailureHook,
        resubmit: ResubmitHook,
    ) -> Result<Arc<Pool>> {
        let spec = CommandSpec {
            argv: config.argv.clone(),
            env: config.config.env.clone(),
            dir: config.config.dir.clone(),
            relay: factory.worker_relay(),
            cpu: None,
            sched_batch: config.config.worker_sched_batch,
        };
        let placement = config.config.worker_cpu_affinity.then(|| Arc::new(CpuPlacement::default()));
        let (orders, inbox) = crossbeam_channel::unbounded();
        let pool = Arc::new(Pool {
            spec,
            placement,
            factory,
            events,
            workers: Mutex::new(Workers {
                idle: Vec::new(),
                members: HashMap::new(),
                busy: 0,
                waiters: WaitQueue::default(),
                next_task_deadline: None,
                starting: 0,
                leaving: HashMap::new(),
                target: config.config.num_workers as usize,
                growth: elastic::Growth::new(),
                phase: Phase::Running,
            }),
            changed: Condvar::new(),
            orders,
            held_by_streams: AtomicUsize::new(0),
            supervisor: Mutex::new(None),
            reactor: OnceLock::new(),
            reactor_start: Mutex::new(()),
            on_failure,
            resubmit,
            counters,
            config,
        });
        pool.start_workers()?;
        let supervisor = supervisor::start(&pool, inbox)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start the pool supervisor thread: {e}")))?;
        *pool.supervisor.lock() = Some(supervisor);
        pool.events.emit(EventKind::PoolConstruct, None, None);
        Ok(pool)
    }

    /// Runs one task: context and body in, the worker's answer out. A streamed answer
    /// is joined: the first chunk's context, every chunk's body.
    pub(crate) fn exec(self: &Arc<Self>, context: &[u8], body: &[u8]) -> std::result::Result<Payload, ExecError> {
        match self.start_task(context, body)? {
            Started::Answer(payload) => Ok(payload),
            Started::Stream(mut lease, mut joined) => loop {
                match lease.worker().receive_chunk() {
                    Ok(Chunk::More(chunk)) => joined.append_body(&chunk),
                    Ok(Chunk::Last(chunk)) => {
                        joined.append_body(&chunk);
                        self.counters.answered();
                        lease.give_back();
                        return Ok(joined);
                    }
                    Ok(Chunk::JobError(message)) => return Err(self.stream_job_error(*lease, message).into()),
                    Err(failure) => return Err(self.task_failed(*lease, failure).into()),
                }
            },
        }
    }

    /// Runs a task up to the first frame of its answer: a whole answer, or the first
    /// chunk of a streamed one, with the worker (still streaming) in its lease. Moves the
    /// task to another worker when the worker asked to be replaced or never got it.
    fn start_task(self: &Arc<Self>, context: &[u8], body: &[u8]) -> std::result::Result<Started, ExecError> {
        let deadline = Instant::now() + self.config.config.allocate_timeout;
        let lent = (context.len() + body.len() <= SEND_AHEAD_MAX_BYTES).then(|| LentTask::new(context, body));
        let mut undelivered = None;
        for _ in 0..=MAX_REROUTES_PER_TASK {
            let (mut lease, sent) = self.allocate(deadline, lent)?;
            fault::point(FaultPoint::TaskAfterAllocate);
            let worker = lease.worker();
            let result = match sent {
                Some(started) => started
                    .and_then(|sent| match sent {
                        Sent::Whole => Ok(()),
                        Sent::Partly(already) => worker.send_rest_of_task(context, body, already),
                    })
                    .and_then(|()| worker.receive_outcome()),
                None => worker.exec(context, body, self.task_deadline()),
            };
            match result {
                Ok(Outcome::Answer(payload)) => {
                    self.counters.answered();
                    lease.give_back();
                    return Ok(Started::Answer(payload));
                }
                Ok(Outcome::JobError(message)) => {
                    self.counters.job_error();
                    let pid = lease.worker().pid();
                    lease.give_back();
                    return Err(Error::job(pid, message).into());
                }
                Ok(Outcome::StreamStarted(first)) => return Ok(Started::Stream(Box::new(lease), first)),
                Ok(Outcome::StopRequested) => lease.retire(Leaving::Limit(RetireReason::StopRequested)),
                Err(TaskFailure { error, delivered: false }) => {
                    // The worker was gone (or broken) before the task reached it:
                    // replace it, and run the task on another worker; the caller never
                    // sees this one.
                    undelivered = Some(lease.retire_undelivered(&error));
                }
                Err(failure) => return Err(self.task_failed(lease, failure).into()),
            }
        }
        Err(self.gave_up_rerouting(undelivered).into())
    }

    /// The error of a task that moved to another worker `MAX_REROUTES_PER_TASK` times
    /// (counted as a worker error): `undelivered`, why the last worker never got it, or
    /// else its workers all asked to be replaced.
    fn gave_up_rerouting(&self, undelivered: Option<Error>) -> Error {
        self.counters.worker_error();
        match undelivered {
            Some(failure) => failure.context(format!(
                "{} workers in a row were gone before the task reached them; the last one",
                MAX_REROUTES_PER_TASK + 1
            )),
            None => Error::new(
                ErrorKind::WorkerError,
                format!(
                    "{} workers in a row asked to be replaced instead of running the task; giving up on it (does the worker always answer {{\"stop\":true}}?)",
                    MAX_REROUTES_PER_TASK + 1
                ),
            ),
        }
    }

    /// A task failed on a worker that had it (or part of its answer): the worker is
    /// killed and replaced; the error says why (exec_ttl, or how it broke).
    fn task_failed(&self, mut lease: Lease, failure: TaskFailure) -> Error {
        let pid = lease.worker().pid();
        let error = match failure.error {
            RelayError::Timeout => {
                let exec_ttl = self.config.config.exec_ttl;
                let error = lease.worker().failure(
                    format!("the task ran longer than exec_ttl ({} ms) and was killed", exec_ttl.as_millis()),
                    ErrorKind::ExecTtl,
                    false,
                );
                self.counters.exec_ttl_kill();
                self.events.emit(EventKind::WorkerExecTtl, Some(pid), Some(error.message().to_string()));
                error
            }
            _ if lease.worker().status().removal() == Removal::Killed => {
                let error = Error::new(
                    ErrorKind::WorkerError,
                    format!("worker {pid} was killed by its host (remove_worker) while it ran the task"),
                );
                self.counters.worker_error();
                lease.retire(Leaving::Limit(RetireReason::Removed));
                return error;
            }
            relay_error => {
                let closed = relay_error.peer_closed();
                lease.worker().failure(relay_error, ErrorKind::WorkerError, closed)
            }
        };
        if error.kind() != ErrorKind::ExecTtl {
            self.counters.worker_error();
        }
        lease.retire(Leaving::Failed(&error));
        error
    }

    /// A streamed answer that the worker ended with a job error: the worker is sound.
    fn stream_job_error(&self, lease: Lease, message: Vec<u8>) -> Error {
        self.counters.job_error();
        let mut lease = lease;
        let pid = lease.worker().pid();
        lease.give_back();
        Error::job(pid, message)
    }

    /// When a task sent now must have its answer (exec_ttl), if ever.
    fn task_deadline(&self) -> Option<Instant> {
        let exec_ttl = self.config.config.exec_ttl;
        (!exec_ttl.is_zero()).then(|| Instant::now() + exec_ttl)
    }

    /// Counters of this pool's owner, with this pool's live figures.
    pub(crate) fn stats(&self) -> PoolStats {
        let workers = self.workers.lock();
        self.counters.snapshot(workers.waiters.len() as u64, workers.members.len() as u64)
    }

    /// A snapshot of every worker process the pool owns: its members, and the retired
    /// ones still stopping.
    pub(crate) fn workers(&self) -> Vec<WorkerInfo> {
        let statuses = Pool::owned_statuses(&self.workers.lock());
        let mut infos: Vec<_> = statuses.iter().map(|status| status.info()).collect();
        infos.sort_by_key(|info| info.created);
        infos
    }

    /// The statuses of every worker process the pool owns: members, and those leaving.
    fn owned_statuses(workers: &Workers) -> Vec<Arc<WorkerStatus>> {
        workers.members.values().chain(workers.leaving.values()).map(|member| member.status.clone()).collect()
    }

    /// A snapshot for status pages and metrics.
    pub(crate) fn status(&self) -> ServerStatus {
        let config = &self.config.config;
        let (statuses, counters, target, starting) = {
            let workers = self.workers.lock();
            let statuses = Pool::owned_statuses(&workers);
            let counters = self.counters.snapshot(workers.waiters.len() as u64, workers.members.len() as u64);
            (statuses, counters, workers.target, workers.starting)
        };
        let mut entries: Vec<_> = statuses
            .iter()
            .map(|status| WorkerStatusEntry { info: status.info(), task_age: status.task_age() })
            .collect();
        entries.sort_by_key(|entry| entry.info.created);
        ServerStatus {
            name: config.name.clone(),
            protocol: config.protocol,
            relay: config.relay.clone(),
            workers_min: config.num_workers,
            workers_max: config.ceiling(),
            workers_target: target as u64,
            starting: starting as u64,
            counters,
            outcomes: self.counters.outcomes(),
            workers: entries,
        }
    }

    fn is_running(&self) -> bool {
        self.workers.lock().phase == Phase::Running
    }

    fn is_running_locked(&self, workers: &Workers) -> bool {
        workers.phase == Phase::Running
    }
}
