//! Workers that connect back to a TCP or Unix socket.
//!
//! One listener thread (`rr-accept`) accepts connections; each handshake runs on a
//! short thread of its own (`rr-handshake`, bounded by `relay_timeout` and joined when
//! the factory closes), and the connection goes to the spawn waiting for the pid it
//! claims. A spawn
//! registers its pid while still holding the registry's lock it took before forking,
//! so a child that connects at once cannot be turned away as unknown. A connection
//! that claims a pid nobody waits for (or, on Unix sockets, whose peer credentials
//! name another process) is closed.

use super::{exec_failure, handshake, handshake_failure, Factory, SpawnSettings};
use crate::config::{Protocol, RelayAddress};
use crate::error::{Error, ErrorKind, Result};
use crate::event::EventBus;
use crate::process::{ChildIo, CommandSpec, Process};
use crate::relay::{Relay, RelayError, Transport};
use crate::sync::Mutex;
use crate::sys;
use crate::worker::{describe_failure, Worker};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::io::{PipeReader, PipeWriter, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a waiting spawn learns.
enum Arrival {
    /// The child connected and answered the handshake.
    Connected(Relay),
    /// The child connected (a Unix socket's peer credentials say so) and failed the
    /// handshake so.
    Failed(RelayError),
    /// The child exited before that.
    Exited,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(listener) => listener.as_raw_fd(),
            Listener::Unix(listener, _) => listener.as_raw_fd(),
        }
    }

    /// Accepts one connection, with the peer's pid where the socket can tell it.
    fn accept(&self) -> std::io::Result<(Relay, Option<u32>)> {
        // Handshake frames are tiny; the real limit is set once the worker is known.
        Ok(match self {
            Listener::Tcp(listener) => {
                let (stream, _) = listener.accept()?;
                stream.set_nonblocking(false)?;
                (Relay::socket(OwnedFd::from(stream), Transport::Tcp, 1), None)
            }
            Listener::Unix(listener, _) => {
                let (stream, _) = listener.accept()?;
                stream.set_nonblocking(false)?;
                let peer = sys::peer_pid(stream.as_raw_fd()).ok();
                (Relay::socket(OwnedFd::from(stream), Transport::Unix, 1), peer)
            }
        })
    }
}

type Waiting = Mutex<HashMap<u32, Sender<Arrival>>>;

/// Listens for workers on a socket.
pub(crate) struct SocketFactory {
    worker_relay: String,
    waiting: Arc<Waiting>,
    unix_path: Option<PathBuf>,
    wake: Mutex<Option<PipeWriter>>,
    accept_thread: Mutex<Option<JoinHandle<()>>>,
}

impl SocketFactory {
    /// Binds `relay` and starts the accept thread.
    pub(crate) fn listen(relay: &RelayAddress, relay_timeout: Duration, protocol: Protocol) -> Result<SocketFactory> {
        let cannot = |e: std::io::Error| {
            Error::new(ErrorKind::Config, format!("cannot listen on relay {}: {e}", relay.for_worker()))
        };
        let (listener, worker_relay, unix_path) = match relay {
            RelayAddress::Tcp(address) => {
                let listener = TcpListener::bind(address).map_err(cannot)?;
                let bound = listener.local_addr().map_err(cannot)?;
                (Listener::Tcp(listener), format!("tcp://{bound}"), None)
            }
            RelayAddress::Unix(path) => {
                remove_stale_socket(path).map_err(cannot)?;
                let listener = UnixListener::bind(path).map_err(cannot)?;
                // Only our own user may connect; SO_PEERCRED checks the rest.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(cannot)?;
                (Listener::Unix(listener, path.clone()), relay.for_worker(), Some(path.clone()))
            }
            RelayAddress::Pipes => unreachable!("pipes need no listener"),
        };
        sys::set_nonblocking(listener.fd(), true).map_err(cannot)?;
        let (wake_read, wake_write) = std::io::pipe().map_err(cannot)?;
        let waiting: Arc<Waiting> = Arc::default();
        let thread_waiting = waiting.clone();
        let accept_thread = std::thread::Builder::new()
            .name("rr-accept".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    accept_loop(&listener, &wake_read, &thread_waiting, relay_timeout, protocol)
                }));
                if let Listener::Unix(_, path) = &listener {
                    let _ = std::fs::remove_file(path);
                }
            })
            .map_err(cannot)?;
        Ok(SocketFactory {
            worker_relay,
            waiting,
            unix_path,
            wake: Mutex::new(Some(wake_write)),
            accept_thread: Mutex::new(Some(accept_thread)),
        })
    }
}

/// Removes a socket file left by a process that is gone; refuses to touch other files.
fn remove_stale_socket(path: &PathBuf) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the path exists and is not a socket")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Most handshakes in progress at once; connections beyond it are closed at once.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// Handshakes in progress, each on a thread of its own (`rr-handshake`), so that a
/// connection that says nothing holds up only itself. Their sockets are registered so
/// that closing the factory can shut them down and join the threads at once.
#[derive(Default)]
struct Handshakes {
    sockets: Mutex<HashMap<u64, RawFd>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Handshakes {
    /// Shuts every pending handshake's socket down (their threads then end at once)
    /// and joins the threads.
    fn close_all(&self) {
        for fd in self.sockets.lock().values() {
            // SAFETY: the fd stays open while it is registered (see `handshake_one`).
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        for thread in std::mem::take(&mut *self.threads.lock()) {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &Listener,
    wake: &PipeReader,
    waiting: &Arc<Waiting>,
    relay_timeout: Duration,
    protocol: Protocol,
) {
    let handshakes = Arc::new(Handshakes::default());
    let mut next_id = 0u64;
    loop {
        let mut fds = [
            libc::pollfd { fd: listener.fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if sys::poll(&mut fds, -1).is_err() || fds[1].revents != 0 {
            break;
        }
        let (relay, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            Err(_) => {
                // Out of descriptors or memory: back off instead of spinning on the
                // connection that stays pending; the spawns waiting time out cleanly.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // On a Unix socket the kernel tells who connected: nobody we wait for, no talk.
        if peer.is_some_and(|peer| !waiting.lock().contains_key(&peer)) {
            continue;
        }
        handshakes.threads.lock().retain(|thread| !thread.is_finished());
        if handshakes.sockets.lock().len() >= MAX_PENDING_HANDSHAKES {
            continue;
        }
        let id = next_id;
        next_id += 1;
        handshakes.sockets.lock().insert(id, relay.read_fd());
        let (waiting, handshakes_of_thread) = (waiting.clone(), handshakes.clone());
        let thread = std::thread::Builder::new()
            .name("rr-handshake".into())
            .spawn(move || handshake_one(relay, peer, &waiting, &handshakes_of_thread, id, relay_timeout, protocol));
        match thread {
            Ok(thread) => handshakes.threads.lock().push(thread),
            Err(_) => {
                handshakes.sockets.lock().remove(&id);
            }
        }
    }
    handshakes.close_all();
}

/// Does the handshake on one connection and hands it to the spawn waiting for its pid.
fn handshake_one(
    mut relay: Relay,
    peer: Option<u32>,
    waiting: &Waiting,
    handshakes: &Handshakes,
    id: u64,
    relay_timeout: Duration,
    protocol: Protocol,
) {
    /// Unregisters the socket before the relay (and its fd) is dropped, even when
    /// unwinding: close_all must never shut down a descriptor number that was reused.
    struct Registered<'a>(&'a Handshakes, u64);
    impl Drop for Registered<'_> {
        fn drop(&mut self) {
            self.0.sockets.lock().remove(&self.1);
        }
    }
    let registered = Registered(handshakes, id);
    let pid = handshake(&mut relay, protocol, Instant::now() + relay_timeout);
    drop(registered);
    let pid = match pid {
        Ok(pid) => pid,
        Err(error) => {
            // Who failed is known on a Unix socket: tell its spawn why.
            if let Some(sender) = peer.and_then(|peer| waiting.lock().remove(&peer)) {
                let _ = sender.send(Arrival::Failed(error));
            }
            return;
        }
    };
    if peer.is_some_and(|peer| peer != pid) {
        // A process claiming to be another: close the connection.
        return;
    }
    if let Some(sender) = waiting.lock().remove(&pid) {
        let _ = sender.send(Arrival::Connected(relay));
    }
}

impl Factory for SocketFactory {
    fn spawn(&self, spec: &CommandSpec, limits: SpawnSettings, events: &EventBus) -> Result<Worker> {
        let (sender, arrivals): (Sender<Arrival>, Receiver<Arrival>) = crossbeam_channel::bounded(2);
        let process = {
            let mut waiting = self.waiting.lock();
            let (process, _) =
                Process::spawn(spec, ChildIo::Null, events.clone()).map_err(|e| exec_failure(spec, e))?;
            waiting.insert(process.pid(), sender.clone());
            process
        };
        process.on_exit(Box::new(move |_| {
            let _ = sender.send(Arrival::Exited);
        }));
        let arrival = arrivals.recv_timeout(limits.relay_timeout);
        self.waiting.lock().remove(&process.pid());
        process.clear_on_exit();
        let result = match arrival {
            Ok(Arrival::Connected(mut relay)) => {
                relay.set_max_frame(limits.max_frame);
                Ok(Worker::new(process.clone(), relay, limits.protocol, limits.codec))
            }
            Ok(Arrival::Failed(error)) => Err(describe_failure(
                &process,
                handshake_failure(&error, limits.protocol),
                ErrorKind::Spawn,
                error.peer_closed(),
            )),
            Ok(Arrival::Exited) => Err(describe_failure(
                &process,
                handshake_failure(&RelayError::Closed, limits.protocol),
                ErrorKind::Spawn,
                true,
            )),
            Err(_) => Err(describe_failure(
                &process,
                format!(
                    "did not connect to {} and answer the handshake within relay_timeout ({} ms) ({})",
                    self.worker_relay,
                    limits.relay_timeout.as_millis(),
                    super::protocol_hint(limits.protocol, &RelayError::Timeout)
                ),
                ErrorKind::Spawn,
                false,
            )),
        };
        if result.is_err() {
            process.join_watcher();
        }
        result
    }

    fn worker_relay(&self) -> String {
        self.worker_relay.clone()
    }

    fn close(&self) {
        if let Some(mut wake) = self.wake.lock().take() {
            let _ = wake.write_all(b"x");
        }
        if let Some(thread) = self.accept_thread.lock().take() {
            let _ = thread.join();
        }
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for SocketFactory {
    fn drop(&mut self) {
        self.close();
    }
}
