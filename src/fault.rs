//! Fault points: places where the tests make the library panic on purpose, to check
//! that a bug there can neither hang nor crash the host (tests/panics.rs).
//!
//! Built in only with the `fault-injection` feature, which no release enables: without
//! it, [`point`] is an empty function that the compiler removes. With it, each point
//! panics as many times as a test armed it for, in any thread that passes it.

/// A place where a panic can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// In a task, right after a worker was taken for it (counted busy).
    TaskAfterAllocate,
    /// In the pool's supervisor thread, when it handles an order or a timer.
    Supervisor,
    /// In a worker's watcher thread, before it starts watching.
    Watcher,
}

#[cfg(feature = "fault-injection")]
mod armed {
    use super::FaultPoint;
    use std::sync::atomic::{AtomicU32, Ordering};

    static REMAINING: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];
    static FIRED: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

    /// Makes the next `times` passes through `point` panic.
    pub fn arm(point: FaultPoint, times: u32) {
        REMAINING[point as usize].store(times, Ordering::SeqCst);
    }

    /// How many times `point` has panicked so far.
    pub fn fired(point: FaultPoint) -> u32 {
        FIRED[point as usize].load(Ordering::SeqCst)
    }

    /// Panics if `point` is armed.
    pub(crate) fn point(point: FaultPoint) {
        let armed =
            REMAINING[point as usize].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
        if armed.is_ok() {
            FIRED[point as usize].fetch_add(1, Ordering::SeqCst);
            panic!("fault injected at {point:?}");
        }
    }
}

#[cfg(feature = "fault-injection")]
pub(crate) use armed::point;
#[cfg(feature = "fault-injection")]
pub use armed::{arm, fired};

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_point: FaultPoint) {}
