//! NUL-terminated strings handed out to C, and byte buffers handed out as pointer plus
//! length.

use std::ffi::CString;

/// A C string with the text of `text`. C cannot see past a NUL, so an interior NUL
/// (e.g. in a worker's stderr line) becomes U+FFFD rather than cutting the text short.
pub(crate) fn lossy_c_string(text: &str) -> CString {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    push_without_nul(&mut bytes, text);
    CString::new(bytes).expect("push_without_nul leaves no NUL")
}

/// Appends `text` to `buffer`, with every NUL replaced by U+FFFD.
pub(crate) fn push_without_nul(buffer: &mut Vec<u8>, text: &str) {
    let mut parts = text.split('\0');
    if let Some(first) = parts.next() {
        buffer.extend_from_slice(first.as_bytes());
    }
    for part in parts {
        buffer.extend_from_slice("\u{FFFD}".as_bytes());
        buffer.extend_from_slice(part.as_bytes());
    }
}

/// Hands out `bytes` as a pointer, writing their length to `*len_out`. The pointer is
/// never NULL (an empty buffer gives a pointer to a static byte, so that C code passing
/// it to `memcpy` with a length of 0 gets a valid pointer); NULL `len_out` gives NULL,
/// since the bytes cannot be used without their length.
///
/// # Safety
/// `len_out` is NULL or writable.
pub(crate) unsafe fn bytes_out(bytes: &[u8], len_out: *mut usize) -> *const u8 {
    static EMPTY: u8 = 0;
    if len_out.is_null() {
        return std::ptr::null();
    }
    // SAFETY: non-NULL and writable, as the caller guarantees.
    unsafe { len_out.write(bytes.len()) };
    if bytes.is_empty() {
        &EMPTY
    } else {
        bytes.as_ptr()
    }
}

/// The answer of a byte accessor called with a NULL object: NULL, with `*len_out` set
/// to 0 so that a caller that forgot to check the pointer reads nothing.
///
/// # Safety
/// `len_out` is NULL or writable.
pub(crate) unsafe fn no_bytes_out(len_out: *mut usize) -> *const u8 {
    if !len_out.is_null() {
        // SAFETY: non-NULL and writable, as the caller guarantees.
        unsafe { len_out.write(0) };
    }
    std::ptr::null()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_nuls_are_replaced() {
        assert_eq!(lossy_c_string("a\0b").to_str().unwrap(), "a\u{FFFD}b");
        assert_eq!(lossy_c_string("plain").to_str().unwrap(), "plain");
        assert_eq!(lossy_c_string("").to_str().unwrap(), "");
    }

    #[test]
    fn empty_bytes_give_a_valid_pointer() {
        let mut len = 99;
        let pointer = unsafe { bytes_out(b"", &mut len) };
        assert!(!pointer.is_null());
        assert_eq!(len, 0);
        assert!(unsafe { bytes_out(b"abc", std::ptr::null_mut()) }.is_null());
    }
}
