/* test_events.c: event callbacks: what they see, that they never overlap, and that
 * userdata_free runs exactly once per registration. */
#define _XOPEN_SOURCE 700

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "tests.h"

static struct recorder *new_recorder(void)
{
    struct recorder *r = malloc(sizeof *r);
    if (r != NULL) {
        recorder_init(r);
    }
    return r;
}

static void delete_recorder(struct recorder *r)
{
    if (r != NULL) {
        recorder_destroy(r);
        free(r);
    }
}

/* A new, not started server of `workers` echo workers with `r` listening. */
static rr_server *listened_server(struct recorder *r, uint64_t workers)
{
    rr_config *config = test_config(test_worker(""), "pipes", workers);
    if (config == NULL) {
        return NULL;
    }
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &s, &err);
    rr_config_free(config);
    if (!CHECK_STATUS(status, RR_STATUS_OK, err)) {
        rr_error_free(err);
        return NULL;
    }
    status = rr_server_listen(s, recorder_callback, r, recorder_free, &err);
    if (!CHECK_STATUS(status, RR_STATUS_OK, err)) {
        rr_error_free(err);
        rr_server_free(s);
        return NULL;
    }
    return s;
}

static bool start(rr_server *s)
{
    rr_error *err = NULL;
    rr_status status = rr_server_start(s, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    return ok;
}

/* Waits for an event and reports it when missing. */
#define EXPECT_EVENT(r, type, pid, message, min)                                                                      \
    do {                                                                                                              \
        if (!CHECK(recorder_wait((r), (type), (pid), (message), (min), 10000))) {                                     \
            note("missing event %d (pid %" PRId64 ", message %s) x%d; seen:", (int)(type), (int64_t)(pid),            \
                 (message) != NULL ? (const char *)(message) : "any", (int)(min));                                    \
            recorder_dump(r);                                                                                         \
        }                                                                                                             \
    } while (0)

void test_events_lifecycle(void)
{
    struct recorder *r = new_recorder();
    REQUIRE(r != NULL);
    rr_server *s = listened_server(r, 2);
    if (s == NULL || !start(s)) {
        rr_server_free(s);
        delete_recorder(r);
        return;
    }
    EXPECT_EVENT(r, RR_EVENT_SERVER_START, -1, NULL, 1);
    EXPECT_EVENT(r, RR_EVENT_POOL_CONSTRUCT, -2, NULL, 1);
    EXPECT_EVENT(r, RR_EVENT_WORKER_CONSTRUCT, -2, NULL, 2);

    /* One construct event per worker, with the worker's pid. */
    rr_worker_info *infos = NULL;
    size_t count = 0;
    int64_t pids[2] = {0, 0};
    if (CHECK(rr_server_workers(s, &infos, &count, NULL) == RR_STATUS_OK) && CHECK(count == 2)) {
        for (size_t i = 0; i < 2; i++) {
            pids[i] = infos[i].pid;
            CHECK(recorder_count(r, RR_EVENT_WORKER_CONSTRUCT, pids[i], NULL) == 1);
        }
    }
    rr_worker_info_free(infos, count);
    check_echo(s, "ctx", "body");

    rr_error *err = NULL;
    rr_status status = rr_server_stop(s, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    EXPECT_EVENT(r, RR_EVENT_SERVER_STOP, -1, NULL, 1);
    EXPECT_EVENT(r, RR_EVENT_POOL_DESTRUCT, -2, NULL, 1);
    for (size_t i = 0; i < 2; i++) {
        if (pids[i] > 0) {
            EXPECT_EVENT(r, RR_EVENT_WORKER_DESTRUCT, pids[i], NULL, 1);
        }
    }
    /* A clean stop kills nobody and reports no error. */
    CHECK(recorder_count(r, RR_EVENT_WORKER_KILL, -2, NULL) == 0);
    CHECK(recorder_count(r, RR_EVENT_WORKER_ERROR, -2, NULL) == 0);
    CHECK(recorder_count(r, RR_EVENT_POOL_ERROR, -2, NULL) == 0);
    CHECK(recorder_count(r, RR_EVENT_SERVER_FAILURE, -2, NULL) == 0);

    CHECK(atomic_load(&r->frees) == 0);
    rr_server_free(s);
    atomic_store(&r->released, true);
    CHECK(atomic_load(&r->frees) == 1); /* userdata_free ran in rr_server_free */
    CHECK(atomic_load(&r->overlaps) == 0);
    CHECK(atomic_load(&r->after_release) == 0);
    delete_recorder(r);
}

struct error_event_arg {
    struct recorder *r;
    int64_t pid;
};
static bool error_event_seen(void *p)
{
    struct error_event_arg *a = p;
    return recorder_count(a->r, RR_EVENT_WORKER_ERROR, a->pid, NULL) +
               recorder_count(a->r, RR_EVENT_WORKER_DEAD, a->pid, NULL) >
           0;
}

void test_events_crash_and_stderr(void)
{
    struct recorder *r = new_recorder();
    REQUIRE(r != NULL);
    rr_server *s = listened_server(r, 1);
    if (s == NULL || !start(s)) {
        rr_server_free(s);
        delete_recorder(r);
        return;
    }
    int64_t pid = exec_pid(s);

    /* A stderr line of a living worker is an event with its pid. */
    check_echo(s, "!stderr:hello from the C tests", "x");
    EXPECT_EVENT(r, RR_EVENT_WORKER_STDERR, pid, "hello from the C tests", 1);

    /* A crash: an error (or dead) event for that pid, its last words, and a new worker. */
    rr_payload *answer = NULL;
    rr_status status = rr_exec(s, (const uint8_t *)"!crash", 6, NULL, 0, &answer, NULL);
    CHECK_STATUS(status, RR_STATUS_WORKER_ERROR, NULL);
    struct error_event_arg arg = {r, pid};
    if (!CHECK(wait_until(error_event_seen, &arg, 10000))) {
        recorder_dump(r);
    }
    EXPECT_EVENT(r, RR_EVENT_WORKER_STDERR, pid, "crash requested", 1);
    EXPECT_EVENT(r, RR_EVENT_WORKER_CONSTRUCT, -2, NULL, 2);
    int64_t new_pid = exec_pid(s);
    CHECK(new_pid != pid);
    CHECK(recorder_count(r, RR_EVENT_WORKER_CONSTRUCT, new_pid, NULL) == 1);

    rr_server_free(s);
    atomic_store(&r->released, true);
    CHECK(atomic_load(&r->frees) == 1);
    CHECK(atomic_load(&r->overlaps) == 0);
    CHECK(atomic_load(&r->after_release) == 0);
    delete_recorder(r);
}

void test_callback_replacement(void)
{
    struct recorder *r1 = new_recorder(), *r2 = new_recorder(), *r3 = new_recorder(), *r4 = new_recorder();
    rr_server *s = NULL;
    rr_error *err = NULL;
    rr_status status;
    if (!CHECK(r1 != NULL && r2 != NULL && r3 != NULL && r4 != NULL)) {
        goto done;
    }
    s = listened_server(r1, 1);
    if (s == NULL || !start(s)) {
        goto done;
    }
    EXPECT_EVENT(r1, RR_EVENT_SERVER_START, -1, NULL, 1);

    /* Replacing: the old userdata is freed once, before rr_server_listen returns, and the
     * old callback is never called again. */
    status = rr_server_listen(s, recorder_callback, r2, recorder_free, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    atomic_store(&r1->released, true);
    CHECK(atomic_load(&r1->frees) == 1);
    CHECK(atomic_load(&r2->frees) == 0);
    check_echo(s, "!stderr:to-r2", "x");
    EXPECT_EVENT(r2, RR_EVENT_WORKER_STDERR, -2, "to-r2", 1);
    CHECK(recorder_count(r1, RR_EVENT_WORKER_STDERR, -2, "to-r2") == 0);

    /* Unregistering (NULL callback) frees the current userdata too. */
    status = rr_server_listen(s, NULL, NULL, NULL, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    atomic_store(&r2->released, true);
    CHECK(atomic_load(&r2->frees) == 1);
    check_echo(s, "!stderr:to-nobody", "x");

    /* A registration without userdata_free, replaced: nothing to free, nothing breaks. */
    status = rr_server_listen(s, recorder_callback, r4, NULL, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    check_echo(s, "!stderr:to-r4", "x");
    EXPECT_EVENT(r4, RR_EVENT_WORKER_STDERR, -2, "to-r4", 1);

    status = rr_server_listen(s, recorder_callback, r3, recorder_free, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    atomic_store(&r4->released, true);
    CHECK(atomic_load(&r4->frees) == 0);
    check_echo(s, "!stderr:to-r3", "x");
    EXPECT_EVENT(r3, RR_EVENT_WORKER_STDERR, -2, "to-r3", 1);

    /* The last userdata is freed by rr_server_free, and only then. */
    CHECK(atomic_load(&r3->frees) == 0);
    rr_server_free(s);
    s = NULL;
    atomic_store(&r3->released, true);
    CHECK(atomic_load(&r3->frees) == 1);

    /* Exactly once each, and never a call after release. */
    CHECK(atomic_load(&r1->frees) == 1);
    CHECK(atomic_load(&r2->frees) == 1);
    CHECK(atomic_load(&r4->frees) == 0);
    struct recorder *all[] = {r1, r2, r3, r4};
    for (size_t i = 0; i < 4; i++) {
        if (!CHECK(atomic_load(&all[i]->after_release) == 0)) {
            note("recorder %zu was called %d time(s) after it was replaced", i + 1,
                 atomic_load(&all[i]->after_release));
        }
        CHECK(atomic_load(&all[i]->overlaps) == 0);
    }
done:
    rr_error_free(err);
    rr_server_free(s);
    delete_recorder(r1);
    delete_recorder(r2);
    delete_recorder(r3);
    delete_recorder(r4);
}
