//! The worker side of the protocol, for programs that are workers.
//!
//! A worker connects (over its stdin and stdout, or to the server's socket named by
//! `RR_RELAY`), then loops on [`WorkerSide::receive`] and answers each task with
//! [`WorkerSide::respond`], [`WorkerSide::error`] or [`WorkerSide::request_stop`]; with
//! protocol V2 it may stream an answer with [`WorkerSide::send_chunk`] before the last
//! part goes with `respond`. Control frames (the pid handshake, the stop command, a
//! stream's PONG and STOP) are handled inside; a user of this side never sees them.

use crate::config::{Protocol, RelayAddress, DEFAULT_MAX_FRAME_BYTES};
use crate::error::{Error, ErrorKind, Result};
use crate::payload::Payload;
use crate::relay::{Relay, RelayError, Transport};
use crate::wire::{self, Incoming, ReceiveError, StreamSignal};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How many chunks of a stream are sent between two PINGs: the worker then waits for
/// the host's PONG before it sends more, so it never runs far ahead of its reader.
const CHUNKS_PER_PING: u64 = 5;

/// The worker's end of a relay to the server.
pub struct WorkerSide {
    relay: Relay,
    protocol: Protocol,
    /// Whether a task was received and not answered yet.
    answer_due: bool,
    /// Chunks of the current stream sent so far.
    chunks_sent: u64,
    /// A PING was sent and its PONG has not come yet.
    awaiting_pong: bool,
}

fn relay_error(what: &str, error: RelayError) -> Error {
    Error::new(ErrorKind::WorkerError, format!("{what}: {error}"))
}

impl WorkerSide {
    /// Connects to the server, speaking protocol V1 (see
    /// [`WorkerSide::connect_with_protocol`]).
    pub fn connect(relay: Option<&str>) -> Result<WorkerSide> {
        WorkerSide::connect_with_protocol(relay, Protocol::V1)
    }

    /// Connects to the server, speaking `protocol`. `relay` is `"pipes"` (stdin and
    /// stdout), `"tcp://host:port"` or `"unix://path"`; `None` reads `RR_RELAY`, else
    /// pipes.
    ///
    /// Over pipes, the relay takes the process's stdin and stdout; then stdin (fd 0)
    /// reads /dev/null and stdout (fd 1) writes to stderr, so that neither a stray
    /// print nor a read of stdin (by the worker or a child it starts) touches the frames.
    pub fn connect_with_protocol(relay: Option<&str>, protocol: Protocol) -> Result<WorkerSide> {
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
        Ok(WorkerSide { relay, protocol, answer_due: false, chunks_sent: 0, awaiting_pong: false })
    }

    /// Waits for the next task. `Ok(None)` means the server asked this worker to stop
    /// (or closed the relay): leave the loop and exit.
    pub fn receive(&mut self) -> Result<Option<Payload>> {
        if self.answer_due {
            return Err(Error::new(ErrorKind::State, "the previous task was not answered yet"));
        }
        match wire::receive_task(&mut self.relay, self.protocol, std::process::id()) {
            Ok(Incoming::Task(task)) => {
                self.answer_due = true;
                Ok(Some(task))
            }
            Ok(Incoming::Stop) => Ok(None),
            Err(ReceiveError::Relay(e)) => Err(relay_error("cannot receive a task", e)),
            Err(ReceiveError::Body(e)) => Err(relay_error("cannot receive a task's body", e)),
            Err(ReceiveError::Handshake(e)) => Err(relay_error("cannot answer the handshake", e)),
            Err(ReceiveError::UnknownControl(text)) => {
                Err(Error::new(ErrorKind::WorkerError, format!("unknown control frame {text:?}")))
            }
        }
    }

    /// Answers the current task with `context` and `body` (with protocol V2, after
    /// chunks sent with [`WorkerSide::send_chunk`]: the last part of the answer).
    pub fn respond(&mut self, context: &[u8], body: &[u8]) -> Result<()> {
        self.expect_answer_due()?;
        let sent = wire::send_answer(&mut self.relay, self.protocol, context, body, false, false);
        self.end_answer(sent)
    }

    /// Answers the current task with a job error carrying `message`; the server keeps
    /// this worker. With protocol V2, it also ends a stream that was being sent.
    pub fn error(&mut self, message: &[u8]) -> Result<()> {
        self.expect_answer_due()?;
        let sent = wire::send_error(&mut self.relay, self.protocol, message);
        self.end_answer(sent)
    }

    /// Answers the current task by asking to be replaced: the server runs the task on
    /// another worker and stops this one.
    pub fn request_stop(&mut self) -> Result<()> {
        self.expect_answer_due()?;
        if self.chunks_sent > 0 {
            return Err(Error::new(ErrorKind::State, "a stream was started: end it with respond or error"));
        }
        let sent = wire::send_answer(&mut self.relay, self.protocol, br#"{"stop":true}"#, b"", false, false);
        self.end_answer(sent)
    }

    /// Sends one chunk of a streamed answer to the current task (protocol V2 only); the
    /// last part goes with [`WorkerSide::respond`]. Every few chunks it asks the host
    /// for a PONG, and waits for it before the next chunk, so that it never runs far
    /// ahead of the host. When the host asked to stop the stream, the chunk is not
    /// sent: the stream is ended here (an empty last frame) and the error's kind is
    /// `Cancelled`; the task needs no other answer.
    pub fn send_chunk(&mut self, context: &[u8], body: &[u8]) -> Result<()> {
        self.expect_answer_due()?;
        if self.protocol != Protocol::V2 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "streamed answers need protocol V2 (this worker speaks V1)",
            ));
        }
        // What the host sent meanwhile: without waiting, unless a PONG is due.
        loop {
            let signal = wire::receive_stream_signal(&mut self.relay, self.awaiting_pong)
                .map_err(|e| relay_error("cannot read the host's answer to the stream", e))?;
            match signal {
                StreamSignal::Nothing => break,
                StreamSignal::Pong => self.awaiting_pong = false,
                StreamSignal::Stop => {
                    let ended = wire::send_answer(&mut self.relay, self.protocol, b"", b"", false, false);
                    self.end_answer(ended)?;
                    return Err(Error::new(ErrorKind::Cancelled, "the host stopped the stream"));
                }
            }
        }
        self.chunks_sent += 1;
        let ping = self.chunks_sent.is_multiple_of(CHUNKS_PER_PING);
        wire::send_answer(&mut self.relay, self.protocol, context, body, true, ping)
            .map_err(|e| relay_error("cannot send a chunk of the answer", e))?;
        self.awaiting_pong |= ping;
        Ok(())
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

    fn expect_answer_due(&self) -> Result<()> {
        if !self.answer_due {
            return Err(Error::new(ErrorKind::State, "there is no task to answer: call receive first"));
        }
        Ok(())
    }

    /// The answer to the current task was sent (or sending it failed): the next task
    /// may come.
    fn end_answer(&mut self, sent: std::result::Result<(), RelayError>) -> Result<()> {
        self.answer_due = false;
        self.chunks_sent = 0;
        // A PONG still on its way is skipped by the next receive.
        self.awaiting_pong = false;
        sent.map_err(|e| relay_error("cannot send the answer", e))
    }
}
