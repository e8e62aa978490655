//! Opaque handles: how a C pointer type maps to the Rust value behind it, and the
//! macros that check every pointer argument before it is used.
//!
//! Each opaque C type (`rr_config`, `rr_server`, ...) is an empty struct that only exists
//! as a pointer target; [`Castable`] names the Rust value the pointer really points to.
//! Handles are created with [`into_raw`] (a `Box` whose single owner is the C caller) and
//! released with [`free`]. Nothing else in `ffi` casts pointers.

use crate::{Error, ErrorKind};

/// Maps an opaque C type to the Rust value its pointers point to.
pub(crate) trait Castable {
    /// The Rust value behind a pointer to `Self`.
    type Rust;
}

/// Gives a boxed value to C as an owned handle; C releases it with the matching
/// `*_free`, which calls [`free`].
pub(crate) fn into_raw<C: Castable>(value: C::Rust) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind a handle; `None` when the pointer is NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`into_raw`] (or points to a live `C::Rust`) and is not
/// freed while the borrow lasts.
pub(crate) unsafe fn as_ref<'a, C: Castable>(ptr: *const C) -> Option<&'a C::Rust> {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr.cast::<C::Rust>().as_ref() }
}

/// Borrows the value behind a handle mutably; `None` when the pointer is NULL.
///
/// # Safety
/// As [`as_ref`], and no other borrow of the value exists while this one lasts (the
/// header tells C callers which handles are not thread-safe).
pub(crate) unsafe fn as_mut<'a, C: Castable>(ptr: *mut C) -> Option<&'a mut C::Rust> {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr.cast::<C::Rust>().as_mut() }
}

/// Shows a borrowed Rust value to C as a handle that C must not free.
pub(crate) fn as_borrowed_ptr<C: Castable>(value: &C::Rust) -> *const C {
    (value as *const C::Rust).cast()
}

/// Drops the value behind a handle made by [`into_raw`]; NULL does nothing.
///
/// # Safety
/// `ptr` is NULL or came from [`into_raw`] and was not freed before.
pub(crate) unsafe fn free<C: Castable>(ptr: *mut C) {
    if !ptr.is_null() {
        // SAFETY: guaranteed by the caller: `ptr` is a live box made by `into_raw`.
        drop(unsafe { Box::from_raw(ptr.cast::<C::Rust>()) });
    }
}

/// The error of a NULL pointer argument, naming it.
pub(crate) fn null_argument(name: &str) -> Error {
    Error::new(ErrorKind::NullArgument, format!("the argument `{name}` is NULL"))
}

/// Writes `value` to an out-parameter that was checked with [`check_out!`] (non-NULL).
///
/// # Safety
/// `out` is a valid, writable, non-NULL pointer.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: guaranteed by the caller; `write` because `*out` may be uninitialised.
    unsafe { out.write(value) }
}

/// In an [`ffi_status!`] body: borrows the value behind handle `$ptr`, or returns
/// `RR_STATUS_NULL_ARGUMENT` naming `$name`.
macro_rules! try_ref {
    ($ptr:expr, $name:literal) => {{
        let ptr = $ptr;
        // SAFETY: the header requires a live handle of this type (or NULL, handled here).
        match unsafe { $crate::ffi::handle::as_ref(ptr) } {
            Some(value) => value,
            None => return Err($crate::ffi::handle::null_argument($name)),
        }
    }};
}

/// In an [`ffi_status!`] body: borrows the value behind handle `$ptr` mutably, or
/// returns `RR_STATUS_NULL_ARGUMENT` naming `$name`.
macro_rules! try_mut {
    ($ptr:expr, $name:literal) => {{
        let ptr = $ptr;
        // SAFETY: the header requires a live handle of this type, used by one thread at a
        // time (or NULL, handled here).
        match unsafe { $crate::ffi::handle::as_mut(ptr) } {
            Some(value) => value,
            None => return Err($crate::ffi::handle::null_argument($name)),
        }
    }};
}

/// In an [`ffi_status!`] body: returns `RR_STATUS_NULL_ARGUMENT` naming `$name` when the
/// out-parameter `$out` is NULL. Check every out-parameter before doing any work, and
/// write it with [`write_out`] only once the call has succeeded.
macro_rules! check_out {
    ($out:expr, $name:literal) => {
        if $out.is_null() {
            return Err($crate::ffi::handle::null_argument($name));
        }
    };
}

/// In an [`ffi_boundary!`] body (functions without a status): borrows the value behind
/// handle `$ptr`, or returns `$default` (nothing, when not given) when it is NULL.
macro_rules! ref_or_return {
    ($ptr:expr) => {
        ref_or_return!($ptr, ())
    };
    ($ptr:expr, $default:expr) => {{
        let ptr = $ptr;
        // SAFETY: the header requires a live handle of this type (or NULL, handled here).
        match unsafe { $crate::ffi::handle::as_ref(ptr) } {
            Some(value) => value,
            None => return $default,
        }
    }};
}

/// In an [`ffi_boundary!`] body (functions without a status): borrows the value behind
/// handle `$ptr` mutably, or returns (nothing) when it is NULL.
macro_rules! mut_or_return {
    ($ptr:expr) => {{
        let ptr = $ptr;
        // SAFETY: the header requires a live handle of this type, used by one thread at a
        // time (or NULL, handled here).
        match unsafe { $crate::ffi::handle::as_mut(ptr) } {
            Some(value) => value,
            None => return,
        }
    }};
}
