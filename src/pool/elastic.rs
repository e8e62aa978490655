//! The elastic pool: growing while callers wait, shrinking when extra workers idle.
//!
//! `num_workers` is the floor and `max_workers` the ceiling (`shared/SPEC.md` section
//! 5). The pool keeps a target between the two, which `refill` (see `replace`) starts
//! workers up to, and which this module moves:
//! - a caller or task that waits in line tells the supervisor once (`note_pressure`);
//!   when the oldest waiter has waited `scale_after`, the target rises by a step (1, 2,
//!   4, ... up to `spawn_rate`, doubling while the pressure lasts, as PHP-FPM's
//!   `dynamic` manager does), never past the callers still unserved nor the ceiling,
//!   counting every process the pool owns, starting and stopping ones included. With
//!   no worker at all (an on-demand pool), it grows at once: nothing could free up.
//! - every `scale_idle / 2`, extra workers idle for `scale_idle` are retired, up to
//!   `spawn_rate` per check, oldest idle first, never below the floor.
//!
//! The waiting caller is never failed for asking: it keeps its place in line and takes
//! the first worker that frees up, new or old. A static pool (`max_workers` 0 or equal
//! to `num_workers`) never grows here; its target stays `num_workers`.

use super::retire::Leaving;
use super::supervisor::Order;
use super::{Pool, Workers};
use crate::event::EventKind;
use crate::limits::RetireReason;
use std::time::{Duration, Instant};

/// The growth in progress of an elastic pool.
#[derive(Debug)]
pub(super) struct Growth {
    /// Workers the next step may add (doubles while callers keep waiting).
    step: usize,
    /// When the supervisor looks at the line next, while someone waits.
    pub(super) due: Option<Instant>,
}

impl Growth {
    pub(super) fn new() -> Growth {
        Growth { step: 1, due: None }
    }
}

impl Pool {
    /// Called with a waiter just queued: has the supervisor look at the line once the
    /// oldest waiter waited `scale_after` (at once, with no worker at all).
    pub(super) fn note_pressure(&self, workers: &mut Workers) {
        if !self.config.config.is_elastic() || workers.growth.due.is_some() {
            return;
        }
        let now = Instant::now();
        let nobody = workers.members.is_empty() && workers.starting == 0;
        let since = workers.waiters.oldest_since().unwrap_or(now);
        workers.growth.due = Some(if nobody { now } else { since + self.config.config.scale_after });
        let _ = self.orders.send(Order::Wake);
    }

    /// Processes this pool owns: members, and the ones starting and stopping.
    pub(super) fn processes(workers: &Workers) -> usize {
        workers.members.len() + workers.starting + workers.leaving.len()
    }

    /// How many more processes the ceiling allows now.
    pub(super) fn room_under_ceiling(&self, workers: &Workers) -> usize {
        (self.config.config.ceiling() as usize).saturating_sub(Pool::processes(workers))
    }

    /// At the supervisor's wake-up: grows the target by a step if the oldest waiter
    /// waited `scale_after`, and says when to look again (see the module docs).
    pub(super) fn grow_if_pressed(&self, now: Instant) {
        let scale_after = self.config.config.scale_after;
        let mut workers = self.workers.lock();
        let Some(due) = workers.growth.due else { return };
        if now < due {
            return;
        }
        let waiting = workers.waiters.len();
        if waiting == 0 || !self.is_running_locked(&workers) {
            workers.growth = Growth::new();
            return;
        }
        let nobody = workers.members.is_empty() && workers.starting == 0;
        let oldest = workers.waiters.oldest_since().unwrap_or(now);
        if !nobody && now < oldest + scale_after {
            // The waiter that asked was served; the one now first has not waited long.
            workers.growth.due = Some(oldest + scale_after);
            return;
        }
        // While callers wait, look again after scale_after, whatever this step does.
        workers.growth.due = Some(now + scale_after);
        let unserved = waiting.saturating_sub(workers.starting + workers.target.saturating_sub(Pool::have(&workers)));
        let step = workers.growth.step.min(unserved).min(self.room_under_ceiling(&workers));
        if step == 0 {
            return;
        }
        let before = Pool::have(&workers);
        workers.target = (workers.target.max(before) + step).min(self.config.config.ceiling() as usize);
        workers.growth.step = (workers.growth.step * 2).min(self.config.config.spawn_rate as usize);
        let message = format!(
            "starting {step} more worker{}: {waiting} waiting, the oldest for {} ms; {before} -> {} workers (at most {})",
            if step == 1 { "" } else { "s" },
            now.saturating_duration_since(oldest).as_millis(),
            workers.target,
            self.config.config.ceiling()
        );
        drop(workers);
        self.events.emit(EventKind::PoolGrow, None, Some(message));
    }

    /// Members and workers starting: what the target is compared with.
    pub(super) fn have(workers: &Workers) -> usize {
        workers.members.len() + workers.starting
    }

    /// Retires up to `spawn_rate` extra workers that idled at least `scale_idle`, the
    /// longest idle first, never below the floor; lowers the target with them.
    pub(super) fn shrink_idle_extras(&self, now: Instant) {
        let config = &self.config.config;
        let mut workers = self.workers.lock();
        if !self.is_running_locked(&workers) {
            return;
        }
        let floor = config.num_workers as usize;
        let extra = workers.members.len().saturating_sub(floor).min(config.spawn_rate as usize);
        let mut idle_long: Vec<(Instant, u64)> = workers
            .idle
            .iter()
            .filter(|worker| now.saturating_duration_since(worker.idle_since()) >= config.scale_idle)
            .map(|worker| (worker.idle_since(), worker.id()))
            .collect();
        idle_long.sort();
        for (_, id) in idle_long.into_iter().take(extra) {
            let Some(i) = workers.idle.iter().position(|worker| worker.id() == id) else { continue };
            let worker = workers.idle.swap_remove(i);
            workers.target = workers.target.saturating_sub(1).max(floor);
            self.retire(&mut workers, worker, Leaving::Limit(RetireReason::Shrink), false);
        }
    }

    /// An idle worker leaves for one of its limits (ttl, idle_ttl, max_memory): an
    /// elastic pool above its floor does not replace it (it was idle: nobody needs it),
    /// or its extra workers would be replaced forever and never shrink.
    pub(super) fn forgo_idle_extra(&self, workers: &mut Workers) {
        let floor = self.config.config.num_workers as usize;
        if self.config.config.is_elastic() && workers.target > floor {
            workers.target -= 1;
        }
    }

    /// How often idle extras are looked for: every `scale_idle / 2` (at least 1 ms).
    pub(super) fn shrink_interval(&self) -> Option<Duration> {
        let config = &self.config.config;
        config.is_elastic().then(|| (config.scale_idle / 2).max(Duration::from_millis(1)))
    }

    /// When the supervisor must look at the line for growth next, if ever.
    pub(super) fn growth_due(&self) -> Option<Instant> {
        self.workers.lock().growth.due
    }
}
