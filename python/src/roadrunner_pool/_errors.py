"""Statuses and exceptions: each rr_status of rr.h becomes one exception class, and every
failed call raises it with the message (and, for a job error, the worker's bytes) of the
library's rr_error object."""

from __future__ import annotations

import enum
from ctypes import POINTER, byref, c_size_t, string_at
from typing import Any, Callable, Dict, Optional, Type

from ._lib import lib, rr_error


class Status(enum.IntEnum):
    """The statuses of rr.h (``rr_status``); the values never change."""

    OK = 0
    JOB_ERROR = 1
    WORKER_ERROR = 2
    TIMEOUT = 3
    CONFIG = 4
    SPAWN = 5
    STATE = 6
    NULL_ARGUMENT = 7
    INVALID_ARGUMENT = 8
    INTERNAL = 9
    EXEC_TTL = 10
    QUEUE_FULL = 11
    CANCELLED = 12


def _status(value: int) -> Any:
    try:
        return Status(value)
    except ValueError:
        return value


class Error(Exception):
    """A call of libroadrunner failed.

    ``status`` is the library's status (a :class:`Status`, or a plain int for a status
    newer than this package), ``message`` its explanation for a person. Subclasses name
    the statuses a program usually handles; other statuses (``INVALID_ARGUMENT``,
    ``INTERNAL``, ...) raise ``Error`` itself.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = _status(status)
        self.message = message

    def __str__(self) -> str:
        name = self.status.name.lower() if isinstance(self.status, Status) else self.status
        return f"{self.message} [{name}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status!r}, {self.message!r})"


class JobError(Error):
    """The worker answered the task with an error; it stays in the pool. ``data`` holds the
    worker's message exactly as it sent it (bytes, not necessarily UTF-8)."""

    def __init__(self, status: int, message: str, data: bytes = b"") -> None:
        super().__init__(status, message)
        self.data = data


class WorkerError(Error):
    """The worker process failed during the task (crashed, broke the protocol, was
    killed); it is replaced. The message holds its pid and last stderr lines."""


class NoFreeWorkerError(Error):
    """No worker became free within ``allocate_timeout``."""


class ConfigError(Error):
    """A setting is invalid; the message names it."""


class SpawnError(Error):
    """A worker could not be started, or did not connect and answer in time."""


class StateError(Error):
    """The server is not started, was stopped, or is closed."""


class ExecTTLError(Error):
    """The task ran longer than ``exec_ttl``: its worker was killed (and replaced)."""


class QueueFullError(Error):
    """``max_queue`` callers were already waiting for a worker."""


class CancelledError(Error):
    """The task was cancelled before it finished (a cancelled stream or async task).

    Not to be confused with :class:`asyncio.CancelledError`, which an awaiting task that
    is cancelled receives."""


_CLASSES: Dict[int, Type[Error]] = {
    Status.JOB_ERROR: JobError,
    Status.WORKER_ERROR: WorkerError,
    Status.TIMEOUT: NoFreeWorkerError,
    Status.CONFIG: ConfigError,
    Status.SPAWN: SpawnError,
    Status.STATE: StateError,
    Status.EXEC_TTL: ExecTTLError,
    Status.QUEUE_FULL: QueueFullError,
    Status.CANCELLED: CancelledError,
}


def error_for(status: int, message: str, data: bytes = b"") -> Error:
    """The exception of `status`."""
    cls = _CLASSES.get(status, Error)
    if cls is JobError:
        return JobError(status, message, data)
    return cls(status, message)


def out_bytes(fn: Callable[..., Any], obj: Any) -> bytes:
    """Copies the output buffer returned by fn(obj, &len) (owned by obj)."""
    n = c_size_t(0)
    ptr = fn(obj, byref(n))
    if n.value == 0 or not ptr:
        return b""
    return string_at(ptr, n.value)


def status_str(status: int) -> str:
    s = lib.rr_status_str(status)
    return s.decode("utf-8") if s is not None else "unknown status"


def take_error(err: Any, status: Optional[int] = None) -> Error:
    """The exception for an rr_error (which is freed)."""
    try:
        st = lib.rr_error_status(err) if status is None else status
        msg = lib.rr_error_message(err)
        data = out_bytes(lib.rr_error_data, err)
    finally:
        lib.rr_error_free(err)
    return error_for(st, msg.decode("utf-8", "replace") if msg is not None else status_str(st),
                     data)


def call(fn: Callable[..., Any], *args: Any) -> None:
    """Calls a fallible function of rr.h with an err_out; raises its Error on failure."""
    err = POINTER(rr_error)()
    status = fn(*args, byref(err))
    if status == Status.OK:
        return
    if not err:
        raise error_for(status, status_str(status))
    raise take_error(err, status)
