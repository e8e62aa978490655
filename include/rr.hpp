// rr.hpp: a header-only C++17 interface to libroadrunner, over the C interface of rr.h.
//
// What it adds to rr.h, and nothing else:
//   - an owner for every handle (rr::Config, rr::Server, rr::Payload, rr::Stream,
//     rr::Queue, rr::Worker): move-only, it frees its handle exactly once, in its
//     destructor (a moved-from owner holds nothing; calls on it throw rr::Error with
//     Status::NullArgument, as the C function does for NULL);
//   - exceptions instead of statuses: a failed call throws rr::Error (status(), message()),
//     or rr::JobError (a subclass, with data(): the bytes the worker answered with);
//   - byte views: payloads are read as std::string_view (valid while the rr::Payload
//     lives), inputs are given as std::string_view (any bytes, NUL included);
//   - a stream iterator (range-for over the chunks of a streamed answer), events as a
//     std::function, snapshots (workers(), stats()) as plain C++ values.
//
// Everything about behaviour (what blocks and for how long, threads, fork(), what each
// status means) is rr.h's: each function here names the C function it calls; read that
// one's documentation. Thread-safety is the C object's: rr::Server may be used by any
// number of threads at once (but not while it is destroyed or moved), rr::Config,
// rr::Stream and rr::Worker by one thread at a time; rr::Queue by many, except its
// destructor. No exception crosses into the library: the event trampoline catches
// everything the handler throws (and drops it).
//
// Minimal use:
//     rr::Server server(rr::Config("php worker.php").workers(2));
//     server.start();
//     rr::Payload answer = server.exec("{}", "hello");
//     std::cout << answer.body() << "\n";

#ifndef RR_HPP
#define RR_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rr.h"

namespace rr {

// ---------------------------------------------------------------------------------------
// Statuses and errors

// rr_status as a scoped enum: the same values.
enum class Status : uint32_t {
    Ok = RR_STATUS_OK,
    JobError = RR_STATUS_JOB_ERROR,
    WorkerError = RR_STATUS_WORKER_ERROR,
    Timeout = RR_STATUS_TIMEOUT,
    Config = RR_STATUS_CONFIG,
    Spawn = RR_STATUS_SPAWN,
    State = RR_STATUS_STATE,
    NullArgument = RR_STATUS_NULL_ARGUMENT,
    InvalidArgument = RR_STATUS_INVALID_ARGUMENT,
    Internal = RR_STATUS_INTERNAL,
    ExecTtl = RR_STATUS_EXEC_TTL,
    QueueFull = RR_STATUS_QUEUE_FULL,
    Cancelled = RR_STATUS_CANCELLED,
};

// The library's static, lower-case name of `status` (rr_status_str), e.g. "timeout".
inline const char *to_string(Status status) noexcept { return rr_status_str(static_cast<rr_status>(status)); }

// A failed call: its status and the library's message (rr_error_status, rr_error_message).
// what() is "<status name>: <message>". Copying never throws (the strings are shared).
class Error : public std::runtime_error {
  public:
    Error(Status status, const std::string &message)
        : std::runtime_error(std::string(to_string(status)) + ": " + message), status_(status),
          message_(std::make_shared<const std::string>(message)) {}

    Status status() const noexcept { return status_; }
    // The message alone, without the status name.
    const std::string &message() const noexcept { return *message_; }

  private:
    Status status_;
    std::shared_ptr<const std::string> message_;
};

// Status::JobError: the worker answered the task with an error and stays in the pool.
// data() holds the bytes it sent (rr_error_data), exactly, not necessarily UTF-8.
class JobError : public Error {
  public:
    JobError(const std::string &message, std::string data)
        : Error(Status::JobError, message), data_(std::make_shared<const std::string>(std::move(data))) {}

    const std::string &data() const noexcept { return *data_; }

  private:
    std::shared_ptr<const std::string> data_;
};

namespace detail {

inline const uint8_t *bytes(std::string_view s) noexcept { return reinterpret_cast<const uint8_t *>(s.data()); }

inline std::string_view view(const uint8_t *data, size_t len) noexcept {
    return data == nullptr || len == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char *>(data), len);
}

struct ErrorFree {
    void operator()(rr_error *e) const noexcept { rr_error_free(e); }
};
using ErrorPtr = std::unique_ptr<rr_error, ErrorFree>;

// The exception for a failed call, built from its status and its rr_error (may be NULL),
// which is freed here.
inline std::shared_ptr<Error> make_error(rr_status status, rr_error *raw) {
    ErrorPtr err(raw);
    std::string message = "(no details)";
    if (err != nullptr && rr_error_message(err.get()) != nullptr) {
        message = rr_error_message(err.get());
    }
    if (status == RR_STATUS_JOB_ERROR) {
        size_t len = 0;
        const uint8_t *data = err != nullptr ? rr_error_data(err.get(), &len) : nullptr;
        return std::make_shared<JobError>(message, std::string(view(data, len)));
    }
    return std::make_shared<Error>(static_cast<Status>(status), message);
}

// Throws `e` as its own type (JobError or Error).
[[noreturn]] inline void rethrow(const Error &e) {
    if (const auto *job = dynamic_cast<const JobError *>(&e)) {
        throw *job;
    }
    throw e;
}

// Takes `raw` (may be NULL) and throws when `status` is not OK.
inline void check(rr_status status, rr_error *raw) {
    if (status == RR_STATUS_OK) {
        rr_error_free(raw); // NULL on success, per rr.h; freed in case
        return;
    }
    rethrow(*make_error(status, raw));
}

// Calls `f(rr_error **)` (a C call returning rr_status) and throws on failure.
template <class F> void call(F &&f) {
    rr_error *err = nullptr;
    rr_status status = std::forward<F>(f)(&err);
    check(status, err);
}

// A handle that is not there: the C function would say RR_STATUS_NULL_ARGUMENT, and
// functions without a status would do nothing, so the wrappers say it themselves.
[[noreturn]] inline void null_handle(const char *what) {
    throw Error(Status::NullArgument, std::string(what) + " is empty (moved from)");
}

struct ConfigFree {
    void operator()(rr_config *c) const noexcept { rr_config_free(c); }
};
struct ServerFree {
    void operator()(rr_server *s) const noexcept { rr_server_free(s); }
};
struct PayloadFree {
    void operator()(rr_payload *p) const noexcept { rr_payload_free(p); }
};
struct StreamFree {
    void operator()(rr_stream *s) const noexcept { rr_stream_free(s); }
};
struct QueueFree {
    void operator()(rr_queue *q) const noexcept { rr_queue_free(q); }
};
struct WorkerFree {
    void operator()(rr_worker *w) const noexcept { rr_worker_free(w); }
};

// Durations: a negative one would wrap around to ~584 million years; say so instead.
inline uint64_t millis(std::chrono::milliseconds ms, const char *setting) {
    if (ms.count() < 0) {
        throw Error(Status::InvalidArgument, std::string(setting) + " must not be negative");
    }
    return static_cast<uint64_t>(ms.count());
}

} // namespace detail

// ---------------------------------------------------------------------------------------
// Constants

enum class Protocol : uint32_t { V1 = RR_PROTOCOL_V1, V2 = RR_PROTOCOL_V2 };

// Codecs of V2 frames; an answer's codec may also be 0 (none set by the worker).
enum class Codec : uint8_t {
    None = 0,
    Raw = RR_CODEC_RAW,
    Json = RR_CODEC_JSON,
    Msgpack = RR_CODEC_MSGPACK,
    Gob = RR_CODEC_GOB,
    Proto = RR_CODEC_PROTO,
};

enum class WorkerState : int32_t {
    Inactive = RR_WORKER_STATE_INACTIVE,
    Ready = RR_WORKER_STATE_READY,
    Working = RR_WORKER_STATE_WORKING,
    Streaming = RR_WORKER_STATE_STREAMING,
    Stopping = RR_WORKER_STATE_STOPPING,
    Stopped = RR_WORKER_STATE_STOPPED,
    Errored = RR_WORKER_STATE_ERRORED,
};

// "ready", "working", ... (rr_worker_state_str); "unknown" for other values.
inline const char *to_string(WorkerState state) noexcept {
    return rr_worker_state_str(static_cast<int32_t>(state));
}

// Event types; the library may send types not listed here (keep them as numbers).
enum class EventType : int32_t {
    WorkerConstruct = RR_EVENT_WORKER_CONSTRUCT,
    WorkerDestruct = RR_EVENT_WORKER_DESTRUCT,
    WorkerKill = RR_EVENT_WORKER_KILL,
    WorkerError = RR_EVENT_WORKER_ERROR,
    WorkerDead = RR_EVENT_WORKER_DEAD,
    PoolError = RR_EVENT_POOL_ERROR,
    ServerStart = RR_EVENT_SERVER_START,
    ServerStop = RR_EVENT_SERVER_STOP,
    ServerFailure = RR_EVENT_SERVER_FAILURE,
    PoolConstruct = RR_EVENT_POOL_CONSTRUCT,
    PoolDestruct = RR_EVENT_POOL_DESTRUCT,
    WorkerStderr = RR_EVENT_WORKER_STDERR,
    WorkerExecTtl = RR_EVENT_WORKER_EXEC_TTL,
    WorkerTtl = RR_EVENT_WORKER_TTL,
    WorkerIdleTtl = RR_EVENT_WORKER_IDLE_TTL,
    WorkerMaxMemory = RR_EVENT_WORKER_MAX_MEMORY,
    WorkerMaxJobs = RR_EVENT_WORKER_MAX_JOBS,
    QueueFull = RR_EVENT_QUEUE_FULL,
    PoolGrow = RR_EVENT_POOL_GROW,                     // an elastic pool starts more workers; pid -1
    PoolShrink = RR_EVENT_POOL_SHRINK,                 // an elastic pool stopped an idle extra worker (pid)
    ReconfigureIgnored = RR_EVENT_RECONFIGURE_IGNORED, // reconfigure() kept the relay and relay timeout; pid -1
    WorkerRemoved = RR_EVENT_WORKER_REMOVED,           // remove_worker() took worker pid out of the pool
};

// A snake_case name of `type` ("worker_construct", ...); "unknown" for other values.
inline const char *to_string(EventType type) noexcept {
    switch (type) {
    case EventType::WorkerConstruct: return "worker_construct";
    case EventType::WorkerDestruct: return "worker_destruct";
    case EventType::WorkerKill: return "worker_kill";
    case EventType::WorkerError: return "worker_error";
    case EventType::WorkerDead: return "worker_dead";
    case EventType::PoolError: return "pool_error";
    case EventType::ServerStart: return "server_start";
    case EventType::ServerStop: return "server_stop";
    case EventType::ServerFailure: return "server_failure";
    case EventType::PoolConstruct: return "pool_construct";
    case EventType::PoolDestruct: return "pool_destruct";
    case EventType::WorkerStderr: return "worker_stderr";
    case EventType::WorkerExecTtl: return "worker_exec_ttl";
    case EventType::WorkerTtl: return "worker_ttl";
    case EventType::WorkerIdleTtl: return "worker_idle_ttl";
    case EventType::WorkerMaxMemory: return "worker_max_memory";
    case EventType::WorkerMaxJobs: return "worker_max_jobs";
    case EventType::QueueFull: return "queue_full";
    case EventType::PoolGrow: return "pool_grow";
    case EventType::PoolShrink: return "pool_shrink";
    case EventType::ReconfigureIgnored: return "reconfigure_ignored";
    case EventType::WorkerRemoved: return "worker_removed";
    }
    return "unknown";
}

// The version of the loaded library, "MAJOR.MINOR.PATCH" (rr_version); compare with
// RR_VERSION_MAJOR/MINOR/PATCH, the header's.
inline const char *version() noexcept { return rr_version(); }

// ---------------------------------------------------------------------------------------
// Payload: owns an rr_payload (an answer, a chunk of a stream, or a task on the worker side)

class Payload {
  public:
    Payload() noexcept = default;
    // Takes ownership of `p` (may be NULL).
    explicit Payload(rr_payload *p) noexcept : p_(p) {}

    // The bytes, owned by this object: valid until it is destroyed, assigned or released
    // (moving the Payload keeps them valid: the bytes do not move). Empty when there is
    // no payload.
    std::string_view context() const noexcept {
        size_t len = 0;
        const uint8_t *data = p_ != nullptr ? rr_payload_context(p_.get(), &len) : nullptr;
        return detail::view(data, len);
    }
    std::string_view body() const noexcept {
        size_t len = 0;
        const uint8_t *data = p_ != nullptr ? rr_payload_body(p_.get(), &len) : nullptr;
        return detail::view(data, len);
    }
    // Copies, to keep beyond the Payload's life.
    std::string context_string() const { return std::string(context()); }
    std::string body_string() const { return std::string(body()); }
    // The codec of the answer's frame (rr_payload_codec): Codec::Raw with protocol V1.
    Codec codec() const noexcept { return static_cast<Codec>(rr_payload_codec(p_.get())); }

    explicit operator bool() const noexcept { return p_ != nullptr; }
    rr_payload *get() const noexcept { return p_.get(); }
    // Gives up ownership: the caller frees the result with rr_payload_free.
    rr_payload *release() noexcept { return p_.release(); }

  private:
    std::unique_ptr<rr_payload, detail::PayloadFree> p_;
};

// ---------------------------------------------------------------------------------------
// Config: a builder over rr_config

// Every setter returns the Config, so that settings chain, on a named config
// (`cfg.workers(4).max_jobs(100);`) as on a temporary (`rr::Server s(rr::Config(cmd).workers(4));`).
class Config {
  public:
    // rr_config_new: workers run `command` (split like a shell would), talking over `relay`:
    // "pipes" (NULL/default), "tcp://host:port" or "unix://path". Throws rr::Error.
    explicit Config(const char *command, const char *relay = nullptr) {
        rr_config *raw = nullptr;
        detail::call([&](rr_error **e) { return rr_config_new(command, relay, &raw, e); });
        c_.reset(raw);
    }
    explicit Config(const std::string &command, const std::string &relay = "pipes")
        : Config(command.c_str(), relay.c_str()) {}

// Each setter twice: on an lvalue (returns Config &), on an rvalue (returns Config &&).
#define RR_HPP_SETTER(name, param, body)                                                                              \
    Config &name(param) & {                                                                                           \
        rr_config *c = raw();                                                                                         \
        body;                                                                                                         \
        return *this;                                                                                                 \
    }                                                                                                                 \
    Config &&name(param) && { return std::move(this->name(value)); }

    RR_HPP_SETTER(workers, uint64_t value, rr_config_set_num_workers(c, value))
    RR_HPP_SETTER(max_jobs, uint64_t value, rr_config_set_max_jobs(c, value))
    RR_HPP_SETTER(allocate_timeout, std::chrono::milliseconds value,
                  rr_config_set_allocate_timeout_ms(c, detail::millis(value, "allocate_timeout")))
    RR_HPP_SETTER(destroy_timeout, std::chrono::milliseconds value,
                  rr_config_set_destroy_timeout_ms(c, detail::millis(value, "destroy_timeout")))
    RR_HPP_SETTER(relay_timeout, std::chrono::milliseconds value,
                  rr_config_set_relay_timeout_ms(c, detail::millis(value, "relay_timeout")))
    RR_HPP_SETTER(stream_timeout, std::chrono::milliseconds value,
                  rr_config_set_stream_timeout_ms(c, detail::millis(value, "stream_timeout")))
    RR_HPP_SETTER(exec_ttl, std::chrono::milliseconds value,
                  rr_config_set_exec_ttl_ms(c, detail::millis(value, "exec_ttl")))
    RR_HPP_SETTER(ttl, std::chrono::milliseconds value, rr_config_set_ttl_ms(c, detail::millis(value, "ttl")))
    RR_HPP_SETTER(idle_ttl, std::chrono::milliseconds value,
                  rr_config_set_idle_ttl_ms(c, detail::millis(value, "idle_ttl")))
    RR_HPP_SETTER(max_memory_bytes, uint64_t value, rr_config_set_max_memory_bytes(c, value))
    RR_HPP_SETTER(max_queue, uint64_t value, rr_config_set_max_queue(c, value))
    RR_HPP_SETTER(max_frame_bytes, uint64_t value, rr_config_set_max_frame_bytes(c, value))
    RR_HPP_SETTER(jitter_percent, uint64_t value, rr_config_set_jitter_percent(c, value))
    RR_HPP_SETTER(tcp_allow_remote, bool value, rr_config_set_tcp_allow_remote(c, value))
    RR_HPP_SETTER(worker_cpu_affinity, bool value, rr_config_set_worker_cpu_affinity(c, value))
    RR_HPP_SETTER(worker_sched_batch, bool value, rr_config_set_worker_sched_batch(c, value))
    // These throw rr::Error (Status::InvalidArgument) for a value the library refuses.
    RR_HPP_SETTER(protocol, Protocol value, detail::call([&](rr_error **e) {
                      return rr_config_set_protocol(c, static_cast<uint32_t>(value), e);
                  }))
    RR_HPP_SETTER(codec, Codec value, detail::call([&](rr_error **e) {
                      return rr_config_set_codec(c, static_cast<uint8_t>(value), e);
                  }))
    // The working directory of the workers; "" goes back to the host's.
    RR_HPP_SETTER(dir, const std::string &value, detail::call([&](rr_error **e) {
                      return rr_config_set_dir(c, value.empty() ? nullptr : value.c_str(), e);
                  }))
    RR_HPP_SETTER(max_workers, uint64_t value, rr_config_set_max_workers(c, value))
    RR_HPP_SETTER(spawn_rate, uint64_t value, rr_config_set_spawn_rate(c, value))
    RR_HPP_SETTER(scale_after, std::chrono::milliseconds value,
                  rr_config_set_scale_after_ms(c, detail::millis(value, "scale_after")))
    RR_HPP_SETTER(scale_idle, std::chrono::milliseconds value,
                  rr_config_set_scale_idle_ms(c, detail::millis(value, "scale_idle")))
    // The pool's name in status and metrics (rr_config_set_name).
    RR_HPP_SETTER(name, const std::string &value,
                  detail::call([&](rr_error **e) { return rr_config_set_name(c, value.c_str(), e); }))
#undef RR_HPP_SETTER

    // rr_config_set_env: KEY=VALUE for the workers, on top of the host's environment.
    Config &env(const std::string &key, const std::string &value) & {
        rr_config *c = raw();
        detail::call([&](rr_error **e) { return rr_config_set_env(c, key.c_str(), value.c_str(), e); });
        return *this;
    }
    Config &&env(const std::string &key, const std::string &value) && { return std::move(this->env(key, value)); }

    // rr_config_differs: true when the two differ where a running server cannot follow
    // (relay, relay timeout), so rr_server_reconfigure would refuse `other`. An empty
    // Config differs from everything.
    bool differs(const Config &other) const noexcept { return rr_config_differs(c_.get(), other.c_.get()); }

    explicit operator bool() const noexcept { return c_ != nullptr; }
    const rr_config *get() const noexcept { return c_.get(); }
    rr_config *get() noexcept { return c_.get(); }

  private:
    rr_config *raw() {
        if (c_ == nullptr) {
            detail::null_handle("rr::Config");
        }
        return c_.get();
    }

    std::unique_ptr<rr_config, detail::ConfigFree> c_;
};

// ---------------------------------------------------------------------------------------
// Snapshots

// One worker, copied out of rr_worker_info (rr_server_workers).
struct WorkerInfo {
    int64_t pid = 0;
    WorkerState state = WorkerState::Inactive;
    uint64_t num_execs = 0;
    int64_t created_unix_ms = 0;
    uint64_t rss_bytes = 0; // 0 where unknown

    std::chrono::system_clock::time_point created() const {
        return std::chrono::system_clock::time_point(std::chrono::milliseconds(created_unix_ms));
    }
    const char *state_name() const noexcept { return to_string(state); }
};

// The server's counters (rr_server_stats; see rr_pool_stats for each).
struct Stats {
    uint64_t tasks_done = 0;
    uint64_t job_errors = 0;
    uint64_t worker_errors = 0;
    uint64_t exec_ttl_kills = 0;
    uint64_t timeouts = 0;
    uint64_t queue_full = 0;
    uint64_t waiting = 0; // at the moment of the snapshot
    uint64_t workers = 0; // at the moment of the snapshot
    uint64_t retired_max_jobs = 0;
    uint64_t retired_ttl = 0;
    uint64_t retired_idle_ttl = 0;
    uint64_t retired_max_memory = 0;
    uint64_t retired_stop_requested = 0;
    uint64_t retired_failed = 0;
    uint64_t retired_died = 0;
    // Added in 0.2: empty when the loaded library is older than the field.
    std::optional<uint64_t> tasks_cancelled;
    std::optional<uint64_t> workers_spawned; // the first workers, replacements, an elastic pool's growth
    std::optional<uint64_t> retired_shrink;  // extra workers of an elastic pool retired after scale_idle
    std::optional<uint64_t> retired_removed; // workers removed by remove_worker()
};

// One event, copied out of the borrowed rr_event: keep it as long as you like.
struct Event {
    EventType type = EventType::WorkerConstruct; // may hold a number not in EventType
    int64_t pid = -1;                            // -1 when not about one worker
    std::optional<std::string> message;

    const char *name() const noexcept { return to_string(type); }
};

// Receives the events of a server, on its event thread, one call at a time, in order.
// Must return quickly, and must not destroy, stop or listen() on its own Server.
// What it throws is caught and dropped.
using EventHandler = std::function<void(const Event &)>;

class Queue;

// ---------------------------------------------------------------------------------------
// Stream: owns an rr_stream (rr_exec_stream), iterable chunk by chunk

class Stream {
  public:
    Stream() noexcept = default;
    explicit Stream(rr_stream *s) noexcept : s_(s) {}
    Stream(Stream &&other) noexcept
        : s_(std::move(other.s_)), current_(std::move(other.current_)), done_(std::exchange(other.done_, true)) {}
    Stream &operator=(Stream &&other) noexcept {
        if (this != &other) {
            // The stream held before is freed (cancelled when unfinished) by the assignment of s_.
            current_ = std::move(other.current_);
            s_ = std::move(other.s_);
            done_ = std::exchange(other.done_, true);
        }
        return *this;
    }
    // rr_stream_free: an unfinished stream is cancelled first (blocks up to stream_timeout).
    ~Stream() = default;

    // The next chunk (rr_stream_next), waiting for it; empty after the last one.
    // Throws rr::JobError, rr::Error (WorkerError, ExecTtl, Cancelled after cancel()).
    std::optional<Payload> next() {
        if (s_ == nullptr) {
            detail::null_handle("rr::Stream");
        }
        if (done_) {
            return std::nullopt;
        }
        rr_payload *raw = nullptr;
        rr_stream *s = s_.get();
        detail::call([&](rr_error **e) { return rr_stream_next(s, &raw, e); });
        if (raw == nullptr) {
            done_ = true;
            return std::nullopt;
        }
        return Payload(raw);
    }

    // rr_stream_cancel: asks the worker to stop; blocks until the stream ended (at most
    // stream_timeout). The next next() throws Status::Cancelled.
    void cancel() {
        if (s_ == nullptr) {
            detail::null_handle("rr::Stream");
        }
        rr_stream *s = s_.get();
        detail::call([&](rr_error **e) { return rr_stream_cancel(s, e); });
    }

    // An input iterator over the chunks: `for (rr::Payload &chunk : stream)`. The chunk
    // it points to lives in the Stream until the iterator is advanced (move it out to
    // keep it). Advancing may throw, as next() does. Iterators point to the Stream
    // object: do not move the Stream while iterating.
    class iterator {
      public:
        using iterator_category = std::input_iterator_tag;
        using value_type = Payload;
        using difference_type = std::ptrdiff_t;
        using pointer = Payload *;
        using reference = Payload &;

        iterator() noexcept = default; // the end
        reference operator*() const noexcept { return *stream_->current_; }
        pointer operator->() const noexcept { return &*stream_->current_; }
        iterator &operator++() {
            if (!stream_->advance()) {
                stream_ = nullptr;
            }
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator &a, const iterator &b) noexcept { return a.stream_ == b.stream_; }
        friend bool operator!=(const iterator &a, const iterator &b) noexcept { return !(a == b); }

      private:
        friend class Stream;
        explicit iterator(Stream *s) noexcept : stream_(s) {}
        Stream *stream_ = nullptr;
    };

    // Reads the next chunk (the first, on a fresh stream); end() when there is none.
    iterator begin() { return iterator(advance() ? this : nullptr); }
    iterator end() noexcept { return iterator(); }

    explicit operator bool() const noexcept { return s_ != nullptr; }
    rr_stream *get() const noexcept { return s_.get(); }

  private:
    bool advance() {
        current_ = next();
        return current_.has_value();
    }

    std::unique_ptr<rr_stream, detail::StreamFree> s_;
    std::optional<Payload> current_;
    bool done_ = false;
};

// ---------------------------------------------------------------------------------------
// Server: owns an rr_server

class Server {
  public:
    // rr_server_new: a server made from a copy of `config`, not started. Throws rr::Error
    // (Status::Config names the bad setting).
    explicit Server(const Config &config) {
        rr_server *raw = nullptr;
        detail::call([&](rr_error **e) { return rr_server_new(config.get(), &raw, e); });
        s_.reset(raw);
    }
    Server(Server &&) noexcept = default;
    // The server held before is freed (as by the destructor).
    Server &operator=(Server &&) noexcept = default;
    // rr_server_free: stops the workers (waits up to about 2 x destroy_timeout), waits for
    // calls in progress, then destroys the event handler. After it, no handler runs.
    ~Server() = default;

    // rr_server_start: starts the workers; blocks until they all answered the handshake.
    void start() {
        rr_server *s = raw();
        detail::call([&](rr_error **e) { return rr_server_start(s, e); });
    }
    // rr_server_stop: stops the workers; the server may be started again.
    void stop() {
        rr_server *s = raw();
        detail::call([&](rr_error **e) { return rr_server_stop(s, e); });
    }
    // rr_server_reset: replaces every worker; blocks until the new pool runs.
    void reset() {
        rr_server *s = raw();
        detail::call([&](rr_error **e) { return rr_server_reset(s, e); });
    }
    // rr_server_reconfigure: replaces the pool with one built from `config` (the relay
    // may not change).
    void reconfigure(const Config &config) {
        rr_server *s = raw();
        detail::call([&](rr_error **e) { return rr_server_reconfigure(s, config.get(), e); });
    }

    // rr_exec: runs one task, waiting for its answer. Safe from any number of threads.
    // Throws rr::JobError (the worker's error bytes in data()) or rr::Error.
    [[nodiscard]] Payload exec(std::string_view context, std::string_view body) {
        rr_server *s = raw();
        rr_payload *out = nullptr;
        detail::call([&](rr_error **e) {
            return rr_exec(s, detail::bytes(context), context.size(), detail::bytes(body), body.size(), &out, e);
        });
        return Payload(out);
    }

    // rr_exec_stream: runs one task whose answer comes chunk by chunk; blocks until the
    // first frame. Finish or destroy the stream before the server.
    [[nodiscard]] Stream exec_stream(std::string_view context, std::string_view body) {
        rr_server *s = raw();
        rr_stream *out = nullptr;
        detail::call([&](rr_error **e) {
            return rr_exec_stream(s, detail::bytes(context), context.size(), detail::bytes(body), body.size(), &out,
                                  e);
        });
        return Stream(out);
    }

    // rr_server_listen: `handler` receives the server's events from now on; it replaces
    // the previous handler, which is destroyed before this returns. An empty handler
    // unregisters. The library owns the handler: it is destroyed after its last call,
    // when it is replaced (by this function) or when the Server is destroyed (by its
    // destructor); so what it captures by reference must outlive the Server (declare it
    // before the Server), or capture it by shared_ptr.
    void listen(EventHandler handler) {
        rr_server *s = raw();
        if (!handler) {
            detail::call([&](rr_error **e) { return rr_server_listen(s, nullptr, nullptr, nullptr, e); });
            return;
        }
        auto owned = std::make_unique<EventHandler>(std::move(handler));
        rr_error *err = nullptr;
        rr_status status = rr_server_listen(s, &Server::trampoline, owned.get(), &Server::release, &err);
        if (status == RR_STATUS_OK) {
            owned.release(); // the library's now
        }
        detail::check(status, err);
    }

    // rr_server_workers: a snapshot of the current pool's workers.
    [[nodiscard]] std::vector<WorkerInfo> workers() {
        rr_server *s = raw();
        rr_worker_info *infos = nullptr;
        size_t len = 0;
        detail::call([&](rr_error **e) { return rr_server_workers(s, &infos, &len, e); });
        struct Free {
            rr_worker_info *infos;
            size_t len;
            ~Free() { rr_worker_info_free(infos, len); }
        } guard{infos, len};
        std::vector<WorkerInfo> out;
        out.reserve(len);
        for (size_t i = 0; i < len; i++) {
            const rr_worker_info &w = infos[i];
            out.push_back(WorkerInfo{w.pid, static_cast<WorkerState>(w.state), w.num_execs, w.created_unix_ms,
                                     w.rss_bytes});
        }
        return out;
    }

    // rr_server_stats: the counters.
    [[nodiscard]] Stats stats() {
        rr_server *s = raw();
        rr_pool_stats raw_stats{};
        raw_stats.size = sizeof raw_stats;
        detail::call([&](rr_error **e) { return rr_server_stats(s, &raw_stats, e); });
        Stats out;
        out.tasks_done = raw_stats.tasks_done;
        out.job_errors = raw_stats.job_errors;
        out.worker_errors = raw_stats.worker_errors;
        out.exec_ttl_kills = raw_stats.exec_ttl_kills;
        out.timeouts = raw_stats.timeouts;
        out.queue_full = raw_stats.queue_full;
        out.waiting = raw_stats.waiting;
        out.workers = raw_stats.workers;
        out.retired_max_jobs = raw_stats.retired_max_jobs;
        out.retired_ttl = raw_stats.retired_ttl;
        out.retired_idle_ttl = raw_stats.retired_idle_ttl;
        out.retired_max_memory = raw_stats.retired_max_memory;
        out.retired_stop_requested = raw_stats.retired_stop_requested;
        out.retired_failed = raw_stats.retired_failed;
        out.retired_died = raw_stats.retired_died;
        // A field the library did not fill (it is older) stays empty.
#define RR_HPP_FILLED(field) (raw_stats.size >= offsetof(rr_pool_stats, field) + sizeof raw_stats.field)
        if (RR_HPP_FILLED(tasks_cancelled)) {
            out.tasks_cancelled = raw_stats.tasks_cancelled;
        }
        if (RR_HPP_FILLED(workers_spawned)) {
            out.workers_spawned = raw_stats.workers_spawned;
        }
        if (RR_HPP_FILLED(retired_shrink)) {
            out.retired_shrink = raw_stats.retired_shrink;
        }
        if (RR_HPP_FILLED(retired_removed)) {
            out.retired_removed = raw_stats.retired_removed;
        }
#undef RR_HPP_FILLED
        return out;
    }

    // rr_server_status_json: the server's state as UTF-8 JSON.
    [[nodiscard]] std::string status_json() { return take_string(&rr_server_status_json); }
    // rr_server_metrics: OpenMetrics text, ending "# EOF\n".
    [[nodiscard]] std::string metrics() { return take_string(&rr_server_metrics); }
    // rr_server_remove_worker: stops (after its task) or kills worker `pid`; the pool
    // replaces it. Throws Status::InvalidArgument for a pid that is not a worker of this server.
    void remove_worker(int64_t pid, bool kill) {
        rr_server *s = raw();
        detail::call([&](rr_error **e) { return rr_server_remove_worker(s, pid, kill, e); });
    }

    explicit operator bool() const noexcept { return s_ != nullptr; }
    rr_server *get() const noexcept { return s_.get(); }

  private:
    friend class Queue;

    rr_server *raw() const {
        if (s_ == nullptr) {
            detail::null_handle("rr::Server");
        }
        return s_.get();
    }

    struct StringFree {
        void operator()(char *p) const noexcept { rr_string_free(p); }
    };
    std::string take_string(rr_status (*f)(rr_server *, char **, rr_error **)) {
        rr_server *s = raw();
        char *out = nullptr;
        detail::call([&](rr_error **e) { return f(s, &out, e); });
        std::unique_ptr<char, StringFree> owned(out);
        return owned != nullptr ? std::string(owned.get()) : std::string();
    }

    // Runs on the library's event thread: nothing may unwind out of it.
    static void trampoline(void *userdata, const rr_event *event) noexcept {
        try {
            Event ev;
            ev.type = static_cast<EventType>(rr_event_type(event));
            ev.pid = rr_event_pid(event);
            if (const char *message = rr_event_message(event)) {
                ev.message.emplace(message);
            }
            (*static_cast<EventHandler *>(userdata))(ev);
        } catch (...) {
            // Dropped: an exception must not cross into the library.
        }
    }
    static void release(void *userdata) noexcept { delete static_cast<EventHandler *>(userdata); }

    std::unique_ptr<rr_server, detail::ServerFree> s_;
};

// ---------------------------------------------------------------------------------------
// Queue: owns an rr_queue, where the outcomes of submitted tasks arrive

// The outcome of one submitted task (rr_completion), owning its payload or its error.
class Completion {
  public:
    explicit Completion(rr_completion &c) : tag_(c.tag), status_(static_cast<Status>(c.status)), payload_(c.payload) {
        c.payload = nullptr;
        rr_error *err = std::exchange(c.error, nullptr);
        if (c.status != RR_STATUS_OK) {
            error_ = detail::make_error(c.status, err); // frees err
        } else {
            rr_error_free(err);
        }
    }

    uint64_t tag() const noexcept { return tag_; }
    Status status() const noexcept { return status_; }
    bool ok() const noexcept { return status_ == Status::Ok; }
    // The error (an rr::JobError for Status::JobError), or nullptr when ok().
    const Error *error() const noexcept { return error_.get(); }
    // The answer; throws the task's error when it failed.
    Payload &payload() & {
        if (error_ != nullptr) {
            detail::rethrow(*error_);
        }
        return payload_;
    }
    Payload &&payload() && { return std::move(this->payload()); }

  private:
    uint64_t tag_;
    Status status_;
    Payload payload_;
    std::shared_ptr<Error> error_;
};

class Queue {
  public:
    // rr_queue_new. Throws rr::Error (Status::Internal when there is no eventfd).
    Queue() {
        rr_queue *raw = nullptr;
        detail::call([&](rr_error **e) { return rr_queue_new(&raw, e); });
        q_.reset(raw);
    }
    Queue(Queue &&) noexcept = default;
    Queue &operator=(Queue &&) noexcept = default;
    // rr_queue_free: cancels what is outstanding, drops what was not taken.
    ~Queue() = default;

    // rr_queue_fd: readable while completions wait (poll it; never read or close it).
    // -1 for an empty Queue.
    int fd() const noexcept { return rr_queue_fd(q_.get()); }

    // rr_exec_submit: `context` and `body` are copied; the outcome arrives here with `tag`.
    // Throws for what is known at once (Status::State, Status::QueueFull, ...); then no
    // completion comes for the task.
    void submit(Server &server, std::string_view context, std::string_view body, uint64_t tag) {
        rr_server *s = server.raw();
        rr_queue *q = raw();
        detail::call([&](rr_error **e) {
            return rr_exec_submit(s, q, detail::bytes(context), context.size(), detail::bytes(body), body.size(), tag,
                                  e);
        });
    }

    // rr_queue_next: the oldest completion, waiting as long as it takes.
    [[nodiscard]] Completion next() { return *take(-1); }
    // rr_queue_next: the oldest completion, waiting up to `timeout` (negative: 0); empty
    // when none came.
    [[nodiscard]] std::optional<Completion> next_for(std::chrono::milliseconds timeout) {
        int64_t ms = timeout.count();
        return take(ms < 0 ? 0 : ms);
    }
    // The oldest completion if one waits, without waiting.
    [[nodiscard]] std::optional<Completion> try_next() { return take(0); }

    // rr_queue_cancel: every outstanding task with `tag` completes with Status::Cancelled.
    void cancel(uint64_t tag) {
        rr_queue *q = raw();
        detail::call([&](rr_error **e) { return rr_queue_cancel(q, tag, e); });
    }

    explicit operator bool() const noexcept { return q_ != nullptr; }
    rr_queue *get() const noexcept { return q_.get(); }

  private:
    rr_queue *raw() const {
        if (q_ == nullptr) {
            detail::null_handle("rr::Queue");
        }
        return q_.get();
    }

    std::optional<Completion> take(int64_t timeout_ms) {
        rr_queue *q = raw();
        rr_completion c{};
        rr_error *err = nullptr;
        rr_status status = rr_queue_next(q, timeout_ms, &c, &err);
        if (status == RR_STATUS_TIMEOUT) {
            rr_error_free(err);
            return std::nullopt;
        }
        detail::check(status, err);
        return std::optional<Completion>(std::in_place, c); // owns c's payload and error from here
    }

    std::unique_ptr<rr_queue, detail::QueueFree> q_;
};

// ---------------------------------------------------------------------------------------
// Worker: the worker side of the protocol (owns an rr_worker)

class Worker {
  public:
    // rr_worker_new_with_protocol over the relay in RR_RELAY (set by the server that
    // started this process), pipes when it is unset. Over pipes, stdout then goes to
    // stderr: never print answers to std::cout.
    explicit Worker(Protocol protocol = Protocol::V1) { connect(nullptr, protocol); }
    // The same over `relay`: "pipes", "tcp://host:port" or "unix://path".
    explicit Worker(const std::string &relay, Protocol protocol = Protocol::V1) { connect(relay.c_str(), protocol); }
    Worker(Worker &&) noexcept = default;
    Worker &operator=(Worker &&) noexcept = default;
    // rr_worker_free: closes the relay.
    ~Worker() = default;

    // rr_worker_receive: the next task; empty when the server said stop (then exit).
    [[nodiscard]] std::optional<Payload> receive() {
        rr_worker *w = raw();
        rr_payload *out = nullptr;
        detail::call([&](rr_error **e) { return rr_worker_receive(w, &out, e); });
        if (out == nullptr) {
            return std::nullopt;
        }
        return Payload(out);
    }
    // rr_worker_respond: the answer (with V2, the last part after send_chunk()).
    void respond(std::string_view context, std::string_view body) {
        rr_worker *w = raw();
        detail::call([&](rr_error **e) {
            return rr_worker_respond(w, detail::bytes(context), context.size(), detail::bytes(body), body.size(), e);
        });
    }
    // rr_worker_send_chunk (V2): one chunk of a streamed answer. Returns false when the
    // host cancelled the stream: the library ended it; go back to receive().
    [[nodiscard]] bool send_chunk(std::string_view context, std::string_view body) {
        rr_worker *w = raw();
        rr_error *err = nullptr;
        rr_status status =
            rr_worker_send_chunk(w, detail::bytes(context), context.size(), detail::bytes(body), body.size(), &err);
        if (status == RR_STATUS_CANCELLED) {
            rr_error_free(err);
            return false;
        }
        detail::check(status, err);
        return true;
    }
    // rr_worker_error: a job error with `message` (any bytes); this worker stays.
    void error(std::string_view message) {
        rr_worker *w = raw();
        detail::call([&](rr_error **e) { return rr_worker_error(w, detail::bytes(message), message.size(), e); });
    }
    // rr_worker_stop: asks to be replaced; the task runs elsewhere. Keep receiving.
    void stop() {
        rr_worker *w = raw();
        detail::call([&](rr_error **e) { return rr_worker_stop(w, e); });
    }

    explicit operator bool() const noexcept { return w_ != nullptr; }
    rr_worker *get() const noexcept { return w_.get(); }

  private:
    void connect(const char *relay, Protocol protocol) {
        rr_worker *raw_worker = nullptr;
        detail::call([&](rr_error **e) {
            return protocol == Protocol::V1
                       ? rr_worker_new(relay, &raw_worker, e)
                       : rr_worker_new_with_protocol(relay, static_cast<uint32_t>(protocol), &raw_worker, e);
        });
        w_.reset(raw_worker);
    }
    rr_worker *raw() const {
        if (w_ == nullptr) {
            detail::null_handle("rr::Worker");
        }
        return w_.get();
    }

    std::unique_ptr<rr_worker, detail::WorkerFree> w_;
};

} // namespace rr

#endif // RR_HPP
