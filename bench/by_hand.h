/* The pool's 4 workers x 16 callers shape written by hand, with no library: what any host
 * of that shape pays, as a reference beside the two floor pairs. */
#ifndef BENCH_BY_HAND_H
#define BENCH_BY_HAND_H

#include "common.h"

typedef enum {
    /* Thread t always uses worker t % workers and holds that worker's mutex for the whole
     * round trip: the simplest correct host of this shape. */
    BY_HAND_LOCKED,
    /* Thread t writes its task to worker t % workers at once, behind the tasks already in
     * that worker's pipe, and reads its answer when its turn comes: the worker never waits
     * for a task. What a pool that queued tasks in its workers' pipes could reach (the
     * pool does not: a task goes to a free worker, never behind a slow one). */
    BY_HAND_PIPELINED,
} by_hand_mode;

/* Measures `threads` threads sharing the started floor pairs p[0..workers-1] in `mode`,
 * with bodies of body_len bytes. Returns 0, or -1 when a round trip failed. */
int by_hand_measure(floor_pair *p, int workers, int threads, by_hand_mode mode, size_t body_len, double seconds,
                    result *out);

#endif
