/*
 * http_parse.c - weir's HTTP/1.1 message parser (RFC 9112): request and
 * response heads over one contiguous buffer. No I/O, no allocation, no
 * global mutable state: any thread. The chunked body parser is in
 * http_chunked.c; the character-class table both use is defined here and
 * declared in http_int.h.
 *
 * Depends on: weir/http_parse.h (its API), http_int.h (character classes).
 *
 * Heads are parsed in two passes. The first pass only looks for the end of
 * the head (the first empty line) with memchr over bytes it has not scanned
 * before (msg->scan_pos), so a head arriving in many small reads costs
 * O(length) in total; it also enforces the request-line, head-size and
 * field-count limits early. The second pass runs once, when the head is
 * complete, and validates it strictly. Because the head it walks is known to
 * end with LF, and LF belongs to no character class, the inner loops of the
 * second pass need no bounds checks: they stop at the LF at the latest.
 *
 * Strictness (the proxy answers 400 and closes on anything ambiguous):
 * exactly one SP between the request-line parts, HTTP/1.0 or HTTP/1.1 only,
 * no obs-fold, no whitespace before the colon, no bare CR, no CTL in names or
 * values, one framing per message (Transfer-Encoding and Content-Length
 * together are refused, duplicate Content-Length must agree).
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "weir/http_parse.h"

#include "http_int.h"

/* ---- character classes ---- */

/* Generated from the RFC 9110 / RFC 3986 ABNF. '\n' and '\r' are in no class. */
/* clang-format off */
const unsigned char weir_http_ctab[256] = {
    /* 00 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 10 */ 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    /* 20 */ 0x14, 0x1f, 0x04, 0x15, 0x1f, 0x15, 0x1f, 0x1f, 0x1e, 0x1e, 0x1f, 0x1f, 0x1e, 0x1f, 0x1f, 0x16,
    /* 30 */ 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x16, 0x1e, 0x14, 0x1e, 0x14, 0x16,
    /* 40 */ 0x16, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 50 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x94, 0x84, 0x94, 0x95, 0x1f,
    /* 60 */ 0x95, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f,
    /* 70 */ 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x1f, 0x94, 0x95, 0x94, 0x1f, 0x00,
    /* 80 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* 90 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* a0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* b0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* c0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* d0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* e0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
    /* f0 */ 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14, 0x14,
};
/* clang-format on */

/* Bytes of empty lines (CRLF or LF) skipped before a request line. */
#define MAX_LEADING_EMPTY 64

#define S_REQUEST_LINE_TOO_LONG "request line too long"
#define S_HEAD_TOO_LARGE        "header section too large"
#define S_TOO_MANY_FIELDS       "too many header fields"
#define S_BARE_CR               "bare CR"

static int fail(struct weir_http_msg *m, int status, const char *why)
{
    m->error_status = status;
    m->error = why;
    return WEIR_ERROR;
}

void weir_http_msg_reset(struct weir_http_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->host_idx = -1;
}

/* Clear the output fields before a full parse; the scan state is kept. */
static void msg_prepare(struct weir_http_msg *m)
{
    m->method = NULL;
    m->method_len = 0;
    m->method_id = WEIR_HTTP_OTHER;
    m->target = NULL;
    m->target_len = 0;
    m->target_form = WEIR_TARGET_ORIGIN;
    m->path = NULL;
    m->path_len = 0;
    m->authority = NULL;
    m->authority_len = 0;
    m->status = 0;
    m->reason = NULL;
    m->reason_len = 0;
    m->version = 0;
    m->nheaders = 0;
    m->host_idx = -1;
    m->head_len = 0;
    m->body = WEIR_BODY_NONE;
    m->content_length = 0;
    m->flags = 0;
    m->error_status = 0;
    m->error = NULL;
}

/* ---- small helpers ---- */

/* Skip field-value bytes from p. Eight bytes at a time while no byte is a
 * CTL (< 0x20, which includes HTAB: handled by the byte loop) or DEL, then
 * byte by byte. Stops at the first byte that is not HTAB/SP/VCHAR/obs-text;
 * the caller guarantees such a byte (the head's final LF) exists before end. */
static const unsigned char *skip_value(const unsigned char *p, const unsigned char *end)
{
    while (end - p >= 8) {
        uint64_t x, y;
        memcpy(&x, p, 8);
        y = x ^ UINT64_C(0x7f7f7f7f7f7f7f7f);
        if ((((x - UINT64_C(0x2020202020202020)) & ~x) | ((y - UINT64_C(0x0101010101010101)) & ~y)) &
            UINT64_C(0x8080808080808080))
            break;
        p += 8;
    }
    while (CT(*p, C_VALUE))
        p++;
    return p;
}

/* Next non-empty element of a comma-separated list in [*pp, end), OWS
 * trimmed. Returns 0 when the list is exhausted. */
static int list_next(const char **pp, const char *end, const char **el, size_t *el_len)
{
    const char *p = *pp, *s, *t;

    while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
        p++;
    if (p == end) {
        *pp = p;
        return 0;
    }
    s = p;
    while (p < end && *p != ',')
        p++;
    t = p;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
        t--;
    *el = s;
    *el_len = (size_t)(t - s);
    *pp = p;
    return 1;
}

int weir_http_list_has(const char *value, size_t n, const char *ltoken)
{
    const char *p = value, *end = value + n, *el;
    size_t el_len;

    while (list_next(&p, end, &el, &el_len)) {
        if (weir_span_ieq(el, el_len, ltoken))
            return 1;
    }
    return 0;
}

int weir_http_find_header(const struct weir_http_msg *m, const char *lname)
{
    size_t i, n = strlen(lname);

    for (i = 0; i < m->nheaders; i++) {
        if (m->headers[i].name_len == n && weir_span_ieq(m->headers[i].name, n, lname))
            return (int)i;
    }
    return -1;
}

/*
 * uri-host [ ":" port ] (RFC 3986): IP-literal (IPv6 only, checked with
 * inet_pton), or a non-empty reg-name (which covers IPv4address); port is
 * at most 5 digits and <= 65535, and required when need_port.
 */
static int valid_host_port(const unsigned char *p, size_t n, int need_port)
{
    size_t i = 0, digits;
    unsigned long port = 0;

    if (n == 0)
        return 0;
    if (p[0] == '[') {
        char a[64];
        unsigned char tmp[16];
        i = 1;
        while (i < n && (CT(p[i], C_HEX) || p[i] == ':' || p[i] == '.'))
            i++;
        if (i >= n || p[i] != ']' || i - 1 >= sizeof(a))
            return 0;
        memcpy(a, p + 1, i - 1);
        a[i - 1] = '\0';
        if (inet_pton(AF_INET6, a, tmp) != 1)
            return 0;
        i++;
    } else {
        while (i < n) {
            if (CT(p[i], C_REGNAME))
                i++;
            else if (p[i] == '%' && i + 2 < n && CT(p[i + 1], C_HEX) && CT(p[i + 2], C_HEX))
                i += 3;
            else
                break;
        }
        if (i == 0)
            return 0;
    }
    if (i == n)
        return !need_port;
    if (p[i] != ':')
        return 0;
    i++;
    digits = n - i;
    if (digits == 0)
        return !need_port; /* RFC 3986: port = *DIGIT */
    if (digits > 5)
        return 0;
    for (; i < n; i++) {
        if (!CT(p[i], C_DIGIT))
            return 0;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    return port <= 65535;
}

/* Validate origin-form bytes from p up to the SP at end (exclusive). The
 * path is strict RFC 3986; the query also takes the few characters browsers
 * send unencoded there (C_QLAX), as nginx and HAProxy do, since refusing them
 * would break real clients and they carry no framing risk. */
static int valid_origin(const unsigned char *p, const unsigned char *end)
{
    unsigned cls = C_ORIGIN;
    for (;;) {
        while (CT(*p, cls)) {
            if (*p == '?')
                cls = C_ORIGIN | C_QLAX;
            p++;
        }
        if (*p != '%')
            return p == end;
        if (!CT(p[1], C_HEX) || !CT(p[2], C_HEX))
            return 0;
        p += 3;
    }
}

/* Content-Length: 1*DIGIT (at most 18 digits), or a comma list of values
 * that are all the same number. Returns 0 and *out, or -1. */
static int parse_content_length(const unsigned char *p, size_t n, uint64_t *out)
{
    const unsigned char *end = p + n, *d;
    uint64_t x, val = 0;
    int have = 0;

    for (;;) {
        d = p;
        x = 0;
        while (p < end && CT(*p, C_DIGIT) && p - d < 19)
            x = x * 10 + (uint64_t)(*p++ - '0');
        if (p == d || p - d > 18)
            return -1;
        if (have && x != val)
            return -1;
        val = x;
        have = 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (p == end)
            break;
        if (*p != ',')
            return -1;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
    }
    *out = val;
    return 0;
}

static int method_lookup(const unsigned char *p, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(p, "GET", 3) == 0)
            return WEIR_HTTP_GET;
        if (memcmp(p, "PUT", 3) == 0)
            return WEIR_HTTP_PUT;
        break;
    case 4:
        if (memcmp(p, "POST", 4) == 0)
            return WEIR_HTTP_POST;
        if (memcmp(p, "HEAD", 4) == 0)
            return WEIR_HTTP_HEAD;
        break;
    case 5:
        if (memcmp(p, "PATCH", 5) == 0)
            return WEIR_HTTP_PATCH;
        if (memcmp(p, "TRACE", 5) == 0)
            return WEIR_HTTP_TRACE;
        break;
    case 6:
        if (memcmp(p, "DELETE", 6) == 0)
            return WEIR_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(p, "OPTIONS", 7) == 0)
            return WEIR_HTTP_OPTIONS;
        if (memcmp(p, "CONNECT", 7) == 0)
            return WEIR_HTTP_CONNECT;
        break;
    }
    return WEIR_HTTP_OTHER;
}

/* Header names the parser acts on. */
enum {
    H_OTHER = 0,
    H_HOST,
    H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING,
    H_CONNECTION,
    H_EXPECT,
    H_UPGRADE,
    H_TE,
    H_TRAILER,
    H_KEEP_ALIVE,
    H_PROXY_CONNECTION
};

static int header_id(const unsigned char *p, size_t n)
{
    const char *s = (const char *)p;

    switch (n) {
    case 2:
        return weir_span_ieq(s, n, "te") ? H_TE : H_OTHER;
    case 4:
        return weir_span_ieq(s, n, "host") ? H_HOST : H_OTHER;
    case 6:
        return weir_span_ieq(s, n, "expect") ? H_EXPECT : H_OTHER;
    case 7:
        if (weir_span_ieq(s, n, "upgrade"))
            return H_UPGRADE;
        return weir_span_ieq(s, n, "trailer") ? H_TRAILER : H_OTHER;
    case 10:
        if (weir_span_ieq(s, n, "connection"))
            return H_CONNECTION;
        return weir_span_ieq(s, n, "keep-alive") ? H_KEEP_ALIVE : H_OTHER;
    case 14:
        return weir_span_ieq(s, n, "content-length") ? H_CONTENT_LENGTH : H_OTHER;
    case 16:
        return weir_span_ieq(s, n, "proxy-connection") ? H_PROXY_CONNECTION : H_OTHER;
    case 17:
        return weir_span_ieq(s, n, "transfer-encoding") ? H_TRANSFER_ENCODING : H_OTHER;
    }
    return H_OTHER;
}

/* ---- end-of-head search (resumable) ---- */

/* Length of a line from s to its LF at lf, without the CR of a CRLF. */
static size_t line_len(const char *s, const char *lf)
{
    size_t n = (size_t)(lf - s);
    return (n > 0 && lf[-1] == '\r') ? n - 1 : n;
}

/*
 * Look for the empty line ending the head, scanning only bytes after
 * m->scan_pos. An LF whose next one or two bytes have not arrived yet is
 * rescanned on the next call (scan_pos parks on it). A head ends at the first
 * LF followed by LF or CRLF. is_req enables the 414 check; status codes for
 * responses are all 502.
 */
static int head_find_end(const char *buf, size_t len, size_t start, size_t max_head, int is_req,
                         struct weir_http_msg *m, size_t *head_len)
{
    const char *end = buf + len, *p, *q;
    size_t pos = m->scan_pos;
    int parked = 0;

    if (pos < start)
        pos = start;
    p = buf + pos;
    for (;;) {
        q = memchr(p, '\n', (size_t)(end - p));
        if (q == NULL) {
            pos = len;
            break;
        }
        if (is_req && m->scan_lines == 0 && line_len(buf + start, q) > WEIR_HTTP_MAX_REQUEST_LINE)
            return fail(m, 414, S_REQUEST_LINE_TOO_LONG);
        /* q ends one more line: the start line or a field line */
        if (m->scan_lines >= WEIR_HTTP_MAX_HEADERS + 1)
            return fail(m, is_req ? 431 : 502, S_TOO_MANY_FIELDS);
        if (q + 1 == end || (q[1] == '\r' && q + 2 == end)) {
            pos = (size_t)(q - buf);
            parked = 1;
            break;
        }
        if (q[1] == '\n') {
            *head_len = (size_t)(q + 2 - buf);
            goto found;
        }
        if (q[1] == '\r') {
            if (q[2] != '\n') /* no line may start with a bare CR */
                return fail(m, is_req ? 400 : 502, S_BARE_CR);
            *head_len = (size_t)(q + 3 - buf);
            goto found;
        }
        m->scan_lines++;
        p = q + 1;
    }
    m->scan_pos = pos;
    if (is_req && m->scan_lines == 0 && !parked) {
        /* no LF yet: the request line is at least this long (a final CR
         * may still be the start of its CRLF) */
        size_t n = len - start;
        if (n > 0 && buf[len - 1] == '\r')
            n--;
        if (n > WEIR_HTTP_MAX_REQUEST_LINE)
            return fail(m, 414, S_REQUEST_LINE_TOO_LONG);
    }
    /* An incomplete head of len bytes can only complete at len + 1 or more. */
    if (len >= max_head)
        return fail(m, is_req ? 431 : 502, S_HEAD_TOO_LARGE);
    return WEIR_AGAIN;

found:
    m->scan_pos = *head_len;
    if (*head_len > max_head)
        return fail(m, is_req ? 431 : 502, S_HEAD_TOO_LARGE);
    return WEIR_OK;
}

/* ---- header fields (second pass) ---- */

struct head_info {
    unsigned nhost;
    unsigned nte; /* Transfer-Encoding fields */
    unsigned nconn;
    int cl_seen;
    int upgrade_hdr;
    int expect_100;
    int te_trailers;
};

/*
 * Parse field lines from p up to and including the empty line ending the
 * head at hend. Requests get 400/431 statuses, responses 502.
 */
static int parse_fields(struct weir_http_msg *m, const unsigned char *p, const unsigned char *hend,
                        int is_req, struct head_info *hi)
{
    int bad = is_req ? 400 : 502;

    for (;;) {
        const unsigned char *name = p, *v, *ve;
        struct weir_http_header *h;
        size_t nlen;

        /* the empty line; it must be the one the scan found */
        if (*p == '\n' || (*p == '\r' && p[1] == '\n'))
            return p + (*p == '\r') + 1 == hend ? WEIR_OK : fail(m, bad, "head changed while parsing");
        if (*p == '\r')
            return fail(m, bad, S_BARE_CR);
        if (*p == ' ' || *p == '\t')
            return fail(m, bad, "obsolete line folding");

        while (CT(*p, C_TCHAR))
            p++;
        nlen = (size_t)(p - name);
        if (*p != ':' || nlen == 0) {
            if (nlen > 0 && (*p == ' ' || *p == '\t'))
                return fail(m, bad, "whitespace before colon");
            return fail(m, bad, "invalid header name");
        }
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        v = p;
        p = skip_value(p, hend);
        ve = p;
        if (*p == '\r') {
            if (p[1] != '\n')
                return fail(m, bad, S_BARE_CR);
            p += 2;
        } else if (*p == '\n') {
            p++;
        } else {
            return fail(m, bad, "invalid character in header value");
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;

        if (m->nheaders == WEIR_HTTP_MAX_HEADERS)
            return fail(m, is_req ? 431 : 502, S_TOO_MANY_FIELDS);
        h = &m->headers[m->nheaders];
        h->name = (const char *)name;
        h->name_len = nlen;
        h->value = (const char *)v;
        h->value_len = (size_t)(ve - v);
        h->flags = 0;

        switch (header_id(name, nlen)) {
        case H_HOST:
            if (!is_req)
                break;
            /* RFC 9110 7.2 allows an empty Host when the target has no
             * authority; we refuse it like any other invalid Host, since a
             * reverse proxy routes on it and real clients always send one. */
            if (++hi->nhost > 1)
                return fail(m, 400, "duplicate Host");
            if (!valid_host_port(v, h->value_len, 0))
                return fail(m, 400, "invalid Host");
            m->host_idx = (int)m->nheaders;
            break;
        case H_CONTENT_LENGTH: {
            uint64_t cl;
            if (parse_content_length(v, h->value_len, &cl) != 0)
                return fail(m, bad, "invalid Content-Length");
            if (hi->cl_seen && cl != m->content_length)
                return fail(m, bad, "conflicting Content-Length");
            hi->cl_seen = 1;
            m->content_length = cl;
            break;
        }
        case H_TRANSFER_ENCODING:
            h->flags = WEIR_HDR_F_HOP;
            hi->nte++;
            /* Requests: we deliberately refuse every transfer coding other
             * than a single "chunked" (RFC 9112 6.1 lets a server answer 501
             * or 400); forwarding gzip-then-chunked bodies and lists invites
             * framing disagreements with the backend. */
            if (is_req && (hi->nte > 1 || !weir_span_ieq((const char *)v, h->value_len, "chunked")))
                return fail(m, 400, "unsupported Transfer-Encoding");
            break;
        case H_CONNECTION:
            h->flags = WEIR_HDR_F_HOP;
            hi->nconn++;
            break;
        case H_EXPECT:
            if (is_req && weir_span_ieq((const char *)v, h->value_len, "100-continue"))
                hi->expect_100 = 1;
            break;
        case H_UPGRADE:
            h->flags = WEIR_HDR_F_HOP;
            hi->upgrade_hdr = 1;
            break;
        case H_TE:
            h->flags = WEIR_HDR_F_HOP;
            if (is_req && weir_http_list_has((const char *)v, h->value_len, "trailers"))
                hi->te_trailers = 1;
            break;
        case H_TRAILER:
        case H_KEEP_ALIVE:
        case H_PROXY_CONNECTION:
            h->flags = WEIR_HDR_F_HOP;
            break;
        default:
            break;
        }
        m->nheaders++;
    }
}

/* Case-insensitive (ASCII, locale independent) compare of two spans. */
static int ascii_ieq(const char *a, const char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (weir_lower((unsigned char)a[i]) != weir_lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

static int is_connection(const struct weir_http_header *h)
{
    return (h->flags & WEIR_HDR_F_HOP) && h->name_len == 10 && weir_lower((unsigned char)h->name[0]) == 'c';
}

static int is_transfer_encoding(const struct weir_http_header *h)
{
    return (h->flags & WEIR_HDR_F_HOP) && h->name_len == 17;
}

/* Walk the Connection lists: close / keep-alive / upgrade options, and mark
 * every field named by an option as WEIR_HDR_F_CONN_LISTED. Host and
 * Content-Length are never marked: a proxy that dropped them on a client's
 * say-so ("Connection: content-length") would forward a body with no
 * framing, which the next hop reads as the next request. */
static void process_connection(struct weir_http_msg *m, int *close, int *keep_alive, int *upgrade)
{
    size_t i, j;

    for (i = 0; i < m->nheaders; i++) {
        const char *p, *end, *el;
        size_t el_len;

        if (!is_connection(&m->headers[i]))
            continue;
        p = m->headers[i].value;
        end = p + m->headers[i].value_len;
        while (list_next(&p, end, &el, &el_len)) {
            if (weir_span_ieq(el, el_len, "close"))
                *close = 1;
            else if (weir_span_ieq(el, el_len, "keep-alive"))
                *keep_alive = 1;
            else if (weir_span_ieq(el, el_len, "upgrade"))
                *upgrade = 1;
            else if (weir_span_ieq(el, el_len, "host") || weir_span_ieq(el, el_len, "content-length"))
                continue;
            for (j = 0; j < m->nheaders; j++) {
                struct weir_http_header *h = &m->headers[j];
                if (h->name_len == el_len && ascii_ieq(h->name, el, el_len))
                    h->flags |= WEIR_HDR_F_CONN_LISTED;
            }
        }
    }
}

/* Keep-alive and Connection-derived flags, common to both directions. */
static void set_conn_flags(struct weir_http_msg *m, const struct head_info *hi, int *conn_upgrade)
{
    int close = 0, ka = 0;

    *conn_upgrade = 0;
    if (hi->nconn > 0)
        process_connection(m, &close, &ka, conn_upgrade);
    if (close)
        m->flags |= WEIR_HTTP_F_CONN_CLOSE;
    if (!close && (m->version == 11 || ka))
        m->flags |= WEIR_HTTP_F_KEEPALIVE;
}

/* ---- request ---- */

/* request-target, from t to the SP at tend (exclusive). */
static int parse_target(struct weir_http_msg *m, const unsigned char *t, const unsigned char *tend)
{
    static const char slash[] = "/", star[] = "*";
    size_t n = (size_t)(tend - t);
    const unsigned char *a, *ae;

    m->target = (const char *)t;
    m->target_len = n;

    if (m->method_id == WEIR_HTTP_CONNECT) {
        /* RFC 9110 9.3.6: CONNECT takes authority-form, host and port */
        if (!valid_host_port(t, n, 1))
            return fail(m, 400, "invalid CONNECT target");
        m->target_form = WEIR_TARGET_AUTHORITY;
        m->authority = (const char *)t;
        m->authority_len = n;
        return WEIR_OK;
    }
    if (*t == '/') {
        if (!valid_origin(t, tend))
            return fail(m, 400, "invalid request target");
        m->target_form = WEIR_TARGET_ORIGIN;
        m->path = (const char *)t;
        m->path_len = n;
        return WEIR_OK;
    }
    if (*t == '*' && n == 1) {
        if (m->method_id != WEIR_HTTP_OPTIONS)
            return fail(m, 400, "asterisk-form is for OPTIONS only");
        m->target_form = WEIR_TARGET_ASTERISK;
        m->path = star;
        m->path_len = 1;
        return WEIR_OK;
    }

    /* absolute-form: "http://" or "https://", scheme case-insensitive */
    if (n < 7 || !weir_span_ieq((const char *)t, 4, "http"))
        return fail(m, 400, "invalid request target");
    a = t + 4;
    if (*a == 's' || *a == 'S')
        a++;
    if (tend - a < 3 || a[0] != ':' || a[1] != '/' || a[2] != '/')
        return fail(m, 400, "invalid request target");
    a += 3;
    for (ae = a; ae < tend && *ae != '/'; ae++)
        ;
    /* The authority must be a plain host[:port]: no userinfo (RFC 9110
     * 4.2.4), not empty (4.2.1). A query right after the authority
     * ("http://h?q") is refused too: turning it into origin-form would need
     * a copy ("/?q") and no real client sends it. */
    if (!valid_host_port(a, (size_t)(ae - a), 0))
        return fail(m, 400, "invalid authority in request target");
    m->target_form = WEIR_TARGET_ABSOLUTE;
    m->authority = (const char *)a;
    m->authority_len = (size_t)(ae - a);
    if (ae == tend) {
        /* RFC 9112 3.2.4: an empty path becomes "*" for OPTIONS, else "/" */
        m->path = m->method_id == WEIR_HTTP_OPTIONS ? star : slash;
        m->path_len = 1;
        return WEIR_OK;
    }
    if (!valid_origin(ae, tend))
        return fail(m, 400, "invalid request target");
    m->path = (const char *)ae;
    m->path_len = (size_t)(tend - ae);
    return WEIR_OK;
}

static int parse_request_head(struct weir_http_msg *m, const char *buf, size_t start, size_t head_len)
{
    const unsigned char *p = (const unsigned char *)buf + start,
                        *hend = (const unsigned char *)buf + head_len;
    const unsigned char *lf, *eol, *q, *t, *tend, *v;
    struct head_info hi;
    int rc, conn_upgrade;

    lf = memchr(p, '\n', (size_t)(hend - p));
    eol = (lf[-1] == '\r') ? lf - 1 : lf; /* lf > p: start is not at a CR or LF */
    if ((size_t)(eol - p) > WEIR_HTTP_MAX_REQUEST_LINE)
        return fail(m, 414, S_REQUEST_LINE_TOO_LONG);

    /* method SP */
    for (q = p; CT(*q, C_TCHAR); q++)
        ;
    if (q == p || *q != ' ')
        return fail(m, 400, "invalid method");
    m->method = (const char *)p;
    m->method_len = (size_t)(q - p);
    m->method_id = method_lookup(p, m->method_len);

    /* request-target SP */
    t = q + 1;
    tend = memchr(t, ' ', (size_t)(eol - t));
    if (tend == NULL || tend == t)
        return fail(m, 400, "invalid request line");
    if ((rc = parse_target(m, t, tend)) != WEIR_OK)
        return rc;

    /* HTTP-version CRLF */
    v = tend + 1;
    if (eol - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !CT(v[5], C_DIGIT) || v[6] != '.' || !CT(v[7], C_DIGIT))
        return fail(m, 400, "invalid HTTP version");
    if (v[5] != '1')
        return fail(m, 505, "unsupported HTTP version");
    /* RFC 9110 2.5: a higher minor version is processed as the highest one
     * we implement (1.1); the upstream request is 1.1 anyway. */
    m->version = v[7] == '0' ? 10 : 11;

    memset(&hi, 0, sizeof(hi));
    if ((rc = parse_fields(m, lf + 1, hend, 1, &hi)) != WEIR_OK)
        return rc;

    if (m->version == 11 && hi.nhost == 0)
        return fail(m, 400, "missing Host");
    if (hi.nte > 0) {
        if (m->version == 10)
            return fail(m, 400, "Transfer-Encoding in HTTP/1.0 request");
        if (hi.cl_seen)
            return fail(m, 400, "Transfer-Encoding with Content-Length");
        m->body = WEIR_BODY_CHUNKED;
    } else if (hi.cl_seen) {
        m->body = WEIR_BODY_LENGTH;
    }

    set_conn_flags(m, &hi, &conn_upgrade);
    /* RFC 9110 7.8: Upgrade is ignored in an HTTP/1.0 request */
    if (conn_upgrade && hi.upgrade_hdr && m->version == 11)
        m->flags |= WEIR_HTTP_F_UPGRADE;
    /* RFC 9110 10.1.1: ignore 100-continue in an HTTP/1.0 request */
    if (hi.expect_100 && m->version == 11)
        m->flags |= WEIR_HTTP_F_EXPECT_100;
    if (hi.te_trailers)
        m->flags |= WEIR_HTTP_F_TE_TRAILERS;
    m->head_len = head_len;
    return WEIR_OK;
}

int weir_http_parse_request(const char *buf, size_t len, size_t max_head, struct weir_http_msg *m)
{
    size_t start = 0, head_len = 0;
    int rc;

    if (m->scan_pos > len) { /* not the same buffer: scan again */
        m->scan_pos = 0;
        m->scan_lines = 0;
    }
    /* RFC 9112 2.2: skip empty lines before the request line. They are
     * skipped again on every call, so their length is capped: a client
     * dribbling bytes after a long run of them cannot make each call cost
     * O(max_head). Real clients send at most one stray CRLF. */
    while (start < len && (buf[start] == '\n' || buf[start] == '\r')) {
        if (start >= MAX_LEADING_EMPTY)
            return fail(m, 400, "too many empty lines before the request line");
        if (buf[start] == '\n') {
            start++;
            continue;
        }
        if (start + 1 == len)
            break;
        if (buf[start + 1] != '\n')
            return fail(m, 400, S_BARE_CR);
        start += 2;
    }
    if (start == len || (buf[start] == '\r' && start + 1 == len)) {
        if (len >= max_head)
            return fail(m, 431, S_HEAD_TOO_LARGE);
        return WEIR_AGAIN;
    }

    rc = head_find_end(buf, len, start, max_head, 1, m, &head_len);
    if (rc != WEIR_OK)
        return rc;
    msg_prepare(m);
    return parse_request_head(m, buf, start, head_len);
}

/* ---- response ---- */

/* Final transfer coding of a response: 1 chunked, 0 something else, -1
 * invalid (no coding, chunked twice, chunked with parameters). */
static int te_final_chunked(const struct weir_http_msg *m)
{
    int last_chunked = 0, nchunked = 0, ncodings = 0;
    size_t i;

    for (i = 0; i < m->nheaders; i++) {
        const char *p, *end, *el;
        size_t el_len;

        if (!is_transfer_encoding(&m->headers[i]))
            continue;
        p = m->headers[i].value;
        end = p + m->headers[i].value_len;
        while (list_next(&p, end, &el, &el_len)) {
            ncodings++;
            last_chunked = 0;
            if (weir_span_ieq(el, el_len, "chunked")) {
                if (nchunked++)
                    return -1;
                last_chunked = 1;
            } else if (el_len > 7 && weir_span_ieq(el, 7, "chunked") &&
                       (el[7] == ';' || el[7] == ' ' || el[7] == '\t')) {
                return -1;
            }
        }
    }
    if (ncodings == 0)
        return -1;
    return last_chunked;
}

static int parse_response_head(struct weir_http_msg *m, const char *buf, size_t head_len, int req_method_id)
{
    const unsigned char *p = (const unsigned char *)buf, *hend = p + head_len;
    const unsigned char *lf, *eol, *r;
    struct head_info hi;
    int rc, conn_upgrade, st;

    lf = memchr(p, '\n', head_len);
    eol = (lf > p && lf[-1] == '\r') ? lf - 1 : lf;

    /* HTTP-version SP 3DIGIT [ SP reason-phrase ] */
    if (eol - p < 12 || memcmp(p, "HTTP/", 5) != 0 || !CT(p[5], C_DIGIT) || p[6] != '.' ||
        !CT(p[7], C_DIGIT) || p[8] != ' ' || !CT(p[9], C_DIGIT) || !CT(p[10], C_DIGIT) || !CT(p[11], C_DIGIT))
        return fail(m, 502, "invalid status line");
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(m, 502, "unsupported HTTP version");
    m->version = p[7] == '1' ? 11 : 10;
    st = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (st < 100 || st > 599)
        return fail(m, 502, "invalid status code");
    m->status = st;
    if (eol - p > 12) {
        if (p[12] != ' ')
            return fail(m, 502, "invalid status line");
        for (r = p + 13; CT(*r, C_VALUE); r++)
            ;
        if (r != eol)
            return fail(m, 502, "invalid reason phrase");
        m->reason = (const char *)p + 13;
        m->reason_len = (size_t)(eol - (p + 13));
    } else {
        m->reason = (const char *)eol;
        m->reason_len = 0;
    }

    memset(&hi, 0, sizeof(hi));
    if ((rc = parse_fields(m, lf + 1, hend, 0, &hi)) != WEIR_OK)
        return rc;

    if (hi.nte > 0 && m->version == 10)
        return fail(m, 502, "Transfer-Encoding in HTTP/1.0 response");
    if (hi.nte > 0 && hi.cl_seen)
        return fail(m, 502, "Transfer-Encoding with Content-Length");

    /* RFC 9112 6.3 */
    if (req_method_id == WEIR_HTTP_HEAD || st < 200 || st == 204 || st == 304 ||
        (req_method_id == WEIR_HTTP_CONNECT && st < 300)) {
        m->body = WEIR_BODY_NONE;
    } else if (hi.nte > 0) {
        int fc = te_final_chunked(m);
        if (fc < 0)
            return fail(m, 502, "invalid Transfer-Encoding");
        m->body = fc ? WEIR_BODY_CHUNKED : WEIR_BODY_EOF;
    } else if (hi.cl_seen) {
        m->body = WEIR_BODY_LENGTH;
    } else {
        m->body = WEIR_BODY_EOF;
    }

    set_conn_flags(m, &hi, &conn_upgrade);
    if (st == 101)
        m->flags |= WEIR_HTTP_F_UPGRADE;
    if (m->body == WEIR_BODY_EOF)
        m->flags &= ~WEIR_HTTP_F_KEEPALIVE;
    m->head_len = head_len;
    return WEIR_OK;
}

int weir_http_parse_response(const char *buf, size_t len, size_t max_head, int req_method_id,
                             struct weir_http_msg *m)
{
    size_t head_len = 0;
    int rc;

    if (m->scan_pos > len) {
        m->scan_pos = 0;
        m->scan_lines = 0;
    }
    if (len == 0)
        return max_head == 0 ? fail(m, 502, S_HEAD_TOO_LARGE) : WEIR_AGAIN;
    rc = head_find_end(buf, len, 0, max_head, 0, m, &head_len);
    if (rc != WEIR_OK)
        return rc;
    msg_prepare(m);
    rc = parse_response_head(m, buf, head_len, req_method_id);
    if (rc == WEIR_ERROR)
        m->error_status = 502;
    return rc;
}
