//! `rr_worker_info`: the snapshot of a server's workers given by `rr_server_workers`,
//! and the `RR_WORKER_STATE_*` numbers.

use super::error::rr_error;
use super::server::{self, rr_server};
use super::status::rr_status;
use crate::{WorkerInfo, WorkerState};
use std::ffi::{c_char, CStr};
use std::time::UNIX_EPOCH;

/// Started, not yet ready (handshake not done).
pub const RR_WORKER_STATE_INACTIVE: i32 = 0;
/// Waiting for a task.
pub const RR_WORKER_STATE_READY: i32 = 1;
/// Running a task.
pub const RR_WORKER_STATE_WORKING: i32 = 2;
/// Streaming a task's answer (kept from RoadRunner 1.x; not used by the static pool).
pub const RR_WORKER_STATE_STREAMING: i32 = 3;
/// Being stopped.
pub const RR_WORKER_STATE_STOPPING: i32 = 4;
/// Stopped and gone.
pub const RR_WORKER_STATE_STOPPED: i32 = 5;
/// Failed; it is being retired.
pub const RR_WORKER_STATE_ERRORED: i32 = 6;

/// A snapshot of one worker, taken by `rr_server_workers`. Plain data, copied out of the
/// server: it does not change, and stays valid after the server is freed.
///
/// Room to grow: `sizeof(rr_worker_info)` (128 bytes) never changes, so `infos[i]`
/// works with any version of the library. A field added later takes its place in
/// `reserved`; `size` says which fields the library that filled the struct knows.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct rr_worker_info {
    /// The bytes of the struct, from its start, that hold fields the library knows
    /// (48 in this version): a field that starts at or past `size` was not filled (it is
    /// 0), because the library is older than the header.
    pub size: usize,
    /// The worker's process id.
    pub pid: i64,
    /// Its state when the snapshot was taken: one of `RR_WORKER_STATE_*` (see
    /// `rr_worker_state_str`).
    pub state: i32,
    /// The number of tasks it has run.
    pub num_execs: u64,
    /// When it was started, in milliseconds since the Unix epoch.
    pub created_unix_ms: i64,
    /// Its resident memory (RSS) in bytes, or 0 where unknown.
    pub rss_bytes: u64,
    /// Zero; room for the fields of later versions (see `size`).
    pub reserved: [u64; 10],
}

/// The bytes of `rr_worker_info` that hold fields (not `reserved`).
const FILLED_BYTES: usize = std::mem::offset_of!(rr_worker_info, reserved);

impl From<&WorkerInfo> for rr_worker_info {
    fn from(info: &WorkerInfo) -> rr_worker_info {
        let created_unix_ms = match info.created.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
        };
        rr_worker_info {
            size: FILLED_BYTES,
            pid: i64::from(info.pid),
            state: info.state as i32,
            num_execs: info.num_execs,
            created_unix_ms,
            rss_bytes: info.rss_bytes,
            reserved: [0; 10],
        }
    }
}

/// Takes a snapshot of the current workers of `s` (of the current pool, after a
/// reconfigure). Does not block on tasks (it may read each worker's RSS from /proc).
///
/// On success `*out` receives an array of `*len_out` entries that the caller owns and
/// releases with `rr_worker_info_free(*out, *len_out)`. With no workers, `*out` is NULL
/// and `*len_out` is 0 (which `rr_worker_info_free` accepts too).
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s`, `out` or `len_out` is
/// NULL; `RR_STATUS_STATE` when the server is not started.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_workers(
    s: *mut rr_server,
    out: *mut *mut rr_worker_info,
    len_out: *mut usize,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        check_out!(len_out, "len_out");
        // SAFETY: the header requires NULL or a live server.
        let workers = unsafe { server::with_server(s, |server| server.workers()) }?;
        let (infos, len) = into_raw_array(workers.iter().map(rr_worker_info::from).collect());
        // SAFETY: both checked non-NULL above; the header requires them writable.
        unsafe {
            super::handle::write_out(out, infos);
            super::handle::write_out(len_out, len);
        }
        Ok(())
    })
}

/// Gives an array to C as pointer and length; an empty array is NULL and 0.
fn into_raw_array(infos: Vec<rr_worker_info>) -> (*mut rr_worker_info, usize) {
    if infos.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    // A boxed slice has no spare capacity, so pointer and length alone rebuild it.
    let len = infos.len();
    (Box::into_raw(infos.into_boxed_slice()).cast::<rr_worker_info>(), len)
}

/// Releases an array returned by `rr_server_workers`; `len` must be the `*len_out` it
/// returned with. Calling with NULL is fine (whatever `len`). Must not be called twice.
#[no_mangle]
pub unsafe extern "C" fn rr_worker_info_free(infos: *mut rr_worker_info, len: usize) {
    ffi_boundary!({
        if infos.is_null() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(infos, len);
        // SAFETY: the header requires the pointer and length `rr_server_workers` gave,
        // not freed before; `into_raw_array` made them from a boxed slice.
        drop(unsafe { Box::from_raw(slice) });
    })
}

/// The lower-case name of worker state `state` (an `RR_WORKER_STATE_*` number):
/// `"inactive"`, `"ready"`, `"working"`, `"streaming"`, `"stopping"`, `"stopped"` or
/// `"errored"`; `"unknown"` for any other number. Static: never NULL, do not free it.
#[no_mangle]
pub extern "C" fn rr_worker_state_str(state: i32) -> *const c_char {
    ffi_boundary!({ state_text(state).as_ptr() })
}

fn state_text(state: i32) -> &'static CStr {
    match WorkerState::from_code(state) {
        Some(WorkerState::Inactive) => c"inactive",
        Some(WorkerState::Ready) => c"ready",
        Some(WorkerState::Working) => c"working",
        Some(WorkerState::Streaming) => c"streaming",
        Some(WorkerState::Stopping) => c"stopping",
        Some(WorkerState::Stopped) => c"stopped",
        Some(WorkerState::Errored) => c"errored",
        None => c"unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::server::{rr_server_free, tests::server};
    use crate::ffi::test_support::{assert_null_argument, sentinel};
    use std::time::Duration;

    const ALL_STATES: [(i32, WorkerState); 7] = [
        (RR_WORKER_STATE_INACTIVE, WorkerState::Inactive),
        (RR_WORKER_STATE_READY, WorkerState::Ready),
        (RR_WORKER_STATE_WORKING, WorkerState::Working),
        (RR_WORKER_STATE_STREAMING, WorkerState::Streaming),
        (RR_WORKER_STATE_STOPPING, WorkerState::Stopping),
        (RR_WORKER_STATE_STOPPED, WorkerState::Stopped),
        (RR_WORKER_STATE_ERRORED, WorkerState::Errored),
    ];

    #[test]
    fn the_numbers_and_names_are_the_cores() {
        for (number, state) in ALL_STATES {
            assert_eq!(number, state as i32, "{state:?}");
            let name = unsafe { CStr::from_ptr(rr_worker_state_str(number)) }.to_str().unwrap();
            assert_eq!(name, state.as_str());
        }
        for unknown in [-1, 7, i32::MAX] {
            assert_eq!(unsafe { CStr::from_ptr(rr_worker_state_str(unknown)) }, c"unknown");
        }
    }

    #[test]
    fn a_snapshot_is_copied_field_by_field() {
        let info = WorkerInfo {
            pid: 4242,
            state: WorkerState::Working,
            num_execs: 12,
            created: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            rss_bytes: 1 << 20,
        };
        assert_eq!(
            rr_worker_info::from(&info),
            rr_worker_info {
                size: 48,
                pid: 4242,
                state: 2,
                num_execs: 12,
                created_unix_ms: 1_700_000_000_123,
                rss_bytes: 1 << 20,
                reserved: [0; 10],
            }
        );
        // The stride of an array never changes: fields of later versions take reserved room.
        assert_eq!(std::mem::size_of::<rr_worker_info>(), 128);
        let before_epoch = WorkerInfo { created: UNIX_EPOCH - Duration::from_millis(5), ..info };
        assert_eq!(rr_worker_info::from(&before_epoch).created_unix_ms, -5);
    }

    #[test]
    fn arrays_round_trip_and_empty_ones_are_null() {
        let info = rr_worker_info {
            size: FILLED_BYTES,
            pid: 1,
            state: 1,
            num_execs: 0,
            created_unix_ms: 0,
            rss_bytes: 0,
            reserved: [0; 10],
        };
        let (infos, len) = into_raw_array(vec![info; 3]);
        assert_eq!(len, 3);
        assert_eq!(unsafe { std::slice::from_raw_parts(infos, len) }, &[info; 3]);
        unsafe { rr_worker_info_free(infos, len) };

        assert_eq!(into_raw_array(Vec::new()), (std::ptr::null_mut(), 0));
        unsafe { rr_worker_info_free(std::ptr::null_mut(), 0) };
        unsafe { rr_worker_info_free(std::ptr::null_mut(), 5) };
    }

    #[test]
    fn workers_checks_its_arguments() {
        let s = server();
        let (mut infos, mut len) = (sentinel(), 77usize);
        assert_null_argument(|err| unsafe { rr_server_workers(std::ptr::null_mut(), &mut infos, &mut len, err) }, "s");
        assert_null_argument(|err| unsafe { rr_server_workers(s, std::ptr::null_mut(), &mut len, err) }, "out");
        assert_null_argument(|err| unsafe { rr_server_workers(s, &mut infos, std::ptr::null_mut(), err) }, "len_out");
        assert_eq!((infos, len), (sentinel(), 77));
        unsafe { rr_server_free(s) };
    }
}
