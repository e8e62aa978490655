"""The ctypes binding of libroadrunner's C interface (include/rr.h): loading the library,
the C types, and argtypes/restype for each function. Nothing here is public; the package's
API is in roadrunner_pool/__init__.py.

The library loaded is the one bundled in this package (roadrunner_pool/libroadrunner*.so,
put there by `pip install`), or the file named by the environment variable RR_LIB when it
is set. The package's source tree (python/src, not installed) has no bundled library: it
loads the repository's target/release/libroadrunner.so (`make lib`).

Every call into the library goes through ctypes.CDLL, which releases the GIL for the
duration of the call, so a blocking call (rr_exec) lets other Python threads run.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sysconfig
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int, c_int32,
                    c_int64, c_size_t, c_uint8, c_uint32, c_uint64, c_void_p)
from typing import Any, Dict, List, Optional, Tuple

__all__: List[str] = []  # internal module

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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


STATS_FIELDS = (
    "tasks_done", "job_errors", "worker_errors", "exec_ttl_kills", "timeouts",
    "queue_full", "waiting", "workers", "retired_max_jobs", "retired_ttl",
    "retired_idle_ttl", "retired_max_memory", "retired_stop_requested",
    "retired_failed", "retired_died", "tasks_cancelled", "workers_spawned",
    "retired_shrink", "retired_removed")


class rr_pool_stats(Structure):
    _fields_ = [("size", c_size_t)] + [(name, c_uint64) for name in STATS_FIELDS]


rr_status = c_uint32


class rr_completion(Structure):
    _fields_ = [
        ("tag", c_uint64),
        ("status", rr_status),
        ("payload", POINTER(rr_payload)),
        ("error", POINTER(rr_error)),
    ]


rr_event_callback = CFUNCTYPE(None, c_void_p, POINTER(rr_event))
rr_userdata_free = CFUNCTYPE(None, c_void_p)

ERR = POINTER(POINTER(rr_error))  # rr_error **err_out
BUF = c_char_p                    # const uint8_t * input buffer (bytes; None when empty)
OUT_BUF = POINTER(c_uint8)        # const uint8_t * output buffer, owned by its object
CFG = POINTER(rr_config)

# name: (restype, argtypes). Every function of rr.h this package uses; a missing one makes
# the import fail (the bundled library always has them).
DECLARATIONS: Dict[str, Tuple[Any, List[Any]]] = {
    "rr_error_status": (rr_status, [POINTER(rr_error)]),
    "rr_error_message": (c_char_p, [POINTER(rr_error)]),
    "rr_error_data": (OUT_BUF, [POINTER(rr_error), POINTER(c_size_t)]),
    "rr_error_free": (None, [POINTER(rr_error)]),
    "rr_status_str": (c_char_p, [rr_status]),
    "rr_config_new": (rr_status, [c_char_p, c_char_p, POINTER(CFG), ERR]),
    "rr_config_set_num_workers": (None, [CFG, c_uint64]),
    "rr_config_set_max_jobs": (None, [CFG, c_uint64]),
    "rr_config_set_allocate_timeout_ms": (None, [CFG, c_uint64]),
    "rr_config_set_destroy_timeout_ms": (None, [CFG, c_uint64]),
    "rr_config_set_relay_timeout_ms": (None, [CFG, c_uint64]),
    "rr_config_set_env": (rr_status, [CFG, c_char_p, c_char_p, ERR]),
    "rr_config_set_dir": (rr_status, [CFG, c_char_p, ERR]),
    "rr_config_set_exec_ttl_ms": (None, [CFG, c_uint64]),
    "rr_config_set_ttl_ms": (None, [CFG, c_uint64]),
    "rr_config_set_idle_ttl_ms": (None, [CFG, c_uint64]),
    "rr_config_set_max_memory_bytes": (None, [CFG, c_uint64]),
    "rr_config_set_max_queue": (None, [CFG, c_uint64]),
    "rr_config_set_max_frame_bytes": (None, [CFG, c_uint64]),
    "rr_config_set_jitter_percent": (None, [CFG, c_uint64]),
    "rr_config_set_tcp_allow_remote": (None, [CFG, c_bool]),
    "rr_config_set_worker_cpu_affinity": (None, [CFG, c_bool]),
    "rr_config_set_worker_sched_batch": (None, [CFG, c_bool]),
    "rr_config_set_protocol": (rr_status, [CFG, c_uint32, ERR]),
    "rr_config_set_codec": (rr_status, [CFG, c_uint8, ERR]),
    "rr_config_set_stream_timeout_ms": (None, [CFG, c_uint64]),
    "rr_config_differs": (c_bool, [CFG, CFG]),
    "rr_config_free": (None, [CFG]),
    "rr_server_new": (rr_status, [CFG, POINTER(POINTER(rr_server)), ERR]),
    "rr_server_start": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_stop": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_reconfigure": (rr_status, [POINTER(rr_server), CFG, ERR]),
    "rr_server_reset": (rr_status, [POINTER(rr_server), ERR]),
    "rr_server_free": (None, [POINTER(rr_server)]),
    "rr_exec": (rr_status, [POINTER(rr_server), BUF, c_size_t, BUF, c_size_t,
                            POINTER(POINTER(rr_payload)), ERR]),
    "rr_queue_new": (rr_status, [POINTER(POINTER(rr_queue)), ERR]),
    "rr_queue_fd": (c_int, [POINTER(rr_queue)]),
    "rr_exec_submit": (rr_status, [POINTER(rr_server), POINTER(rr_queue), BUF, c_size_t, BUF,
                                   c_size_t, c_uint64, ERR]),
    "rr_queue_next": (rr_status, [POINTER(rr_queue), c_int64, POINTER(rr_completion), ERR]),
    "rr_queue_cancel": (rr_status, [POINTER(rr_queue), c_uint64, ERR]),
    "rr_queue_free": (None, [POINTER(rr_queue)]),
    "rr_payload_context": (OUT_BUF, [POINTER(rr_payload), POINTER(c_size_t)]),
    "rr_payload_body": (OUT_BUF, [POINTER(rr_payload), POINTER(c_size_t)]),
    "rr_payload_codec": (c_uint8, [POINTER(rr_payload)]),
    "rr_payload_free": (None, [POINTER(rr_payload)]),
    "rr_exec_stream": (rr_status, [POINTER(rr_server), BUF, c_size_t, BUF, c_size_t,
                                   POINTER(POINTER(rr_stream)), ERR]),
    "rr_stream_next": (rr_status, [POINTER(rr_stream), POINTER(POINTER(rr_payload)), ERR]),
    "rr_stream_cancel": (rr_status, [POINTER(rr_stream), ERR]),
    "rr_stream_free": (None, [POINTER(rr_stream)]),
    "rr_server_listen": (rr_status, [POINTER(rr_server), rr_event_callback, c_void_p,
                                     rr_userdata_free, ERR]),
    "rr_event_type": (c_int32, [POINTER(rr_event)]),
    "rr_event_pid": (c_int64, [POINTER(rr_event)]),
    "rr_event_message": (c_char_p, [POINTER(rr_event)]),
    "rr_server_workers": (rr_status, [POINTER(rr_server), POINTER(POINTER(rr_worker_info)),
                                      POINTER(c_size_t), ERR]),
    "rr_worker_info_free": (None, [POINTER(rr_worker_info), c_size_t]),
    "rr_worker_state_str": (c_char_p, [c_int32]),
    "rr_server_stats": (rr_status, [POINTER(rr_server), POINTER(rr_pool_stats), ERR]),
    "rr_version": (c_char_p, []),
    "rr_worker_new_with_protocol": (rr_status, [c_char_p, c_uint32, POINTER(POINTER(rr_worker)),
                                                ERR]),
    "rr_worker_receive": (rr_status, [POINTER(rr_worker), POINTER(POINTER(rr_payload)), ERR]),
    "rr_worker_respond": (rr_status, [POINTER(rr_worker), BUF, c_size_t, BUF, c_size_t, ERR]),
    "rr_worker_send_chunk": (rr_status, [POINTER(rr_worker), BUF, c_size_t, BUF, c_size_t, ERR]),
    "rr_worker_error": (rr_status, [POINTER(rr_worker), BUF, c_size_t, ERR]),
    "rr_worker_stop": (rr_status, [POINTER(rr_worker), ERR]),
    "rr_worker_free": (None, [POINTER(rr_worker)]),
    "rr_server_status_json": (rr_status, [POINTER(rr_server), POINTER(c_void_p), ERR]),
    "rr_server_metrics": (rr_status, [POINTER(rr_server), POINTER(c_void_p), ERR]),
    "rr_string_free": (None, [c_void_p]),
    "rr_server_remove_worker": (rr_status, [POINTER(rr_server), c_int64, c_bool, ERR]),
    "rr_config_set_max_workers": (None, [CFG, c_uint64]),
    "rr_config_set_spawn_rate": (None, [CFG, c_uint64]),
    "rr_config_set_scale_after_ms": (None, [CFG, c_uint64]),
    "rr_config_set_scale_idle_ms": (None, [CFG, c_uint64]),
    "rr_config_set_name": (rr_status, [CFG, c_char_p, ERR]),
}


def bundled_library_path() -> Optional[str]:
    """The library that `pip install` put in this package, or None (a source checkout)."""
    exact = os.path.join(PACKAGE_DIR, "libroadrunner" + (sysconfig.get_config_var("EXT_SUFFIX")
                                                         or ".so"))
    if os.path.exists(exact):
        return exact
    found = sorted(glob.glob(os.path.join(PACKAGE_DIR, "libroadrunner*.so*")))
    return found[0] if found else None


def source_tree_library_path() -> Optional[str]:
    """target/release/libroadrunner.so of the repository, when this package is its source
    tree (python/src/roadrunner_pool) rather than an installed copy."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(PACKAGE_DIR)))
    path = os.path.join(repo, "target", "release", "libroadrunner.so")
    if os.path.exists(os.path.join(repo, "Cargo.toml")) and os.path.exists(path):
        return path
    return None


def library_path() -> str:
    """The library to load: $RR_LIB when set, else the bundled one (else, for the source
    tree of the package, the repository's target/release build)."""
    override = os.environ.get("RR_LIB")
    if override:
        if not os.path.exists(override):
            raise ImportError(f"roadrunner_pool: RR_LIB={override!r} does not exist")
        return override
    path = bundled_library_path() or source_tree_library_path()
    if path is None:
        raise ImportError(
            "roadrunner_pool: no libroadrunner in the package directory "
            f"{PACKAGE_DIR!r}: install the package (pip install ./python, which builds the "
            "library with cargo), or set RR_LIB to a libroadrunner.so")
    return path


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)  # CDLL: every call releases the GIL
    for name, (restype, argtypes) in DECLARATIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"roadrunner_pool: {path!r} has no {name}: not a libroadrunner "
                              "of this version") from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


LIB_PATH = library_path()
lib = _load(LIB_PATH)

def version() -> str:
    v = lib.rr_version()
    return v.decode("utf-8") if v is not None else "?"
