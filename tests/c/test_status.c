/* test_status.c: the elastic pool and status export through the C interface:
 * rr_config_set_max_workers and its companions, rr_config_set_name, rr_config_differs,
 * rr_server_status_json, rr_server_metrics, rr_string_free and rr_server_remove_worker. */
#define _XOPEN_SOURCE 700

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

void test_status_arguments(void)
{
    rr_error *err = NULL;
    char *text = SENTINEL;
    CHECK_STATUS(rr_server_status_json(NULL, &text, &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_server_metrics(NULL, &text, &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK(text == SENTINEL);
    CHECK_STATUS(rr_server_remove_worker(NULL, 1, false, &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    rr_string_free(NULL);
    CHECK(rr_config_differs(NULL, NULL));

    rr_config *config = test_config(test_worker("echo"), "pipes", 1);
    REQUIRE(config != NULL);
    CHECK_STATUS(rr_config_set_name(config, NULL, &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_config_set_name(NULL, "x", &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK(rr_config_differs(config, NULL));
    CHECK(!rr_config_differs(config, config));

    /* Not started: a state error, nothing written. */
    rr_server *s = NULL;
    REQUIRE(CHECK_STATUS(rr_server_new(config, &s, &err), RR_STATUS_OK, err));
    CHECK_STATUS(rr_server_status_json(s, &text, &err), RR_STATUS_STATE, err);
    rr_error_free(err);
    err = NULL;
    CHECK(text == SENTINEL);
    rr_server_free(s);

    /* The ceiling below the floor, and a spawn rate of 0, are config errors. */
    rr_config_set_num_workers(config, 3);
    rr_config_set_max_workers(config, 2);
    s = SENTINEL;
    CHECK_STATUS(rr_server_new(config, &s, &err), RR_STATUS_CONFIG, err);
    CHECK(err != NULL && contains(rr_error_message(err), "max_workers"));
    rr_error_free(err);
    err = NULL;
    rr_config_set_max_workers(config, 4);
    rr_config_set_spawn_rate(config, 0);
    CHECK_STATUS(rr_server_new(config, &s, &err), RR_STATUS_CONFIG, err);
    CHECK(err != NULL && contains(rr_error_message(err), "spawn_rate"));
    rr_error_free(err);
    CHECK(s == SENTINEL);
    rr_config_set_max_workers(NULL, 1);
    rr_config_set_spawn_rate(NULL, 1);
    rr_config_set_scale_after_ms(NULL, 1);
    rr_config_set_scale_idle_ms(NULL, 1);
    rr_config_free(config);
}

void test_config_differs(void)
{
    rr_config *a = test_config(test_worker("echo"), "pipes", 1);
    rr_config *b = test_config(test_worker("other"), "pipe", 7);
    REQUIRE(a != NULL && b != NULL);
    /* The command and the pool do not count; "pipe" is "pipes". */
    CHECK(!rr_config_differs(a, b));
    rr_config_set_relay_timeout_ms(b, 1234);
    CHECK(rr_config_differs(a, b));
    rr_config_free(b);
    b = test_config(test_worker("echo"), "tcp://127.0.0.1:0", 1);
    CHECK(rr_config_differs(a, b));
    rr_config_free(a);
    rr_config_free(b);
}

/* An on-demand pool named "c-status": no worker until a task comes. */
static rr_server *on_demand_server(uint64_t ceiling)
{
    rr_config *config = test_config(test_worker("echo"), "pipes", 0);
    if (config == NULL) {
        return NULL;
    }
    rr_config_set_max_workers(config, ceiling);
    rr_config_set_scale_after_ms(config, 5);
    rr_config_set_scale_idle_ms(config, 60000);
    rr_error *err = NULL;
    if (!CHECK_STATUS(rr_config_set_name(config, "c-status", &err), RR_STATUS_OK, err)) {
        rr_error_free(err);
        rr_config_free(config);
        return NULL;
    }
    return start_with(config);
}

struct slow_task {
    rr_server *s;
    rr_status status;
};

static void *run_slow_task(void *arg)
{
    struct slow_task *task = arg;
    rr_error *err = NULL;
    task->status = exec_text(task->s, "!sleep:10000", "slow", NULL, NULL, &err);
    rr_error_free(err);
    return NULL;
}

/* Whether a worker of `arg` (a server) has run its task for 100 ms at least: long enough
 * that the task has reached it (a worker killed before it read its task would have the
 * task run on another one). */
static bool task_under_way(void *arg)
{
    char *json = NULL;
    if (rr_server_status_json(arg, &json, NULL) != RR_STATUS_OK) {
        return false;
    }
    const char *age = strstr(json, "\"task_ms\":");
    bool under_way = age != NULL && strtol(age + strlen("\"task_ms\":"), NULL, 10) >= 100;
    rr_string_free(json);
    return under_way;
}

void test_status_json_and_metrics(void)
{
    rr_server *s = on_demand_server(2);
    REQUIRE(s != NULL);
    rr_error *err = NULL;
    char *json = NULL;
    REQUIRE(CHECK_STATUS(rr_server_status_json(s, &json, &err), RR_STATUS_OK, err));
    CHECK(contains(json, "\"name\":\"c-status\""));
    CHECK(contains(json, "\"workers\":[]"));
    CHECK(contains(json, "\"workers_max\":2"));
    CHECK(contains(json, "\"workers_min\":0"));
    rr_string_free(json);

    check_echo(s, "", "the first task starts the first worker");
    int64_t pid = exec_pid(s);
    REQUIRE(CHECK_STATUS(rr_server_status_json(s, &json, &err), RR_STATUS_OK, err));
    char expected[64];
    snprintf(expected, sizeof expected, "\"pid\":%lld", (long long)pid);
    if (!CHECK(contains(json, expected))) {
        note("status: %s", json);
    }
    rr_string_free(json);

    char *metrics = NULL;
    REQUIRE(CHECK_STATUS(rr_server_metrics(s, &metrics, &err), RR_STATUS_OK, err));
    CHECK(contains(metrics, "rr_tasks_total{pool=\"c-status\",outcome=\"ok\"} 2\n"));
    CHECK(contains(metrics, "rr_workers_spawned_total{pool=\"c-status\"} 1\n"));
    CHECK(contains(metrics, "rr_workers_max{pool=\"c-status\"} 2\n"));
    size_t len = strlen(metrics);
    CHECK(len > 6 && strcmp(metrics + len - 6, "# EOF\n") == 0);
    rr_string_free(metrics);

    rr_pool_stats stats = {.size = sizeof stats};
    REQUIRE(CHECK_STATUS(rr_server_stats(s, &stats, &err), RR_STATUS_OK, err));
    CHECK(stats.workers_spawned == 1);
    CHECK(stats.size == sizeof stats);
    rr_server_free(s);
}

void test_remove_worker(void)
{
    rr_server *s = start_test_server("echo", 1);
    REQUIRE(s != NULL);
    static struct recorder recorded;
    struct recorder *events = &recorded;
    recorder_init(events);
    rr_error *err = NULL;
    REQUIRE(CHECK_STATUS(rr_server_listen(s, recorder_callback, events, recorder_free, &err), RR_STATUS_OK, err));

    /* Not a worker: an invalid argument. */
    CHECK_STATUS(rr_server_remove_worker(s, (int64_t)getpid(), true, &err), RR_STATUS_INVALID_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_server_remove_worker(s, -5, true, &err), RR_STATUS_INVALID_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;

    /* Killed while it runs a task: the task fails with a worker error, the worker is
     * replaced. */
    int64_t pid = exec_pid(s);
    struct slow_task task = {s, RR_STATUS_OK};
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, run_slow_task, &task) == 0);
    CHECK(wait_until(task_under_way, s, 15000));
    CHECK_STATUS(rr_server_remove_worker(s, pid, true, &err), RR_STATUS_OK, err);
    pthread_join(thread, NULL);
    CHECK(task.status == RR_STATUS_WORKER_ERROR);
    CHECK(recorder_wait(events, RR_EVENT_WORKER_REMOVED, pid, NULL, 1, 15000));
    int64_t replacement = exec_pid(s);
    CHECK(replacement > 0 && replacement != pid);

    /* Stopped gently while idle. */
    CHECK_STATUS(rr_server_remove_worker(s, replacement, false, &err), RR_STATUS_OK, err);
    CHECK(recorder_wait(events, RR_EVENT_WORKER_REMOVED, replacement, NULL, 1, 15000));
    check_echo(s, "", "served by the next one");
    CHECK(exec_pid(s) != replacement);

    rr_pool_stats stats = {.size = sizeof stats};
    REQUIRE(CHECK_STATUS(rr_server_stats(s, &stats, &err), RR_STATUS_OK, err));
    CHECK(stats.retired_removed == 2);
    CHECK(recorder_count(events, RR_EVENT_WORKER_DEAD, -2, NULL) == 0);
    rr_server_free(s);
    recorder_destroy(events);
}
