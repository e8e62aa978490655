"""An echo worker written in Python with the library's worker side (rr_worker_* via ctypes).

Run by a pool: `python3 tests/python/py_worker.py`, with RR_LIB in the environment (the
library to load) and RR_RELAY set by the pool (pipes when unset).

Tasks: echo of context and body, except these contexts:
- "error": a job error whose message is the body;
- "pid": body = this process's pid in decimal;
- "stop": asks the pool to replace this worker (rr_worker_stop).
Nothing may be printed to stdout on the pipes relay; diagnostics go to stderr.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rr  # noqa: E402


def main():
    worker = rr.Worker(None)  # NULL relay: RR_RELAY, else pipes
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
            else:
                worker.respond(context, body)
    finally:
        worker.free()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except rr.RRError as e:
        sys.stderr.write(f"py_worker.py (pid {os.getpid()}): {e}\n")
        sys.exit(1)
