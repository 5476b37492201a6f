/* http_msg.c - HTTP/1.1 head builders and the status/reason table. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir/http_date.h"
#include "weir/http_msg.h"

/* ---- byte buffer ---- */

int weir_sbuf_grow(struct weir_sbuf *b, size_t n)
{
    if (b->oom)
        return -1;
    size_t ncap = b->cap ? b->cap : 512;
    while (ncap < b->len + n)
        ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (np == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

void weir_sbuf_str(struct weir_sbuf *b, const char *s)
{
    weir_sbuf_add(b, s, strlen(s));
}

void weir_sbuf_u64(struct weir_sbuf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    weir_sbuf_add(b, tmp + i, sizeof(tmp) - i);
}

void weir_sbuf_free(struct weir_sbuf *b)
{
    free(b->p);
    *b = (struct weir_sbuf){0};
}

/* ---- status table ---- */

struct reason {
    short code;
    const char *text;
};

/* RFC 9110 section 15, plus 103 (RFC 8297) and 428/429/431/511 (RFC 6585). */
static const struct reason reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {511, "Network Authentication Required"},
};

static const char *lookup(int status)
{
    size_t lo = 0, hi = WEIR_ARRAY_LEN(reasons);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (reasons[mid].code == status)
            return reasons[mid].text;
        if (reasons[mid].code < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int weir_http_status_known(int status)
{
    return lookup(status) != NULL;
}

const char *weir_http_reason(int status)
{
    const char *r = lookup(status);
    if (r != NULL)
        return r;
    switch (status / 100) {
    case 1:
        return "Informational";
    case 2:
        return "Success";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    default:
        return "Server Error";
    }
}

/* ---- heads ---- */

static int name_is(const struct weir_http_header *h, const char *lname, size_t len)
{
    return h->name_len == len && weir_span_ieq(h->name, h->name_len, lname);
}

static void add_header(struct weir_sbuf *b, const struct weir_http_header *h)
{
    weir_sbuf_add(b, h->name, h->name_len);
    WEIR_SBUF_LIT(b, ": ");
    weir_sbuf_add(b, h->value, h->value_len);
    WEIR_SBUF_LIT(b, "\r\n");
}

static void add_status_line(struct weir_sbuf *b, int status)
{
    char line[] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + status / 100 % 10);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    weir_sbuf_add(b, line, sizeof(line) - 1);
}

/* Append the values of every header named `lname` from index `first` on,
 * each followed by ", " (the start of a merged list such as X-Forwarded-For
 * or Via, to which the caller adds its own entry). */
static void join_values(struct weir_sbuf *b, const struct weir_http_msg *m, int first, const char *lname,
                        size_t len)
{
    if (first < 0)
        return;
    for (size_t i = (size_t)first; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->value_len > 0 && name_is(h, lname, len)) {
            weir_sbuf_add(b, h->value, h->value_len);
            WEIR_SBUF_LIT(b, ", ");
        }
    }
}

int weir_http_build_upstream_head(struct weir_sbuf *b, const struct weir_http_msg *m,
                                  const struct weir_up_head_params *p)
{
    const char *path = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t path_len = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    weir_sbuf_add(b, m->method, m->method_len);
    WEIR_SBUF_LIT(b, " ");
    weir_sbuf_add(b, path, path_len);
    WEIR_SBUF_LIT(b, " HTTP/1.1\r\nHost: ");
    weir_sbuf_add(b, p->host, p->host_len);
    WEIR_SBUF_LIT(b, "\r\n");
    int xff = -1, via = -1, rid_given = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->flags & (WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED))
            continue;
        switch (h->name_len) {
        case 3:
            if (name_is(h, "via", 3)) {
                if (via < 0) /* merged below with our own entry */
                    via = (int)i;
                continue;
            }
            break;
        case 4:
            if (name_is(h, "host", 4))
                continue;
            break;
        case 12:
            if (name_is(h, "x-request-id", 12))
                rid_given = 1;
            break;
        case 15:
            if (name_is(h, "x-forwarded-for", 15)) {
                if (xff < 0)
                    xff = (int)i;
                continue;
            }
            break;
        case 16:
            if (name_is(h, "x-forwarded-host", 16))
                continue; /* we are the edge: ours replaces any client claim */
            break;
        case 17:
            if (name_is(h, "x-forwarded-proto", 17))
                continue;
            break;
        }
        add_header(b, h);
    }
    WEIR_SBUF_LIT(b, "X-Forwarded-For: ");
    join_values(b, m, xff, "x-forwarded-for", 15);
    weir_sbuf_add(b, p->client, p->client_len);
    WEIR_SBUF_LIT(b, "\r\nX-Forwarded-Proto: ");
    weir_sbuf_str(b, p->proto != NULL ? p->proto : "http");
    WEIR_SBUF_LIT(b, "\r\nX-Forwarded-Host: ");
    weir_sbuf_add(b, p->host, p->host_len);
    WEIR_SBUF_LIT(b, "\r\nVia: ");
    join_values(b, m, via, "via", 3);
    if (m->version == 10)
        WEIR_SBUF_LIT(b, "1.0 weir\r\n");
    else
        WEIR_SBUF_LIT(b, "1.1 weir\r\n");
    if (!rid_given && p->rid != NULL && p->rid[0] != '\0') {
        WEIR_SBUF_LIT(b, "X-Request-Id: ");
        weir_sbuf_str(b, p->rid);
        WEIR_SBUF_LIT(b, "\r\n");
    }
    if (m->body == WEIR_BODY_CHUNKED)
        WEIR_SBUF_LIT(b, "Transfer-Encoding: chunked\r\n");
    if (p->upgrade) {
        int ui = weir_http_find_header(m, "upgrade");
        if (ui >= 0) {
            WEIR_SBUF_LIT(b, "Connection: upgrade\r\nUpgrade: ");
            weir_sbuf_add(b, m->headers[ui].value, m->headers[ui].value_len);
            WEIR_SBUF_LIT(b, "\r\n");
        }
    }
    WEIR_SBUF_LIT(b, "\r\n");
    return b->oom ? WEIR_ERROR : WEIR_OK;
}

/* "Date: <IMF-fixdate of now>\r\n", formatted once a second per thread. */
static void add_date_now(struct weir_sbuf *b)
{
    static _Thread_local time_t at = -1;
    static _Thread_local char line[48];
    static _Thread_local size_t len;
    time_t now = time(NULL);
    if (now != at) {
        memcpy(line, "Date: ", 6);
        len = 6 + weir_http_date_format((int64_t)now, line + 6);
        memcpy(line + len, "\r\n", 2);
        len += 2;
        at = now;
    }
    weir_sbuf_add(b, line, len);
}

int weir_http_build_response_head(struct weir_sbuf *b, const struct weir_http_msg *m,
                                  const struct weir_resp_head_params *p)
{
    add_status_line(b, m->status);
    weir_sbuf_add(b, m->reason, m->reason_len);
    WEIR_SBUF_LIT(b, "\r\n");
    int rid_seen = 0, date_seen = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->flags & (WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED))
            continue;
        if (h->name_len == 12 && name_is(h, "x-request-id", 12))
            rid_seen = 1;
        else if (h->name_len == 4 && name_is(h, "date", 4))
            date_seen = 1;
        add_header(b, h);
    }
    if (!p->interim) {
        /* RFC 9110 6.6.1: a recipient with a clock adds the Date a response
         * came without when it forwards it */
        if (!date_seen && m->status >= 200)
            add_date_now(b);
        if (!rid_seen && p->rid != NULL && p->rid[0] != '\0') {
            WEIR_SBUF_LIT(b, "X-Request-Id: ");
            weir_sbuf_str(b, p->rid);
            WEIR_SBUF_LIT(b, "\r\n");
        }
        if (m->status == 101) {
            int ui = weir_http_find_header(m, "upgrade");
            WEIR_SBUF_LIT(b, "Connection: upgrade\r\n");
            if (ui >= 0) {
                WEIR_SBUF_LIT(b, "Upgrade: ");
                weir_sbuf_add(b, m->headers[ui].value, m->headers[ui].value_len);
                WEIR_SBUF_LIT(b, "\r\n");
            }
        } else {
            if (p->chunked)
                WEIR_SBUF_LIT(b, "Transfer-Encoding: chunked\r\n");
            if (p->close)
                WEIR_SBUF_LIT(b, "Connection: close\r\n");
            else if (p->http10)
                WEIR_SBUF_LIT(b, "Connection: keep-alive\r\n");
        }
    }
    WEIR_SBUF_LIT(b, "\r\n");
    return b->oom ? WEIR_ERROR : WEIR_OK;
}

static void add_common(struct weir_sbuf *b, int status, const char *rid, int close)
{
    if (rid != NULL && rid[0] != '\0') {
        WEIR_SBUF_LIT(b, "X-Request-Id: ");
        weir_sbuf_str(b, rid);
        WEIR_SBUF_LIT(b, "\r\n");
    }
    if (status == 503)
        WEIR_SBUF_LIT(b, "Retry-After: 1\r\n");
    if (close)
        WEIR_SBUF_LIT(b, "Connection: close\r\n");
    WEIR_SBUF_LIT(b, "\r\n");
}

/* A local answer with an optional Location field (weir_http_build_local
 * and weir_http_build_redirect). */
static int build_local(struct weir_sbuf *b, int status, const char *location, const char *detail,
                       const char *rid, int close, int head_only, size_t *body_len)
{
    const char *reason = weir_http_reason(status);
    size_t dlen = detail != NULL ? strlen(detail) : 0;
    size_t blen = 4 + strlen(reason) + 1 + (detail != NULL ? dlen + 1 : 0);
    add_status_line(b, status);
    weir_sbuf_str(b, reason);
    if (location != NULL) {
        WEIR_SBUF_LIT(b, "\r\nLocation: ");
        weir_sbuf_str(b, location);
    }
    WEIR_SBUF_LIT(b, "\r\nServer: weir\r\n");
    add_date_now(b); /* weir is the origin of this answer (RFC 9110 6.6.1) */
    WEIR_SBUF_LIT(b, "Content-Type: text/plain\r\nContent-Length: ");
    weir_sbuf_u64(b, blen);
    WEIR_SBUF_LIT(b, "\r\n");
    add_common(b, status, rid, close);
    *body_len = 0;
    if (!head_only) {
        size_t before = b->len;
        weir_sbuf_u64(b, (uint64_t)status);
        WEIR_SBUF_LIT(b, " ");
        weir_sbuf_str(b, reason);
        WEIR_SBUF_LIT(b, "\n");
        if (detail != NULL) {
            weir_sbuf_add(b, detail, dlen);
            WEIR_SBUF_LIT(b, "\n");
        }
        *body_len = b->len - before;
    }
    return b->oom ? WEIR_ERROR : WEIR_OK;
}

int weir_http_build_local(struct weir_sbuf *b, int status, const char *detail, const char *rid, int close,
                          int head_only, size_t *body_len)
{
    return build_local(b, status, NULL, detail, rid, close, head_only, body_len);
}

int weir_http_build_redirect(struct weir_sbuf *b, int status, const char *location, const char *rid,
                             int close, int head_only, size_t *body_len)
{
    return build_local(b, status, location, location, rid, close, head_only, body_len);
}

int weir_http_build_answer_head(struct weir_sbuf *b, int status, const char *fields, size_t fields_len,
                                uint64_t body_len, const char *rid, int close)
{
    add_status_line(b, status);
    weir_sbuf_str(b, weir_http_reason(status));
    WEIR_SBUF_LIT(b, "\r\n");
    weir_sbuf_add(b, fields, fields_len);
    if (status >= 200 && status != 204 && status != 304 && body_len != UINT64_MAX) { /* RFC 9110 8.6 */
        WEIR_SBUF_LIT(b, "Content-Length: ");
        weir_sbuf_u64(b, body_len);
        WEIR_SBUF_LIT(b, "\r\n");
    }
    if (rid != NULL && rid[0] != '\0') {
        WEIR_SBUF_LIT(b, "X-Request-Id: ");
        weir_sbuf_str(b, rid);
        WEIR_SBUF_LIT(b, "\r\n");
    }
    if (close)
        WEIR_SBUF_LIT(b, "Connection: close\r\n");
    WEIR_SBUF_LIT(b, "\r\n");
    return b->oom ? WEIR_ERROR : WEIR_OK;
}
