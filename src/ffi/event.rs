//! Events for C: `rr_server_listen`, the borrowed `rr_event` a callback receives, its
//! accessors, and the `RR_EVENT_*` numbers.
//!
//! A C callback and its `userdata` become a core [`Listener`] closure. The closure owns
//! the userdata through `UserData`, whose `Drop` runs `userdata_free`: the core drops
//! a listener exactly once, when it is replaced or when the server is dropped, and only
//! once it can no longer run, which is exactly the contract of `userdata_free`.

use super::error::rr_error;
use super::handle::{self, Castable};
use super::server::{self, rr_server};
use super::status::rr_status;
use crate::{Event, Listener};
use std::ffi::{c_char, c_void};

/// A worker process was started and answered the handshake.
pub const RR_EVENT_WORKER_CONSTRUCT: i32 = 100;
/// A worker was stopped and is gone.
pub const RR_EVENT_WORKER_DESTRUCT: i32 = 101;
/// A worker was killed (it did not stop in time, broke the protocol, or was given up on).
pub const RR_EVENT_WORKER_KILL: i32 = 102;
/// A worker failed (crash, protocol error, failed spawn); the message says how.
pub const RR_EVENT_WORKER_ERROR: i32 = 103;
/// A worker process exited on its own.
pub const RR_EVENT_WORKER_DEAD: i32 = 104;
/// The pool could not keep any worker alive.
pub const RR_EVENT_POOL_ERROR: i32 = 105;
/// The server started.
pub const RR_EVENT_SERVER_START: i32 = 200;
/// The server stopped.
pub const RR_EVENT_SERVER_STOP: i32 = 201;
/// The server could not rebuild a failed pool.
pub const RR_EVENT_SERVER_FAILURE: i32 = 202;
/// A pool was built (on start, reconfigure and reset).
pub const RR_EVENT_POOL_CONSTRUCT: i32 = 203;
/// A pool was stopped.
pub const RR_EVENT_POOL_DESTRUCT: i32 = 204;
/// A line a worker wrote to its stderr (the message, without its newline). Lines are
/// dropped, never queued without bound, when the callback falls far behind.
pub const RR_EVENT_WORKER_STDERR: i32 = 300;
/// A task ran past exec_ttl and its worker was killed (its caller gets
/// `RR_STATUS_EXEC_TTL`); the message says so. A `RR_EVENT_WORKER_ERROR` for the same
/// worker follows.
pub const RR_EVENT_WORKER_EXEC_TTL: i32 = 301;
/// A worker lived past its ttl and was retired between tasks (a new one replaces it).
pub const RR_EVENT_WORKER_TTL: i32 = 302;
/// A worker waited for a task longer than idle_ttl and was retired (a new one replaces
/// it).
pub const RR_EVENT_WORKER_IDLE_TTL: i32 = 303;
/// A worker's resident memory was above max_memory_bytes and it was retired between
/// tasks (a new one replaces it).
pub const RR_EVENT_WORKER_MAX_MEMORY: i32 = 304;
/// A worker ran its max_jobs tasks and was retired (a new one replaces it).
pub const RR_EVENT_WORKER_MAX_JOBS: i32 = 305;
/// A caller of `rr_exec` was refused with `RR_STATUS_QUEUE_FULL` because max_queue
/// callers were already waiting for a worker. Not about one worker: its pid is -1.
pub const RR_EVENT_QUEUE_FULL: i32 = 306;
/// An elastic pool (`rr_config_set_max_workers`) starts more workers because callers
/// waited scale_after; the message says how many, and the pool's size before and after.
/// Its pid is -1.
pub const RR_EVENT_POOL_GROW: i32 = 307;
/// An elastic pool stopped an extra worker (this pid) that idled past scale_idle.
pub const RR_EVENT_POOL_SHRINK: i32 = 308;
/// `rr_server_reconfigure` ignored the new config's relay and relay timeout, which
/// differ from the server's (see `rr_config_differs`); the message names both. Its pid
/// is -1.
pub const RR_EVENT_RECONFIGURE_IGNORED: i32 = 309;
/// A worker (this pid) left the pool because its host asked (`rr_server_remove_worker`).
pub const RR_EVENT_WORKER_REMOVED: i32 = 310;

/// One event, as seen by an `rr_event_callback`: its type (an `RR_EVENT_*` number), the
/// worker's pid where a worker is concerned, and a message where there is one.
///
/// Lifetime: borrowed for the duration of the callback only. Copy what you keep; do not
/// free it, and do not keep the pointer or the message pointer past the callback.
///
/// Methods: `rr_event_type`, `rr_event_pid`, `rr_event_message`.
pub struct rr_event {
    _private: [u8; 0],
}

/// What an `rr_event` pointer points to during a callback.
pub(crate) struct EventView {
    kind: i32,
    pid: i64,
    /// NUL-terminated message, or NULL; points into the listener's scratch buffer.
    message: *const c_char,
}

impl Castable for rr_event {
    type Rust = EventView;
}

/// A function the library calls with each event of a server.
///
/// It runs on the server's `rr-events` thread (a library thread, never the thread that
/// caused the event); calls are serialized: never two at once for one server, in the
/// order the events happened. `event` is borrowed for the call. It receives the
/// `userdata` given to `rr_server_listen`. It should return quickly (events queue up
/// behind it), must not call `rr_server_free`, `rr_server_stop` or `rr_server_listen` on
/// the same server (that would deadlock), and must not unwind (C++ exceptions, longjmp).
pub type rr_event_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const rr_event)>;

/// The C userdata of a listener; dropping it runs `userdata_free` once.
struct UserData {
    pointer: *mut c_void,
    free: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
}

// SAFETY: the header tells C callers that the callback and `userdata_free` run on a
// library thread, with this userdata; giving them a userdata that may be used from
// another thread is the caller's side of that contract. The core never runs the listener
// on two threads at once, so the pointer is never used concurrently by us.
unsafe impl Send for UserData {}

impl UserData {
    /// The pointer to pass to the callback. (A method, not a field access, so that a
    /// closure using it captures the whole `UserData`, and with it the duty to free it:
    /// capturing only the field would drop, and free, the userdata at once.)
    fn pointer(&self) -> *mut c_void {
        self.pointer
    }
}

impl Drop for UserData {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // SAFETY: the caller gave this function to be called once with this pointer.
            unsafe { free(self.pointer) }
        }
    }
}

/// Makes the core listener that shows each event to a C callback.
fn c_listener(callback: unsafe extern "C" fn(*mut c_void, *const rr_event), userdata: UserData) -> Listener {
    // Reused for every message, so a stream of stderr lines costs no allocation each.
    let mut message_buffer = Vec::new();
    Box::new(move |event: &Event| {
        let message = event.message.as_deref().map(|text| {
            message_buffer.clear();
            super::cstring::push_without_nul(&mut message_buffer, text);
            message_buffer.push(0);
            message_buffer.as_ptr().cast::<c_char>()
        });
        let view = EventView {
            kind: event.kind.code(),
            pid: event.pid.map_or(-1, i64::from),
            message: message.unwrap_or(std::ptr::null()),
        };
        // SAFETY: the C caller registered `callback` for this userdata; `view` and its
        // message outlive the call.
        unsafe { callback(userdata.pointer(), handle::as_borrowed_ptr::<rr_event>(&view)) }
    })
}

/// Registers `cb` to receive the events of `s`, called with `userdata` (see
/// `rr_event_callback` for the thread it runs on and its rules). It replaces the
/// previous callback: this call waits until the previous callback is not running, then
/// runs the previous `userdata_free`. NULL `cb` unregisters (events are then not even
/// queued).
///
/// Ownership of `userdata`: on success, the library owns it and calls
/// `userdata_free(userdata)` (when `userdata_free` is not NULL) exactly once: when this
/// callback is replaced by another call of `rr_server_listen`, or in `rr_server_free`,
/// always after the callback's last call, on the thread that made that call. When `cb`
/// is NULL, `userdata_free(userdata)` runs at once, before this function returns. On
/// failure, nothing is taken: the caller still owns `userdata`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `s` is NULL; `RR_STATUS_STATE`
/// in a child made by fork() (see `rr_server`). Must not be called from an event
/// callback of this server.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_server_listen(
    s: *mut rr_server,
    cb: rr_event_callback,
    userdata: *mut c_void,
    userdata_free: Option<unsafe extern "C" fn(userdata: *mut c_void)>,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        // SAFETY: the header requires NULL or a live server.
        unsafe {
            server::with_server(s, |server| {
                // `with_server` made the one check `listen` fails on (the process) before
                // `userdata` is taken: once in a listener, a failure would free it.
                // Taken only now that `s` is known to be good: on failure the caller keeps it.
                let userdata = UserData { pointer: userdata, free: userdata_free };
                match cb {
                    Some(callback) => server.listen(Some(c_listener(callback, userdata))),
                    None => {
                        server.listen(None)?;
                        drop(userdata);
                        Ok(())
                    }
                }
            })
        }
    })
}

/// The type of `e`: one of the `RR_EVENT_*` numbers (new types may appear, above the
/// existing ones: ignore those you do not know). NULL `e` gives 0.
#[no_mangle]
pub unsafe extern "C" fn rr_event_type(e: *const rr_event) -> i32 {
    ffi_boundary!({ ref_or_return!(e, 0).kind })
}

/// The pid of the worker `e` is about, or -1 when it is not about one worker. NULL `e`
/// gives -1.
#[no_mangle]
pub unsafe extern "C" fn rr_event_pid(e: *const rr_event) -> i64 {
    ffi_boundary!({ ref_or_return!(e, -1).pid })
}

/// The message of `e` (an error text, or a stderr line without its newline), UTF-8 and
/// NUL-terminated, or NULL when the event has none. Borrowed like the event: valid only
/// during the callback. NULL `e` gives NULL.
#[no_mangle]
pub unsafe extern "C" fn rr_event_message(e: *const rr_event) -> *const c_char {
    ffi_boundary!({ ref_or_return!(e, std::ptr::null()).message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::server::{rr_server_free, tests::server};
    use crate::ffi::test_support::{assert_null_argument, call};
    use crate::{Event, EventKind};
    use std::ffi::CStr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Counts the calls of `count_free` with a pointer to it.
    #[derive(Default)]
    struct FreeCounter(AtomicUsize);

    impl FreeCounter {
        fn as_userdata(&self) -> *mut c_void {
            self as *const FreeCounter as *mut c_void
        }
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    unsafe extern "C" fn count_free(userdata: *mut c_void) {
        unsafe { &*(userdata as *const FreeCounter) }.0.fetch_add(1, Ordering::SeqCst);
    }

    unsafe extern "C" fn ignore(_userdata: *mut c_void, _event: *const rr_event) {}

    type Seen = Mutex<Vec<(i32, i64, Option<String>)>>;

    unsafe extern "C" fn record(userdata: *mut c_void, event: *const rr_event) {
        let seen = unsafe { &*(userdata as *const Seen) };
        let message = unsafe { rr_event_message(event) };
        let message = (!message.is_null()).then(|| unsafe { CStr::from_ptr(message) }.to_str().unwrap().to_string());
        seen.lock().unwrap().push(unsafe { (rr_event_type(event), rr_event_pid(event), message) });
    }

    #[test]
    fn the_numbers_are_the_cores() {
        for (number, kind) in [
            (RR_EVENT_WORKER_CONSTRUCT, EventKind::WorkerConstruct),
            (RR_EVENT_WORKER_DESTRUCT, EventKind::WorkerDestruct),
            (RR_EVENT_WORKER_KILL, EventKind::WorkerKill),
            (RR_EVENT_WORKER_ERROR, EventKind::WorkerError),
            (RR_EVENT_WORKER_DEAD, EventKind::WorkerDead),
            (RR_EVENT_POOL_ERROR, EventKind::PoolError),
            (RR_EVENT_SERVER_START, EventKind::ServerStart),
            (RR_EVENT_SERVER_STOP, EventKind::ServerStop),
            (RR_EVENT_SERVER_FAILURE, EventKind::ServerFailure),
            (RR_EVENT_POOL_CONSTRUCT, EventKind::PoolConstruct),
            (RR_EVENT_POOL_DESTRUCT, EventKind::PoolDestruct),
            (RR_EVENT_WORKER_STDERR, EventKind::WorkerStderr),
            (RR_EVENT_WORKER_EXEC_TTL, EventKind::WorkerExecTtl),
            (RR_EVENT_WORKER_TTL, EventKind::WorkerTtl),
            (RR_EVENT_WORKER_IDLE_TTL, EventKind::WorkerIdleTtl),
            (RR_EVENT_WORKER_MAX_MEMORY, EventKind::WorkerMaxMemory),
            (RR_EVENT_WORKER_MAX_JOBS, EventKind::WorkerMaxJobs),
            (RR_EVENT_QUEUE_FULL, EventKind::QueueFull),
            (RR_EVENT_POOL_GROW, EventKind::PoolGrow),
            (RR_EVENT_POOL_SHRINK, EventKind::PoolShrink),
            (RR_EVENT_RECONFIGURE_IGNORED, EventKind::ReconfigureIgnored),
            (RR_EVENT_WORKER_REMOVED, EventKind::WorkerRemoved),
        ] {
            assert_eq!(number, kind.code(), "{kind:?}");
        }
    }

    #[test]
    fn the_callback_sees_each_event_and_userdata_is_freed_once_with_the_listener() {
        let seen = Seen::default();
        let counter = FreeCounter::default();
        // `record` gets `seen`; the free function gets the counter through a second
        // listener, so that both behaviours are observed.
        let mut listener = c_listener(record, UserData { pointer: &seen as *const Seen as *mut c_void, free: None });
        listener(&Event { kind: EventKind::WorkerStderr, pid: Some(7), message: Some("a\0b".into()) });
        listener(&Event { kind: EventKind::ServerStart, pid: None, message: None });
        drop(listener);
        assert_eq!(*seen.lock().unwrap(), vec![(300, 7, Some("a\u{FFFD}b".to_string())), (200, -1, None)]);

        let listener = c_listener(ignore, UserData { pointer: counter.as_userdata(), free: Some(count_free) });
        assert_eq!(counter.count(), 0, "userdata lives as long as the listener");
        drop(listener);
        assert_eq!(counter.count(), 1);
    }

    #[test]
    fn userdata_is_freed_once_on_replacement_and_on_server_free() {
        let s = server();
        let (first, second) = (FreeCounter::default(), FreeCounter::default());
        let listen = |counter: &FreeCounter| {
            call(|err| unsafe { rr_server_listen(s, Some(ignore), counter.as_userdata(), Some(count_free), err) }).0
        };
        assert_eq!(listen(&first), rr_status::Ok);
        assert_eq!(first.count(), 0);
        assert_eq!(listen(&second), rr_status::Ok);
        assert_eq!((first.count(), second.count()), (1, 0));
        unsafe { rr_server_free(s) };
        assert_eq!((first.count(), second.count()), (1, 1));
    }

    #[test]
    fn a_null_callback_unregisters_and_frees_its_userdata_at_once() {
        let s = server();
        let (registered, unused) = (FreeCounter::default(), FreeCounter::default());
        let status =
            call(|err| unsafe { rr_server_listen(s, Some(ignore), registered.as_userdata(), Some(count_free), err) }).0;
        assert_eq!(status, rr_status::Ok);
        let status = call(|err| unsafe { rr_server_listen(s, None, unused.as_userdata(), Some(count_free), err) }).0;
        assert_eq!(status, rr_status::Ok);
        assert_eq!((registered.count(), unused.count()), (1, 1));
        unsafe { rr_server_free(s) };
        assert_eq!((registered.count(), unused.count()), (1, 1));
    }

    #[test]
    fn a_failed_listen_leaves_userdata_with_the_caller() {
        let counter = FreeCounter::default();
        assert_null_argument(
            |err| unsafe {
                rr_server_listen(std::ptr::null_mut(), Some(ignore), counter.as_userdata(), Some(count_free), err)
            },
            "s",
        );
        assert_eq!(counter.count(), 0);
    }

    #[test]
    fn accessors_accept_null() {
        unsafe {
            assert_eq!(rr_event_type(std::ptr::null()), 0);
            assert_eq!(rr_event_pid(std::ptr::null()), -1);
            assert!(rr_event_message(std::ptr::null()).is_null());
        }
    }
}
