/* test_exec.c: tasks, and every status a task or a start can end with.
 *
 * Not covered here: RR_STATUS_EXEC_TTL and RR_STATUS_QUEUE_FULL (supervision and
 * backpressure, left for a later issue) and RR_STATUS_INTERNAL (only a bug reaches it). */
#define _XOPEN_SOURCE 700

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* Runs a task of raw bytes and checks the echo. */
static bool check_echo_bytes(rr_server *s, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len)
{
    rr_payload *answer = NULL;
    rr_error *err = NULL;
    rr_status status = rr_exec(s, ctx, ctx_len, body, body_len, &answer, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (!ok) {
        return false;
    }
    size_t got_ctx_len = 0, got_body_len = 0;
    const uint8_t *got_ctx = rr_payload_context(answer, &got_ctx_len);
    const uint8_t *got_body = rr_payload_body(answer, &got_body_len);
    ok = CHECK(got_ctx_len == ctx_len && (ctx_len == 0 || memcmp(got_ctx, ctx, ctx_len) == 0));
    ok = CHECK(got_body_len == body_len && (body_len == 0 || memcmp(got_body, body, body_len) == 0)) && ok;
    rr_payload_free(answer);
    return ok;
}

/* Runs a task that must fail with `want`; returns the error (caller frees) or NULL. */
static rr_error *exec_failing(rr_server *s, const char *context, const char *body, rr_status want)
{
    rr_payload *answer = SENTINEL;
    rr_error *err = NULL;
    rr_status status = rr_exec(s, (const uint8_t *)context, strlen(context), (const uint8_t *)body, strlen(body),
                               &answer, &err);
    if (!CHECK_STATUS(status, want, err)) {
        note("task with context \"%s\"", context);
    }
    if (status == RR_STATUS_OK && answer != SENTINEL) {
        rr_payload_free(answer);
    } else {
        CHECK(answer == SENTINEL); /* out-params are written only on success */
    }
    if (CHECK(err != NULL)) {
        CHECK(rr_error_status(err) == status);
        CHECK(rr_error_message(err) != NULL && rr_error_message(err)[0] != '\0');
    }
    return err;
}

static bool message_has_pid(const rr_error *err, int64_t pid)
{
    char text[32];
    snprintf(text, sizeof text, "%" PRId64, pid);
    return err != NULL && contains(rr_error_message(err), text);
}

/* Waits until the pool has `count` ready workers none of which is `old_pid`. */
struct replaced_arg {
    rr_server *s;
    size_t count;
    int64_t old_pid;
};
static bool replaced_cond(void *p)
{
    struct replaced_arg *a = p;
    rr_worker_info *infos = NULL;
    size_t len = 0;
    if (rr_server_workers(a->s, &infos, &len, NULL) != RR_STATUS_OK) {
        return false;
    }
    bool ok = len == a->count;
    for (size_t i = 0; ok && i < len; i++) {
        ok = infos[i].state == RR_WORKER_STATE_READY && infos[i].pid != a->old_pid;
    }
    rr_worker_info_free(infos, len);
    return ok;
}
static bool wait_replaced(rr_server *s, size_t count, int64_t old_pid)
{
    struct replaced_arg a = {s, count, old_pid};
    return wait_until(replaced_cond, &a, 15000);
}

void test_echo(void)
{
    /* The server copies its config: changing the config afterwards changes nothing. */
    rr_config *config = test_config(test_worker(""), "pipes", 2);
    REQUIRE(config != NULL);
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &s, &err);
    rr_config_set_num_workers(config, 5);
    rr_config_free(config);
    REQUIRE(CHECK_STATUS(status, RR_STATUS_OK, err));
    status = rr_server_start(s, &err);
    if (!CHECK_STATUS(status, RR_STATUS_OK, err)) {
        rr_error_free(err);
        rr_server_free(s);
        return;
    }
    CHECK(workers_are(s, 2, RR_WORKER_STATE_READY));

    check_echo(s, "ctx", "hello");
    check_echo(s, "", "body only");
    check_echo(s, "context only", "");
    check_echo_bytes(s, NULL, 0, NULL, 0);

    uint8_t all_bytes[256];
    for (int i = 0; i < 256; i++) {
        all_bytes[i] = (uint8_t)i;
    }
    check_echo_bytes(s, all_bytes, sizeof all_bytes, all_bytes, sizeof all_bytes);

    size_t big = 3u << 20; /* 3 MiB */
    uint8_t *body = malloc(big);
    REQUIRE(body != NULL);
    for (size_t i = 0; i < big; i++) {
        body[i] = (uint8_t)(i * 7 + (i >> 13));
    }
    check_echo_bytes(s, (const uint8_t *)"big", 3, body, big);
    free(body);

    for (int i = 0; i < 50; i++) {
        char text[64];
        snprintf(text, sizeof text, "task %d of 50", i);
        check_echo(s, "seq", text);
    }
    rr_server_free(s);
}

void test_job_error(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    int64_t pid = exec_pid(s);

    rr_error *err = exec_failing(s, "!error", "boom: the job failed", RR_STATUS_JOB_ERROR);
    if (err != NULL) {
        size_t len = 0;
        const uint8_t *data = rr_error_data(err, &len);
        CHECK(len == strlen("boom: the job failed") && data != NULL &&
              memcmp(data, "boom: the job failed", len) == 0);
        CHECK(contains(rr_error_message(err), "boom: the job failed"));
        if (!CHECK(message_has_pid(err, pid))) {
            note("message: %s", rr_error_message(err));
        }
        rr_error_free(err);
    }

    /* Raw bytes come back as they were, even when they are not text. */
    static const uint8_t binary[] = {0xff, 0x00, 'x', 0xfe};
    rr_error *raw = NULL;
    rr_payload *answer = SENTINEL;
    rr_status status = rr_exec(s, (const uint8_t *)"!error", 6, binary, sizeof binary, &answer, &raw);
    if (CHECK_STATUS(status, RR_STATUS_JOB_ERROR, raw) && CHECK(raw != NULL)) {
        size_t len = 0;
        const uint8_t *data = rr_error_data(raw, &len);
        CHECK(len == sizeof binary && data != NULL && memcmp(data, binary, len) == 0);
        CHECK(rr_error_message(raw) != NULL);
    }
    CHECK(answer == SENTINEL);
    rr_error_free(raw);

    /* Without err_out the status is still there. */
    CHECK(rr_exec(s, (const uint8_t *)"!error", 6, (const uint8_t *)"x", 1, &answer, NULL) == RR_STATUS_JOB_ERROR);

    /* A job error keeps the worker. */
    CHECK(exec_pid(s) == pid);
    CHECK(workers_are(s, 1, RR_WORKER_STATE_READY));
    check_echo(s, "after", "a job error");
    rr_server_free(s);
}

void test_worker_error_crash(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);

    /* A crash during a task: worker error, with the worker's stderr and pid. */
    int64_t pid = exec_pid(s);
    rr_error *err = exec_failing(s, "!crash", "", RR_STATUS_WORKER_ERROR);
    if (err != NULL) {
        if (!CHECK(contains(rr_error_message(err), "crash requested"))) {
            note("message: %s", rr_error_message(err));
        }
        if (!CHECK(message_has_pid(err, pid))) {
            note("message: %s", rr_error_message(err));
        }
        rr_error_free(err);
    }
    CHECK(wait_replaced(s, 1, pid));
    check_echo(s, "after", "a crash");

    /* A worker that exits on its own between tasks is noticed and replaced. */
    pid = exec_pid(s);
    check_echo(s, "!exit", "bye");
    CHECK(wait_replaced(s, 1, pid));
    check_echo(s, "after", "an exit");

    /* The same with the next task sent at once: it may meet the dying worker (a worker
     * error), but nothing else, and never a SIGPIPE (checked by the runner). */
    int worker_errors = 0;
    for (int i = 0; i < 10; i++) {
        check_echo(s, "!exit", "bye");
        rr_error *exit_err = NULL;
        char *body = NULL;
        rr_status status = exec_text(s, "right", "after", NULL, &body, &exit_err);
        if (status == RR_STATUS_WORKER_ERROR) {
            worker_errors++;
        } else if (CHECK_STATUS(status, RR_STATUS_OK, exit_err)) {
            CHECK(strcmp(body, "after") == 0);
        }
        free(body);
        rr_error_free(exit_err);
        CHECK(wait_workers(s, 1, RR_WORKER_STATE_READY, 15000));
    }
    note("a task right after a worker's exit: %d worker error(s) in 10", worker_errors);

    /* And a task sent right after the worker was killed from outside. */
    worker_errors = 0;
    for (int i = 0; i < 10; i++) {
        pid = exec_pid(s);
        CHECK(pid > 0 && kill((pid_t)pid, SIGKILL) == 0);
        rr_error *kill_err = NULL;
        rr_status status = exec_text(s, "right", "after", NULL, NULL, &kill_err);
        if (status == RR_STATUS_WORKER_ERROR) {
            worker_errors++;
        } else {
            CHECK_STATUS(status, RR_STATUS_OK, kill_err);
        }
        rr_error_free(kill_err);
        CHECK(wait_replaced(s, 1, pid));
    }
    note("a task right after a worker's kill: %d worker error(s) in 10", worker_errors);

    /* A worker killed from outside is replaced too. */
    pid = exec_pid(s);
    CHECK(pid > 0 && kill((pid_t)pid, SIGKILL) == 0);
    CHECK(wait_replaced(s, 1, pid));
    check_echo(s, "after", "a kill");
    rr_server_free(s);
}

void test_worker_error_protocol(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    /* Each breaks the protocol in its own way; none may crash or hang the host. */
    static const char *const commands[] = {"!stdout", "!huge", "!truncate", "!nocontrol"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        int64_t pid = exec_pid(s);
        int64_t began = now_ms();
        rr_error *err = exec_failing(s, commands[i], "payload", RR_STATUS_WORKER_ERROR);
        rr_error_free(err);
        if (!CHECK(now_ms() - began < 10000)) {
            note("%s took %lld ms", commands[i], (long long)(now_ms() - began));
        }
        CHECK(wait_replaced(s, 1, pid));
        check_echo(s, "after", commands[i]);
    }
    rr_server_free(s);

    /* An answer larger than max_frame_bytes is refused. */
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_max_frame_bytes(config, 1024);
    s = start_with(config);
    REQUIRE(s != NULL);
    check_echo(s, "small", "fits");
    char body[4096];
    memset(body, 'z', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    rr_error_free(exec_failing(s, "large", body, RR_STATUS_WORKER_ERROR));
    CHECK(wait_workers(s, 1, RR_WORKER_STATE_READY, 15000));
    check_echo(s, "small", "still fits");
    rr_server_free(s);
}

void test_stop_request_bounded(void)
{
    /* Workers that answer every task with a stop request: the retries are bounded and
     * the caller gets a worker error, not an endless respawn loop. */
    rr_server *s = start_test_server("stop-always", 2);
    REQUIRE(s != NULL);
    int64_t began = now_ms();
    rr_error *err = exec_failing(s, "ctx", "body", RR_STATUS_WORKER_ERROR);
    if (err != NULL) {
        note("message: %s", rr_error_message(err));
    }
    rr_error_free(err);
    CHECK(now_ms() - began < 20000);
    CHECK(wait_workers(s, 2, RR_WORKER_STATE_READY, 15000));
    rr_server_free(s);

    /* The same task command on echo workers: every worker asks to be replaced. */
    s = start_test_server("", 2);
    REQUIRE(s != NULL);
    rr_error_free(exec_failing(s, "!stop", "", RR_STATUS_WORKER_ERROR));
    CHECK(wait_workers(s, 2, RR_WORKER_STATE_READY, 15000));
    check_echo(s, "after", "stop requests");
    rr_server_free(s);
}

/* A task run on a thread of its own: the inputs, then the status and answer body. */
struct background_task {
    rr_server *s;
    const char *context;
    const char *body;
    rr_status status;
    char *answer;
};

static void *background_task_main(void *p)
{
    struct background_task *task = p;
    rr_error *err = NULL;
    task->status = exec_text(task->s, task->context, task->body, NULL, &task->answer, &err);
    rr_error_free(err);
    return NULL;
}

void test_timeout(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_allocate_timeout_ms(config, 200);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);

    struct background_task sl = {.s = s, .context = "!sleep:2000", .body = "slept"};
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, background_task_main, &sl) == 0);
    /* The one worker is busy once the snapshot says so. */
    if (CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000))) {
        int64_t began = now_ms();
        rr_error *err = exec_failing(s, "ctx", "no worker for me", RR_STATUS_TIMEOUT);
        int64_t took = now_ms() - began;
        rr_error_free(err);
        if (!CHECK(took >= 150 && took < 1800)) {
            note("timed out after %lld ms (allocate_timeout 200 ms)", (long long)took);
        }
    }
    pthread_join(thread, NULL);
    CHECK_STATUS(sl.status, RR_STATUS_OK, NULL);
    CHECK(sl.answer != NULL && strcmp(sl.answer, "slept") == 0);
    free(sl.answer);
    check_echo(s, "after", "a timeout");
    rr_server_free(s);
}

void test_exec_ttl(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_exec_ttl_ms(config, 200);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);
    int64_t before = exec_pid(s);
    int64_t began = now_ms();
    rr_error *err = exec_failing(s, "!hang", "never answered", RR_STATUS_EXEC_TTL);
    int64_t took = now_ms() - began;
    if (err != NULL) {
        CHECK(rr_error_status(err) == RR_STATUS_EXEC_TTL);
        if (!CHECK(contains(rr_error_message(err), "exec_ttl (200 ms)"))) {
            note("message: %.400s", rr_error_message(err));
        }
    }
    rr_error_free(err);
    /* The caller hears of it near the deadline, not when the task would have ended. */
    if (!CHECK(took >= 150 && took < 3000)) {
        note("exec_ttl error after %lld ms (exec_ttl 200 ms)", (long long)took);
    }
    /* The worker was killed and replaced. */
    CHECK(wait_workers(s, 1, RR_WORKER_STATE_READY, 10000));
    int64_t after = exec_pid(s);
    CHECK(after > 0 && after != before);
    check_echo(s, "after", "an exec_ttl kill");
    rr_server_free(s);
}

static bool one_caller_waits(void *arg)
{
    rr_pool_stats stats = {.size = sizeof stats};
    return rr_server_stats(arg, &stats, NULL) == RR_STATUS_OK && stats.waiting == 1;
}

void test_queue_full(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_max_queue(config, 1);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);

    struct background_task sl = {.s = s, .context = "!sleep:2000", .body = "slept"};
    pthread_t busy;
    REQUIRE(pthread_create(&busy, NULL, background_task_main, &sl) == 0);
    CHECK(wait_workers(s, 1, RR_WORKER_STATE_WORKING, 10000));
    struct background_task q = {.s = s, .context = "", .body = "queued"};
    pthread_t waiting;
    REQUIRE(pthread_create(&waiting, NULL, background_task_main, &q) == 0);
    if (CHECK(wait_until(one_caller_waits, s, 10000))) {
        /* A second waiter is one too many: refused at once, not after a wait. */
        int64_t began = now_ms();
        rr_error *err = exec_failing(s, "", "one too many", RR_STATUS_QUEUE_FULL);
        CHECK(now_ms() - began < 1000);
        if (err != NULL && !CHECK(contains(rr_error_message(err), "max_queue 1"))) {
            note("message: %.400s", rr_error_message(err));
        }
        rr_error_free(err);
    }
    pthread_join(busy, NULL);
    pthread_join(waiting, NULL);
    CHECK_STATUS(sl.status, RR_STATUS_OK, NULL);
    CHECK(sl.answer != NULL && strcmp(sl.answer, "slept") == 0);
    CHECK_STATUS(q.status, RR_STATUS_OK, NULL);
    CHECK(q.answer != NULL && strcmp(q.answer, "queued") == 0);
    free(sl.answer);
    free(q.answer);
    rr_pool_stats stats = {.size = sizeof stats};
    if (CHECK_STATUS(rr_server_stats(s, &stats, NULL), RR_STATUS_OK, NULL)) {
        CHECK(stats.queue_full == 1);
        CHECK(stats.tasks_done == 2);
    }
    rr_server_free(s);
}

static void check_spawn_failure(const char *command, uint64_t workers, const char *must_contain)
{
    rr_config *config = test_config(command, "pipes", workers);
    REQUIRE(config != NULL);
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &s, &err);
    rr_config_free(config);
    REQUIRE(CHECK_STATUS(status, RR_STATUS_OK, err));
    status = rr_server_start(s, &err);
    if (CHECK_STATUS(status, RR_STATUS_SPAWN, err) && CHECK(err != NULL)) {
        CHECK(rr_error_status(err) == RR_STATUS_SPAWN);
        if (must_contain != NULL && !CHECK(contains(rr_error_message(err), must_contain))) {
            note("message: %.600s", rr_error_message(err));
        }
    }
    rr_error_free(err);
    /* A failed start leaves nothing running. */
    char children[256];
    int left = count_children(children, sizeof children);
    if (!CHECK(left == 0)) {
        note("left after a failed start: %s", children);
    }
    /* And the server is not started. */
    rr_error_free(exec_failing(s, "ctx", "body", RR_STATUS_STATE));
    rr_server_free(s);
}

void test_spawn_errors(void)
{
    check_spawn_failure("/nonexistent/rr-no-such-program --flag", 2, "rr-no-such-program");
    /* Workers that die before the handshake; several rounds, as the timing varies. */
    for (int i = 0; i < 5; i++) {
        check_spawn_failure(test_worker("failboot MARKER-C-TESTS-42"), 4, "MARKER-C-TESTS-42");
    }
    check_spawn_failure(test_worker("badpid"), 1, NULL);
}

/* rr_server_reconfigure and rr_server_reset of a server that is not running are state
 * errors that start nothing. */
static void check_no_reconfigure_or_reset(rr_server *s, rr_config *config)
{
    rr_error *err = NULL;
    CHECK_STATUS(rr_server_reconfigure(s, config, &err), RR_STATUS_STATE, err);
    CHECK(err != NULL && contains(rr_error_message(err), "not started"));
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_server_reset(s, &err), RR_STATUS_STATE, err);
    CHECK(err != NULL && contains(rr_error_message(err), "not started"));
    rr_error_free(err);
    CHECK(count_children(NULL, 0) == 0);
}

void test_state_errors(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &s, &err);
    if (!CHECK_STATUS(status, RR_STATUS_OK, err)) {
        rr_config_free(config);
        return;
    }

    /* Before start. */
    rr_error_free(exec_failing(s, "ctx", "too early", RR_STATUS_STATE));
    check_no_reconfigure_or_reset(s, config);
    CHECK(count_children(NULL, 0) == 0);

    status = rr_server_start(s, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err)) {
        check_echo(s, "ctx", "while started");
        status = rr_server_stop(s, &err);
        CHECK_STATUS(status, RR_STATUS_OK, err);
        /* Stop returns after every worker is gone (and reaped). */
        CHECK(count_children(NULL, 0) == 0);
        /* After stop. */
        rr_error_free(exec_failing(s, "ctx", "too late", RR_STATUS_STATE));
        check_no_reconfigure_or_reset(s, config);
    }
    rr_error_free(err);
    rr_server_free(s);
    rr_config_free(config);
}

struct children_count {
    int want;
};
static bool children_are(void *p)
{
    return count_children(NULL, 0) == ((struct children_count *)p)->want;
}

void test_max_jobs_one(void)
{
    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_config_set_max_jobs(config, 1);
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);
    int64_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = exec_pid(s);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++) {
            if (!CHECK(pids[i] != pids[j])) {
                note("task %d and task %d ran in the same process %" PRId64 " despite max_jobs 1", i, j, pids[i]);
            }
        }
    }
    check_echo(s, "fresh", "process");
    /* Retired workers are reaped: one child remains. */
    struct children_count one = {1};
    CHECK(wait_until(children_are, &one, 10000));
    rr_server_free(s);
}

void test_env_and_dir(void)
{
    char dir_template[] = "/tmp/rr-c-tests-XXXXXX";
    char *dir = mkdtemp(dir_template);
    REQUIRE(dir != NULL);
    char real_dir[PATH_MAX];
    REQUIRE(realpath(dir, real_dir) != NULL);

    rr_config *config = test_config(test_worker(""), "pipes", 1);
    REQUIRE(config != NULL);
    rr_error *err = NULL;
    rr_status status = rr_config_set_env(config, "RR_C_TEST_VAR", "first", &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    status = rr_config_set_env(config, "RR_C_TEST_VAR", "a value with spaces = and more", &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    status = rr_config_set_env(config, "RR_C_TEST_EMPTY", "", &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    status = rr_config_set_dir(config, dir, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    rr_server *s = start_with(config);
    if (s != NULL) {
        char *body = NULL;
        status = exec_text(s, "!env:RR_C_TEST_VAR", "", NULL, &body, NULL);
        if (CHECK(status == RR_STATUS_OK) && !CHECK(strcmp(body, "a value with spaces = and more") == 0)) {
            note("RR_C_TEST_VAR in the worker: \"%s\"", body);
        }
        free(body);
        body = NULL;
        status = exec_text(s, "!env:RR_C_TEST_EMPTY", "", NULL, &body, NULL);
        CHECK(status == RR_STATUS_OK && strcmp(body, "") == 0);
        free(body);
        body = NULL;
        /* The host's own environment is inherited. */
        status = exec_text(s, "!env:PATH", "", NULL, &body, NULL);
        CHECK(status == RR_STATUS_OK && getenv("PATH") != NULL && strcmp(body, getenv("PATH")) == 0);
        free(body);
        body = NULL;
        status = exec_text(s, "!cwd", "", NULL, &body, NULL);
        if (CHECK(status == RR_STATUS_OK) && !CHECK(strcmp(body, real_dir) == 0)) {
            note("worker cwd \"%s\", expected \"%s\"", body, real_dir);
        }
        free(body);
        rr_server_free(s);
    }
    CHECK(rmdir(dir) == 0);
}

void test_workers_snapshot(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    rr_server *s = start_test_server("", 3);
    REQUIRE(s != NULL);
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t after = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;

    rr_worker_info *infos = NULL;
    size_t count = 0;
    rr_error *err = NULL;
    rr_status status = rr_server_workers(s, &infos, &count, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err) && CHECK(count == 3)) {
        for (size_t i = 0; i < count; i++) {
            CHECK(infos[i].pid > 0);
            for (size_t j = i + 1; j < count; j++) {
                CHECK(infos[i].pid != infos[j].pid);
            }
            CHECK(infos[i].state == RR_WORKER_STATE_READY);
            CHECK(strcmp(rr_worker_state_str(infos[i].state), "ready") == 0);
            CHECK(infos[i].num_execs == 0);
            if (!CHECK(infos[i].created_unix_ms >= before - 1000 && infos[i].created_unix_ms <= after + 1000)) {
                note("created_unix_ms %" PRId64 " not within [%" PRId64 ", %" PRId64 "]", infos[i].created_unix_ms,
                     before, after);
            }
#ifdef __linux__
            CHECK(infos[i].rss_bytes > 0); /* read from /proc */
#endif
        }
    }
    rr_worker_info_free(infos, count);
    rr_error_free(err);

    for (int i = 0; i < 12; i++) {
        check_echo(s, "count", "me");
    }
    infos = NULL;
    count = 0;
    status = rr_server_workers(s, &infos, &count, NULL);
    if (CHECK(status == RR_STATUS_OK && count == 3)) {
        uint64_t total = 0;
        for (size_t i = 0; i < count; i++) {
            total += infos[i].num_execs;
        }
        if (!CHECK(total == 12)) {
            note("num_execs add up to %" PRIu64 ", 12 tasks ran", total);
        }
    }
    rr_worker_info_free(infos, count);
    rr_server_free(s);
}

static void check_relay(const char *relay, uint64_t workers)
{
    rr_server *s = start_with(test_config(test_worker(""), relay, workers));
    if (!CHECK(s != NULL)) {
        note("relay %s", relay);
        return;
    }
    CHECK(workers_are(s, workers, RR_WORKER_STATE_READY));
    for (int i = 0; i < 20; i++) {
        char body[64];
        snprintf(body, sizeof body, "over %s #%d", relay, i);
        check_echo(s, "relay", body);
    }
    if (strncmp(relay, "unix://", 7) == 0) {
        /* The socket file is the owner's only. */
        struct stat st;
        if (CHECK(stat(relay + 7, &st) == 0)) {
            if (!CHECK((st.st_mode & 077) == 0)) {
                note("socket mode %o", (unsigned)(st.st_mode & 0777));
            }
        }
    }
    rr_server_free(s);
}

void test_relays(void)
{
    check_relay("pipe", 1);
    check_relay("tcp://127.0.0.1:7392", 2);

    char dir_template[] = "/tmp/rr-c-tests-XXXXXX";
    char *dir = mkdtemp(dir_template);
    REQUIRE(dir != NULL);
    char relay[PATH_MAX + 16];
    snprintf(relay, sizeof relay, "unix://%s/rr.sock", dir);
    check_relay(relay, 2);
    /* The socket file is removed with the server. */
    if (!CHECK(access(relay + 7, F_OK) != 0)) {
        note("%s still exists after rr_server_free", relay + 7);
        unlink(relay + 7);
    }
    CHECK(rmdir(dir) == 0);
}
