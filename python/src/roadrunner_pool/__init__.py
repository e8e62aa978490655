"""roadrunner_pool: a pool of long-lived worker processes fed binary tasks, from Python.

A binding of libroadrunner (the process manager of RoadRunner 1.x, rebuilt in Rust, with a
C interface), whose library is bundled in this package. The host side::

    import roadrunner_pool

    with roadrunner_pool.Server("php worker.php", num_workers=4) as server:
        answer = server.exec(b"body", context=b'{"headers": {}}')
        print(answer.body, answer.context)

- :class:`Server`: the pool; :meth:`Server.exec` (blocking, the GIL released),
  :meth:`Server.stream` (chunks, protocol 2), :meth:`Server.exec_async` (asyncio),
  :meth:`Server.workers`, :meth:`Server.stats`, :meth:`Server.on_event`, ...
- :class:`Worker`: the worker side, to write a worker program in Python.
- :class:`Error` and its subclasses, one per failure a program handles.

The library loaded is the bundled one, or the file named by the environment variable
``RR_LIB`` when it is set (:func:`library_path` says which).
"""

from __future__ import annotations

import importlib.metadata as _metadata

from ._errors import (CancelledError, ConfigError, Error, ExecTTLError, JobError,
                      NoFreeWorkerError, QueueFullError, SpawnError, StateError, Status,
                      WorkerError)
from ._lib import LIB_PATH as _LIB_PATH
from ._lib import version as _version
from ._server import SETTING_NAMES, Server, Stream
from ._types import (CODEC_GOB, CODEC_JSON, CODEC_MSGPACK, CODEC_PROTO, CODEC_RAW,
                     PROTOCOL_V1, PROTOCOL_V2, Event, EventType, Payload, Stats, WorkerInfo)
from ._worker import Worker

try:
    __version__ = _metadata.version("roadrunner-pool")
except _metadata.PackageNotFoundError:  # a source tree, not installed
    __version__ = _version()

__all__ = [
    "Server", "Stream", "Worker", "Payload", "Event", "EventType", "WorkerInfo", "Stats",
    "Status", "Error", "JobError", "WorkerError", "NoFreeWorkerError", "ConfigError",
    "SpawnError", "StateError", "ExecTTLError", "QueueFullError", "CancelledError",
    "PROTOCOL_V1", "PROTOCOL_V2", "CODEC_RAW", "CODEC_JSON", "CODEC_MSGPACK", "CODEC_GOB",
    "CODEC_PROTO", "SETTING_NAMES", "library_path", "library_version",
]


def library_path() -> str:
    """The path of the libroadrunner loaded (the bundled one, unless RR_LIB is set)."""
    return _LIB_PATH


def library_version() -> str:
    """The version of the libroadrunner loaded, ``"MAJOR.MINOR.PATCH"``."""
    return _version()
