//! `rr_stream`: the chunks of one streamed answer (protocol V2), from `rr_exec_stream`.

use super::error::rr_error;
use super::handle::{self, Castable};
use super::input;
use super::payload::{self, rr_payload};
use super::server::{rr_server, with_server};
use super::status::rr_status;
use crate::Stream;

/// The answer to one task, chunk by chunk as the worker sends them (protocol V2
/// streams; a worker that does not stream gives one chunk). Made by `rr_exec_stream`,
/// read with `rr_stream_next`, released with `rr_stream_free`.
///
/// While it is open its worker belongs to it: the worker runs no other task until the
/// last chunk was read, or the stream was cancelled (`rr_stream_cancel`, or
/// `rr_stream_free` of an unfinished stream), or the task failed. Keep streams short:
/// an open stream holds a worker; exec_ttl, when set, covers the whole stream.
///
/// Thread-safety: not synchronized: use it from one thread at a time (it may move
/// between threads).
///
/// Lifetime: finish or free every stream before `rr_server_free` (and
/// `rr_server_stop`) of its server: a stop waits destroy_timeout for open streams, then
/// kills their workers (their next `rr_stream_next` then fails). Chunks returned stay
/// valid after the stream is freed.
///
/// Methods: `rr_stream_next`, `rr_stream_cancel`, `rr_stream_free`.
pub struct rr_stream {
    _private: [u8; 0],
}

impl Castable for rr_stream {
    type Rust = Stream;
}

/// Runs one task, like `rr_exec`, and gives its answer as a stream of chunks instead of
/// one payload. Blocks until the answer's first frame (allocate_timeout for a free
/// worker, then the worker); the chunks come from `rr_stream_next`.
///
/// On success `*out` receives a new stream that the caller owns and releases with
/// `rr_stream_free`. `context` and `body` are borrowed for the call only (NULL when
/// their length is 0 is fine).
///
/// Returns `RR_STATUS_OK`, or any status of `rr_exec` for a task that failed before its
/// first chunk (`RR_STATUS_JOB_ERROR` for a worker that answered with an error at once,
/// `RR_STATUS_WORKER_ERROR`, `RR_STATUS_TIMEOUT`, `RR_STATUS_EXEC_TTL`,
/// `RR_STATUS_QUEUE_FULL`, `RR_STATUS_STATE`, `RR_STATUS_NULL_ARGUMENT`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_exec_stream(
    s: *mut rr_server,
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut rr_stream,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires `len` readable bytes at each non-NULL buffer.
        let (context, body) = unsafe { input::context_and_body(context, context_len, body, body_len) }?;
        // SAFETY: the header requires NULL or a live server.
        let stream = unsafe { with_server(s, |server| server.exec_stream(context, body)) }?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw::<rr_stream>(stream)) };
        Ok(())
    })
}

/// The next chunk of `st`, waiting for it. On `RR_STATUS_OK`, `*chunk_out` receives the
/// chunk (context and body), which the caller owns and releases with `rr_payload_free`,
/// or NULL after the last chunk (and at every call after that).
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `st` or `chunk_out` is NULL;
/// `RR_STATUS_CANCELLED` after `rr_stream_cancel`; the task's failure otherwise
/// (`RR_STATUS_JOB_ERROR` when the worker ended the stream with an error: it stays in
/// the pool; `RR_STATUS_WORKER_ERROR` or `RR_STATUS_EXEC_TTL`: it was replaced), after
/// which the stream gives no more chunks.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_stream_next(
    st: *mut rr_stream,
    chunk_out: *mut *mut rr_payload,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let stream = try_mut!(st, "st");
        check_out!(chunk_out, "chunk_out");
        let chunk = stream.next_chunk()?.map_or(std::ptr::null_mut(), payload::into_raw);
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(chunk_out, chunk) };
        Ok(())
    })
}

/// Stops the stream `st`: the worker is asked to stop sending (a STOP frame), and what
/// it still sends is read and dropped until its last frame; a worker that does not end
/// its stream within stream_timeout is killed and replaced. Blocks until then (at most
/// stream_timeout). The next `rr_stream_next` gives `RR_STATUS_CANCELLED`. A stream
/// whose last chunk was read is left as it is.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `st` is NULL.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_stream_cancel(st: *mut rr_stream, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        let stream = try_mut!(st, "st");
        stream.cancel();
        Ok(())
    })
}

/// Releases `st`; an unfinished stream is cancelled first (as by `rr_stream_cancel`:
/// it blocks at most stream_timeout). Chunks it gave stay valid. Calling with NULL is
/// fine. Must not be called twice.
#[no_mangle]
pub unsafe extern "C" fn rr_stream_free(st: *mut rr_stream) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or a stream not freed before.
        unsafe { handle::free(st) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::server::{rr_server_free, tests::server};
    use crate::ffi::test_support::{assert_null_argument, call, sentinel};

    #[test]
    fn null_arguments_are_refused() {
        let s = server();
        let mut stream = sentinel();
        let mut chunk = sentinel();
        assert_null_argument(
            |err| unsafe {
                rr_exec_stream(std::ptr::null_mut(), std::ptr::null(), 0, std::ptr::null(), 0, &mut stream, err)
            },
            "s",
        );
        assert_null_argument(
            |err| unsafe { rr_exec_stream(s, std::ptr::null(), 0, std::ptr::null(), 0, std::ptr::null_mut(), err) },
            "out",
        );
        assert_null_argument(
            |err| unsafe { rr_exec_stream(s, std::ptr::null(), 3, std::ptr::null(), 0, &mut stream, err) },
            "context",
        );
        assert_eq!(stream, sentinel());
        assert_null_argument(|err| unsafe { rr_stream_next(std::ptr::null_mut(), &mut chunk, err) }, "st");
        assert_eq!(chunk, sentinel());
        assert_null_argument(|err| unsafe { rr_stream_cancel(std::ptr::null_mut(), err) }, "st");
        unsafe { rr_stream_free(std::ptr::null_mut()) };
        unsafe { rr_server_free(s) };
    }

    #[test]
    fn a_stream_of_a_server_that_is_not_started_is_a_state_error() {
        let s = server();
        let mut stream = sentinel();
        let (status, _) =
            call(|err| unsafe { rr_exec_stream(s, std::ptr::null(), 0, std::ptr::null(), 0, &mut stream, err) });
        assert_eq!(status, rr_status::State);
        assert_eq!(stream, sentinel());
        unsafe { rr_server_free(s) };
    }
}
