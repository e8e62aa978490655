//! Per-worker control by the host, as RoadRunner's `Worker.Stop` and `Worker.Kill`:
//! one worker, named by its pid, leaves the pool after its task or at once, and the
//! supervisor replaces it like any retired worker.

use super::retire::Leaving;
use super::Pool;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::RetireReason;
use crate::worker::Removal;

impl Pool {
    /// Removes the member with process id `pid`: an idle one at once (killed, or
    /// stopped gracefully), a busy one after its task (`kill` false) or killed now, its
    /// task failing with a worker error. An invalid-argument error when no member has
    /// that pid.
    pub(crate) fn remove_worker(&self, pid: u32, kill: bool) -> Result<()> {
        let mut workers = self.workers.lock();
        let Some(member) = workers.members.values().find(|member| member.status.pid() == pid) else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("process {pid} is not a worker of this server's pool"),
            ));
        };
        let status = member.status.clone();
        let process = member.process.clone();
        if let Some(i) = workers.idle.iter().position(|worker| worker.id() == status.id()) {
            let worker = workers.idle.swap_remove(i);
            if kill {
                process.signal(libc::SIGKILL);
            }
            self.retire(&mut workers, worker, Leaving::Limit(RetireReason::Removed), false);
            return Ok(());
        }
        // Busy: whoever holds it retires it (see `take::Lease::hand_on`, `task_failed`).
        if kill {
            status.set_removal(Removal::Killed);
            process.signal(libc::SIGKILL);
        } else {
            status.set_removal(Removal::AfterTask);
        }
        Ok(())
    }
}
