/* test_concurrency.c: many threads calling rr_exec, while the server is reconfigured,
 * reset, or freed. */
#define _XOPEN_SOURCE 700

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* Threads that run echo tasks with unique bodies: a fixed number each, or until `stop`. */
struct load {
    rr_server *s;
    int tasks_per_thread; /* 0: until stop */
    atomic_bool stop;
    atomic_int done;
    atomic_int failed;
    atomic_int reported;
};
struct load_thread {
    struct load *load;
    int index;
};

static void *load_main(void *p)
{
    struct load_thread *t = p;
    struct load *load = t->load;
    for (int i = 0; load->tasks_per_thread == 0 ? !atomic_load(&load->stop) : i < load->tasks_per_thread; i++) {
        char body[96];
        int len = snprintf(body, sizeof body, "thread %d task %d: %08x", t->index, i, (unsigned)(i * 2654435761u));
        rr_payload *answer = NULL;
        rr_error *err = NULL;
        rr_status status =
            rr_exec(load->s, (const uint8_t *)"load", 4, (const uint8_t *)body, (size_t)len, &answer, &err);
        bool ok = status == RR_STATUS_OK;
        if (ok) {
            size_t got_len = 0;
            const uint8_t *got = rr_payload_body(answer, &got_len);
            ok = got_len == (size_t)len && memcmp(got, body, got_len) == 0;
            rr_payload_free(answer);
        }
        if (!ok) {
            atomic_fetch_add(&load->failed, 1);
            if (atomic_fetch_add(&load->reported, 1) < 5) {
                note("thread %d task %d: %s: %s", t->index, i, rr_status_str(status),
                     err != NULL ? rr_error_message(err) : "wrong answer");
            }
        }
        rr_error_free(err);
        atomic_fetch_add(&load->done, 1);
    }
    return NULL;
}

#define MAX_THREADS 16

static int start_load(struct load *load, struct load_thread *threads, pthread_t *ids, int count)
{
    int started = 0;
    for (; started < count && started < MAX_THREADS; started++) {
        threads[started] = (struct load_thread){load, started};
        if (pthread_create(&ids[started], NULL, load_main, &threads[started]) != 0) {
            break;
        }
    }
    CHECK(started == count);
    return started;
}

struct done_arg {
    struct load *load;
    int at_least;
};
static bool done_at_least(void *p)
{
    struct done_arg *a = p;
    return atomic_load(&a->load->done) >= a->at_least;
}
/* Waits until `more` further tasks were done. */
static bool wait_more_tasks(struct load *load, int more)
{
    struct done_arg a = {load, atomic_load(&load->done) + more};
    bool ok = wait_until(done_at_least, &a, 30000);
    if (!ok) {
        note("tasks stalled at %d", atomic_load(&load->done));
    }
    return ok;
}

void test_parallel_exec(void)
{
    rr_server *s = start_test_server("", 4);
    REQUIRE(s != NULL);
    struct load load = {.s = s, .tasks_per_thread = 250};
    struct load_thread threads[8];
    pthread_t ids[8];
    int started = start_load(&load, threads, ids, 8);
    for (int i = 0; i < started; i++) {
        pthread_join(ids[i], NULL);
    }
    CHECK(atomic_load(&load.done) == started * 250);
    CHECK(atomic_load(&load.failed) == 0);

    rr_worker_info *infos = NULL;
    size_t count = 0;
    if (CHECK(rr_server_workers(s, &infos, &count, NULL) == RR_STATUS_OK) && CHECK(count == 4)) {
        uint64_t total = 0;
        for (size_t i = 0; i < count; i++) {
            total += infos[i].num_execs;
            CHECK(infos[i].state == RR_WORKER_STATE_READY);
        }
        CHECK(total == (uint64_t)started * 250);
    }
    rr_worker_info_free(infos, count);
    rr_server_free(s);
}

struct in_flight {
    rr_server *s;
    rr_status status;
    bool answer_ok;
    bool has_error;
};

static void *in_flight_main(void *p)
{
    struct in_flight *f = p;
    rr_payload *answer = NULL;
    rr_error *err = NULL;
    /* After this call returns, the thread must not touch f->s: it may be freed. */
    f->status = rr_exec(f->s, (const uint8_t *)"!sleep:500", 10, (const uint8_t *)"in flight", 9, &answer, &err);
    if (f->status == RR_STATUS_OK) {
        size_t len = 0;
        const uint8_t *body = rr_payload_body(answer, &len);
        f->answer_ok = len == 9 && memcmp(body, "in flight", 9) == 0;
        rr_payload_free(answer);
    }
    f->has_error = err != NULL;
    rr_error_free(err);
    return NULL;
}

void test_free_during_exec(void)
{
    struct recorder *r = malloc(sizeof *r);
    REQUIRE(r != NULL);
    recorder_init(r);
    rr_server *s = start_test_server("", 2);
    if (s == NULL) {
        recorder_destroy(r);
        free(r);
        return;
    }
    rr_error *err = NULL;
    rr_status status = rr_server_listen(s, recorder_callback, r, recorder_free, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);

    struct in_flight flights[2] = {{.s = s}, {.s = s}};
    pthread_t ids[2];
    int started = 0;
    for (; started < 2; started++) {
        if (pthread_create(&ids[started], NULL, in_flight_main, &flights[started]) != 0) {
            break;
        }
    }
    CHECK(started == 2);
    /* Both workers busy means both threads are inside rr_exec. */
    CHECK(wait_workers(s, 2, RR_WORKER_STATE_WORKING, 10000));
    int64_t began = now_ms();
    rr_server_free(s);
    atomic_store(&r->released, true);
    note("rr_server_free with 2 tasks in flight took %lld ms", (long long)(now_ms() - began));
    CHECK(atomic_load(&r->frees) == 1);

    for (int i = 0; i < started; i++) {
        pthread_join(ids[i], NULL);
        /* Either the task finished, or it was cut short with an error object. */
        if (flights[i].status == RR_STATUS_OK) {
            CHECK(flights[i].answer_ok);
        } else {
            CHECK(flights[i].has_error);
            CHECK(flights[i].status == RR_STATUS_STATE || flights[i].status == RR_STATUS_WORKER_ERROR);
        }
        note("task %d in flight during free: %s", i, rr_status_str(flights[i].status));
    }
    CHECK(atomic_load(&r->after_release) == 0);
    recorder_destroy(r);
    free(r);
}

/* Reconfigures `s` with `config` (taking it) while the load runs, then lets the load
 * run 100 more tasks. */
static void reconfigure_under(struct load *load, rr_config *config)
{
    if (config != NULL) {
        rr_error *err = NULL;
        rr_status status = rr_server_reconfigure(load->s, config, &err);
        CHECK_STATUS(status, RR_STATUS_OK, err);
        rr_error_free(err);
        rr_config_free(config);
    }
    wait_more_tasks(load, 100);
}

/* Resets `s` while the load runs, then lets the load run 100 more tasks. */
static void reset_under(struct load *load)
{
    rr_error *err = NULL;
    rr_status status = rr_server_reset(load->s, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    wait_more_tasks(load, 100);
}

void test_reconfigure_under_load(void)
{
    rr_server *s = start_test_server("", 2);
    REQUIRE(s != NULL);
    struct load load = {.s = s, .tasks_per_thread = 0};
    struct load_thread threads[4];
    pthread_t ids[4];
    int started = start_load(&load, threads, ids, 4);

    wait_more_tasks(&load, 100);

    /* A bigger pool, with workers retired every few tasks. */
    rr_config *config = test_config(test_worker(""), "pipes", 3);
    if (config != NULL) {
        rr_config_set_max_jobs(config, 7);
    }
    reconfigure_under(&load, config);
    reset_under(&load);

    /* Another command line (mode given explicitly) and a smaller pool. */
    reconfigure_under(&load, test_config(test_worker("echo"), "pipes", 2));
    reset_under(&load);

    atomic_store(&load.stop, true);
    for (int i = 0; i < started; i++) {
        pthread_join(ids[i], NULL);
    }
    note("%d tasks during 2 reconfigures and 2 resets", atomic_load(&load.done));
    CHECK(atomic_load(&load.done) >= 500);
    if (!CHECK(atomic_load(&load.failed) == 0)) {
        note("%d of %d tasks failed", atomic_load(&load.failed), atomic_load(&load.done));
    }
    /* The current pool is the last one: 2 workers (old pools retire in the background). */
    CHECK(wait_workers(s, 2, RR_WORKER_STATE_READY, 15000));
    check_echo(s, "after", "reconfigures");
    rr_server_free(s);
}
