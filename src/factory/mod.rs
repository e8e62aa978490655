//! Factories: how a worker process is started and connected to a relay.
//!
//! [`pipes::PipeFactory`] talks to the child over its stdin and stdout;
//! [`sockets::SocketFactory`] listens on a TCP or Unix socket that children connect to.
//! Both end with the same handshake, and both give back a [`Worker`] or a spawn error
//! that carries the child's stderr.

pub(crate) mod pipes;
pub(crate) mod sockets;

use crate::config::RelayAddress;
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventBus;
use crate::frame::CONTROL;
use crate::process::CommandSpec;
use crate::relay::{Relay, RelayError};
use crate::worker::Worker;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest handshake answer accepted: it is a tiny JSON object.
const MAX_HANDSHAKE_FRAME: u64 = 64 * 1024;

/// Limits that apply while starting a worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpawnLimits {
    /// How long the child may take to connect and answer the handshake.
    pub relay_timeout: Duration,
    /// Largest frame accepted from the worker afterwards.
    pub max_frame: u64,
}

/// Starts workers.
pub(crate) trait Factory: Send + Sync {
    /// Starts one worker and does the handshake; on failure nothing is left running.
    fn spawn(&self, spec: &CommandSpec, limits: SpawnLimits, events: &EventBus) -> Result<Worker>;
    /// The relay address workers are told to use (with the real port of `tcp://…:0`).
    fn worker_relay(&self) -> String;
    /// Stops listening (and removes a Unix socket file). Idempotent.
    fn close(&self);
}

/// Builds the factory for `relay`; socket factories start listening at once.
pub(crate) fn open(relay: &RelayAddress, relay_timeout: Duration) -> Result<Arc<dyn Factory>> {
    Ok(match relay {
        RelayAddress::Pipes => Arc::new(pipes::PipeFactory),
        RelayAddress::Tcp(_) | RelayAddress::Unix(_) => Arc::new(sockets::SocketFactory::listen(relay, relay_timeout)?),
    })
}

/// The server's half of the handshake: send our pid, read the worker's.
pub(crate) fn handshake(relay: &mut Relay, deadline: Instant) -> std::result::Result<u32, RelayError> {
    relay.set_deadline(Some(deadline));
    relay.set_max_frame(MAX_HANDSHAKE_FRAME);
    relay.send_control(&format!("{{\"pid\":{}}}", std::process::id()))?;
    let mut answer = Vec::new();
    let prefix = relay.receive(&mut answer)?;
    relay.set_deadline(None);
    if !prefix.has(CONTROL) {
        return Err(RelayError::Protocol(format!(
            "the handshake answer (flags {}) lacks the CONTROL flag",
            prefix.flags
        )));
    }
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

/// The spawn error for a handshake that failed with `error`.
pub(crate) fn handshake_failure(error: &RelayError) -> String {
    match error {
        e if e.peer_closed() => "exited or closed its relay before answering the handshake".to_string(),
        RelayError::Timeout => "did not answer the handshake within relay_timeout".to_string(),
        other => format!("failed the handshake: {other}"),
    }
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
