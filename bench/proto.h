/* The RoadRunner frame protocol by hand (SPEC.md section 1), shared by the echo worker
 * and the floor client. Header-only and free of libroadrunner on purpose: the floor
 * must measure what two processes cost without any library in the way.
 *
 * A frame is a 17-byte prefix (flags, size little-endian, size big-endian) and then
 * the payload, unless the EMPTY flag is set. */
#ifndef BENCH_PROTO_H
#define BENCH_PROTO_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PREFIX_LEN 17

enum {
    FLAG_EMPTY = 2,
    FLAG_RAW = 4,
    FLAG_ERROR = 8,
    FLAG_CONTROL = 16,
};

static inline void prefix_encode(uint8_t out[PREFIX_LEN], uint8_t flags, uint64_t size) {
    out[0] = flags;
    for (int i = 0; i < 8; i++) {
        out[1 + i] = (uint8_t)(size >> (8 * i));        /* little-endian */
        out[9 + i] = (uint8_t)(size >> (8 * (7 - i)));  /* big-endian */
    }
}

/* Decodes a prefix; returns 0, or -1 when the two sizes differ (not a frame). The size
 * of an EMPTY frame is 0 whatever the prefix says. */
static inline int prefix_decode(const uint8_t in[PREFIX_LEN], uint8_t *flags, uint64_t *size) {
    uint64_t le = 0, be = 0;
    for (int i = 0; i < 8; i++) {
        le |= (uint64_t)in[1 + i] << (8 * i);
        be = (be << 8) | in[9 + i];
    }
    if (le != be) {
        return -1;
    }
    *flags = in[0];
    *size = (in[0] & FLAG_EMPTY) ? 0 : le;
    return 0;
}

/* A read buffer: one big buffer that reads land in, so that a small message (two
 * prefixes, two payloads) normally costs one read(). Callers parse prefixes straight
 * from it and work with offsets, since growing it may move it. */
typedef struct {
    int fd;
    uint8_t *buf;
    size_t cap;
    size_t start; /* first unconsumed byte */
    size_t end;   /* one past the last byte read */
} rbuf;

#define RBUF_INITIAL (64 * 1024)

static inline int rbuf_init(rbuf *r, int fd) {
    r->fd = fd;
    r->cap = RBUF_INITIAL;
    r->start = r->end = 0;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : -1;
}

static inline void rbuf_free(rbuf *r) {
    free(r->buf);
    r->buf = NULL;
}

/* Makes at least n unconsumed bytes available at buf + start. Returns 0, or -1 on EOF
 * or error (errno is 0 on a clean EOF). */
static inline int rbuf_need(rbuf *r, size_t n) {
    if (r->end - r->start >= n) {
        return 0;
    }
    if (r->start + n > r->cap) {
        /* Not enough room after start: move what is left to the front, and grow when
         * even the whole buffer is too small (big bodies). */
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
        if (n > r->cap) {
            size_t cap = r->cap;
            while (cap < n) {
                cap *= 2;
            }
            uint8_t *grown = realloc(r->buf, cap);
            if (!grown) {
                return -1;
            }
            r->buf = grown;
            r->cap = cap;
        }
    }
    while (r->end - r->start < n) {
        ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (got > 0) {
            r->end += (size_t)got;
        } else if (got == 0) {
            errno = 0;
            return -1;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* Marks n bytes as consumed; an emptied buffer starts over at its front for free. */
static inline void rbuf_consume(rbuf *r, size_t n) {
    r->start += n;
    if (r->start == r->end) {
        r->start = r->end = 0;
    }
}

/* Writes every byte of iov[0..cnt) (one writev in the normal case; loops on partial
 * writes, which big bodies over sockets can produce). Returns 0 or -1. MSG_NOSIGNAL is
 * not available to writev: callers ignore SIGPIPE instead. */
static inline int writev_all(int fd, struct iovec *iov, int cnt) {
    while (cnt > 0) {
        ssize_t put = writev(fd, iov, cnt);
        if (put < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        size_t left = (size_t)put;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Writes one message of one or two frames with one writev: prefix A, payload A and,
 * when flags_b >= 0, prefix B and payload B. */
static inline int send_message(int fd, uint8_t flags_a, const void *a, size_t a_len, int flags_b, const void *b,
                               size_t b_len) {
    uint8_t pa[PREFIX_LEN], pb[PREFIX_LEN];
    prefix_encode(pa, flags_a, a_len);
    struct iovec iov[4] = {
        {.iov_base = pa, .iov_len = PREFIX_LEN},
        {.iov_base = (void *)a, .iov_len = a_len},
    };
    int cnt = 2;
    if (flags_b >= 0) {
        prefix_encode(pb, (uint8_t)flags_b, b_len);
        iov[2] = (struct iovec){.iov_base = pb, .iov_len = PREFIX_LEN};
        iov[3] = (struct iovec){.iov_base = (void *)b, .iov_len = b_len};
        cnt = 4;
    }
    return writev_all(fd, iov, cnt);
}

/* A message read from an rbuf: offsets from r->buf + r->start (valid until the next
 * rbuf call, which may move the buffer). */
typedef struct {
    uint8_t flags_a, flags_b;
    size_t a_off, a_len; /* frame A's payload */
    size_t b_off, b_len; /* frame B's payload; b_len 0 and b_off 0 when there is no B */
    size_t total;        /* bytes to consume */
} message;

/* Reads frame A and, unless `single(flags_a)` says frame A stands alone, frame B.
 * Returns 0, -1 on EOF/error (errno 0 = EOF before frame A), -2 on a bad prefix. */
static inline int read_message(rbuf *r, message *m, int (*single)(uint8_t flags_a)) {
    uint64_t size;
    if (rbuf_need(r, PREFIX_LEN) < 0) {
        return -1;
    }
    if (prefix_decode(r->buf + r->start, &m->flags_a, &size) < 0) {
        return -2;
    }
    m->a_len = (size_t)size;
    m->a_off = PREFIX_LEN;
    m->total = PREFIX_LEN + m->a_len;
    m->flags_b = 0;
    m->b_off = m->b_len = 0;
    if (single(m->flags_a)) {
        /* Wait for the payload too, so that the caller sees whole frames. */
        if (rbuf_need(r, m->total) < 0) {
            errno = errno ? errno : EPIPE;
            return -1;
        }
        return 0;
    }
    /* Ask for A's payload and B's prefix at once: with buffered reads both are
     * normally there already. */
    if (rbuf_need(r, m->total + PREFIX_LEN) < 0) {
        errno = errno ? errno : EPIPE;
        return -1;
    }
    if (prefix_decode(r->buf + r->start + m->total, &m->flags_b, &size) < 0) {
        return -2;
    }
    m->b_off = m->total + PREFIX_LEN;
    m->b_len = (size_t)size;
    m->total = m->b_off + m->b_len;
    if (rbuf_need(r, m->total) < 0) {
        errno = errno ? errno : EPIPE;
        return -1;
    }
    return 0;
}

#endif
