"""Protocol V2 and streamed answers through ctypes: rr_exec_stream, rr_stream_next,
rr_stream_cancel, rr_stream_free, rr_payload_codec, the V2 settings; and a worker written
in Python that streams with rr_worker_send_chunk (py_worker.py), over pipes and a unix
socket."""

import os
import tempfile
import unittest

import rr
from support import HERE, ServerCase, python_command, rr_test_worker_command, wait_until

PY_WORKER = os.path.join(HERE, "py_worker.py")


class V2SettingsTest(ServerCase):
    def test_bad_protocol_and_codec_are_invalid_arguments(self):
        with rr.Config(rr_test_worker_command()) as cfg:
            e = self.assertRRError(rr.RR_STATUS_INVALID_ARGUMENT, rr.call, rr.lib.rr_config_set_protocol,
                                   cfg.ptr, 7)
            self.assertIn("RR_PROTOCOL_V2", e.message)
            self.assertRRError(rr.RR_STATUS_INVALID_ARGUMENT, rr.call, rr.lib.rr_config_set_codec,
                               cfg.ptr, 0x03)
            rr.call(rr.lib.rr_config_set_codec, cfg.ptr, rr.RR_CODEC_MSGPACK)
        self.assertEqual(rr.status_str(rr.RR_STATUS_CANCELLED), "cancelled")


class TestWorkerStreamsTest(ServerCase):
    """rr-test-worker speaking V2."""

    def pool(self, **settings):
        settings.setdefault("num_workers", 1)
        return self.server(rr_test_worker_command(), "pipes", env={"RR_TEST_PROTOCOL": "2"},
                           protocol=rr.RR_PROTOCOL_V2, **settings)

    def test_chunks_come_in_order_and_exec_joins_them(self):
        srv = self.pool()
        with srv.exec_stream(b"!stream:5", b"p") as stream:
            chunks = list(stream)
        self.assertEqual([body for _, body in chunks], [f"p-{i}".encode() for i in range(5)] + [b"p-end"])
        self.assertEqual(chunks[0][0], b"chunk")
        self.assertEqual(srv.exec(b"!stream:2", b"j"), (b"chunk", b"j-0j-1j-end"))

    def test_a_cancelled_stream_says_so_and_keeps_its_worker(self):
        srv = self.pool()
        pid = srv.workers()[0]["pid"]
        with srv.exec_stream(b"!stream-until-stopped", b"x") as stream:
            self.assertEqual(next(stream), (b"chunk", b"x"))
            stream.cancel()
            e = self.assertRRError(rr.RR_STATUS_CANCELLED, next, stream)
            self.assertIn("cancelled", e.message)
        self.assertEqual(srv.exec(b"", b"next"), (b"", b"next"))
        self.assertEqual(srv.workers()[0]["pid"], pid)
        self.assertEqual(srv.stats()["tasks_cancelled"], 1)

    def test_codec_of_an_answer(self):
        srv = self.pool()
        out = rr.POINTER(rr.rr_payload)()
        rr.call(rr.lib.rr_exec, srv.ptr, b"", 0, b"x", 1, rr.byref(out))
        try:
            self.assertEqual(rr.lib.rr_payload_codec(out), 0)  # the worker side sets none
        finally:
            rr.lib.rr_payload_free(out)
        self.assertEqual(rr.lib.rr_payload_codec(None), 0)

    def test_null_arguments(self):
        srv = self.pool()
        out = rr.POINTER(rr.rr_stream)()
        self.assertEqual(rr.lib.rr_exec_stream(None, b"", 0, b"", 0, rr.byref(out), None),
                         rr.RR_STATUS_NULL_ARGUMENT)
        self.assertEqual(rr.lib.rr_exec_stream(srv.ptr, b"", 0, b"", 0, None, None),
                         rr.RR_STATUS_NULL_ARGUMENT)
        self.assertEqual(rr.lib.rr_stream_next(None, None, None), rr.RR_STATUS_NULL_ARGUMENT)
        self.assertEqual(rr.lib.rr_stream_cancel(None, None), rr.RR_STATUS_NULL_ARGUMENT)
        rr.lib.rr_stream_free(None)


class PyWorkerStreamsMixin:
    """A worker written in Python, streaming with rr_worker_send_chunk."""

    def make_relay(self):
        return "pipes"

    def pool(self):
        return self.server(python_command(PY_WORKER), self.make_relay(), num_workers=1,
                           env={"RR_LIB": rr.LIB_PATH, "RR_PY_PROTOCOL": "2"},
                           protocol=rr.RR_PROTOCOL_V2)

    def test_a_python_worker_streams(self):
        srv = self.pool()
        with srv.exec_stream(b"stream", b"12") as stream:
            bodies = [body for _, body in stream]
        # 12 chunks: the worker pinged twice and waited for both PONGs.
        self.assertEqual(bodies, [f"part {i}".encode() for i in range(12)] + [b"done"])
        self.assertEqual(srv.exec(b"hello", b"v2"), (b"hello", b"v2"))

    def test_a_python_worker_sees_the_cancel(self):
        srv = self.pool()
        events = []
        srv.listen(rr.Listener(events.append))
        with srv.exec_stream(b"stream", b"forever") as stream:
            for _ in range(10):
                next(stream)
            stream.cancel()
        wait_until(lambda: any(e.message == "stream stopped by the host" for e in list(events)),
                   what="the worker to see the stop")
        self.assertEqual(srv.exec(b"after", b"cancel"), (b"after", b"cancel"))


class PyWorkerStreamsPipesTest(PyWorkerStreamsMixin, ServerCase):
    pass


class PyWorkerStreamsUnixTest(PyWorkerStreamsMixin, ServerCase):
    def make_relay(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        return "unix://" + os.path.join(self.dir.name, "py.sock")


if __name__ == "__main__":
    unittest.main()
