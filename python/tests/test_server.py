"""Server: exec, the context manager, the life cycle (start/stop/close/reset/reconfigure),
workers()/stats(), the GIL released during exec, and the bundled library."""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

import roadrunner_pool as rp
from support import (REPO, PoolCase, alive, children, rr_test_worker, rr_test_worker_path,
                     wait_until)


class ExecTest(PoolCase):
    def test_echo_of_body_and_context(self):
        srv = self.server(num_workers=2)
        for body, context in [(b"hello", b"ctx"), (b"", b""), (b"\0\xff" * 5000, b"{}"),
                              (b"x" * (3 << 20), b"big")]:
            answer = srv.exec(body, context)
            self.assertIsInstance(answer, rp.Payload)
            self.assertEqual((answer.body, answer.context), (body, context))
        self.assertEqual(srv.exec(b"no context"), rp.Payload(b"no context", b""))
        # str, bytearray and memoryview are taken too; other types are not.
        self.assertEqual(srv.exec("é", context=bytearray(b"ba")).body, "é".encode())
        self.assertEqual(srv.exec(memoryview(b"mv")).body, b"mv")
        with self.assertRaises(TypeError):
            srv.exec(12345)

    def test_many_threads_share_the_pool(self):
        srv = self.server(num_workers=3)
        results, errors = {}, []

        def run(n):
            try:
                for i in range(30):
                    body = b"%d-%d" % (n, i)
                    results[(n, i)] = srv.exec(body, b"t").body
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(results, {(n, i): b"%d-%d" % (n, i) for n in range(8) for i in range(30)})
        self.assertEqual(srv.stats().tasks_done, 240)
        self.assertEqual(sum(w.num_execs for w in srv.workers()), 240)

    def test_exec_releases_the_gil(self):
        # While one thread waits in exec on a slow task (600 ms), another Python thread
        # runs: it notes the time as it goes. Holding the GIL during the wait would leave
        # no note from the middle of the task.
        srv = self.server(num_workers=1)
        started = threading.Event()
        done = threading.Event()
        notes = []

        def spin():
            started.set()
            while not done.is_set():
                notes.append(time.monotonic())
                for _ in range(1000):
                    pass

        t = threading.Thread(target=spin)
        t.start()
        started.wait()
        try:
            t0 = time.monotonic()
            answer = srv.exec(b"slow", b"!sleep:600")
            t1 = time.monotonic()
        finally:
            done.set()
            t.join()
        self.assertEqual(answer.context, b"!sleep:600")
        self.assertGreaterEqual(t1 - t0, 0.6)
        middle = [n for n in notes if t0 + 0.2 <= n <= t1 - 0.2]
        self.assertGreater(len(middle), 10, "the other thread did not run while exec waited")


class LifeCycleTest(PoolCase):
    def test_context_manager_starts_and_closes(self):
        srv = rp.Server(rr_test_worker(), num_workers=3)
        self.addCleanup(srv.close)
        self.assertEqual(children(), {}, "a process started before start()")
        with self.assertRaises(rp.StateError):
            srv.exec(b"not started")
        with srv as s:
            self.assertIs(s, srv)
            pids = [w.pid for w in s.workers()]
            self.assertEqual(len(pids), 3)
            self.assertEqual(set(children()), set(pids))
            self.assertTrue(all(alive(p) for p in pids))
            self.assertEqual(s.exec(b"in with").body, b"in with")
        self.assertTrue(srv.closed)
        self.assertGone(pids)
        with self.assertRaises(rp.StateError) as cm:
            srv.exec(b"closed")
        self.assertIn("closed", cm.exception.message)
        with self.assertRaises(rp.StateError):
            srv.workers()
        srv.close()  # again: nothing

    def test_context_manager_of_a_started_server_and_an_exception(self):
        srv = rp.Server(rr_test_worker(), num_workers=1).start()
        self.addCleanup(srv.close)
        pid = srv.workers()[0].pid
        with self.assertRaises(KeyError):
            with srv:
                self.assertEqual(srv.workers()[0].pid, pid)  # not started twice
                raise KeyError("inside")
        self.assertTrue(srv.closed)
        self.assertGone([pid])

    def test_stop_start_and_stop_errors(self):
        srv = self.server(num_workers=2)
        first = {w.pid for w in srv.workers()}
        srv.stop()
        self.assertGone(first)
        with self.assertRaises(rp.StateError):
            srv.exec(b"stopped")
        with self.assertRaises(rp.StateError):
            srv.stop()
        srv.start()
        second = {w.pid for w in srv.workers()}
        self.assertEqual(len(second), 2)
        self.assertFalse(first & second)
        self.assertEqual(srv.exec(b"again").body, b"again")
        with self.assertRaises(rp.StateError):
            srv.start()

    def test_close_ends_a_call_in_flight_on_another_thread(self):
        srv = self.server(num_workers=1, allocate_timeout=30.0)
        pid = srv.workers()[0].pid
        outcome = []
        busy = threading.Thread(target=lambda: outcome.append(srv.exec(b"busy", b"!sleep:1500")))
        busy.start()
        wait_until(lambda: srv.workers()[0].state == "working", what="the worker busy")
        errors = []

        def waiting():
            try:
                srv.exec(b"waits for a worker")
            except rp.Error as e:
                errors.append(e)

        waiter = threading.Thread(target=waiting)
        waiter.start()
        wait_until(lambda: srv.stats().waiting == 1, what="a caller waiting")
        srv.close()
        busy.join()
        waiter.join()
        # The running task finished; the waiting caller was refused.
        self.assertEqual([p.body for p in outcome], [b"busy"])
        self.assertEqual(len(errors), 1)
        self.assertIsInstance(errors[0], rp.StateError)
        self.assertGone([pid])

    def test_reset_replaces_every_worker(self):
        srv = self.server(num_workers=2)
        before = {w.pid for w in srv.workers()}
        srv.reset()
        after = {w.pid for w in srv.workers()}
        self.assertEqual(len(after), 2)
        self.assertFalse(before & after)
        self.assertEqual(srv.exec(b"after reset").body, b"after reset")
        wait_until(lambda: not any(alive(p) for p in before), what="the old pool gone")

    def test_reconfigure_changes_settings_and_keeps_the_others(self):
        srv = self.server(num_workers=1, env={"RR_PY_MARK": "one"})
        old = srv.workers()[0].pid
        self.assertEqual(srv.exec(b"", b"!env:RR_PY_MARK").body, b"one")
        srv.reconfigure(num_workers=3, env={"RR_PY_MARK": "two"})
        self.assertEqual(len(srv.workers()), 3)
        self.assertEqual(srv.exec(b"", b"!env:RR_PY_MARK").body, b"two")
        self.assertEqual(srv.settings["num_workers"], 3)
        # A setting left out stays; None goes back to the default.
        srv.reconfigure(max_jobs=1)
        self.assertEqual(len(srv.workers()), 3)
        pid1 = int(srv.exec(b"", b"!pid").body)
        wait_until(lambda: pid1 not in {w.pid for w in srv.workers()}, what="max_jobs=1 retiring")
        srv.reconfigure(max_jobs=None, command=[rr_test_worker_path(), "echo"])
        self.assertEqual(srv.command.split()[-1], "echo")
        wait_until(lambda: not alive(old), what="the first pool gone")
        # Bad settings are refused and leave the pool as it was.
        pids = {w.pid for w in srv.workers()}
        with self.assertRaises(rp.ConfigError):
            srv.reconfigure(jitter_percent=101)
        with self.assertRaises(rp.ConfigError):
            srv.reconfigure(num_workers=0)
        with self.assertRaises(TypeError):
            srv.reconfigure(no_such_setting=1)
        self.assertEqual({w.pid for w in srv.workers()}, pids)
        srv.stop()
        with self.assertRaises(rp.StateError):
            srv.reconfigure(num_workers=2)

    def test_reconfigure_keeps_the_relay_and_relay_timeout(self):
        # The library ignores both on reconfigure (RECONFIGURE_IGNORED): so does the
        # object, whose relay, settings and repr tell what runs.
        srv = self.server(num_workers=2, relay_timeout=30.0)
        srv.reconfigure(relay="tcp://127.0.0.1:7123", num_workers=1)
        self.assertEqual(srv.relay, "pipes")
        self.assertEqual(srv.status()["relay"], "pipes")
        self.assertIn(" pipes ", repr(srv))
        self.assertNotIn("7123", repr(srv))
        self.assertEqual(len(srv.workers()), 1)
        self.assertEqual(srv.settings["num_workers"], 1)
        srv.reconfigure(relay_timeout=5.0, max_jobs=3)
        self.assertEqual(srv.settings["relay_timeout"], 30.0)
        self.assertEqual(srv.settings["max_jobs"], 3)
        self.assertFalse(srv.differs(), "the object's settings drifted from the server's")
        self.assertEqual(srv.exec(b"still pipes").body, b"still pipes")

    def test_differs_tells_what_needs_a_new_server(self):
        srv = self.server(num_workers=2, start=False)
        self.assertTrue(srv.differs(relay="tcp://127.0.0.1:7123"))
        self.assertTrue(srv.differs(relay_timeout=5.0))
        self.assertFalse(srv.differs(num_workers=5))
        self.assertFalse(srv.differs(relay="pipe"))  # compared as parsed
        self.assertFalse(srv.differs(relay="pipes", relay_timeout=60.0))
        self.assertFalse(srv.differs(command=[rr_test_worker_path(), "echo"], max_jobs=1,
                                     env={"A": "b"}))
        self.assertFalse(srv.differs())
        with self.assertRaises(TypeError):
            srv.differs(no_such_setting=1)
        with self.assertRaises(rp.ConfigError):
            srv.differs(relay_timeout="soon")
        self.assertEqual(srv.settings["num_workers"], 2)  # nothing applied
        tcp = self.server(relay="tcp://127.0.0.1:7124", num_workers=1, start=False)
        self.assertTrue(tcp.differs(relay="pipes"))
        self.assertFalse(tcp.differs(relay="tcp://127.0.0.1:7124", num_workers=4))


class ForkTest(PoolCase):
    def test_a_forked_child_leaves_the_parents_workers_alone(self):
        srv = self.server(num_workers=2)
        pids = {w.pid for w in srv.workers()}
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            code = 1
            try:
                try:
                    srv.exec(b"from the child")
                except rp.StateError:
                    srv.close()
                    code = 0 if srv.closed else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual({w.pid for w in srv.workers()}, pids)
        self.assertTrue(all(alive(p) for p in pids))
        self.assertEqual(srv.exec(b"parent").body, b"parent")


class ObservationTest(PoolCase):
    def test_workers_snapshot(self):
        t0 = time.time()
        srv = self.server(num_workers=2)
        ws = srv.workers()
        self.assertEqual(len(ws), 2)
        for w in ws:
            self.assertIsInstance(w, rp.WorkerInfo)
            self.assertEqual(w.state, "ready")
            self.assertEqual(w.num_execs, 0)
            self.assertGreater(w.rss_bytes, 0)
            self.assertLessEqual(abs(w.created - t0), 30)
        self.assertEqual({w.pid for w in ws}, set(children()))
        pid = int(srv.exec(b"", b"!pid").body)
        self.assertEqual({w.pid: w.num_execs for w in srv.workers()}[pid], 1)
        srv.exec(b"", b"!alloc:50000000")  # 50 MB more for one of them
        self.assertGreater(max(w.rss_bytes for w in srv.workers()), 50_000_000)

    def test_stats_count_outcomes(self):
        srv = self.server(num_workers=1)
        for _ in range(3):
            srv.exec(b"x")
        with self.assertRaises(rp.JobError):
            srv.exec(b"no", b"!error")
        s = srv.stats()
        self.assertIsInstance(s, rp.Stats)
        self.assertEqual((s.tasks_done, s.job_errors, s.workers, s.waiting), (4, 1, 1, 0))
        srv.stop()
        with self.assertRaises(rp.StateError):
            srv.stats()
        srv.start()
        self.assertEqual(srv.stats().tasks_done, 4)  # the counters belong to the server


class PackageTest(unittest.TestCase):
    def test_the_library_loaded(self):
        path = rp.library_path()
        self.assertTrue(os.path.exists(path))
        self.assertRegex(rp.library_version(), r"^\d+\.\d+\.\d+$")
        from roadrunner_pool import _lib
        if os.environ.get("RR_LIB"):
            self.assertEqual(os.path.realpath(path), os.path.realpath(os.environ["RR_LIB"]))
        elif _lib.bundled_library_path() is not None:
            # An installed package: the bundled library, next to the package's own files.
            self.assertEqual(os.path.dirname(path), os.path.dirname(rp.__file__))
        else:
            # The source tree (python/src): the repository's build.
            self.assertEqual(path, _lib.source_tree_library_path())
        pkg = os.path.dirname(rp.__file__)
        self.assertTrue(os.path.exists(os.path.join(pkg, "py.typed")))
        self.assertEqual(sorted(rp.__all__), sorted(set(rp.__all__)))
        for name in rp.__all__:
            self.assertTrue(hasattr(rp, name), name)

    def test_every_setting_of_rr_h_is_a_keyword_of_server(self):
        # Each rr_config_set_* of include/rr.h, named as the package names it: durations
        # lose "_ms" (they are seconds), the directory is `cwd`; the rest keep their names
        # (max_memory_bytes, max_frame_bytes included). A setter added to rr.h and not to
        # the package fails here.
        import inspect
        with open(os.path.join(REPO, "include", "rr.h"), encoding="utf-8") as f:
            header = f.read()
        setters = set(re.findall(r"^(?:RR_MUST_USE\s+)?\w+\s+rr_config_set_(\w+)\s*\(",
                                 header, re.M))
        self.assertGreaterEqual(len(setters), 25)

        def python_name(c_name):
            if c_name == "dir":
                return "cwd"
            return c_name[:-len("_ms")] if c_name.endswith("_ms") else c_name

        expected = sorted(python_name(n) for n in setters)
        params = inspect.signature(rp.Server).parameters
        self.assertEqual(sorted(p for p in params if p not in ("command", "relay")), expected)
        self.assertEqual(sorted(rp.SETTING_NAMES), expected)
        from roadrunner_pool import _lib
        for name in setters:
            self.assertIn("rr_config_set_" + name, _lib.DECLARATIONS)


class ExampleTest(unittest.TestCase):
    def test_example_without_a_worker_command_prints_its_usage(self):
        result = subprocess.run([sys.executable, os.path.join(REPO, "python", "example.py")],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertIn("usage: ", result.stderr)
        self.assertIn("WORKER-COMMAND", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
    unittest.main()
