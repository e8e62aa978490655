"""examples-c/status_host.c, fetched by a real HTTP client (urllib): its /status and
/metrics serve rr_server_status_json and rr_server_metrics of a live elastic pool, /exec
runs a task through it, and SIGTERM stops it with every worker gone."""

import json
import os
import re
import signal
import subprocess
import unittest
import urllib.request

from support import REPO, NoChildrenLeft, children, rr_test_worker_command, wait_until

STATUS_HOST = os.environ.get("RR_STATUS_HOST") or os.path.join(REPO, "build", "status-host")

# One sample line of OpenMetrics text: name{labels} value.
SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (\d+)$')


def fetch(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.headers.get("Content-Type"), response.read().decode()


class StatusHostTest(NoChildrenLeft):
    def setUp(self):
        super().setUp()
        if not os.access(STATUS_HOST, os.X_OK):
            self.fail(f"{STATUS_HOST} is not built: run `make build/status-host`")
        self.host = subprocess.Popen(
            [STATUS_HOST, "-n", "1", "-m", "3", "-N", "py-scrape", "--", rr_test_worker_command("echo")],
            stdout=subprocess.PIPE, text=True)
        line = self.host.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        self.assertIsNotNone(found, f"no address in {line!r}")
        self.port = int(found.group(1))

    def tearDown(self):
        if self.host.poll() is None:
            self.host.kill()
            self.host.wait()
        self.host.stdout.close()
        super().tearDown()

    def test_status_metrics_and_a_task_over_http(self):
        kind, answer = fetch(self.port, "/exec?over-http")
        self.assertEqual(answer, "over-http")
        self.assertEqual(kind, "application/octet-stream")

        kind, text = fetch(self.port, "/status")
        self.assertEqual(kind, "application/json")
        status = json.loads(text)
        self.assertEqual(status["name"], "py-scrape")
        self.assertEqual((status["workers_min"], status["workers_max"]), (1, 3))
        self.assertEqual(status["counters"]["tasks_done"], 1)
        self.assertEqual(len(status["workers"]), 1)
        worker = status["workers"][0]
        self.assertEqual(worker["state_name"], "ready")
        self.assertIsNone(worker["task_ms"])
        self.assertEqual(worker["num_execs"], 1)
        # The worker is a child of the host, not of this test.
        self.assertIn(worker["pid"], children(self.host.pid))

        kind, metrics = fetch(self.port, "/metrics")
        self.assertTrue(kind.startswith("application/openmetrics-text"), kind)
        self.assertTrue(metrics.endswith("# EOF\n"))
        samples = {}
        for line in metrics.splitlines():
            if line.startswith("#"):
                continue
            match = SAMPLE.match(line)
            self.assertIsNotNone(match, f"not a sample line: {line!r}")
            self.assertIn('pool="py-scrape"', match.group(2))
            samples[f"{match.group(1)}{{{match.group(2)}}}"] = int(match.group(3))
        self.assertEqual(samples['rr_tasks_total{pool="py-scrape",outcome="ok"}'], 1)
        self.assertEqual(samples['rr_workers{pool="py-scrape",state="ready"}'], 1)
        self.assertEqual(samples['rr_workers_max{pool="py-scrape"}'], 3)
        self.assertGreater(samples[f'rr_worker_memory_bytes{{pool="py-scrape",pid="{worker["pid"]}"}}'], 0)

        # A second task is counted by the next scrape.
        fetch(self.port, "/exec?again")
        _, metrics = fetch(self.port, "/metrics")
        self.assertIn('rr_tasks_total{pool="py-scrape",outcome="ok"} 2\n', metrics)

        workers = set(children(self.host.pid))
        self.host.send_signal(signal.SIGTERM)
        self.assertEqual(self.host.wait(timeout=60), 0)
        self.assertIn("stopped", self.host.stdout.read())
        wait_until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), 20,
                   what=f"the workers {workers} gone once the host stopped")


if __name__ == "__main__":
    unittest.main()
