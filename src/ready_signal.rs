//! A descriptor that an event loop polls, readable exactly while its owner says so: the
//! completion queue's `fd`.
//!
//! An eventfd whose counter is 1 while raised and 0 while lowered. The owner raises
//! and lowers it under its own lock, so it is readable exactly while the owner's
//! condition holds. (A pipe holding one byte would do the same; measured with one task
//! in flight, its "sync" wake-up of the poller made no difference.)

use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

pub(crate) struct ReadySignal {
    fd: OwnedFd,
}

impl ReadySignal {
    /// A new signal, lowered.
    pub(crate) fn new() -> io::Result<ReadySignal> {
        Ok(ReadySignal { fd: sys::eventfd()? })
    }

    /// The descriptor to poll: readable while raised.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the descriptor readable. Only when lowered (the owner knows).
    pub(crate) fn raise(&self) {
        let _ = sys::eventfd_add(&self.fd, 1);
    }

    /// Makes it unreadable again. Only when raised (the owner knows).
    pub(crate) fn lower(&self) {
        let _ = sys::eventfd_take(&self.fd);
    }
}
