//! libroadrunner: a pool of long-lived worker processes fed binary tasks over framed
//! pipes or sockets, byte-compatible with RoadRunner 1.x workers.
//!
//! The core (everything but [`ffi`]) is safe Rust and knows nothing of C; `ffi` is the
//! C interface declared in `include/rr.h` and knows nothing of processes.

pub mod config;
pub mod error;
pub mod event;
pub mod payload;
pub mod server;
pub mod state;
pub mod worker_side;

mod factory;
/// Fault points for the tests (see the `fault-injection` feature).
#[doc(hidden)]
pub mod fault;
mod frame;
mod frame_v2;
mod handoff;
mod limits;
mod owner_process;
mod placement;
mod pool;
mod process;
mod queue;
mod ready_signal;
mod relay;
pub mod stats;
pub mod status;
mod stderr;
mod sync;
mod sys;
mod wire;
mod worker;

pub mod ffi;

pub use config::{codec, Config, Protocol, RelayAddress, ValidConfig, DEFAULT_JITTER_PERCENT, DEFAULT_MAX_FRAME_BYTES};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventKind, Listener};
pub use payload::Payload;
pub use pool::Stream;
pub use queue::{Completion, CompletionQueue};
pub use server::Server;
pub use state::{WorkerInfo, WorkerState};
pub use stats::{PoolStats, TaskOutcomes};
pub use status::{ServerStatus, WorkerStatusEntry};
pub use worker_side::WorkerSide;
