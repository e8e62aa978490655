/* support.c: helpers shared by the C tests. */
#define _XOPEN_SOURCE 700

#include "support.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

const char *g_test_worker;
const char *g_c_worker;
int g_sentinel_object;

const char *command_of(const char *program, const char *args)
{
    static char buffers[8][4096];
    static unsigned next;
    char *out = buffers[next++ % 8];
    size_t n = 0;
    out[n++] = '\'';
    for (const char *p = program; *p != '\0' && n < 4000; p++) {
        if (*p == '\'') { /* 'it'\''s' */
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            out[n++] = *p;
        }
    }
    out[n++] = '\'';
    snprintf(out + n, 4096 - n, "%s%s", args != NULL && args[0] != '\0' ? " " : "", args != NULL ? args : "");
    return out;
}

const char *test_worker(const char *args)
{
    return command_of(g_test_worker, args);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

bool wait_until(bool (*cond)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg)) {
            return true;
        }
        if (now_ms() > deadline) {
            return cond(arg);
        }
        sleep_ms(2);
    }
}

int count_children(char *desc, size_t desc_len)
{
    if (desc != NULL && desc_len > 0) {
        desc[0] = '\0';
    }
    DIR *proc = opendir("/proc");
    if (proc == NULL) {
        return -1;
    }
    pid_t me = getpid();
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (!isdigit((unsigned char)entry->d_name[0])) {
            continue;
        }
        char path[300], stat[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue; /* gone meanwhile */
        }
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
        char *close = strrchr(stat, ')');
        char *open = strchr(stat, '(');
        char state = '?';
        int ppid = 0;
        if (close == NULL || open == NULL || sscanf(close + 1, " %c %d", &state, &ppid) != 2) {
            continue;
        }
        if (ppid == me) {
            count++;
            size_t used = desc != NULL ? strlen(desc) : 0;
            if (desc != NULL && desc_len > used + 1) {
                *close = '\0';
                snprintf(desc + used, desc_len - used, "%s%s(%s)%c", used ? " " : "", entry->d_name, open + 1,
                         state);
            }
        }
    }
    closedir(proc);
    return count;
}

rr_config *test_config(const char *command, const char *relay, uint64_t workers)
{
    rr_config *config = NULL;
    rr_error *err = NULL;
    rr_status status = rr_config_new(command, relay, &config, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (!ok) {
        return NULL;
    }
    rr_config_set_num_workers(config, workers);
    rr_config_set_allocate_timeout_ms(config, 20000);
    rr_config_set_destroy_timeout_ms(config, 3000);
    rr_config_set_relay_timeout_ms(config, 10000);
    return config;
}

rr_server *start_with(rr_config *config)
{
    if (config == NULL) {
        return NULL;
    }
    rr_server *server = NULL;
    rr_error *err = NULL;
    rr_status status = rr_server_new(config, &server, &err);
    rr_config_free(config);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (!ok) {
        return NULL;
    }
    err = NULL;
    status = rr_server_start(server, &err);
    ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (!ok) {
        rr_server_free(server);
        return NULL;
    }
    return server;
}

rr_server *start_test_server(const char *args, uint64_t workers)
{
    return start_with(test_config(test_worker(args), "pipes", workers));
}

static char *copy_text(const uint8_t *data, size_t len)
{
    char *out = malloc(len + 1);
    if (out != NULL) {
        if (len > 0) {
            memcpy(out, data, len);
        }
        out[len] = '\0';
    }
    return out;
}

rr_status exec_text(rr_server *s, const char *context, const char *body, char **context_out, char **body_out,
                    rr_error **err_out)
{
    rr_payload *answer = NULL;
    rr_status status = rr_exec(s, (const uint8_t *)context, strlen(context), (const uint8_t *)body, strlen(body),
                               &answer, err_out);
    if (status != RR_STATUS_OK) {
        return status;
    }
    size_t len = 0;
    if (context_out != NULL) {
        const uint8_t *data = rr_payload_context(answer, &len);
        *context_out = copy_text(data, len);
    }
    if (body_out != NULL) {
        const uint8_t *data = rr_payload_body(answer, &len);
        *body_out = copy_text(data, len);
    }
    rr_payload_free(answer);
    return status;
}

bool check_echo(rr_server *s, const char *context, const char *body)
{
    char *got_context = NULL, *got_body = NULL;
    rr_error *err = NULL;
    rr_status status = exec_text(s, context, body, &got_context, &got_body, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    if (ok) {
        ok = CHECK(got_context != NULL && strcmp(got_context, context) == 0);
        ok = CHECK(got_body != NULL && strcmp(got_body, body) == 0) && ok;
    }
    free(got_context);
    free(got_body);
    return ok;
}

int64_t exec_pid(rr_server *s)
{
    char *body = NULL;
    rr_error *err = NULL;
    rr_status status = exec_text(s, "!pid", "", NULL, &body, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    int64_t pid = -1;
    if (ok && body != NULL) {
        pid = strtoll(body, NULL, 10);
    }
    free(body);
    CHECK(pid > 0);
    return pid > 0 ? pid : -1;
}

bool workers_are(rr_server *s, size_t count, int32_t state)
{
    rr_worker_info *infos = NULL;
    size_t len = 0;
    if (rr_server_workers(s, &infos, &len, NULL) != RR_STATUS_OK) {
        return false;
    }
    bool ok = len == count;
    for (size_t i = 0; ok && i < len; i++) {
        ok = infos[i].state == state;
    }
    rr_worker_info_free(infos, len);
    return ok;
}

struct workers_wait {
    rr_server *s;
    size_t count;
    int32_t state;
};

static bool workers_wait_cond(void *arg)
{
    struct workers_wait *w = arg;
    return workers_are(w->s, w->count, w->state);
}

bool wait_workers(rr_server *s, size_t count, int32_t state, int timeout_ms)
{
    struct workers_wait w = {s, count, state};
    return wait_until(workers_wait_cond, &w, timeout_ms);
}

bool contains(const char *haystack, const char *needle)
{
    return haystack != NULL && strstr(haystack, needle) != NULL;
}

void recorder_init(struct recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    atomic_init(&r->calls, 0);
    atomic_init(&r->inside, 0);
    atomic_init(&r->overlaps, 0);
    atomic_init(&r->frees, 0);
    atomic_init(&r->after_release, 0);
    atomic_init(&r->released, false);
    atomic_init(&r->bad_free_arg, false);
}

void recorder_destroy(struct recorder *r)
{
    pthread_mutex_destroy(&r->lock);
}

void recorder_callback(void *userdata, const rr_event *event)
{
    struct recorder *r = userdata;
    if (atomic_fetch_add(&r->inside, 1) != 0) {
        atomic_fetch_add(&r->overlaps, 1);
    }
    atomic_fetch_add(&r->calls, 1);
    if (atomic_load(&r->released)) {
        atomic_fetch_add(&r->after_release, 1);
    }
    struct recorded_event e = {.type = rr_event_type(event), .pid = rr_event_pid(event)};
    const char *message = rr_event_message(event);
    if (message != NULL) {
        e.has_message = true;
        snprintf(e.message, sizeof e.message, "%s", message);
    }
    pthread_mutex_lock(&r->lock);
    if (r->count < RECORDER_MAX) {
        r->events[r->count++] = e;
    }
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_sub(&r->inside, 1);
}

void recorder_free(void *userdata)
{
    struct recorder *r = userdata;
    atomic_fetch_add(&r->frees, 1);
}

size_t recorder_count(struct recorder *r, int32_t type, int64_t pid, const char *message)
{
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        const struct recorded_event *e = &r->events[i];
        if ((type == -1 || e->type == type) && (pid == -2 || e->pid == pid) &&
            (message == NULL || (e->has_message && strcmp(e->message, message) == 0))) {
            n++;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

struct recorder_wait_arg {
    struct recorder *r;
    int32_t type;
    int64_t pid;
    const char *message;
    size_t min;
};

static bool recorder_wait_cond(void *arg)
{
    struct recorder_wait_arg *w = arg;
    return recorder_count(w->r, w->type, w->pid, w->message) >= w->min;
}

bool recorder_wait(struct recorder *r, int32_t type, int64_t pid, const char *message, size_t min, int timeout_ms)
{
    struct recorder_wait_arg w = {r, type, pid, message, min};
    return wait_until(recorder_wait_cond, &w, timeout_ms);
}

void recorder_dump(struct recorder *r)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count; i++) {
        const struct recorded_event *e = &r->events[i];
        note("event %" PRId32 " pid=%" PRId64 " %s", e->type, e->pid, e->has_message ? e->message : "(no message)");
    }
    pthread_mutex_unlock(&r->lock);
}
