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

/// Default most workers an elastic pool starts in one step.
pub(crate) const DEFAULT_SPAWN_RATE: u64 = 8;

/// Default name of a pool in status and metrics.
pub(crate) const DEFAULT_POOL_NAME: &str = "default";

/// Most workers one pool may have.
const MAX_WORKERS: u64 = 4096;

/// Longest duration a setting may have: beyond it, deadlines would overflow the clock.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The protocol a pool speaks with its workers (`shared/SPEC.md` sections 1 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RoadRunner 1.x workers: goridge 2's 17-byte prefix, two frames per message.
    #[default]
    V1 = 1,
    /// RoadRunner 2.x to 2025.x workers (`spiral/roadrunner-worker` 2.x and 3.x over
    /// `spiral/goridge` 3.x and 4.x): a 12-byte header with a CRC, one frame per
    /// message, streamed answers.
    V2 = 2,
}

impl Protocol {
    /// The protocol of number `number` (1 or 2).
    pub fn from_number(number: u32) -> Option<Protocol> {
        match number {
            1 => Some(Protocol::V1),
            2 => Some(Protocol::V2),
            _ => None,
        }
    }

    /// In words, for messages: "V1 (RoadRunner 1.x frames)".
    pub fn describe(self) -> &'static str {
        match self {
            Protocol::V1 => "V1 (RoadRunner 1.x, goridge 2 frames)",
            Protocol::V2 => "V2 (RoadRunner 2.x and later, goridge 3/4 frames)",
        }
    }
}

/// The codec of V2 task frames (their flags byte): what the payload is encoded with.
/// The pool passes payloads through as bytes; the codec only tells the worker.
pub mod codec {
    /// Raw bytes (the default).
    pub const RAW: u8 = 0x04;
    /// JSON.
    pub const JSON: u8 = 0x08;
    /// MessagePack.
    pub const MSGPACK: u8 = 0x10;
    /// Go's gob.
    pub const GOB: u8 = 0x20;
    /// Protocol buffers (what RoadRunner's HTTP plugin sends since 2024.1).
    pub const PROTO: u8 = 0x80;

    /// Whether `codec` is exactly one of the codecs.
    pub fn is_known(codec: u8) -> bool {
        [RAW, JSON, MSGPACK, GOB, PROTO].contains(&codec)
    }
}

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
    /// Number of worker processes always running: the floor of an elastic pool (may
    /// then be 0: workers only on demand), the size of a static one (> 0). Default: the
    /// number of CPUs.
    pub num_workers: u64,
    /// The ceiling of an elastic pool; 0 = `num_workers` (a static pool).
    pub max_workers: u64,
    /// Most workers an elastic pool starts in one step (> 0). Default: 8.
    pub spawn_rate: u64,
    /// How long a caller waits for a worker before an elastic pool grows (> 0).
    /// Default: 10 ms.
    pub scale_after: Duration,
    /// How long an elastic pool's extra worker may idle before it is retired (> 0).
    /// Default: 10 s.
    pub scale_idle: Duration,
    /// The pool's name in status and metrics (the label `pool`). Default: `default`.
    pub name: String,
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
    /// The protocol the workers speak. Default: V1.
    pub protocol: Protocol,
    /// V2: the codec of task frames (one of [`codec`]). Default: [`codec::RAW`].
    pub codec: u8,
    /// V2: how long a cancelled stream may take to end (the worker's last frame) before
    /// the worker is killed and replaced (> 0). Default: 10 s.
    pub stream_timeout: Duration,
}

impl Config {
    /// A configuration with the defaults for everything but the command and the relay.
    pub fn new(command: impl Into<String>, relay: impl Into<String>) -> Config {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1);
        Config {
            command: command.into(),
            relay: relay.into(),
            num_workers: cpus,
            max_workers: 0,
            spawn_rate: DEFAULT_SPAWN_RATE,
            scale_after: Duration::from_millis(10),
            scale_idle: Duration::from_secs(10),
            name: DEFAULT_POOL_NAME.to_string(),
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
            protocol: Protocol::V1,
            codec: codec::RAW,
            stream_timeout: Duration::from_secs(10),
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
        if self.num_workers == 0 && self.max_workers == 0 {
            return Err(Error::config(
                "num_workers",
                "must be at least 1 (0 only with max_workers set: workers on demand)",
            ));
        }
        for (name, value) in [("num_workers", self.num_workers), ("max_workers", self.max_workers)] {
            if value > MAX_WORKERS {
                return Err(Error::config(name, format!("{value} is more than the limit of {MAX_WORKERS}")));
            }
        }
        if self.max_workers != 0 && self.max_workers < self.num_workers {
            return Err(Error::config(
                "max_workers",
                format!(
                    "{} is below num_workers ({}): the ceiling must be at least the floor (0 = a static pool)",
                    self.max_workers, self.num_workers
                ),
            ));
        }
        if self.spawn_rate == 0 {
            return Err(Error::config("spawn_rate", "must be at least 1"));
        }
        if self.name.is_empty() || self.name.len() > 128 || self.name.chars().any(char::is_control) {
            return Err(Error::config(
                "name",
                format!("{:?} must be 1 to 128 bytes with no control characters", self.name),
            ));
        }
        for (name, value) in [
            ("allocate_timeout", self.allocate_timeout),
            ("destroy_timeout", self.destroy_timeout),
            ("relay_timeout", self.relay_timeout),
            ("stream_timeout", self.stream_timeout),
            ("scale_after", self.scale_after),
            ("scale_idle", self.scale_idle),
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
            ("stream_timeout", self.stream_timeout),
            ("scale_after", self.scale_after),
            ("scale_idle", self.scale_idle),
        ] {
            if value > MAX_DURATION {
                return Err(Error::config(name, format!("{} ms is more than a year", value.as_millis())));
            }
        }
        if self.max_frame_bytes == 0 {
            return Err(Error::config("max_frame_bytes", "must be greater than 0"));
        }
        if !codec::is_known(self.codec) {
            return Err(Error::config(
                "codec",
                format!("{:#04x} is not a codec (RAW 0x04, JSON 0x08, MSGPACK 0x10, GOB 0x20, PROTO 0x80)", self.codec),
            ));
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

    /// Whether the settings a reconfigure ignores differ (the relay and its timeout,
    /// which belong to the listener): then only a stop and a new start applies `other`.
    /// As RoadRunner's `ServerConfig.Differs`, but for the pool and the command, which
    /// a reconfigure does apply.
    pub fn differs(&self, other: &Config) -> bool {
        let relay = |config: &Config| RelayAddress::parse(&config.relay).ok();
        let same_relay = match (relay(self), relay(other)) {
            (Some(a), Some(b)) => a == b,
            _ => self.relay == other.relay,
        };
        !same_relay || self.relay_timeout != other.relay_timeout
    }

    /// The most workers the pool may have: `max_workers`, or `num_workers` when that
    /// is 0 (a static pool).
    pub fn ceiling(&self) -> u64 {
        self.max_workers.max(self.num_workers)
    }

    /// Whether the pool grows and shrinks between `num_workers` and `max_workers`.
    pub fn is_elastic(&self) -> bool {
        self.ceiling() > self.num_workers
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
