/*
 * fuzz_http_parse.c - libFuzzer harness for src/http_parse.c.
 *
 * Each input is parsed as a request head (one-shot, split in two at a byte
 * chosen from the input, byte by byte for small inputs, and with a small
 * max_head), as a response head (one-shot and split), and as a chunked body
 * (one-shot and in small fragments). Every resumed run must agree with the
 * one-shot run, and every span must lie inside the bytes given. Fragments
 * and prefixes are exact-size heap copies so ASan sees any read past them.
 * A broken invariant aborts.
 *
 * Build: scripts/fuzz (clang -fsanitize=fuzzer,address,undefined).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/http_parse.h"

#define CHECK(x)                                                                                             \
    do {                                                                                                     \
        if (!(x)) {                                                                                          \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);                       \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#define BIG_HEAD   65536
#define SMALL_HEAD 96

static char *copy(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    if (n)
        memcpy(p, data, n);
    return p;
}

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p != NULL && p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static void check_msg(const struct weir_http_msg *m, int rc, const char *buf, size_t len, int is_req)
{
    size_t i;

    CHECK(rc == WEIR_OK || rc == WEIR_AGAIN || rc == WEIR_ERROR);
    if (rc == WEIR_AGAIN) {
        CHECK(m->scan_pos <= len);
        return;
    }
    if (rc == WEIR_ERROR) {
        CHECK(m->error != NULL);
        if (is_req)
            CHECK(m->error_status == 400 || m->error_status == 414 || m->error_status == 431 ||
                  m->error_status == 505);
        else
            CHECK(m->error_status == 502);
        return;
    }
    CHECK(m->head_len > 0 && m->head_len <= len);
    CHECK(buf[m->head_len - 1] == '\n');
    CHECK(m->version == 10 || m->version == 11);
    CHECK(m->nheaders <= WEIR_HTTP_MAX_HEADERS);
    CHECK(m->host_idx >= -1 && m->host_idx < (int)m->nheaders);
    CHECK(m->body >= WEIR_BODY_NONE && m->body <= WEIR_BODY_EOF);
    CHECK(m->error == NULL);
    if (m->body != WEIR_BODY_LENGTH && m->content_length != 0)
        CHECK(m->body == WEIR_BODY_NONE && !is_req);
    for (i = 0; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        size_t j;
        CHECK(h->name_len > 0);
        CHECK(inside(h->name, h->name_len, buf, m->head_len));
        CHECK(h->value_len == 0 || inside(h->value, h->value_len, buf, m->head_len));
        CHECK(h->name + h->name_len < h->value || (h->value_len == 0 && h->name + h->name_len <= h->value));
        CHECK(h->name[h->name_len] == ':');
        for (j = 0; j < h->value_len; j++)
            CHECK(h->value[j] != '\r' && h->value[j] != '\n' && h->value[j] != '\0');
        if (h->value_len > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
    }
    if (is_req) {
        CHECK(m->method_len > 0 && inside(m->method, m->method_len, buf, m->head_len));
        CHECK(m->target_len > 0 && inside(m->target, m->target_len, buf, m->head_len));
        CHECK(m->method_id >= WEIR_HTTP_OTHER && m->method_id <= WEIR_HTTP_CONNECT);
        if (m->version == 11)
            CHECK(m->host_idx >= 0);
        if (m->body == WEIR_BODY_CHUNKED)
            CHECK(m->version == 11);
        CHECK(m->body != WEIR_BODY_EOF);
        switch (m->target_form) {
        case WEIR_TARGET_ORIGIN:
            CHECK(m->path == m->target && m->path_len == m->target_len && m->path[0] == '/');
            CHECK(m->authority == NULL);
            break;
        case WEIR_TARGET_ABSOLUTE:
            CHECK(inside(m->authority, m->authority_len, m->target, m->target_len));
            CHECK(m->path != NULL && m->path_len > 0);
            CHECK(m->path[0] == '/' || (m->path[0] == '*' && m->path_len == 1));
            break;
        case WEIR_TARGET_AUTHORITY:
            CHECK(m->method_id == WEIR_HTTP_CONNECT && m->authority == m->target);
            break;
        case WEIR_TARGET_ASTERISK:
            CHECK(m->method_id == WEIR_HTTP_OPTIONS && m->target_len == 1 && m->target[0] == '*');
            break;
        default:
            CHECK(0);
        }
        for (i = 0; i < m->target_len; i++)
            CHECK((unsigned char)m->target[i] > 0x20 && (unsigned char)m->target[i] < 0x7f);
    } else {
        CHECK(m->status >= 100 && m->status <= 599);
        if (m->body == WEIR_BODY_EOF)
            CHECK(!(m->flags & WEIR_HTTP_F_KEEPALIVE));
    }
}

/* Same result, spans compared by offset from their own buffer (or by
 * content for the parser's static "/" and "*"). */
static void check_same_span(const char *pa, size_t na, const char *ba, size_t la, const char *pb, size_t nb,
                            const char *bb)
{
    CHECK(na == nb);
    CHECK((pa == NULL) == (pb == NULL));
    if (pa == NULL)
        return;
    if (na)
        CHECK(memcmp(pa, pb, na) == 0);
    if (pa >= ba && pa <= ba + la)
        CHECK(pa - ba == pb - bb);
}

static void check_same(int rca, const struct weir_http_msg *a, const char *ba, size_t la, int rcb,
                       const struct weir_http_msg *b, const char *bb)
{
    size_t i;

    CHECK(rca == rcb);
    if (rca == WEIR_ERROR) {
        CHECK(a->error_status == b->error_status);
        return;
    }
    if (rca != WEIR_OK)
        return;
    CHECK(a->head_len == b->head_len && a->version == b->version && a->method_id == b->method_id);
    CHECK(a->status == b->status && a->target_form == b->target_form && a->body == b->body);
    CHECK(a->content_length == b->content_length && a->flags == b->flags);
    CHECK(a->nheaders == b->nheaders && a->host_idx == b->host_idx);
    check_same_span(a->method, a->method_len, ba, la, b->method, b->method_len, bb);
    check_same_span(a->target, a->target_len, ba, la, b->target, b->target_len, bb);
    check_same_span(a->path, a->path_len, ba, la, b->path, b->path_len, bb);
    check_same_span(a->authority, a->authority_len, ba, la, b->authority, b->authority_len, bb);
    check_same_span(a->reason, a->reason_len, ba, la, b->reason, b->reason_len, bb);
    for (i = 0; i < a->nheaders; i++) {
        CHECK(a->headers[i].flags == b->headers[i].flags);
        check_same_span(a->headers[i].name, a->headers[i].name_len, ba, la, b->headers[i].name,
                        b->headers[i].name_len, bb);
        check_same_span(a->headers[i].value, a->headers[i].value_len, ba, la, b->headers[i].value,
                        b->headers[i].value_len, bb);
    }
}

static int parse_head(int is_req, int req_method, const char *buf, size_t len, size_t max_head,
                      struct weir_http_msg *m)
{
    return is_req ? weir_http_parse_request(buf, len, max_head, m)
                  : weir_http_parse_response(buf, len, max_head, req_method, m);
}

/* Canonical form of a parsed head: start line, "name: value" fields, CRLF
 * everywhere, no leading empty lines. Returns its length. */
static size_t serialize(const struct weir_http_msg *m, int is_req, char *out)
{
    size_t n = 0, i;

#define PUT(p, len)                                                                                          \
    do {                                                                                                     \
        if (len) {                                                                                           \
            memcpy(out + n, p, len);                                                                         \
            n += len;                                                                                        \
        }                                                                                                    \
    } while (0)
    if (is_req) {
        PUT(m->method, m->method_len);
        PUT(" ", 1);
        PUT(m->target, m->target_len);
        PUT(m->version == 11 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    } else {
        char st[32];
        int k = snprintf(st, sizeof(st), "HTTP/1.%d %03d ", m->version == 11, m->status);
        PUT(st, (size_t)k);
        PUT(m->reason, m->reason_len);
        PUT("\r\n", 2);
    }
    for (i = 0; i < m->nheaders; i++) {
        PUT(m->headers[i].name, m->headers[i].name_len);
        PUT(": ", 2);
        PUT(m->headers[i].value, m->headers[i].value_len);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    return n;
}

static void check_canonical(const struct weir_http_msg *a, int is_req, int req_method, size_t max_head)
{
    static struct weir_http_msg b;
    size_t cap = a->head_len + 4 * a->nheaders + 64, n, i;
    char *out = malloc(cap), *buf;
    int rc;

    CHECK(out != NULL);
    n = serialize(a, is_req, out);
    CHECK(n <= cap);
    buf = copy((const uint8_t *)out, n);
    weir_http_msg_reset(&b);
    rc = parse_head(is_req, req_method, buf, n, max_head > n ? max_head : n, &b);
    CHECK(rc == WEIR_OK);
    CHECK(b.head_len == n && b.version == a->version && b.method_id == a->method_id);
    CHECK(b.status == a->status && b.target_form == a->target_form && b.body == a->body);
    CHECK(b.content_length == a->content_length && b.flags == a->flags);
    CHECK(b.nheaders == a->nheaders && b.host_idx == a->host_idx);
    CHECK(b.target_len == a->target_len &&
          (a->target_len == 0 || memcmp(b.target, a->target, a->target_len) == 0));
    CHECK(b.path_len == a->path_len && (a->path_len == 0 || memcmp(b.path, a->path, a->path_len) == 0));
    CHECK(b.authority_len == a->authority_len);
    for (i = 0; i < a->nheaders; i++) {
        CHECK(b.headers[i].flags == a->headers[i].flags);
        CHECK(b.headers[i].name_len == a->headers[i].name_len);
        CHECK(b.headers[i].value_len == a->headers[i].value_len);
        CHECK(memcmp(b.headers[i].name, a->headers[i].name, a->headers[i].name_len) == 0);
        CHECK(a->headers[i].value_len == 0 ||
              memcmp(b.headers[i].value, a->headers[i].value, a->headers[i].value_len) == 0);
    }
    free(buf);
    free(out);
}

static struct weir_http_msg m1, m2;

/* One-shot, then split at k (prefix copy, then the whole input). */
static void fuzz_head(int is_req, int req_method, const uint8_t *data, size_t size, size_t k, size_t max_head)
{
    char *whole = copy(data, size), *pre;
    int rc1, rc;

    weir_http_msg_reset(&m1);
    rc1 = parse_head(is_req, req_method, whole, size, max_head, &m1);
    check_msg(&m1, rc1, whole, size, is_req);

    if (rc1 == WEIR_OK) {
        /* the head alone parses the same */
        char *head = copy(data, m1.head_len);
        weir_http_msg_reset(&m2);
        rc = parse_head(is_req, req_method, head, m1.head_len, max_head, &m2);
        check_msg(&m2, rc, head, m1.head_len, is_req);
        check_same(rc1, &m1, whole, size, rc, &m2, head);
        free(head);
        check_canonical(&m1, is_req, req_method, max_head);
    }

    /* split in two */
    pre = copy(data, k);
    weir_http_msg_reset(&m2);
    rc = parse_head(is_req, req_method, pre, k, max_head, &m2);
    check_msg(&m2, rc, pre, k, is_req);
    if (rc == WEIR_AGAIN) {
        size_t scanned = m2.scan_pos;
        rc = parse_head(is_req, req_method, whole, size, max_head, &m2);
        check_msg(&m2, rc, whole, size, is_req);
        CHECK(rc != WEIR_AGAIN || m2.scan_pos >= scanned);
        check_same(rc1, &m1, whole, size, rc, &m2, whole);
    } else if (max_head == BIG_HEAD) {
        /* the prefix already decided: so does the whole input */
        check_same(rc1, &m1, whole, size, rc, &m2, pre);
    } else {
        CHECK(rc == rc1);
    }
    free(pre);

    /* byte by byte, for small inputs */
    if (size <= 300 && max_head == BIG_HEAD) {
        size_t i;
        weir_http_msg_reset(&m2);
        rc = WEIR_AGAIN;
        for (i = 1; i <= size && rc == WEIR_AGAIN; i++) {
            pre = copy(data, i);
            rc = parse_head(is_req, req_method, pre, i, max_head, &m2);
            check_msg(&m2, rc, pre, i, is_req);
            if (rc != WEIR_AGAIN)
                check_same(rc1, &m1, whole, size, rc, &m2, pre);
            free(pre);
        }
        if (rc == WEIR_AGAIN)
            CHECK(rc1 == WEIR_AGAIN);
    }
    free(whole);
}

/* ---- chunked ---- */

struct sink {
    char *buf;
    size_t n, cap;
};

static void sink_cb(void *ud, const char *p, size_t n)
{
    struct sink *s = ud;
    CHECK(n > 0);
    CHECK(s->n + n <= s->cap);
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

/* Feed data in pieces (sizes from *seed, 1..max_piece; max_piece 0 means
 * one piece). Returns the final rc and bytes used in *total. */
static int chunk_feed(const uint8_t *data, size_t size, uint32_t seed, size_t max_piece, struct sink *s,
                      size_t *total)
{
    struct weir_chunked c;
    size_t off = 0, used;
    int rc = WEIR_AGAIN;

    weir_chunked_init(&c);
    s->n = 0;
    *total = 0;
    while (off < size) {
        size_t n = size - off;
        char *frag;
        if (max_piece) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % max_piece;
            if (n > size - off)
                n = size - off;
        }
        frag = copy(data + off, n);
        used = (size_t)-1;
        rc = weir_chunked_parse(&c, frag, n, &used, sink_cb, s);
        free(frag);
        CHECK(rc == WEIR_OK || rc == WEIR_AGAIN || rc == WEIR_ERROR);
        CHECK(used <= n);
        *total += used;
        off += n;
        if (rc == WEIR_AGAIN) {
            CHECK(used == n);
            continue;
        }
        break;
    }
    if (rc == WEIR_OK) {
        /* done stays done, and uses nothing more */
        rc = weir_chunked_parse(&c, "x", 1, &used, sink_cb, s);
        CHECK(rc == WEIR_OK && used == 0);
    } else if (rc == WEIR_ERROR) {
        rc = weir_chunked_parse(&c, "0\r\n\r\n", 5, &used, sink_cb, s);
        CHECK(rc == WEIR_ERROR);
    }
    return rc;
}

static void fuzz_chunked(const uint8_t *data, size_t size)
{
    struct sink s1 = {NULL, 0, size}, s2 = {NULL, 0, size};
    size_t t1, t2;
    uint32_t seed = size ? data[0] * 257u + data[size - 1] : 1;
    int rc1, rc2;

    s1.buf = malloc(size ? size : 1);
    s2.buf = malloc(size ? size : 1);
    CHECK(s1.buf && s2.buf);
    rc1 = chunk_feed(data, size, 0, 0, &s1, &t1);
    CHECK(t1 <= size);
    CHECK(rc1 != WEIR_AGAIN || t1 == size);
    CHECK(s1.n <= t1 || rc1 == WEIR_ERROR);
    if (rc1 == WEIR_OK)
        CHECK(t1 >= 3 && data[t1 - 1] == '\n');

    rc2 = chunk_feed(data, size, seed, 7, &s2, &t2);
    CHECK(rc1 == rc2 && t1 == t2 && s1.n == s2.n);
    CHECK(s1.n == 0 || memcmp(s1.buf, s2.buf, s1.n) == 0);

    rc2 = chunk_feed(data, size, seed, 1, &s2, &t2);
    CHECK(rc1 == rc2 && t1 == t2 && s1.n == s2.n);
    CHECK(s1.n == 0 || memcmp(s1.buf, s2.buf, s1.n) == 0);
    free(s1.buf);
    free(s2.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t k = 0;
    int req_method = 0;

    if (size >= 2) {
        k = ((size_t)data[size - 1] << 8 | data[size - 2]) % (size + 1);
        req_method = data[size - 1] % 10;
    }
    fuzz_head(1, 0, data, size, k, BIG_HEAD);
    fuzz_head(1, 0, data, size, k, SMALL_HEAD);
    fuzz_head(0, req_method, data, size, k, BIG_HEAD);
    fuzz_chunked(data, size);
    return 0;
}
