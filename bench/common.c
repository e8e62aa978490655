/* See common.h. */
#define _GNU_SOURCE
#include "common.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

/* ---------------------------------------------------------------- time */

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- statistics */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, size_t n) {
    if (n == 0) {
        return 0;
    }
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---------------------------------------------------------------- the timed runner */

typedef struct {
    uint64_t *lat; /* nanoseconds per call */
    size_t n, cap;
    uint64_t end; /* when this thread's last measured call ended */
    int failed;
} thread_samples;

typedef struct {
    op_fn op;
    void *arg;
    long warmup_ms;
    pthread_barrier_t warm, go;
    uint64_t deadline; /* written by the main thread between the two barriers */
    thread_samples *ts;
} runner;

typedef struct {
    runner *run;
    int index;
} runner_arg;

static void *runner_thread(void *p) {
    runner_arg *ra = p;
    runner *run = ra->run;
    thread_samples *me = &run->ts[ra->index];
    /* Warm up (first touches of buffers, caches, the worker's first reads) outside the
     * measured window. At least two calls, whatever the time. */
    uint64_t warm_until = now_ns() + (uint64_t)run->warmup_ms * 1000000u;
    for (int i = 0; !me->failed && (i < 2 || now_ns() < warm_until); i++) {
        me->failed = run->op(run->arg, ra->index) < 0;
    }
    /* Everybody warm; then the main thread sets the deadline and releases us together. */
    pthread_barrier_wait(&run->warm);
    pthread_barrier_wait(&run->go);
    uint64_t deadline = run->deadline;
    while (!me->failed) {
        uint64_t t0 = now_ns();
        if (run->op(run->arg, ra->index) < 0) {
            me->failed = 1;
            break;
        }
        uint64_t t1 = now_ns();
        if (me->n == me->cap) {
            size_t cap = me->cap ? me->cap * 2 : 1u << 16;
            uint64_t *grown = realloc(me->lat, cap * sizeof *grown);
            if (!grown) {
                me->failed = 1;
                break;
            }
            me->lat = grown;
            me->cap = cap;
        }
        me->lat[me->n++] = t1 - t0;
        me->end = t1;
        if (t1 >= deadline) {
            break;
        }
    }
    return NULL;
}

int run_timed(int threads, op_fn op, void *arg, double seconds, long warmup_ms, size_t body_len, result *out) {
    runner run = {.op = op, .arg = arg, .warmup_ms = warmup_ms};
    run.ts = calloc((size_t)threads, sizeof *run.ts);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    runner_arg *args = calloc((size_t)threads, sizeof *args);
    if (!run.ts || !tid || !args) {
        abort();
    }
    /* Reserve the sample arrays up front so that growing them is rare in the window. */
    for (int i = 0; i < threads; i++) {
        run.ts[i].cap = 1u << 16;
        run.ts[i].lat = malloc(run.ts[i].cap * sizeof(uint64_t));
        if (!run.ts[i].lat) {
            abort();
        }
    }
    pthread_barrier_init(&run.warm, NULL, (unsigned)threads + 1);
    pthread_barrier_init(&run.go, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        args[i] = (runner_arg){.run = &run, .index = i};
        if (pthread_create(&tid[i], NULL, runner_thread, &args[i]) != 0) {
            fprintf(stderr, "bench: cannot start thread %d\n", i);
            abort();
        }
    }
    pthread_barrier_wait(&run.warm);
    uint64_t start = now_ns();
    run.deadline = start + (uint64_t)(seconds * 1e9);
    pthread_barrier_wait(&run.go);
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
    }
    pthread_barrier_destroy(&run.warm);
    pthread_barrier_destroy(&run.go);

    int failed = 0;
    size_t total = 0;
    uint64_t end = start;
    for (int i = 0; i < threads; i++) {
        failed |= run.ts[i].failed;
        total += run.ts[i].n;
        if (run.ts[i].end > end) {
            end = run.ts[i].end;
        }
    }
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (!all) {
        abort();
    }
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, run.ts[i].lat, run.ts[i].n * sizeof *all);
        k += run.ts[i].n;
        free(run.ts[i].lat);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    double secs = (double)(end - start) / 1e9;
    *out = (result){0};
    out->tasks = total;
    out->seconds = secs;
    if (total > 0 && secs > 0) {
        out->tasks_per_s = (double)total / secs;
        out->p50_us = (double)all[total / 2] / 1e3;
        size_t i99 = (size_t)((double)total * 0.99);
        out->p99_us = (double)all[i99 < total ? i99 : total - 1] / 1e3;
        out->mb_per_s = out->tasks_per_s * (double)body_len / 1e6;
    }
    free(all);
    free(run.ts);
    free(tid);
    free(args);
    return failed ? -1 : 0;
}

/* ---------------------------------------------------------------- CPU pinning */

static cpu_set_t saved_mask;

/* Applies mask to every thread of this process (/proc/self/task). Library threads that
 * exist already (the library's spawner thread forks the workers, so it matters) are
 * included; threads and children created afterwards inherit from their creator. */
static int set_all_threads(const cpu_set_t *mask) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) {
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);
        if (sched_setaffinity(tid, sizeof *mask, mask) < 0 && errno != ESRCH) {
            rc = -1;
        }
    }
    closedir(dir);
    return rc;
}

int pin_all_to_cpu(int cpu) {
    if (sched_getaffinity(0, sizeof saved_mask, &saved_mask) < 0) {
        return -1;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return set_all_threads(&one);
}

void unpin_all(void) {
    set_all_threads(&saved_mask);
}

/* ---------------------------------------------------------------- CPU idle states */

int hold_cpus_awake(void) {
    /* The descriptor must stay open: closing it withdraws the request. */
    int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    int32_t zero = 0;
    if (write(fd, &zero, sizeof zero) != (ssize_t)sizeof zero) {
        close(fd);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- relays */

const char *const channel_names[3] = {"pipes", "unix", "tcp"};

void make_relay(channel ch, char *buf, size_t len) {
    static atomic_int counter;
    if (ch == CH_PIPES) {
        snprintf(buf, len, "pipes");
    } else if (ch == CH_UNIX) {
        snprintf(buf, len, "unix:///tmp/rr-bench-%d-%d.sock", (int)getpid(), atomic_fetch_add(&counter, 1));
    } else {
        /* Ask the kernel for a free port, then hand it over: a tiny race with other
         * programs, harmless on a benchmark machine. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof addr;
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
            getsockname(fd, (struct sockaddr *)&addr, &alen) < 0) {
            perror("bench: cannot find a free tcp port");
            exit(1);
        }
        close(fd);
        snprintf(buf, len, "tcp://127.0.0.1:%d", ntohs(addr.sin_port));
    }
}

/* ---------------------------------------------------------------- floor pairs */

const uint8_t bench_context[] = "{\"id\":\"bench\"}";
const size_t bench_context_len = sizeof bench_context - 1;

#define BODY_MAX (1u << 20)
static uint8_t body_buf[BODY_MAX];
static atomic_int body_ready;

const uint8_t *bench_body(size_t len) {
    if (len > BODY_MAX) {
        fprintf(stderr, "bench: bodies above %u bytes are not supported\n", BODY_MAX);
        abort();
    }
    if (!atomic_load(&body_ready)) {
        for (size_t i = 0; i < BODY_MAX; i++) {
            body_buf[i] = (uint8_t)('a' + i % 26);
        }
        atomic_store(&body_ready, 1);
    }
    return body_buf;
}

/* The environment of a spawned worker: ours, with RR_RELAY set to relay. */
static char **worker_env(const char *relay, char *slot, size_t slot_len) {
    size_t n = 0;
    while (environ[n]) {
        n++;
    }
    char **env = calloc(n + 2, sizeof *env);
    if (!env) {
        abort();
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "RR_RELAY=", 9) != 0) {
            env[k++] = environ[i];
        }
    }
    snprintf(slot, slot_len, "RR_RELAY=%s", relay);
    env[k++] = slot;
    env[k] = NULL;
    return env;
}

static int answer_is_single(uint8_t flags) {
    /* An error answer, or a bare control frame (the handshake), has no frame B. */
    return (flags & FLAG_ERROR) || ((flags & FLAG_CONTROL) && !(flags & (FLAG_RAW | FLAG_EMPTY)));
}

static int always_single(uint8_t flags) {
    (void)flags;
    return 1;
}

static int listen_on(channel ch, const char *relay, char *unix_path, size_t path_len) {
    int fd;
    if (ch == CH_UNIX) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        size_t len = strlen(relay + 7);
        if (len >= path_len || len >= sizeof addr.sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(unix_path, relay + 7, len + 1);
        memcpy(addr.sun_path, unix_path, len + 1);
        unlink(unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            return -1;
        }
    } else {
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        addr.sin_port = htons((uint16_t)atoi(strrchr(relay, ':') + 1));
        int one = 1;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            return -1;
        }
    }
    return listen(fd, 4) < 0 ? -1 : fd;
}

int floor_pair_start(floor_pair *p, const char *worker, const char *extra_arg, channel ch) {
    const char *extra[] = {extra_arg, NULL};
    return floor_pair_start_protocol(p, worker, extra, ch, 1);
}

/* The pid handshake, V1 or V2: our pid, then the worker's. Returns 0 or -1. */
static int floor_handshake(floor_pair *p) {
    char hello[64];
    int n = snprintf(hello, sizeof hello, "{\"pid\":%d}", (int)getpid());
    const uint8_t *answer;
    size_t answer_len, total;
    if (p->protocol == 2) {
        v2_frame f;
        if (v2_send(p->fd_write, V2_CONTROL | V2_CODEC_JSON, 0, NULL, 0, hello, (size_t)n, NULL, 0) < 0 ||
            v2_read_frame(&p->r, &f) < 0 || !(f.h.flags & V2_CONTROL)) {
            return -1;
        }
        answer = p->r.buf + p->r.start + f.payload_off;
        answer_len = f.h.payload_len;
        total = f.total;
    } else {
        message m;
        if (send_message(p->fd_write, FLAG_CONTROL, hello, (size_t)n, -1, NULL, 0) < 0 ||
            read_message(&p->r, &m, always_single) < 0 || !(m.flags_a & FLAG_CONTROL)) {
            return -1;
        }
        answer = p->r.buf + p->r.start + m.a_off;
        answer_len = m.a_len;
        total = m.total;
    }
    const char *pid_at = memmem(answer, answer_len, "\"pid\":", 6);
    if (!pid_at || strtol(pid_at + 6, NULL, 10) != p->pid) {
        fprintf(stderr, "floor: the handshake answer does not carry the worker's pid\n");
        return -1;
    }
    rbuf_consume(&p->r, total);
    return 0;
}

int floor_pair_start_protocol(floor_pair *p, const char *worker, const char *const *extra_args, channel ch,
                              int protocol) {
    char relay[128], env_slot[160], unix_path[108] = "";
    make_relay(ch, relay, sizeof relay);
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)worker;
    if (protocol == 2) {
        argv[argc++] = "--protocol";
        argv[argc++] = "2";
    }
    for (int i = 0; extra_args && extra_args[i] && argc < 15; i++) {
        argv[argc++] = (char *)extra_args[i];
    }
    argv[argc] = NULL;
    char **env = worker_env(relay, env_slot, sizeof env_slot);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1}, listener = -1;
    *p = (floor_pair){.pid = -1, .fd_read = -1, .fd_write = -1, .protocol = protocol};

    if (ch == CH_PIPES) {
        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0) {
            perror("floor: pipe");
            goto fail;
        }
        /* dup2 clears close-on-exec on the copies: the child keeps exactly 0 and 1. */
        posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
        posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    } else {
        listener = listen_on(ch, relay, unix_path, sizeof unix_path);
        if (listener < 0) {
            perror("floor: listen");
            goto fail;
        }
    }
    int rc = posix_spawn(&p->pid, worker, &fa, NULL, argv, env);
    if (rc != 0) {
        fprintf(stderr, "floor: cannot start %s: %s\n", worker, strerror(rc));
        p->pid = -1;
        goto fail;
    }
    if (ch == CH_PIPES) {
        close(to_child[0]);
        close(from_child[1]);
        p->fd_write = to_child[1];
        p->fd_read = from_child[0];
        /* The library grows a relay's pipes to this size when a message does not fit
         * (relay.rs); the floor does the same from the start, so that it stays what a
         * hand-written program reaches. A pipe the kernel will not grow stays as it is. */
        fcntl(p->fd_write, F_SETPIPE_SZ, FLOOR_PIPE_SIZE);
        fcntl(p->fd_read, F_SETPIPE_SZ, FLOOR_PIPE_SIZE);
    } else {
        struct pollfd pfd = {.fd = listener, .events = POLLIN};
        if (poll(&pfd, 1, 10000) != 1) {
            fprintf(stderr, "floor: the worker did not connect to %s\n", relay);
            goto fail;
        }
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            perror("floor: accept");
            goto fail;
        }
        if (ch == CH_TCP) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        p->fd_read = p->fd_write = fd;
        close(listener);
        listener = -1;
        if (unix_path[0]) {
            unlink(unix_path);
        }
    }
    if (rbuf_init(&p->r, p->fd_read) < 0) {
        goto fail;
    }
    /* The handshake, as the library does it: our pid, then the worker's. */
    if (floor_handshake(p) < 0) {
        fprintf(stderr, "floor: the worker failed the V%d handshake\n", protocol);
        goto fail;
    }
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    return 0;

fail:
    posix_spawn_file_actions_destroy(&fa);
    free(env);
    if (listener >= 0) {
        close(listener);
    }
    if (unix_path[0]) {
        unlink(unix_path);
    }
    if (ch == CH_PIPES) {
        for (int i = 0; i < 2; i++) {
            if (to_child[i] >= 0 && to_child[i] != p->fd_write) {
                close(to_child[i]);
            }
            if (from_child[i] >= 0 && from_child[i] != p->fd_read) {
                close(from_child[i]);
            }
        }
    }
    floor_pair_stop(p);
    return -1;
}

int floor_pair_send(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len) {
    if (p->protocol == 2) {
        return v2_send_message(p->fd_write, V2_CODEC_RAW, 0, ctx, ctx_len, body, body_len);
    }
    return send_message(p->fd_write, FLAG_CONTROL | FLAG_RAW, ctx, ctx_len, FLAG_RAW, body, body_len);
}

long floor_pair_roundtrip(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len,
                          const uint8_t **answer) {
    if (floor_pair_send(p, ctx, ctx_len, body, body_len) < 0) {
        return -1;
    }
    return floor_pair_receive(p, answer);
}

/* The next V2 answer frame: checks it as the library does (not CONTROL, not ERROR, one
 * option within the payload), answers a PING with a PONG. Returns the body's length, or
 * -1; *body_off is the body's offset from r.buf + r.start, *more whether STREAM was set.
 * The caller consumes f->total. */
static long v2_receive_answer(floor_pair *p, v2_frame *f, size_t *body_off, int *more) {
    if (v2_read_frame(&p->r, f) < 0) {
        return -1;
    }
    if ((f->h.stream & V2_PING) && v2_send(p->fd_write, 0, V2_PONG, NULL, 0, NULL, 0, NULL, 0) < 0) {
        return -1;
    }
    if ((f->h.flags & (V2_CONTROL | V2_ERROR)) || f->h.noptions != 1 || f->options[0] > f->h.payload_len) {
        return -1;
    }
    *body_off = f->payload_off + f->options[0];
    *more = (f->h.stream & V2_STREAM) != 0;
    return (long)(f->h.payload_len - f->options[0]);
}

long floor_pair_receive(floor_pair *p, const uint8_t **answer) {
    if (p->protocol == 2) {
        v2_frame f;
        size_t body_off;
        int more;
        long len = v2_receive_answer(p, &f, &body_off, &more);
        if (len < 0 || more) {
            return -1;
        }
        if (answer) {
            *answer = p->r.buf + p->r.start + body_off;
        }
        rbuf_consume(&p->r, f.total);
        return len;
    }
    message m;
    if (read_message(&p->r, &m, answer_is_single) < 0 || !(m.flags_a & FLAG_CONTROL) || (m.flags_a & FLAG_ERROR)) {
        return -1;
    }
    if (answer) {
        /* Consuming moves offsets only: the bytes stay until the next read. */
        *answer = p->r.buf + p->r.start + m.b_off;
    }
    rbuf_consume(&p->r, m.total);
    return (long)m.b_len;
}

void floor_pair_stop(floor_pair *p) {
    if (p->fd_write >= 0 && p->pid > 0) {
        static const char stop[] = "{\"stop\":true}";
        if (p->protocol == 2) {
            v2_send(p->fd_write, V2_CONTROL | V2_CODEC_JSON, 0, NULL, 0, stop, sizeof stop - 1, NULL, 0);
        } else {
            send_message(p->fd_write, FLAG_CONTROL, stop, sizeof stop - 1, -1, NULL, 0);
        }
    }
    if (p->fd_write >= 0 && p->fd_write != p->fd_read) {
        close(p->fd_write);
    }
    if (p->fd_read >= 0) {
        close(p->fd_read);
    }
    if (p->pid > 0) {
        waitpid(p->pid, NULL, 0);
    }
    rbuf_free(&p->r);
    *p = (floor_pair){.pid = -1, .fd_read = -1, .fd_write = -1, .protocol = p->protocol};
}

typedef struct {
    floor_pair *pairs;
    const uint8_t *body;
    size_t body_len;
} floor_job;

static int floor_op(void *arg, int thread) {
    floor_job *job = arg;
    long got = floor_pair_roundtrip(&job->pairs[thread], bench_context, bench_context_len, job->body, job->body_len, NULL);
    return got == (long)job->body_len ? 0 : -1;
}

int floor_measure(floor_pair *p, int pairs, size_t body_len, double seconds, result *out) {
    floor_job job = {.pairs = p, .body = bench_body(body_len), .body_len = body_len};
    /* Check once that the echo really echoes (the timed loop only checks lengths). */
    for (int i = 0; i < pairs; i++) {
        const uint8_t *answer = NULL;
        if (floor_pair_roundtrip(&p[i], bench_context, bench_context_len, job.body, body_len, &answer) !=
                (long)body_len ||
            memcmp(answer, job.body, body_len) != 0) {
            fprintf(stderr, "floor: the worker's answer is not the echo of the task\n");
            return -1;
        }
    }
    return run_timed(pairs, floor_op, &job, seconds, 50, body_len, out);
}

/* ---------------------------------------------------------------- V2 streams */

long floor_pair_stream(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len,
                       size_t *bytes) {
    if (p->protocol != 2 || floor_pair_send(p, ctx, ctx_len, body, body_len) < 0) {
        return -1;
    }
    long chunks = 0;
    *bytes = 0;
    for (;;) {
        v2_frame f;
        size_t body_off;
        int more;
        long len = v2_receive_answer(p, &f, &body_off, &more);
        if (len < 0) {
            return -1;
        }
        rbuf_consume(&p->r, f.total);
        chunks++;
        *bytes += (size_t)len;
        if (!more) {
            return chunks;
        }
    }
}

typedef struct {
    floor_pair *pairs;
    long chunks;
    size_t chunk_bytes;
} stream_job;

static int stream_op(void *arg, int thread) {
    stream_job *job = arg;
    size_t bytes;
    long got = floor_pair_stream(&job->pairs[thread], bench_context, bench_context_len, bench_body(16), 16, &bytes);
    return got == job->chunks && bytes == (size_t)job->chunks * job->chunk_bytes ? 0 : -1;
}

int floor_stream_measure(floor_pair *p, int pairs, long chunks, size_t chunk_bytes, double seconds, result *out) {
    stream_job job = {.pairs = p, .chunks = chunks, .chunk_bytes = chunk_bytes};
    for (int i = 0; i < pairs; i++) {
        if (stream_op(&job, i) < 0) {
            fprintf(stderr, "floor: the worker's stream is not %ld chunks of %zu bytes\n", chunks, chunk_bytes);
            return -1;
        }
    }
    return run_timed(pairs, stream_op, &job, seconds, 50, (size_t)chunks * chunk_bytes, out);
}

void body_name(size_t len, char *buf, size_t buflen) {
    if (len >= (1u << 20) && len % (1u << 20) == 0) {
        snprintf(buf, buflen, "%zu MiB", len >> 20);
    } else if (len >= 1024 && len % 1024 == 0) {
        snprintf(buf, buflen, "%zu KiB", len >> 10);
    } else {
        snprintf(buf, buflen, "%zu B", len);
    }
}
