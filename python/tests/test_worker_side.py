"""roadrunner_pool.Worker: a worker written in Python (py_worker.py), served by a pool over
pipes and a unix socket."""

import os
import tempfile
import unittest

import roadrunner_pool as rp
from support import PoolCase, alive, children, py_worker, wait_until


class PythonWorkerMixin:
    def relay(self):
        return "pipes"

    def test_tasks_errors_and_stop(self):
        srv = self.server(py_worker(), self.relay(), num_workers=2)
        pids = {w.pid for w in srv.workers()}
        self.assertEqual(pids, set(children()))
        self.assertEqual(srv.exec(b"hello", b"upper"), rp.Payload(b"HELLO", b"upper"))
        for i in range(20):
            self.assertEqual(srv.exec(b"%d" % i, b"c").body, b"%d" % i)
        with self.assertRaises(rp.JobError) as cm:
            srv.exec(b"bad \xff\0", b"error")
        self.assertEqual(cm.exception.data, b"bad \xff\0")
        pid = int(srv.exec(b"", b"pid").body)
        self.assertIn(pid, pids)
        srv.close()
        self.assertGone(pids)

    def test_stop_request_reroutes_the_task(self):
        srv = self.server(py_worker(), self.relay(), num_workers=1)
        pid = srv.workers()[0].pid
        # The worker asks to be replaced (Worker.stop); the caller does not notice: the
        # task runs on the new worker, which answers its own pid.
        answer = srv.exec(str(pid).encode(), b"stop-if-pid")
        self.assertEqual(answer.context, b"pid")
        new = int(answer.body)
        self.assertNotEqual(new, pid)
        # The retired worker is listed ("stopping") until its stop finished.
        wait_until(lambda: [w.pid for w in srv.workers()] == [new],
                   what="only the new worker listed", state=srv.workers)
        self.assertEqual(srv.stats().retired_stop_requested, 1)
        wait_until(lambda: not alive(pid), what="the worker that asked to stop gone")

    def test_print_goes_to_stderr_not_into_the_frames(self):
        srv = self.server(py_worker(), self.relay(), num_workers=1)
        events = []
        srv.on_event(events.append)
        self.assertEqual(srv.exec(b"printed line", b"print").body, b"printed line")
        if self.relay() == "pipes":
            wait_until(lambda: any(e.message == "printed line" for e in list(events)),
                       what="the printed line as a stderr event", state=lambda: events)


class PythonWorkerPipesTest(PythonWorkerMixin, PoolCase):
    pass


class PythonWorkerUnixTest(PythonWorkerMixin, PoolCase):
    def relay(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        return "unix://" + os.path.join(d.name, "w.sock")


class WorkerApiTest(unittest.TestCase):
    def test_bad_relay_and_closed_worker(self):
        with self.assertRaises(rp.Error) as cm:
            rp.Worker("carrier-pigeon://x")
        self.assertEqual(cm.exception.status, rp.Status.INVALID_ARGUMENT)
        with self.assertRaises(rp.Error):
            rp.Worker("pipes", protocol=9)
        with self.assertRaises(rp.WorkerError):
            rp.Worker("unix:///nonexistent/dir/rr.sock")


if __name__ == "__main__":
    unittest.main()
