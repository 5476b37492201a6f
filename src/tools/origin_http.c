#include "config.h"

/*
 * origin_http.c - the request side of weir-origin: finding, copying and
 * parsing request heads (request-line, header fields, target, query
 * overrides) and decoding request bodies (Content-Length or chunked with
 * trailers), which are counted, checksummed (FNV-1a 64) and dropped as they
 * stream. What to do with a parsed request is origin.c's business
 * (req_head_done and the responses).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "origin.h"

unsigned char g_tchar[256]; /* RFC 9110 tchar */

/* ---------------------------------------------------------------- helpers */

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* 1*DIGIT in [s, s+n), not above max. Returns 0 or -1. */
int parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* Next element of a comma-separated list in [*pp, e), OWS trimmed, empty
 * elements skipped. Returns false at the end. */
static bool list_next(const char **pp, const char *e, const char **tok, size_t *len)
{
    const char *p = *pp, *s, *t;

    while (p < e && (*p == ',' || *p == ' ' || *p == '\t'))
        p++;
    if (p >= e)
        return false;
    for (s = p; p < e && *p != ',';)
        p++;
    for (t = p; t > s && (t[-1] == ' ' || t[-1] == '\t');)
        t--;
    *tok = s;
    *len = (size_t)(t - s);
    *pp = p;
    return true;
}

/* Content-Length: 1*DIGIT, or a list of identical values. Returns 0 or -1. */
static int parse_cl(const char *v, size_t n, uint64_t *out)
{
    const char *p = v, *t;
    size_t tl;
    uint64_t x;
    bool have = false;

    if (memchr(v, ',', n) == NULL) /* the usual case; also rejects an empty value */
        return parse_uint(v, n, 1ULL << 62, out);
    while (list_next(&p, v + n, &t, &tl)) {
        if (parse_uint(t, tl, 1ULL << 62, &x) < 0 || (have && x != *out))
            return -1;
        *out = x;
        have = true;
    }
    return have ? 0 : -1;
}

/* Next key=value of a query string in [*pp, e). Returns false at the end. */
bool query_next(const char **pp, const char *e, const char **k, size_t *kl, const char **v, size_t *vl)
{
    const char *p = *pp, *amp, *eq;

    while (p < e && *p == '&')
        p++;
    if (p >= e)
        return false;
    amp = memchr(p, '&', (size_t)(e - p));
    if (amp == NULL)
        amp = e;
    eq = memchr(p, '=', (size_t)(amp - p));
    *k = p;
    *kl = (size_t)((eq ? eq : amp) - p);
    *v = eq ? eq + 1 : amp;
    *vl = (size_t)(amp - *v);
    *pp = amp;
    return true;
}

/* Copy a value into out (cap bytes with the NUL), URL-decoding ('%XX', '+')
 * when decode. header: reject control bytes (the value becomes a header).
 * Returns the length or -1. */
long value_copy(const char *s, size_t n, char *out, size_t cap, bool decode, bool header)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (decode && ch == '%') {
            if (i + 2 >= n || hexval((unsigned char)s[i + 1]) < 0 || hexval((unsigned char)s[i + 2]) < 0)
                return -1;
            ch = (unsigned char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else if (decode && ch == '+') {
            ch = ' ';
        }
        if ((header && ((ch < 0x20 && ch != '\t') || ch == 0x7f)) || o + 1 >= cap)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return (long)o;
}

/* "delay_ms" matches "delay_ms" and "delay-ms". */
bool key_is(const char *k, size_t kl, const char *name)
{
    size_t i;

    for (i = 0; i < kl && name[i] != '\0'; i++) {
        if (k[i] != name[i] && !(k[i] == '-' && name[i] == '_'))
            return false;
    }
    return i == kl && name[i] == '\0';
}

/* ------------------------------------------------------------ requests */

/* Semantics of one header field. Returns 0 or an HTTP error status. */
static int req_header(struct req *r, const char *n, size_t nl, const char *v, size_t vl)
{
    const char *p = v, *e = v + vl, *t;
    size_t tl;
    uint64_t cl = 0;

    if (NAME_IS(n, nl, "host")) {
        r->host_count++;
    } else if (NAME_IS(n, nl, "content-length")) {
        if (parse_cl(v, vl, &cl) < 0 || (r->has_cl && cl != r->content_length))
            return 400;
        r->has_cl = true;
        r->content_length = cl;
    } else if (NAME_IS(n, nl, "transfer-encoding")) {
        r->has_te = true;
        while (list_next(&p, e, &t, &tl)) {
            if (r->te_chunked) /* chunked must be the final coding, once */
                return 400;
            if (NAME_IS(t, tl, "chunked"))
                r->te_chunked = true;
            else
                r->te_other = true;
        }
    } else if (NAME_IS(n, nl, "connection")) {
        while (list_next(&p, e, &t, &tl)) {
            r->conn_close |= NAME_IS(t, tl, "close");
            r->conn_keepalive |= NAME_IS(t, tl, "keep-alive");
            r->conn_upgrade |= NAME_IS(t, tl, "upgrade");
        }
    } else if (NAME_IS(n, nl, "expect")) {
        if (NAME_IS(v, vl, "100-continue"))
            r->expect_continue = true;
        else
            r->expect_other = true;
    } else if (NAME_IS(n, nl, "upgrade")) {
        while (list_next(&p, e, &t, &tl))
            r->upgrade_ws |= NAME_IS(t, tl, "websocket");
    } else if (NAME_IS(n, nl, "sec-websocket-key")) {
        r->ws_key = v;
        r->ws_key_len = vl;
        r->ws_key_count++;
    } else if (NAME_IS(n, nl, "sec-websocket-version")) {
        r->ws_version = v;
        r->ws_version_len = vl;
    }
    return 0;
}

static enum route route_of(const char *p, size_t n)
{
    /* clang-format off */
    static const struct { const char *path; enum route route; } tab[] = {
        {"/echo", R_ECHO}, {"/health", R_HEALTH}, {"/ws", R_WS}, {"/slow", R_SLOW}, {"/reset", R_RESET},
        {"/_ctl/stats", R_CTL_STATS}, {"/_ctl/reset", R_CTL_RESET}, {"/_ctl/set", R_CTL_SET},
        {"/_ctl/last", R_CTL_LAST}, {"/_ctl/last_health", R_CTL_LAST_HEALTH},
    };
    /* clang-format on */
    if (n < 3 || n > 18)
        return R_DEFAULT;
    for (size_t i = 0; i < ARRAY_LEN(tab); i++) {
        if (strlen(tab[i].path) == n && memcmp(tab[i].path, p, n) == 0)
            return tab[i].route;
    }
    return n >= 6 && memcmp(p, "/_ctl/", 6) == 0 ? R_CTL_UNKNOWN : R_DEFAULT;
}

/* Split the target (origin-form, absolute-form or "*") into path and
 * query. Returns 0 or 400. */
static int req_target(struct req *r)
{
    const char *t = r->target, *e = t + r->target_len, *q;

    if (r->target_len == 1 && t[0] == '*') {
        r->path = t;
        r->path_len = 1;
        return 0;
    }
    if (t[0] != '/') {
        if (r->target_len > 7 && strncasecmp(t, "http://", 7) == 0)
            t += 7;
        else if (r->target_len > 8 && strncasecmp(t, "https://", 8) == 0)
            t += 8;
        else
            return 400;
        while (t < e && *t != '/' && *t != '?')
            t++;
    }
    q = memchr(t, '?', (size_t)(e - t));
    r->path = t;
    r->path_len = (size_t)((q ? q : e) - t);
    if (r->path_len == 0) { /* "http://host" or "http://host?q" */
        r->path = "/";
        r->path_len = 1;
    }
    if (q != NULL) {
        r->query = q + 1;
        r->query_len = (size_t)(e - q - 1);
    }
    return 0;
}

/* Per-request overrides from the query; unknown keys are ignored. Returns 0
 * or 400. */
int req_query(struct conn *c)
{
    /* clang-format off */
    static const struct { const char *key; size_t off; int min, max; } tab[] = {
        {"delay_ms", offsetof(struct req, delay_ms), 0, ORIGIN_MS_MAX},
        {"jitter_ms", offsetof(struct req, jitter_ms), 0, ORIGIN_MS_MAX},
        {"status", offsetof(struct req, status), 200, 599}, {"fail_pct", offsetof(struct req, fail_pct), 0, 100},
        {"chunked", offsetof(struct req, chunked), 0, 1}, {"trailer", offsetof(struct req, trailer), 0, 1},
    };
    /* clang-format on */
    struct req *r = &c->req;
    const char *p = r->query, *e = p + r->query_len, *k, *v;
    size_t kl, vl;
    uint64_t x;
    long n;

    while (p != NULL && query_next(&p, e, &k, &kl, &v, &vl)) {
        for (size_t i = 0; i < ARRAY_LEN(tab); i++) {
            if (!key_is(k, kl, tab[i].key))
                continue;
            if (parse_uint(v, vl, (uint64_t)tab[i].max, &x) < 0 || x < (uint64_t)tab[i].min)
                return 400;
            *(int *)((char *)r + tab[i].off) = (int)x;
        }
        if (key_is(k, kl, "size")) {
            if (parse_uint(v, vl, ORIGIN_SIZE_MAX, &x) < 0)
                return 400;
            r->size = (long long)x;
        } else if (key_is(k, kl, "expect")) {
            r->expect417 = NAME_IS(v, vl, "417");
        } else if (key_is(k, kl, "cc")) {
            n = value_copy(v, vl, c->cc, sizeof(c->cc), true, true);
            if (n < 0)
                return 400;
            r->has_cc = true;
            r->cc_len = (size_t)n;
        }
    }
    return 0;
}

/* Parse the head in c->head (it ends with CRLF CRLF). Returns 0 or an HTTP
 * error status. */
static int req_parse_head(struct conn *c)
{
    struct req *r = &c->req;
    char *p = c->head, *end = c->head + c->head_len, *nl, *le, *s, *t, *n, *v, *ve;
    int rc;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || nl == p || nl[-1] != '\r')
        return 400;
    le = nl - 1;
    for (s = p; s < le && g_tchar[(unsigned char)*s];)
        s++;
    if (s == p || s >= le || *s != ' ')
        return 400;
    r->method = p;
    r->method_len = (size_t)(s - p);
    for (t = ++s; s < le && *s != ' '; s++) {
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return 400;
    }
    if (s == t || s >= le)
        return 400;
    r->target = t;
    r->target_len = (size_t)(s - t);
    s++;
    if (le - s != 8 || memcmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' || s[7] < '0' ||
        s[7] > '9')
        return 400;
    if (s[5] != '1')
        return 505;
    r->minor = s[7] == '0' ? 0 : 1;
    r->is_head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;

    /* field-line = field-name ":" OWS field-value OWS CRLF */
    for (p = nl + 1;; p = nl + 1) {
        struct hdr *h;

        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || nl == p || nl[-1] != '\r')
            return 400;
        le = nl - 1;
        if (le == p)
            break;
        for (n = p; n < le && g_tchar[(unsigned char)*n];)
            n++;
        if (n == p || n >= le || *n != ':') /* also obs-fold and space before ':' */
            return 400;
        for (v = n + 1; v < le && (*v == ' ' || *v == '\t');)
            v++;
        for (ve = le; ve > v && (ve[-1] == ' ' || ve[-1] == '\t');)
            ve--;
        for (s = v; s < ve; s++) {
            if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
                return 400;
        }
        if (r->nhdrs == ORIGIN_HEADERS_MAX)
            return 431;
        h = &c->hdrs[r->nhdrs++];
        h->name = (uint32_t)(p - c->head);
        h->name_len = (uint32_t)(n - p);
        h->value = (uint32_t)(v - c->head);
        h->value_len = (uint32_t)(ve - v);
        rc = req_header(r, p, (size_t)(n - p), v, (size_t)(ve - v));
        if (rc != 0)
            return rc;
    }
    if (r->host_count > 1 || (r->minor == 1 && r->host_count == 0))
        return 400;
    if (r->has_te && (r->minor == 0 || r->has_cl || !r->te_chunked))
        return 400;
    if (r->has_te && r->te_other)
        return 501;
    r->keepalive = r->minor == 1 ? !r->conn_close : (r->conn_keepalive && !r->conn_close);
    rc = req_target(r);
    if (rc != 0)
        return rc;
    r->route = route_of(r->path, r->path_len);
    return 0;
}

void req_reset(struct req *r)
{
    memset(r, 0, sizeof(*r));
    r->delay_ms = r->jitter_ms = r->status = r->fail_pct = r->chunked = r->trailer = -1;
    r->size = -1;
    r->body_fnv = FNV_OFFSET;
}

/* ST_HEAD: find, copy and parse the next head. Returns ORIGIN_OK (the state
 * changed), ORIGIN_AGAIN or an HTTP error status. */
int conn_read_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in), hlen;
    struct evbuffer_ptr ptr;
    unsigned char *d;
    int rc;

    if (len == 0)
        return ORIGIN_AGAIN;
    req_reset(&c->req);
    while (len > 0) { /* a server SHOULD ignore empty lines before the request-line */
        d = evbuffer_pullup(in, len < 2 ? (ssize_t)len : 2);
        if (d[0] != '\r' && d[0] != '\n')
            break;
        if (d[0] == '\n' || (len >= 2 && d[1] != '\n'))
            return 400;
        if (len < 2)
            return ORIGIN_AGAIN;
        evbuffer_drain(in, 2);
        len -= 2;
    }
    if (len == 0)
        return ORIGIN_AGAIN;
    ptr = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (ptr.pos < 0) {
        if (len > ORIGIN_HEAD_MAX)
            return 431;
        if (evbuffer_search(in, "\n\n", 2, NULL).pos >= 0) /* bare LF line ends */
            return 400;
        return ORIGIN_AGAIN;
    }
    hlen = (size_t)ptr.pos + 4;
    if (hlen > ORIGIN_HEAD_MAX)
        return 431;
    if (hlen > c->head_cap) {
        size_t cap = c->head_cap ? c->head_cap : 1024;
        char *nh;
        while (cap < hlen)
            cap *= 2;
        nh = realloc(c->head, cap);
        if (nh == NULL) {
            c->dead = true;
            return ORIGIN_OK;
        }
        c->head = nh;
        c->head_cap = cap;
    }
    evbuffer_remove(in, c->head, hlen);
    c->head_len = hlen;
    rc = req_parse_head(c);
    if (rc != 0)
        return rc;
    req_head_done(c);
    return ORIGIN_OK;
}

/* One CRLF-terminated line of the chunked framing into buf. */
static int body_line(struct evbuffer *in, char *buf, size_t *len)
{
    size_t eol;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_CRLF_STRICT);

    if (p.pos < 0)
        return evbuffer_get_length(in) > ORIGIN_LINE_MAX ? 400 : ORIGIN_AGAIN;
    if ((size_t)p.pos > ORIGIN_LINE_MAX)
        return 400;
    evbuffer_remove(in, buf, (size_t)p.pos);
    evbuffer_drain(in, 2);
    *len = (size_t)p.pos;
    for (size_t i = 0; i < *len; i++) {
        if (((unsigned char)buf[i] < 0x20 && buf[i] != '\t') || buf[i] == 0x7f) /* bare CR/LF, controls */
            return 400;
    }
    return ORIGIN_OK;
}

/* Count, checksum and drop n body bytes. */
static void body_consume(struct req *r, struct evbuffer *in, size_t n)
{
    unsigned char buf[16384];
    uint64_t h = r->body_fnv;

    while (n > 0) {
        int m = evbuffer_remove(in, buf, n < sizeof(buf) ? n : sizeof(buf));
        if (m <= 0)
            break;
        for (int i = 0; i < m; i++)
            h = (h ^ buf[i]) * FNV_PRIME;
        n -= (size_t)m;
        r->body_bytes += (uint64_t)m;
    }
    r->body_fnv = h;
}

/* ST_BODY: decode and drop. Returns ORIGIN_OK once the body is complete,
 * ORIGIN_AGAIN or 400. */
int conn_read_body(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char line[ORIGIN_LINE_MAX + 1];
    uint64_t sz;
    size_t n, i;
    int rc;

    for (;;) {
        switch (c->bstate) {
        case B_NONE:
            return ORIGIN_OK;
        case B_LENGTH:
        case B_CHUNK_DATA:
            n = evbuffer_get_length(in);
            if (n == 0)
                return ORIGIN_AGAIN;
            n = n < c->body_left ? n : (size_t)c->body_left;
            body_consume(&c->req, in, n);
            c->body_left -= n;
            if (c->body_left > 0)
                return ORIGIN_AGAIN;
            c->bstate = c->bstate == B_LENGTH ? B_NONE : B_CHUNK_CRLF;
            break;
        case B_CHUNK_CRLF:
            if (evbuffer_get_length(in) < 2)
                return ORIGIN_AGAIN;
            evbuffer_copyout(in, line, 2);
            if (line[0] != '\r' || line[1] != '\n')
                return 400;
            evbuffer_drain(in, 2);
            c->bstate = B_CHUNK_SIZE;
            break;
        case B_CHUNK_SIZE: /* chunk-size [ BWS ";" chunk-ext ] CRLF */
            rc = body_line(in, line, &n);
            if (rc != ORIGIN_OK)
                return rc;
            for (i = 0, sz = 0; i < n && hexval((unsigned char)line[i]) >= 0; i++) {
                if (sz >> 56)
                    return 400;
                sz = sz * 16 + (uint64_t)hexval((unsigned char)line[i]);
            }
            if (i == 0)
                return 400;
            while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
            if (i < n && line[i] != ';')
                return 400;
            c->body_left = sz;
            c->bstate = sz == 0 ? B_TRAILER : B_CHUNK_DATA;
            break;
        case B_TRAILER: /* *( field-line CRLF ) CRLF */
            rc = body_line(in, line, &n);
            if (rc != ORIGIN_OK)
                return rc;
            if (n == 0) {
                c->bstate = B_NONE;
                return ORIGIN_OK;
            }
            c->trailer_bytes += n + 2;
            for (i = 0; i < n && g_tchar[(unsigned char)line[i]];)
                i++;
            if (i == 0 || i == n || line[i] != ':' || c->trailer_bytes > ORIGIN_TRAILER_MAX)
                return 400;
            break;
        }
    }
}
