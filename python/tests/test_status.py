"""Status export, metrics, per-worker removal and the elastic pool, from Python: status()
is the library's JSON as a dict, metrics() OpenMetrics text that prometheus_client's strict
OpenMetrics parser reads, remove_worker() replaces a worker, and an elastic pool grows
under load and stays under its ceiling."""

import threading
import unittest

from prometheus_client.openmetrics.parser import text_string_to_metric_families

import roadrunner_pool as rp
from support import PoolCase, alive, wait_until


class StatusTest(PoolCase):
    def test_status_is_the_librarys_document(self):
        srv = self.server(num_workers=2, max_workers=4, name="py-status")
        srv.exec(b"x")
        status = srv.status()
        self.assertEqual((status["name"], status["workers_min"], status["workers_max"]),
                         ("py-status", 2, 4))
        self.assertEqual(status["counters"]["tasks_done"], 1)
        self.assertEqual(sorted(w["pid"] for w in status["workers"]),
                         sorted(w.pid for w in srv.workers()))
        self.assertTrue(all(w["task_ms"] is None for w in status["workers"]))

    def test_metrics_parse_as_openmetrics(self):
        srv = self.server(num_workers=2, name="py-metrics")
        srv.exec(b"x")
        with self.assertRaises(rp.JobError):
            srv.exec(b"no", b"!error")
        families = {family.name: family for family in text_string_to_metric_families(srv.metrics())}
        self.assertEqual(families["rr_tasks"].type, "counter")
        outcomes = {s.labels["outcome"]: s.value for s in families["rr_tasks"].samples}
        self.assertEqual((outcomes["ok"], outcomes["job_error"]), (1, 1))
        self.assertTrue(all(s.name == "rr_tasks_total" for s in families["rr_tasks"].samples))
        ready = [s.value for s in families["rr_workers"].samples if s.labels["state"] == "ready"]
        self.assertEqual(ready, [2])
        pids = {int(s.labels["pid"]) for s in families["rr_worker_memory_bytes"].samples}
        self.assertEqual(pids, {w.pid for w in srv.workers()})
        for family in families.values():
            self.assertTrue(all(s.labels["pool"] == "py-metrics" for s in family.samples), family)

    def test_remove_worker_replaces_it(self):
        srv = self.server(num_workers=2)
        pid = srv.workers()[0].pid
        srv.remove_worker(pid, kill=True)
        wait_until(lambda: not alive(pid), what="the removed worker gone")
        wait_until(lambda: len(srv.workers()) == 2 and pid not in {w.pid for w in srv.workers()},
                   what="the removed worker replaced")
        self.assertEqual(srv.stats().retired_removed, 1)
        with self.assertRaises(rp.Error) as cm:
            srv.remove_worker(1)
        self.assertEqual(cm.exception.status, rp.Status.INVALID_ARGUMENT)

    def test_an_elastic_pool_grows_on_demand_up_to_its_ceiling(self):
        srv = self.server(num_workers=0, max_workers=3, spawn_rate=2, scale_after=0.005,
                          scale_idle=60.0)
        self.assertEqual(srv.workers(), [])
        answers = []
        threads = [threading.Thread(target=lambda i=i: answers.append(srv.exec(str(i).encode(), b"!sleep:300")))
                   for i in range(5)]
        for t in threads:
            t.start()
        wait_until(lambda: len(srv.workers()) == 3, what="the pool to grow to its ceiling")
        for t in threads:
            t.join()
        self.assertEqual(sorted(a.body for a in answers), [b"0", b"1", b"2", b"3", b"4"])
        self.assertEqual(len(srv.workers()), 3)
        self.assertEqual(srv.stats().workers_spawned, 3)


if __name__ == "__main__":
    unittest.main()
