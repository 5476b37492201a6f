/*
 * exchange.c - bookkeeping of one exchange shared by the session and its
 * stages: server and upstream release, passive health, gauges, statistics,
 * the access log line, response filters, and the hook-facing accessors.
 * Calls nothing above it (see session_int.h).
 */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session_int.h"
#include "weir/access_log.h"
#include "weir/health.h"
#include "weir/http_msg.h"
#include "weir/log.h"
#include "weir/stats.h"
#include "weir/tls.h"
#include "weir/transport_tls.h"
#include "weir/upstream.h"

size_t weir_x_read_hwm(const struct weir_rt *rt)
{
    size_t need = rt->conf->limits.header_bytes + WEIR_HTTP_MAX_REQUEST_LINE + 64;
    return need > WEIR_S_HWM ? need : WEIR_S_HWM;
}

void weir_x_release_server(struct weir_session *s)
{
    if (s->x->server == NULL)
        return;
    atomic_fetch_sub_explicit(&s->x->server->active, 1, memory_order_relaxed);
    if (s->x->pool != NULL && s->x->pool->lb->release != NULL)
        s->x->pool->lb->release(s->x->pool->lb_state[s->w->id], s->x->server);
    s->x->server = NULL;
}

void weir_x_drop_upstream(struct weir_session *s)
{
    if (s->x->up != NULL) {
        weir_up_close(s->x->up);
        weir_stats_gauge_add(s->w->id, WEIR_G_UP_ACTIVE, -1);
        s->x->up = NULL;
    }
    s->x->up_ready = 0;
}

void weir_x_set_gauge(struct weir_session *s, int g)
{
    if (s->gauge == g)
        return;
    if (s->gauge >= 0)
        weir_stats_gauge_add(s->w->id, s->gauge, -1);
    if (g >= 0)
        weir_stats_gauge_add(s->w->id, g, 1);
    s->gauge = g;
}

void weir_x_note_outcome(struct weir_session *s, int outcome)
{
    static const int uperr[] = {[WEIR_OUTCOME_OK] = WEIR_UPERR_NONE,
                                [WEIR_OUTCOME_CONNECT] = WEIR_UPERR_CONNECT,
                                [WEIR_OUTCOME_RESET] = WEIR_UPERR_RESET,
                                [WEIR_OUTCOME_TIMEOUT] = WEIR_UPERR_TIMEOUT,
                                [WEIR_OUTCOME_5XX] = WEIR_UPERR_5XX};
    if (s->x->server == NULL || s->x->pool == NULL)
        return;
    weir_health_report(s->x->pool, s->x->server, outcome);
    if (outcome != WEIR_OUTCOME_OK) {
        weir_stats_upstream_error(s->x->server->stats, s->w->id, uperr[outcome]);
        weir_stats_upstream_error(s->x->pool->stats, s->w->id, uperr[outcome]);
        weir_stats_upstream_error(weir_stats_global(), s->w->id, uperr[outcome]);
    }
}

/* ---- log fields ---- */

void weir_x_lf_set(struct weir_session *s, int idx, const char *p, size_t n)
{
    if (n > 4096)
        n = 4096;
    if (s->x->lf_len + n + 1 > s->x->lf_cap) {
        size_t ncap = s->x->lf_cap ? s->x->lf_cap : 256;
        while (ncap < s->x->lf_len + n + 1)
            ncap *= 2;
        char *np = realloc(s->x->lf, ncap);
        if (np == NULL)
            return;
        s->x->lf = np;
        s->x->lf_cap = ncap;
    }
    memcpy(s->x->lf + s->x->lf_len, p, n);
    s->x->lf_off[idx] = (uint32_t)s->x->lf_len;
    s->x->lf_n[idx] = (uint32_t)n;
    s->x->lf_len += n;
    s->x->lf[s->x->lf_len++] = '\0';
}

static const char *lf_get(const struct weir_session *s, int idx, size_t *n)
{
    *n = s->x->lf_n[idx];
    return *n ? s->x->lf + s->x->lf_off[idx] : NULL;
}

static void record_stats(struct weir_session *s, uint64_t now)
{
    struct weir_stats_sample smp = {
        .status = s->x->status,
        .ttfb_us = s->x->t_first && s->x->t_up ? s->x->t_first - s->x->t_up : 0,
        .total_us = now - s->x->t_start,
        .bytes_in = s->x->bytes_in,
        .bytes_out = s->x->bytes_out,
        .retries = s->x->ntried > 1 ? s->x->ntried - 1 : 0,
        .now_us = now,
    };
    int id = s->w->id;
    weir_stats_record(weir_stats_global(), id, &smp);
    if (s->x->pool != NULL)
        weir_stats_record(s->x->pool->stats, id, &smp);
    if (s->x->route != NULL)
        weir_stats_record(s->x->route->stats, id, &smp);
    if (s->x->ntried > 0)
        weir_stats_record(s->x->tried[s->x->ntried - 1]->stats, id, &smp);
}

void weir_x_tunnel_detach(struct weir_session *s)
{
    record_stats(s, weir_now_us());
    if (s->x->pool != NULL)
        weir_x_lf_set(s, LF_POOL, s->x->pool->name, strlen(s->x->pool->name));
    if (s->x->ntried > 0)
        weir_x_lf_set(s, LF_UP, s->x->tried[s->x->ntried - 1]->address,
                      strlen(s->x->tried[s->x->ntried - 1]->address));
    weir_x_release_server(s);
    s->x->pool = NULL;
    s->x->route = NULL;
    s->x->detached = 1;
    if (s->x->rt != NULL) {
        weir_rt_release(s->x->rt);
        s->x->rt = NULL;
    }
}

void weir_x_log(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    uint64_t now = weir_now_us();
    if (!s->x->detached)
        record_stats(s, now);
    if (weir_alog_fd() < 0)
        return;
    struct weir_access_rec r = {
        .client = s->peer,
        .rid = s->x->rid,
        .rid_len = strlen(s->x->rid),
        .http10 = s->x->version == 10,
        .status = s->x->status,
        .bytes = s->x->bytes_out,
        .pool = s->x->pool != NULL ? s->x->pool->name : NULL,
        .upstream = s->x->ntried > 0 ? s->x->tried[s->x->ntried - 1]->address : NULL,
        .upstream_s = s->x->t_first && s->x->t_up ? (double)(s->x->t_first - s->x->t_up) / 1e6 : -1,
        .total_s = (double)(now - s->x->t_start) / 1e6,
        .tries = s->x->ntried,
    };
    r.method = lf_get(s, LF_METHOD, &r.method_len);
    r.target = lf_get(s, LF_TARGET, &r.target_len);
    r.host = lf_get(s, LF_HOST, &r.host_len);
    r.referer = lf_get(s, LF_REFERER, &r.referer_len);
    r.ua = lf_get(s, LF_UA, &r.ua_len);
    if (s->x->detached) {
        size_t n;
        r.pool = lf_get(s, LF_POOL, &n);
        r.upstream = lf_get(s, LF_UP, &n);
    }
    const SSL *ssl = s->cc != NULL ? weir_xprt_tls_ssl(s->cc) : NULL;
    if (ssl != NULL)
        weir_tls_info(ssl, &r.tls_version, &r.tls_cipher, &r.tls_sni);
    char line[WEIR_ACCESS_LINE_MAX];
    int json = w->rt != NULL && w->rt->conf->log.format == WEIR_LOG_JSON;
    size_t n = weir_access_format(line, sizeof(line), json, w->clf_time, w->iso_time, &r);
    weir_alog_append(&w->alog, line, n);
}

/* ---- filters ---- */

static void filter_detach(struct weir_session *s, int i, int complete)
{
    struct weir_filter_slot f = s->x->filters[i];
    memmove(&s->x->filters[i], &s->x->filters[i + 1],
            (size_t)(s->x->nfilters - i - 1) * sizeof(s->x->filters[0]));
    s->x->nfilters--;
    if (complete && f.f->on_end != NULL)
        f.f->on_end((struct weir_exchange *)s, f.data);
    else if (!complete && f.f->on_abort != NULL)
        f.f->on_abort((struct weir_exchange *)s, f.data);
}

void weir_x_filters_head(struct weir_session *s, const struct weir_http_msg *m)
{
    s->x->in_head_filters = 1;
    for (int i = 0; i < s->x->nfilters;) {
        const struct weir_filter_slot *f = &s->x->filters[i];
        if (f->f->on_head != NULL && f->f->on_head((struct weir_exchange *)s, f->data, m) != WEIR_OK)
            filter_detach(s, i, 0);
        else
            i++;
    }
    s->x->in_head_filters = 0;
}

void weir_x_filters_data(struct weir_session *s, const char *p, size_t n)
{
    for (int i = 0; i < s->x->nfilters;) {
        const struct weir_filter_slot *f = &s->x->filters[i];
        if (f->f->on_data != NULL && f->f->on_data((struct weir_exchange *)s, f->data, p, n) != WEIR_OK)
            filter_detach(s, i, 0);
        else
            i++;
    }
}

void weir_x_filters_local(struct weir_session *s, int status)
{
    s->x->in_head_filters = 1;
    for (int i = 0; i < s->x->nfilters; i++) {
        const struct weir_filter_slot *f = &s->x->filters[i];
        if (f->f->on_local != NULL)
            f->f->on_local((struct weir_exchange *)s, f->data, status);
    }
    s->x->in_head_filters = 0;
}

void weir_x_filters_end(struct weir_session *s, int complete)
{
    while (s->x->nfilters > 0)
        filter_detach(s, 0, complete);
}

/* ---- begin / end ---- */

/*
 * Finished exchange states are kept for the next request, per worker
 * thread (a few, with their head and log-field buffers), so a request
 * costs no calloc/realloc/free of them: callgrind counted ~1,100 of the
 * ~15,100 user-space instructions of a proxied request in those calls.
 * Idle connections still hold none (the idle memory target); a thread's
 * cache is freed when the thread exits (pthread key destructor).
 */
#define X_CACHE_MAX 16
#define X_KEEP_BUF  4096 /* buffers larger than this are not kept */

struct x_cache {
    int n;
    struct weir_xstate *x[X_CACHE_MAX];
};

static __thread struct x_cache *x_cache;
static pthread_key_t x_cache_key;
static pthread_once_t x_cache_once = PTHREAD_ONCE_INIT;

static void x_free(struct weir_xstate *x)
{
    free(x->uphead);
    free(x->lf);
    weir_sbuf_free(&x->resp_fields);
    free(x);
}

static void x_cache_destroy(void *arg)
{
    struct x_cache *c = arg;
    for (int i = 0; i < c->n; i++)
        x_free(c->x[i]);
    free(c);
    x_cache = NULL;
}

static void x_cache_key_init(void)
{
    if (pthread_key_create(&x_cache_key, x_cache_destroy) != 0)
        abort();
}

static struct x_cache *x_cache_get(void)
{
    if (x_cache == NULL) {
        pthread_once(&x_cache_once, x_cache_key_init);
        struct x_cache *c = calloc(1, sizeof(*c));
        if (c == NULL || pthread_setspecific(x_cache_key, c) != 0) {
            free(c);
            return NULL;
        }
        x_cache = c;
    }
    return x_cache;
}

int weir_x_begin(struct weir_session *s)
{
    struct x_cache *c = x_cache;
    struct weir_xstate *x;
    if (c != NULL && c->n > 0) {
        x = c->x[--c->n]; /* cleared by weir_x_reset, buffers kept */
    } else {
        x = calloc(1, sizeof(*x));
        if (x == NULL)
            return WEIR_ERROR;
    }
    s->x = x;
    return WEIR_OK;
}

void weir_x_reset(struct weir_session *s)
{
    struct weir_xstate *x = s->x;
    if (x == NULL)
        return;
    weir_x_filters_end(s, 0);
    weir_x_release_server(s);
    weir_x_drop_upstream(s);
    if (x->timer_on)
        evtimer_del(&x->timer);
    if (x->rt != NULL)
        weir_rt_release(x->rt);
    free(x->up_proto);
    free(x->location);
    struct weir_sbuf fields = x->resp_fields; /* kept below when small */
    x->resp_fields = (struct weir_sbuf){0};
    free(x->reqcopy);
    free(x->reqmsg);
    free(x->host_copy);
    free(x->target_copy);
    s->x = NULL;
    struct x_cache *c = x_cache_get();
    if (c == NULL || c->n == X_CACHE_MAX || fields.cap > X_KEEP_BUF) {
        weir_sbuf_free(&fields);
        fields = (struct weir_sbuf){0};
    }
    if (c == NULL || c->n == X_CACHE_MAX) {
        x_free(x);
        return;
    }
    char *uphead = x->uphead_cap <= X_KEEP_BUF ? x->uphead : NULL;
    size_t uphead_cap = uphead != NULL ? x->uphead_cap : 0;
    char *lf = x->lf_cap <= X_KEEP_BUF ? x->lf : NULL;
    size_t lf_cap = lf != NULL ? x->lf_cap : 0;
    if (uphead == NULL)
        free(x->uphead);
    if (lf == NULL)
        free(x->lf);
    memset(x, 0, sizeof(*x));
    x->uphead = uphead;
    x->uphead_cap = uphead_cap;
    x->lf = lf;
    x->lf_cap = lf_cap;
    x->resp_fields.p = fields.p;
    x->resp_fields.cap = fields.cap;
    c->x[c->n++] = x;
}

/* ---- helpers ---- */

int weir_x_chunked_scan(struct evbuffer *in, size_t max, struct weir_chunked *c, size_t *total,
                        void (*data_cb)(void *, const char *, size_t), void *ud)
{
    struct evbuffer_iovec v[16];
    int nv = evbuffer_peek(in, (ev_ssize_t)max, NULL, v, 16);
    int rc = WEIR_AGAIN;
    *total = 0;
    for (int i = 0; i < nv && i < 16 && rc == WEIR_AGAIN && *total < max; i++) {
        size_t used = 0, len = v[i].iov_len < max - *total ? v[i].iov_len : max - *total;
        rc = weir_chunked_parse(c, v[i].iov_base, len, &used, data_cb, ud);
        *total += used;
    }
    return rc;
}

size_t weir_x_out_room(struct weir_conn *c)
{
    size_t n = evbuffer_get_length(c->out);
    if (n >= WEIR_S_HWM) {
        weir_conn_flush(c);
        n = evbuffer_get_length(c->out);
    }
    return n < WEIR_S_HWM ? WEIR_S_HWM - n : 0;
}

int weir_x_out_full(struct weir_conn *c)
{
    if (evbuffer_get_length(c->out) < WEIR_S_HWM)
        return 0;
    weir_conn_flush(c);
    return evbuffer_get_length(c->out) >= WEIR_S_HWM;
}

/* ---- hook-facing accessors (exchange.h) ---- */

int weir_exchange_add_filter(struct weir_exchange *x, const struct weir_resp_filter *f, void *fdata)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->x->nfilters >= WEIR_EXCHANGE_MAX_FILTERS)
        return WEIR_ERROR;
    s->x->filters[s->x->nfilters].f = f;
    s->x->filters[s->x->nfilters].data = fdata;
    s->x->nfilters++;
    return WEIR_OK;
}

static int tchar(unsigned char c)
{
    /* RFC 9110 tchar: letters, digits and !#$%&'*+-.^_`|~ (a bitmap per 32 codes) */
    static const uint32_t map[8] = {0, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff};
    return (map[c >> 5] >> (c & 31)) & 1;
}

/* One "Name: value\r\n" line: a token, a colon, a value of visible
 * characters, spaces and tabs (no CR or LF inside). */
static int field_line_ok(const char *p, size_t n)
{
    size_t i = 0;
    if (n < 4 || p[n - 2] != '\r' || p[n - 1] != '\n')
        return 0;
    while (i < n - 2 && tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || i >= n - 2 || p[i] != ':')
        return 0;
    /* no CTL but HTAB in the value (CR, LF and NUL included); every
     * Cache-Status line of a cache route comes through here, so 8 bytes at
     * a time: a word with no byte below 0x20 and no 0x7f is skipped whole */
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    for (i++; i + 8 <= n - 2; i += 8) {
        uint64_t w, d;
        memcpy(&w, p + i, 8);
        d = ((w - 0x20 * ones) | ((w ^ 0x7f * ones) - ones)) & ~w & highs;
        if (d != 0)
            break; /* a suspect byte: judge this word byte by byte */
    }
    for (; i < n - 2; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

int weir_exchange_add_response_field(struct weir_exchange *x, const char *line, size_t len)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->x == NULL || !s->x->in_head_filters || line == NULL || !field_line_ok(line, len))
        return WEIR_ERROR;
    if (s->x->resp_fields.len + len > 8192) /* a bound on what filters may add */
        return WEIR_ERROR;
    weir_sbuf_add(&s->x->resp_fields, line, len);
    return s->x->resp_fields.oom ? WEIR_ERROR : WEIR_OK;
}

int weir_exchange_set_request_field(struct weir_exchange *x, const char *lname, const char *value)
{
    struct weir_session *s = (struct weir_session *)x;
    struct weir_xstate *xs = s->x;
    size_t nl = strlen(lname);
    if (xs != NULL && xs->uphead_pending && weir_sreq_build_uphead(s) != WEIR_OK)
        return WEIR_ERROR; /* built now: only while the parsed head is there (on_request) */
    if (xs == NULL || xs->uphead == NULL || xs->up_ready || xs->answered || nl == 0)
        return WEIR_ERROR;
    for (size_t i = 0; i < nl; i++)
        if (!tchar((unsigned char)lname[i]))
            return WEIR_ERROR;
    if (value != NULL) {
        for (const char *v = value; *v != '\0'; v++)
            if (*v == '\r' || *v == '\n' || (*v > 0 && *v < 0x20 && *v != '\t') || *v == 0x7f)
                return WEIR_ERROR;
    }
    /* uphead: the request line, fields, an empty line (built by weir) */
    char *p = xs->uphead, *end = xs->uphead + xs->uphead_len;
    char *line = memchr(p, '\n', (size_t)(end - p));
    if (line == NULL)
        return WEIR_ERROR;
    line++;
    while (line < end && !(end - line >= 2 && line[0] == '\r' && line[1] == '\n')) {
        char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            return WEIR_ERROR;
        eol++;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, lname, nl) == 0) {
            memmove(line, eol, (size_t)(end - eol));
            end -= eol - line;
            continue;
        }
        line = eol;
    }
    xs->uphead_len = (size_t)(end - xs->uphead);
    if (value == NULL)
        return WEIR_OK;
    size_t old = xs->uphead_len;
    struct weir_sbuf b = {xs->uphead, old - 2, xs->uphead_cap, 0};
    weir_sbuf_add(&b, lname, nl);
    WEIR_SBUF_LIT(&b, ": ");
    weir_sbuf_str(&b, value);
    WEIR_SBUF_LIT(&b, "\r\n\r\n");
    xs->uphead = b.p;
    xs->uphead_cap = b.cap;
    if (b.oom) { /* out of memory part way: give the head its end back */
        memcpy(xs->uphead + old - 2, "\r\n", 2);
        return WEIR_ERROR;
    }
    xs->uphead_len = b.len;
    return WEIR_OK;
}

int weir_exchange_respond(struct weir_exchange *x, int status, const char *fields, size_t fields_len,
                          struct evbuffer *body)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->x->answered)
        return WEIR_ERROR;
    /* from a filter's on_head: only instead of a response without a body */
    if (s->x->in_head_filters && s->x->resp_body != WEIR_BODY_NONE)
        return WEIR_ERROR;
    size_t blen = body != NULL ? evbuffer_get_length(body) : 0;
    int close = s->close_after || !s->x->req_done;
    struct weir_sbuf b = {0};
    if (weir_http_build_answer_head(&b, status, fields, fields_len, blen, s->x->rid, close) != WEIR_OK) {
        weir_sbuf_free(&b);
        return WEIR_ERROR;
    }
    if (evbuffer_add(s->cc->out, b.p, b.len) != 0) {
        weir_sbuf_free(&b);
        return WEIR_ERROR;
    }
    weir_sbuf_free(&b);
    if (body != NULL) {
        if (s->x->method_id != WEIR_HTTP_HEAD) {
            evbuffer_add_buffer(s->cc->out, body);
            s->x->bytes_out = blen;
        } else {
            evbuffer_drain(body, blen);
        }
    }
    if (close)
        s->close_after = 1;
    s->x->status = status;
    s->x->answered = 1;
    s->x->resp_sent = 1;
    return WEIR_OK;
}

int weir_exchange_respond_stream(struct weir_exchange *x, int status, const char *fields, size_t fields_len,
                                 uint64_t body_len, const struct weir_resp_source *src, void *arg)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->x->answered || src == NULL || src->pull == NULL)
        return WEIR_ERROR;
    int has_body = status >= 200 && status != 204 && status != 304;
    int sends_body = has_body && s->x->method_id != WEIR_HTTP_HEAD && body_len > 0;
    /* A length not known yet: chunked to an HTTP/1.1 client (a HEAD is told
     * the framing a GET would get), delimited by the close to HTTP/1.0. */
    int unknown = has_body && body_len == UINT64_MAX;
    int chunked = unknown && s->x->version != 10;
    int close = s->close_after || !s->x->req_done || (unknown && !chunked && sends_body);
    struct weir_sbuf b = {0};
    if (chunked) {
        weir_sbuf_add(&b, fields, fields_len);
        WEIR_SBUF_LIT(&b, "Transfer-Encoding: chunked\r\n");
        if (b.oom) {
            weir_sbuf_free(&b);
            return WEIR_ERROR;
        }
        fields = b.p;
        fields_len = b.len;
        b = (struct weir_sbuf){0};
    }
    char *own = chunked ? (char *)fields : NULL;
    int rc = weir_http_build_answer_head(&b, status, fields, fields_len, body_len, s->x->rid, close);
    free(own);
    if (rc != WEIR_OK || evbuffer_add(s->cc->out, b.p, b.len) != 0) {
        weir_sbuf_free(&b);
        return WEIR_ERROR;
    }
    weir_sbuf_free(&b);
    if (close)
        s->close_after = 1;
    s->x->status = status;
    s->x->answered = 1;
    s->x->resp_sent = 1;
    if (sends_body) {
        s->x->src = src;
        s->x->src_arg = arg;
        s->x->stream_left = body_len; /* UINT64_MAX: until the source says WEIR_DONE */
    }
    return WEIR_OK;
}

/* One pull of a body of unknown length, framed as a chunk for HTTP/1.1. */
static int stream_pull_framed(struct weir_session *s, size_t room, size_t *got)
{
    struct weir_xstate *x = s->x;
    if (x->version == 10) { /* close-delimited: as is */
        size_t before = evbuffer_get_length(s->cc->out);
        int rc = x->src->pull((struct weir_exchange *)s, x->src_arg, s->cc->out, room);
        *got = evbuffer_get_length(s->cc->out) - before;
        return rc;
    }
    struct evbuffer *tmp = evbuffer_new();
    if (tmp == NULL)
        return WEIR_ERROR;
    int rc = x->src->pull((struct weir_exchange *)s, x->src_arg, tmp, room);
    *got = evbuffer_get_length(tmp);
    if (*got > 0 && (evbuffer_add_printf(s->cc->out, "%zx\r\n", *got) < 0 ||
                     evbuffer_add_buffer(s->cc->out, tmp) != 0 || evbuffer_add(s->cc->out, "\r\n", 2) != 0))
        rc = WEIR_ERROR;
    evbuffer_free(tmp);
    if (rc == WEIR_DONE && evbuffer_add(s->cc->out, "0\r\n\r\n", 5) != 0)
        rc = WEIR_ERROR;
    return rc;
}

int weir_x_stream(struct weir_session *s)
{
    struct weir_xstate *x = s->x;
    while (x->stream_left > 0) {
        if (weir_x_out_full(s->cc))
            return WEIR_AGAIN; /* the client's write event resumes */
        size_t before = evbuffer_get_length(s->cc->out);
        size_t room = before < WEIR_S_HWM ? WEIR_S_HWM - before : 0;
        if (room > x->stream_left)
            room = (size_t)x->stream_left;
        size_t got;
        int rc;
        if (x->stream_left == UINT64_MAX) {
            rc = stream_pull_framed(s, room, &got);
        } else {
            rc = x->src->pull((struct weir_exchange *)s, x->src_arg, s->cc->out, room);
            got = evbuffer_get_length(s->cc->out) - before;
        }
        if ((rc != WEIR_OK && rc != WEIR_DONE) || got > room)
            return WEIR_ERROR;
        x->bytes_out += got;
        if (x->stream_left == UINT64_MAX) {
            if (rc == WEIR_DONE)
                break; /* the whole body of unknown length was pulled */
        } else {
            x->stream_left -= got;
            if (rc == WEIR_DONE && x->stream_left > 0)
                return WEIR_ERROR; /* shorter than announced */
        }
        if (got == 0 && x->stream_left > 0)
            return WEIR_AGAIN; /* weir_exchange_stream_kick() resumes */
    }
    x->stream_left = 0;
    x->resp_done = 1;
    return WEIR_DONE;
}

/* Move p from the head at `from` to its copy at `to` (n bytes); 0 when p
 * points outside that head (the copy cannot be made by moving). */
static int rebase(const char **p, const char *from, size_t n, const char *to)
{
    uintptr_t a = (uintptr_t)*p, b = (uintptr_t)from;
    if (*p == NULL)
        return 1;
    if (a < b || a > b + n)
        return 0;
    *p = to + (a - b);
    return 1;
}

/* Copy the parsed head m of the bytes at head: the parse result moved
 * onto the copy, without parsing again. 0 when some field does not point
 * into the head. */
static int copy_msg(struct weir_http_msg *dst, char *copy, const struct weir_http_msg *m, const char *head)
{
    size_t n = m->head_len;
    memcpy(dst, m, offsetof(struct weir_http_msg, headers));
    memcpy(dst->headers, m->headers, m->nheaders * sizeof(m->headers[0]));
    memcpy(&dst->nheaders, &m->nheaders, sizeof(*dst) - offsetof(struct weir_http_msg, nheaders));
    int ok = rebase(&dst->method, head, n, copy) && rebase(&dst->target, head, n, copy) &&
             rebase(&dst->path, head, n, copy) && rebase(&dst->authority, head, n, copy) &&
             rebase(&dst->reason, head, n, copy);
    for (size_t i = 0; ok && i < dst->nheaders; i++)
        ok = rebase(&dst->headers[i].name, head, n, copy) && rebase(&dst->headers[i].value, head, n, copy);
    return ok;
}

const struct weir_http_msg *weir_exchange_request(struct weir_exchange *x)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->x->reqmsg != NULL)
        return s->x->reqmsg;
    const struct weir_http_msg *m = &s->w->msg;
    if (s->x->head_p == NULL) /* only during on_request */
        return NULL;
    char *copy = malloc(m->head_len);
    struct weir_http_msg *msg = malloc(sizeof(*msg));
    if (copy == NULL || msg == NULL) {
        free(copy);
        free(msg);
        return NULL;
    }
    memcpy(copy, s->x->head_p, m->head_len);
    if (!copy_msg(msg, copy, m, s->x->head_p)) {
        weir_http_msg_reset(msg);
        if (weir_http_parse_request(copy, m->head_len, m->head_len + 1, msg) != WEIR_OK) {
            free(copy);
            free(msg);
            return NULL;
        }
    }
    s->x->reqcopy = copy;
    s->x->reqmsg = msg;
    return msg;
}

int weir_exchange_worker_id(const struct weir_exchange *x)
{
    return ((const struct weir_session *)x)->w->id;
}

const char *weir_exchange_request_id(const struct weir_exchange *x)
{
    const struct weir_session *s = (const struct weir_session *)x;
    return s->x != NULL ? s->x->rid : "";
}
