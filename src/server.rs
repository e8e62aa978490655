//! The server: the relay listener, the current pool, and the events of both.
//!
//! `exec` forwards to the current pool with no lock held while the task runs.
//! `reconfigure` is blue/green: a new pool is started first, swapped in, and only then
//! is the old one retired in the background; callers still waiting on the old pool
//! move to the new one, and tasks already running on it finish there. When a pool
//! fails (no worker can be kept alive), the server tries once to rebuild it, and
//! reports a server failure if that fails too.

use crate::config::{Config, ValidConfig};
use crate::error::{Error, Result};
use crate::event::{EventBus, EventKind, Listener};
use crate::factory::{self, Factory};
use crate::owner_process::OwnerProcess;
use crate::pool::{AsyncTask, ExecError, FailureHook, Pool, ResubmitHook, Stream, Submitted};
use crate::queue::CompletionQueue;
use crate::state::WorkerInfo;
use crate::stats::{Counters, PoolStats};
use crate::status::ServerStatus;
use crate::sync::{Mutex, RwLock};
use crate::Payload;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

enum Phase {
    /// Built, or stopped: no listener, no pool.
    Idle,
    Running {
        pool: Arc<Pool>,
        factory: Arc<dyn Factory>,
    },
}

struct Inner {
    config: Mutex<ValidConfig>,
    events: EventBus,
    phase: RwLock<Phase>,
    /// Serializes start, stop, reconfigure and rebuilds.
    lifecycle: Mutex<()>,
    /// Old pools being retired, and rebuilds in progress.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// Counters shared by every pool of this server.
    counters: Arc<Counters>,
}

/// A server: a relay listener and a pool of workers. Thread-safe; share it with `Arc`.
/// Dropping it stops it, and after the drop no listener call runs.
///
/// A server belongs to the process that made it. In a child made by `fork()`, which
/// shares the parent's pipes to the workers but has none of its threads, every call
/// that can fail fails with a state error (`config` and `dropped_stderr_lines` read the
/// child's copy), `flush_events` returns at once, and dropping the server
/// releases nothing there (the workers and threads stay the parent's). Make a new
/// server in the child instead.
pub struct Server {
    inner: Arc<Inner>,
    owner: OwnerProcess,
}

impl Server {
    /// Validates `config` and makes a server that is not started yet.
    pub fn new(config: Config) -> Result<Server> {
        let config = config.validate()?;
        Ok(Server {
            inner: Arc::new(Inner {
                config: Mutex::new(config),
                events: EventBus::new(),
                phase: RwLock::new(Phase::Idle),
                lifecycle: Mutex::new(()),
                background: Mutex::new(Vec::new()),
                counters: Arc::default(),
            }),
            owner: OwnerProcess::current(),
        })
    }

    /// Fails with a state error when the calling process is not the one that made the
    /// server: a child made by `fork()` (see [`Server`]). One atomic load: it relies on
    /// the fork handlers having run, which `fork()` does.
    pub fn check_process(&self) -> Result<()> {
        if self.owner.is_current() {
            return Ok(());
        }
        Err(self.not_the_owner())
    }

    /// As [`check_process`](Server::check_process), and compares the pid too (a system
    /// call), so that a child made without fork handlers (`_Fork`, a raw `clone`) is not
    /// taken for the owner either. For the calls that start or stop things.
    pub fn check_process_surely(&self) -> Result<()> {
        if self.owner.is_current_surely() {
            return Ok(());
        }
        Err(self.not_the_owner())
    }

    fn not_the_owner(&self) -> Error {
        Error::state(format!(
            "this server belongs to process {}, and this process ({}) is a copy of it made by fork(), \
             which cannot use it: make a new server here",
            self.owner.pid(),
            std::process::id()
        ))
    }

    /// Starts the relay listener (for sockets) and the pool; returns when every worker
    /// answered the handshake. If one fails, nothing is left running.
    pub fn start(&self) -> Result<()> {
        self.check_process_surely()?;
        let _lifecycle = self.inner.lifecycle.lock();
        if matches!(*self.inner.phase.read(), Phase::Running { .. }) {
            return Err(Error::state("the server is already started"));
        }
        let config = self.inner.config.lock().clone();
        let factory = factory::open(&config.relay, config.config.relay_timeout, config.config.protocol)?;
        let pool = match Pool::start(
            config,
            factory.clone(),
            self.inner.events.clone(),
            self.inner.counters.clone(),
            self.inner.failure_hook(),
            self.inner.resubmit_hook(),
        ) {
            Ok(pool) => pool,
            Err(e) => {
                factory.close();
                return Err(e);
            }
        };
        *self.inner.phase.write() = Phase::Running { pool, factory };
        self.inner.events.emit(EventKind::ServerStart, None, None);
        Ok(())
    }

    /// Stops: new tasks are refused, running tasks finish, every worker is stopped
    /// (stop command, then SIGTERM and SIGKILL after `destroy_timeout`), the listener
    /// is closed. Stopping a server that is not running is a state error.
    pub fn stop(&self) -> Result<()> {
        self.check_process_surely()?;
        let phase = {
            let _lifecycle = self.inner.lifecycle.lock();
            std::mem::replace(&mut *self.inner.phase.write(), Phase::Idle)
        };
        let Phase::Running { pool, factory } = phase else {
            return Err(Error::state("the server is not started"));
        };
        pool.stop();
        // Not under the lifecycle lock: a rebuild in progress needs it to finish.
        self.inner.join_background();
        factory.close();
        self.inner.events.emit(EventKind::ServerStop, None, None);
        Ok(())
    }

    /// Runs one task on a free worker and returns its answer. Blocks the calling
    /// thread; any number of threads may call it at once.
    pub fn exec(&self, context: &[u8], body: &[u8]) -> Result<Payload> {
        self.check_process()?;
        loop {
            let pool = match &*self.inner.phase.read() {
                Phase::Running { pool, .. } => pool.clone(),
                Phase::Idle => return Err(Error::state("the server is not started (call start first)")),
            };
            match pool.exec(context, body) {
                Ok(payload) => return Ok(payload),
                Err(ExecError::Failed(error)) => return Err(error),
                // The pool was swapped out while we waited: the task goes to the new one.
                Err(ExecError::Retired) => continue,
            }
        }
    }

    /// Runs one task whose answer is read chunk by chunk as it arrives (protocol V2
    /// streams; with a worker that does not stream, a stream of one chunk). Blocks until
    /// the answer's first frame. The worker belongs to the stream until its last chunk
    /// was read, or it is cancelled or dropped.
    pub fn exec_stream(&self, context: &[u8], body: &[u8]) -> Result<Stream> {
        self.check_process()?;
        loop {
            let pool = match &*self.inner.phase.read() {
                Phase::Running { pool, .. } => pool.clone(),
                Phase::Idle => return Err(Error::state("the server is not started (call start first)")),
            };
            match pool.exec_stream(context, body) {
                Ok(stream) => return Ok(stream),
                Err(ExecError::Failed(error)) => return Err(error),
                // The pool was swapped out while we waited: the task goes to the new one.
                Err(ExecError::Retired) => continue,
            }
        }
    }

    /// Submits a task and returns at once: its outcome arrives on `queue`, as a
    /// [`Completion`](crate::Completion) with `tag`. The inputs are copied. Errors known
    /// now (the server not started, `max_queue` reached) are returned, and then nothing
    /// arrives for the task. It shares the workers with `exec` callers, first come, first
    /// served; its `allocate_timeout` counts from now.
    pub fn submit(&self, queue: &CompletionQueue, context: &[u8], body: &[u8], tag: u64) -> Result<()> {
        self.check_process()?;
        let ticket = queue.ticket(tag)?;
        let allocate_timeout = self.inner.config.lock().config.allocate_timeout;
        let task = AsyncTask::new(ticket.clone(), context, body, Instant::now() + allocate_timeout);
        let submitted = self.inner.submit_to_current_pool(task, "the server is not started (call start first)");
        if submitted.is_err() {
            queue.forget(&ticket);
        }
        submitted
    }

    /// Starts a pool from `config`, swaps it in, and retires the old pool in the
    /// background (its running tasks finish; its waiting callers move to the new
    /// pool). As in RoadRunner, the relay and relay timeout of `config` are ignored:
    /// they belong to the listener, which stays (an event says so when they differ;
    /// [`Config::differs`] tells beforehand). The protocol cannot change. Only a running
    /// server is reconfigured (as in RoadRunner); on one that is not, this is a state
    /// error.
    pub fn reconfigure(&self, config: Config) -> Result<()> {
        self.check_process_surely()?;
        let _lifecycle = self.inner.lifecycle.lock();
        self.inner.expect_running("reconfigure")?;
        let (config, ignored) = {
            let current = self.inner.config.lock();
            let ignored = current.config.differs(&config).then(|| {
                format!(
                    "reconfigure kept relay {:?} and relay_timeout {} ms (asked: {:?}, {} ms): they change only with a stop and a start",
                    current.config.relay,
                    current.config.relay_timeout.as_millis(),
                    config.relay,
                    config.relay_timeout.as_millis()
                )
            });
            let config =
                Config { relay: current.config.relay.clone(), relay_timeout: current.config.relay_timeout, ..config };
            let config = config.validate()?;
            // A socket relay's listener does the handshake, in the protocol it started with.
            if config.config.protocol != current.config.protocol {
                return Err(Error::config(
                    "protocol",
                    "cannot change on reconfigure; stop the server and make a new one",
                ));
            }
            (config, ignored)
        };
        self.inner.swap_pool(config)?;
        if let Some(message) = ignored {
            self.inner.events.emit(EventKind::ReconfigureIgnored, None, Some(message));
        }
        Ok(())
    }

    /// Reconfigures with the current configuration: every worker is replaced. A state
    /// error on a server that is not running.
    pub fn reset(&self) -> Result<()> {
        self.check_process_surely()?;
        let _lifecycle = self.inner.lifecycle.lock();
        self.inner.expect_running("reset")?;
        let config = self.inner.config.lock().clone();
        self.inner.swap_pool(config)
    }

    /// A snapshot of the current pool's workers.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.check_process()?;
        match &*self.inner.phase.read() {
            Phase::Running { pool, .. } => Ok(pool.workers()),
            Phase::Idle => Err(Error::state("the server is not started")),
        }
    }

    /// The counters of this server's pools (they run on across reconfigures), with
    /// the current pool's waiting callers and workers.
    pub fn stats(&self) -> Result<PoolStats> {
        self.check_process()?;
        match &*self.inner.phase.read() {
            Phase::Running { pool, .. } => Ok(pool.stats()),
            Phase::Idle => Err(Error::state("the server is not started")),
        }
    }

    /// A snapshot of the current pool and its workers, for status pages and metrics
    /// ([`ServerStatus::to_json`], [`ServerStatus::to_openmetrics`]).
    pub fn status(&self) -> Result<ServerStatus> {
        self.check_process()?;
        match &*self.inner.phase.read() {
            Phase::Running { pool, .. } => Ok(pool.status()),
            Phase::Idle => Err(Error::state("the server is not started")),
        }
    }

    /// Takes the worker with process id `pid` out of the pool, which replaces it: after
    /// its current task (`kill` false; an idle one is stopped gracefully at once), or
    /// killed now, its task failing with a worker error. An invalid-argument error when
    /// `pid` is not a worker of the current pool.
    pub fn remove_worker(&self, pid: u32, kill: bool) -> Result<()> {
        self.check_process()?;
        match &*self.inner.phase.read() {
            Phase::Running { pool, .. } => pool.remove_worker(pid, kill),
            Phase::Idle => Err(Error::state("the server is not started")),
        }
    }

    /// Sets the event listener, or removes it with `None`. The old listener is dropped
    /// here, after its last call returned. A listener must not call `stop`, `listen` or
    /// drop the server.
    pub fn listen(&self, listener: Option<Listener>) -> Result<()> {
        self.check_process()?;
        let old = self.inner.events.set_listener(listener);
        drop(old);
        Ok(())
    }

    /// The current configuration. (In a child made by `fork()`, the child's copy; it
    /// waits for a lock, which another thread may have held at the moment of the fork.)
    pub fn config(&self) -> Config {
        self.inner.config.lock().config.clone()
    }

    /// Waits until every event emitted so far was delivered to the listener (at once in
    /// a child made by `fork()`, where nothing is delivered).
    pub fn flush_events(&self) {
        if self.check_process().is_err() {
            return;
        }
        self.inner.events.flush();
    }

    /// Stderr lines not delivered as events because the listener fell behind.
    pub fn dropped_stderr_lines(&self) -> u64 {
        self.inner.events.dropped_stderr_lines()
    }
}

impl Inner {
    /// What a pool of this server does when it fails: ask the server to rebuild it.
    fn failure_hook(self: &Arc<Self>) -> FailureHook {
        let server = Arc::downgrade(self);
        Box::new(move |pool: &Arc<Pool>, error: &Error| Inner::rebuild_after_failure(&server, pool, error))
    }

    /// What a retired pool of this server does with a submitted task it will not run:
    /// submit it to the current pool; with none, it completes with a state error.
    fn resubmit_hook(self: &Arc<Self>) -> ResubmitHook {
        let server = Arc::downgrade(self);
        Box::new(move |task: AsyncTask| {
            const STOPPED: &str = "the server was stopped before the task got a worker";
            let ticket = task.ticket.clone();
            let submitted = server
                .upgrade()
                .map_or_else(|| Err(Error::state(STOPPED)), |inner| inner.submit_to_current_pool(task, STOPPED));
            if let Err(error) = submitted {
                ticket.complete(Err(error));
            }
        })
    }

    /// Submits `task` to the current pool, following it to the next one when a
    /// reconfigure retires that pool meanwhile; a state error saying `not_running` when
    /// no pool runs. On an error the task is dropped and nothing is posted for it.
    fn submit_to_current_pool(&self, mut task: AsyncTask, not_running: &str) -> Result<()> {
        loop {
            let pool = match &*self.phase.read() {
                Phase::Running { pool, .. } => pool.clone(),
                Phase::Idle => return Err(Error::state(not_running)),
            };
            match pool.submit(task)? {
                Submitted::Accepted => return Ok(()),
                // The pool was swapped out just now: the task goes to the new one.
                Submitted::Retired(back) => task = back,
            }
        }
    }

    /// A state error for `what` unless the server is running.
    fn expect_running(&self, what: &str) -> Result<()> {
        match &*self.phase.read() {
            Phase::Running { .. } => Ok(()),
            Phase::Idle => Err(Error::state(format!(
                "the server is not started: {what} replaces the pool of a running server (start it first)"
            ))),
        }
    }

    /// Starts a pool from `config` and swaps it in for the running one, which is
    /// retired in the background. Under the lifecycle lock, on a running server.
    fn swap_pool(self: &Arc<Self>, config: ValidConfig) -> Result<()> {
        let factory = match &*self.phase.read() {
            Phase::Running { factory, .. } => factory.clone(),
            Phase::Idle => return Err(Error::state("the server is not started")),
        };
        let pool = Pool::start(
            config.clone(),
            factory.clone(),
            self.events.clone(),
            self.counters.clone(),
            self.failure_hook(),
            self.resubmit_hook(),
        )?;
        let old = {
            let mut phase = self.phase.write();
            let old = std::mem::replace(&mut *phase, Phase::Running { pool, factory });
            *self.config.lock() = config;
            old
        };
        if let Phase::Running { pool: old, .. } = old {
            old.retire_pool();
            let retiring = std::thread::Builder::new().name("rr-retire".into()).spawn(move || old.stop());
            if let Ok(handle) = retiring {
                let mut background = self.background.lock();
                // Keep only the threads still running: a long life of resets must not
                // pile up finished threads.
                background.retain(|thread| !thread.is_finished());
                background.push(handle);
            }
        }
        Ok(())
    }

    /// Called by a pool that failed: rebuild it once, in the background.
    fn rebuild_after_failure(server: &Weak<Inner>, failed: &Arc<Pool>, error: &Error) {
        let Some(inner) = server.upgrade() else { return };
        let failed = Arc::downgrade(failed);
        let error = error.clone();
        let weak = server.clone();
        let rebuild = std::thread::Builder::new().name("rr-rebuild".into()).spawn(move || {
            let Some(inner) = weak.upgrade() else { return };
            let _lifecycle = inner.lifecycle.lock();
            let still_current = match &*inner.phase.read() {
                Phase::Running { pool, .. } => failed.upgrade().is_some_and(|failed| Arc::ptr_eq(pool, &failed)),
                Phase::Idle => false,
            };
            if !still_current {
                return;
            }
            let config = inner.config.lock().clone();
            if let Err(rebuild_error) = inner.swap_pool(config) {
                inner.events.emit(
                    EventKind::ServerFailure,
                    None,
                    Some(format!("{}; rebuilding the pool failed too: {}", error.message(), rebuild_error.message())),
                );
            }
        });
        if let Ok(handle) = rebuild {
            inner.background.lock().push(handle);
        }
    }

    fn join_background(&self) {
        let current = std::thread::current().id();
        loop {
            let handles: Vec<_> = std::mem::take(&mut *self.background.lock());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                if handle.thread().id() != current {
                    let _ = handle.join();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.owner.is_current_surely() {
            // A copy made by fork(): stopping would stop the parent's workers, and the
            // threads to join, and whoever held a lock, are in the parent. The child's
            // copy of the memory is left as it is (one more reference is never dropped).
            std::mem::forget(Arc::clone(&self.inner));
            return;
        }
        let _ = self.stop();
        self.inner.join_background();
        drop(self.inner.events.shutdown());
    }
}
