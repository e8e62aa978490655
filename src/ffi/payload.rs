//! `rr_payload`: a task's answer (from `rr_exec`) or a task (from `rr_worker_receive`).

use super::cstring::{bytes_out, no_bytes_out};
use super::handle::{self, Castable};
use crate::Payload;

/// A context and a body: a worker's answer returned by `rr_exec`, or, on the worker
/// side, a task returned by `rr_worker_receive`. Both parts are raw bytes (often JSON
/// context and any body); either may be empty.
///
/// Lifetime: owned by the caller that received it, released with `rr_payload_free`. It
/// does not depend on the server or worker that produced it: it may outlive them.
///
/// Thread-safety: immutable; may be read from any thread, and freed once no thread
/// reads it.
///
/// Methods: `rr_payload_context`, `rr_payload_body`, `rr_payload_free`.
pub struct rr_payload {
    _private: [u8; 0],
}

impl Castable for rr_payload {
    type Rust = Payload;
}

/// Gives a payload to C; the caller owns it and releases it with `rr_payload_free`.
pub(crate) fn into_raw(payload: Payload) -> *mut rr_payload {
    handle::into_raw(payload)
}

/// The context bytes of `p`: writes their number to `*len_out` and returns a pointer to
/// them, owned by `p` and valid until `rr_payload_free(p)`. The pointer is not NULL even
/// when the context is empty. NULL `p` gives NULL with `*len_out` set to 0; NULL
/// `len_out` gives NULL.
#[no_mangle]
pub unsafe extern "C" fn rr_payload_context(p: *const rr_payload, len_out: *mut usize) -> *const u8 {
    ffi_boundary!({
        // SAFETY (here and below): the header requires `len_out` to be NULL or writable.
        let payload = ref_or_return!(p, unsafe { no_bytes_out(len_out) });
        unsafe { bytes_out(payload.context(), len_out) }
    })
}

/// The body bytes of `p`: writes their number to `*len_out` and returns a pointer to
/// them, owned by `p` and valid until `rr_payload_free(p)`. The pointer is not NULL even
/// when the body is empty. NULL `p` gives NULL with `*len_out` set to 0; NULL `len_out`
/// gives NULL.
#[no_mangle]
pub unsafe extern "C" fn rr_payload_body(p: *const rr_payload, len_out: *mut usize) -> *const u8 {
    ffi_boundary!({
        // SAFETY (here and below): the header requires `len_out` to be NULL or writable.
        let payload = ref_or_return!(p, unsafe { no_bytes_out(len_out) });
        unsafe { bytes_out(payload.body(), len_out) }
    })
}

/// The codec of answer `p` (protocol V2): the codec bits of its frame's flags, e.g.
/// `RR_CODEC_JSON`, or 0 when the worker set none (RoadRunner's PHP worker 3.4 does
/// not). With protocol V1, and for tasks on the worker side, `RR_CODEC_RAW`. NULL `p`
/// gives 0.
#[no_mangle]
pub unsafe extern "C" fn rr_payload_codec(p: *const rr_payload) -> u8 {
    ffi_boundary!({
        let payload = ref_or_return!(p, 0);
        payload.codec()
    })
}

/// Releases `p` and its bytes; pointers from `rr_payload_context`/`rr_payload_body`
/// become invalid. Calling with NULL is fine. Must not be called twice. Never release a
/// payload with `free()`: it belongs to the library's allocator.
#[no_mangle]
pub unsafe extern "C" fn rr_payload_free(p: *mut rr_payload) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or a payload not freed before.
        unsafe { handle::free(p) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_body_are_read_back() {
        let p = into_raw(Payload::new(b"ctx", b"the body"));
        let mut len = 0;
        let context = unsafe { rr_payload_context(p, &mut len) };
        assert_eq!(unsafe { std::slice::from_raw_parts(context, len) }, b"ctx");
        let body = unsafe { rr_payload_body(p, &mut len) };
        assert_eq!(unsafe { std::slice::from_raw_parts(body, len) }, b"the body");
        unsafe { rr_payload_free(p) };
    }

    #[test]
    fn empty_parts_give_a_non_null_pointer() {
        let p = into_raw(Payload::new(b"", b""));
        let mut len = 7;
        assert!(!unsafe { rr_payload_context(p, &mut len) }.is_null());
        assert_eq!(len, 0);
        len = 7;
        assert!(!unsafe { rr_payload_body(p, &mut len) }.is_null());
        assert_eq!(len, 0);
        unsafe { rr_payload_free(p) };
    }

    #[test]
    fn null_arguments_give_null() {
        let mut len = 7;
        assert!(unsafe { rr_payload_body(std::ptr::null(), &mut len) }.is_null());
        assert_eq!(len, 0);
        let p = into_raw(Payload::new(b"c", b"b"));
        assert!(unsafe { rr_payload_context(p, std::ptr::null_mut()) }.is_null());
        unsafe { rr_payload_free(p) };
        unsafe { rr_payload_free(std::ptr::null_mut()) };
    }
}
