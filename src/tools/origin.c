#include "config.h"

/*
 * origin.c - weir-origin, the demo and test origin server: its settings
 * and counters, and the responses (routes, generated bodies, /slow, the
 * control endpoints under /_ctl/, the WebSocket handshake).
 *
 * A small HTTP/1.1 server on libevent bufferevents, written independently of
 * weir's own parser so that end-to-end tests compare two implementations. The
 * quick start, every end-to-end test and the benchmark use it, so the common
 * path (small GET, keep-alive) costs one search, one copy of the head, one
 * parse and one evbuffer_add per request, and prints nothing unless --verbose.
 *
 * Per connection a state machine (enum conn_state) answers pipelined requests
 * in order: the next head is parsed only once the current response is fully
 * queued. Request bodies (Content-Length or chunked with trailers) are
 * decoded, counted and checksummed (FNV-1a 64) as they stream, then dropped.
 * Sized response bodies are generated only while the output buffer is below
 * ORIGIN_OUT_HIGH, by reference to a static pattern, so 1 GiB costs little
 * memory. Request parsing and body decoding live in origin_http.c, WebSocket
 * framing in origin_ws.c, connections, threads, options and main() in
 * origin_main.c; origin.h has what they share.
 *
 * Threads (--threads N): one event_base and one SO_REUSEPORT listener per
 * worker; a connection never leaves its worker. Settings changed by
 * /_ctl/set are atomics (numbers) or guarded by a mutex (strings); counters
 * are atomics.
 *
 * Depends on: origin.h (struct conn and the request side in origin_http.c,
 * the WebSocket echo in origin_ws.c).
 */

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "origin.h"

static const char HEXD[] = "0123456789abcdef";

struct origin_settings g_settings = {
    .threads = 1,
    .fail_status = 500,
    .health_status = 200,
    .body_size = -1,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .health_body = "ok\n",
};
struct origin_stats g_stats;
static pthread_mutex_t g_last_lock = PTHREAD_MUTEX_INITIALIZER; /* guards g_last, g_last_health */
struct origin_last g_last, g_last_health;
char g_pattern[ORIGIN_SPAN + ORIGIN_PATTERN_LEN];

/* Integer settings by name: "--delay-ms N" on the command line, "delay_ms=N"
 * in /_ctl/set. */
static const struct {
    const char *key;
    atomic_int *var;
    int min, max;
} g_int_settings[] = {
    {"delay_ms", &g_settings.delay_ms, 0, ORIGIN_MS_MAX},
    {"jitter_ms", &g_settings.jitter_ms, 0, ORIGIN_MS_MAX},
    {"fail_pct", &g_settings.fail_pct, 0, 100},
    {"fail_status", &g_settings.fail_status, 200, 599},
    {"health_status", &g_settings.health_status, 200, 599},
    {"health_hang", &g_settings.health_hang, 0, 1},
    {"chunked", &g_settings.chunked, 0, 1},
};

/* ---------------------------------------------------------------- helpers */

/* Output scratch buffer in front of an evbuffer: many small appends, one
 * evbuffer_add. Nothing is ever truncated. */
struct ob {
    struct evbuffer *out;
    size_t len;
    char p[ORIGIN_HEAD_BUF];
};

static void ob_flush(struct ob *o)
{
    if (o->len > 0)
        evbuffer_add(o->out, o->p, o->len);
    o->len = 0;
}

static void ob_put(struct ob *o, const void *s, size_t n)
{
    if (n > sizeof(o->p) - o->len) {
        ob_flush(o);
        if (n > sizeof(o->p)) {
            evbuffer_add(o->out, s, n);
            return;
        }
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

#define ob_lit(o, s) ob_put((o), (s), sizeof(s) - 1)

static void ob_u64(struct ob *o, uint64_t v)
{
    char t[24];
    size_t i = sizeof(t);
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    ob_put(o, t + i, sizeof(t) - i);
}

/* Lower-case hex of v with at least minw digits into t (16 bytes). */
static size_t fmt_hex(char *t, uint64_t v, int minw)
{
    char tmp[16];
    int i = 16;
    do {
        tmp[--i] = HEXD[v & 15];
        v >>= 4;
    } while (v != 0 || 16 - i < minw);
    memcpy(t, tmp + i, (size_t)(16 - i));
    return (size_t)(16 - i);
}

static uint64_t worker_rand(struct worker *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dULL;
}

static void worker_date(struct worker *w)
{
    time_t now = time(NULL);
    struct tm tm;

    if (now == w->date_sec)
        return;
    gmtime_r(&now, &tm);
    w->date_len = strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    w->date_sec = now;
}

static void json_str(struct evbuffer *b, const char *s, size_t n)
{
    size_t run = 0;

    evbuffer_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[6] = {'\\', (char)ch, 'u', '0', '0', 0};
        size_t el = 2;

        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            continue;
        evbuffer_add(b, s + run, i - run);
        run = i + 1;
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[1] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch != '"' && ch != '\\') { /* other controls, DEL, obs-text */
            memcpy(esc + 1, "u00", 3);
            esc[4] = HEXD[ch >> 4];
            esc[5] = HEXD[ch & 15];
            el = 6;
        }
        evbuffer_add(b, esc, el);
    }
    evbuffer_add(b, s + run, n - run);
    evbuffer_add(b, "\"", 1);
}

static const char *reason(int status)
{
    /* clang-format off */
    static const struct { int code; const char *text; } tab[] = {
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"}, {206, "Partial Content"},
        {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"}, {304, "Not Modified"},
        {307, "Temporary Redirect"}, {308, "Permanent Redirect"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"},
        {409, "Conflict"}, {410, "Gone"}, {413, "Content Too Large"}, {417, "Expectation Failed"},
        {426, "Upgrade Required"}, {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"}, {501, "Not Implemented"}, {502, "Bad Gateway"},
        {503, "Service Unavailable"}, {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
    };
    /* clang-format on */
    for (size_t i = 0; i < ARRAY_LEN(tab); i++) {
        if (tab[i].code == status)
            return tab[i].text;
    }
    return "Status";
}

static bool no_body_status(int status)
{
    return status == 204 || status == 304 || status < 200;
}

static void last_record(struct origin_last *l, const char *p, size_t n)
{
    pthread_mutex_lock(&g_last_lock);
    if (n > l->cap) {
        char *np = realloc(l->buf, n);
        if (np == NULL) {
            pthread_mutex_unlock(&g_last_lock);
            return;
        }
        l->buf = np;
        l->cap = n;
    }
    memcpy(l->buf, p, n);
    l->len = n;
    pthread_mutex_unlock(&g_last_lock);
}

/* Change one setting by name (g_int_settings, body_size, cache_control,
 * health_body); v is URL-encoded when decode. With apply false only
 * validates. Returns 0 or -1. Any thread. */
int setting_set(const char *k, size_t kl, const char *v, size_t vl, bool decode, bool apply)
{
    char tmp[ORIGIN_CC_MAX + 1];
    uint64_t x;
    long n;
    bool cc;

    for (size_t i = 0; i < ARRAY_LEN(g_int_settings); i++) {
        if (!key_is(k, kl, g_int_settings[i].key))
            continue;
        if (parse_uint(v, vl, (uint64_t)g_int_settings[i].max, &x) < 0 || x < (uint64_t)g_int_settings[i].min)
            return -1;
        if (apply)
            STORE(*g_int_settings[i].var, (int)x);
        return 0;
    }
    if (key_is(k, kl, "body_size")) {
        bool def = vl == 2 && memcmp(v, "-1", 2) == 0;
        if (!def && parse_uint(v, vl, ORIGIN_SIZE_MAX, &x) < 0)
            return -1;
        if (apply)
            STORE(g_settings.body_size, def ? -1LL : (long long)x);
        return 0;
    }
    cc = key_is(k, kl, "cache_control");
    if (!cc && !key_is(k, kl, "health_body"))
        return -1;
    n = value_copy(v, vl, tmp, cc ? ORIGIN_CC_MAX + 1 : ORIGIN_HBODY_MAX + 1, decode, cc);
    if (n < 0)
        return -1;
    if (apply) {
        pthread_mutex_lock(&g_settings.lock);
        memcpy(cc ? g_settings.cache_control : g_settings.health_body, tmp, (size_t)n + 1);
        if (cc)
            STORE(g_settings.has_cc, n > 0);
        pthread_mutex_unlock(&g_settings.lock);
    }
    return 0;
}

/* -------------------------------------------------------------- responses */

/* Append a response head to o. mode: RB_NONE, RB_LENGTH (clen) or
 * RB_CHUNKED; with_cc adds Cache-Control (cc= of the request, else the
 * global one); extra is NULL or complete header lines. */
static void resp_head(struct conn *c, struct ob *o, int status, bool json, int mode, uint64_t clen,
                      bool with_cc, const char *extra)
{
    struct req *r = &c->req;
    const char *rs = reason(status);
    char hx[16];

    worker_date(c->w);
    ob_lit(o, "HTTP/1.1 ");
    ob_u64(o, (uint64_t)status);
    ob_lit(o, " ");
    ob_put(o, rs, strlen(rs));
    ob_lit(o, "\r\nDate: ");
    ob_put(o, c->w->date, c->w->date_len);
    ob_lit(o, "\r\nX-Origin: ");
    ob_put(o, g_settings.name, g_settings.name_len);
    if (json)
        ob_lit(o, "\r\nContent-Type: application/json\r\n");
    else
        ob_lit(o, "\r\nContent-Type: text/plain\r\n");
    if (with_cc && r->has_cc && r->cc_len > 0) {
        ob_lit(o, "Cache-Control: ");
        ob_put(o, c->cc, r->cc_len);
        ob_lit(o, "\r\n");
    } else if (with_cc && !r->has_cc && LOAD(g_settings.has_cc)) {
        pthread_mutex_lock(&g_settings.lock);
        ob_lit(o, "Cache-Control: ");
        ob_put(o, g_settings.cache_control, strlen(g_settings.cache_control));
        ob_lit(o, "\r\n");
        pthread_mutex_unlock(&g_settings.lock);
    }
    if (mode == RB_LENGTH) {
        ob_lit(o, "Content-Length: ");
        ob_u64(o, clen);
        ob_lit(o, "\r\n");
    } else if (mode == RB_CHUNKED) {
        ob_lit(o, "Transfer-Encoding: chunked\r\n");
    }
    ob_lit(o, "X-Received-Bytes: ");
    ob_u64(o, r->body_bytes);
    ob_lit(o, "\r\nX-Received-Fnv: ");
    ob_put(o, hx, fmt_hex(hx, r->body_fnv, 16));
    ob_lit(o, "\r\n");
    if (!r->keepalive)
        ob_lit(o, "Connection: close\r\n");
    else if (r->minor == 0)
        ob_lit(o, "Connection: keep-alive\r\n");
    if (extra != NULL)
        ob_put(o, extra, strlen(extra));
    ob_lit(o, "\r\n");
    if (g_settings.verbose)
        fprintf(stderr, "weir-origin %s: %.*s %.*s -> %d\n", g_settings.name, (int)r->method_len,
                r->method ? r->method : "-", (int)r->target_len, r->target ? r->target : "-", status);
}

/* The current response is fully queued. */
static void response_done(struct conn *c)
{
    c->state = c->req.keepalive ? ST_HEAD : ST_CLOSING;
}

/* A complete response with a small body. */
static void resp_simple(struct conn *c, int status, bool json, const char *body, size_t n, bool with_cc,
                        const char *extra)
{
    struct ob o = {.out = bufferevent_get_output(c->bev)};
    bool nobody = no_body_status(status);

    resp_head(c, &o, status, json, nobody ? RB_NONE : RB_LENGTH, n, with_cc, extra);
    if (!nobody && !c->req.is_head)
        ob_put(&o, body, n);
    ob_flush(&o);
    response_done(c);
}

/* Answer an error and close the connection. */
void conn_error(struct conn *c, int status, const char *extra)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));

    c->req.keepalive = false;
    c->bstate = B_NONE;
    resp_simple(c, status, false, body, (size_t)n, false, extra);
}

static bool resp_chunked(const struct conn *c)
{
    int ch = c->req.chunked >= 0 ? c->req.chunked : LOAD(g_settings.chunked);
    return ch && c->req.minor == 1; /* HTTP/1.0 gets Content-Length */
}

/* Queue n more bytes of the pattern (chunk-coded when out_chunked). */
static void body_emit(struct conn *c, uint64_t n)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t piece = c->out_chunked ? ORIGIN_CHUNK : ORIGIN_SPAN;

    while (n > 0) {
        size_t k = n < piece ? (size_t)n : piece;
        const char *src = g_pattern + c->out_off % ORIGIN_PATTERN_LEN;
        char hx[20];

        if (c->out_chunked) {
            size_t hl = fmt_hex(hx, k, 1);
            memcpy(hx + hl, "\r\n", 2);
            evbuffer_add(out, hx, hl + 2);
        }
        if (k >= 4096) /* static memory, no copy */
            evbuffer_add_reference(out, src, k, NULL, NULL);
        else
            evbuffer_add(out, src, k);
        if (c->out_chunked)
            evbuffer_add(out, "\r\n", 2);
        n -= k;
        c->out_off += k;
        c->out_left -= k;
    }
}

static void body_finish(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->out_chunked && c->out_trailer)
        evbuffer_add(out, "0\r\nX-Trailer: done\r\n\r\n", 22);
    else if (c->out_chunked)
        evbuffer_add(out, "0\r\n\r\n", 5);
}

/* ST_SEND: generate while the output is below the high mark. */
void send_fill(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    while (c->out_left > 0 && evbuffer_get_length(out) < ORIGIN_OUT_HIGH)
        body_emit(c, c->out_left < ORIGIN_SPAN ? c->out_left : ORIGIN_SPAN);
    if (c->out_left == 0) {
        body_finish(c);
        response_done(c);
    }
}

static void timer_arm(struct conn *c, unsigned ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&c->timer, &tv);
}

/* Any path: "NAME METHOD PATH\n", or size bytes of the pattern. */
static void respond_default(struct conn *c)
{
    struct req *r = &c->req;
    struct ob o = {.out = bufferevent_get_output(c->bev)};
    int status = r->status > 0 ? r->status : 200;
    int fp = r->fail_pct >= 0 ? r->fail_pct : LOAD(g_settings.fail_pct);
    long long size = r->size >= 0 ? r->size : LOAD(g_settings.body_size);
    size_t n = g_settings.name_len + (r->is_head ? 3 : r->method_len) + r->path_len + 3; /* HEAD: as GET */
    char hx[20];

    if (fp > 0 && (int)(worker_rand(c->w) % 100) < fp)
        status = LOAD(g_settings.fail_status);
    if (no_body_status(status)) {
        resp_simple(c, status, false, NULL, 0, true, NULL);
        return;
    }
    c->out_chunked = resp_chunked(c);
    c->out_trailer = c->out_chunked && r->trailer > 0;
    c->out_left = size >= 0 ? (uint64_t)size : n;
    c->out_off = 0;
    resp_head(c, &o, status, false, c->out_chunked ? RB_CHUNKED : RB_LENGTH, c->out_left, true, NULL);
    if (r->is_head) {
        ob_flush(&o);
        response_done(c);
        return;
    }
    if (size >= 0) {
        ob_flush(&o);
        c->state = ST_SEND;
        send_fill(c);
        return;
    }
    if (c->out_chunked) {
        size_t hl = fmt_hex(hx, n, 1);
        ob_put(&o, hx, hl);
        ob_lit(&o, "\r\n");
    }
    ob_put(&o, g_settings.name, g_settings.name_len);
    ob_lit(&o, " ");
    ob_put(&o, r->method, r->method_len);
    ob_lit(&o, " ");
    ob_put(&o, r->path, r->path_len);
    ob_lit(&o, "\n");
    if (c->out_chunked)
        ob_lit(&o, "\r\n");
    ob_flush(&o);
    body_finish(c);
    response_done(c);
}

/* /echo: the request as JSON. */
static void respond_echo(struct conn *c)
{
    struct req *r = &c->req;
    struct evbuffer *b = evbuffer_new();
    struct ob o = {.out = bufferevent_get_output(c->bev)};
    char hx[17];

    if (b == NULL) {
        c->dead = true;
        return;
    }
    evbuffer_add(b, "{\"name\":", 8);
    json_str(b, g_settings.name, g_settings.name_len);
    evbuffer_add(b, ",\"method\":", 10);
    json_str(b, r->method, r->method_len);
    evbuffer_add(b, ",\"target\":", 10);
    json_str(b, r->target, r->target_len);
    evbuffer_add(b, ",\"path\":", 8);
    json_str(b, r->path, r->path_len);
    evbuffer_add(b, ",\"query\":", 9);
    json_str(b, r->query ? r->query : "", r->query_len);
    evbuffer_add_printf(b, ",\"version\":\"HTTP/1.%d\",\"headers\":[", r->minor);
    for (unsigned i = 0; i < r->nhdrs; i++) {
        const struct hdr *h = &c->hdrs[i];
        evbuffer_add(b, i == 0 ? "[" : ",[", i == 0 ? 1 : 2);
        json_str(b, c->head + h->name, h->name_len);
        evbuffer_add(b, ",", 1);
        json_str(b, c->head + h->value, h->value_len);
        evbuffer_add(b, "]", 1);
    }
    hx[fmt_hex(hx, r->body_fnv, 16)] = '\0';
    evbuffer_add_printf(b, "],\"body_bytes\":%" PRIu64 ",\"body_fnv\":\"%s\"}\n", r->body_bytes, hx);
    resp_head(c, &o, r->status > 0 ? r->status : 200, true, RB_LENGTH, evbuffer_get_length(b), true, NULL);
    ob_flush(&o);
    if (!r->is_head)
        evbuffer_add_buffer(o.out, b);
    evbuffer_free(b);
    response_done(c);
}

static void respond_health(struct conn *c)
{
    char body[ORIGIN_HBODY_MAX + 1];
    size_t n;

    pthread_mutex_lock(&g_settings.lock);
    n = strlen(g_settings.health_body);
    memcpy(body, g_settings.health_body, n);
    pthread_mutex_unlock(&g_settings.lock);
    resp_simple(c, LOAD(g_settings.health_status), false, body, n, false, NULL);
}

void respond_route(struct conn *c)
{
    if (c->req.route == R_ECHO)
        respond_echo(c);
    else if (c->req.route == R_HEALTH)
        respond_health(c);
    else
        respond_default(c);
}

/* /slow: the head now, then size bytes spread evenly over ms by the timer. */
static void slow_start(struct conn *c)
{
    struct req *r = &c->req;
    struct ob o = {.out = bufferevent_get_output(c->bev)};
    long long gsz = LOAD(g_settings.body_size);
    int gms = LOAD(g_settings.delay_ms);
    uint64_t size = r->size >= 0 ? (uint64_t)r->size : gsz >= 0 ? (uint64_t)gsz : 100;
    unsigned ms = (unsigned)(r->delay_ms >= 0 ? r->delay_ms : gms > 0 ? gms : 1000);
    int status = r->status > 0 ? r->status : 200;
    bool nobody = no_body_status(status);

    c->out_chunked = resp_chunked(c);
    c->out_trailer = c->out_chunked && r->trailer > 0;
    resp_head(c, &o, status, false,
              nobody           ? RB_NONE
              : c->out_chunked ? RB_CHUNKED
                               : RB_LENGTH,
              size, true, NULL);
    ob_flush(&o);
    if (nobody || r->is_head) {
        response_done(c);
        return;
    }
    c->out_left = c->slow_total = size;
    c->out_off = 0;
    c->slow_tick = 0;
    c->slow_ticks = ms / ORIGIN_SLOW_TICK_MS ? ms / ORIGIN_SLOW_TICK_MS : 1;
    c->slow_interval_ms = ms / c->slow_ticks;
    c->state = ST_SLOW;
    timer_arm(c, c->slow_interval_ms);
}

void slow_tick(struct conn *c)
{
    uint64_t due, sent;

    if (c->slow_tick < c->slow_ticks)
        c->slow_tick++;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) < ORIGIN_OUT_HIGH) {
        due = c->slow_total * c->slow_tick / c->slow_ticks;
        sent = c->slow_total - c->out_left;
        if (due > sent)
            body_emit(c, due - sent < ORIGIN_OUT_HIGH ? due - sent : ORIGIN_OUT_HIGH);
    }
    if (c->out_left > 0) {
        timer_arm(c, c->slow_interval_ms);
        return;
    }
    body_finish(c);
    response_done(c);
}

/* /_ctl/...: counters, settings, last heads. Never delayed or counted. */
static void respond_ctl(struct conn *c)
{
    struct req *r = &c->req;
    struct evbuffer *b = evbuffer_new();
    struct ob o = {.out = bufferevent_get_output(c->bev)};
    const char *p = r->query, *e = p + r->query_len, *k = NULL, *v;
    size_t kl = 0, vl;
    int status = 200;
    bool json = true;

    if (b == NULL) {
        c->dead = true;
        return;
    }
    switch (r->route) {
    case R_CTL_RESET:
        STORE(g_stats.accepted, 0);
        STORE(g_stats.requests, 0);
        STORE(g_stats.health, 0);
        /* fall through */
    case R_CTL_STATS:
        evbuffer_add(b, "{\"name\":", 8);
        json_str(b, g_settings.name, g_settings.name_len);
        evbuffer_add_printf(b,
                            ",\"connections_accepted\":%lld,\"connections_open\":%lld,\"requests\":%lld,"
                            "\"health_checks\":%lld}\n",
                            LOAD(g_stats.accepted), LOAD(g_stats.open), LOAD(g_stats.requests),
                            LOAD(g_stats.health));
        break;
    case R_CTL_SET:
        while (p != NULL && query_next(&p, e, &k, &kl, &v, &vl)) { /* validate all, then apply */
            if (setting_set(k, kl, v, vl, true, false) < 0) {
                status = 400;
                break;
            }
        }
        for (p = r->query; status == 200 && p != NULL && query_next(&p, e, &k, &kl, &v, &vl);)
            setting_set(k, kl, v, vl, true, true);
        if (status != 200) {
            json = false;
            evbuffer_add_printf(b, "bad setting %.*s\n", (int)kl, k);
            break;
        }
        evbuffer_add_printf(b,
                            "{\"health_status\":%d,\"health_hang\":%d,\"delay_ms\":%d,\"jitter_ms\":%d,"
                            "\"fail_pct\":%d,\"fail_status\":%d,\"body_size\":%lld,\"chunked\":%d,"
                            "\"health_body\":",
                            LOAD(g_settings.health_status), LOAD(g_settings.health_hang),
                            LOAD(g_settings.delay_ms), LOAD(g_settings.jitter_ms), LOAD(g_settings.fail_pct),
                            LOAD(g_settings.fail_status), LOAD(g_settings.body_size),
                            LOAD(g_settings.chunked));
        pthread_mutex_lock(&g_settings.lock);
        json_str(b, g_settings.health_body, strlen(g_settings.health_body));
        evbuffer_add(b, ",\"cache_control\":", 17);
        json_str(b, g_settings.cache_control, strlen(g_settings.cache_control));
        pthread_mutex_unlock(&g_settings.lock);
        evbuffer_add(b, "}\n", 2);
        break;
    case R_CTL_LAST:
    case R_CTL_LAST_HEALTH:
        json = false;
        pthread_mutex_lock(&g_last_lock);
        if (r->route == R_CTL_LAST)
            evbuffer_add(b, g_last.buf, g_last.len);
        else
            evbuffer_add(b, g_last_health.buf, g_last_health.len);
        pthread_mutex_unlock(&g_last_lock);
        break;
    default:
        status = 404;
        json = false;
        evbuffer_add(b, "404 Not Found\n", 14);
        break;
    }
    resp_head(c, &o, status, json, RB_LENGTH, evbuffer_get_length(b), false, NULL);
    ob_flush(&o);
    if (!r->is_head)
        evbuffer_add_buffer(o.out, b);
    evbuffer_free(b);
    response_done(c);
}

/* /ws: validate the upgrade, answer 101 and switch to ST_WS. */
static void ws_handshake(struct conn *c)
{
    struct req *r = &c->req;
    char acc[32];

    if (r->minor != 1 || !(r->method_len == 3 && memcmp(r->method, "GET", 3) == 0) || !r->upgrade_ws ||
        !r->conn_upgrade || r->ws_key_count != 1 || r->has_te || r->content_length > 0 ||
        origin_ws_accept(r->ws_key, r->ws_key_len, acc) < 0) {
        conn_error(c, 400, NULL);
        return;
    }
    if (!(r->ws_version_len == 2 && memcmp(r->ws_version, "13", 2) == 0)) {
        conn_error(c, 426, "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    c->ws = origin_ws_new();
    if (c->ws == NULL) {
        c->dead = true;
        return;
    }
    worker_date(c->w);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\nX-Origin: %s\r\nDate: %.*s\r\n\r\n",
                        acc, g_settings.name, (int)c->w->date_len, c->w->date);
    if (g_settings.verbose)
        fprintf(stderr, "weir-origin %s: GET %.*s -> 101\n", g_settings.name, (int)r->target_len, r->target);
    c->state = ST_WS;
}

/* The head is parsed: count it, honour Expect, pick the body framing. */
void req_head_done(struct conn *c)
{
    struct req *r = &c->req;
    bool has_body = r->te_chunked || r->content_length > 0;

    if (r->route == R_HEALTH) {
        INC(g_stats.health);
        last_record(&g_last_health, c->head, c->head_len);
    } else if (r->route < R_CTL_STATS) {
        INC(g_stats.requests);
        last_record(&g_last, c->head, c->head_len);
    }
    if (r->route < R_CTL_STATS && req_query(c) != 0) {
        conn_error(c, 400, NULL);
        return;
    }
    if (r->route == R_RESET) { /* RST without an answer */
        struct linger lg = {1, 0};
        setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        c->dead = true;
        return;
    }
    if (r->route == R_WS) {
        ws_handshake(c);
        return;
    }
    if (r->expect_other && r->minor == 1) {
        conn_error(c, 417, NULL);
        return;
    }
    if (r->expect_continue && r->minor == 1 && has_body) {
        if (r->expect417) {
            conn_error(c, 417, NULL);
            return;
        }
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    c->bstate = r->te_chunked ? B_CHUNK_SIZE : r->content_length > 0 ? B_LENGTH : B_NONE;
    c->body_left = r->content_length;
    c->trailer_bytes = 0;
    c->state = ST_BODY;
}

/* The body is read: answer now, after a delay, or never (health_hang). */
void conn_dispatch(struct conn *c)
{
    struct req *r = &c->req;
    int delay, jitter;

    switch (r->route) {
    case R_DEFAULT:
    case R_ECHO:
        delay = r->delay_ms >= 0 ? r->delay_ms : LOAD(g_settings.delay_ms);
        jitter = r->jitter_ms >= 0 ? r->jitter_ms : LOAD(g_settings.jitter_ms);
        break;
    case R_HEALTH: /* only the query's delay applies */
        if (LOAD(g_settings.health_hang)) {
            c->state = ST_HANG;
            return;
        }
        delay = r->delay_ms >= 0 ? r->delay_ms : 0;
        jitter = r->jitter_ms >= 0 ? r->jitter_ms : 0;
        break;
    case R_SLOW:
        slow_start(c);
        return;
    default:
        respond_ctl(c);
        return;
    }
    if (jitter > 0)
        delay += (int)(worker_rand(c->w) % (uint64_t)(jitter + 1));
    if (delay > 0) {
        c->state = ST_DELAY;
        timer_arm(c, (unsigned)delay);
        return;
    }
    respond_route(c);
}
