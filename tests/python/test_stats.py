"""rr_server_stats through ctypes: the counters of a server, and the settings added with
them (jitter_percent, tcp_allow_remote)."""

import ctypes
import unittest
from ctypes import POINTER, byref

import rr
from support import ServerCase, rr_test_worker_command


class StatusTest(ServerCase):
    """rr_server_status_json, rr_server_metrics and rr_server_remove_worker through ctypes,
    on an on-demand pool (rr_config_set_max_workers with num_workers 0)."""

    def test_an_on_demand_pool_in_its_status_metrics_and_after_a_removal(self):
        srv = self.server(num_workers=0, max_workers=2, name=b"py-pool")
        status = srv.status()
        self.assertEqual((status["name"], status["workers"], status["workers_max"]), ("py-pool", [], 2))
        self.assertEqual(srv.exec(b"", b"first"), (b"", b"first"))
        pid = srv.status()["workers"][0]["pid"]
        self.assertIn('rr_workers{pool="py-pool",state="ready"} 1\n', srv.metrics())
        self.assertRRError(rr.RR_STATUS_INVALID_ARGUMENT, srv.remove_worker, 1, True)
        srv.remove_worker(pid, kill=True)
        self.assertEqual(srv.exec(b"", b"again"), (b"", b"again"))
        self.assertNotEqual(srv.status()["workers"][0]["pid"], pid)
        metrics = srv.metrics()
        self.assertIn('rr_workers_retired_total{pool="py-pool",reason="removed"} 1\n', metrics)
        self.assertTrue(metrics.endswith("# EOF\n"))

    def test_differs_compares_the_relay_settings_only(self):
        a = rr.Config(rr_test_worker_command(), "pipes", num_workers=1)
        b = rr.Config(rr_test_worker_command("other"), "pipe", num_workers=5)
        c = rr.Config(rr_test_worker_command(), "pipes", relay_timeout_ms=5)
        try:
            self.assertFalse(rr.lib.rr_config_differs(a.ptr, b.ptr))
            self.assertTrue(rr.lib.rr_config_differs(a.ptr, c.ptr))
            self.assertTrue(rr.lib.rr_config_differs(a.ptr, None))
        finally:
            for config in (a, b, c):
                config.free()


class StatsTest(ServerCase):
    def test_tasks_and_job_errors_are_counted(self):
        srv = self.server(num_workers=2)
        fresh = dict.fromkeys((name for name, _ in rr.rr_pool_stats._fields_ if name != "size"), 0)
        self.assertEqual(srv.stats(), fresh | {"workers": 2, "workers_spawned": 2})
        for i in range(5):
            self.assertEqual(srv.exec(b"", str(i)), (b"", str(i).encode()))
        for _ in range(2):
            self.assertRRError(rr.RR_STATUS_JOB_ERROR, srv.exec, b"!error", b"no")
        stats = srv.stats()
        self.assertEqual((stats["tasks_done"], stats["job_errors"], stats["worker_errors"]),
                         (7, 2, 0), stats)
        self.assertEqual((stats["workers"], stats["waiting"]), (2, 0), stats)
        # The counters are the server's: they go on across a reset.
        srv.reset()
        srv.exec(b"", b"after reset")
        self.assertEqual(srv.stats()["tasks_done"], 8)

    def test_a_worker_error_is_counted(self):
        srv = self.server(num_workers=1)
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!crash", b"")
        stats = srv.stats()
        self.assertEqual((stats["tasks_done"], stats["worker_errors"], stats["retired_failed"]),
                         (0, 1, 1), stats)

    def test_not_started_and_null_arguments_leave_out_alone(self):
        srv = self.server(num_workers=1, start=False)
        out = rr.rr_pool_stats(tasks_done=77)
        err = POINTER(rr.rr_error)()
        self.assertEqual(rr.lib.rr_server_stats(srv.ptr, byref(out), byref(err)),
                         rr.RR_STATUS_STATE)
        self.assertEqual(rr.take_error(err)[0], rr.RR_STATUS_STATE)
        self.assertEqual(out.tasks_done, 77)
        self.assertEqual(rr.lib.rr_server_stats(None, byref(out), None),
                         rr.RR_STATUS_NULL_ARGUMENT)
        self.assertEqual(rr.lib.rr_server_stats(srv.ptr, None, None),
                         rr.RR_STATUS_NULL_ARGUMENT)
        self.assertEqual(out.tasks_done, 77)

    def test_a_size_that_was_not_set_is_an_invalid_argument(self):
        srv = self.server(num_workers=1)
        out = rr.rr_pool_stats(size=0, tasks_done=77)
        err = POINTER(rr.rr_error)()
        self.assertEqual(rr.lib.rr_server_stats(srv.ptr, byref(out), byref(err)),
                         rr.RR_STATUS_INVALID_ARGUMENT)
        status, message = rr.take_error(err)[:2]
        self.assertIn("sizeof(rr_pool_stats)", message)
        self.assertEqual((out.size, out.tasks_done), (0, 77))
        # Set, it is filled, and says how much was.
        out = rr.rr_pool_stats()
        self.assertEqual(rr.lib.rr_server_stats(srv.ptr, byref(out), None), rr.RR_STATUS_OK)
        self.assertEqual((out.size, out.workers), (ctypes.sizeof(rr.rr_pool_stats), 1))


class NewSettingsTest(ServerCase):
    def test_jitter_percent_above_100_is_a_config_error(self):
        self.server(num_workers=1, start=False, jitter_percent=100).free()
        e = self.assertRRError(rr.RR_STATUS_CONFIG, self.server, num_workers=1, start=False,
                               jitter_percent=101)
        self.assertIn("jitter_percent", e.message)

    def test_a_remote_tcp_relay_needs_tcp_allow_remote(self):
        command = rr_test_worker_command()
        relay = "tcp://192.0.2.1:6001"  # a documentation address; never listened on here
        e = self.assertRRError(rr.RR_STATUS_CONFIG, self.server, command, relay, start=False)
        self.assertIn("tcp_allow_remote", e.message)
        self.server(command, relay, start=False, tcp_allow_remote=True).free()


if __name__ == "__main__":
    unittest.main()
