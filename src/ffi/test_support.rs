//! Helpers of the unit tests of `ffi`: calling exports the way a C program would.

use super::error::{rr_error, rr_error_free, rr_error_message, rr_error_status};
use super::status::rr_status;
use std::ffi::CStr;

/// A pointer no export ever returns, to check that an out-parameter was left untouched.
pub(crate) fn sentinel<T>() -> *mut T {
    std::ptr::NonNull::dangling().as_ptr()
}

/// Runs a fallible export with an `err_out`, and returns its status and, when it
/// failed, the error's message (after checking the error's status is the same and
/// freeing it). Checks that success leaves `err_out` alone.
pub(crate) fn call(export: impl FnOnce(*mut *mut rr_error) -> rr_status) -> (rr_status, Option<String>) {
    let mut error: *mut rr_error = std::ptr::null_mut();
    let status = export(&mut error);
    if status == rr_status::Ok {
        assert!(error.is_null(), "success must not give an error");
        return (status, None);
    }
    assert!(!error.is_null(), "a failure must give an error when err_out is not NULL");
    let message = unsafe {
        assert_eq!(rr_error_status(error), status);
        let message = CStr::from_ptr(rr_error_message(error)).to_str().unwrap().to_string();
        rr_error_free(error);
        message
    };
    (status, Some(message))
}

/// Asserts that a fallible export failed with `RR_STATUS_NULL_ARGUMENT` naming `name`.
pub(crate) fn assert_null_argument(export: impl FnOnce(*mut *mut rr_error) -> rr_status, name: &str) {
    let (status, message) = call(export);
    assert_eq!(status, rr_status::NullArgument);
    let message = message.unwrap();
    assert!(message.contains(&format!("`{name}`")), "{message:?} should name `{name}`");
}
