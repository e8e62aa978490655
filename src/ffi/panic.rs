//! The boundary that keeps a panic from crossing into C.
//!
//! Unwinding out of an `extern "C"` function aborts the host process (a Go server or a
//! Python interpreter that did nothing wrong), so every export runs its body inside one
//! of two macros:
//!
//! - [`ffi_status!`] for functions that return `rr_status` and take `rr_error **err_out`:
//!   the body returns `Result<(), Error>`; a panic becomes `RR_STATUS_INTERNAL` with an
//!   error object that carries the panic message.
//! - [`ffi_boundary!`] for everything else: a panic becomes the function's
//!   [`PanicDefault`] value (NULL, 0, -1 or nothing).
//!
//! The macros go *inside* the function, so cbindgen still sees a plain signature. The
//! panic message itself has already been printed to stderr by the panic hook.

use crate::{Error, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What an export returns when its body panicked (and, for accessors, when its handle
/// is NULL): a value the C caller already has to handle.
pub(crate) trait PanicDefault {
    fn panic_default() -> Self;
}

impl PanicDefault for () {
    fn panic_default() {}
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

impl PanicDefault for i32 {
    /// 0 is neither an event type nor a valid answer of any `int32_t` accessor.
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for bool {
    /// true: `rr_config_differs` says "differ", the answer that makes a host do the
    /// safe thing (a stop and a start).
    fn panic_default() -> Self {
        true
    }
}

impl PanicDefault for u8 {
    /// 0: no codec (`rr_payload_codec`).
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for i64 {
    /// -1 is the "no pid" value of `rr_event_pid`.
    fn panic_default() -> Self {
        -1
    }
}

impl PanicDefault for super::status::rr_status {
    fn panic_default() -> Self {
        super::status::rr_status::Internal
    }
}

/// Runs `body`, turning a panic into [`PanicDefault::panic_default`].
pub(crate) fn catch_or_default<T: PanicDefault>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::panic_default())
}

/// Runs `body`, turning a panic into `value` (for an export whose type's
/// [`PanicDefault`] would mean something there, such as 0 for a file descriptor).
pub(crate) fn catch_or<T>(value: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(value)
}

/// Runs `body`, turning a panic into an internal error that carries its message.
pub(crate) fn catch_as_error(body: impl FnOnce() -> Result<(), Error>) -> Result<(), Error> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(Error::new(
            ErrorKind::Internal,
            format!(
                "a bug in libroadrunner: a panic was caught at the C boundary: {}",
                crate::error::panic_message(&*payload)
            ),
        ))
    })
}

/// The body of an export that returns a value rather than a status: runs `$body` (which
/// may `return` early) and turns a panic into the return type's [`PanicDefault`].
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::ffi::panic::catch_or_default(move || $body)
    };
}

/// The body of an export that returns `rr_status`: `$body` returns `Result<(), Error>`
/// (and may `return Err(..)` early, e.g. from the NULL-check macros). An error, or a
/// panic turned into one, is stored in `*$err_out` when `$err_out` is not NULL, and its
/// status is returned; success returns `RR_STATUS_OK` and leaves `*$err_out` alone.
macro_rules! ffi_status {
    ($err_out:expr, $body:block) => {{
        let err_out: *mut *mut $crate::ffi::error::rr_error = $err_out;
        let result = $crate::ffi::panic::catch_as_error(move || -> ::std::result::Result<(), $crate::Error> { $body });
        // SAFETY: the caller passes NULL or a pointer it lets us write an `rr_error *` to.
        unsafe { $crate::ffi::error::report(result, err_out) }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_default_value() {
        let pointer: *const u8 = catch_or_default(|| panic!("boom"));
        assert!(pointer.is_null());
        assert_eq!(catch_or_default::<i64>(|| panic!("boom")), -1);
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let error = catch_as_error(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(error.message().contains("boom 42"), "{}", error.message());
    }
}
