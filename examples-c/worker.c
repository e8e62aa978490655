/*
 * worker.c: a RoadRunner worker written in C with the library's worker side.
 *
 * It echoes every task (context and body), except:
 *   - context "error": answers with a job error whose message is the body;
 *   - context "stop":  asks the pool to replace this worker (rr_worker_stop).
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

int main(void)
{
    rr_worker *worker = NULL;
    rr_error *err = NULL;
    rr_status status = rr_worker_new(NULL, &worker, &err); /* NULL: RR_RELAY, else pipes */
    if (status != RR_STATUS_OK) {
        report("rr_worker_new", status, err);
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
