//! `rr_pool_stats`: the counters of a server, copied out by `rr_server_stats`.
//!
//! A plain `#[repr(C)]` copy of the core's [`PoolStats`], field for field and in the
//! same order, so C reads it by value and frees nothing. The counting itself is the
//! core's (`src/stats.rs`); this file only carries the snapshot across.

use super::error::rr_error;
use super::server::{self, rr_server};
use super::status::rr_status;
use crate::{Error, ErrorKind, PoolStats};

/// A snapshot of a server's counters, filled in by `rr_server_stats`. Plain data,
/// copied out of the server: it does not change, nothing in it needs freeing, and it
/// stays valid after the server is freed.
///
/// The counters (every field but `size`, `waiting` and `workers`) belong to the server,
/// not to one pool: they start at 0 when the server is made, never go down, and keep
/// counting across `rr_server_stop`/`rr_server_start`, `rr_server_reconfigure` and
/// `rr_server_reset`. Each field is read on its own, without stopping the pool, so the
/// fields of one snapshot may be a moment apart (e.g. `tasks_done` may already count a
/// task whose job error `job_errors` does not count yet).
///
/// Room to grow: the caller sets `size` to `sizeof(rr_pool_stats)` before the call, and
/// the library writes only that many bytes. Counters added in later versions go at the
/// end, so a host built against this header keeps working with a newer library, and a
/// newer host with this library (see `size`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct rr_pool_stats {
    /// In: `sizeof(rr_pool_stats)` as the caller knows it (set it before the call). Out:
    /// the number of bytes the library filled, the smaller of that and its own size; a
    /// field that starts at or past it was not written (the library is older).
    pub size: usize,
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
    /// Tasks cancelled by their caller before they finished: a stream stopped with
    /// `rr_stream_cancel` or freed unfinished. (Added in 0.2: `size` says whether the
    /// library filled it.)
    pub tasks_cancelled: u64,
    /// Worker processes started: the first ones, replacements and an elastic pool's
    /// growth. (Added in 0.2.)
    pub workers_spawned: u64,
    /// Extra workers of an elastic pool retired after idling past scale_idle. (Added
    /// in 0.2.)
    pub retired_shrink: u64,
    /// Workers removed by `rr_server_remove_worker`. (Added in 0.2.)
    pub retired_removed: u64,
}

impl Default for rr_pool_stats {
    /// All counters 0, `size` set: ready to pass to `rr_server_stats`.
    fn default() -> rr_pool_stats {
        rr_pool_stats::from(PoolStats::default())
    }
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
            tasks_cancelled,
            workers_spawned,
            retired_shrink,
            retired_removed,
        } = stats;
        rr_pool_stats {
            size: std::mem::size_of::<rr_pool_stats>(),
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
            tasks_cancelled,
            workers_spawned,
            retired_shrink,
            retired_removed,
        }
    }
}

/// The smallest `size` accepted: the struct of version 0.1 (`size` and 15 counters).
const SIZE_OF_FIRST_VERSION: usize = std::mem::size_of::<usize>() + 15 * 8;

/// Copies the counters of `s` into `*out` (see `rr_pool_stats` for what each counts):
/// as many bytes as `out->size` says, which the caller sets to `sizeof(rr_pool_stats)`
/// first; `out->size` then holds the bytes filled. `out` points to an `rr_pool_stats`
/// the caller owns (e.g. on its stack); nothing is allocated and nothing needs freeing.
/// Does not block on tasks: it reads counters and takes no worker.
///
/// ```c
/// rr_pool_stats stats = { .size = sizeof stats };
/// if (rr_server_stats(s, &stats, &err) == RR_STATUS_OK) { ... stats.tasks_done ... }
/// ```
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` or `out` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when `out->size` is smaller than the first version of the
/// struct (it was not set); `RR_STATUS_STATE` when the server is not started (its
/// counters are kept and can be read again once it is). `*out` is written only on
/// success.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_stats(
    s: *mut rr_server,
    out: *mut rr_pool_stats,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: checked non-NULL; the header requires a struct whose `size` is set.
        let caller_size = unsafe { std::ptr::addr_of!((*out).size).read() };
        if caller_size < SIZE_OF_FIRST_VERSION {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "out->size is {caller_size}: set it to sizeof(rr_pool_stats) before the call \
                     (at least {SIZE_OF_FIRST_VERSION})"
                ),
            ));
        }
        // SAFETY: the header requires NULL or a live server.
        let stats = unsafe { server::with_server(s, |server| server.stats()) }?;
        let filled = caller_size.min(std::mem::size_of::<rr_pool_stats>());
        let snapshot = rr_pool_stats { size: filled, ..rr_pool_stats::from(stats) };
        // SAFETY: the caller's struct holds `caller_size` >= `filled` writable bytes, and
        // ours `filled` readable ones; plain data, no overlap.
        unsafe { std::ptr::copy_nonoverlapping((&raw const snapshot).cast::<u8>(), out.cast::<u8>(), filled) };
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
        rr_pool_stats {
            size: std::mem::size_of::<rr_pool_stats>(),
            tasks_done: 0xdead,
            retired_died: 0xbeef,
            ..rr_pool_stats::default()
        }
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
            tasks_cancelled: 16,
            workers_spawned: 17,
            retired_shrink: 18,
            retired_removed: 19,
        };
        let copied = rr_pool_stats::from(stats);
        // The C layout: `size`, then nineteen uint64_t in the core's order, no padding.
        assert_eq!(std::mem::size_of::<rr_pool_stats>(), 20 * 8);
        let fields: [u64; 20] = unsafe { std::mem::transmute(copied) };
        assert_eq!(fields[0], 20 * 8);
        assert_eq!(fields[1..], std::array::from_fn::<u64, 19, _>(|i| i as u64 + 1));
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
    fn a_size_that_was_not_set_is_refused_and_nothing_is_written() {
        let s = server();
        let mut out = rr_pool_stats { size: 0, ..marked() };
        let (status, message) = call(|err| unsafe { rr_server_stats(s, &mut out, err) });
        assert_eq!(status, rr_status::InvalidArgument);
        assert!(message.unwrap().contains("sizeof(rr_pool_stats)"));
        assert_eq!(out, rr_pool_stats { size: 0, ..marked() });
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
