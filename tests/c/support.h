/*
 * support.h: helpers shared by the C tests (servers, polling, children, events).
 */
#ifndef RR_C_TESTS_SUPPORT_H
#define RR_C_TESTS_SUPPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rr.h"

/* Path of rr-test-worker (-w or RR_TEST_WORKER) and of build/worker (-c or RR_C_WORKER; may be NULL). */
extern const char *g_test_worker;
extern const char *g_c_worker;

/* A pointer value that the library must never write or read: out-params are set to it
 * before a call that must fail, and checked afterwards. */
extern int g_sentinel_object;
#define SENTINEL ((void *)&g_sentinel_object)

/* The command line `'<program>' args` (program single-quoted for the library's shell-like
 * split). Returns one of a few rotating static buffers: use it before the next 8 calls. */
const char *command_of(const char *program, const char *args);
/* command_of(g_test_worker, args). */
const char *test_worker(const char *args);

int64_t now_ms(void);
void sleep_ms(int ms);

/* Polls `cond(arg)` every couple of milliseconds until it is true or `timeout_ms` passed. */
bool wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms);

/* Counts this process's children (zombies included) by scanning /proc/<pid>/stat for our
 * pid as the parent; writes "pid(comm)state ..." of the first few into desc. */
int count_children(char *desc, size_t desc_len);

/* A config for `command` over `relay` with `workers` workers and test-friendly timeouts
 * (allocate 20 s, destroy 3 s, relay 10 s). NULL (after failed checks) on failure. */
rr_config *test_config(const char *command, const char *relay, uint64_t workers);
/* A started server over the config; the config is freed. NULL (after failed checks) on failure. */
rr_server *start_with(rr_config *config);
/* A started server of `workers` rr-test-worker processes (mode args) over pipes. */
rr_server *start_test_server(const char *args, uint64_t workers);

/* Runs a task with NUL-terminated context and body. On success *body_out (if not NULL)
 * receives a malloc'ed NUL-terminated copy of the answer's body and *context_out (if not
 * NULL) of its context; on failure *err_out (if not NULL) the error. */
rr_status exec_text(rr_server *s, const char *context, const char *body, char **context_out, char **body_out,
                    rr_error **err_out);
/* Checks that a task is echoed (context and body); true when it was. */
bool check_echo(rr_server *s, const char *context, const char *body);
/* The pid of the worker that runs the next task (via the "!pid" command); -1 on failure. */
int64_t exec_pid(rr_server *s);

/* Takes a snapshot; true when there are `count` workers, all in `state`. */
bool workers_are(rr_server *s, size_t count, int32_t state);
/* Waits up to timeout_ms for workers_are(). */
bool wait_workers(rr_server *s, size_t count, int32_t state, int timeout_ms);

/* Does `haystack` (may be NULL) contain `needle`? */
bool contains(const char *haystack, const char *needle);

/* An event recorder: a callback's userdata that records every event. */
#define RECORDER_MAX 4096
struct recorded_event {
    int32_t type;
    int64_t pid;
    bool has_message;
    char message[200];
};
struct recorder {
    pthread_mutex_t lock;
    struct recorded_event events[RECORDER_MAX];
    size_t count;
    atomic_int calls;          /* callback calls */
    atomic_int inside;         /* callbacks running now */
    atomic_int overlaps;       /* calls that found another call running */
    atomic_int frees;          /* recorder_free calls */
    atomic_int after_release;  /* calls after the owner said no more may come */
    atomic_bool released;      /* set by the test when no further call is allowed */
    atomic_bool bad_free_arg;  /* recorder_free got another pointer */
};
void recorder_init(struct recorder *r);
void recorder_destroy(struct recorder *r);
/* rr_event_callback and userdata_free for a struct recorder. */
void recorder_callback(void *userdata, const rr_event *event);
void recorder_free(void *userdata);
/* Events of `type` (-1: any) from `pid` (-2: any) whose message is `message` (NULL: any). */
size_t recorder_count(struct recorder *r, int32_t type, int64_t pid, const char *message);
/* Waits until recorder_count(...) >= min. */
bool recorder_wait(struct recorder *r, int32_t type, int64_t pid, const char *message, size_t min, int timeout_ms);
/* Prints the recorded events (for a failed check). */
void recorder_dump(struct recorder *r);

#endif
