/* test_worker_side.c: the rr_worker_* functions, driven by a server written here byte by
 * byte from SPEC.md section 1 (over a unix socket), and the C example worker in a pool. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "tests.h"

enum { F_EMPTY = 2, F_RAW = 4, F_ERROR = 8, F_CONTROL = 16 };

struct frame {
    uint8_t flags;
    size_t len;
    uint8_t data[4096];
};

static bool write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads exactly len bytes; false on EOF, error or timeout. */
static bool read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool send_frame(int fd, uint8_t flags, const void *data, size_t len)
{
    uint8_t prefix[17];
    prefix[0] = flags;
    for (int i = 0; i < 8; i++) {
        prefix[1 + i] = (uint8_t)((uint64_t)len >> (8 * i));        /* little-endian */
        prefix[9 + i] = (uint8_t)((uint64_t)len >> (8 * (7 - i))); /* big-endian */
    }
    return write_all(fd, prefix, sizeof prefix) && (len == 0 || write_all(fd, data, len));
}

static bool recv_frame(int fd, struct frame *f)
{
    uint8_t prefix[17];
    if (!CHECK(read_all(fd, prefix, sizeof prefix))) {
        return false;
    }
    uint64_t le = 0, be = 0;
    for (int i = 0; i < 8; i++) {
        le |= (uint64_t)prefix[1 + i] << (8 * i);
        be |= (uint64_t)prefix[9 + i] << (8 * (7 - i));
    }
    f->flags = prefix[0];
    if (f->flags & F_EMPTY) {
        f->len = 0;
        return true;
    }
    if (!CHECK(le == be) || !CHECK(le < sizeof f->data)) {
        note("frame prefix: flags %u, sizes %" PRIu64 " / %" PRIu64, prefix[0], le, be);
        return false;
    }
    f->len = (size_t)le;
    return f->len == 0 || CHECK(read_all(fd, f->data, f->len));
}

static bool frame_is(const struct frame *f, const char *text)
{
    size_t n = strlen(text);
    return f->len == n && (n == 0 || memcmp(f->data, text, n) == 0);
}

/* A listening unix socket in a fresh temp dir. */
struct listener {
    char dir[64];
    char path[100];
    char relay[160];
    int fd;
};

static bool listen_unix(struct listener *l)
{
    snprintf(l->dir, sizeof l->dir, "/tmp/rr-c-tests-XXXXXX");
    if (!CHECK(mkdtemp(l->dir) != NULL)) {
        return false;
    }
    snprintf(l->path, sizeof l->path, "%s/w.sock", l->dir);
    snprintf(l->relay, sizeof l->relay, "unix://%s", l->path);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", l->path);
    l->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    return CHECK(l->fd >= 0) && CHECK(bind(l->fd, (struct sockaddr *)&addr, sizeof addr) == 0) &&
           CHECK(listen(l->fd, 4) == 0);
}

static void close_listener(struct listener *l)
{
    if (l->fd >= 0) {
        close(l->fd);
    }
    unlink(l->path);
    rmdir(l->dir);
}

/* Accepts one connection (waiting at most 20 s), with a 20 s receive timeout. */
static int accept_one(int listen_fd)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    if (!CHECK(poll(&p, 1, 20000) == 1)) {
        return -1;
    }
    int fd = accept(listen_fd, NULL, NULL);
    if (!CHECK(fd >= 0)) {
        return -1;
    }
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Sends the server's handshake and checks the worker's answer: a CONTROL frame
 * {"pid":<the worker's pid>} (here the worker is this very process). */
static bool handshake(int fd)
{
    char hello[64];
    int n = snprintf(hello, sizeof hello, "{\"pid\":%ld}", (long)getpid());
    if (!CHECK(send_frame(fd, F_CONTROL, hello, (size_t)n))) {
        return false;
    }
    struct frame f;
    if (!recv_frame(fd, &f)) {
        return false;
    }
    CHECK(f.flags & F_CONTROL);
    f.data[f.len < sizeof f.data ? f.len : sizeof f.data - 1] = '\0';
    const char *key = strstr((const char *)f.data, "\"pid\"");
    const char *colon = key != NULL ? strchr(key, ':') : NULL;
    long pid = colon != NULL ? strtol(colon + 1, NULL, 10) : -1;
    if (!CHECK(pid == (long)getpid())) {
        note("handshake answer: %s", (const char *)f.data);
        return false;
    }
    return true;
}

static bool send_task(int fd, const char *context, const char *body)
{
    return CHECK(send_frame(fd, F_CONTROL | F_RAW, context, strlen(context))) &&
           CHECK(send_frame(fd, F_RAW, body, strlen(body)));
}

/* The server's side of the conversation of test_worker_side_protocol. */
static void protocol_server(int listen_fd)
{
    int fd = accept_one(listen_fd);
    if (fd < 0) {
        return;
    }
    struct frame a, b;
    if (!handshake(fd)) {
        goto done;
    }
    /* Task 1: an answer with a context. */
    if (!send_task(fd, "hdr", "hello") || !recv_frame(fd, &a) || !recv_frame(fd, &b)) {
        goto done;
    }
    CHECK((a.flags & F_CONTROL) && !(a.flags & F_ERROR));
    CHECK(frame_is(&a, "rctx"));
    CHECK(frame_is(&b, "rbody"));
    /* Task 2: an empty context, answered without one. */
    if (!send_task(fd, "", "x") || !recv_frame(fd, &a) || !recv_frame(fd, &b)) {
        goto done;
    }
    CHECK((a.flags & F_CONTROL) && !(a.flags & F_ERROR) && a.len == 0);
    CHECK(frame_is(&b, "y"));
    /* Task 3: a job error; no second frame follows. */
    if (!send_task(fd, "e", "boom") || !recv_frame(fd, &a)) {
        goto done;
    }
    CHECK((a.flags & F_CONTROL) && (a.flags & F_ERROR));
    CHECK(frame_is(&a, "oops"));
    /* Task 4: the worker asks to be replaced: context {"stop":true}, empty body. */
    if (!send_task(fd, "s", "") || !recv_frame(fd, &a) || !recv_frame(fd, &b)) {
        goto done;
    }
    CHECK((a.flags & F_CONTROL) && !(a.flags & F_ERROR));
    if (!CHECK(frame_is(&a, "{\"stop\":true}"))) {
        note("stop request context: %.*s", (int)a.len, (const char *)a.data);
    }
    CHECK(b.len == 0);
    /* Stop: rr_worker_receive gives NULL, then the worker closes the connection. */
    CHECK(send_frame(fd, F_CONTROL, "{\"stop\":true}", 13));
    uint8_t byte;
    CHECK(recv(fd, &byte, 1, 0) == 0);
done:
    close(fd);
}

struct server_thread {
    int listen_fd;
    void (*script)(int listen_fd);
};
static void *server_thread_main(void *p)
{
    struct server_thread *t = p;
    t->script(t->listen_fd);
    return NULL;
}

/* Receives a task and checks its context and body; NULL on failure. */
static rr_payload *receive_task(rr_worker *w, const char *context, const char *body)
{
    rr_payload *task = NULL;
    rr_error *err = NULL;
    rr_status status = rr_worker_receive(w, &task, &err);
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err) && CHECK(task != NULL);
    rr_error_free(err);
    if (!ok) {
        return NULL;
    }
    size_t len = 0;
    const uint8_t *data = rr_payload_context(task, &len);
    CHECK(len == strlen(context) && (len == 0 || memcmp(data, context, len) == 0));
    data = rr_payload_body(task, &len);
    CHECK(len == strlen(body) && (len == 0 || memcmp(data, body, len) == 0));
    return task;
}

static bool answered(rr_status status, rr_error *err)
{
    bool ok = CHECK_STATUS(status, RR_STATUS_OK, err);
    rr_error_free(err);
    return ok;
}

void test_worker_side_protocol(void)
{
    struct listener l = {.fd = -1};
    if (!listen_unix(&l)) {
        close_listener(&l);
        return;
    }
    struct server_thread st = {l.fd, protocol_server};
    pthread_t thread;
    if (!CHECK(pthread_create(&thread, NULL, server_thread_main, &st) == 0)) {
        close_listener(&l);
        return;
    }

    rr_worker *w = NULL;
    rr_error *err = NULL;
    rr_payload *task = NULL;
    rr_status status = rr_worker_new(l.relay, &w, &err);
    if (!CHECK_STATUS(status, RR_STATUS_OK, err)) {
        rr_error_free(err);
        shutdown(l.fd, SHUT_RDWR); /* ends the accept of the server thread */
        goto done;
    }

    /* NULL arguments are refused and write nothing to the connection. */
    task = SENTINEL;
    CHECK(rr_worker_receive(w, NULL, NULL) == RR_STATUS_NULL_ARGUMENT);
    CHECK(rr_worker_respond(w, NULL, 3, (const uint8_t *)"b", 1, NULL) == RR_STATUS_NULL_ARGUMENT);
    CHECK(rr_worker_respond(w, (const uint8_t *)"c", 1, NULL, 3, NULL) == RR_STATUS_NULL_ARGUMENT);
    CHECK(rr_worker_error(w, NULL, 3, NULL) == RR_STATUS_NULL_ARGUMENT);

    if ((task = receive_task(w, "hdr", "hello")) == NULL ||
        !answered(rr_worker_respond(w, (const uint8_t *)"rctx", 4, (const uint8_t *)"rbody", 5, &err), err)) {
        goto done;
    }
    rr_payload_free(task);
    err = NULL;
    if ((task = receive_task(w, "", "x")) == NULL ||
        !answered(rr_worker_respond(w, NULL, 0, (const uint8_t *)"y", 1, &err), err)) {
        goto done;
    }
    rr_payload_free(task);
    err = NULL;
    if ((task = receive_task(w, "e", "boom")) == NULL ||
        !answered(rr_worker_error(w, (const uint8_t *)"oops", 4, &err), err)) {
        goto done;
    }
    rr_payload_free(task);
    err = NULL;
    if ((task = receive_task(w, "s", "")) == NULL || !answered(rr_worker_stop(w, &err), err)) {
        goto done;
    }
    rr_payload_free(task);
    err = NULL;

    /* The stop command: OK with no task. */
    task = SENTINEL;
    status = rr_worker_receive(w, &task, &err);
    CHECK_STATUS(status, RR_STATUS_OK, err);
    CHECK(task == NULL);
    rr_error_free(err);
    task = NULL;
done:
    if (task != NULL && task != SENTINEL) {
        rr_payload_free(task);
    }
    rr_worker_free(w); /* closes the connection: a waiting server thread sees EOF */
    pthread_join(thread, NULL);
    close_listener(&l);
}

/* Handshake, then close the connection without a stop command. */
static void hangup_server(int listen_fd)
{
    int fd = accept_one(listen_fd);
    if (fd >= 0) {
        handshake(fd);
        close(fd);
    }
}

void test_worker_side_env_relay(void)
{
    /* Nothing listens there: the worker cannot connect, and says so. */
    rr_worker *w = SENTINEL;
    rr_error *err = NULL;
    rr_status status = rr_worker_new("unix:///nonexistent/rr-c-tests.sock", &w, &err);
    CHECK(status != RR_STATUS_OK);
    CHECK(w == SENTINEL);
    CHECK(err != NULL && rr_error_status(err) == status);
    rr_error_free(err);
    err = NULL;

    struct listener l = {.fd = -1};
    if (!listen_unix(&l)) {
        close_listener(&l);
        return;
    }
    struct server_thread st = {l.fd, hangup_server};
    pthread_t thread;
    if (!CHECK(pthread_create(&thread, NULL, server_thread_main, &st) == 0)) {
        close_listener(&l);
        return;
    }
    /* A NULL relay means RR_RELAY. (No library thread reads the environment now.) */
    setenv("RR_RELAY", l.relay, 1);
    w = NULL;
    status = rr_worker_new(NULL, &w, &err);
    unsetenv("RR_RELAY");
    if (CHECK_STATUS(status, RR_STATUS_OK, err)) {
        /* The server hangs up without a stop command: no task, and no crash. */
        rr_payload *task = SENTINEL;
        status = rr_worker_receive(w, &task, &err);
        if (!CHECK((status != RR_STATUS_OK && task == SENTINEL) || (status == RR_STATUS_OK && task == NULL))) {
            note("receive after hang-up: %s, task %p", rr_status_str(status), (void *)task);
        }
        if (status == RR_STATUS_OK && task != NULL && task != SENTINEL) {
            rr_payload_free(task);
        }
    } else {
        shutdown(l.fd, SHUT_RDWR);
    }
    rr_error_free(err);
    rr_worker_free(w);
    pthread_join(thread, NULL);
    close_listener(&l);
}

static void c_worker_pool(const char *relay)
{
    rr_server *s = start_with(test_config(command_of(g_c_worker, NULL), relay, 2));
    if (!CHECK(s != NULL)) {
        note("C worker over %s", relay);
        return;
    }
    for (int i = 0; i < 20; i++) {
        char body[64];
        snprintf(body, sizeof body, "C worker over %s, task %d", relay, i);
        check_echo(s, "c", body);
    }
    /* Context "error": a job error carrying the body; the worker stays. */
    rr_payload *answer = SENTINEL;
    rr_error *err = NULL;
    rr_status status = rr_exec(s, (const uint8_t *)"error", 5, (const uint8_t *)"bad input", 9, &answer, &err);
    if (CHECK_STATUS(status, RR_STATUS_JOB_ERROR, err) && CHECK(err != NULL)) {
        size_t len = 0;
        const uint8_t *data = rr_error_data(err, &len);
        CHECK(len == 9 && memcmp(data, "bad input", 9) == 0);
    }
    CHECK(answer == SENTINEL);
    rr_error_free(err);
    err = NULL;
    check_echo(s, "c", "after a job error");
    /* Context "stop": every worker asks to be replaced; bounded, then a worker error. */
    status = rr_exec(s, (const uint8_t *)"stop", 4, NULL, 0, &answer, &err);
    CHECK_STATUS(status, RR_STATUS_WORKER_ERROR, err);
    rr_error_free(err);
    CHECK(wait_workers(s, 2, RR_WORKER_STATE_READY, 15000));
    check_echo(s, "c", "after stop requests");
    rr_server_free(s);
}

void test_c_worker(void)
{
    if (g_c_worker == NULL) {
        note("skipped: no C worker given (-c or RR_C_WORKER)");
        return;
    }
    c_worker_pool("pipes");
    char dir_template[] = "/tmp/rr-c-tests-XXXXXX";
    char *dir = mkdtemp(dir_template);
    REQUIRE(dir != NULL);
    char relay[PATH_MAX + 16];
    snprintf(relay, sizeof relay, "unix://%s/c.sock", dir);
    c_worker_pool(relay);
    unlink(relay + 7);
    CHECK(rmdir(dir) == 0);
}
