/*
 * admin_cache.c - the cache's admin endpoints (admin thread):
 *
 *   POST /cache/purge  {"url": "http://host/path?q"} | {"prefix": "http://host/p/"}
 *                      | {"tag": "product-42"}, optional "soft": true
 *                      -> 200 {"purged": {"l1": N, "l2": M}}
 *                      (l2: values deleted from Redis by a URL purge; prefix and
 *                      tag purges reach L2 through the purge channel, whose
 *                      instances refuse the values stored before the purge)
 *   GET /cache         -> sizes, counts and the tiers' states
 *
 * The token check and the dispatch are in admin.c. The purge answer waits
 * for Redis' DEL (bounded by redis.timeout_ms); a client that leaves before
 * gets nothing and the late answer is dropped.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

#include "weir/admin.h"
#include "weir/cache.h"
#include "weir/cache_l1.h"
#include "weir/cache_rules.h"
#include "weir/cache_stats.h"
#include "weir/histogram.h"
#include "weir/prom.h"
#include "weir/runtime.h"
#include "weir/stats.h"

struct pending {
    struct evhttp_request *req; /* NULL once its connection closed */
    struct evhttp_connection *conn;
};

static void conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct pending *p = arg;
    p->req = NULL;
}

static void purge_done(void *arg, size_t l1, size_t l2, int l2_ok)
{
    struct pending *p = arg;

    weir_cache_stats_purged(WEIR_CS_TIER_L2, l2);
    if (p->req != NULL) {
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
        weir_admin_reply_json(p->req, 200,
                              json_pack("{s:{s:I,s:I},s:b}", "purged", "l1", (json_int_t)l1, "l2",
                                        (json_int_t)l2, "l2_reached", l2_ok));
    }
    free(p);
}

/* "http://Host:80/p" -> "http://host/p", "https://Host:443/p" ->
 * "https://host/p" (the form URLs are stored under: the scheme is the
 * client's). */
static char *normalise_url(const char *v, int is_prefix)
{
    const char *host, *slash, *scheme;

    if (strncmp(v, "http://", 7) == 0) {
        scheme = "http";
        host = v + 7;
    } else if (strncmp(v, "https://", 8) == 0) {
        scheme = "https";
        host = v + 8;
    } else {
        return NULL;
    }
    slash = strchr(host, '/');
    if (slash == NULL)
        return is_prefix ? weir_cache_url(scheme, host, strlen(host), "", 0)
                         : weir_cache_url(scheme, host, strlen(host), "/", 1);
    return weir_cache_url(scheme, host, (size_t)(slash - host), slash, strlen(slash));
}

void weir_admin_cache_purge(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *kind = NULL, *value = NULL, *key;
    json_error_t err;
    json_t *body, *v, *soft;
    struct pending *p;
    char *norm = NULL;

    body = n ? json_loadb((const char *)evbuffer_pullup(in, -1), n, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (body == NULL || !json_is_object(body)) {
        weir_admin_reply_error(req, 400,
                               "the body must be a JSON object such as {\"url\": \"http://host/path\"}");
        json_decref(body);
        return;
    }
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "soft") == 0)
            continue;
        if (strcmp(key, "url") != 0 && strcmp(key, "prefix") != 0 && strcmp(key, "tag") != 0) {
            weir_admin_reply_error(req, 400, "unknown key '%s' (allowed: url, prefix, tag, soft)", key);
            json_decref(body);
            return;
        }
        if (kind != NULL) {
            weir_admin_reply_error(req, 400, "give one of url, prefix or tag");
            json_decref(body);
            return;
        }
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 2000) {
            weir_admin_reply_error(req, 400, "'%s' must be a non-empty string of at most 2000 bytes", key);
            json_decref(body);
            return;
        }
        kind = key;
        value = json_string_value(v);
    }
    soft = json_object_get(body, "soft");
    if (kind == NULL || (soft != NULL && !json_is_boolean(soft))) {
        weir_admin_reply_error(
            req, 400, kind == NULL ? "give one of url, prefix or tag" : "'soft' must be true or false");
        json_decref(body);
        return;
    }
    if (strcmp(kind, "tag") == 0) {
        if (strpbrk(value, " \t\r\n") != NULL) {
            weir_admin_reply_error(req, 400,
                                   "a tag has no spaces (Surrogate-Key lists tags separated by spaces)");
            json_decref(body);
            return;
        }
    } else {
        norm = normalise_url(value, kind[0] == 'p');
        if (norm == NULL) {
            weir_admin_reply_error(
                req, 400, "'%s' must start with \"http://\" or \"https://\" followed by the host", kind);
            json_decref(body);
            return;
        }
        value = norm;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        weir_admin_reply_error(req, 500, "out of memory");
        free(norm);
        json_decref(body);
        return;
    }
    p->req = req;
    p->conn = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(p->conn, conn_closed, p);
    weir_cache_purge(kind, value, soft != NULL && json_is_true(soft), purge_done, p);
    free(norm);
    json_decref(body);
}

void weir_admin_cache_get(struct evhttp_request *req)
{
    struct weir_cache_state st;
    json_t *o, *ns;
    int i;

    weir_cache_state(&st);
    ns = json_object();
    for (i = 0; i < WEIR_STORE_REASONS; i++)
        json_object_set_new(ns, weir_cache_store_reason_name(i),
                            json_integer((json_int_t)st.counters.not_storable_by[i]));
    json_object_set_new(ns, "too_big", json_integer((json_int_t)st.counters.not_storable_by[15]));
    o = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o},s:I}",
                  "l1", "budget_bytes", (json_int_t)st.l1.budget, "bytes", (json_int_t)st.l1.bytes, "objects",
                  (json_int_t)st.l1.objects, "hit_for_miss_marks", (json_int_t)st.l1.marks, "evicted",
                  (json_int_t)st.l1.evicted, "expired", (json_int_t)st.l1.expired, "inserted",
                  (json_int_t)st.l1.inserted, "max_object_bytes", (json_int_t)st.max_object_bytes, "requests",
                  "hit_l1", (json_int_t)st.counters.hit_l1, "hit_l2", (json_int_t)st.counters.hit_l2, "miss",
                  (json_int_t)st.counters.miss, "stale_served", (json_int_t)st.counters.stale_served,
                  "stored", (json_int_t)st.counters.stored, "revalidated",
                  (json_int_t)st.counters.revalidated, "coalesced", (json_int_t)st.counters.coalesced,
                  "l2_garbage", (json_int_t)st.counters.l2_garbage, "not_storable",
                  (json_int_t)st.counters.not_storable, "not_storable_by", ns, "purge_generation",
                  (json_int_t)st.purge_gen);
    if (st.has_l2)
        json_object_set_new(
            o, "l2",
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "state", weir_redis_state_name(st.l2.state),
                      "commands", (json_int_t)st.l2.commands, "timeouts", (json_int_t)st.l2.timeouts,
                      "errors", (json_int_t)st.l2.errors, "breaker_opens", (json_int_t)st.l2.opens, "refused",
                      (json_int_t)st.l2.refused, "last_error", st.l2.last_error));
    else
        json_object_set_new(o, "l2", json_null());
    /* coalesced clients cut: too far behind a response too big to store */
    json_object_set_new(json_object_get(o, "requests"), "stream_cut",
                        json_integer((json_int_t)st.counters.stream_cut));
    weir_admin_reply_json(req, 200, o);
}

/* ---- per-route statistics (cache_stats.h) ---------------------------------------------- */

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

json_t *weir_admin_cache_route_json(const char *route_key)
{
    struct weir_cache_rcounters c;
    json_t *o, *res, *tiers, *ns, *ev;
    uint64_t req, hits;

    weir_cache_stats_read(weir_cache_stats_find(route_key), &c);
    req = weir_cache_stats_requests(&c);
    hits = weir_cache_stats_hits(&c);
    res = json_object();
    for (int k = 0; k < WEIR_CSR_N; k++)
        json_object_set_new(res, weir_cache_stats_result_name(k), json_integer((json_int_t)c.results[k]));
    tiers =
        json_pack("{s:{s:I,s:I},s:{s:I,s:I}}", "l1", "hit", (json_int_t)c.results[WEIR_CSR_L1_HIT], "stale",
                  (json_int_t)c.results[WEIR_CSR_L1_STALE], "l2", "hit",
                  (json_int_t)c.results[WEIR_CSR_L2_HIT], "stale", (json_int_t)c.results[WEIR_CSR_L2_STALE]);
    ns = json_object();
    for (int i = 1; i < WEIR_STORE_REASONS && i < WEIR_CS_REASONS; i++)
        json_object_set_new(ns, weir_cache_store_reason_name(i),
                            json_integer((json_int_t)c.not_storable_by[i]));
    json_object_set_new(ns, "too_big", json_integer((json_int_t)c.not_storable_by[15]));
    ev = json_pack("{s:I,s:I}", "304", (json_int_t)c.events[WEIR_CSE_REVALIDATED_304], "200",
                   (json_int_t)c.events[WEIR_CSE_REVALIDATED_200]);
    o = json_pack("{s:I,s:I,s:f,s:I,s:I,s:o,s:o,s:I,s:I,s:o,s:o,s:I,s:I,s:I}", "requests", (json_int_t)req,
                  "hits", (json_int_t)hits, "hit_ratio", ratio(hits, req), "misses",
                  (json_int_t)c.results[WEIR_CSR_MISS], "stale_served",
                  (json_int_t)(c.results[WEIR_CSR_L1_STALE] + c.results[WEIR_CSR_L2_STALE] +
                               c.results[WEIR_CSR_STALE_ERROR]),
                  "results", res, "tiers", tiers, "stored", (json_int_t)c.events[WEIR_CSE_STORED],
                  "not_storable", (json_int_t)c.events[WEIR_CSE_NOT_STORABLE], "not_storable_by", ns,
                  "revalidated", ev, "coalesced", (json_int_t)c.events[WEIR_CSE_COALESCED], "origin_requests",
                  (json_int_t)weir_cache_stats_origin(&c), "l2_garbage",
                  (json_int_t)c.events[WEIR_CSE_L2_GARBAGE]);
    return o;
}

/* Latency percentiles (ms) of a histogram. */
static json_t *lat_json(const struct weir_hist *h)
{
    uint64_t n = weir_hist_count(h);
    return json_pack("{s:I,s:f,s:f,s:f,s:f}", "count", (json_int_t)n, "mean_ms",
                     n ? (double)weir_hist_sum(h) / (double)n / 1000.0 : 0.0, "p50_ms",
                     n ? weir_hist_percentile(h, 50) / 1000.0 : 0.0, "p95_ms",
                     n ? weir_hist_percentile(h, 95) / 1000.0 : 0.0, "p99_ms",
                     n ? weir_hist_percentile(h, 99) / 1000.0 : 0.0);
}

json_t *weir_admin_cache_stats_json(void)
{
    struct weir_l1_stats l1;
    struct weir_cache_l2_summary *l2 = malloc(sizeof(*l2));
    struct weir_cache_l1 *c1 = weir_cache_get_l1();
    json_t *o;

    if (l2 == NULL)
        return NULL;
    memset(&l1, 0, sizeof(l1));
    if (c1 != NULL)
        weir_cache_l1_stats(c1, &l1);
    weir_cache_stats_l2_read(l2);
    o = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I},s:{s:s,s:i,s:i,s:i,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}}",
                  "l1", "budget_bytes", (json_int_t)l1.budget, "bytes", (json_int_t)l1.bytes, "objects",
                  (json_int_t)l1.objects, "evicted", (json_int_t)l1.evicted, "expired",
                  (json_int_t)l1.expired, "purged", (json_int_t)weir_cache_stats_purged_read(WEIR_CS_TIER_L1),
                  "l2", "state", weir_cache_stats_l2_state(l2), "clients", l2->clients, "clients_up", l2->up,
                  "clients_open", l2->open + l2->probing, "clients_connecting", l2->connecting, "commands",
                  (json_int_t)l2->commands, "errors", (json_int_t)l2->errors, "timeouts",
                  (json_int_t)l2->timeouts, "refused", (json_int_t)l2->refused, "breaker_opens",
                  (json_int_t)l2->opens, "late_replies", (json_int_t)l2->late, "purged",
                  (json_int_t)weir_cache_stats_purged_read(WEIR_CS_TIER_L2), "latency",
                  lat_json(&l2->latency));
    free(l2);
    return o;
}

/* ---- /metrics -------------------------------------------------------------------------- */

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter or gauge family with a single unlabelled sample. */
static void metric(struct evbuffer *out, const char *name, const char *type, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                        (unsigned long long)v);
}

/* name{route="KEY"(,extra)} value */
static void route_sample(struct evbuffer *out, const char *name, const char *key, const char *extra,
                         uint64_t v)
{
    evbuffer_add_printf(out, "%s{route=\"", name);
    weir_prom_label(out, key);
    evbuffer_add_printf(out, "\"%s%s} %llu\n", extra ? "," : "", extra ? extra : "", (unsigned long long)v);
}

struct croute {
    const char *key;
    struct weir_cache_rcounters c;
};

static const struct {
    const char *le;
    uint64_t us;
} l2_bounds[] = {{"0.0001", 100},  {"0.00025", 250}, {"0.0005", 500},  {"0.001", 1000},
                 {"0.0025", 2500}, {"0.005", 5000},  {"0.01", 10000},  {"0.025", 25000},
                 {"0.05", 50000},  {"0.1", 100000},  {"0.25", 250000}, {"1", 1000000}};

int weir_cache_metrics(struct evbuffer *out)
{
    struct weir_rt *rt = weir_rt_current();
    struct croute *v = NULL;
    size_t n = 0;
    struct weir_l1_stats l1;
    struct weir_cache_l2_summary *l2;
    struct weir_cache_l1 *c1 = weir_cache_get_l1();
    char extra[160];

    /* one series set per cache route of the running configuration */
    if (rt != NULL && rt->nroutes > 0)
        v = calloc(rt->nroutes, sizeof(*v));
    for (size_t i = 0; v != NULL && i < rt->nroutes; i++) {
        if (!rt->routes[i].cache || rt->routes[i].stats == NULL)
            continue;
        v[n].key = weir_stats_key(rt->routes[i].stats);
        weir_cache_stats_read(weir_cache_stats_find(v[n].key), &v[n].c);
        n++;
    }
    family(out, "weir_cache_requests_total", "counter",
           "Requests on cache routes by route, by the tier that answered and by result.");
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < WEIR_CSR_N; k++) {
            snprintf(extra, sizeof(extra), "tier=\"%s\",result=\"%s\"", weir_cache_stats_result_tier(k),
                     weir_cache_stats_result_kind(k));
            route_sample(out, "weir_cache_requests_total", v[i].key, extra, v[i].c.results[k]);
        }
    family(out, "weir_cache_stored_total", "counter", "Responses stored in L1, by route.");
    for (size_t i = 0; i < n; i++)
        route_sample(out, "weir_cache_stored_total", v[i].key, NULL, v[i].c.events[WEIR_CSE_STORED]);
    family(out, "weir_cache_not_storable_total", "counter", "Responses not stored, by route and reason.");
    for (size_t i = 0; i < n; i++) {
        for (int r = 1; r < WEIR_STORE_REASONS && r < WEIR_CS_REASONS; r++) {
            snprintf(extra, sizeof(extra), "reason=\"%s\"", weir_cache_store_reason_name(r));
            route_sample(out, "weir_cache_not_storable_total", v[i].key, extra, v[i].c.not_storable_by[r]);
        }
        route_sample(out, "weir_cache_not_storable_total", v[i].key, "reason=\"too_big\"",
                     v[i].c.not_storable_by[15]);
    }
    family(out, "weir_cache_revalidated_total", "counter",
           "Revalidations with the backend by route and answer (304 refreshed, 200 replaced).");
    for (size_t i = 0; i < n; i++) {
        route_sample(out, "weir_cache_revalidated_total", v[i].key, "status=\"304\"",
                     v[i].c.events[WEIR_CSE_REVALIDATED_304]);
        route_sample(out, "weir_cache_revalidated_total", v[i].key, "status=\"200\"",
                     v[i].c.events[WEIR_CSE_REVALIDATED_200]);
    }
    family(out, "weir_cache_coalesced_total", "counter",
           "Requests answered from another request's fetch (coalesced waiters), by route.");
    for (size_t i = 0; i < n; i++)
        route_sample(out, "weir_cache_coalesced_total", v[i].key, NULL, v[i].c.events[WEIR_CSE_COALESCED]);
    family(out, "weir_cache_origin_requests_total", "counter",
           "Requests of cache routes that reached a backend (misses and revalidations), by route.");
    for (size_t i = 0; i < n; i++)
        route_sample(out, "weir_cache_origin_requests_total", v[i].key, NULL,
                     weir_cache_stats_origin(&v[i].c));
    family(out, "weir_cache_l2_garbage_total", "counter",
           "L2 values refused (not weir's, truncated, other version), by route.");
    for (size_t i = 0; i < n; i++)
        route_sample(out, "weir_cache_l2_garbage_total", v[i].key, NULL, v[i].c.events[WEIR_CSE_L2_GARBAGE]);
    free(v);
    weir_rt_release(rt);

    /* tiers (instance-wide: the L1 is shared by every route) */
    memset(&l1, 0, sizeof(l1));
    if (c1 != NULL)
        weir_cache_l1_stats(c1, &l1);
    metric(out, "weir_cache_l1_bytes", "gauge", "Heap bytes the L1 holds.", l1.bytes);
    metric(out, "weir_cache_l1_budget_bytes", "gauge", "The L1 budget (cache.memory_bytes).", l1.budget);
    metric(out, "weir_cache_l1_objects", "gauge", "Objects in the L1.", l1.objects);
    family(out, "weir_cache_evicted_total", "counter", "Objects evicted to make room, by tier.");
    evbuffer_add_printf(out, "weir_cache_evicted_total{tier=\"l1\"} %llu\n", (unsigned long long)l1.evicted);
    family(out, "weir_cache_expired_total", "counter", "Objects dropped past their useful life, by tier.");
    evbuffer_add_printf(out, "weir_cache_expired_total{tier=\"l1\"} %llu\n", (unsigned long long)l1.expired);
    family(out, "weir_cache_purged_total", "counter",
           "Objects purged, by tier (l1: this instance's, whoever asked; l2: deleted by this instance).");
    evbuffer_add_printf(
        out, "weir_cache_purged_total{tier=\"l1\"} %llu\nweir_cache_purged_total{tier=\"l2\"} %llu\n",
        (unsigned long long)weir_cache_stats_purged_read(WEIR_CS_TIER_L1),
        (unsigned long long)weir_cache_stats_purged_read(WEIR_CS_TIER_L2));

    l2 = malloc(sizeof(*l2));
    if (l2 == NULL)
        return 0;
    weir_cache_stats_l2_read(l2);
    family(out, "weir_cache_l2_clients", "gauge",
           "Workers' L2 (Redis) connections by breaker state (up, connecting, open, probing).");
    evbuffer_add_printf(
        out,
        "weir_cache_l2_clients{state=\"up\"} %d\nweir_cache_l2_clients{state=\"connecting\"} %d\n"
        "weir_cache_l2_clients{state=\"open\"} %d\nweir_cache_l2_clients{state=\"probing\"} %d\n",
        l2->up, l2->connecting, l2->open, l2->probing);
    metric(out, "weir_cache_l2_up", "gauge",
           "1 while every worker's L2 connection is up (0 also when L2 is off).",
           l2->clients > 0 && l2->up == l2->clients);
    metric(out, "weir_cache_l2_commands_total", "counter", "Commands sent to L2 by the workers.",
           l2->commands);
    metric(out, "weir_cache_l2_errors_total", "counter", "L2 connection errors and error replies (workers).",
           l2->errors);
    metric(out, "weir_cache_l2_timeouts_total", "counter", "L2 commands past redis.timeout_ms (workers).",
           l2->timeouts);
    metric(out, "weir_cache_l2_refused_total", "counter", "L2 commands refused by an open breaker (workers).",
           l2->refused);
    metric(out, "weir_cache_l2_breaker_opens_total", "counter", "Times a worker's L2 breaker opened.",
           l2->opens);
    family(out, "weir_cache_l2_latency_seconds", "histogram",
           "L2 reply latency (answered commands, workers).");
    for (size_t b = 0; b < sizeof(l2_bounds) / sizeof(l2_bounds[0]); b++)
        evbuffer_add_printf(out, "weir_cache_l2_latency_seconds_bucket{le=\"%s\"} %llu\n", l2_bounds[b].le,
                            (unsigned long long)weir_hist_count_le(&l2->latency, l2_bounds[b].us));
    evbuffer_add_printf(out,
                        "weir_cache_l2_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "weir_cache_l2_latency_seconds_sum %.6f\nweir_cache_l2_latency_seconds_count %llu\n",
                        (unsigned long long)weir_hist_count(&l2->latency),
                        (double)weir_hist_sum(&l2->latency) / 1e6,
                        (unsigned long long)weir_hist_count(&l2->latency));
    free(l2);
    return 0;
}
