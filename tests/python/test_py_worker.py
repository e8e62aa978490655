"""A pool of workers written in Python with the library's worker side (py_worker.py),
started from Python, over pipes, a unix socket and TCP."""

import os
import tempfile
import unittest

import rr
from support import HERE, ServerCase, children, free_tcp_port, python_command, wait_until

PY_WORKER = os.path.join(HERE, "py_worker.py")


class PyWorkerMixin:
    relay = "pipes"

    def make_relay(self):
        return self.relay

    def start_pool(self, **settings):
        settings.setdefault("num_workers", 2)
        return self.server(python_command(PY_WORKER), self.make_relay(),
                           env={"RR_LIB": rr.LIB_PATH}, **settings)

    def test_echo(self):
        srv = self.start_pool()
        for i in range(200):
            ctx, body = f"py-{i}".encode(), os.urandom(i * 37)
            self.assertEqual(srv.exec(ctx, body), (ctx, body))
        self.assertEqual(srv.exec(b"", b""), (b"", b""))
        big = os.urandom(1 << 20)
        self.assertEqual(srv.exec(b"big", big), (b"big", big))

    def test_pids_are_the_workers(self):
        srv = self.start_pool()
        pids = {w["pid"] for w in srv.workers()}
        self.assertEqual(len(pids), 2)
        self.assertTrue(pids <= set(children()))
        got = {int(srv.exec(b"pid", b"")[1]) for _ in range(20)}
        self.assertTrue(got <= pids, f"{got} not among {pids}")

    def test_job_error(self):
        srv = self.start_pool(num_workers=1)
        pid = int(srv.exec(b"pid", b"")[1])
        e = self.assertRRError(rr.RR_STATUS_JOB_ERROR, srv.exec, b"error", b"py says no\0")
        self.assertEqual(e.data, b"py says no\0")
        self.assertEqual(int(srv.exec(b"pid", b"")[1]), pid)

    def test_worker_asking_to_stop_every_time_is_bounded(self):
        srv = self.start_pool(num_workers=1)
        e = self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"stop", b"")
        self.assertTrue(e.message)
        self.assertEqual(srv.exec(b"still", b"serving"), (b"still", b"serving"))
        wait_until(lambda: len(children()) == 1, what="retired workers to be reaped")


class PyWorkerPipesTest(PyWorkerMixin, ServerCase):
    relay = "pipes"


class PyWorkerUnixTest(PyWorkerMixin, ServerCase):
    def make_relay(self):
        d = tempfile.TemporaryDirectory(prefix="rr-py-")
        self.addCleanup(d.cleanup)
        return f"unix://{d.name}/rr.sock"


class PyWorkerTcpTest(PyWorkerMixin, ServerCase):
    def make_relay(self):
        return f"tcp://127.0.0.1:{free_tcp_port()}"


if __name__ == "__main__":
    unittest.main()
