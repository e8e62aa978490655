//! Configuration of a server and its pool, and its validation.
//!
//! [`Config`] is plain data that a user fills in; [`Config::validate`] checks every
//! setting and turns it into a [`ValidConfig`] (the command split into program and
//! arguments, the relay address parsed) that the rest of the library runs on. Nothing
//! here starts processes or opens sockets.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Largest frame accepted from a worker by default: 1 GiB.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 1 << 30;

/// Default spread of `max_jobs` and `ttl` between workers, in percent.
pub const DEFAULT_JITTER_PERCENT: u64 = 10;

/// Longest duration a setting may have: beyond it, deadlines would overflow the clock.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// How a server reaches its workers, as written in the `relay` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAddress {
    /// The worker's stdin and stdout (`pipes` or `pipe`).
    Pipes,
    /// Workers connect to a TCP listener at `host:port` (`tcp://host:port`).
    Tcp(String),
    /// Workers connect to a Unix socket at this path (`unix://path`).
    Unix(PathBuf),
}

impl RelayAddress {
    /// Parses a relay setting: `pipes`, `pipe`, `tcp://host:port` or `unix://path`.
    pub fn parse(relay: &str) -> Result<RelayAddress> {
        let why = "expected \"pipes\", \"tcp://host:port\" or \"unix://path\"";
        if relay == "pipes" || relay == "pipe" {
            return Ok(RelayAddress::Pipes);
        }
        if let Some(address) = relay.strip_prefix("tcp://") {
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(Error::config("relay", format!("{relay:?} has no port; {why}")));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(Error::config("relay", format!("{relay:?} has a bad host or port; {why}")));
            }
            return Ok(RelayAddress::Tcp(address.to_string()));
        }
        if let Some(path) = relay.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(Error::config("relay", format!("{relay:?} has no path; {why}")));
            }
            return Ok(RelayAddress::Unix(PathBuf::from(path)));
        }
        Err(Error::config("relay", format!("{relay:?} is not a relay; {why}")))
    }

    /// The value of `RR_RELAY` given to a worker that must use this relay.
    pub fn for_worker(&self) -> String {
        match self {
            RelayAddress::Pipes => "pipes".to_string(),
            RelayAddress::Tcp(address) => format!("tcp://{address}"),
            RelayAddress::Unix(path) => format!("unix://{}", path.display()),
        }
    }
}

/// Settings of a server and its pool. Fill it in, then hand it to [`crate::Server::new`].
///
/// Durations of zero switch a supervision limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The worker's command line, split like a shell would (quotes and backslashes).
    pub command: String,
    /// `pipes`, `tcp://host:port` or `unix://path`.
    pub relay: String,
    /// Number of worker processes (> 0). Default: the number of CPUs.
    pub num_workers: u64,
    /// Executions after which a worker is replaced; 0 = unlimited.
    pub max_jobs: u64,
    /// How long `exec` waits for a free worker (> 0).
    pub allocate_timeout: Duration,
    /// How long a stopping worker may take before it is killed (> 0).
    pub destroy_timeout: Duration,
    /// How long a worker may take to connect and answer the handshake (> 0).
    pub relay_timeout: Duration,
    /// Extra environment variables of the workers, on top of the host's own.
    pub env: Vec<(String, String)>,
    /// Working directory of the workers; `None` = the host's.
    pub dir: Option<PathBuf>,
    /// A task running longer than this is killed (0 = off).
    pub exec_ttl: Duration,
    /// A worker older than this is retired between tasks (0 = off).
    pub ttl: Duration,
    /// A worker idle longer than this is retired (0 = off).
    pub idle_ttl: Duration,
    /// A worker whose RSS is above this many bytes is retired between tasks (0 = off).
    pub max_memory: u64,
    /// Callers allowed to wait for a free worker at once (0 = unlimited).
    pub max_queue: u64,
    /// Largest frame accepted from a worker, in bytes (> 0).
    pub max_frame_bytes: u64,
    /// Spread of `max_jobs` and `ttl`, in percent (0..=100): each worker gets its own
    /// limit, up to this much below the setting, so a pool does not restart all at once.
    pub jitter_percent: u64,
    /// Allow a TCP relay on an address that is not loopback. Workers' relays carry
    /// no authentication, so this is off unless asked for.
    pub tcp_allow_remote: bool,
    /// Pin each worker to one CPU, spreading the pool evenly over the CPUs the host may
    /// run on (a replacement takes the least-loaded CPU). Off by default: it keeps the
    /// scheduler from moving a worker off a busy CPU. Pays off when the host keeps every
    /// CPU busy with many callers: fewer wake-ups cross CPUs (see bench/notes.md).
    pub worker_cpu_affinity: bool,
    /// Start workers in the `SCHED_BATCH` scheduling class: a worker woken by a task
    /// does not preempt the caller that sent it, at the cost of up to a scheduler tick of
    /// latency when its CPU is busy. Off by default.
    pub worker_sched_batch: bool,
}

impl Config {
    /// A configuration with the defaults for everything but the command and the relay.
    pub fn new(command: impl Into<String>, relay: impl Into<String>) -> Config {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        Config {
            command: command.into(),
            relay: relay.into(),
            num_workers: cpus,
            max_jobs: 0,
            allocate_timeout: Duration::from_secs(60),
            destroy_timeout: Duration::from_secs(60),
            relay_timeout: Duration::from_secs(60),
            env: Vec::new(),
            dir: None,
            exec_ttl: Duration::ZERO,
            ttl: Duration::ZERO,
            idle_ttl: Duration::ZERO,
            max_memory: 0,
            max_queue: 0,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            jitter_percent: DEFAULT_JITTER_PERCENT,
            tcp_allow_remote: false,
            worker_cpu_affinity: false,
            worker_sched_batch: false,
        }
    }

    /// Checks every setting; the error names the setting that is wrong and why.
    pub fn validate(&self) -> Result<ValidConfig> {
        let argv = shell_words::split(&self.command)
            .map_err(|e| Error::config("command", format!("{:?} cannot be parsed: {e}", self.command)))?;
        if argv.is_empty() {
            return Err(Error::config("command", "is empty; give the worker's program and its arguments"));
        }
        let relay = RelayAddress::parse(&self.relay)?;
        if self.num_workers == 0 {
            return Err(Error::config("num_workers", "must be at least 1"));
        }
        if self.num_workers > 4096 {
            return Err(Error::config("num_workers", format!("{} is more than the limit of 4096", self.num_workers)));
        }
        for (name, value) in [
            ("allocate_timeout", self.allocate_timeout),
            ("destroy_timeout", self.destroy_timeout),
            ("relay_timeout", self.relay_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::config(name, "must be greater than 0"));
            }
        }
        for (name, value) in [
            ("allocate_timeout", self.allocate_timeout),
            ("destroy_timeout", self.destroy_timeout),
            ("relay_timeout", self.relay_timeout),
            ("exec_ttl", self.exec_ttl),
            ("ttl", self.ttl),
            ("idle_ttl", self.idle_ttl),
        ] {
            if value > MAX_DURATION {
                return Err(Error::config(name, format!("{} ms is more than a year", value.as_millis())));
            }
        }
        if self.max_frame_bytes == 0 {
            return Err(Error::config("max_frame_bytes", "must be greater than 0"));
        }
        if self.jitter_percent > 100 {
            return Err(Error::config("jitter_percent", format!("{} is above 100", self.jitter_percent)));
        }
        if let RelayAddress::Tcp(address) = &relay {
            if !self.tcp_allow_remote && !is_loopback(address) {
                return Err(Error::config(
                    "relay",
                    format!("tcp://{address} is not a loopback address; workers' relays are not authenticated, so listening beyond this machine needs tcp_allow_remote"),
                ));
            }
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(Error::config("env", format!("{key:?} is not a valid variable name")));
            }
            if value.contains('\0') {
                return Err(Error::config("env", format!("the value of {key:?} contains a NUL byte")));
            }
            if key == "RR_RELAY" {
                return Err(Error::config("env", "RR_RELAY is set by the server from the relay setting"));
            }
        }
        if let Some(dir) = &self.dir {
            if !dir.is_dir() {
                return Err(Error::config("dir", format!("{} is not a directory", dir.display())));
            }
        }
        Ok(ValidConfig { config: self.clone(), argv, relay })
    }
}

/// Whether every address `host:port` resolves to is a loopback address.
fn is_loopback(address: &str) -> bool {
    use std::net::ToSocketAddrs;
    match address.to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<_> = addresses.collect();
            !addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// A configuration that passed [`Config::validate`], with its parsed parts.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// The settings as the user gave them.
    pub config: Config,
    /// The command split into program and arguments.
    pub argv: Vec<String>,
    /// The parsed relay.
    pub relay: RelayAddress,
}
