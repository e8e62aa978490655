/* test_v2.c: protocol V2 through the C interface: the settings, tasks and answers with
 * their codec, streamed answers (rr_exec_stream, rr_stream_next, rr_stream_cancel,
 * rr_stream_free), on pipes, TCP and a Unix socket; and the C example worker speaking
 * V2 with rr_worker_new_with_protocol and rr_worker_send_chunk. */
#define _XOPEN_SOURCE 700

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

/* A config of rr-test-worker speaking V2 over `relay`. */
static rr_config *v2_config(const char *command, const char *relay, uint64_t workers)
{
    rr_config *config = test_config(command, relay, workers);
    if (config == NULL) {
        return NULL;
    }
    rr_error *err = NULL;
    if (!CHECK_STATUS(rr_config_set_protocol(config, RR_PROTOCOL_V2, &err), RR_STATUS_OK, err) ||
        !CHECK_STATUS(rr_config_set_env(config, "RR_TEST_PROTOCOL", "2", &err), RR_STATUS_OK, err)) {
        rr_error_free(err);
        rr_config_free(config);
        return NULL;
    }
    return config;
}

void test_v2_settings(void)
{
    rr_config *config = test_config(test_worker("echo"), "pipes", 1);
    REQUIRE(config != NULL);
    rr_error *err = NULL;
    CHECK_STATUS(rr_config_set_protocol(config, 3, &err), RR_STATUS_INVALID_ARGUMENT, err);
    CHECK(err != NULL && contains(rr_error_message(err), "RR_PROTOCOL_V2"));
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_config_set_protocol(NULL, RR_PROTOCOL_V2, &err), RR_STATUS_NULL_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_config_set_codec(config, 0x03, &err), RR_STATUS_INVALID_ARGUMENT, err);
    rr_error_free(err);
    err = NULL;
    CHECK_STATUS(rr_config_set_codec(config, RR_CODEC_PROTO, &err), RR_STATUS_OK, err);
    CHECK_STATUS(rr_config_set_protocol(config, RR_PROTOCOL_V1, &err), RR_STATUS_OK, err);
    rr_config_set_stream_timeout_ms(config, 0); /* checked by rr_server_new */
    rr_server *s = SENTINEL;
    CHECK_STATUS(rr_server_new(config, &s, &err), RR_STATUS_CONFIG, err);
    CHECK(err != NULL && contains(rr_error_message(err), "stream_timeout"));
    CHECK(s == SENTINEL);
    rr_error_free(err);
    rr_config_set_stream_timeout_ms(NULL, 5);
    rr_config_free(config);
    CHECK(rr_payload_codec(NULL) == 0);
    CHECK(strcmp(rr_status_str(RR_STATUS_CANCELLED), "cancelled") == 0);
}

/* Reads the whole stream; returns the bodies joined with '|' (malloc'ed), or NULL. */
static char *read_stream(rr_stream *stream, rr_status *final, int *chunks)
{
    size_t room = 4096, used = 0;
    char *joined = calloc(room, 1);
    *chunks = 0;
    for (;;) {
        rr_payload *chunk = SENTINEL;
        rr_error *err = NULL;
        *final = rr_stream_next(stream, &chunk, &err);
        rr_error_free(err);
        if (*final != RR_STATUS_OK || chunk == NULL) {
            return joined;
        }
        size_t len = 0;
        const uint8_t *body = rr_payload_body(chunk, &len);
        if (used + len + 2 < room) {
            memcpy(joined + used, body, len);
            used += len;
            joined[used++] = '|';
        }
        (*chunks)++;
        rr_payload_free(chunk);
    }
}

static void check_v2_over(const char *relay)
{
    rr_server *s = start_with(v2_config(test_worker("echo"), relay, 1));
    REQUIRE(s != NULL);
    CHECK(check_echo(s, "{\"a\":1}", "hello over V2"));
    /* The answer's codec: the worker side sets none (flags 0), as PHP's 3.4 worker. */
    rr_payload *answer = NULL;
    rr_error *err = NULL;
    if (CHECK_STATUS(rr_exec(s, NULL, 0, (const uint8_t *)"x", 1, &answer, &err), RR_STATUS_OK, err)) {
        CHECK(rr_payload_codec(answer) == 0);
        rr_payload_free(answer);
    }
    /* rr_exec joins a streamed answer: the first chunk's context, every body. */
    char *context = NULL, *body = NULL;
    if (CHECK_STATUS(exec_text(s, "!stream:6", "j", &context, &body, &err), RR_STATUS_OK, err)) {
        CHECK(strcmp(context, "chunk") == 0);
        CHECK(strcmp(body, "j-0j-1j-2j-3j-4j-5j-end") == 0);
    }
    free(context);
    free(body);
    /* rr_exec_stream gives the chunks one by one, then NULL. */
    rr_stream *stream = NULL;
    if (CHECK_STATUS(rr_exec_stream(s, (const uint8_t *)"!stream:3", 9, (const uint8_t *)"s", 1, &stream, &err),
                     RR_STATUS_OK, err)) {
        rr_status final;
        int chunks;
        char *joined = read_stream(stream, &final, &chunks);
        CHECK(final == RR_STATUS_OK && chunks == 4);
        CHECK(joined != NULL && strcmp(joined, "s-0|s-1|s-2|s-end|") == 0);
        free(joined);
        rr_payload *after = SENTINEL;
        CHECK_STATUS(rr_stream_next(stream, &after, &err), RR_STATUS_OK, err);
        CHECK(after == NULL);
        rr_stream_free(stream);
    }
    /* Cancelled: the next read says so, and the worker serves the next task. */
    stream = NULL;
    if (CHECK_STATUS(rr_exec_stream(s, (const uint8_t *)"!stream-until-stopped", 21, (const uint8_t *)"m", 1,
                                    &stream, &err),
                     RR_STATUS_OK, err)) {
        rr_payload *chunk = NULL;
        if (CHECK_STATUS(rr_stream_next(stream, &chunk, &err), RR_STATUS_OK, err)) {
            CHECK(chunk != NULL);
            rr_payload_free(chunk);
        }
        CHECK_STATUS(rr_stream_cancel(stream, &err), RR_STATUS_OK, err);
        chunk = SENTINEL;
        CHECK_STATUS(rr_stream_next(stream, &chunk, &err), RR_STATUS_CANCELLED, err);
        CHECK(chunk == SENTINEL);
        CHECK(err != NULL && rr_error_status(err) == RR_STATUS_CANCELLED);
        rr_error_free(err);
        err = NULL;
        rr_stream_free(stream);
    }
    CHECK(check_echo(s, "", "after the cancel"));
    /* Freed unfinished: cancelled too. */
    stream = NULL;
    if (CHECK_STATUS(rr_exec_stream(s, (const uint8_t *)"!stream-until-stopped", 21, NULL, 0, &stream, &err),
                     RR_STATUS_OK, err)) {
        rr_stream_free(stream);
    }
    CHECK(check_echo(s, "", "after the free"));
    rr_pool_stats stats = {.size = sizeof stats};
    if (CHECK_STATUS(rr_server_stats(s, &stats, &err), RR_STATUS_OK, err)) {
        CHECK(stats.size == sizeof stats);
        CHECK(stats.tasks_cancelled == 2);
    }
    /* A stream that ends with a job error. */
    stream = NULL;
    if (CHECK_STATUS(rr_exec_stream(s, (const uint8_t *)"!stream-error:1", 15, (const uint8_t *)"bad", 3, &stream, &err),
                     RR_STATUS_OK, err)) {
        rr_payload *chunk = NULL;
        CHECK_STATUS(rr_stream_next(stream, &chunk, &err), RR_STATUS_OK, err);
        rr_payload_free(chunk);
        chunk = SENTINEL;
        CHECK_STATUS(rr_stream_next(stream, &chunk, &err), RR_STATUS_JOB_ERROR, err);
        size_t len = 0;
        CHECK(err != NULL && rr_error_data(err, &len) != NULL && len == 3);
        rr_error_free(err);
        err = NULL;
        rr_stream_free(stream);
    }
    rr_error_free(err);
    rr_server_free(s);
}

void test_v2_tasks_and_streams(void)
{
    char dir[] = "/tmp/rr-c-v2-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char unix_relay[256];
    snprintf(unix_relay, sizeof unix_relay, "unix://%s/v2.sock", dir);
    const char *relays[] = {"pipes", "tcp://127.0.0.1:0", unix_relay};
    for (size_t i = 0; i < sizeof relays / sizeof relays[0]; i++) {
        note("V2 over %s", relays[i]);
        check_v2_over(relays[i]);
    }
    rmdir(dir);
}

/* The C example worker speaking V2: tasks, and a streamed answer it sends with
 * rr_worker_send_chunk. */
void test_v2_c_worker(void)
{
    if (g_c_worker == NULL) {
        note("no C worker (-c or RR_C_WORKER): skipped");
        CHECK(g_c_worker != NULL);
        return;
    }
    rr_config *config = test_config(command_of(g_c_worker, "--protocol 2"), "pipes", 2);
    REQUIRE(config != NULL);
    rr_error *err = NULL;
    REQUIRE(CHECK_STATUS(rr_config_set_protocol(config, RR_PROTOCOL_V2, &err), RR_STATUS_OK, err));
    rr_server *s = start_with(config);
    REQUIRE(s != NULL);
    CHECK(check_echo(s, "ctx", "hello from C over V2"));
    rr_stream *stream = NULL;
    if (CHECK_STATUS(rr_exec_stream(s, (const uint8_t *)"stream", 6, (const uint8_t *)"4", 1, &stream, &err),
                     RR_STATUS_OK, err)) {
        rr_status final;
        int chunks;
        char *joined = read_stream(stream, &final, &chunks);
        CHECK(final == RR_STATUS_OK && chunks == 5);
        CHECK(joined != NULL && strcmp(joined, "chunk 1 of 4|chunk 2 of 4|chunk 3 of 4|chunk 4 of 4||") == 0);
        if (joined != NULL && strcmp(joined, "chunk 1 of 4|chunk 2 of 4|chunk 3 of 4|chunk 4 of 4||") != 0) {
            note("got \"%s\"", joined);
        }
        free(joined);
        rr_stream_free(stream);
    }
    rr_error_free(err);
    rr_server_free(s);
}
