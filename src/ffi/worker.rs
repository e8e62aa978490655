//! `rr_worker`: the worker side, for worker programs written in C, C++, Go or Python.

use super::error::rr_error;
use super::handle::{self, Castable};
use super::input;
use super::payload::{self, rr_payload};
use super::status::rr_status;
use crate::{Error, ErrorKind, WorkerSide};
use std::ffi::c_char;

/// The worker's end of a relay: a worker program makes one, then loops on
/// `rr_worker_receive` and answers each task with `rr_worker_respond` or
/// `rr_worker_error`, until `rr_worker_receive` gives no task (the server said stop).
/// The handshake and the stop command are handled inside; the program only sees tasks.
///
/// Thread-safety: not synchronized. Use it from one thread at a time (tasks come one
/// after the other anyway: answer each before receiving the next).
///
/// Lifetime: made by `rr_worker_new`, released by `rr_worker_free`. Payloads it returned
/// stay valid after it is freed.
///
/// Methods: `rr_worker_new`, `rr_worker_new_with_protocol`, `rr_worker_receive`,
/// `rr_worker_respond`, `rr_worker_send_chunk`, `rr_worker_error`, `rr_worker_stop`,
/// `rr_worker_free`.
pub struct rr_worker {
    _private: [u8; 0],
}

impl Castable for rr_worker {
    type Rust = WorkerSide;
}

/// Connects to the server through `relay`: `"pipes"` (stdin/stdout), `"tcp://host:port"`
/// or `"unix://path"`; NULL means the value of the environment variable `RR_RELAY`
/// (which the server sets for the workers it spawns), and pipes when it is unset. Blocks
/// until connected (socket relays); the handshake is answered inside
/// `rr_worker_receive`.
///
/// With pipes, the relay takes the process's stdin and stdout; then stdin (fd 0) reads
/// /dev/null and stdout (fd 1) is pointed at stderr: a stray `printf` goes to the
/// server's stderr capture instead of corrupting the frames, and a read of stdin (by the
/// worker, or a child it starts, which inherits fd 0) finds end-of-file instead of taking
/// the bytes of tasks.
///
/// On success `*out` receives a new worker that the caller owns and releases with
/// `rr_worker_free`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `out` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when `relay` (or `RR_RELAY`) is not valid UTF-8 or not a
/// relay; `RR_STATUS_WORKER_ERROR` when the connection fails.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_new(
    relay: *const c_char,
    out: *mut *mut rr_worker,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires NULL or a NUL-terminated string.
        let relay = unsafe { input::optional_str(relay, "relay") }?;
        let worker = WorkerSide::connect(relay)?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw(worker)) };
        Ok(())
    })
}

/// Like `rr_worker_new`, speaking `protocol`: `RR_PROTOCOL_V1` (what `rr_worker_new`
/// speaks) or `RR_PROTOCOL_V2` (the protocol of RoadRunner 2.x and later, which also
/// lets the worker stream an answer with `rr_worker_send_chunk`). The pool must be
/// configured with the same protocol (`rr_config_set_protocol`).
///
/// Returns what `rr_worker_new` returns, and `RR_STATUS_INVALID_ARGUMENT` for a
/// protocol other than 1 or 2.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_new_with_protocol(
    relay: *const c_char,
    protocol: u32,
    out: *mut *mut rr_worker,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        let protocol = crate::Protocol::from_number(protocol).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("protocol {protocol} is not RR_PROTOCOL_V1 (1) or RR_PROTOCOL_V2 (2)"),
            )
        })?;
        // SAFETY: the header requires NULL or a NUL-terminated string.
        let relay = unsafe { input::optional_str(relay, "relay") }?;
        let worker = WorkerSide::connect_with_protocol(relay, protocol)?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw(worker)) };
        Ok(())
    })
}

/// Waits for the next task. Blocks until the server sends one (or stop).
///
/// On success `*out` receives the task (context and body), which the caller owns and
/// releases with `rr_payload_free`; or NULL when the server asked this worker to stop
/// (or closed the relay): the program should then free the worker and exit at once.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `w` or `out` is NULL;
/// `RR_STATUS_STATE` when the previous task was not answered yet;
/// `RR_STATUS_WORKER_ERROR` when the relay is broken (exit).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_receive(
    w: *mut rr_worker,
    out: *mut *mut rr_payload,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let worker = try_mut!(w, "w");
        check_out!(out, "out");
        let task = worker.receive()?.map_or(std::ptr::null_mut(), payload::into_raw);
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, task) };
        Ok(())
    })
}

/// Answers the current task with `context` and `body` (with protocol V2, after chunks
/// sent with `rr_worker_send_chunk`: the last part of the answer; copied before returning;
/// `context` may be NULL when `context_len` is 0, `body` when `body_len` is 0). Blocks
/// until written.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `w` is NULL, or a buffer is
/// NULL with a non-zero length; `RR_STATUS_STATE` when there is no task to answer;
/// `RR_STATUS_WORKER_ERROR` when the relay is broken.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_respond(
    w: *mut rr_worker,
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let worker = try_mut!(w, "w");
        // SAFETY: the header requires `len` readable bytes at each non-NULL buffer.
        let (context, body) = unsafe { input::context_and_body(context, context_len, body, body_len) }?;
        worker.respond(context, body)
    })
}

/// Sends one chunk (`context` and `body`, copied before returning) of a streamed answer
/// to the current task: protocol V2 only. Send any number of chunks, then the last
/// part with `rr_worker_respond` (or end with `rr_worker_error`). Every 5 chunks the
/// worker asks the host for a PONG, and waits for it before the next chunk: a worker
/// never runs far ahead of a host that reads slowly. Blocks until written (and, every
/// 5th chunk, until the PONG came).
///
/// When the host asked to stop the stream (the caller cancelled it), the chunk is not
/// sent: the library ends the stream itself (an empty last frame) and returns
/// `RR_STATUS_CANCELLED`; the task then needs no other answer: go back to
/// `rr_worker_receive`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_CANCELLED` as above; `RR_STATUS_NULL_ARGUMENT`
/// when `w` is NULL, or a buffer is NULL with a non-zero length;
/// `RR_STATUS_INVALID_ARGUMENT` when the worker speaks protocol V1; `RR_STATUS_STATE`
/// when there is no task to answer; `RR_STATUS_WORKER_ERROR` when the relay is broken.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_send_chunk(
    w: *mut rr_worker,
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let worker = try_mut!(w, "w");
        // SAFETY: the header requires `len` readable bytes at each non-NULL buffer.
        let (context, body) = unsafe { input::context_and_body(context, context_len, body, body_len) }?;
        worker.send_chunk(context, body)
    })
}

/// Answers the current task with a job error whose message is `message` (any bytes,
/// usually UTF-8 text; `message` may be NULL when `len` is 0). The caller of `rr_exec`
/// gets `RR_STATUS_JOB_ERROR` with these bytes in `rr_error_data`; this worker stays in
/// the pool. Blocks until written.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `w` is NULL, or `message` is
/// NULL with a non-zero `len`; `RR_STATUS_STATE` when there is no task to answer;
/// `RR_STATUS_WORKER_ERROR` when the relay is broken.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_error(
    w: *mut rr_worker,
    message: *const u8,
    len: usize,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let worker = try_mut!(w, "w");
        // SAFETY: the header requires `len` readable bytes at a non-NULL `message`.
        let message = unsafe { input::bytes(message, len, "message") }?;
        worker.error(message)
    })
}

/// Answers the current task with a request to be replaced: the pool retires this worker
/// and runs the same task on another one (its caller does not notice). Keep calling
/// `rr_worker_receive` afterwards: the server sends stop. Blocks until written.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `w` is NULL;
/// `RR_STATUS_STATE` when there is no task to answer; `RR_STATUS_WORKER_ERROR` when the
/// relay is broken.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_worker_stop(w: *mut rr_worker, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        let worker = try_mut!(w, "w");
        worker.request_stop()
    })
}

/// Closes the relay and releases `w`. Calling with NULL is fine. Must not be called twice.
#[no_mangle]
pub unsafe extern "C" fn rr_worker_free(w: *mut rr_worker) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or a worker not freed before.
        unsafe { handle::free(w) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::test_support::{assert_null_argument, call, sentinel};

    #[test]
    fn null_arguments_are_refused() {
        let null = std::ptr::null_mut();
        let mut task = sentinel();
        assert_null_argument(|err| unsafe { rr_worker_new(c"pipes".as_ptr(), std::ptr::null_mut(), err) }, "out");
        assert_null_argument(|err| unsafe { rr_worker_receive(null, &mut task, err) }, "w");
        assert_eq!(task, sentinel());
        assert_null_argument(
            |err| unsafe { rr_worker_respond(null, std::ptr::null(), 0, std::ptr::null(), 0, err) },
            "w",
        );
        assert_null_argument(|err| unsafe { rr_worker_error(null, std::ptr::null(), 0, err) }, "w");
        assert_null_argument(|err| unsafe { rr_worker_stop(null, err) }, "w");
        unsafe { rr_worker_free(null) };
    }

    #[test]
    fn a_relay_that_is_not_utf8_is_an_invalid_argument() {
        let mut worker = sentinel();
        let (status, _) = call(|err| unsafe { rr_worker_new(c"unix:///tmp/\xff".as_ptr(), &mut worker, err) });
        assert_eq!(status, rr_status::InvalidArgument);
        assert_eq!(worker, sentinel());
    }
}
