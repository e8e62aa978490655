//! Supervision limits of one worker: when it must be retired, and why.
//!
//! Each worker gets its own `max_jobs` and `ttl`, spread below the configured values by
//! up to `jitter_percent`, so that workers started together do not all restart at
//! once. The checks here are pure decisions; the pool acts on them.

use crate::config::Config;
use crate::event::EventKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a sound worker is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetireReason {
    MaxJobs,
    Ttl,
    IdleTtl,
    MaxMemory,
    StopRequested,
    /// An elastic pool's extra worker idled past `scale_idle`.
    Shrink,
    /// Its host asked for it (`Server::remove_worker`).
    Removed,
}

impl RetireReason {
    /// How many reasons there are (the size of a counter array indexed by reason).
    pub(crate) const COUNT: usize = 7;
}

impl RetireReason {
    /// The event that reports this retirement, if it has one of its own.
    pub(crate) fn event(self) -> Option<EventKind> {
        match self {
            RetireReason::MaxJobs => Some(EventKind::WorkerMaxJobs),
            RetireReason::Ttl => Some(EventKind::WorkerTtl),
            RetireReason::IdleTtl => Some(EventKind::WorkerIdleTtl),
            RetireReason::MaxMemory => Some(EventKind::WorkerMaxMemory),
            RetireReason::Shrink => Some(EventKind::PoolShrink),
            RetireReason::Removed => Some(EventKind::WorkerRemoved),
            RetireReason::StopRequested => None,
        }
    }

    /// In words, for event messages.
    pub(crate) fn describe(self, pid: u32) -> String {
        match self {
            RetireReason::MaxJobs => format!("worker {pid} reached max_jobs"),
            RetireReason::Ttl => format!("worker {pid} lived past ttl"),
            RetireReason::IdleTtl => format!("worker {pid} was idle past idle_ttl"),
            RetireReason::MaxMemory => format!("worker {pid} used more memory than max_memory"),
            RetireReason::StopRequested => format!("worker {pid} asked to be replaced"),
            RetireReason::Shrink => format!("worker {pid} was an extra worker idle past scale_idle"),
            RetireReason::Removed => format!("worker {pid} was removed by its host"),
        }
    }
}

/// The limits of one worker, fixed when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerLimits {
    /// Executions after which it is retired; 0 = unlimited.
    max_jobs: u64,
    /// Age after which it is retired between tasks.
    ttl: Option<Duration>,
    idle_ttl: Option<Duration>,
    max_memory: u64,
}

impl WorkerLimits {
    /// Limits for a worker starting now, with its own share of jitter.
    pub(crate) fn new(config: &Config) -> WorkerLimits {
        let jitter = |value: u64| {
            let spread = (u128::from(value) * u128::from(config.jitter_percent) / 100) as u64;
            value - random_below(spread.saturating_add(1)).min(spread)
        };
        let ttl_ms = config.ttl.as_millis().min(u64::MAX as u128) as u64;
        WorkerLimits {
            max_jobs: if config.max_jobs == 0 { 0 } else { jitter(config.max_jobs).max(1) },
            ttl: (ttl_ms > 0).then(|| Duration::from_millis(jitter(ttl_ms).max(1))),
            idle_ttl: (!config.idle_ttl.is_zero()).then_some(config.idle_ttl),
            max_memory: config.max_memory,
        }
    }

    /// No limit at all (until the pool sets the real ones).
    pub(crate) fn none() -> WorkerLimits {
        WorkerLimits { max_jobs: 0, ttl: None, idle_ttl: None, max_memory: 0 }
    }

    /// Whether any limit needs the periodic check of idle workers.
    pub(crate) fn needs_watch(config: &Config) -> bool {
        !config.ttl.is_zero() || !config.idle_ttl.is_zero() || config.max_memory > 0
    }

    /// Whether a worker must go after a task: executions, age, memory.
    pub(crate) fn after_task(
        &self,
        execs: u64,
        started: Instant,
        rss: impl FnOnce() -> Option<u64>,
    ) -> Option<RetireReason> {
        if self.max_jobs > 0 && execs >= self.max_jobs {
            return Some(RetireReason::MaxJobs);
        }
        if self.ttl.is_some_and(|ttl| started.elapsed() >= ttl) {
            return Some(RetireReason::Ttl);
        }
        if self.max_memory > 0 && rss().is_some_and(|rss| rss > self.max_memory) {
            return Some(RetireReason::MaxMemory);
        }
        None
    }

    /// Whether an idle worker must go: age or idleness (memory is checked apart, as it
    /// needs a read of /proc that is done outside the pool's lock).
    pub(crate) fn while_idle(&self, started: Instant, idle_since: Instant) -> Option<RetireReason> {
        if self.ttl.is_some_and(|ttl| started.elapsed() >= ttl) {
            return Some(RetireReason::Ttl);
        }
        if self.idle_ttl.is_some_and(|idle| idle_since.elapsed() >= idle) {
            return Some(RetireReason::IdleTtl);
        }
        None
    }

    /// How often idle workers should be looked at for these settings.
    pub(crate) fn watch_interval(config: &Config) -> Duration {
        let mut interval = Duration::from_secs(1);
        for limit in [config.ttl, config.idle_ttl] {
            if !limit.is_zero() {
                interval = interval.min(limit / 4);
            }
        }
        interval.max(Duration::from_millis(10))
    }
}

/// A number in `0..bound` from a small xorshift generator: jitter needs spread, not
/// cryptographic quality.
fn random_below(bound: u64) -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        x = now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    if bound == 0 {
        0
    } else {
        x % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_jobs: u64, ttl_ms: u64, jitter_percent: u64) -> Config {
        Config { max_jobs, ttl: Duration::from_millis(ttl_ms), jitter_percent, ..Config::new("w", "pipes") }
    }

    #[test]
    fn jitter_spreads_limits_below_the_setting() {
        let limits: Vec<_> = (0..200).map(|_| WorkerLimits::new(&config(1000, 10_000, 10))).collect();
        let jobs: std::collections::HashSet<u64> = limits.iter().map(|l| l.max_jobs).collect();
        assert!(jobs.iter().all(|&j| (900..=1000).contains(&j)), "{jobs:?}");
        assert!(jobs.len() > 20, "limits must differ between workers: {jobs:?}");
        assert!(limits
            .iter()
            .all(|l| l.ttl.unwrap() >= Duration::from_millis(9000) && l.ttl.unwrap() <= Duration::from_millis(10_000)));
    }

    #[test]
    fn no_jitter_means_exact_limits() {
        for _ in 0..50 {
            let limits = WorkerLimits::new(&config(7, 500, 0));
            assert_eq!(limits.max_jobs, 7);
            assert_eq!(limits.ttl, Some(Duration::from_millis(500)));
        }
        assert_eq!(WorkerLimits::new(&config(1, 0, 100)).max_jobs, 1, "max_jobs 1 stays 1");
        assert_eq!(WorkerLimits::new(&config(0, 0, 10)).ttl, None);
    }

    #[test]
    fn decisions_follow_the_limits() {
        let limits = WorkerLimits::new(&Config { max_memory: 1000, ..config(3, 0, 0) });
        let now = Instant::now();
        assert_eq!(limits.after_task(2, now, || Some(10)), None);
        assert_eq!(limits.after_task(3, now, || Some(10)), Some(RetireReason::MaxJobs));
        assert_eq!(limits.after_task(1, now, || Some(1001)), Some(RetireReason::MaxMemory));
        assert_eq!(limits.after_task(1, now, || None), None);
        let idle = WorkerLimits::new(&Config { idle_ttl: Duration::from_millis(5), ..config(0, 0, 0) });
        let long_ago = now - Duration::from_millis(50);
        assert_eq!(idle.while_idle(now, now), None);
        assert_eq!(idle.while_idle(now, long_ago), Some(RetireReason::IdleTtl));
    }
}
