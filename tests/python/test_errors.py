"""Job errors, worker errors and spawn errors, as seen by a ctypes host."""

import unittest
from ctypes import POINTER, byref

import rr
from support import ServerCase, children, rr_test_worker_command, wait_until


class JobErrorTest(ServerCase):
    def test_job_error_carries_the_message_bytes(self):
        srv = self.server(num_workers=1)
        pid_before = int(srv.exec(b"!pid", b"")[1])
        for body in (b"boom", b"binary \0\xff message", b"", b"x" * 100000):
            e = self.assertRRError(rr.RR_STATUS_JOB_ERROR, srv.exec, b"!error", body)
            self.assertEqual(e.data, body)
            self.assertTrue(e.message)
        # A job error keeps the worker.
        self.assertEqual(int(srv.exec(b"!pid", b"")[1]), pid_before)
        self.assertEqual([w["pid"] for w in srv.workers()], [pid_before])
        self.assertEqual(srv.exec(b"after", b"errors"), (b"after", b"errors"))

    def test_job_error_with_raw_calls(self):
        srv = self.server(num_workers=1)
        out = POINTER(rr.rr_payload)()
        err = POINTER(rr.rr_error)()
        st = rr.lib.rr_exec(srv.ptr, b"!error", 6, b"raw", 3, byref(out), byref(err))
        self.assertEqual(st, rr.RR_STATUS_JOB_ERROR)
        self.assertFalse(out, "out written on failure")
        self.assertEqual(rr.lib.rr_error_status(err), rr.RR_STATUS_JOB_ERROR)
        self.assertEqual(rr._out_bytes(rr.lib.rr_error_data, err), b"raw")
        rr.lib.rr_error_free(err)
        # err_out may be NULL.
        st = rr.lib.rr_exec(srv.ptr, b"!error", 6, b"raw", 3, byref(out), None)
        self.assertEqual(st, rr.RR_STATUS_JOB_ERROR)


class WorkerErrorTest(ServerCase):
    def test_crash_is_a_worker_error_and_the_worker_is_replaced(self):
        srv = self.server(num_workers=1)
        pid = int(srv.exec(b"!pid", b"")[1])
        e = self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!crash", b"")
        self.assertIn("crash requested", e.message)  # the worker's stderr is in the error
        self.assertIn(str(pid), e.message)
        # Replaced: the pool is back to one worker, a new process.
        new_pid = int(srv.exec(b"!pid", b"")[1])
        self.assertNotEqual(new_pid, pid)
        wait_until(lambda: set(children()) == {new_pid}, what="the crashed worker reaped")

    def test_corrupted_stdout_is_a_worker_error(self):
        srv = self.server(num_workers=1)
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!stdout", b"")
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!nocontrol", b"")
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!truncate", b"")
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!huge", b"")
        self.assertEqual(srv.exec(b"ok", b"again"), (b"ok", b"again"))

    def test_exec_ttl(self):
        srv = self.server(num_workers=1, exec_ttl_ms=200)
        e = self.assertRRError(rr.RR_STATUS_EXEC_TTL, srv.exec, b"!hang", b"")
        self.assertTrue(e.message)
        self.assertEqual(srv.exec(b"ok", b"after ttl"), (b"ok", b"after ttl"))


class SpawnErrorTest(ServerCase):
    def test_worker_failing_at_boot(self):
        srv = self.server(rr_test_worker_command("failboot", "marker-7321"), start=False,
                          num_workers=2)
        e = self.assertRRError(rr.RR_STATUS_SPAWN, srv.start)
        self.assertIn("marker-7321", e.message)
        self.assertRRError(rr.RR_STATUS_STATE, srv.exec, b"a", b"b")

    def test_missing_program(self):
        srv = self.server("/nonexistent/rr-no-such-worker", start=False, num_workers=1)
        e = self.assertRRError(rr.RR_STATUS_SPAWN, srv.start)
        self.assertIn("rr-no-such-worker", e.message)

    def test_wrong_pid_in_handshake(self):
        srv = self.server(rr_test_worker_command("badpid"), start=False, num_workers=1)
        self.assertRRError(rr.RR_STATUS_SPAWN, srv.start)


if __name__ == "__main__":
    unittest.main()
