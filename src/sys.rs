//! Thin wrappers of the Linux calls that std does not offer, each returning
//! `io::Result`. No policy lives here: callers decide what a failure means.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// Runs `write` (a write to a pipe) with SIGPIPE blocked in the calling thread, and
/// gives the thread its signal mask back before returning (a panic included): a write
/// to a pipe whose reader is gone then fails with EPIPE instead of killing the process.
/// A SIGPIPE that the write raised is taken off the thread, so it is never delivered
/// later. Where the caller had SIGPIPE blocked already, nothing is changed or taken: a
/// pending SIGPIPE may then be the caller's own. Two `rt_sigprocmask` calls per write,
/// for the pipes that may have no reader: the worker side's, and the host's where the
/// kernel gives no pidfd (see `relay`).
pub(crate) fn without_sigpipe<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    /// Gives the thread its mask back, and takes off a SIGPIPE the write raised.
    struct Restore {
        pipe_only: libc::sigset_t,
        before: libc::sigset_t,
        raised: bool,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain data; a zero timeout makes sigtimedwait return at once; the
            // mask set back is the one the thread had.
            unsafe {
                if self.raised {
                    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                    while libc::sigtimedwait(&self.pipe_only, std::ptr::null_mut(), &zero) == libc::SIGPIPE {}
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut());
            }
        }
    }
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the calls
    // only change the calling thread's mask.
    let mut restore = unsafe {
        let mut pipe_only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe_only);
        libc::sigaddset(&mut pipe_only, libc::SIGPIPE);
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe_only, &mut before);
        if libc::sigismember(&before, libc::SIGPIPE) == 1 {
            // Blocked already: the caller's, left as it is.
            return write();
        }
        Restore { pipe_only, before, raised: false }
    };
    let result = write();
    restore.raised = matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE));
    result
}

fn check(result: isize) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result as usize)
    }
}

/// `read(2)`, retried on EINTR.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a slice is valid for writes of its length.
    unsafe { read_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// `read(2)` into `len` bytes at `ptr` (which may be uninitialised memory), retried on EINTR.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub(crate) unsafe fn read_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: the caller gives a writable region of `len` bytes.
        match check(unsafe { libc::read(fd, ptr.cast(), len) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What a write does when the peer's buffer is full (EAGAIN on a non-blocking pipe, or
/// on a socket, which is always written with MSG_DONTWAIT).
#[derive(Clone, Copy)]
pub(crate) enum WhenFull {
    /// Wait for room until `deadline` (if any), then fail with `TimedOut`; fail with
    /// EPIPE once `gone` (if any) is readable: the peer will never read.
    Wait { deadline: Option<Instant>, gone: Option<RawFd> },
    /// Stop and report how far the write got.
    Stop,
}

/// Writes `parts`, in order, starting `skip` bytes in (what an earlier call already
/// wrote), with as few `writev`/`sendmsg` calls as the kernel allows (one for anything
/// that fits the pipe or socket buffer). Returns how many bytes of `parts` are written
/// in all, `skip` included: all of them unless `when_full` is `Stop` and the peer's
/// buffer filled up.
pub(crate) fn write_vectored(
    fd: RawFd,
    is_socket: bool,
    parts: &[&[u8]],
    skip: usize,
    when_full: WhenFull,
) -> io::Result<usize> {
    let mut iov: [libc::iovec; 4] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 4];
    assert!(parts.len() <= iov.len(), "at most four parts per write");
    let mut count = 0;
    let mut to_skip = skip;
    for part in parts {
        let skipped = to_skip.min(part.len());
        to_skip -= skipped;
        let rest = &part[skipped..];
        if !rest.is_empty() {
            iov[count] = libc::iovec { iov_base: rest.as_ptr() as *mut _, iov_len: rest.len() };
            count += 1;
        }
    }
    assert_eq!(to_skip, 0, "skipping more than there is to write");
    let mut total = skip;
    let mut first = 0;
    while first < count {
        let written = loop {
            let result = if is_socket {
                // SAFETY: msghdr points at live iovecs for the duration of the call.
                unsafe {
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov[first..count].as_mut_ptr();
                    msg.msg_iovlen = count - first;
                    libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                }
            } else {
                // SAFETY: the iovecs point into `parts`, alive for the call.
                unsafe { libc::writev(fd, iov[first..count].as_ptr(), (count - first) as libc::c_int) }
            };
            match check(result) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match when_full {
                    WhenFull::Stop => return Ok(total),
                    WhenFull::Wait { deadline, gone } => match wait_for(fd, libc::POLLOUT, gone, deadline)? {
                        Ready::Yes => continue,
                        Ready::Gone => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
                        Ready::TimedOut => {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not read in time"))
                        }
                    },
                },
                Err(e) => return Err(e),
                Ok(n) => break n,
            }
        };
        total += written;
        let mut left = written;
        while first < count && left >= iov[first].iov_len {
            left -= iov[first].iov_len;
            first += 1;
        }
        if first < count && left > 0 {
            // SAFETY: advancing within the same buffer, `left` < its length.
            iov[first].iov_base = unsafe { (iov[first].iov_base as *mut u8).add(left) }.cast();
            iov[first].iov_len -= left;
        }
    }
    Ok(total)
}

/// How a wait for a descriptor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The descriptor is ready (or has an error or hang-up that the next call reports).
    Yes,
    /// It is not, and the `gone` descriptor became readable: the peer has ended.
    Gone,
    /// Neither, and the deadline passed.
    TimedOut,
}

/// The timeout argument of poll or epoll_wait for `deadline`: -1 for none, else the
/// milliseconds left, rounded up, so that a wait never ends just before its deadline.
fn timeout_ms(deadline: Option<Instant>) -> i32 {
    match deadline {
        None => -1,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_millis().saturating_add(u128::from(left.subsec_nanos() % 1_000_000 != 0));
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// Waits until `fd` is ready for `events` (POLLIN or POLLOUT), `gone` (if any) is
/// readable, or `deadline` (if any) passes. `fd` wins over `gone` when both are ready,
/// so that what a peer sent before it ended is still read.
pub(crate) fn wait_for(
    fd: RawFd,
    events: libc::c_short,
    gone: Option<RawFd>,
    deadline: Option<Instant>,
) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd { fd, events, revents: 0 },
        // A negative fd is ignored by poll(2).
        libc::pollfd { fd: gone.unwrap_or(-1), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        let ms = timeout_ms(deadline);
        // SAFETY: two valid pollfds.
        match check(unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) } as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(0) if deadline.is_some_and(|deadline| Instant::now() >= deadline) => return Ok(Ready::TimedOut),
            Ok(0) => continue,
            Ok(_) if fds[0].revents != 0 => return Ok(Ready::Yes),
            Ok(_) => return Ok(Ready::Gone),
        }
    }
}

/// Whether `fd` is readable right now (data, end of file or an error): one `poll` that
/// does not wait.
pub(crate) fn is_readable_now(fd: RawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        match check(unsafe { libc::poll(&mut pfd, 1, 0) } as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(ready) => return Ok(ready > 0),
        }
    }
}

/// Polls several fds for readability; returns how many are ready (0 on timeout).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid slice of pollfd.
        match check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) } as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Makes the pipe of `fd` hold at least `size` bytes (rounded up by the kernel); returns
/// its new capacity. Fails with EPERM past the limits of an unprivileged user
/// (/proc/sys/fs/pipe-max-size, pipe-user-pages-soft).
pub(crate) fn grow_pipe(fd: RawFd, size: usize) -> io::Result<usize> {
    let size = libc::c_int::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: fcntl on a descriptor we own; no memory arguments.
    check(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) } as isize)
}

/// Sets or clears `O_NONBLOCK`.
pub(crate) fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = check(libc::fcntl(fd, libc::F_GETFL) as isize)? as libc::c_int;
        let flags = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        check(libc::fcntl(fd, libc::F_SETFL, flags) as isize)?;
    }
    Ok(())
}

/// Sets an integer socket option.
pub(crate) fn set_socket_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int of the right size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(result as isize).map(|_| ())
}

/// The pid of the process at the other end of a Unix socket (`SO_PEERCRED`).
pub(crate) fn peer_pid(fd: RawFd) -> io::Result<u32> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        check(libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        ) as isize)?;
        Ok(cred.pid as u32)
    }
}

/// Sends `signal` to `pid`. Callers must guarantee the pid has not been reaped.
pub(crate) fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::kill(pid as libc::pid_t, signal) } as isize).map(|_| ())
}

/// A pidfd for `pid` (Linux 5.3 and later): a handle on that one process, which stays
/// valid (and never names another process) after it exited and was reaped.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; returns a new descriptor or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as isize)?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reaps the child behind `pidfd` (Linux 5.4 and later); returns its status in the form
/// `waitpid` gives. Unlike reaping by pid, it cannot wait for another child that got
/// the pid after the host took this one's status (that fails with ECHILD instead).
pub(crate) fn reap_pidfd(pidfd: &OwnedFd) -> io::Result<libc::c_int> {
    waitid_pidfd(pidfd, libc::WEXITED)
}

/// Blocks until the child behind `pidfd` has exited, without reaping it (`WNOWAIT`):
/// it stays a zombie, its pid reserved, until [`reap_pidfd`].
pub(crate) fn wait_exited_pidfd_keep_zombie(pidfd: &OwnedFd) -> io::Result<()> {
    waitid_pidfd(pidfd, libc::WEXITED | libc::WNOWAIT).map(|_| ())
}

fn waitid_pidfd(pidfd: &OwnedFd, options: libc::c_int) -> io::Result<libc::c_int> {
    // Not in the libc crate yet: `waitid`'s id type for a pidfd (include/linux/wait.h).
    const P_PIDFD: libc::idtype_t = 3;
    loop {
        // SAFETY: siginfo_t is plain data written by waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a live descriptor and a live siginfo_t.
        let result = unsafe { libc::waitid(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, options) };
        match check(result as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => {
                // SAFETY: waitid filled in a child's siginfo.
                let status = unsafe { info.si_status() };
                return Ok(match info.si_code {
                    libc::CLD_EXITED => (status & 0xff) << 8,
                    libc::CLD_DUMPED => (status & 0x7f) | 0x80,
                    _ => status & 0x7f,
                });
            }
        }
    }
}

/// Sends `signal` to the process behind `pidfd`; fails with ESRCH once it was reaped.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a live descriptor; a NULL siginfo asks for the same signal info as kill().
    let result = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    check(result as isize).map(|_| ())
}

/// Blocks until `pid` has exited, without reaping it (`WNOWAIT`), so the pid stays
/// reserved (a zombie) until [`reap`] is called.
pub(crate) fn wait_exited_keep_zombie(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data written by waitid.
        let result = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        match check(result as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// Whether `pid` (a child of ours, not reaped) has exited: a zombie. Does not reap it.
pub(crate) fn has_exited_unreaped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data written by waitid; WNOHANG returns at once.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let result =
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        result == 0 && info.si_pid() != 0
    }
}

/// Reaps `pid`; returns its raw wait status.
pub(crate) fn reap(pid: u32) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: plain syscall with a pointer to a live c_int.
        match check(unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } as isize) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(status),
        }
    }
}

/// Describes a raw wait status in words: "exited with status 3", "killed by signal 9".
pub(crate) fn describe_wait_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        format!("was killed by signal {signal} ({})", signal_name(signal))
    } else {
        format!("ended with wait status {status}")
    }
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

/// Resident memory of `pid` in bytes, from /proc; `None` if it cannot be read.
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page as u64)
}

/// The CPU the calling thread runs on right now (a hint: it may move at any time), or
/// -1 if the system cannot tell. Cheap: glibc reads it from rseq or the vDSO.
pub(crate) fn current_cpu() -> i32 {
    // SAFETY: no arguments, no memory touched.
    unsafe { libc::sched_getcpu() }
}

/// The error pending on socket `fd` (SO_ERROR), which reading it clears; `None` if there
/// is none or it cannot be read.
pub(crate) fn take_socket_error(fd: RawFd) -> Option<i32> {
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one c_int into `error`, its size in `len`.
    let result =
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut error).cast(), &raw mut len) };
    (result == 0 && error != 0).then_some(error)
}

/// The CPUs this process may run on (the affinity of its main thread), in ascending order.
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits; all zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // The main thread's tid is the pid: the caller's own thread may have been narrowed.
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: the kernel writes at most size_of::<cpu_set_t>() bytes into `set`.
    if unsafe { libc::sched_getaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET only reads `set`, for indexes below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Binds the calling process to `cpu` alone. Async-signal-safe (one syscall on a stack
/// value), so a child may call it between fork and exec.
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // CPU_SET would panic past the set, and a panic must not happen between fork and exec.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: as in allowed_cpus; `cpu` is within the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the kernel reads size_of::<cpu_set_t>() bytes from `set`.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling process in the `SCHED_BATCH` class: a woken task no longer preempts
/// the one that woke it. No privilege is needed, unless the process is in `SCHED_IDLE`
/// (then RLIMIT_NICE or CAP_SYS_NICE is). Async-signal-safe.
pub(crate) fn use_batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: the kernel reads one sched_param from `param`.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the calling process (a child between fork and exec) the signal state a new
/// program expects, whatever the host did to its own: no signal blocked (a mask
/// survives exec), and SIGPIPE, SIGXFSZ and SIGCHLD back to their default action. Language
/// runtimes ignore the first two for themselves (Python, Rust), and an ignored signal
/// stays ignored across exec; an ignored SIGCHLD would keep the worker from waiting for
/// its own children. Other ignored signals are left alone: a host run under `nohup`
/// means its children to ignore SIGHUP too. (std's `Command` clears the mask and
/// restores SIGPIPE itself today; done here too, so as not to depend on it.)
/// Async-signal-safe.
pub(crate) fn reset_signals_for_exec() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, filled by sigemptyset; the calls take no locks.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in [libc::SIGPIPE, libc::SIGXFSZ, libc::SIGCHLD] {
            if libc::signal(signal, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Makes every descriptor from 3 up close on exec, so that a worker gets its standard
/// streams and nothing of the host's: a C host's sockets and files are often opened
/// without `O_CLOEXEC` (a listening socket inherited by workers keeps its port busy
/// after the host is gone). Marked rather than closed: the runtime's own descriptor
/// that reports a failed exec must stay open until the exec. Kernels before 5.11 lack
/// the call; the descriptors are then left as they are. Async-signal-safe.
pub(crate) fn close_inherited_descriptors_on_exec() {
    // SAFETY: no memory arguments.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

/// A new eventfd, non-blocking and close-on-exec (readable while its counter is above 0).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    let flags = libc::EFD_CLOEXEC | libc::EFD_NONBLOCK;
    // SAFETY: no memory arguments; returns a new descriptor or -1.
    let fd = check(unsafe { libc::eventfd(0, flags) } as isize)?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Adds `n` to an eventfd's counter.
pub(crate) fn eventfd_add(fd: &OwnedFd, n: u64) -> io::Result<()> {
    let bytes = n.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live array.
    check(unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), 8) } as isize).map(|_| ())
}

/// Takes an eventfd's whole counter; `Ok(0)` when it was zero.
pub(crate) fn eventfd_take(fd: &OwnedFd) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: reads 8 bytes into a live array.
    match check(unsafe { libc::read(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) } as isize) {
        Ok(_) => Ok(u64::from_ne_bytes(bytes)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// A new epoll instance (close-on-exec).
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no memory arguments; returns a new descriptor or -1.
    let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as isize)?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What an epoll instance watches a descriptor for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Adds `fd` to `epoll`, level-triggered, with `key` as its data.
pub(crate) fn epoll_add(epoll: &OwnedFd, fd: RawFd, interest: Interest, key: u64) -> io::Result<()> {
    epoll_control(epoll, libc::EPOLL_CTL_ADD, fd, epoll_events(interest), key)
}

/// Watches `fd` for one event of `interest` (EPOLLONESHOT), with `key` as its data:
/// re-arms a descriptor already added, adds it otherwise. Once the event was reported
/// the descriptor stays in `epoll`, disarmed, until armed again (one system call). If
/// the descriptor is ready already, the event is reported at once.
pub(crate) fn epoll_arm_once(epoll: &OwnedFd, fd: RawFd, interest: Interest, key: u64) -> io::Result<()> {
    let events = epoll_events(interest) | libc::EPOLLONESHOT as u32;
    match epoll_control(epoll, libc::EPOLL_CTL_MOD, fd, events, key) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => epoll_control(epoll, libc::EPOLL_CTL_ADD, fd, events, key),
        done => done,
    }
}

fn epoll_events(interest: Interest) -> u32 {
    (match interest {
        Interest::Read => libc::EPOLLIN,
        Interest::Write => libc::EPOLLOUT,
    }) as u32
}

fn epoll_control(epoll: &OwnedFd, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: key };
    // SAFETY: a live epoll descriptor and a live event struct.
    check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) } as isize).map(|_| ())
}

/// Waits for events on `epoll` until `deadline` (if any); returns the keys of the ready
/// descriptors in `keys` (cleared first).
pub(crate) fn epoll_wait(epoll: &OwnedFd, deadline: Option<Instant>, keys: &mut Vec<u64>) -> io::Result<()> {
    const BATCH: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
    keys.clear();
    let ms = timeout_ms(deadline);
    // SAFETY: a live epoll descriptor and a buffer of BATCH events.
    match check(unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), BATCH as i32, ms) } as isize) {
        Ok(n) => {
            keys.extend(events[..n].iter().map(|event| event.u64));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}
