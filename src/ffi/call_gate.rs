//! Counting calls in flight on one server, so that `rr_server_free` can wait for them.
//!
//! A C program may free a server while other threads are still blocked in `rr_exec` on
//! it. The server must outlive those calls, and `rr_server_free` must not return before
//! they are done (after it returns no callback may run, and the caller may unload the
//! library). So every call on a server holds a [`CallGuard`], and freeing first
//! [closes](CallGate::close) the gate and then [waits](CallGate::wait_until_idle) until
//! no guard is left.
//!
//! The hot path (enter and leave) is two atomic operations each; the mutex and condition
//! variable are only touched while the gate is closing.

use crate::sync::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The in-flight counter of one server handle.
#[derive(Default)]
pub(crate) struct CallGate {
    in_flight: AtomicUsize,
    closing: AtomicBool,
    idle_lock: Mutex<()>,
    idle: Condvar,
}

/// Proof that a call is in flight; leaving the call drops it.
pub(crate) struct CallGuard<'a> {
    gate: &'a CallGate,
}

impl CallGate {
    /// Registers a call; `None` once the gate is closing (the server is being freed).
    pub(crate) fn enter(&self) -> Option<CallGuard<'_>> {
        // SeqCst on both sides (here and in `wait_until_idle`) is the Dekker pattern: either
        // this call sees `closing`, or the closer sees this call in `in_flight`.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard { gate: self };
        if self.closing.load(Ordering::SeqCst) {
            return None;
        }
        Some(guard)
    }

    /// Refuses every call that enters from now on.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Blocks until no call is in flight. Call after [`close`](CallGate::close).
    pub(crate) fn wait_until_idle(&self) {
        let mut lock = self.idle_lock.lock();
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            self.idle.wait(&mut lock);
        }
    }

    fn leave(&self) {
        let was = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if was == 1 && self.closing.load(Ordering::SeqCst) {
            // Taking the lock orders this notification after the closer's check of
            // `in_flight`, so the wake-up cannot fall between its check and its wait.
            let _lock = self.idle_lock.lock();
            self.idle.notify_all();
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.gate.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_closed_gate_refuses_calls() {
        let gate = CallGate::default();
        assert!(gate.enter().is_some());
        gate.close();
        assert!(gate.enter().is_none());
        gate.wait_until_idle();
    }

    #[test]
    fn closing_waits_for_calls_in_flight() {
        let gate = Arc::new(CallGate::default());
        let (entered, wait_entered) = std::sync::mpsc::channel();
        let worker_gate = gate.clone();
        let call = std::thread::spawn(move || {
            let _guard = worker_gate.enter().unwrap();
            entered.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            std::time::Instant::now()
        });
        wait_entered.recv().unwrap();
        gate.close();
        gate.wait_until_idle();
        let idle_at = std::time::Instant::now();
        let call_left_at = call.join().unwrap();
        assert!(call_left_at <= idle_at);
    }
}
