// host.cpp: a C++17 host of libroadrunner, with small RAII wrappers over the C interface.
//
//   host-cpp [-r RELAY] [-n WORKERS] [-t THREADS] [-k TASKS_PER_THREAD] -- WORKER_COMMAND
//
// Meant for examples-c/worker.c (build/worker): it runs echo tasks from several
// std::threads and checks the answers, then sends one task with context "error" and
// shows the job error the worker answers with. Exit status 0 iff everything matched.
//
// The wrappers show who owns what: every handle the library returns lives in a
// std::unique_ptr whose deleter calls the matching rr_*_free, a failed call becomes an
// rr::Error exception (status + message + the worker's bytes for a job error), and the
// event callback is a std::function owned by the library until it calls userdata_free.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "rr.h"

namespace rr {

struct ErrorDeleter {
    void operator()(rr_error *e) const noexcept { rr_error_free(e); }
};
struct ConfigDeleter {
    void operator()(rr_config *c) const noexcept { rr_config_free(c); }
};
struct ServerDeleter {
    void operator()(rr_server *s) const noexcept { rr_server_free(s); }
};
struct PayloadDeleter {
    void operator()(rr_payload *p) const noexcept { rr_payload_free(p); }
};

using ErrorPtr = std::unique_ptr<rr_error, ErrorDeleter>;
using ConfigPtr = std::unique_ptr<rr_config, ConfigDeleter>;
using ServerPtr = std::unique_ptr<rr_server, ServerDeleter>;
using PayloadPtr = std::unique_ptr<rr_payload, PayloadDeleter>;

// A failed call: its status, the library's message, and for a job error the worker's bytes.
class Error : public std::runtime_error {
  public:
    Error(rr_status status, const std::string &message, std::string data)
        : std::runtime_error(std::string(rr_status_str(status)) + ": " + message), status_(status),
          data_(std::move(data)) {}
    rr_status status() const noexcept { return status_; }
    const std::string &data() const noexcept { return data_; }

  private:
    rr_status status_;
    std::string data_;
};

// Throws rr::Error for a failed status; takes ownership of `raw` either way.
inline void check(rr_status status, rr_error *raw) {
    ErrorPtr err(raw);
    if (status == RR_STATUS_OK) {
        return;
    }
    std::string message = err ? rr_error_message(err.get()) : "(no details)";
    std::string data;
    if (err) {
        size_t len = 0;
        const uint8_t *bytes = rr_error_data(err.get(), &len);
        if (bytes != nullptr && len > 0) {
            data.assign(reinterpret_cast<const char *>(bytes), len);
        }
    }
    throw Error(status, message, std::move(data));
}

inline const uint8_t *bytes(std::string_view s) { return reinterpret_cast<const uint8_t *>(s.data()); }

// A worker's answer, copied out of the rr_payload (which is freed at once).
struct Answer {
    std::string context;
    std::string body;
};

class Config {
  public:
    Config(const std::string &command, const std::string &relay) {
        rr_config *raw = nullptr;
        rr_error *err = nullptr;
        rr_status status = rr_config_new(command.c_str(), relay.c_str(), &raw, &err);
        check(status, err);
        config_.reset(raw);
    }
    Config &workers(uint64_t n) {
        rr_config_set_num_workers(config_.get(), n);
        return *this;
    }
    Config &allocate_timeout(std::chrono::milliseconds ms) {
        rr_config_set_allocate_timeout_ms(config_.get(), static_cast<uint64_t>(ms.count()));
        return *this;
    }
    Config &env(const std::string &key, const std::string &value) {
        rr_error *err = nullptr;
        rr_status status = rr_config_set_env(config_.get(), key.c_str(), value.c_str(), &err);
        check(status, err);
        return *this;
    }
    const rr_config *get() const noexcept { return config_.get(); }

  private:
    ConfigPtr config_;
};

// The event callback: a std::function owned by the library, deleted by userdata_free.
using EventHandler = std::function<void(int32_t type, int64_t pid, const char *message)>;

class Server {
  public:
    explicit Server(const Config &config) {
        rr_server *raw = nullptr;
        rr_error *err = nullptr;
        rr_status status = rr_server_new(config.get(), &raw, &err);
        check(status, err);
        server_.reset(raw);
    }
    // Freeing stops the server if it runs; after it, no callback runs.
    ~Server() = default;
    Server(Server &&) noexcept = default;
    Server &operator=(Server &&) noexcept = default;

    void listen(EventHandler handler) {
        auto *owned = new EventHandler(std::move(handler));
        rr_error *err = nullptr;
        rr_status status = rr_server_listen(server_.get(), &Server::trampoline, owned, &Server::release, &err);
        if (status != RR_STATUS_OK) {
            delete owned; // not registered: still ours
        }
        check(status, err);
    }
    void start() {
        rr_error *err = nullptr;
        rr_status status = rr_server_start(server_.get(), &err);
        check(status, err);
    }
    void stop() {
        rr_error *err = nullptr;
        rr_status status = rr_server_stop(server_.get(), &err);
        check(status, err);
    }
    // Runs one task; safe from any number of threads at once.
    Answer exec(std::string_view context, std::string_view body) const {
        rr_payload *raw = nullptr;
        rr_error *err = nullptr;
        rr_status status = rr_exec(server_.get(), bytes(context), context.size(), bytes(body), body.size(), &raw, &err);
        check(status, err);
        PayloadPtr payload(raw);
        size_t context_len = 0, body_len = 0;
        const uint8_t *c = rr_payload_context(payload.get(), &context_len);
        const uint8_t *b = rr_payload_body(payload.get(), &body_len);
        return Answer{std::string(reinterpret_cast<const char *>(c), context_len),
                      std::string(reinterpret_cast<const char *>(b), body_len)};
    }
    std::vector<rr_worker_info> workers() const {
        rr_worker_info *raw = nullptr;
        size_t len = 0;
        rr_error *err = nullptr;
        rr_status status = rr_server_workers(server_.get(), &raw, &len, &err);
        check(status, err);
        std::vector<rr_worker_info> out(raw, raw + len);
        rr_worker_info_free(raw, len);
        return out;
    }

  private:
    static void trampoline(void *userdata, const rr_event *event) {
        try {
            (*static_cast<EventHandler *>(userdata))(rr_event_type(event), rr_event_pid(event),
                                                     rr_event_message(event));
        } catch (...) {
            // No exception may cross into the library.
        }
    }
    static void release(void *userdata) { delete static_cast<EventHandler *>(userdata); }

    ServerPtr server_;
};

} // namespace rr

namespace {

struct Options {
    std::string relay = "pipes";
    std::string command;
    uint64_t workers = 2;
    unsigned threads = 4;
    unsigned tasks = 250;
};

[[noreturn]] void usage() {
    std::cerr << "usage: host-cpp [-r RELAY] [-n WORKERS] [-t THREADS] [-k TASKS_PER_THREAD] -- WORKER_COMMAND\n"
                 "  the worker must behave like examples-c/worker.c (echo; context \"error\" = job error)\n";
    std::exit(2);
}

unsigned long number(const char *text) {
    char *end = nullptr;
    unsigned long n = std::strtoul(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || n == 0) {
        usage();
    }
    return n;
}

Options parse(int argc, char **argv) {
    Options o;
    int i = 1;
    for (; i < argc; i++) {
        std::string_view a = argv[i];
        if (a == "--") {
            i++;
            break;
        }
        if (i + 1 >= argc) {
            usage();
        }
        if (a == "-r") {
            o.relay = argv[++i];
        } else if (a == "-n") {
            o.workers = number(argv[++i]);
        } else if (a == "-t") {
            o.threads = static_cast<unsigned>(number(argv[++i]));
        } else if (a == "-k") {
            o.tasks = static_cast<unsigned>(number(argv[++i]));
        } else {
            usage();
        }
    }
    if (i != argc - 1) {
        usage();
    }
    o.command = argv[i];
    return o;
}

const char *event_name(int32_t type) {
    switch (type) {
    case RR_EVENT_WORKER_CONSTRUCT: return "worker_construct";
    case RR_EVENT_WORKER_DESTRUCT: return "worker_destruct";
    case RR_EVENT_WORKER_KILL: return "worker_kill";
    case RR_EVENT_WORKER_ERROR: return "worker_error";
    case RR_EVENT_WORKER_DEAD: return "worker_dead";
    case RR_EVENT_POOL_ERROR: return "pool_error";
    case RR_EVENT_SERVER_START: return "server_start";
    case RR_EVENT_SERVER_STOP: return "server_stop";
    case RR_EVENT_SERVER_FAILURE: return "server_failure";
    case RR_EVENT_POOL_CONSTRUCT: return "pool_construct";
    case RR_EVENT_POOL_DESTRUCT: return "pool_destruct";
    case RR_EVENT_WORKER_STDERR: return "worker_stderr";
    default: return "unknown";
    }
}

int run(const Options &o) {
    std::mutex print; // declared before the server: the callback uses it until the server is gone

    rr::Server server(rr::Config(o.command, o.relay).workers(o.workers).allocate_timeout(std::chrono::seconds(30)));
    // Events arrive on a library thread: print them under the same lock as everything else.
    server.listen([&](int32_t type, int64_t pid, const char *message) {
        std::lock_guard<std::mutex> lock(print);
        std::cout << "event " << type << " " << event_name(type) << " pid=" << pid
                  << (message ? std::string(": ") + message : "") << std::endl;
    });
    server.start();
    for (const rr_worker_info &w : server.workers()) {
        std::lock_guard<std::mutex> lock(print);
        std::cout << "worker pid=" << w.pid << " state=" << rr_worker_state_str(w.state) << std::endl;
    }

    std::atomic<unsigned> ok{0}, failed{0};
    auto began = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < o.threads; t++) {
        threads.emplace_back([&, t] {
            for (unsigned k = 0; k < o.tasks; k++) {
                std::string body = "cpp-thread-" + std::to_string(t) + "-task-" + std::to_string(k);
                try {
                    rr::Answer answer = server.exec("cpp", body);
                    if (answer.context == "cpp" && answer.body == body) {
                        if (ok++ < 3) {
                            std::lock_guard<std::mutex> lock(print);
                            std::cout << "answer: context=" << answer.context << " body=" << answer.body << "\n";
                        }
                        continue;
                    }
                    std::lock_guard<std::mutex> lock(print);
                    std::cout << "MISMATCH: sent " << body << ", got " << answer.body << "\n";
                } catch (const rr::Error &e) {
                    std::lock_guard<std::mutex> lock(print);
                    std::cout << "task failed: " << e.what() << "\n";
                }
                failed++;
            }
        });
    }
    for (std::thread &t : threads) {
        t.join();
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();

    // A job error: the worker answers context "error" with an error whose message is the body.
    bool job_error_seen = false;
    try {
        server.exec("error", "something went wrong");
        std::lock_guard<std::mutex> lock(print);
        std::cout << "expected a job error, got an answer" << std::endl;
    } catch (const rr::Error &e) {
        job_error_seen = e.status() == RR_STATUS_JOB_ERROR && e.data() == "something went wrong";
        std::lock_guard<std::mutex> lock(print);
        std::cout << "job error (as expected): " << e.what() << " [data: " << e.data() << "]" << std::endl;
    }
    // The worker stays in the pool after a job error.
    bool still_works = server.exec("cpp", "after").body == "after";

    unsigned total = o.threads * o.tasks;
    {
        std::lock_guard<std::mutex> lock(print);
        std::cout << total << " tasks, " << failed.load() << " failed\n";
        std::cout << "tasks/s: " << static_cast<long long>(seconds > 0 ? ok.load() / seconds : 0) << std::endl;
    }
    server.stop();
    return failed.load() == 0 && ok.load() == total && job_error_seen && still_works ? 0 : 1;
}

} // namespace

int main(int argc, char **argv) {
    Options o = parse(argc, argv);
    std::cout << "host-cpp: libroadrunner " << rr_version() << ", " << o.workers << " workers over " << o.relay
              << ": " << o.command << std::endl;
    try {
        return run(o);
    } catch (const rr::Error &e) {
        std::cerr << "host-cpp: " << e.what() << "\n";
        return 1;
    }
}
