"""A worker written in Python with roadrunner_pool.Worker, run by the tests' pools:
`python3 py_worker.py` (the pool sets RR_RELAY; PY_WORKER_PROTOCOL=2 for protocol 2).

Tasks, by context: "error" answers a job error whose message is the body; "pid" answers
this process's pid; "stop" asks to be replaced; "stop-if-pid" asks to be replaced when
the body is this process's pid, else answers its pid; "upper" answers the body in upper case;
"stream" (protocol 2) sends N chunks "part i" (N = the body) then "done", or chunks until
the host stops the stream when the body is "forever"; "print" prints the body (to stdout,
which the library points at stderr) then echoes. Anything else is echoed.
"""

import os
import sys

import roadrunner_pool


def stream(worker, body):
    count = None if body == b"forever" else int(body)
    i = 0
    while count is None or i < count:
        try:
            worker.send_chunk(f"part {i}".encode(), b"stream")
        except roadrunner_pool.CancelledError:
            print("stream stopped by the host", file=sys.stderr, flush=True)
            return
        i += 1
    worker.respond(b"done", b"stream")


def main():
    protocol = int(os.environ.get("PY_WORKER_PROTOCOL", "1"))
    with roadrunner_pool.Worker(protocol=protocol) as worker:
        for task in worker:
            if task.context == b"error":
                worker.error(task.body)
            elif task.context == b"pid":
                worker.respond(str(os.getpid()).encode(), b"pid")
            elif task.context == b"stop":
                worker.stop()
            elif task.context == b"stop-if-pid":
                if task.body == str(os.getpid()).encode():
                    worker.stop()
                else:
                    worker.respond(str(os.getpid()).encode(), b"pid")
            elif task.context == b"upper":
                worker.respond(task.body.upper(), b"upper")
            elif task.context == b"stream":
                stream(worker, task.body)
            elif task.context == b"print":
                print(task.body.decode(), flush=True)
                worker.respond(task.body, task.context)
            else:
                worker.respond(task.body, task.context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
