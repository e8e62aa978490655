//! STUB: public surface of the server; bodies come next.
use crate::{Config, Error, Listener, Payload, Result, WorkerInfo};

/// A server: a relay listener and a pool of workers.
pub struct Server {
    _config: Config,
}

impl Server {
    /// Validates `config` and makes a server that is not started yet.
    pub fn new(config: Config) -> Result<Server> {
        config.validate()?;
        Ok(Server { _config: config })
    }
    /// Starts the relay listener and the pool.
    pub fn start(&self) -> Result<()> { Err(Error::state("todo")) }
    /// Stops: waits for running tasks, stops workers, closes the listener.
    pub fn stop(&self) -> Result<()> { Err(Error::state("todo")) }
    /// Runs one task.
    pub fn exec(&self, _context: &[u8], _body: &[u8]) -> Result<Payload> { Err(Error::state("todo")) }
    /// Blue/green swap to a pool built from `config`.
    pub fn reconfigure(&self, _config: Config) -> Result<()> { Err(Error::state("todo")) }
    /// Reconfigure with the current config.
    pub fn reset(&self) -> Result<()> { Err(Error::state("todo")) }
    /// A snapshot of the current workers.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>> { Err(Error::state("todo")) }
    /// Sets (or with `None` removes) the event listener; the old one is dropped.
    pub fn listen(&self, _listener: Option<Listener>) {}
    /// The current configuration.
    pub fn config(&self) -> Config { self._config.clone() }
}
