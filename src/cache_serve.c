/*
 * cache_serve.c - what the client is told: a response answered from a
 * stored object (preconditions, Range, Age, Cache-Status), and the
 * Cache-Status of responses that come from the server (RFC 9211).
 * Depends on cache_stage.h only.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "weir/cache_stage.h"
#include "weir/core.h"
#include "weir/http_msg.h"
#include "weir/log.h"

/* A rarely used field (ranges): formatted, then added. */
static void sb_fmt(struct weir_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_fmt(struct weir_sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        weir_sbuf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void sb_i64(struct weir_sbuf *b, int64_t v)
{
    if (v < 0)
        WEIR_SBUF_LIT(b, "-");
    weir_sbuf_u64(b, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

/* "Age: N" and the Cache-Status field of an answer from the cache: cstatus,
 * or "weir; hit; ttl=N; detail=" + detail (no ttl when ttl is NULL). */
static void add_age_status(struct weir_sbuf *b, const int64_t *age, const char *cstatus, const int64_t *ttl,
                           const char *detail)
{
    if (age != NULL) {
        WEIR_SBUF_LIT(b, "Age: ");
        sb_i64(b, *age);
        WEIR_SBUF_LIT(b, "\r\n");
    }
    WEIR_SBUF_LIT(b, "Cache-Status: ");
    if (cstatus != NULL) {
        weir_sbuf_str(b, cstatus);
    } else {
        WEIR_SBUF_LIT(b, "weir; hit; ");
        if (ttl != NULL) {
            WEIR_SBUF_LIT(b, "ttl=");
            sb_i64(b, *ttl);
            WEIR_SBUF_LIT(b, "; ");
        }
        WEIR_SBUF_LIT(b, "detail=");
        weir_sbuf_str(b, detail);
    }
    WEIR_SBUF_LIT(b, "\r\n");
}

static void release_ref(const void *data, size_t len, void *arg)
{
    weir_cache_obj_release(arg);
}

/* Add body bytes [first, last] of o to buf by reference. */
static int add_body(struct evbuffer *buf, struct weir_cache_obj *o, uint64_t first, uint64_t last)
{
    struct weir_cache_cursor cur = {NULL, 0};
    uint64_t end = last + 1, off = first, len = weir_cache_obj_length(o);
    const char *p;

    if (end > len)
        end = len;
    while (off < end) {
        size_t k = weir_cache_obj_span(o, &cur, off, end, &p);
        if (k == 0)
            return -1;
        weir_cache_obj_retain(o);
        if (evbuffer_add_reference(buf, p, k, release_ref, o) != 0) {
            weir_cache_obj_release(o);
            return -1;
        }
        off += k;
    }
    return 0;
}

/* Stored fields to send (not the ones we set ourselves). */
static int skip_field(const struct weir_http_header *h, int drop_type)
{
    return weir_span_ieq(h->name, h->name_len, "age") ||
           weir_span_ieq(h->name, h->name_len, "x-request-id") ||
           (drop_type && weir_span_ieq(h->name, h->name_len, "content-type"));
}

/* The stored fields, into b grown once (with room for what the caller adds). */
static void add_fields(struct weir_sbuf *b, const struct weir_cache_obj *o, int only_304, int drop_type)
{
    size_t need = 256;
    if (!o->has_date) { /* it came without one: the time weir received it (RFC 9110 6.6.1) */
        char d[40];
        if (b->len + need > b->cap && weir_sbuf_grow(b, need) != 0)
            return;
        WEIR_SBUF_LIT(b, "Date: ");
        weir_sbuf_add(b, d, weir_http_date_format(o->times.date, d));
        WEIR_SBUF_LIT(b, "\r\n");
    }
    if (!only_304 && !drop_type && o->wire != NULL) { /* the usual case: one block */
        if (b->len + o->wire_len + need > b->cap && weir_sbuf_grow(b, o->wire_len + need) != 0)
            return;
        weir_sbuf_add(b, o->wire, o->wire_len);
        return;
    }
    for (size_t i = 0; i < o->nheaders; i++)
        need += o->headers[i].name_len + o->headers[i].value_len + 4;
    if (b->len + need > b->cap && weir_sbuf_grow(b, need) != 0)
        return;
    for (size_t i = 0; i < o->nheaders; i++) {
        const struct weir_http_header *h = &o->headers[i];
        if (skip_field(h, drop_type) || (only_304 && !weir_cache_304_keeps(h->name, h->name_len)))
            continue;
        weir_sbuf_add(b, h->name, h->name_len);
        WEIR_SBUF_LIT(b, ": ");
        weir_sbuf_add(b, h->value, h->value_len);
        WEIR_SBUF_LIT(b, "\r\n");
    }
}

/*
 * Answer x from o with this Cache-Status value (NULL: "weir; hit; ttl=N;
 * detail=" + detail). Evaluates the request's preconditions and Range.
 * Returns WEIR_OK or WEIR_ERROR (nothing was answered).
 */
int cache_serve_cs(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                   const char *detail, const char *cstatus)
{
    const struct weir_http_msg *m = c->req;
    struct weir_sbuf b = {0};
    struct evbuffer *body = NULL;
    struct weir_range r[WEIR_RANGE_MAX];
    size_t nr = 0;
    int status = o->status, cond, range = WEIR_RANGE_NONE, rc;
    uint64_t len = weir_cache_obj_length(o);
    char boundary[40];

    cond = weir_cache_conditional(c->method, m->headers, m->nheaders, o->headers, o->nheaders,
                                  o->times.response_time);
    if (cond == WEIR_COND_NOT_MODIFIED)
        status = 304;
    else if (cond == WEIR_COND_FAILED)
        status = 412;
    else if (o->status == 200)
        range = weir_cache_range(c->method, m->headers, m->nheaders, o->headers, o->nheaders, len, r, &nr);

    if (status == 412) {
        add_age_status(&b, NULL, cstatus, NULL, detail);
        rc = b.oom ? WEIR_ERROR : weir_exchange_respond(c->x, 412, b.p, b.len, NULL);
        weir_sbuf_free(&b);
        return rc;
    }
    add_fields(&b, o, status == 304, range == WEIR_RANGE_MULTI);
    add_age_status(&b, &v->age, cstatus, &v->ttl, detail);
    if (status != 304) {
        body = evbuffer_new();
        if (body == NULL) {
            weir_sbuf_free(&b);
            return WEIR_ERROR;
        }
        if (range == WEIR_RANGE_SINGLE) {
            status = 206;
            sb_fmt(&b, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)r[0].first,
                   (unsigned long long)r[0].last, (unsigned long long)len);
            if (add_body(body, o, r[0].first, r[0].last) < 0)
                b.oom = 1;
        } else if (range == WEIR_RANGE_MULTI) {
            const struct weir_http_header *ct = weir_cache_obj_header(o, "content-type");
            status = 206;
            snprintf(boundary, sizeof(boundary), "weir%016llx",
                     (unsigned long long)weir_now_us() ^ (uintptr_t)c);
            sb_fmt(&b, "Content-Type: multipart/byteranges; boundary=%s\r\n", boundary);
            for (size_t i = 0; i < nr && !b.oom; i++) {
                char part[512];
                int pn = snprintf(part, sizeof(part),
                                  "%s--%s\r\n%s%.*s%sContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                                  i ? "\r\n" : "", boundary, ct ? "Content-Type: " : "",
                                  ct ? (int)(ct->value_len > 200 ? 200 : ct->value_len) : 0,
                                  ct ? ct->value : "", ct ? "\r\n" : "", (unsigned long long)r[i].first,
                                  (unsigned long long)r[i].last, (unsigned long long)len);
                if (evbuffer_add(body, part, (size_t)pn) != 0 || add_body(body, o, r[i].first, r[i].last) < 0)
                    b.oom = 1;
            }
            {
                char tail[64];
                int tn = snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", boundary);
                if (evbuffer_add(body, tail, (size_t)tn) != 0)
                    b.oom = 1;
            }
        } else if (range == WEIR_RANGE_UNSATISFIABLE) {
            status = 416;
            sb_fmt(&b, "Content-Range: bytes */%llu\r\n", (unsigned long long)len);
        } else if (len > 0 && add_body(body, o, 0, len - 1) < 0) {
            b.oom = 1;
        }
    }
    rc = b.oom ? WEIR_ERROR : weir_exchange_respond(c->x, status, b.p, b.len, body);
    if (body != NULL)
        evbuffer_free(body);
    weir_sbuf_free(&b);
    return rc;
}

int cache_serve(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                const char *detail)
{
    return cache_serve_cs(c, o, v, detail, NULL);
}

/* Can o answer this request now? Fills v. */
int cache_usable(struct cx *c, struct weir_cache_obj *o, int64_t lifetime, struct weir_cache_verdict *v)
{
    weir_cache_decide(&o->cc, lifetime, &o->times, &c->qcc, cache_now(), v);
    return v->use == WEIR_USE_FRESH || v->use == WEIR_USE_STALE || v->use == WEIR_USE_STALE_REVALIDATE;
}

/* Cache-Status of a response that comes from the server (RFC 9211 2). */
void cache_add_status(struct weir_exchange *x, const char *fwd, int status, int stored, const char *detail)
{
    char line[192], *q = line;
    size_t fl = strlen(fwd), dl = detail != NULL ? strlen(detail) : 0;

    if (fl + dl > 100 || status < 0 || status > 999)
        return;
#define PUT(s, n) (memcpy(q, (s), (n)), q += (n))
    PUT("Cache-Status: weir; fwd=", 24);
    PUT(fwd, fl);
    PUT("; fwd-status=", 13);
    *q++ = (char)('0' + status / 100);
    *q++ = (char)('0' + status / 10 % 10);
    *q++ = (char)('0' + status % 10);
    if (stored)
        PUT("; stored", 8);
    if (detail != NULL) {
        PUT("; detail=", 9);
        PUT(detail, dl);
    }
    PUT("\r\n", 2);
#undef PUT
    weir_exchange_add_response_field(x, line, (size_t)(q - line));
}

/* Cache-Status of an error weir answered itself after going forward: no
 * fwd-status (no server answered), the failure in detail. */
void cache_add_local_status(struct weir_exchange *x, const char *fwd, int status)
{
    const char *why = status == 504 ? "upstream-timeout" : status == 503 ? "no-server" : "upstream-error";
    char line[160];
    int n = snprintf(line, sizeof(line), "Cache-Status: weir; fwd=%s; detail=%s\r\n", fwd, why);

    if (n > 0 && (size_t)n < sizeof(line))
        weir_exchange_add_response_field(x, line, (size_t)n);
}

/* A filter that only says Cache-Status on a response not stored (HEAD,
 * no-store, other methods, waiters released to the backend). */
struct status {
    const char *fwd, *detail;
};

static int status_on_head(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m)
{
    struct status *st = fdata;

    cache_add_status(x, st->fwd, m->status, 0, st->detail);
    return WEIR_DECLINED; /* nothing more to see */
}

static void status_free(struct weir_exchange *x, void *fdata)
{
    free(fdata);
}

static void status_on_local(struct weir_exchange *x, void *fdata, int status)
{
    cache_add_local_status(x, ((struct status *)fdata)->fwd, status);
}

static const struct weir_resp_filter status_filter = {"cache-status", status_on_head, NULL,
                                                      status_free,    status_free,    status_on_local};

void cache_attach_status(struct weir_exchange *x, const char *fwd, const char *detail)
{
    struct status *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return;
    st->fwd = fwd;
    st->detail = detail;
    if (weir_exchange_add_filter(x, &status_filter, st) != WEIR_OK)
        free(st);
}

/* A body of unknown length: copied through the object's reader (it may
 * drop what every reader has read, so nothing is sent by reference). */
static int stream_pull_reader(struct cx *c, struct evbuffer *out, size_t max)
{
    struct weir_cache_obj *o = c->sobj;
    int state = weir_cache_obj_state(o); /* before the read: a final state covers every byte */
    struct evbuffer_iovec v;
    long got = 0;

    if (max > 0) {
        if (evbuffer_reserve_space(out, (ev_ssize_t)max, &v, 1) < 1)
            return WEIR_ERROR;
        got = weir_cache_obj_read(o, &c->rdr, v.iov_base, v.iov_len < max ? v.iov_len : max);
        v.iov_len = got > 0 ? (size_t)got : 0;
        if (got < 0 || evbuffer_commit_space(out, &v, 1) != 0)
            return WEIR_ERROR; /* cut: it fell too far behind */
        c->ssent += (uint64_t)got;
    }
    if (c->ssent < weir_cache_obj_length(o))
        return WEIR_OK;
    if (state == WEIR_OBJ_COMPLETE || state == WEIR_OBJ_PASSED)
        return WEIR_DONE;
    return state == WEIR_OBJ_ABANDONED ? WEIR_ERROR : WEIR_OK;
}

static int stream_pull(struct weir_exchange *x, void *arg, struct evbuffer *out, size_t max)
{
    struct cx *c = arg;
    struct weir_cache_obj *o = c->sobj;
    int state = weir_cache_obj_state(o); /* before the length: a final state covers every byte */
    uint64_t len = weir_cache_obj_length(o), n;

    if (c->rdr_on)
        return stream_pull_reader(c, out, max);

    if (c->ssent < len) {
        n = len - c->ssent < max ? len - c->ssent : max;
        if (n > 0 && add_body(out, o, c->ssent, c->ssent + n - 1) < 0)
            return WEIR_ERROR;
        c->ssent += n;
        return WEIR_OK;
    }
    /* all there is was sent: abandoned means it will never be complete */
    return state == WEIR_OBJ_ABANDONED ? WEIR_ERROR : WEIR_OK;
}

static const struct weir_resp_source stream_source = {stream_pull};

int cache_serve_stream(struct cx *c, struct weir_cache_obj *o, const char *cstatus)
{
    const struct weir_http_msg *m = c->req;
    struct weir_cache_verdict v;
    struct weir_sbuf b = {0};
    int rc;

    if ((o->expected_len == UINT64_MAX && o->rd == NULL) || weir_http_find_header(m, "range") >= 0 ||
        weir_cache_conditional(c->method, m->headers, m->nheaders, o->headers, o->nheaders,
                               o->times.response_time) != WEIR_COND_NONE ||
        !cache_usable(c, o, o->lifetime, &v))
        return WEIR_DECLINED;
    if (o->vary_names[0] != '\0') {
        size_t vl;
        char *vv = weir_cache_vary_values(o->vary_names, m->headers, m->nheaders, &vl);
        int same = vv != NULL && vl == o->vary_values_len && memcmp(vv, o->vary_values, vl) == 0;
        free(vv);
        if (!same)
            return WEIR_DECLINED;
    }
    add_fields(&b, o, 0, 0);
    add_age_status(&b, &v.age, cstatus, NULL, NULL);
    if (o->expected_len == UINT64_MAX) {
        /* before the head goes: from now on the object keeps what c has not read */
        if (b.oom || weir_cache_obj_reader_add(o, &c->rdr) != WEIR_OK) {
            weir_sbuf_free(&b);
            return WEIR_DECLINED;
        }
        c->rdr_on = 1;
    }
    weir_cache_obj_retain(o);
    c->sobj = o;
    c->ssent = 0;
    rc = b.oom
             ? WEIR_ERROR
             : weir_exchange_respond_stream(c->x, o->status, b.p, b.len, o->expected_len, &stream_source, c);
    weir_sbuf_free(&b);
    if (rc != WEIR_OK) {
        cache_stream_stop(c);
        return WEIR_DECLINED;
    }
    return WEIR_OK;
}

void cache_stream_stop(struct cx *c)
{
    if (c->sobj == NULL)
        return;
    if (c->rdr_on)
        weir_cache_obj_reader_remove(c->sobj, &c->rdr);
    c->rdr_on = 0;
    weir_cache_obj_release(c->sobj);
    c->sobj = NULL;
}
