//! Which process a server belongs to, so that a copy of it made by `fork()` leaves the
//! server alone.
//!
//! `fork()` copies a server's memory into the child, but none of its threads, and the
//! child shares the parent's pipes and sockets to the workers. A task sent from the
//! child would mix with the parent's on the same pipe (and one of them would read the
//! other's answer); stopping the server there would stop the parent's workers, or wait
//! forever for threads that only exist in the parent; and any lock that one of those
//! threads held at the moment of the fork stays locked in the child for good. So a
//! server remembers the process that made it, refuses every call from another one, and
//! is not torn down there (see `Server`'s `Drop`).
//!
//! The check runs on every task, so it must cost nothing: instead of asking the kernel
//! for the pid each time (a system call), a handler registered with `pthread_atfork`
//! counts the forks this process came out of, and a server compares the count it was
//! made with to the current one: one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many times a `fork()` made this process out of its parent (each child starts
/// with its parent's count, plus one).
static FORKS: AtomicU64 = AtomicU64::new(0);
/// Whether the handler that counts forks is registered; until it is (or if it could
/// not be), the pid is compared instead.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Whether a thread took on registering it. Not a `Once`: a thread that forks while
/// another is inside a `Once` leaves it running for good in the child.
static REGISTERING: AtomicBool = AtomicBool::new(false);

/// Runs in the child of every `fork()` of this process. Only an atomic add: the child
/// of a multithreaded process may only do async-signal-safe things at this point.
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn start_counting_forks() {
    if REGISTERING.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: registers a handler that only touches an atomic. glibc links the
    // registration to this library, so the handler goes away if it is unloaded.
    let registered = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) } == 0;
    COUNTING.store(registered, Ordering::Release);
}

/// The process that made something, as seen from the process that looks at it later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnerProcess {
    pid: u32,
    forks: u64,
}

impl OwnerProcess {
    /// The calling process.
    pub(crate) fn current() -> OwnerProcess {
        start_counting_forks();
        OwnerProcess { pid: std::process::id(), forks: FORKS.load(Ordering::Relaxed) }
    }

    /// Whether the calling process is this one (false in a child made by `fork()`).
    pub(crate) fn is_current(&self) -> bool {
        if COUNTING.load(Ordering::Acquire) {
            FORKS.load(Ordering::Relaxed) == self.forks
        } else {
            std::process::id() == self.pid
        }
    }

    /// As [`is_current`](OwnerProcess::is_current), and the pid too (a system call):
    /// for the calls that stop or start things, which must not be fooled by a child made
    /// without running fork handlers (`_Fork`, a raw `clone`).
    pub(crate) fn is_current_surely(&self) -> bool {
        self.is_current() && std::process::id() == self.pid
    }

    /// The owner's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_that_made_it_is_the_current_one() {
        let owner = OwnerProcess::current();
        assert!(owner.is_current());
        assert_eq!(owner.pid(), std::process::id());
        let from_another_thread = std::thread::spawn(move || owner.is_current()).join().unwrap();
        assert!(from_another_thread, "threads of the same process are the same owner");
    }

    #[test]
    fn a_forked_child_is_not_the_owner() {
        let owner = OwnerProcess::current();
        // SAFETY: the child only calls `is_current` (atomic loads) and `_exit`.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let code = if owner.is_current() { 1 } else { 0 };
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our own child, waited for once.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(libc::WIFEXITED(status), "the child did not exit: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the child took itself for the owner");
        assert!(owner.is_current(), "the parent is still the owner after the fork");
    }
}
