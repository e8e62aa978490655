"""The worker side: a worker program written in Python (libroadrunner's ``rr_worker``)."""

from __future__ import annotations

from ctypes import POINTER, byref
from typing import Any, Iterator, Optional

from ._errors import ConfigError, Status, StateError, call
from ._lib import lib, rr_payload, rr_worker
from ._types import BytesLike, Payload, check_protocol, take_payload, to_bytes


class Worker:
    """The worker's end of a relay, for a worker program written in Python::

        with roadrunner_pool.Worker() as worker:
            for task in worker:              # until the server says stop
                worker.respond(task.body.upper(), task.context)

    ``relay`` is ``"pipes"`` (stdin/stdout), ``"tcp://host:port"`` or ``"unix://path"``;
    None (the default) takes the relay the server gave in the environment (``RR_RELAY``),
    else pipes. With pipes, the library takes over stdin and stdout: ``print`` then goes to
    stderr, which the server reads (and reports as events), so it cannot corrupt the
    frames. ``protocol`` must be the server's (``PROTOCOL_V2`` to stream answers with
    :meth:`send_chunk`). A protocol other than 1 or 2, or a relay with a NUL character,
    raises :class:`ConfigError`.

    Answer each task (:meth:`respond`, :meth:`error` or :meth:`stop`) before receiving the
    next. Use it from one thread at a time.
    """

    def __init__(self, relay: Optional[str] = None, protocol: int = 1) -> None:
        self._ptr: Any = None
        relay_c = None
        if relay is not None:
            if not isinstance(relay, str):
                raise ConfigError(Status.CONFIG,
                                  f"relay must be a str, not {type(relay).__name__}")
            relay_c = relay.encode("utf-8")
            if b"\0" in relay_c:
                raise ConfigError(Status.CONFIG, "relay must not contain a NUL character")
        ptr = POINTER(rr_worker)()
        call(lib.rr_worker_new_with_protocol, relay_c, check_protocol(protocol), byref(ptr))
        self._ptr = ptr

    def _handle(self) -> Any:
        if not self._ptr:
            raise StateError(Status.STATE, "the worker is closed")
        return self._ptr

    def receive(self) -> Optional[Payload]:
        """Waits for the next task; None when the server asks this worker to stop (then
        close it and exit). Raises :class:`WorkerError` when the relay broke."""
        out = POINTER(rr_payload)()
        call(lib.rr_worker_receive, self._handle(), byref(out))
        return take_payload(out) if out else None

    def __iter__(self) -> Iterator[Payload]:
        """The tasks, until the server says stop."""
        while True:
            task = self.receive()
            if task is None:
                return
            yield task

    def respond(self, body: BytesLike, context: BytesLike = b"") -> None:
        """Answers the current task (with protocol 2 after chunks: its last part)."""
        b = to_bytes(body, "body")
        c = to_bytes(context, "context")
        call(lib.rr_worker_respond, self._handle(), c, len(c), b, len(b))

    def send_chunk(self, body: BytesLike, context: BytesLike = b"") -> None:
        """Sends one chunk of a streamed answer (protocol 2); end with :meth:`respond`.
        Raises :class:`CancelledError` when the host stopped the stream: the task then
        needs no other answer."""
        b = to_bytes(body, "body")
        c = to_bytes(context, "context")
        call(lib.rr_worker_send_chunk, self._handle(), c, len(c), b, len(b))

    def error(self, message: BytesLike) -> None:
        """Answers the current task with an error: the caller gets :class:`JobError` with
        these bytes in ``.data``. This worker stays in the pool."""
        m = to_bytes(message, "message")
        call(lib.rr_worker_error, self._handle(), m, len(m))

    def stop(self) -> None:
        """Answers the current task by asking to be replaced: the task runs on another
        worker, and the next :meth:`receive` gives None (the server's stop)."""
        call(lib.rr_worker_stop, self._handle())

    def close(self) -> None:
        """Closes the relay. Calling it again does nothing."""
        if self._ptr:
            lib.rr_worker_free(self._ptr)
            self._ptr = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None):
            self.close()
