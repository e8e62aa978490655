//! `rr_error`: the details of a failed call, given through `rr_error **err_out`.

use super::cstring::{bytes_out, lossy_c_string, no_bytes_out};
use super::handle::{self, Castable};
use super::status::rr_status;
use crate::Error;
use std::ffi::{c_char, CString};

/// The details of a failed call: its status, a message for a person, and for a job
/// error the raw bytes the worker sent.
///
/// Every fallible function takes `rr_error **err_out` as its last parameter. When
/// `err_out` is not NULL and the call fails, `*err_out` receives a new `rr_error` that
/// the caller owns and must release with `rr_error_free`; on success `*err_out` is left
/// unchanged. Pass NULL when the status is enough.
///
/// Thread-safety: immutable; may be read from any thread, and freed once no thread
/// reads it. It does not depend on the object whose call produced it.
///
/// Methods: `rr_error_status`, `rr_error_message`, `rr_error_data`, `rr_error_free`.
pub struct rr_error {
    _private: [u8; 0],
}

/// What an `rr_error` holds, ready to be read from C.
pub(crate) struct ErrorDetails {
    status: rr_status,
    message: CString,
    data: Vec<u8>,
}

impl Castable for rr_error {
    type Rust = ErrorDetails;
}

impl From<Error> for ErrorDetails {
    fn from(error: Error) -> ErrorDetails {
        ErrorDetails {
            status: error.kind().into(),
            message: lossy_c_string(error.message()),
            data: error.data().to_vec(),
        }
    }
}

/// Turns the result of an export's body into its status, and on failure gives the
/// error to the caller through `err_out` (when it is not NULL).
///
/// # Safety
/// `err_out` is NULL or writable.
pub(crate) unsafe fn report(result: Result<(), Error>, err_out: *mut *mut rr_error) -> rr_status {
    match result {
        Ok(()) => rr_status::Ok,
        Err(error) => {
            let status = error.kind().into();
            if !err_out.is_null() {
                // SAFETY: non-NULL and writable, as the caller guarantees.
                unsafe { handle::write_out(err_out, handle::into_raw(ErrorDetails::from(error))) };
            }
            status
        }
    }
}

/// The status of the failed call that produced `e`. NULL `e` gives
/// `RR_STATUS_NULL_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn rr_error_status(e: *const rr_error) -> rr_status {
    ffi_boundary!({ ref_or_return!(e, rr_status::NullArgument).status })
}

/// The message of `e`: UTF-8, NUL-terminated, in words a person can act on (it names
/// the setting, argument or worker pid concerned, and a dead worker's stderr). Owned by
/// `e`: valid until `rr_error_free(e)`, not to be freed by the caller. NULL `e` gives NULL.
#[no_mangle]
pub unsafe extern "C" fn rr_error_message(e: *const rr_error) -> *const c_char {
    ffi_boundary!({ ref_or_return!(e, std::ptr::null()).message.as_ptr() })
}

/// The raw bytes attached to `e`: for `RR_STATUS_JOB_ERROR`, the error message exactly as
/// the worker sent it (not necessarily UTF-8); for other statuses, no bytes. Writes their
/// number to `*len_out` and returns a pointer to them, owned by `e` and valid until
/// `rr_error_free(e)`. The pointer is not NULL even when there are no bytes.
/// NULL `e` gives NULL with `*len_out` set to 0; NULL `len_out` gives NULL.
#[no_mangle]
pub unsafe extern "C" fn rr_error_data(e: *const rr_error, len_out: *mut usize) -> *const u8 {
    ffi_boundary!({
        // SAFETY (here and below): the header requires `len_out` to be NULL or writable.
        let details = ref_or_return!(e, unsafe { no_bytes_out(len_out) });
        unsafe { bytes_out(&details.data, len_out) }
    })
}

/// Releases `e` and everything it owns (its message and data). Calling with NULL is
/// fine. Must not be called twice.
#[no_mangle]
pub unsafe extern "C" fn rr_error_free(e: *mut rr_error) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or an error not freed before.
        unsafe { handle::free(e) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::ffi::CStr;

    fn make(error: Error) -> *mut rr_error {
        let mut out = std::ptr::null_mut();
        let status = unsafe { report(Err(error), &mut out) };
        assert_ne!(status, rr_status::Ok);
        out
    }

    #[test]
    fn a_job_error_keeps_its_raw_bytes() {
        let e = make(Error::job(42, b"bad \xff input".to_vec()));
        unsafe {
            assert_eq!(rr_error_status(e), rr_status::JobError);
            let message = CStr::from_ptr(rr_error_message(e)).to_str().unwrap();
            assert!(message.contains("42"), "{message}");
            let mut len = 0;
            let data = rr_error_data(e, &mut len);
            assert_eq!(std::slice::from_raw_parts(data, len), b"bad \xff input");
            rr_error_free(e);
        }
    }

    #[test]
    fn other_errors_have_no_data_and_a_message_without_nuls() {
        let e = make(Error::new(ErrorKind::Timeout, "waited\0too long"));
        unsafe {
            assert_eq!(rr_error_status(e), rr_status::Timeout);
            assert_eq!(CStr::from_ptr(rr_error_message(e)).to_str().unwrap(), "waited\u{FFFD}too long");
            let mut len = 5;
            assert!(!rr_error_data(e, &mut len).is_null());
            assert_eq!(len, 0);
            rr_error_free(e);
        }
    }

    #[test]
    fn success_and_a_null_err_out_write_nothing() {
        let mut out = crate::ffi::test_support::sentinel();
        assert_eq!(unsafe { report(Ok(()), &mut out) }, rr_status::Ok);
        assert_eq!(out, crate::ffi::test_support::sentinel());
        let status = unsafe { report(Err(Error::state("stopped")), std::ptr::null_mut()) };
        assert_eq!(status, rr_status::State);
    }

    #[test]
    fn accessors_accept_null() {
        unsafe {
            assert_eq!(rr_error_status(std::ptr::null()), rr_status::NullArgument);
            assert!(rr_error_message(std::ptr::null()).is_null());
            let mut len = 5;
            assert!(rr_error_data(std::ptr::null(), &mut len).is_null());
            assert_eq!(len, 0);
            assert!(rr_error_data(std::ptr::null(), std::ptr::null_mut()).is_null());
            rr_error_free(std::ptr::null_mut());
        }
    }
}
