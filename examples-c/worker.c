/*
 * worker.c: a RoadRunner worker written in C with the library's worker side.
 *
 *   worker [--protocol 1|2]   (default 1: RoadRunner 1.x frames; 2: RoadRunner 2.x+)
 *
 * It echoes every task (context and body), except:
 *   - context "error": answers with a job error whose message is the body;
 *   - context "stop":  asks the pool to replace this worker (rr_worker_stop);
 *   - context "stream" (protocol 2): streams N chunks "chunk i of N", N being the body
 *     (a number), with rr_worker_send_chunk, then ends with an empty last part.
 * It loops until rr_worker_receive says stop (*out == NULL), then exits 0.
 *
 * The relay comes from RR_RELAY, set by the server that spawned it (pipes when unset).
 * On pipes, stdout is the protocol channel: never print to it. Diagnostics go to stderr,
 * where the server captures them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rr.h"

/* Prints the failure of `what` to stderr and frees the error. */
static void report(const char *what, rr_status status, rr_error *err)
{
    fprintf(stderr, "worker: %s failed: %s: %s\n", what, rr_status_str(status),
            err != NULL ? rr_error_message(err) : "(no details)");
    rr_error_free(err);
}

static int equals(const uint8_t *data, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && (n == 0 || memcmp(data, word, n) == 0);
}

/* Streams `count` chunks for a "stream" task, then the (empty) last part. A stream the
 * host cancelled was ended by the library: nothing more to send. */
static rr_status stream_chunks(rr_worker *worker, long count, rr_error **err)
{
    for (long i = 1; i <= count; i++) {
        char chunk[64];
        int len = snprintf(chunk, sizeof chunk, "chunk %ld of %ld", i, count);
        rr_status status = rr_worker_send_chunk(worker, (const uint8_t *)"stream", 6, (const uint8_t *)chunk,
                                                (size_t)len, err);
        if (status == RR_STATUS_CANCELLED) {
            rr_error_free(*err);
            *err = NULL;
            return RR_STATUS_OK;
        }
        if (status != RR_STATUS_OK) {
            return status;
        }
    }
    return rr_worker_respond(worker, (const uint8_t *)"stream", 6, NULL, 0, err);
}

int main(int argc, char **argv)
{
    uint32_t protocol = RR_PROTOCOL_V1;
    if (argc == 3 && strcmp(argv[1], "--protocol") == 0) {
        protocol = (uint32_t)strtoul(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: worker [--protocol 1|2]\n");
        return 2;
    }
    rr_worker *worker = NULL;
    rr_error *err = NULL;
    /* NULL relay: RR_RELAY, which the server sets, else pipes. */
    rr_status status = rr_worker_new_with_protocol(NULL, protocol, &worker, &err);
    if (status != RR_STATUS_OK) {
        report("rr_worker_new_with_protocol", status, err);
        return 1;
    }

    int exit_code = 0;
    for (;;) {
        rr_payload *task = NULL;
        status = rr_worker_receive(worker, &task, &err);
        if (status != RR_STATUS_OK) {
            report("rr_worker_receive", status, err);
            exit_code = 1;
            break;
        }
        if (task == NULL) {
            break; /* the server asked us to stop */
        }

        size_t context_len = 0, body_len = 0;
        const uint8_t *context = rr_payload_context(task, &context_len);
        const uint8_t *body = rr_payload_body(task, &body_len);
        const char *what;
        if (equals(context, context_len, "error")) {
            what = "rr_worker_error";
            status = rr_worker_error(worker, body, body_len, &err);
        } else if (equals(context, context_len, "stop")) {
            what = "rr_worker_stop";
            status = rr_worker_stop(worker, &err);
        } else if (equals(context, context_len, "stream") && protocol == RR_PROTOCOL_V2) {
            char count[32] = {0};
            memcpy(count, body, body_len < sizeof count - 1 ? body_len : sizeof count - 1);
            what = "rr_worker_send_chunk";
            status = stream_chunks(worker, strtol(count, NULL, 10), &err);
        } else {
            what = "rr_worker_respond";
            status = rr_worker_respond(worker, context, context_len, body, body_len, &err);
        }
        rr_payload_free(task);
        if (status != RR_STATUS_OK) {
            report(what, status, err);
            exit_code = 1;
            break;
        }
    }

    rr_worker_free(worker);
    return exit_code;
}
