//! `rr_server`: the handle of a [`Server`], and the calls that run tasks on it.
//!
//! The handle is a `Box` owned by the C caller, not an `Arc`: `rr_server_free` must be
//! the end of the server's life (after it returns no callback runs), so it cannot hand
//! the last reference to whichever `rr_exec` happens to finish last. Instead every call
//! holds a `CallGuard` and `rr_server_free` waits for them (see `call_gate.rs`).

use super::call_gate::CallGate;
use super::config::rr_config;
use super::error::rr_error;
use super::handle::{self, null_argument, Castable};
use super::input;
use super::payload::{self, rr_payload};
use super::status::rr_status;
use super::string;
use crate::{Error, ErrorKind, Result, Server, ServerStatus};
use std::ffi::c_char;

/// A server: a pool of worker processes (and the relay listener they connect to, for
/// socket relays) that runs tasks given by `rr_exec`.
///
/// Thread-safety: every function may be called from any thread, and concurrently with
/// the others (any number of threads may be in `rr_exec` at once), with two exceptions:
/// `rr_server_free` must be called once, and no call on the server may *start* after
/// `rr_server_free` has begun (calls already in progress are waited for); an event
/// callback must not call `rr_server_free`, `rr_server_stop` or `rr_server_listen` on
/// its own server.
///
/// Lifetime: made by `rr_server_new`, released by `rr_server_free`, which stops the
/// workers and joins the library's threads. Payloads, errors and worker lists it
/// returned stay valid after it is freed.
///
/// fork(): a server belongs to the process that made it. In a child made by fork()
/// (which shares the parent's pipes to the workers but has none of the library's
/// threads), every call on it returns `RR_STATUS_STATE` and `rr_server_free` returns at
/// once without stopping anything: the workers stay the parent's. Make a new server in
/// the child if it needs one.
///
/// Methods: `rr_server_new`, `rr_server_start`, `rr_server_stop`, `rr_server_reconfigure`,
/// `rr_server_reset`, `rr_exec`, `rr_server_listen`, `rr_server_workers`,
/// `rr_server_stats`, `rr_server_free`.
pub struct rr_server {
    _private: [u8; 0],
}

/// What an `rr_server` pointer points to: the server and the count of calls in flight.
pub(crate) struct ServerHandle {
    server: Server,
    calls: CallGate,
}

impl Castable for rr_server {
    type Rust = ServerHandle;
}

/// Runs `call` on the server behind `s` as a call in flight, which `rr_server_free`
/// waits for. NULL `s` is `RR_STATUS_NULL_ARGUMENT`.
///
/// # Safety
/// `s` is NULL or a live server on which `rr_server_free` has not returned.
pub(crate) unsafe fn with_server<T>(s: *const rr_server, call: impl FnOnce(&Server) -> Result<T>) -> Result<T> {
    // SAFETY: guaranteed by the caller.
    let handle = unsafe { handle::as_ref(s) }.ok_or_else(|| null_argument("s"))?;
    handle.server.check_process()?;
    let _in_flight =
        handle.calls.enter().ok_or_else(|| Error::state("the server is being freed (rr_server_free was called)"))?;
    call(&handle.server)
}

/// Makes a server from a copy of `cfg` (which may be freed right after). The server is
/// not started: no process runs until `rr_server_start`.
///
/// On success `*out` receives a new server that the caller owns and releases with
/// `rr_server_free`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `cfg` or `out` is NULL;
/// `RR_STATUS_CONFIG` when a setting is invalid (the message names it). Starts nothing
/// and waits for nothing of the library's, with two exceptions that checking the
/// config needs: the host name of a `tcp://` relay is resolved (a name lookup, which
/// can wait on DNS unless the name is an address or in /etc/hosts), and `dir`, if set,
/// is checked to be a directory (a `stat`).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_new(
    cfg: *const rr_config,
    out: *mut *mut rr_server,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_ref!(cfg, "cfg");
        check_out!(out, "out");
        let server = Server::new(config.clone())?;
        let handle = ServerHandle { server, calls: CallGate::default() };
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw(handle)) };
        Ok(())
    })
}

/// Starts the server: opens the relay listener (socket relays) and starts
/// `num_workers` workers. Blocks until every worker has answered the handshake (each may
/// take up to relay_timeout). If any worker fails, nothing is left running and the
/// message holds that worker's stderr.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` is NULL; `RR_STATUS_STATE`
/// when it is already started; `RR_STATUS_SPAWN` when a worker could not be started or
/// did not connect and answer in time; or the status of another failure (e.g. the relay
/// address cannot be listened on), with a message saying what happened.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_start(s: *mut rr_server, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.start()) }
    })
}

/// Stops the server: callers waiting for a worker fail with `RR_STATUS_STATE`; running
/// tasks may finish for up to destroy_timeout, after which the workers still running
/// one are killed (their callers get `RR_STATUS_WORKER_ERROR`); then every worker is
/// sent the stop command (and SIGTERM, then SIGKILL, when it has not exited after
/// destroy_timeout) and the relay listener is closed. Blocks until all of that is done:
/// about 2 x destroy_timeout at worst. The server may be started again. Event callbacks
/// keep their registration.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` is NULL; `RR_STATUS_STATE`
/// when it is not started. Must not be called from an event callback of this server.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_stop(s: *mut rr_server, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.stop()) }
    })
}

/// Replaces the pool with one built from a copy of `cfg` (which may be freed right
/// after): the new workers are started first, then swapped in, and the old pool is
/// retired in the background; tasks already running on it finish normally. The command
/// and pool settings (the name, an elastic pool's floor and ceiling included) may
/// change. As in RoadRunner, the relay and relay_timeout of `cfg` are ignored: they
/// belong to the listener, which stays; `RR_EVENT_RECONFIGURE_IGNORED` says so when they
/// differ, and `rr_config_differs` tells beforehand when a stop and a new server are
/// needed instead. The protocol cannot change. Events come from the new pool from then
/// on. Blocks until the new pool is running.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` or `cfg` is NULL;
/// `RR_STATUS_CONFIG` when a setting is invalid or the protocol changed; `RR_STATUS_STATE`
/// when the server is not running (never started, or stopped: only a running pool is
/// replaced, and nothing is started); `RR_STATUS_SPAWN` when the new workers could not
/// be started (the old pool then keeps running).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_reconfigure(
    s: *mut rr_server,
    cfg: *const rr_config,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_ref!(cfg, "cfg");
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.reconfigure(config.clone())) }
    })
}

/// Replaces every worker: `rr_server_reconfigure` with the server's current
/// configuration. Blocks until the new pool is running.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` is NULL; `RR_STATUS_STATE`
/// when the server is not running (never started, or stopped; nothing is started);
/// `RR_STATUS_SPAWN` when the new workers could not be started (the old pool then keeps
/// running).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_reset(s: *mut rr_server, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.reset()) }
    })
}

/// Releases `s`, the end of the server's life. If it is running it is stopped as by
/// `rr_server_stop` (callers waiting for a worker fail with `RR_STATUS_STATE`; running
/// tasks finish, or are killed after destroy_timeout). Then it waits until every call on `s` that is in progress on another
/// thread (e.g. `rr_exec`) has returned, stops the event thread, and runs the listener's
/// `userdata_free`. Blocks until all of that is done; after it returns, no callback runs
/// and no thread of the server is left.
///
/// In a child made by fork() from the process that made `s`, it releases nothing and
/// returns at once (the workers, threads and calls in flight are the parent's; the
/// child's copy of the memory stays as it is).
///
/// Calling with NULL is fine. Must not be called twice, nor from an event callback of
/// this server. A call on `s` that *starts* after `rr_server_free` has begun is undefined
/// behaviour (make sure, with your own synchronization, that other threads have entered
/// their calls before you free the server, and start no new ones).
#[no_mangle]
pub unsafe extern "C" fn rr_server_free(s: *mut rr_server) {
    ffi_boundary!({
        // A shared borrow, not `&mut`: other threads may still be inside calls on `s`.
        let handle = ref_or_return!(s as *const rr_server);
        if handle.server.check_process_surely().is_err() {
            // A copy made by fork(): the calls in flight and the workers are the parent's.
            // Nothing is released here (see `Server`); the handle's memory stays as is.
            return;
        }
        handle.calls.close();
        // Stopping first wakes callers waiting for a worker, so the wait below is only as
        // long as the running tasks. A server that is not running refuses; that is fine.
        let _ = handle.server.stop();
        handle.calls.wait_until_idle();
        // Dropping the server joins its threads and drops the listener, which runs
        // `userdata_free`.
        // SAFETY: no call is in flight and none may start (header contract).
        unsafe { handle::free(s) }
    })
}

/// Runs one task: sends `context` and `body` to a free worker and returns its answer.
/// Both buffers are borrowed for the call only (`context` may be NULL when
/// `context_len` is 0, `body` when `body_len` is 0); they are only read, and may be read
/// by another thread while the call waits (see below).
///
/// Blocks the calling thread until the answer, an error or a timeout: it waits up to
/// allocate_timeout for a free worker, then for the worker's answer (up to exec_ttl when
/// set). Any number of threads may call it at once; callers waiting for a worker are
/// served about in the order they came (a freed worker goes to the longest-waiting
/// caller on the same CPU, and no caller is passed over more than 4 times). The caller
/// that frees a worker writes the next waiting caller's task to it, when that task is
/// at most 16 KiB, before waking that caller. A worker that dies during the call ends
/// it at once, even when a child of the worker still holds the relay open (where the
/// kernel gives pidfds: Linux 5.3 and later): the call fails with
/// `RR_STATUS_WORKER_ERROR`, or, if the worker had not read the task, the task runs on
/// another worker. The call raises no SIGPIPE and leaves the calling
/// thread's signal mask as it is (see "Signals" at the top of this header).
///
/// On success `*out` receives the answer, which the caller owns and releases with
/// `rr_payload_free`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_JOB_ERROR` when the worker answered with an error
/// (`rr_error_data` holds its message bytes; the worker stays in the pool);
/// `RR_STATUS_WORKER_ERROR` when the worker failed (it is replaced; the message holds its
/// pid and stderr); `RR_STATUS_TIMEOUT` when no worker was free within allocate_timeout;
/// `RR_STATUS_QUEUE_FULL` when max_queue callers were already waiting;
/// `RR_STATUS_EXEC_TTL` when the task ran past exec_ttl and its worker was killed;
/// `RR_STATUS_STATE` when the server is not started, or was stopped while waiting, or
/// this process is a child made by fork() from the one that made `s`;
/// `RR_STATUS_NULL_ARGUMENT` when `s` or `out` is NULL, or a buffer is NULL with a
/// non-zero length.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_exec(
    s: *mut rr_server,
    context: *const u8,
    context_len: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut rr_payload,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires `len` readable bytes at each non-NULL buffer.
        let (context, body) = unsafe { input::context_and_body(context, context_len, body, body_len) }?;
        // SAFETY: the header requires NULL or a live server.
        let answer = unsafe { with_server(s, |server| server.exec(context, body)) }?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, payload::into_raw(answer)) };
        Ok(())
    })
}

/// Writes the status of `s`'s pool as a JSON object to `*out`: the pool (`name`,
/// `protocol`, `relay`, `workers_min`, `workers_max`, `workers_target`, `starting`,
/// `waiting`, `workers_by_state`, `counters`, the fields of `rr_pool_stats` by name, and
/// `tasks_by_outcome`, the outcomes of `rr_server_metrics`) and every worker process it
/// owns, stopping ones included (`workers`: objects with `pid`, `state`, `state_name`,
/// `num_execs`, `created_unix_ms`, `rss_bytes` and `task_ms`, the age of its current
/// task, null when it has none). UTF-8, no newline. Like PHP-FPM's `?json&full`; serve it
/// on whatever endpoint the host has.
///
/// On success `*out` receives a string the caller owns and releases with
/// `rr_string_free`; on failure `*out` is left as it is. Does not wait for tasks (it
/// reads each worker's memory from /proc). Any thread, an event callback included.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` or `out` is NULL;
/// `RR_STATUS_STATE` when the server is not started.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_status_json(
    s: *mut rr_server,
    out: *mut *mut c_char,
    err_out: *mut *mut rr_error,
) -> rr_status {
    // SAFETY: the header's requirements, passed on.
    unsafe { write_status(s, out, err_out, ServerStatus::to_json) }
}

/// Writes the metrics of `s` to `*out` in the OpenMetrics text format, ending
/// `# EOF\n`, every sample labelled `pool="<name>"` (`rr_config_set_name`): the gauges
/// `rr_workers{state}`, `rr_workers_min`, `rr_workers_max`, `rr_worker_memory_bytes{pid}`
/// and `rr_queue_waiting`, and the counters `rr_tasks_total{outcome}` (ok, job_error,
/// worker_error, exec_ttl, timeout, queue_full, cancelled),
/// `rr_workers_retired_total{reason}` and `rr_workers_spawned_total`. Serve it with the
/// content type `application/openmetrics-text; version=1.0.0; charset=utf-8`.
///
/// On success `*out` receives a string the caller owns and releases with
/// `rr_string_free`; on failure `*out` is left as it is. Does not wait for tasks. Any
/// thread, an event callback included.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` or `out` is NULL;
/// `RR_STATUS_STATE` when the server is not started.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_metrics(
    s: *mut rr_server,
    out: *mut *mut c_char,
    err_out: *mut *mut rr_error,
) -> rr_status {
    // SAFETY: the header's requirements, passed on.
    unsafe { write_status(s, out, err_out, ServerStatus::to_openmetrics) }
}

/// Writes to `*out` the server's status as `render` writes it, a string the caller
/// frees with `rr_string_free` (`rr_server_status_json`, `rr_server_metrics`).
///
/// # Safety
/// `s` is NULL or a live server; `out` and `err_out` are NULL or writable.
unsafe fn write_status(
    s: *mut rr_server,
    out: *mut *mut c_char,
    err_out: *mut *mut rr_error,
    render: fn(&ServerStatus) -> String,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires NULL or a live server.
        let status = unsafe { with_server(s, |server| server.status()) }?;
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, string::into_raw(&render(&status))) };
        Ok(())
    })
}

/// Takes the worker with process id `pid` out of the pool of `s`, as RoadRunner's
/// `Worker.Stop` (`kill` false) and `Worker.Kill` (`kill` true); the pool starts a
/// replacement (up to its target). With `kill` false, an idle worker is stopped
/// gracefully at once (stop command, then signals after destroy_timeout) and a busy one
/// after its current task, which completes normally. With `kill` true, it is killed at
/// once (SIGKILL); a task it was running fails with `RR_STATUS_WORKER_ERROR` (one whose
/// task had not reached it yet runs on another worker, as after any death). Either way
/// `RR_EVENT_WORKER_REMOVED` reports it and `rr_pool_stats.retired_removed` counts it,
/// but for a worker that failed on its own meanwhile (it counts as failed, as it would
/// have). Does not block. Any thread, an event callback included.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when `pid` is not the pid of a worker of the current
/// pool (a worker already leaving included); `RR_STATUS_STATE` when the server is not
/// started.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_remove_worker(
    s: *mut rr_server,
    pid: i64,
    kill: bool,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let pid = u32::try_from(pid)
            .ok()
            .filter(|&pid| pid > 0)
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, format!("{pid} is not a process id")))?;
        // SAFETY: the header requires NULL or a live server.
        unsafe { with_server(s, |server| server.remove_worker(pid, kill)) }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ffi::config::{rr_config_free, rr_config_new, rr_config_set_num_workers};
    use crate::ffi::test_support::{assert_null_argument, call, sentinel};

    /// A config for `true` over pipes: valid, and never started by these tests.
    pub(crate) fn config() -> *mut rr_config {
        let mut c = std::ptr::null_mut();
        assert_eq!(
            call(|err| unsafe { rr_config_new(c"true".as_ptr(), c"pipes".as_ptr(), &mut c, err) }).0,
            rr_status::Ok
        );
        unsafe { rr_config_set_num_workers(c, 1) };
        c
    }

    /// A server that is not started.
    pub(crate) fn server() -> *mut rr_server {
        let c = config();
        let mut s = std::ptr::null_mut();
        let (status, message) = call(|err| unsafe { rr_server_new(c, &mut s, err) });
        assert_eq!(status, rr_status::Ok, "{message:?}");
        unsafe { rr_config_free(c) };
        s
    }

    #[test]
    fn new_checks_its_arguments_and_the_config() {
        let c = config();
        let mut s = sentinel();
        assert_null_argument(|err| unsafe { rr_server_new(std::ptr::null(), &mut s, err) }, "cfg");
        assert_null_argument(|err| unsafe { rr_server_new(c, std::ptr::null_mut(), err) }, "out");
        unsafe { rr_config_set_num_workers(c, 0) };
        let (status, message) = call(|err| unsafe { rr_server_new(c, &mut s, err) });
        assert_eq!(status, rr_status::Config);
        assert!(message.unwrap().contains("num_workers"));
        assert_eq!(s, sentinel(), "out-parameters are written only on success");
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn new_refuses_jitter_above_100_and_remote_tcp_unless_allowed() {
        use crate::ffi::config::{rr_config_set_jitter_percent, rr_config_set_tcp_allow_remote};
        let new_server = |c: *mut rr_config| {
            let mut s = sentinel();
            let (status, message) = call(|err| unsafe { rr_server_new(c, &mut s, err) });
            if status == rr_status::Ok {
                unsafe { rr_server_free(s) };
            } else {
                assert_eq!(s, sentinel(), "out-parameters are written only on success");
            }
            (status, message)
        };

        let c = config();
        unsafe { rr_config_set_jitter_percent(c, 100) };
        assert_eq!(new_server(c).0, rr_status::Ok);
        unsafe { rr_config_set_jitter_percent(c, 101) };
        let (status, message) = new_server(c);
        assert_eq!(status, rr_status::Config);
        assert!(message.unwrap().contains("jitter_percent"));
        unsafe { rr_config_free(c) };

        // A documentation address (RFC 5737): never listened on by rr_server_new.
        let mut c = std::ptr::null_mut();
        let (status, _) =
            call(|err| unsafe { rr_config_new(c"true".as_ptr(), c"tcp://192.0.2.1:6001".as_ptr(), &mut c, err) });
        assert_eq!(status, rr_status::Ok);
        let (status, message) = new_server(c);
        assert_eq!(status, rr_status::Config);
        assert!(message.unwrap().contains("tcp_allow_remote"));
        unsafe { rr_config_set_tcp_allow_remote(c, true) };
        assert_eq!(new_server(c).0, rr_status::Ok);
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn every_call_checks_the_server_pointer() {
        let null = std::ptr::null_mut();
        let c = config();
        let mut payload = sentinel();
        assert_null_argument(|err| unsafe { rr_server_start(null, err) }, "s");
        assert_null_argument(|err| unsafe { rr_server_stop(null, err) }, "s");
        assert_null_argument(|err| unsafe { rr_server_reset(null, err) }, "s");
        assert_null_argument(|err| unsafe { rr_server_reconfigure(null, c, err) }, "s");
        assert_null_argument(
            |err| unsafe { rr_exec(null, std::ptr::null(), 0, std::ptr::null(), 0, &mut payload, err) },
            "s",
        );
        assert_eq!(payload, sentinel());
        unsafe { rr_server_free(null) };
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn exec_checks_its_buffers_and_out_parameter() {
        let s = server();
        let mut payload = sentinel();
        assert_null_argument(
            |err| unsafe { rr_exec(s, std::ptr::null(), 0, std::ptr::null(), 0, std::ptr::null_mut(), err) },
            "out",
        );
        assert_null_argument(
            |err| unsafe { rr_exec(s, std::ptr::null(), 2, b"x".as_ptr(), 1, &mut payload, err) },
            "context",
        );
        assert_null_argument(
            |err| unsafe { rr_exec(s, b"x".as_ptr(), 1, std::ptr::null(), 2, &mut payload, err) },
            "body",
        );
        assert_null_argument(|err| unsafe { rr_server_reconfigure(s, std::ptr::null(), err) }, "cfg");
        assert_eq!(payload, sentinel());
        unsafe { rr_server_free(s) };
    }

    #[test]
    fn exec_on_a_server_that_is_not_started_is_a_state_error() {
        let s = server();
        let mut payload = sentinel();
        let (status, _) =
            call(|err| unsafe { rr_exec(s, std::ptr::null(), 0, std::ptr::null(), 0, &mut payload, err) });
        assert_eq!(status, rr_status::State);
        assert_eq!(payload, sentinel());
        unsafe { rr_server_free(s) };
    }

    #[test]
    fn a_call_after_free_began_is_refused_not_run() {
        // Undefined for C callers; checked here on the gate itself, which is what makes
        // the common case (a call racing with free) fail cleanly instead of using a
        // dropped server.
        let s = server();
        let handle = unsafe { handle::as_ref(s as *const rr_server) }.unwrap();
        handle.calls.close();
        let (status, message) = call(|err| unsafe { rr_server_reset(s, err) });
        assert_eq!(status, rr_status::State);
        assert!(message.unwrap().contains("rr_server_free"));
        unsafe { rr_server_free(s) };
    }
}
