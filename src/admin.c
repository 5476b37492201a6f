/*
 * admin.c - the admin endpoint: listener, authentication, request routing,
 * and the read endpoints (/stats JSON, /metrics Prometheus text, /dashboard,
 * /healthz). The runtime API handlers live in admin_api.c.
 *
 * GET /stats answers (COUNTERS and LAT are flattened/nested as shown; times
 * in ms; ?window=10s|60s|all keeps one key in latency_ms and ttfb_ms):
 *
 *   { "version", "uptime_s", "workers", "time_ms", "stats_entities" (registry size),
 *     "global": { COUNTERS, "connections": { "client_active", "client_idle",
 *                                            "upstream_active", "upstream_idle" } },
 *     "pools": [ { "name", "policy", "panic", COUNTERS,
 *                  "servers": [ { "address", "state", "admin_state", "weight",
 *                                 "effective_weight", "active", "errors", COUNTERS,
 *                                 "health": { "checked", "last_ok", "last_status",
 *                                             "last_detail", "last_ms", "last_at_ms",
 *                                             "ejections", "slow_start_pct" } } ] } ],
 *     "routes": [ { "host", "path_prefix", "pool", COUNTERS } ] }
 *   COUNTERS = "requests", "responses": {"1xx".."5xx","other"},
 *              "upstream_errors": {"connect","timeout","reset","5xx"}, "retries",
 *              "bytes_in", "bytes_out", "rps": {"1s","10s","60s"},
 *              "latency_ms": {"10s": LAT, "60s": LAT, "all": LAT}, "ttfb_ms": {...}
 *   LAT = {"count","p50","p90","p95","p99","p999","max","mean"}
 *
 * Control thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "admin_int.h"
#include "weir/admin.h"
#include "weir/admin_autoscale.h"
#include "weir/autoscaler.h"
#include "weir/health.h"
#include "weir/http_msg.h"
#include "weir/log.h"
#include "weir/prom.h"
#include "weir/server.h"
#include "weir/cache.h"
#include "weir/tls_stats.h"
#include "weir/control.h"
#include "weir/cache_stats.h"

/* The dashboard page, embedded by src/dashboard_asset.S (.incbin). */
extern const char weir_dashboard_html[];
extern const unsigned long long weir_dashboard_html_size;

#define ADMIN_MAX_BODY    65536
#define ADMIN_MAX_HEADERS 16384
#define ADMIN_TIMEOUT_S   30 /* evhttp's per-read/write idle limit; requests have their own deadline */
#define JSON_FLAGS        (JSON_COMPACT | JSON_REAL_PRECISION(15))

static struct {
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    int loopback; /* listening on a loopback address: reads need no token */
    int started;
} A;

static const char *const win_names[] = {
    [WEIR_WIN_10S] = "10s", [WEIR_WIN_60S] = "60s", [WEIR_WIN_ALL] = "all"};
const char *const weir_admin_class_names[WEIR_CLASS_N] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
const char *const weir_admin_uperr_names[WEIR_UPERR_5XX + 1] = {[WEIR_UPERR_CONNECT] = "connect",
                                                                [WEIR_UPERR_TIMEOUT] = "timeout",
                                                                [WEIR_UPERR_RESET] = "reset",
                                                                [WEIR_UPERR_5XX] = "5xx"};
static const char *const rate_names[WEIR_RATE_N] = {"1s", "10s", "60s"};

static const char *admin_state_name(int st)
{
    switch (st) {
    case WEIR_ADMIN_READY:
        return "ready";
    case WEIR_ADMIN_DRAIN:
        return "drain";
    case WEIR_ADMIN_MAINT:
        return "maint";
    }
    return "unknown";
}

/* x rounded to 3 decimals (microseconds when x is in ms). */
static double r3(double x)
{
    return round(x * 1000.0) / 1000.0;
}

/* ---- JSON rendering ---- */

/* json_object_set_new that records failure. */
static void oset(json_t *o, const char *k, json_t *v, int *bad)
{
    if (v == NULL || json_object_set_new(o, k, v) != 0)
        *bad = 1;
}

json_t *weir_admin_lat_json(const struct weir_hist *h)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 50}, {"p90", 90}, {"p95", 95}, {"p99", 99}, {"p999", 99.9}};
    uint64_t n = weir_hist_count(h);
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL)
        return NULL;
    oset(o, "count", json_integer((json_int_t)n), &bad);
    for (size_t i = 0; i < WEIR_ARRAY_LEN(qs); i++)
        oset(o, qs[i].name, json_real(r3((double)weir_hist_percentile(h, qs[i].q) / 1000.0)), &bad);
    oset(o, "max", json_real(r3((double)weir_hist_max(h) / 1000.0)), &bad);
    oset(o, "mean", json_real(n ? r3((double)weir_hist_sum(h) / (double)n / 1000.0) : 0.0), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* {"10s": LAT, ...} for one latency of st; scratch is a caller-owned hist. */
static json_t *lat_windows_json(const struct weir_stats *st, int lat, uint64_t now_s, int windows,
                                struct weir_hist *scratch)
{
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL)
        return NULL;
    for (int w = WEIR_WIN_10S; w <= WEIR_WIN_ALL; w++) {
        if (windows != WEIR_ADMIN_ALL_WINDOWS && windows != w)
            continue;
        weir_hist_init(scratch);
        weir_stats_read_latency(st, lat, w, now_s, scratch);
        oset(o, win_names[w], weir_admin_lat_json(scratch), &bad);
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static uint64_t errors_sum(const struct weir_stats_counters *c)
{
    uint64_t n = 0;
    for (int k = WEIR_UPERR_CONNECT; k <= WEIR_UPERR_5XX; k++)
        n += c->upstream_errors[k];
    return n;
}

static int add_counters(json_t *o, const struct weir_stats *st, const struct weir_stats_counters *c,
                        uint64_t now_s, int windows, struct weir_hist *scratch)
{
    json_t *resp = json_object(), *err = json_object(), *rps = json_object();
    int bad = resp == NULL || err == NULL || rps == NULL;

    oset(o, "requests", json_integer((json_int_t)c->requests), &bad);
    for (int i = 0; resp != NULL && i < WEIR_CLASS_N; i++)
        oset(resp, weir_admin_class_names[i], json_integer((json_int_t)c->responses[i]), &bad);
    oset(o, "responses", resp, &bad);
    for (int k = WEIR_UPERR_CONNECT; err != NULL && k <= WEIR_UPERR_5XX; k++)
        oset(err, weir_admin_uperr_names[k], json_integer((json_int_t)c->upstream_errors[k]), &bad);
    oset(o, "upstream_errors", err, &bad);
    oset(o, "retries", json_integer((json_int_t)c->retries), &bad);
    oset(o, "bytes_in", json_integer((json_int_t)c->bytes_in), &bad);
    oset(o, "bytes_out", json_integer((json_int_t)c->bytes_out), &bad);
    for (int r = 0; rps != NULL && r < WEIR_RATE_N; r++)
        oset(rps, rate_names[r], json_real(r3(c->rps[r])), &bad);
    oset(o, "rps", rps, &bad);
    oset(o, "latency_ms", lat_windows_json(st, WEIR_LAT_TOTAL, now_s, windows, scratch), &bad);
    oset(o, "ttfb_ms", lat_windows_json(st, WEIR_LAT_TTFB, now_s, windows, scratch), &bad);
    return bad ? -1 : 0;
}

int weir_admin_add_counters(json_t *o, const struct weir_stats *st, uint64_t now_s, int windows)
{
    struct weir_stats_counters c;
    struct weir_hist *scratch = malloc(sizeof(*scratch));
    int rc;

    if (scratch == NULL)
        return -1;
    weir_stats_read_counters(st, now_s, &c);
    rc = add_counters(o, st, &c, now_s, windows, scratch);
    free(scratch);
    return rc;
}

static json_t *health_json(const struct weir_server *s)
{
    struct weir_health_view v;
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL)
        return NULL;
    memset(&v, 0, sizeof(v));
    if (weir_health_view(s, &v) != 0) {
        /* Not actively checked: passive numbers still come from the server. */
        memset(&v, 0, sizeof(v));
        v.ejections = atomic_load_explicit(&s->ejections, memory_order_relaxed);
        v.ramp_permille = atomic_load_explicit(&s->ramp_permille, memory_order_relaxed);
    }
    v.last_detail[sizeof(v.last_detail) - 1] = '\0';
    oset(o, "checked", json_boolean(v.checked), &bad);
    oset(o, "last_ok", json_boolean(v.last_ok), &bad);
    oset(o, "last_status", json_integer(v.last_status), &bad);
    oset(o, "last_detail", json_string(v.last_detail), &bad);
    oset(o, "last_ms", json_real(r3(v.last_ms)), &bad);
    oset(o, "last_at_ms", json_integer(v.last_at_ms), &bad);
    oset(o, "ejections", json_integer(v.ejections), &bad);
    oset(o, "slow_start_pct", json_integer(v.ramp_permille / 10), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *server_json(const struct weir_server *s, uint64_t now_s, int windows,
                           struct weir_hist *scratch)
{
    struct weir_stats_counters c;
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL)
        return NULL;
    weir_stats_read_counters(s->stats, now_s, &c);
    oset(o, "address", json_string(s->address), &bad);
    oset(o, "state", json_string(weir_server_state_name(atomic_load(&s->state))), &bad);
    oset(o, "admin_state", json_string(admin_state_name(atomic_load(&s->admin_state))), &bad);
    oset(o, "weight", json_integer(atomic_load(&s->weight)), &bad);
    oset(o, "effective_weight", json_real(r3((double)weir_server_eff_weight(s) / WEIR_WEIGHT_SCALE)), &bad);
    oset(o, "active", json_integer(weir_server_active(s)), &bad);
    oset(o, "errors", json_integer((json_int_t)errors_sum(&c)), &bad);
    if (add_counters(o, s->stats, &c, now_s, windows, scratch) != 0)
        bad = 1;
    oset(o, "health", health_json(s), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *pool_json(const struct weir_pool *p, uint64_t now_s, int windows, struct weir_hist *scratch)
{
    struct weir_stats_counters c;
    json_t *o = json_object(), *servers = json_array();
    int bad = o == NULL || servers == NULL;

    if (bad) {
        json_decref(o);
        json_decref(servers);
        return NULL;
    }
    weir_stats_read_counters(p->stats, now_s, &c);
    oset(o, "name", json_string(p->name), &bad);
    oset(o, "policy", json_string(p->conf->policy), &bad);
    oset(o, "panic", json_boolean(p->conf->panic && weir_health_pool_all_down(p)), &bad);
    if (add_counters(o, p->stats, &c, now_s, windows, scratch) != 0)
        bad = 1;
    for (size_t j = 0; j < p->set.n && !bad; j++)
        if (json_array_append_new(servers, server_json(p->set.v[j], now_s, windows, scratch)) != 0)
            bad = 1;
    oset(o, "servers", servers, &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *route_json(const struct weir_rt *rt, size_t i, uint64_t now_s, int windows,
                          struct weir_hist *scratch)
{
    const struct weir_conf_route *cr = &rt->conf->routes[i];
    const struct weir_route *r = &rt->routes[i];
    struct weir_stats_counters c;
    json_t *o = json_object();
    int bad = 0;

    if (o == NULL)
        return NULL;
    weir_stats_read_counters(r->stats, now_s, &c);
    oset(o, "host", json_string(cr->host), &bad);
    oset(o, "path_prefix", json_string(cr->path_prefix), &bad);
    oset(o, "pool", json_string(r->pool->name), &bad);
    if (add_counters(o, r->stats, &c, now_s, windows, scratch) != 0)
        bad = 1;
    if (r->cache) /* cache statistics of the route (admin_cache.c) */
        oset(o, "cache", weir_admin_cache_route_json(weir_stats_key(r->stats)), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *global_json(uint64_t now_s, int windows, struct weir_hist *scratch)
{
    static const struct {
        const char *name;
        int gauge;
    } gs[] = {{"client_active", WEIR_G_CLIENT_ACTIVE},
              {"client_idle", WEIR_G_CLIENT_IDLE},
              {"upstream_active", WEIR_G_UP_ACTIVE},
              {"upstream_idle", WEIR_G_UP_IDLE}};
    const struct weir_stats *st = weir_stats_global();
    struct weir_stats_counters c;
    json_t *o = json_object(), *conns = json_object();
    int bad = o == NULL || conns == NULL;

    if (bad) {
        json_decref(o);
        json_decref(conns);
        return NULL;
    }
    weir_stats_read_counters(st, now_s, &c);
    if (add_counters(o, st, &c, now_s, windows, scratch) != 0)
        bad = 1;
    for (size_t i = 0; i < WEIR_ARRAY_LEN(gs); i++)
        oset(conns, gs[i].name, json_integer(weir_stats_gauge_read(gs[i].gauge)), &bad);
    oset(o, "connections", conns, &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The TLS listeners of rt (address and process-lifetime counters) into l
 * (WEIR_CONTROL_MAX_LISTENS entries). Returns how many. */
size_t weir_admin_tls_listeners(const struct weir_rt *rt, struct weir_tls_stats_listener *l)
{
    size_t n = 0;
    for (size_t i = 0; i < rt->conf->nlistens && i < WEIR_CONTROL_MAX_LISTENS; i++) {
        if (!rt->conf->listens[i].tls.enabled)
            continue;
        l[n].address = rt->conf->listens[i].addr.text;
        l[n].counters = weir_control_tls_counters(i);
        n++;
    }
    return n;
}

json_t *weir_admin_stats_json(const struct weir_rt *rt, int windows, uint64_t now_s, long long wall_ms)
{
    struct weir_hist *scratch = malloc(sizeof(*scratch));
    json_t *o = json_object(), *pools = json_array(), *routes = json_array();
    int bad = scratch == NULL || o == NULL || pools == NULL || routes == NULL;

    if (bad)
        goto err;
    oset(o, "version", json_string(PACKAGE_VERSION), &bad);
    oset(o, "uptime_s", json_real(r3(weir_stats_uptime_s())), &bad);
    oset(o, "workers", json_integer(rt->nworkers), &bad);
    oset(o, "time_ms", json_integer(wall_ms), &bad);
    oset(o, "stats_entities", json_integer((json_int_t)weir_stats_registry_size()), &bad);
    oset(o, "global", global_json(now_s, windows, scratch), &bad);
    for (size_t i = 0; i < rt->npools && !bad; i++)
        if (json_array_append_new(pools, pool_json(&rt->pools[i], now_s, windows, scratch)) != 0)
            bad = 1;
    oset(o, "pools", pools, &bad);
    pools = NULL;
    for (size_t i = 0; i < rt->nroutes && !bad; i++)
        if (json_array_append_new(routes, route_json(rt, i, now_s, windows, scratch)) != 0)
            bad = 1;
    oset(o, "routes", routes, &bad);
    routes = NULL;
    if (rt->tls != NULL && !bad) { /* only when something is TLS */
        struct weir_tls_stats_listener l[WEIR_CONTROL_MAX_LISTENS];
        oset(o, "tls",
             weir_tls_stats_json(l, weir_admin_tls_listeners(rt, l), rt->tls->not_after, time(NULL)), &bad);
    }
    if (weir_cache_get_l1() != NULL) /* the cache's tiers (admin_cache.c) */
        oset(o, "cache", weir_admin_cache_stats_json(), &bad);
    if (bad)
        goto err;
    free(scratch);
    return o;
err:
    free(scratch);
    json_decref(o);
    json_decref(pools);
    json_decref(routes);
    return NULL;
}

/* ---- HTTP plumbing ---- */

static int check_host(struct evhttp_request *req);

static void add_common_headers(struct evhttp_request *req, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
}

static const char *reason_of(int code)
{
    return weir_http_reason(code); /* the one status table (http_msg.c) */
}

void weir_admin_reply_json(struct evhttp_request *req, int code, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = body != NULL ? json_dumps(body, JSON_FLAGS) : NULL;

    json_decref(body);
    if (text == NULL) {
        code = 500;
        text = strdup("{\"error\":\"out of memory\"}");
    }
    add_common_headers(req, "application/json");
    if (buf != NULL && text != NULL) {
        evbuffer_add(buf, text, strlen(text));
        evbuffer_add(buf, "\n", 1);
    }
    evhttp_send_reply(req, code, reason_of(code), buf);
    free(text);
    if (buf != NULL)
        evbuffer_free(buf);
}

void weir_admin_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    weir_admin_reply_json(req, code, json_pack("{s:s}", "error", msg));
}

/* Constant-time string compare (length leaks, content does not). */
static int token_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = na != nb;
    for (size_t i = 0; i < na; i++)
        d |= (unsigned char)a[i] ^ (unsigned char)b[i % (nb ? nb : 1)];
    return d == 0;
}

/*
 * 1 when the request carries the current token; otherwise replies 401 (no
 * or malformed Authorization) or 403 (wrong token, or no token configured)
 * and returns 0.
 */
static int check_token(struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct weir_rt *rt = weir_rt_current();
    int ok = 0;

    if (rt == NULL) {
        weir_admin_reply_error(req, 503, "no configuration loaded");
        return 0;
    }
    if (rt->conf->admin.token == NULL) {
        weir_admin_reply_error(req, 403,
                               "this endpoint needs a token and none is configured: set admin.token");
    } else if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                          "Bearer realm=\"weir admin\"");
        weir_admin_reply_error(req, 401, "missing \"Authorization: Bearer TOKEN\" header");
    } else {
        const char *t = h + 7;
        while (*t == ' ')
            t++;
        ok = token_equal(t, rt->conf->admin.token);
        if (!ok)
            weir_admin_reply_error(req, 403, "wrong token");
    }
    weir_rt_release(rt);
    return ok;
}

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void handle_stats(struct evhttp_request *req, const char *query)
{
    struct evkeyvalq q;
    int windows = WEIR_ADMIN_ALL_WINDOWS;

    TAILQ_INIT(&q);
    if (query != NULL && evhttp_parse_query_str(query, &q) != 0) {
        weir_admin_reply_error(req, 400, "malformed query string");
        return;
    }
    const char *w = evhttp_find_header(&q, "window");
    if (w != NULL) {
        if (strcmp(w, "10s") == 0)
            windows = WEIR_WIN_10S;
        else if (strcmp(w, "60s") == 0)
            windows = WEIR_WIN_60S;
        else if (strcmp(w, "all") == 0)
            windows = WEIR_WIN_ALL;
        else
            windows = -2;
    }
    evhttp_clear_headers(&q);
    if (windows == -2) {
        weir_admin_reply_error(req, 400, "window must be 10s, 60s or all");
        return;
    }
    struct weir_rt *rt = weir_rt_current();
    if (rt == NULL) {
        weir_admin_reply_error(req, 503, "no configuration loaded");
        return;
    }
    json_t *doc = weir_admin_stats_json(rt, windows, weir_stats_now_s(), wall_ms());
    weir_rt_release(rt);
    weir_admin_reply_json(req, 200, doc);
}

static void handle_metrics(struct evhttp_request *req)
{
    struct evbuffer *buf = evbuffer_new();
    struct weir_rt *rt = weir_rt_current();
    int rc = -1;

    if (buf != NULL && rt != NULL)
        rc = weir_admin_metrics(buf, rt, weir_stats_now_s());
    if (rc == 0)
        rc = weir_autoscaler_metrics(buf);
    if (rc == 0)
        rc = weir_cache_metrics(buf);
    weir_rt_release(rt);
    if (rc != 0) {
        if (buf != NULL)
            evbuffer_free(buf);
        weir_admin_reply_error(req, 500, "cannot render the metrics");
        return;
    }
    add_common_headers(req, "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

static void handle_static(struct evhttp_request *req, const char *ctype, const void *data, size_t len)
{
    struct evbuffer *buf = evbuffer_new();

    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_reference(buf, data, len, NULL, NULL);
    add_common_headers(req, ctype);
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

static void handle_index(struct evhttp_request *req)
{
    weir_admin_reply_json(req, 200,
                          json_pack("{s:s,s:[s,s,s,s,s,s,s,s]}", "version", PACKAGE_VERSION, "endpoints",
                                    "GET /stats[?window=10s|60s|all]", "GET /metrics", "GET /dashboard",
                                    "GET /healthz", "POST /pools/{pool}/servers",
                                    "PATCH /pools/{pool}/servers/{address}",
                                    "DELETE /pools/{pool}/servers/{address}", "POST /reload"));
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    weir_admin_reply_error(req, 405, "method not allowed here (allowed: %s)", allow);
}

#define MAX_SEGS 8

/* Split a raw path into percent-decoded segments. Returns the count, or -1
 * for a malformed path (too many segments, NUL after decoding). */
static int split_path(const char *path, char *segs[MAX_SEGS])
{
    int n = 0;
    const char *p = path;

    while (*p == '/')
        p++;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *raw, *dec;
        size_t dlen = 0;

        if (n == MAX_SEGS)
            goto bad;
        raw = strndup(p, len);
        if (raw == NULL)
            goto bad;
        dec = evhttp_uridecode(raw, 0, &dlen);
        free(raw);
        if (dec == NULL || strlen(dec) != dlen) {
            free(dec);
            goto bad;
        }
        segs[n++] = dec;
        p += len;
        while (*p == '/')
            p++;
    }
    return n;
bad:
    while (n > 0)
        free(segs[--n]);
    return -1;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int is_get = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    char *segs[MAX_SEGS];
    int n;

    weir_admin_conn_request(req);
    if (path == NULL || path[0] == '\0')
        path = "/";
    n = split_path(path, segs);
    if (n < 0) {
        weir_admin_reply_error(req, 400, "malformed path");
        return;
    }
    /* Liveness stays open: it reveals nothing. */
    if (n == 1 && strcmp(segs[0], "healthz") == 0) {
        if (is_get)
            handle_static(req, "text/plain; charset=utf-8", "ok\n", 3);
        else
            method_not_allowed(req, "GET, HEAD");
        goto done;
    }
    /* Everything but liveness checks the Host: a page on another site
     * whose name was rebound to this address must not read or change
     * anything through a browser. */
    if (!check_host(req))
        goto done;
    /* The dashboard page holds no data (it fetches /stats, which needs the
     * token off loopback; open it as /dashboard?token=... and the page sends
     * the token as a Bearer header), so a browser can load it anywhere. */
    if (n == 1 && strcmp(segs[0], "dashboard") == 0) {
        if (is_get)
            handle_static(req, "text/html; charset=utf-8", weir_dashboard_html,
                          (size_t)weir_dashboard_html_size);
        else
            method_not_allowed(req, "GET, HEAD");
        goto done;
    }
    /* Off loopback, every other request needs the token. */
    if (!A.loopback && !check_token(req))
        goto done;

    if (n == 0) {
        if (is_get)
            handle_index(req);
        else
            method_not_allowed(req, "GET, HEAD");
    } else if (n == 1 && (strcmp(segs[0], "stats") == 0 || strcmp(segs[0], "metrics") == 0)) {
        if (!is_get)
            method_not_allowed(req, "GET, HEAD");
        else if (segs[0][0] == 's')
            handle_stats(req, query);
        else
            handle_metrics(req);
    } else if (n == 1 && weir_admin_autoscale_route(req, segs[0], is_get)) {
        ; /* GET /autoscale, GET /alerts (admin_autoscale.c) */
    } else if (n == 1 && strcmp(segs[0], "reload") == 0) {
        if (m != EVHTTP_REQ_POST)
            method_not_allowed(req, "POST");
        else if (check_token(req))
            weir_admin_api_reload(req);
    } else if (n == 3 && strcmp(segs[0], "pools") == 0 && strcmp(segs[2], "servers") == 0) {
        if (m != EVHTTP_REQ_POST)
            method_not_allowed(req, "POST");
        else if (check_token(req))
            weir_admin_api_add_server(req, segs[1]);
    } else if (n == 4 && strcmp(segs[0], "pools") == 0 && strcmp(segs[2], "servers") == 0) {
        if (m != EVHTTP_REQ_PATCH && m != EVHTTP_REQ_DELETE)
            method_not_allowed(req, "PATCH, DELETE");
        else if (!check_token(req))
            ;
        else if (m == EVHTTP_REQ_PATCH)
            weir_admin_api_patch_server(req, segs[1], segs[3]);
        else
            weir_admin_api_delete_server(req, segs[1], segs[3]);
    } else if (n == 2 && strcmp(segs[0], "cache") == 0 && strcmp(segs[1], "purge") == 0) {
        if (m != EVHTTP_REQ_POST)
            method_not_allowed(req, "POST");
        else if (check_token(req))
            weir_admin_cache_purge(req);
    } else if (n == 1 && strcmp(segs[0], "cache") == 0) {
        if (is_get)
            weir_admin_cache_get(req);
        else
            method_not_allowed(req, "GET, HEAD");
    } else {
        weir_admin_reply_error(req, 404, "no such endpoint: %s", path);
    }
done:
    while (n > 0)
        free(segs[--n]);
}

/* ---- lifecycle ---- */

static evutil_socket_t listen_on(const struct weir_conf_addr *a)
{
    int one = 1;
    evutil_socket_t fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* 1 when the request's Host may reach the admin; otherwise replies 421. */
static int check_host(struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    struct weir_rt *rt = weir_rt_current();
    int ok = weir_admin_host_allowed(h, rt ? (const char *const *)rt->conf->admin.allowed_hosts : NULL,
                                     rt ? rt->conf->admin.nallowed_hosts : 0);

    weir_rt_release(rt);
    if (!ok)
        weir_admin_reply_error(req, 421,
                               "Host '%.100s' is not served here: use an IP address, localhost, or a name "
                               "listed in admin.allowed_hosts",
                               h);
    return ok;
}

int weir_admin_start(struct event_base *base, const struct weir_admin_opts *opts)
{
    const struct weir_conf_addr *a = &opts->conf->admin.addr;
    evutil_socket_t fd;

    if (A.started)
        return 0;
    memset(&A, 0, sizeof(A));
    A.loopback = weir_conf_addr_is_loopback(&a->ss);
    if (weir_admin_conn_init(base) != 0) {
        weir_log_error("admin: out of memory");
        goto err;
    }
    A.http = evhttp_new(base);
    if (A.http == NULL) {
        weir_log_error("admin: out of memory");
        goto err;
    }
    evhttp_set_allowed_methods(A.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(A.http, ADMIN_MAX_BODY);
    evhttp_set_max_headers_size(A.http, ADMIN_MAX_HEADERS);
    evhttp_set_timeout(A.http, ADMIN_TIMEOUT_S);
    evhttp_set_gencb(A.http, on_request, NULL);
    evhttp_set_bevcb(A.http, weir_admin_conn_bev, NULL);
    fd = listen_on(a);
    if (fd < 0) {
        weir_log_error("admin: cannot listen on %s: %s", a->text, strerror(errno));
        goto err;
    }
    /* Our own listener: close-on-exec for accepted sockets, and out of
     * descriptors it pauses (accept_guard.h) instead of spinning. */
    struct evconnlistener *l =
        evconnlistener_new(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    A.bound = l != NULL ? evhttp_bind_listener(A.http, l) : NULL;
    if (A.bound == NULL) {
        if (l != NULL)
            evconnlistener_free(l);
        else
            close(fd);
        weir_log_error("admin: cannot accept on %s", a->text);
        goto err;
    }
    weir_admin_conn_listener(l);
    if (weir_admin_api_init(base, opts) != 0) {
        weir_log_error("admin: out of memory");
        goto err;
    }
    A.started = 1;
    weir_cache_admin_attach(base); /* its Redis connection for purges */
    weir_log_info("admin endpoint listening on %s%s", a->text,
                  A.loopback ? "" : " (not loopback: every request needs the token)");
    return 0;
err:
    if (A.http != NULL)
        evhttp_free(A.http);
    A.http = NULL;
    weir_admin_conn_fini();
    return -1;
}

void weir_admin_stop(void)
{
    if (!A.started)
        return;
    weir_admin_api_fini();
    weir_cache_admin_detach();
    weir_admin_conn_stop_accepting();
    evhttp_free(A.http); /* frees every connection; weir_admin_conn_fini closes them */
    weir_admin_conn_fini();
    memset(&A, 0, sizeof(A));
}

void weir_admin_reloaded(void)
{
    if (A.started)
        weir_admin_api_reloaded();
}
