"""examples-php/worker.php against SPEC.md section 1, byte for byte, driven by a small
server side written here in Python (no library involved). Skipped without php."""

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import unittest

from support import REPO, NoChildrenLeft

PHP = shutil.which("php")
PHP_WORKER = os.path.join(REPO, "examples-php", "worker.php")

EMPTY, RAW, ERROR, CONTROL = 2, 4, 8, 16


def prefix(flags, size, size_be=None):
    return struct.pack("<BQ", flags, size) + struct.pack(">Q", size if size_be is None else size_be)


def frame(flags, payload=b""):
    return prefix(flags, 0 if flags & EMPTY else len(payload)) + (b"" if flags & EMPTY else payload)


class PipeEnd:
    def __init__(self, proc):
        self.proc = proc

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv_exact(self, n):
        data = self.proc.stdout.read(n)
        if len(data) != n:
            raise AssertionError(f"short read: {len(data)} of {n} bytes; stderr: "
                                 f"{self.proc.stderr.read()!r}")
        return data

    def close(self):
        self.proc.stdin.close()


class SocketEnd:
    def __init__(self, conn):
        self.conn = conn
        self.conn.settimeout(20)

    def send(self, data):
        self.conn.sendall(data)

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def close(self):
        self.conn.close()


def read_frame(end):
    p = end.recv_exact(17)
    flags, le = struct.unpack("<BQ", p[:9])
    (be,) = struct.unpack(">Q", p[9:])
    if le != be:
        raise AssertionError(f"worker sent an invalid prefix {p.hex()}")
    if flags & EMPTY:
        if le != 0:
            raise AssertionError(f"EMPTY frame with size {le}")
        return flags, b""
    return flags, end.recv_exact(le)


@unittest.skipUnless(PHP, "php is not installed")
class PhpProtocolTest(NoChildrenLeft):
    def spawn(self, env_relay=None):
        env = dict(os.environ)
        env.pop("RR_RELAY", None)
        if env_relay:
            env["RR_RELAY"] = env_relay
        proc = subprocess.Popen([PHP, PHP_WORKER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

        def reap():
            if proc.poll() is None:
                proc.kill()
            proc.wait(20)
            for f in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        self.addCleanup(reap)
        return proc

    def handshake(self, end, proc):
        end.send(frame(CONTROL, json.dumps({"pid": os.getpid()}).encode()))
        flags, payload = read_frame(end)
        self.assertEqual(flags, CONTROL)
        self.assertEqual(json.loads(payload), {"pid": proc.pid})

    def task(self, end, ctx, body, ctx_flags=CONTROL | RAW, body_flags=RAW):
        end.send(frame(ctx_flags, ctx) + frame(body_flags, body))
        return read_frame(end)

    def converse(self, end, proc):
        self.handshake(end, proc)
        for i in range(50):
            ctx, body = f"ctx-{i}".encode(), os.urandom(i * 101)
            flags, got = self.task(end, ctx, body)
            self.assertEqual((flags, got), (CONTROL | RAW, ctx))
            self.assertEqual(read_frame(end), (RAW, body))
        # Empty context: answered CONTROL|EMPTY; empty body: RAW with size 0.
        self.assertEqual(self.task(end, b"", b""), (CONTROL | EMPTY, b""))
        self.assertEqual(read_frame(end), (RAW, b""))
        # An EMPTY context frame and a body with flags 0 (what PHP workers accept).
        self.assertEqual(self.task(end, b"", b"zero flags", CONTROL | EMPTY, 0),
                         (CONTROL | EMPTY, b""))
        self.assertEqual(read_frame(end), (RAW, b"zero flags"))
        # 1 MiB.
        big = os.urandom(1 << 20)
        self.assertEqual(self.task(end, b"big", big), (CONTROL | RAW, b"big"))
        self.assertEqual(read_frame(end), (RAW, big))
        # Job error: one ERROR frame, no body frame; the worker keeps going.
        self.assertEqual(self.task(end, b"error", b"the message"),
                         (CONTROL | RAW | ERROR, b"the message"))
        self.assertEqual(self.task(end, b"after", b"error"), (CONTROL | RAW, b"after"))
        self.assertEqual(read_frame(end), (RAW, b"error"))
        # Stop.
        end.send(frame(CONTROL, b'{"stop":true}'))
        self.assertEqual(proc.wait(20), 0)

    def test_pipes(self):
        proc = self.spawn()
        self.converse(PipeEnd(proc), proc)

    def test_pipes_with_byte_by_byte_writes(self):
        proc = self.spawn()
        end = PipeEnd(proc)
        self.handshake(end, proc)
        for b in frame(CONTROL | RAW, b"slow") + frame(RAW, b"drip" * 10):
            end.send(bytes([b]))
        self.assertEqual(read_frame(end), (CONTROL | RAW, b"slow"))
        self.assertEqual(read_frame(end), (RAW, b"drip" * 10))
        end.close()  # end of stream between frames: a clean exit
        self.assertEqual(proc.wait(20), 0)

    def _listen_and_converse(self, family, address, relay):
        with socket.socket(family, socket.SOCK_STREAM) as ls:
            ls.bind(address)
            ls.listen(1)
            ls.settimeout(20)
            if family == socket.AF_INET:
                relay = f"tcp://127.0.0.1:{ls.getsockname()[1]}"
            proc = self.spawn(relay)
            conn, _ = ls.accept()
            with conn:
                self.converse(SocketEnd(conn), proc)
        self.assertEqual(proc.stdout.read(), b"", "the socket worker wrote to stdout")

    def test_unix_socket(self):
        with tempfile.TemporaryDirectory(prefix="rr-php-proto-") as d:
            path = os.path.join(d, "rr.sock")
            self._listen_and_converse(socket.AF_UNIX, path, f"unix://{path}")

    def test_tcp(self):
        self._listen_and_converse(socket.AF_INET, ("127.0.0.1", 0), None)

    def test_invalid_prefix_exits_with_a_message(self):
        proc = self.spawn()
        end = PipeEnd(proc)
        self.handshake(end, proc)
        end.send(prefix(CONTROL | RAW, 5, 6) + b"hello")
        self.assertNotEqual(proc.wait(20), 0)
        self.assertIn(b"sizes differ", proc.stderr.read())

    def test_truncated_frame_exits_with_a_message(self):
        proc = self.spawn()
        end = PipeEnd(proc)
        self.handshake(end, proc)
        end.send(prefix(CONTROL | RAW, 100) + b"only ten b")
        end.close()
        self.assertNotEqual(proc.wait(20), 0)
        self.assertIn(b"10 of 100", proc.stderr.read())


if __name__ == "__main__":
    unittest.main()
