/* test_fork.c: a host that forks while it has a server.
 *
 * The child of fork() shares the parent's pipes to the workers but has none of the
 * library's threads: every call on the parent's server must fail with RR_STATUS_STATE
 * there, and rr_server_free must return without stopping the parent's workers. */
#define _XOPEN_SOURCE 700

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* The child's checks; returns the exit code: 0 when all held, else which one failed. */
static int child_checks(rr_server *s)
{
    rr_payload *answer = SENTINEL;
    rr_error *err = NULL;
    rr_status status = rr_exec(s, (const uint8_t *)"", 0, (const uint8_t *)"x", 1, &answer, &err);
    if (status != RR_STATUS_STATE || answer != SENTINEL) {
        return 10;
    }
    if (err == NULL || !contains(rr_error_message(err), "fork()")) {
        return 11;
    }
    rr_error_free(err);
    err = NULL;
    struct rr_pool_stats stats = {.size = sizeof stats};
    if (rr_server_stats(s, &stats, &err) != RR_STATUS_STATE) {
        return 12;
    }
    rr_error_free(err);
    err = NULL;
    if (rr_server_stop(s, &err) != RR_STATUS_STATE) {
        return 13;
    }
    rr_error_free(err);
    /* Must return at once and leave the parent's workers running. */
    rr_server_free(s);
    return 0;
}

/* The pids of the server's workers, sorted into `pids` (room for `max`); the count. */
static size_t worker_pids(rr_server *s, int64_t *pids, size_t max)
{
    rr_worker_info *infos = NULL;
    size_t count = 0;
    rr_error *err = NULL;
    if (!CHECK_STATUS(rr_server_workers(s, &infos, &count, &err), RR_STATUS_OK, err)) {
        rr_error_free(err);
        return 0;
    }
    size_t n = count < max ? count : max;
    for (size_t i = 0; i < n; i++) {
        pids[i] = infos[i].pid;
        for (size_t j = i; j > 0 && pids[j - 1] > pids[j]; j--) {
            int64_t swap = pids[j];
            pids[j] = pids[j - 1];
            pids[j - 1] = swap;
        }
    }
    rr_worker_info_free(infos, count);
    return n;
}

void test_fork_child_leaves_the_server_alone(void)
{
    rr_server *s = start_test_server("echo", 2);
    REQUIRE(s != NULL);
    int64_t before[2] = {0, 0}, after[2] = {0, 0};
    CHECK(worker_pids(s, before, 2) == 2);
    CHECK(check_echo(s, "ctx", "before the fork"));

    int report[2];
    REQUIRE(pipe(report) == 0);
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t child = fork();
    if (child == 0) {
        unsigned char outcome = (unsigned char)child_checks(s);
        ssize_t written = write(report[1], &outcome, 1);
        (void)written;
        /* Ends without exit-time leak checks: what the parent's threads allocated looks
         * lost from here (they do not exist in the child), to valgrind and LSan alike. */
        raise(SIGKILL);
    }
    close(report[1]);
    if (CHECK(child > 0)) {
        unsigned char outcome = 255;
        /* A child that hangs is killed after 30 s rather than holding up the suite. */
        struct pollfd ready = {.fd = report[0], .events = POLLIN, .revents = 0};
        if (!CHECK(poll(&ready, 1, 30000) == 1)) {
            note("the child did not report within 30 s: killed");
            kill(child, SIGKILL);
        } else if (!CHECK(read(report[0], &outcome, 1) == 1 && outcome == 0)) {
            note("the child reported %d (10+ names the failed check, 255 nothing)", outcome);
        }
        int wstatus = 0;
        CHECK(waitpid(child, &wstatus, 0) == child);
    }
    close(report[0]);

    CHECK(worker_pids(s, after, 2) == 2);
    CHECK(before[0] == after[0] && before[1] == after[1]);
    for (int i = 0; i < 10; i++) {
        CHECK(check_echo(s, "ctx", "after the fork"));
    }
    struct rr_pool_stats stats = {.size = sizeof stats};
    rr_error *err = NULL;
    if (CHECK_STATUS(rr_server_stats(s, &stats, &err), RR_STATUS_OK, err)) {
        CHECK(stats.worker_errors == 0 && stats.retired_died == 0);
    }
    rr_error_free(err);
    rr_server_free(s);
}
