//! Starting workers: failures at boot, handshakes, timeouts, commands, environment.

mod common;
use common::{relay, started, Relay};
use roadrunner::{ErrorKind, Server};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn start_error(config: roadrunner::Config) -> roadrunner::Error {
    let server = Server::new(config).unwrap();
    let error = server.start().unwrap_err();
    assert!(server.workers().is_err(), "a failed start leaves no pool");
    assert_eq!(server.exec(b"", b"").unwrap_err().kind(), ErrorKind::State);
    error
}

fn failing_boot_fails_the_start_with_its_stderr(kind: Relay) {
    let (relay, _dir) = relay(kind);
    // The original hung about one run in eight here; every run must return.
    for run in 0..12 {
        let mut config = common::config(&relay, &format!("failboot run-{run}"), 3);
        config.relay_timeout = Duration::from_secs(60);
        let started_at = Instant::now();
        let error = start_error(config);
        assert_eq!(error.kind(), ErrorKind::Spawn, "{error}");
        assert!(error.message().contains(&format!("failboot line 199 run-{run}")), "{error}");
        assert!(error.message().contains("exited with status 1"), "{error}");
        // A worker that exits before it connects fails its spawn at once, not at relay_timeout.
        assert!(started_at.elapsed() < Duration::from_secs(20));
        common::assert_no_children();
    }
}

fn one_bad_worker_among_good_ones_leaves_nothing_running(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let script = format!(
        "sh -c 'if [ \"$RR_FAIL_ONE\" = 1 ] && mkdir \"$RR_LOCK\" 2>/dev/null; then echo this one fails >&2; exit 4; fi; exec {} echo'",
        common::worker_path()
    );
    let lock = tempfile::tempdir().unwrap();
    let mut config = roadrunner::Config::new(script, relay.as_str());
    config.num_workers = 4;
    config.env =
        vec![("RR_FAIL_ONE".into(), "1".into()), ("RR_LOCK".into(), lock.path().join("taken").display().to_string())];
    let error = start_error(config);
    assert_eq!(error.kind(), ErrorKind::Spawn);
    assert!(error.message().contains("this one fails"), "{error}");
    assert!(error.message().contains("exited with status 4"), "{error}");
}

fn handshake_that_never_comes_times_out(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let mut config = common::config(&relay, "silent", 1);
    config.relay_timeout = Duration::from_millis(300);
    let error = start_error(config);
    assert_eq!(error.kind(), ErrorKind::Spawn);
    assert!(error.message().contains("relay_timeout"), "{error}");
    assert!(error.message().contains("was killed by the pool"), "{error}");
}

on_every_relay!(
    failing_boot_fails_the_start_with_its_stderr,
    one_bad_worker_among_good_ones_leaves_nothing_running,
    handshake_that_never_comes_times_out,
);

#[test]
fn handshake_with_another_pid_is_a_spawn_error_not_a_crash() {
    common::isolated(|| {
        let error = start_error(common::config("pipes", "badpid", 1));
        assert_eq!(error.kind(), ErrorKind::Spawn);
        let pid = error.pid().unwrap();
        assert!(error.message().contains(&format!("pid 1, but the process started is {pid}")), "{error}");
    });
}

#[test]
fn stray_stdout_at_boot_is_a_spawn_error() {
    common::isolated(|| {
        let error = start_error(common::config("pipes", "stray-stdout", 1));
        assert_eq!(error.kind(), ErrorKind::Spawn);
        assert!(error.message().contains("Hello! I print"), "{error}");
    });
}

#[test]
fn missing_program_is_a_spawn_error() {
    common::isolated(|| {
        let config = roadrunner::Config::new("/nonexistent/worker --flag", "pipes");
        let error = start_error(config);
        assert_eq!(error.kind(), ErrorKind::Spawn);
        assert!(error.message().contains("/nonexistent/worker"), "{error}");
    });
}

#[test]
fn command_is_split_like_a_shell_would() {
    common::isolated(|| {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("a dir with spaces");
        std::fs::create_dir(&spaced).unwrap();
        let program = spaced.join("worker \"quoted\"");
        std::fs::copy(common::worker_path(), &program).unwrap();
        let command = format!("'{}' echo", program.display());
        let server =
            Server::new(roadrunner::Config { num_workers: 1, ..roadrunner::Config::new(command, "pipes") }).unwrap();
        server.start().unwrap();
        assert_eq!(server.exec(b"", b"hi").unwrap().body(), b"hi");

        let escaped = format!("{} echo", program.display().to_string().replace(' ', "\\ ").replace('"', "\\\""));
        let server =
            Server::new(roadrunner::Config { num_workers: 1, ..roadrunner::Config::new(escaped, "pipes") }).unwrap();
        server.start().unwrap();
        assert_eq!(server.exec(b"", b"ho").unwrap().body(), b"ho");
    });
}

fn environment_and_directory_reach_the_worker(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let dir = tempfile::tempdir().unwrap();
    let server = common::started_with(&relay, "echo", 1, |c| {
        c.env = vec![("RR_TEST_GREETING".into(), "hello world".into())];
        c.dir = Some(dir.path().to_path_buf());
    });
    assert_eq!(server.exec(b"!env:RR_TEST_GREETING", b"").unwrap().body(), b"hello world");
    let cwd = server.exec(b"!cwd", b"").unwrap();
    assert_eq!(std::path::Path::new(&*String::from_utf8_lossy(cwd.body())), dir.path().canonicalize().unwrap());
    let relay_env = server.exec(b"!env:RR_RELAY", b"").unwrap();
    let relay_env = String::from_utf8_lossy(relay_env.body()).to_string();
    match kind {
        Relay::Pipes => assert_eq!(relay_env, "pipes"),
        Relay::Tcp => assert!(relay_env.starts_with("tcp://127.0.0.1:") && !relay_env.ends_with(":0"), "{relay_env}"),
        Relay::Unix => assert_eq!(relay_env, relay),
    }
}

on_every_relay!(environment_and_directory_reach_the_worker);

/// The bits of `field` (a signal mask in hex) in a /proc/PID/status text.
fn signal_mask(status: &str, field: &str) -> u64 {
    let line = status.lines().find(|line| line.starts_with(field)).unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

/// What a host may have done to itself, undone when dropped: a descriptor opened
/// without O_CLOEXEC, SIGXFSZ and SIGCHLD ignored.
struct CarelessHost {
    inherited: i32,
}

impl CarelessHost {
    fn new(marker: &std::path::Path) -> CarelessHost {
        let path = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path. No O_CLOEXEC, on purpose; closed on drop.
        let inherited = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
        assert!(inherited >= 3, "open failed");
        // SAFETY: dispositions only, restored on drop; no handler code is involved.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        }
        CarelessHost { inherited }
    }
}

impl Drop for CarelessHost {
    fn drop(&mut self) {
        // SAFETY: ours, closed once; the dispositions back to the default.
        unsafe {
            libc::close(self.inherited);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
}

/// What the host did to itself does not reach a worker: a descriptor opened without
/// O_CLOEXEC, signals blocked (none are here, unless the thread that first started a
/// worker had some), SIGPIPE ignored (Rust's runtime does it; Python's too, and
/// SIGXFSZ), SIGCHLD ignored (a worker could not wait for its own children).
fn a_worker_starts_with_no_host_descriptors_and_default_signals(kind: Relay) {
    let (relay, _dir) = relay(kind);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("host-only");
    std::fs::write(&marker, b"host").unwrap();
    let host = CarelessHost::new(&marker);
    // The shell records what it was started with (from subshells, so that their
    // redirections do not show), then becomes the test worker, under the same pid.
    let command = format!(
        "sh -c '(cat /proc/$$/status) > status; (ls /proc/$$/fd) > fds; exec \"$0\" echo' '{}'",
        common::worker_path()
    );
    let server = common::started_with(&relay, "echo", 1, |c| {
        c.command = command;
        c.dir = Some(dir.path().to_path_buf());
    });
    assert_eq!(server.exec(b"", b"up").unwrap().body(), b"up");
    drop(server);
    // A shell puts SIGCHLD back to its default itself (it needs it): ask a worker started
    // directly. (It is a Rust program: its runtime ignores SIGPIPE, so only SIGCHLD here.)
    let direct = common::started(&relay, "echo", 1);
    let own = direct.exec(b"!read:/proc/self/status", b"").unwrap();
    let own_ignored = signal_mask(&String::from_utf8_lossy(own.body()), "SigIgn:");
    assert_eq!(own_ignored & (1 << (libc::SIGCHLD - 1)), 0, "SIGCHLD ignored in the worker: {own_ignored:#x}");
    drop(direct);
    let inherited = host.inherited;
    drop(host);

    let mut fds: Vec<u32> = std::fs::read_to_string(dir.path().join("fds"))
        .unwrap()
        .split_whitespace()
        .map(|fd| fd.parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "the worker inherited the host's descriptor {inherited}, or others");
    let status = std::fs::read_to_string(dir.path().join("status")).unwrap();
    assert_eq!(signal_mask(&status, "SigBlk:"), 0, "signals blocked in the worker");
    let ignored = signal_mask(&status, "SigIgn:");
    for signal in [libc::SIGPIPE, libc::SIGXFSZ] {
        assert_eq!(ignored & (1 << (signal - 1)), 0, "signal {signal} ignored in the worker: SigIgn {ignored:#x}");
    }
}

on_every_relay!(a_worker_starts_with_no_host_descriptors_and_default_signals);

/// A worker written with the library's worker side, over pipes, no longer has the relay
/// on its standard streams once connected: stdin reads /dev/null (a child it starts,
/// which inherits fd 0, cannot take the bytes of tasks) and stdout writes to stderr.
#[test]
fn a_worker_side_over_pipes_leaves_no_standard_stream_on_the_relay() {
    common::isolated(|| {
        let server = common::started("pipes", "echo", 1);
        let answer = server.exec(b"!fds", b"").unwrap();
        let fds = String::from_utf8_lossy(answer.body()).to_string();
        let target =
            |fd: &str| fds.split_whitespace().find_map(|entry| entry.strip_prefix(fd)).unwrap_or("").to_string();
        assert_eq!(target("0="), "/dev/null", "{fds}");
        assert_eq!(target("1="), target("2="), "stdout must go where stderr goes: {fds}");
        assert!(target("2=").starts_with("pipe:"), "{fds}");
        // The stream still works after the check.
        assert_eq!(server.exec(b"", b"still fine").unwrap().body(), b"still fine");
    });
}

#[test]
fn a_connection_claiming_an_unknown_pid_is_closed() {
    common::isolated(|| {
        let server = started("tcp://127.0.0.1:0", "echo", 1);
        let relay_env = server.exec(b"!env:RR_RELAY", b"").unwrap();
        let address = String::from_utf8_lossy(relay_env.body()).trim_start_matches("tcp://").to_string();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut prefix = [0u8; 17];
        stream.read_exact(&mut prefix).unwrap();
        let size = u64::from_le_bytes(prefix[1..9].try_into().unwrap()) as usize;
        let mut hello = vec![0u8; size];
        stream.read_exact(&mut hello).unwrap();
        assert_eq!(hello, format!("{{\"pid\":{}}}", std::process::id()).as_bytes());
        let claim = br#"{"pid":999999}"#;
        let mut answer = vec![16u8];
        answer.extend_from_slice(&(claim.len() as u64).to_le_bytes());
        answer.extend_from_slice(&(claim.len() as u64).to_be_bytes());
        answer.extend_from_slice(claim);
        stream.write_all(&answer).unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "the server must close the connection");
        assert_eq!(server.exec(b"", b"still serving").unwrap().body(), b"still serving");
    });
}

#[test]
fn unix_socket_file_is_owner_only_removed_on_stop_and_stale_ones_replaced() {
    use std::os::unix::fs::PermissionsExt;
    common::isolated(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rr.sock");
        // A stale socket file, as left by a process that died.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let relay = format!("unix://{}", path.display());
        let server = started(&relay, "echo", 2);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(server.exec(b"", b"x").unwrap().body(), b"x");
        server.stop().unwrap();
        assert!(!path.exists(), "the socket file is removed on stop");

        std::fs::write(&path, b"not a socket").unwrap();
        let error = Server::new(common::config(&relay, "echo", 1)).unwrap().start().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains("not a socket"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket", "a file that is not a socket is never removed");
    });
}

#[test]
fn thirty_two_slow_booting_workers_start_in_parallel() {
    common::isolated(|| {
        let started_at = Instant::now();
        let server = started("pipes", "boot-sleep 200", 32);
        let took = started_at.elapsed();
        assert_eq!(server.workers().unwrap().len(), 32);
        // One after another this would take 6.4 s.
        assert!(took < Duration::from_secs(4), "32 workers booting 200 ms each took {took:?}");
    });
}

#[test]
fn silent_connections_do_not_hold_up_workers_that_connect() {
    common::isolated(|| {
        let mut config = common::config("tcp://127.0.0.1:0", "echo", 2);
        config.relay_timeout = Duration::from_secs(3);
        let server = Server::new(config).unwrap();
        server.start().unwrap();
        let relay_env = server.exec(b"!env:RR_RELAY", b"").unwrap();
        let address = String::from_utf8_lossy(relay_env.body()).trim_start_matches("tcp://").to_string();
        // Connections that never answer the handshake.
        let silent: Vec<_> = (0..4).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
        let started_at = Instant::now();
        server.reset().unwrap();
        assert!(started_at.elapsed() < Duration::from_secs(3), "new workers connected while the silent ones waited");
        assert_eq!(server.exec(b"", b"served").unwrap().body(), b"served");
        drop(silent);
    });
}

#[test]
fn a_unix_connection_from_a_process_nobody_waits_for_is_closed_unheard() {
    common::isolated(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rr.sock");
        let mut config = common::config(&format!("unix://{}", path.display()), "silent", 1);
        config.relay_timeout = Duration::from_secs(2);
        let server = std::sync::Arc::new(Server::new(config).unwrap());
        let starting = {
            let server = server.clone();
            std::thread::spawn(move || server.start())
        };
        // The silent worker is started and awaited; we connect in its place.
        assert!(common::wait_until(10, || common::children().len() == 1 && path.exists()));
        let waited_for = common::children()[0];
        let mut impostor = std::os::unix::net::UnixStream::connect(&path).unwrap();
        impostor.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut claim = vec![16u8];
        let body = format!("{{\"pid\":{waited_for}}}");
        claim.extend_from_slice(&(body.len() as u64).to_le_bytes());
        claim.extend_from_slice(&(body.len() as u64).to_be_bytes());
        claim.extend_from_slice(body.as_bytes());
        let _ = impostor.write_all(&claim);
        // Our credentials name this test process, not the worker: no handshake at all.
        let mut heard = Vec::new();
        let _ = impostor.read_to_end(&mut heard);
        assert!(heard.is_empty(), "the server talked to a process it does not wait for");
        let error = starting.join().unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Spawn);
        assert!(error.message().contains("did not connect"), "{error}");
    });
}
