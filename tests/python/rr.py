"""ctypes binding of libroadrunner's C interface (include/rr.h, contract: API.md).

Loads the library from $RR_LIB (default: target/release/libroadrunner.so of this repository)
and declares argtypes/restype for every function of the interface. A missing symbol is an
error at import (AttributeError), never skipped. test_header.py checks these declarations
against include/rr.h, so stale declarations fail the tests.

Two layers:
- `lib`: the raw functions, with the opaque handle types below (POINTER(rr_server), ...).
- `Config`, `Server`, `Queue`, `Worker`, `RRError`: a thin Pythonic layer used by the tests.

Rules of the C interface this module follows (API.md, STYLE.md sections 5 and 6):
- Input buffers are passed as bytes (c_char_p: a pointer into the bytes object, embedded
  NULs fine) with their length; None passes NULL (allowed when the length is 0).
- Output buffers belong to their object: they are copied with string_at before the object
  is freed with its own *_free function (never libc free).
- The event callback runs on a library thread; ctypes takes the GIL for it. The CFUNCTYPE
  objects stay referenced by the Server until rr_server_free has returned.
"""

import ctypes
import json
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_bool, c_char_p, c_int, c_int32,
                    c_int64, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p, string_at)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LIB_PATH = os.environ.get("RR_LIB") or os.path.join(REPO, "target", "release",
                                                     "libroadrunner.so")

# ---------------------------------------------------------------- constants (API.md, SPEC.md)

RR_STATUS_OK = 0
RR_STATUS_JOB_ERROR = 1
RR_STATUS_WORKER_ERROR = 2
RR_STATUS_TIMEOUT = 3
RR_STATUS_CONFIG = 4
RR_STATUS_SPAWN = 5
RR_STATUS_STATE = 6
RR_STATUS_NULL_ARGUMENT = 7
RR_STATUS_INVALID_ARGUMENT = 8
RR_STATUS_INTERNAL = 9
RR_STATUS_EXEC_TTL = 10
RR_STATUS_QUEUE_FULL = 11
RR_STATUS_CANCELLED = 12

RR_PROTOCOL_V1 = 1
RR_PROTOCOL_V2 = 2
RR_CODEC_RAW = 0x04
RR_CODEC_JSON = 0x08
RR_CODEC_MSGPACK = 0x10
RR_CODEC_GOB = 0x20
RR_CODEC_PROTO = 0x80

RR_EVENT_WORKER_CONSTRUCT = 100
RR_EVENT_WORKER_DESTRUCT = 101
RR_EVENT_WORKER_KILL = 102
RR_EVENT_WORKER_ERROR = 103
RR_EVENT_WORKER_DEAD = 104
RR_EVENT_POOL_ERROR = 105
RR_EVENT_SERVER_START = 200
RR_EVENT_SERVER_STOP = 201
RR_EVENT_SERVER_FAILURE = 202
RR_EVENT_POOL_CONSTRUCT = 203
RR_EVENT_POOL_DESTRUCT = 204
RR_EVENT_WORKER_STDERR = 300
RR_EVENT_WORKER_EXEC_TTL = 301
RR_EVENT_WORKER_TTL = 302
RR_EVENT_WORKER_IDLE_TTL = 303
RR_EVENT_WORKER_MAX_MEMORY = 304
RR_EVENT_WORKER_MAX_JOBS = 305
RR_EVENT_QUEUE_FULL = 306
RR_EVENT_POOL_GROW = 307
RR_EVENT_POOL_SHRINK = 308
RR_EVENT_RECONFIGURE_IGNORED = 309
RR_EVENT_WORKER_REMOVED = 310

RR_WORKER_STATE_INACTIVE = 0
RR_WORKER_STATE_READY = 1
RR_WORKER_STATE_WORKING = 2
RR_WORKER_STATE_STREAMING = 3
RR_WORKER_STATE_STOPPING = 4
RR_WORKER_STATE_STOPPED = 5
RR_WORKER_STATE_ERRORED = 6

# Constant families that test_header.py compares with the header (both directions).
CONSTANT_PREFIXES = ("RR_STATUS_", "RR_EVENT_", "RR_WORKER_STATE_", "RR_PROTOCOL_", "RR_CODEC_")

STATUS_NAMES = {v: k for k, v in globals().items() if k.startswith("RR_STATUS_")}
EVENT_NAMES = {v: k for k, v in globals().items() if k.startswith("RR_EVENT_")}

# ---------------------------------------------------------------- types


class rr_error(Structure):
    """Opaque."""


class rr_config(Structure):
    """Opaque."""


class rr_server(Structure):
    """Opaque."""


class rr_payload(Structure):
    """Opaque."""


class rr_event(Structure):
    """Opaque."""


class rr_stream(Structure):
    """Opaque."""


class rr_worker(Structure):
    """Opaque."""


class rr_queue(Structure):
    """Opaque."""


class rr_worker_info(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("pid", c_int64),
        ("state", c_int32),
        ("num_execs", c_uint64),
        ("created_unix_ms", c_int64),
        ("rss_bytes", c_uint64),
        ("reserved", c_uint64 * 10),
    ]


class rr_pool_stats(Structure):
    _fields_ = [("size", c_size_t)] + [(name, c_uint64) for name in (
        "tasks_done", "job_errors", "worker_errors", "exec_ttl_kills", "timeouts",
        "queue_full", "waiting", "workers", "retired_max_jobs", "retired_ttl",
        "retired_idle_ttl", "retired_max_memory", "retired_stop_requested",
        "retired_failed", "retired_died", "tasks_cancelled", "workers_spawned",
        "retired_shrink", "retired_removed")]

    def __init__(self, **fields):
        # rr_server_stats writes as many bytes as `size` says: the whole struct.
        super().__init__(**({"size": ctypes.sizeof(rr_pool_stats)} | fields))


rr_status = c_uint32


class rr_completion(Structure):
    """Filled in by rr_queue_next; the caller owns `payload` and `error`."""
    _fields_ = [
        ("tag", c_uint64),
        ("status", rr_status),
        ("payload", POINTER(rr_payload)),
        ("error", POINTER(rr_error)),
    ]


rr_event_callback = CFUNCTYPE(None, c_void_p, POINTER(rr_event))
rr_userdata_free = CFUNCTYPE(None, c_void_p)

ERR = POINTER(POINTER(rr_error))  # rr_error **err_out
BUF = c_char_p                    # const uint8_t * input buffer (bytes or None)
OUT_BUF = POINTER(c_uint8)        # const uint8_t * output buffer, owned by its object

# name: (restype, [argtypes]); every function of API.md.
DECLARATIONS = {
    # errors
    "rr_error_status": (rr_status, [POINTER(rr_error)]),
    "rr_error_message": (c_char_p, [POINTER(rr_error)]),
    "rr_error_data": (OUT_BUF, [POINTER(rr_error), POINTER(c_size_t)]),
    "rr_error_free": (None, [POINTER(rr_error)]),
    "rr_status_str": (c_char_p, [rr_status]),
    # configuration
    "rr_config_new": (rr_status, [c_char_p, c_char_p, POINTER(POINTER(rr_config)), ERR]),
    "rr_config_set_num_workers": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_max_jobs": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_allocate_timeout_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_destroy_timeout_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_relay_timeout_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_env": (rr_status, [POINTER(rr_config), c_char_p, c_char_p, ERR]),
    "rr_config_set_dir": (rr_status, [POINTER(rr_config), c_char_p, ERR]),
    "rr_config_set_exec_ttl_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_ttl_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_idle_ttl_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_max_memory_bytes": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_max_queue": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_max_frame_bytes": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_jitter_percent": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_tcp_allow_remote": (None, [POINTER(rr_config), c_bool]),
    "rr_config_set_worker_cpu_affinity": (None, [POINTER(rr_config), c_bool]),
    "rr_config_set_worker_sched_batch": (None, [POINTER(rr_config), c_bool]),
    "rr_config_set_protocol": (rr_status, [POINTER(rr_config), c_uint32, ERR]),
    "rr_config_set_codec": (rr_status, [POINTER(rr_config), c_uint8, ERR]),
    "rr_config_set_stream_timeout_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_max_workers": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_spawn_rate": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_scale_after_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_scale_idle_ms": (None, [POINTER(rr_config), c_uint64]),
    "rr_config_set_name": (rr_status, [POINTER(rr_config), c_char_p, ERR]),
    "rr_config_differs": (c_bool, [POINTER(rr_config), POINTER(rr_config)]),
    "rr_config_free": (None, [POINTER(rr_config)]),
    # server
    "rr_server_new": (rr_status, [POINTER(rr_config), POINTER(POINTER(rr_server)), ERR]),
    "rr_server_start": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_stop": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_reconfigure": (rr_status, [POINTER(rr_server), POINTER(rr_config), ERR]),
    "rr_server_reset": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_free": (None, [POINTER(rr_server)]),
    "rr_server_status_json": (rr_status, [POINTER(rr_server), POINTER(c_void_p), ERR]),
    "rr_server_metrics": (rr_status, [POINTER(rr_server), POINTER(c_void_p), ERR]),
    "rr_server_remove_worker": (rr_status, [POINTER(rr_server), c_int64, c_bool, ERR]),
    "rr_string_free": (None, [c_void_p]),
    "rr_exec": (rr_status, [POINTER(rr_server), BUF, c_size_t, BUF, c_size_t,
                            POINTER(POINTER(rr_payload)), ERR]),
    # completion queue
    "rr_queue_new": (rr_status, [POINTER(POINTER(rr_queue)), ERR]),
    "rr_queue_fd": (c_int, [POINTER(rr_queue)]),
    "rr_exec_submit": (rr_status, [POINTER(rr_server), POINTER(rr_queue), BUF, c_size_t, BUF,
                                   c_size_t, c_uint64, ERR]),
    "rr_queue_next": (rr_status, [POINTER(rr_queue), c_int64, POINTER(rr_completion), ERR]),
    "rr_queue_cancel": (rr_status, [POINTER(rr_queue), c_uint64, ERR]),
    "rr_queue_free": (None, [POINTER(rr_queue)]),
    # payloads
    "rr_payload_context": (OUT_BUF, [POINTER(rr_payload), POINTER(c_size_t)]),
    "rr_payload_body": (OUT_BUF, [POINTER(rr_payload), POINTER(c_size_t)]),
    "rr_payload_codec": (c_uint8, [POINTER(rr_payload)]),
    "rr_payload_free": (None, [POINTER(rr_payload)]),
    # streams
    "rr_exec_stream": (rr_status, [POINTER(rr_server), BUF, c_size_t, BUF, c_size_t,
                                   POINTER(POINTER(rr_stream)), ERR]),
    "rr_stream_next": (rr_status, [POINTER(rr_stream), POINTER(POINTER(rr_payload)), ERR]),
    "rr_stream_cancel": (rr_status, [POINTER(rr_stream), ERR]),
    "rr_stream_free": (None, [POINTER(rr_stream)]),
    # events
    "rr_server_listen": (rr_status, [POINTER(rr_server), rr_event_callback, c_void_p,
                                     rr_userdata_free, ERR]),
    "rr_event_type": (c_int32, [POINTER(rr_event)]),
    "rr_event_pid": (c_int64, [POINTER(rr_event)]),
    "rr_event_message": (c_char_p, [POINTER(rr_event)]),
    # workers
    "rr_server_workers": (rr_status, [POINTER(rr_server), POINTER(POINTER(rr_worker_info)),
                                      POINTER(c_size_t), ERR]),
    "rr_worker_info_free": (None, [POINTER(rr_worker_info), c_size_t]),
    "rr_worker_state_str": (c_char_p, [c_int32]),
    # stats
    "rr_server_stats": (rr_status, [POINTER(rr_server), POINTER(rr_pool_stats), ERR]),
    # version
    "rr_version": (c_char_p, []),
    # worker side
    "rr_worker_new": (rr_status, [c_char_p, POINTER(POINTER(rr_worker)), ERR]),
    "rr_worker_new_with_protocol": (rr_status, [c_char_p, c_uint32, POINTER(POINTER(rr_worker)), ERR]),
    "rr_worker_send_chunk": (rr_status, [POINTER(rr_worker), BUF, c_size_t, BUF, c_size_t, ERR]),
    "rr_worker_receive": (rr_status, [POINTER(rr_worker), POINTER(POINTER(rr_payload)), ERR]),
    "rr_worker_respond": (rr_status, [POINTER(rr_worker), BUF, c_size_t, BUF, c_size_t, ERR]),
    "rr_worker_error": (rr_status, [POINTER(rr_worker), BUF, c_size_t, ERR]),
    "rr_worker_stop": (rr_status, [POINTER(rr_worker), ERR]),
    "rr_worker_free": (None, [POINTER(rr_worker)]),
}


def _load(path):
    if not os.path.exists(path):
        raise OSError(f"libroadrunner not found at {path!r}: run `cargo build --release` "
                      "or set RR_LIB")
    lib = ctypes.CDLL(path)  # CDLL releases the GIL during every call
    for name, (restype, argtypes) in DECLARATIONS.items():
        fn = getattr(lib, name)  # AttributeError (loud) if the library lacks it
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load(LIB_PATH)

# ---------------------------------------------------------------- helpers


def _bytes(data):
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _str_arg(s):
    return None if s is None else (s.encode("utf-8") if isinstance(s, str) else bytes(s))


def _out_bytes(fn, obj):
    """Copies an output buffer (pointer + length) returned by fn(obj, &len)."""
    n = c_size_t(0)
    ptr = fn(obj, byref(n))
    if n.value == 0:
        return b""
    if not ptr:
        raise AssertionError(f"{fn.__name__} returned NULL with length {n.value}")
    return string_at(ptr, n.value)


def status_str(status):
    s = lib.rr_status_str(status)
    return None if s is None else s.decode("utf-8")


class RRError(Exception):
    """A failed call: status (int), message (str), data (bytes: a job error's payload)."""

    def __init__(self, func, status, message, data=b"", err_status=None):
        self.func = func
        self.status = status
        self.message = message
        self.data = data
        self.err_status = err_status  # rr_error_status of the error object
        super().__init__(f"{func}: {STATUS_NAMES.get(status, status)}: {message}")


def take_error(err):
    """(status, message, data) of an rr_error, which is freed."""
    try:
        status = lib.rr_error_status(err)
        msg = lib.rr_error_message(err)
        data = _out_bytes(lib.rr_error_data, err)
        return status, (msg.decode("utf-8") if msg is not None else None), data
    finally:
        lib.rr_error_free(err)


def call(fn, *args):
    """Calls a fallible function with an err_out; raises RRError on failure."""
    err = POINTER(rr_error)()
    status = fn(*args, byref(err))
    if status == RR_STATUS_OK:
        if err:
            raise AssertionError(f"{fn.__name__} returned OK but wrote an error object")
        return
    if not err:
        raise RRError(fn.__name__, status, f"(no error object) {status_str(status)}")
    err_status, message, data = take_error(err)
    raise RRError(fn.__name__, status, message, data, err_status)


# ---------------------------------------------------------------- Pythonic layer


class Config:
    """rr_config; settings are keyword arguments named like the setters
    (num_workers=2, max_jobs=..., allocate_timeout_ms=..., env={...}, dir=...)."""

    def __init__(self, command, relay="pipes", env=None, dir=None, **settings):
        self.ptr = POINTER(rr_config)()
        call(lib.rr_config_new, _str_arg(command), _str_arg(relay), byref(self.ptr))
        try:
            for key, value in (env or {}).items():
                call(lib.rr_config_set_env, self.ptr, _str_arg(key), _str_arg(value))
            if dir is not None:
                call(lib.rr_config_set_dir, self.ptr, _str_arg(dir))
            for name, value in settings.items():
                setter = getattr(lib, "rr_config_set_" + name)
                if setter.restype is rr_status:
                    call(setter, self.ptr, value)
                else:
                    setter(self.ptr, value)
        except BaseException:
            self.free()
            raise

    def free(self):
        if self.ptr:
            lib.rr_config_free(self.ptr)
            self.ptr = POINTER(rr_config)()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


class Event:
    __slots__ = ("type", "pid", "message")

    def __init__(self, type_, pid, message):
        self.type, self.pid, self.message = type_, pid, message

    def __repr__(self):
        return f"Event({EVENT_NAMES.get(self.type, self.type)}, pid={self.pid}, {self.message!r})"


class Listener:
    """Collects the events of a server (thread-safe), and counts userdata_free calls.

    Holds the two CFUNCTYPE objects; they must outlive every call the library may make."""

    _ids = iter(range(1, 1 << 62))

    def __init__(self, on_event=None):
        self.lock = threading.Lock()
        self.events = []
        self.freed = 0
        self.freed_userdata = []
        self.callback_errors = []
        self.concurrent = 0
        self.max_concurrent = 0
        self.threads = set()
        self.on_event = on_event
        self.userdata = next(self._ids)
        self.c_callback = rr_event_callback(self._callback)
        self.c_free = rr_userdata_free(self._free)

    def _callback(self, userdata, event):
        try:
            with self.lock:
                self.concurrent += 1
                self.max_concurrent = max(self.max_concurrent, self.concurrent)
            try:
                if userdata != self.userdata:
                    raise AssertionError(f"callback got userdata {userdata}, "
                                         f"expected {self.userdata}")
                msg = lib.rr_event_message(event)
                ev = Event(lib.rr_event_type(event), lib.rr_event_pid(event),
                           None if msg is None else msg.decode("utf-8", "replace"))
                with self.lock:
                    self.events.append(ev)
                    self.threads.add(threading.get_ident())
                if self.on_event is not None:
                    self.on_event(ev)
            finally:
                with self.lock:
                    self.concurrent -= 1
        except BaseException as e:  # an exception must not vanish inside ctypes
            with self.lock:
                self.callback_errors.append(e)

    def _free(self, userdata):
        with self.lock:
            self.freed += 1
            self.freed_userdata.append(userdata)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def of_type(self, type_):
        return [e for e in self.snapshot() if e.type == type_]


class Server:
    """rr_server with its listeners; use as a context manager (frees on exit)."""

    def __init__(self, config):
        if not isinstance(config, Config):
            raise TypeError("config must be a Config")
        self.ptr = POINTER(rr_server)()
        call(lib.rr_server_new, config.ptr, byref(self.ptr))
        self.listeners = []  # every Listener ever registered: alive until free() returns

    @classmethod
    def create(cls, command, relay="pipes", **kw):
        with Config(command, relay, **kw) as cfg:
            return cls(cfg)

    def start(self):
        call(lib.rr_server_start, self.ptr)
        return self

    def stop(self):
        call(lib.rr_server_stop, self.ptr)

    def reconfigure(self, config):
        call(lib.rr_server_reconfigure, self.ptr, config.ptr)

    def reset(self):
        call(lib.rr_server_reset, self.ptr)

    def exec(self, context=b"", body=b""):
        """Runs one task: returns (context, body) as bytes, or raises RRError."""
        ctx, bdy = _bytes(context), _bytes(body)
        out = POINTER(rr_payload)()
        call(lib.rr_exec, self.ptr, ctx, len(ctx), bdy, len(bdy), byref(out))
        if not out:
            raise AssertionError("rr_exec returned OK without a payload")
        try:
            return _out_bytes(lib.rr_payload_context, out), _out_bytes(lib.rr_payload_body, out)
        finally:
            lib.rr_payload_free(out)

    def exec_stream(self, context=b"", body=b""):
        """Runs one task whose answer comes as a Stream of (context, body) chunks."""
        ctx, bdy = _bytes(context), _bytes(body)
        out = POINTER(rr_stream)()
        call(lib.rr_exec_stream, self.ptr, ctx, len(ctx), bdy, len(bdy), byref(out))
        return Stream(out)

    def listen(self, listener):
        """Registers a Listener (or None to unregister)."""
        if listener is None:
            call(lib.rr_server_listen, self.ptr, rr_event_callback(), None, rr_userdata_free())
            return None
        self.listeners.append(listener)
        call(lib.rr_server_listen, self.ptr, listener.c_callback, listener.userdata,
             listener.c_free)
        return listener

    def workers(self):
        """A snapshot: list of dicts (pid, state, num_execs, created_unix_ms, rss_bytes)."""
        arr = POINTER(rr_worker_info)()
        n = c_size_t(0)
        call(lib.rr_server_workers, self.ptr, byref(arr), byref(n))
        try:
            return [{name: getattr(arr[i], name) for name, _ in rr_worker_info._fields_
                     if name not in ("size", "reserved")}
                    for i in range(n.value)]
        finally:
            lib.rr_worker_info_free(arr, n.value)

    def _string(self, function):
        """Calls rr_server_status_json or rr_server_metrics; the text, freed with rr_string_free."""
        out = c_void_p()
        call(function, self.ptr, byref(out))
        try:
            return ctypes.string_at(out.value).decode()
        finally:
            lib.rr_string_free(out)

    def status(self):
        """rr_server_status_json, parsed."""
        return json.loads(self._string(lib.rr_server_status_json))

    def metrics(self):
        """rr_server_metrics: OpenMetrics text."""
        return self._string(lib.rr_server_metrics)

    def remove_worker(self, pid, kill=False):
        call(lib.rr_server_remove_worker, self.ptr, pid, kill)

    def stats(self):
        """rr_server_stats as a dict of the rr_pool_stats fields."""
        out = rr_pool_stats()
        call(lib.rr_server_stats, self.ptr, byref(out))
        return {name: getattr(out, name) for name, _ in rr_pool_stats._fields_ if name != "size"}

    def free(self):
        if self.ptr:
            lib.rr_server_free(self.ptr)
            self.ptr = POINTER(rr_server)()
        # After rr_server_free no callback runs: the CFUNCTYPE objects may go now.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


class Stream:
    """rr_stream: iterate for the (context, body) chunks; cancel(); free() (or `with`)."""

    def __init__(self, ptr):
        self.ptr = ptr

    def __iter__(self):
        return self

    def __next__(self):
        chunk = POINTER(rr_payload)()
        call(lib.rr_stream_next, self.ptr, byref(chunk))
        if not chunk:
            raise StopIteration
        try:
            return _out_bytes(lib.rr_payload_context, chunk), _out_bytes(lib.rr_payload_body, chunk)
        finally:
            lib.rr_payload_free(chunk)

    def cancel(self):
        call(lib.rr_stream_cancel, self.ptr)

    def free(self):
        if self.ptr:
            lib.rr_stream_free(self.ptr)
            self.ptr = POINTER(rr_stream)()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


class Completion:
    """The outcome of one task of a Queue, copied out of its rr_completion (which is freed):
    `tag`, `status`, and either `value` (the answer's (context, body), on RR_STATUS_OK) or
    `error` (an RRError: status, message, data)."""

    __slots__ = ("tag", "status", "value", "error")

    def __init__(self, tag, status, value=None, error=None):
        self.tag, self.status, self.value, self.error = tag, status, value, error

    def result(self):
        """The answer's (context, body), or raises the task's RRError."""
        if self.error is not None:
            raise self.error
        return self.value

    def __repr__(self):
        what = self.value if self.error is None else self.error
        return f"Completion(tag={self.tag}, {STATUS_NAMES.get(self.status, self.status)}, {what!r})"


def take_completion(c):
    """A Completion from a filled rr_completion, whose payload/error are freed. Checks the
    contract of rr_completion (payload xor error; the error's status is the status)."""
    payload, error = c.payload, c.error
    try:
        if c.status == RR_STATUS_OK:
            if not payload or error:
                raise AssertionError(f"completion {c.tag}: OK with payload {bool(payload)} "
                                     f"and error {bool(error)}")
            return Completion(c.tag, c.status, value=(
                _out_bytes(lib.rr_payload_context, payload), _out_bytes(lib.rr_payload_body, payload)))
        if payload or not error:
            raise AssertionError(f"completion {c.tag}: {STATUS_NAMES.get(c.status, c.status)} with "
                                 f"payload {bool(payload)} and error {bool(error)}")
        err_status, message, data = take_error(error)
        error = None  # freed by take_error
        if err_status != c.status:
            raise AssertionError(f"completion {c.tag}: status {c.status}, its error says {err_status}")
        return Completion(c.tag, c.status, error=RRError(f"task {c.tag}", c.status, message, data,
                                                         err_status))
    finally:
        if payload:
            lib.rr_payload_free(payload)
        if error:
            lib.rr_error_free(error)


class Queue:
    """rr_queue: submit(server, context, body, tag) tasks, then take their Completions with
    next(timeout_ms) when fd() is readable; cancel(tag); free() (or `with`)."""

    def __init__(self):
        self.ptr = POINTER(rr_queue)()
        call(lib.rr_queue_new, byref(self.ptr))

    def fd(self):
        """The descriptor readable while completions wait (poll it only)."""
        return lib.rr_queue_fd(self.ptr)

    def submit(self, server, context=b"", body=b"", tag=0):
        """rr_exec_submit: returns at once; raises RRError when the task is refused (then no
        completion comes for it)."""
        ctx, bdy = _bytes(context), _bytes(body)
        call(lib.rr_exec_submit, server.ptr, self.ptr, ctx, len(ctx), bdy, len(bdy), tag)

    def next(self, timeout_ms=0):
        """The oldest waiting Completion, or None when none came within timeout_ms (0: do not
        wait; -1: wait as long as it takes)."""
        out = rr_completion()
        err = POINTER(rr_error)()
        status = lib.rr_queue_next(self.ptr, timeout_ms, byref(out), byref(err))
        if status == RR_STATUS_TIMEOUT:
            if err:
                lib.rr_error_free(err)
            return None
        if status != RR_STATUS_OK:
            if not err:
                raise RRError("rr_queue_next", status, f"(no error object) {status_str(status)}")
            err_status, message, data = take_error(err)
            raise RRError("rr_queue_next", status, message, data, err_status)
        if err:
            lib.rr_error_free(err)
            raise AssertionError("rr_queue_next returned OK but wrote an error object")
        return take_completion(out)

    def drain(self):
        """Every Completion waiting now (next with timeout 0 until none is left)."""
        out = []
        while (c := self.next(0)) is not None:
            out.append(c)
        return out

    def cancel(self, tag):
        call(lib.rr_queue_cancel, self.ptr, tag)

    def free(self):
        if self.ptr:
            lib.rr_queue_free(self.ptr)
            self.ptr = POINTER(rr_queue)()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


class Worker:
    """The worker side (rr_worker_*): for workers written in Python."""

    def __init__(self, relay=None, protocol=RR_PROTOCOL_V1):
        self.ptr = POINTER(rr_worker)()
        call(lib.rr_worker_new_with_protocol, _str_arg(relay), protocol, byref(self.ptr))

    def send_chunk(self, context, body):
        """One chunk of a streamed answer (protocol 2); raises RRError with status
        RR_STATUS_CANCELLED when the host stopped the stream (then it is over)."""
        ctx, bdy = _bytes(context), _bytes(body)
        call(lib.rr_worker_send_chunk, self.ptr, ctx, len(ctx), bdy, len(bdy))

    def receive(self):
        """(context, body) of the next task, or None when the pool says stop."""
        out = POINTER(rr_payload)()
        call(lib.rr_worker_receive, self.ptr, byref(out))
        if not out:
            return None
        try:
            return _out_bytes(lib.rr_payload_context, out), _out_bytes(lib.rr_payload_body, out)
        finally:
            lib.rr_payload_free(out)

    def respond(self, context, body):
        ctx, bdy = _bytes(context), _bytes(body)
        call(lib.rr_worker_respond, self.ptr, ctx, len(ctx), bdy, len(bdy))

    def error(self, message):
        msg = _bytes(message)
        call(lib.rr_worker_error, self.ptr, msg, len(msg))

    def stop(self):
        call(lib.rr_worker_stop, self.ptr)

    def free(self):
        if self.ptr:
            lib.rr_worker_free(self.ptr)
            self.ptr = POINTER(rr_worker)()
