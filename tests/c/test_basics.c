/* test_basics.c: version, static strings, *_free(NULL), NULL and invalid arguments,
 * configuration errors. */
#define _XOPEN_SOURCE 700

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* Checks that a call failed with RR_STATUS_NULL_ARGUMENT and gave an error object saying
 * so; frees it and resets `err` to NULL. */
#define CHECK_NULL_ARG(call, err)                                                                                     \
    do {                                                                                                              \
        rr_status st_ = (call);                                                                                       \
        CHECK_STATUS(st_, RR_STATUS_NULL_ARGUMENT, err);                                                              \
        if (CHECK((err) != NULL)) {                                                                                   \
            CHECK(rr_error_status(err) == RR_STATUS_NULL_ARGUMENT);                                                   \
            CHECK(rr_error_message(err) != NULL && rr_error_message(err)[0] != '\0');                                 \
        }                                                                                                             \
        rr_error_free(err);                                                                                           \
        (err) = NULL;                                                                                                 \
    } while (0)

/* The same for RR_STATUS_INVALID_ARGUMENT. */
#define CHECK_INVALID_ARG(call, err)                                                                                  \
    do {                                                                                                              \
        rr_status st_ = (call);                                                                                       \
        CHECK_STATUS(st_, RR_STATUS_INVALID_ARGUMENT, err);                                                           \
        if (CHECK((err) != NULL)) {                                                                                   \
            CHECK(rr_error_status(err) == RR_STATUS_INVALID_ARGUMENT);                                                \
        }                                                                                                             \
        rr_error_free(err);                                                                                           \
        (err) = NULL;                                                                                                 \
    } while (0)

void test_version(void)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", (int)RR_VERSION_MAJOR, (int)RR_VERSION_MINOR, (int)RR_VERSION_PATCH);
    const char *version = rr_version();
    REQUIRE(version != NULL);
    if (!CHECK(strcmp(version, want) == 0)) {
        note("rr_version() = \"%s\", RR_VERSION_* = %s", version, want);
    }
#ifdef RR_CARGO_VERSION
    /* Set by the Makefile from Cargo.toml: the header's macros must match the package. */
    if (!CHECK(strcmp(want, RR_CARGO_VERSION) == 0)) {
        note("RR_VERSION_* = %s, Cargo.toml = %s", want, RR_CARGO_VERSION);
    }
#endif
}

void test_status_str(void)
{
    const char *names[12];
    for (unsigned s = 0; s < 12; s++) {
        names[s] = rr_status_str((rr_status)s);
        if (!CHECK(names[s] != NULL && names[s][0] != '\0')) {
            note("rr_status_str(%u) is empty", s);
            names[s] = "";
        }
    }
    for (unsigned a = 0; a < 12; a++) {
        for (unsigned b = a + 1; b < 12; b++) {
            if (!CHECK(strcmp(names[a], names[b]) != 0)) {
                note("rr_status_str(%u) == rr_status_str(%u) == \"%s\"", a, b, names[a]);
            }
        }
    }
    /* Each named constant has its own value, as API.md fixes them. */
    CHECK(RR_STATUS_OK == 0 && RR_STATUS_JOB_ERROR == 1 && RR_STATUS_WORKER_ERROR == 2 && RR_STATUS_TIMEOUT == 3);
    CHECK(RR_STATUS_CONFIG == 4 && RR_STATUS_SPAWN == 5 && RR_STATUS_STATE == 6 && RR_STATUS_NULL_ARGUMENT == 7);
    CHECK(RR_STATUS_INVALID_ARGUMENT == 8 && RR_STATUS_INTERNAL == 9 && RR_STATUS_EXEC_TTL == 10 &&
          RR_STATUS_QUEUE_FULL == 11);
    /* Unknown values still give a string. */
    CHECK(rr_status_str((rr_status)12) != NULL);
    CHECK(rr_status_str((rr_status)0xffffffffu) != NULL);
}

void test_worker_state_str(void)
{
    static const char *const want[] = {"inactive", "ready", "working", "streaming", "stopping", "stopped", "errored"};
    static const int32_t codes[] = {RR_WORKER_STATE_INACTIVE, RR_WORKER_STATE_READY,    RR_WORKER_STATE_WORKING,
                                    RR_WORKER_STATE_STREAMING, RR_WORKER_STATE_STOPPING, RR_WORKER_STATE_STOPPED,
                                    RR_WORKER_STATE_ERRORED};
    for (int32_t i = 0; i < 7; i++) {
        CHECK(codes[i] == i);
        const char *name = rr_worker_state_str(i);
        if (!CHECK(name != NULL && strcmp(name, want[i]) == 0)) {
            note("rr_worker_state_str(%d) = \"%s\", expected \"%s\"", (int)i, name ? name : "(null)", want[i]);
        }
    }
    CHECK(rr_worker_state_str(7) != NULL);
    CHECK(rr_worker_state_str(-1) != NULL);
}

void test_free_null(void)
{
    rr_error_free(NULL);
    rr_config_free(NULL);
    rr_server_free(NULL);
    rr_payload_free(NULL);
    rr_worker_info_free(NULL, 0);
    rr_worker_info_free(NULL, 3);
    rr_worker_free(NULL);
    CHECK(true); /* reaching this line is the test */
}

void test_null_arguments_config(void)
{
    const char *command = test_worker("");
    rr_error *err = NULL;
    rr_config *config = SENTINEL;
    CHECK_NULL_ARG(rr_config_new(NULL, "pipes", &config, &err), err);
    CHECK(config == SENTINEL);
    CHECK_NULL_ARG(rr_config_new(command, "pipes", NULL, &err), err);
    /* err_out is optional */
    CHECK_STATUS(rr_config_new(NULL, "pipes", &config, NULL), RR_STATUS_NULL_ARGUMENT, NULL);
    CHECK(config == SENTINEL);

    /* Setters without a status ignore a NULL config. */
    rr_config_set_num_workers(NULL, 1);
    rr_config_set_max_jobs(NULL, 1);
    rr_config_set_allocate_timeout_ms(NULL, 1);
    rr_config_set_destroy_timeout_ms(NULL, 1);
    rr_config_set_relay_timeout_ms(NULL, 1);
    rr_config_set_exec_ttl_ms(NULL, 1);
    rr_config_set_ttl_ms(NULL, 1);
    rr_config_set_idle_ttl_ms(NULL, 1);
    rr_config_set_max_memory_bytes(NULL, 1);
    rr_config_set_max_queue(NULL, 1);
    rr_config_set_max_frame_bytes(NULL, 1);

    config = NULL;
    rr_status status = rr_config_new(command, "pipes", &config, &err);
    REQUIRE(CHECK_STATUS(status, RR_STATUS_OK, err) && config != NULL && config != SENTINEL);
    CHECK_NULL_ARG(rr_config_set_env(NULL, "K", "V", &err), err);
    CHECK_NULL_ARG(rr_config_set_env(config, NULL, "V", &err), err);
    CHECK_NULL_ARG(rr_config_set_env(config, "K", NULL, &err), err);
    CHECK_NULL_ARG(rr_config_set_dir(NULL, "/", &err), err);
    /* A NULL dir is documented (rr.h) as "back to the host's working directory". */
    status = rr_config_set_dir(config, NULL, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);

    rr_server *server = SENTINEL;
    CHECK_NULL_ARG(rr_server_new(NULL, &server, &err), err);
    CHECK_NULL_ARG(rr_server_new(config, NULL, &err), err);
    CHECK(server == SENTINEL);
    rr_config_free(config);

    /* A NULL relay is documented (rr.h) as "pipes": a valid config. */
    config = NULL;
    status = rr_config_new(command, NULL, &config, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err)) {
        server = NULL;
        status = rr_server_new(config, &server, &err);
        CHECK_STATUS(status, RR_STATUS_OK, err);
        rr_server_free(server);
        rr_config_free(config);
    }
    rr_error_free(err);
    err = NULL;

    /* Error accessors. */
    CHECK(rr_error_status(NULL) == RR_STATUS_NULL_ARGUMENT);
    CHECK(rr_error_message(NULL) == NULL);
    size_t len = 12345;
    CHECK(rr_error_data(NULL, &len) == NULL);
    /* A real error with a NULL len_out: must not crash. */
    status = rr_config_new(NULL, "pipes", &config, &err);
    if (CHECK(status == RR_STATUS_NULL_ARGUMENT && err != NULL)) {
        const uint8_t *data = rr_error_data(err, NULL);
        (void)data;
    }
    rr_error_free(err);
}

void test_null_arguments_server(void)
{
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_error *err = NULL;
    rr_config *config = test_config(test_worker(""), "pipes", 1);

    CHECK_NULL_ARG(rr_server_start(NULL, &err), err);
    CHECK_NULL_ARG(rr_server_stop(NULL, &err), err);
    CHECK_NULL_ARG(rr_server_reset(NULL, &err), err);
    CHECK_NULL_ARG(rr_server_reconfigure(NULL, config, &err), err);
    CHECK_NULL_ARG(rr_server_reconfigure(s, NULL, &err), err);

    const uint8_t ctx[] = "ctx", body[] = "body";
    rr_payload *answer = SENTINEL;
    CHECK_NULL_ARG(rr_exec(NULL, ctx, 3, body, 4, &answer, &err), err);
    CHECK_NULL_ARG(rr_exec(s, NULL, 3, body, 4, &answer, &err), err);
    CHECK_NULL_ARG(rr_exec(s, ctx, 3, NULL, 4, &answer, &err), err);
    CHECK_NULL_ARG(rr_exec(s, ctx, 3, body, 4, NULL, &err), err);
    CHECK_STATUS(rr_exec(s, ctx, 3, body, 4, NULL, NULL), RR_STATUS_NULL_ARGUMENT, NULL);
    CHECK(answer == SENTINEL);

    /* NULL with length 0 is fine. */
    answer = NULL;
    rr_status status = rr_exec(s, NULL, 0, NULL, 0, &answer, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err) && CHECK(answer != NULL && answer != SENTINEL)) {
        size_t len = 99;
        const uint8_t *data = rr_payload_context(answer, &len);
        CHECK(len == 0);
        (void)data;
        len = 99;
        data = rr_payload_body(answer, &len);
        CHECK(len == 0);
        (void)data;
        /* NULL len_out: must not crash */
        const uint8_t *p = rr_payload_body(answer, NULL);
        (void)p;
        rr_payload_free(answer);
    }
    rr_error_free(err);
    err = NULL;

    size_t len = 7;
    CHECK(rr_payload_context(NULL, &len) == NULL);
    CHECK(rr_payload_body(NULL, &len) == NULL);

    CHECK_NULL_ARG(rr_server_listen(NULL, recorder_callback, NULL, NULL, &err), err);
    /* A NULL callback is not an error: it unregisters (here: nothing). */
    status = rr_server_listen(s, NULL, NULL, NULL, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    err = NULL;

    CHECK(rr_event_type(NULL) < 100);
    CHECK(rr_event_pid(NULL) <= 0);
    CHECK(rr_event_message(NULL) == NULL);

    rr_worker_info *infos = SENTINEL;
    size_t count = 4242;
    CHECK_NULL_ARG(rr_server_workers(NULL, &infos, &count, &err), err);
    CHECK_NULL_ARG(rr_server_workers(s, NULL, &count, &err), err);
    CHECK_NULL_ARG(rr_server_workers(s, &infos, NULL, &err), err);
    CHECK(infos == SENTINEL && count == 4242);

    /* None of the refused calls ran a task: the one worker ran exactly one. */
    infos = NULL;
    status = rr_server_workers(s, &infos, &count, &err);
    if (CHECK_STATUS(status, RR_STATUS_OK, err) && CHECK(count == 1)) {
        CHECK(infos[0].num_execs == 1);
    }
    rr_worker_info_free(infos, count);
    rr_error_free(err);

    rr_config_free(config);
    rr_server_free(s);
}

void test_null_arguments_worker_side(void)
{
    rr_error *err = NULL;
    CHECK_NULL_ARG(rr_worker_new("pipes", NULL, &err), err);
    rr_payload *task = SENTINEL;
    CHECK_NULL_ARG(rr_worker_receive(NULL, &task, &err), err);
    CHECK(task == SENTINEL);
    CHECK_NULL_ARG(rr_worker_respond(NULL, (const uint8_t *)"c", 1, (const uint8_t *)"b", 1, &err), err);
    CHECK_NULL_ARG(rr_worker_error(NULL, (const uint8_t *)"m", 1, &err), err);
    CHECK_NULL_ARG(rr_worker_stop(NULL, &err), err);
    CHECK_STATUS(rr_worker_stop(NULL, NULL), RR_STATUS_NULL_ARGUMENT, NULL);
}

void test_invalid_utf8(void)
{
    const char *command = test_worker("");
    rr_error *err = NULL;
    rr_config *config = SENTINEL;
    CHECK_INVALID_ARG(rr_config_new("rr-\xff\xfe-worker", "pipes", &config, &err), err);
    CHECK_INVALID_ARG(rr_config_new(command, "unix:///tmp/\xc3\x28", &config, &err), err);
    CHECK(config == SENTINEL);

    config = NULL;
    rr_status status = rr_config_new(command, "pipes", &config, &err);
    REQUIRE(CHECK_STATUS(status, RR_STATUS_OK, err));
    CHECK_INVALID_ARG(rr_config_set_env(config, "KEY_\xff", "value", &err), err);
    CHECK_INVALID_ARG(rr_config_set_env(config, "KEY", "value \xe2\x82", &err), err);
    CHECK_INVALID_ARG(rr_config_set_dir(config, "/tmp/\x80", &err), err);
    rr_config_free(config);

    rr_worker *worker = SENTINEL;
    CHECK_INVALID_ARG(rr_worker_new("unix:///tmp/\xff.sock", &worker, &err), err);
    CHECK(worker == SENTINEL);
}

/* Returns the status of building a server from `command`/`relay` after `tweak` (which may
 * itself fail: then its status); the message goes to `message`. */
typedef rr_status (*tweak_fn)(rr_config *config, rr_error **err);

static rr_status new_server_status(const char *command, const char *relay, tweak_fn tweak, char *message,
                                   size_t message_len)
{
    rr_config *config = NULL;
    rr_server *server = SENTINEL;
    rr_error *err = NULL;
    message[0] = '\0';
    rr_status status = rr_config_new(command, relay, &config, &err);
    if (status == RR_STATUS_OK && tweak != NULL) {
        status = tweak(config, &err);
    }
    if (status == RR_STATUS_OK) {
        status = rr_server_new(config, &server, &err);
        if (status == RR_STATUS_OK) {
            rr_server_free(server);
        } else {
            CHECK(server == SENTINEL);
        }
    }
    if (status != RR_STATUS_OK) {
        CHECK(err != NULL && rr_error_status(err) == status);
        snprintf(message, message_len, "%s", err != NULL ? rr_error_message(err) : "");
    }
    rr_error_free(err);
    rr_config_free(config);
    return status;
}

static rr_status no_workers(rr_config *c, rr_error **err)
{
    (void)err;
    rr_config_set_num_workers(c, 0);
    return RR_STATUS_OK;
}
static rr_status no_allocate_timeout(rr_config *c, rr_error **err)
{
    (void)err;
    rr_config_set_allocate_timeout_ms(c, 0);
    return RR_STATUS_OK;
}
static rr_status no_destroy_timeout(rr_config *c, rr_error **err)
{
    (void)err;
    rr_config_set_destroy_timeout_ms(c, 0);
    return RR_STATUS_OK;
}
static rr_status no_relay_timeout(rr_config *c, rr_error **err)
{
    (void)err;
    rr_config_set_relay_timeout_ms(c, 0);
    return RR_STATUS_OK;
}
static rr_status no_frame_bytes(rr_config *c, rr_error **err)
{
    (void)err;
    rr_config_set_max_frame_bytes(c, 0);
    return RR_STATUS_OK;
}
static rr_status env_with_equals(rr_config *c, rr_error **err)
{
    return rr_config_set_env(c, "A=B", "x", err);
}
static rr_status env_rr_relay(rr_config *c, rr_error **err)
{
    return rr_config_set_env(c, "RR_RELAY", "pipes", err);
}
static rr_status dir_missing(rr_config *c, rr_error **err)
{
    return rr_config_set_dir(c, "/nonexistent/rr-c-tests-dir", err);
}

void test_config_errors(void)
{
    const char *command = test_worker("");
    char message[1024];
    rr_status status;

    status = new_server_status(command, "pipes", no_workers, message, sizeof message);
    CHECK(status == RR_STATUS_CONFIG);
    if (!CHECK(contains(message, "num_workers"))) {
        note("message: %s", message);
    }
    CHECK(new_server_status(command, "pipes", no_allocate_timeout, message, sizeof message) == RR_STATUS_CONFIG);
    CHECK(new_server_status(command, "pipes", no_destroy_timeout, message, sizeof message) == RR_STATUS_CONFIG);
    CHECK(new_server_status(command, "pipes", no_relay_timeout, message, sizeof message) == RR_STATUS_CONFIG);
    CHECK(new_server_status(command, "pipes", no_frame_bytes, message, sizeof message) == RR_STATUS_CONFIG);

    static const char *const bad_relays[] = {"carrier-pigeon://coop", "tcp://127.0.0.1", "tcp://127.0.0.1:notaport",
                                             "unix://", "", "PIPES "};
    for (size_t i = 0; i < sizeof bad_relays / sizeof bad_relays[0]; i++) {
        status = new_server_status(command, bad_relays[i], NULL, message, sizeof message);
        if (!CHECK(status == RR_STATUS_CONFIG)) {
            note("relay \"%s\": %s", bad_relays[i], rr_status_str(status));
        }
    }
    static const char *const bad_commands[] = {"", "   ", "'unterminated quote"};
    for (size_t i = 0; i < sizeof bad_commands / sizeof bad_commands[0]; i++) {
        status = new_server_status(bad_commands[i], "pipes", NULL, message, sizeof message);
        if (!CHECK(status == RR_STATUS_CONFIG)) {
            note("command \"%s\": %s", bad_commands[i], rr_status_str(status));
        }
    }
    /* Env and dir are checked by the setter or by rr_server_new. */
    status = new_server_status(command, "pipes", env_with_equals, message, sizeof message);
    CHECK(status == RR_STATUS_CONFIG || status == RR_STATUS_INVALID_ARGUMENT);
    status = new_server_status(command, "pipes", env_rr_relay, message, sizeof message);
    CHECK(status == RR_STATUS_CONFIG || status == RR_STATUS_INVALID_ARGUMENT);
    status = new_server_status(command, "pipes", dir_missing, message, sizeof message);
    CHECK(status == RR_STATUS_CONFIG || status == RR_STATUS_INVALID_ARGUMENT);

    /* Both relay spellings of pipes are accepted. */
    CHECK(new_server_status(command, "pipes", NULL, message, sizeof message) == RR_STATUS_OK);
    CHECK(new_server_status(command, "pipe", NULL, message, sizeof message) == RR_STATUS_OK);

    /* A bad reconfigure is refused and the running pool keeps serving. */
    rr_server *s = start_test_server("", 1);
    REQUIRE(s != NULL);
    rr_config *bad = test_config(command, "pipes", 1);
    if (bad != NULL) {
        rr_config_set_num_workers(bad, 0);
        rr_error *err = NULL;
        status = rr_server_reconfigure(s, bad, &err);
        CHECK_STATUS(status, RR_STATUS_CONFIG, err);
        rr_error_free(err);
        rr_config_free(bad);
    }
    check_echo(s, "still", "serving");
    rr_server_free(s);
}
