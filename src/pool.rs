//! The static pool: a fixed number of workers, each running one task at a time.
//!
//! Callers run tasks on their own thread: `exec` takes an idle worker (waiting up to
//! `allocate_timeout`), talks to it directly, and gives it back. A supervisor thread
//! (`rr-pool`) keeps the pool at `num_workers`: it replaces workers that were retired
//! (failure, `max_jobs`, a stop request) or died on their own, which each worker's
//! watcher reports the moment it happens. When replacements keep failing and no worker
//! is left, the pool fails and tells its owner. Stopping waits for running tasks.

use crate::config::ValidConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{EventBus, EventKind};
use crate::factory::{Factory, SpawnLimits};
use crate::handoff::{Delivery, Handed, LentTask, Slot, WaitQueue};
use crate::limits::{RetireReason, WorkerLimits};
use crate::placement::{CpuPlacement, CpuSlot};
use crate::process::{CommandSpec, ExitInfo, Process};
use crate::relay::{RelayError, Sent};
use crate::state::{WorkerInfo, WorkerState};
use crate::stats::{Counters, PoolStats};
use crate::sync::{Condvar, Mutex};
use crate::sys;
use crate::worker::{Outcome, TaskFailure, Worker, WorkerStatus};
use crate::Payload;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How many times one `exec` moves its task to another worker (because the worker
/// asked to be replaced, or was gone before the task reached it) before it gives up: a
/// worker that always asks must not make `exec` spawn processes without end.
pub(crate) const MAX_REROUTES_PER_TASK: usize = 3;
/// Replacement failures in a row, with no worker left, after which the pool fails.
const MAX_FAILED_REFILLS: u32 = 3;
/// First and largest pause between failed replacement rounds.
const REFILL_BACKOFF_MIN: Duration = Duration::from_millis(50);
const REFILL_BACKOFF_MAX: Duration = Duration::from_secs(2);
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
    busy: usize,
    /// Callers waiting for a worker (served about in arrival order; see `handoff`).
    waiters: WaitQueue,
    /// Replacements being started by the supervisor.
    starting: usize,
    phase: Phase,
}

/// What the pool keeps of a worker that may be busy on a caller's thread.
struct Member {
    status: Arc<WorkerStatus>,
    process: Arc<Process>,
    /// Its CPU (with `worker_cpu_affinity`), freed for a replacement when it leaves.
    _cpu: Option<CpuSlot>,
}

/// A worker just started, with its CPU if it was pinned to one.
struct Spawned {
    worker: Worker,
    cpu: Option<CpuSlot>,
}

enum Order {
    /// Stop this worker gracefully, then refill.
    Retire(Worker),
    /// Leave: the pool is stopping.
    Quit,
}

/// A reaction of the pool's owner to a pool failure.
pub(crate) type FailureHook = Box<dyn Fn(&Arc<Pool>, &Error) + Send + Sync>;

/// A static pool of workers.
pub(crate) struct Pool {
    config: ValidConfig,
    spec: CommandSpec,
    /// Where workers are pinned, with `worker_cpu_affinity`.
    placement: Option<Arc<CpuPlacement>>,
    factory: Arc<dyn Factory>,
    events: EventBus,
    workers: Mutex<Workers>,
    /// Signalled when a task ends while the pool is stopping (stop waits for them).
    changed: Condvar,
    orders: Sender<Order>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    on_failure: FailureHook,
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
                starting: 0,
                phase: Phase::Running,
            }),
            changed: Condvar::new(),
            orders,
            supervisor: Mutex::new(None),
            on_failure,
            counters,
            config,
        });

        let count = pool.config.config.num_workers as usize;
        let results = pool.spawn_many(count);
        let (started, failures): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
        if let Some(Err(first)) = failures.into_iter().next() {
            let destroy = pool.config.config.destroy_timeout;
            std::thread::scope(|scope| {
                for Spawned { worker, .. } in started.into_iter().flatten() {
                    let events = &pool.events;
                    scope.spawn(move || worker.stop(destroy, events));
                }
            });
            return Err(first.context(format!("cannot start the pool of {count} workers")));
        }
        for spawned in started.into_iter().flatten() {
            pool.admit(spawned);
        }

        let weak = Arc::downgrade(&pool);
        let supervisor = std::thread::Builder::new()
            .name("rr-pool".into())
            .spawn(move || {
                crate::sys::block_sigpipe_in_this_thread();
                supervise(weak, inbox)
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start the pool supervisor thread: {e}")))?;
        *pool.supervisor.lock() = Some(supervisor);
        pool.events.emit(EventKind::PoolConstruct, None, None);
        Ok(pool)
    }

    fn limits(&self) -> SpawnLimits {
        SpawnLimits { relay_timeout: self.config.config.relay_timeout, max_frame: self.config.config.max_frame_bytes }
    }

    /// Starts `count` workers in parallel (a slow boot costs once, not `count` times).
    fn spawn_many(&self, count: usize) -> Vec<Result<Spawned>> {
        let spawn_one = || {
            let spawned = self.spawn_one();
            match &spawned {
                Ok(spawned) => self.events.emit(EventKind::WorkerConstruct, Some(spawned.worker.pid()), None),
                Err(e) => self.events.emit(EventKind::WorkerError, e.pid(), Some(e.message().to_string())),
            }
            spawned
        };
        if count == 1 {
            return vec![spawn_one()];
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..count)
                .map(|_| std::thread::Builder::new().name("rr-spawn-wait".into()).spawn_scoped(scope, spawn_one))
                .collect();
            handles
                .into_iter()
                .map(|handle| match handle {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Internal, "a spawn thread panicked"))),
                    Err(e) => {
                        Err(Error::new(ErrorKind::Spawn, format!("cannot start a thread to spawn a worker: {e}")))
                    }
                })
                .collect()
        })
    }

    /// Starts one worker, on its own CPU with `worker_cpu_affinity`.
    fn spawn_one(&self) -> Result<Spawned> {
        let cpu = self.placement.as_ref().map(|placement| placement.take()).transpose().map_err(|e| {
            Error::new(ErrorKind::Spawn, format!("worker_cpu_affinity: cannot read the host's allowed CPUs: {e}"))
        })?;
        let pinned;
        let spec = match &cpu {
            Some(slot) => {
                pinned = CommandSpec { cpu: Some(slot.cpu()), ..self.spec.clone() };
                &pinned
            }
            None => &self.spec,
        };
        Ok(Spawned { worker: self.factory.spawn(spec, self.limits(), &self.events)?, cpu })
    }

    /// Makes a started worker a member and idle; stops it if the pool is no longer running.
    fn admit(self: &Arc<Self>, Spawned { mut worker, cpu }: Spawned) {
        worker.set_limits(WorkerLimits::new(&self.config.config));
        let status = worker.status().clone();
        let process = worker.process().clone();
        {
            let mut workers = self.workers.lock();
            if workers.phase != Phase::Running {
                drop(workers);
                worker.stop(self.config.config.destroy_timeout, &self.events);
                return;
            }
            workers.members.insert(status.id(), Member { status: status.clone(), process: process.clone(), _cpu: cpu });
            match workers.waiters.pop_oldest() {
                Some(slot) => {
                    workers.busy += 1;
                    worker.status().set_state(WorkerState::Working);
                    drop(workers);
                    slot.deliver(Delivery::Worker(Handed { worker, sent: None }));
                }
                None => workers.idle.push(worker),
            }
        }
        let pool = Arc::downgrade(self);
        process.on_exit(Box::new(move |exit| {
            if let Some(pool) = pool.upgrade() {
                pool.worker_exited(&status, exit);
            }
        }));
    }

    /// A member's process ended. If nobody stopped it on purpose, it died on its own:
    /// report it, drop it if idle, and replace it.
    fn worker_exited(&self, status: &Arc<WorkerStatus>, exit: &ExitInfo) {
        // Whoever marks the worker retiring first owns its end; if the pool did (to stop
        // or kill it), this exit was expected.
        if !status.mark_retiring() {
            return;
        }
        let pid = status.pid();
        self.events.emit(EventKind::WorkerDead, Some(pid), Some(format!("worker {pid} {}", exit.description)));
        let mut workers = self.workers.lock();
        // A busy worker is retired by the caller that runs a task on it.
        if let Some(i) = workers.idle.iter().position(|w| w.id() == status.id()) {
            let dead = workers.idle.swap_remove(i);
            workers.members.remove(&status.id());
            Counters::bump(&self.counters.retired_died);
            status.set_state(WorkerState::Errored);
            // Under the lock: a stop that finds the pool empty has all retirements queued.
            let _ = self.orders.send(Order::Retire(dead));
        }
    }

    /// Runs one task: context and body in, the worker's answer out.
    pub(crate) fn exec(&self, context: &[u8], body: &[u8]) -> std::result::Result<Payload, ExecError> {
        let deadline = Instant::now() + self.config.config.allocate_timeout;
        let exec_ttl = self.config.config.exec_ttl;
        let lent = (context.len() + body.len() <= SEND_AHEAD_MAX_BYTES).then(|| LentTask::new(context, body));
        let mut undelivered = None;
        for _ in 0..=MAX_REROUTES_PER_TASK {
            let Handed { mut worker, sent } = self.allocate(deadline, lent)?;
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
                    Counters::bump(&self.counters.tasks_done);
                    self.release(worker);
                    return Ok(payload);
                }
                Ok(Outcome::JobError(message)) => {
                    Counters::bump(&self.counters.tasks_done);
                    Counters::bump(&self.counters.job_errors);
                    let pid = worker.pid();
                    self.release(worker);
                    return Err(Error::job(pid, message).into());
                }
                Ok(Outcome::StopRequested) => {
                    self.note_retirement(&worker, RetireReason::StopRequested);
                    self.leave_busy(worker);
                }
                Err(TaskFailure { error, delivered: false }) => {
                    // The worker was gone before the task reached it: replace it, and
                    // run the task on another worker; the caller never sees this one.
                    let failure = worker.failure(&error, ErrorKind::WorkerError, true);
                    self.discard(worker, &failure);
                    undelivered = Some(failure);
                }
                Err(TaskFailure { error: RelayError::Timeout, .. }) => {
                    let error = worker.failure(
                        format!("the task ran longer than exec_ttl ({} ms) and was killed", exec_ttl.as_millis()),
                        ErrorKind::ExecTtl,
                        false,
                    );
                    Counters::bump(&self.counters.exec_ttl_kills);
                    Counters::bump(&self.counters.worker_errors);
                    self.events.emit(EventKind::WorkerExecTtl, Some(worker.pid()), Some(error.message().to_string()));
                    self.discard(worker, &error);
                    return Err(error.into());
                }
                Err(TaskFailure { error: relay_error, .. }) => {
                    let closed = relay_error.peer_closed();
                    let error = worker.failure(relay_error, ErrorKind::WorkerError, closed);
                    Counters::bump(&self.counters.worker_errors);
                    self.discard(worker, &error);
                    return Err(error.into());
                }
            }
        }
        Counters::bump(&self.counters.worker_errors);
        if let Some(failure) = undelivered {
            return Err(failure
                .context(format!(
                    "{} workers in a row were gone before the task reached them; the last one",
                    MAX_REROUTES_PER_TASK + 1
                ))
                .into());
        }
        Err(Error::new(
            ErrorKind::WorkerError,
            format!(
                "{} workers in a row asked to be replaced instead of running the task; giving up on it (does the worker always answer {{\"stop\":true}}?)",
                MAX_REROUTES_PER_TASK + 1
            ),
        )
        .into())
    }

    /// When a task sent now must have its answer (exec_ttl), if ever.
    fn task_deadline(&self) -> Option<Instant> {
        let exec_ttl = self.config.config.exec_ttl;
        (!exec_ttl.is_zero()).then(|| Instant::now() + exec_ttl)
    }

    /// Takes an idle worker, waiting until `deadline` for one (see `handoff` for the order).
    /// While it waits, `task` (if given) is lent to whoever frees a worker for it, who
    /// sends it on the way.
    fn allocate(&self, deadline: Instant, task: Option<LentTask>) -> std::result::Result<Handed, ExecError> {
        loop {
            let slot = {
                let mut workers = self.workers.lock();
                match &workers.phase {
                    Phase::Running => {}
                    Phase::Retired => return Err(ExecError::Retired),
                    Phase::Stopped => return Err(Error::state("the server was stopped").into()),
                    Phase::Failed(error) => return Err(error.clone().into()),
                }
                if let Some(worker) = self.take_idle(&mut workers) {
                    workers.busy += 1;
                    // Working from the moment it is counted busy: a stop that runs out of
                    // time kills the busy workers by this state.
                    worker.status().set_state(WorkerState::Working);
                    return Ok(Handed { worker, sent: None });
                }
                let max_queue = self.config.config.max_queue as usize;
                if max_queue > 0 && workers.waiters.len() >= max_queue {
                    Counters::bump(&self.counters.queue_full);
                    let message = format!(
                        "{} callers are already waiting for a worker (max_queue {max_queue})",
                        workers.waiters.len()
                    );
                    self.events.emit(EventKind::QueueFull, None, Some(message.clone()));
                    return Err(Error::new(ErrorKind::QueueFull, message).into());
                }
                let slot = Slot::mine(task);
                workers.waiters.push(slot.clone(), sys::current_cpu());
                slot
            };
            match slot.receive(Some(deadline)) {
                Delivery::Worker(handed) => return Ok(handed),
                Delivery::Recheck => continue,
                Delivery::Pending => {}
            }
            // Timed out. Leave the queue, unless a worker is already on its way to us.
            let withdrawn = self.workers.lock().waiters.remove(&slot);
            if withdrawn {
                slot.withdraw();
            } else {
                match slot.receive(None) {
                    Delivery::Worker(handed) => return Ok(handed),
                    Delivery::Recheck => continue,
                    Delivery::Pending => unreachable!("receive without a deadline waits for a delivery"),
                }
            }
            Counters::bump(&self.counters.timeouts);
            let busy = self.workers.lock().busy;
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "no worker became free within allocate_timeout ({} ms): {busy} of {} workers busy",
                    self.config.config.allocate_timeout.as_millis(),
                    self.config.config.num_workers
                ),
            )
            .into());
        }
    }

    /// Takes an idle worker that is still alive: the last in the idle list (usually the
    /// one idle the shortest time) among those given back on the calling thread's CPU,
    /// or else the last of all (a CPU-local wake-up is cheaper; see `handoff`). One that
    /// died while idle (its watcher has not told us yet) never gets a task.
    fn take_idle(&self, workers: &mut Workers) -> Option<Worker> {
        let cpu = sys::current_cpu();
        while !workers.idle.is_empty() {
            let nearest = workers.idle.iter().rposition(|worker| worker.idle_on_cpu() == cpu);
            let worker = workers.idle.remove(nearest.unwrap_or(workers.idle.len() - 1));
            if !worker.process().has_exited() {
                return Some(worker);
            }
            workers.members.remove(&worker.id());
            if worker.status().mark_retiring() {
                Counters::bump(&self.counters.retired_died);
            }
            let _ = self.orders.send(Order::Retire(worker));
        }
        None
    }

    /// Wakes every waiting caller to look at the pool again (its phase changed).
    fn wake_waiters(workers: &mut Workers) {
        for slot in workers.waiters.drain() {
            slot.deliver(Delivery::Recheck);
        }
    }

    /// Gives a sound worker back after a task, or retires it when one of its limits
    /// (max_jobs, ttl, max_memory) says so.
    fn release(&self, mut worker: Worker) {
        let pid = worker.pid();
        if let Some(reason) =
            worker.limits().after_task(worker.status().num_execs(), worker.started(), || sys::rss_bytes(pid))
        {
            self.note_retirement(&worker, reason);
            self.leave_busy(worker);
            return;
        }
        worker.status().set_state(WorkerState::Ready);
        worker.mark_idle();
        let mut workers = self.workers.lock();
        if worker.process().has_exited() {
            // It exited right after answering, before it was idle: `worker_exited` did
            // not find it among the idle ones, so it is retired here. Checked under the
            // lock that `worker_exited` takes, so one of the two always sees it.
            drop(workers);
            if worker.status().mark_retiring() {
                Counters::bump(&self.counters.retired_died);
                self.events.emit(
                    EventKind::WorkerDead,
                    Some(pid),
                    Some(format!("worker {pid} exited right after its answer")),
                );
            }
            self.leave_busy(worker);
            return;
        }
        match workers.waiters.pop_nearest(sys::current_cpu()) {
            // The worker stays busy: it goes straight to a waiting caller (see
            // `handoff`), with that caller's task already sent if it lent it.
            Some(slot) => {
                worker.status().set_state(WorkerState::Working);
                drop(workers);
                let sent = slot.lent_task().map(|task| {
                    // SAFETY: the slot is off the queue and not yet delivered to.
                    let (context, body) = unsafe { task.parts() };
                    worker.start_sending_task(context, body, self.task_deadline())
                });
                slot.deliver(Delivery::Worker(Handed { worker, sent }));
            }
            None => {
                workers.busy -= 1;
                workers.idle.push(worker);
                if workers.phase != Phase::Running {
                    self.changed.notify_all();
                }
            }
        }
    }

    /// Counts and reports the retirement of a sound worker for `reason`.
    fn note_retirement(&self, worker: &Worker, reason: RetireReason) {
        worker.status().mark_retiring();
        self.counters.retired(reason);
        if let Some(kind) = reason.event() {
            self.events.emit(kind, Some(worker.pid()), Some(reason.describe(worker.pid())));
        }
    }

    /// Removes a broken worker (already killed by `Worker::failure`) and replaces it.
    fn discard(&self, worker: Worker, error: &Error) {
        Counters::bump(&self.counters.retired_failed);
        self.events.emit(EventKind::WorkerError, Some(worker.pid()), Some(error.message().to_string()));
        self.leave_busy(worker);
    }

    /// Takes a worker that was running a task off the books, and has the supervisor
    /// stop it and start a replacement. The order is sent under the pool's lock, in the
    /// same step that lowers `busy`: a stop that sees no busy worker left then finds
    /// every retirement already queued for the supervisor.
    fn leave_busy(&self, worker: Worker) {
        let mut workers = self.workers.lock();
        workers.members.remove(&worker.id());
        workers.busy -= 1;
        let _ = self.orders.send(Order::Retire(worker));
        drop(workers);
        // Wakes a stop waiting for running tasks.
        self.changed.notify_all();
    }

    /// Retires idle workers that lived or idled too long, or use too much memory.
    fn check_idle_workers(&self) {
        let mut idle_workers = Vec::new();
        {
            let mut workers = self.workers.lock();
            let mut i = 0;
            while i < workers.idle.len() {
                let worker = &workers.idle[i];
                if let Some(reason) = worker.limits().while_idle(worker.started(), worker.idle_since()) {
                    let worker = workers.idle.swap_remove(i);
                    workers.members.remove(&worker.id());
                    self.note_retirement(&worker, reason);
                    let _ = self.orders.send(Order::Retire(worker));
                } else {
                    idle_workers.push((worker.id(), worker.pid()));
                    i += 1;
                }
            }
        }
        if self.config.config.max_memory > 0 {
            // Read /proc outside the lock, then take those still idle.
            let heavy: Vec<u64> = idle_workers
                .into_iter()
                .filter(|&(_, pid)| sys::rss_bytes(pid).is_some_and(|rss| rss > self.config.config.max_memory))
                .map(|(id, _)| id)
                .collect();
            if !heavy.is_empty() {
                let mut workers = self.workers.lock();
                for id in heavy {
                    if let Some(i) = workers.idle.iter().position(|w| w.id() == id) {
                        let worker = workers.idle.swap_remove(i);
                        workers.members.remove(&id);
                        self.note_retirement(&worker, RetireReason::MaxMemory);
                        let _ = self.orders.send(Order::Retire(worker));
                    }
                }
            }
        }
    }

    /// Counters of this pool's owner, with this pool's live figures.
    pub(crate) fn stats(&self) -> PoolStats {
        let workers = self.workers.lock();
        self.counters.snapshot(workers.waiters.len() as u64, workers.members.len() as u64)
    }

    /// A snapshot of every member.
    pub(crate) fn workers(&self) -> Vec<WorkerInfo> {
        let statuses: Vec<_> = self.workers.lock().members.values().map(|member| member.status.clone()).collect();
        let mut infos: Vec<_> = statuses.iter().map(|status| status.info()).collect();
        infos.sort_by_key(|info| info.created);
        infos
    }

    /// Retires the pool in favour of a newer one: callers waiting here move there.
    pub(crate) fn retire_pool(&self) {
        let mut workers = self.workers.lock();
        workers.phase = Phase::Retired;
        Pool::wake_waiters(&mut workers);
    }

    /// Stops the pool: waits for running tasks (up to `destroy_timeout`, then kills the
    /// workers that run them), then stops every worker at once.
    pub(crate) fn stop(&self) {
        let destroy = self.config.config.destroy_timeout;
        let idle = {
            let mut workers = self.workers.lock();
            if !matches!(workers.phase, Phase::Retired | Phase::Failed(_)) {
                workers.phase = Phase::Stopped;
            }
            Pool::wake_waiters(&mut workers);
            let deadline = Instant::now() + destroy;
            while workers.busy > 0 {
                if self.changed.wait_until(&mut workers, deadline).timed_out() {
                    for member in workers.members.values() {
                        if member.status.state() == WorkerState::Working {
                            member.status.mark_retiring();
                            member.process.signal(libc::SIGKILL);
                        }
                    }
                    while workers.busy > 0 {
                        self.changed.wait(&mut workers);
                    }
                }
            }
            workers.members.clear();
            std::mem::take(&mut workers.idle)
        };
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

    fn is_running(&self) -> bool {
        self.workers.lock().phase == Phase::Running
    }

    /// Starts replacements until the pool is back at `num_workers`. On failure, returns
    /// the last spawn error and whether the pool has no member left.
    fn refill(self: &Arc<Self>) -> Option<(Error, bool)> {
        let missing = {
            let mut workers = self.workers.lock();
            if workers.phase != Phase::Running {
                return None;
            }
            let have = workers.members.len() + workers.starting;
            let missing = (self.config.config.num_workers as usize).saturating_sub(have);
            workers.starting += missing;
            missing
        };
        if missing == 0 {
            return None;
        }
        let results = self.spawn_many(missing);
        self.workers.lock().starting -= missing;
        let mut last_failure = None;
        for result in results {
            match result {
                Ok(spawned) => self.admit(spawned),
                Err(error) => last_failure = Some(error),
            }
        }
        let empty = self.workers.lock().members.is_empty();
        last_failure.map(|error| (error, empty))
    }

    /// Marks the pool failed: every waiting and future caller gets `error`.
    fn fail(self: &Arc<Self>, error: Error) {
        {
            let mut workers = self.workers.lock();
            if workers.phase != Phase::Running {
                return;
            }
            workers.phase = Phase::Failed(error.clone());
            Pool::wake_waiters(&mut workers);
        }
        self.events.emit(EventKind::PoolError, None, Some(error.message().to_string()));
        (self.on_failure)(self, &error);
    }
}

/// The supervisor's loop: stop retired workers, keep the pool full.
fn supervise(pool: Weak<Pool>, inbox: Receiver<Order>) {
    let Some((destroy, events)) = pool.upgrade().map(|pool| (pool.config.config.destroy_timeout, pool.events.clone()))
    else {
        return;
    };
    // Retired workers stop on threads of their own: a slow stop (up to destroy_timeout)
    // must not hold up replacements.
    let mut stoppers: Vec<JoinHandle<()>> = Vec::new();
    let stop_in_background = |worker: Worker, stoppers: &mut Vec<JoinHandle<()>>| {
        let events = events.clone();
        let name = format!("rr-stop-{}", worker.pid());
        // With no thread to spare, the worker's drop kills it here and now.
        if let Ok(handle) = std::thread::Builder::new().name(name).spawn(move || worker.stop(destroy, &events)) {
            stoppers.push(handle);
        }
    };
    let mut failed_rounds = 0u32;
    let mut backoff = REFILL_BACKOFF_MIN;
    let watch = pool.upgrade().and_then(|pool| {
        let config = &pool.config.config;
        WorkerLimits::needs_watch(config).then(|| WorkerLimits::watch_interval(config))
    });
    let mut next_watch = watch.map(|interval| Instant::now() + interval);
    loop {
        let mut wait = if failed_rounds > 0 { backoff } else { Duration::from_secs(3600) };
        if let Some(next) = next_watch {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        let order = match inbox.recv_timeout(wait) {
            Ok(order) => Some(order),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let Some(pool) = pool.upgrade() else { break };
        match order {
            Some(Order::Quit) => break,
            Some(Order::Retire(worker)) => stop_in_background(worker, &mut stoppers),
            None => {}
        }
        stoppers.retain(|handle| !handle.is_finished());
        if !pool.is_running() {
            continue;
        }
        if let (Some(next), Some(interval)) = (next_watch, watch) {
            if Instant::now() >= next {
                pool.check_idle_workers();
                next_watch = Some(Instant::now() + interval);
            }
        }
        let Some((error, empty)) = pool.refill() else {
            failed_rounds = 0;
            backoff = REFILL_BACKOFF_MIN;
            continue;
        };
        failed_rounds += 1;
        backoff = (backoff * 2).min(REFILL_BACKOFF_MAX);
        if empty && failed_rounds >= MAX_FAILED_REFILLS {
            pool.fail(error.context(format!(
                "the pool has no worker left: {failed_rounds} attempts in a row to start one failed; the last one"
            )));
            failed_rounds = 0;
        }
    }
    // Retirements queued before the pool stopped still need their stop.
    for order in inbox.try_iter() {
        if let Order::Retire(worker) = order {
            stop_in_background(worker, &mut stoppers);
        }
    }
    for handle in stoppers {
        let _ = handle.join();
    }
}
