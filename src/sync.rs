//! The locks of the library: the standard library's, behind the small interface the
//! code uses (no poisoning to unwrap, a condition variable that waits on a guard it
//! borrows, waits until an instant).
//!
//! Not parking_lot's: those keep their waiting threads in one table for the whole
//! process, whose bucket locks any thread may hold for a moment. A child made by
//! `fork()` at such a moment inherits a bucket locked for good (and pointers to threads
//! it does not have), and its first contended lock anywhere can hang or crash it; a
//! child that makes a server of its own (see `owner_process`) did hang so, about one
//! run in twenty. The standard locks keep their state in the lock itself: in a child
//! only the locks held at the moment of the fork are lost, and a new server's locks are
//! new.
//!
//! A panic while a lock is held does not make the lock unusable: what it guards is
//! kept consistent by the code that holds it, and a panic is already turned into an
//! error (or a caught thread death) where it happens.

use std::ops::{Deref, DerefMut};
use std::sync::PoisonError;
use std::time::Instant;

/// A mutual exclusion lock.
#[derive(Default)]
pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

/// The guard of a locked [`Mutex`]. Holds the standard guard in an `Option` only so
/// that a [`Condvar`] can take it for the time of a wait.
pub(crate) struct MutexGuard<'a, T>(Option<std::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    pub(crate) const fn new(value: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("a guard is only empty during a condition wait")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("a guard is only empty during a condition wait")
    }
}

/// How a timed wait ended.
pub(crate) struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the deadline passed (the condition may still have become true).
    pub(crate) fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable, used with [`MutexGuard`]s.
#[derive(Default)]
pub(crate) struct Condvar(std::sync::Condvar);

impl Condvar {
    pub(crate) const fn new() -> Condvar {
        Condvar(std::sync::Condvar::new())
    }

    /// Unlocks, waits for a notification (or a spurious wake-up), locks again.
    pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        let inner = guard.0.take().expect("a guard is only empty during a condition wait");
        guard.0 = Some(self.0.wait(inner).unwrap_or_else(PoisonError::into_inner));
    }

    /// As [`wait`](Condvar::wait), giving up at `deadline`.
    pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> WaitTimeoutResult {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return WaitTimeoutResult(true);
        }
        let inner = guard.0.take().expect("a guard is only empty during a condition wait");
        let (inner, result) = self.0.wait_timeout(inner, left).unwrap_or_else(PoisonError::into_inner);
        guard.0 = Some(inner);
        WaitTimeoutResult(result.timed_out())
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// A reader-writer lock.
#[derive(Default)]
pub(crate) struct RwLock<T>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) const fn new(value: T) -> RwLock<T> {
        RwLock(std::sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_notified_waiter_wakes_with_the_lock_held_and_the_change_seen() {
        let shared = Arc::new((Mutex::new(false), Condvar::new()));
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let (flag, changed) = &*shared;
                let mut set = flag.lock();
                while !*set {
                    changed.wait(&mut set);
                }
                *set = false;
            })
        };
        *shared.0.lock() = true;
        shared.1.notify_all();
        waiter.join().unwrap();
        assert!(!*shared.0.lock(), "the waiter changed the value under the lock");
    }

    #[test]
    fn a_timed_wait_gives_up_at_its_deadline_and_at_once_past_it() {
        let (lock, condvar) = (Mutex::new(()), Condvar::new());
        let mut guard = lock.lock();
        let deadline = Instant::now() + Duration::from_millis(30);
        while !condvar.wait_until(&mut guard, deadline).timed_out() {}
        assert!(Instant::now() >= deadline);
        assert!(condvar.wait_until(&mut guard, deadline).timed_out(), "a deadline in the past");
    }

    #[test]
    fn a_panic_under_a_lock_leaves_it_usable() {
        let lock = Arc::new(Mutex::new(1));
        let holder = lock.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(*lock.lock(), 1);
        let rw = RwLock::new(2);
        *rw.write() += 1;
        assert_eq!(*rw.read(), 3);
    }
}
