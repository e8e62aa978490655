/* bench: libroadrunner against the physical floor, in one run.
 *
 * The floor is bench/echo_worker driven by hand (common.c: floor pairs), the pool is
 * rr_exec on a server running the very same echo_worker over the very same channel.
 * Floor and pool measurements alternate round after round (noise and thermal drift hit
 * both alike) and every figure is the median over the rounds. For the 4 x 16 shape,
 * by_hand.c adds hosts of that same shape written without the library. The completion
 * queue (rr_exec_submit + rr_queue) is measured on the pools of the pipes rows, right after
 * their rr_exec rows: one host thread keeping 64 tasks in flight on 4 workers (every body,
 * against the 2 floor pairs of the 4 x 16 rows) and 1 task in flight on 1 worker (16 B,
 * against rr_exec 1 x 1 of the same round and 1 floor pair).
 *
 *   bench [--json FILE] [--report] [--seconds S] [--rounds N] [--worker PATH]
 *
 *   --json FILE   also write every measurement to FILE (bench/report.py reads it)
 *   --report      add the scaling points (1..64 workers, 4x as many callers, pipes)
 *   --seconds S   length of one measurement (default 0.25)
 *   --rounds N    rounds of floor/pool alternation (default 5; medians need 3 or more)
 *   --allow-idle  let CPUs sleep when idle (by default the run holds PM QoS
 *                 /dev/cpu_dma_latency = 0, see hold_cpus_awake in common.h)
 *   --exec-loop N [--relay pipes|unix|tcp] [--workers W] [--callers C] [--body B]
 *               [--pin-workers] [--batch-workers] [--protocol 1|2] [--stream] [--async K]
 *                 only run N tasks of B bytes (default 16 B, 1 worker x 1 caller) and exit
 *                 (for strace -c -f, perf: what one task costs the host); --pin-workers and
 *                 --batch-workers turn on worker_cpu_affinity and worker_sched_batch;
 *                 --protocol 2 runs pool and workers in protocol V2; --stream (V2) makes
 *                 every task a stream of 16 chunks of 64 KiB read with rr_stream_next;
 *                 --async K: no callers, one thread keeps K tasks in flight through a
 *                 completion queue (rr_exec_submit, poll on rr_queue_fd, rr_queue_next)
 *
 * Protocol V2 (goridge 3/4 frames) is measured beside V1: the same echo_worker with
 * --protocol 2, the pool with rr_config_set_protocol(RR_PROTOCOL_V2), against floor pairs
 * moving V2 frames; and V2 streams (echo_worker --stream: 16 chunks of 64 KiB per task)
 * read with rr_exec_stream/rr_stream_next, against a floor pair reading the same frames.
 *
 * The output ends with the two "floor ratio:" lines, the project's headline numbers.
 */
#define _GNU_SOURCE
#include "common.h"

#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/utsname.h>
#include <time.h>

#include "by_hand.h"
#include "by_hand_async.h"
#include "rr.h"

/* ================================================================ allocation counting
 *
 * The bench binary defines malloc & co itself, so every allocation in the process (the
 * library's Rust code calls malloc/realloc/posix_memalign through the PLT) goes through
 * these wrappers, which count while `counting` is on and forward to glibc's own entry
 * points. Cheap enough to leave in place for the whole run: one relaxed load per call.
 */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *ptr);

static atomic_bool counting;
/* New blocks (malloc, calloc, posix_memalign..., realloc of NULL), resizes (realloc of
 * a block: may move and copy), and frees. New minus frees should be 0 per task. */
static atomic_ulong alloc_calls, realloc_calls, free_calls;

static inline void count(atomic_ulong *counter) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) {
        atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    }
}

void *malloc(size_t size) {
    count(&alloc_calls);
    return __libc_malloc(size);
}

void *calloc(size_t nmemb, size_t size) {
    count(&alloc_calls);
    return __libc_calloc(nmemb, size);
}

void *realloc(void *ptr, size_t size) {
    count(ptr ? &realloc_calls : &alloc_calls);
    return __libc_realloc(ptr, size);
}

void free(void *ptr) {
    if (ptr) {
        count(&free_calls);
    }
    __libc_free(ptr);
}

int posix_memalign(void **memptr, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) {
        return EINVAL;
    }
    count(&alloc_calls);
    void *p = __libc_memalign(alignment, size);
    if (!p) {
        return ENOMEM;
    }
    *memptr = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count(&alloc_calls);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    count(&alloc_calls);
    return __libc_memalign(alignment, size);
}

/* ================================================================ options, results */

#define MAX_ROUNDS 32
#define MAX_POINTS 256

static struct {
    double seconds;
    int rounds;
    bool report;
    bool allow_idle;
    bool cpus_awake; /* the PM QoS request is held */
    const char *json;
    char worker[PATH_MAX];
} opt = {.seconds = 0.25, .rounds = 5};

/* The opt-in scheduling settings every pool made from now on gets (rr_config_set_worker_
 * cpu_affinity, rr_config_set_worker_sched_batch). Off except for the "opt_in" points and
 * when --exec-loop is asked for them. */
static struct {
    bool cpu_affinity;
    bool sched_batch;
} pool_scheduling;

/* The protocol every pool made from now on speaks (1 or 2): with 2, the pool is
 * configured with RR_PROTOCOL_V2 and its echo_workers get "--protocol 2". V1 except while
 * the V2 points are measured. */
static int pool_protocol = 1;

/* One measured configuration and its results, one per round. "floor" points have
 * workers = callers = the number of pairs. */
typedef struct {
    const char *section; /* main, one_core, split_sends, scaling; v2 (main's shapes in protocol V2),
                            v2_stream (streams: body = the chunk size, tasks = streams of STREAM_CHUNKS
                            chunks), one_core_v2 (one_core in protocol V2) */
    const char *kind;    /* floor, pool, opt_in (main: pool with the opt-in settings), by_hand_locked and
                            by_hand_pipelined (main: by_hand.c), by_hand_async_loop and
                            by_hand_async_reactor (main: by_hand_async.c; callers = tasks in flight),
                            async, async_opt_in (main: the completion queue), naive (split_sends) */
    channel ch;
    size_t body;
    int workers, callers;
    int n;
    result round[MAX_ROUNDS];
    result med; /* medians of each figure over the rounds */
} point;

static point points[MAX_POINTS];
static int npoints;

static point *find_point(const char *section, const char *kind, channel ch, size_t body, int workers, int callers) {
    for (int i = 0; i < npoints; i++) {
        point *p = &points[i];
        if (strcmp(p->section, section) == 0 && strcmp(p->kind, kind) == 0 && p->ch == ch && p->body == body &&
            p->workers == workers && p->callers == callers) {
            return p;
        }
    }
    if (npoints == MAX_POINTS) {
        fprintf(stderr, "bench: too many points\n");
        exit(1);
    }
    point *p = &points[npoints++];
    *p = (point){.section = section, .kind = kind, .ch = ch, .body = body, .workers = workers, .callers = callers};
    return p;
}

/* The point if it was measured, else NULL (find_point would add an empty one). */
static point *measured_point(const char *section, const char *kind, channel ch, size_t body, int workers,
                             int callers) {
    for (int i = 0; i < npoints; i++) {
        point *p = &points[i];
        if (strcmp(p->section, section) == 0 && strcmp(p->kind, kind) == 0 && p->ch == ch && p->body == body &&
            p->workers == workers && p->callers == callers && p->n > 0) {
            return p;
        }
    }
    return NULL;
}

static void add_round(point *p, const result *r) {
    if (p->n < MAX_ROUNDS) {
        p->round[p->n++] = *r;
    }
    double v[MAX_ROUNDS];
#define MEDIAN_OF(field)                       \
    for (int i = 0; i < p->n; i++) {           \
        v[i] = p->round[i].field;              \
    }                                          \
    p->med.field = median(v, (size_t)p->n);
    MEDIAN_OF(tasks_per_s)
    MEDIAN_OF(p50_us)
    MEDIAN_OF(p99_us)
    MEDIAN_OF(mb_per_s)
#undef MEDIAN_OF
}

/* Whether a point's rounds disagree by more than 2x (the median is then a coin toss
 * between scheduler placements, not a property of the code). */
static bool unstable(const point *p) {
    double lo = 0, hi = 0;
    for (int i = 0; i < p->n; i++) {
        double v = p->round[i].tasks_per_s;
        lo = i == 0 || v < lo ? v : lo;
        hi = i == 0 || v > hi ? v : hi;
    }
    return lo > 0 && hi / lo > 2;
}

static double ratio_of(const point *pool, const point *floor) {
    return floor && floor->med.tasks_per_s > 0 && pool ? pool->med.tasks_per_s / floor->med.tasks_per_s : 0;
}

/* The MB/s cell of a table row: bodies from 4 KiB on; "-" for smaller ones, whose
 * bytes/s say nothing tasks/s does not. */
static void mb_cell(char *buf, size_t len, const point *p) {
    if (p->body >= 4096) {
        snprintf(buf, len, "%.1f", p->med.mb_per_s);
    } else {
        snprintf(buf, len, "-");
    }
}

/* Progress goes to stderr; the table at the end goes to stdout. */
static void progress(const char *kind, const point *p, const result *r) {
    char b[32];
    body_name(p->body, b, sizeof b);
    fprintf(stderr, "  %-9s %-5s %-5s %7s %2dw x %3dc  %9.0f tasks/s  p50 %8.1f us  p99 %8.1f us\n", p->section,
            kind, channel_names[p->ch], b, p->workers, p->callers, r->tasks_per_s, r->p50_us, r->p99_us);
}

/* A stream measurement: chunks/s and MB/s (the latencies are per whole stream). */
static void progress_stream(const char *kind, const point *p, const result *r) {
    fprintf(stderr, "  %-9s %-5s %-5s %2d x 64 KiB %2dw x %3dc  %9.0f chunks/s  %7.1f MB/s  p50 %8.1f us  p99 %8.1f us\n",
            p->section, kind, channel_names[p->ch], STREAM_CHUNKS, p->workers, p->callers,
            r->tasks_per_s * STREAM_CHUNKS, r->mb_per_s, r->p50_us, r->p99_us);
}

/* ================================================================ the pool side */

static void fail_rr(const char *what, rr_status st, rr_error *err) {
    fprintf(stderr, "bench: %s failed: %s: %s\n", what, rr_status_str(st), err ? rr_error_message(err) : "");
    rr_error_free(err);
    exit(1);
}

/* Makes (without starting) a server running `workers` echo_workers (with one extra
 * argument or none) on channel ch. Exits on failure: nothing else makes sense in a
 * benchmark. */
static rr_server *pool_new(channel ch, int workers, const char *extra_arg, long boot_sleep_ms) {
    char relay[128], command[PATH_MAX + 64];
    make_relay(ch, relay, sizeof relay);
    /* The command is split like a shell would: quote the path. */
    int n = snprintf(command, sizeof command, "'%s'", opt.worker);
    if (pool_protocol == 2) {
        n += snprintf(command + n, sizeof command - (size_t)n, " --protocol 2");
    }
    if (extra_arg) {
        n += snprintf(command + n, sizeof command - (size_t)n, " %s", extra_arg);
    }
    if (boot_sleep_ms > 0) {
        snprintf(command + n, sizeof command - (size_t)n, " --boot-sleep-ms %ld", boot_sleep_ms);
    }
    rr_config *cfg;
    rr_server *s;
    rr_error *err = NULL;
    rr_status st = rr_config_new(command, relay, &cfg, &err);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_config_new", st, err);
    }
    rr_config_set_num_workers(cfg, (uint64_t)workers);
    rr_config_set_relay_timeout_ms(cfg, 20000);
    rr_config_set_worker_cpu_affinity(cfg, pool_scheduling.cpu_affinity);
    rr_config_set_worker_sched_batch(cfg, pool_scheduling.sched_batch);
    if (pool_protocol == 2 && (st = rr_config_set_protocol(cfg, RR_PROTOCOL_V2, &err)) != RR_STATUS_OK) {
        fail_rr("rr_config_set_protocol", st, err);
    }
    st = rr_server_new(cfg, &s, &err);
    rr_config_free(cfg);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_server_new", st, err);
    }
    return s;
}

/* pool_new, started. */
static rr_server *pool_start(channel ch, int workers, const char *extra_arg, long boot_sleep_ms) {
    rr_server *s = pool_new(ch, workers, extra_arg, boot_sleep_ms);
    rr_error *err = NULL;
    rr_status st = rr_server_start(s, &err);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_server_start", st, err);
    }
    return s;
}

static void pool_stop(rr_server *s) {
    rr_error *err = NULL;
    rr_status st = rr_server_stop(s, &err);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_server_stop", st, err);
    }
    rr_server_free(s);
}

typedef struct {
    rr_server *s;
    const uint8_t *body;
    size_t body_len;
} pool_job;

static atomic_int exec_errors_shown;

/* One task through the library: exactly what a host does per request. */
static int pool_op(void *arg, int thread) {
    (void)thread;
    pool_job *job = arg;
    rr_payload *answer;
    rr_error *err = NULL;
    rr_status st = rr_exec(job->s, bench_context, bench_context_len, job->body, job->body_len, &answer, &err);
    if (st != RR_STATUS_OK) {
        if (atomic_fetch_add(&exec_errors_shown, 1) < 3) {
            fprintf(stderr, "bench: rr_exec failed: %s: %s\n", rr_status_str(st), err ? rr_error_message(err) : "");
        }
        rr_error_free(err);
        return -1;
    }
    size_t len;
    rr_payload_body(answer, &len);
    rr_payload_free(answer);
    return len == job->body_len ? 0 : -1;
}

/* Checks once that the pool really echoes (the timed loop only checks lengths). */
static void pool_check_echo(rr_server *s, size_t body_len) {
    const uint8_t *body = bench_body(body_len);
    rr_payload *answer;
    rr_error *err = NULL;
    rr_status st = rr_exec(s, bench_context, bench_context_len, body, body_len, &answer, &err);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_exec", st, err);
    }
    size_t clen, blen;
    const uint8_t *c = rr_payload_context(answer, &clen);
    const uint8_t *b = rr_payload_body(answer, &blen);
    if (clen != bench_context_len || memcmp(c, bench_context, clen) != 0 || blen != body_len ||
        memcmp(b, body, blen) != 0) {
        fprintf(stderr, "bench: the pool's answer is not the echo of the task\n");
        exit(1);
    }
    rr_payload_free(answer);
}

static void pool_measure(rr_server *s, int callers, size_t body_len, result *out) {
    pool_check_echo(s, body_len);
    pool_job job = {.s = s, .body = bench_body(body_len), .body_len = body_len};
    if (run_timed(callers, pool_op, &job, opt.seconds, 50, body_len, out) < 0) {
        fprintf(stderr, "bench: a pool measurement failed\n");
        exit(1);
    }
}

/* ---- V2 streams through the library: a pool of `echo_worker --protocol 2 --stream N`. */

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define STREAM_WORKER_ARG "--stream " STRINGIFY(STREAM_CHUNKS)

/* One streamed task: rr_exec_stream, then rr_stream_next until the end, every chunk
 * freed. With check, the first chunk's bytes are compared with the worker's pattern. */
static int pool_stream_task(rr_server *s, bool check) {
    rr_stream *st;
    rr_error *err = NULL;
    rr_status status = rr_exec_stream(s, bench_context, bench_context_len, bench_body(16), 16, &st, &err);
    if (status != RR_STATUS_OK) {
        if (atomic_fetch_add(&exec_errors_shown, 1) < 3) {
            fprintf(stderr, "bench: rr_exec_stream failed: %s: %s\n", rr_status_str(status),
                    err ? rr_error_message(err) : "");
        }
        rr_error_free(err);
        return -1;
    }
    long chunks = 0;
    bool ok = true;
    for (;;) {
        rr_payload *chunk;
        status = rr_stream_next(st, &chunk, &err);
        if (status != RR_STATUS_OK) {
            if (atomic_fetch_add(&exec_errors_shown, 1) < 3) {
                fprintf(stderr, "bench: rr_stream_next failed: %s: %s\n", rr_status_str(status),
                        err ? rr_error_message(err) : "");
            }
            rr_error_free(err);
            ok = false;
            break;
        }
        if (!chunk) {
            break;
        }
        size_t len;
        const uint8_t *body = rr_payload_body(chunk, &len);
        ok = ok && len == STREAM_CHUNK_BYTES && (!check || chunks > 0 || memcmp(body, bench_body(len), len) == 0);
        chunks++;
        rr_payload_free(chunk);
    }
    rr_stream_free(st);
    return ok && chunks == STREAM_CHUNKS ? 0 : -1;
}

static int pool_stream_op(void *arg, int thread) {
    (void)thread;
    return pool_stream_task(((pool_job *)arg)->s, false);
}

static void pool_stream_measure(rr_server *s, int callers, result *out) {
    if (pool_stream_task(s, true) < 0) {
        fprintf(stderr, "bench: the pool's stream is not %d chunks of the worker's %d bytes\n", STREAM_CHUNKS,
                STREAM_CHUNK_BYTES);
        exit(1);
    }
    pool_job job = {.s = s};
    if (run_timed(callers, pool_stream_op, &job, opt.seconds, 50, (size_t)STREAM_CHUNKS * STREAM_CHUNK_BYTES, out) <
        0) {
        fprintf(stderr, "bench: a pool stream measurement failed\n");
        exit(1);
    }
}

/* ---- the completion queue: one host thread, tasks in flight.
 *
 * The host pattern rr.h describes for rr_queue: submit with rr_exec_submit until
 * `in_flight` tasks are out, poll() on rr_queue_fd until completions wait, take them all
 * with rr_queue_next(q, 0) until RR_STATUS_TIMEOUT (each answer checked and freed), submit
 * again, and so on, all from the calling thread. A task's tag is its slot (0..in_flight-1),
 * which remembers when the task was submitted: a latency is submission to completion
 * taken. */

#define ASYNC_STALL_MS 30000 /* no completion for this long with tasks out: the run failed */

typedef struct {
    rr_server *s;
    rr_queue *q;
    int fd;
    const uint8_t *body;
    size_t body_len;
    int in_flight, outstanding;
    int *free_slots, nfree;
    uint64_t *sent_ns;  /* per slot */
    bool check;         /* compare the next answer's bytes with the task's */
    bool recording;     /* keep latencies (the measured window) */
    uint64_t *lat;
    size_t nlat, cap;
    long taken;
} async_host;

static void async_host_init(async_host *h, rr_server *s, int in_flight, size_t body_len) {
    rr_error *err = NULL;
    *h = (async_host){.s = s, .body = bench_body(body_len), .body_len = body_len, .in_flight = in_flight,
                      .check = true};
    rr_status st = rr_queue_new(&h->q, &err);
    if (st != RR_STATUS_OK) {
        fail_rr("rr_queue_new", st, err);
    }
    h->fd = rr_queue_fd(h->q);
    h->free_slots = malloc((size_t)in_flight * sizeof *h->free_slots);
    h->sent_ns = malloc((size_t)in_flight * sizeof *h->sent_ns);
    h->cap = 1u << 16;
    h->lat = malloc(h->cap * sizeof *h->lat);
    if (!h->free_slots || !h->sent_ns || !h->lat) {
        abort();
    }
    for (int i = 0; i < in_flight; i++) {
        h->free_slots[h->nfree++] = in_flight - 1 - i;
    }
}

static void async_host_free(async_host *h) {
    rr_queue_free(h->q);
    free(h->free_slots);
    free(h->sent_ns);
    free(h->lat);
}

/* Submits tasks until in_flight are out (at most `limit` more when limit >= 0). */
static int async_fill(async_host *h, long limit) {
    while (h->outstanding < h->in_flight && limit != 0) {
        int slot = h->free_slots[--h->nfree];
        rr_error *err = NULL;
        h->sent_ns[slot] = now_ns();
        rr_status st = rr_exec_submit(h->s, h->q, bench_context, bench_context_len, h->body, h->body_len,
                                      (uint64_t)slot, &err);
        if (st != RR_STATUS_OK) {
            if (atomic_fetch_add(&exec_errors_shown, 1) < 3) {
                fprintf(stderr, "bench: rr_exec_submit failed: %s: %s\n", rr_status_str(st),
                        err ? rr_error_message(err) : "");
            }
            rr_error_free(err);
            h->nfree++;
            return -1;
        }
        h->outstanding++;
        if (limit > 0) {
            limit--;
        }
    }
    return 0;
}

/* Waits until completions wait, then takes every one of them. Returns how many were
 * taken, or -1 (a task failed, an answer was wrong, or nothing came for ASYNC_STALL_MS). */
static long async_take(async_host *h) {
    struct pollfd pfd = {.fd = h->fd, .events = POLLIN};
    int n;
    while ((n = poll(&pfd, 1, ASYNC_STALL_MS)) < 0 && errno == EINTR) {
    }
    if (n <= 0) {
        fprintf(stderr, "bench: no completion in %d ms with %d tasks out\n", ASYNC_STALL_MS, h->outstanding);
        return -1;
    }
    long taken = 0;
    for (;;) {
        rr_completion c;
        /* err_out NULL: the TIMEOUT that ends each drain allocates nothing. */
        rr_status st = rr_queue_next(h->q, 0, &c, NULL);
        if (st == RR_STATUS_TIMEOUT) {
            break;
        }
        if (st != RR_STATUS_OK) {
            fail_rr("rr_queue_next", st, NULL);
        }
        uint64_t t = now_ns();
        if (c.tag >= (uint64_t)h->in_flight) {
            fprintf(stderr, "bench: a completion with an unknown tag %llu\n", (unsigned long long)c.tag);
            return -1;
        }
        h->free_slots[h->nfree++] = (int)c.tag;
        h->outstanding--;
        taken++;
        if (c.status != RR_STATUS_OK) {
            if (atomic_fetch_add(&exec_errors_shown, 1) < 3) {
                fprintf(stderr, "bench: a submitted task failed: %s: %s\n", rr_status_str(c.status),
                        c.error ? rr_error_message(c.error) : "");
            }
            rr_error_free(c.error);
            rr_payload_free(c.payload);
            return -1;
        }
        size_t blen, clen;
        const uint8_t *b = rr_payload_body(c.payload, &blen);
        bool ok = blen == h->body_len;
        if (ok && h->check) {
            const uint8_t *ctx = rr_payload_context(c.payload, &clen);
            ok = clen == bench_context_len && memcmp(ctx, bench_context, clen) == 0 &&
                 memcmp(b, h->body, blen) == 0;
            h->check = false;
        }
        rr_payload_free(c.payload);
        if (!ok) {
            fprintf(stderr, "bench: a submitted task's answer is not the echo of the task\n");
            return -1;
        }
        if (h->recording) {
            if (h->nlat == h->cap) {
                uint64_t *grown = realloc(h->lat, h->cap * 2 * sizeof *grown);
                if (!grown) {
                    abort();
                }
                h->lat = grown;
                h->cap *= 2;
            }
            h->lat[h->nlat++] = t - h->sent_ns[c.tag];
        }
    }
    h->taken += taken;
    return taken;
}

/* Takes the completions of every task still out (submitting nothing). */
static int async_drain(async_host *h) {
    while (h->outstanding > 0) {
        if (async_take(h) < 0) {
            return -1;
        }
    }
    return 0;
}

static int cmp_u64_lat(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* One measurement like run_timed's, from this thread: warm_ms of tasks (at least two),
 * then `seconds` counted (the completions taken in the window, from its start to the last
 * of them), then the tasks still out are taken and not counted. */
static int async_run(rr_server *s, int in_flight, size_t body_len, double seconds, long warmup_ms, result *out) {
    async_host h;
    async_host_init(&h, s, in_flight, body_len);
    int rc = 0;
    uint64_t warm_until = now_ns() + (uint64_t)warmup_ms * 1000000u;
    while (rc == 0 && (h.taken < 2 || now_ns() < warm_until)) {
        rc = async_fill(&h, -1) < 0 || async_take(&h) < 0 ? -1 : 0;
    }
    h.recording = true;
    uint64_t start = now_ns(), end = start, deadline = start + (uint64_t)(seconds * 1e9);
    while (rc == 0 && end < deadline) {
        rc = async_fill(&h, -1) < 0 || async_take(&h) < 0 ? -1 : 0;
        end = now_ns();
    }
    h.recording = false;
    if (rc == 0) {
        rc = async_drain(&h);
    }
    *out = (result){0};
    size_t total = h.nlat;
    double secs = (double)(end - start) / 1e9;
    if (rc == 0 && total > 0 && secs > 0) {
        qsort(h.lat, total, sizeof *h.lat, cmp_u64_lat);
        out->tasks = total;
        out->seconds = secs;
        out->tasks_per_s = (double)total / secs;
        out->p50_us = (double)h.lat[total / 2] / 1e3;
        size_t i99 = (size_t)((double)total * 0.99);
        out->p99_us = (double)h.lat[i99 < total ? i99 : total - 1] / 1e3;
        out->mb_per_s = out->tasks_per_s * (double)body_len / 1e6;
    }
    async_host_free(&h);
    return rc;
}

static void async_measure(rr_server *s, int in_flight, size_t body_len, result *out) {
    if (async_run(s, in_flight, body_len, opt.seconds, 50, out) < 0) {
        fprintf(stderr, "bench: an async measurement failed\n");
        exit(1);
    }
}

/* ================================================================ the floor side */

static void floor_start(floor_pair *p, int pairs, channel ch, const char *extra_arg) {
    for (int i = 0; i < pairs; i++) {
        if (floor_pair_start(&p[i], opt.worker, extra_arg, ch) < 0) {
            fprintf(stderr, "bench: cannot start floor pair %d over %s\n", i, channel_names[ch]);
            exit(1);
        }
    }
}

/* Floor pairs speaking protocol V2 (the worker with "--protocol 2" and extra_args). */
static void floor_start_v2(floor_pair *p, int pairs, channel ch, const char *const *extra_args) {
    for (int i = 0; i < pairs; i++) {
        if (floor_pair_start_protocol(&p[i], opt.worker, extra_args, ch, 2) < 0) {
            fprintf(stderr, "bench: cannot start V2 floor pair %d over %s\n", i, channel_names[ch]);
            exit(1);
        }
    }
}

static void floor_stop(floor_pair *p, int pairs) {
    for (int i = 0; i < pairs; i++) {
        floor_pair_stop(&p[i]);
    }
}

static void floor_run(floor_pair *p, int pairs, size_t body_len, result *out) {
    if (floor_measure(p, pairs, body_len, opt.seconds, out) < 0) {
        fprintf(stderr, "bench: a floor measurement failed\n");
        exit(1);
    }
}

/* ================================================================ sections */

static const size_t bodies[] = {16, 4096, 65536, 1u << 20};
#define NBODIES 4
/* Tasks in flight in the completion queue's rows with 4 workers (and their by-hand shapes). */
#define ASYNC_IN_FLIGHT 64

/* 4 workers x 16 threads written by hand (by_hand.c), pipes, 16 B: the reference of the
 * pool's own shape. */
static void section_by_hand(void) {
    static const struct {
        const char *kind;
        by_hand_mode mode;
    } modes[] = {{"by_hand_locked", BY_HAND_LOCKED}, {"by_hand_pipelined", BY_HAND_PIPELINED}};
    floor_pair pairs[4];
    floor_start(pairs, 4, CH_PIPES, NULL);
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        result r;
        point *p = find_point("main", modes[k].kind, CH_PIPES, 16, 4, 16);
        if (by_hand_measure(pairs, 4, 16, modes[k].mode, 16, opt.seconds, &r) < 0) {
            fprintf(stderr, "bench: a by-hand measurement failed\n");
            exit(1);
        }
        add_round(p, &r);
        progress("by-hand", p, &r);
    }
    /* The completion queue's shape by hand (by_hand_async.c): 4 workers with 64 tasks in
     * flight and 1 worker with 1, one thread alone or a host thread and a reactor thread. */
    static const struct {
        const char *kind;
        by_hand_async_shape shape;
    } shapes[] = {{"by_hand_async_loop", BY_HAND_ASYNC_ONE_LOOP}, {"by_hand_async_reactor", BY_HAND_ASYNC_REACTOR}};
    static const int sizes[2][2] = {{4, ASYNC_IN_FLIGHT}, {1, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        for (int z = 0; z < 2; z++) {
            result r;
            point *p = find_point("main", shapes[k].kind, CH_PIPES, 16, sizes[z][0], sizes[z][1]);
            if (by_hand_async_measure(pairs, sizes[z][0], sizes[z][1], shapes[k].shape, 16, opt.seconds, 50, &r) <
                0) {
                fprintf(stderr, "bench: a by-hand async measurement failed\n");
                exit(1);
            }
            add_round(p, &r);
            progress("by-hand", p, &r);
        }
    }
    floor_stop(pairs, 4);
}

/* Protocol V2 on one channel, the shapes of the big table: 1 and 2 V2 floor pairs, a V2
 * pool of 1 x 1 and of 4 x 16; then streams (1 x 1): a V2 floor pair whose worker streams,
 * and a pool of such workers read with rr_exec_stream/rr_stream_next. */
static void section_v2(channel ch) {
    floor_pair pairs[2];
    floor_start_v2(pairs, 2, ch, NULL);
    for (int b = 0; b < NBODIES; b++) {
        for (int n = 1; n <= 2; n++) {
            result r;
            point *p = find_point("v2", "floor", ch, bodies[b], n, n);
            floor_run(pairs, n, bodies[b], &r);
            add_round(p, &r);
            progress("floor", p, &r);
        }
    }
    floor_stop(pairs, 2);

    pool_protocol = 2;
    static const int shapes[2][2] = {{1, 1}, {4, 16}};
    for (int k = 0; k < 2; k++) {
        rr_server *s = pool_start(ch, shapes[k][0], NULL, 0);
        for (int b = 0; b < NBODIES; b++) {
            result r;
            point *p = find_point("v2", "pool", ch, bodies[b], shapes[k][0], shapes[k][1]);
            pool_measure(s, shapes[k][1], bodies[b], &r);
            add_round(p, &r);
            progress("pool", p, &r);
        }
        pool_stop(s);
    }

    result r;
    static const char *const stream_args[] = {"--stream", STRINGIFY(STREAM_CHUNKS), NULL};
    floor_start_v2(pairs, 1, ch, stream_args);
    point *p = find_point("v2_stream", "floor", ch, STREAM_CHUNK_BYTES, 1, 1);
    if (floor_stream_measure(pairs, 1, STREAM_CHUNKS, STREAM_CHUNK_BYTES, opt.seconds, &r) < 0) {
        fprintf(stderr, "bench: a floor stream measurement failed\n");
        exit(1);
    }
    add_round(p, &r);
    progress_stream("floor", p, &r);
    floor_stop(pairs, 1);

    rr_server *s = pool_start(ch, 1, STREAM_WORKER_ARG, 0);
    p = find_point("v2_stream", "pool", ch, STREAM_CHUNK_BYTES, 1, 1);
    pool_stream_measure(s, 1, &r);
    add_round(p, &r);
    progress_stream("pool", p, &r);
    pool_stop(s);
    pool_protocol = 1;
}

/* The completion queue over pipes, on the pools of the big table right after their rr_exec
 * rows (same server, same workers): with 4 workers, one thread keeping ASYNC_IN_FLIGHT tasks
 * in flight, every body; with 1 worker, one task in flight, 16 B (rr_exec 1 x 1's shape).
 * The points are "main"/"async", callers = the tasks in flight. */
static void section_async(rr_server *s, int workers) {
    int in_flight = workers == 1 ? 1 : ASYNC_IN_FLIGHT;
    for (int b = 0; b < NBODIES; b++) {
        if (workers == 1 && bodies[b] != 16) {
            continue;
        }
        result r;
        point *p = find_point("main", "async", CH_PIPES, bodies[b], workers, in_flight);
        async_measure(s, in_flight, bodies[b], &r);
        add_round(p, &r);
        progress("async", p, &r);
    }
}

/* The big table: every channel and body, 1 worker x 1 caller against 1 floor pair and
 * 4 workers x 16 callers against 2 floor pairs; then the same in protocol V2. */
static void section_main(void) {
    for (int ch = 0; ch < 3; ch++) {
        floor_pair pairs[2];
        floor_start(pairs, 2, (channel)ch, NULL);
        for (int b = 0; b < NBODIES; b++) {
            for (int n = 1; n <= 2; n++) {
                result r;
                point *p = find_point("main", "floor", (channel)ch, bodies[b], n, n);
                floor_run(pairs, n, bodies[b], &r);
                add_round(p, &r);
                progress("floor", p, &r);
            }
        }
        floor_stop(pairs, 2);
        if (ch == CH_PIPES) {
            section_by_hand();
        }

        static const int shapes[2][2] = {{1, 1}, {4, 16}};
        for (int k = 0; k < 2; k++) {
            rr_server *s = pool_start((channel)ch, shapes[k][0], NULL, 0);
            for (int b = 0; b < NBODIES; b++) {
                result r;
                point *p = find_point("main", "pool", (channel)ch, bodies[b], shapes[k][0], shapes[k][1]);
                pool_measure(s, shapes[k][1], bodies[b], &r);
                add_round(p, &r);
                progress("pool", p, &r);
            }
            if (ch == CH_PIPES) {
                section_async(s, shapes[k][0]);
            }
            pool_stop(s);
        }
        if (ch == CH_PIPES) {
            /* 4 x 16 again with both opt-in scheduling settings: what they buy on this machine. */
            pool_scheduling.cpu_affinity = pool_scheduling.sched_batch = true;
            rr_server *s = pool_start(CH_PIPES, 4, NULL, 0);
            pool_scheduling.cpu_affinity = pool_scheduling.sched_batch = false;
            for (int b = 0; b < NBODIES; b++) {
                result r;
                point *p = find_point("main", "opt_in", CH_PIPES, bodies[b], 4, 16);
                pool_measure(s, 16, bodies[b], &r);
                add_round(p, &r);
                progress("opt-in", p, &r);
            }
            result r;
            point *p = find_point("main", "async_opt_in", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT);
            async_measure(s, ASYNC_IN_FLIGHT, 16, &r);
            add_round(p, &r);
            progress("async+", p, &r);
            pool_stop(s);
        }
        section_v2((channel)ch);
    }
}

/* Warns when a process is not confined to CPU 0 (the pinning did not reach it). */
static void check_pinned(pid_t pid, const char *who) {
    cpu_set_t mask;
    if (sched_getaffinity(pid, sizeof mask, &mask) == 0 && (CPU_COUNT(&mask) != 1 || !CPU_ISSET(0, &mask))) {
        fprintf(stderr, "bench: warning: %s %d is not pinned to CPU 0\n", who, (int)pid);
    }
}

/* 1 worker x 1 caller over pipes, with the whole process tree on one core: no cross-CPU
 * wake-ups, so the figure measures work done per task rather than scheduler luck. */
#define ONE_CORE_STRETCH 4 /* the headline gets 4x longer measurements */

static void section_one_core(void) {
    double seconds = opt.seconds;
    opt.seconds = seconds * ONE_CORE_STRETCH;
    if (pin_all_to_cpu(0) < 0) {
        fprintf(stderr, "bench: cannot pin to CPU 0: %s\n", strerror(errno));
        exit(1);
    }
    for (int round = 0; round < opt.rounds; round++) {
        result r;
        floor_pair pair;
        floor_start(&pair, 1, CH_PIPES, NULL);
        check_pinned(pair.pid, "floor worker");
        point *p = find_point("one_core", "floor", CH_PIPES, 16, 1, 1);
        floor_run(&pair, 1, 16, &r);
        add_round(p, &r);
        progress("floor", p, &r);
        floor_stop(&pair, 1);

        rr_server *s = pool_start(CH_PIPES, 1, NULL, 0);
        rr_worker_info *infos;
        size_t ninfos;
        if (rr_server_workers(s, &infos, &ninfos, NULL) == RR_STATUS_OK) {
            for (size_t i = 0; i < ninfos; i++) {
                check_pinned((pid_t)infos[i].pid, "pool worker");
            }
            rr_worker_info_free(infos, ninfos);
        }
        p = find_point("one_core", "pool", CH_PIPES, 16, 1, 1);
        pool_measure(s, 1, 16, &r);
        add_round(p, &r);
        progress("pool", p, &r);
        pool_stop(s);

        /* The same in protocol V2 (V2 floor pair, V2 pool): V2 against V1 without the
         * scheduler's placement in the way. */
        floor_start_v2(&pair, 1, CH_PIPES, NULL);
        p = find_point("one_core_v2", "floor", CH_PIPES, 16, 1, 1);
        floor_run(&pair, 1, 16, &r);
        add_round(p, &r);
        progress("floor", p, &r);
        floor_stop(&pair, 1);
        pool_protocol = 2;
        s = pool_start(CH_PIPES, 1, NULL, 0);
        pool_protocol = 1;
        p = find_point("one_core_v2", "pool", CH_PIPES, 16, 1, 1);
        pool_measure(s, 1, 16, &r);
        add_round(p, &r);
        progress("pool", p, &r);
        pool_stop(s);
    }
    unpin_all();
    opt.seconds = seconds;
}

/* A PHP-like worker over TCP: prefix and payload in separate send()s, Nagle on. The
 * pool must answer well under 1 ms; a naive host (TCP_NODELAY but no TCP_QUICKACK)
 * shows the ~40 ms delayed-ACK stall the library avoids. */
static void section_split_sends(void) {
    for (int round = 0; round < opt.rounds; round++) {
        result r;
        rr_server *s = pool_start(CH_TCP, 1, "--split-sends", 0);
        point *p = find_point("split_sends", "pool", CH_TCP, 16, 1, 1);
        pool_measure(s, 1, 16, &r);
        add_round(p, &r);
        progress("pool", p, &r);
        pool_stop(s);
    }
    /* One round is plenty for the naive host: a few dozen 40 ms round trips. */
    result r;
    floor_pair pair;
    floor_start(&pair, 1, CH_TCP, "--split-sends");
    point *p = find_point("split_sends", "naive", CH_TCP, 16, 1, 1);
    floor_run(&pair, 1, 16, &r);
    add_round(p, &r);
    progress("naive", p, &r);
    floor_stop(&pair, 1);
}

/* Start-up: rr_server_start with 32 workers that each sleep 50 ms before the
 * handshake. Serial spawning would take 32 x 50 ms = 1.6 s. */
typedef struct {
    channel ch;
    int workers;
    long boot_ms;
    int n;
    double start_ms[MAX_ROUNDS], stop_ms[MAX_ROUNDS];
    double start_med, stop_med;
} startup_point;

static startup_point startups[] = {
    {.ch = CH_PIPES, .workers = 32, .boot_ms = 50},
    {.ch = CH_UNIX, .workers = 32, .boot_ms = 50},
    {.ch = CH_TCP, .workers = 32, .boot_ms = 50},
    {.ch = CH_PIPES, .workers = 32, .boot_ms = 0},
};
#define NSTARTUPS (sizeof startups / sizeof startups[0])

static void section_startup(void) {
    for (int round = 0; round < opt.rounds; round++) {
        for (size_t i = 0; i < NSTARTUPS; i++) {
            startup_point *sp = &startups[i];
            rr_server *s = pool_new(sp->ch, sp->workers, NULL, sp->boot_ms);
            rr_error *err = NULL;
            uint64_t t0 = now_ns();
            rr_status st = rr_server_start(s, &err);
            uint64_t t1 = now_ns();
            if (st != RR_STATUS_OK) {
                fail_rr("rr_server_start", st, err);
            }
            pool_check_echo(s, 16);
            uint64_t t2 = now_ns();
            st = rr_server_stop(s, &err);
            uint64_t t3 = now_ns();
            if (st != RR_STATUS_OK) {
                fail_rr("rr_server_stop", st, err);
            }
            rr_server_free(s);
            if (sp->n < MAX_ROUNDS) {
                sp->start_ms[sp->n] = (double)(t1 - t0) / 1e6;
                sp->stop_ms[sp->n] = (double)(t3 - t2) / 1e6;
                sp->n++;
            }
            double v[MAX_ROUNDS];
            memcpy(v, sp->start_ms, sizeof v);
            sp->start_med = median(v, (size_t)sp->n);
            memcpy(v, sp->stop_ms, sizeof v);
            sp->stop_med = median(v, (size_t)sp->n);
            fprintf(stderr, "  startup   %-5s %2d workers, boot %2ld ms: start %7.1f ms, stop %7.1f ms\n",
                    channel_names[sp->ch], sp->workers, sp->boot_ms, sp->start_ms[sp->n - 1],
                    sp->stop_ms[sp->n - 1]);
        }
    }
}

/* ---- host RSS: measured in a fresh copy of this program, so that the heap this run
 * has already grown (latency arrays, freed buffers) does not hide the pool's cost. */

static long status_field_kb(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long value = -1;
    size_t n = strlen(name);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            value = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    return value;
}

static int child_rss(int workers) {
    long rss0 = status_field_kb("VmRSS"), threads0 = status_field_kb("Threads");
    rr_server *s = pool_start(CH_PIPES, workers, NULL, 0);
    pool_check_echo(s, 16);
    sleep_ms(300); /* let every worker settle into idle */
    long rss1 = status_field_kb("VmRSS"), threads1 = status_field_kb("Threads");
    pool_stop(s);
    printf("%ld %ld %ld %ld\n", rss0, rss1, threads0, threads1);
    return 0;
}

static struct {
    int workers;
    long before_kb, after_kb, threads_before, threads_after;
    double per_worker_kb;
} rss = {.workers = 64};

static void section_rss(void) {
    char cmd[2 * PATH_MAX + 64], self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        perror("bench: /proc/self/exe");
        exit(1);
    }
    self[n] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' --child-rss %d --worker '%s'", self, rss.workers, opt.worker);
    FILE *f = popen(cmd, "r");
    if (!f || fscanf(f, "%ld %ld %ld %ld", &rss.before_kb, &rss.after_kb, &rss.threads_before,
                     &rss.threads_after) != 4) {
        fprintf(stderr, "bench: the RSS child failed\n");
        exit(1);
    }
    pclose(f);
    rss.per_worker_kb = (double)(rss.after_kb - rss.before_kb) / rss.workers;
    fprintf(stderr, "  rss       %d idle workers: %ld -> %ld KiB, %.1f KiB per worker, threads %ld -> %ld\n",
            rss.workers, rss.before_kb, rss.after_kb, rss.per_worker_kb, rss.threads_before, rss.threads_after);
}

/* ---- heap allocations per task, host side (every thread of this process). */

#define ALLOC_TASKS 20000
typedef struct {
    double allocs, reallocs, frees;
} alloc_counts;
static alloc_counts allocs_per_task[3];
/* The completion queue over pipes, 16 B: 1 worker with 1 task in flight, 4 workers with
 * ASYNC_IN_FLIGHT (submit, poll, take, the answer freed). */
static alloc_counts async_allocs_per_task[2];
static const int async_alloc_shapes[2][2] = {{1, 1}, {4, ASYNC_IN_FLIGHT}};
static bool interposed;

static void count_from_zero(void) {
    atomic_store(&alloc_calls, 0);
    atomic_store(&realloc_calls, 0);
    atomic_store(&free_calls, 0);
    atomic_store(&counting, true);
}

static alloc_counts counted_per(long tasks) {
    atomic_store(&counting, false);
    return (alloc_counts){(double)atomic_load(&alloc_calls) / (double)tasks,
                          (double)atomic_load(&realloc_calls) / (double)tasks,
                          (double)atomic_load(&free_calls) / (double)tasks};
}

/* Runs `tasks` tasks through `h` (in flight as it keeps them); 0 or -1. */
static int async_tasks(async_host *h, long tasks) {
    long until = h->taken + tasks;
    while (h->taken < until) {
        long submitted = h->taken + h->outstanding;
        if (async_fill(h, until - submitted) < 0 || async_take(h) < 0) {
            return -1;
        }
    }
    return 0;
}

static void section_allocs(void) {
    /* Is the interposition live? rr_config_new allocates (Rust strings). */
    atomic_store(&alloc_calls, 0);
    atomic_store(&counting, true);
    rr_config *cfg;
    if (rr_config_new("x", "pipes", &cfg, NULL) == RR_STATUS_OK) {
        rr_config_free(cfg);
    }
    atomic_store(&counting, false);
    interposed = atomic_load(&alloc_calls) > 0;
    if (!interposed) {
        fprintf(stderr, "bench: warning: malloc interposition is not working; allocation counts are void\n");
    }
    for (int ch = 0; ch < 3; ch++) {
        rr_server *s = pool_start((channel)ch, 1, NULL, 0);
        pool_job job = {.s = s, .body = bench_body(16), .body_len = 16};
        for (int i = 0; i < 1000; i++) {
            if (pool_op(&job, 0) < 0) {
                exit(1);
            }
        }
        count_from_zero();
        for (int i = 0; i < ALLOC_TASKS; i++) {
            if (pool_op(&job, 0) < 0) {
                exit(1);
            }
        }
        allocs_per_task[ch] = counted_per(ALLOC_TASKS);
        pool_stop(s);
        fprintf(stderr, "  allocs    %-5s %.2f allocations, %.2f reallocs, %.2f frees per task\n",
                channel_names[ch], allocs_per_task[ch].allocs, allocs_per_task[ch].reallocs,
                allocs_per_task[ch].frees);
    }
    for (int k = 0; k < 2; k++) {
        int workers = async_alloc_shapes[k][0], in_flight = async_alloc_shapes[k][1];
        rr_server *s = pool_start(CH_PIPES, workers, NULL, 0);
        async_host h;
        async_host_init(&h, s, in_flight, 16);
        /* Warm (the queue's and the reactor's tables reach their size), then counted,
         * then the tasks still out are taken (not counted). */
        int rc = async_tasks(&h, 1000);
        count_from_zero();
        rc = rc < 0 ? rc : async_tasks(&h, ALLOC_TASKS);
        async_allocs_per_task[k] = counted_per(ALLOC_TASKS);
        rc = rc < 0 ? rc : async_drain(&h);
        async_host_free(&h);
        pool_stop(s);
        if (rc < 0) {
            fprintf(stderr, "bench: an async allocation count failed\n");
            exit(1);
        }
        fprintf(stderr, "  allocs    queue %dx%d %.2f allocations, %.2f reallocs, %.2f frees per task\n", workers,
                in_flight, async_allocs_per_task[k].allocs, async_allocs_per_task[k].reallocs,
                async_allocs_per_task[k].frees);
    }
}

/* ---- scaling (--report): N workers x 4N callers against N floor pairs, pipes, 16 B. */

static const int scaling_n[] = {1, 2, 4, 8, 16, 64};
#define NSCALING 6

static void section_scaling(void) {
    for (int round = 0; round < opt.rounds; round++) {
        for (int i = 0; i < NSCALING; i++) {
            int n = scaling_n[i];
            result r;
            floor_pair *pairs = calloc((size_t)n, sizeof *pairs);
            floor_start(pairs, n, CH_PIPES, NULL);
            point *p = find_point("scaling", "floor", CH_PIPES, 16, n, n);
            floor_run(pairs, n, 16, &r);
            add_round(p, &r);
            progress("floor", p, &r);
            floor_stop(pairs, n);
            free(pairs);

            rr_server *s = pool_start(CH_PIPES, n, NULL, 0);
            p = find_point("scaling", "pool", CH_PIPES, 16, n, 4 * n);
            pool_measure(s, 4 * n, 16, &r);
            add_round(p, &r);
            progress("pool", p, &r);
            pool_stop(s);
        }
    }
}

/* ---- --exec-loop N: N tasks (16 B unless --body) and nothing else (W workers, C callers sharing
 * them), for strace -c -f or perf: what a task costs the host. */
typedef struct {
    pool_job job;
    long tasks;
    bool stream;
    int failed;
} loop_arg;

static void *exec_loop_thread(void *p) {
    loop_arg *la = p;
    for (long i = 0; i < la->tasks && !la->failed; i++) {
        la->failed = (la->stream ? pool_stream_op(&la->job, 0) : pool_op(&la->job, 0)) < 0;
    }
    return NULL;
}

/* --exec-loop N --async K: N tasks from this one thread, K in flight (the completion queue). */
static int async_loop(long tasks, channel ch, int workers, int in_flight, size_t body_len) {
    rr_server *s = pool_start(ch, workers, NULL, 0);
    async_host h;
    async_host_init(&h, s, in_flight, body_len);
    uint64_t t0 = now_ns();
    int rc = async_tasks(&h, tasks);
    double secs = (double)(now_ns() - t0) / 1e9;
    if (rc == 0) {
        rc = async_drain(&h);
    }
    long done = h.taken;
    async_host_free(&h);
    pool_stop(s);
    printf("%ld tasks of %zu B over %s (protocol V%d), %d workers, 1 thread with %d in flight (rr_exec_submit), "
           "in %.3f s: %.0f tasks/s\n",
           done, body_len, channel_names[ch], pool_protocol, workers, in_flight, secs, (double)done / secs);
    return rc < 0;
}

static int exec_loop(long tasks, channel ch, int workers, int callers, size_t body_len, bool stream) {
    rr_server *s = pool_start(ch, workers, stream ? STREAM_WORKER_ARG : NULL, 0);
    loop_arg la = {.job = {.s = s, .body = bench_body(body_len), .body_len = body_len}, .tasks = tasks / callers,
                   .stream = stream};
    pthread_t tid[256];
    uint64_t t0 = now_ns();
    for (int i = 0; i < callers; i++) {
        pthread_create(&tid[i], NULL, exec_loop_thread, &la);
    }
    for (int i = 0; i < callers; i++) {
        pthread_join(tid[i], NULL);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    pool_stop(s);
    long done = la.tasks * callers;
    if (stream) {
        printf("%ld V2 streams of %d x %d B over %s, %d workers x %d callers, in %.3f s: %.0f streams/s, %.0f "
               "chunks/s, %.1f MB/s\n",
               done, STREAM_CHUNKS, STREAM_CHUNK_BYTES, channel_names[ch], workers, callers, secs, (double)done / secs,
               (double)done * STREAM_CHUNKS / secs, (double)done * STREAM_CHUNKS * STREAM_CHUNK_BYTES / secs / 1e6);
    } else {
        printf("%ld tasks of %zu B over %s (protocol V%d), %d workers x %d callers, in %.3f s: %.0f tasks/s\n", done,
               body_len, channel_names[ch], pool_protocol, workers, callers, secs, (double)done / secs);
    }
    return la.failed;
}

/* ================================================================ output */

static bool any_unstable;

static void print_pair_table(const char *title, int workers, int callers, int pairs) {
    printf("\n%s\n", title);
    printf("%-6s %-7s | %11s %8s %8s | %11s %8s %8s %9s | %10s\n", "relay", "body", "floor/s", "p50 us", "p99 us",
           "pool/s", "p50 us", "p99 us", "pool MB/s", "pool/floor");
    for (int ch = 0; ch < 3; ch++) {
        for (int b = 0; b < NBODIES; b++) {
            point *f = find_point("main", "floor", (channel)ch, bodies[b], pairs, pairs);
            point *p = find_point("main", "pool", (channel)ch, bodies[b], workers, callers);
            char name[32], mb[32];
            body_name(bodies[b], name, sizeof name);
            mb_cell(mb, sizeof mb, p);
            bool shaky = unstable(f) || unstable(p);
            any_unstable |= shaky;
            printf("%-6s %-7s | %11.0f %8.1f %8.1f | %11.0f %8.1f %8.1f %9s | %9.2f%s\n", channel_names[ch], name,
                   f->med.tasks_per_s, f->med.p50_us, f->med.p99_us, p->med.tasks_per_s, p->med.p50_us,
                   p->med.p99_us, mb, ratio_of(p, f), shaky ? "*" : " ");
        }
    }
}

/* The V2 rows of one shape: V2 floor and V2 pool, and beside them the V1 pool of the same
 * shape, relay and body (from the table above) and V2/V1. */
static void print_v2_table(const char *title, int workers, int callers, int pairs) {
    printf("\n%s\n", title);
    printf("%-6s %-7s | %11s %8s %8s | %11s %8s %8s %9s | %10s | %11s %6s\n", "relay", "body", "floor/s", "p50 us",
           "p99 us", "pool/s", "p50 us", "p99 us", "pool MB/s", "pool/floor", "V1 pool/s", "V2/V1");
    for (int ch = 0; ch < 3; ch++) {
        for (int b = 0; b < NBODIES; b++) {
            point *f = find_point("v2", "floor", (channel)ch, bodies[b], pairs, pairs);
            point *p = find_point("v2", "pool", (channel)ch, bodies[b], workers, callers);
            point *v1 = find_point("main", "pool", (channel)ch, bodies[b], workers, callers);
            char name[32], mb[32];
            body_name(bodies[b], name, sizeof name);
            mb_cell(mb, sizeof mb, p);
            bool shaky = unstable(f) || unstable(p) || unstable(v1);
            any_unstable |= shaky;
            printf("%-6s %-7s | %11.0f %8.1f %8.1f | %11.0f %8.1f %8.1f %9s | %9.2f%s | %11.0f %6.2f\n",
                   channel_names[ch], name, f->med.tasks_per_s, f->med.p50_us, f->med.p99_us, p->med.tasks_per_s,
                   p->med.p50_us, p->med.p99_us, mb, ratio_of(p, f), shaky ? "*" : " ", v1->med.tasks_per_s,
                   ratio_of(p, v1));
        }
    }
}

static void print_stream_table(void) {
    printf("\nProtocol V2 streams, 1 worker x 1 caller: every task answered with %d chunks of 64 KiB (STREAM on all\n"
           "but the last; the worker sets PING on every 5th and waits for the PONG), read with rr_exec_stream +\n"
           "rr_stream_next, against 1 V2 floor pair reading the same frames; p50/p99 per whole stream\n",
           STREAM_CHUNKS);
    printf("%-6s | %11s %9s %8s | %11s %9s %8s %8s | %10s\n", "relay", "floor ch/s", "MB/s", "p50 us", "pool ch/s",
           "MB/s", "p50 us", "p99 us", "pool/floor");
    for (int ch = 0; ch < 3; ch++) {
        point *f = find_point("v2_stream", "floor", (channel)ch, STREAM_CHUNK_BYTES, 1, 1);
        point *p = find_point("v2_stream", "pool", (channel)ch, STREAM_CHUNK_BYTES, 1, 1);
        bool shaky = unstable(f) || unstable(p);
        any_unstable |= shaky;
        printf("%-6s | %11.0f %9.1f %8.1f | %11.0f %9.1f %8.1f %8.1f | %9.2f%s\n", channel_names[ch],
               f->med.tasks_per_s * STREAM_CHUNKS, f->med.mb_per_s, f->med.p50_us, p->med.tasks_per_s * STREAM_CHUNKS,
               p->med.mb_per_s, p->med.p50_us, p->med.p99_us, ratio_of(p, f), shaky ? "*" : " ");
    }
}

/* The completion queue's rows: one host thread (rr_exec_submit, poll on rr_queue_fd,
 * rr_queue_next), against the floor pairs of the same body (2 pairs for 4 workers, 1 for 1)
 * and against rr_exec of the nearest blocking shape (4 x 16, 1 x 1) of the same run. */
static void print_async_table(void) {
    printf("\nCompletion queue, pipes: one host thread submits (rr_exec_submit), polls rr_queue_fd and takes\n"
           "the completions (rr_queue_next); \"in flight\" = tasks submitted and not yet taken. vs floor: 2 floor\n"
           "pairs for 4 workers, 1 pair for 1 worker (same body; bytes/s and tasks/s ratios are the same);\n"
           "vs rr_exec: rr_exec 4 x 16 or 1 x 1 of the same body above.\n");
    printf("%-34s %-7s | %11s %8s %8s %9s | %8s %9s\n", "host", "body", "tasks/s", "p50 us", "p99 us", "MB/s",
           "vs floor", "vs rr_exec");
    struct {
        const char *kind, *label;
        int workers, in_flight, callers;
    } rows[] = {
        {"async", "async 4 workers, 64 in flight", 4, ASYNC_IN_FLIGHT, 16},
        {"async_opt_in", "async 4 w, 64 in flight, opt-in", 4, ASYNC_IN_FLIGHT, 16},
        {"async", "async 1 worker, 1 in flight", 1, 1, 1},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        for (int b = 0; b < NBODIES; b++) {
            point *p = measured_point("main", rows[k].kind, CH_PIPES, bodies[b], rows[k].workers,
                                      rows[k].in_flight);
            if (!p) {
                continue;
            }
            int pairs = rows[k].workers == 1 ? 1 : 2;
            point *f = measured_point("main", "floor", CH_PIPES, bodies[b], pairs, pairs);
            /* The opt-in async row is compared with rr_exec under the same settings. */
            const char *vs_kind = strcmp(rows[k].kind, "async_opt_in") == 0 ? "opt_in" : "pool";
            point *e = measured_point("main", vs_kind, CH_PIPES, bodies[b], rows[k].workers, rows[k].callers);
            char name[32], mb[32];
            body_name(bodies[b], name, sizeof name);
            mb_cell(mb, sizeof mb, p);
            bool shaky = (f && unstable(f)) || unstable(p);
            any_unstable |= shaky;
            printf("%-34s %-7s | %11.0f %8.1f %8.1f %9s | %7.2f%s %9.2f\n", rows[k].label, name, p->med.tasks_per_s,
                   p->med.p50_us, p->med.p99_us, mb, ratio_of(p, f), shaky ? "*" : " ", ratio_of(p, e));
        }
    }
    point *f2 = find_point("main", "floor", CH_PIPES, 16, 2, 2);
    point *pool16 = find_point("main", "pool", CH_PIPES, 16, 4, 16);
    point *locked = find_point("main", "by_hand_locked", CH_PIPES, 16, 4, 16);
    printf("reference lines, 16 B, against 2 floor pairs (%.0f tasks/s):\n", f2->med.tasks_per_s);
    printf("  rr_exec 4 workers x 16 callers (blocking)   %9.0f tasks/s  %.2f\n", pool16->med.tasks_per_s,
           ratio_of(pool16, f2));
    printf("  by hand, same shape (a mutex per worker)    %9.0f tasks/s  %.2f  (rr_exec/by hand %.2f)\n",
           locked->med.tasks_per_s, ratio_of(locked, f2), ratio_of(pool16, locked));
    /* The queue's rows against the same shapes written by hand (by_hand_async.c). */
    static const struct {
        int workers, in_flight;
        const char *label, *vs;
    } shapes[] = {{4, ASYNC_IN_FLIGHT, "4 workers, 64 in flight", "2 floor pairs"},
                  {1, 1, "1 worker, 1 in flight", "rr_exec 1 x 1"}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int w = shapes[k].workers, n = shapes[k].in_flight;
        point *base = w == 1 ? measured_point("main", "pool", CH_PIPES, 16, 1, 1) : f2;
        point *queue = measured_point("main", "async", CH_PIPES, 16, w, n);
        point *loop = measured_point("main", "by_hand_async_loop", CH_PIPES, 16, w, n);
        point *reactor = measured_point("main", "by_hand_async_reactor", CH_PIPES, 16, w, n);
        if (!base || !queue || !loop || !reactor) {
            continue;
        }
        printf("completion queue, %s, 16 B, against %s (%.0f tasks/s):\n", shapes[k].label, shapes[k].vs,
               base->med.tasks_per_s);
        printf("  by hand, one thread (epoll on the relays)   %9.0f tasks/s  %.2f\n", loop->med.tasks_per_s,
               ratio_of(loop, base));
        printf("  by hand, host thread + reactor thread       %9.0f tasks/s  %.2f\n", reactor->med.tasks_per_s,
               ratio_of(reactor, base));
        printf("  the queue (its shape: host + reactor)       %9.0f tasks/s  %.2f  (queue/by hand %.2f)\n",
               queue->med.tasks_per_s, ratio_of(queue, base), ratio_of(queue, reactor));
    }
}

static void print_tables(double run_seconds) {
    printf("\nRound trips of %zu-byte context + body, echoed. floor = the same echo_worker driven by hand, no\n"
           "library (1 pair = 1 parent + 1 worker); pool = rr_exec. Medians of %d alternating rounds of %.2f s.\n"
           "MB/s = body bytes echoed per second, one direction.\n",
           bench_context_len, opt.rounds, opt.seconds);
    print_pair_table("1 worker x 1 caller, against 1 floor pair", 1, 1, 1);
    print_pair_table("4 workers x 16 callers, against 2 floor pairs", 4, 16, 2);

    printf("\n4 workers x 16 callers, pipes, with worker_cpu_affinity + worker_sched_batch (opt-in), against 2 floor "
           "pairs\n");
    printf("%-6s %-7s | %11s %8s %8s | %10s\n", "relay", "body", "pool/s", "p50 us", "p99 us", "pool/floor");
    for (int b = 0; b < NBODIES; b++) {
        point *f = find_point("main", "floor", CH_PIPES, bodies[b], 2, 2);
        point *p = find_point("main", "opt_in", CH_PIPES, bodies[b], 4, 16);
        char name[32];
        body_name(bodies[b], name, sizeof name);
        bool shaky = unstable(f) || unstable(p);
        any_unstable |= shaky;
        printf("%-6s %-7s | %11.0f %8.1f %8.1f | %9.2f%s\n", "pipes", name, p->med.tasks_per_s, p->med.p50_us,
               p->med.p99_us, ratio_of(p, f), shaky ? "*" : " ");
    }

    point *pool16 = find_point("main", "pool", CH_PIPES, 16, 4, 16);
    point *locked = find_point("main", "by_hand_locked", CH_PIPES, 16, 4, 16);
    point *pipelined = find_point("main", "by_hand_pipelined", CH_PIPES, 16, 4, 16);
    printf("\nThe same shape by hand, no library (bench/by_hand.c): 4 echo_workers, 16 threads, thread t on\n"
           "worker t %% 4, pipes, 16 B\n");
    printf("  a mutex per worker            %9.0f tasks/s  p50 %6.1f us  p99 %7.1f us  pool/this %.2f\n",
           locked->med.tasks_per_s, locked->med.p50_us, locked->med.p99_us, ratio_of(pool16, locked));
    printf("  tasks queued in worker pipes  %9.0f tasks/s  p50 %6.1f us  p99 %7.1f us  pool/this %.2f\n",
           pipelined->med.tasks_per_s, pipelined->med.p50_us, pipelined->med.p99_us, ratio_of(pool16, pipelined));

    print_async_table();

    printf("\nProtocol V2 (goridge 3/4: a task and an answer are one frame each, 16-byte header with CRC): echo_worker\n"
           "--protocol 2, the pool set to RR_PROTOCOL_V2, against V2 floor pairs moving the same frames. V1 pool/s is\n"
           "the V1 pool of the same shape above; V2/V1 = V2 pool/s / V1 pool/s.\n");
    print_v2_table("Protocol V2, 1 worker x 1 caller, against 1 V2 floor pair", 1, 1, 1);
    print_v2_table("Protocol V2, 4 workers x 16 callers, against 2 V2 floor pairs", 4, 16, 2);
    print_stream_table();
    if (any_unstable) {
        printf("* the rounds of the floor or the pool differ by more than 2x in tasks/s: scheduler placement,\n"
               "  not code; trust the one-core figures below for 1 caller.\n");
    }

    point *f1 = find_point("one_core", "floor", CH_PIPES, 16, 1, 1);
    point *p1 = find_point("one_core", "pool", CH_PIPES, 16, 1, 1);
    printf("\nOne core (host, library threads and workers pinned to CPU 0), pipes, 16 B, 1 worker x 1 caller,\n"
           "%d rounds of %.2f s\n",
           opt.rounds, opt.seconds * ONE_CORE_STRETCH);
    printf("  floor %9.0f tasks/s  p50 %6.1f us  p99 %6.1f us\n", f1->med.tasks_per_s, f1->med.p50_us,
           f1->med.p99_us);
    printf("  pool  %9.0f tasks/s  p50 %6.1f us  p99 %6.1f us  pool/floor %.2f\n", p1->med.tasks_per_s,
           p1->med.p50_us, p1->med.p99_us, ratio_of(p1, f1));
    point *f1v2 = find_point("one_core_v2", "floor", CH_PIPES, 16, 1, 1);
    point *p1v2 = find_point("one_core_v2", "pool", CH_PIPES, 16, 1, 1);
    printf("  V2 floor %6.0f tasks/s  p50 %6.1f us  p99 %6.1f us\n", f1v2->med.tasks_per_s, f1v2->med.p50_us,
           f1v2->med.p99_us);
    printf("  V2 pool  %6.0f tasks/s  p50 %6.1f us  p99 %6.1f us  pool/floor %.2f  V2/V1 pool %.2f\n",
           p1v2->med.tasks_per_s, p1v2->med.p50_us, p1v2->med.p99_us, ratio_of(p1v2, f1v2), ratio_of(p1v2, p1));

    point *ss = find_point("split_sends", "pool", CH_TCP, 16, 1, 1);
    point *nv = find_point("split_sends", "naive", CH_TCP, 16, 1, 1);
    printf("\nTCP, worker with --split-sends (PHP-like: prefix and payload in separate send()s, Nagle on), 16 B, "
           "1x1\n");
    printf("  pool                           %9.0f tasks/s  p50 %8.1f us  p99 %8.1f us\n", ss->med.tasks_per_s,
           ss->med.p50_us, ss->med.p99_us);
    printf("  naive host (no TCP_QUICKACK)   %9.0f tasks/s  p50 %8.1f us  p99 %8.1f us\n", nv->med.tasks_per_s,
           nv->med.p50_us, nv->med.p99_us);

    printf("\nStart-up: rr_server_start (medians), 32 workers\n");
    for (size_t i = 0; i < NSTARTUPS; i++) {
        startup_point *sp = &startups[i];
        printf("  %-5s boot %2ld ms each: start %7.1f ms   (stop %6.1f ms)\n", channel_names[sp->ch], sp->boot_ms,
               sp->start_med, sp->stop_med);
    }

    printf("\nHost RSS, %d idle workers over pipes: %ld KiB before, %ld KiB after: %.1f KiB per worker "
           "(threads %ld -> %ld)\n",
           rss.workers, rss.before_kb, rss.after_kb, rss.per_worker_kb, rss.threads_before, rss.threads_after);

    printf("\nHeap allocations per task on the host (all threads, %d x rr_exec of 16 B, 1x1, answer freed):\n",
           ALLOC_TASKS);
    for (int ch = 0; ch < 3; ch++) {
        printf("  %-5s %5.2f allocations + %5.2f reallocs (%5.2f frees)%s\n", channel_names[ch],
               allocs_per_task[ch].allocs, allocs_per_task[ch].reallocs, allocs_per_task[ch].frees,
               interposed ? "" : "  (interposition NOT working)");
    }
    printf("The completion queue, pipes, 16 B (rr_exec_submit, poll, rr_queue_next, the answer freed):\n");
    for (int k = 0; k < 2; k++) {
        printf("  %d worker(s), %2d in flight %5.2f allocations + %5.2f reallocs (%5.2f frees)\n",
               async_alloc_shapes[k][0], async_alloc_shapes[k][1], async_allocs_per_task[k].allocs,
               async_allocs_per_task[k].reallocs, async_allocs_per_task[k].frees);
    }

    if (opt.report) {
        printf("\nScaling over pipes, 16 B: N workers x 4N callers against N floor pairs (%ld CPUs)\n",
               sysconf(_SC_NPROCESSORS_ONLN));
        printf("%7s | %11s %8s | %11s %8s | %10s\n", "workers", "floor/s", "p99 us", "pool/s", "p99 us",
               "pool/floor");
        for (int i = 0; i < NSCALING; i++) {
            int n = scaling_n[i];
            point *f = find_point("scaling", "floor", CH_PIPES, 16, n, n);
            point *p = find_point("scaling", "pool", CH_PIPES, 16, n, 4 * n);
            printf("%7d | %11.0f %8.1f | %11.0f %8.1f | %10.2f\n", n, f->med.tasks_per_s, f->med.p99_us,
                   p->med.tasks_per_s, p->med.p99_us, ratio_of(p, f));
        }
    }

    printf("\nRun time: %.1f s\n", run_seconds);
    /* The headline numbers: exactly these two lines, last. */
    printf("floor ratio: %.2f (16 B, 1 worker, 1 caller, pipes, one core)\n", ratio_of(p1, f1));
    printf("floor ratio: %.2f (16 B, 4 workers, 16 callers, pipes, vs 2 floor pairs)\n",
           ratio_of(find_point("main", "pool", CH_PIPES, 16, 4, 16), find_point("main", "floor", CH_PIPES, 16, 2, 2)));
}

static void json_result(FILE *f, const result *r) {
    fprintf(f, "{\"tasks_per_s\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"mb_per_s\": %.2f}", r->tasks_per_s,
            r->p50_us, r->p99_us, r->mb_per_s);
}

static void cpu_model(char *buf, size_t len) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    snprintf(buf, len, "unknown");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += strspn(v + 1, " ") + 1;
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, len, "%s", v);
            }
            break;
        }
    }
    if (f) {
        fclose(f);
    }
}

static void write_json(const char *path, double run_seconds) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    char cpu[128], date[64];
    struct utsname u;
    uname(&u);
    cpu_model(cpu, sizeof cpu);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    fprintf(f, "{\n  \"meta\": {\"library_version\": \"%s\", \"cpus\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s %s\", "
               "\"date\": \"%s\", \"rounds\": %d, \"seconds\": %.2f, \"context_bytes\": %zu, "
               "\"one_core_seconds\": %.2f, \"run_seconds\": %.1f, \"cpus_awake\": %s, \"stream_chunks\": %d, "
               "\"stream_chunk_bytes\": %d},\n",
            rr_version(), sysconf(_SC_NPROCESSORS_ONLN), cpu, u.sysname, u.release, date, opt.rounds, opt.seconds,
            bench_context_len, opt.seconds * ONE_CORE_STRETCH, run_seconds, opt.cpus_awake ? "true" : "false",
            STREAM_CHUNKS, STREAM_CHUNK_BYTES);
    fprintf(f, "  \"points\": [\n");
    for (int i = 0; i < npoints; i++) {
        point *p = &points[i];
        fprintf(f,
                "    {\"section\": \"%s\", \"kind\": \"%s\", \"relay\": \"%s\", \"body\": %zu, \"workers\": %d, "
                "\"callers\": %d, \"median\": ",
                p->section, p->kind, channel_names[p->ch], p->body, p->workers, p->callers);
        json_result(f, &p->med);
        fprintf(f, ", \"rounds\": [");
        for (int k = 0; k < p->n; k++) {
            fprintf(f, "%s", k ? ", " : "");
            json_result(f, &p->round[k]);
        }
        fprintf(f, "]}%s\n", i + 1 < npoints ? "," : "");
    }
    fprintf(f, "  ],\n  \"startup\": [\n");
    for (size_t i = 0; i < NSTARTUPS; i++) {
        startup_point *sp = &startups[i];
        fprintf(f,
                "    {\"relay\": \"%s\", \"workers\": %d, \"boot_ms\": %ld, \"start_ms\": %.1f, \"stop_ms\": %.1f}%s\n",
                channel_names[sp->ch], sp->workers, sp->boot_ms, sp->start_med, sp->stop_med,
                i + 1 < NSTARTUPS ? "," : "");
    }
    fprintf(f,
            "  ],\n  \"rss\": {\"workers\": %d, \"before_kb\": %ld, \"after_kb\": %ld, \"per_worker_kb\": %.1f, "
            "\"threads_before\": %ld, \"threads_after\": %ld},\n",
            rss.workers, rss.before_kb, rss.after_kb, rss.per_worker_kb, rss.threads_before, rss.threads_after);
    fprintf(f, "  \"allocs\": {\"tasks\": %d, \"interposed\": %s", ALLOC_TASKS, interposed ? "true" : "false");
    for (int ch = 0; ch < 3; ch++) {
        fprintf(f, ", \"%s\": {\"allocs_per_task\": %.3f, \"reallocs_per_task\": %.3f, \"frees_per_task\": %.3f}",
                channel_names[ch], allocs_per_task[ch].allocs, allocs_per_task[ch].reallocs, allocs_per_task[ch].frees);
    }
    fprintf(f, ", \"queue\": [");
    for (int k = 0; k < 2; k++) {
        fprintf(f,
                "%s{\"workers\": %d, \"in_flight\": %d, \"allocs_per_task\": %.3f, \"reallocs_per_task\": %.3f, "
                "\"frees_per_task\": %.3f}",
                k ? ", " : "", async_alloc_shapes[k][0], async_alloc_shapes[k][1], async_allocs_per_task[k].allocs,
                async_allocs_per_task[k].reallocs, async_allocs_per_task[k].frees);
    }
    fprintf(f, "]");
    point *f1 = find_point("one_core", "floor", CH_PIPES, 16, 1, 1);
    point *p1 = find_point("one_core", "pool", CH_PIPES, 16, 1, 1);
    point *f2 = find_point("main", "floor", CH_PIPES, 16, 2, 2);
    fprintf(f,
            "},\n  \"ratios\": {\"one_core_1x1_pipes_16\": %.4f, \"pipes_16_4x16_vs_2_pairs\": %.4f, "
            "\"pipes_16_4x16_opt_in_vs_2_pairs\": %.4f, \"pipes_16_4x16_vs_by_hand_locked\": %.4f, "
            "\"one_core_1x1_pipes_16_v2\": %.4f, \"one_core_1x1_pipes_16_v2_vs_v1\": %.4f, "
            "\"async_pipes_16_4x64_vs_2_pairs\": %.4f, \"async_pipes_16_4x64_opt_in_vs_2_pairs\": %.4f, "
            "\"async_pipes_64k_4x64_vs_2_pairs\": %.4f, \"async_pipes_1m_4x64_vs_2_pairs\": %.4f, "
            "\"async_pipes_16_1x1_vs_exec_1x1\": %.4f, \"async_pipes_16_1x1_vs_1_pair\": %.4f, "
            "\"by_hand_locked_pipes_16_4x16_vs_2_pairs\": %.4f, "
            "\"by_hand_async_loop_pipes_16_4x64_vs_2_pairs\": %.4f, "
            "\"by_hand_async_reactor_pipes_16_4x64_vs_2_pairs\": %.4f, "
            "\"async_pipes_16_4x64_vs_by_hand_async_reactor\": %.4f, "
            "\"by_hand_async_loop_pipes_16_1x1_vs_exec_1x1\": %.4f, "
            "\"by_hand_async_reactor_pipes_16_1x1_vs_exec_1x1\": %.4f, "
            "\"async_pipes_16_1x1_vs_by_hand_async_reactor\": %.4f}\n}\n",
            ratio_of(p1, f1), ratio_of(find_point("main", "pool", CH_PIPES, 16, 4, 16), f2),
            ratio_of(find_point("main", "opt_in", CH_PIPES, 16, 4, 16), f2),
            ratio_of(find_point("main", "pool", CH_PIPES, 16, 4, 16),
                     find_point("main", "by_hand_locked", CH_PIPES, 16, 4, 16)),
            ratio_of(find_point("one_core_v2", "pool", CH_PIPES, 16, 1, 1),
                     find_point("one_core_v2", "floor", CH_PIPES, 16, 1, 1)),
            ratio_of(find_point("one_core_v2", "pool", CH_PIPES, 16, 1, 1), p1),
            ratio_of(find_point("main", "async", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT), f2),
            ratio_of(find_point("main", "async_opt_in", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT), f2),
            ratio_of(find_point("main", "async", CH_PIPES, 65536, 4, ASYNC_IN_FLIGHT),
                     find_point("main", "floor", CH_PIPES, 65536, 2, 2)),
            ratio_of(find_point("main", "async", CH_PIPES, 1u << 20, 4, ASYNC_IN_FLIGHT),
                     find_point("main", "floor", CH_PIPES, 1u << 20, 2, 2)),
            ratio_of(find_point("main", "async", CH_PIPES, 16, 1, 1), find_point("main", "pool", CH_PIPES, 16, 1, 1)),
            ratio_of(find_point("main", "async", CH_PIPES, 16, 1, 1), find_point("main", "floor", CH_PIPES, 16, 1, 1)),
            ratio_of(find_point("main", "by_hand_locked", CH_PIPES, 16, 4, 16), f2),
            ratio_of(find_point("main", "by_hand_async_loop", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT), f2),
            ratio_of(find_point("main", "by_hand_async_reactor", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT), f2),
            ratio_of(find_point("main", "async", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT),
                     find_point("main", "by_hand_async_reactor", CH_PIPES, 16, 4, ASYNC_IN_FLIGHT)),
            ratio_of(find_point("main", "by_hand_async_loop", CH_PIPES, 16, 1, 1),
                     find_point("main", "pool", CH_PIPES, 16, 1, 1)),
            ratio_of(find_point("main", "by_hand_async_reactor", CH_PIPES, 16, 1, 1),
                     find_point("main", "pool", CH_PIPES, 16, 1, 1)),
            ratio_of(find_point("main", "async", CH_PIPES, 16, 1, 1),
                     find_point("main", "by_hand_async_reactor", CH_PIPES, 16, 1, 1)));
    fclose(f);
}

/* ================================================================ main */

static void default_worker(void) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        snprintf(opt.worker, sizeof opt.worker, "bench/echo_worker");
        return;
    }
    self[n] = '\0';
    snprintf(opt.worker, sizeof opt.worker, "%s/echo_worker", dirname(self));
}

int main(int argc, char **argv) {
    int child_rss_workers = 0;
    long exec_loop_tasks = 0;
    int loop_workers = 1, loop_callers = 1;
    long loop_body = 16;
    channel exec_loop_relay = CH_PIPES;
    bool loop_stream = false;
    int loop_async = 0; /* tasks in flight from one thread with rr_exec_submit; 0: rr_exec */
    default_worker();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            opt.json = argv[++i];
        } else if (strcmp(argv[i], "--report") == 0) {
            opt.report = true;
        } else if (strcmp(argv[i], "--allow-idle") == 0) {
            opt.allow_idle = true;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            opt.seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            opt.rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
            snprintf(opt.worker, sizeof opt.worker, "%s", argv[++i]);
        } else if (strcmp(argv[i], "--exec-loop") == 0 && i + 1 < argc) {
            exec_loop_tasks = atol(argv[++i]);
        } else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc) {
            loop_body = atol(argv[++i]);
        } else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) {
            loop_workers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--callers") == 0 && i + 1 < argc) {
            loop_callers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--relay") == 0 && i + 1 < argc) {
            i++;
            exec_loop_relay = strcmp(argv[i], "tcp") == 0 ? CH_TCP : strcmp(argv[i], "unix") == 0 ? CH_UNIX : CH_PIPES;
        } else if (strcmp(argv[i], "--pin-workers") == 0) {
            pool_scheduling.cpu_affinity = true;
        } else if (strcmp(argv[i], "--batch-workers") == 0) {
            pool_scheduling.sched_batch = true;
        } else if (strcmp(argv[i], "--protocol") == 0 && i + 1 < argc) {
            pool_protocol = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--stream") == 0) {
            loop_stream = true;
        } else if (strcmp(argv[i], "--async") == 0 && i + 1 < argc) {
            loop_async = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--child-rss") == 0 && i + 1 < argc) {
            child_rss_workers = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench [--json FILE] [--report] [--seconds S] [--rounds N] [--worker PATH] [--allow-idle]\n"
                            "       bench --exec-loop N [--relay pipes|unix|tcp] [--workers W] [--callers C] [--body B]\n"
                            "                           [--pin-workers] [--batch-workers] [--protocol 1|2] [--stream]\n"
                            "                           [--async K]\n");
            return 2;
        }
    }
    if (opt.rounds < 1 || opt.rounds > MAX_ROUNDS || opt.seconds <= 0) {
        fprintf(stderr, "bench: --rounds must be 1..%d and --seconds positive\n", MAX_ROUNDS);
        return 2;
    }
    if (access(opt.worker, X_OK) != 0) {
        fprintf(stderr, "bench: no echo worker at %s (build it, or pass --worker)\n", opt.worker);
        return 1;
    }
    /* A worker that dies must show up as a failed write, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    opt.cpus_awake = !opt.allow_idle && hold_cpus_awake() == 0;
    if (child_rss_workers > 0) {
        return child_rss(child_rss_workers);
    }
    if ((pool_scheduling.cpu_affinity || pool_scheduling.sched_batch || pool_protocol != 1 || loop_stream ||
         loop_async != 0) &&
        exec_loop_tasks == 0) {
        /* A full run measures the defaults, the opt-ins, V2 and the queue side by side on its own. */
        fprintf(stderr, "bench: --pin-workers, --batch-workers, --protocol, --stream and --async go with --exec-loop\n");
        return 2;
    }
    if ((pool_protocol != 1 && pool_protocol != 2) || (loop_stream && pool_protocol != 2)) {
        fprintf(stderr, "bench: --protocol is 1 or 2, and --stream needs --protocol 2\n");
        return 2;
    }
    if (exec_loop_tasks > 0) {
        if (loop_workers < 1 || loop_callers < 1 || loop_callers > 256 || loop_body < 0 || loop_body > (1 << 20)) {
            fprintf(stderr, "bench: --workers must be positive, --callers 1..256, --body 0..1048576\n");
            return 2;
        }
        if (loop_async != 0) {
            if (loop_async < 1 || loop_async > 65536 || loop_callers != 1 || loop_stream) {
                fprintf(stderr, "bench: --async K takes K 1..65536 tasks in flight from one thread: no --callers, "
                                "no --stream\n");
                return 2;
            }
            return async_loop(exec_loop_tasks, exec_loop_relay, loop_workers, loop_async, (size_t)loop_body);
        }
        return exec_loop(exec_loop_tasks, exec_loop_relay, loop_workers, loop_callers, (size_t)loop_body, loop_stream);
    }

    char cpu[128];
    cpu_model(cpu, sizeof cpu);
    printf("libroadrunner %s benchmark: %ld CPUs (%s), %d rounds x %.2f s per measurement\n", rr_version(),
           sysconf(_SC_NPROCESSORS_ONLN), cpu, opt.rounds, opt.seconds);
    printf("CPU idle: %s\n", opt.cpus_awake ? "kept awake (PM QoS /dev/cpu_dma_latency = 0 held for the run)"
                                            : opt.allow_idle ? "CPUs may sleep (--allow-idle)"
                                                             : "CPUs may sleep (cannot open /dev/cpu_dma_latency)");
    fflush(stdout);
    uint64_t t0 = now_ns();

    /* Rounds alternate floor and pool per relay, so that both see the same conditions. */
    for (int round = 0; round < opt.rounds; round++) {
        fprintf(stderr, "round %d/%d\n", round + 1, opt.rounds);
        section_main();
    }
    fprintf(stderr, "one core\n");
    section_one_core();
    fprintf(stderr, "tcp split sends\n");
    section_split_sends();
    fprintf(stderr, "start-up, RSS, allocations\n");
    section_startup();
    section_rss();
    section_allocs();
    if (opt.report) {
        fprintf(stderr, "scaling\n");
        section_scaling();
    }

    double run_seconds = (double)(now_ns() - t0) / 1e9;
    if (opt.json) {
        write_json(opt.json, run_seconds);
    }
    print_tables(run_seconds);
    return 0;
}
