"""The PHP worker of examples-php/worker-v2.php (protocol V2, written from the protocol
with pack/unpack and crc32) in a pool started from Python, over pipes and a unix socket:
tasks, job errors, a streamed answer with PING/PONG every 5 chunks, and a cancelled
stream the worker ends when it reads the host's STOP. Skipped when php is not installed
(`make test` installs it first)."""

import os
import shlex
import shutil
import tempfile
import unittest

import rr
from support import REPO, ServerCase, wait_until

PHP_WORKER = os.path.join(REPO, "examples-php", "worker-v2.php")
PHP = shutil.which("php")


@unittest.skipUnless(PHP, "php is not installed")
class PhpWorkerV2Mixin:
    def make_relay(self):
        return "pipes"

    def start_pool(self, **settings):
        settings.setdefault("num_workers", 2)
        cmd = f"{shlex.quote(PHP)} {shlex.quote(PHP_WORKER)}"
        return self.server(cmd, self.make_relay(), protocol=rr.RR_PROTOCOL_V2, **settings)

    def test_echo_and_job_error(self):
        srv = self.start_pool()
        for i in range(200):
            ctx, body = f"php-v2-{i}".encode(), os.urandom((i * 7919) % 70000)
            self.assertEqual(srv.exec(ctx, body), (ctx, body))
        big = os.urandom(1 << 20)
        self.assertEqual(srv.exec(b"big", big), (b"big", big))
        e = self.assertRRError(rr.RR_STATUS_JOB_ERROR, srv.exec, b"error", b"php v2 \0 failed")
        self.assertEqual(e.data, b"php v2 \0 failed")

    def test_a_streamed_answer(self):
        srv = self.start_pool(num_workers=1)
        with srv.exec_stream(b"stream", b"23") as stream:
            bodies = [body for _, body in stream]
        # 23 chunks: the worker pinged 4 times and waited for each PONG.
        self.assertEqual(bodies, [f"chunk {i} of 23".encode() for i in range(1, 24)] + [b""])
        self.assertEqual(srv.exec(b"stream", b"3"), (b"stream", b"chunk 1 of 3chunk 2 of 3chunk 3 of 3"))

    def test_a_cancelled_stream(self):
        srv = self.start_pool(num_workers=1)
        listener = srv.listen(rr.Listener())
        pid = srv.workers()[0]["pid"]
        with srv.exec_stream(b"stream", b"1000000") as stream:
            for _ in range(12):
                next(stream)
            stream.cancel()
            self.assertRRError(rr.RR_STATUS_CANCELLED, next, stream)
        wait_until(lambda: any((e.message or "").startswith("stream stopped by the host")
                               for e in listener.snapshot()),
                   what="the PHP worker to read the STOP")
        self.assertEqual(srv.exec(b"after", b"cancel"), (b"after", b"cancel"))
        self.assertEqual(srv.workers()[0]["pid"], pid, "the worker ended its stream: it is kept")


class PhpWorkerV2PipesTest(PhpWorkerV2Mixin, ServerCase):
    pass


class PhpWorkerV2UnixTest(PhpWorkerV2Mixin, ServerCase):
    def make_relay(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        return "unix://" + os.path.join(self.dir.name, "php-v2.sock")


if __name__ == "__main__":
    unittest.main()
