/* The pool's shape by hand (see by_hand.h). The pairs' parent side is used from many
 * threads here; a worker's mutex (LOCKED) or its send lock and turn counter (PIPELINED)
 * keep one writer and one reader on each pair at a time. */
#define _GNU_SOURCE
#include "by_hand.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BY_HAND_MAX_WORKERS 64

typedef struct {
    floor_pair *pair;
    pthread_mutex_t send; /* LOCKED: the whole round trip; PIPELINED: one task's write */
    unsigned next_ticket; /* PIPELINED, under `send`: the turn of the next task written */
    _Atomic unsigned serving; /* PIPELINED: the turn whose answer is read next */
} by_hand_worker;

typedef struct {
    by_hand_worker *workers;
    int nworkers;
    by_hand_mode mode;
    const uint8_t *body;
    size_t body_len;
} by_hand_job;

static long futex(_Atomic unsigned *word, int op, unsigned value) {
    return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static int by_hand_op(void *arg, int thread) {
    by_hand_job *job = arg;
    by_hand_worker *w = &job->workers[thread % job->nworkers];
    if (job->mode == BY_HAND_LOCKED) {
        pthread_mutex_lock(&w->send);
        long got = floor_pair_roundtrip(w->pair, bench_context, bench_context_len, job->body, job->body_len, NULL);
        pthread_mutex_unlock(&w->send);
        return got == (long)job->body_len ? 0 : -1;
    }
    pthread_mutex_lock(&w->send);
    unsigned turn = w->next_ticket++;
    int sent = floor_pair_send(w->pair, bench_context, bench_context_len, job->body, job->body_len);
    pthread_mutex_unlock(&w->send);
    unsigned serving;
    while ((serving = atomic_load(&w->serving)) != turn) {
        futex(&w->serving, FUTEX_WAIT_PRIVATE, serving);
    }
    /* After a failed send there is no answer to wait for (and the run is aborted). */
    long got = sent < 0 ? -1 : floor_pair_receive(w->pair, NULL);
    atomic_fetch_add(&w->serving, 1);
    futex(&w->serving, FUTEX_WAKE_PRIVATE, INT32_MAX);
    return got == (long)job->body_len ? 0 : -1;
}

int by_hand_measure(floor_pair *p, int workers, int threads, by_hand_mode mode, size_t body_len, double seconds,
                    result *out) {
    if (workers < 1 || workers > BY_HAND_MAX_WORKERS) {
        return -1;
    }
    by_hand_worker ws[BY_HAND_MAX_WORKERS];
    for (int i = 0; i < workers; i++) {
        ws[i] = (by_hand_worker){.pair = &p[i]};
        pthread_mutex_init(&ws[i].send, NULL);
    }
    by_hand_job job = {.workers = ws, .nworkers = workers, .mode = mode, .body = bench_body(body_len),
                       .body_len = body_len};
    int rc = run_timed(threads, by_hand_op, &job, seconds, 50, body_len, out);
    for (int i = 0; i < workers; i++) {
        pthread_mutex_destroy(&ws[i].send);
    }
    return rc;
}
