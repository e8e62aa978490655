//! The messages a pool and a worker exchange, in either protocol: how each is laid out
//! as frames on a relay (`shared/SPEC.md` sections 1 and 4).
//!
//! | message | V1 (goridge 2) | V2 (goridge 3/4) |
//! |---|---|---|
//! | task | context frame (CONTROL\|RAW), body frame (RAW) | one frame: flags = codec, option = context length, payload = context + body |
//! | answer | context frame (CONTROL, RAW or EMPTY), body frame | one frame, the same shape; STREAM set on all but the last of a stream |
//! | job error | one frame, CONTROL\|ERROR | one frame, ERROR, no option |
//! | control | one frame, CONTROL, JSON payload | one frame, CONTROL\|JSON (answers may have CONTROL alone) |
//! | stream control | (none) | empty frames with STOP (host), PING (worker, on any frame), PONG (host) |
//!
//! Every message is one vectored write, with no copy of a body. This module knows frames
//! and messages; it knows nothing of processes or pools.

use crate::config::Protocol;
use crate::frame::{self, CONTROL as V1_CONTROL, EMPTY as V1_EMPTY, ERROR as V1_ERROR, RAW as V1_RAW};
use crate::frame_v2::{self, CODECS, CONTROL, ERROR, JSON, PING, PONG, STOP, STREAM};
use crate::payload::Payload;
use crate::relay::{Relay, RelayError, Sent};

/// One answer frame, or a whole V1 answer, as the host reads it.
pub(crate) enum Answer {
    /// Context and body; `more`: a V2 stream goes on after this frame.
    Data { payload: Payload, more: bool },
    /// A job error with its message.
    JobError(Vec<u8>),
}

/// What a worker reads when it waits for a task.
pub(crate) enum Incoming {
    /// A task.
    Task(Payload),
    /// The stop command, or the end of the relay: leave the loop.
    Stop,
}

/// Sends (what is left of) a task, `already` bytes of which were sent; see
/// [`Relay::send_from`] for `wait_for_room`.
pub(crate) fn send_task(
    relay: &mut Relay,
    protocol: Protocol,
    codec: u8,
    context: &[u8],
    body: &[u8],
    already: usize,
    wait_for_room: bool,
) -> Result<Sent, RelayError> {
    match protocol {
        Protocol::V1 => relay.send_from(&[(V1_CONTROL | V1_RAW, context), (V1_RAW, body)], already, wait_for_room),
        Protocol::V2 => {
            let context_len = option_of(context.len())?;
            relay.send_v2_from(codec, 0, &[context_len], &[context, body], already, wait_for_room)
        }
    }
}

/// Sends a control message carrying `json` (the handshake, the stop command).
pub(crate) fn send_control(relay: &mut Relay, protocol: Protocol, json: &str) -> Result<(), RelayError> {
    match protocol {
        Protocol::V1 => relay.send(&[(V1_CONTROL, json.as_bytes())]),
        Protocol::V2 => relay.send_v2(CONTROL | JSON, 0, &[], &[json.as_bytes()]),
    }
}

/// Reads a control message (the answer to the handshake) and returns its payload.
pub(crate) fn receive_control(relay: &mut Relay, protocol: Protocol) -> Result<Vec<u8>, RelayError> {
    let mut payload = Vec::new();
    let is_control = match protocol {
        Protocol::V1 => relay.receive(&mut payload)?.has(V1_CONTROL),
        Protocol::V2 => relay.receive_v2(&mut payload)?.0.has(CONTROL),
    };
    if !is_control {
        return Err(RelayError::Protocol("the answer lacks the CONTROL flag of a control message".to_string()));
    }
    Ok(payload)
}

/// Reads an answer: V1, the whole answer; V2, the next frame of it (answering a PING with
/// a PONG at once, before anything else is written to the worker).
pub(crate) fn receive_answer(relay: &mut Relay, protocol: Protocol) -> Result<Answer, RelayError> {
    read_answer(relay, protocol, &mut AnswerRead::default())
}

/// An answer being read by a relay that does not wait: what has arrived so far.
#[derive(Default)]
pub(crate) struct AnswerRead {
    bytes: Vec<u8>,
    /// V1: the context's length, once its frame was read.
    context_len: Option<usize>,
}

/// [`receive_answer`], resumable: with a relay that does not wait, `WouldBlock` keeps what
/// arrived in `state` (and in the relay), and the next call with the same `state` goes on.
pub(crate) fn read_answer(relay: &mut Relay, protocol: Protocol, state: &mut AnswerRead) -> Result<Answer, RelayError> {
    match protocol {
        Protocol::V1 => read_answer_v1(relay, state),
        Protocol::V2 => read_answer_v2(relay, &mut state.bytes),
    }
}

fn read_answer_v1(relay: &mut Relay, state: &mut AnswerRead) -> Result<Answer, RelayError> {
    let context_len = match state.context_len {
        Some(context_len) => context_len,
        None => {
            let head = relay.receive(&mut state.bytes)?;
            if !head.has(V1_CONTROL) {
                return Err(RelayError::Protocol(format!(
                    "the answer's first frame (flags {}) lacks the CONTROL flag; a context frame was expected",
                    head.flags
                )));
            }
            if head.has(V1_ERROR) {
                return Ok(Answer::JobError(std::mem::take(&mut state.bytes)));
            }
            *state.context_len.insert(state.bytes.len())
        }
    };
    relay.receive(&mut state.bytes)?;
    state.context_len = None;
    Ok(Answer::Data { payload: Payload::from_parts(std::mem::take(&mut state.bytes), context_len), more: false })
}

fn read_answer_v2(relay: &mut Relay, bytes: &mut Vec<u8>) -> Result<Answer, RelayError> {
    let (header, options) = relay.receive_v2(bytes)?;
    let bytes = std::mem::take(bytes);
    if header.has_stream(PING) {
        relay.send_v2(0, PONG, &[], &[])?;
    }
    if header.has(ERROR) {
        return Ok(Answer::JobError(bytes));
    }
    if header.has(CONTROL) {
        return Err(RelayError::Protocol(format!(
            "a control frame (flags {:#04x}) came where an answer was expected",
            header.flags
        )));
    }
    if header.options != 1 {
        return Err(RelayError::Protocol(format!(
            "the answer frame has {} options; exactly one (the context's length) was expected",
            header.options
        )));
    }
    let context_len = options[0] as usize;
    if context_len > bytes.len() {
        return Err(RelayError::Protocol(format!(
            "the answer's context length ({context_len}) is past the end of its payload ({} bytes)",
            bytes.len()
        )));
    }
    let payload = Payload::from_parts(bytes, context_len).with_codec(header.flags & CODECS);
    Ok(Answer::Data { payload, more: header.has_stream(STREAM) })
}

/// Asks the worker to stop the stream it is sending (V2: an empty frame with STOP).
pub(crate) fn send_stream_stop(relay: &mut Relay) -> Result<(), RelayError> {
    relay.send_v2(0, STOP, &[], &[])
}

// The worker's side.

/// Reads the next task; answers the pid handshake on the way (with `own_pid`), and
/// skips what is not a task (V2: a PONG, or a STOP that came after its stream ended).
pub(crate) fn receive_task(relay: &mut Relay, protocol: Protocol, own_pid: u32) -> Result<Incoming, ReceiveError> {
    loop {
        let mut bytes = Vec::new();
        let (control, context_len) = match protocol {
            Protocol::V1 => {
                let head = match relay.receive(&mut bytes) {
                    Err(RelayError::Closed) => return Ok(Incoming::Stop),
                    other => other.map_err(ReceiveError::Relay)?,
                };
                if head.has(V1_CONTROL) && !head.has(V1_RAW) && !bytes.is_empty() {
                    (true, 0)
                } else {
                    let context_len = bytes.len();
                    relay.receive(&mut bytes).map_err(ReceiveError::Body)?;
                    (false, context_len)
                }
            }
            Protocol::V2 => {
                let (header, options) = match relay.receive_v2(&mut bytes) {
                    Err(RelayError::Closed) => return Ok(Incoming::Stop),
                    other => other.map_err(ReceiveError::Relay)?,
                };
                if header.has(CONTROL) {
                    (true, 0)
                } else if header.stream & (STOP | PONG) != 0 && bytes.is_empty() {
                    continue;
                } else {
                    let context_len = if header.options >= 1 { options[0] as usize } else { 0 };
                    if context_len > bytes.len() {
                        return Err(ReceiveError::Relay(RelayError::Protocol(format!(
                            "the task's context length ({context_len}) is past the end of its payload ({} bytes)",
                            bytes.len()
                        ))));
                    }
                    (false, context_len)
                }
            }
        };
        if !control {
            return Ok(Incoming::Task(Payload::from_parts(bytes, context_len)));
        }
        let command: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| ReceiveError::UnknownControl(String::from_utf8_lossy(&bytes).into_owned()))?;
        if command.get("pid").is_some() {
            send_control(relay, protocol, &format!("{{\"pid\":{own_pid}}}")).map_err(ReceiveError::Handshake)?;
        }
        if command.get("stop").and_then(|stop| stop.as_bool()) == Some(true) {
            return Ok(Incoming::Stop);
        }
    }
}

/// Why [`receive_task`] failed.
pub(crate) enum ReceiveError {
    /// Reading the (first frame of the) task.
    Relay(RelayError),
    /// Reading a V1 task's body frame.
    Body(RelayError),
    /// Answering the handshake.
    Handshake(RelayError),
    /// A control message that is neither the handshake nor stop.
    UnknownControl(String),
}

/// Sends an answer: `more` (V2 only) says more frames of a stream follow; `ping` (V2
/// only) asks the host for a PONG.
pub(crate) fn send_answer(
    relay: &mut Relay,
    protocol: Protocol,
    context: &[u8],
    body: &[u8],
    more: bool,
    ping: bool,
) -> Result<(), RelayError> {
    match protocol {
        Protocol::V1 => {
            let head = if context.is_empty() { V1_CONTROL | V1_EMPTY } else { V1_CONTROL | V1_RAW };
            relay.send(&[(head, context), (V1_RAW, body)])
        }
        Protocol::V2 => {
            let stream = if more { STREAM } else { 0 } | if ping { PING } else { 0 };
            relay.send_v2(0, stream, &[option_of(context.len())?], &[context, body])
        }
    }
}

/// Sends a job error carrying `message`.
pub(crate) fn send_error(relay: &mut Relay, protocol: Protocol, message: &[u8]) -> Result<(), RelayError> {
    match protocol {
        Protocol::V1 => relay.send(&[(V1_CONTROL | V1_RAW | V1_ERROR, message)]),
        Protocol::V2 => relay.send_v2(ERROR, 0, &[], &[message]),
    }
}

/// What the host sent a streaming worker (V2), read without waiting when `wait` is false.
pub(crate) enum StreamSignal {
    /// Nothing (only when not waiting).
    Nothing,
    /// The PONG to this worker's PING.
    Pong,
    /// The host asked to stop the stream.
    Stop,
}

/// Reads what the host sent a worker in the middle of a stream (V2): a PONG or a STOP;
/// with `wait` false, only what has already arrived.
pub(crate) fn receive_stream_signal(relay: &mut Relay, wait: bool) -> Result<StreamSignal, RelayError> {
    if !wait && !relay.has_input()? {
        return Ok(StreamSignal::Nothing);
    }
    let mut bytes = Vec::new();
    let (header, _) = relay.receive_v2(&mut bytes)?;
    if header.has_stream(STOP) {
        Ok(StreamSignal::Stop)
    } else if header.has_stream(PONG) {
        Ok(StreamSignal::Pong)
    } else {
        Err(RelayError::Protocol(format!(
            "the host sent a frame (flags {:#04x}, stream bits {:#04x}) in the middle of a stream",
            header.flags, header.stream
        )))
    }
}

/// A context length as a V2 option.
fn option_of(context_len: usize) -> Result<u32, RelayError> {
    u32::try_from(context_len).map_err(|_| {
        RelayError::Protocol(format!("a context of {context_len} bytes is more than a V2 frame holds (4 GiB)"))
    })
}

/// Whether `bytes` look like the start of a frame of the other protocol than `protocol`:
/// for a message that names both when a worker does not speak the pool's.
pub(crate) fn looks_like_the_other_protocol(protocol: Protocol, bytes: &[u8]) -> bool {
    match protocol {
        Protocol::V1 => {
            bytes.len() >= frame_v2::HEADER_LEN && frame_v2::decode(bytes[..12].try_into().expect("12")).is_ok()
        }
        Protocol::V2 => {
            bytes.len() >= frame::PREFIX_LEN
                && frame::decode(bytes[..frame::PREFIX_LEN].try_into().expect("17")).is_some()
        }
    }
}
