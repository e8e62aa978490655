"""The host side: Server (a pool of worker processes), its streams and its asyncio queue."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import math
import os
import shlex
import sys
import threading
import traceback
import warnings
import weakref
from ctypes import POINTER, byref, c_size_t, c_void_p, sizeof, string_at
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from ._errors import ConfigError, Error, StateError, Status, call, take_error
from ._lib import (lib, rr_completion, rr_config, rr_error, rr_event_callback,
                   rr_payload, rr_pool_stats, rr_queue, rr_server, rr_stream,
                   rr_userdata_free, rr_worker_info, STATS_FIELDS)
from ._types import (BytesLike, Event, Payload, Stats, WorkerInfo, check_protocol, event_type,
                     take_payload, to_bytes, worker_state_str)

# Whether the current thread is running an event callback of this package (a library
# thread): closing a server there would deadlock, so it is refused (or deferred, in __del__).
_callback_state = threading.local()


def _in_callback() -> bool:
    return getattr(_callback_state, "active", False)


# ---------------------------------------------------------------- settings

# Python name: (kind, C setter). Kinds: "count" (an int >= 0), "seconds" (a duration in
# seconds, given to the library in milliseconds), "bool", "str", and the special ones
# ("protocol", "codec", "env", "dir").
_SETTINGS: Dict[str, Tuple[str, str]] = {
    "num_workers": ("count", "rr_config_set_num_workers"),
    "max_jobs": ("count", "rr_config_set_max_jobs"),
    "allocate_timeout": ("seconds", "rr_config_set_allocate_timeout_ms"),
    "destroy_timeout": ("seconds", "rr_config_set_destroy_timeout_ms"),
    "relay_timeout": ("seconds", "rr_config_set_relay_timeout_ms"),
    "exec_ttl": ("seconds", "rr_config_set_exec_ttl_ms"),
    "ttl": ("seconds", "rr_config_set_ttl_ms"),
    "idle_ttl": ("seconds", "rr_config_set_idle_ttl_ms"),
    "max_memory_bytes": ("count", "rr_config_set_max_memory_bytes"),
    "max_queue": ("count", "rr_config_set_max_queue"),
    "max_frame_bytes": ("count", "rr_config_set_max_frame_bytes"),
    "jitter_percent": ("count", "rr_config_set_jitter_percent"),
    "tcp_allow_remote": ("bool", "rr_config_set_tcp_allow_remote"),
    "worker_cpu_affinity": ("bool", "rr_config_set_worker_cpu_affinity"),
    "worker_sched_batch": ("bool", "rr_config_set_worker_sched_batch"),
    "protocol": ("protocol", "rr_config_set_protocol"),
    "codec": ("codec", "rr_config_set_codec"),
    "stream_timeout": ("seconds", "rr_config_set_stream_timeout_ms"),
    "env": ("env", "rr_config_set_env"),
    "cwd": ("dir", "rr_config_set_dir"),
    "max_workers": ("count", "rr_config_set_max_workers"),
    "spawn_rate": ("count", "rr_config_set_spawn_rate"),
    "scale_after": ("seconds", "rr_config_set_scale_after_ms"),
    "scale_idle": ("seconds", "rr_config_set_scale_idle_ms"),
    "name": ("str", "rr_config_set_name"),
}

SETTING_NAMES = tuple(_SETTINGS)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(Status.CONFIG, f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value >= 1 << 64:
        raise ConfigError(Status.CONFIG, f"{name} must be between 0 and 2**64-1, not {value}")
    return value


def _millis(name: str, value: Any) -> int:
    """Seconds (int or float) to whole milliseconds; a positive duration is at least 1 ms."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(Status.CONFIG, f"{name} must be a number of seconds, not "
                          f"{type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(Status.CONFIG, f"{name} must be a finite number of seconds >= 0, "
                          f"not {value}")
    ms = int(round(value * 1000))
    return 1 if ms == 0 and value > 0 else _count(name, ms)


def _cstr(s: Union[str, "os.PathLike[str]"]) -> bytes:
    return os.fsencode(s) if isinstance(s, os.PathLike) else str(s).encode("utf-8")


def _no_nul(name: str, data: bytes) -> bytes:
    """`data` for a C string (which would end at a NUL): a ConfigError naming the setting
    when it has one."""
    if b"\0" in data:
        raise ConfigError(Status.CONFIG, f"{name} must not contain a NUL character")
    return data


def _command_string(command: Union[str, Sequence[str]]) -> str:
    if isinstance(command, str):
        return command
    if isinstance(command, (list, tuple)) and all(isinstance(a, (str, os.PathLike))
                                                  for a in command):
        return " ".join(shlex.quote(os.fspath(a)) for a in command)
    raise TypeError("command must be a str (quoted as in a shell) or a list of str")


class _Config:
    """An rr_config built from a command, a relay and the settings; freed by free()."""

    def __init__(self, command: str, relay: Optional[str], settings: Mapping[str, Any]):
        self.ptr = POINTER(rr_config)()
        if relay is not None and not isinstance(relay, str):
            raise ConfigError(Status.CONFIG, f"relay must be a str, not {type(relay).__name__}")
        command_c = _no_nul("command", command.encode("utf-8"))
        relay_c = None if relay is None else _no_nul("relay", relay.encode("utf-8"))
        call(lib.rr_config_new, command_c, relay_c, byref(self.ptr))
        try:
            for name, value in settings.items():
                if value is not None:
                    self._set(name, value)
        except BaseException:
            self.free()
            raise

    def _set(self, name: str, value: Any) -> None:
        kind, setter_name = _SETTINGS[name]
        setter = getattr(lib, setter_name)
        if kind == "count":
            setter(self.ptr, _count(name, value))
        elif kind == "seconds":
            setter(self.ptr, _millis(name, value))
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(Status.CONFIG, f"{name} must be a bool")
            setter(self.ptr, value)
        elif kind == "protocol":
            self._fallible(name, setter, check_protocol(value))
        elif kind == "codec":
            codec = _count(name, value)
            if codec > 0xFF:  # the C parameter is a uint8_t: no silent truncation
                raise ConfigError(Status.CONFIG, f"{name} must be one of the CODEC_* "
                                  f"values, not {value}")
            self._fallible(name, setter, codec)
        elif kind == "str":
            if not isinstance(value, str):
                raise ConfigError(Status.CONFIG, f"{name} must be a str")
            self._fallible(name, setter, _no_nul(name, value.encode("utf-8")))
        elif kind == "dir":
            if not isinstance(value, (str, os.PathLike)):
                raise ConfigError(Status.CONFIG, f"{name} must be a str or a path, not "
                                  f"{type(value).__name__}")
            self._fallible(name, setter, _no_nul(name, _cstr(value)))
        elif kind == "env":
            if not isinstance(value, Mapping):
                raise ConfigError(Status.CONFIG, "env must be a mapping of str to str")
            for key, val in value.items():
                if not isinstance(key, str) or not isinstance(val, str):
                    raise ConfigError(Status.CONFIG, f"env: {key!r}={val!r} is not str=str")
                self._fallible(name, setter, _no_nul(f"env key {key!r}", key.encode("utf-8")),
                               _no_nul(f"env[{key!r}]", val.encode("utf-8")))
        else:  # pragma: no cover
            raise AssertionError(kind)

    def _fallible(self, name: str, setter: Any, *args: Any) -> None:
        """A setter that returns a status: an invalid value is a ConfigError naming it."""
        try:
            call(setter, self.ptr, *args)
        except Error as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(e.status, f"{name}: {e.message}") from None

    def free(self) -> None:
        if self.ptr:
            lib.rr_config_free(self.ptr)
            self.ptr = POINTER(rr_config)()


# ---------------------------------------------------------------- the server

_live_servers: "weakref.WeakSet[Server]" = weakref.WeakSet()


@atexit.register
def _close_live_servers() -> None:
    # Stop every worker before the interpreter goes: no event callback may run into a
    # finalized interpreter.
    for server in list(_live_servers):
        try:
            server.close()
        except Exception:  # pragma: no cover
            pass


class Server:
    """A pool of worker processes that run tasks (libroadrunner's ``rr_server``).

    ``command`` is the worker program with its arguments, as a string quoted as in a shell
    (``"php worker.php"``) or a list of arguments. ``relay`` is how workers talk to the
    server: ``"pipes"`` (their stdin/stdout), ``"tcp://127.0.0.1:7000"`` or
    ``"unix:///path/to.sock"``.

    Settings (keyword only; None means the library's default). Durations are in seconds
    (floats allowed):

    - ``num_workers`` (default: as many as CPUs), ``max_jobs`` (tasks after which a worker
      is replaced; 0 = unlimited), ``max_queue`` (callers allowed to wait for a worker;
      None or 0 = unlimited);
    - ``allocate_timeout``, ``destroy_timeout``, ``relay_timeout`` (60.0 each), and
      ``stream_timeout`` (10.0);
    - supervision, None = off: ``exec_ttl``, ``ttl``, ``idle_ttl``, ``max_memory_bytes``;
    - ``max_frame_bytes`` (1 GiB), ``jitter_percent`` (10), ``tcp_allow_remote``,
      ``worker_cpu_affinity``, ``worker_sched_batch`` (False);
    - ``env`` (a dict of extra environment variables), ``cwd`` (the workers' directory);
    - ``protocol`` (``PROTOCOL_V1`` = 1, or ``PROTOCOL_V2`` = 2 for streaming workers),
      ``codec`` (protocol 2: ``CODEC_RAW``, ``CODEC_JSON``, ...);
    - an elastic pool: ``max_workers`` (the ceiling; ``num_workers`` is then the floor
      and may be 0), ``spawn_rate`` (8), ``scale_after`` (0.01 s), ``scale_idle``
      (10 s); and ``name``, the pool's name in :meth:`status` and :meth:`metrics`.

    The server is made (and its settings checked: :class:`ConfigError`) here, but starts
    no process until :meth:`start`. As a context manager it starts on enter (unless
    started) and is closed on exit::

        with roadrunner_pool.Server("php worker.php", num_workers=4) as server:
            print(server.exec(b"hello").body)

    Thread-safety: every method may be called from any thread at once (any number of
    threads in :meth:`exec`), but not from an event callback for :meth:`stop`,
    :meth:`close`, :meth:`on_event`.
    """

    def __init__(self, command: Union[str, Sequence[str]], relay: str = "pipes", *,
                 num_workers: Optional[int] = None, max_jobs: Optional[int] = 0,
                 allocate_timeout: Optional[float] = 60.0,
                 destroy_timeout: Optional[float] = 60.0,
                 relay_timeout: Optional[float] = 60.0,
                 exec_ttl: Optional[float] = None, ttl: Optional[float] = None,
                 idle_ttl: Optional[float] = None, max_memory_bytes: Optional[int] = None,
                 max_queue: Optional[int] = None, max_frame_bytes: Optional[int] = None,
                 jitter_percent: Optional[int] = None,
                 tcp_allow_remote: Optional[bool] = None,
                 worker_cpu_affinity: Optional[bool] = None,
                 worker_sched_batch: Optional[bool] = None,
                 env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[Union[str, "os.PathLike[str]"]] = None,
                 protocol: int = 1, codec: Optional[int] = None,
                 stream_timeout: Optional[float] = None,
                 max_workers: Optional[int] = None, spawn_rate: Optional[int] = None,
                 scale_after: Optional[float] = None, scale_idle: Optional[float] = None,
                 name: Optional[str] = None) -> None:
        self._ptr: Any = None
        self._closed = True  # until made: __del__ and close() of a failed __init__ do nothing
        self._cond = threading.Condition()
        self._inflight = 0
        self._running = False
        self._listeners: List[Tuple[Any, Any]] = []
        self._streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()
        self._queues: Dict[Any, _AsyncQueue] = {}
        self._command = _command_string(command)
        self._relay = relay
        settings = dict(num_workers=num_workers, max_jobs=max_jobs,
                        allocate_timeout=allocate_timeout, destroy_timeout=destroy_timeout,
                        relay_timeout=relay_timeout, exec_ttl=exec_ttl, ttl=ttl,
                        idle_ttl=idle_ttl, max_memory_bytes=max_memory_bytes,
                        max_queue=max_queue, max_frame_bytes=max_frame_bytes,
                        jitter_percent=jitter_percent, tcp_allow_remote=tcp_allow_remote,
                        worker_cpu_affinity=worker_cpu_affinity,
                        worker_sched_batch=worker_sched_batch, env=env, cwd=cwd,
                        protocol=protocol, codec=codec, stream_timeout=stream_timeout,
                        max_workers=max_workers, spawn_rate=spawn_rate,
                        scale_after=scale_after, scale_idle=scale_idle, name=name)
        self._settings = {k: v for k, v in settings.items() if v is not None}
        cfg = _Config(self._command, relay, self._settings)
        try:
            ptr = POINTER(rr_server)()
            call(lib.rr_server_new, cfg.ptr, byref(ptr))
        finally:
            cfg.free()
        self._ptr = ptr
        self._pid = os.getpid()
        self._closed = False
        _live_servers.add(self)

    # -- bookkeeping of calls in flight (close() waits for them before rr_server_free)

    def _acquire(self) -> Any:
        with self._cond:
            if self._closed:
                raise StateError(Status.STATE, "the server is closed")
            self._inflight += 1
            return self._ptr

    def _release(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        ptr = self._acquire()
        try:
            call(fn, ptr, *args)
        finally:
            self._release()

    # -- life cycle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def command(self) -> str:
        """The workers' command line."""
        return self._command

    @property
    def relay(self) -> str:
        return self._relay

    @property
    def settings(self) -> Dict[str, Any]:
        """The settings given (to the constructor and :meth:`reconfigure`), without those
        left to the library's defaults."""
        return dict(self._settings)

    def start(self) -> "Server":
        """Starts the workers; blocks until every one answered (each within
        relay_timeout). Raises :class:`SpawnError` when one could not start (nothing is left
        running), :class:`StateError` when already started. Returns the server."""
        self._call(lib.rr_server_start)
        self._running = True
        return self

    def stop(self) -> None:
        """Stops the workers: callers waiting for one get :class:`StateError`, running tasks
        may finish within destroy_timeout. The server can be started again. Raises
        :class:`StateError` when it is not started."""
        self._refuse_in_callback("stop")
        self._call(lib.rr_server_stop)
        self._running = False

    def reset(self) -> None:
        """Replaces every worker (a new pool is started, then swapped in). Blocks until the
        new pool runs; :class:`StateError` when the server is not running."""
        self._call(lib.rr_server_reset)

    def _updated(self, what: str, settings: Dict[str, Any]
                 ) -> Tuple[str, str, Dict[str, Any]]:
        """The command, relay and settings of this server updated with `settings` (which
        may hold ``command`` and ``relay``; None puts a setting back to its default)."""
        settings = dict(settings)
        command = _command_string(settings.pop("command", self._command))
        relay = settings.pop("relay", self._relay)
        unknown = set(settings) - set(_SETTINGS)
        if unknown:
            raise TypeError(f"{what}() got unknown settings: {', '.join(sorted(unknown))}")
        merged = dict(self._settings)
        merged.update(settings)
        return command, relay, {k: v for k, v in merged.items() if v is not None}

    def reconfigure(self, **settings: Any) -> None:
        """Replaces the pool with one built with these settings changed (the others stay as
        they are; ``None`` puts a setting back to the library's default). ``command`` may
        change too. ``relay`` and ``relay_timeout`` are accepted but ignored, as in
        RoadRunner: they belong to the relay's listener, which stays; the server keeps its
        own (:attr:`relay`, :attr:`settings`), and an :class:`Event`
        ``EventType.RECONFIGURE_IGNORED`` says so when they differ. :meth:`differs` tells
        beforehand whether settings need a stop and a new server instead. The protocol
        cannot change (:class:`ConfigError`). Blocks until the new pool runs; the old one
        finishes its tasks in the background. :class:`StateError` when the server is not
        running, :class:`SpawnError` when the new workers fail (the old pool keeps
        running)."""
        command, relay, merged = self._updated("reconfigure", settings)
        # The library is given the relay and relay_timeout asked for, so that it reports
        # what it ignored (RECONFIGURE_IGNORED); it runs on with the server's own, which
        # this object keeps.
        cfg = _Config(command, relay, merged)
        try:
            self._call(lib.rr_server_reconfigure, cfg.ptr)
        finally:
            cfg.free()
        kept = {k: v for k, v in merged.items() if k != "relay_timeout"}
        if self._settings.get("relay_timeout") is not None:
            kept["relay_timeout"] = self._settings["relay_timeout"]
        self._command, self._settings = command, kept

    def differs(self, **settings: Any) -> bool:
        """Whether this server's settings updated with ``settings`` (as
        :meth:`reconfigure` takes them, ``command`` and ``relay`` included) differ from
        its current ones in what a reconfigure ignores: the relay (compared as parsed:
        ``"pipe"`` is ``"pipes"``) and ``relay_timeout`` (``rr_config_differs``). True:
        applying them needs a stop and a new server; False: :meth:`reconfigure` applies
        them all. Raises :class:`ConfigError` for an invalid value, TypeError for an
        unknown setting; does not touch the pool."""
        command, relay, merged = self._updated("differs", settings)
        current = _Config(self._command, self._relay, self._settings)
        try:
            wanted = _Config(command, relay, merged)
            try:
                return bool(lib.rr_config_differs(current.ptr, wanted.ptr))
            finally:
                wanted.free()
        finally:
            current.free()

    def close(self) -> None:
        """Stops the workers and frees the server; blocks until every worker is gone and
        every call in progress on other threads has returned. Streams still open are
        closed, tasks of :meth:`exec_async` still pending fail with :class:`StateError`.
        Calling it again does nothing; any other method then raises :class:`StateError`.
        Must not be called from an event callback. In a child made by fork() it only
        marks this copy closed: the workers are the parent's."""
        self._refuse_in_callback("close")
        with self._cond:
            if self._closed:
                return
            self._closed = True
        _live_servers.discard(self)
        if os.getpid() != self._pid:
            # A child made by fork(): the workers, threads and queues are the parent's
            # (every call of the library on them returns STATE here); leave them alone.
            self._ptr = None
            self._queues.clear()
            self._listeners.clear()
            return
        ptr = self._ptr
        # Streams nobody reads now are ended (their workers are freed at once).
        for st in list(self._streams):
            st._close(blocking=False, by_server=True)
        # Stopping ends the calls in flight: waiting callers fail, running tasks finish.
        lib.rr_server_stop(ptr, None)
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0)
        for st in list(self._streams):
            st._close(blocking=True, by_server=True)
        for q in list(self._queues.values()):
            q.close()
        self._queues.clear()
        lib.rr_server_free(ptr)
        self._ptr = None
        self._running = False
        self._listeners.clear()  # no callback runs after rr_server_free

    def _refuse_in_callback(self, what: str) -> None:
        if _in_callback():
            raise StateError(Status.STATE, f"{what}() called from an event callback (it would "
                             "wait for the callback itself)")

    def __enter__(self) -> "Server":
        if not self._running:
            try:
                self.start()
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
        if _in_callback():
            threading.Thread(target=self.close, name="rr-close", daemon=True).start()
        else:
            try:
                self.close()
            except Exception:  # pragma: no cover
                pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running else "stopped")
        return f"<roadrunner_pool.Server {self._command!r} {self._relay} {state}>"

    # -- tasks

    def exec(self, body: BytesLike, context: BytesLike = b"") -> Payload:
        """Runs one task on a free worker and returns its answer. Blocks (without holding the
        GIL) until the answer, or raises: :class:`JobError` (the worker answered with an
        error, in ``.data``), :class:`WorkerError`, :class:`NoFreeWorkerError` (none free
        within allocate_timeout), :class:`QueueFullError`, :class:`ExecTTLError`,
        :class:`StateError`. A streamed answer (protocol 2) comes joined: the first chunk's
        context and every chunk's body."""
        b = to_bytes(body, "body")
        c = to_bytes(context, "context")
        out = POINTER(rr_payload)()
        err = POINTER(rr_error)()
        ptr = self._acquire()
        try:
            status = lib.rr_exec(ptr, c, len(c), b, len(b), byref(out), byref(err))
        finally:
            self._release()
        if status != Status.OK:
            raise take_error(err, status)
        return take_payload(out)

    def stream(self, body: BytesLike, context: BytesLike = b"") -> "Stream":
        """Runs one task whose answer comes in chunks (protocol 2 workers; another worker's
        answer is one chunk): returns a :class:`Stream`, an iterator of :class:`Payload`
        chunks. Blocks until the first chunk is there; raises as :meth:`exec` for a task
        that fails before it. While the stream is open its worker runs nothing else: read
        it to the end, or close it (``with server.stream(...) as chunks:``)."""
        b = to_bytes(body, "body")
        c = to_bytes(context, "context")
        out = POINTER(rr_stream)()
        self._call(lib.rr_exec_stream, c, len(c), b, len(b), byref(out))
        st = Stream(self, out)
        self._streams.add(st)
        return st

    async def exec_async(self, body: BytesLike, context: BytesLike = b"") -> Payload:
        """Runs one task like :meth:`exec`, awaited on the running asyncio loop without a
        thread: the task is submitted to the server's completion queue, whose descriptor
        the loop watches (``add_reader``). Cancelling the awaiting asyncio task cancels the
        task: one waiting for a worker never runs, a running one has its worker killed
        (and replaced). Raises the exceptions of :meth:`exec`."""
        b = to_bytes(body, "body")
        c = to_bytes(context, "context")
        loop = asyncio.get_running_loop()
        ptr = self._acquire()
        try:
            queue = self._queue_for(loop)
            tag, fut = queue.submit(ptr, c, b)
        finally:
            self._release()
        try:
            return await fut
        except asyncio.CancelledError:
            queue.cancel(tag)
            raise

    def _queue_for(self, loop: asyncio.AbstractEventLoop) -> "_AsyncQueue":
        with self._cond:
            q = self._queues.get(loop)
            if q is not None:
                return q
            for old_loop, old in list(self._queues.items()):
                if old_loop.is_closed():  # its awaiters are gone: cancel their tasks
                    del self._queues[old_loop]
                    old.close()
            q = self._queues[loop] = _AsyncQueue(loop)
            return q

    # -- observation

    def workers(self) -> List[WorkerInfo]:
        """A snapshot of the current workers."""
        arr = POINTER(rr_worker_info)()
        n = c_size_t(0)
        self._call(lib.rr_server_workers, byref(arr), byref(n))
        try:
            return [WorkerInfo(w.pid, worker_state_str(w.state), w.num_execs,
                               w.created_unix_ms / 1000.0, w.rss_bytes)
                    for w in (arr[i] for i in range(n.value))]
        finally:
            lib.rr_worker_info_free(arr, n.value)

    def stats(self) -> Stats:
        """The server's counters (:class:`Stats`). :class:`StateError` when not started."""
        out = rr_pool_stats()
        out.size = _sizeof_stats
        self._call(lib.rr_server_stats, byref(out))
        filled = out.size
        values = []
        for name in STATS_FIELDS:
            field = getattr(rr_pool_stats, name)
            values.append(getattr(out, name) if field.offset + field.size <= filled else 0)
        return Stats(*values)

    def _string(self, fn_name: str) -> str:
        out = c_void_p()
        self._call(getattr(lib, fn_name), byref(out))
        try:
            return string_at(out.value).decode("utf-8") if out.value else ""
        finally:
            lib.rr_string_free(out)

    def status(self) -> Dict[str, Any]:
        """The state of the pool and its workers, as the library exports it
        (``rr_server_status_json``, parsed)."""
        result = json.loads(self._string("rr_server_status_json"))
        if not isinstance(result, dict):
            raise Error(Status.INTERNAL, "rr_server_status_json gave no JSON object")
        return result

    def metrics(self) -> str:
        """The pool's metrics as OpenMetrics text (``rr_server_metrics``; it ends with
        ``# EOF``)."""
        return self._string("rr_server_metrics")

    def remove_worker(self, pid: int, kill: bool = False) -> None:
        """Retires the worker ``pid`` (after its task; at once with ``kill=True``, its task
        then failing with :class:`WorkerError`); the pool replaces it."""
        self._call(lib.rr_server_remove_worker, int(pid), bool(kill))

    def on_event(self, callback: Optional[Callable[[Event], Any]]) -> None:
        """Calls ``callback(event)`` with each :class:`Event` of the server, replacing the
        previous callback (None removes it). The callback runs on a thread of the library,
        one event at a time, in order; it should return quickly, and must not call
        :meth:`stop`, :meth:`close` or :meth:`on_event`. An exception it raises is printed
        to stderr and otherwise ignored."""
        self._refuse_in_callback("on_event")
        if callback is None:
            self._call(lib.rr_server_listen, rr_event_callback(), None, rr_userdata_free())
            return

        def trampoline(_userdata: Any, ev: Any) -> None:
            _callback_state.active = True
            try:
                msg = lib.rr_event_message(ev)
                callback(Event(event_type(lib.rr_event_type(ev)), lib.rr_event_pid(ev),
                               None if msg is None else msg.decode("utf-8", "replace")))
            except BaseException:
                try:
                    sys.stderr.write("roadrunner_pool: exception in an event callback:\n")
                    traceback.print_exc()
                except BaseException:  # pragma: no cover
                    pass
            finally:
                _callback_state.active = False

        pair = (rr_event_callback(trampoline), rr_userdata_free(lambda _userdata: None))
        # ctypes' callbacks must live until the library no longer calls them: until
        # rr_server_free, which close() calls before dropping them.
        self._listeners.append(pair)
        self._call(lib.rr_server_listen, pair[0], None, pair[1])


_sizeof_stats = sizeof(rr_pool_stats)


class Stream:
    """The answer to one task, chunk by chunk: iterate it for :class:`Payload` chunks.

    Iteration raises the task's failure (:class:`JobError`, :class:`WorkerError`,
    :class:`ExecTTLError`), or :class:`CancelledError` after :meth:`cancel`. The stream holds
    its worker until the last chunk was read or it is closed; closing an unfinished stream
    cancels it. Use it from one thread at a time."""

    def __init__(self, server: Server, ptr: Any) -> None:
        self._server = server
        self._ptr = ptr
        self._lock = threading.Lock()
        self._cut = False  # freed unfinished by Server.close()

    def __iter__(self) -> Iterator[Payload]:
        return self

    def __next__(self) -> Payload:
        with self._lock:
            if not self._ptr:
                if self._cut:
                    raise StateError(Status.STATE, "the server was closed before the stream "
                                     "ended")
                raise StopIteration
            chunk = POINTER(rr_payload)()
            err = POINTER(rr_error)()
            self._server._acquire()
            try:
                status = lib.rr_stream_next(self._ptr, byref(chunk), byref(err))
            finally:
                self._server._release()
            if status != Status.OK:
                self._free()
                raise take_error(err, status)
            if not chunk:
                self._free()
                raise StopIteration
            return take_payload(chunk)

    def cancel(self) -> None:
        """Asks the worker to stop the stream and waits until it did (at most
        stream_timeout, after which it is killed); the next read raises
        :class:`CancelledError`. A finished stream is left as it is."""
        with self._lock:
            if self._ptr:
                call(lib.rr_stream_cancel, self._ptr)

    def close(self) -> None:
        """Releases the stream, cancelling it when unfinished (see :meth:`cancel`)."""
        self._close(blocking=True)

    def _close(self, blocking: bool, by_server: bool = False) -> None:
        if not self._lock.acquire(blocking):
            return
        try:
            if by_server and self._ptr:
                self._cut = True
            self._free()
        finally:
            self._lock.release()

    def _free(self) -> None:
        if self._ptr:
            lib.rr_stream_free(self._ptr)
            self._ptr = None
            self._server._streams.discard(self)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) and not _in_callback():
            try:
                self.close()
            except Exception:  # pragma: no cover
                pass


class _AsyncQueue:
    """One rr_queue per (server, event loop): its descriptor is watched by the loop, and
    each completion resolves the future of its tag."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.ptr = POINTER(rr_queue)()
        call(lib.rr_queue_new, byref(self.ptr))
        self.fd = lib.rr_queue_fd(self.ptr)
        self.tags = itertools.count(1)
        self.futures: Dict[int, "asyncio.Future[Payload]"] = {}
        self.closed = False
        loop.add_reader(self.fd, self._on_readable)

    def submit(self, server_ptr: Any, context: bytes, body: bytes
               ) -> Tuple[int, "asyncio.Future[Payload]"]:
        fut: "asyncio.Future[Payload]" = self.loop.create_future()
        with self.lock:
            if self.closed:
                raise StateError(Status.STATE, "the server is closed")
            tag = next(self.tags)
            call(lib.rr_exec_submit, server_ptr, self.ptr, context, len(context), body,
                 len(body), tag)
            self.futures[tag] = fut
        return tag, fut

    def cancel(self, tag: int) -> None:
        with self.lock:
            if not self.closed and tag in self.futures:
                call(lib.rr_queue_cancel, self.ptr, tag)

    def _drain(self) -> List[Tuple["asyncio.Future[Payload]", Any, Optional[Error]]]:
        """Takes every waiting completion (under self.lock); returns what to resolve."""
        out: List[Tuple["asyncio.Future[Payload]", Any, Optional[Error]]] = []
        while True:
            c = rr_completion()
            status = lib.rr_queue_next(self.ptr, 0, byref(c), None)
            if status != Status.OK:
                return out
            fut = self.futures.pop(c.tag, None)
            if c.status == Status.OK:
                result: Any = take_payload(c.payload)
                exc = None
            else:
                result, exc = None, take_error(c.error, c.status)
                if c.payload:  # pragma: no cover (the contract says never)
                    lib.rr_payload_free(c.payload)
            if fut is not None:
                out.append((fut, result, exc))

    @staticmethod
    def _resolve(items: List[Tuple["asyncio.Future[Payload]", Any, Optional[Error]]]) -> None:
        for fut, result, exc in items:
            if fut.done():  # its awaiting task was cancelled
                continue
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

    def _on_readable(self) -> None:
        with self.lock:
            if self.closed:  # _finish, scheduled on this loop, delivers the rest
                return
            items = self._drain()
        self._resolve(items)

    def close(self) -> None:
        """Delivers what completed, fails what is left with StateError, frees the queue.

        Off the loop's thread (while the loop runs) it only marks the queue closed and
        schedules :meth:`_finish` on the loop: the queue's descriptor stays open until the
        loop stopped watching it. Freed earlier, its number could be reused (by another
        queue, whose reader the loop would then drop or never register) before the loop
        removed its reader."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        try:
            running: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or self.loop.is_closed() or not self.loop.is_running():
            self._finish()
            return
        try:
            self.loop.call_soon_threadsafe(self._finish)
        except RuntimeError:  # the loop was closed meanwhile: nothing watches the descriptor
            self._finish()

    def _finish(self) -> None:
        """On the loop's thread (or with the loop not running): removes the reader, then
        frees the queue, then resolves the futures, in that order. Runs once."""
        closed_error = StateError(Status.STATE, "the server was closed before the task ended")
        with self.lock:
            if not self.ptr:
                return
            items = self._drain()
            left = list(self.futures.values())
            self.futures.clear()
            if not self.loop.is_closed():
                self.loop.remove_reader(self.fd)
            lib.rr_queue_free(self.ptr)
            self.ptr = POINTER(rr_queue)()
        if self.loop.is_closed():
            return  # nobody awaits these futures any more
        self._resolve(items + [(fut, None, closed_error) for fut in left])

    def __del__(self) -> None:
        # A _finish scheduled on a loop that was closed without running it again: the
        # loop, closed, dropped the callback (and watches no descriptor any more).
        ptr = getattr(self, "ptr", None)
        if ptr:
            try:
                lib.rr_queue_free(ptr)
            except Exception:  # pragma: no cover (interpreter shutdown)
                pass
