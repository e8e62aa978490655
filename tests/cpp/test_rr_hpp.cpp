// test_rr_hpp.cpp: the tests of include/rr.hpp, the C++ interface, against the real library.
//
//   cpp-tests [TEST_NAME...]          run the tests (all, or those named)
//   cpp-tests --worker 1|2            be a worker written with rr::Worker (the tests start
//                                     this program as one; see worker_main)
//
// Workers: rr-test-worker from RR_TEST_WORKER (default target/release/rr-test-worker),
// the C example worker from RR_C_WORKER (tests that need it are skipped without it),
// and this program itself for the worker side. Built with -fsanitize=address,undefined
// and run with ASAN_OPTIONS=detect_leaks=1: a handle freed twice or never is a failure.
//
// Like the C tests (tests/c/check.h): CHECK(expr) counts a check and prints the failed
// ones, REQUIRE(expr) also returns from the test; a test that throws fails. After every
// test no child process of this one may be left (zombies count). Prints one line per
// test and then "N passed, M failed"; exits non-zero on any failure.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "rr.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------
// The checks

std::atomic<int> g_checks{0};
std::atomic<int> g_failed_in_test{0};
std::mutex g_print;

bool check_report(bool ok, const char *file, int line, const char *expr) {
    g_checks++;
    if (!ok) {
        g_failed_in_test++;
        std::lock_guard<std::mutex> lock(g_print);
        std::printf("    %s:%d: check failed: %s\n", file, line, expr);
        std::fflush(stdout);
    }
    return ok;
}

__attribute__((format(printf, 1, 2))) void note(const char *format, ...) {
    std::lock_guard<std::mutex> lock(g_print);
    std::va_list args;
    va_start(args, format);
    std::printf("    ");
    std::vprintf(format, args);
    std::printf("\n");
    std::fflush(stdout);
    va_end(args);
}

#define CHECK(expr) check_report(static_cast<bool>(expr), __FILE__, __LINE__, #expr)
#define REQUIRE(expr)                                                                                                 \
    do {                                                                                                              \
        if (!CHECK(expr))                                                                                             \
            return;                                                                                                   \
    } while (0)

// Runs f and returns what it threw, when that is an E; notes anything else.
template <class E = rr::Error, class F> std::optional<E> thrown(F &&f) {
    try {
        f();
    } catch (const E &e) {
        return e;
    } catch (const std::exception &e) {
        note("threw another exception: %s", e.what());
        return std::nullopt;
    }
    note("threw nothing");
    return std::nullopt;
}

// Does f throw an rr::Error (or subclass) with `status`?
template <class F> bool throws_status(rr::Status status, F &&f) {
    std::optional<rr::Error> e = thrown(std::forward<F>(f));
    if (e && e->status() != status) {
        note("threw status %s (wanted %s): %s", rr::to_string(e->status()), rr::to_string(status), e->what());
    }
    return e && e->status() == status;
}

// ---------------------------------------------------------------------------------------
// Helpers

std::string g_test_worker; // absolute path of rr-test-worker
std::string g_c_worker;    // absolute path of build/worker, or ""
std::string g_self;        // absolute path of this program

std::string quoted(const std::string &path) {
    std::string out = "'";
    for (char c : path) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

std::string test_worker(const std::string &args = "") {
    return quoted(g_test_worker) + (args.empty() ? "" : " " + args);
}

std::string self_worker(int protocol) { return quoted(g_self) + " --worker " + std::to_string(protocol); }

// A config with test-friendly timeouts (as the C tests: allocate 20 s, destroy 3 s, relay 10 s).
rr::Config test_config(const std::string &command, uint64_t workers) {
    return rr::Config(command).workers(workers).allocate_timeout(20s).destroy_timeout(3s).relay_timeout(10s);
}

rr::Server started(const rr::Config &config) {
    rr::Server server(config);
    server.start();
    return server;
}

bool wait_until(const std::function<bool()> &cond, std::chrono::milliseconds timeout = 10s) {
    auto deadline = Clock::now() + timeout;
    while (!cond()) {
        if (Clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

bool pid_gone(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == -1 && errno == ESRCH; }
bool pid_alive(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0; }

std::vector<int64_t> pids_of(rr::Server &server) {
    std::vector<int64_t> pids;
    for (const rr::WorkerInfo &w : server.workers()) {
        pids.push_back(w.pid);
    }
    return pids;
}

bool any_working(rr::Server &server) {
    for (const rr::WorkerInfo &w : server.workers()) {
        if (w.state == rr::WorkerState::Working) {
            return true;
        }
    }
    return false;
}

int64_t exec_pid(rr::Server &server) { return std::stoll(server.exec("!pid", "").body_string()); }

// A task that runs until the test lets it end: task() is "!read:FIFO", and the worker's
// read of the FIFO blocks while this process holds it open for writing (O_RDWR: opening it
// never blocks); open() writes "gate" and closes it, and the task answers body "gate".
// No timing: held_by(pid) says when the worker is in the task, blocked at the gate.
class Gate {
  public:
    Gate() {
        char tmpl[] = "/tmp/rr-cpp-gate-XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            return;
        }
        dir_ = tmpl;
        path_ = dir_ + "/fifo";
        if (mkfifo(path_.c_str(), 0600) == 0) {
            fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC); // not inherited by the workers
        }
    }
    Gate(const Gate &) = delete;
    Gate &operator=(const Gate &) = delete;
    ~Gate() {
        open();
        if (!path_.empty()) {
            unlink(path_.c_str());
        }
        if (!dir_.empty()) {
            rmdir(dir_.c_str());
        }
    }
    bool ok() const { return fd_ >= 0; }
    std::string task() const { return "!read:" + path_; }
    // Does process pid hold the FIFO open (the worker is reading it)?
    bool held_by(int64_t pid) const {
        const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
        DIR *d = opendir(fds.c_str());
        if (d == nullptr) {
            return false;
        }
        bool found = false;
        while (dirent *entry = readdir(d)) {
            char target[PATH_MAX];
            ssize_t n = readlink((fds + "/" + entry->d_name).c_str(), target, sizeof target - 1);
            if (n > 0 && path_ == std::string(target, static_cast<size_t>(n))) {
                found = true;
                break;
            }
        }
        closedir(d);
        return found;
    }
    // Lets the task end: it reads "gate", then the end of the FIFO.
    void open() {
        if (fd_ >= 0) {
            ssize_t written = ::write(fd_, "gate", 4);
            (void)written;
            ::close(fd_);
            fd_ = -1;
        }
    }

  private:
    std::string dir_, path_;
    int fd_ = -1;
};

// This process's children, zombies included ("pid(comm)state" of each).
std::vector<std::string> children() {
    std::vector<std::string> out;
    DIR *proc = opendir("/proc");
    if (proc == nullptr) {
        return out;
    }
    const std::string me = std::to_string(getpid());
    while (dirent *entry = readdir(proc)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') {
            continue;
        }
        std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
        std::string line;
        if (!std::getline(stat, line)) {
            continue;
        }
        size_t close = line.rfind(')');
        if (close == std::string::npos) {
            continue;
        }
        std::istringstream rest(line.substr(close + 1));
        std::string state, ppid;
        rest >> state >> ppid;
        if (ppid == me) {
            out.push_back(line.substr(0, close + 1) + state);
        }
    }
    closedir(proc);
    return out;
}

// Records events; shared with the handler by shared_ptr, so it outlives the Server.
struct Recorder {
    std::mutex lock;
    std::vector<rr::Event> events;

    void add(const rr::Event &e) {
        std::lock_guard<std::mutex> guard(lock);
        events.push_back(e);
    }
    size_t count(rr::EventType type, const std::function<bool(const rr::Event &)> &pred = nullptr) {
        std::lock_guard<std::mutex> guard(lock);
        return static_cast<size_t>(std::count_if(events.begin(), events.end(), [&](const rr::Event &e) {
            return e.type == type && (!pred || pred(e));
        }));
    }
    bool wait(rr::EventType type, size_t min, const std::function<bool(const rr::Event &)> &pred = nullptr) {
        return wait_until([&] { return count(type, pred) >= min; });
    }
    void dump() {
        std::lock_guard<std::mutex> guard(lock);
        for (const rr::Event &e : events) {
            note("event %d %s pid=%lld %s", static_cast<int>(e.type), e.name(), static_cast<long long>(e.pid),
                 e.message ? e.message->c_str() : "");
        }
    }
};

// Counts destructions: captured by a handler, it shows when the library destroyed it.
struct Token {
    std::atomic<int> *destroyed;
    explicit Token(std::atomic<int> *d) : destroyed(d) {}
    Token(const Token &) = delete;
    Token &operator=(const Token &) = delete;
    ~Token() { (*destroyed)++; }
};

// ---------------------------------------------------------------------------------------
// The owners: move-only, moves that never throw

template <class T> constexpr bool move_only_v =
    !std::is_copy_constructible_v<T> && !std::is_copy_assignable_v<T> && std::is_nothrow_move_constructible_v<T> &&
    std::is_nothrow_move_assignable_v<T>;
static_assert(move_only_v<rr::Config>);
static_assert(move_only_v<rr::Server>);
static_assert(move_only_v<rr::Payload>);
static_assert(move_only_v<rr::Stream>);
static_assert(move_only_v<rr::Queue>);
static_assert(move_only_v<rr::Worker>);
static_assert(std::is_nothrow_copy_constructible_v<rr::Error>);
static_assert(std::is_nothrow_copy_constructible_v<rr::JobError>);
static_assert(std::is_base_of_v<std::runtime_error, rr::Error>);
static_assert(std::is_base_of_v<rr::Error, rr::JobError>);
static_assert(std::is_same_v<std::iterator_traits<rr::Stream::iterator>::iterator_category, std::input_iterator_tag>);

// ---------------------------------------------------------------------------------------
// The tests

void test_version() {
    std::string expected = std::to_string(RR_VERSION_MAJOR) + "." + std::to_string(RR_VERSION_MINOR) + "." +
                           std::to_string(RR_VERSION_PATCH);
    CHECK(expected == rr::version());
    CHECK(std::string(rr::to_string(rr::Status::Timeout)) == rr_status_str(RR_STATUS_TIMEOUT));
    CHECK(std::string(rr::to_string(rr::WorkerState::Ready)) == "ready");
    CHECK(std::string(rr::to_string(rr::EventType::WorkerStderr)) == "worker_stderr");
    CHECK(std::string(rr::to_string(rr::EventType::PoolGrow)) == "pool_grow");
    CHECK(std::string(rr::to_string(rr::EventType::PoolShrink)) == "pool_shrink");
    CHECK(std::string(rr::to_string(rr::EventType::ReconfigureIgnored)) == "reconfigure_ignored");
    CHECK(std::string(rr::to_string(rr::EventType::WorkerRemoved)) == "worker_removed");
    CHECK(static_cast<int>(rr::EventType::PoolGrow) == 307 && static_cast<int>(rr::EventType::WorkerRemoved) == 310);
    CHECK(std::string(rr::to_string(static_cast<rr::EventType>(99999))) == "unknown");
}

void test_exec_echo() {
    rr::Server server = started(test_config(test_worker(), 2));
    rr::Payload answer = server.exec("ctx", "hello");
    CHECK(answer);
    CHECK(answer.context() == "ctx");
    CHECK(answer.body() == "hello");
    CHECK(answer.body_string() == "hello");
    CHECK(answer.context_string() == "ctx");
    CHECK(answer.codec() == rr::Codec::Raw);

    // Any bytes: NUL and high bytes pass through, lengths are kept.
    const std::string binary("a\0b\xff\x01", 5);
    rr::Payload bin = server.exec(std::string_view("\0\0", 2), binary);
    CHECK(bin.body() == binary);
    CHECK(bin.context() == std::string_view("\0\0", 2));

    // Empty context and body.
    rr::Payload empty = server.exec("", "");
    CHECK(empty.context().empty());
    CHECK(empty.body().empty());

    // A large body.
    std::string big(1 << 20, 'x');
    for (size_t i = 0; i < big.size(); i += 4096) {
        big[i] = static_cast<char>('a' + (i / 4096) % 26);
    }
    CHECK(server.exec("big", big).body() == big);

    // An answer outlives its server.
    rr::Payload kept = server.exec("keep", "me");
    server = rr::Server(test_config(test_worker(), 1)); // the old server is freed here
    CHECK(kept.body() == "me");
    CHECK(kept.context() == "keep");
}

void test_exec_c_worker() {
    if (g_c_worker.empty()) {
        note("skipped: RR_C_WORKER is not set");
        return;
    }
    rr::Server server = started(test_config(quoted(g_c_worker), 1));
    CHECK(server.exec("c", "from c++").body() == "from c++");
    auto e = thrown<rr::JobError>([&] { (void)server.exec("error", "c worker says no"); });
    REQUIRE(e);
    CHECK(e->data() == "c worker says no");
    CHECK(server.exec("c", "still here").body() == "still here");
}

void test_job_error() {
    rr::Server server = started(test_config(test_worker(), 1));
    int64_t pid = exec_pid(server);
    const std::string data("job \0failed", 11);
    auto e = thrown<rr::JobError>([&] { (void)server.exec("!error", data); });
    REQUIRE(e);
    CHECK(e->status() == rr::Status::JobError);
    CHECK(e->data() == data);
    CHECK(std::string(e->what()).rfind(rr::to_string(rr::Status::JobError), 0) == 0);
    // Caught as its base, the same object.
    auto base = thrown<rr::Error>([&] { (void)server.exec("!error", "x"); });
    REQUIRE(base);
    CHECK(base->status() == rr::Status::JobError);
    // The worker stays in the pool.
    CHECK(exec_pid(server) == pid);
    rr::Stats stats = server.stats();
    CHECK(stats.job_errors == 2);
}

void test_worker_error() {
    rr::Server server = started(test_config(test_worker(), 1));
    int64_t pid = exec_pid(server);
    std::optional<rr::Error> e = thrown([&] { (void)server.exec("!crash", ""); });
    REQUIRE(e);
    CHECK(e->status() == rr::Status::WorkerError);
    CHECK(dynamic_cast<const rr::JobError *>(&*e) == nullptr);
    CHECK(e->message().find(std::to_string(pid)) != std::string::npos);
    // The pool replaced the worker.
    int64_t replacement = exec_pid(server);
    CHECK(replacement != pid);
    CHECK(pid_gone(pid));
    CHECK(server.stats().worker_errors == 1);
}

void test_allocate_timeout() {
    rr::Server server = started(test_config(test_worker(), 1).allocate_timeout(150ms));
    rr::Queue queue;
    queue.submit(server, "!hang", "busy", 1); // the only worker stays busy until the cancel
    REQUIRE(wait_until([&] { return any_working(server); }));
    auto began = Clock::now();
    CHECK(throws_status(rr::Status::Timeout, [&] { (void)server.exec("a", "b"); }));
    auto waited = Clock::now() - began;
    // It gave up at its timeout: the busy worker never frees up (much room above: CI is slow).
    CHECK(waited >= 140ms);
    CHECK(waited < 15s);
    CHECK(server.stats().timeouts == 1);
    queue.cancel(1); // its worker is killed and replaced
    std::optional<rr::Completion> busy = queue.next_for(30s);
    REQUIRE(busy);
    CHECK(busy->tag() == 1);
    CHECK(busy->status() == rr::Status::Cancelled);
    CHECK(server.exec("after", "cancel").body() == "cancel");
}

void test_exec_ttl() {
    rr::Server server = started(test_config(test_worker(), 1).exec_ttl(300ms));
    int64_t pid = exec_pid(server);
    auto began = Clock::now();
    CHECK(throws_status(rr::Status::ExecTtl, [&] { (void)server.exec("!sleep:20000", ""); }));
    CHECK(Clock::now() - began < 10s);
    CHECK(server.stats().exec_ttl_kills == 1);
    CHECK(exec_pid(server) != pid);
}

void test_queue_full() {
    rr::Server server = started(test_config(test_worker(), 1).max_queue(1));
    rr::Queue queue;
    queue.submit(server, "!hang", "running", 1); // the only worker stays busy until the cancel
    REQUIRE(wait_until([&] { return any_working(server); }));
    queue.submit(server, "waiting", "w", 2);
    REQUIRE(wait_until([&] { return server.stats().waiting == 1; }));
    CHECK(throws_status(rr::Status::QueueFull, [&] { (void)server.exec("a", "b"); }));
    CHECK(throws_status(rr::Status::QueueFull, [&] { queue.submit(server, "c", "d", 3); }));
    CHECK(server.stats().queue_full == 2);
    // Cancelled, the hung task's worker is killed and replaced; the waiting task runs on
    // the replacement.
    queue.cancel(1);
    std::map<uint64_t, rr::Status> outcomes;
    for (int i = 0; i < 2; i++) {
        std::optional<rr::Completion> c = queue.next_for(30s);
        REQUIRE(c);
        outcomes[c->tag()] = c->status();
        if (c->tag() == 2 && c->ok()) {
            CHECK(c->payload().body() == "w");
        }
    }
    CHECK(outcomes.size() == 2);
    CHECK(outcomes[1] == rr::Status::Cancelled);
    CHECK(outcomes[2] == rr::Status::Ok);
    CHECK(!queue.try_next()); // nothing came for the refused task
}

void test_state_errors() {
    rr::Server server(test_config(test_worker(), 1));
    CHECK(throws_status(rr::Status::State, [&] { (void)server.exec("a", "b"); }));
    CHECK(throws_status(rr::Status::State, [&] { server.stop(); }));
    CHECK(throws_status(rr::Status::State, [&] { server.reset(); }));
    CHECK(throws_status(rr::Status::State, [&] { (void)server.workers(); }));
    CHECK(throws_status(rr::Status::State, [&] { (void)server.stats(); }));
    rr::Queue queue;
    CHECK(throws_status(rr::Status::State, [&] { queue.submit(server, "a", "b", 1); }));
    server.start();
    CHECK(throws_status(rr::Status::State, [&] { server.start(); }));
    CHECK(server.exec("a", "b").body() == "b");
    server.stop();
    CHECK(throws_status(rr::Status::State, [&] { (void)server.exec("a", "b"); }));
    CHECK(throws_status(rr::Status::State, [&] { server.reconfigure(test_config(test_worker(), 2)); }));
    // Started again.
    server.start();
    CHECK(server.exec("again", "yes").body() == "yes");
}

void test_config_errors() {
    CHECK(throws_status(rr::Status::Config, [] { rr::Server s(test_config(test_worker(), 0)); }));
    CHECK(throws_status(rr::Status::Config, [] { rr::Server s(test_config(test_worker(), 1).jitter_percent(101)); }));
    CHECK(throws_status(rr::Status::Config, [] { rr::Server s(test_config(test_worker(), 1).env("A=B", "c")); }));
    CHECK(throws_status(rr::Status::Config, [] { rr::Server s(rr::Config(test_worker(), "carrier-pigeon://x")); }));
    CHECK(throws_status(rr::Status::Config,
                        [] { rr::Server s(test_config(test_worker(), 1).dir("/nonexistent/rr-cpp-test")); }));
    // Refused by the setter, the config unchanged.
    rr::Config config = test_config(test_worker(), 1);
    CHECK(throws_status(rr::Status::InvalidArgument, [&] { config.protocol(static_cast<rr::Protocol>(3)); }));
    CHECK(throws_status(rr::Status::InvalidArgument, [&] { config.codec(static_cast<rr::Codec>(3)); }));
    CHECK(throws_status(rr::Status::InvalidArgument, [&] { config.exec_ttl(std::chrono::milliseconds(-1)); }));
    CHECK(throws_status(rr::Status::InvalidArgument, [] { rr::Config bad("\xff\xfe"); }));
    CHECK(throws_status(rr::Status::NullArgument, [] { rr::Config bad(static_cast<const char *>(nullptr)); }));
    rr::Server server = started(config);
    CHECK(server.exec("ok", "ok").body() == "ok");
    // A worker that fails before its handshake: Spawn, with its stderr in the message.
    std::optional<rr::Error> spawn = thrown([] {
        rr::Server s(test_config(test_worker("failboot cpp-boot"), 1));
        s.start();
    });
    REQUIRE(spawn);
    CHECK(spawn->status() == rr::Status::Spawn);
    CHECK(spawn->message().find("cpp-boot") != std::string::npos);
}

void test_moves() {
    // Config
    rr::Config a = test_config(test_worker(), 1);
    rr::Config b(std::move(a));
    CHECK(!a);
    CHECK(b);
    CHECK(throws_status(rr::Status::NullArgument, [&] { a.workers(2); }));
    CHECK(throws_status(rr::Status::NullArgument, [&] { rr::Server s(a); }));
    rr::Config c = test_config(test_worker(), 3);
    c = std::move(b); // c's first config is freed
    CHECK(!b);

    // Server
    rr::Server s1 = started(c);
    int64_t pid1 = exec_pid(s1);
    rr::Server s2(std::move(s1));
    CHECK(!s1);
    CHECK(throws_status(rr::Status::NullArgument, [&] { (void)s1.exec("a", "b"); }));
    CHECK(exec_pid(s2) == pid1);
    rr::Server s3 = started(test_config(test_worker(), 1));
    int64_t pid3 = exec_pid(s3);
    s3 = std::move(s2); // s3's own server is freed now: its worker is gone
    CHECK(pid_gone(pid3));
    CHECK(exec_pid(s3) == pid1);
    rr::Server &alias = s3;
    s3 = std::move(alias); // self-move keeps the server
    CHECK(exec_pid(s3) == pid1);

    // Payload: the bytes do not move with the owner.
    rr::Payload p = s3.exec("ctx", "payload body");
    std::string_view view = p.body();
    rr::Payload q(std::move(p));
    CHECK(!p);
    CHECK(p.body().empty());
    CHECK(q.body().data() == view.data());
    CHECK(q.body() == "payload body");
    rr::Payload r = s3.exec("other", "other");
    r = std::move(q); // r's first payload is freed
    CHECK(r.body() == "payload body");
    rr::Payload &palias = r;
    r = std::move(palias);
    CHECK(r.body() == "payload body");
    rr_payload *raw = r.release();
    CHECK(!r);
    rr_payload_free(raw);

    // Queue
    rr::Queue q1;
    int fd = q1.fd();
    q1.submit(s3, "queued", "moved", 42);
    rr::Queue q2(std::move(q1));
    CHECK(!q1);
    CHECK(q1.fd() == -1);
    CHECK(q2.fd() == fd);
    CHECK(throws_status(rr::Status::NullArgument, [&] { q1.submit(s3, "a", "b", 1); }));
    rr::Completion done = q2.next();
    CHECK(done.tag() == 42);
    CHECK(done.payload().body() == "moved");
    rr::Completion moved_done(std::move(done));
    CHECK(moved_done.payload().body() == "moved");
    rr::Queue q3;
    q3 = std::move(q2); // q3's first queue is freed
    CHECK(q3.fd() == fd);

    // Stream (protocol V1: one chunk)
    rr::Stream st1 = s3.exec_stream("one", "chunk");
    rr::Stream st2(std::move(st1));
    CHECK(!st1);
    CHECK(throws_status(rr::Status::NullArgument, [&] { (void)st1.next(); }));
    std::optional<rr::Payload> chunk = st2.next();
    REQUIRE(chunk);
    CHECK(chunk->body() == "chunk");
    CHECK(!st2.next());
    // Move-assigning over an open stream frees (cancels) it; the worker comes back.
    rr::Stream st3 = s3.exec_stream("first", "stream");
    st3 = std::move(st2);
    CHECK(!st3.next());
    CHECK(s3.exec("after", "streams").body() == "streams");
    // Worker: moved in the worker program (test_worker_side, context "moved").
}

void test_stream_iterator() {
    rr::Server server =
        started(test_config(test_worker(), 1).protocol(rr::Protocol::V2).env("RR_TEST_PROTOCOL", "2"));
    std::vector<std::pair<std::string, std::string>> chunks;
    rr::Stream stream = server.exec_stream("!stream:7", "x");
    for (rr::Payload &chunk : stream) {
        chunks.emplace_back(chunk.context_string(), chunk.body_string());
    }
    REQUIRE(chunks.size() == 8);
    for (size_t i = 0; i < 7; i++) {
        CHECK(chunks[i].first == "chunk");
        CHECK(chunks[i].second == "x-" + std::to_string(i));
    }
    CHECK(chunks[7].first == "last");
    CHECK(chunks[7].second == "x-end");
    CHECK(!stream.next());           // after the end: still the end
    CHECK(stream.begin() == stream.end());

    // Keeping chunks: move them out of the iterator.
    std::vector<rr::Payload> kept;
    for (rr::Payload &chunk : server.exec_stream("!stream:3", "k")) {
        kept.push_back(std::move(chunk));
    }
    REQUIRE(kept.size() == 4);
    CHECK(kept[2].body() == "k-2");
    CHECK(kept[3].body() == "k-end");

    // exec on a streamed answer: one payload, the bodies joined.
    rr::Payload joined = server.exec("!stream:3", "y");
    CHECK(joined.body() == "y-0y-1y-2y-end");

    // A stream that ends with a job error: the loop throws it after the chunks.
    size_t before_error = 0;
    auto e = thrown<rr::JobError>([&] {
        for (rr::Payload &chunk : server.exec_stream("!stream-error:2", "oops")) {
            CHECK(chunk.body() == "oops");
            before_error++;
        }
    });
    REQUIRE(e);
    CHECK(before_error == 2);
    CHECK(e->data() == "oops");

    // Cancel: the next chunk is Status::Cancelled; the worker stays usable.
    int64_t pid = exec_pid(server);
    rr::Stream endless = server.exec_stream("!stream-until-stopped", "z");
    int seen = 0;
    for (auto it = endless.begin(); it != endless.end() && seen < 3; ++it) {
        CHECK(it->body() == "z");
        seen++;
    }
    CHECK(seen == 3);
    endless.cancel();
    CHECK(throws_status(rr::Status::Cancelled, [&] { (void)endless.next(); }));
    CHECK(exec_pid(server) == pid);
    rr::Stats stats = server.stats();
    if (stats.tasks_cancelled) {
        CHECK(*stats.tasks_cancelled == 1);
    }

    // Destroying an unfinished stream cancels it.
    {
        rr::Stream dropped = server.exec_stream("!stream-until-stopped", "d");
        CHECK(dropped.next().has_value());
    }
    CHECK(server.exec("after", "drop").body() == "drop");

    // The C worker's streams (protocol 2): "chunk i of N".
    if (!g_c_worker.empty()) {
        rr::Server c_server = started(test_config(quoted(g_c_worker) + " --protocol 2", 1).protocol(rr::Protocol::V2));
        std::vector<std::string> bodies;
        for (rr::Payload &chunk : c_server.exec_stream("stream", "5")) {
            bodies.push_back(chunk.body_string());
        }
        REQUIRE(bodies.size() >= 5);
        for (size_t i = 0; i < 5; i++) {
            CHECK(bodies[i] == "chunk " + std::to_string(i + 1) + " of 5");
        }
        for (size_t i = 5; i < bodies.size(); i++) {
            CHECK(bodies[i].empty());
        }
    }
}

void test_queue() {
    rr::Server server = started(test_config(test_worker(), 2));
    rr::Queue queue;
    REQUIRE(queue.fd() >= 0);
    CHECK(!queue.try_next());
    pollfd idle{queue.fd(), POLLIN, 0};
    CHECK(poll(&idle, 1, 0) == 0);

    const uint64_t n = 20;
    for (uint64_t tag = 0; tag < n; tag++) {
        queue.submit(server, "ctx-" + std::to_string(tag), "task-" + std::to_string(tag), tag);
    }
    std::map<uint64_t, std::string> bodies;
    while (bodies.size() < n) {
        pollfd ready{queue.fd(), POLLIN, 0};
        REQUIRE(poll(&ready, 1, 20000) == 1);
        CHECK(ready.revents & POLLIN);
        while (std::optional<rr::Completion> c = queue.try_next()) {
            CHECK(c->ok());
            CHECK(c->error() == nullptr);
            CHECK(c->payload().context() == "ctx-" + std::to_string(c->tag()));
            CHECK(bodies.count(c->tag()) == 0);
            bodies[c->tag()] = c->payload().body_string();
        }
    }
    for (uint64_t tag = 0; tag < n; tag++) {
        CHECK(bodies[tag] == "task-" + std::to_string(tag));
    }
    pollfd drained{queue.fd(), POLLIN, 0};
    CHECK(poll(&drained, 1, 0) == 0);
    auto began = Clock::now();
    CHECK(!queue.next_for(50ms));
    CHECK(Clock::now() - began >= 45ms);

    // A job error completes as one: payload() throws it.
    queue.submit(server, "!error", "queued failure", 100);
    rr::Completion failed = queue.next();
    CHECK(failed.tag() == 100);
    CHECK(!failed.ok());
    CHECK(failed.status() == rr::Status::JobError);
    REQUIRE(failed.error() != nullptr);
    const auto *job = dynamic_cast<const rr::JobError *>(failed.error());
    REQUIRE(job != nullptr);
    CHECK(job->data() == "queued failure");
    auto rethrown = thrown<rr::JobError>([&] { (void)failed.payload(); });
    CHECK(rethrown && rethrown->data() == "queued failure");

    // Cancel a running task: it completes Cancelled at once, its worker is replaced.
    queue.submit(server, "!hang", "", 7);
    REQUIRE(wait_until([&] { return any_working(server); }));
    queue.cancel(7);
    std::optional<rr::Completion> cancelled = queue.next_for(10s);
    REQUIRE(cancelled);
    CHECK(cancelled->tag() == 7);
    CHECK(cancelled->status() == rr::Status::Cancelled);
    CHECK(throws_status(rr::Status::Cancelled, [&] { (void)cancelled->payload(); }));
    queue.cancel(12345); // nothing with that tag: nothing happens
    CHECK(server.exec("after", "cancel").body() == "cancel");
}

void test_queue_cancel_waiting_and_server_gone() {
    Gate gate; // task 1 runs until the gate opens: no timing decides what runs when
    REQUIRE(gate.ok());
    rr::Queue queue;
    std::thread caller;
    struct Join {
        std::thread &thread;
        ~Join() {
            if (thread.joinable()) {
                thread.join(); // after the Server, on a failed REQUIRE too: the free wakes it
            }
        }
    } join_caller{caller};
    std::atomic<bool> caller_got_state{false};
    {
        // Room in every timeout: task 1 ends as soon as the gate opens.
        rr::Server server = started(test_config(test_worker(), 1).allocate_timeout(120s).destroy_timeout(30s));
        std::vector<int64_t> pids = pids_of(server);
        REQUIRE(pids.size() == 1);
        queue.submit(server, gate.task(), "first", 1);
        REQUIRE(wait_until([&] { return gate.held_by(pids[0]); }, 30s)); // task 1 runs, held
        queue.submit(server, "second", "second", 2);
        queue.submit(server, "third", "third", 3);
        // A blocking caller waits too. The free wakes it (Status::State) in the same step
        // that takes task 3 out of line; it opens the gate then, so task 1 finishes during
        // the free and task 3 never gets the worker.
        caller = std::thread([&] {
            caller_got_state = throws_status(rr::Status::State, [&] { (void)server.exec("fourth", "fourth"); });
            gate.open();
        });
        REQUIRE(wait_until([&] { return server.stats().waiting == 3; }, 30s));
        queue.cancel(2); // still waiting: completes before the running task
        rr::Completion c = queue.next();
        CHECK(c.tag() == 2);
        CHECK(c.status() == rr::Status::Cancelled);
        // The server is freed with task 1 running, and task 3 and the caller waiting.
    }
    caller.join();
    CHECK(caller_got_state);
    std::map<uint64_t, rr::Status> outcomes;
    for (int i = 0; i < 2; i++) {
        std::optional<rr::Completion> c = queue.next_for(30s);
        REQUIRE(c);
        outcomes[c->tag()] = c->status();
        if (c->tag() == 1 && c->ok()) {
            CHECK(c->payload().body() == "gate");
        }
    }
    CHECK(outcomes[1] == rr::Status::Ok);
    CHECK(outcomes[3] == rr::Status::State);
    CHECK(!queue.try_next());
}

void test_events() {
    std::atomic<int> destroyed{0};
    auto recorder = std::make_shared<Recorder>();
    std::vector<int64_t> pids;
    {
        rr::Server server(test_config(test_worker(), 2));
        {
            auto token = std::make_shared<Token>(&destroyed);
            server.listen([recorder, token](const rr::Event &e) { recorder->add(e); });
        } // only the handler holds the token now
        CHECK(destroyed == 0);
        server.start();
        pids = pids_of(server);
        REQUIRE(pids.size() == 2);
        CHECK(recorder->wait(rr::EventType::ServerStart, 1));
        for (int64_t pid : pids) {
            CHECK(recorder->wait(rr::EventType::WorkerConstruct, 1, [&](const rr::Event &e) { return e.pid == pid; }));
        }
        (void)server.exec("!stderr:hello from c++", "");
        CHECK(recorder->wait(rr::EventType::WorkerStderr, 1, [](const rr::Event &e) {
            return e.message && *e.message == "hello from c++";
        }));

        // A handler that throws: nothing crosses into the library, later events still come.
        std::atomic<int> throwing_calls{0};
        server.listen([&throwing_calls, token = std::make_shared<Token>(&destroyed)](const rr::Event &e) {
            if (e.type == rr::EventType::WorkerStderr) {
                throwing_calls++;
                throw std::runtime_error("thrown by the handler");
            }
        });
        CHECK(destroyed == 1); // the first handler, destroyed when replaced
        (void)server.exec("!stderr:one", "");
        (void)server.exec("!stderr:two", "");
        CHECK(wait_until([&] { return throwing_calls >= 2; }));

        // Unregistering destroys the handler.
        server.listen(nullptr);
        CHECK(destroyed == 2);

        // The last handler is destroyed with the Server, and no call comes after.
        server.listen([recorder, token = std::make_shared<Token>(&destroyed)](const rr::Event &e) {
            recorder->add(e);
        });
        server.reset();
        CHECK(recorder->wait(rr::EventType::PoolConstruct, 2));
    }
    CHECK(destroyed == 3);
    size_t seen = recorder->count(rr::EventType::ServerStop);
    CHECK(seen >= 1);
    for (int64_t pid : pids) {
        CHECK(pid_gone(pid));
    }
    if (g_failed_in_test > 0) {
        recorder->dump();
    }
}

void test_workers_and_stats() {
    std::vector<int64_t> pids;
    {
        rr::Server server = started(test_config(test_worker(), 3));
        auto began = std::chrono::system_clock::now();
        std::vector<rr::WorkerInfo> workers = server.workers();
        REQUIRE(workers.size() == 3);
        std::set<int64_t> distinct;
        for (const rr::WorkerInfo &w : workers) {
            distinct.insert(w.pid);
            pids.push_back(w.pid);
            CHECK(pid_alive(w.pid));
            CHECK(w.state == rr::WorkerState::Ready);
            CHECK(std::string(w.state_name()) == "ready");
            CHECK(w.num_execs == 0);
            CHECK(w.created() <= began + 1s);
            CHECK(w.created() > began - 60s);
        }
        CHECK(distinct.size() == 3);

        rr::Stats before = server.stats();
        CHECK(before.workers == 3);
        CHECK(before.waiting == 0);
        // The counters added in 0.2 (this library has them).
        CHECK(before.workers_spawned == std::optional<uint64_t>(3)); // the first workers
        CHECK(before.retired_shrink == std::optional<uint64_t>(0));
        CHECK(before.retired_removed == std::optional<uint64_t>(0));
        for (int i = 0; i < 5; i++) {
            (void)server.exec("n", std::to_string(i));
        }
        CHECK(thrown<rr::JobError>([&] { (void)server.exec("!error", "e"); }).has_value());
        rr::Stats after = server.stats();
        CHECK(after.tasks_done == before.tasks_done + 6);
        CHECK(after.job_errors == before.job_errors + 1);
        CHECK(after.worker_errors == before.worker_errors);
        uint64_t execs = 0;
        for (const rr::WorkerInfo &w : server.workers()) {
            execs += w.num_execs;
        }
        CHECK(execs == 6);
    }
    // Destroying the Server stopped and reaped its workers.
    for (int64_t pid : pids) {
        CHECK(pid_gone(pid));
    }
}

void test_reset_and_reconfigure() {
    rr::Server server = started(test_config(test_worker(), 2));
    std::vector<int64_t> old = pids_of(server);
    REQUIRE(old.size() == 2);
    server.reset();
    std::vector<int64_t> renewed = pids_of(server);
    REQUIRE(renewed.size() == 2);
    for (int64_t pid : renewed) {
        CHECK(std::find(old.begin(), old.end(), pid) == old.end());
    }
    // The old pool is retired in the background.
    for (int64_t pid : old) {
        CHECK(wait_until([&] { return pid_gone(pid); }));
    }

    server.reconfigure(test_config(test_worker(), 3).env("RR_CPP_TEST", "reconfigured"));
    CHECK(server.workers().size() == 3);
    CHECK(server.exec("!env:RR_CPP_TEST", "").body() == "reconfigured");
    for (int64_t pid : renewed) {
        CHECK(wait_until([&] { return pid_gone(pid); }));
    }

    // The relay is the listener's: a reconfigure ignores it (as RoadRunner's does),
    // applies the rest, and says so with a reconfigure_ignored event.
    auto recorder = std::make_shared<Recorder>();
    server.listen([recorder](const rr::Event &e) { recorder->add(e); });
    server.reconfigure(rr::Config(test_worker(), "unix:///tmp/rr-cpp-never.sock")
                           .workers(3)
                           .allocate_timeout(20s)
                           .destroy_timeout(3s)
                           .env("RR_CPP_TEST", "reconfigured"));
    CHECK(server.workers().size() == 3);
    CHECK(access("/tmp/rr-cpp-never.sock", F_OK) != 0);
    CHECK(recorder->wait(rr::EventType::ReconfigureIgnored, 1, [](const rr::Event &e) {
        return e.pid == -1 && e.message && e.message->find("rr-cpp-never.sock") != std::string::npos;
    }));
    if (g_failed_in_test > 0) {
        recorder->dump();
    }
    // New workers that fail to start: Spawn, the old pool keeps running.
    CHECK(throws_status(rr::Status::Spawn, [&] { server.reconfigure(test_config(test_worker("failboot"), 1)); }));
    CHECK(server.exec("!env:RR_CPP_TEST", "").body() == "reconfigured");

    // A stopped server is not reconfigured; started again, it has the last configuration.
    server.stop();
    CHECK(throws_status(rr::Status::State, [&] { server.reset(); }));
    server.start();
    CHECK(server.workers().size() == 3);
    CHECK(server.exec("!env:RR_CPP_TEST", "").body() == "reconfigured");
}

void test_threads() {
    rr::Server server = started(test_config(test_worker(), 3));
    std::atomic<int> matched{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; t++) {
        threads.emplace_back([&, t] {
            for (int k = 0; k < 50; k++) {
                std::string body = "t" + std::to_string(t) + "k" + std::to_string(k);
                try {
                    if (server.exec("thread", body).body() == body) {
                        matched++;
                    }
                } catch (const rr::Error &e) {
                    note("task failed: %s", e.what());
                }
            }
        });
    }
    for (std::thread &t : threads) {
        t.join();
    }
    CHECK(matched == 300);
}

void test_worker_side(rr::Protocol protocol) {
    int number = static_cast<int>(protocol);
    std::vector<int64_t> pids;
    {
        auto recorder = std::make_shared<Recorder>();
        rr::Server server(test_config(self_worker(number), 2).protocol(protocol));
        server.listen([recorder](const rr::Event &e) { recorder->add(e); });
        server.start();
        pids = pids_of(server);
        CHECK(server.exec("echo", "from the host").body() == "from the host");
        const std::string binary("\0\x01\xfe", 3);
        CHECK(server.exec(binary, binary).context() == binary);
        // The worker moved its rr::Worker around before use.
        CHECK(server.exec("moved", "").body() == "ok");
        auto e = thrown<rr::JobError>([&] { (void)server.exec("error", "worker side says no"); });
        CHECK(e && e->data() == "worker side says no");

        // A stop request: the task runs on the other worker, this one is replaced.
        int64_t pid = std::stoll(server.exec("pid", "").body_string());
        rr::Payload answer = server.exec("stop-if", std::to_string(pid));
        CHECK(answer.context() == "stop-if");
        CHECK(answer.body() != std::to_string(pid)); // answered elsewhere: its pid is in the body
        CHECK(wait_until([&] {
            std::vector<int64_t> now = pids_of(server);
            return now.size() == 2 && std::find(now.begin(), now.end(), pid) == now.end();
        }));
        CHECK(wait_until([&] { return pid_gone(pid); }));

        if (protocol == rr::Protocol::V2) {
            std::vector<std::string> bodies;
            for (rr::Payload &chunk : server.exec_stream("stream", "4")) {
                bodies.push_back(chunk.body_string());
            }
            CHECK((bodies == std::vector<std::string>{"chunk 1 of 4", "chunk 2 of 4", "chunk 3 of 4", "chunk 4 of 4",
                                                      "end"}));
            // The host cancels: the worker's send_chunk returns false, it says so on stderr.
            rr::Stream endless = server.exec_stream("forever", "f");
            CHECK(endless.next().has_value());
            endless.cancel();
            CHECK(recorder->wait(rr::EventType::WorkerStderr, 1, [](const rr::Event &ev) {
                return ev.message && *ev.message == "send_chunk: cancelled by the host";
            }));
            CHECK(server.exec("echo", "after cancel").body() == "after cancel");
        }
        for (int64_t p : pids_of(server)) {
            pids.push_back(p);
        }
        if (g_failed_in_test > 0) {
            recorder->dump();
        }
    }
    for (int64_t pid : pids) {
        CHECK(pid_gone(pid));
    }
}

void test_worker_side_v1() { test_worker_side(rr::Protocol::V1); }
void test_worker_side_v2() { test_worker_side(rr::Protocol::V2); }

void test_status_and_elastic() {
    rr::Config config = test_config(test_worker(), 1).max_workers(3).spawn_rate(2).scale_after(5ms).scale_idle(500ms);
    config.name("cpp-pool");
    CHECK(!config.differs(test_config(test_worker("other"), 2)));
    CHECK(config.differs(rr::Config(test_worker(), "unix:///tmp/rr-cpp-other.sock")));
    rr::Config empty = test_config(test_worker(), 1);
    rr::Config taken(std::move(empty));
    CHECK(config.differs(empty)); // an empty Config differs from everything
    auto recorder = std::make_shared<Recorder>();
    rr::Server server(config);
    server.listen([recorder](const rr::Event &e) { recorder->add(e); });
    server.start();
    CHECK(server.stats().workers_spawned == std::optional<uint64_t>(1)); // the floor
    std::string json = server.status_json();
    CHECK(json.find("cpp-pool") != std::string::npos);
    std::string metrics = server.metrics();
    CHECK(metrics.size() >= 6 && metrics.compare(metrics.size() - 6, 6, "# EOF\n") == 0);
    CHECK(metrics.find("cpp-pool") != std::string::npos);
    int64_t pid = exec_pid(server);
    server.remove_worker(pid, true);
    CHECK(wait_until([&] { return pid_gone(pid); }));
    CHECK(recorder->wait(rr::EventType::WorkerRemoved, 1, [&](const rr::Event &e) { return e.pid == pid; }));
    CHECK(wait_until([&] { return server.stats().retired_removed == std::optional<uint64_t>(1); }));
    CHECK(throws_status(rr::Status::InvalidArgument, [&] { server.remove_worker(1, false); }));
    CHECK(server.exec("a", "b").body() == "b");
    CHECK(server.stats().workers_spawned.value_or(0) >= 2); // the replacement

    // Three tasks of 300 ms at once: callers wait past scale_after, the pool grows; its
    // extra workers retire once idle past scale_idle.
    rr::Queue queue;
    for (uint64_t tag = 1; tag <= 3; tag++) {
        queue.submit(server, "!sleep:300", "grow", tag);
    }
    for (int i = 0; i < 3; i++) {
        std::optional<rr::Completion> c = queue.next_for(30s);
        REQUIRE(c);
        CHECK(c->ok());
    }
    CHECK(recorder->wait(rr::EventType::PoolGrow, 1, [](const rr::Event &e) { return e.pid == -1 && e.message; }));
    CHECK(recorder->wait(rr::EventType::PoolShrink, 1, [](const rr::Event &e) { return e.pid > 0; }));
    CHECK(wait_until([&] { return server.stats().retired_shrink.value_or(0) >= 1; }, 30s));
    CHECK(wait_until([&] { return server.workers().size() == 1; }, 30s));
    if (g_failed_in_test > 0) {
        recorder->dump();
    }
}

struct Test {
    const char *name;
    void (*run)();
};

const Test TESTS[] = {
    {"version", test_version},
    {"exec_echo", test_exec_echo},
    {"exec_c_worker", test_exec_c_worker},
    {"job_error", test_job_error},
    {"worker_error", test_worker_error},
    {"allocate_timeout", test_allocate_timeout},
    {"exec_ttl", test_exec_ttl},
    {"queue_full", test_queue_full},
    {"state_errors", test_state_errors},
    {"config_errors", test_config_errors},
    {"moves", test_moves},
    {"stream_iterator", test_stream_iterator},
    {"queue", test_queue},
    {"queue_cancel_waiting_and_server_gone", test_queue_cancel_waiting_and_server_gone},
    {"events", test_events},
    {"workers_and_stats", test_workers_and_stats},
    {"reset_and_reconfigure", test_reset_and_reconfigure},
    {"threads", test_threads},
    {"worker_side_v1", test_worker_side_v1},
    {"worker_side_v2", test_worker_side_v2},
    {"status_and_elastic", test_status_and_elastic},
};

// ---------------------------------------------------------------------------------------
// The worker program (cpp-tests --worker 1|2), written with rr::Worker.
//
// Echoes every task, except by context:
//   "error":   a job error whose message is the body;
//   "pid":     answers body = its pid;
//   "stop-if": asks to be replaced when the body is its pid, else answers body = its pid;
//   "moved":   answers "ok" when the rr::Worker it moved from is empty and throws NullArgument;
//   "stream":  (V2) N chunks "chunk i of N", N the body, then a last part "end";
//   "forever": (V2) chunks until the host cancels, then "send_chunk: cancelled by the host"
//              on stderr.

std::string moved_from_report(rr::Worker &moved_from) {
    if (moved_from) {
        return "moved-from worker still holds a handle";
    }
    try {
        (void)moved_from.receive();
    } catch (const rr::Error &e) {
        return e.status() == rr::Status::NullArgument ? "ok" : std::string("wrong status: ") + e.what();
    }
    return "moved-from worker did not throw";
}

int worker_main(rr::Protocol protocol) {
    try {
        rr::Worker first(protocol);
        rr::Worker worker(std::move(first));
        rr::Worker spare(std::move(worker));
        worker = std::move(spare); // back: move-assignment too
        const std::string pid = std::to_string(getpid());
        while (std::optional<rr::Payload> task = worker.receive()) {
            std::string_view context = task->context();
            std::string_view body = task->body();
            if (context == "error") {
                worker.error(body);
            } else if (context == "pid") {
                worker.respond("pid", pid);
            } else if (context == "stop-if") {
                if (body == pid) {
                    worker.stop();
                } else {
                    worker.respond("stop-if", pid);
                }
            } else if (context == "moved") {
                worker.respond("moved", moved_from_report(first));
            } else if (context == "stream" && protocol == rr::Protocol::V2) {
                int n = std::atoi(std::string(body).c_str());
                bool sent = true;
                for (int i = 1; i <= n && sent; i++) {
                    sent = worker.send_chunk("stream", "chunk " + std::to_string(i) + " of " + std::to_string(n));
                }
                if (sent) {
                    worker.respond("stream", "end");
                }
            } else if (context == "forever" && protocol == rr::Protocol::V2) {
                while (worker.send_chunk("forever", body)) {
                    std::this_thread::sleep_for(1ms);
                }
                std::fprintf(stderr, "send_chunk: cancelled by the host\n");
                std::fflush(stderr);
            } else {
                worker.respond(context, body);
            }
        }
        return 0;
    } catch (const rr::Error &e) {
        std::fprintf(stderr, "cpp-tests worker: %s\n", e.what());
        return 1;
    }
}

std::string absolute(const char *path) {
    char resolved[PATH_MAX];
    return realpath(path, resolved) != nullptr ? std::string(resolved) : std::string(path);
}

bool selected(const char *name, int argc, char **argv) {
    if (argc <= 1) {
        return true;
    }
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], name) == 0 || (std::string("test_") + name) == argv[i]) {
            return true;
        }
    }
    return false;
}

} // namespace

int main(int argc, char **argv) {
    if (argc == 3 && std::strcmp(argv[1], "--worker") == 0) {
        return worker_main(std::strcmp(argv[2], "2") == 0 ? rr::Protocol::V2 : rr::Protocol::V1);
    }
    const char *test_worker_env = std::getenv("RR_TEST_WORKER");
    g_test_worker = absolute(test_worker_env != nullptr && *test_worker_env != '\0' ? test_worker_env
                                                                                     : "target/release/rr-test-worker");
    if (access(g_test_worker.c_str(), X_OK) != 0) {
        std::fprintf(stderr, "cpp-tests: test worker %s is not executable (set RR_TEST_WORKER)\n",
                     g_test_worker.c_str());
        std::printf("0 passed, 1 failed\n");
        return 1;
    }
    const char *c_worker_env = std::getenv("RR_C_WORKER");
    if (c_worker_env != nullptr && *c_worker_env != '\0') {
        g_c_worker = absolute(c_worker_env);
    }
    g_self = absolute("/proc/self/exe");
    // A hung test must not hang CI.
    alarm(900);
    // A host must survive its workers' deaths without SIGPIPE handling of its own (rr.h).

    int passed = 0, failed = 0;
    auto all_began = Clock::now();
    for (const Test &test : TESTS) {
        if (!selected(test.name, argc, argv)) {
            continue;
        }
        g_failed_in_test = 0;
        int before = g_checks;
        auto began = Clock::now();
        try {
            test.run();
        } catch (const std::exception &e) {
            CHECK(!"the test threw");
            note("%s", e.what());
        }
        std::vector<std::string> left = children();
        if (!CHECK(left.empty())) {
            for (const std::string &child : left) {
                note("child left: %s", child.c_str());
            }
        }
        long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count();
        bool ok = g_failed_in_test == 0;
        std::printf("%s %s (%d checks, %lld ms)\n", ok ? "ok  " : "FAIL", test.name, g_checks - before, ms);
        std::fflush(stdout);
        (ok ? passed : failed)++;
    }
    long long total = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - all_began).count();
    std::printf("%d passed, %d failed (%d checks, %lld ms)\n", passed, failed, g_checks.load(), total);
    return failed == 0 && passed > 0 ? 0 : 1;
}
