"""An echo worker written in Python with the library's worker side (rr_worker_* via ctypes).

Run by a pool: `python3 tests/python/py_worker.py`, with RR_LIB in the environment (the
library to load) and RR_RELAY set by the pool (pipes when unset).

It speaks protocol RR_PY_PROTOCOL (1 when unset, or 2).

Tasks: echo of context and body, except these contexts:
- "error": a job error whose message is the body;
- "pid": body = this process's pid in decimal;
- "stop": asks the pool to replace this worker (rr_worker_stop);
- "stream" (protocol 2): N chunks "part i" (N = the body, a number, or until the host
  stops the stream when it is "forever"), then a last part "done".
Nothing may be printed to stdout on the pipes relay; diagnostics go to stderr.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rr  # noqa: E402


def main():
    protocol = int(os.environ.get("RR_PY_PROTOCOL", "1"))
    worker = rr.Worker(None, protocol)  # NULL relay: RR_RELAY, else pipes
    try:
        while True:
            task = worker.receive()
            if task is None:  # the pool asked us to stop
                return 0
            context, body = task
            if context == b"error":
                worker.error(body)
            elif context == b"pid":
                worker.respond(b"pid", str(os.getpid()).encode())
            elif context == b"stop":
                worker.stop()
            elif context == b"stream":
                stream(worker, body)
            else:
                worker.respond(context, body)
    finally:
        worker.free()


def stream(worker, body):
    count = None if body == b"forever" else int(body)
    i = 0
    while count is None or i < count:
        try:
            worker.send_chunk(b"stream", f"part {i}".encode())
        except rr.RRError as e:
            if e.status == rr.RR_STATUS_CANCELLED:
                sys.stderr.write("stream stopped by the host\n")
                return  # the library ended the stream
            raise
        i += 1
    worker.respond(b"stream", b"done")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except rr.RRError as e:
        sys.stderr.write(f"py_worker.py (pid {os.getpid()}): {e}\n")
        sys.exit(1)
