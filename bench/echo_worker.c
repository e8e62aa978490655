/* echo_worker: the smallest fast worker we can write, speaking the protocol by hand
 * (no libroadrunner), so that benchmarks measure the pool and not the worker.
 *
 * It answers the handshake, then echoes every task (context and body) back, one writev
 * per answer, and exits on the stop command or at EOF.
 *
 *   RR_RELAY            pipes (default; stdin/stdout), tcp://host:port, unix://path
 *   --protocol 1|2      1 (default): RoadRunner 1.x frames (17-byte prefixes, two frames
 *                       per message); 2: goridge 3/4 frames (12-byte header with CRC,
 *                       one frame per message, the context's length as its one option)
 *   --stream N          (protocol 2) answer every task, whatever it holds, with a stream
 *                       of N chunks instead of the echo: N frames with an empty context
 *                       and a body of --chunk-bytes bytes, STREAM set on all but the last
 *   --chunk-bytes B     size of a chunk's body (default 65536)
 *   --ping-every K      (with --stream) set PING on every Kth chunk (except the last) and
 *                       wait for the host's PONG before sending the next one, as the
 *                       library's own worker side does (default 5; 0: never ping)
 *   --boot-sleep-ms N   sleep N ms before connecting/handshaking (start-up benchmark)
 *   --split-sends       (protocol 1) over TCP: send every prefix and every payload with
 *                       separate send() calls and leave Nagle on, as PHP's socket relay
 *                       does; a server that does not ACK promptly stalls ~40 ms per task
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

/* ---------------------------------------------------------------- protocol V2 */

typedef struct {
    long chunks;        /* 0: echo; N: answer every task with a stream of N chunks */
    size_t chunk_bytes; /* body bytes per chunk */
    long ping_every;    /* PING on every Kth chunk (0: never) */
    uint8_t *chunk;     /* chunk_bytes of pattern */
} stream_mode;

/* Waits for the host's PONG (it may send a STOP instead: returns 1 then; 0 on the PONG). */
static int v2_wait_pong(rbuf *r) {
    for (;;) {
        v2_frame f;
        int rc = v2_read_frame(r, &f);
        if (rc < 0) {
            die(rc == -2 ? "invalid V2 header while waiting for a PONG" : "cannot read the PONG");
        }
        uint8_t bits = f.h.stream;
        rbuf_consume(r, f.total);
        if (bits & V2_STOP) {
            return 1;
        }
        if (bits & V2_PONG) {
            return 0;
        }
        errno = EPROTO;
        die("the host sent something else than a PONG or a STOP in the middle of a stream");
    }
}

/* Answers one task with a stream of m->chunks chunks. */
static void v2_stream_answer(int out_fd, rbuf *r, const stream_mode *m) {
    int awaiting_pong = 0;
    for (long i = 1; i <= m->chunks; i++) {
        if (awaiting_pong) {
            awaiting_pong = 0;
            if (v2_wait_pong(r)) {
                /* The host stopped the stream: end it with an empty last frame. */
                if (v2_send_message(out_fd, V2_CODEC_RAW, 0, NULL, 0, NULL, 0) < 0) {
                    die("cannot end a stopped stream");
                }
                return;
            }
        }
        int last = i == m->chunks;
        int ping = !last && m->ping_every > 0 && i % m->ping_every == 0;
        uint8_t bits = (uint8_t)((last ? 0 : V2_STREAM) | (ping ? V2_PING : 0));
        if (v2_send_message(out_fd, V2_CODEC_RAW, bits, NULL, 0, m->chunk, m->chunk_bytes) < 0) {
            die("cannot send a chunk");
        }
        awaiting_pong = ping;
    }
}

static int v2_serve(int in_fd, int out_fd, const stream_mode *m) {
    rbuf r;
    if (rbuf_init(&r, in_fd) < 0) {
        die("out of memory");
    }
    char handshake[64];
    for (;;) {
        v2_frame f;
        int rc = v2_read_frame(&r, &f);
        if (rc == -1 && errno == 0) {
            return 0; /* EOF between messages: the server is gone or done with us */
        }
        if (rc < 0) {
            die(rc == -2 ? "invalid V2 header (CRC or version)" : "cannot read a task");
        }
        const uint8_t *payload = r.buf + r.start + f.payload_off;
        if (f.h.flags & V2_CONTROL) {
            /* {"pid":N} (handshake) or {"stop":true}; a substring test is enough. */
            if (memmem(payload, f.h.payload_len, "\"stop\"", 6)) {
                return 0;
            }
            if (memmem(payload, f.h.payload_len, "\"pid\"", 5)) {
                int n = snprintf(handshake, sizeof handshake, "{\"pid\":%d}", (int)getpid());
                /* CONTROL alone, no option: what RoadRunner's PHP worker answers. */
                if (v2_send(out_fd, V2_CONTROL, 0, NULL, 0, handshake, (size_t)n, NULL, 0) < 0) {
                    die("cannot answer the handshake");
                }
            }
            rbuf_consume(&r, f.total);
            continue;
        }
        if (f.h.flags & V2_ERROR) {
            errno = EPROTO;
            die("the server sent an error frame");
        }
        if ((f.h.stream & (V2_PONG | V2_STOP)) && f.h.payload_len == 0) {
            /* A PONG or a STOP that came after its stream had ended: nothing to do. */
            rbuf_consume(&r, f.total);
            continue;
        }
        if (m->chunks > 0) {
            rbuf_consume(&r, f.total);
            v2_stream_answer(out_fd, &r, m);
            continue;
        }
        size_t ctx_len = f.h.noptions >= 1 ? f.options[0] : 0;
        if (ctx_len > f.h.payload_len) {
            errno = EPROTO;
            die("the task's context length is past the end of its payload");
        }
        /* Echo: the same codec bits, the context and the body as they came. */
        uint8_t codec = f.h.flags & (uint8_t)~(V2_CONTROL | V2_ERROR);
        if (v2_send_message(out_fd, codec, 0, payload, ctx_len, payload + ctx_len, f.h.payload_len - ctx_len) < 0) {
            die("cannot send the answer");
        }
        rbuf_consume(&r, f.total);
    }
}

int main(int argc, char **argv) {
    long boot_sleep_ms = 0, protocol = 1;
    int split_sends = 0;
    stream_mode stream = {.chunk_bytes = 65536, .ping_every = 5};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--boot-sleep-ms") == 0 && i + 1 < argc) {
            boot_sleep_ms = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--split-sends") == 0) {
            split_sends = 1;
        } else if (strcmp(argv[i], "--protocol") == 0 && i + 1 < argc) {
            protocol = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--stream") == 0 && i + 1 < argc) {
            stream.chunks = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--chunk-bytes") == 0 && i + 1 < argc) {
            stream.chunk_bytes = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--ping-every") == 0 && i + 1 < argc) {
            stream.ping_every = strtol(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: echo_worker [--protocol 1|2] [--stream N [--chunk-bytes B] [--ping-every K]]\n"
                            "                   [--boot-sleep-ms N] [--split-sends]\n");
            return 2;
        }
    }
    if ((protocol != 1 && protocol != 2) || stream.chunks < 0 || stream.ping_every < 0 ||
        stream.chunk_bytes > UINT32_MAX / 2 || (protocol == 1 && stream.chunks > 0) || (protocol == 2 && split_sends)) {
        fprintf(stderr, "echo_worker: --protocol is 1 or 2; --stream needs protocol 2, --split-sends protocol 1\n");
        return 2;
    }
    if (stream.chunks > 0) {
        stream.chunk = malloc(stream.chunk_bytes ? stream.chunk_bytes : 1);
        if (!stream.chunk) {
            die("out of memory");
        }
        for (size_t i = 0; i < stream.chunk_bytes; i++) {
            stream.chunk[i] = (uint8_t)('a' + i % 26);
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
    if (protocol == 2) {
        return v2_serve(in_fd, out_fd, &stream);
    }

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
