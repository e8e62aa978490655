//! `rr_pool_stats`: the counters of a server, copied out by `rr_server_stats`.
//!
//! A plain `#[repr(C)]` copy of the core's [`PoolStats`], field for field and in the
//! same order, so C reads it by value and frees nothing. The counting itself is the
//! core's (`src/stats.rs`); this file only carries the snapshot across.

use super::error::rr_error;
use super::handle;
use super::server::{self, rr_server};
use super::status::rr_status;
use crate::PoolStats;

/// A snapshot of a server's counters, filled in by `rr_server_stats`. Plain data,
/// copied out of the server: it does not change, nothing in it needs freeing, and it
/// stays valid after the server is freed.
///
/// The counters (every field but `waiting` and `workers`) belong to the server, not to
/// one pool: they start at 0 when the server is made, never go down, and keep counting
/// across `rr_server_stop`/`rr_server_start`, `rr_server_reconfigure` and
/// `rr_server_reset`. Each field is read on its own, without stopping the pool, so the
/// fields of one snapshot may be a moment apart (e.g. `tasks_done` may already count a
/// task whose job error `job_errors` does not count yet).
///
/// Its size is part of the ABI: the library writes the whole struct, so a field is only
/// ever added with a new soname.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rr_pool_stats {
    /// Tasks a worker answered, with an answer or with a job error.
    pub tasks_done: u64,
    /// Tasks answered with a job error (`RR_STATUS_JOB_ERROR`; also counted in
    /// `tasks_done`).
    pub job_errors: u64,
    /// Tasks that failed because their worker failed: a crash, a broken protocol, or
    /// exec_ttl (`RR_STATUS_WORKER_ERROR` and `RR_STATUS_EXEC_TTL`).
    pub worker_errors: u64,
    /// Tasks killed because they ran past exec_ttl (`RR_STATUS_EXEC_TTL`; also counted
    /// in `worker_errors`).
    pub exec_ttl_kills: u64,
    /// Callers that got no free worker within allocate_timeout (`RR_STATUS_TIMEOUT`).
    pub timeouts: u64,
    /// Callers refused because max_queue callers were already waiting
    /// (`RR_STATUS_QUEUE_FULL`).
    pub queue_full: u64,
    /// Callers waiting for a free worker at the moment of the snapshot (not a counter).
    pub waiting: u64,
    /// Workers in the current pool at the moment of the snapshot (not a counter).
    pub workers: u64,
    /// Workers retired after running max_jobs tasks.
    pub retired_max_jobs: u64,
    /// Workers retired, between tasks, after living past ttl.
    pub retired_ttl: u64,
    /// Workers retired after waiting for a task longer than idle_ttl.
    pub retired_idle_ttl: u64,
    /// Workers retired, between tasks, for a resident memory above max_memory_bytes.
    pub retired_max_memory: u64,
    /// Workers retired because they asked to be (`rr_worker_stop` on the worker side).
    pub retired_stop_requested: u64,
    /// Workers removed because they failed (a crash, a broken protocol, exec_ttl).
    pub retired_failed: u64,
    /// Workers that exited on their own while idle or right after a task.
    pub retired_died: u64,
}

impl From<PoolStats> for rr_pool_stats {
    fn from(stats: PoolStats) -> rr_pool_stats {
        // Destructured, so that a field added to the core without being added here is a
        // compile error rather than a silently missing counter.
        let PoolStats {
            tasks_done,
            job_errors,
            worker_errors,
            exec_ttl_kills,
            timeouts,
            queue_full,
            waiting,
            workers,
            retired_max_jobs,
            retired_ttl,
            retired_idle_ttl,
            retired_max_memory,
            retired_stop_requested,
            retired_failed,
            retired_died,
        } = stats;
        rr_pool_stats {
            tasks_done,
            job_errors,
            worker_errors,
            exec_ttl_kills,
            timeouts,
            queue_full,
            waiting,
            workers,
            retired_max_jobs,
            retired_ttl,
            retired_idle_ttl,
            retired_max_memory,
            retired_stop_requested,
            retired_failed,
            retired_died,
        }
    }
}

/// Copies the counters of `s` into `*out` (see `rr_pool_stats` for what each counts).
/// `out` points to an `rr_pool_stats` the caller owns (e.g. on its stack); nothing is
/// allocated and nothing needs freeing. Does not block on tasks: it reads counters and
/// takes no worker.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` or `out` is NULL;
/// `RR_STATUS_STATE` when the server is not started (its counters are kept and can be
/// read again once it is). `*out` is written only on success.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_stats(
    s: *mut rr_server,
    out: *mut rr_pool_stats,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires NULL or a live server.
        let stats = unsafe { server::with_server(s, |server| server.stats()) }?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, rr_pool_stats::from(stats)) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::server::{rr_server_free, tests::server};
    use crate::ffi::test_support::{assert_null_argument, call};

    /// A value no snapshot of a fresh server has, to see that `*out` was not written.
    fn marked() -> rr_pool_stats {
        rr_pool_stats { tasks_done: 0xdead, retired_died: 0xbeef, ..rr_pool_stats::default() }
    }

    #[test]
    fn a_snapshot_is_copied_field_by_field() {
        let stats = PoolStats {
            tasks_done: 1,
            job_errors: 2,
            worker_errors: 3,
            exec_ttl_kills: 4,
            timeouts: 5,
            queue_full: 6,
            waiting: 7,
            workers: 8,
            retired_max_jobs: 9,
            retired_ttl: 10,
            retired_idle_ttl: 11,
            retired_max_memory: 12,
            retired_stop_requested: 13,
            retired_failed: 14,
            retired_died: 15,
        };
        let copied = rr_pool_stats::from(stats);
        // The C layout: fifteen uint64_t in the core's order, no padding.
        assert_eq!(std::mem::size_of::<rr_pool_stats>(), 15 * 8);
        let fields: [u64; 15] = unsafe { std::mem::transmute(copied) };
        assert_eq!(fields, std::array::from_fn(|i| i as u64 + 1));
    }

    #[test]
    fn stats_checks_its_arguments() {
        let s = server();
        let mut out = marked();
        assert_null_argument(|err| unsafe { rr_server_stats(std::ptr::null_mut(), &mut out, err) }, "s");
        assert_null_argument(|err| unsafe { rr_server_stats(s, std::ptr::null_mut(), err) }, "out");
        assert_eq!(out, marked());
        unsafe { rr_server_free(s) };
    }

    #[test]
    fn stats_of_a_server_that_is_not_started_is_a_state_error() {
        let s = server();
        let mut out = marked();
        let (status, message) = call(|err| unsafe { rr_server_stats(s, &mut out, err) });
        assert_eq!(status, rr_status::State);
        assert!(message.unwrap().contains("not started"));
        assert_eq!(out, marked(), "out-parameters are written only on success");
        unsafe { rr_server_free(s) };
    }
}
