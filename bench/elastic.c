/* elastic: what an elastic pool costs and gains (`make bench` runs it after bench/bench).
 *
 *   elastic [--worker PATH] [--rounds N] [--json FILE]
 *
 * PATH is rr-test-worker (default target/release/rr-test-worker): it can wait before its
 * handshake (`boot-sleep MS`, a slow framework boot) and sleep in a task (`!sleep:MS`).
 * Three measurements, each the median of N rounds (default 3):
 *
 *   1. start-up on demand: a pool of 0..32 workers whose workers boot in 50 ms, and 32
 *      callers arriving at once with a 2 s task each: the time until all 32 run their
 *      task (the pool grew to 32), next to a static pool of 32 starting (rr_server_start);
 *   2. a burst of 64 tasks of 20 ms from 64 callers at once: the time until the last
 *      answer, for an elastic pool of 1..16, a static pool of 16 and a static pool of 1;
 *   3. the host's memory (VmRSS) with 64 idle workers, against the host before the pool.
 *
 * Prints one line per measurement; with --json, writes them to FILE for bench/report.py.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rr.h"

static const char *worker_path = "target/release/rr-test-worker";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, rr_error *err) {
    fprintf(stderr, "elastic: %s: %s\n", what, err ? rr_error_message(err) : "failed");
    exit(1);
}

/* A started server of rr-test-worker `mode`, floor..ceiling workers (ceiling 0: static). */
static rr_server *start(const char *mode, uint64_t floor, uint64_t ceiling) {
    char command[4200];
    snprintf(command, sizeof command, "'%s' %s", worker_path, mode);
    rr_error *err = NULL;
    rr_config *cfg = NULL;
    if (rr_config_new(command, "pipes", &cfg, &err) != RR_STATUS_OK) die("config", err);
    rr_config_set_num_workers(cfg, floor);
    rr_config_set_max_workers(cfg, ceiling);
    rr_config_set_relay_timeout_ms(cfg, 30000);
    rr_server *s = NULL;
    if (rr_server_new(cfg, &s, &err) != RR_STATUS_OK) die("server", err);
    rr_config_free(cfg);
    if (rr_server_start(s, &err) != RR_STATUS_OK) die("start", err);
    return s;
}

struct caller {
    rr_server *s;
    const char *context;
    pthread_barrier_t *go;
};

static void *call(void *arg) {
    struct caller *c = arg;
    pthread_barrier_wait(c->go);
    rr_payload *answer = NULL;
    rr_error *err = NULL;
    if (rr_exec(c->s, (const uint8_t *)c->context, strlen(c->context), (const uint8_t *)"x", 1, &answer, &err) !=
        RR_STATUS_OK)
        die("task", err);
    rr_payload_free(answer);
    return NULL;
}

/* Starts `n` callers of a task with `context` at once; returns their threads (joined by
 * `join_callers`). */
static pthread_t *start_callers(rr_server *s, int n, const char *context, struct caller *c, pthread_barrier_t *go) {
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    pthread_barrier_init(go, NULL, (unsigned)n + 1);
    *c = (struct caller){s, context, go};
    for (int i = 0; i < n; i++) pthread_create(&threads[i], NULL, call, c);
    pthread_barrier_wait(go);
    return threads;
}

static void join_callers(pthread_t *threads, int n, pthread_barrier_t *go) {
    for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(go);
    free(threads);
}

static size_t working(rr_server *s) {
    rr_worker_info *infos = NULL;
    size_t len = 0, busy = 0;
    if (rr_server_workers(s, &infos, &len, NULL) != RR_STATUS_OK) return 0;
    for (size_t i = 0; i < len; i++) busy += infos[i].state == RR_WORKER_STATE_WORKING;
    rr_worker_info_free(infos, len);
    return busy;
}

/* 1. The time until 32 callers all run on an on-demand pool (0..32) of 50 ms boots. */
static double on_demand_startup(void) {
    rr_server *s = start("boot-sleep 50", 0, 32);
    struct caller c;
    pthread_barrier_t go;
    double began = now_s();
    pthread_t *threads = start_callers(s, 32, "!sleep:2000", &c, &go);
    while (working(s) < 32) usleep(500);
    double took = now_s() - began;
    join_callers(threads, 32, &go);
    rr_server_free(s);
    return took;
}

static double static_startup(void) {
    double began = now_s();
    rr_server *s = start("boot-sleep 50", 32, 0);
    double took = now_s() - began;
    rr_server_free(s);
    return took;
}

/* 2. The time for 64 callers of a 20 ms task, from their start to the last answer. */
static double burst(uint64_t floor, uint64_t ceiling) {
    rr_server *s = start("echo", floor, ceiling);
    struct caller c;
    pthread_barrier_t go;
    double began = now_s();
    pthread_t *threads = start_callers(s, 64, "!sleep:20", &c, &go);
    join_callers(threads, 64, &go);
    double took = now_s() - began;
    rr_server_free(s);
    return took;
}

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double (*run)(void), int rounds) {
    double values[64];
    for (int i = 0; i < rounds; i++) values[i] = run();
    qsort(values, (size_t)rounds, sizeof values[0], by_value);
    return values[rounds / 2];
}

static double burst_elastic(void) { return burst(1, 16); }
static double burst_static16(void) { return burst(16, 0); }
static double burst_static1(void) { return burst(1, 0); }

int main(int argc, char **argv) {
    int rounds = 3;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) worker_path = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i];
        else {
            fprintf(stderr, "usage: elastic [--worker PATH] [--rounds N] [--json FILE]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 64 || access(worker_path, X_OK) != 0) {
        fprintf(stderr, "elastic: --rounds is 1..64, and %s must be an executable (make lib)\n", worker_path);
        return 2;
    }
    printf("elastic pool, medians of %d rounds (rr-test-worker over pipes)\n", rounds);
    double demand = median(on_demand_startup, rounds);
    double fixed = median(static_startup, rounds);
    printf("  start-up, 50 ms boots: 0..32 on demand, 32 callers all running  %7.0f ms\n", demand * 1e3);
    printf("  start-up, 50 ms boots: static 32, rr_server_start               %7.0f ms\n", fixed * 1e3);
    double elastic = median(burst_elastic, rounds);
    double static16 = median(burst_static16, rounds);
    double static1 = median(burst_static1, rounds);
    printf("  burst of 64 tasks of 20 ms: elastic 1..16                       %7.0f ms\n", elastic * 1e3);
    printf("  burst of 64 tasks of 20 ms: static 16                           %7.0f ms\n", static16 * 1e3);
    printf("  burst of 64 tasks of 20 ms: static 1                            %7.0f ms\n", static1 * 1e3);
    long before = vm_rss_kib();
    rr_server *s = start("echo", 64, 0);
    long with64 = vm_rss_kib();
    rr_server_free(s);
    printf("  host RSS: %ld KiB before, %ld KiB with 64 idle workers (+%ld KiB, %.1f KiB per worker)\n", before,
           with64, with64 - before, (double)(with64 - before) / 64);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) die("--json", NULL);
        fprintf(f,
                "{\"rounds\": %d, \"startup_on_demand_ms\": %.1f, \"startup_static_ms\": %.1f,\n"
                " \"burst_elastic_ms\": %.1f, \"burst_static16_ms\": %.1f, \"burst_static1_ms\": %.1f,\n"
                " \"host_rss_before_kib\": %ld, \"host_rss_64_idle_kib\": %ld}\n",
                rounds, demand * 1e3, fixed * 1e3, elastic * 1e3, static16 * 1e3, static1 * 1e3, before, with64);
        fclose(f);
    }
    return 0;
}
