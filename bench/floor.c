/* floor: the physical floor of a pool round trip, with no library at all.
 *
 * A parent starts bench/echo_worker (the same worker the pool benchmarks use) and plays
 * ping-pong with it over pipes, a Unix socket or TCP loopback, exactly as a pool would:
 * the pid handshake, then per task one writev of context + body, and a buffered read of
 * the two-frame answer. "2 pairs" runs two such parents (threads) and two workers at
 * once. Whatever a pool adds on top of this is its own overhead.
 *
 * With --protocol 2 both sides speak V2 (goridge 3/4) instead: the handshake and every
 * task and answer are one V2 frame each (16-byte header with the context's length as
 * its option, CRC checked on every header read), the byte counts a V2 pool moves.
 * With --stream (V2), the worker answers every task with a stream of 16 chunks of 64 KiB
 * (STREAM on all but the last, PING on every 5th) and the parent reads them, answering
 * each PING with a PONG, as the library's host side does: chunks/s and MB/s.
 *
 *   floor [--seconds S] [--worker PATH] [--channel pipes|unix|tcp|all]
 *         [--pairs N[,N...]] [--body BYTES[,BYTES...]] [--protocol 1|2] [--stream]
 *         [--allow-idle]
 *
 * Like bench/bench, it keeps the CPUs out of sleeping idle states while it runs (see
 * hold_cpus_awake in common.h) unless --allow-idle is given.
 *
 * Default: every channel, 1 and 2 pairs, 16 B bodies, plus 4 KiB, 64 KiB and 1 MiB over
 * pipes; 0.5 s per measurement.
 */
#define _GNU_SOURCE
#include "common.h"

#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>

/* The echo_worker next to this program. */
static void default_worker(char *buf, size_t len) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        snprintf(buf, len, "bench/echo_worker");
        return;
    }
    self[n] = '\0';
    snprintf(buf, len, "%s/echo_worker", dirname(self));
}

static int parse_list(const char *s, long *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        out[n++] = strtol(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            return -1;
        }
    }
    return n;
}

/* Measures one channel with the given pair counts and bodies; one set of workers is
 * started for the largest pair count and reused. */
static int run_channel(const char *worker, channel ch, const long *pairs, int npairs, const long *bodies, int nbodies,
                       double seconds, int protocol, int stream) {
    int most = 0;
    for (int i = 0; i < npairs; i++) {
        most = pairs[i] > most ? (int)pairs[i] : most;
    }
    floor_pair *p = calloc((size_t)most, sizeof *p);
    char chunks_arg[32];
    snprintf(chunks_arg, sizeof chunks_arg, "%d", STREAM_CHUNKS);
    const char *stream_args[] = {"--stream", chunks_arg, NULL};
    for (int i = 0; i < most; i++) {
        if (floor_pair_start_protocol(&p[i], worker, stream ? stream_args : NULL, ch, protocol) < 0) {
            return -1;
        }
    }
    int rc = 0;
    for (int k = 0; stream && k < npairs && rc == 0; k++) {
        result r;
        rc = floor_stream_measure(p, (int)pairs[k], STREAM_CHUNKS, STREAM_CHUNK_BYTES, seconds, &r);
        if (rc == 0) {
            printf("floor V2 stream %-5s %2ld pair%s %10.0f chunks/s  %8.1f MB/s  stream of %d x 64 KiB: p50 %8.1f us  "
                   "p99 %8.1f us\n",
                   channel_names[ch], pairs[k], pairs[k] == 1 ? " " : "s", r.tasks_per_s * STREAM_CHUNKS, r.mb_per_s,
                   STREAM_CHUNKS, r.p50_us, r.p99_us);
            fflush(stdout);
        }
    }
    for (int b = 0; !stream && b < nbodies && rc == 0; b++) {
        for (int k = 0; k < npairs && rc == 0; k++) {
            result r;
            char name[32];
            body_name((size_t)bodies[b], name, sizeof name);
            rc = floor_measure(p, (int)pairs[k], (size_t)bodies[b], seconds, &r);
            if (rc == 0) {
                printf("floor V%d %-5s %7s %2ld pair%s %10.0f tasks/s  p50 %8.1f us  p99 %8.1f us  %8.1f MB/s\n",
                       protocol, channel_names[ch], name, pairs[k], pairs[k] == 1 ? " " : "s", r.tasks_per_s, r.p50_us,
                       r.p99_us, r.mb_per_s);
                fflush(stdout);
            }
        }
    }
    for (int i = 0; i < most; i++) {
        floor_pair_stop(&p[i]);
    }
    free(p);
    return rc;
}

int main(int argc, char **argv) {
    char worker[PATH_MAX];
    double seconds = 0.5;
    const char *only = "all";
    long pairs[16] = {1, 2}, bodies[16] = {16};
    int npairs = 2, nbodies = 0; /* 0: the default body sets */
    int allow_idle = 0, protocol = 1, stream = 0;
    default_worker(worker, sizeof worker);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
            snprintf(worker, sizeof worker, "%s", argv[++i]);
        } else if (strcmp(argv[i], "--channel") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc) {
            npairs = parse_list(argv[++i], pairs, 16);
        } else if (strcmp(argv[i], "--body") == 0 && i + 1 < argc) {
            nbodies = parse_list(argv[++i], bodies, 16);
        } else if (strcmp(argv[i], "--allow-idle") == 0) {
            allow_idle = 1;
        } else if (strcmp(argv[i], "--protocol") == 0 && i + 1 < argc) {
            protocol = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--stream") == 0) {
            stream = 1;
        } else {
            fprintf(stderr,
                    "usage: floor [--seconds S] [--worker PATH] [--channel pipes|unix|tcp|all]\n"
                    "             [--pairs N[,N...]] [--body BYTES[,BYTES...]] [--protocol 1|2] [--stream]\n"
                    "             [--allow-idle]\n");
            return 2;
        }
    }
    if (npairs <= 0 || nbodies < 0) {
        fprintf(stderr, "floor: bad --pairs or --body list\n");
        return 2;
    }
    if ((protocol != 1 && protocol != 2) || (stream && protocol != 2)) {
        fprintf(stderr, "floor: --protocol is 1 or 2, and --stream needs --protocol 2\n");
        return 2;
    }
    /* A worker that dies must show up as a failed write, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (!allow_idle && hold_cpus_awake() < 0) {
        fprintf(stderr, "floor: note: cannot hold /dev/cpu_dma_latency (not root?): CPUs may sleep when idle\n");
    }
    static const long big[] = {16, 4096, 65536, 1 << 20};
    for (int ch = 0; ch < 3; ch++) {
        if (strcmp(only, "all") != 0 && strcmp(only, channel_names[ch]) != 0) {
            continue;
        }
        const long *b = bodies;
        int nb = nbodies;
        if (nb == 0) {
            /* Default: big bodies over pipes, 16 B everywhere. */
            b = big;
            nb = ch == CH_PIPES ? 4 : 1;
        }
        if (run_channel(worker, (channel)ch, pairs, npairs, b, nb, seconds, protocol, stream) < 0) {
            fprintf(stderr, "floor: the %s measurement failed\n", channel_names[ch]);
            return 1;
        }
    }
    return 0;
}
