"""Every status of the library as its exception class, with its details."""

import threading
import time
import unittest

import roadrunner_pool as rp
from support import (PoolCase, alive, children, rr_test_worker, rr_test_worker_path,
                     wait_until)


class ExceptionClassesTest(unittest.TestCase):
    def test_hierarchy(self):
        for cls in (rp.JobError, rp.WorkerError, rp.NoFreeWorkerError, rp.ConfigError,
                    rp.SpawnError, rp.StateError, rp.ExecTTLError, rp.QueueFullError,
                    rp.CancelledError):
            self.assertTrue(issubclass(cls, rp.Error), cls)
        self.assertTrue(issubclass(rp.Error, Exception))
        import asyncio
        self.assertFalse(issubclass(rp.CancelledError, asyncio.CancelledError))


class ExecErrorsTest(PoolCase):
    def v2_server(self, **settings):
        """One rr-test-worker speaking protocol 2, whose streams hold it until read."""
        return self.server(num_workers=1, env={"RR_TEST_PROTOCOL": "2"}, protocol=2,
                           **settings)

    def test_job_error_with_data(self):
        srv = self.server(num_workers=1)
        pid = int(srv.exec(b"", b"!pid").body)
        for data in (b"boom", b"binary \0\xff message", b"", b"x" * 100000):
            with self.assertRaises(rp.JobError) as cm:
                srv.exec(data, b"!error")
            e = cm.exception
            self.assertEqual(e.status, rp.Status.JOB_ERROR)
            self.assertEqual(e.data, data)
            self.assertTrue(e.message)
            self.assertIn("job_error", str(e))
        # The worker stays.
        self.assertEqual(int(srv.exec(b"", b"!pid").body), pid)

    def test_worker_error_and_replacement(self):
        srv = self.server(num_workers=1)
        pid = int(srv.exec(b"", b"!pid").body)
        with self.assertRaises(rp.WorkerError) as cm:
            srv.exec(b"", b"!crash")
        self.assertEqual(cm.exception.status, rp.Status.WORKER_ERROR)
        self.assertIn("crash requested", cm.exception.message)
        self.assertIn(str(pid), cm.exception.message)
        new = int(srv.exec(b"", b"!pid").body)
        self.assertNotEqual(new, pid)
        wait_until(lambda: set(children()) == {new}, what="the crashed worker reaped")

    def test_allocate_timeout(self):
        srv = self.v2_server(allocate_timeout=0.2)
        held = srv.stream(b"hold", b"!stream:1")  # holds the only worker until read
        t0 = time.monotonic()
        with self.assertRaises(rp.NoFreeWorkerError) as cm:
            srv.exec(b"no worker for me")
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)
        self.assertEqual(cm.exception.status, rp.Status.TIMEOUT)
        self.assertEqual([c.body for c in held], [b"hold-0", b"hold-end"])
        self.assertEqual(srv.exec(b"free").body, b"free")
        self.assertEqual(srv.stats().timeouts, 1)

    def test_exec_ttl(self):
        srv = self.server(num_workers=1, exec_ttl=0.2)
        pid = srv.workers()[0].pid
        t0 = time.monotonic()
        with self.assertRaises(rp.ExecTTLError) as cm:
            srv.exec(b"", b"!hang")
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(cm.exception.status, rp.Status.EXEC_TTL)
        self.assertEqual(srv.exec(b"after").body, b"after")
        # The killed worker may still be listed ("stopping") until its stop finished.
        wait_until(lambda: pid not in {w.pid for w in srv.workers()} and not alive(pid),
                   what="the killed worker gone", state=srv.workers)
        self.assertEqual(len(srv.workers()), 1)
        self.assertEqual(srv.stats().exec_ttl_kills, 1)

    def test_queue_full(self):
        srv = self.v2_server(max_queue=1)
        held = srv.stream(b"hold", b"!stream:1")  # holds the only worker until read
        answers = []
        waiter = threading.Thread(target=lambda: answers.append(srv.exec(b"waits")))
        waiter.start()
        try:
            wait_until(lambda: srv.stats().waiting == 1, what="one caller waiting")
            with self.assertRaises(rp.QueueFullError) as cm:
                srv.exec(b"one too many")
            self.assertEqual(cm.exception.status, rp.Status.QUEUE_FULL)
        finally:
            held.close()
            waiter.join()
        self.assertEqual(answers, [rp.Payload(b"waits", b"")])
        self.assertEqual(srv.stats().queue_full, 1)

    def test_state_error(self):
        srv = self.server(num_workers=1, start=False)
        with self.assertRaises(rp.StateError) as cm:
            srv.exec(b"not started")
        self.assertEqual(cm.exception.status, rp.Status.STATE)
        with self.assertRaises(rp.StateError):
            srv.reset()


class ConfigAndSpawnErrorsTest(PoolCase):
    def test_config_errors(self):
        cases = [
            dict(num_workers=0),
            dict(allocate_timeout=0),
            dict(jitter_percent=101),
            dict(exec_ttl=-1),
            dict(allocate_timeout=float("nan")),
            dict(max_jobs=-1),
            dict(max_jobs=2 ** 64),
            dict(num_workers=1.5),
            dict(tcp_allow_remote="yes"),
            dict(protocol=3),
            dict(codec=3),
            dict(env={"": "empty key"}),
            dict(env={"A=B": "x"}),
            dict(env={"K": 1}),
            dict(cwd="/nonexistent/dir/for/rr"),
        ]
        for settings in cases:
            with self.subTest(settings=settings):
                with self.assertRaises(rp.ConfigError) as cm:
                    rp.Server(rr_test_worker(), **settings)
                self.assertTrue(cm.exception.message)
        with self.assertRaises(rp.ConfigError) as cm:
            rp.Server("", num_workers=1)
        with self.assertRaises(rp.ConfigError) as cm:
            rp.Server(rr_test_worker(), "carrier-pigeon://x")
        self.assertIn("carrier-pigeon", cm.exception.message)
        with self.assertRaises(TypeError):
            rp.Server(rr_test_worker(), no_such_setting=1)
        self.assertEqual(children(), {})

    def test_a_nul_character_is_refused_not_cut(self):
        # A C string ends at its first NUL: "ab\0cd" would silently be "ab". Each is a
        # ConfigError naming the setting (and nothing is made).
        cases = [
            ("command", lambda: rp.Server(rr_test_worker() + " x\0y", num_workers=1)),
            ("command", lambda: rp.Server([rr_test_worker_path(), "x\0y"], num_workers=1)),
            ("command", lambda: rp.Server("ab\0cd")),
            ("relay", lambda: rp.Server(rr_test_worker(), "pipes\0tcp://127.0.0.1:1")),
            ("env key 'A\\x00B'", lambda: rp.Server(rr_test_worker(), env={"A\0B": "v"})),
            ("env['K']", lambda: rp.Server(rr_test_worker(), env={"K": "v\0w"})),
            ("cwd", lambda: rp.Server(rr_test_worker(), cwd="/tmp\0/etc")),
            ("name", lambda: rp.Server(rr_test_worker(), name="pool\0x")),
        ]
        for setting, make in cases:
            with self.subTest(setting=setting):
                with self.assertRaises(rp.ConfigError) as cm:
                    make()
                self.assertIn(setting, cm.exception.message)
                self.assertIn("NUL", cm.exception.message)
                self.assertEqual(cm.exception.status, rp.Status.CONFIG)
        srv = self.server(num_workers=1)
        with self.assertRaises(rp.ConfigError) as cm:
            srv.reconfigure(env={"K": "v\0w"})
        self.assertIn("env['K']", cm.exception.message)
        with self.assertRaises(rp.ConfigError) as cm:
            rp.Worker("unix:///tmp/a\0b")
        self.assertIn("relay", cm.exception.message)
        self.assertEqual(len(children()), 1)

    def test_a_protocol_is_1_or_2_for_server_and_worker_alike(self):
        # The C parameter is a uint32_t: -1 used to reach it as 4294967295, and 2**32 + 1
        # as 1 (accepted).
        for protocol in (-1, 0, 3, 2 ** 32 + 1, True, 1.0, "1"):
            for make in (lambda p: rp.Server(rr_test_worker(), protocol=p),
                         # (not pipes: a protocol wrapped to 1 would take this
                         # process's stdin and stdout)
                         lambda p: rp.Worker("unix:///nonexistent/dir/rr.sock", protocol=p)):
                with self.subTest(protocol=protocol, make=make):
                    with self.assertRaises(rp.ConfigError) as cm:
                        make(protocol)
                    self.assertEqual(cm.exception.status, rp.Status.CONFIG)
                    self.assertIn(f"not {protocol!r}", cm.exception.message)
                    self.assertNotIn("4294967295", cm.exception.message)
        with self.assertRaises(rp.ConfigError) as cm:
            rp.Server(rr_test_worker(), codec=rp.CODEC_RAW + 256)  # a uint8_t would wrap
        self.assertIn("codec", cm.exception.message)
        self.assertEqual(children(), {})

    def test_spawn_errors(self):
        srv = self.server(rr_test_worker("failboot", "marker-7321"), num_workers=2, start=False)
        with self.assertRaises(rp.SpawnError) as cm:
            srv.start()
        self.assertEqual(cm.exception.status, rp.Status.SPAWN)
        self.assertIn("marker-7321", cm.exception.message)
        with self.assertRaises(rp.StateError):
            srv.exec(b"a")
        srv2 = rp.Server("/nonexistent/rr-no-such-worker", num_workers=1)
        with self.assertRaises(rp.SpawnError) as cm:
            with srv2:
                pass
        self.assertIn("rr-no-such-worker", cm.exception.message)
        self.assertTrue(srv2.closed, "a server whose start failed in `with` stays open")


if __name__ == "__main__":
    unittest.main()
