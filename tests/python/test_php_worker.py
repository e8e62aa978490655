"""The PHP worker of examples-php/worker.php in a pool started from Python, over pipes,
a unix socket and TCP. Skipped when php is not installed."""

import os
import shlex
import shutil
import tempfile
import unittest

import rr
from support import REPO, ServerCase, children, free_tcp_port

PHP_WORKER = os.path.join(REPO, "examples-php", "worker.php")
PHP = shutil.which("php")


@unittest.skipUnless(PHP, "php is not installed")
class PhpWorkerMixin:
    def make_relay(self):
        return "pipes"

    def start_pool(self, **settings):
        settings.setdefault("num_workers", 2)
        cmd = f"{shlex.quote(PHP)} {shlex.quote(PHP_WORKER)}"
        return self.server(cmd, self.make_relay(), **settings)

    def test_echo(self):
        srv = self.start_pool()
        pids = {w["pid"] for w in srv.workers()}
        self.assertTrue(pids <= set(children()))
        for i in range(300):
            ctx, body = f"php-{i}".encode(), os.urandom((i * 7919) % 70000)
            self.assertEqual(srv.exec(ctx, body), (ctx, body))
        self.assertEqual(srv.exec(b"", b""), (b"", b""))
        self.assertEqual(srv.exec(b"", b"no context"), (b"", b"no context"))
        big = os.urandom(1 << 20)
        self.assertEqual(srv.exec(b"big", big), (b"big", big))
        self.assertEqual({w["pid"] for w in srv.workers()}, pids, "a PHP worker was replaced")

    def test_job_error(self):
        srv = self.start_pool(num_workers=1)
        pid = srv.workers()[0]["pid"]
        e = self.assertRRError(rr.RR_STATUS_JOB_ERROR, srv.exec, b"error", b"php \0 failed")
        self.assertEqual(e.data, b"php \0 failed")
        self.assertEqual(srv.exec(b"x", b"y"), (b"x", b"y"))
        self.assertEqual([w["pid"] for w in srv.workers()], [pid])

    def test_stop_and_restart(self):
        srv = self.start_pool()
        self.assertEqual(srv.exec(b"a", b"b"), (b"a", b"b"))
        srv.stop()
        srv.start()
        self.assertEqual(srv.exec(b"c", b"d"), (b"c", b"d"))


class PhpWorkerPipesTest(PhpWorkerMixin, ServerCase):
    pass


class PhpWorkerUnixTest(PhpWorkerMixin, ServerCase):
    def make_relay(self):
        d = tempfile.TemporaryDirectory(prefix="rr-php-")
        self.addCleanup(d.cleanup)
        return f"unix://{d.name}/rr.sock"


class PhpWorkerTcpTest(PhpWorkerMixin, ServerCase):
    def make_relay(self):
        return f"tcp://127.0.0.1:{free_tcp_port()}"


if __name__ == "__main__":
    unittest.main()
