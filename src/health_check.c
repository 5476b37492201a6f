/*
 * health_check.c - the active checks' I/O, on the control thread's base.
 *
 * One struct weir_hcheck per checked server: a period timer (interval_ms,
 * +- jitter_pct, the first one at a random point of the first interval so
 * servers are not checked in lockstep), a deadline timer (timeout_ms over the
 * whole check: connect, request, response) and, while a check runs, one
 * non-blocking bufferevent.
 *
 *   tcp:  the connect completing within the deadline is a pass (for a TLS
 *         pool: the connect and the TLS handshake, verification included).
 *   http: "METHOD path HTTP/1.1", Host (health.host or the server address),
 *         Connection: close, User-Agent: weir-health; the response head is
 *         parsed with weir_http_parse_response (interim 1xx skipped). When
 *         expect_body is set the body is read, by Content-Length, chunked or
 *         close, up to HC_BODY_MAX bytes, and searched for it; without it the
 *         status alone decides and the connection is closed at once.
 *
 * The verdict goes to weir_health_check_done (health.c), which owns the
 * rise/fall counting. A pool with tls checks over TLS with the pool's client
 * context (same SNI, verification and client certificate as the traffic);
 * a handshake or verification failure fails the check with its reason. A check still running when the next
 * period starts (timeout_ms == interval_ms) counts as timed out. Settings are copied when a check starts, so
 * a reload never leaves a check reading a freed snapshot; changed settings restart the schedule
 * (weir_hcheck_apply), the counters in the server's record are kept.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "health_int.h"
#include "weir/http_parse.h"
#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/tls.h"

#define HC_HEAD_MAX (32 * 1024) /* response head bound */
#define HC_BODY_MAX (64 * 1024) /* body bytes searched for expect_body */

enum hc_phase { HC_IDLE = 0, HC_CONNECTING, HC_HEAD, HC_BODY };

struct weir_hcheck {
    struct weir_hsrv *h;
    struct event_base *base;
    struct event *timer;    /* next check */
    struct event *deadline; /* timeout of the running check */
    struct bufferevent *bev;
    int phase; /* enum hc_phase */
    int tls;   /* the running check speaks TLS */
    uint64_t rng;

    /* settings, copied from the pool's health group */
    int type, interval_ms, timeout_ms, jitter_pct, lo, hi, method_id;
    char *method, *path, *host, *expect;

    /* the running check */
    uint64_t start_us;
    struct weir_http_msg msg;
    int status;
    int body_mode; /* enum weir_http_body */
    uint64_t body_left;
    struct weir_chunked chunked;
    char *body; /* HC_BODY_MAX bytes when expect is set */
    size_t body_len;
};

static int str_eq(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static int same_settings(const struct weir_hcheck *c, const struct weir_conf_health *hc)
{
    return c->type == hc->type && c->interval_ms == hc->interval_ms && c->timeout_ms == hc->timeout_ms &&
           c->jitter_pct == hc->jitter_pct && c->lo == hc->expect_status_lo &&
           c->hi == hc->expect_status_hi && str_eq(c->method, hc->method) && str_eq(c->path, hc->path) &&
           str_eq(c->host, hc->host) && str_eq(c->expect, hc->expect_body);
}

static uint64_t hc_rand(struct weir_hcheck *c)
{
    uint64_t z = (c->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void add_ms(struct event *ev, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* Next period: interval +- jitter (the first: anywhere in one interval). */
static void hc_schedule(struct weir_hcheck *c, int first)
{
    long ms, j = (long)c->interval_ms * c->jitter_pct / 100;
    if (first)
        ms = 1 + (long)(hc_rand(c) % (uint64_t)c->interval_ms);
    else
        ms = c->interval_ms - j + (long)(hc_rand(c) % (uint64_t)(2 * j + 1));
    add_ms(c->timer, ms < 1 ? 1 : ms);
}

/* Close the running check's connection (no verdict). */
static void hc_close(struct weir_hcheck *c)
{
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->deadline != NULL)
        evtimer_del(c->deadline);
    c->phase = HC_IDLE;
}

static void hc_finish(struct weir_hcheck *c, int passed, int status, const char *detail)
{
    double ms = (double)(weir_now_us() - c->start_us) / 1000.0;
    hc_close(c);
    weir_health_check_done(c->h, passed, status, detail, ms);
}

static void hc_judge(struct weir_hcheck *c)
{
    char detail[128];
    int ok = weir_health_eval_http(c->status, c->body, c->body_len, c->lo, c->hi, c->expect, detail,
                                   sizeof(detail));
    hc_finish(c, ok, c->status, detail);
}

static void hc_body_data(void *ud, const char *p, size_t n)
{
    struct weir_hcheck *c = ud;
    size_t room = HC_BODY_MAX - c->body_len;
    if (n > room)
        n = room;
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
}

/* Consume body bytes from `in`. Returns 1 when the verdict can be given. */
static int hc_body(struct weir_hcheck *c, struct evbuffer *in, int eof)
{
    while (evbuffer_get_length(in) > 0 && c->body_len < HC_BODY_MAX) {
        size_t n = evbuffer_get_length(in), used = n;
        if (n > HC_BODY_MAX)
            n = used = HC_BODY_MAX;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (p == NULL)
            return 1;
        switch (c->body_mode) {
        case WEIR_BODY_LENGTH:
            if (used > c->body_left)
                used = (size_t)c->body_left;
            hc_body_data(c, p, used);
            c->body_left -= used;
            evbuffer_drain(in, used);
            if (c->body_left == 0)
                return 1;
            break;
        case WEIR_BODY_CHUNKED: {
            int rc = weir_chunked_parse(&c->chunked, p, n, &used, hc_body_data, c);
            evbuffer_drain(in, used);
            if (rc != WEIR_AGAIN)
                return 1; /* end of body, or bad framing: judge what arrived */
            break;
        }
        default: /* close-delimited */
            hc_body_data(c, p, n);
            evbuffer_drain(in, n);
            break;
        }
    }
    return eof || c->body_len >= HC_BODY_MAX;
}

/* Parse the head (skipping 1xx). Returns 1 when the verdict can be given,
 * 0 to wait for more, -1 when the check already finished (failed). */
static int hc_head(struct weir_hcheck *c, struct evbuffer *in)
{
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return 0;
        size_t n = len < HC_HEAD_MAX ? len : HC_HEAD_MAX;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        int rc = p == NULL ? WEIR_ERROR : weir_http_parse_response(p, n, HC_HEAD_MAX, c->method_id, &c->msg);
        if (rc == WEIR_AGAIN)
            return 0;
        if (rc != WEIR_OK) {
            char d[128];
            snprintf(d, sizeof(d), "bad response: %s", c->msg.error ? c->msg.error : "unparsable");
            hc_finish(c, 0, 0, d);
            return -1;
        }
        c->status = c->msg.status;
        c->body_mode = c->msg.body;
        c->body_left = c->msg.content_length;
        evbuffer_drain(in, c->msg.head_len);
        weir_http_msg_reset(&c->msg);
        if (c->status >= 100 && c->status < 200 && c->status != 101)
            continue; /* interim response */
        if (c->expect == NULL || c->body_mode == WEIR_BODY_NONE ||
            (c->body_mode == WEIR_BODY_LENGTH && c->body_left == 0))
            return 1;
        weir_chunked_init(&c->chunked);
        c->body_len = 0;
        c->phase = HC_BODY;
        return 0;
    }
}

/* While the head is awaited, run its parser over `in`. Returns 1 when the
 * check is over (judged, or finished by an error), 0 to go on. */
static int hc_head_step(struct weir_hcheck *c, struct evbuffer *in)
{
    if (c->phase != HC_HEAD)
        return 0;
    int r = hc_head(c, in);
    if (r > 0)
        hc_judge(c);
    return r != 0;
}

static void hc_read_cb(struct bufferevent *bev, void *arg)
{
    struct weir_hcheck *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    if (hc_head_step(c, in))
        return;
    if (c->phase == HC_HEAD && evbuffer_get_length(in) >= HC_HEAD_MAX) {
        hc_finish(c, 0, 0, "response head too large");
        return;
    }
    if (c->phase == HC_BODY && hc_body(c, in, 0))
        hc_judge(c);
}

static void hc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct weir_hcheck *c = arg;
    char d[128];
    int err = EVUTIL_SOCKET_ERROR();

    if (what & BEV_EVENT_CONNECTED) {
        if (c->type == WEIR_CHECK_TCP) {
            hc_finish(c, 1, 0, "connected");
            return;
        }
        c->phase = HC_HEAD;
        return;
    }
    if (c->phase == HC_CONNECTING && c->tls) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
        if (vr != X509_V_OK)
            snprintf(d, sizeof(d), "TLS handshake failed: certificate verify failed (%s)",
                     X509_verify_cert_error_string(vr));
        else if (e != 0)
            snprintf(d, sizeof(d), "TLS handshake failed: %s", ERR_reason_error_string(e));
        else if (err == ECONNREFUSED)
            snprintf(d, sizeof(d), "connect refused");
        else
            snprintf(d, sizeof(d), "TLS handshake failed: %s", err ? strerror(err) : "closed");
        while (bufferevent_get_openssl_error(bev) != 0) {
        }
        hc_finish(c, 0, 0, d);
        return;
    }
    if (c->phase == HC_CONNECTING) {
        if (err == ECONNREFUSED)
            snprintf(d, sizeof(d), "connect refused");
        else
            snprintf(d, sizeof(d), "connect failed: %s", err ? strerror(err) : "error");
        hc_finish(c, 0, 0, d);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        struct evbuffer *in = bufferevent_get_input(bev);
        if (hc_head_step(c, in))
            return;
        if (c->phase == HC_BODY) {
            hc_body(c, in, 1);
            if (c->body_mode == WEIR_BODY_EOF || c->body_len > 0) {
                hc_judge(c); /* a truncated body is judged on what arrived */
                return;
            }
        }
        hc_finish(c, 0, 0, c->phase == HC_HEAD ? "closed without a response" : "closed during the body");
        return;
    }
    snprintf(d, sizeof(d), "connection error: %s", err ? strerror(err) : "reset");
    hc_finish(c, 0, 0, d);
}

static void hc_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_hcheck *c = arg;
    char d[64];
    (void)fd, (void)what;
    snprintf(d, sizeof(d), "timeout after %d ms%s", c->timeout_ms,
             c->phase == HC_CONNECTING ? " (connecting)" : "");
    hc_finish(c, 0, 0, d);
}

static void hc_start(struct weir_hcheck *c)
{
    struct weir_server *s = c->h->s;
    char d[128];

    c->start_us = weir_now_us();
    c->phase = HC_CONNECTING;
    c->status = 0;
    c->body_len = 0;
    weir_http_msg_reset(&c->msg);
    add_ms(c->deadline, c->timeout_ms);
    /* Our own socket, close-on-exec (libevent's would not be). */
    evutil_socket_t fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(d, sizeof(d), "cannot create a socket: %s", strerror(errno));
        hc_finish(c, 0, 0, d);
        return;
    }
    struct weir_tls_client *tls = c->h->pool != NULL ? c->h->pool->tls : NULL;
    c->tls = tls != NULL;
    if (tls != NULL) {
        char host[256];
        const char *a = s->address, *e;
        if (*a == '[')
            e = strchr(++a, ']');
        else
            e = strrchr(a, ':');
        size_t hl = e != NULL ? (size_t)(e - a) : strlen(a);
        if (hl >= sizeof(host))
            hl = sizeof(host) - 1;
        memcpy(host, a, hl);
        host[hl] = '\0';
        SSL *ssl = weir_tls_client_ssl(tls, host, NULL);
        c->bev = ssl != NULL ? bufferevent_openssl_socket_new(c->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                              BEV_OPT_CLOSE_ON_FREE)
                             : NULL;
        if (c->bev == NULL && ssl != NULL)
            SSL_free(ssl);
        if (c->bev != NULL)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    } else {
        c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        close(fd);
        hc_finish(c, 0, 0, tls != NULL ? "cannot create a TLS connection" : "cannot create a socket");
        return;
    }
    bufferevent_setcb(c->bev, hc_read_cb, NULL, hc_event_cb, c);
    if (c->type == WEIR_CHECK_HTTP) {
        if (evbuffer_add_printf(
                bufferevent_get_output(c->bev),
                "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: weir-health\r\n\r\n",
                c->method, c->path, c->host ? c->host : s->address) < 0) {
            hc_finish(c, 0, 0, "out of memory");
            return;
        }
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    }
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) != 0) {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(d, sizeof(d), "%s", err == ECONNREFUSED ? "connect refused" : "connect failed");
        hc_finish(c, 0, 0, d);
    }
}

static void hc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_hcheck *c = arg;
    (void)fd, (void)what;
    hc_schedule(c, 0);
    if (c->phase != HC_IDLE)
        hc_deadline_cb(-1, 0, c); /* still running at the next period */
    hc_start(c);
}

static void hc_free(struct weir_hcheck *c)
{
    hc_close(c);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->deadline != NULL)
        event_free(c->deadline);
    free(c->method);
    free(c->path);
    free(c->host);
    free(c->expect);
    free(c->body);
    free(c);
}

void weir_hcheck_stop(struct weir_hsrv *h)
{
    if (h->check != NULL)
        hc_free(h->check);
    h->check = NULL;
}

static char *dup_or_null(const char *s, int *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = 1;
    return d;
}

int weir_hcheck_apply(struct weir_hsrv *h, struct event_base *base)
{
    const struct weir_conf_health *hc = &h->pool->conf->health;
    int fail = 0;

    if (hc->type == WEIR_CHECK_NONE) {
        weir_hcheck_stop(h);
        return 0;
    }
    if (h->check != NULL && same_settings(h->check, hc))
        return 0;
    weir_hcheck_stop(h);
    struct weir_hcheck *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    c->h = h;
    c->base = base;
    c->rng = weir_now_us() ^ ((uint64_t)h->s->id << 32) ^ (uint64_t)(uintptr_t)c;
    c->type = hc->type;
    c->interval_ms = hc->interval_ms > 0 ? hc->interval_ms : 1000;
    c->timeout_ms = hc->timeout_ms > 0 ? hc->timeout_ms : 500;
    c->jitter_pct = hc->jitter_pct;
    c->lo = hc->expect_status_lo;
    c->hi = hc->expect_status_hi;
    c->method = dup_or_null(hc->method ? hc->method : "GET", &fail);
    c->path = dup_or_null(hc->path ? hc->path : "/", &fail);
    c->host = dup_or_null(hc->host, &fail);
    c->expect = dup_or_null(hc->expect_body, &fail);
    c->method_id = c->method != NULL && strcmp(c->method, "HEAD") == 0 ? WEIR_HTTP_HEAD : WEIR_HTTP_GET;
    if (c->expect != NULL && (c->body = malloc(HC_BODY_MAX)) == NULL)
        fail = 1;
    c->timer = evtimer_new(base, hc_timer_cb, c);
    c->deadline = evtimer_new(base, hc_deadline_cb, c);
    if (fail || c->timer == NULL || c->deadline == NULL) {
        hc_free(c);
        return -1;
    }
    h->check = c;
    hc_schedule(c, 1);
    return 0;
}
