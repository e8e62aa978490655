/* The RoadRunner frame protocols by hand, shared by the echo worker and the floor client.
 * Header-only and free of libroadrunner on purpose: the floor must measure what two
 * processes cost without any library in the way.
 *
 * V1 (RoadRunner 1.x, SPEC.md section 1): a frame is a 17-byte prefix (flags, size
 * little-endian, size big-endian) and then the payload, unless the EMPTY flag is set; a
 * task or an answer is two frames (context, body).
 *
 * V2 (goridge 3/4, shared/PROTOCOL-V2.md section 1): a frame is a 12-byte header (version
 * and header length, flags, payload length, CRC32 of bytes 0..5, stream bits, reserved),
 * its options (u32 little-endian each) and the payload; a task or an answer is one frame
 * whose one option is the context's length and whose payload is context + body. See the
 * second half of this file. */
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

/* ================================================================ protocol V2 */

#define V2_HEADER_LEN 12
#define V2_MAX_OPTIONS 10

/* Byte 1: flags. */
enum {
    V2_CONTROL = 0x01,
    V2_CODEC_RAW = 0x04,
    V2_CODEC_JSON = 0x08,
    V2_ERROR = 0x40,
};

/* Byte 10: stream bits. */
enum {
    V2_STREAM = 0x01, /* more frames of this answer follow */
    V2_STOP = 0x02,   /* host -> worker: stop the stream */
    V2_PING = 0x04,   /* worker -> host: answer with a PONG */
    V2_PONG = 0x08,   /* host -> worker */
};

/* CRC32 (IEEE, reflected polynomial 0xEDB88320, the zlib one), a byte at a time from a
 * 256-entry table (table[n] = the CRC register after shifting byte n through it). */
static const uint32_t crc32_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
    0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988, 0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
    0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
    0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172, 0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
    0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
    0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924, 0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
    0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
    0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e, 0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
    0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
    0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0, 0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
    0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
    0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a, 0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
    0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
    0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc, 0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
    0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
    0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236, 0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
    0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
    0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38, 0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
    0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
    0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2, 0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
    0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
    0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94, 0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

static inline uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc = (crc >> 8) ^ crc32_table[(crc ^ p[i]) & 0xff];
    }
    return crc ^ 0xffffffffu;
}

static inline void put_le32(uint8_t *out, uint32_t v) {
    out[0] = (uint8_t)v;
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)(v >> 16);
    out[3] = (uint8_t)(v >> 24);
}

static inline uint32_t get_le32(const uint8_t *in) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

/* Encodes a header with noptions (0..V2_MAX_OPTIONS) options for a payload of payload_len
 * bytes into out; returns the header's length (12 + 4 * noptions). */
static inline size_t v2_header_encode(uint8_t out[V2_HEADER_LEN + 4 * V2_MAX_OPTIONS], uint8_t flags, uint8_t stream,
                                      const uint32_t *options, int noptions, uint32_t payload_len) {
    out[0] = (uint8_t)(1u << 4 | (unsigned)(3 + noptions)); /* version 1, header length in words */
    out[1] = flags;
    put_le32(out + 2, payload_len);
    put_le32(out + 6, crc32_ieee(out, 6));
    out[10] = stream;
    out[11] = 0;
    for (int i = 0; i < noptions; i++) {
        put_le32(out + V2_HEADER_LEN + 4 * i, options[i]);
    }
    return V2_HEADER_LEN + 4 * (size_t)noptions;
}

typedef struct {
    uint8_t flags;
    uint8_t stream;       /* byte 10 */
    uint32_t payload_len; /* after the options */
    int noptions;
} v2_header;

/* Decodes 12 header bytes; returns 0, -1 when the CRC does not match, -2 for an unknown
 * version or header length. */
static inline int v2_header_decode(const uint8_t in[V2_HEADER_LEN], v2_header *h) {
    if (crc32_ieee(in, 6) != get_le32(in + 6)) {
        return -1;
    }
    int words = in[0] & 0x0f;
    if ((in[0] >> 4) != 1 || words < 3 || words > 3 + V2_MAX_OPTIONS) {
        return -2;
    }
    h->flags = in[1];
    h->stream = in[10];
    h->payload_len = get_le32(in + 2);
    h->noptions = words - 3;
    return 0;
}

/* Writes one V2 frame with one writev: the header (with its options), then a and b (the
 * payload is a followed by b: context and body; either may be empty). */
static inline int v2_send(int fd, uint8_t flags, uint8_t stream, const uint32_t *options, int noptions, const void *a,
                          size_t a_len, const void *b, size_t b_len) {
    uint8_t header[V2_HEADER_LEN + 4 * V2_MAX_OPTIONS];
    size_t header_len = v2_header_encode(header, flags, stream, options, noptions, (uint32_t)(a_len + b_len));
    struct iovec iov[3] = {
        {.iov_base = header, .iov_len = header_len},
        {.iov_base = (void *)a, .iov_len = a_len},
        {.iov_base = (void *)b, .iov_len = b_len},
    };
    return writev_all(fd, iov, b_len ? 3 : a_len ? 2 : 1);
}

/* A task or an answer (one option: the context's length; payload context + body). */
static inline int v2_send_message(int fd, uint8_t flags, uint8_t stream, const void *ctx, size_t ctx_len,
                                  const void *body, size_t body_len) {
    uint32_t context_len = (uint32_t)ctx_len;
    return v2_send(fd, flags, stream, &context_len, 1, ctx, ctx_len, body, body_len);
}

/* A frame read from an rbuf: offsets from r->buf + r->start (valid until the next rbuf
 * call, which may move the buffer). */
typedef struct {
    v2_header h;
    uint32_t options[V2_MAX_OPTIONS];
    size_t payload_off; /* the payload, after the options */
    size_t total;       /* bytes to consume */
} v2_frame;

/* Reads one whole V2 frame. Returns 0, -1 on EOF/error (errno 0 = EOF before the header),
 * -2 on a bad header (CRC, version). */
static inline int v2_read_frame(rbuf *r, v2_frame *f) {
    if (rbuf_need(r, V2_HEADER_LEN) < 0) {
        return -1;
    }
    if (v2_header_decode(r->buf + r->start, &f->h) < 0) {
        return -2;
    }
    f->payload_off = V2_HEADER_LEN + 4 * (size_t)f->h.noptions;
    f->total = f->payload_off + f->h.payload_len;
    if (rbuf_need(r, f->total) < 0) {
        errno = errno ? errno : EPIPE;
        return -1;
    }
    for (int i = 0; i < f->h.noptions; i++) {
        f->options[i] = get_le32(r->buf + r->start + V2_HEADER_LEN + 4 * i);
    }
    return 0;
}

#endif
