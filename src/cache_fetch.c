/*
 * cache_fetch.c - revalidation fetches made by the cache itself (see
 * include/weir/cache_fetch.h): one connection, one GET with validators,
 * the whole response parsed with weir's own parser, the result turned into
 * a stored object (new, or the stale one freshened by a 304).
 */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "weir/cache_fetch.h"
#include "weir/cache_rules.h"
#include "weir/core.h"
#include "weir/server.h"

#define FETCH_MAX_HEAD 65536

struct weir_cache_fetch {
    struct bufferevent *bev;
    struct event *deadline;
    struct weir_server *server;
    struct weir_cache_obj *stale; /* NULL for a fresh fetch */
    char *key, *url;              /* of the object to build */
    char *reqhead;                /* the varied request fields, "Name: value\r\n" lines, for Vary values */
    struct weir_http_header vh[32];
    size_t nvh;
    size_t max_object_bytes;
    int64_t request_time;
    weir_cache_fetch_cb cb;
    void *arg;
    /* incremental framing */
    struct weir_http_msg msg;
    int have_head;
    size_t head_len;
    struct weir_chunked ch;
    size_t scanned; /* body bytes already scanned (chunked) */
    int complete;
};

static _Atomic unsigned rr; /* spreads fetches over the pool's servers */

static struct weir_server *pick(const struct weir_pool *pool)
{
    size_t n = pool->set.n, i, start;

    /* a fetch speaks plain HTTP: a pool reached over TLS is left to the
     * session's upstream stage (the callers fall back to it at once,
     * instead of a doomed plain connection to a TLS port) */
    if (n == 0 || pool->tls != NULL)
        return NULL;
    start = atomic_fetch_add_explicit(&rr, 1, memory_order_relaxed) % n;
    for (i = 0; i < n; i++) {
        struct weir_server *s = pool->set.v[(start + i) % n];
        if (weir_server_available(s))
            return s;
    }
    return NULL;
}

int weir_cache_fetch_pool_available(const struct weir_pool *pool)
{
    for (size_t i = 0; i < pool->set.n; i++)
        if (weir_server_available(pool->set.v[i]))
            return 1;
    return 0;
}

static void fetch_free(struct weir_cache_fetch *f)
{
    if (f->bev != NULL)
        bufferevent_free(f->bev);
    if (f->deadline != NULL)
        event_free(f->deadline);
    if (f->server != NULL)
        weir_server_release(f->server);
    weir_cache_obj_release(f->stale);
    free(f->key);
    free(f->url);
    free(f->reqhead);
    free(f);
}

static void finish(struct weir_cache_fetch *f, int result, struct weir_cache_obj *obj, int status)
{
    weir_cache_fetch_cb cb = f->cb;
    void *arg = f->arg;

    fetch_free(f);
    cb(arg, result, obj, status);
}

struct body_sink {
    struct weir_cache_obj *o;
    int failed;
};

static void chunk_data(void *ud, const char *p, size_t n)
{
    struct body_sink *b = ud;
    if (b->o != NULL && !b->failed && weir_cache_obj_append(b->o, p, n) != WEIR_OK)
        b->failed = 1;
}

/* The whole response is in the input buffer: decide. */
static void conclude(struct weir_cache_fetch *f)
{
    struct evbuffer *in = bufferevent_get_input(f->bev);
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    struct weir_http_msg m;
    struct weir_cc rcc;
    struct body_sink sink = {NULL, 0};
    int64_t now = (int64_t)time(NULL);
    int reason;

    weir_http_msg_reset(&m);
    if (p == NULL || weir_http_parse_response(p, len, FETCH_MAX_HEAD, WEIR_HTTP_GET, &m) != WEIR_OK) {
        finish(f, WEIR_FETCH_ERROR, NULL, 0);
        return;
    }
    if (m.status == 304) {
        struct weir_cache_obj *o = NULL;
        if (f->stale != NULL &&
            weir_cache_304_selects(f->stale->headers, f->stale->nheaders, m.headers, m.nheaders))
            o = weir_cache_obj_freshen(f->stale, m.headers, m.nheaders, f->request_time, now);
        /* the stored response updated with the 304's fields is stored
         * only if a 200 with them would be: a Set-Cookie, private or
         * no-store the 304 brought must not reach every later client */
        if (o != NULL && weir_cache_storable(WEIR_HTTP_GET, f->vh, f->nvh, o->status, o->headers, o->nheaders,
                                             &o->cc) != WEIR_STORE_OK) {
            weir_cache_obj_release(o);
            o = NULL;
        }
        finish(f, o != NULL ? WEIR_FETCH_NOT_MODIFIED : WEIR_FETCH_NOT_STORABLE, o, 304);
        return;
    }
    if (m.status >= 500) {
        finish(f, WEIR_FETCH_ERROR, NULL, m.status);
        return;
    }
    weir_cc_response(&rcc, m.headers, m.nheaders);
    reason = weir_cache_storable(WEIR_HTTP_GET, f->vh, f->nvh, m.status, m.headers, m.nheaders, &rcc);
    if (reason != WEIR_STORE_OK) {
        finish(f, WEIR_FETCH_NOT_STORABLE, NULL, m.status);
        return;
    }
    if (weir_cache_worth_storing(m.headers, m.nheaders, &rcc) != WEIR_STORE_OK) {
        finish(f, WEIR_FETCH_NOT_STORABLE, NULL, m.status);
        return;
    }
    sink.o = weir_cache_obj_new(f->key, f->url, f->vh, f->nvh, m.status, m.headers, m.nheaders,
                                f->request_time, now, f->max_object_bytes);
    if (sink.o == NULL || weir_cache_obj_state(sink.o) != WEIR_OBJ_GROWING) {
        weir_cache_obj_release(sink.o);
        finish(f, WEIR_FETCH_ERROR, NULL, m.status);
        return;
    }
    if (m.body == WEIR_BODY_CHUNKED) {
        struct weir_chunked ch;
        size_t used;
        weir_chunked_init(&ch);
        if (weir_chunked_parse(&ch, p + m.head_len, len - m.head_len, &used, chunk_data, &sink) != WEIR_OK)
            sink.failed = 1;
    } else if (m.body == WEIR_BODY_LENGTH) {
        if (len - m.head_len < m.content_length ||
            weir_cache_obj_append(sink.o, p + m.head_len, (size_t)m.content_length) != WEIR_OK)
            sink.failed = 1;
    } else if (m.body == WEIR_BODY_EOF && len > m.head_len) {
        if (weir_cache_obj_append(sink.o, p + m.head_len, len - m.head_len) != WEIR_OK)
            sink.failed = 1;
    }
    if (sink.failed || weir_cache_obj_finish(sink.o) != WEIR_OK) {
        weir_cache_obj_release(sink.o);
        finish(f, WEIR_FETCH_ERROR, NULL, m.status);
        return;
    }
    finish(f, WEIR_FETCH_STORED, sink.o, m.status);
}

/* Is the response complete? Updates the framing state with new bytes. */
static int check_complete(struct weir_cache_fetch *f, int eof)
{
    struct evbuffer *in = bufferevent_get_input(f->bev);
    size_t len = evbuffer_get_length(in);
    const char *p;

    if (!f->have_head) {
        p = (const char *)evbuffer_pullup(in, len < FETCH_MAX_HEAD ? (ssize_t)len : FETCH_MAX_HEAD);
        int rc = weir_http_parse_response(p, len < FETCH_MAX_HEAD ? len : FETCH_MAX_HEAD, FETCH_MAX_HEAD,
                                          WEIR_HTTP_GET, &f->msg);
        if (rc == WEIR_AGAIN)
            return eof ? -1 : 0;
        if (rc != WEIR_OK)
            return -1;
        f->have_head = 1;
        f->head_len = f->msg.head_len;
        weir_chunked_init(&f->ch);
    }
    if (len - f->head_len > f->max_object_bytes + 65536)
        return -1; /* too big to store: let the caller fall back */
    switch (f->msg.body) {
    case WEIR_BODY_NONE:
        return 1;
    case WEIR_BODY_LENGTH:
        return len - f->head_len >= f->msg.content_length ? 1 : eof ? -1 : 0;
    case WEIR_BODY_CHUNKED: {
        size_t used;
        int rc;
        p = (const char *)evbuffer_pullup(in, -1);
        rc = weir_chunked_parse(&f->ch, p + f->head_len + f->scanned, len - f->head_len - f->scanned, &used,
                                NULL, NULL);
        f->scanned += used;
        if (rc == WEIR_OK)
            return 1;
        if (rc == WEIR_ERROR)
            return -1;
        return eof ? -1 : 0;
    }
    default: /* until close */
        return eof ? 1 : 0;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct weir_cache_fetch *f = arg;
    int c = check_complete(f, 0);

    if (c < 0)
        finish(f, WEIR_FETCH_ERROR, NULL, f->have_head ? f->msg.status : 0);
    else if (c > 0)
        conclude(f);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct weir_cache_fetch *f = arg;

    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF) {
        int c = check_complete(f, 1);
        if (c > 0)
            conclude(f);
        else
            finish(f, WEIR_FETCH_ERROR, NULL, f->have_head ? f->msg.status : 0);
        return;
    }
    finish(f, WEIR_FETCH_ERROR, NULL, 0); /* connect error, reset */
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_cache_fetch *f = arg;
    finish(f, WEIR_FETCH_ERROR, NULL, 0);
}

void weir_cache_fetch_cancel(struct weir_cache_fetch *f)
{
    if (f != NULL)
        fetch_free(f);
}

/* Fields a fresh fetch does not pass on: hop-by-hop and connection
 * fields, what the fetch sets itself, and what would make the origin send
 * less than the whole object (RFC 9111 4: the cache fetches the whole
 * response to store it). */
static int fresh_skips(const struct weir_http_header *h)
{
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "te",
                                        "trailer",
                                        "transfer-encoding",
                                        "upgrade",
                                        "proxy-authorization",
                                        "proxy-connection",
                                        "host",
                                        "content-length",
                                        "expect",
                                        "range",
                                        "if-range",
                                        "if-match",
                                        "if-none-match",
                                        "if-modified-since",
                                        "if-unmodified-since",
                                        "via",
                                        "http2-settings",
                                        "x-forwarded-proto"};
    for (size_t i = 0; i < WEIR_ARRAY_LEN(names); i++)
        if (weir_span_ieq(h->name, h->name_len, names[i]))
            return 1;
    return 0;
}

/* Keep the request fields a fetch sends (and stores for Vary): for a
 * revalidation the stale object's varied ones; for a fresh fetch every
 * end-to-end field but those fresh_skips() names. 0 when they do not fit. */
static int keep_fields(struct weir_cache_fetch *f, const struct weir_http_header *req, size_t nreq)
{
    const char *names = f->stale != NULL ? f->stale->vary_names : NULL;
    size_t i, pos = 0, total = 0;

    for (i = 0; i < nreq; i++)
        total += req[i].name_len + req[i].value_len + 2;
    f->reqhead = malloc(total + 1);
    if (f->reqhead == NULL)
        return 0;
    for (i = 0; i < nreq; i++) {
        int keep = 0;
        if (names != NULL) {
            const char *q = names;
            while (*q != '\0' && !keep) {
                size_t nl = strcspn(q, ",");
                keep = nl == req[i].name_len && strncasecmp(q, req[i].name, nl) == 0;
                q += nl + (q[nl] == ',');
            }
        } else {
            keep = !fresh_skips(&req[i]);
        }
        if (!keep)
            continue;
        if (f->nvh == WEIR_ARRAY_LEN(f->vh))
            return names != NULL; /* a revalidation sends what fits; a fresh fetch must send all */
        memcpy(f->reqhead + pos, req[i].name, req[i].name_len);
        f->vh[f->nvh].name = f->reqhead + pos;
        f->vh[f->nvh].name_len = req[i].name_len;
        pos += req[i].name_len;
        f->reqhead[pos++] = '\0';
        memcpy(f->reqhead + pos, req[i].value, req[i].value_len);
        f->vh[f->nvh].value = f->reqhead + pos;
        f->vh[f->nvh].value_len = req[i].value_len;
        pos += req[i].value_len;
        f->reqhead[pos++] = '\0';
        f->vh[f->nvh].flags = 0;
        f->nvh++;
    }
    return 1;
}

static struct weir_cache_fetch *fetch_begin(struct event_base *base, const struct weir_pool *pool,
                                            struct weir_cache_obj *stale, const char *key, const char *url,
                                            const struct weir_http_header *req, size_t nreq, int timeout_ms,
                                            size_t max_object_bytes, weir_cache_fetch_cb cb, void *arg)
{
    struct weir_cache_fetch *f;
    struct weir_server *s = pick(pool);
    const char *host, *path;
    struct evbuffer *out;
    struct timeval tv;
    size_t i;

    /* the URL's scheme is the client's; the fetch goes to the pool as the
     * session does */
    if (s == NULL || key == NULL || url == NULL ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return NULL;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    weir_server_retain(s);
    f->server = s;
    if (stale != NULL)
        weir_cache_obj_retain(stale);
    f->stale = stale;
    f->cb = cb;
    f->arg = arg;
    f->max_object_bytes = max_object_bytes;
    f->request_time = (int64_t)time(NULL);
    weir_http_msg_reset(&f->msg);
    /* the request fields, copied: the request may end before us */
    if ((f->key = strdup(key)) == NULL || (f->url = strdup(url)) == NULL || !keep_fields(f, req, nreq))
        goto fail;

    f->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    f->deadline = evtimer_new(base, deadline_cb, f);
    if (f->bev == NULL || f->deadline == NULL)
        goto fail;
    bufferevent_setcb(f->bev, read_cb, NULL, event_cb, f);
    out = bufferevent_get_output(f->bev);
    host = f->url + (f->url[4] == 's' ? 8 : 7);
    path = strchr(host, '/');
    if (path == NULL)
        goto fail;
    evbuffer_add_printf(out, "GET %s HTTP/1.1\r\nHost: %.*s\r\n", path, (int)(path - host), host);
    for (i = 0; i < f->nvh; i++)
        evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)f->vh[i].name_len, f->vh[i].name,
                            (int)f->vh[i].value_len, f->vh[i].value);
    if (stale != NULL) {
        const struct weir_http_header *et = weir_cache_obj_header(stale, "etag");
        const struct weir_http_header *lm = weir_cache_obj_header(stale, "last-modified");
        if (et != NULL)
            evbuffer_add_printf(out, "If-None-Match: %.*s\r\n", (int)et->value_len, et->value);
        if (lm != NULL)
            evbuffer_add_printf(out, "If-Modified-Since: %.*s\r\n", (int)lm->value_len, lm->value);
    }
    /* the scheme the key names, as the session tells the backend: an HTTPS
     * entry is refreshed with what HTTPS clients get */
    evbuffer_add_printf(out, "X-Forwarded-Proto: %s\r\nVia: 1.1 weir\r\nConnection: close\r\n\r\n",
                        f->url[4] == 's' ? "https" : "http");
    if (bufferevent_socket_connect(f->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) != 0)
        goto fail;
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(f->deadline, &tv);
    return f;
fail:
    fetch_free(f);
    return NULL;
}

struct weir_cache_fetch *weir_cache_fetch_start(struct event_base *base, const struct weir_pool *pool,
                                                struct weir_cache_obj *stale,
                                                const struct weir_http_header *req, size_t nreq,
                                                int timeout_ms, size_t max_object_bytes,
                                                weir_cache_fetch_cb cb, void *arg)
{
    if (stale == NULL)
        return NULL;
    return fetch_begin(base, pool, stale, stale->key, stale->url, req, nreq, timeout_ms, max_object_bytes, cb,
                       arg);
}

struct weir_cache_fetch *weir_cache_fetch_fresh(struct event_base *base, const struct weir_pool *pool,
                                                const char *key, const char *url,
                                                const struct weir_http_header *req, size_t nreq,
                                                int timeout_ms, size_t max_object_bytes,
                                                weir_cache_fetch_cb cb, void *arg)
{
    return fetch_begin(base, pool, NULL, key, url, req, nreq, timeout_ms, max_object_bytes, cb, arg);
}
