"""Helpers of the roadrunner_pool tests (no import of the package here).

- rr_test_worker(): the command of the Rust test worker ($RR_TEST_WORKER, else the
  repository's target/release/rr-test-worker).
- py_worker(): the command of py_worker.py, a worker written with roadrunner_pool.Worker,
  run by this very interpreter (so it imports the same roadrunner_pool).
- children(), wait_until(), alive(): processes and conditions, polled with a deadline (the
  tests never sleep to synchronize).
- PoolCase: a TestCase that fails when a child process is left after the test, with a
  helper to make servers that are closed at cleanup.
"""

import os
import shlex
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY_WORKER = os.path.join(HERE, "py_worker.py")


def rr_test_worker_path():
    path = os.environ.get("RR_TEST_WORKER") or os.path.join(REPO, "target", "release",
                                                            "rr-test-worker")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"test worker {path!r} not found: run `make lib` or set "
                           "RR_TEST_WORKER")
    return path


def rr_test_worker(*args):
    """The command line of rr-test-worker with its arguments."""
    return " ".join(shlex.quote(a) for a in (rr_test_worker_path(),) + args)


def py_worker(*args):
    """The command line of py_worker.py (a worker written with roadrunner_pool.Worker)."""
    return " ".join(shlex.quote(a) for a in (sys.executable, PY_WORKER) + args)


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data.rpartition(")")[2].split()
    return rest[0], int(rest[1])


def children():
    """{pid: state} of this process's children, zombies included."""
    me = os.getpid()
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None and st[1] == me:
                found[int(name)] = st[0]
    return found


def alive(pid):
    """Whether the process exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_until(cond, timeout=10.0, what="condition", state=None):
    """Polls cond() until it is true (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"; state: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(0.005)


class PoolCase(unittest.TestCase):
    """Fails a test that leaves a child process (running or zombie) behind. Cleanups
    registered by the test (closing its servers) run before the check."""

    def setUp(self):
        super().setUp()
        self.assertEqual(children(), {}, "child processes exist before the test")
        self.addCleanup(lambda: wait_until(lambda: not children(), what="no child left",
                                           state=children))

    def server(self, command=None, relay="pipes", start=True, **settings):
        import roadrunner_pool
        settings.setdefault("num_workers", 2)
        srv = roadrunner_pool.Server(command or rr_test_worker(), relay, **settings)
        self.addCleanup(srv.close)
        if start:
            srv.start()
        return srv

    def assertGone(self, pids):
        """Every pid is gone (not even a zombie of ours)."""
        for pid in pids:
            self.assertIsNone(_stat(pid), f"worker {pid} still exists")
