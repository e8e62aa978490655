/*
 * async_host.c: a C host of libroadrunner that submits tasks without blocking, through
 * a completion queue (rr_queue), the way a program built on an event loop would.
 *
 *   async-host [-r RELAY] [-p PROTOCOL] [-n WORKERS] [-k TASKS] [-i IN_FLIGHT]
 *              [-b BODY_BYTES] -- WORKER_COMMAND
 *
 * Starts a server with WORKERS workers running WORKER_COMMAND (one string, split by the
 * library like a shell would) over RELAY ("pipes", "tcp://host:port" or "unix://path"),
 * then runs TASKS tasks from this one thread, keeping IN_FLIGHT of them submitted at
 * any time:
 *
 *   - rr_exec_submit hands a task to the pool and returns at once; its outcome arrives
 *     later on the queue as an rr_completion carrying the task's tag (here: the task's
 *     number);
 *   - poll() on rr_queue_fd waits until completions are there (the descriptor is
 *     readable exactly while some wait), and rr_queue_next with timeout 0 takes them
 *     until it says RR_STATUS_TIMEOUT (none left);
 *   - one task is cancelled with rr_queue_cancel right after it was submitted: it
 *     completes with RR_STATUS_CANCELLED (or, if it was quicker than the cancel, with
 *     its answer).
 *
 * The worker must echo (like examples-c/worker.c or rr-test-worker): every answer is
 * checked against its request, every body being unique (it starts with the task
 * number). PROTOCOL is 1 (RoadRunner 1.x workers, the default) or 2.
 *
 * Prints the first answers, "N tasks, M failed", the cancelled task's fate and
 * "tasks/s: X" (wall time of the tasks), then frees everything. Exit status 0 iff every
 * task completed exactly once, as expected.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rr.h"

#define SHOW_ANSWERS 3      /* answers printed */
#define SHOW_FAILURES 5     /* failures printed */
#define STALL_MS 30000      /* no completion for this long while tasks are out: give up */

static const char CONTEXT[] = "async";

struct options {
    const char *relay;
    const char *command;
    unsigned long workers;
    unsigned long tasks;
    unsigned long in_flight;
    unsigned long body_bytes;
    unsigned long protocol;
};

/* What became of each task, indexed by its tag. */
enum task_state { NOT_SUBMITTED, OUTSTANDING, COMPLETED };

struct run {
    rr_server *server;
    rr_queue *queue;
    const struct options *opts;
    unsigned char *state;      /* enum task_state per task */
    uint8_t *body;             /* the request being built, or the expected answer */
    unsigned long submitted;   /* tasks accepted by rr_exec_submit */
    unsigned long outstanding; /* accepted, not completed yet */
    unsigned long completed;
    unsigned long failed;
    unsigned long shown_answers;
    unsigned long cancel_tag;  /* the task that is cancelled */
    rr_status cancel_outcome;  /* and how it completed */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: async-host [-r RELAY] [-p PROTOCOL] [-n WORKERS] [-k TASKS] [-i IN_FLIGHT]\n"
            "                  [-b BODY_BYTES] -- WORKER_COMMAND\n"
            "  -r RELAY  pipes (default), tcp://host:port or unix://path\n"
            "  -p        protocol: 1 (RoadRunner 1.x workers, default) or 2 (2.x and later)\n"
            "  -n        workers (default 4)     -k  tasks (default 10000)\n"
            "  -i        tasks kept in flight (default 64)\n"
            "  -b        body bytes (default 16)\n"
            "WORKER_COMMAND is one argument, e.g. -- \"php worker.php\"; the worker must echo.\n");
}

static bool parse_count(const char *text, unsigned long min, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || value < min) {
        return false;
    }
    *out = value;
    return true;
}

/* Prints `data` with non-printable bytes escaped, at most 64 bytes. */
static void print_bytes(FILE *to, const uint8_t *data, size_t len)
{
    size_t shown = len < 64 ? len : 64;
    fputc('"', to);
    for (size_t i = 0; i < shown; i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"' && data[i] != '\\') {
            fputc(data[i], to);
        } else {
            fprintf(to, "\\x%02x", data[i]);
        }
    }
    fputc('"', to);
    if (shown < len) {
        fprintf(to, "...(%zu bytes)", len);
    }
}

/* Writes the unique body of task `index` into body[0..len). */
static void fill_body(uint8_t *body, size_t len, unsigned long index)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "task-%lu-", index);
    for (size_t i = 0; i < len; i++) {
        body[i] = (i < (size_t)n) ? (uint8_t)prefix[i] : (uint8_t)('a' + (i + index) % 26);
    }
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a failed call's error, frees it, and returns false. */
static bool failed(const char *what, rr_status status, rr_error *err)
{
    fprintf(stderr, "async-host: %s failed: %s: %s\n", what, rr_status_str(status),
            err != NULL ? rr_error_message(err) : "(no details)");
    rr_error_free(err);
    return false;
}

/* Counts a task that went wrong, and says why for the first few. */
static void task_failed(struct run *run, uint64_t tag, const char *why, const rr_error *err)
{
    if (run->failed++ < SHOW_FAILURES) {
        printf("task %" PRIu64 " failed: %s%s%s\n", tag, why, err != NULL ? ": " : "",
               err != NULL ? rr_error_message(err) : "");
    }
}

/* Submits the next task; false when the library refused it (nothing is posted then). */
static bool submit_next(struct run *run)
{
    unsigned long tag = run->submitted;
    size_t len = run->opts->body_bytes;
    fill_body(run->body, len, tag);
    rr_error *err = NULL;
    /* Context and body are copied: the buffer may be reused as soon as this returns. */
    rr_status status = rr_exec_submit(run->server, run->queue, (const uint8_t *)CONTEXT, strlen(CONTEXT), run->body,
                                      len, tag, &err);
    if (status != RR_STATUS_OK) {
        return failed("rr_exec_submit", status, err);
    }
    run->state[tag] = OUTSTANDING;
    run->submitted++;
    run->outstanding++;
    return true;
}

/* Checks that an answer echoes the request of its task, and prints the first few. */
static void check_answer(struct run *run, uint64_t tag, const rr_payload *payload)
{
    size_t context_len = 0, answer_len = 0, len = run->opts->body_bytes;
    const uint8_t *context = rr_payload_context(payload, &context_len);
    const uint8_t *answer = rr_payload_body(payload, &answer_len);
    fill_body(run->body, len, tag); /* what the worker was sent */
    bool same = context_len == strlen(CONTEXT) && memcmp(context, CONTEXT, context_len) == 0 && answer_len == len &&
                (len == 0 || memcmp(answer, run->body, len) == 0);
    if (!same) {
        task_failed(run, tag, "the answer is not the request", NULL);
    }
    bool show = same ? run->shown_answers++ < SHOW_ANSWERS : run->failed <= SHOW_FAILURES;
    if (show) {
        printf("%s tag %" PRIu64 ": context=", same ? "answer" : "MISMATCH", tag);
        print_bytes(stdout, context, context_len);
        printf(" body=");
        print_bytes(stdout, answer, answer_len);
        printf("\n");
    }
}

/* Checks one completion, and frees what it holds. */
static void check_completion(struct run *run, rr_completion *c)
{
    if (c->tag >= run->opts->tasks || run->state[c->tag] != OUTSTANDING) {
        /* The library promises one completion per accepted task, with its own tag. */
        task_failed(run, c->tag, c->tag >= run->opts->tasks ? "unknown tag" : "completed twice", NULL);
    } else {
        run->state[c->tag] = COMPLETED;
        run->outstanding--;
        run->completed++;
        if (c->tag == run->cancel_tag) {
            run->cancel_outcome = c->status;
        }
        if (c->status == RR_STATUS_OK) {
            check_answer(run, c->tag, c->payload);
        } else if (!(c->status == RR_STATUS_CANCELLED && c->tag == run->cancel_tag)) {
            /* Any failure but the cancel we asked for. */
            task_failed(run, c->tag, rr_status_str(c->status), c->error);
        }
    }
    /* The completion's payload and error are ours (one of them is set). */
    rr_payload_free(c->payload);
    rr_error_free(c->error);
}

/* Takes every completion that waits; false when rr_queue_next itself failed. */
static bool drain(struct run *run)
{
    for (;;) {
        rr_completion c;
        rr_error *err = NULL;
        rr_status status = rr_queue_next(run->queue, 0, &c, &err);
        if (status == RR_STATUS_TIMEOUT) {
            rr_error_free(err);
            return true; /* none left: back to poll() */
        }
        if (status != RR_STATUS_OK) {
            return failed("rr_queue_next", status, err);
        }
        check_completion(run, &c);
    }
}

/* Waits until completions are there: poll() on the queue's descriptor, as an event loop
 * would (with other descriptors of its own). False when none came for STALL_MS. */
static bool wait_for_completions(struct run *run)
{
    struct pollfd pfd = {.fd = rr_queue_fd(run->queue), .events = POLLIN};
    for (;;) {
        int n = poll(&pfd, 1, STALL_MS);
        if (n > 0) {
            return true;
        }
        if (n == 0) {
            fprintf(stderr, "async-host: no task completed in %d ms (%lu outstanding)\n", STALL_MS, run->outstanding);
            return false;
        }
        if (errno != EINTR) {
            perror("async-host: poll");
            return false;
        }
    }
}

/* Runs every task, keeping opts->in_flight of them submitted; false on a broken run. */
static bool run_tasks(struct run *run)
{
    const struct options *opts = run->opts;
    bool cancelled = false;
    while (run->completed < opts->tasks) {
        /* Top up: submit until in_flight tasks are out (or every task is). */
        while (run->outstanding < opts->in_flight && run->submitted < opts->tasks) {
            if (!submit_next(run)) {
                return false;
            }
        }
        /* Once, when the line is full: cancel the task just submitted. It most likely
         * still waits for a worker, and then never runs; had it started, its worker
         * would be killed and replaced. Either way it completes once, CANCELLED, unless
         * it finished before the cancel came. */
        if (!cancelled && run->cancel_tag < run->submitted) {
            rr_error *err = NULL;
            rr_status status = rr_queue_cancel(run->queue, run->cancel_tag, &err);
            if (status != RR_STATUS_OK) {
                return failed("rr_queue_cancel", status, err);
            }
            cancelled = true;
        }
        if (!wait_for_completions(run) || !drain(run)) {
            return false;
        }
    }
    return true;
}

static bool run_host(const struct options *opts)
{
    rr_error *err = NULL;
    rr_config *config = NULL;
    rr_status status = rr_config_new(opts->command, opts->relay, &config, &err);
    if (status != RR_STATUS_OK) {
        return failed("rr_config_new", status, err);
    }
    rr_config_set_num_workers(config, opts->workers);
    status = rr_config_set_protocol(config, (uint32_t)opts->protocol, &err);
    if (status != RR_STATUS_OK) {
        rr_config_free(config);
        return failed("rr_config_set_protocol", status, err);
    }

    rr_server *server = NULL;
    status = rr_server_new(config, &server, &err);
    rr_config_free(config); /* the server has its own copy */
    if (status != RR_STATUS_OK) {
        return failed("rr_server_new", status, err);
    }
    status = rr_server_start(server, &err);
    if (status != RR_STATUS_OK) {
        failed("rr_server_start", status, err);
        rr_server_free(server);
        return false;
    }

    /* One queue receives the outcomes of every task submitted with it. */
    rr_queue *queue = NULL;
    status = rr_queue_new(&queue, &err);
    if (status != RR_STATUS_OK) {
        failed("rr_queue_new", status, err);
        rr_server_free(server);
        return false;
    }

    struct run run = {
        .server = server,
        .queue = queue,
        .opts = opts,
        .state = calloc(opts->tasks > 0 ? opts->tasks : 1, 1),
        .body = malloc(opts->body_bytes > 0 ? opts->body_bytes : 1),
        /* The last task of the first batch: submitted when the line is at its longest. */
        .cancel_tag = (opts->tasks < opts->in_flight ? opts->tasks : opts->in_flight) - 1,
        .cancel_outcome = RR_STATUS_OK,
    };
    bool ok = run.state != NULL && run.body != NULL;
    double begin = now_seconds();
    if (ok && opts->tasks > 0) {
        ok = run_tasks(&run);
    }
    double seconds = now_seconds() - begin;

    unsigned long bad = run.failed + (opts->tasks - run.completed);
    printf("%lu tasks, %lu failed\n", opts->tasks, bad);
    if (opts->tasks > 0 && run.state != NULL && run.state[run.cancel_tag] == COMPLETED) {
        printf("task %lu, cancelled at once: %s\n", run.cancel_tag,
               run.cancel_outcome == RR_STATUS_CANCELLED ? "completed cancelled"
                                                         : "had finished before the cancel (answer checked)");
    }
    printf("tasks/s: %.0f\n", seconds > 0 ? (double)run.completed / seconds : 0.0);
    fflush(stdout);
    ok = ok && bad == 0;

    /* Nothing is outstanding after a good run. After a broken one, freeing the queue
     * cancels what still is (workers running those tasks are killed and replaced). */
    rr_queue_free(queue);
    free(run.state);
    free(run.body);
    status = rr_server_stop(server, &err);
    if (status != RR_STATUS_OK) {
        ok = failed("rr_server_stop", status, err);
    }
    rr_server_free(server);
    return ok;
}

int main(int argc, char **argv)
{
    struct options opts = {
        .relay = "pipes", .workers = 4, .tasks = 10000, .in_flight = 64, .body_bytes = 16, .protocol = 1};
    int c;
    while ((c = getopt(argc, argv, "r:p:n:k:i:b:h")) != -1) {
        bool ok = true;
        switch (c) {
        case 'r': opts.relay = optarg; break;
        case 'n': ok = parse_count(optarg, 1, &opts.workers); break;
        case 'k': ok = parse_count(optarg, 0, &opts.tasks); break;
        case 'i': ok = parse_count(optarg, 1, &opts.in_flight); break;
        case 'b': ok = parse_count(optarg, 0, &opts.body_bytes); break;
        case 'p': ok = parse_count(optarg, 1, &opts.protocol) && opts.protocol <= 2; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "async-host: bad value for -%c: %s\n", c, optarg);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "async-host: expected one WORKER_COMMAND after the options\n");
        usage(stderr);
        return 2;
    }
    opts.command = argv[optind];
    printf("async-host: libroadrunner %s, %lu workers over %s (protocol %lu), %lu tasks of %lu bytes, %lu in "
           "flight: %s\n",
           rr_version(), opts.workers, opts.relay, opts.protocol, opts.tasks, opts.body_bytes, opts.in_flight,
           opts.command);
    fflush(stdout);
    return run_host(&opts) ? 0 : 1;
}
