//! The worker side of the protocol, for programs that are workers.
//!
//! A worker connects (over its stdin and stdout, or to the server's socket named by
//! `RR_RELAY`), then loops on [`WorkerSide::receive`] and answers each task with
//! [`WorkerSide::respond`], [`WorkerSide::error`] or [`WorkerSide::request_stop`].
//! Control frames (the pid handshake, the stop command) are handled inside
//! `receive`; a user of this side never sees them.

use crate::config::{RelayAddress, DEFAULT_MAX_FRAME_BYTES};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{CONTROL, EMPTY, ERROR, RAW};
use crate::payload::Payload;
use crate::relay::{Relay, RelayError, Transport};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The worker's end of a relay to the server.
pub struct WorkerSide {
    relay: Relay,
    /// Whether a task was received and not answered yet.
    answer_due: bool,
}

fn relay_error(what: &str, error: RelayError) -> Error {
    Error::new(ErrorKind::WorkerError, format!("{what}: {error}"))
}

impl WorkerSide {
    /// Connects to the server. `relay` is `"pipes"` (stdin and stdout),
    /// `"tcp://host:port"` or `"unix://path"`; `None` reads `RR_RELAY`, else pipes.
    ///
    /// Over pipes, the relay takes the process's stdin and stdout; then stdin (fd 0)
    /// reads /dev/null and stdout (fd 1) writes to stderr, so that neither a stray
    /// print nor a read of stdin (by the worker or a child it starts) touches the frames.
    pub fn connect(relay: Option<&str>) -> Result<WorkerSide> {
        let relay = match relay {
            Some(relay) => relay.to_string(),
            None => std::env::var("RR_RELAY").unwrap_or_else(|_| "pipes".to_string()),
        };
        let address = RelayAddress::parse(&relay).map_err(|e| e.with_kind(ErrorKind::InvalidArgument))?;
        let cannot =
            |e: std::io::Error| Error::new(ErrorKind::WorkerError, format!("cannot connect to relay {relay}: {e}"));
        let relay = match address {
            RelayAddress::Pipes => {
                // Copies that the worker's own children do not inherit.
                let duplicate = |fd: i32| {
                    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that we own, or -1.
                    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
                    if copy < 0 {
                        Err(cannot(std::io::Error::last_os_error()))
                    } else {
                        // SAFETY: a fresh descriptor nobody else owns.
                        Ok(unsafe { OwnedFd::from_raw_fd(copy) })
                    }
                };
                let input = duplicate(0)?;
                let output = duplicate(1)?;
                // The standard streams no longer lead to the relay: a stray print goes
                // to stderr, and a read of stdin (by the worker's own children too,
                // which inherit fd 0) finds nothing instead of taking tasks' bytes.
                let null = std::fs::File::open("/dev/null").map_err(cannot)?;
                // SAFETY: dup2 onto descriptors 0 and 1 of this process, from live ones.
                if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 || unsafe { libc::dup2(2, 1) } < 0 {
                    return Err(cannot(std::io::Error::last_os_error()));
                }
                Relay::pipes(input, output, DEFAULT_MAX_FRAME_BYTES)
            }
            RelayAddress::Tcp(address) => {
                let stream = std::net::TcpStream::connect(&address).map_err(cannot)?;
                Relay::socket(OwnedFd::from(stream), Transport::Tcp, DEFAULT_MAX_FRAME_BYTES)
            }
            RelayAddress::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(&path).map_err(cannot)?;
                Relay::socket(OwnedFd::from(stream), Transport::Unix, DEFAULT_MAX_FRAME_BYTES)
            }
        };
        Ok(WorkerSide { relay, answer_due: false })
    }

    /// Waits for the next task. `Ok(None)` means the server asked this worker to stop
    /// (or closed the relay): leave the loop and exit.
    pub fn receive(&mut self) -> Result<Option<Payload>> {
        if self.answer_due {
            return Err(Error::new(ErrorKind::State, "the previous task was not answered yet"));
        }
        loop {
            let mut bytes = Vec::new();
            let head = match self.relay.receive(&mut bytes) {
                Ok(head) => head,
                Err(RelayError::Closed) => return Ok(None),
                Err(e) => return Err(relay_error("cannot receive a task", e)),
            };
            if head.has(CONTROL) && !head.has(RAW) && !bytes.is_empty() {
                let command: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                    Error::new(
                        ErrorKind::WorkerError,
                        format!("unknown control frame {:?}", String::from_utf8_lossy(&bytes)),
                    )
                })?;
                if command.get("pid").is_some() {
                    let answer = format!("{{\"pid\":{}}}", std::process::id());
                    self.relay.send_control(&answer).map_err(|e| relay_error("cannot answer the handshake", e))?;
                }
                if command.get("stop").and_then(|stop| stop.as_bool()) == Some(true) {
                    return Ok(None);
                }
                continue;
            }
            let context_len = bytes.len();
            self.relay.receive(&mut bytes).map_err(|e| relay_error("cannot receive a task's body", e))?;
            self.answer_due = true;
            return Ok(Some(Payload::from_parts(bytes, context_len)));
        }
    }

    /// Answers the current task with `context` and `body`.
    pub fn respond(&mut self, context: &[u8], body: &[u8]) -> Result<()> {
        let head = if context.is_empty() { CONTROL | EMPTY } else { CONTROL | RAW };
        self.answer(&[(head, context), (RAW, body)])
    }

    /// Answers the current task with a job error carrying `message`; the server keeps
    /// this worker.
    pub fn error(&mut self, message: &[u8]) -> Result<()> {
        self.answer(&[(CONTROL | RAW | ERROR, message)])
    }

    /// Answers the current task by asking to be replaced: the server runs the task on
    /// another worker and stops this one.
    pub fn request_stop(&mut self) -> Result<()> {
        self.answer(&[(CONTROL | RAW, br#"{"stop":true}"#), (RAW, b"")])
    }

    /// The descriptor answers are written to. Only for tests that must corrupt the
    /// stream on purpose; writing to it breaks the protocol.
    #[doc(hidden)]
    pub fn output_fd(&self) -> std::os::fd::RawFd {
        self.relay.write_fd()
    }

    /// The descriptor tasks are read from. Only for tests that look at what waits there.
    #[doc(hidden)]
    pub fn input_fd(&self) -> std::os::fd::RawFd {
        self.relay.read_fd()
    }

    /// Takes the current task as answered, with nothing sent. Only for tests that write
    /// an answer to [`WorkerSide::output_fd`] themselves.
    #[doc(hidden)]
    pub fn answered_elsewhere(&mut self) {
        self.answer_due = false;
    }

    fn answer(&mut self, frames: &[(u8, &[u8])]) -> Result<()> {
        if !self.answer_due {
            return Err(Error::new(ErrorKind::State, "there is no task to answer: call receive first"));
        }
        self.answer_due = false;
        self.relay.send(frames).map_err(|e| relay_error("cannot send the answer", e))
    }
}
