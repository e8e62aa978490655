/* The completion queue's shape by hand (see by_hand_async.h): floor pairs driven with no
 * library, one task per worker at a time, tasks beyond the workers waiting in a line. */
#define _GNU_SOURCE
#include "by_hand_async.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_WORKERS 64
#define MAX_IN_FLIGHT 4096
#define STALL_MS 30000 /* nothing for this long with tasks out: the run failed */
#define WAKE_KEY UINT32_MAX

/* The submission times of the tasks waiting for a worker, oldest first. */
typedef struct {
    uint64_t at[MAX_IN_FLIGHT];
    int head, len;
} task_line;

static void line_push(task_line *l, uint64_t submitted) {
    l->at[(l->head + l->len++) % MAX_IN_FLIGHT] = submitted;
}

static uint64_t line_pop(task_line *l) {
    uint64_t submitted = l->at[l->head];
    l->head = (l->head + 1) % MAX_IN_FLIGHT;
    l->len--;
    return submitted;
}

/* What one measurement shares: the pairs, the task, the window, the latencies. */
typedef struct {
    floor_pair *p;
    int workers, in_flight;
    const uint8_t *body;
    size_t body_len;
    uint64_t window_start, window_end; /* a completion taken in between counts */
    uint64_t *lat;
    size_t nlat, cap;
} job;

static int send_task(job *j, int w) {
    return floor_pair_send(&j->p[w], bench_context, bench_context_len, j->body, j->body_len);
}

static int read_answer(job *j, int w) {
    return floor_pair_receive(&j->p[w], NULL) == (long)j->body_len ? 0 : -1;
}

/* A completion taken at `taken` of a task submitted at `submitted`. */
static void note_taken(job *j, uint64_t submitted, uint64_t taken) {
    if (taken < j->window_start || taken >= j->window_end) {
        return;
    }
    if (j->nlat == j->cap) {
        j->cap = j->cap ? j->cap * 2 : 1u << 16;
        j->lat = realloc(j->lat, j->cap * sizeof *j->lat);
        if (!j->lat) {
            abort();
        }
    }
    j->lat[j->nlat++] = taken - submitted;
}

/* ---- one thread does everything ---- */

/* An epoll instance watching every worker's relay (level-triggered, keyed by the worker's
 * index), or -1. */
static int watch_relays(job *j) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int w = 0; ep >= 0 && w < j->workers; w++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)w};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, j->p[w].fd_read, &e) < 0) {
            close(ep);
            ep = -1;
        }
    }
    return ep;
}

static int one_loop(job *j) {
    int ep = watch_relays(j);
    if (ep < 0) {
        return -1;
    }
    task_line waiting = {0};
    uint64_t started[MAX_WORKERS];
    int idle[MAX_WORKERS], nidle = 0, outstanding = 0, rc = 0;
    uint64_t now = now_ns();
    for (int w = j->workers - 1; w >= 0; w--) {
        idle[nidle++] = w;
    }
    for (int i = 0; i < j->in_flight && rc == 0; i++, outstanding++) {
        if (nidle > 0) {
            int w = idle[--nidle];
            started[w] = now;
            rc = send_task(j, w);
        } else {
            line_push(&waiting, now);
        }
    }
    struct epoll_event ev[MAX_WORKERS];
    while (rc == 0 && outstanding > 0) {
        int n = epoll_wait(ep, ev, MAX_WORKERS, STALL_MS);
        if (n <= 0) {
            rc = n == 0 || errno != EINTR ? -1 : 0;
            continue;
        }
        for (int k = 0; k < n && rc == 0; k++) {
            int w = (int)ev[k].data.u32;
            rc = read_answer(j, w);
            uint64_t taken = now_ns();
            outstanding--;
            note_taken(j, started[w], taken);
            if (taken < j->window_end) {
                line_push(&waiting, taken); /* a new task for the one taken */
                outstanding++;
            }
            if (waiting.len > 0) {
                started[w] = line_pop(&waiting);
                rc = rc ? rc : send_task(j, w);
            } else {
                idle[nidle++] = w;
            }
        }
    }
    close(ep);
    return rc;
}

/* ---- a host thread and a reactor thread ---- */

typedef struct {
    job *j;
    pthread_mutex_t mu;
    /* Under mu: */
    task_line waiting;
    int idle[MAX_WORKERS], nidle;
    uint64_t started[MAX_WORKERS];
    uint64_t posted[MAX_IN_FLIGHT]; /* the submission times of completions not yet taken */
    int nposted;
    bool raised;
    /* Readable while completions wait (the queue's descriptor). */
    int signal;
    /* Ends the reactor. */
    int quit;
    atomic_int failed;
} reactor_shape;

static void raise_signal(int fd) {
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) != sizeof one) {
        abort();
    }
}

static void *reactor_thread(void *arg) {
    reactor_shape *r = arg;
    job *j = r->j;
    int ep = watch_relays(j);
    bool ok = ep >= 0;
    struct epoll_event q = {.events = EPOLLIN, .data.u32 = WAKE_KEY};
    ok = ok && epoll_ctl(ep, EPOLL_CTL_ADD, r->quit, &q) == 0;
    struct epoll_event ev[MAX_WORKERS + 1];
    bool quit = !ok;
    while (!quit) {
        int n = epoll_wait(ep, ev, MAX_WORKERS + 1, -1);
        for (int k = 0; k < n; k++) {
            if (ev[k].data.u32 == WAKE_KEY) {
                quit = true;
                continue;
            }
            int w = (int)ev[k].data.u32;
            if (read_answer(j, w) < 0) {
                atomic_store(&r->failed, 1);
                quit = true;
                break;
            }
            pthread_mutex_lock(&r->mu);
            r->posted[r->nposted++] = r->started[w];
            bool next = r->waiting.len > 0;
            if (next) {
                r->started[w] = line_pop(&r->waiting);
            } else {
                r->idle[r->nidle++] = w;
            }
            pthread_mutex_unlock(&r->mu);
            if (next && send_task(j, w) < 0) {
                atomic_store(&r->failed, 1);
                quit = true;
                break;
            }
        }
        /* The signal once per pass, as the library raises it. */
        pthread_mutex_lock(&r->mu);
        if ((r->nposted > 0 || atomic_load(&r->failed)) && !r->raised) {
            r->raised = true;
            raise_signal(r->signal);
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (ep >= 0) {
        close(ep);
    }
    if (!ok) {
        atomic_store(&r->failed, 1);
        raise_signal(r->signal);
    }
    return NULL;
}

/* Submits `count` tasks at `now` (under mu): to idle workers (listed in to_send) or in line. */
static int submit_locked(reactor_shape *r, int count, uint64_t now, int *to_send) {
    int ns = 0;
    for (int i = 0; i < count; i++) {
        if (r->nidle > 0) {
            int w = r->idle[--r->nidle];
            r->started[w] = now;
            to_send[ns++] = w;
        } else {
            line_push(&r->waiting, now);
        }
    }
    return ns;
}

static int with_reactor(job *j) {
    static reactor_shape r;
    r = (reactor_shape){.j = j};
    pthread_mutex_init(&r.mu, NULL);
    r.signal = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r.quit = eventfd(0, EFD_CLOEXEC);
    for (int w = j->workers - 1; w >= 0; w--) {
        r.idle[r.nidle++] = w;
    }
    pthread_t reactor;
    if (r.signal < 0 || r.quit < 0 || pthread_create(&reactor, NULL, reactor_thread, &r) != 0) {
        abort();
    }
    int to_send[MAX_WORKERS], rc = 0;
    uint64_t taken_at[MAX_IN_FLIGHT];
    pthread_mutex_lock(&r.mu);
    int ns = submit_locked(&r, j->in_flight, now_ns(), to_send);
    pthread_mutex_unlock(&r.mu);
    for (int i = 0; i < ns && rc == 0; i++) {
        rc = send_task(j, to_send[i]);
    }
    int outstanding = j->in_flight;
    while (rc == 0 && outstanding > 0) {
        struct pollfd pfd = {.fd = r.signal, .events = POLLIN};
        int n = poll(&pfd, 1, STALL_MS);
        if (n <= 0 || atomic_load(&r.failed)) {
            rc = n < 0 && errno == EINTR && !atomic_load(&r.failed) ? 0 : -1;
            continue;
        }
        uint64_t now = now_ns();
        pthread_mutex_lock(&r.mu);
        int taken = r.nposted;
        for (int i = 0; i < taken; i++) {
            taken_at[i] = r.posted[i];
        }
        r.nposted = 0;
        uint64_t count;
        if (r.raised && read(r.signal, &count, sizeof count) != sizeof count) {
            abort();
        }
        r.raised = false;
        int more = now < j->window_end ? taken : 0;
        ns = submit_locked(&r, more, now, to_send);
        pthread_mutex_unlock(&r.mu);
        for (int i = 0; i < ns && rc == 0; i++) {
            rc = send_task(j, to_send[i]);
        }
        for (int i = 0; i < taken; i++) {
            note_taken(j, taken_at[i], now);
        }
        outstanding += more - taken;
    }
    raise_signal(r.quit);
    pthread_join(reactor, NULL);
    close(r.signal);
    close(r.quit);
    pthread_mutex_destroy(&r.mu);
    return rc == 0 && !atomic_load(&r.failed) ? 0 : -1;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int by_hand_async_measure(floor_pair *p, int workers, int in_flight, by_hand_async_shape shape, size_t body_len,
                          double seconds, long warmup_ms, result *out) {
    *out = (result){0};
    if (workers < 1 || workers > MAX_WORKERS || in_flight < 1 || in_flight > MAX_IN_FLIGHT) {
        return -1;
    }
    job j = {.p = p, .workers = workers, .in_flight = in_flight, .body = bench_body(body_len), .body_len = body_len};
    j.window_start = now_ns() + (uint64_t)warmup_ms * 1000000u;
    j.window_end = j.window_start + (uint64_t)(seconds * 1e9);
    int rc = shape == BY_HAND_ASYNC_ONE_LOOP ? one_loop(&j) : with_reactor(&j);
    if (rc == 0 && j.nlat > 0) {
        qsort(j.lat, j.nlat, sizeof *j.lat, cmp_u64);
        double secs = (double)(j.window_end - j.window_start) / 1e9;
        out->tasks = j.nlat;
        out->seconds = secs;
        out->tasks_per_s = (double)j.nlat / secs;
        out->p50_us = (double)j.lat[j.nlat / 2] / 1e3;
        size_t i99 = (size_t)((double)j.nlat * 0.99);
        out->p99_us = (double)j.lat[i99 < j.nlat ? i99 : j.nlat - 1] / 1e3;
        out->mb_per_s = out->tasks_per_s * (double)body_len / 1e6;
    }
    free(j.lat);
    return rc == 0 && j.nlat > 0 ? 0 : -1;
}
