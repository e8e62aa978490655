// host.cpp: a C++17 host of libroadrunner, written with include/rr.hpp.
//
//   host-cpp [-r RELAY] [-n WORKERS] [-t THREADS] [-k TASKS_PER_THREAD] -- WORKER_COMMAND
//
// Meant for examples-c/worker.c (build/worker): it runs echo tasks from several
// std::threads and checks the answers, then sends one task with context "error" and
// shows the job error the worker answers with. Exit status 0 iff everything matched.
//
// rr.hpp shows who owns what: every handle lives in an owner (rr::Server, rr::Payload, ...)
// that frees it once, a failed call throws rr::Error (rr::JobError carries the worker's
// bytes), and the event handler is a std::function that the server owns until it is
// destroyed.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rr.hpp"

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

int run(const Options &o) {
    std::mutex print; // declared before the server: the event handler uses it until the server is gone

    rr::Server server(rr::Config(o.command, o.relay).workers(o.workers).allocate_timeout(std::chrono::seconds(30)));
    // Events arrive on a library thread: print them under the same lock as everything else.
    server.listen([&print](const rr::Event &e) {
        std::lock_guard<std::mutex> lock(print);
        std::cout << "event " << static_cast<int32_t>(e.type) << " " << e.name() << " pid=" << e.pid
                  << (e.message ? ": " + *e.message : "") << std::endl;
    });
    server.start();
    for (const rr::WorkerInfo &w : server.workers()) {
        std::lock_guard<std::mutex> lock(print);
        std::cout << "worker pid=" << w.pid << " state=" << w.state_name() << std::endl;
    }

    std::atomic<unsigned> ok{0}, failed{0};
    auto began = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < o.threads; t++) {
        threads.emplace_back([&, t] {
            for (unsigned k = 0; k < o.tasks; k++) {
                std::string body = "cpp-thread-" + std::to_string(t) + "-task-" + std::to_string(k);
                try {
                    rr::Payload answer = server.exec("cpp", body);
                    if (answer.context() == "cpp" && answer.body() == body) {
                        if (ok++ < 3) {
                            std::lock_guard<std::mutex> lock(print);
                            std::cout << "answer: context=" << answer.context() << " body=" << answer.body() << "\n";
                        }
                        continue;
                    }
                    std::lock_guard<std::mutex> lock(print);
                    std::cout << "MISMATCH: sent " << body << ", got " << answer.body() << "\n";
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
        rr::Payload unexpected = server.exec("error", "something went wrong");
        std::lock_guard<std::mutex> lock(print);
        std::cout << "expected a job error, got an answer: " << unexpected.body() << std::endl;
    } catch (const rr::JobError &e) {
        job_error_seen = e.data() == "something went wrong";
        std::lock_guard<std::mutex> lock(print);
        std::cout << "job error (as expected): " << e.what() << " [data: " << e.data() << "]" << std::endl;
    } catch (const rr::Error &e) {
        std::lock_guard<std::mutex> lock(print);
        std::cout << "expected a job error, got: " << e.what() << std::endl;
    }
    // The worker stays in the pool after a job error.
    bool still_works = server.exec("cpp", "after").body() == "after";

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
    std::cout << "host-cpp: libroadrunner " << rr::version() << ", " << o.workers << " workers over " << o.relay
              << ": " << o.command << std::endl;
    try {
        return run(o);
    } catch (const rr::Error &e) {
        std::cerr << "host-cpp: " << e.what() << "\n";
        return 1;
    }
}
