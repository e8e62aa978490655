//! The supervisor thread (`rr-pool`): stops retired workers, keeps the pool full,
//! checks idle workers against their limits, and fails the pool when no worker can be
//! kept alive.
//!
//! It runs under `catch_unwind`: a panic in it (a bug) is reported as a pool error, so
//! the owner rebuilds the pool, and the loop goes on stopping the workers retired to
//! it until the pool stops: no worker is left to run on without a supervisor.

use super::Pool;
use crate::error::{Error, ErrorKind};
use crate::fault::{self, FaultPoint};
use crate::limits::WorkerLimits;
use crate::worker::Worker;
use crossbeam_channel::Receiver;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Replacement failures in a row, with no worker left, after which the pool fails.
const MAX_FAILED_REFILLS: u32 = 3;
/// First and largest pause between failed replacement rounds.
const REFILL_BACKOFF_MIN: Duration = Duration::from_millis(50);
const REFILL_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the supervisor is told to do.
pub(super) enum Order {
    /// Stop this worker gracefully, then refill. (Boxed: a worker is large, and a
    /// retirement rare.)
    Retire(Box<Worker>),
    /// Leave: the pool is stopping.
    Quit,
}

/// Starts the supervisor of `pool`, reading its orders from `inbox`.
pub(super) fn start(pool: &Arc<Pool>, inbox: Receiver<Order>) -> std::io::Result<JoinHandle<()>> {
    let pool = Arc::downgrade(pool);
    std::thread::Builder::new().name("rr-pool".into()).spawn(move || {
        let mut loops = Loops::new(&pool);
        while let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| supervise(&pool, &inbox, &mut loops)))
        {
            let Some(pool) = pool.upgrade() else { break };
            pool.fail(Error::new(
                ErrorKind::Internal,
                format!(
                    "the pool's supervisor thread panicked ({}), a bug: the pool is rebuilt",
                    crate::error::panic_message(&*panic)
                ),
            ));
        }
        loops.stop_all(&inbox);
    })
}

/// What the supervisor keeps across its loop (and across a panic in it).
struct Loops {
    destroy: Duration,
    events: Option<crate::event::EventBus>,
    /// Retired workers stop on threads of their own: a slow stop (up to
    /// destroy_timeout) must not hold up replacements.
    stoppers: Vec<JoinHandle<()>>,
    failed_rounds: u32,
    backoff: Duration,
    /// How often idle workers are checked against ttl, idle_ttl and max_memory.
    watch: Option<Duration>,
    next_watch: Option<Instant>,
}

impl Loops {
    fn new(pool: &Weak<Pool>) -> Loops {
        let pool = pool.upgrade();
        let watch = pool.as_ref().and_then(|pool| {
            let config = &pool.config.config;
            WorkerLimits::needs_watch(config).then(|| WorkerLimits::watch_interval(config))
        });
        Loops {
            destroy: pool.as_ref().map_or(Duration::ZERO, |pool| pool.config.config.destroy_timeout),
            events: pool.as_ref().map(|pool| pool.events.clone()),
            stoppers: Vec::new(),
            failed_rounds: 0,
            backoff: REFILL_BACKOFF_MIN,
            watch,
            next_watch: watch.map(|interval| Instant::now() + interval),
        }
    }

    fn stop_in_background(&mut self, worker: Worker) {
        let Some(events) = self.events.clone() else { return };
        let destroy = self.destroy;
        let name = format!("rr-stop-{}", worker.pid());
        // With no thread to spare, the worker's drop kills it here and now.
        if let Ok(handle) = std::thread::Builder::new().name(name).spawn(move || worker.stop(destroy, &events)) {
            self.stoppers.push(handle);
        }
    }

    /// Stops the workers retired before the pool stopped, and waits for every stop.
    fn stop_all(mut self, inbox: &Receiver<Order>) {
        for order in inbox.try_iter() {
            if let Order::Retire(worker) = order {
                self.stop_in_background(*worker);
            }
        }
        for handle in self.stoppers {
            let _ = handle.join();
        }
    }
}

/// The supervisor's loop: stop retired workers, keep the pool full.
fn supervise(pool: &Weak<Pool>, inbox: &Receiver<Order>, loops: &mut Loops) {
    loop {
        let mut wait = if loops.failed_rounds > 0 { loops.backoff } else { Duration::from_secs(3600) };
        if let Some(next) = loops.next_watch {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        let order = match inbox.recv_timeout(wait) {
            Ok(order) => Some(order),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let Some(pool) = pool.upgrade() else { return };
        fault::point(FaultPoint::Supervisor);
        match order {
            Some(Order::Quit) => return,
            Some(Order::Retire(worker)) => loops.stop_in_background(*worker),
            None => {}
        }
        loops.stoppers.retain(|handle| !handle.is_finished());
        if !pool.is_running() {
            continue;
        }
        if let (Some(next), Some(interval)) = (loops.next_watch, loops.watch) {
            if Instant::now() >= next {
                pool.check_idle_workers();
                loops.next_watch = Some(Instant::now() + interval);
            }
        }
        let Some((error, empty)) = pool.refill() else {
            loops.failed_rounds = 0;
            loops.backoff = REFILL_BACKOFF_MIN;
            continue;
        };
        loops.failed_rounds += 1;
        loops.backoff = (loops.backoff * 2).min(REFILL_BACKOFF_MAX);
        if empty && loops.failed_rounds >= MAX_FAILED_REFILLS {
            pool.fail(error.context(format!(
                "the pool has no worker left: {} attempts in a row to start one failed; the last one",
                loops.failed_rounds
            )));
            loops.failed_rounds = 0;
        }
    }
}
