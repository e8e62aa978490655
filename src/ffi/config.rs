//! `rr_config`: the settings a server is built from, filled in by C before
//! `rr_server_new` or `rr_server_reconfigure` copies them.
//!
//! The setters only store values; every check of their meaning is
//! [`crate::Config::validate`]'s, run when a server is built or reconfigured, so that the
//! rules live in one place and C, Go, Python and Rust users get the same messages.

use super::error::rr_error;
use super::handle::{self, Castable};
use super::input;
use super::status::rr_status;
use crate::{Config, Error, ErrorKind};
use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

/// The settings of a server and its pool. Plain data: nothing starts until a server is
/// made from it, and `rr_server_new`/`rr_server_reconfigure` copy it, so it may be
/// changed or freed right after.
///
/// Defaults: as many workers as CPUs, max_jobs 0 (unlimited), allocate, destroy and
/// relay timeouts 60 000 ms, supervision off (exec_ttl, ttl, idle_ttl, max_memory 0),
/// max_queue 0 (unlimited), max_frame_bytes 1 GiB, jitter_percent 10, TCP relays on
/// loopback addresses only (tcp_allow_remote false), no extra environment, the host's
/// working directory, workers scheduled like any process (worker_cpu_affinity and
/// worker_sched_batch false), a static pool (max_workers 0; for an elastic one:
/// spawn_rate 8, scale_after 10 ms, scale_idle 10 000 ms), named `"default"`.
///
/// Thread-safety: not synchronized. Use it from one thread at a time (a setter and an
/// `rr_server_new` on the same config must not run at once).
///
/// Methods: `rr_config_new`, `rr_config_set_num_workers`, `rr_config_set_max_jobs`,
/// `rr_config_set_allocate_timeout_ms`, `rr_config_set_destroy_timeout_ms`,
/// `rr_config_set_relay_timeout_ms`, `rr_config_set_env`, `rr_config_set_dir`,
/// `rr_config_set_exec_ttl_ms`, `rr_config_set_ttl_ms`, `rr_config_set_idle_ttl_ms`,
/// `rr_config_set_max_memory_bytes`, `rr_config_set_max_queue`,
/// `rr_config_set_max_frame_bytes`, `rr_config_set_jitter_percent`,
/// `rr_config_set_tcp_allow_remote`, `rr_config_set_worker_cpu_affinity`,
/// `rr_config_set_worker_sched_batch`, `rr_config_set_protocol`, `rr_config_set_codec`,
/// `rr_config_set_stream_timeout_ms`, `rr_config_set_max_workers`,
/// `rr_config_set_spawn_rate`, `rr_config_set_scale_after_ms`,
/// `rr_config_set_scale_idle_ms`, `rr_config_set_name`, `rr_config_differs`,
/// `rr_config_free`.
pub struct rr_config {
    _private: [u8; 0],
}

impl Castable for rr_config {
    type Rust = Config;
}

/// Makes a configuration with the defaults, for workers started with `command` (the
/// program and its arguments, quoted as in a shell: `"php worker.php"`) that talk over
/// `relay`: `"pipes"` (stdin/stdout), `"tcp://host:port"` or `"unix://path"`. NULL
/// `relay` means `"pipes"`. Both strings are copied. Neither is checked here beyond
/// UTF-8: `rr_server_new` reports a bad command or relay as `RR_STATUS_CONFIG`.
///
/// On success `*out` receives a new config that the caller owns and releases with
/// `rr_config_free`.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `command` or `out` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when a string is not valid UTF-8. Does not block.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_new(
    command: *const c_char,
    relay: *const c_char,
    out: *mut *mut rr_config,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        check_out!(out, "out");
        // SAFETY: the header requires NUL-terminated strings (relay may be NULL).
        let command = unsafe { input::required_str(command, "command") }?;
        let relay = unsafe { input::optional_str(relay, "relay") }?.unwrap_or("pipes");
        let config = Config::new(command, relay);
        // SAFETY: checked non-NULL above; the header requires it writable.
        unsafe { handle::write_out(out, handle::into_raw(config)) };
        Ok(())
    })
}

/// Applies `change` to the config behind `c`; a NULL `c` does nothing (setters that
/// cannot fail have no status to report it with).
///
/// # Safety
/// `c` is NULL or a live config used by this thread only.
unsafe fn set(c: *mut rr_config, change: impl FnOnce(&mut Config)) {
    ffi_boundary!({ change(mut_or_return!(c)) })
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Sets the number of worker processes: a static pool's size, an elastic pool's floor
/// (see `rr_config_set_max_workers`). Must be > 0, but for an elastic pool, where 0
/// means workers only on demand (checked by `rr_server_new`). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_num_workers(c: *mut rr_config, n: u64) {
    // SAFETY (all setters): the header requires NULL or a config used by one thread at a time.
    unsafe { set(c, |config| config.num_workers = n) }
}

/// Sets the number of tasks after which a worker is replaced; 0 = unlimited, 1 = a fresh
/// process per task. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_max_jobs(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.max_jobs = n) }
}

/// Sets how long `rr_exec` waits for a free worker before it fails with
/// `RR_STATUS_TIMEOUT`, in milliseconds (must be > 0). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_allocate_timeout_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.allocate_timeout = millis(ms)) }
}

/// Sets how long a stopping worker may take to exit before it is killed, in
/// milliseconds (must be > 0). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_destroy_timeout_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.destroy_timeout = millis(ms)) }
}

/// Sets how long a new worker may take to connect (socket relays) and answer the
/// handshake, in milliseconds (must be > 0). A reconfigure ignores it (it belongs to
/// the listener; see `rr_config_differs`). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_relay_timeout_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.relay_timeout = millis(ms)) }
}

/// Makes the pool elastic: at most `n` worker processes (starting and stopping ones
/// included), `num_workers` being the floor, which may then be 0 (workers only on
/// demand). 0 = `num_workers` (a static pool; the default). A value below a non-zero
/// `num_workers` is refused by `rr_server_new` (`RR_STATUS_CONFIG`). NULL `c` does
/// nothing.
///
/// Growth: when a caller (or submitted task) has waited scale_after for a worker, the
/// pool starts 1 worker, then 2, 4, ... up to spawn_rate per step, one step every
/// scale_after while callers still wait, never more than the callers waiting and never
/// past the ceiling; an on-demand pool with no worker starts one at once. The caller
/// keeps its place in line and takes the first worker that frees up, old or new.
/// Shrink: every scale_idle / 2, up to spawn_rate extra workers idle for scale_idle are
/// stopped, never below the floor. `RR_EVENT_POOL_GROW` and `RR_EVENT_POOL_SHRINK`
/// report both; `rr_pool_stats` counts `workers_spawned` and `retired_shrink`.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_max_workers(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.max_workers = n) }
}

/// Sets the most workers an elastic pool starts in one step (must be > 0; default 8),
/// and the most extra workers it stops in one check. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_spawn_rate(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.spawn_rate = n) }
}

/// Sets how long a caller of an elastic pool waits for a worker before the pool grows,
/// in milliseconds (must be > 0; default 10). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_scale_after_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.scale_after = millis(ms)) }
}

/// Sets how long an extra worker of an elastic pool may idle before it is stopped, in
/// milliseconds (must be > 0; default 10 000). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_scale_idle_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.scale_idle = millis(ms)) }
}

/// Sets the pool's name, the label `pool` of its metrics and the `name` of its status
/// (copied; default `"default"`). `rr_server_new` refuses an empty name, one longer than
/// 128 bytes, or one with control characters (`RR_STATUS_CONFIG`).
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `c` or `name` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when `name` is not valid UTF-8 (the config is then
/// unchanged).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_set_name(
    c: *mut rr_config,
    name: *const c_char,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_mut!(c, "c");
        // SAFETY: the header requires a NUL-terminated string.
        let name = unsafe { input::required_str(name, "name") }?;
        config.name = name.to_string();
        Ok(())
    })
}

/// Whether `a` and `b` differ in what `rr_server_reconfigure` ignores: the relay
/// (compared as parsed: `"pipe"` and `"pipes"` are the same) or the relay timeout. As
/// RoadRunner's `ServerConfig.Differs`: when true, applying `b` to a server running `a`
/// needs `rr_server_stop`, a new server, and `rr_server_start`. The pool settings and the
/// command do not count (a reconfigure applies them). True when either is NULL. Does not
/// block; reads both configs (do not change them on another thread meanwhile).
#[no_mangle]
pub unsafe extern "C" fn rr_config_differs(a: *const rr_config, b: *const rr_config) -> bool {
    ffi_boundary!({
        // SAFETY: the header requires NULL or live configs.
        match unsafe { (handle::as_ref(a), handle::as_ref(b)) } {
            (Some(a), Some(b)) => a.differs(b),
            _ => true,
        }
    })
}

/// Protocol V1: RoadRunner 1.x workers (goridge 2's 17-byte prefix, two frames per
/// message). The default.
pub const RR_PROTOCOL_V1: u32 = 1;
/// Protocol V2: RoadRunner 2.x to 2025.x workers (`spiral/roadrunner-worker` 2.x/3.x over
/// `spiral/goridge` 3.x/4.x: a 12-byte header with a CRC, one frame per message,
/// streamed answers).
pub const RR_PROTOCOL_V2: u32 = 2;
/// Codec of V2 task frames: raw bytes (the default).
pub const RR_CODEC_RAW: u8 = 0x04;
/// Codec of V2 task frames: JSON.
pub const RR_CODEC_JSON: u8 = 0x08;
/// Codec of V2 task frames: MessagePack.
pub const RR_CODEC_MSGPACK: u8 = 0x10;
/// Codec of V2 task frames: Go's gob.
pub const RR_CODEC_GOB: u8 = 0x20;
/// Codec of V2 task frames: protocol buffers (RoadRunner's HTTP plugin since 2024.1).
pub const RR_CODEC_PROTO: u8 = 0x80;

/// Sets the protocol the workers speak: `RR_PROTOCOL_V1` (RoadRunner 1.x workers, the
/// default) or `RR_PROTOCOL_V2` (RoadRunner 2.x to 2025.x workers). Cannot change on
/// reconfigure (a socket relay's listener does the handshake in it). A worker of the
/// other protocol fails its handshake with `RR_STATUS_SPAWN`, the message naming both.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `c` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` for any other number (the config is then unchanged).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_set_protocol(
    c: *mut rr_config,
    protocol: u32,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_mut!(c, "c");
        config.protocol = crate::Protocol::from_number(protocol).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("protocol {protocol} is not RR_PROTOCOL_V1 (1) or RR_PROTOCOL_V2 (2)"),
            )
        })?;
        Ok(())
    })
}

/// Sets the codec of task frames (protocol V2: their flags byte), one of `RR_CODEC_RAW`
/// (the default), `RR_CODEC_JSON`, `RR_CODEC_MSGPACK`, `RR_CODEC_GOB`, `RR_CODEC_PROTO`.
/// It tells the worker how the payload is encoded; the library passes payloads through
/// as bytes. Ignored by protocol V1.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `c` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` for any other value (the config is then unchanged).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_set_codec(c: *mut rr_config, codec: u8, err_out: *mut *mut rr_error) -> rr_status {
    ffi_status!(err_out, {
        let config = try_mut!(c, "c");
        if !crate::codec::is_known(codec) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("{codec:#04x} is not a codec (RR_CODEC_RAW, _JSON, _MSGPACK, _GOB or _PROTO)"),
            ));
        }
        config.codec = codec;
        Ok(())
    })
}

/// Sets how long a cancelled stream (protocol V2) may take to end, in milliseconds
/// (must be > 0; default 10 000): after `rr_stream_cancel` (or `rr_stream_free` of an
/// unfinished stream) the worker must send its last frame within it, or it is killed
/// and replaced. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_stream_timeout_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.stream_timeout = millis(ms)) }
}

/// Adds the environment variable `key=value` for the workers, on top of the host's own
/// environment; setting a key again replaces its value. Both strings are copied. The
/// key is checked by `rr_server_new` (not empty, no `=`, not `RR_RELAY`).
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `c`, `key` or `value` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when a string is not valid UTF-8 (the config is then
/// unchanged).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_set_env(
    c: *mut rr_config,
    key: *const c_char,
    value: *const c_char,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_mut!(c, "c");
        // SAFETY: the header requires NUL-terminated strings.
        let key = unsafe { input::required_str(key, "key") }?;
        let value = unsafe { input::required_str(value, "value") }?;
        match config.env.iter_mut().find(|(existing, _)| existing == key) {
            Some((_, old)) => *old = value.to_string(),
            None => config.env.push((key.to_string(), value.to_string())),
        }
        Ok(())
    })
}

/// Sets the working directory of the workers (copied); NULL `dir` goes back to the
/// default, the host's working directory. `rr_server_new` checks that it is a directory.
///
/// Returns `RR_STATUS_OK`; `RR_STATUS_NULL_ARGUMENT` when `c` is NULL;
/// `RR_STATUS_INVALID_ARGUMENT` when `dir` is not valid UTF-8 (the config is then
/// unchanged).
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rr_config_set_dir(
    c: *mut rr_config,
    dir: *const c_char,
    err_out: *mut *mut rr_error,
) -> rr_status {
    ffi_status!(err_out, {
        let config = try_mut!(c, "c");
        // SAFETY: the header requires NULL or a NUL-terminated string.
        let dir = unsafe { input::optional_str(dir, "dir") }?;
        config.dir = dir.map(PathBuf::from);
        Ok(())
    })
}

/// Sets the longest a task may run, in milliseconds: a worker still busy after that is
/// killed and its caller gets `RR_STATUS_EXEC_TTL`. 0 = off (the default). NULL `c` does
/// nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_exec_ttl_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.exec_ttl = millis(ms)) }
}

/// Sets the longest a worker may live, in milliseconds: an older worker is retired
/// between tasks (never during one). 0 = off (the default). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_ttl_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.ttl = millis(ms)) }
}

/// Sets the longest a worker may wait for a task, in milliseconds: a worker idle longer
/// is retired. 0 = off (the default). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_idle_ttl_ms(c: *mut rr_config, ms: u64) {
    unsafe { set(c, |config| config.idle_ttl = millis(ms)) }
}

/// Sets the largest resident memory (RSS) of a worker, in bytes: a worker above it is
/// retired between tasks. 0 = off (the default). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_max_memory_bytes(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.max_memory = n) }
}

/// Sets how many callers may wait for a free worker at once; one more fails at once with
/// `RR_STATUS_QUEUE_FULL`. 0 = unlimited (the default). NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_max_queue(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.max_queue = n) }
}

/// Sets the largest frame accepted from a worker, in bytes (must be > 0; default 1 GiB).
/// A worker that declares a larger frame fails with `RR_STATUS_WORKER_ERROR`. NULL `c`
/// does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_max_frame_bytes(c: *mut rr_config, n: u64) {
    unsafe { set(c, |config| config.max_frame_bytes = n) }
}

/// Sets how far below the setting each worker's own `max_jobs` and `ttl` may be, in
/// percent (0 to 100; default 10). Each worker draws its own limits at random, from the
/// setting down to `percent` percent below it (never below 1), so that workers started
/// together are not all retired together. 0 = every worker gets exactly the setting.
/// Other limits (exec_ttl, idle_ttl, max_memory) are not spread. A value above 100 makes
/// `rr_server_new` and `rr_server_reconfigure` fail with `RR_STATUS_CONFIG`. NULL `c`
/// does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_jitter_percent(c: *mut rr_config, percent: u64) {
    unsafe { set(c, |config| config.jitter_percent = percent) }
}

/// Allows a `tcp://` relay on an address that is not loopback (true), or refuses it
/// (false, the default). Worker relays carry no authentication: any program that can
/// reach the address can connect as a worker, so listen beyond this machine only on a
/// trusted network. With false, `rr_server_new` and `rr_server_reconfigure` fail with
/// `RR_STATUS_CONFIG` for a TCP relay whose host does not resolve only to loopback
/// addresses (a host name is resolved for that check). Pipes and Unix sockets are not
/// affected. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_tcp_allow_remote(c: *mut rr_config, allow: bool) {
    unsafe { set(c, |config| config.tcp_allow_remote = allow) }
}

/// Pins each worker to one CPU (true) or leaves workers free to move (false, the
/// default). Workers are spread evenly over the CPUs the host process may run on (its
/// main thread's affinity, read again for each worker started); a replacement goes to
/// the CPU with the fewest of the pool's workers. The host's own threads are not
/// touched.
///
/// Worth trying when many callers keep every CPU busy: the pool's wake-ups then stay on
/// one CPU more often (bench/notes.md measures it). The price: a pinned worker cannot
/// move off a CPU that something else keeps busy. A worker that cannot be pinned (the
/// CPU was taken away from the host in between, or the machine numbers its CPUs beyond
/// 1023, which the affinity mask used here cannot hold) fails to start with
/// `RR_STATUS_SPAWN`, its message naming the setting. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_worker_cpu_affinity(c: *mut rr_config, pin: bool) {
    unsafe { set(c, |config| config.worker_cpu_affinity = pin) }
}

/// Starts workers in Linux's `SCHED_BATCH` scheduling class (true) or the normal one
/// (false, the default). A batch worker woken by a task does not preempt the caller
/// that sent it, which saves a context switch per task when callers outnumber CPUs; the
/// price is up to one scheduler tick of latency when the worker's CPU is busy. A process
/// may choose this class for itself without privilege, unless it runs in `SCHED_IDLE`
/// (then the kernel asks for `RLIMIT_NICE` or `CAP_SYS_NICE`, and workers fail to start
/// with `RR_STATUS_SPAWN`, the message naming the setting). The worker's children
/// inherit it. NULL `c` does nothing.
#[no_mangle]
pub unsafe extern "C" fn rr_config_set_worker_sched_batch(c: *mut rr_config, batch: bool) {
    unsafe { set(c, |config| config.worker_sched_batch = batch) }
}

/// Releases `c`. Servers made from it are not affected (they hold copies). Calling with
/// NULL is fine. Must not be called twice.
#[no_mangle]
pub unsafe extern "C" fn rr_config_free(c: *mut rr_config) {
    ffi_boundary!({
        // SAFETY: the header requires NULL or a config not freed before.
        unsafe { handle::free(c) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_and_protocol_constants_are_the_cores() {
        use crate::codec;
        assert_eq!(
            [RR_CODEC_RAW, RR_CODEC_JSON, RR_CODEC_MSGPACK, RR_CODEC_GOB, RR_CODEC_PROTO],
            [codec::RAW, codec::JSON, codec::MSGPACK, codec::GOB, codec::PROTO]
        );
        assert_eq!(crate::Protocol::from_number(RR_PROTOCOL_V1), Some(crate::Protocol::V1));
        assert_eq!(crate::Protocol::from_number(RR_PROTOCOL_V2), Some(crate::Protocol::V2));
    }
    use crate::ffi::test_support::{assert_null_argument, call, sentinel};

    fn new_config(command: &std::ffi::CStr) -> *mut rr_config {
        let mut c = std::ptr::null_mut();
        let (status, message) = call(|err| unsafe { rr_config_new(command.as_ptr(), std::ptr::null(), &mut c, err) });
        assert_eq!(status, rr_status::Ok, "{message:?}");
        c
    }

    fn read(c: *mut rr_config) -> Config {
        unsafe { handle::as_ref(c) }.unwrap().clone()
    }

    #[test]
    fn a_new_config_has_the_defaults_and_null_relay_means_pipes() {
        let c = new_config(c"php worker.php");
        assert_eq!(read(c), Config::new("php worker.php", "pipes"));
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn null_arguments_leave_the_out_parameter_untouched() {
        let mut c = sentinel();
        assert_null_argument(
            |err| unsafe { rr_config_new(std::ptr::null(), c"pipes".as_ptr(), &mut c, err) },
            "command",
        );
        assert_eq!(c, sentinel());
        assert_null_argument(
            |err| unsafe { rr_config_new(c"w".as_ptr(), std::ptr::null(), std::ptr::null_mut(), err) },
            "out",
        );
    }

    #[test]
    fn strings_that_are_not_utf8_are_invalid_arguments() {
        let mut c = sentinel();
        let (status, _) = call(|err| unsafe { rr_config_new(c"w".as_ptr(), c"pi\xffpes".as_ptr(), &mut c, err) });
        assert_eq!(status, rr_status::InvalidArgument);
        assert_eq!(c, sentinel());

        let c = new_config(c"w");
        let (status, _) = call(|err| unsafe { rr_config_set_env(c, c"K".as_ptr(), c"\xff".as_ptr(), err) });
        assert_eq!(status, rr_status::InvalidArgument);
        let (status, _) = call(|err| unsafe { rr_config_set_dir(c, c"/tmp/\xff".as_ptr(), err) });
        assert_eq!(status, rr_status::InvalidArgument);
        assert_eq!(read(c), Config::new("w", "pipes"), "a failed setter changes nothing");
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn setters_store_their_values() {
        let c = new_config(c"w");
        unsafe {
            rr_config_set_num_workers(c, 3);
            rr_config_set_max_jobs(c, 7);
            rr_config_set_allocate_timeout_ms(c, 1500);
            rr_config_set_destroy_timeout_ms(c, 2500);
            rr_config_set_relay_timeout_ms(c, 3500);
            rr_config_set_exec_ttl_ms(c, 10);
            rr_config_set_ttl_ms(c, 20);
            rr_config_set_idle_ttl_ms(c, 30);
            rr_config_set_max_memory_bytes(c, 1 << 20);
            rr_config_set_max_queue(c, 9);
            rr_config_set_max_frame_bytes(c, 4096);
            rr_config_set_jitter_percent(c, 25);
            rr_config_set_tcp_allow_remote(c, true);
            rr_config_set_worker_cpu_affinity(c, true);
            rr_config_set_worker_sched_batch(c, true);
        }
        assert_eq!(call(|err| unsafe { rr_config_set_env(c, c"A".as_ptr(), c"1".as_ptr(), err) }).0, rr_status::Ok);
        assert_eq!(call(|err| unsafe { rr_config_set_env(c, c"B".as_ptr(), c"2".as_ptr(), err) }).0, rr_status::Ok);
        assert_eq!(call(|err| unsafe { rr_config_set_env(c, c"A".as_ptr(), c"3".as_ptr(), err) }).0, rr_status::Ok);
        assert_eq!(call(|err| unsafe { rr_config_set_dir(c, c"/tmp".as_ptr(), err) }).0, rr_status::Ok);

        let config = read(c);
        assert_eq!(config.num_workers, 3);
        assert_eq!(config.max_jobs, 7);
        assert_eq!(config.allocate_timeout, Duration::from_millis(1500));
        assert_eq!(config.destroy_timeout, Duration::from_millis(2500));
        assert_eq!(config.relay_timeout, Duration::from_millis(3500));
        assert_eq!(config.exec_ttl, Duration::from_millis(10));
        assert_eq!(config.ttl, Duration::from_millis(20));
        assert_eq!(config.idle_ttl, Duration::from_millis(30));
        assert_eq!(config.max_memory, 1 << 20);
        assert_eq!(config.max_queue, 9);
        assert_eq!(config.max_frame_bytes, 4096);
        assert_eq!(config.jitter_percent, 25);
        assert!(config.tcp_allow_remote);
        assert!(config.worker_cpu_affinity);
        assert!(config.worker_sched_batch);
        assert_eq!(config.env, vec![("A".to_string(), "3".to_string()), ("B".to_string(), "2".to_string())]);
        assert_eq!(config.dir, Some(PathBuf::from("/tmp")));

        assert_eq!(call(|err| unsafe { rr_config_set_dir(c, std::ptr::null(), err) }).0, rr_status::Ok);
        assert_eq!(read(c).dir, None, "NULL dir goes back to the default");
        unsafe { rr_config_free(c) };
    }

    #[test]
    fn setters_on_null_do_nothing() {
        let null = std::ptr::null_mut();
        unsafe {
            rr_config_set_num_workers(null, 3);
            rr_config_set_max_jobs(null, 3);
            rr_config_set_allocate_timeout_ms(null, 3);
            rr_config_set_destroy_timeout_ms(null, 3);
            rr_config_set_relay_timeout_ms(null, 3);
            rr_config_set_exec_ttl_ms(null, 3);
            rr_config_set_ttl_ms(null, 3);
            rr_config_set_idle_ttl_ms(null, 3);
            rr_config_set_max_memory_bytes(null, 3);
            rr_config_set_max_queue(null, 3);
            rr_config_set_max_frame_bytes(null, 3);
            rr_config_set_jitter_percent(null, 3);
            rr_config_set_tcp_allow_remote(null, true);
            rr_config_set_worker_cpu_affinity(null, true);
            rr_config_set_worker_sched_batch(null, true);
            rr_config_free(null);
        }
        assert_null_argument(|err| unsafe { rr_config_set_env(null, c"A".as_ptr(), c"1".as_ptr(), err) }, "c");
        assert_null_argument(|err| unsafe { rr_config_set_dir(null, c"/".as_ptr(), err) }, "c");
        let c = new_config(c"w");
        assert_null_argument(|err| unsafe { rr_config_set_env(c, std::ptr::null(), c"1".as_ptr(), err) }, "key");
        assert_null_argument(|err| unsafe { rr_config_set_env(c, c"A".as_ptr(), std::ptr::null(), err) }, "value");
        unsafe { rr_config_free(c) };
    }
}
