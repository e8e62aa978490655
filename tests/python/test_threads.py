"""rr_exec from several Python threads at once (ctypes releases the GIL during calls)."""

import threading
import unittest

import rr
from support import ServerCase, wait_until


def run_threads(n, target):
    """Runs target(i) on n threads; returns the exceptions raised (a list)."""
    errors = []
    lock = threading.Lock()

    def wrap(i):
        try:
            target(i)
        except BaseException as e:
            with lock:
                errors.append((i, e))

    threads = [threading.Thread(target=wrap, args=(i,), name=f"rr-test-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        if t.is_alive():
            errors.append((t.name, "thread still running after 120 s"))
    return errors


class ThreadsTest(ServerCase):
    def test_many_threads_many_tasks(self):
        srv = self.server(num_workers=4)
        seen_pids = set()
        lock = threading.Lock()

        def work(i):
            for j in range(150):
                ctx = f"t{i}-c{j}".encode()
                body = f"thread {i} task {j} ".encode() * (j % 13)
                got = srv.exec(ctx, body)
                if got != (ctx, body):
                    raise AssertionError(f"thread {i} task {j}: got {got!r}")
                if j % 25 == 0:
                    pid = int(srv.exec(b"!pid", b"")[1])
                    with lock:
                        seen_pids.add(pid)

        self.assertEqual(run_threads(8, work), [])
        infos = srv.workers()
        self.assertEqual(len(infos), 4)
        self.assertTrue(seen_pids <= {w["pid"] for w in infos})
        self.assertEqual(sum(w["num_execs"] for w in infos), 8 * (150 + 6))

    def test_errors_from_several_threads(self):
        srv = self.server(num_workers=3)

        def work(i):
            for j in range(50):
                msg = f"error {i}/{j}".encode()
                try:
                    srv.exec(b"!error", msg)
                except rr.RRError as e:
                    if e.status != rr.RR_STATUS_JOB_ERROR or e.data != msg:
                        raise
                else:
                    raise AssertionError("no job error")
                self.assertEqual(srv.exec(b"ok", msg), (b"ok", msg))

        self.assertEqual(run_threads(6, work), [])
        self.assertEqual(len(srv.workers()), 3)

    def _wait_busy(self, srv):
        wait_until(lambda: [w for w in srv.workers() if w["state"] == rr.RR_WORKER_STATE_WORKING],
                   what="the worker to be working")

    def test_allocate_timeout_when_every_worker_is_busy(self):
        srv = self.server(num_workers=1, allocate_timeout_ms=100)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", srv.exec(b"!sleep:1500", b"z")))
        t.start()
        try:
            self._wait_busy(srv)
            e = self.assertRRError(rr.RR_STATUS_TIMEOUT, srv.exec, b"a", b"b")
            self.assertTrue(e.message)
        finally:
            t.join(30)
        self.assertEqual(result.get("r"), (b"!sleep:1500", b"z"))
        self.assertEqual(srv.exec(b"a", b"b"), (b"a", b"b"))

    def test_stop_waits_for_running_tasks(self):
        srv = self.server(num_workers=1)
        result = {}

        def slow():
            try:
                result["r"] = srv.exec(b"!sleep:700", b"finish me")
            except rr.RRError as e:
                result["r"] = e

        t = threading.Thread(target=slow)
        t.start()
        try:
            self._wait_busy(srv)
            srv.stop()
        finally:
            t.join(30)
        self.assertEqual(result.get("r"), (b"!sleep:700", b"finish me"),
                         "stop broke the running task")
        self.assertRRError(rr.RR_STATUS_STATE, srv.exec, b"a", b"b")


if __name__ == "__main__":
    unittest.main()
