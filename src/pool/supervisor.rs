//! The supervisor thread (`rr-pool`): stops retired workers, keeps the pool full,
//! checks idle workers against their limits, and fails the pool when no worker can be
//! kept alive.
//!
//! It runs under `catch_unwind`: a panic in it (a bug) is reported as a pool error, so
//! the owner rebuilds the pool, and the loop goes on stopping the workers retired to
//! it until the pool stops: no worker is left to run on without a supervisor.

use super::replace::Refill;
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
    /// Look at the pool again: an elastic pool's line, or room under its ceiling.
    Wake,
    /// A round of spawns ended (see `Pool::spawn_reserved`): its last failure, if any,
    /// and whether the pool had no member left then.
    Spawned(Option<(Error, bool)>),
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
    pool: Weak<Pool>,
    destroy: Duration,
    events: Option<crate::event::EventBus>,
    /// Retired workers stop on threads of their own: a slow stop (up to
    /// destroy_timeout) must not hold up replacements.
    stoppers: Vec<JoinHandle<()>>,
    /// Workers start on threads of their own too: a slow boot must not hold up the
    /// next growth step, a shrink, or a stop.
    spawners: Vec<JoinHandle<()>>,
    failed_rounds: u32,
    backoff: Duration,
    /// No new round of spawns before this (a pause after failed rounds).
    next_refill: Instant,
    /// How often idle workers are checked against ttl, idle_ttl and max_memory.
    watch: Option<Duration>,
    next_watch: Option<Instant>,
    /// How often an elastic pool looks for idle extra workers.
    shrink: Option<Duration>,
    next_shrink: Option<Instant>,
}

impl Loops {
    fn new(pool_weak: &Weak<Pool>) -> Loops {
        let pool = pool_weak.upgrade();
        let watch = pool.as_ref().and_then(|pool| {
            let config = &pool.config.config;
            WorkerLimits::needs_watch(config).then(|| WorkerLimits::watch_interval(config))
        });
        let shrink = pool.as_ref().and_then(|pool| pool.shrink_interval());
        Loops {
            pool: Weak::clone(pool_weak),
            destroy: pool.as_ref().map_or(Duration::ZERO, |pool| pool.config.config.destroy_timeout),
            events: pool.as_ref().map(|pool| pool.events.clone()),
            stoppers: Vec::new(),
            spawners: Vec::new(),
            failed_rounds: 0,
            backoff: REFILL_BACKOFF_MIN,
            next_refill: Instant::now(),
            watch,
            next_watch: watch.map(|interval| Instant::now() + interval),
            shrink,
            next_shrink: shrink.map(|interval| Instant::now() + interval),
        }
    }

    fn stop_in_background(&mut self, worker: Worker) {
        let Some(events) = self.events.clone() else { return };
        let destroy = self.destroy;
        let name = format!("rr-stop-{}", worker.pid());
        let id = worker.id();
        let pool = self.pool.clone();
        let stop = move || {
            worker.stop(destroy, &events);
            if let Some(pool) = pool.upgrade() {
                pool.worker_stopped(id);
            }
        };
        // With no thread to spare, the worker's drop kills it here and now.
        match std::thread::Builder::new().name(name).spawn(stop) {
            Ok(handle) => self.stoppers.push(handle),
            Err(_) => {
                if let Some(pool) = self.pool.upgrade() {
                    pool.worker_stopped(id);
                }
            }
        }
    }

    /// Starts the workers the pool misses (see `Pool::reserve_refill`) on a thread of
    /// their own, which reports the round with `Order::Spawned`.
    fn refill(&mut self, pool: &Arc<Pool>) {
        let missing = match pool.reserve_refill() {
            Refill::Start(missing) => missing,
            Refill::InFlight => return,
            Refill::Complete => {
                // At its target (an elastic pool gave up the growth that failed): no
                // pause is due any more.
                self.failed_rounds = 0;
                self.backoff = REFILL_BACKOFF_MIN;
                return;
            }
        };
        let spawning = pool.clone();
        let round = move || {
            let outcome = spawning.spawn_reserved(missing);
            let _ = spawning.orders.send(Order::Spawned(outcome));
        };
        match std::thread::Builder::new().name("rr-spawn".into()).spawn(round) {
            Ok(handle) => self.spawners.push(handle),
            // No thread to spare: spawn here.
            Err(_) => {
                let outcome = pool.spawn_reserved(missing);
                self.count_round(pool, outcome);
            }
        }
    }

    /// Counts a round of spawns: failures in a row pause the next round longer and
    /// longer, and fail the pool once it has no worker left.
    fn count_round(&mut self, pool: &Arc<Pool>, outcome: Option<(Error, bool)>) {
        let Some((error, empty)) = outcome else {
            self.failed_rounds = 0;
            self.backoff = REFILL_BACKOFF_MIN;
            return;
        };
        self.failed_rounds += 1;
        self.next_refill = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(REFILL_BACKOFF_MAX);
        if empty && self.failed_rounds >= MAX_FAILED_REFILLS {
            pool.fail(error.context(format!(
                "the pool has no worker left: {} attempts in a row to start one failed; the last one",
                self.failed_rounds
            )));
            self.failed_rounds = 0;
        }
    }

    /// Stops the workers retired before the pool stopped, and waits for every stop and
    /// every spawn in progress (a worker started after the stop is stopped by `admit`).
    fn stop_all(mut self, inbox: &Receiver<Order>) {
        for handle in std::mem::take(&mut self.spawners) {
            let _ = handle.join();
        }
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

/// The supervisor's loop: stop retired workers, keep the pool at its target, grow and
/// shrink an elastic pool.
fn supervise(pool: &Weak<Pool>, inbox: &Receiver<Order>, loops: &mut Loops) {
    loop {
        // The timers matter only while the pool runs: a retired or failed pool waits for
        // orders alone (a timer left in the past would make this loop spin).
        let mut wait = Duration::from_secs(3600);
        if let Some(pool) = pool.upgrade().filter(|pool| pool.is_running()) {
            let paused = (loops.failed_rounds > 0).then_some(loops.next_refill);
            for next in [loops.next_watch, loops.next_shrink, pool.growth_due(), paused].into_iter().flatten() {
                wait = wait.min(next.saturating_duration_since(Instant::now()));
            }
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
            Some(Order::Spawned(outcome)) => loops.count_round(&pool, outcome),
            Some(Order::Wake) | None => {}
        }
        loops.stoppers.retain(|handle| !handle.is_finished());
        loops.spawners.retain(|handle| !handle.is_finished());
        if !pool.is_running() {
            continue;
        }
        if let (Some(next), Some(interval)) = (loops.next_watch, loops.watch) {
            if Instant::now() >= next {
                pool.check_idle_workers();
                loops.next_watch = Some(Instant::now() + interval);
            }
        }
        let now = Instant::now();
        if let (Some(next), Some(interval)) = (loops.next_shrink, loops.shrink) {
            if now >= next {
                pool.shrink_idle_extras(now);
                loops.next_shrink = Some(now + interval);
            }
        }
        pool.grow_if_pressed(now);
        if now >= loops.next_refill {
            loops.refill(&pool);
        }
    }
}
