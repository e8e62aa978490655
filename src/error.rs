//! The one error type of the library.
//!
//! Every failure that reaches a user is an [`Error`]: a [`ErrorKind`] that says which
//! family of failure it is (and maps one to one onto the C status codes), a message
//! written for a person, the pid of the worker involved where there is one, and for a
//! job error the raw bytes the worker sent. This module never formats process details
//! itself; the code that saw the failure writes the message.

use std::any::Any;
use std::fmt;

/// The message a caught panic carried, for the error that reports it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(no message)"
    }
}

/// The family of a failure. The numbers are the C interface's status codes and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorKind {
    /// The worker answered the task with an error; the worker stays in the pool.
    JobError = 1,
    /// The worker process failed: it crashed, broke the protocol or was killed.
    WorkerError = 2,
    /// No free worker became available within `allocate_timeout`.
    Timeout = 3,
    /// The configuration is invalid.
    Config = 4,
    /// A worker could not be started, or did not connect or answer the handshake in time.
    Spawn = 5,
    /// The server is not started, or was stopped.
    State = 6,
    /// A required pointer was NULL (used by the C interface).
    NullArgument = 7,
    /// An argument is out of range or not valid UTF-8.
    InvalidArgument = 8,
    /// A bug: a caught panic or a broken invariant.
    Internal = 9,
    /// The task ran longer than `exec_ttl` and its worker was killed.
    ExecTtl = 10,
    /// `max_queue` callers were already waiting for a worker.
    QueueFull = 11,
    /// The task was cancelled before it finished (a stream stopped by its caller).
    Cancelled = 12,
}

impl ErrorKind {
    /// A short, static, lower-case name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::JobError => "job error",
            ErrorKind::WorkerError => "worker error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Config => "config error",
            ErrorKind::Spawn => "spawn error",
            ErrorKind::State => "state error",
            ErrorKind::NullArgument => "null argument",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Internal => "internal error",
            ErrorKind::ExecTtl => "exec ttl exceeded",
            ErrorKind::QueueFull => "queue full",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure, with everything a user needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    pid: Option<u32>,
    data: Vec<u8>,
}

impl Error {
    /// An error of `kind` with a message for a person.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), pid: None, data: Vec::new() }
    }

    /// The same error, naming the worker process it concerns.
    pub fn with_pid(mut self, pid: u32) -> Error {
        self.pid = Some(pid);
        self
    }

    /// A job error: the worker `pid` answered with `payload` as its error message.
    pub fn job(pid: u32, payload: Vec<u8>) -> Error {
        let text = String::from_utf8_lossy(&payload).into_owned();
        Error {
            kind: ErrorKind::JobError,
            message: format!("worker {pid} reported a job error: {text}"),
            pid: Some(pid),
            data: payload,
        }
    }

    /// A configuration error about `setting`.
    pub fn config(setting: &str, why: impl fmt::Display) -> Error {
        Error::new(ErrorKind::Config, format!("invalid config: {setting}: {why}"))
    }

    /// A state error: the server cannot do `what` in its current state.
    pub fn state(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::State, message)
    }

    /// Which family of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, in words a user can act on.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The worker process concerned, where there is one.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The raw bytes the worker sent with a job error; empty for other kinds.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The same error with `context` put in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with another kind (e.g. a worker failure during start is a spawn error).
    pub fn with_kind(mut self, kind: ErrorKind) -> Error {
        self.kind = kind;
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of the library.
pub type Result<T> = std::result::Result<T, Error>;
