//! Workers reached over their stdin and stdout.

use super::{exec_failure, handshake, handshake_failure, Factory, SpawnSettings};
use crate::error::{ErrorKind, Result};
use crate::event::EventBus;
use crate::process::{ChildIo, CommandSpec, Process};
use crate::relay::Relay;
use crate::worker::{describe_failure, Worker};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Starts each worker with its stdin and stdout as the relay.
pub(crate) struct PipeFactory;

impl Factory for PipeFactory {
    fn spawn(&self, spec: &CommandSpec, limits: SpawnSettings, events: &EventBus) -> Result<Worker> {
        let (process, pipes) =
            Process::spawn(spec, ChildIo::Pipes, events.clone()).map_err(|e| exec_failure(spec, e))?;
        let pipes = pipes.expect("pipes were asked for");
        // Our end of the child's stdin is ours alone: non-blocking, so that a worker
        // that stops reading cannot block a write past its deadline.
        if let Err(e) = crate::sys::set_nonblocking(pipes.stdin.as_raw_fd(), true) {
            return Err(describe_failure(&process, format!("cannot set up its stdin: {e}"), ErrorKind::Spawn, false))
                .inspect_err(|_| process.join_watcher());
        }
        let mut relay = Relay::pipes(pipes.stdout, pipes.stdin, limits.max_frame);
        // With a reader of our own, a write to a worker that died waits for room (or
        // for the end of the task) instead of failing: only the pidfd can end that wait.
        // Without one (kernels before 5.3, or pidfd_open refused), the pipe is left to
        // fail with EPIPE, and the relay blocks SIGPIPE for the time of each write.
        if let Some(end) = process.end_fd() {
            relay.keep_write_pipe_reader(pipes.stdin_reader);
            relay.watch_peer_end(Some(end));
        }
        match handshake(&mut relay, limits.protocol, Instant::now() + limits.relay_timeout) {
            Ok(pid) if pid == process.pid() => {
                relay.set_max_frame(limits.max_frame);
                Ok(Worker::new(process.clone(), relay, limits.protocol, limits.codec))
            }
            Ok(pid) => Err(describe_failure(
                &process,
                format!("answered the handshake with pid {pid}, but the process started is {}", process.pid()),
                ErrorKind::Spawn,
                false,
            )),
            Err(e) => Err(describe_failure(
                &process,
                handshake_failure(&e, limits.protocol),
                ErrorKind::Spawn,
                e.peer_closed(),
            )),
        }
        .inspect_err(|_| process.join_watcher())
    }

    fn worker_relay(&self) -> String {
        "pipes".to_string()
    }

    fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_worker_that_cannot_be_pinned_fails_to_start_and_the_error_names_the_setting() {
        // No machine this runs on has a CPU 1023: sched_setaffinity refuses an empty set.
        let spec = CommandSpec {
            argv: vec!["/bin/true".into()],
            env: Vec::new(),
            dir: None,
            relay: "pipes".into(),
            cpu: Some(libc::CPU_SETSIZE as usize - 1),
            sched_batch: true,
        };
        let limits = SpawnSettings {
            relay_timeout: Duration::from_secs(5),
            max_frame: 1 << 20,
            protocol: crate::config::Protocol::V1,
            codec: crate::config::codec::RAW,
        };
        let Err(error) = PipeFactory.spawn(&spec, limits, &EventBus::new()) else {
            panic!("a worker pinned to a CPU that does not exist started");
        };
        assert_eq!(error.kind(), ErrorKind::Spawn);
        let message = error.message();
        assert!(message.contains("(with worker_cpu_affinity: CPU 1023, worker_sched_batch)"), "{message}");
        assert!(message.contains("Invalid argument"), "{message}");
    }
}
