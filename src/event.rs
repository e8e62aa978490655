//! Events: what the pool and the server tell a listener about their life.
//!
//! Events arise on many threads (callers, watchers, the supervisor). They are queued
//! and delivered by one thread per server (`rr-events`), so a listener is never called
//! twice at once and never runs on a caller's hot path. Stderr lines are dropped, and
//! counted, when the listener falls far behind; lifecycle events are never dropped.

use crate::sync::Mutex;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The kind of an event. The numbers are part of the C interface and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum EventKind {
    /// A worker process was started and answered the handshake.
    WorkerConstruct = 100,
    /// A worker was stopped and is gone.
    WorkerDestruct = 101,
    /// A worker was killed (it did not stop in time, broke the protocol, or the pool gave up on it).
    WorkerKill = 102,
    /// A worker failed (crash, protocol error, failed spawn).
    WorkerError = 103,
    /// A worker process exited on its own.
    WorkerDead = 104,
    /// The pool could not keep any worker alive.
    PoolError = 105,
    /// The server started.
    ServerStart = 200,
    /// The server stopped.
    ServerStop = 201,
    /// The server could not rebuild a failed pool.
    ServerFailure = 202,
    /// A pool was built.
    PoolConstruct = 203,
    /// A pool was stopped.
    PoolDestruct = 204,
    /// A line a worker wrote to its stderr.
    WorkerStderr = 300,
    /// A task ran past `exec_ttl`; its worker was killed.
    WorkerExecTtl = 301,
    /// A worker lived past its `ttl` and was retired between tasks.
    WorkerTtl = 302,
    /// A worker was idle past `idle_ttl` and was retired.
    WorkerIdleTtl = 303,
    /// A worker's RSS was above `max_memory`; it was retired between tasks.
    WorkerMaxMemory = 304,
    /// A worker reached its `max_jobs` and was retired.
    WorkerMaxJobs = 305,
    /// A caller was refused because `max_queue` callers were already waiting.
    QueueFull = 306,
    /// An elastic pool started more workers because callers waited (the message says
    /// how many, and how many the pool has).
    PoolGrow = 307,
    /// An elastic pool retired an extra worker that idled past `scale_idle`.
    PoolShrink = 308,
    /// A reconfigure ignored settings that only a new start applies (the relay and
    /// relay timeout; the message names them).
    ReconfigureIgnored = 309,
    /// A worker was removed by its host (stopped after its task, or killed).
    WorkerRemoved = 310,
}

impl EventKind {
    /// The event's number.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One event: its kind, the worker concerned (if any), and a message (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The worker's pid, where a worker is concerned.
    pub pid: Option<u32>,
    /// An error text or a stderr line.
    pub message: Option<String>,
}

/// A function that receives events; it runs on the `rr-events` thread.
pub type Listener = Box<dyn FnMut(&Event) + Send>;

/// How many stderr events may wait for delivery before further lines are dropped.
const MAX_PENDING_STDERR: usize = 4096;

enum Message {
    Event(Event),
    /// Sent by `flush`: answered once every event queued before it was delivered.
    Flush(Sender<()>),
    Shutdown,
}

struct Shared {
    listener: Mutex<Option<Listener>>,
    has_listener: AtomicBool,
    pending_stderr: AtomicUsize,
    dropped_stderr: AtomicU64,
}

/// Queue and delivery thread of one server's events. Cloning gives another handle.
#[derive(Clone)]
pub(crate) struct EventBus {
    shared: Arc<Shared>,
    sender: Sender<Message>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl EventBus {
    /// Starts the delivery thread.
    pub(crate) fn new() -> EventBus {
        let shared = Arc::new(Shared {
            listener: Mutex::new(None),
            has_listener: AtomicBool::new(false),
            pending_stderr: AtomicUsize::new(0),
            dropped_stderr: AtomicU64::new(0),
        });
        let (sender, receiver) = crossbeam_channel::unbounded();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rr-events".into())
            .spawn(move || deliver(thread_shared, receiver))
            .expect("cannot start the rr-events thread");
        EventBus { shared, sender, thread: Arc::new(Mutex::new(Some(thread))) }
    }

    /// Queues an event for the listener (nothing is queued while none is set).
    pub(crate) fn emit(&self, kind: EventKind, pid: Option<u32>, message: Option<String>) {
        if !self.shared.has_listener.load(Ordering::Acquire) {
            return;
        }
        if kind == EventKind::WorkerStderr
            && self.shared.pending_stderr.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_STDERR
        {
            self.shared.pending_stderr.fetch_sub(1, Ordering::AcqRel);
            self.shared.dropped_stderr.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = self.sender.send(Message::Event(Event { kind, pid, message }));
    }

    /// Replaces the listener; returns the old one. Waits while the listener is running,
    /// so the old one is never running when it is returned.
    pub(crate) fn set_listener(&self, listener: Option<Listener>) -> Option<Listener> {
        let mut slot = self.shared.listener.lock();
        self.shared.has_listener.store(listener.is_some(), Ordering::Release);
        std::mem::replace(&mut *slot, listener)
    }

    /// Waits until every event queued before this call was delivered. From the
    /// listener itself (on `rr-events`) it returns at once: waiting would deadlock.
    pub(crate) fn flush(&self) {
        if std::thread::current().name() == Some("rr-events") {
            return;
        }
        let (done, wait) = crossbeam_channel::bounded(1);
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Stderr lines dropped because the listener fell behind.
    pub(crate) fn dropped_stderr_lines(&self) -> u64 {
        self.shared.dropped_stderr.load(Ordering::Relaxed)
    }

    /// Delivers what is queued, stops the thread and returns the listener. After this
    /// returns no listener call is running or will run.
    pub(crate) fn shutdown(&self) -> Option<Listener> {
        let _ = self.sender.send(Message::Shutdown);
        if let Some(thread) = self.thread.lock().take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        self.set_listener(None)
    }
}

fn deliver(shared: Arc<Shared>, receiver: Receiver<Message>) {
    for message in receiver {
        match message {
            Message::Event(event) => {
                if event.kind == EventKind::WorkerStderr {
                    shared.pending_stderr.fetch_sub(1, Ordering::AcqRel);
                }
                let mut slot = shared.listener.lock();
                if let Some(listener) = slot.as_mut() {
                    // A panicking listener loses that one event, never the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&event)));
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
            Message::Shutdown => break,
        }
    }
}
