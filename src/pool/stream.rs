//! A streamed answer (protocol V2): the chunks of one task's answer, given to its caller
//! as they arrive.
//!
//! While a stream is open its worker belongs to it (in its lease): the worker is never
//! handed to another caller before the stream's last frame was read, or the stream was
//! cancelled (the worker asked to stop, and its frames drained until its last one), or
//! the worker was killed. A stream dropped unfinished is cancelled.

use super::retire::Leaving;
use super::{ExecError, Lease, Pool, Started};
use crate::error::{Error, ErrorKind, Result};
use crate::stats::Counters;
use crate::worker::Chunk;
use crate::Payload;
use std::sync::Arc;
use std::time::Duration;

/// The chunks of one task's answer, in order. From [`crate::Server::exec_stream`]; use it
/// from one thread at a time. A worker that does not stream gives a stream of one chunk.
pub struct Stream {
    state: State,
}

enum State {
    /// Chunks left to give: `first` (not given yet), then the worker's.
    Open { lease: Box<Lease>, first: Option<Payload>, stream_timeout: Duration },
    /// An answer that was not streamed, not given yet.
    Whole(Payload),
    /// The last chunk was given (or the stream failed: that error was given).
    Ended,
    /// Cancelled by its caller.
    Cancelled,
}

impl Pool {
    /// Runs a task whose answer the caller reads chunk by chunk.
    pub(crate) fn exec_stream(self: &Arc<Self>, context: &[u8], body: &[u8]) -> std::result::Result<Stream, ExecError> {
        let state = match self.start_task(context, body)? {
            Started::Answer(payload) => State::Whole(payload),
            Started::Stream(mut lease, first) => {
                lease.hold_for_stream();
                State::Open { lease, first: Some(first), stream_timeout: self.config.config.stream_timeout }
            }
        };
        Ok(Stream { state })
    }
}

impl Stream {
    /// The next chunk (context and body), waiting for it; `None` after the last one.
    /// A chunk that did not come: the task's error (its worker is replaced); after
    /// [`Stream::cancel`], an error of kind `Cancelled`.
    pub fn next_chunk(&mut self) -> Result<Option<Payload>> {
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Whole(payload) => Ok(Some(payload)),
            State::Ended => Ok(None),
            State::Cancelled => {
                self.state = State::Cancelled;
                Err(Error::new(ErrorKind::Cancelled, "the stream was cancelled (by its caller)"))
            }
            State::Open { lease, first: Some(first), stream_timeout } => {
                self.state = State::Open { lease, first: None, stream_timeout };
                Ok(Some(first))
            }
            State::Open { mut lease, first: None, stream_timeout } => {
                let pool = lease.pool();
                match lease.worker().receive_chunk() {
                    Ok(Chunk::More(chunk)) => {
                        self.state = State::Open { lease, first: None, stream_timeout };
                        Ok(Some(chunk))
                    }
                    Ok(Chunk::Last(chunk)) => {
                        pool.counters.answered();
                        lease.give_back();
                        Ok(Some(chunk))
                    }
                    Ok(Chunk::JobError(message)) => Err(pool.stream_job_error(*lease, message)),
                    Err(failure) => Err(pool.task_failed(*lease, failure)),
                }
            }
        }
    }

    /// Stops the stream: asks the worker to stop sending and drops what it still sends
    /// until its last frame. A worker that does not end the stream within
    /// `stream_timeout` is killed and replaced. Blocks until then. The stream's next
    /// chunk is then an error of kind `Cancelled`. A stream whose last chunk was given
    /// is left as it is.
    pub fn cancel(&mut self) {
        match std::mem::replace(&mut self.state, State::Cancelled) {
            State::Open { mut lease, stream_timeout, .. } => {
                let pool = lease.pool();
                Counters::bump(&pool.counters.tasks_cancelled);
                match lease.worker().cancel_stream(stream_timeout) {
                    Ok(()) => lease.give_back(),
                    Err(error) => {
                        let error = lease.worker().failure(
                            format!(
                                "the cancelled stream did not end within stream_timeout ({} ms): {error}",
                                stream_timeout.as_millis()
                            ),
                            ErrorKind::WorkerError,
                            false,
                        );
                        lease.retire(Leaving::Failed(&error));
                    }
                }
            }
            State::Whole(_) => {}
            State::Ended => self.state = State::Ended,
            State::Cancelled => {}
        }
    }

    /// Whether the last chunk was given (or the stream failed, or was cancelled).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Ended | State::Cancelled)
    }
}

/// The chunks as an iterator: it ends after the last chunk, and after an error.
impl Iterator for Stream {
    type Item = Result<Payload>;

    fn next(&mut self) -> Option<Result<Payload>> {
        let chunk = self.next_chunk().transpose();
        if matches!(chunk, Some(Err(_))) {
            self.state = State::Ended;
        }
        chunk
    }
}

impl Drop for Stream {
    /// An unfinished stream is cancelled: its worker goes back to the pool (or is
    /// replaced) within stream_timeout.
    fn drop(&mut self) {
        if matches!(self.state, State::Open { .. }) {
            self.cancel();
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Open { .. } => "open",
            State::Whole(_) => "one chunk",
            State::Ended => "ended",
            State::Cancelled => "cancelled",
        };
        f.debug_struct("Stream").field("state", &state).finish()
    }
}
