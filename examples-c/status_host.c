/*
 * status_host.c: a C host of libroadrunner that serves its pool's status and metrics
 * over HTTP on a loopback port, the way an operator scrapes a worker pool.
 *
 *   status-host [-n MIN_WORKERS] [-m MAX_WORKERS] [-N NAME] [-P PORT] -- WORKER_COMMAND
 *
 * Starts an elastic pool of WORKER_COMMAND (MIN_WORKERS always running, up to
 * MAX_WORKERS under load) over pipes, listens on 127.0.0.1:PORT (0, the default: a free
 * port), prints "listening on http://127.0.0.1:<port>" and serves, one request at a
 * time:
 *
 *   GET /status      rr_server_status_json: the pool and every worker (application/json)
 *   GET /metrics     rr_server_metrics: OpenMetrics text, the pool's name as label `pool`
 *   GET /exec?TEXT   runs one task (body TEXT) and answers with the worker's answer
 *
 * Stops on SIGINT or SIGTERM: frees the server (its workers are stopped) and exits 0.
 * A real host would serve these from its own HTTP server; this one is as small as a
 * working one gets.
 */
#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rr.h"

static volatile sig_atomic_t stopping = 0;

static void on_signal(int signal_number) {
    (void)signal_number;
    stopping = 1;
}

static void fail(const char *what, rr_error *err) {
    fprintf(stderr, "status-host: %s: %s\n", what, err ? rr_error_message(err) : strerror(errno));
    rr_error_free(err);
    exit(1);
}

/* Writes all of `len` bytes, or gives up on this client. */
static void send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        data += n;
        len -= (size_t)n;
    }
}

static void respond(int fd, const char *status, const char *type, const char *body, size_t len) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, type, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Serves one request on `fd` from the pool of `s`. */
static void serve(int fd, rr_server *s) {
    char request[4096];
    size_t got = 0;
    /* The request line and headers: read until the blank line (GET has no body). */
    while (got < sizeof request - 1) {
        ssize_t n = recv(fd, request + got, sizeof request - 1 - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        request[got] = '\0';
        if (strstr(request, "\r\n\r\n")) break;
    }
    request[got] = '\0';
    char path[2048] = "";
    if (sscanf(request, "GET %2047s HTTP/", path) != 1) {
        respond(fd, "405 Method Not Allowed", "text/plain", "GET only\n", 9);
        return;
    }
    rr_error *err = NULL;
    char *text = NULL;
    if (strcmp(path, "/status") == 0) {
        if (rr_server_status_json(s, &text, &err) != RR_STATUS_OK) goto failed;
        respond(fd, "200 OK", "application/json", text, strlen(text));
    } else if (strcmp(path, "/metrics") == 0) {
        if (rr_server_metrics(s, &text, &err) != RR_STATUS_OK) goto failed;
        respond(fd, "200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", text, strlen(text));
    } else if (strncmp(path, "/exec?", 6) == 0) {
        const char *body = path + 6;
        rr_payload *answer = NULL;
        if (rr_exec(s, NULL, 0, (const uint8_t *)body, strlen(body), &answer, &err) != RR_STATUS_OK) goto failed;
        size_t len = 0;
        const uint8_t *bytes = rr_payload_body(answer, &len);
        respond(fd, "200 OK", "application/octet-stream", (const char *)bytes, len);
        rr_payload_free(answer);
    } else {
        respond(fd, "404 Not Found", "text/plain", "try /status, /metrics or /exec?text\n", 37);
    }
    rr_string_free(text);
    return;
failed:
    respond(fd, "500 Internal Server Error", "text/plain", rr_error_message(err), strlen(rr_error_message(err)));
    rr_error_free(err);
}

int main(int argc, char **argv) {
    unsigned long min_workers = 1, max_workers = 4, port = 0;
    const char *name = "status-host";
    int opt;
    while ((opt = getopt(argc, argv, "n:m:N:P:")) != -1) {
        switch (opt) {
        case 'n': min_workers = strtoul(optarg, NULL, 10); break;
        case 'm': max_workers = strtoul(optarg, NULL, 10); break;
        case 'N': name = optarg; break;
        case 'P': port = strtoul(optarg, NULL, 10); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || port > 65535) goto usage;

    rr_error *err = NULL;
    rr_config *cfg = NULL;
    if (rr_config_new(argv[optind], "pipes", &cfg, &err) != RR_STATUS_OK) fail("config", err);
    rr_config_set_num_workers(cfg, min_workers);
    rr_config_set_max_workers(cfg, max_workers);
    if (rr_config_set_name(cfg, name, &err) != RR_STATUS_OK) fail("name", err);
    rr_server *s = NULL;
    if (rr_server_new(cfg, &s, &err) != RR_STATUS_OK) fail("server", err);
    rr_config_free(cfg);
    if (rr_server_start(s, &err) != RR_STATUS_OK) fail("start", err);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) fail("socket", NULL);
    int yes = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 16) != 0)
        fail("bind", NULL);
    socklen_t size = sizeof address;
    getsockname(listener, (struct sockaddr *)&address, &size);
    printf("listening on http://127.0.0.1:%u\n", ntohs(address.sin_port));
    fflush(stdout);

    struct sigaction action = {.sa_handler = on_signal};
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    while (!stopping) {
        struct pollfd ready = {.fd = listener, .events = POLLIN};
        if (poll(&ready, 1, 200) <= 0) continue; /* a signal, or time to look at `stopping` */
        int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0) continue;
        serve(client, s);
        close(client);
    }
    close(listener);
    rr_server_free(s);
    printf("stopped\n");
    return 0;

usage:
    fprintf(stderr, "usage: %s [-n MIN_WORKERS] [-m MAX_WORKERS] [-N NAME] [-P PORT] -- WORKER_COMMAND\n", argv[0]);
    return 2;
}
