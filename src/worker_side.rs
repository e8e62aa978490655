//! STUB: the worker side API.
use crate::{Error, Payload, Result};

/// The worker's end of a relay.
pub struct WorkerSide {}

impl WorkerSide {
    /// Connects: `Some("pipes")`, `Some("tcp://h:p")`, `Some("unix://p")`, or `None` = `RR_RELAY`, else pipes.
    pub fn connect(_relay: Option<&str>) -> Result<WorkerSide> { Err(Error::state("todo")) }
    /// Next task, or `None` when the server says stop.
    pub fn receive(&mut self) -> Result<Option<Payload>> { Err(Error::state("todo")) }
    /// Answers the current task.
    pub fn respond(&mut self, _context: &[u8], _body: &[u8]) -> Result<()> { Err(Error::state("todo")) }
    /// Answers the current task with a job error.
    pub fn error(&mut self, _message: &[u8]) -> Result<()> { Err(Error::state("todo")) }
    /// Answers the current task with a request to be replaced.
    pub fn request_stop(&mut self) -> Result<()> { Err(Error::state("todo")) }
}
