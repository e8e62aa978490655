//! Borrowing what C passes in: byte buffers (`const uint8_t *ptr, size_t len`) and
//! NUL-terminated UTF-8 strings, each checked before the core sees it.

use crate::{Error, ErrorKind};
use std::ffi::{c_char, CStr};

/// Borrows the buffer `ptr[0..len]` for the call. `ptr` may be NULL when `len` is 0
/// (Go's `&s[0]` panics on an empty slice, and ctypes passes None), which gives `&[]`.
///
/// # Safety
/// When `len > 0`, `ptr` points to `len` readable bytes that stay unchanged during the call.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::new(
            ErrorKind::NullArgument,
            format!("the argument `{name}` is NULL but its length is {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(Error::new(ErrorKind::InvalidArgument, format!("the length of `{name}` ({len}) is too large")));
    }
    // SAFETY: non-NULL, `len` is in range for a slice, and the caller guarantees the bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows the two buffers of a task or an answer, `context` and `body` (as [`bytes`],
/// each named in its error).
///
/// # Safety
/// As [`bytes`], for each buffer.
pub(crate) unsafe fn context_and_body<'a>(
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
) -> Result<(&'a [u8], &'a [u8]), Error> {
    // SAFETY: as guaranteed by the caller.
    unsafe { Ok((bytes(context, context_len, "context")?, bytes(body, body_len, "body")?)) }
}

/// Borrows the NUL-terminated UTF-8 string at `ptr`; NULL gives `Ok(None)`.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays unchanged during the call.
pub(crate) unsafe fn optional_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    let text = unsafe { CStr::from_ptr(ptr) };
    match text.to_str() {
        Ok(text) => Ok(Some(text)),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the argument `{name}` is not valid UTF-8 (bad byte at offset {})", e.valid_up_to()),
        )),
    }
}

/// Borrows the NUL-terminated UTF-8 string at `ptr`; NULL is `RR_STATUS_NULL_ARGUMENT`.
///
/// # Safety
/// As [`optional_str`].
pub(crate) unsafe fn required_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Error> {
    // SAFETY: as guaranteed by the caller.
    unsafe { optional_str(ptr, name) }?.ok_or_else(|| super::handle::null_argument(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_may_be_null() {
        assert_eq!(unsafe { bytes(std::ptr::null(), 0, "body") }.unwrap(), b"");
    }

    #[test]
    fn a_null_buffer_with_a_length_is_a_null_argument() {
        let error = unsafe { bytes(std::ptr::null(), 3, "body") }.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NullArgument);
        assert!(error.message().contains("`body`"));
    }

    #[test]
    fn strings_must_be_utf8() {
        let bad = c"caf\xe9";
        let error = unsafe { required_str(bad.as_ptr(), "command") }.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.message().contains("offset 3"), "{}", error.message());
        assert_eq!(unsafe { required_str(c"ok".as_ptr(), "command") }.unwrap(), "ok");
        assert_eq!(unsafe { optional_str(std::ptr::null(), "relay") }.unwrap(), None);
        let error = unsafe { required_str(std::ptr::null(), "command") }.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NullArgument);
    }
}
