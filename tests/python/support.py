"""Helpers shared by the Python tests; no dependency on the library (see rr.py for that).

- children(): the processes whose parent is this process, zombies included (from /proc).
- wait_until(): poll a condition with a deadline (the tests never sleep to synchronize).
- NoChildrenLeft: a TestCase base whose tearDown fails if a child process is left.
"""

import os
import shlex
import sys
import time
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))


def rr_test_worker_path():
    """The Rust test worker: $RR_TEST_WORKER, else target/release/rr-test-worker."""
    path = os.environ.get("RR_TEST_WORKER") or os.path.join(
        REPO, "target", "release", "rr-test-worker")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"test worker {path!r} not found or not executable: run `cargo build --release` "
            "or set RR_TEST_WORKER")
    return path


def rr_test_worker_command(*args):
    return " ".join(shlex.quote(a) for a in (rr_test_worker_path(),) + args)


def python_command(script, *args):
    return " ".join(shlex.quote(a) for a in (sys.executable, script) + args)


def proc_stat(pid):
    """(state, ppid) of a pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # pid (comm) state ppid ...; comm may contain spaces and parentheses.
    rest = data.rpartition(")")[2].split()
    return rest[0], int(rest[1])


def children(parent=None):
    """{pid: state} of every process whose parent is `parent` (default: this process),
    zombies ('Z') included."""
    parent = os.getpid() if parent is None else parent
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is not None and st[1] == parent:
            found[int(name)] = st[0]
    return found


def describe(pids):
    out = []
    for pid, state in sorted(pids.items()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"pid {pid} state {state} cmd {cmd!r}")
    return "; ".join(out)


def wait_until(cond, timeout=10.0, interval=0.005, what="condition", state=None):
    """Polls cond() until it returns a true value (returned) or the deadline passes
    (AssertionError, with state() in the message when given)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"; state: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def wait_no_children(timeout=10.0):
    """Waits until this process has no child (zombies included); fails listing them."""
    deadline = time.monotonic() + timeout
    while True:
        left = children()
        if not left:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"child processes left {timeout}s after the test: {describe(left)}")
        time.sleep(0.005)


class NoChildrenLeft(unittest.TestCase):
    """Fails a test that leaves a child process (running or zombie) behind.

    Cleanups registered by the test (addCleanup, e.g. freeing the server) run before
    the check, since it is registered first."""

    def setUp(self):
        super().setUp()
        before = children()
        self.assertEqual(before, {}, f"children exist before the test: {describe(before)}")
        self.addCleanup(wait_no_children)


def free_tcp_port():
    """A loopback TCP port that was free a moment ago."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerCase(NoChildrenLeft):
    """A NoChildrenLeft test case with a helper that builds servers freed at cleanup."""

    def server(self, command=None, relay="pipes", start=True, listener=None, **settings):
        import rr
        if command is None:
            command = rr_test_worker_command()
        settings.setdefault("num_workers", 2)
        srv = rr.Server.create(command, relay, **settings)
        self.addCleanup(srv.free)
        if listener is not None:
            srv.listen(listener)
        if start:
            srv.start()
        return srv

    def assertRRError(self, status, fn, *args, **kw):
        """Runs fn, which must raise RRError with `status` (the error object agreeing);
        returns the error."""
        import rr
        with self.assertRaises(rr.RRError) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertEqual(e.status, status,
                         f"expected {rr.STATUS_NAMES.get(status)}, got {e}")
        if e.err_status is not None:
            self.assertEqual(e.err_status, status, "rr_error_status differs from the return")
        return e
