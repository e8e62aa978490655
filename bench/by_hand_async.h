/* The completion queue's shape written by hand, with no library: one host thread keeps K
 * tasks in flight on W echo_workers, each worker running one task at a time (a task waits
 * for a free worker, never in a busy worker's pipe), as references for the queue's rows. */
#ifndef BENCH_BY_HAND_ASYNC_H
#define BENCH_BY_HAND_ASYNC_H

#include "common.h"

typedef enum {
    /* One thread does everything: epoll on the workers' relays, reads each answer, takes
     * its completion and writes the next task to the worker it freed. What a host that
     * owns the relays itself reaches: no thread hands anything to another. */
    BY_HAND_ASYNC_ONE_LOOP,
    /* The queue's shape: a reactor thread (epoll on the relays) reads the answers, hands
     * each freed worker the next waiting task and posts the completions to a list under a
     * mutex, raising an eventfd once per pass; the host thread polls that eventfd, takes
     * the completions and submits new tasks (written at once to an idle worker, else put
     * in line). What an event-loop host pays when another thread must read the relays. */
    BY_HAND_ASYNC_REACTOR,
} by_hand_async_shape;

/* Measures the started floor pairs p[0..workers-1] in `shape` with `in_flight` tasks of
 * body_len bytes out at all times: warmup_ms, then `seconds` counted; then the tasks
 * still out are taken (not counted), so the pairs are quiet again. Returns 0, or -1 when
 * a round trip failed. Latency: from a task's submission to its completion's taking. */
int by_hand_async_measure(floor_pair *p, int workers, int in_flight, by_hand_async_shape shape, size_t body_len,
                          double seconds, long warmup_ms, result *out);

#endif
