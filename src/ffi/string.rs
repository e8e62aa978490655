//! Strings the library hands out for the caller to keep (`rr_server_status_json`,
//! `rr_server_metrics`): NUL-terminated UTF-8, allocated here, released with
//! `rr_string_free`.

use super::cstring::lossy_c_string;
use std::ffi::{c_char, CString};

/// Hands `text` out as a string the caller owns (an interior NUL becomes U+FFFD).
pub(crate) fn into_raw(text: &str) -> *mut c_char {
    lossy_c_string(text).into_raw()
}

/// Releases a string returned by the library (`rr_server_status_json`,
/// `rr_server_metrics`). NULL is fine. Must not be called twice, nor on a string that
/// did not come from this library (e.g. one from `rr_error_message`, which the error
/// owns). Does not block; any thread.
#[no_mangle]
pub unsafe extern "C" fn rr_string_free(str: *mut c_char) {
    ffi_boundary!({
        if !str.is_null() {
            // SAFETY: the header requires a string from `into_raw` not yet freed.
            drop(unsafe { CString::from_raw(str) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_handed_out_reads_back_and_frees() {
        let raw = into_raw("{\"a\":1}");
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(raw) }.to_str().unwrap(), "{\"a\":1}");
        unsafe { rr_string_free(raw) };
        unsafe { rr_string_free(std::ptr::null_mut()) };
    }
}
