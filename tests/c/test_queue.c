/* test_queue.c: the completion queue through the C interface: rr_queue_new, rr_queue_fd,
 * rr_exec_submit, rr_queue_next, rr_queue_cancel, rr_queue_free. NULL arguments,
 * servers that are not started, many tasks over every relay, the descriptor under
 * poll(), the statuses a task can complete with (job and worker errors, allocate
 * timeout, max_queue at submission, cancels of waiting and running tasks), a queue
 * freed with tasks outstanding, and a server freed with tasks waiting. Every payload and
 * error a completion carries is freed (make asan and make valgrind run these tests). */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* How long a test waits for a completion that must come (generous: valgrind is slow). */
#define COMPLETION_WAIT_MS 20000

static rr_queue *new_queue(void)
{
    rr_queue *q = NULL;
    rr_error *err = NULL;
    rr_status status = rr_queue_new(&q, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (ok && !CHECK(q != NULL)) {
        return NULL;
    }
    return ok ? q : NULL;
}

/* A new queue for a test of server `s`; on failure (counted) frees `s` and gives NULL. */
static rr_queue *queue_for(rr_server *s)
{
    rr_queue *q = new_queue();
    if (!CHECK(q != NULL)) {
        rr_server_free(s);
    }
    return q;
}

/* Submits a task of NUL-terminated context and body with `tag`; true if accepted. */
static bool submit_text(rr_server *s, rr_queue *q, const char *context, const char *body, uint64_t tag)
{
    rr_error *err = NULL;
    rr_status status = rr_exec_submit(s, q, (const uint8_t *)context, strlen(context), (const uint8_t *)body,
                                      strlen(body), tag, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    if (!ok) {
        note("submit of tag %" PRIu64 ", context \"%s\"", tag, context);
    }
    rr_error_free(err);
    return ok;
}

/* A completion filled with values the library never writes, to see that it did not. */
static rr_completion untouched_completion(void)
{
    rr_completion c = {.tag = 0xdeadbeef, .status = 0x5eed, .payload = SENTINEL, .error = SENTINEL};
    return c;
}

static bool is_untouched(const rr_completion *c)
{
    return c->tag == 0xdeadbeef && c->status == 0x5eed && c->payload == SENTINEL && c->error == SENTINEL;
}

/* Takes one completion, waiting up to timeout_ms; checks the rules every completion
 * follows (an answer and no error on OK; else no answer, and an error of that status).
 * On false, *out holds nothing to free. */
static bool take(rr_queue *q, int64_t timeout_ms, rr_completion *out)
{
    *out = untouched_completion();
    rr_error *err = NULL;
    rr_status status = rr_queue_next(q, timeout_ms, out, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (!ok) {
        CHECK(is_untouched(out));
        *out = (rr_completion){0};
        return false;
    }
    if (out->status == RR_STATUS_OK) {
        CHECK(out->payload != NULL);
        CHECK(out->error == NULL);
    } else {
        CHECK(out->payload == NULL);
        if (CHECK(out->error != NULL)) {
            CHECK(rr_error_status(out->error) == out->status);
            CHECK(rr_error_message(out->error) != NULL && rr_error_message(out->error)[0] != '\0');
        }
    }
    return true;
}

static void completion_free(rr_completion *c)
{
    rr_payload_free(c->payload);
    rr_error_free(c->error);
    c->payload = NULL;
    c->error = NULL;
}

/* Is the payload exactly this context and body? */
static bool payload_is(const rr_payload *p, const char *context, const char *body)
{
    size_t context_len = 0, body_len = 0;
    const uint8_t *got_context = rr_payload_context(p, &context_len);
    const uint8_t *got_body = rr_payload_body(p, &body_len);
    return got_context != NULL && got_body != NULL && context_len == strlen(context) &&
           memcmp(got_context, context, context_len) == 0 && body_len == strlen(body) &&
           memcmp(got_body, body, body_len) == 0;
}

/* Checks that a completion is the echo of (context, body) with `tag`. */
static bool check_answer(const rr_completion *c, uint64_t tag, const char *context, const char *body)
{
    bool ok = CHECK(c->tag == tag);
    if (!CHECK_STATUS(c->status, RR_STATUS_OK, c->error)) {
        return false;
    }
    if (!CHECK(payload_is(c->payload, context, body))) {
        size_t len = 0;
        const uint8_t *got = rr_payload_body(c->payload, &len);
        note("tag %" PRIu64 ": body \"%.*s\", expected \"%s\"", c->tag, (int)len, (const char *)got, body);
        ok = false;
    }
    return ok;
}

/* Submits `context` and `body` with `tag`, takes the next completion and checks that it
 * is this task's echo (for a queue with no other task out). */
static void expect_echo(rr_server *s, rr_queue *q, const char *context, const char *body, uint64_t tag)
{
    rr_completion c;
    if (submit_text(s, q, context, body, tag) && take(q, COMPLETION_WAIT_MS, &c)) {
        check_answer(&c, tag, context, body);
        completion_free(&c);
    }
}

/* Checks that no completion comes within wait_ms (0: none waits now); *out untouched. */
static bool nothing_more(rr_queue *q, int64_t wait_ms)
{
    rr_completion c = untouched_completion();
    rr_error *err = NULL;
    rr_status status = rr_queue_next(q, wait_ms, &c, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_TIMEOUT, err);
    if (err != NULL) {
        CHECK(rr_error_status(err) == RR_STATUS_TIMEOUT);
    }
    rr_error_free(err);
    ok = CHECK(is_untouched(&c)) && ok;
    if (status == RR_STATUS_OK) {
        note("an unexpected completion: tag %" PRIu64 ", %s", c.tag, rr_status_str(c.status));
        completion_free(&c);
    }
    return ok;
}

/* poll() on the queue's descriptor with timeout_ms: 1 when readable, 0 when not. */
static int poll_queue(rr_queue *q, int timeout_ms)
{
    struct pollfd pfd = {.fd = rr_queue_fd(q), .events = POLLIN};
    int n;
    do {
        n = poll(&pfd, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        CHECK((pfd.revents & POLLIN) != 0);
        CHECK((pfd.revents & (POLLERR | POLLNVAL)) == 0);
    }
    return n;
}

static bool stats_of(rr_server *s, rr_pool_stats *stats)
{
    *stats = (rr_pool_stats){.size = sizeof *stats};
    return rr_server_stats(s, stats, NULL) == RR_STATUS_OK;
}

struct waiting_count {
    rr_server *s;
    uint64_t n;
};

static bool waiting_is(void *arg)
{
    struct waiting_count *w = arg;
    rr_pool_stats stats;
    return stats_of(w->s, &stats) && stats.waiting == w->n;
}

/* Waits until exactly `n` tasks or callers wait for a worker. */
static bool wait_waiting(rr_server *s, uint64_t n)
{
    struct waiting_count w = {s, n};
    bool ok = wait_until(waiting_is, &w, 10000);
    if (!ok) {
        rr_pool_stats stats;
        if (stats_of(s, &stats)) {
            note("%" PRIu64 " waiting for a worker, expected %" PRIu64, stats.waiting, n);
        }
    }
    return ok;
}

/* Checks that a call failed with RR_STATUS_NULL_ARGUMENT and an error saying so, whose
 * message names the argument (`name`, when not NULL); frees the error. */
static void check_null_argument(rr_status status, rr_error *err, const char *name, const char *call)
{
    if (!CHECK_STATUS(status, RR_STATUS_NULL_ARGUMENT, err)) {
        note("%s", call);
    }
    if (CHECK(err != NULL)) {
        CHECK(rr_error_status(err) == RR_STATUS_NULL_ARGUMENT);
        if (name != NULL && !CHECK(contains(rr_error_message(err), name))) {
            note("%s: message \"%s\" does not name %s", call, rr_error_message(err), name);
        }
    }
    rr_error_free(err);
}

/* Runs `call` (which writes its error to err_) and checks it was refused as NULL. */
#define EXPECT_NULL_ARGUMENT(call, name)                                                                              \
    do {                                                                                                              \
        rr_error *err_ = NULL;                                                                                        \
        rr_status status_ = (call);                                                                                   \
        check_null_argument(status_, err_, (name), #call);                                                            \
    } while (0)

void test_queue_null_arguments(void)
{
    rr_error *err = NULL;
    EXPECT_NULL_ARGUMENT(rr_queue_new(NULL, &err_), "`out`");
    CHECK(rr_queue_new(NULL, NULL) == RR_STATUS_NULL_ARGUMENT); /* without err_out too */
    CHECK(rr_queue_fd(NULL) == -1);
    rr_queue_free(NULL); /* does nothing */

    rr_queue *q = new_queue();
    REQUIRE(q != NULL);
    int fd = rr_queue_fd(q);
    CHECK(fd > 2);
    CHECK(rr_queue_fd(q) == fd); /* the same descriptor for the queue's life */

    /* A server is needed for the submit checks; it need not be started. */
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    rr_server *s = NULL;
    if (CHECK(config != NULL)) {
        CHECK_STATUS(rr_server_new(config, &s, &err), RR_STATUS_OK, err);
        rr_error_free(err);
        err = NULL;
        rr_config_free(config);
    }
    if (s != NULL) {
        const uint8_t ctx[] = "ctx", body[] = "body";
        EXPECT_NULL_ARGUMENT(rr_exec_submit(NULL, q, ctx, 3, body, 4, 1, &err_), "`s`");
        EXPECT_NULL_ARGUMENT(rr_exec_submit(s, NULL, ctx, 3, body, 4, 1, &err_), "`q`");
        EXPECT_NULL_ARGUMENT(rr_exec_submit(s, q, NULL, 3, body, 4, 1, &err_), "`context`");
        EXPECT_NULL_ARGUMENT(rr_exec_submit(s, q, ctx, 3, NULL, 4, 1, &err_), "`body`");
        CHECK(rr_exec_submit(NULL, q, ctx, 3, body, 4, 1, NULL) == RR_STATUS_NULL_ARGUMENT);
        /* NULL buffers of length 0 are fine: that reaches the state check (not started). */
        err = NULL;
        CHECK_STATUS(rr_exec_submit(s, q, NULL, 0, NULL, 0, 1, &err), RR_STATUS_STATE, err);
        rr_error_free(err);
    }

    rr_completion c = untouched_completion();
    EXPECT_NULL_ARGUMENT(rr_queue_next(NULL, 0, &c, &err_), "`q`");
    CHECK(is_untouched(&c));
    EXPECT_NULL_ARGUMENT(rr_queue_next(q, 0, NULL, &err_), "`out`");
    EXPECT_NULL_ARGUMENT(rr_queue_next(NULL, -1, NULL, &err_), NULL);
    err = NULL;
    CHECK_STATUS(rr_queue_next(q, -2, &c, &err), RR_STATUS_INVALID_ARGUMENT, err);
    CHECK(err != NULL && rr_error_status(err) == RR_STATUS_INVALID_ARGUMENT);
    CHECK(is_untouched(&c));
    rr_error_free(err);
    EXPECT_NULL_ARGUMENT(rr_queue_cancel(NULL, 1, &err_), "`q`");
    CHECK(rr_queue_cancel(NULL, 1, NULL) == RR_STATUS_NULL_ARGUMENT);
    /* Cancelling a tag nobody submitted is fine, and posts nothing. */
    CHECK_STATUS(rr_queue_cancel(q, 12345, NULL), RR_STATUS_OK, NULL);

    /* Nothing refused above was posted. */
    nothing_more(q, 0);
    CHECK(poll_queue(q, 0) == 0);
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_submit_not_started(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &s, &err);
    rr_config_free(config);
    REQUIRE(CHECK_STATUS(status, RR_STATUS_OK, err));
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }

    /* Never started: refused at once, and nothing is posted. */
    err = NULL;
    CHECK_STATUS(rr_exec_submit(s, q, NULL, 0, (const uint8_t *)"x", 1, 3, &err), RR_STATUS_STATE, err);
    CHECK(err != NULL && rr_error_status(err) == RR_STATUS_STATE);
    rr_error_free(err);
    nothing_more(q, 0);
    CHECK(poll_queue(q, 0) == 0);
    nothing_more(q, 50); /* nor a little later */

    /* Started: accepted and answered. Stopped: refused again. */
    err = NULL;
    status = rr_server_start(s, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err)) {
        expect_echo(s, q, "ctx", "started", 4);
        CHECK_STATUS(rr_server_stop(s, NULL), RR_STATUS_OK, NULL);
        err = NULL;
        CHECK_STATUS(rr_exec_submit(s, q, NULL, 0, (const uint8_t *)"x", 1, 5, &err), RR_STATUS_STATE, err);
        rr_error_free(err);
        err = NULL;
        nothing_more(q, 0);
    }
    rr_error_free(err);
    rr_queue_free(q);
    rr_server_free(s);
}

/* 100 tasks submitted at once to 2 workers over `relay`: each answered once, with its
 * own tag, context and body. */
static void check_many_over(const char *relay)
{
    enum { TASKS = 100 };
    rr_server *s = start_with(test_config(test_worker(""), relay, 2));
    if (!CHECK(s != NULL)) {
        note("relay %s", relay);
        return;
    }
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    char context[64], body[128];
    int accepted = 0;
    for (int i = 0; i < TASKS; i++) {
        snprintf(context, sizeof context, "ctx-%d", i);
        snprintf(body, sizeof body, "task %d over %s", i, relay);
        accepted += submit_text(s, q, context, body, (uint64_t)i + 1000) ? 1 : 0;
    }
    CHECK(accepted == TASKS);
    bool seen[TASKS] = {false};
    int answered = 0, failed = 0;
    for (int n = 0; n < accepted; n++) {
        rr_completion c;
        if (!take(q, COMPLETION_WAIT_MS, &c)) {
            note("relay %s: %d of %d tasks completed", relay, n, accepted);
            break;
        }
        uint64_t i = c.tag - 1000;
        if (!CHECK(c.tag >= 1000 && i < TASKS && !seen[i])) {
            note("relay %s: tag %" PRIu64 " unknown or completed twice", relay, c.tag);
            failed++;
        } else {
            seen[i] = true;
            snprintf(context, sizeof context, "ctx-%d", (int)i);
            snprintf(body, sizeof body, "task %d over %s", (int)i, relay);
            if (check_answer(&c, c.tag, context, body)) {
                answered++;
            } else {
                failed++;
            }
        }
        completion_free(&c);
    }
    if (!CHECK(answered == TASKS && failed == 0)) {
        note("relay %s: %d answered as expected, %d not", relay, answered, failed);
    }
    nothing_more(q, 0);
    CHECK(poll_queue(q, 0) == 0);
    rr_pool_stats stats;
    if (CHECK(stats_of(s, &stats))) {
        CHECK(stats.tasks_done == TASKS);
        CHECK(stats.waiting == 0);
    }
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_relays(void)
{
    check_many_over("pipes");
    check_many_over("tcp://127.0.0.1:0");
    char dir_template[] = "/tmp/rr-c-queue-XXXXXX";
    char *dir = mkdtemp(dir_template);
    REQUIRE(dir != NULL);
    char relay[PATH_MAX + 16];
    snprintf(relay, sizeof relay, "unix://%s/q.sock", dir);
    check_many_over(relay);
    CHECK(rmdir(dir) == 0);
}

struct tasks_done {
    rr_server *s;
    uint64_t n;
};

static bool tasks_done_reached(void *arg)
{
    struct tasks_done *t = arg;
    rr_pool_stats stats;
    return stats_of(t->s, &stats) && stats.tasks_done >= t->n;
}

void test_queue_fd_poll(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    /* Empty: not readable. */
    CHECK(poll_queue(q, 0) == 0);
    CHECK(poll_queue(q, 20) == 0);

    /* One completion: readable, and it stays so (level-triggered) until taken. */
    if (submit_text(s, q, "one", "first", 1)) {
        CHECK(poll_queue(q, COMPLETION_WAIT_MS) == 1);
        CHECK(poll_queue(q, 0) == 1);
        CHECK(poll_queue(q, 0) == 1);
        rr_completion c;
        if (take(q, 0, &c)) { /* it waits: no need to wait for it */
            check_answer(&c, 1, "one", "first");
            completion_free(&c);
        }
        /* Drained: not readable again, and rr_queue_next(0) says so, with an error
         * object when asked for one and with nothing written when err_out is NULL. */
        CHECK(poll_queue(q, 0) == 0);
        nothing_more(q, 0);
        rr_completion quiet = untouched_completion();
        CHECK(rr_queue_next(q, 0, &quiet, NULL) == RR_STATUS_TIMEOUT);
        CHECK(rr_queue_next(q, 20, &quiet, NULL) == RR_STATUS_TIMEOUT);
        CHECK(is_untouched(&quiet));
        CHECK(poll_queue(q, 0) == 0);
    }

    /* Two completions: still readable after the first is taken, not after the second. */
    if (submit_text(s, q, "two", "a", 2) && submit_text(s, q, "two", "b", 3)) {
        struct tasks_done t = {s, 3};
        CHECK(wait_until(tasks_done_reached, &t, COMPLETION_WAIT_MS));
        sleep_ms(50); /* the second answer is posted right after it is counted */
        CHECK(poll_queue(q, COMPLETION_WAIT_MS) == 1);
        rr_completion c;
        if (take(q, 0, &c)) {
            check_answer(&c, 2, "two", "a"); /* one worker: in order */
            completion_free(&c);
        }
        CHECK(poll_queue(q, 0) == 1);
        if (take(q, 0, &c)) {
            check_answer(&c, 3, "two", "b");
            completion_free(&c);
        }
        CHECK(poll_queue(q, 0) == 0);
        nothing_more(q, 0);
    }

    /* rr_queue_next with a timeout wakes up for a completion that comes meanwhile, and
     * a poll() that waits wakes up too. */
    if (submit_text(s, q, "!sleep:100", "later", 4)) {
        CHECK(poll_queue(q, 0) == 0);
        int64_t began = now_ms();
        CHECK(poll_queue(q, COMPLETION_WAIT_MS) == 1);
        CHECK(now_ms() - began >= 50);
        rr_completion c;
        if (take(q, COMPLETION_WAIT_MS, &c)) {
            check_answer(&c, 4, "!sleep:100", "later");
            completion_free(&c);
        }
        CHECK(poll_queue(q, 0) == 0);
    }
    if (submit_text(s, q, "!sleep:100", "blocking", 5)) {
        rr_completion c;
        if (take(q, -1, &c)) { /* -1: as long as it takes */
            check_answer(&c, 5, "!sleep:100", "blocking");
            completion_free(&c);
        }
        CHECK(poll_queue(q, 0) == 0);
    }
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_job_and_worker_errors(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    int64_t pid = exec_pid(s);
    rr_completion c;

    /* A job error: the worker's message in rr_error_data; the worker stays. */
    if (submit_text(s, q, "!error", "the job failed", 1) && take(q, COMPLETION_WAIT_MS, &c)) {
        CHECK(c.tag == 1);
        CHECK_STATUS(c.status, RR_STATUS_JOB_ERROR, c.error);
        if (c.error != NULL) {
            size_t len = 0;
            const uint8_t *data = rr_error_data(c.error, &len);
            if (!CHECK(data != NULL && len == strlen("the job failed") && memcmp(data, "the job failed", len) == 0)) {
                note("rr_error_data: \"%.*s\"", (int)len, data != NULL ? (const char *)data : "");
            }
        }
        completion_free(&c);
    }
    expect_echo(s, q, "after", "the job error", 2);
    CHECK(exec_pid(s) == pid);

    /* A worker that dies during its task: a worker error; another worker takes over. */
    if (submit_text(s, q, "!crash", "", 3) && take(q, COMPLETION_WAIT_MS, &c)) {
        CHECK(c.tag == 3);
        CHECK_STATUS(c.status, RR_STATUS_WORKER_ERROR, c.error);
        completion_free(&c);
    }
    expect_echo(s, q, "after", "the crash", 4);
    int64_t replacement = exec_pid(s);
    CHECK(replacement > 0 && replacement != pid);
    nothing_more(q, 0);
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_allocate_timeout(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_allocate_timeout_ms(config, 200);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    /* The one worker is held by a task for 2 s; the next task waits for it 200 ms. */
    if (submit_text(s, q, "!sleep:2000", "slept", 1) && CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000))) {
        int64_t began = now_ms();
        rr_completion c;
        if (submit_text(s, q, "ctx", "no worker for me", 2) && take(q, 5000, &c)) {
            int64_t took = now_ms() - began;
            CHECK(c.tag == 2);
            CHECK_STATUS(c.status, RR_STATUS_TIMEOUT, c.error);
            if (!CHECK(took >= 150 && took < 1800)) {
                note("timed out after %lld ms (allocate_timeout 200 ms)", (long long)took);
            }
            completion_free(&c);
        }
        /* The task that held the worker is not affected. */
        if (take(q, COMPLETION_WAIT_MS, &c)) {
            check_answer(&c, 1, "!sleep:2000", "slept");
            completion_free(&c);
        }
    }
    expect_echo(s, q, "after", "a timeout", 3);
    rr_pool_stats stats;
    if (CHECK(stats_of(s, &stats))) {
        CHECK(stats.timeouts == 1);
    }
    nothing_more(q, 0);
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_max_queue(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_max_queue(config, 1);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    /* The one worker hangs; one task waits; a second waiting one is one too many. */
    if (submit_text(s, q, "!hang", "", 1) && CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000)) &&
        submit_text(s, q, "ctx", "queued", 2) && CHECK(wait_waiting(s, 1))) {
        rr_error *err = NULL;
        int64_t began = now_ms();
        rr_status status =
            rr_exec_submit(s, q, (const uint8_t *)"ctx", 3, (const uint8_t *)"one too many", 12, 3, &err);
        CHECK(now_ms() - began < 1000); /* refused at once, not after a wait */
        CHECK_STATUS(status, RR_STATUS_QUEUE_FULL, err);
        if (CHECK(err != NULL)) {
            CHECK(rr_error_status(err) == RR_STATUS_QUEUE_FULL);
            if (!CHECK(contains(rr_error_message(err), "max_queue 1"))) {
                note("message: %.400s", rr_error_message(err));
            }
        }
        rr_error_free(err);
        /* Refused: nothing is posted for it. */
        nothing_more(q, 0);
        CHECK(poll_queue(q, 0) == 0);
        rr_pool_stats stats;
        if (CHECK(stats_of(s, &stats))) {
            CHECK(stats.queue_full == 1);
            CHECK(stats.waiting == 1);
        }

        /* The hanging task cancelled: the waiting one runs on its worker's replacement. */
        CHECK_STATUS(rr_queue_cancel(q, 1, NULL), RR_STATUS_OK, NULL);
        bool got_cancel = false, got_answer = false;
        for (int n = 0; n < 2; n++) {
            rr_completion c;
            if (!take(q, COMPLETION_WAIT_MS, &c)) {
                break;
            }
            if (c.tag == 1) {
                got_cancel = CHECK_STATUS(c.status, RR_STATUS_CANCELLED, c.error);
            } else {
                got_answer = check_answer(&c, 2, "ctx", "queued");
            }
            completion_free(&c);
        }
        CHECK(got_cancel && got_answer);
    }
    nothing_more(q, 100); /* and none for the refused task, later */
    rr_queue_free(q);
    rr_server_free(s);
}

/* Is process `pid` gone (or a zombie)? */
static bool process_gone(void *arg)
{
    pid_t pid = (pid_t)(intptr_t)arg;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return true;
    }
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *close = strrchr(stat, ')');
    return close != NULL && close[1] == ' ' && close[2] == 'Z';
}

void test_queue_cancel(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    int64_t pid = exec_pid(s);
    rr_completion c;
    /* The worker hangs on tag 10; tags 11 (twice: tags need not be unique) and 12 wait. */
    if (submit_text(s, q, "!hang", "", 10) && CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000)) &&
        submit_text(s, q, "ctx", "waiting a", 11) && submit_text(s, q, "ctx", "waiting b", 11) &&
        submit_text(s, q, "ctx", "waiting c", 12) && CHECK(wait_waiting(s, 3))) {
        /* A waiting task: completes CANCELLED at once, and never runs. */
        int64_t began = now_ms();
        CHECK_STATUS(rr_queue_cancel(q, 11, NULL), RR_STATUS_OK, NULL);
        for (int n = 0; n < 2; n++) {
            if (take(q, 2000, &c)) {
                CHECK(c.tag == 11);
                CHECK_STATUS(c.status, RR_STATUS_CANCELLED, c.error);
                completion_free(&c);
            }
        }
        CHECK(now_ms() - began < 2000);
        nothing_more(q, 0);
        CHECK(wait_waiting(s, 1));
        CHECK(workers_are(s, 1, RR_WORKER_STATE_WORKING)); /* the running task is left alone */

        /* The running task: completes CANCELLED at once; its worker is killed and
         * replaced; the task that waited (12) then runs. */
        began = now_ms();
        CHECK_STATUS(rr_queue_cancel(q, 10, NULL), RR_STATUS_OK, NULL);
        if (take(q, 2000, &c)) {
            CHECK(c.tag == 10);
            CHECK_STATUS(c.status, RR_STATUS_CANCELLED, c.error);
            CHECK(now_ms() - began < 2000);
            completion_free(&c);
        }
        if (take(q, COMPLETION_WAIT_MS, &c)) {
            check_answer(&c, 12, "ctx", "waiting c");
            completion_free(&c);
        }
        if (!CHECK(wait_until(process_gone, (void *)(intptr_t)pid, 10000))) {
            note("worker %" PRId64 " still runs after its task was cancelled", pid);
        }
        int64_t replacement = exec_pid(s);
        CHECK(replacement > 0 && replacement != pid);
    }

    /* A task after the cancels works; cancelling it once it completed posts nothing. */
    expect_echo(s, q, "after", "the cancels", 13);
    CHECK_STATUS(rr_queue_cancel(q, 13, NULL), RR_STATUS_OK, NULL);
    CHECK_STATUS(rr_queue_cancel(q, 10, NULL), RR_STATUS_OK, NULL);
    nothing_more(q, 100);
    CHECK(poll_queue(q, 0) == 0);
    rr_queue_free(q);
    rr_server_free(s);
}

void test_queue_free_with_outstanding_tasks(void)
{
    rr_server *s = start_test_server("", 3);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    /* A completion left untaken, three tasks that hang (every worker), one waiting. */
    bool ready = submit_text(s, q, "untaken", "answer", 1) && CHECK(poll_queue(q, COMPLETION_WAIT_MS) == 1) &&
                 submit_text(s, q, "!hang", "", 2) && submit_text(s, q, "!hang", "", 3) &&
                 submit_text(s, q, "!hang", "", 4) && CHECK(wait_workers(s, 3, RR_WORKER_STATE_WORKING, 10000)) &&
                 submit_text(s, q, "ctx", "waiting", 5) && CHECK(wait_waiting(s, 1));
    int64_t began = now_ms();
    rr_queue_free(q); /* cancels what is outstanding, drops the untaken answer */
    int64_t took = now_ms() - began;
    if (!CHECK(took < 2000)) {
        note("rr_queue_free took %lld ms", (long long)took);
    }
    if (ready) {
        /* The pool replaces the killed workers and goes on serving. */
        CHECK(wait_waiting(s, 0));
        CHECK(check_echo(s, "after", "the queue was freed"));
        CHECK(wait_workers(s, 3, RR_WORKER_STATE_READY, 10000));
        /* And a new queue works with the same server. */
        rr_queue *q2 = new_queue();
        if (CHECK(q2 != NULL)) {
            rr_completion c;
            if (submit_text(s, q2, "new", "queue", 6) && take(q2, COMPLETION_WAIT_MS, &c)) {
                check_answer(&c, 6, "new", "queue");
                completion_free(&c);
            }
            nothing_more(q2, 0);
            rr_queue_free(q2);
        }
    }
    rr_server_free(s);
}

void test_queue_server_free_with_waiting_tasks(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_queue *q = queue_for(s);
    if (q == NULL) {
        return;
    }
    /* One task runs (300 ms, well within destroy_timeout), two wait for the worker. */
    bool ready = submit_text(s, q, "!sleep:300", "running", 1) &&
                 CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000)) &&
                 submit_text(s, q, "ctx", "waiting a", 2) && submit_text(s, q, "ctx", "waiting b", 3) &&
                 CHECK(wait_waiting(s, 2));
    rr_server_free(s); /* the waiting tasks complete STATE; the running one finishes */
    if (ready) {
        bool seen[4] = {false};
        for (int n = 0; n < 3; n++) {
            rr_completion c;
            if (!take(q, COMPLETION_WAIT_MS, &c)) {
                break;
            }
            if (!CHECK(c.tag >= 1 && c.tag <= 3 && !seen[c.tag])) {
                note("tag %" PRIu64 " unknown or completed twice", c.tag);
            } else {
                seen[c.tag] = true;
                if (c.tag == 1) {
                    check_answer(&c, 1, "!sleep:300", "running");
                } else {
                    CHECK_STATUS(c.status, RR_STATUS_STATE, c.error);
                }
            }
            completion_free(&c);
        }
        CHECK(seen[1] && seen[2] && seen[3]);
    }
    nothing_more(q, 100);
    CHECK(poll_queue(q, 0) == 0);
    rr_queue_free(q); /* after the server: fine */
}
