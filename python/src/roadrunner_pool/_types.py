"""The plain values the package hands out: answers (Payload), events, worker snapshots,
counters, and the constants of rr.h."""

from __future__ import annotations

import enum
from typing import Any, NamedTuple, Optional, Union

from ._errors import ConfigError, Status, out_bytes
from ._lib import STATS_FIELDS, lib

PROTOCOL_V1 = 1
"""RoadRunner 1.x workers (the default)."""
PROTOCOL_V2 = 2
"""RoadRunner 2.x to 2025.x workers; lets a worker stream its answer."""


def check_protocol(value: Any) -> int:
    """The protocol of a Server or a Worker: PROTOCOL_V1 or PROTOCOL_V2, else a
    ConfigError with the value as given (the C parameter is a uint32_t, which would
    silently wrap -1 or 2**32 + 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in (PROTOCOL_V1,
                                                                                PROTOCOL_V2):
        raise ConfigError(Status.CONFIG, f"protocol must be {PROTOCOL_V1} (PROTOCOL_V1) or "
                          f"{PROTOCOL_V2} (PROTOCOL_V2), not {value!r}")
    return int(value)


CODEC_RAW = 0x04
CODEC_JSON = 0x08
CODEC_MSGPACK = 0x10
CODEC_GOB = 0x20
CODEC_PROTO = 0x80

BytesLike = Union[bytes, bytearray, memoryview, str]
"""What a task's body or context may be given as (``str`` is encoded as UTF-8)."""


def to_bytes(data: BytesLike, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray, memoryview or str, "
                    f"not {type(data).__name__}")


class Payload(NamedTuple):
    """An answer from a worker (or, on the worker side, a task): its ``body`` and
    ``context``, both bytes."""

    body: bytes
    context: bytes = b""


def take_payload(p: Any) -> Payload:
    """A Payload copied out of an rr_payload, which is freed."""
    try:
        return Payload(out_bytes(lib.rr_payload_body, p), out_bytes(lib.rr_payload_context, p))
    finally:
        lib.rr_payload_free(p)


class EventType(enum.IntEnum):
    """The types of events (``RR_EVENT_*`` of rr.h). An event of a type newer than this
    package carries a plain int."""

    WORKER_CONSTRUCT = 100
    WORKER_DESTRUCT = 101
    WORKER_KILL = 102
    WORKER_ERROR = 103
    WORKER_DEAD = 104
    POOL_ERROR = 105
    SERVER_START = 200
    SERVER_STOP = 201
    SERVER_FAILURE = 202
    POOL_CONSTRUCT = 203
    POOL_DESTRUCT = 204
    WORKER_STDERR = 300
    WORKER_EXEC_TTL = 301
    WORKER_TTL = 302
    WORKER_IDLE_TTL = 303
    WORKER_MAX_MEMORY = 304
    WORKER_MAX_JOBS = 305
    QUEUE_FULL = 306
    POOL_GROW = 307
    POOL_SHRINK = 308
    RECONFIGURE_IGNORED = 309
    WORKER_REMOVED = 310


def event_type(value: int) -> Union[EventType, int]:
    try:
        return EventType(value)
    except ValueError:
        return value


class Event(NamedTuple):
    """One event of a server: its ``type`` (an :class:`EventType`), the ``pid`` of the
    worker concerned (-1 when none), and a ``message`` (an error text or a worker's stderr
    line) or None."""

    type: Union[EventType, int]
    pid: int
    message: Optional[str]


class WorkerInfo(NamedTuple):
    """A snapshot of one worker: ``pid``; ``state``, one of "inactive", "ready",
    "working", "streaming", "stopping", "stopped", "errored"; ``num_execs``, the tasks it
    ran; ``created``, when it started (seconds since the Unix epoch, like time.time());
    ``rss_bytes``, its resident memory (0 where unknown)."""

    pid: int
    state: str
    num_execs: int
    created: float
    rss_bytes: int


def worker_state_str(state: int) -> str:
    s = lib.rr_worker_state_str(state)
    return s.decode("utf-8") if s is not None else "unknown"


class Stats(NamedTuple):
    """The counters of a server (``rr_pool_stats``). They count from the server's creation,
    across stop/start, reset and reconfigure; ``waiting`` and ``workers`` are the numbers
    at the moment of the snapshot."""

    tasks_done: int
    job_errors: int
    worker_errors: int
    exec_ttl_kills: int
    timeouts: int
    queue_full: int
    waiting: int
    workers: int
    retired_max_jobs: int
    retired_ttl: int
    retired_idle_ttl: int
    retired_max_memory: int
    retired_stop_requested: int
    retired_failed: int
    retired_died: int
    tasks_cancelled: int
    workers_spawned: int
    retired_shrink: int
    retired_removed: int


assert Stats._fields == STATS_FIELDS
