//! Where a worker process runs, looked up now and then.
//!
//! The hand-off (see `handoff`) gives a freed worker to a caller waiting on the CPU the
//! worker runs on: the caller that frees it next then wakes it from that CPU, and the
//! waiting caller it wakes is there too, so the whole chain of wake-ups around that
//! worker stays on one CPU instead of crossing over with every task. Only the kernel
//! knows the CPU (`/proc/PID/stat`, field 39, a few microseconds to read), but a worker
//! seldom moves, so it is read once every `LOOK_EVERY` tasks.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// How many tasks a sighting is trusted for.
const LOOK_EVERY: u32 = 64;
/// The field of `/proc/PID/stat` that holds the CPU it last ran on, counted from 1.
const PROCESSOR_FIELD: usize = 39;

/// The CPU a worker was last seen on.
pub(crate) struct WorkerCpu {
    pid: u32,
    /// Opened at the first look: a pool that never hands workers over never opens it.
    stat: Option<File>,
    cpu: i32,
    tasks_until_look: u32,
}

impl WorkerCpu {
    pub(crate) fn new(pid: u32) -> WorkerCpu {
        WorkerCpu { pid, stat: None, cpu: -1, tasks_until_look: 0 }
    }

    /// The CPU the worker was last seen on (-1: unknown), looking again if the last
    /// look is `LOOK_EVERY` calls old.
    pub(crate) fn get(&mut self) -> i32 {
        if self.tasks_until_look == 0 {
            self.tasks_until_look = LOOK_EVERY;
            if let Some(cpu) = self.look() {
                self.cpu = cpu;
            }
        }
        self.tasks_until_look -= 1;
        self.cpu
    }

    fn look(&mut self) -> Option<i32> {
        if self.stat.is_none() {
            self.stat = File::open(format!("/proc/{}/stat", self.pid)).ok();
        }
        // The line is about 300 bytes; the command name in it is at most 64.
        let mut line = [0u8; 1024];
        let length = self.stat.as_ref()?.read_at(&mut line, 0).ok()?;
        parse_processor(&line[..length])
    }
}

/// Field 39 of a `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last ')'.
fn parse_processor(line: &[u8]) -> Option<i32> {
    let line = std::str::from_utf8(line).ok()?;
    let (_, after_name) = line.rsplit_once(')')?;
    after_name.split_ascii_whitespace().nth(PROCESSOR_FIELD - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_processor_is_read_past_a_name_with_spaces_and_parentheses() {
        let mut line = b"4242 (a (b) c) S".to_vec();
        for field in 4..=52 {
            line.extend_from_slice(format!(" {}", if field == PROCESSOR_FIELD { 7 } else { 1000 + field }).as_bytes());
        }
        assert_eq!(parse_processor(&line), Some(7));
        assert_eq!(parse_processor(b"4242 (short) S 1 2"), None);
        assert_eq!(parse_processor(b"no name at all"), None);
    }

    #[test]
    fn a_process_is_seen_on_a_cpu_it_may_run_on() {
        let mut cpu = WorkerCpu::new(std::process::id());
        let seen = cpu.get();
        let allowed = crate::sys::allowed_cpus().expect("this process's CPUs");
        assert!(seen >= 0 && allowed.contains(&(seen as usize)), "seen on {seen}, may run on {allowed:?}");
    }

    #[test]
    fn a_process_that_is_gone_keeps_its_last_sighting() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let mut cpu = WorkerCpu::new(child.id());
        let first = cpu.get();
        child.wait().unwrap();
        cpu.tasks_until_look = 0;
        assert_eq!(cpu.get(), first, "a failed look changes nothing");
    }
}
