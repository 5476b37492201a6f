/*
 * session.c - client connections: request head, routing, balancing, retries,
 * body streaming with backpressure in both directions, responses, tunnels.
 *
 * Callbacks never free the session behind their own back: every path that
 * may free it returns -1 (or is the last thing a callback does), following
 * the "mark it, free it later" rule where libevent re-enters.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "weir/health.h"
#include "weir/http_parse.h"
#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/session.h"
#include "weir/stats.h"
#include "weir/upstream.h"
#include "weir/worker.h"

/* Output above this stops reading the other side (backpressure). */
#define HWM       (256 * 1024)
#define LWM       (64 * 1024)
#define MAX_TRIES 12
/* A non-idempotent request only goes on a kept-alive connection this fresh:
 * an older one may be closed by the server as we write, and such a request
 * could not be retried safely. */
#define NONIDEM_MAX_IDLE_US 2000000u

enum sstate {
    S_IDLE,     /* keep-alive: waiting for the first byte of a request */
    S_HEAD,     /* reading a request head */
    S_UPSTREAM, /* connecting / request sent, waiting for the response head */
    S_RESP,     /* streaming the response body */
    S_TUNNEL,   /* after 101: raw bytes both ways */
    S_CLOSING   /* flushing the last output, then close */
};

/* Indexes of request fields kept for the access log. */
enum { LF_METHOD, LF_TARGET, LF_HOST, LF_REFERER, LF_UA, LF_N };

struct weir_session {
    TAILQ_ENTRY(weir_session) link;
    struct weir_worker *w;
    struct bufferevent *cbev;
    struct event *hdr_timer; /* client_header_ms deadline, created on first use */
    int state;
    int close_after;             /* close the client connection after this exchange */
    int peer_eof;                /* the client half-closed: answer what it sent, then close */
    int in_head_loop;            /* process_heads() is on the stack */
    size_t scan_pos, scan_lines; /* request head resume point */
    char peer[INET6_ADDRSTRLEN];
    size_t peer_len;
    unsigned nreq;

    /* the current request */
    struct weir_rt *rt; /* retained for the exchange */
    struct weir_pool *pool;
    const struct weir_route *route;
    int method_id;
    int version; /* 10 or 11 */
    int idempotent;
    int upgrade;
    int req_body; /* enum weir_http_body */
    uint64_t req_left;
    struct weir_chunked req_chunk;
    int req_done;     /* whole body moved upstream */
    int req_consumed; /* some body byte left the client buffer */
    int req_paused;   /* client reading stopped by backpressure */
    char *uphead;     /* upstream request head, kept for retries */
    size_t uphead_len, uphead_cap;
    char *lf; /* log fields, NUL-separated */
    size_t lf_len, lf_cap;
    uint32_t lf_off[LF_N], lf_n[LF_N];
    char rid[72];
    uint64_t hash;
    struct weir_server *tried[MAX_TRIES];
    int ntried;
    int fresh_retry; /* a stale kept-alive connection failed: use a new one */

    /* upstream side */
    struct weir_server *server; /* counted in server->active while set */
    struct weir_upconn *up;
    int up_ready; /* connected (or reused) and the head handed over */
    int up_reused;
    uint64_t t_start, t_up, t_first;

    /* response */
    int status;
    int resp_body; /* enum weir_http_body */
    uint64_t resp_left;
    struct weir_chunked resp_chunk;
    int resp_keepalive; /* upstream connection reusable after the body */
    int dechunk;        /* HTTP/1.0 client: strip chunked coding */
    int resp_started;   /* a response byte arrived from upstream */
    int resp_paused;    /* upstream reading stopped by backpressure */
    size_t resp_scan_pos, resp_scan_lines;
    uint64_t bytes_out;
    uint64_t bytes_in;
    int gauge; /* the client gauge this session is counted in, or -1 */
};

/* Read high-water mark for both sides: libevent stops reading a socket whose
 * input holds this much, which bounds pipelined data and bodies waiting for
 * a connect, and is the backpressure when the other side's output is full.
 * It always leaves room for a whole request head. */
static size_t read_hwm(const struct weir_rt *rt)
{
    size_t need = rt->conf->limits.header_bytes + WEIR_HTTP_MAX_REQUEST_LINE + 64;
    return need > HWM ? need : HWM;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}

/* ---- small growable buffers ---- */

static int buf_reserve(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need)
        ncap *= 2;
    char *np = realloc(*p, ncap);
    if (np == NULL)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom || buf_reserve(&b->p, &b->cap, b->len + n) != 0) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_header(struct sbuf *b, const struct weir_http_header *h)
{
    sb_add(b, h->name, h->name_len);
    sb_add(b, ": ", 2);
    sb_add(b, h->value, h->value_len);
    sb_add(b, "\r\n", 2);
}

/* Per-worker scratch for response heads (one thread, used synchronously). */
static _Thread_local struct sbuf scratch;

void weir_session_thread_exit(void)
{
    free(scratch.p);
    scratch = (struct sbuf){0};
}

/* ---- lifecycle ---- */

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_write_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static int process_heads(struct weir_session *s);
static int choose_and_connect(struct weir_session *s);

static void release_server(struct weir_session *s)
{
    if (s->server == NULL)
        return;
    atomic_fetch_sub_explicit(&s->server->active, 1, memory_order_relaxed);
    if (s->pool != NULL && s->pool->lb->release != NULL)
        s->pool->lb->release(s->pool->lb_state[s->w->id], s->server);
    s->server = NULL;
}

static void drop_upstream(struct weir_session *s)
{
    if (s->up != NULL) {
        weir_up_close(s->up);
        weir_stats_gauge_add(s->w->id, WEIR_G_UP_ACTIVE, -1);
        s->up = NULL;
    }
    s->up_ready = 0;
}

static void set_gauge(struct weir_session *s, int g)
{
    if (s->gauge == g)
        return;
    if (s->gauge >= 0)
        weir_stats_gauge_add(s->w->id, s->gauge, -1);
    if (g >= 0)
        weir_stats_gauge_add(s->w->id, g, 1);
    s->gauge = g;
}

/* Tell passive health and the error counters how an exchange with the
 * current server went. */
static void note_outcome(struct weir_session *s, int outcome)
{
    static const int uperr[] = {[WEIR_OUTCOME_OK] = WEIR_UPERR_NONE,
                                [WEIR_OUTCOME_CONNECT] = WEIR_UPERR_CONNECT,
                                [WEIR_OUTCOME_RESET] = WEIR_UPERR_RESET,
                                [WEIR_OUTCOME_TIMEOUT] = WEIR_UPERR_TIMEOUT,
                                [WEIR_OUTCOME_5XX] = WEIR_UPERR_5XX};
    if (s->server == NULL || s->pool == NULL)
        return;
    weir_health_report(s->pool, s->server, outcome);
    if (outcome != WEIR_OUTCOME_OK) {
        weir_stats_upstream_error(s->server->stats, s->w->id, uperr[outcome]);
        weir_stats_upstream_error(s->pool->stats, s->w->id, uperr[outcome]);
        weir_stats_upstream_error(weir_stats_global(), s->w->id, uperr[outcome]);
    }
}

/* Forget the finished exchange; keep per-connection state. */
static void reset_exchange(struct weir_session *s)
{
    release_server(s);
    drop_upstream(s);
    if (s->rt != NULL) {
        weir_rt_release(s->rt);
        s->rt = NULL;
    }
    s->pool = NULL;
    s->route = NULL;
    s->bytes_in = 0;
    s->ntried = 0;
    s->fresh_retry = 0;
    s->req_done = s->req_consumed = s->req_paused = 0;
    s->resp_started = s->resp_paused = 0;
    s->resp_scan_pos = s->resp_scan_lines = 0;
    s->status = 0;
    s->bytes_out = 0;
    s->upgrade = 0;
    s->dechunk = 0;
    s->rid[0] = '\0';
    s->lf_len = 0;
    memset(s->lf_n, 0, sizeof(s->lf_n));
    s->t_up = s->t_first = 0;
}

static void session_free(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    reset_exchange(s);
    set_gauge(s, -1);
    bufferevent_free(s->cbev);
    if (s->hdr_timer != NULL)
        event_free(s->hdr_timer);
    TAILQ_REMOVE(&w->sessions, s, link);
    w->nsessions--;
    atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
    free(s->uphead);
    free(s->lf);
    free(s);
}

/* ---- access log ---- */

static void lf_set(struct weir_session *s, int idx, const char *p, size_t n)
{
    if (n > 4096)
        n = 4096;
    if (buf_reserve(&s->lf, &s->lf_cap, s->lf_len + n + 1) != 0)
        return;
    memcpy(s->lf + s->lf_len, p, n);
    s->lf_off[idx] = (uint32_t)s->lf_len;
    s->lf_n[idx] = (uint32_t)n;
    s->lf_len += n;
    s->lf[s->lf_len++] = '\0';
}

static const char *lf_get(const struct weir_session *s, int idx, size_t *n)
{
    *n = s->lf_n[idx];
    return *n ? s->lf + s->lf_off[idx] : "";
}

static void record_stats(struct weir_session *s, uint64_t now)
{
    struct weir_stats_sample smp = {
        .status = s->status,
        .ttfb_us = s->t_first && s->t_up ? s->t_first - s->t_up : 0,
        .total_us = now - s->t_start,
        .bytes_in = s->bytes_in,
        .bytes_out = s->bytes_out,
        .retries = s->ntried > 1 ? s->ntried - 1 : 0,
        .now_us = now,
    };
    int id = s->w->id;
    weir_stats_record(weir_stats_global(), id, &smp);
    if (s->pool != NULL)
        weir_stats_record(s->pool->stats, id, &smp);
    if (s->route != NULL)
        weir_stats_record(s->route->stats, id, &smp);
    if (s->ntried > 0)
        weir_stats_record(s->tried[s->ntried - 1]->stats, id, &smp);
}

/* Account one finished exchange: statistics and the access log line. */
static void log_request(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    uint64_t now = weir_now_us();
    record_stats(s, now);
    if (weir_alog_fd() < 0)
        return;
    double rt_s = (double)(now - s->t_start) / 1e6;
    double ut_s = s->t_first && s->t_up ? (double)(s->t_first - s->t_up) / 1e6 : -1;
    const char *up = s->tried[0] != NULL && s->ntried > 0 ? s->tried[s->ntried - 1]->address : "-";
    size_t mn, tn, hn, rn, un;
    const char *m = lf_get(s, LF_METHOD, &mn), *t = lf_get(s, LF_TARGET, &tn), *h = lf_get(s, LF_HOST, &hn),
               *r = lf_get(s, LF_REFERER, &rn), *u = lf_get(s, LF_UA, &un);
    const char *proto = s->version == 10 ? "HTTP/1.0" : "HTTP/1.1";
    const char *pool = s->pool ? s->pool->name : "-";
    char line[12288];
    int n;
    int json = w->rt != NULL && w->rt->conf->log.format == WEIR_LOG_JSON;
    if (json) {
        char em[64], et[4200 * 6 / 4], eh[1100], er[1100], eu[1100];
        size_t a = weir_json_escape(em, sizeof(em), m, mn), b = weir_json_escape(et, sizeof(et), t, tn),
               c = weir_json_escape(eh, sizeof(eh), h, hn), d = weir_json_escape(er, sizeof(er), r, rn),
               e = weir_json_escape(eu, sizeof(eu), u, un);
        char ut[32];
        if (ut_s >= 0)
            snprintf(ut, sizeof(ut), "%.6f", ut_s);
        else
            strcpy(ut, "null");
        n = snprintf(
            line, sizeof(line),
            "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"%.*s\",\"uri\":\"%.*s\",\"proto\":\"%s\","
            "\"host\":\"%.*s\",\"status\":%d,\"bytes\":%llu,\"referer\":\"%.*s\",\"user_agent\":\"%.*s\","
            "\"pool\":\"%s\",\"upstream\":\"%s\",\"upstream_time\":%s,\"total_time\":%.6f,"
            "\"tries\":%d,\"request_id\":\"%s\"}\n",
            w->iso_time, s->peer, (int)a, em, (int)b, et, proto, (int)c, eh, s->status,
            (unsigned long long)s->bytes_out, (int)d, er, (int)e, eu, pool, up, ut, rt_s, s->ntried, s->rid);
    } else {
        char ut[32];
        if (ut_s >= 0)
            snprintf(ut, sizeof(ut), "%.3f", ut_s);
        else
            strcpy(ut, "-");
        n = snprintf(line, sizeof(line),
                     "%s - - [%s] \"%.*s %.*s %s\" %d %llu \"%.*s\" \"%.*s\" host=\"%.*s\" pool=%s "
                     "upstream=%s upstream_time=%s total_time=%.3f tries=%d rid=%s\n",
                     s->peer, w->clf_time, (int)mn, m, (int)tn, t, proto, s->status,
                     (unsigned long long)s->bytes_out, rn ? (int)rn : 1, rn ? r : "-", un ? (int)un : 1,
                     un ? u : "-", (int)hn, h, pool, up, ut, rt_s, s->ntried, s->rid);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    weir_alog_append(&w->alog, line, (size_t)n);
}

/* ---- writing ---- */

/*
 * Output is written eagerly: EV_WRITE stays disabled while a side's output
 * is empty, and at each point where an exchange has queued bytes they are
 * written at once. Only what the socket does not take enables EV_WRITE
 * until it is drained. libevent's default (enable EV_WRITE on every add,
 * write on the next loop pass, disable when empty) costs two epoll_ctl
 * calls and one loop pass per direction per request.
 */
static void flush_out(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return;
    evbuffer_unfreeze(out, 1); /* bufferevent_socket keeps its output's front frozen */
    evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

/*
 * 1 when bev's output holds HWM or more even after writing what the socket
 * takes now: the caller pauses the side that feeds it. EV_WRITE is then on
 * (flush_out left bytes), so the write callback will resume the caller; the
 * flush must come first, or a socket that takes everything would leave no
 * callback to resume it.
 */
static int out_full(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) < HWM)
        return 0;
    flush_out(bev);
    return evbuffer_get_length(out) >= HWM;
}

/* ---- ending an exchange ---- */

/* Waiting for a request: a new connection must send its first head within
 * client_header_ms (no free ride for connections that never speak); a
 * kept-alive one may idle for idle_ms between requests. */
static void arm_idle(struct weir_session *s)
{
    const struct timeval *rd = s->nreq == 0 ? s->w->tv_header : s->w->tv_idle;
    bufferevent_set_timeouts(s->cbev, rd, s->w->tv_idle);
}

/*
 * The response has been queued. Close the connection (after flushing) or
 * get ready for the next request. Returns -1 when the session was freed.
 */
static int finish_exchange(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    log_request(s);
    int must_close = s->close_after || !s->req_done || w->draining ||
                     (s->peer_eof && evbuffer_get_length(bufferevent_get_input(s->cbev)) == 0);
    reset_exchange(s);
    flush_out(s->cbev);
    if (must_close) {
        s->state = S_CLOSING;
        bufferevent_disable(s->cbev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(s->cbev)) == 0) {
            session_free(s);
            return -1;
        }
        return 0;
    }
    s->state = S_IDLE;
    set_gauge(s, WEIR_G_CLIENT_IDLE);
    arm_idle(s);
    if (!s->in_head_loop && evbuffer_get_length(bufferevent_get_input(s->cbev)) > 0)
        return process_heads(s); /* pipelined requests already buffered */
    return 0;
}

/*
 * Answer locally (errors, no route, no server). `close` forces
 * Connection: close. Returns -1 when the session was freed.
 */
static int send_local(struct weir_session *s, int status, const char *detail, int close)
{
    struct evbuffer *out = bufferevent_get_output(s->cbev);
    char body[256];
    int bn = snprintf(body, sizeof(body), "%d %s\n%s%s", status, reason_phrase(status), detail ? detail : "",
                      detail ? "\n" : "");
    if (close)
        s->close_after = 1;
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nServer: weir\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      "%s%s%s%s%s\r\n",
                      status, reason_phrase(status), bn, s->rid[0] ? "X-Request-Id: " : "", s->rid,
                      s->rid[0] ? "\r\n" : "", status == 503 ? "Retry-After: 1\r\n" : "",
                      s->close_after || !s->req_done ? "Connection: close\r\n" : "");
    evbuffer_add(out, head, (size_t)hn);
    if (s->method_id != WEIR_HTTP_HEAD) {
        evbuffer_add(out, body, (size_t)bn);
        s->bytes_out = (uint64_t)bn;
    }
    s->status = status;
    if (s->t_start == 0)
        s->t_start = weir_now_us();
    return finish_exchange(s);
}

/* ---- request head ---- */

static void hdr_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_session *s = arg;
    /* A client too slow to send its head is closed quietly. */
    weir_log_debug("client %s: request head timeout", s->peer);
    session_free(s);
}

static int is_idempotent(int m)
{
    return m == WEIR_HTTP_GET || m == WEIR_HTTP_HEAD || m == WEIR_HTTP_PUT || m == WEIR_HTTP_DELETE ||
           m == WEIR_HTTP_OPTIONS || m == WEIR_HTTP_TRACE;
}

static void make_request_id(struct weir_session *s)
{
    static const char hex[] = "0123456789abcdef";
    struct weir_worker *w = s->w;
    uint64_t a = ((uint64_t)w->rid_salt << 32) | (uint32_t)w->id;
    uint64_t b = ++w->rid_seq;
    for (int i = 0; i < 16; i++)
        s->rid[i] = hex[(a >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 16; i++)
        s->rid[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    s->rid[32] = '\0';
}

/* Normalise host[:port] to lower-case host without port. Returns length or
 * -1 when it does not fit. */
static int normalize_host(const char *h, size_t n, char *out, size_t cap)
{
    size_t end = n;
    if (n > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        end = rb ? (size_t)(rb - h) + 1 : n;
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon != NULL)
            end = (size_t)(colon - h);
    }
    if (end >= cap)
        return -1;
    for (size_t i = 0; i < end; i++)
        out[i] = (char)weir_lower((unsigned char)h[i]);
    out[end] = '\0';
    return (int)end;
}

static int name_is(const struct weir_http_header *h, const char *lname, size_t len)
{
    return h->name_len == len && weir_span_ieq(h->name, h->name_len, lname);
}

/* Append the values of every header named `lname` from index `first` on,
 * each followed by ", " (the start of a merged list such as X-Forwarded-For
 * or Via, to which the caller adds its own entry). */
static void sb_join_values(struct sbuf *b, const struct weir_http_msg *m, int first, const char *lname,
                           size_t len)
{
    if (first < 0)
        return;
    for (size_t i = (size_t)first; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->value_len > 0 && name_is(h, lname, len)) {
            sb_add(b, h->value, h->value_len);
            sb_add(b, ", ", 2);
        }
    }
}

/* Build the head sent upstream into s->uphead. Returns 0 or -1 (OOM). */
static int build_upstream_head(struct weir_session *s, const struct weir_http_msg *m, const char *host,
                               size_t host_len)
{
    struct sbuf b = {s->uphead, 0, s->uphead_cap, 0};
    const char *path = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t path_len = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    sb_add(&b, m->method, m->method_len);
    sb_add(&b, " ", 1);
    sb_add(&b, path, path_len);
    sb_add(&b, " HTTP/1.1\r\nHost: ", 17);
    sb_add(&b, host, host_len);
    sb_add(&b, "\r\n", 2);
    int xff = -1, via = -1, rid_given = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->flags & (WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED))
            continue;
        switch (h->name_len) {
        case 3:
            if (name_is(h, "via", 3)) {
                /* merged below with our own entry */
                if (via < 0)
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
        sb_header(&b, h);
    }
    /* X-Forwarded-For: every earlier value, then the client's address. */
    sb_add(&b, "X-Forwarded-For: ", 17);
    sb_join_values(&b, m, xff, "x-forwarded-for", 15);
    sb_add(&b, s->peer, s->peer_len);
    sb_add(&b, "\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ", 45);
    sb_add(&b, host, host_len);
    sb_add(&b, "\r\nVia: ", 7);
    sb_join_values(&b, m, via, "via", 3);
    sb_str(&b, m->version == 10 ? "1.0 weir\r\n" : "1.1 weir\r\n");
    if (!rid_given) {
        sb_add(&b, "X-Request-Id: ", 14);
        sb_str(&b, s->rid);
        sb_add(&b, "\r\n", 2);
    }
    if (m->body == WEIR_BODY_CHUNKED)
        sb_add(&b, "Transfer-Encoding: chunked\r\n", 28);
    if (s->upgrade) {
        int ui = weir_http_find_header(m, "upgrade");
        sb_add(&b, "Connection: upgrade\r\nUpgrade: ", 30);
        sb_add(&b, m->headers[ui].value, m->headers[ui].value_len);
        sb_add(&b, "\r\n", 2);
    }
    sb_add(&b, "\r\n", 2);
    s->uphead = b.p;
    s->uphead_cap = b.cap;
    s->uphead_len = b.len;
    return b.oom ? -1 : 0;
}

static uint64_t hash_key(struct weir_session *s, const struct weir_http_msg *m)
{
    const struct weir_conf_pool *cp = s->pool->conf;
    if (cp->hash_key == WEIR_HASH_CLIENT_IP)
        return weir_lb_hash64(s->peer, s->peer_len);
    if (cp->hash_key == WEIR_HASH_HEADER && cp->hash_header != NULL) {
        int i = weir_http_find_header(m, cp->hash_header);
        if (i >= 0)
            return weir_lb_hash64(m->headers[i].value, m->headers[i].value_len);
    }
    const char *p = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t n = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    return weir_lb_hash64(p, n);
}

/* A complete, valid request head is at the front of the client input.
 * Returns -1 when the session was freed. */
static int dispatch(struct weir_session *s, struct weir_http_msg *m)
{
    struct weir_worker *w = s->w;
    struct evbuffer *in = bufferevent_get_input(s->cbev);
    if (s->hdr_timer != NULL)
        event_del(s->hdr_timer);
    s->scan_pos = s->scan_lines = 0;
    s->nreq++;
    s->bytes_in = m->head_len;
    weir_worker_sync_rt(w);
    s->rt = w->rt;
    weir_rt_retain(s->rt);
    s->method_id = m->method_id;
    s->version = m->version;
    s->idempotent = is_idempotent(m->method_id);
    s->req_body = m->body;
    s->req_left = m->content_length;
    s->req_done = m->body == WEIR_BODY_NONE || (m->body == WEIR_BODY_LENGTH && m->content_length == 0);
    weir_chunked_init(&s->req_chunk);
    s->close_after = !(m->flags & WEIR_HTTP_F_KEEPALIVE);

    int ri = weir_http_find_header(m, "x-request-id");
    if (ri >= 0 && m->headers[ri].value_len > 0 && m->headers[ri].value_len < sizeof(s->rid)) {
        memcpy(s->rid, m->headers[ri].value, m->headers[ri].value_len);
        s->rid[m->headers[ri].value_len] = '\0';
    } else {
        make_request_id(s);
    }

    const char *hraw = "";
    size_t hraw_len = 0;
    if (m->authority != NULL) {
        hraw = m->authority;
        hraw_len = m->authority_len;
    } else if (m->host_idx >= 0) {
        hraw = m->headers[m->host_idx].value;
        hraw_len = m->headers[m->host_idx].value_len;
    }
    if (weir_alog_fd() >= 0) { /* the fields are only kept for the access log */
        lf_set(s, LF_METHOD, m->method, m->method_len);
        lf_set(s, LF_TARGET, m->target, m->target_len);
        lf_set(s, LF_HOST, hraw, hraw_len);
        int i = weir_http_find_header(m, "referer");
        if (i >= 0)
            lf_set(s, LF_REFERER, m->headers[i].value, m->headers[i].value_len);
        i = weir_http_find_header(m, "user-agent");
        if (i >= 0)
            lf_set(s, LF_UA, m->headers[i].value, m->headers[i].value_len);
    }

    if (m->method_id == WEIR_HTTP_CONNECT) {
        evbuffer_drain(in, m->head_len);
        return send_local(s, 405, "CONNECT is not supported by this reverse proxy", 1);
    }
    char host[256];
    int hl = normalize_host(hraw, hraw_len, host, sizeof(host));
    if (hl < 0) {
        evbuffer_drain(in, m->head_len);
        return send_local(s, 400, "host name too long", 1);
    }
    const char *path = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t path_len = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    if (m->target_form == WEIR_TARGET_ASTERISK) {
        path = "/";
        path_len = 1;
    }
    const struct weir_route *route = weir_rt_route(s->rt, host, (size_t)hl, path, path_len);
    if (route == NULL) {
        evbuffer_drain(in, m->head_len);
        return send_local(s, 404, "no route for this host and path", !s->req_done);
    }
    s->pool = route->pool;
    s->route = route;
    s->upgrade = (m->flags & WEIR_HTTP_F_UPGRADE) != 0;
    s->hash = hash_key(s, m);
    if (build_upstream_head(s, m, hraw, hraw_len) != 0) {
        evbuffer_drain(in, m->head_len);
        return send_local(s, 500, NULL, 1);
    }
    evbuffer_drain(in, m->head_len);
    /* Client reading stays on for the whole exchange (no epoll churn): a
     * body waits in the client buffer until a server is connected, bounded
     * by the read high-water mark, and so do pipelined requests. The body
     * read timeout only applies while a body is expected. */
    bufferevent_set_timeouts(s->cbev, s->req_done ? NULL : w->tv_body, w->tv_idle);
    s->state = S_UPSTREAM;
    return choose_and_connect(s);
}

/* Parse and dispatch the request heads buffered on the client side, one at
 * a time. Returns -1 when the session was freed. */
static int process_heads(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct evbuffer *in = bufferevent_get_input(s->cbev);
    s->in_head_loop = 1;
    while (s->state == S_IDLE || s->state == S_HEAD) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        if (s->state == S_IDLE) {
            s->state = S_HEAD;
            set_gauge(s, WEIR_G_CLIENT_ACTIVE);
            s->t_start = weir_now_us();
            if (s->hdr_timer == NULL)
                s->hdr_timer = evtimer_new(w->base, hdr_timeout_cb, s);
            if (s->hdr_timer != NULL)
                evtimer_add(s->hdr_timer, w->tv_header);
        }
        size_t max_head = w->rt->conf->limits.header_bytes;
        size_t cap = (max_head > WEIR_HTTP_MAX_REQUEST_LINE ? max_head : WEIR_HTTP_MAX_REQUEST_LINE) + 4;
        size_t want = len < cap ? len : cap;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        /* The parser clears its outputs itself; only the resume point is
         * carried between reads (no 5 KiB memset per parse). */
        struct weir_http_msg *m = &w->msg;
        m->scan_pos = s->scan_pos;
        m->scan_lines = s->scan_lines;
        int rc = weir_http_parse_request(p, want, max_head, m);
        if (rc == WEIR_AGAIN) {
            s->scan_pos = m->scan_pos;
            s->scan_lines = m->scan_lines;
            if (s->peer_eof) { /* a head that can never complete */
                s->in_head_loop = 0;
                session_free(s);
                return -1;
            }
            break;
        }
        if (rc != WEIR_OK) {
            if (s->hdr_timer != NULL)
                event_del(s->hdr_timer);
            weir_log_debug("client %s: bad request (%d): %s", s->peer, m->error_status,
                           m->error ? m->error : "invalid");
            if (s->rid[0] == '\0')
                make_request_id(s);
            s->req_done = 1;
            evbuffer_drain(in, len);
            s->in_head_loop = 0;
            return send_local(s, m->error_status ? m->error_status : 400, m->error, 1);
        }
        if (dispatch(s, m) < 0)
            return -1;
    }
    s->in_head_loop = 0;
    return 0;
}

/* ---- choosing a server ---- */

/* Give up on upstream: answer `status` to the client. */
static int fail_upstream(struct weir_session *s, int status, const char *detail)
{
    release_server(s);
    drop_upstream(s);
    /* The body that was not forwarded would be read as the next request. */
    return send_local(s, status, detail, !s->req_done || s->req_consumed);
}

static int on_upstream_ready(struct weir_session *s);

static int choose_and_connect(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct weir_pool *pool = s->pool;
    int max_tries = 1 + pool->conf->retries;
    for (;;) {
        if (s->ntried >= max_tries || s->ntried >= MAX_TRIES)
            return fail_upstream(s, 502, "no server could take the request");
        struct weir_lb_ctx ctx = {.hash = s->hash, .exclude = s->tried, .nexclude = (size_t)s->ntried};
        struct weir_server *srv = pool->lb->pick(pool->lb_state[w->id], &pool->set, &ctx);
        if (srv == NULL && pool->conf->panic && weir_health_pool_all_down(pool)) {
            /* Every server is down by checks: sending to all of them beats
             * failing everything (panic mode, logged by the health module). */
            ctx.ignore_health = 1;
            srv = pool->lb->pick(pool->lb_state[w->id], &pool->set, &ctx);
        }
        if (srv == NULL) {
            if (s->ntried == 0)
                return fail_upstream(s, 503, "no server available");
            return fail_upstream(s, 502, "no server could take the request");
        }
        s->server = srv;
        atomic_fetch_add_explicit(&srv->active, 1, memory_order_relaxed);
        s->tried[s->ntried++] = srv;
        struct weir_upconn *c = NULL;
        if (!s->fresh_retry)
            c = weir_up_take_idle(w, srv, s->idempotent ? 0 : NONIDEM_MAX_IDLE_US);
        if (c != NULL) {
            s->up = c;
            weir_stats_gauge_add(w->id, WEIR_G_UP_ACTIVE, 1);
            s->up_reused = 1;
            bufferevent_setcb(c->bev, up_read_cb, up_write_cb, up_event_cb, s);
            return on_upstream_ready(s);
        }
        c = weir_up_connect(w, srv, up_read_cb, up_write_cb, up_event_cb, s);
        if (c != NULL) {
            s->up = c;
            weir_stats_gauge_add(w->id, WEIR_G_UP_ACTIVE, 1);
            s->up_reused = 0;
            return 0;
        }
        weir_log_warn("pool %s server %s: cannot create a connection", pool->name, srv->address);
        release_server(s);
    }
}

/* ---- bodies ---- */

/* Run the chunked parser over the front of `in` (without consuming it).
 * *total = bytes that belong to the body; returns WEIR_OK (body ended),
 * WEIR_AGAIN or WEIR_ERROR. data_cb, if set, receives the chunk data. */
static int chunked_scan(struct evbuffer *in, struct weir_chunked *c, size_t *total,
                        void (*data_cb)(void *, const char *, size_t), void *ud)
{
    struct evbuffer_iovec v[16];
    int nv = evbuffer_peek(in, -1, NULL, v, 16);
    int rc = WEIR_AGAIN;
    *total = 0;
    for (int i = 0; i < nv && i < 16 && rc == WEIR_AGAIN; i++) {
        size_t used = 0;
        rc = weir_chunked_parse(c, v[i].iov_base, v[i].iov_len, &used, data_cb, ud);
        *total += used;
    }
    return rc;
}

static int pump_request_body(struct weir_session *s);

static void request_sent(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    bufferevent_set_timeouts(s->cbev, NULL, w->tv_idle);
    bufferevent_set_timeouts(s->up->bev, w->tv_upstream, w->tv_upstream);
}

/* The upstream connection is usable: send the head and start the body.
 * Returns -1 when the session was freed (a malformed body already
 * buffered). */
static int on_upstream_ready(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct bufferevent *ub = s->up->bev;
    s->up_ready = 1;
    s->up->connected = 1;
    s->up->nreq++;
    s->t_up = weir_now_us();
    bufferevent_setwatermark(ub, EV_WRITE, LWM, 0);
    bufferevent_setwatermark(ub, EV_READ, 0, read_hwm(s->rt));
    bufferevent_set_timeouts(ub, NULL, w->tv_upstream);
    bufferevent_disable(ub, EV_WRITE); /* written eagerly, see flush_out() */
    bufferevent_enable(ub, EV_READ);
    evbuffer_add(bufferevent_get_output(ub), s->uphead, s->uphead_len);
    if (s->req_done) {
        request_sent(s);
        flush_out(ub);
        return 0;
    }
    return pump_request_body(s);
}

/* Returns -1 when the session was freed. */
static int pump_request_body(struct weir_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->cbev);
    struct evbuffer *out = bufferevent_get_output(s->up->bev);
    while (!s->req_done) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        if (out_full(s->up->bev)) {
            /* Backpressure: the client buffer fills to its high-water mark
             * and libevent stops reading it; up_write_cb resumes. */
            s->req_paused = 1;
            break;
        }
        if (s->req_body == WEIR_BODY_LENGTH) {
            size_t n = avail < s->req_left ? avail : (size_t)s->req_left;
            evbuffer_remove_buffer(in, out, n);
            s->bytes_in += n;
            s->req_left -= n;
            s->req_consumed = 1;
            if (s->req_left == 0)
                s->req_done = 1;
        } else {
            size_t total;
            int rc = chunked_scan(in, &s->req_chunk, &total, NULL, NULL);
            if (rc == WEIR_ERROR) {
                weir_log_debug("client %s: malformed chunked request body", s->peer);
                s->req_done = 1;
                s->req_consumed = 1;
                evbuffer_drain(in, evbuffer_get_length(in));
                if (s->resp_started)
                    goto abort;
                return fail_upstream(s, 400, "malformed chunked body");
            }
            evbuffer_remove_buffer(in, out, total);
            s->bytes_in += total;
            s->req_consumed = 1;
            if (rc == WEIR_OK)
                s->req_done = 1;
        }
    }
    flush_out(s->up->bev);
    if (s->req_done && s->state == S_UPSTREAM)
        request_sent(s);
    else if (s->req_done)
        bufferevent_set_timeouts(s->cbev, NULL, s->w->tv_idle);
    return 0;
abort:
    session_free(s);
    return -1;
}

/* ---- response ---- */

static int pump_response_body(struct weir_session *s);
static int start_tunnel(struct weir_session *s);

/* Add the client-facing response head for msg m to the client output. */
static void send_response_head(struct weir_session *s, const struct weir_http_msg *m, int interim)
{
    struct sbuf *b = &scratch;
    b->len = 0;
    b->oom = 0;
    char line[13] = "HTTP/1.1 000 "; /* the parser guarantees 100..599 */
    line[9] = (char)('0' + m->status / 100);
    line[10] = (char)('0' + m->status / 10 % 10);
    line[11] = (char)('0' + m->status % 10);
    sb_add(b, line, sizeof(line));
    sb_add(b, m->reason, m->reason_len);
    sb_add(b, "\r\n", 2);
    int rid_seen = 0;
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct weir_http_header *h = &m->headers[i];
        if (h->flags & (WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED))
            continue;
        if (h->name_len == 12 && name_is(h, "x-request-id", 12))
            rid_seen = 1;
        sb_header(b, h);
    }
    if (!interim) {
        if (!rid_seen && s->rid[0]) {
            sb_add(b, "X-Request-Id: ", 14);
            sb_str(b, s->rid);
            sb_add(b, "\r\n", 2);
        }
        if (m->status == 101) {
            int ui = weir_http_find_header(m, "upgrade");
            sb_add(b, "Connection: upgrade\r\n", 21);
            if (ui >= 0) {
                sb_add(b, "Upgrade: ", 9);
                sb_add(b, m->headers[ui].value, m->headers[ui].value_len);
                sb_add(b, "\r\n", 2);
            }
        } else {
            if (s->resp_body == WEIR_BODY_CHUNKED && !s->dechunk)
                sb_add(b, "Transfer-Encoding: chunked\r\n", 28);
            if (s->close_after)
                sb_add(b, "Connection: close\r\n", 19);
            else if (s->version == 10)
                sb_add(b, "Connection: keep-alive\r\n", 24);
        }
    }
    sb_add(b, "\r\n", 2);
    if (!b->oom)
        evbuffer_add(bufferevent_get_output(s->cbev), b->p, b->len);
}

/* Returns -1 when the session was freed. */
static int process_response_head(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct evbuffer *in = bufferevent_get_input(s->up->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        s->resp_started = 1;
        size_t max_head = s->rt->conf->limits.header_bytes;
        size_t cap = max_head + 4;
        size_t want = len < cap ? len : cap;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        struct weir_http_msg *m = &w->msg;
        m->scan_pos = s->resp_scan_pos;
        m->scan_lines = s->resp_scan_lines;
        int rc = weir_http_parse_response(p, want, max_head, s->method_id, m);
        if (rc == WEIR_AGAIN) {
            s->resp_scan_pos = m->scan_pos;
            s->resp_scan_lines = m->scan_lines;
            return 0;
        }
        if (rc != WEIR_OK) {
            weir_log_warn("pool %s server %s: invalid response: %s", s->pool->name, s->server->address,
                          m->error ? m->error : "malformed");
            note_outcome(s, WEIR_OUTCOME_RESET);
            return fail_upstream(s, 502, "invalid response from server");
        }
        s->resp_scan_pos = s->resp_scan_lines = 0;
        if (m->status < 200 && m->status != 101) {
            /* Interim responses go to HTTP/1.1 clients only. */
            if (s->version == 11) {
                send_response_head(s, m, 1);
                flush_out(s->cbev);
            }
            evbuffer_drain(in, m->head_len);
            continue;
        }
        if (s->t_first == 0)
            s->t_first = weir_now_us();
        s->status = m->status;
        note_outcome(s, m->status >= 500 ? WEIR_OUTCOME_5XX : WEIR_OUTCOME_OK);
        if (m->status == 101) {
            if (!s->upgrade) {
                weir_log_warn("pool %s server %s: 101 without an upgrade request", s->pool->name,
                              s->server->address);
                return fail_upstream(s, 502, "invalid response from server");
            }
            send_response_head(s, m, 0);
            evbuffer_drain(in, m->head_len);
            return start_tunnel(s);
        }
        s->resp_body = m->body;
        s->resp_left = m->content_length;
        weir_chunked_init(&s->resp_chunk);
        s->resp_keepalive = (m->flags & WEIR_HTTP_F_KEEPALIVE) != 0;
        if (m->body == WEIR_BODY_CHUNKED && s->version == 10) {
            s->dechunk = 1;
            s->close_after = 1;
        }
        if (m->body == WEIR_BODY_EOF)
            s->close_after = 1;
        if (!s->req_done)
            s->close_after = 1; /* the server answered before the whole body */
        send_response_head(s, m, 0);
        evbuffer_drain(in, m->head_len);
        s->state = S_RESP;
        return pump_response_body(s);
    }
}

static void dechunk_cb(void *ud, const char *p, size_t n)
{
    struct weir_session *s = ud;
    evbuffer_add(bufferevent_get_output(s->cbev), p, n);
    s->bytes_out += n;
}

static int response_done(struct weir_session *s, int reusable)
{
    struct weir_upconn *c = s->up;
    if (c != NULL && reusable && s->resp_keepalive && s->req_done && s->resp_body != WEIR_BODY_EOF) {
        s->up = NULL;
        weir_stats_gauge_add(s->w->id, WEIR_G_UP_ACTIVE, -1);
        weir_up_release_idle(c, (size_t)s->rt->conf->limits.upstream_idle_per_server);
    }
    return finish_exchange(s);
}

/* Returns -1 when the session was freed. */
static int pump_response_body(struct weir_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->up->bev);
    struct evbuffer *out = bufferevent_get_output(s->cbev);
    int done = s->resp_body == WEIR_BODY_NONE || (s->resp_body == WEIR_BODY_LENGTH && s->resp_left == 0);
    while (!done) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        if (out_full(s->cbev)) {
            /* the upstream buffer fills to its high-water mark and libevent
             * stops reading it; client_write_cb resumes */
            s->resp_paused = 1;
            break;
        }
        if (s->resp_body == WEIR_BODY_LENGTH) {
            size_t n = avail < s->resp_left ? avail : (size_t)s->resp_left;
            evbuffer_remove_buffer(in, out, n);
            s->bytes_out += n;
            s->resp_left -= n;
            done = s->resp_left == 0;
        } else if (s->resp_body == WEIR_BODY_CHUNKED) {
            size_t total;
            int rc = chunked_scan(in, &s->resp_chunk, &total, s->dechunk ? dechunk_cb : NULL, s);
            if (rc == WEIR_ERROR) {
                weir_log_warn("pool %s server %s: malformed chunked response", s->pool->name,
                              s->tried[s->ntried - 1]->address);
                s->status = 502;
                log_request(s);
                session_free(s);
                return -1;
            }
            if (s->dechunk) {
                evbuffer_drain(in, total);
            } else {
                evbuffer_remove_buffer(in, out, total);
                s->bytes_out += total;
            }
            done = rc == WEIR_OK;
        } else { /* until the server closes */
            s->bytes_out += avail;
            evbuffer_add_buffer(out, in);
        }
    }
    if (done)
        return response_done(s, evbuffer_get_length(in) == 0);
    flush_out(s->cbev);
    return 0;
}

/* ---- tunnel (after 101) ---- */

/* Move what `from` read to `to`, unless `to` already has HWM queued (then
 * `from` fills to its high-water mark and stops reading until to's write
 * callback moves again). */
static void tunnel_move(struct bufferevent *from, struct bufferevent *to)
{
    if (!out_full(to))
        evbuffer_add_buffer(bufferevent_get_output(to), bufferevent_get_input(from));
    flush_out(to);
}

static int start_tunnel(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    s->state = S_TUNNEL;
    s->req_done = 1;
    bufferevent_setwatermark(s->cbev, EV_WRITE, LWM, 0);
    bufferevent_set_timeouts(s->cbev, w->tv_idle, w->tv_idle);
    bufferevent_set_timeouts(s->up->bev, w->tv_idle, w->tv_idle);
    tunnel_move(s->up->bev, s->cbev);
    tunnel_move(s->cbev, s->up->bev);
    return 0;
}

/* ---- callbacks ---- */

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct weir_session *s = arg;
    switch (s->state) {
    case S_IDLE:
    case S_HEAD:
        process_heads(s);
        break;
    case S_UPSTREAM:
    case S_RESP:
        /* Body bytes go upstream once connected; anything after the request
         * (pipelined) waits in the buffer, bounded by the high-water mark. */
        if (s->up_ready && !s->req_done && !s->req_paused)
            pump_request_body(s);
        break;
    case S_TUNNEL:
        tunnel_move(s->cbev, s->up->bev);
        break;
    default:
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        break;
    }
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct weir_session *s = arg;
    int empty = evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    if (empty)
        bufferevent_disable(bev, EV_WRITE); /* see flush_out() */
    if (s->state == S_CLOSING) {
        if (empty)
            session_free(s);
        return;
    }
    if (s->state == S_TUNNEL) {
        tunnel_move(s->up->bev, s->cbev);
        return;
    }
    if (s->resp_paused && s->up != NULL) {
        s->resp_paused = 0;
        pump_response_body(s);
    }
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct weir_session *s = arg;
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_READING)) == (BEV_EVENT_EOF | BEV_EVENT_READING) &&
        (s->state == S_UPSTREAM || s->state == S_RESP) && s->req_done) {
        /* The client half-closed after a complete request: answer it and
         * any complete requests it pipelined before, then close (libevent
         * has stopped reading). */
        s->peer_eof = 1;
        return;
    }
    if (s->state == S_RESP || s->state == S_UPSTREAM) {
        /* The client left mid-exchange: log what it got. */
        if (s->status == 0)
            s->status = 499;
        log_request(s);
    }
    session_free(s);
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    struct weir_session *s = arg;
    switch (s->state) {
    case S_UPSTREAM:
        process_response_head(s);
        break;
    case S_RESP:
        pump_response_body(s);
        break;
    case S_TUNNEL:
        tunnel_move(s->up->bev, s->cbev);
        break;
    default:
        break;
    }
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct weir_session *s = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* see flush_out() */
    if (s->state == S_TUNNEL) {
        tunnel_move(s->cbev, s->up->bev);
        return;
    }
    if (s->req_paused && !s->req_done) {
        s->req_paused = 0;
        pump_request_body(s);
    }
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct weir_session *s = arg;
    struct weir_server *srv = s->server;
    if (what & BEV_EVENT_CONNECTED) {
        on_upstream_ready(s);
        return;
    }
    int timeout = (what & BEV_EVENT_TIMEOUT) != 0;
    if (s->state == S_TUNNEL) {
        tunnel_move(bev, s->cbev); /* what the server sent before closing */
        drop_upstream(s);
        s->state = S_CLOSING;
        if (evbuffer_get_length(bufferevent_get_output(s->cbev)) == 0)
            session_free(s);
        return;
    }
    if (s->state == S_RESP) {
        if ((what & BEV_EVENT_EOF) && s->resp_body == WEIR_BODY_EOF) {
            /* close-delimited body: take what is still buffered */
            struct evbuffer *in = bufferevent_get_input(bev);
            s->bytes_out += evbuffer_get_length(in);
            evbuffer_add_buffer(bufferevent_get_output(s->cbev), in);
            drop_upstream(s);
            response_done(s, 0);
            return;
        }
        weir_log_warn("pool %s server %s: response cut short (%s)", s->pool->name,
                      s->tried[s->ntried - 1]->address, timeout ? "timeout" : "connection lost");
        note_outcome(s, timeout ? WEIR_OUTCOME_TIMEOUT : WEIR_OUTCOME_RESET);
        log_request(s);
        session_free(s);
        return;
    }
    /* No complete response head yet. */
    const char *why = timeout ? (s->up_ready ? "timeout" : "connect timeout")
                              : (s->up_ready ? "connection reset before response" : "connect failed");
    int err = EVUTIL_SOCKET_ERROR();
    if (!s->up_ready || !s->resp_started)
        weir_log_warn("pool %s server %s: %s%s%s", s->pool->name, srv->address, why,
                      err && !timeout ? ": " : "", err && !timeout ? evutil_socket_error_to_string(err) : "");
    int stale = s->up_reused && !s->fresh_retry && !s->resp_started && !timeout;
    /* A kept-alive connection the server closed while idle is not the
     * server's fault: no passive-health failure for it. */
    if (!stale)
        note_outcome(s, !s->up_ready ? WEIR_OUTCOME_CONNECT
                        : timeout    ? WEIR_OUTCOME_TIMEOUT
                                     : WEIR_OUTCOME_RESET);
    if (s->up_ready && timeout) {
        /* The server had the request: it may be acting on it. */
        fail_upstream(s, 504, "the server did not answer in time");
        return;
    }
    if (s->resp_started) {
        fail_upstream(s, 502, "the server closed the connection mid-response");
        return;
    }
    /* Retry only what a client could not lose: a request no byte of which
     * reached a server (connect failed), or an idempotent one, and never
     * after body bytes left the client buffer (they cannot be replayed). */
    int nothing_sent = !s->up_ready;
    if (s->req_consumed || !(nothing_sent || s->idempotent)) {
        fail_upstream(s, 502, "the server failed before answering");
        return;
    }
    release_server(s);
    drop_upstream(s);
    if (stale) {
        /* A kept-alive connection the server had already closed: one more
         * try on a new connection, not counted as an attempt. */
        s->fresh_retry = 1;
        s->ntried--;
    }
    choose_and_connect(s);
}

/* ---- accept / shutdown ---- */

void weir_session_accept(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    long limit = w->rt->conf->limits.max_connections;
    if (atomic_fetch_add_explicit(&weir_client_conns, 1, memory_order_relaxed) >= limit || w->draining) {
        atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
        evutil_closesocket(fd);
        return;
    }
    struct weir_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto err;
    s->cbev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->cbev == NULL) {
        free(s);
        goto err;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->w = w;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->peer, sizeof(s->peer));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->peer, sizeof(s->peer));
    else
        strcpy(s->peer, "unix");
    s->peer_len = strlen(s->peer);
    s->state = S_IDLE;
    s->gauge = -1;
    set_gauge(s, WEIR_G_CLIENT_IDLE);
    TAILQ_INSERT_TAIL(&w->sessions, s, link);
    w->nsessions++;
    bufferevent_setcb(s->cbev, client_read_cb, client_write_cb, client_event_cb, s);
    bufferevent_setwatermark(s->cbev, EV_WRITE, LWM, 0);
    bufferevent_setwatermark(s->cbev, EV_READ, 0, read_hwm(w->rt));
    arm_idle(s);
    bufferevent_disable(s->cbev, EV_WRITE); /* written eagerly, see flush_out() */
    bufferevent_enable(s->cbev, EV_READ);
    return;
err:
    atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
    evutil_closesocket(fd);
}

void weir_session_drain_all(struct weir_worker *w)
{
    struct weir_session *s, *next;
    for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = next) {
        next = TAILQ_NEXT(s, link);
        if (s->state == S_IDLE)
            session_free(s);
        else
            s->close_after = 1;
    }
}

void weir_session_abort_all(struct weir_worker *w)
{
    struct weir_session *s;
    while ((s = TAILQ_FIRST(&w->sessions)) != NULL) {
        if (s->state == S_UPSTREAM || s->state == S_RESP) {
            if (s->status == 0)
                s->status = 499;
            log_request(s);
        }
        session_free(s);
    }
}
