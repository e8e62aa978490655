//! Worker states and the snapshot of one worker that users can read.

use std::time::SystemTime;

/// The state of a worker. The numbers are part of the C interface and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum WorkerState {
    /// Started, not yet ready (handshake not done).
    Inactive = 0,
    /// Waiting for a task.
    Ready = 1,
    /// Running a task.
    Working = 2,
    /// Streaming a task's answer (kept for compatibility; not used by the static pool).
    Streaming = 3,
    /// Being stopped.
    Stopping = 4,
    /// Stopped and gone.
    Stopped = 5,
    /// Failed; it will be retired.
    Errored = 6,
}

impl WorkerState {
    /// The state's lower-case name, e.g. `"ready"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Inactive => "inactive",
            WorkerState::Ready => "ready",
            WorkerState::Working => "working",
            WorkerState::Streaming => "streaming",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
            WorkerState::Errored => "errored",
        }
    }

    /// The state with number `code`, if there is one.
    pub fn from_code(code: i32) -> Option<WorkerState> {
        Some(match code {
            0 => WorkerState::Inactive,
            1 => WorkerState::Ready,
            2 => WorkerState::Working,
            3 => WorkerState::Streaming,
            4 => WorkerState::Stopping,
            5 => WorkerState::Stopped,
            6 => WorkerState::Errored,
            _ => return None,
        })
    }
}

/// A snapshot of one worker, as listed by [`crate::Server::workers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's process id.
    pub pid: u32,
    /// Its state when the snapshot was taken.
    pub state: WorkerState,
    /// Tasks it has run.
    pub num_execs: u64,
    /// When it was started.
    pub created: SystemTime,
    /// Its resident memory in bytes, read from /proc; 0 where unknown.
    pub rss_bytes: u64,
}
