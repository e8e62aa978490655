//! Factories: how a worker process is started and connected to a relay.
//!
//! [`pipes::PipeFactory`] talks to the child over its stdin and stdout;
//! [`sockets::SocketFactory`] listens on a TCP or Unix socket that children connect to.
//! Both end with the same handshake, and both give back a [`Worker`] or a spawn error
//! that carries the child's stderr.

pub(crate) mod pipes;
pub(crate) mod sockets;

use crate::config::{Protocol, RelayAddress};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventBus;
use crate::process::CommandSpec;
use crate::relay::{Relay, RelayError};
use crate::wire;
use crate::worker::Worker;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest handshake answer accepted: it is a tiny JSON object.
const MAX_HANDSHAKE_FRAME: u64 = 64 * 1024;

/// What a worker is started with, beyond its command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpawnSettings {
    /// How long the child may take to connect and answer the handshake.
    pub relay_timeout: Duration,
    /// Largest frame accepted from the worker afterwards.
    pub max_frame: u64,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// V2: the codec of its task frames.
    pub codec: u8,
}

/// Starts workers.
pub(crate) trait Factory: Send + Sync {
    /// Starts one worker and does the handshake; on failure nothing is left running.
    fn spawn(&self, spec: &CommandSpec, limits: SpawnSettings, events: &EventBus) -> Result<Worker>;
    /// The relay address workers are told to use (with the real port of `tcp://…:0`).
    fn worker_relay(&self) -> String;
    /// Stops listening (and removes a Unix socket file). Idempotent.
    fn close(&self);
}

/// Builds the factory for `relay`; socket factories start listening at once, and do
/// the handshake in `protocol` (which, like the relay, stays the listener's).
pub(crate) fn open(relay: &RelayAddress, relay_timeout: Duration, protocol: Protocol) -> Result<Arc<dyn Factory>> {
    Ok(match relay {
        RelayAddress::Pipes => Arc::new(pipes::PipeFactory),
        RelayAddress::Tcp(_) | RelayAddress::Unix(_) => {
            Arc::new(sockets::SocketFactory::listen(relay, relay_timeout, protocol)?)
        }
    })
}

/// The server's half of the handshake, in `protocol`: send our pid, read the worker's.
pub(crate) fn handshake(
    relay: &mut Relay,
    protocol: Protocol,
    deadline: Instant,
) -> std::result::Result<u32, RelayError> {
    relay.set_deadline(Some(deadline));
    relay.set_max_frame(MAX_HANDSHAKE_FRAME);
    wire::send_control(relay, protocol, &format!("{{\"pid\":{}}}", std::process::id()))?;
    let answer = wire::receive_control(relay, protocol)?;
    relay.set_deadline(None);
    let pid = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|json| json.get("pid")?.as_u64())
        .and_then(|pid| u32::try_from(pid).ok());
    pid.ok_or_else(|| {
        RelayError::Protocol(format!(
            "the handshake answer {:?} is not {{\"pid\":<number>}}",
            String::from_utf8_lossy(&answer)
        ))
    })
}

/// The spawn error for a handshake in `protocol` that failed with `error`.
pub(crate) fn handshake_failure(error: &RelayError, protocol: Protocol) -> String {
    let what = match error {
        e if e.peer_closed() => "exited or closed its relay before answering the handshake".to_string(),
        RelayError::Timeout => "did not answer the handshake within relay_timeout".to_string(),
        other => format!("failed the handshake: {other}"),
    };
    format!("{what} ({})", protocol_hint(protocol, error))
}

/// What to check when a handshake failed: whether the worker speaks the pool's protocol.
/// A worker of the other protocol exits at once, or answers with frames of its own.
pub(crate) fn protocol_hint(protocol: Protocol, error: &RelayError) -> String {
    let other = match protocol {
        Protocol::V1 => Protocol::V2,
        Protocol::V2 => Protocol::V1,
    };
    let seen_other =
        matches!(error, RelayError::NotAFrame { seen, .. } if wire::looks_like_the_other_protocol(protocol, seen));
    let lead = if seen_other { "it answered in" } else { "does it speak" };
    format!(
        "the pool speaks protocol {}; {lead} protocol {}? then set the protocol to {} (rr_config_set_protocol)",
        protocol.describe(),
        other.describe(),
        other as u32
    )
}

/// A spawn error about a command that could not even be started.
pub(crate) fn exec_failure(spec: &CommandSpec, error: std::io::Error) -> Error {
    // Pinning and the scheduling class are applied just before exec, and their failure
    // (EINVAL, EPERM) reads like the command's own: name them then, and only then.
    let mut applying = Vec::new();
    if matches!(error.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) {
        if let Some(cpu) = spec.cpu {
            applying.push(format!("worker_cpu_affinity: CPU {cpu}"));
        }
        if spec.sched_batch {
            applying.push("worker_sched_batch".to_string());
        }
    }
    let applying = if applying.is_empty() { String::new() } else { format!(" (with {})", applying.join(", ")) };
    Error::new(ErrorKind::Spawn, format!("cannot start worker command {:?}{applying}: {error}", spec.argv.join(" ")))
}
