"""Server.stream: answers in chunks (protocol 2), from rr-test-worker and from a worker
written with roadrunner_pool.Worker."""

import unittest

import roadrunner_pool as rp
from support import PoolCase, py_worker, rr_test_worker, wait_until


class TestWorkerStreamTest(PoolCase):
    def pool(self, **settings):
        settings.setdefault("num_workers", 1)
        return self.server(rr_test_worker(), env={"RR_TEST_PROTOCOL": "2"},
                           protocol=rp.PROTOCOL_V2, **settings)

    def test_chunks_in_order_and_exec_joins_them(self):
        srv = self.pool()
        with srv.stream(b"p", b"!stream:7") as chunks:
            got = list(chunks)
        self.assertTrue(all(isinstance(c, rp.Payload) for c in got))
        self.assertEqual([c.body for c in got], [b"p-%d" % i for i in range(7)] + [b"p-end"])
        self.assertEqual([c.context for c in got], [b"chunk"] * 7 + [b"last"])
        self.assertEqual(list(chunks), [], "a finished stream gives nothing more")
        self.assertEqual(srv.exec(b"j", b"!stream:2"), rp.Payload(b"j-0j-1j-end", b"chunk"))

    def test_a_stream_holds_its_worker_until_read_or_closed(self):
        srv = self.pool(allocate_timeout=0.2)
        chunks = srv.stream(b"x", b"!stream:3")
        self.assertEqual(next(chunks).body, b"x-0")
        with self.assertRaises(rp.NoFreeWorkerError):
            srv.exec(b"the only worker streams")
        self.assertEqual([c.body for c in chunks], [b"x-1", b"x-2", b"x-end"])
        self.assertEqual(srv.exec(b"free again").body, b"free again")

    def test_cancel_and_close_of_an_unfinished_stream(self):
        srv = self.pool()
        pid = srv.workers()[0].pid
        with srv.stream(b"x", b"!stream-until-stopped") as chunks:
            self.assertEqual(next(chunks).body, b"x")
            chunks.cancel()
            with self.assertRaises(rp.CancelledError) as cm:
                next(chunks)
            self.assertEqual(cm.exception.status, rp.Status.CANCELLED)
        self.assertEqual(srv.exec(b"next").body, b"next")
        self.assertEqual(srv.workers()[0].pid, pid, "a cancelled stream's worker was replaced")
        # Closing a stream read halfway cancels it too.
        chunks = srv.stream(b"y", b"!stream-until-stopped")
        next(chunks)
        chunks.close()
        self.assertEqual(srv.exec(b"after close").body, b"after close")
        self.assertEqual(srv.stats().tasks_cancelled, 2)

    def test_failures_in_a_stream(self):
        srv = self.pool()
        chunks = srv.stream(b"bad", b"!stream-error:2")
        self.assertEqual([next(chunks).body, next(chunks).body], [b"bad", b"bad"])
        with self.assertRaises(rp.JobError) as cm:
            next(chunks)
        self.assertEqual(cm.exception.data, b"bad")
        with self.assertRaises(rp.WorkerError):
            list(srv.stream(b"", b"!crash"))
        with self.assertRaises(rp.JobError):
            srv.stream(b"at once", b"!error")

    def test_close_with_an_open_stream(self):
        srv = rp.Server(rr_test_worker(), num_workers=1, env={"RR_TEST_PROTOCOL": "2"},
                        protocol=2)
        self.addCleanup(srv.close)
        srv.start()
        pid = srv.workers()[0].pid
        chunks = srv.stream(b"z", b"!stream-until-stopped")
        next(chunks)
        srv.close()
        self.assertGone([pid])
        with self.assertRaises(rp.StateError):
            next(chunks)

    def test_a_protocol_1_answer_is_one_chunk(self):
        srv = self.server(num_workers=1)
        self.assertEqual(list(srv.stream(b"one", b"c")), [rp.Payload(b"one", b"c")])


class PythonWorkerStreamTest(PoolCase):
    def test_a_python_worker_streams_and_sees_the_cancel(self):
        srv = self.server(py_worker(), num_workers=1, protocol=2,
                          env={"PY_WORKER_PROTOCOL": "2"})
        events = []
        srv.on_event(events.append)
        with srv.stream(b"12", b"stream") as chunks:
            bodies = [c.body for c in chunks]
        self.assertEqual(bodies, [b"part %d" % i for i in range(12)] + [b"done"])
        with srv.stream(b"forever", b"stream") as chunks:
            for _ in range(10):
                next(chunks)
        wait_until(lambda: any(e.message == "stream stopped by the host" for e in list(events)),
                   what="the worker to see the stop", state=lambda: events)
        self.assertEqual(srv.exec(b"after", b"cancel"), rp.Payload(b"after", b"cancel"))


if __name__ == "__main__":
    unittest.main()
