//! A relay: one framed, bidirectional byte channel to a worker (or, on the worker side,
//! to the server), over a pair of pipes or over a TCP or Unix socket.
//!
//! Writes put a whole message (up to two frames, prefixes and payloads) into one
//! vectored write. Reads go through a buffer, so a small answer (two frames) usually
//! costs one `read`; large payloads are read straight into their destination, so a
//! body is copied once, from the kernel into the answer's buffer. A declared size is
//! never trusted for allocation: the destination is at most max(1 MiB, what arrived)
//! ahead of the bytes that arrived (bodies up to 1 MiB get their buffer at once). The relay
//! knows nothing of processes or tasks.
//!
//! Two things make a relay to a child process safe to wait on and to write to:
//! - *The peer's end*: a child of the worker may hold the relay open after the worker
//!   died, so end-of-file may never come. A relay can be given a descriptor that
//!   becomes readable when the peer has ended (the worker's pidfd); every wait, for
//!   bytes or for room, ends on it as well.
//! - *SIGPIPE*: a write to a pipe nobody reads raises SIGPIPE, whose default action ends
//!   the whole process, and pipes have no `MSG_NOSIGNAL`. The host's end of a worker's
//!   pipes keeps its own copy of the read end of the pipe it writes to, so that pipe
//!   always has a reader and a write never raises the signal: a worker that died is
//!   seen by its exit (the peer's end, above) instead. Sockets are written with
//!   `MSG_NOSIGNAL`. A pipe relay without such a reader (the worker side's stdout; the
//!   host's, where the kernel has no pidfds) blocks SIGPIPE for the time of a write.
//!
//! A message larger than a pipe holds (64 KiB at first) goes through it in several
//! rounds, each waking the reader and then the writer again. So a pipe grows, once, to
//! 256 KiB when a message written to it or announced on it does not fit. Measured with
//! 64 KiB tasks over pipes, 4 workers, 64 in flight through the completion queue, six
//! alternations: 14-23k tasks/s before, 22-32k after; `rr_exec` 4 x 16: 25-33k before,
//! 34-42k after (bench/notes.md). Not further: the kernel counts a pipe's capacity
//! against its user's soft limit (pipe-user-pages-soft, 64 MiB), and once an unprivileged
//! user is there, its new pipes, in any program, get two pages; 256 KiB both ways is 128
//! workers' worth of that limit where 1 MiB would be 32. A pipe that cannot grow (that
//! limit, or pipe-max-size) stays as it is.

use crate::frame::{self, Prefix, PREFIX_LEN};
use crate::frame_v2;
use crate::sys;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the read buffer of each relay.
const READ_BUFFER_LEN: usize = 64 * 1024;
/// Payload bytes still to come above which reads bypass the buffer and go straight
/// into the destination (fewer copies, larger reads).
const DIRECT_READ_MIN: usize = 16 * 1024;
/// How far ahead of what has arrived a payload's buffer may be allocated: the larger of
/// this and what has arrived (the buffer doubles as bytes come). Large enough that a
/// body of up to 1 MiB gets its whole buffer at once (no reallocation, so it is copied
/// only from the kernel into its place); a lying declared size costs at most this much
/// before its bytes arrive.
const ALLOCATION_AHEAD: usize = 1024 * 1024;
/// How long, after a TCP peer ended, the bytes it sent before it ended may still be on
/// their way through the host's network stack (on one machine: microseconds).
const TCP_IN_FLIGHT_GRACE: Duration = Duration::from_millis(50);
/// Bytes of unexpected output quoted in an error message.
const QUOTED_BYTES: usize = 64;
/// A new pipe's capacity on Linux (16 pages).
const PIPE_DEFAULT_SIZE: usize = 64 * 1024;
/// How large a relay's pipes may grow (see `Relay::fit_pipe`).
const PIPE_GROWTH_LIMIT: usize = 256 * 1024;

/// The channel under a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A pipe to read and another to write.
    Pipes,
    /// A connected TCP socket.
    Tcp,
    /// A connected Unix stream socket.
    Unix,
}

/// Why a relay operation failed. Messages say what the peer did, in words.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// The peer closed the channel before a frame began.
    Closed,
    /// The peer closed the channel in the middle of a frame.
    Truncated { wanted: u64, got: u64 },
    /// The bytes read (`seen`) are not a frame header, as `why` says (typically stray
    /// output on stdout, or a worker that speaks the other protocol).
    NotAFrame { seen: Vec<u8>, why: &'static str },
    /// The peer sent these bytes when no message was due (after its answer: it answered
    /// more than once, or printed to the relay).
    Unexpected(Vec<u8>),
    /// The peer declared a frame above the limit.
    TooLarge { size: u64, limit: u64 },
    /// Nothing arrived before the deadline.
    Timeout,
    /// The frames are valid but not what the protocol expects here.
    Protocol(String),
    /// The read or write itself failed.
    Io(io::Error),
    /// A relay that does not wait (see [`Relay::set_waiting`]) has no more bytes now;
    /// what arrived so far is kept, and the same call goes on from there next time.
    WouldBlock,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Closed => write!(f, "the relay was closed (the peer closed its end or exited)"),
            RelayError::Truncated { wanted, got } => {
                write!(f, "the relay was closed in the middle of a frame ({got} of {wanted} bytes arrived)")
            }
            RelayError::NotAFrame { seen, why } => {
                write!(
                    f,
                    "the peer wrote something that is not a frame ({why}; a worker printing to its stdout corrupts \
                     the pipe relay): it begins with \"{}\"",
                    seen[..seen.len().min(QUOTED_BYTES)].escape_ascii()
                )
            }
            RelayError::Unexpected(bytes) => {
                write!(
                    f,
                    "the peer wrote {} bytes after its answer, when nothing was due (it answered more than once, or \
                     printed to its relay); they begin with \"{}\"",
                    bytes.len(),
                    bytes[..bytes.len().min(QUOTED_BYTES)].escape_ascii()
                )
            }
            RelayError::TooLarge { size, limit } => {
                write!(
                    f,
                    "the peer declared a frame of {size} bytes, above the limit of {limit} bytes (max_frame_bytes)"
                )
            }
            RelayError::Timeout => write!(f, "timed out waiting for the peer"),
            RelayError::Protocol(what) => write!(f, "protocol error: {what}"),
            RelayError::Io(e) => write!(f, "relay I/O failed: {e}"),
            RelayError::WouldBlock => write!(f, "no more bytes yet"),
        }
    }
}

impl RelayError {
    /// Whether the peer closed its end (EOF, broken pipe, reset): a worker that is
    /// exiting, rather than one that misbehaves while alive.
    pub(crate) fn peer_closed(&self) -> bool {
        match self {
            RelayError::Closed | RelayError::Truncated { .. } => true,
            RelayError::Io(e) => matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            _ => false,
        }
    }
}

/// How far a message got (see [`Relay::send_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// All of it.
    Whole,
    /// This many bytes: the peer's buffer is full.
    Partly(usize),
}

impl From<io::Error> for RelayError {
    fn from(e: io::Error) -> RelayError {
        RelayError::Io(e)
    }
}

/// One end of a framed channel.
pub(crate) struct Relay {
    read_fd: OwnedFd,
    /// `None` for sockets, which read and write on the same descriptor.
    write_fd: Option<OwnedFd>,
    /// Our own reader of the pipe we write to (see the module docs: no SIGPIPE).
    write_pipe_reader: Option<OwnedFd>,
    /// Readable once the peer has ended for good (see the module docs).
    peer_end: Option<Arc<OwnedFd>>,
    transport: Transport,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    max_frame: u64,
    /// Reads and blocked writes fail with `Timeout` after this instant (handshakes,
    /// exec_ttl, stop).
    deadline: Option<Instant>,
    /// Whether reads wait for bytes (the default); if not, they fail with `WouldBlock`.
    waits: bool,
    /// Set by the owner of a relay that does not wait, when it learnt that the peer
    /// ended: a read that finds nothing is then its end of the stream.
    peer_ended: bool,
    /// The frame being read when a read that does not wait ran out of bytes.
    pending: Option<PendingFrame>,
    /// The capacity of the pipes read from and written to; `usize::MAX` for sockets,
    /// and for a pipe that could not grow (see `fit_pipe`).
    read_pipe_size: usize,
    write_pipe_size: usize,
}

/// The head of a frame, and how many of its payload bytes are still to come.
#[derive(Debug, Clone, Copy)]
struct PendingFrame {
    head: FrameHead,
    size: u64,
    left: usize,
}

#[derive(Debug, Clone, Copy)]
enum FrameHead {
    V1(Prefix),
    V2(frame_v2::Header, [u32; frame_v2::MAX_OPTIONS]),
}

impl Relay {
    /// A relay that reads from `read` and writes to `write` (pipes).
    pub(crate) fn pipes(read: OwnedFd, write: OwnedFd, max_frame: u64) -> Relay {
        Relay::build(read, Some(write), Transport::Pipes, max_frame)
    }

    /// A relay over a connected socket.
    pub(crate) fn socket(stream: OwnedFd, transport: Transport, max_frame: u64) -> Relay {
        debug_assert!(transport != Transport::Pipes);
        if transport == Transport::Tcp {
            // Small frames must leave at once; and see `fill` for the ACK side.
            let _ = sys::set_socket_option(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        }
        Relay::build(stream, None, transport, max_frame)
    }

    fn build(read_fd: OwnedFd, write_fd: Option<OwnedFd>, transport: Transport, max_frame: u64) -> Relay {
        let pipe_size = if transport == Transport::Pipes { PIPE_DEFAULT_SIZE } else { usize::MAX };
        Relay {
            read_fd,
            write_fd,
            write_pipe_reader: None,
            peer_end: None,
            transport,
            buffer: vec![0u8; READ_BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            max_frame,
            deadline: None,
            waits: true,
            peer_ended: false,
            pending: None,
            read_pipe_size: pipe_size,
            write_pipe_size: pipe_size,
        }
    }

    /// Grows the pipe of `fd`, whose capacity is `*size`, to `PIPE_GROWTH_LIMIT` when
    /// `needed` bytes do not fit; one that cannot grow is left alone from then on.
    fn fit_pipe(fd: std::os::fd::RawFd, size: &mut usize, needed: usize) {
        if needed > *size && *size < PIPE_GROWTH_LIMIT {
            *size = sys::grow_pipe(fd, PIPE_GROWTH_LIMIT).unwrap_or(usize::MAX);
        }
    }

    /// Makes reads wait for bytes (`true`, the default) or fail with `WouldBlock` when
    /// none are there (for an event loop that polls the descriptor itself). The read
    /// descriptor must be non-blocking for the latter (see [`Relay::make_nonblocking`]).
    pub(crate) fn set_waiting(&mut self, waits: bool) {
        self.waits = waits;
    }

    /// Puts the read descriptor in non-blocking mode, once: a read that would wait then
    /// fails at once (the waits go through `poll`, as they do anyway with a deadline or
    /// the peer's end to watch).
    pub(crate) fn make_nonblocking(&mut self) -> io::Result<()> {
        sys::set_nonblocking(self.read_fd.as_raw_fd(), true)
    }

    /// Notes that the peer has ended (for a relay that does not wait: its owner watches
    /// the peer's end itself).
    pub(crate) fn set_peer_ended(&mut self) {
        self.peer_ended = true;
    }

    /// Keeps `reader`, the read end of the pipe this relay writes to, open: then writing
    /// never raises SIGPIPE, whatever became of the peer (see the module docs).
    pub(crate) fn keep_write_pipe_reader(&mut self, reader: OwnedFd) {
        debug_assert!(self.transport == Transport::Pipes);
        self.write_pipe_reader = Some(reader);
    }

    /// Makes every wait end, as if the peer closed the relay, once `peer_end` is
    /// readable: a descriptor that becomes so when the peer has ended (a pidfd).
    pub(crate) fn watch_peer_end(&mut self, peer_end: Option<Arc<OwnedFd>>) {
        self.peer_end = peer_end;
    }

    fn peer_end_fd(&self) -> Option<std::os::fd::RawFd> {
        self.peer_end.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// What a write does when the peer's buffer is full: waits for room (until the
    /// deadline, or the peer's end) with `wait_for_room`, else stops there.
    fn when_full(&self, wait_for_room: bool) -> sys::WhenFull {
        if wait_for_room {
            sys::WhenFull::Wait { deadline: self.deadline, gone: self.peer_end_fd() }
        } else {
            sys::WhenFull::Stop
        }
    }

    /// The descriptor reads come from.
    pub(crate) fn read_fd(&self) -> std::os::fd::RawFd {
        self.read_fd.as_raw_fd()
    }

    /// The descriptor writes go to.
    pub(crate) fn write_fd(&self) -> std::os::fd::RawFd {
        self.write_fd.as_ref().unwrap_or(&self.read_fd).as_raw_fd()
    }

    /// After the peer closed the relay with `error`, whether it left bytes we sent it
    /// unread: then it cannot have run the message those bytes belong to. On a pipe
    /// the unread bytes are still in the pipe (FIONREAD works on either end); a socket
    /// whose peer closes with unread data resets the connection, and one whose peer had
    /// closed before our bytes arrived answers them with a reset too, which we may see
    /// only as a pending socket error after reading the end of the stream.
    pub(crate) fn peer_left_unread(&self, error: &RelayError) -> bool {
        match self.transport {
            Transport::Pipes => {
                let mut queued: libc::c_int = 0;
                // SAFETY: FIONREAD writes one c_int.
                let result = unsafe { libc::ioctl(self.write_fd(), libc::FIONREAD, &mut queued) };
                result == 0 && queued > 0
            }
            Transport::Tcp | Transport::Unix => match error {
                RelayError::Io(e) => e.raw_os_error() == Some(libc::ECONNRESET),
                RelayError::Closed => {
                    matches!(sys::take_socket_error(self.read_fd()), Some(libc::ECONNRESET | libc::EPIPE))
                }
                _ => false,
            },
        }
    }

    /// Sets or clears the instant after which reads, and writes the peer does not make
    /// room for, fail with `Timeout`.
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The deadline set, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Changes the largest frame accepted from the peer.
    pub(crate) fn set_max_frame(&mut self, max_frame: u64) {
        self.max_frame = max_frame;
    }

    /// Sends one message of one or two frames with a single vectored write.
    pub(crate) fn send(&mut self, frames: &[(u8, &[u8])]) -> Result<(), RelayError> {
        self.send_from(frames, 0, true).map(|_| ())
    }

    /// Sends what is left of a message of one or two frames, `already` bytes of which
    /// an earlier call sent. With `wait_for_room` false, stops when the peer's buffer is
    /// full instead of waiting for the peer to read (so it never blocks).
    pub(crate) fn send_from(
        &mut self,
        frames: &[(u8, &[u8])],
        already: usize,
        wait_for_room: bool,
    ) -> Result<Sent, RelayError> {
        let when_full = self.when_full(wait_for_room);
        let (first, rest) = frames.split_first().expect("at least one frame");
        let first_prefix = frame::encode(first.0, first.1.len() as u64);
        let second_prefix;
        let parts: &[&[u8]] = match rest {
            [] => &[&first_prefix, first.1],
            [second] => {
                second_prefix = frame::encode(second.0, second.1.len() as u64);
                &[&first_prefix, first.1, &second_prefix, second.1]
            }
            _ => panic!("a message has at most two frames"),
        };
        self.write_parts(parts, already, when_full)
    }

    /// Sends what is left of one V2 frame (protocol V2), `already` bytes of which an
    /// earlier call sent: a header with `flags`, the `stream` bits and `options`, and a
    /// payload made of `payload` (up to three parts, written as they are: no copy).
    /// With `wait_for_room` false, stops when the peer's buffer is full.
    pub(crate) fn send_v2_from(
        &mut self,
        flags: u8,
        stream: u8,
        options: &[u32],
        payload: &[&[u8]],
        already: usize,
        wait_for_room: bool,
    ) -> Result<Sent, RelayError> {
        let when_full = self.when_full(wait_for_room);
        let payload_len: usize = payload.iter().map(|part| part.len()).sum();
        let payload_len = u32::try_from(payload_len).map_err(|_| {
            RelayError::Protocol(format!("a message of {payload_len} bytes is more than a V2 frame holds (4 GiB)"))
        })?;
        let (header, header_len) = frame_v2::encode(flags, stream, options, payload_len);
        let mut parts: [&[u8]; 4] = [&header[..header_len], &[], &[], &[]];
        assert!(payload.len() <= 3, "at most three payload parts");
        parts[1..=payload.len()].copy_from_slice(payload);
        self.write_parts(&parts[..=payload.len()], already, when_full)
    }

    /// Sends one whole V2 frame (see [`Relay::send_v2_from`]), waiting for room.
    pub(crate) fn send_v2(
        &mut self,
        flags: u8,
        stream: u8,
        options: &[u32],
        payload: &[&[u8]],
    ) -> Result<(), RelayError> {
        self.send_v2_from(flags, stream, options, payload, 0, true).map(|_| ())
    }

    /// Writes `parts` in one vectored write, from `already` bytes in.
    fn write_parts(&mut self, parts: &[&[u8]], already: usize, when_full: sys::WhenFull) -> Result<Sent, RelayError> {
        if self.peer_ended && matches!(when_full, sys::WhenFull::Stop) {
            // Its owner learnt that the peer ended: what is written would only fill a
            // pipe whose reader is kept open (see `keep_write_pipe_reader`), and the
            // room it waits for would never come.
            return Err(RelayError::Io(io::Error::from_raw_os_error(libc::EPIPE)));
        }
        let write_fd = self.write_fd();
        let is_socket = self.transport != Transport::Pipes;
        let total: usize = parts.iter().map(|part| part.len()).sum();
        if already == 0 {
            Relay::fit_pipe(write_fd, &mut self.write_pipe_size, total);
        }
        let write = || sys::write_vectored(write_fd, is_socket, parts, already, when_full);
        let may_raise_sigpipe = self.transport == Transport::Pipes && self.write_pipe_reader.is_none();
        let written = if may_raise_sigpipe { sys::without_sigpipe(write) } else { write() };
        match written {
            Ok(written) if written == total => Ok(Sent::Whole),
            Ok(written) => Ok(Sent::Partly(written)),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(RelayError::Timeout),
            Err(e) => Err(RelayError::Io(e)),
        }
    }

    /// Fails if the peer sent anything since the last message was read: bytes still in
    /// the buffer, or waiting on the channel (one `poll` that does not wait). Called
    /// before a request is sent, so that a second answer to the last request that has
    /// arrived by then is not taken for the answer to the next one. (One that arrives
    /// later cannot be told from that answer: neither protocol numbers its messages.)
    /// `Closed` if the peer closed the channel meanwhile.
    pub(crate) fn expect_quiet(&mut self) -> Result<(), RelayError> {
        if self.start == self.end {
            if !sys::is_readable_now(self.read_fd())? {
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            if self.fill()? == 0 {
                return Err(RelayError::Closed);
            }
        }
        Err(RelayError::Unexpected(self.take_buffered()))
    }

    /// Whether bytes have arrived that were not read yet (buffered, or waiting on the
    /// channel), or the channel ended: a read would not wait.
    pub(crate) fn has_input(&self) -> Result<bool, RelayError> {
        Ok(self.start < self.end || sys::is_readable_now(self.read_fd())?)
    }

    /// Takes the bytes read but not yet part of a message: after a whole message, the
    /// peer sent more than it should have (see [`Relay::expect_quiet`]).
    pub(crate) fn take_buffered(&mut self) -> Vec<u8> {
        let bytes = self.buffer[self.start..self.end].to_vec();
        self.start = self.end;
        bytes
    }

    /// Reads the next frame, appending its payload to `out`; returns its prefix.
    /// `Closed` means the peer closed the channel cleanly between frames.
    ///
    /// A relay that does not wait may fail with `WouldBlock`: the same call later goes on
    /// with the same `out`.
    pub(crate) fn receive(&mut self, out: &mut Vec<u8>) -> Result<Prefix, RelayError> {
        let pending = match self.pending.take() {
            Some(pending) => pending,
            None => {
                let prefix = self.receive_prefix()?;
                if prefix.size > self.max_frame {
                    return Err(RelayError::TooLarge { size: prefix.size, limit: self.max_frame });
                }
                let left = usize::try_from(prefix.size)
                    .map_err(|_| RelayError::TooLarge { size: prefix.size, limit: self.max_frame })?;
                PendingFrame { head: FrameHead::V1(prefix), size: prefix.size, left }
            }
        };
        let FrameHead::V1(prefix) = pending.head else {
            return Err(RelayError::Protocol("a V2 frame was half read where a V1 frame is read".into()));
        };
        self.finish_payload(pending, out)?;
        Ok(prefix)
    }

    /// Reads the rest of `pending`'s payload into `out`; keeps it pending on `WouldBlock`.
    fn finish_payload(&mut self, mut pending: PendingFrame, out: &mut Vec<u8>) -> Result<(), RelayError> {
        // Room for the rest of the payload and the prefix of a frame after it (a V1
        // answer's body follows its context).
        let fd = self.read_fd();
        Relay::fit_pipe(fd, &mut self.read_pipe_size, pending.left.saturating_add(PREFIX_LEN));
        match self.receive_payload(pending.size, &mut pending.left, out) {
            Err(RelayError::WouldBlock) => {
                self.pending = Some(pending);
                Err(RelayError::WouldBlock)
            }
            other => other,
        }
    }

    /// Reads the next V2 frame (protocol V2), appending its payload to `out`; returns
    /// its header and options. `Closed` means the peer closed the channel cleanly between
    /// frames.
    pub(crate) fn receive_v2(
        &mut self,
        out: &mut Vec<u8>,
    ) -> Result<(frame_v2::Header, [u32; frame_v2::MAX_OPTIONS]), RelayError> {
        let pending = match self.pending.take() {
            Some(pending) => pending,
            None => self.receive_v2_head()?,
        };
        let FrameHead::V2(header, options) = pending.head else {
            return Err(RelayError::Protocol("a V1 frame was half read where a V2 frame is read".into()));
        };
        self.finish_payload(pending, out)?;
        Ok((header, options))
    }

    /// Reads a V2 header and its options; consumes nothing until all of them are here.
    fn receive_v2_head(&mut self) -> Result<PendingFrame, RelayError> {
        self.buffer_at_least(frame_v2::HEADER_LEN)?;
        let bytes: &[u8; frame_v2::HEADER_LEN] =
            self.buffer[self.start..self.start + frame_v2::HEADER_LEN].try_into().expect("12 bytes");
        let header = match frame_v2::decode(bytes) {
            Ok(header) => header,
            Err(why) => {
                // The rest of the stream cannot be trusted; keep what we saw for the message.
                let seen = self.take_buffered();
                let why = match why {
                    frame_v2::NotAHeader::Crc => "a 12-byte V2 header whose CRC does not match",
                    frame_v2::NotAHeader::Version { .. } => "a V2 header of an unknown version or length",
                };
                return Err(RelayError::NotAFrame { seen, why });
            }
        };
        let options_len = 4 * header.options;
        self.buffer_at_least(frame_v2::HEADER_LEN + options_len)?;
        self.start += frame_v2::HEADER_LEN;
        let options = frame_v2::decode_options(&self.buffer[self.start..self.start + options_len], header.options);
        self.start += options_len;
        let size = u64::from(header.payload_len);
        if size > self.max_frame {
            return Err(RelayError::TooLarge { size, limit: self.max_frame });
        }
        Ok(PendingFrame { head: FrameHead::V2(header, options), size, left: size as usize })
    }

    /// Reads until at least `len` bytes are buffered (`len` is at most a header's size).
    /// End-of-file first: `Closed` when nothing is buffered, else `Truncated`.
    fn buffer_at_least(&mut self, len: usize) -> Result<(), RelayError> {
        while self.end - self.start < len {
            if self.buffer.len() - self.start < len {
                self.compact();
            }
            if self.fill()? == 0 {
                if self.end == self.start {
                    return Err(RelayError::Closed);
                }
                let got = (self.end - self.start) as u64;
                self.start = self.end;
                return Err(RelayError::Truncated { wanted: len as u64, got });
            }
        }
        Ok(())
    }

    fn receive_prefix(&mut self) -> Result<Prefix, RelayError> {
        self.buffer_at_least(PREFIX_LEN)?;
        let bytes: &[u8; PREFIX_LEN] = self.buffer[self.start..self.start + PREFIX_LEN].try_into().expect("17 bytes");
        let Some(prefix) = frame::decode(bytes) else {
            // The rest of the stream cannot be trusted; keep what we saw for the message.
            let seen = self.take_buffered();
            return Err(RelayError::NotAFrame { seen, why: "a 17-byte prefix whose two sizes differ" });
        };
        self.start += PREFIX_LEN;
        Ok(prefix)
    }

    /// Reads the `left` bytes still to come of a payload of `size` bytes into `out`,
    /// counting `left` down as they come (so that a `WouldBlock` loses nothing).
    fn receive_payload(&mut self, size: u64, left: &mut usize, out: &mut Vec<u8>) -> Result<(), RelayError> {
        let size_usize = usize::try_from(size).map_err(|_| RelayError::TooLarge { size, limit: self.max_frame })?;
        if out.capacity() == 0 {
            // One allocation for the whole message when it has all arrived (a small
            // answer's context and body come in one read): size it by what is here.
            out.reserve_exact((self.end - self.start).max((*left).min(ALLOCATION_AHEAD)));
        }
        let buffered = (*left).min(self.end - self.start);
        out.extend_from_slice(&self.buffer[self.start..self.start + buffered]);
        self.start += buffered;
        *left -= buffered;
        while *left > 0 {
            let arrived = if *left >= DIRECT_READ_MIN {
                // Grow with what has arrived (never by the declared size alone), only
                // when the room left is small, then read straight into the destination.
                if out.capacity() - out.len() < DIRECT_READ_MIN {
                    out.reserve_exact((*left).min(out.len().max(ALLOCATION_AHEAD)));
                }
                let spare = out.spare_capacity_mut();
                let want = spare.len().min(*left);
                // SAFETY: the spare capacity holds at least `want` writable bytes.
                let got = unsafe { self.read_into(spare.as_mut_ptr().cast(), want) }?;
                // SAFETY: `read_into` initialised `got` bytes of the spare capacity.
                unsafe { out.set_len(out.len() + got) };
                got
            } else {
                // The buffer is empty here: everything buffered was taken above.
                self.start = 0;
                self.end = 0;
                self.fill()?;
                let take = (*left).min(self.end);
                out.extend_from_slice(&self.buffer[..take]);
                self.start = take;
                take
            };
            if arrived == 0 {
                return Err(RelayError::Truncated { wanted: size, got: (size_usize - *left) as u64 });
            }
            *left -= arrived;
        }
        Ok(())
    }

    /// Moves the unread bytes to the front of the buffer.
    fn compact(&mut self) {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Reads once into the free end of the buffer; returns the bytes read (0 = EOF).
    fn fill(&mut self) -> Result<usize, RelayError> {
        let end = self.end;
        let room = self.buffer.len() - end;
        debug_assert!(room > 0);
        let ptr = self.buffer[end..].as_mut_ptr();
        // SAFETY: `ptr` points at `room` writable bytes of our buffer.
        let got = unsafe { self.read_into(ptr, room) }?;
        self.end += got;
        Ok(got)
    }

    /// Reads once into `len` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes.
    unsafe fn read_into(&mut self, ptr: *mut u8, len: usize) -> Result<usize, RelayError> {
        let fd = self.read_fd.as_raw_fd();
        if self.transport == Transport::Tcp {
            // A peer that sends a message as several small segments without TCP_NODELAY
            // (PHP's socket relay: a send per prefix and per payload, or per frame)
            // waits for our ACK of the first before the next leaves; a delayed ACK would
            // stall it ~40 ms. Quick ACK mode does not stick, so re-arm it per read.
            let _ = sys::set_socket_option(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
        }
        let mut must_wait = self.waits && (self.deadline.is_some() || self.peer_end.is_some());
        loop {
            if must_wait {
                match sys::wait_for(fd, libc::POLLIN, self.peer_end_fd(), self.deadline)? {
                    sys::Ready::Yes => {}
                    sys::Ready::TimedOut => return Err(RelayError::Timeout),
                    sys::Ready::Gone => {
                        let in_flight = self.transport == Transport::Tcp
                            && sys::wait_for(fd, libc::POLLIN, None, Some(Instant::now() + TCP_IN_FLIGHT_GRACE))?
                                == sys::Ready::Yes;
                        if !in_flight {
                            // The peer ended and nothing it sent is left: its end of the
                            // stream, whoever else still holds the channel open.
                            return Ok(0);
                        }
                    }
                }
            }
            // SAFETY: forwarded from our caller's contract.
            match unsafe { sys::read_raw(fd, ptr, len) } {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.waits {
                        return if self.peer_ended { Ok(0) } else { Err(RelayError::WouldBlock) };
                    }
                    // A non-blocking descriptor read by a relay that waits: wait, then read.
                    must_wait = true;
                }
                other => return Ok(other?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CONTROL, RAW};
    use std::os::unix::net::UnixStream;

    fn pipe_pair(max_frame: u64) -> (Relay, Relay) {
        let (a_read, b_write) = std::io::pipe().unwrap();
        let (b_read, a_write) = std::io::pipe().unwrap();
        (Relay::pipes(a_read.into(), a_write.into(), max_frame), Relay::pipes(b_read.into(), b_write.into(), max_frame))
    }

    fn raw_pipe(max_frame: u64) -> (Relay, std::io::PipeWriter) {
        let (read, write) = std::io::pipe().unwrap();
        let (_unused_read, unused_write) = std::io::pipe().unwrap();
        (Relay::pipes(read.into(), unused_write.into(), max_frame), write)
    }

    #[test]
    fn two_frames_round_trip_in_one_buffer() {
        let (mut a, mut b) = pipe_pair(1 << 20);
        a.send(&[(CONTROL | RAW, b"ctx"), (RAW, b"body")]).unwrap();
        let mut out = Vec::new();
        let first = b.receive(&mut out).unwrap();
        assert!(first.has(CONTROL | RAW));
        // The second frame is already buffered: it must not need another read.
        assert_eq!(b.end - b.start, PREFIX_LEN + 4);
        let second = b.receive(&mut out).unwrap();
        assert_eq!(second.flags, RAW);
        assert_eq!(out, b"ctxbody");
    }

    #[test]
    fn a_message_the_peer_has_no_room_for_is_sent_in_two_goes() {
        let (mut a, mut b) = pipe_pair(1 << 20);
        // As the pipe factory leaves a worker's stdin.
        sys::set_nonblocking(a.write_fd(), true).unwrap();
        // SAFETY: a valid pipe fd of ours; F_SETPIPE_SZ takes a size.
        let size = unsafe { libc::fcntl(a.write_fd(), libc::F_SETPIPE_SZ, 4096) };
        assert!(size >= 4096, "cannot shrink the pipe: {}", io::Error::last_os_error());
        let body: Vec<u8> = (0..3 * size as u32).map(|i| (i % 253) as u8).collect();
        let frames = [(CONTROL | RAW, &b"ctx"[..]), (RAW, &body[..])];
        let Sent::Partly(already) = a.send_from(&frames, 0, false).unwrap() else {
            panic!("the whole message fit in a pipe of {size} bytes");
        };
        assert!(already > 0 && already <= size as usize, "{already} bytes in a pipe of {size}");
        assert_eq!(a.send_from(&frames, already, false).unwrap(), Sent::Partly(already), "nobody read");
        let receiver = std::thread::spawn(move || {
            let mut out = Vec::new();
            b.receive(&mut out).unwrap();
            b.receive(&mut out).unwrap();
            out
        });
        assert_eq!(a.send_from(&frames, already, true).unwrap(), Sent::Whole);
        let out = receiver.join().unwrap();
        assert_eq!(&out[..3], b"ctx");
        assert!(out[3..] == body[..], "the two goes must make the message, byte for byte");
    }

    /// The capacity of the pipe of `fd`.
    fn pipe_size(fd: std::os::fd::RawFd) -> usize {
        // SAFETY: a valid pipe fd of ours; F_GETPIPE_SZ takes no argument.
        let size = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
        assert!(size > 0, "F_GETPIPE_SZ: {}", io::Error::last_os_error());
        size as usize
    }

    #[test]
    fn a_message_that_does_not_fit_in_the_pipe_grows_it_once() {
        let (mut a, mut b) = pipe_pair(1 << 24);
        assert_eq!(pipe_size(a.write_fd()), PIPE_DEFAULT_SIZE, "a new pipe's capacity");
        // Small messages leave it as it is.
        for _ in 0..100 {
            a.send(&[(CONTROL | RAW, b"ctx"), (RAW, &[7u8; 4096])]).unwrap();
            let mut out = Vec::new();
            b.receive(&mut out).unwrap();
            b.receive(&mut out).unwrap();
        }
        assert_eq!(pipe_size(a.write_fd()), PIPE_DEFAULT_SIZE);
        // A 100 KiB message fits once the pipe has grown: the write needs no reader.
        let body: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 251) as u8).collect();
        sys::set_nonblocking(a.write_fd(), true).unwrap();
        assert_eq!(a.send_from(&[(CONTROL | RAW, b"ctx"), (RAW, &body)], 0, false).unwrap(), Sent::Whole);
        assert_eq!(pipe_size(a.write_fd()), PIPE_GROWTH_LIMIT);
        let mut out = Vec::new();
        b.receive(&mut out).unwrap();
        b.receive(&mut out).unwrap();
        assert!(out[3..] == body[..]);
        // Larger ones do not grow it further: they go in several writes.
        let huge = vec![1u8; 3 * PIPE_GROWTH_LIMIT];
        let receiver = std::thread::spawn(move || {
            let mut out = Vec::new();
            b.receive(&mut out).unwrap();
            b.receive(&mut out).unwrap();
            out.len()
        });
        a.send(&[(CONTROL | RAW, b"ctx"), (RAW, &huge)]).unwrap();
        assert_eq!(receiver.join().unwrap(), 3 + huge.len());
        assert_eq!(pipe_size(a.write_fd()), PIPE_GROWTH_LIMIT);
    }

    #[test]
    fn a_frame_announced_larger_than_the_pipe_grows_it_for_the_writer() {
        let (mut relay, mut writer) = raw_pipe(1 << 24);
        let body = vec![9u8; 200 * 1024];
        let prefix = frame::encode(RAW, body.len() as u64);
        // The writer blocks once the pipe is full: until the reader has seen the prefix
        // and grown the pipe, or read the rest.
        let sender = std::thread::spawn(move || {
            use std::io::Write;
            writer.write_all(&prefix).unwrap();
            writer.write_all(&body).unwrap();
            writer
        });
        let mut out = Vec::new();
        relay.receive(&mut out).unwrap();
        assert_eq!(out.len(), 200 * 1024);
        let _writer = sender.join().unwrap();
        assert_eq!(pipe_size(relay.read_fd()), PIPE_GROWTH_LIMIT);
    }

    #[test]
    fn a_small_message_costs_one_allocation() {
        let (mut a, mut b) = pipe_pair(1 << 20);
        a.send(&[(CONTROL | RAW, b"some context"), (RAW, b"and a body")]).unwrap();
        let mut out = Vec::new();
        b.receive(&mut out).unwrap();
        let first_buffer = out.as_ptr();
        b.receive(&mut out).unwrap();
        assert_eq!(out, b"some contextand a body");
        assert_eq!(out.as_ptr(), first_buffer, "the body must not reallocate the buffer");
    }

    #[test]
    fn large_payloads_over_unix_sockets_arrive_whole() {
        let (x, y) = UnixStream::pair().unwrap();
        let mut a = Relay::socket(OwnedFd::from(x), Transport::Unix, 1 << 30);
        let mut b = Relay::socket(OwnedFd::from(y), Transport::Unix, 1 << 30);
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sender = std::thread::spawn(move || {
            a.send(&[(CONTROL | RAW, b""), (RAW, &body)]).unwrap();
            body
        });
        let mut out = Vec::new();
        b.receive(&mut out).unwrap();
        assert!(out.is_empty());
        b.receive(&mut out).unwrap();
        let body = sender.join().unwrap();
        assert_eq!(out.len(), body.len());
        assert!(out == body);
    }

    #[test]
    fn stray_output_is_not_a_frame() {
        use std::io::Write;
        let (mut relay, mut writer) = raw_pipe(1 << 20);
        writer.write_all(b"Hello from a worker that prints\n").unwrap();
        let err = relay.receive(&mut Vec::new()).unwrap_err();
        assert!(matches!(err, RelayError::NotAFrame { .. }), "{err}");
        assert!(err.to_string().contains("Hello from a wor"), "{err}");
    }

    #[test]
    fn declared_size_above_limit_is_refused_without_allocating() {
        use std::io::Write;
        let (mut relay, mut writer) = raw_pipe(1 << 20);
        writer.write_all(&frame::encode(CONTROL | RAW, 1 << 40)).unwrap();
        let mut out = Vec::new();
        let err = relay.receive(&mut out).unwrap_err();
        assert!(matches!(err, RelayError::TooLarge { size, limit } if size == 1 << 40 && limit == 1 << 20));
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn a_lying_size_grows_the_buffer_only_with_what_arrived() {
        use std::io::Write;
        let (mut relay, mut writer) = raw_pipe(1 << 40);
        let feeder = std::thread::spawn(move || {
            writer.write_all(&frame::encode(RAW, 1 << 39)).unwrap();
            writer.write_all(&[7u8; 100_000]).unwrap();
        });
        let mut out = Vec::new();
        let err = relay.receive(&mut out).unwrap_err();
        feeder.join().unwrap();
        assert!(matches!(err, RelayError::Truncated { got: 100_000, .. }), "{err}");
        assert!(out.capacity() <= 100_000 + ALLOCATION_AHEAD, "capacity {}", out.capacity());
    }

    #[test]
    fn a_lying_size_is_never_allocated_far_ahead_of_large_arrivals() {
        use std::io::Write;
        let (mut relay, mut writer) = raw_pipe(1 << 40);
        let arrived = 5 * ALLOCATION_AHEAD + 123;
        let feeder = std::thread::spawn(move || {
            writer.write_all(&frame::encode(RAW, 1 << 39)).unwrap();
            writer.write_all(&vec![7u8; arrived]).unwrap();
        });
        let mut out = Vec::new();
        let err = relay.receive(&mut out).unwrap_err();
        feeder.join().unwrap();
        assert!(matches!(err, RelayError::Truncated { .. }), "{err}");
        assert_eq!(out.len(), arrived);
        assert!(out.capacity() <= 2 * arrived + ALLOCATION_AHEAD, "capacity {}", out.capacity());
    }

    #[test]
    fn eof_between_frames_is_closed_and_inside_a_frame_is_truncated() {
        use std::io::Write;
        let (mut relay, writer) = raw_pipe(1 << 20);
        drop(writer);
        assert!(matches!(relay.receive(&mut Vec::new()), Err(RelayError::Closed)));

        let (mut relay, mut writer) = raw_pipe(1 << 20);
        writer.write_all(&frame::encode(RAW, 10)).unwrap();
        writer.write_all(b"abc").unwrap();
        drop(writer);
        let err = relay.receive(&mut Vec::new()).unwrap_err();
        assert!(matches!(err, RelayError::Truncated { wanted: 10, got: 3 }), "{err}");

        let (mut relay, mut writer) = raw_pipe(1 << 20);
        writer.write_all(&frame::encode(RAW, 10)[..5]).unwrap();
        drop(writer);
        assert!(matches!(relay.receive(&mut Vec::new()), Err(RelayError::Truncated { wanted: 17, got: 5 })));
    }

    #[test]
    fn deadline_turns_silence_into_timeout() {
        let (mut relay, _writer) = raw_pipe(1 << 20);
        relay.set_deadline(Some(Instant::now() + std::time::Duration::from_millis(30)));
        assert!(matches!(relay.receive(&mut Vec::new()), Err(RelayError::Timeout)));
    }

    #[test]
    fn frames_split_across_many_small_writes_are_reassembled() {
        use std::io::Write;
        let (mut relay, mut writer) = raw_pipe(1 << 20);
        let mut bytes = frame::encode(CONTROL | RAW, 5).to_vec();
        bytes.extend_from_slice(b"hello");
        bytes.extend_from_slice(&frame::encode(RAW, 3));
        bytes.extend_from_slice(b"abc");
        let feeder = std::thread::spawn(move || {
            for byte in bytes {
                writer.write_all(&[byte]).unwrap();
            }
        });
        let mut out = Vec::new();
        relay.receive(&mut out).unwrap();
        relay.receive(&mut out).unwrap();
        feeder.join().unwrap();
        assert_eq!(out, b"helloabc");
    }
}
