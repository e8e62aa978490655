/*
 * host.c: a C host of libroadrunner.
 *
 *   host [-r RELAY] [-p PROTOCOL] [-n WORKERS] [-t THREADS] [-k TASKS_PER_THREAD]
 *        [-b BODY_BYTES] [-s CHUNKS] [-q] -- WORKER_COMMAND
 *
 * Starts a server with WORKERS workers running WORKER_COMMAND (one string, split by the
 * library like a shell would) over RELAY ("pipes", "tcp://host:port" or "unix://path"),
 * prints the pool's events, runs TASKS_PER_THREAD tasks from each of THREADS threads and
 * checks that every answer equals its request (the worker must echo, like
 * examples-c/worker.c or rr-test-worker). Every body is unique: it starts with the
 * thread and task numbers (cut short when BODY_BYTES is smaller than that). PROTOCOL is
 * 1 (RoadRunner 1.x workers, the default) or 2 (RoadRunner 2.x and later). With -s and
 * protocol 2, it also runs one task whose answer is streamed (context "stream", body
 * CHUNKS: examples-c/worker.c and examples-php/worker-v2.php answer it with CHUNKS
 * chunks "chunk i of CHUNKS" and an empty last one), read chunk by chunk with
 * rr_exec_stream, and checks the chunks.
 *
 * Prints the first answers, "N tasks, M failed" and "tasks/s: X" (wall time of the
 * tasks), then stops and frees everything. Exit status 0 iff every answer matched.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rr.h"

#define SHOW_ANSWERS 3  /* answers printed */
#define SHOW_FAILURES 5 /* failures printed */

static const char CONTEXT[] = "host";

struct options {
    const char *relay;
    const char *command;
    unsigned long workers;
    unsigned long threads;
    unsigned long tasks;
    unsigned long body_bytes;
    unsigned long protocol;
    unsigned long stream_chunks;
    bool quiet;
};

/* Shared by the task threads. */
struct run {
    rr_server *server;
    const struct options *opts;
    atomic_ulong done;
    atomic_ulong failed;
    atomic_ulong shown_answers;
    atomic_ulong shown_failures;
};

struct thread_arg {
    struct run *run;
    unsigned long index;
};

/* Serializes output of the event callback and of the task threads. */
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: host [-r RELAY] [-p PROTOCOL] [-n WORKERS] [-t THREADS] [-k TASKS_PER_THREAD]\n"
            "            [-b BODY_BYTES] [-s CHUNKS] [-q] -- WORKER_COMMAND\n"
            "  -r RELAY  pipes (default), tcp://host:port or unix://path\n"
            "  -p        protocol: 1 (RoadRunner 1.x workers, default) or 2 (2.x and later)\n"
            "  -s        with -p 2: also a streamed task of CHUNKS chunks (context \"stream\")\n"
            "  -n        workers (default 4)     -t  threads (default 4)\n"
            "  -k        tasks per thread (default 1000)\n"
            "  -b        body bytes (default 16)\n"
            "  -q        quiet: do not print events\n"
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

static const char *event_name(int32_t type)
{
    switch (type) {
    case RR_EVENT_WORKER_CONSTRUCT: return "worker_construct";
    case RR_EVENT_WORKER_DESTRUCT: return "worker_destruct";
    case RR_EVENT_WORKER_KILL: return "worker_kill";
    case RR_EVENT_WORKER_ERROR: return "worker_error";
    case RR_EVENT_WORKER_DEAD: return "worker_dead";
    case RR_EVENT_POOL_ERROR: return "pool_error";
    case RR_EVENT_SERVER_START: return "server_start";
    case RR_EVENT_SERVER_STOP: return "server_stop";
    case RR_EVENT_SERVER_FAILURE: return "server_failure";
    case RR_EVENT_POOL_CONSTRUCT: return "pool_construct";
    case RR_EVENT_POOL_DESTRUCT: return "pool_destruct";
    case RR_EVENT_WORKER_STDERR: return "worker_stderr";
    default: return "unknown";
    }
}

/* The event callback: runs on a library thread, one call at a time per server. The
 * event is borrowed for the call only. */
static void on_event(void *userdata, const rr_event *event)
{
    FILE *to = userdata;
    int32_t type = rr_event_type(event);
    int64_t pid = rr_event_pid(event);
    const char *message = rr_event_message(event);
    pthread_mutex_lock(&print_lock);
    fprintf(to, "event %" PRId32 " %s pid=%" PRId64 "%s%s\n", type, event_name(type), pid,
            message != NULL ? ": " : "", message != NULL ? message : "");
    fflush(to);
    pthread_mutex_unlock(&print_lock);
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

/* Writes the unique body of task `index` of thread `thread` into body[0..len). */
static void fill_body(uint8_t *body, size_t len, unsigned long thread, unsigned long index)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "t%lu-i%lu-", thread, index);
    for (size_t i = 0; i < len; i++) {
        body[i] = (i < (size_t)n) ? (uint8_t)prefix[i] : (uint8_t)('a' + (i + thread + index) % 26);
    }
}

static void *run_tasks(void *p)
{
    struct thread_arg *arg = p;
    struct run *run = arg->run;
    size_t len = run->opts->body_bytes;
    uint8_t *body = malloc(len > 0 ? len : 1);
    if (body == NULL) {
        atomic_fetch_add(&run->failed, run->opts->tasks);
        return NULL;
    }
    for (unsigned long i = 0; i < run->opts->tasks; i++) {
        fill_body(body, len, arg->index, i);
        rr_payload *answer = NULL;
        rr_error *err = NULL;
        rr_status status = rr_exec(run->server, (const uint8_t *)CONTEXT, strlen(CONTEXT), body, len, &answer, &err);
        unsigned long number = atomic_fetch_add(&run->done, 1) + 1;
        if (status != RR_STATUS_OK) {
            atomic_fetch_add(&run->failed, 1);
            if (atomic_fetch_add(&run->shown_failures, 1) < SHOW_FAILURES) {
                pthread_mutex_lock(&print_lock);
                printf("task t%lu-i%lu failed: %s: %s\n", arg->index, i, rr_status_str(status),
                       err != NULL ? rr_error_message(err) : "(no details)");
                pthread_mutex_unlock(&print_lock);
            }
            rr_error_free(err);
            continue;
        }
        size_t context_len = 0, answer_len = 0;
        const uint8_t *context = rr_payload_context(answer, &context_len);
        const uint8_t *answer_body = rr_payload_body(answer, &answer_len);
        bool same = context_len == strlen(CONTEXT) && memcmp(context, CONTEXT, context_len) == 0 &&
                    answer_len == len && (len == 0 || memcmp(answer_body, body, len) == 0);
        if (!same) {
            atomic_fetch_add(&run->failed, 1);
        }
        bool show = !same ? atomic_fetch_add(&run->shown_failures, 1) < SHOW_FAILURES
                          : atomic_fetch_add(&run->shown_answers, 1) < SHOW_ANSWERS;
        if (show) {
            pthread_mutex_lock(&print_lock);
            printf("%s #%lu (thread %lu, task %lu): context=", same ? "answer" : "MISMATCH", number, arg->index, i);
            print_bytes(stdout, context, context_len);
            printf(" body=");
            print_bytes(stdout, answer_body, answer_len);
            printf("\n");
            pthread_mutex_unlock(&print_lock);
        }
        rr_payload_free(answer);
    }
    free(body);
    return NULL;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_workers(rr_server *server)
{
    rr_worker_info *infos = NULL;
    size_t count = 0;
    rr_error *err = NULL;
    rr_status status = rr_server_workers(server, &infos, &count, &err);
    if (status != RR_STATUS_OK) {
        printf("workers: %s: %s\n", rr_status_str(status), err != NULL ? rr_error_message(err) : "");
        rr_error_free(err);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        printf("worker pid=%" PRId64 " state=%s execs=%" PRIu64 " rss=%" PRIu64 "KiB\n", infos[i].pid,
               rr_worker_state_str(infos[i].state), infos[i].num_execs, infos[i].rss_bytes / 1024);
    }
    rr_worker_info_free(infos, count);
}

/* Prints a failed call's error, frees it, and returns false. */
static bool failed(const char *what, rr_status status, rr_error *err)
{
    fprintf(stderr, "host: %s failed: %s: %s\n", what, rr_status_str(status),
            err != NULL ? rr_error_message(err) : "(no details)");
    rr_error_free(err);
    return false;
}

/* Runs one streamed task of `chunks` chunks and checks each chunk as it arrives. */
static bool run_stream(rr_server *server, unsigned long chunks)
{
    char body[32];
    int body_len = snprintf(body, sizeof body, "%lu", chunks);
    rr_stream *stream = NULL;
    rr_error *err = NULL;
    rr_status status = rr_exec_stream(server, (const uint8_t *)"stream", 6, (const uint8_t *)body, (size_t)body_len,
                                      &stream, &err);
    if (status != RR_STATUS_OK) {
        return failed("rr_exec_stream", status, err);
    }
    bool ok = true;
    unsigned long got = 0;
    for (;;) {
        rr_payload *chunk = NULL;
        status = rr_stream_next(stream, &chunk, &err);
        if (status != RR_STATUS_OK) {
            ok = failed("rr_stream_next", status, err);
            break;
        }
        if (chunk == NULL) {
            break; /* after the last chunk */
        }
        size_t len = 0;
        const uint8_t *data = rr_payload_body(chunk, &len);
        char expected[64];
        int expected_len = got < chunks ? snprintf(expected, sizeof expected, "chunk %lu of %lu", got + 1, chunks) : 0;
        if (len != (size_t)expected_len || memcmp(data, expected, len) != 0) {
            fprintf(stderr, "host: chunk %lu is \"%.*s\", expected \"%s\"\n", got + 1, (int)len, (const char *)data,
                    expected_len > 0 ? expected : "(the empty last part)");
            ok = false;
        }
        got++;
        rr_payload_free(chunk);
    }
    rr_stream_free(stream);
    if (got != chunks + 1) {
        fprintf(stderr, "host: the stream gave %lu chunks, expected %lu and the last part\n", got, chunks);
        ok = false;
    }
    printf("stream: %lu chunks%s\n", got, ok ? ", each as expected" : ", NOT as expected");
    return ok;
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

    if (!opts->quiet) {
        /* userdata is stderr, which nobody has to free: userdata_free is NULL. */
        status = rr_server_listen(server, on_event, stderr, NULL, &err);
        if (status != RR_STATUS_OK) {
            failed("rr_server_listen", status, err);
            rr_server_free(server);
            return false;
        }
    }

    status = rr_server_start(server, &err);
    if (status != RR_STATUS_OK) {
        failed("rr_server_start", status, err);
        rr_server_free(server);
        return false;
    }

    struct run run = {.server = server, .opts = opts};
    atomic_init(&run.done, 0);
    atomic_init(&run.failed, 0);
    atomic_init(&run.shown_answers, 0);
    atomic_init(&run.shown_failures, 0);
    pthread_t *threads = calloc(opts->threads, sizeof *threads);
    struct thread_arg *args = calloc(opts->threads, sizeof *args);
    unsigned long started = 0;
    double begin = now_seconds();
    if (threads != NULL && args != NULL) {
        for (; started < opts->threads; started++) {
            args[started] = (struct thread_arg){.run = &run, .index = started};
            if (pthread_create(&threads[started], NULL, run_tasks, &args[started]) != 0) {
                fprintf(stderr, "host: cannot start thread %lu\n", started);
                break;
            }
        }
    }
    for (unsigned long i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    double seconds = now_seconds() - begin;
    free(threads);
    free(args);

    unsigned long expected = opts->threads * opts->tasks;
    unsigned long done = atomic_load(&run.done);
    unsigned long bad = atomic_load(&run.failed) + (expected - done);
    print_workers(server);
    pthread_mutex_lock(&print_lock);
    printf("%lu tasks, %lu failed\n", expected, bad);
    printf("tasks/s: %.0f\n", seconds > 0 ? (double)done / seconds : 0.0);
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);

    bool ok = bad == 0;
    if (opts->stream_chunks > 0) {
        ok = run_stream(server, opts->stream_chunks) && ok;
    }
    status = rr_server_stop(server, &err);
    if (status != RR_STATUS_OK) {
        ok = failed("rr_server_stop", status, err);
    }
    rr_server_free(server); /* after this, no event callback runs */
    return ok;
}

int main(int argc, char **argv)
{
    struct options opts = {
        .relay = "pipes", .workers = 4, .threads = 4, .tasks = 1000, .body_bytes = 16, .protocol = 1, .quiet = false};
    int c;
    while ((c = getopt(argc, argv, "r:p:n:t:k:b:s:qh")) != -1) {
        bool ok = true;
        switch (c) {
        case 'r': opts.relay = optarg; break;
        case 'n': ok = parse_count(optarg, 1, &opts.workers); break;
        case 't': ok = parse_count(optarg, 1, &opts.threads); break;
        case 'k': ok = parse_count(optarg, 0, &opts.tasks); break;
        case 'b': ok = parse_count(optarg, 0, &opts.body_bytes); break;
        case 'p': ok = parse_count(optarg, 1, &opts.protocol) && opts.protocol <= 2; break;
        case 's': ok = parse_count(optarg, 0, &opts.stream_chunks); break;
        case 'q': opts.quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "host: bad value for -%c: %s\n", c, optarg);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "host: expected one WORKER_COMMAND after the options\n");
        usage(stderr);
        return 2;
    }
    opts.command = argv[optind];
    if (opts.stream_chunks > 0 && opts.protocol != 2) {
        fprintf(stderr, "host: -s needs -p 2 (streamed answers are protocol V2's)\n");
        return 2;
    }
    printf("host: libroadrunner %s, %lu workers over %s (protocol %lu), %lu threads x %lu tasks of %lu bytes: %s\n",
           rr_version(), opts.workers, opts.relay, opts.protocol, opts.threads, opts.tasks, opts.body_bytes,
           opts.command);
    fflush(stdout);
    return run_host(&opts) ? 0 : 1;
}
