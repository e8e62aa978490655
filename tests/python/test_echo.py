"""Echo through the Rust test worker: bodies and contexts come back byte for byte."""

import os
import random
import time
import unittest
from ctypes import POINTER, byref

import rr
from support import ServerCase, children, wait_until


class EchoTest(ServerCase):
    def test_many_tasks(self):
        srv = self.server(num_workers=2)
        rnd = random.Random(1)
        for i in range(500):
            ctx = f"ctx-{i}".encode() + bytes(rnd.randrange(256) for _ in range(i % 7))
            body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 3000)))
            self.assertEqual(srv.exec(ctx, body), (ctx, body), f"task {i}")
        infos = srv.workers()
        self.assertEqual(len(infos), 2)
        self.assertEqual(sum(w["num_execs"] for w in infos), 500)

    def test_empty_context_and_body(self):
        srv = self.server(num_workers=1)
        self.assertEqual(srv.exec(b"", b""), (b"", b""))
        self.assertEqual(srv.exec(b"", b"body only"), (b"", b"body only"))
        self.assertEqual(srv.exec(b"context only", b""), (b"context only", b""))
        # NULL pointers with length 0 are allowed (API.md conventions).
        out = POINTER(rr.rr_payload)()
        rr.call(rr.lib.rr_exec, srv.ptr, None, 0, None, 0, byref(out))
        try:
            self.assertEqual(rr._out_bytes(rr.lib.rr_payload_context, out), b"")
            self.assertEqual(rr._out_bytes(rr.lib.rr_payload_body, out), b"")
        finally:
            rr.lib.rr_payload_free(out)

    def test_one_mib_body(self):
        srv = self.server(num_workers=2)
        body = os.urandom(1 << 20)
        ctx = os.urandom(64 << 10).replace(b"!", b"?")  # not a command
        for _ in range(4):
            self.assertEqual(srv.exec(ctx, body), (ctx, body))
        self.assertEqual(srv.exec(b"x", b"\0" * (1 << 20)), (b"x", b"\0" * (1 << 20)))

    def test_all_byte_values(self):
        srv = self.server(num_workers=1)
        data = bytes(range(256)) * 33
        self.assertEqual(srv.exec(b"\0ctx\0\xff", data), (b"\0ctx\0\xff", data))

    def test_workers_snapshot(self):
        t0 = int(time.time() * 1000)
        srv = self.server(num_workers=3)
        infos = srv.workers()
        self.assertEqual(len(infos), 3)
        pids = {w["pid"] for w in infos}
        self.assertEqual(len(pids), 3)
        self.assertTrue(pids <= set(children()), f"{pids} are not all children of ours")
        for w in infos:
            self.assertEqual(w["state"], rr.RR_WORKER_STATE_READY)
            self.assertEqual(w["num_execs"], 0)
            self.assertGreaterEqual(w["created_unix_ms"], t0 - 1000)
            self.assertLessEqual(w["created_unix_ms"], int(time.time() * 1000) + 1000)
        ctx, body = srv.exec(b"!pid", b"")
        self.assertEqual(ctx, b"pid")
        self.assertIn(int(body), pids)
        after = srv.workers()
        self.assertEqual({w["pid"]: w["num_execs"] for w in after if w["num_execs"]},
                         {int(body): 1})

    def test_max_jobs_one_gives_a_fresh_process_per_task(self):
        srv = self.server(num_workers=1, max_jobs=1)
        seen = set()
        for _ in range(5):
            ctx, body = srv.exec(b"!pid", b"")
            self.assertNotIn(int(body), seen)
            seen.add(int(body))
        # Retired workers are reaped: only the current worker remains a child.
        wait_until(lambda: len(children()) == 1, what="retired workers to be reaped")

    def test_stop_then_start_again(self):
        srv = self.server(num_workers=2)
        self.assertEqual(srv.exec(b"a", b"b"), (b"a", b"b"))
        srv.stop()
        wait_until(lambda: not children(), what="workers to be gone after stop")
        self.assertRRError(rr.RR_STATUS_STATE, srv.exec, b"a", b"b")
        srv.start()
        self.assertEqual(srv.exec(b"c", b"d"), (b"c", b"d"))

    def test_reset_replaces_every_worker(self):
        srv = self.server(num_workers=2)
        before = {w["pid"] for w in srv.workers()}
        srv.reset()
        self.assertEqual(srv.exec(b"a", b"b"), (b"a", b"b"))
        after = {w["pid"] for w in srv.workers()}
        self.assertEqual(len(after), 2)
        self.assertFalse(before & after, "reset kept old workers")
        wait_until(lambda: set(children()) == after, what="old workers to be reaped")

    def test_reconfigure_changes_the_pool(self):
        srv = self.server(num_workers=1)
        with rr.Config(srv_command(), num_workers=3, env={"RR_TEST_MARK": "new"}) as cfg:
            srv.reconfigure(cfg)
        self.assertEqual(len(srv.workers()), 3)
        self.assertEqual(srv.exec(b"!env:RR_TEST_MARK", b"")[1], b"new")


def srv_command():
    from support import rr_test_worker_command
    return rr_test_worker_command()


class ArgumentTest(ServerCase):
    def test_exec_before_start_is_a_state_error(self):
        srv = self.server(start=False)
        e = self.assertRRError(rr.RR_STATUS_STATE, srv.exec, b"a", b"b")
        self.assertTrue(e.message)

    def test_null_arguments(self):
        srv = self.server(num_workers=1)
        out = POINTER(rr.rr_payload)()
        st = rr.lib.rr_exec(None, b"a", 1, b"b", 1, byref(out), None)
        self.assertEqual(st, rr.RR_STATUS_NULL_ARGUMENT)
        st = rr.lib.rr_exec(srv.ptr, b"a", 1, b"b", 1, None, None)
        self.assertEqual(st, rr.RR_STATUS_NULL_ARGUMENT)
        err = POINTER(rr.rr_error)()
        st = rr.lib.rr_exec(srv.ptr, None, 5, b"b", 1, byref(out), byref(err))
        self.assertEqual(st, rr.RR_STATUS_NULL_ARGUMENT)
        self.assertFalse(out, "out written on failure")
        self.assertTrue(err, "no error object")
        status, message, _ = rr.take_error(err)
        self.assertEqual(status, rr.RR_STATUS_NULL_ARGUMENT)
        self.assertTrue(message)
        # *_free(NULL) does nothing.
        rr.lib.rr_payload_free(None)
        rr.lib.rr_error_free(None)
        rr.lib.rr_server_free(None)
        rr.lib.rr_config_free(None)
        rr.lib.rr_worker_free(None)
        rr.lib.rr_worker_info_free(None, 0)
        self.assertEqual(srv.exec(b"still", b"fine"), (b"still", b"fine"))

    def test_invalid_config(self):
        with self.assertRaises(rr.RRError) as cm:
            rr.Server.create(srv_command(), num_workers=0)
        self.assertEqual(cm.exception.status, rr.RR_STATUS_CONFIG)
        self.assertEqual(rr.lib.rr_config_new(None, b"pipes", byref(POINTER(rr.rr_config)()),
                                              None), rr.RR_STATUS_NULL_ARGUMENT)
        with self.assertRaises(rr.RRError) as cm:
            rr.Server.create(srv_command(), relay="carrier-pigeon://x")
        self.assertEqual(cm.exception.status, rr.RR_STATUS_CONFIG)
        self.assertIn("carrier-pigeon", cm.exception.message)


if __name__ == "__main__":
    unittest.main()
