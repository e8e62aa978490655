//! Where a thread sleeps until another one rings for it, or until a descriptor another
//! thread named for it becomes readable.
//!
//! The second kind is what the hand-off needs (see `handoff`): a caller that frees a
//! worker sends the next waiting caller's task to that worker, and the waiting caller
//! has nothing to do until the worker answers. Woken by the freeing caller, it would
//! often run before the worker had answered and sleep again on the relay: two wake-ups.
//! Told instead to wake when the worker's relay becomes readable, it is woken once, by
//! the worker's own write, as a caller of a bare ping-pong is.
//!
//! An epoll instance holds an eventfd (the bell) and the named descriptors, each armed
//! for one readiness (`EPOLLONESHOT`), so a descriptor named once never wakes the thread
//! again unless named again. A descriptor stays registered (disarmed) until it is closed
//! or named again, which re-arms it: one `epoll_ctl` per hand-off.

use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// The epoll data of the bell; named descriptors carry their own number.
const BELL: u64 = u64::MAX;

/// One thread's doorbell: two descriptors, for the life of that thread.
pub(crate) struct Doorbell {
    epoll: OwnedFd,
    bell: OwnedFd,
}

impl Doorbell {
    /// A new doorbell; fails when no descriptor is left.
    pub(crate) fn new() -> io::Result<Doorbell> {
        let epoll = sys::epoll_create()?;
        let bell = sys::eventfd()?;
        sys::epoll_watch(&epoll, bell.as_raw_fd(), libc::EPOLLIN as u32, BELL)?;
        Ok(Doorbell { epoll, bell })
    }

    /// Wakes the sleeper (or makes its next `sleep` return at once).
    pub(crate) fn ring(&self) {
        sys::eventfd_add(&self.bell);
    }

    /// Wakes the sleeper once `fd` is readable (or closed by its peer), which may be at
    /// once; rings at once if `fd` cannot be watched.
    pub(crate) fn ring_when_readable(&self, fd: RawFd) {
        let events = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
        if sys::epoll_watch(&self.epoll, fd, events, fd as u64).is_err() {
            self.ring();
        }
    }

    /// Sleeps until rung, a named descriptor is readable, or `deadline`; may also return
    /// early for nothing (a descriptor named for an earlier wait), so callers check
    /// their condition in a loop. Returns false once `deadline` has passed.
    pub(crate) fn sleep(&self, deadline: Option<Instant>) -> bool {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                // Rounded up: waking before the deadline would only mean sleeping again.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        if let Ok(Some(BELL)) = sys::epoll_wait_one(&self.epoll, timeout_ms) {
            sys::eventfd_take(&self.bell);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_ring_wakes_the_sleeper_and_is_used_up() {
        let doorbell = Doorbell::new().unwrap();
        doorbell.ring();
        assert!(doorbell.sleep(None), "rung before the sleep: returns at once");
        let soon = Instant::now() + Duration::from_millis(20);
        while doorbell.sleep(Some(soon)) {}
        assert!(Instant::now() >= soon, "the ring was used up: the sleep lasts until the deadline");
    }

    #[test]
    fn a_named_descriptor_wakes_the_sleeper_once_when_it_becomes_readable() {
        let doorbell = std::sync::Arc::new(Doorbell::new().unwrap());
        let (read_end, write_end) = std::io::pipe().unwrap();
        doorbell.ring_when_readable(read_end.as_raw_fd());
        let sleeper = {
            let doorbell = doorbell.clone();
            std::thread::spawn(move || {
                let give_up = Instant::now() + Duration::from_secs(20);
                doorbell.sleep(Some(give_up)) && Instant::now() < give_up
            })
        };
        std::io::Write::write_all(&mut &write_end, b"x").unwrap();
        assert!(sleeper.join().unwrap(), "not woken by the write");
        // Still readable, but disarmed: it does not wake the thread again.
        let soon = Instant::now() + Duration::from_millis(20);
        while doorbell.sleep(Some(soon)) {}
        // Named again, it wakes at once: it is readable already.
        doorbell.ring_when_readable(read_end.as_raw_fd());
        let give_up = Instant::now() + Duration::from_secs(20);
        assert!(doorbell.sleep(Some(give_up)) && Instant::now() < give_up);
    }

    #[test]
    fn a_descriptor_that_cannot_be_watched_rings_at_once() {
        let doorbell = Doorbell::new().unwrap();
        let file = tempfile::tempfile().unwrap();
        // Regular files cannot be watched by epoll (EPERM).
        doorbell.ring_when_readable(file.as_raw_fd());
        let give_up = Instant::now() + Duration::from_secs(20);
        assert!(doorbell.sleep(Some(give_up)) && Instant::now() < give_up);
    }
}
