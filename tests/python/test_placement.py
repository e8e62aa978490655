"""worker_cpu_affinity and worker_sched_batch through ctypes: the kernel's view of every
worker, read from /proc."""

import os
import unittest

from support import ServerCase

SCHED_BATCH = 3


def allowed_cpus(pid):
    return os.sched_getaffinity(pid)


def policy(pid):
    return os.sched_getscheduler(pid)


class PlacementTest(ServerCase):
    def test_pinned_batch_workers_spread_over_the_hosts_cpus(self):
        host, host_policy = allowed_cpus(os.getpid()), policy(os.getpid())
        srv = self.server(num_workers=2 * len(host), worker_cpu_affinity=True,
                          worker_sched_batch=True)
        per_cpu = dict.fromkeys(host, 0)
        for worker in srv.workers():
            cpus = allowed_cpus(worker["pid"])
            self.assertEqual(len(cpus), 1, f"worker {worker['pid']} may run on {cpus}")
            per_cpu[cpus.pop()] += 1
            self.assertEqual(policy(worker["pid"]), SCHED_BATCH)
        self.assertEqual(set(per_cpu.values()), {2}, per_cpu)
        self.assertEqual(srv.exec(b"", b"pinned"), (b"", b"pinned"))
        self.assertEqual(policy(os.getpid()), host_policy, "the host keeps its own class")

    def test_off_by_default(self):
        host = allowed_cpus(os.getpid())
        srv = self.server(num_workers=2)
        for worker in srv.workers():
            self.assertEqual(allowed_cpus(worker["pid"]), host)
            self.assertEqual(policy(worker["pid"]), policy(os.getpid()))


if __name__ == "__main__":
    unittest.main()
