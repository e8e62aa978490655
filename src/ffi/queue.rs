//! `rr_queue`: tasks submitted without blocking (`rr_exec_submit`) and their outcomes
//! (`rr_queue_next`), for hosts built on an event loop.

use super::error::{rr_error, ErrorDetails};
use super::handle::{self, Castable};
use super::input;
use super::payload::{self, rr_payload};
use super::server::{rr_server, with_server};
use super::status::rr_status;
use crate::{CompletionQueue, Error, ErrorKind};
use std::ffi::c_int;
use std::time::Duration;

/// Where the outcomes of submitted tasks arrive, one `rr_completion` per task, to be
/// taken with `rr_queue_next` when `rr_queue_fd` says some wait.
///
/// A task submitted with `rr_exec_submit` runs on no thread of the caller's and on no
/// thread of its own: it is written to a free worker at once by the submitting thread,
/// or waits in line with `rr_exec` callers (first come, first served), and one library
/// thread per server (`rr-reactor`, started with the first submitted task; a reset or
/// reconfigure starts another with the new pool) reads the answers. It follows the
/// rules of `rr_exec`:
/// allocate_timeout (counted from submission), max_queue (refused at submission),
/// exec_ttl, job and worker errors, stop requests rerouted, max_jobs; a task submitted
/// before `rr_server_reconfigure` or `rr_server_reset` completes on the old pool or the
/// new one, once. Stopping or freeing a server: its waiting tasks complete with
/// `RR_STATUS_STATE`, its running ones finish as `rr_server_stop` lets them.
///
/// Every task accepted by `rr_exec_submit` completes exactly once, until the queue is
/// freed. Tags need not be unique.
///
/// Thread-safety: every function but `rr_queue_free` may be called from any thread at
/// once; one queue may receive tasks of several servers, and several threads may take
/// from it. `rr_queue_free` must not race with other calls on the queue.
///
/// Lifetime: made by `rr_queue_new`, released by `rr_queue_free`. It may outlive the
/// servers whose tasks it received, and they it.
///
/// Methods: `rr_queue_new`, `rr_queue_fd`, `rr_exec_submit`, `rr_queue_next`,
/// `rr_queue_cancel`, `rr_queue_free`.
pub struct rr_queue {
    _private: [u8; 0],
}

impl Castable for rr_queue {
    type Rust = CompletionQueue;
}

/// The outcome of one submitted task, filled in by `rr_queue_next`.
///
/// On `RR_STATUS_OK`, `payload` holds the answer (as `rr_exec` would return it: a
/// streamed answer joined) and `error` is NULL; otherwise `payload` is NULL and `error`
/// holds the details, its status equal to `status` (`RR_STATUS_CANCELLED` for a
/// cancelled task). The caller owns both and releases them with `rr_payload_free` and
/// `rr_error_free`.
#[repr(C)]
pub struct rr_completion {
    /// The tag the task was submitted with.
    pub tag: u64,
    /// `RR_STATUS_OK`, or the task's failure.
    pub status: rr_status,
    /// The answer, on `RR_STATUS_OK`; NULL otherwise.
    pub payload: *mut rr_payload,
    /// Why there is no answer; NULL on `RR_STATUS_OK`.
    pub error: *mut rr_error,
}

/// Makes an empty queue. On success `*out` receives it; the caller owns it and releases
/// it with `rr_queue_free`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `out` is NULL;
/// `RR_STATUS_INTERNAL` when the system gives no eventfd (out of descriptors).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_queue_new(out: *mut *mut rr_queue, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        let queue = CompletionQueue::new()?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw::<rr_queue>(queue)) };
        Ok(())
    })
}

/// A descriptor that is readable exactly while at least one completion waits in `q`:
/// give it to poll, epoll, select, libuv or asyncio's `add_reader`, then call
/// `rr_queue_next` (with timeout 0) until it returns `RR_STATUS_TIMEOUT`. Level-
/// triggered: it stays readable until every waiting completion was taken.
///
/// Owned by `q`: only poll it; never read, write or close it. Valid until
/// `rr_queue_free(q)`. NULL `q` gives -1. Never blocks.
#[no_mangle]
pub unsafe extern "C" fn rr_queue_fd(q: *const rr_queue) -> c_int {
    super::panic::catch_or(-1, || {
        // SAFETY: the header requires NULL or a live queue.
        match unsafe { handle::as_ref::<rr_queue>(q) } {
            Some(queue) => queue.fd(),
            None => -1,
        }
    })
}

/// Submits a task to `s` and returns at once: its outcome arrives on `q` as an
/// `rr_completion` carrying `tag`. `context` and `body` are copied (NULL when their
/// length is 0 is fine); the caller may reuse them as soon as this returns. Blocks
/// nothing: a task for which a worker is free is written to it now (as much as the
/// worker's buffer takes), otherwise it waits in line.
///
/// Returns `RR_STATUS_OK` once the task is accepted: then exactly one completion comes
/// for it (unless `q` is freed first). Errors known at once are returned, and then
/// nothing is posted for the task: `RR_STATUS_NULL_ARGUMENT` (`s`, `q`, or a NULL buffer
/// with a length), `RR_STATUS_STATE` (the server is not started, or is being freed),
/// `RR_STATUS_QUEUE_FULL` (max_queue tasks and callers already wait), or the error of
/// a pool that could not be kept alive (`RR_STATUS_WORKER_ERROR`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_exec_submit(
    s: *mut rr_server,
    q: *mut rr_queue,
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
    tag: u64,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let queue = try_ref!(q, "q");
        // SAFETY: the header requires `len` readable bytes at each non-NULL buffer.
        let (context, body) = unsafe { input::context_and_body(context, context_len, body, body_len) }?;
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.submit(queue, context, body, tag)) }
    })
}

/// Takes the oldest waiting completion of `q` into `*out`, waiting for one up to
/// `timeout_ms`: 0 does not wait, -1 waits as long as it takes.
///
/// Returns `RR_STATUS_OK` whenever it fills `*out` (the task's own outcome is in
/// `out->status`); `RR_STATUS_TIMEOUT` when no completion came in time (`*out` is left
/// untouched); `RR_STATUS_NULL_ARGUMENT` when `q` or `out` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` for a `timeout_ms` below -1. A `RR_STATUS_TIMEOUT` with
/// `err_out` NULL allocates nothing: an event loop that takes completions until the
/// queue is empty may pass NULL, and a task then costs no allocation but its inputs'
/// copy and its answer (`make bench` counts them).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_queue_next(
    q: *mut rr_queue,
    timeout_ms: i64,
    out: *mut rr_completion,
    err_out: *mut *mut rr_error,
) -> rr_status {
    // Set when nothing came and nobody asked why: no error is made at all.
    let quietly_timed_out = &std::cell::Cell::new(false);
    let status = ffi_status!(err_out, {
        let queue = try_ref!(q, "q");
        check_out!(out, "out");
        let timeout = match timeout_ms {
            -1 => None,
            ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
            ms => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("timeout_ms is {ms}: give 0 (do not wait), -1 (wait as long as it takes) or a number of milliseconds"),
                ))
            }
        };
        let Some(completion) = queue.next(timeout) else {
            if err_out.is_null() {
                quietly_timed_out.set(true);
                return Ok(());
            }
            return Err(Error::new(ErrorKind::Timeout, format!("no task completed within {timeout_ms} ms")));
        };
        let filled = match completion.result {
            Ok(answer) => rr_completion {
                tag: completion.tag,
                status: rr_status::Ok,
                payload: payload::into_raw(answer),
                error: std::ptr::null_mut(),
            },
            Err(error) => rr_completion {
                tag: completion.tag,
                status: error.kind().into(),
                payload: std::ptr::null_mut(),
                error: handle::into_raw::<rr_error>(ErrorDetails::from(error)),
            },
        };
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, filled) };
        Ok(())
    });
    if quietly_timed_out.get() {
        rr_status::Timeout
    } else {
        status
    }
}

/// Cancels every outstanding task of `q` submitted with `tag`: each completes at once
/// with `RR_STATUS_CANCELLED`. One still waiting for a worker never runs; one running
/// has its worker killed (it may be mid-answer) and replaced. Returns without waiting
/// for the kill. No outstanding task with that tag: nothing happens.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `q` is NULL.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_queue_cancel(q: *mut rr_queue, tag: u64, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        try_ref!(q, "q").cancel(tag);
        Ok(())
    })
}

/// Releases `q`: its outstanding tasks are cancelled (as by `rr_queue_cancel`; running
/// ones have their workers killed, not waited for) and the completions not taken are
/// freed. No completion arrives after it returns, and it returns at once. Must not race
/// with other calls on `q`, nor be called twice. NULL is fine.
#[no_mangle]
pub unsafe extern "C" fn rr_queue_free(q: *mut rr_queue) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or a queue not freed before.
        unsafe { handle::free(q) }
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
        let mut q = sentinel();
        assert_null_argument(|err| unsafe { rr_queue_new(std::ptr::null_mut(), err) }, "out");
        let (status, _) = call(|err| unsafe { rr_queue_new(&mut q, err) });
        assert_eq!(status, rr_status::Ok);
        assert_eq!(unsafe { rr_queue_fd(std::ptr::null()) }, -1);
        assert!(unsafe { rr_queue_fd(q) } > 2);
        let none = std::ptr::null();
        assert_null_argument(|err| unsafe { rr_exec_submit(std::ptr::null_mut(), q, none, 0, none, 0, 1, err) }, "s");
        assert_null_argument(|err| unsafe { rr_exec_submit(s, std::ptr::null_mut(), none, 0, none, 0, 1, err) }, "q");
        assert_null_argument(|err| unsafe { rr_exec_submit(s, q, none, 0, none, 4, 1, err) }, "body");
        let mut completion =
            rr_completion { tag: 7, status: rr_status::Internal, payload: sentinel(), error: sentinel() };
        assert_null_argument(|err| unsafe { rr_queue_next(std::ptr::null_mut(), 0, &mut completion, err) }, "q");
        assert_null_argument(|err| unsafe { rr_queue_next(q, 0, std::ptr::null_mut(), err) }, "out");
        assert_null_argument(|err| unsafe { rr_queue_cancel(std::ptr::null_mut(), 1, err) }, "q");
        let (status, message) = call(|err| unsafe { rr_queue_next(q, -2, &mut completion, err) });
        assert_eq!(status, rr_status::InvalidArgument, "{message:?}");
        // Nothing submitted: a timeout, and the completion untouched.
        let (status, _) = call(|err| unsafe { rr_queue_next(q, 0, &mut completion, err) });
        assert_eq!(status, rr_status::Timeout);
        assert_eq!((completion.tag, completion.payload), (7, sentinel()));
        let (status, _) = call(|err| unsafe { rr_queue_cancel(q, 1, err) });
        assert_eq!(status, rr_status::Ok, "cancelling nothing is fine");
        unsafe { rr_queue_free(std::ptr::null_mut()) };
        unsafe { rr_queue_free(q) };
        unsafe { rr_server_free(s) };
    }

    #[test]
    fn submitting_to_a_server_that_is_not_started_is_a_state_error_and_posts_nothing() {
        let s = server();
        let mut q = sentinel();
        assert_eq!(call(|err| unsafe { rr_queue_new(&mut q, err) }).0, rr_status::Ok);
        let (status, _) = call(|err| unsafe { rr_exec_submit(s, q, std::ptr::null(), 0, b"x".as_ptr(), 1, 3, err) });
        assert_eq!(status, rr_status::State);
        let mut completion = rr_completion { tag: 0, status: rr_status::Ok, payload: sentinel(), error: sentinel() };
        assert_eq!(call(|err| unsafe { rr_queue_next(q, 50, &mut completion, err) }).0, rr_status::Timeout);
        unsafe { rr_queue_free(q) };
        unsafe { rr_server_free(s) };
    }
}
