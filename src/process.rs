//! One child process: how it is started, watched, signalled and reaped.
//!
//! Every child is forked by one long-lived thread (`rr-spawn`), because Linux delivers
//! `PR_SET_PDEATHSIG` when the *thread* that forked the child ends, and callers'
//! threads come and go. Each child then gets a watcher thread (`rr-watch-<pid>`) that
//! reads its stderr and polls a pidfd, so an exit is noticed at once, whatever the
//! child was doing. The watcher is the only code of ours that reaps, and it reaps under
//! the same lock that [`Process::signal`] takes: a pid is never signalled after it was
//! reaped (when it could already belong to another process). Signals and the reaping
//! go through the pidfd, which names the child itself, so that holds even when the host
//! took the child's exit status first (it ignores SIGCHLD, or reaps every child it has).
//!
//! This module knows nothing of frames, tasks or pools.

use crate::event::{EventBus, EventKind};
use crate::stderr::StderrCapture;
use crate::sync::{Condvar, Mutex};
use crate::sys;
use crossbeam_channel::Sender;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory, if not the host's.
    pub dir: Option<PathBuf>,
    /// Value of `RR_RELAY` for the child.
    pub relay: String,
    /// The one CPU the child may run on, if it is pinned (`worker_cpu_affinity`).
    pub cpu: Option<usize>,
    /// Start the child in the `SCHED_BATCH` class (`worker_sched_batch`).
    pub sched_batch: bool,
}

/// How the child's stdin and stdout are connected.
pub(crate) enum ChildIo {
    /// Pipes, returned to the caller as (child's stdout to read, child's stdin to write).
    Pipes,
    /// stdin from /dev/null, stdout into the stderr capture (socket workers).
    Null,
}

/// How a child ended.
#[derive(Debug, Clone)]
pub(crate) struct ExitInfo {
    /// In words: "exited with status 3", "was killed by signal 9 (SIGKILL)".
    pub description: String,
    /// Whether its owner asked it to end (a signal, or [`Process::request_end`]) before
    /// it did: if not, it ended on its own.
    pub requested: bool,
}

enum Life {
    Running {
        /// Its owner asked it to end.
        end_requested: bool,
    },
    Exited(ExitInfo),
}

type ExitHook = Box<dyn FnOnce(&ExitInfo) + Send>;

/// How the library names a child when it signals and reaps it.
enum ChildHandle {
    /// A pidfd: the child itself, even after the host took its exit status. Shared
    /// with the relay, whose waits end when it becomes readable (the child exited).
    Pidfd(Arc<OwnedFd>),
    /// Reaped by the host (which ignores SIGCHLD or reaps every child) before a pidfd
    /// could be had: its pid may already be another process's.
    Gone,
    /// No pidfds on this kernel (before 5.3): the pid.
    Pid,
}

impl ChildHandle {
    fn of(pid: u32) -> ChildHandle {
        match sys::pidfd_open(pid) {
            Ok(pidfd) => ChildHandle::Pidfd(Arc::new(pidfd)),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => ChildHandle::Gone,
            Err(_) => ChildHandle::Pid,
        }
    }
}

/// A started child process. Shared by its owner and its watcher thread.
pub(crate) struct Process {
    pid: u32,
    handle: ChildHandle,
    created: SystemTime,
    life: Mutex<Life>,
    exited: Condvar,
    /// Set once the watcher has drained stderr after the exit.
    drained: Mutex<bool>,
    drained_cond: Condvar,
    stderr: Mutex<StderrCapture>,
    on_exit: Mutex<Option<ExitHook>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// The pipes of a child started with [`ChildIo::Pipes`]: read its stdout, write its stdin.
pub(crate) struct ChildPipes {
    pub stdout: OwnedFd,
    pub stdin: OwnedFd,
    /// A copy of the read end of the child's stdin, for the relay to keep (see `relay`:
    /// a pipe that always has a reader never raises SIGPIPE).
    pub stdin_reader: OwnedFd,
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// The one thread that forks children (see the module docs for why): the channel to it,
/// and the pid of the process it belongs to (a host that forks gets a new one in the
/// child, where the parent's thread does not exist).
struct Spawner {
    pid: u32,
    jobs: Sender<SpawnJob>,
}

/// This process's spawner, published once and never freed: any thread may hold a
/// pointer to it at any time. Reached without a lock, so a host's fork can never leave
/// one held for a child that makes a server of its own (the parent's spawner is left
/// as it is there, a few bytes).
static SPAWNER: AtomicPtr<Spawner> = AtomicPtr::new(std::ptr::null_mut());

/// The channel to this process's `rr-spawn` thread, started on first use.
fn spawner() -> io::Result<Sender<SpawnJob>> {
    let me = std::process::id();
    loop {
        let current = SPAWNER.load(Ordering::Acquire);
        // SAFETY: a published spawner is never freed.
        if let Some(spawner) = unsafe { current.as_ref() } {
            if spawner.pid == me {
                return Ok(spawner.jobs.clone());
            }
        }
        let (jobs, receiver) = crossbeam_channel::unbounded::<SpawnJob>();
        std::thread::Builder::new().name("rr-spawn".into()).spawn(move || {
            for job in receiver {
                job();
            }
        })?;
        let ours = Box::into_raw(Box::new(Spawner { pid: me, jobs: jobs.clone() }));
        if SPAWNER.compare_exchange(current, ours, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return Ok(jobs);
        }
        // Another thread published one first: ours ends with its channel; use that one.
        // SAFETY: `ours` was never published, so nobody else has it.
        drop(unsafe { Box::from_raw(ours) });
    }
}

/// Starts `command`. Never panics: std's `spawn` does when a failed exec's child cannot
/// be reaped, which happens when the host ignores SIGCHLD (or reaped the child first),
/// and a panic here would end the `rr-spawn` thread for every server of the process.
fn start(command: &mut Command) -> io::Result<std::process::Child> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command.spawn())).unwrap_or_else(|_| {
        Err(io::Error::other(
            "the program could not be started (its exec failed, and why is unknown: the host took \
             the failed child's exit status, as it does when it ignores SIGCHLD)",
        ))
    })
}

impl Process {
    /// Starts `spec` and its watcher. Stderr lines go to `events` as they come.
    pub(crate) fn spawn(
        spec: &CommandSpec,
        stdio: ChildIo,
        events: EventBus,
    ) -> io::Result<(Arc<Process>, Option<ChildPipes>)> {
        let (stderr_read, stderr_write) = io::pipe()?;
        let mut command = Command::new(&spec.argv[0]);
        command.args(&spec.argv[1..]).env("RR_RELAY", &spec.relay).stderr(Stdio::from(stderr_write.try_clone()?));
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        if let Some(dir) = &spec.dir {
            command.current_dir(dir);
        }
        // The child's stdin is made here rather than by `Command`, to keep a copy of
        // its read end (see `ChildPipes::stdin_reader`).
        let mut stdin_pipe = None;
        match stdio {
            ChildIo::Pipes => {
                let (reader, writer) = io::pipe()?;
                command.stdin(Stdio::from(reader.try_clone()?)).stdout(Stdio::piped());
                stdin_pipe = Some((reader, writer));
            }
            ChildIo::Null => {
                command.stdin(Stdio::null()).stdout(Stdio::from(stderr_write.try_clone()?));
            }
        }
        drop(stderr_write);
        let host_pid = std::process::id() as libc::pid_t;
        let (cpu, sched_batch) = (spec.cpu, spec.sched_batch);
        // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid, _exit,
        // sigprocmask, signal, close_range, sched_setaffinity, sched_setscheduler) and
        // allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // Die with the host; if the host is already gone, don't start at all.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() != host_pid {
                    libc::_exit(127);
                }
                // A worker starts as a new program expects, with nothing of the host's
                // signal state or descriptors (see both functions).
                sys::reset_signals_for_exec()?;
                sys::close_inherited_descriptors_on_exec();
                // Before exec, so the worker's own children inherit both.
                if let Some(cpu) = cpu {
                    sys::pin_to_cpu(cpu)?;
                }
                if sched_batch {
                    sys::use_batch_scheduling()?;
                }
                Ok(())
            });
        }

        let (reply, result) = crossbeam_channel::bounded(1);
        spawner()?
            .send(Box::new(move || {
                let _ = reply.send(start(&mut command));
            }))
            .map_err(|_| io::Error::other("the rr-spawn thread is gone"))?;
        let mut child = result.recv().map_err(|_| io::Error::other("the rr-spawn thread is gone"))??;

        let pipes = stdin_pipe.map(|(reader, writer)| ChildPipes {
            stdout: OwnedFd::from(child.stdout.take().expect("piped stdout")),
            stdin: OwnedFd::from(writer),
            stdin_reader: OwnedFd::from(reader),
        });
        // `child` is dropped without waiting: the watcher reaps.
        let process = Arc::new(Process {
            pid: child.id(),
            handle: ChildHandle::of(child.id()),
            created: SystemTime::now(),
            life: Mutex::new(Life::Running { end_requested: false }),
            exited: Condvar::new(),
            drained: Mutex::new(false),
            drained_cond: Condvar::new(),
            stderr: Mutex::new(StderrCapture::default()),
            on_exit: Mutex::new(None),
            watcher: Mutex::new(None),
        });
        let watched = process.clone();
        let stderr_fd = OwnedFd::from(stderr_read);
        let watcher = std::thread::Builder::new().name(format!("rr-watch-{}", process.pid)).spawn(move || {
            // The stderr pipe stays open whatever happens here: closed, the child's next
            // write to stderr would raise SIGPIPE in it.
            let watching = || {
                crate::fault::point(crate::fault::FaultPoint::Watcher);
                watch(&watched, &stderr_fd, &events)
            };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(watching)).is_err() {
                // Never leave a child unreaped, or its owner untold, because of a bug
                // here. Wait for the exit without holding `life` (a kill needs it),
                // then reap under it, as the watcher does, and take what is left on
                // stderr.
                if !watched.has_exited() {
                    watched.wait_exited_unreaped();
                    watched.reap_and_record();
                }
                drain_stderr(&watched, &stderr_fd, &events);
                watched.mark_drained();
                let hook = watched.on_exit.lock().take();
                if let (Some(hook), Some(info)) = (hook, watched.exit_info()) {
                    hook(&info);
                }
            }
        });
        match watcher {
            Ok(handle) => *process.watcher.lock() = Some(handle),
            Err(e) => {
                // No watcher, no reaper: kill and reap here, then fail the spawn.
                process.signal(libc::SIGKILL);
                process.wait_exited_unreaped();
                process.reap_and_record();
                return Err(e);
            }
        }
        Ok((process, pipes))
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// When it was started.
    pub(crate) fn created(&self) -> SystemTime {
        self.created
    }

    /// A descriptor that becomes readable when the child exits (its pidfd), where the
    /// kernel gives one.
    pub(crate) fn end_fd(&self) -> Option<Arc<OwnedFd>> {
        match &self.handle {
            ChildHandle::Pidfd(pidfd) => Some(pidfd.clone()),
            ChildHandle::Gone | ChildHandle::Pid => None,
        }
    }

    /// Whether it has exited (and was reaped).
    pub(crate) fn has_exited(&self) -> bool {
        matches!(*self.life.lock(), Life::Exited(_))
    }

    /// How it ended, if it has.
    pub(crate) fn exit_info(&self) -> Option<ExitInfo> {
        match &*self.life.lock() {
            Life::Exited(info) => Some(info.clone()),
            Life::Running { .. } => None,
        }
    }

    /// Notes that its owner asks it to end (by a message of its own: the stop command),
    /// so that its exit is not taken for a death of its own. False if it had already
    /// exited: then it did end on its own.
    pub(crate) fn request_end(&self) -> bool {
        let mut life = self.life.lock();
        match &mut *life {
            Life::Running { end_requested } if !self.has_ended_unreaped() => {
                *end_requested = true;
                true
            }
            Life::Running { .. } | Life::Exited(_) => false,
        }
    }

    /// Sends `signal` unless the child has already ended (reaped, or a zombie that its
    /// watcher is about to reap); true if it was sent. A signal sent is a request to end
    /// (see [`Process::request_end`]); one to a child that ended on its own is not sent,
    /// so that its end stays a death of its own.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        let mut life = self.life.lock();
        match &mut *life {
            Life::Running { .. } if self.has_ended_unreaped() => false,
            Life::Running { end_requested } => {
                let sent = match &self.handle {
                    ChildHandle::Pidfd(pidfd) => sys::pidfd_send_signal(pidfd, signal).is_ok(),
                    ChildHandle::Gone => false,
                    ChildHandle::Pid => sys::kill(self.pid, signal).is_ok(),
                };
                *end_requested |= sent;
                sent
            }
            Life::Exited(_) => false,
        }
    }

    /// Waits up to `timeout` for the exit; true if it exited.
    pub(crate) fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut life = self.life.lock();
        while matches!(*life, Life::Running { .. }) {
            if self.exited.wait_until(&mut life, deadline).timed_out() {
                return matches!(*life, Life::Exited(_));
            }
        }
        true
    }

    /// Kills the child if it still runs, and waits until it was reaped and its stderr
    /// read to the end (bounded by `timeout` for the stderr part), so that an error
    /// message built afterwards holds all it wrote.
    /// True if it was killed here (it had not ended on its own).
    pub(crate) fn kill_and_settle(&self, timeout: Duration) -> bool {
        let killed = self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(3600));
        let deadline = Instant::now() + timeout;
        let mut drained = self.drained.lock();
        while !*drained {
            if self.drained_cond.wait_until(&mut drained, deadline).timed_out() {
                break;
            }
        }
        killed
    }

    /// The end of what the child wrote to stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr.lock().tail()
    }

    /// Runs `hook` once the child has exited (at once, on this thread, if it already has).
    pub(crate) fn on_exit(&self, hook: ExitHook) {
        let life = self.life.lock();
        if let Life::Exited(info) = &*life {
            let info = info.clone();
            drop(life);
            hook(&info);
            return;
        }
        *self.on_exit.lock() = Some(hook);
    }

    /// Removes the exit hook, if it has not run.
    pub(crate) fn clear_on_exit(&self) {
        self.on_exit.lock().take();
    }

    /// Joins the watcher thread once the child was reaped (no-op from the watcher itself).
    pub(crate) fn join_watcher(&self) {
        let handle = self.watcher.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() == std::thread::current().id() {
                return;
            }
            let _ = handle.join();
        }
    }

    /// Whether the child has exited but was not reaped yet (a zombie): its pidfd is
    /// readable, or `waitid` says so without reaping. Called under `life`, so the
    /// watcher cannot reap it meanwhile.
    fn has_ended_unreaped(&self) -> bool {
        match &self.handle {
            ChildHandle::Pidfd(pidfd) => sys::is_readable_now(pidfd.as_raw_fd()).unwrap_or(false),
            ChildHandle::Gone => true,
            ChildHandle::Pid => sys::has_exited_unreaped(self.pid),
        }
    }

    /// Blocks until the child has exited, without reaping it (its pid stays reserved),
    /// and without holding `life`.
    fn wait_exited_unreaped(&self) {
        let _ = match &self.handle {
            ChildHandle::Pidfd(pidfd) => sys::wait_exited_pidfd_keep_zombie(pidfd),
            ChildHandle::Gone => Ok(()),
            ChildHandle::Pid => sys::wait_exited_keep_zombie(self.pid),
        };
    }

    /// Reaps the child, which has exited, and records how it ended; returns that. Under
    /// the `life` lock, so that a signal is never sent to a reaped pid (see the module
    /// docs); the wait does not block, the exit having happened.
    fn reap_and_record(&self) -> ExitInfo {
        let mut life = self.life.lock();
        let requested = matches!(*life, Life::Running { end_requested: true });
        let status = match &self.handle {
            ChildHandle::Pidfd(pidfd) => sys::reap_pidfd(pidfd),
            ChildHandle::Gone => Err(io::Error::from_raw_os_error(libc::ECHILD)),
            ChildHandle::Pid => sys::reap(self.pid),
        };
        let description = match status {
            Ok(status) => sys::describe_wait_status(status),
            // ECHILD: the host ignores SIGCHLD (the kernel reaped the child) or reaped it.
            Err(e) => format!(
                "ended (its exit status was taken by the host, which ignores SIGCHLD or reaps its children: {e})"
            ),
        };
        let info = ExitInfo { description, requested };
        *life = Life::Exited(info.clone());
        self.exited.notify_all();
        info
    }

    fn mark_drained(&self) {
        *self.drained.lock() = true;
        self.drained_cond.notify_all();
    }

    fn record_stderr(&self, bytes: &[u8], events: &EventBus) {
        let lines = self.stderr.lock().push(bytes);
        for line in lines {
            events.emit(EventKind::WorkerStderr, Some(self.pid), Some(line));
        }
    }
}

/// Takes what the child wrote to stderr before it ended, and its last unfinished line. A
/// grandchild may hold stderr open, so only what is there now is read.
fn drain_stderr(process: &Process, stderr: &OwnedFd, events: &EventBus) {
    let mut chunk = [0u8; 4096];
    if sys::set_nonblocking(stderr.as_raw_fd(), true).is_ok() {
        while let Ok(n) = sys::read(stderr.as_raw_fd(), &mut chunk) {
            if n == 0 {
                break;
            }
            process.record_stderr(&chunk[..n], events);
        }
    }
    let last = process.stderr.lock().finish();
    if let Some(line) = last {
        events.emit(EventKind::WorkerStderr, Some(process.pid), Some(line));
    }
}

/// The watcher's body: read stderr while waiting for the exit, then reap.
fn watch(process: &Process, stderr: &OwnedFd, events: &EventBus) {
    let pid = process.pid;
    let pidfd = match &process.handle {
        ChildHandle::Pidfd(pidfd) => Some(pidfd),
        ChildHandle::Gone | ChildHandle::Pid => None,
    };
    // Already reaped by the host: nothing to wait for (and its pid may be another's).
    let gone = matches!(process.handle, ChildHandle::Gone);
    let mut chunk = [0u8; 4096];
    let mut stderr_open = true;
    if !gone {
        loop {
            let mut fds = Vec::with_capacity(2);
            if stderr_open {
                fds.push(libc::pollfd { fd: stderr.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            if let Some(pidfd) = pidfd {
                fds.push(libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            if fds.is_empty() {
                // No pidfd (old kernel) and stderr closed: block until the exit.
                let _ = sys::wait_exited_keep_zombie(pid);
                break;
            }
            if sys::poll(&mut fds, -1).is_err() {
                let _ = sys::wait_exited_keep_zombie(pid);
                break;
            }
            let exited = pidfd.is_some() && fds.last().is_some_and(|fd| fd.revents != 0);
            if stderr_open && fds[0].revents != 0 {
                match sys::read(stderr.as_raw_fd(), &mut chunk) {
                    Ok(0) | Err(_) => stderr_open = false,
                    Ok(n) => process.record_stderr(&chunk[..n], events),
                }
            }
            if exited {
                break;
            }
        }
    }
    // The child is a zombie now: its pid stays reserved until we reap it here.
    let status = process.reap_and_record();
    if stderr_open {
        drain_stderr(process, stderr, events);
    }
    process.mark_drained();
    let hook = process.on_exit.lock().take();
    if let Some(hook) = hook {
        hook(&status);
    }
}
