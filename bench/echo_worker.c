/* echo_worker: the smallest fast worker we can write, speaking the protocol by hand
 * (no libroadrunner), so that benchmarks measure the pool and not the worker.
 *
 * It answers the handshake, then echoes every task (context and body) back, one writev
 * per answer, and exits on the stop command or at EOF.
 *
 *   RR_RELAY            pipes (default; stdin/stdout), tcp://host:port, unix://path
 *   --boot-sleep-ms N   sleep N ms before connecting/handshaking (start-up benchmark)
 *   --split-sends       over TCP: send every prefix and every payload with separate
 *                       send() calls and leave Nagle on, as PHP's socket relay does;
 *                       a server that does not ACK promptly stalls ~40 ms per task
 */
#define _GNU_SOURCE
#include "proto.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/un.h>
#include <time.h>

static void die(const char *what) {
    fprintf(stderr, "echo_worker[%d]: %s: %s\n", (int)getpid(), what, errno ? strerror(errno) : "unexpected end");
    exit(1);
}

static int connect_tcp(const char *hostport) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) {
        errno = EINVAL;
        die("RR_RELAY tcp://host:port expected");
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *list;
    int rc = getaddrinfo(host, colon + 1, &hints, &list);
    if (rc != 0) {
        fprintf(stderr, "echo_worker: cannot resolve %s: %s\n", hostport, gai_strerror(rc));
        exit(1);
    }
    int fd = -1;
    for (struct addrinfo *ai = list; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        die("cannot connect to the tcp relay");
    }
    return fd;
}

static int connect_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        die("unix socket path");
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        die("cannot connect to the unix relay");
    }
    return fd;
}

/* PHP's way: each piece in its own send(), Nagle on. Empty payloads send nothing. */
static int send_split(int fd, const uint8_t *pa, const uint8_t *a, size_t a_len, const uint8_t *pb, const uint8_t *b,
                      size_t b_len) {
    const void *piece[4] = {pa, a, pb, b};
    size_t len[4] = {PREFIX_LEN, a_len, PREFIX_LEN, b_len};
    for (int i = 0; i < 4; i++) {
        const uint8_t *p = piece[i];
        size_t left = len[i];
        while (left > 0) {
            ssize_t put = send(fd, p, left, MSG_NOSIGNAL);
            if (put < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return -1;
            }
            p += put;
            left -= (size_t)put;
        }
    }
    return 0;
}

/* Frame A stands alone when it is a command (CONTROL without RAW) or a job error. */
static int single_frame(uint8_t flags) {
    return ((flags & FLAG_CONTROL) && !(flags & FLAG_RAW)) || (flags & FLAG_ERROR);
}

int main(int argc, char **argv) {
    long boot_sleep_ms = 0;
    int split_sends = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--boot-sleep-ms") == 0 && i + 1 < argc) {
            boot_sleep_ms = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--split-sends") == 0) {
            split_sends = 1;
        } else {
            fprintf(stderr, "usage: echo_worker [--boot-sleep-ms N] [--split-sends]\n");
            return 2;
        }
    }
    /* A closed relay must end the worker through write() errors, not a signal. */
    signal(SIGPIPE, SIG_IGN);

    if (boot_sleep_ms > 0) {
        struct timespec ts = {.tv_sec = boot_sleep_ms / 1000, .tv_nsec = (boot_sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }

    const char *relay = getenv("RR_RELAY");
    int in_fd = 0, out_fd = 1, is_tcp = 0;
    if (relay && strncmp(relay, "tcp://", 6) == 0) {
        in_fd = out_fd = connect_tcp(relay + 6);
        is_tcp = 1;
        if (!split_sends) {
            /* Answers are one writev each: let them leave at once. */
            int one = 1;
            setsockopt(in_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    } else if (relay && strncmp(relay, "unix://", 7) == 0) {
        in_fd = out_fd = connect_unix(relay + 7);
    } else if (relay && strcmp(relay, "pipes") != 0 && strcmp(relay, "pipe") != 0) {
        errno = EINVAL;
        die("unknown RR_RELAY (pipes, tcp://host:port or unix://path)");
    }
    split_sends = split_sends && is_tcp;

    rbuf r;
    if (rbuf_init(&r, in_fd) < 0) {
        die("out of memory");
    }
    char handshake[64];
    for (;;) {
        message m;
        int rc = read_message(&r, &m, single_frame);
        if (rc == -1 && errno == 0) {
            return 0; /* EOF between messages: the server is gone or done with us */
        }
        if (rc < 0) {
            die(rc == -2 ? "invalid frame prefix" : "cannot read a task");
        }
        const uint8_t *a = r.buf + r.start + m.a_off;
        if ((m.flags_a & FLAG_CONTROL) && !(m.flags_a & FLAG_RAW)) {
            /* A command: {"pid":N} (handshake) or {"stop":true}. A substring test is
             * enough for the two commands the server sends. */
            if (memmem(a, m.a_len, "\"stop\"", 6)) {
                return 0;
            }
            if (memmem(a, m.a_len, "\"pid\"", 5)) {
                int n = snprintf(handshake, sizeof handshake, "{\"pid\":%d}", (int)getpid());
                if (send_message(out_fd, FLAG_CONTROL, handshake, (size_t)n, -1, NULL, 0) < 0) {
                    die("cannot answer the handshake");
                }
            }
            rbuf_consume(&r, m.total);
            continue;
        }
        if (m.flags_a & FLAG_ERROR) {
            errno = EPROTO;
            die("the server sent an error frame");
        }
        const uint8_t *b = r.buf + r.start + m.b_off;
        /* Echo: the context back as the answer's header (or EMPTY), the body as is. */
        uint8_t flags_a = m.a_len ? (FLAG_CONTROL | FLAG_RAW) : (FLAG_CONTROL | FLAG_EMPTY);
        int failed;
        if (split_sends) {
            uint8_t pa[PREFIX_LEN], pb[PREFIX_LEN];
            prefix_encode(pa, flags_a, m.a_len);
            prefix_encode(pb, FLAG_RAW, m.b_len);
            failed = send_split(out_fd, pa, a, m.a_len, pb, b, m.b_len);
        } else {
            failed = send_message(out_fd, flags_a, a, m.a_len, FLAG_RAW, b, m.b_len);
        }
        if (failed) {
            die("cannot send the answer");
        }
        rbuf_consume(&r, m.total);
    }
}
