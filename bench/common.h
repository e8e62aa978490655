/* Shared by bench/floor.c and bench/bench.c: clocks, latency statistics, a runner that
 * drives N threads through one operation for a fixed time, CPU pinning, and the floor
 * pairs (a parent and an echo_worker talking the protocol with no library). */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

/* ---- time ---- */
uint64_t now_ns(void);
void sleep_ms(long ms);

/* ---- one measurement ---- */
typedef struct {
    double tasks_per_s;
    double p50_us;
    double p99_us;
    double mb_per_s; /* body bytes echoed per second, one direction, in 10^6 B */
    uint64_t tasks;
    double seconds;
} result;

/* One operation of a measured loop: one round trip. `thread` is 0..threads-1.
 * Returns 0, or -1 to abort the measurement. */
typedef int (*op_fn)(void *arg, int thread);

/* Runs `threads` threads; each calls op(arg, i) for warmup_ms (not counted), then, after
 * all are warm, until seconds have passed. Every call's latency is recorded. `body_len`
 * only serves the MB/s figure. Returns 0, or -1 when an op failed. */
int run_timed(int threads, op_fn op, void *arg, double seconds, long warmup_ms, size_t body_len, result *out);

/* Median of n doubles (the array is sorted in place). */
double median(double *v, size_t n);

/* ---- CPU pinning ---- */
/* Pins every thread of this process to one CPU (threads and children started later
 * inherit it), remembering the previous mask; unpin_all restores it for every thread. */
int pin_all_to_cpu(int cpu);
void unpin_all(void);

/* ---- CPU idle states ---- */
/* Asks the kernel (PM QoS, /dev/cpu_dma_latency = 0) to keep every CPU out of sleeping
 * idle states for as long as this process lives; the request ends with the process.
 * On a VM an idle vCPU halts and waking it costs tens of microseconds, which a
 * ping-pong between two CPUs pays on every message: the numbers then depend on where the
 * scheduler happened to put the two processes (~6 us or ~50 us a round trip, from run
 * to run). Polling idle removes that lottery for floor and pool alike. Returns 0 when
 * the request is held, -1 when the device cannot be opened (not root, no PM QoS). */
int hold_cpus_awake(void);

/* ---- channels ---- */
typedef enum { CH_PIPES = 0, CH_UNIX = 1, CH_TCP = 2 } channel;
extern const char *const channel_names[3];

/* A relay address the library (or a floor parent) can listen on: a fresh temporary
 * unix socket path or a free loopback TCP port. Writes "pipes", "unix://..." or
 * "tcp://127.0.0.1:N" into buf. */
void make_relay(channel ch, char *buf, size_t len);

/* ---- floor pairs ---- */
/* The capacity a floor pair's pipes are given: what the library's relays grow to. */
#define FLOOR_PIPE_SIZE (256 * 1024)
typedef struct {
    pid_t pid;
    int fd_read, fd_write; /* the same socket for unix/tcp */
    int protocol;          /* 1: V1 frames, 2: V2 frames */
    rbuf r;
} floor_pair;

/* Starts `worker` (an echo_worker path, plus one extra argument or NULL) on channel ch and
 * does the pid handshake, in protocol V1. Returns 0 or -1 (with a message on stderr). */
int floor_pair_start(floor_pair *p, const char *worker, const char *extra_arg, channel ch);
/* The same in `protocol` (1 or 2: the worker is given "--protocol 2"), with extra_args
 * (NULL-terminated, or NULL) for the worker. */
int floor_pair_start_protocol(floor_pair *p, const char *worker, const char *const *extra_args, channel ch,
                              int protocol);
/* One task: writes context+body in one writev (V1: two frames; V2: one frame), reads the
 * answer (V1: two frames; V2: one). Returns the answer's body length, or -1. When answer
 * is not NULL it receives the answer's body, valid until the next call on p. */
long floor_pair_roundtrip(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len,
                          const uint8_t **answer);
/* The two halves of a round trip, for hosts that let tasks queue in the worker's pipe:
 * send returns 0 or -1; receive reads the next answer, as floor_pair_roundtrip does. */
int floor_pair_send(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len);
long floor_pair_receive(floor_pair *p, const uint8_t **answer);
/* Sends stop, waits for the worker to exit, closes everything. */
void floor_pair_stop(floor_pair *p);

/* Measures `pairs` floor pairs (p[0..pairs)), one thread each, echoing body_len bytes. */
int floor_measure(floor_pair *p, int pairs, size_t body_len, double seconds, result *out);

/* ---- V2 streams: a floor pair whose worker runs `--stream N` ---- */
/* The chunk size and chunks per stream of the stream benchmarks (floor and pool). */
#define STREAM_CHUNK_BYTES 65536
#define STREAM_CHUNKS 16
/* One streamed task: writes the task (context + body), then reads frames until one
 * without STREAM, answering every PING with a PONG at once (as the library's host side
 * does). Returns the number of chunks, or -1; *bytes receives the body bytes read. */
long floor_pair_stream(floor_pair *p, const uint8_t *ctx, size_t ctx_len, const uint8_t *body, size_t body_len,
                       size_t *bytes);
/* Measures `pairs` stream pairs, one thread each: one op = one stream of `chunks` chunks
 * of chunk_bytes (out->tasks_per_s counts streams; out->mb_per_s counts chunk bodies). */
int floor_stream_measure(floor_pair *p, int pairs, long chunks, size_t chunk_bytes, double seconds, result *out);

/* The context every benchmark sends (floor and pool alike). */
extern const uint8_t bench_context[];
extern const size_t bench_context_len;
/* A body buffer of at least len bytes (shared, read-only, filled with a pattern). */
const uint8_t *bench_body(size_t len);
/* A body size for tables: "16 B", "4 KiB", "1 MiB". */
void body_name(size_t len, char *buf, size_t buflen);

#endif
