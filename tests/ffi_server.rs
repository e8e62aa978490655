//! The C interface end to end, called from Rust exactly as a C program calls it, with
//! `rr-test-worker` as the worker: answers, job errors, events and their userdata, and
//! `rr_server_free` while other threads are inside `rr_exec`.

use roadrunner::ffi::config::*;
use roadrunner::ffi::error::*;
use roadrunner::ffi::event::*;
use roadrunner::ffi::payload::*;
use roadrunner::ffi::server::*;
use roadrunner::ffi::stats::*;
use roadrunner::ffi::status::{rr_status, rr_status_str};
use roadrunner::ffi::worker_info::*;
use std::ffi::{c_void, CStr, CString};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Panics with the error's message when `status` is not OK.
fn check(status: rr_status, error: *mut rr_error) {
    if status != rr_status::Ok {
        let message = unsafe { CStr::from_ptr(rr_error_message(error)) }.to_string_lossy().into_owned();
        let name = unsafe { CStr::from_ptr(rr_status_str(status as u32)) }.to_string_lossy().into_owned();
        unsafe { rr_error_free(error) };
        panic!("{name}: {message}");
    }
}

fn started_server(num_workers: u64) -> *mut rr_server {
    let command = CString::new(env!("CARGO_BIN_EXE_rr-test-worker")).unwrap();
    unsafe {
        let (mut config, mut server, mut error) = (null_mut(), null_mut(), null_mut());
        check(rr_config_new(command.as_ptr(), c"pipes".as_ptr(), &mut config, &mut error), error);
        rr_config_set_num_workers(config, num_workers);
        rr_config_set_allocate_timeout_ms(config, 10_000);
        rr_config_set_destroy_timeout_ms(config, 5_000);
        rr_config_set_relay_timeout_ms(config, 10_000);
        check(rr_server_new(config, &mut server, &mut error), error);
        rr_config_free(config);
        check(rr_server_start(server, &mut error), error);
        server
    }
}

/// `rr_exec`, returning the status and either the answer or the error (both owned).
fn exec(server: *mut rr_server, context: &[u8], body: &[u8]) -> (rr_status, *mut rr_payload, *mut rr_error) {
    let (mut payload, mut error) = (null_mut(), null_mut());
    let status = unsafe {
        rr_exec(server, context.as_ptr(), context.len(), body.as_ptr(), body.len(), &mut payload, &mut error)
    };
    (status, payload, error)
}

fn bytes<'a>(pointer: *const u8, len: usize) -> &'a [u8] {
    unsafe { std::slice::from_raw_parts(pointer, len) }
}

#[test]
fn exec_returns_the_workers_answer() {
    let server = started_server(2);
    let (status, payload, error) = exec(server, b"ctx", b"hello");
    check(status, error);
    let mut len = 0;
    unsafe {
        assert_eq!(bytes(rr_payload_context(payload, &mut len), len), b"ctx");
        assert_eq!(bytes(rr_payload_body(payload, &mut len), len), b"hello");
        rr_payload_free(payload);
    }
    // Empty buffers may be NULL.
    let (mut payload, mut error) = (null_mut(), null_mut());
    let status = unsafe { rr_exec(server, std::ptr::null(), 0, std::ptr::null(), 0, &mut payload, &mut error) };
    check(status, error);
    unsafe {
        assert_eq!(bytes(rr_payload_body(payload, &mut len), len), b"");
        rr_payload_free(payload);
        rr_server_free(server);
    }
}

#[test]
fn a_job_error_carries_the_workers_bytes() {
    let server = started_server(1);
    let (status, payload, error) = exec(server, b"!error", b"it went \xffwrong");
    assert_eq!(status, rr_status::JobError);
    assert!(payload.is_null());
    let mut len = 0;
    unsafe {
        assert_eq!(rr_error_status(error), rr_status::JobError);
        assert_eq!(bytes(rr_error_data(error, &mut len), len), b"it went \xffwrong");
        rr_error_free(error);
    }
    // The worker stays usable.
    let (status, payload, error) = exec(server, b"", b"again");
    check(status, error);
    unsafe {
        rr_payload_free(payload);
        rr_server_free(server);
    }
}

#[test]
fn workers_lists_a_snapshot() {
    let server = started_server(2);
    let (mut infos, mut len, mut error) = (null_mut(), 0, null_mut());
    check(unsafe { rr_server_workers(server, &mut infos, &mut len, &mut error) }, error);
    let list = unsafe { std::slice::from_raw_parts(infos, len) };
    assert_eq!(list.len(), 2);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    for info in list {
        assert!(info.pid > 0);
        assert_eq!(info.state, RR_WORKER_STATE_READY);
        assert!((now_ms - 60_000..=now_ms).contains(&info.created_unix_ms), "{info:?}");
    }
    unsafe {
        rr_worker_info_free(infos, len);
        rr_server_free(server);
    }
}

/// `rr_server_stats`, panicking on failure.
fn stats(server: *mut rr_server) -> rr_pool_stats {
    let (mut stats, mut error) = (rr_pool_stats::default(), null_mut());
    check(unsafe { rr_server_stats(server, &mut stats, &mut error) }, error);
    stats
}

#[test]
fn stats_count_tasks_and_job_errors_across_a_reset() {
    let server = started_server(2);
    assert_eq!(stats(server), rr_pool_stats { workers: 2, workers_spawned: 2, ..rr_pool_stats::default() });
    for body in [&b"one"[..], b"two", b"three"] {
        let (status, payload, error) = exec(server, b"", body);
        check(status, error);
        unsafe { rr_payload_free(payload) };
    }
    let (status, _payload, error) = exec(server, b"!error", b"no");
    assert_eq!(status, rr_status::JobError);
    unsafe { rr_error_free(error) };

    let counted = stats(server);
    assert_eq!((counted.tasks_done, counted.job_errors, counted.worker_errors), (4, 1, 0), "{counted:?}");
    assert_eq!(
        (counted.workers, counted.waiting, counted.timeouts, counted.retired_failed),
        (2, 0, 0, 0),
        "{counted:?}"
    );

    // The counters are the server's: a new pool keeps counting from there.
    let mut error = null_mut();
    check(unsafe { rr_server_reset(server, &mut error) }, error);
    let (status, payload, exec_error) = exec(server, b"", b"after reset");
    check(status, exec_error);
    unsafe { rr_payload_free(payload) };
    let after = stats(server);
    assert_eq!((after.tasks_done, after.job_errors, after.workers), (5, 1, 2), "{after:?}");
    assert_eq!(after.workers_spawned, 4, "two first workers, two after the reset: {after:?}");

    // A newer host's struct, larger than this library's: the library fills what it
    // knows, says how much in `size`, and leaves the rest alone.
    #[repr(C)]
    struct Newer {
        known: rr_pool_stats,
        later: [u64; 2],
    }
    let mut newer = Newer { known: rr_pool_stats::default(), later: [0xfeed; 2] };
    newer.known.size = std::mem::size_of::<Newer>();
    check(unsafe { rr_server_stats(server, &mut newer.known, &mut error) }, error);
    assert_eq!(newer.known, after);
    assert_eq!(newer.known.size, std::mem::size_of::<rr_pool_stats>());
    assert_eq!(newer.later, [0xfeed; 2]);

    // Stopped: a state error, and `out` is left alone.
    check(unsafe { rr_server_stop(server, &mut error) }, error);
    let mut untouched = rr_pool_stats { tasks_done: 77, ..rr_pool_stats::default() };
    let status = unsafe { rr_server_stats(server, &mut untouched, &mut error) };
    assert_eq!(status, rr_status::State);
    unsafe { rr_error_free(error) };
    assert_eq!(untouched, rr_pool_stats { tasks_done: 77, ..rr_pool_stats::default() });
    unsafe { rr_server_free(server) };
}

/// What a listener saw, and whether its userdata was freed.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(i32, i64, Option<String>)>>,
    freed: AtomicUsize,
    calls_after_free: AtomicUsize,
}

unsafe extern "C" fn record(userdata: *mut c_void, event: *const rr_event) {
    let recorder = unsafe { &*(userdata as *const Recorder) };
    if recorder.freed.load(Ordering::SeqCst) > 0 {
        recorder.calls_after_free.fetch_add(1, Ordering::SeqCst);
    }
    let message = unsafe { rr_event_message(event) };
    let message = (!message.is_null()).then(|| unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned());
    recorder.events.lock().unwrap().push(unsafe { (rr_event_type(event), rr_event_pid(event), message) });
}

unsafe extern "C" fn mark_freed(userdata: *mut c_void) {
    unsafe { &*(userdata as *const Recorder) }.freed.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn events_reach_the_callback_and_stop_with_free() {
    let recorder = Recorder::default();
    let server = started_server(1);
    let userdata = &recorder as *const Recorder as *mut c_void;
    let mut error = null_mut();
    check(unsafe { rr_server_listen(server, Some(record), userdata, Some(mark_freed), &mut error) }, error);

    // A crash: the worker dies (WORKER_ERROR for the caller) and its stderr is an event.
    let (status, _payload, error) = exec(server, b"!crash", b"");
    assert_eq!(status, rr_status::WorkerError);
    unsafe { rr_error_free(error) };
    let (status, payload, error) = exec(server, b"!stderr:hello from the worker", b"");
    check(status, error);
    unsafe { rr_payload_free(payload) };

    unsafe { rr_server_free(server) };
    assert_eq!(recorder.freed.load(Ordering::SeqCst), 1, "userdata_free runs once, in rr_server_free");
    assert_eq!(recorder.calls_after_free.load(Ordering::SeqCst), 0);
    let events = recorder.events.lock().unwrap();
    let stderr_line = events.iter().find(|(kind, _, message)| {
        *kind == RR_EVENT_WORKER_STDERR && message.as_deref() == Some("hello from the worker")
    });
    assert!(stderr_line.is_some_and(|(_, pid, _)| *pid > 0), "{events:?}");
    assert!(events.iter().any(|(kind, pid, _)| *kind == RR_EVENT_WORKER_CONSTRUCT && *pid > 0), "{events:?}");
}

/// A server pointer that test threads share, as C threads would.
#[derive(Clone, Copy)]
struct SharedServer(*mut rr_server);
// SAFETY: `rr_server` is thread-safe (header contract); the test frees it only as
// `rr_server_free` allows.
unsafe impl Send for SharedServer {}

#[test]
fn free_waits_for_calls_in_flight() {
    const WORKERS: usize = 2;
    const CALLERS: usize = 4; // two run, two wait for a worker
    let server = SharedServer(started_server(WORKERS as u64));
    let entered = Arc::new(Barrier::new(CALLERS + 1));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let entered = entered.clone();
            std::thread::spawn(move || {
                let server = server;
                entered.wait();
                // Long enough that the wait below sees two callers queued even on a loaded machine.
                let (status, payload, error) = exec(server.0, b"!sleep:2000", b"slow");
                let returned = Instant::now();
                unsafe {
                    rr_payload_free(payload);
                    rr_error_free(error);
                }
                (status, returned)
            })
        })
        .collect();
    entered.wait();
    // Every caller is inside rr_exec (the header requires calls to have started) once
    // two wait for a worker: the other two hold both workers. Their tasks take 500 ms.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(server.0).waiting < (CALLERS - WORKERS) as u64 {
        assert!(Instant::now() < deadline, "the callers never got into rr_exec: {:?}", stats(server.0));
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    unsafe { rr_server_free(server.0) };
    let free_returned = Instant::now();
    assert!(started.elapsed() >= Duration::from_millis(200), "free must wait for the running tasks");

    let results: Vec<_> = callers.into_iter().map(|caller| caller.join().unwrap()).collect();
    for (status, returned) in &results {
        // A caller may be descheduled between its return and its clock reading: a few
        // ms of room, far below the 2 s a call would outlive a free that did not wait.
        let after_free = returned.saturating_duration_since(free_returned);
        assert!(
            after_free < Duration::from_millis(300),
            "every call in flight returns before rr_server_free does: one returned {after_free:?} after it"
        );
        assert!(matches!(status, rr_status::Ok | rr_status::State), "{results:?}");
    }
    let finished = results.iter().filter(|(status, _)| *status == rr_status::Ok).count();
    assert!(finished >= WORKERS, "running tasks finish: {results:?}");
}
