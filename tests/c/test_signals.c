/* test_signals.c: SIGPIPE and the signal masks of the host's threads.
 *
 * A write to a pipe nobody reads raises SIGPIPE, whose default action ends the process.
 * The library promises (rr.h, "Signals"): no call on the host side raises it and no call
 * changes the calling thread's signal mask; the worker side blocks it only for the time
 * of its own writes and gives the mask back. The runner (main.c) counts every SIGPIPE
 * that reaches this process and fails the test that caused one. */
#define _XOPEN_SOURCE 700

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* Whether SIGPIPE is blocked in the calling thread. */
static bool sigpipe_blocked(void)
{
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    return sigismember(&mask, SIGPIPE) == 1;
}

static void unblock_sigpipe(void)
{
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL);
}

/* Records whether SIGPIPE was blocked in the thread of each callback. */
static atomic_int callbacks_with_sigpipe_blocked;
static atomic_int callbacks_seen;
static void mask_callback(void *userdata, const rr_event *event)
{
    (void)userdata;
    (void)event;
    atomic_fetch_add(&callbacks_seen, 1);
    if (sigpipe_blocked()) {
        atomic_fetch_add(&callbacks_with_sigpipe_blocked, 1);
    }
}

/* No call of the host side changes the calling thread's mask: not start, reset or
 * reconfigure (which spawn a one-worker pool on this thread), not exec, stop or free;
 * and the library's threads (the callback's) do not block SIGPIPE for themselves. */
void test_host_calls_leave_the_signal_mask_alone(void)
{
    unblock_sigpipe();
    atomic_store(&callbacks_seen, 0);
    atomic_store(&callbacks_with_sigpipe_blocked, 0);
    rr_error *err = NULL;
    rr_config *config = test_config(test_worker("echo"), "pipes", 1);
    REQUIRE(config != NULL);
    rr_server *s = NULL;
    REQUIRE_STATUS(rr_server_new(config, &s, &err), RR_STATUS_OK, err);
    REQUIRE_STATUS(rr_server_listen(s, mask_callback, NULL, NULL, &err), RR_STATUS_OK, err);
    CHECK(!sigpipe_blocked());
    CHECK_STATUS(rr_server_start(s, &err), RR_STATUS_OK, err);
    CHECK(!sigpipe_blocked());
    CHECK(check_echo(s, "", "one"));
    CHECK(!sigpipe_blocked());
    CHECK_STATUS(rr_server_reset(s, &err), RR_STATUS_OK, err);
    CHECK(!sigpipe_blocked());
    CHECK_STATUS(rr_server_reconfigure(s, config, &err), RR_STATUS_OK, err);
    CHECK(!sigpipe_blocked());
    CHECK(check_echo(s, "", "two"));
    CHECK_STATUS(rr_server_stop(s, &err), RR_STATUS_OK, err);
    CHECK(!sigpipe_blocked());
    rr_server_free(s);
    CHECK(!sigpipe_blocked());
    rr_config_free(config);
    CHECK(atomic_load(&callbacks_seen) > 0);
    CHECK(atomic_load(&callbacks_with_sigpipe_blocked) == 0);
}

/* A task written to a worker that dies while the write waits for room in its pipe, in a
 * thread where SIGPIPE is not blocked, after calls that ran in the same thread (which
 * once left a per-thread note that SIGPIPE was blocked there, stale as soon as the host
 * gave the thread its mask back): no SIGPIPE, and the task, which no worker read, runs
 * on another worker. */
void test_a_write_to_a_dying_worker_raises_no_sigpipe(void)
{
    rr_server *s = start_test_server("echo", 1);
    REQUIRE(s != NULL);
    for (int round = 0; round < 3; round++) {
        CHECK(check_echo(s, "", "warm-up")); /* calls that write from this thread */
        unblock_sigpipe();                   /* the host restores its own mask */
        /* The worker answers this, then exits once 60000 bytes of the next task wait. */
        CHECK(check_echo(s, "!die-when-full:60000", "ready"));
        size_t len = 1 << 20;
        uint8_t *body = malloc(len);
        REQUIRE(body != NULL);
        memset(body, 'p', len);
        rr_payload *answer = NULL;
        rr_error *err = NULL;
        rr_status status = rr_exec(s, NULL, 0, body, len, &answer, &err);
        if (CHECK_STATUS(status, RR_STATUS_OK, err)) {
            size_t got = 0;
            const uint8_t *echoed = rr_payload_body(answer, &got);
            CHECK(got == len && memcmp(echoed, body, len) == 0);
            rr_payload_free(answer);
        }
        rr_error_free(err);
        free(body);
        CHECK(!sigpipe_blocked());
    }
    rr_server_free(s);
}

/* In a child: a worker side over pipes whose host stopped reading. Returns the exit
 * code: 0 when every check held, else the number of the one that failed. */
static int worker_side_child(int to_worker_read, int from_worker_write)
{
    signal(SIGPIPE, SIG_DFL); /* a raised SIGPIPE now ends this child */
    unblock_sigpipe();
    if (dup2(to_worker_read, 0) < 0 || dup2(from_worker_write, 1) < 0) {
        return 20;
    }
    close(to_worker_read);
    close(from_worker_write);
    rr_worker *w = NULL;
    rr_error *err = NULL;
    if (rr_worker_new("pipes", &w, &err) != RR_STATUS_OK) {
        return 21;
    }
    rr_payload *task = NULL;
    if (rr_worker_receive(w, &task, &err) != RR_STATUS_OK || task == NULL) {
        return 22; /* the handshake, answered inside, then the task */
    }
    rr_payload_free(task);
    if (sigpipe_blocked()) {
        return 23;
    }
    /* The host closed its end: the answer cannot be written. */
    rr_status status = rr_worker_respond(w, (const uint8_t *)"c", 1, (const uint8_t *)"answer", 6, &err);
    if (status != RR_STATUS_WORKER_ERROR) {
        return 24;
    }
    rr_error_free(err);
    if (sigpipe_blocked()) {
        return 25; /* the worker side must give the thread its mask back */
    }
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE) == 1) {
        return 26; /* a SIGPIPE it raised must not be left pending */
    }
    rr_worker_free(w);
    return 0;
}

static bool send_frame_to(int fd, uint8_t flags, const char *payload)
{
    uint8_t frame[17 + 64];
    size_t len = strlen(payload);
    frame[0] = flags;
    for (int i = 0; i < 8; i++) {
        frame[1 + i] = (uint8_t)((uint64_t)len >> (8 * i));
        frame[9 + i] = (uint8_t)((uint64_t)len >> (8 * (7 - i)));
    }
    memcpy(frame + 17, payload, len);
    return write(fd, frame, 17 + len) == (ssize_t)(17 + len);
}

/* The worker side over pipes: a write to a host that is gone is RR_STATUS_WORKER_ERROR,
 * not a SIGPIPE, and the thread's mask is as it was before the call. */
void test_worker_side_write_to_a_gone_host_is_an_error(void)
{
    int to_worker[2], from_worker[2], report[2];
    REQUIRE(pipe(to_worker) == 0);
    REQUIRE(pipe(from_worker) == 0);
    REQUIRE(pipe(report) == 0);
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(to_worker[1]);
        close(from_worker[0]);
        close(report[0]);
        unsigned char outcome = (unsigned char)worker_side_child(to_worker[0], from_worker[1]);
        ssize_t written = write(report[1], &outcome, 1);
        (void)written;
        /* Ends without exit-time leak checks (see test_fork.c). */
        raise(SIGKILL);
    }
    close(to_worker[0]);
    close(from_worker[1]);
    close(report[1]);
    /* The host's part: the handshake (CONTROL), read its answer, a task, then leave. */
    CHECK(send_frame_to(to_worker[1], 16, "{\"pid\":1}"));
    uint8_t prefix[17];
    CHECK(read(from_worker[0], prefix, sizeof prefix) == (ssize_t)sizeof prefix);
    close(from_worker[0]); /* nobody reads the worker's answers any more */
    CHECK(send_frame_to(to_worker[1], 16 | 4, "ctx") && send_frame_to(to_worker[1], 4, "body"));
    /* The child reports its outcome, then kills itself: no report means it died early. */
    unsigned char outcome = 255;
    ssize_t got = read(report[0], &outcome, 1);
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    close(to_worker[1]);
    close(report[0]);
    if (got != 1) {
        CHECK(got == 1);
        note("the worker side died before its report: %s %d", WIFSIGNALED(status) ? "signal" : "exit status",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    } else if (!CHECK(outcome == 0)) {
        note("the worker side's check %d failed", outcome);
    }
}
