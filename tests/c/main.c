/*
 * main.c: runner of the C tests of libroadrunner's C interface.
 *
 *   c-tests [-w RR_TEST_WORKER] [-c C_WORKER] [TEST_NAME...]
 *
 * The test worker is target/release/rr-test-worker (option -w or env RR_TEST_WORKER);
 * the C example worker build/worker (option -c or env RR_C_WORKER) is optional. With
 * names, only those tests run. After every test, no child process of this process may be
 * left (zombies count), and no SIGPIPE may have reached this process (the library must
 * shield a host from writes to dead workers). Prints one line per test, then exactly one line
 * "N passed, M failed"; the exit status is 0 iff nothing failed.
 */
#define _XOPEN_SOURCE 700

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

static atomic_int checks_failed_in_test;
static atomic_int sigpipes;

/* A host that does not ignore SIGPIPE must survive a worker that dies: the library has to
 * keep SIGPIPE from its writes to dead workers. The tests count them instead of dying. */
static char sigpipe_thread[32]; /* name of the thread that got the first one */
static void on_sigpipe(int sig)
{
    (void)sig;
    if (atomic_fetch_add(&sigpipes, 1) == 0) {
        /* open/read/close are async-signal-safe */
        int fd = open("/proc/thread-self/comm", O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, sigpipe_thread, sizeof sigpipe_thread - 1);
            sigpipe_thread[n > 0 ? n - 1 : 0] = '\0'; /* drop the newline */
            close(fd);
        }
    }
}
static atomic_int checks_total;

bool check_report(bool ok, const char *file, int line, const char *expr)
{
    atomic_fetch_add(&checks_total, 1);
    if (!ok) {
        atomic_fetch_add(&checks_failed_in_test, 1);
        fprintf(stdout, "    %s:%d: check failed: %s\n", file, line, expr);
        fflush(stdout);
    }
    return ok;
}

bool check_status_report(rr_status got, rr_status want, const rr_error *err, const char *file, int line,
                         const char *expr)
{
    atomic_fetch_add(&checks_total, 1);
    if (got == want) {
        return true;
    }
    atomic_fetch_add(&checks_failed_in_test, 1);
    fprintf(stdout, "    %s:%d: check failed: %s is %u (%s), expected %u (%s); error: %s\n", file, line, expr,
            (unsigned)got, rr_status_str(got), (unsigned)want, rr_status_str(want),
            err != NULL ? rr_error_message(err) : "(none)");
    fflush(stdout);
    return false;
}

void note(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("    ", stdout);
    vfprintf(stdout, format, args);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(args);
}

#define TEST(name) {#name, name}
static const struct {
    const char *name;
    void (*run)(void);
} tests[] = {
    /* test_basics.c */
    TEST(test_version),
    TEST(test_status_str),
    TEST(test_worker_state_str),
    TEST(test_free_null),
    TEST(test_null_arguments_config),
    TEST(test_null_arguments_server),
    TEST(test_null_arguments_worker_side),
    TEST(test_invalid_utf8),
    TEST(test_config_errors),
    /* test_exec.c */
    TEST(test_echo),
    TEST(test_job_error),
    TEST(test_worker_error_crash),
    TEST(test_worker_error_protocol),
    TEST(test_stop_request_bounded),
    TEST(test_timeout),
    TEST(test_exec_ttl),
    TEST(test_queue_full),
    TEST(test_spawn_errors),
    TEST(test_state_errors),
    TEST(test_max_jobs_one),
    TEST(test_env_and_dir),
    TEST(test_workers_snapshot),
    TEST(test_relays),
    /* test_events.c */
    TEST(test_events_lifecycle),
    TEST(test_events_crash_and_stderr),
    TEST(test_callback_replacement),
    /* test_concurrency.c */
    TEST(test_parallel_exec),
    TEST(test_free_during_exec),
    TEST(test_reconfigure_under_load),
    /* test_worker_side.c */
    TEST(test_worker_side_protocol),
    TEST(test_worker_side_env_relay),
    TEST(test_c_worker),
    /* test_signals.c */
    TEST(test_host_calls_leave_the_signal_mask_alone),
    TEST(test_a_write_to_a_dying_worker_raises_no_sigpipe),
    TEST(test_worker_side_write_to_a_gone_host_is_an_error),
    /* test_v2.c */
    TEST(test_v2_settings),
    TEST(test_v2_tasks_and_streams),
    TEST(test_v2_c_worker),
    /* test_queue.c */
    TEST(test_queue_null_arguments),
    TEST(test_queue_submit_not_started),
    TEST(test_queue_relays),
    TEST(test_queue_fd_poll),
    TEST(test_queue_job_and_worker_errors),
    TEST(test_queue_allocate_timeout),
    TEST(test_queue_max_queue),
    TEST(test_queue_cancel),
    TEST(test_queue_free_with_outstanding_tasks),
    TEST(test_queue_server_free_with_waiting_tasks),
    /* test_status.c */
    TEST(test_status_arguments),
    TEST(test_config_differs),
    TEST(test_status_json_and_metrics),
    TEST(test_remove_worker),
    /* test_fork.c */
    TEST(test_fork_child_leaves_the_server_alone),
};

static bool selected(const char *name, int argc, char **argv, int first)
{
    if (first >= argc) {
        return true;
    }
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], name) == 0 || (strncmp(name, "test_", 5) == 0 && strcmp(argv[i], name + 5) == 0)) {
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    int c;
    g_test_worker = getenv("RR_TEST_WORKER");
    g_c_worker = getenv("RR_C_WORKER");
    while ((c = getopt(argc, argv, "w:c:l")) != -1) {
        switch (c) {
        case 'w': g_test_worker = optarg; break;
        case 'c': g_c_worker = optarg; break;
        case 'l':
            for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
                printf("%s\n", tests[i].name);
            }
            return 0;
        default:
            fprintf(stderr, "usage: c-tests [-w RR_TEST_WORKER] [-c C_WORKER] [-l] [TEST_NAME...]\n");
            return 2;
        }
    }
    if (g_test_worker == NULL || g_test_worker[0] == '\0') {
        g_test_worker = "target/release/rr-test-worker";
    }
    if (access(g_test_worker, X_OK) != 0) {
        fprintf(stderr, "c-tests: test worker %s is not executable (set RR_TEST_WORKER or -w)\n", g_test_worker);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    if (g_c_worker != NULL && g_c_worker[0] == '\0') {
        g_c_worker = NULL;
    }
    /* Absolute paths: some tests give the workers another working directory. */
    static char test_worker_path[PATH_MAX], c_worker_path[PATH_MAX];
    if (realpath(g_test_worker, test_worker_path) != NULL) {
        g_test_worker = test_worker_path;
    }
    if (g_c_worker != NULL && realpath(g_c_worker, c_worker_path) != NULL) {
        g_c_worker = c_worker_path;
    }
    /* A hung test must not hang CI: SIGALRM's default action ends the process. */
    alarm(900);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGPIPE, &sa, NULL);

    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (!selected(tests[i].name, argc, argv, optind)) {
            continue;
        }
        atomic_store(&checks_failed_in_test, 0);
        int before = atomic_load(&checks_total);
        int64_t began = now_ms();
        tests[i].run();

        /* No worker (or zombie) may outlive the servers of the test. */
        char children[512];
        int left = count_children(children, sizeof children);
        if (!CHECK(left == 0)) {
            note("%d child process(es) left: %s", left, children);
        }

        int pipes = atomic_exchange(&sigpipes, 0);
        if (!CHECK(pipes == 0)) {
            note("SIGPIPE reached the host %d time(s), first in thread \"%s\": a host without a handler would "
                 "have died",
                 pipes, sigpipe_thread);
        }

        int checks = atomic_load(&checks_total) - before;
        int bad = atomic_load(&checks_failed_in_test);
        printf("%s %s (%d checks, %lld ms)\n", bad == 0 ? "ok  " : "FAIL", tests[i].name, checks,
               (long long)(now_ms() - began));
        fflush(stdout);
        if (bad == 0) {
            passed++;
        } else {
            failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
