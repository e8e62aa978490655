//! `rr_status`: the result code of every fallible function, and `rr_status_str`.

use crate::ErrorKind;
use std::ffi::c_char;

/// The result of every fallible function: `RR_STATUS_OK` (0) or the family of the
/// failure. The values never change; new ones are only ever added at the end. A
/// function that fails also gives an `rr_error` with the details when its `err_out`
/// is not NULL.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum rr_status {
    /// Success.
    Ok = 0,
    /// The worker answered the task with an error; the worker stays in the pool.
    /// `rr_error_data` holds the worker's message bytes.
    JobError = 1,
    /// The worker process failed (crash, broken protocol, killed); it was replaced.
    WorkerError = 2,
    /// No free worker within `allocate_timeout`.
    Timeout = 3,
    /// Invalid configuration; the message names the setting.
    Config = 4,
    /// A worker could not be started, or did not connect or answer in time.
    Spawn = 5,
    /// The server is not started, or was stopped (or is being freed).
    State = 6,
    /// A required pointer was NULL; the message names the argument.
    NullArgument = 7,
    /// An argument is out of range or not valid UTF-8.
    InvalidArgument = 8,
    /// A bug in the library: a caught panic or a broken invariant.
    Internal = 9,
    /// The task ran longer than `exec_ttl` and its worker was killed.
    ExecTtl = 10,
    /// `max_queue` callers were already waiting for a worker.
    QueueFull = 11,
    /// The task was cancelled before it finished (`rr_stream_cancel`, a freed stream).
    Cancelled = 12,
}

impl From<ErrorKind> for rr_status {
    fn from(kind: ErrorKind) -> rr_status {
        match kind {
            ErrorKind::JobError => rr_status::JobError,
            ErrorKind::WorkerError => rr_status::WorkerError,
            ErrorKind::Timeout => rr_status::Timeout,
            ErrorKind::Config => rr_status::Config,
            ErrorKind::Spawn => rr_status::Spawn,
            ErrorKind::State => rr_status::State,
            ErrorKind::NullArgument => rr_status::NullArgument,
            ErrorKind::InvalidArgument => rr_status::InvalidArgument,
            ErrorKind::Internal => rr_status::Internal,
            ErrorKind::ExecTtl => rr_status::ExecTtl,
            ErrorKind::QueueFull => rr_status::QueueFull,
            ErrorKind::Cancelled => rr_status::Cancelled,
        }
    }
}

/// How `rr_status_str` receives its argument. C may pass any `uint32_t` as an
/// `rr_status` (it is a `uint32_t` typedef in C, a `uint32_t`-based enum in C++), and a
/// Rust enum holding a value outside its variants is undefined behaviour, so the
/// function takes the plain integer. cbindgen names types by their last path segment,
/// so the header still reads `rr_status` (same ABI: both are `uint32_t`).
mod raw {
    pub(super) type rr_status = u32;
}

/// A short, static, lower-case description of status `status`, e.g. `"timeout"`.
/// Unknown values give `"unknown status"`. Never NULL; do not free it.
#[no_mangle]
pub extern "C" fn rr_status_str(status: raw::rr_status) -> *const c_char {
    ffi_boundary!({ status_text(status).as_ptr() })
}

fn status_text(status: u32) -> &'static std::ffi::CStr {
    match status {
        0 => c"ok",
        1 => c"job error",
        2 => c"worker error",
        3 => c"timeout",
        4 => c"config error",
        5 => c"spawn error",
        6 => c"state error",
        7 => c"null argument",
        8 => c"invalid argument",
        9 => c"internal error",
        10 => c"exec ttl exceeded",
        11 => c"queue full",
        12 => c"cancelled",
        _ => c"unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    const ALL_KINDS: [ErrorKind; 12] = [
        ErrorKind::JobError,
        ErrorKind::WorkerError,
        ErrorKind::Timeout,
        ErrorKind::Config,
        ErrorKind::Spawn,
        ErrorKind::State,
        ErrorKind::NullArgument,
        ErrorKind::InvalidArgument,
        ErrorKind::Internal,
        ErrorKind::ExecTtl,
        ErrorKind::QueueFull,
        ErrorKind::Cancelled,
    ];

    fn text(status: u32) -> &'static str {
        unsafe { CStr::from_ptr(rr_status_str(status)) }.to_str().unwrap()
    }

    #[test]
    fn every_error_kind_maps_to_the_status_of_the_same_number() {
        for kind in ALL_KINDS {
            assert_eq!(rr_status::from(kind) as u32, kind as u32, "{kind:?}");
        }
    }

    #[test]
    fn every_status_has_the_text_of_its_error_kind() {
        assert_eq!(text(0), "ok");
        for kind in ALL_KINDS {
            assert_eq!(text(kind as u32), kind.as_str(), "{kind:?}");
        }
    }

    #[test]
    fn unknown_statuses_have_a_text_too() {
        assert_eq!(text(13), "unknown status");
        assert_eq!(text(u32::MAX), "unknown status");
    }
}
