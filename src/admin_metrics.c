/*
 * admin_metrics.c - GET /metrics: the Prometheus text exposition of the
 * proxy's statistics (servers, pools, routes, the process, TLS, the
 * autoscaler's and the cache's families). Split from admin.c, which keeps
 * the JSON and the HTTP plumbing; contracts in include/weir/admin.h.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "admin_int.h"
#include "weir/admin.h"
#include "weir/admin_autoscale.h"
#include "weir/autoscaler.h"
#include "weir/cache.h"
#include "weir/cache_stats.h"
#include "weir/control.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/prom.h"
#include "weir/server.h"
#include "weir/tls_stats.h"

/* Histogram bucket bounds (seconds, as printed, and microseconds). */
static const struct {
    const char *le;
    uint64_t us;
} prom_bounds[] = {{"0.0005", 500},  {"0.001", 1000},  {"0.0025", 2500}, {"0.005", 5000},
                   {"0.01", 10000},  {"0.025", 25000}, {"0.05", 50000},  {"0.1", 100000},
                   {"0.25", 250000}, {"0.5", 500000},  {"1", 1000000},   {"2.5", 2500000},
                   {"5", 5000000},   {"10", 10000000}, {"30", 30000000}, {"60", 60000000}};
#define PROM_NB WEIR_ARRAY_LEN(prom_bounds)

struct prom_hist {
    uint64_t le[PROM_NB];
    uint64_t count, sum_us;
};

struct prom_server {
    const struct weir_pool *pool;
    const struct weir_server *s;
    struct weir_stats_counters c;
    struct prom_hist h[2]; /* [WEIR_LAT_TOTAL], [WEIR_LAT_TTFB] */
};

static void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{pool="..",server=".." (extra)} */
static void prom_series(struct evbuffer *out, const char *name, const struct prom_server *ps,
                        const char *extra)
{
    evbuffer_add_printf(out, "%s{pool=\"", name);
    weir_prom_label(out, ps->pool->name);
    evbuffer_add(out, "\",server=\"", 10);
    weir_prom_label(out, ps->s->address);
    evbuffer_add_printf(out, "\"%s%s}", extra ? "," : "", extra ? extra : "");
}

static void prom_fill_hist(struct prom_hist *ph, const struct weir_stats *st, int lat, uint64_t now_s,
                           struct weir_hist *scratch)
{
    weir_hist_init(scratch);
    weir_stats_read_latency(st, lat, WEIR_WIN_ALL, now_s, scratch);
    for (size_t b = 0; b < PROM_NB; b++)
        ph->le[b] = weir_hist_count_le(scratch, prom_bounds[b].us);
    ph->count = weir_hist_count(scratch);
    ph->sum_us = weir_hist_sum(scratch);
}

static void prom_histogram(struct evbuffer *out, const char *name, const char *help,
                           const struct prom_server *v, size_t n, int lat)
{
    char bname[128], extra[64];

    prom_family(out, name, "histogram", help);
    snprintf(bname, sizeof(bname), "%s_bucket", name);
    for (size_t i = 0; i < n; i++) {
        const struct prom_hist *h = &v[i].h[lat];
        for (size_t b = 0; b < PROM_NB; b++) {
            snprintf(extra, sizeof(extra), "le=\"%s\"", prom_bounds[b].le);
            prom_series(out, bname, &v[i], extra);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)h->le[b]);
        }
        prom_series(out, bname, &v[i], "le=\"+Inf\"");
        evbuffer_add_printf(out, " %llu\n", (unsigned long long)h->count);
        snprintf(bname, sizeof(bname), "%s_sum", name);
        prom_series(out, bname, &v[i], NULL);
        evbuffer_add_printf(out, " %.6f\n", (double)h->sum_us / 1e6);
        snprintf(bname, sizeof(bname), "%s_count", name);
        prom_series(out, bname, &v[i], NULL);
        evbuffer_add_printf(out, " %llu\n", (unsigned long long)h->count);
        snprintf(bname, sizeof(bname), "%s_bucket", name);
    }
}

/* A per-server counter family whose value is picked by `field`. */
#define PROM_SERVER_COUNTER(out, name, help, v, n, expr)                                                     \
    do {                                                                                                     \
        prom_family((out), (name), "counter", (help));                                                       \
        for (size_t i_ = 0; i_ < (n); i_++) {                                                                \
            const struct prom_server *ps_ = &(v)[i_];                                                        \
            prom_series((out), (name), ps_, NULL);                                                           \
            evbuffer_add_printf((out), " %llu\n", (unsigned long long)(expr));                               \
        }                                                                                                    \
    } while (0)

static void prom_classes(struct evbuffer *out, const char *name, const char *prefix_labels,
                         const struct weir_stats_counters *c)
{
    for (int k = 0; k < WEIR_CLASS_N; k++)
        evbuffer_add_printf(out, "%s{%s%sclass=\"%s\"} %llu\n", name, prefix_labels,
                            *prefix_labels ? "," : "", weir_admin_class_names[k],
                            (unsigned long long)c->responses[k]);
}

int weir_admin_metrics(struct evbuffer *out, const struct weir_rt *rt, uint64_t now_s)
{
    struct weir_hist *scratch = malloc(sizeof(*scratch));
    struct prom_server *v;
    struct weir_stats_counters gc;
    size_t n = 0, cap = 0;
    char labels[64];

    for (size_t i = 0; i < rt->npools; i++)
        cap += rt->pools[i].set.n;
    v = calloc(cap ? cap : 1, sizeof(*v));
    if (scratch == NULL || v == NULL) {
        free(scratch);
        free(v);
        return -1;
    }
    for (size_t i = 0; i < rt->npools; i++) {
        for (size_t j = 0; j < rt->pools[i].set.n; j++) {
            struct prom_server *ps = &v[n++];
            ps->pool = &rt->pools[i];
            ps->s = rt->pools[i].set.v[j];
            weir_stats_read_counters(ps->s->stats, now_s, &ps->c);
            prom_fill_hist(&ps->h[WEIR_LAT_TOTAL], ps->s->stats, WEIR_LAT_TOTAL, now_s, scratch);
            prom_fill_hist(&ps->h[WEIR_LAT_TTFB], ps->s->stats, WEIR_LAT_TTFB, now_s, scratch);
        }
    }
    free(scratch);

    /* process */
    prom_family(out, "weir_build_info", "gauge", "weir version (value is always 1)");
    evbuffer_add_printf(out, "weir_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    prom_family(out, "weir_uptime_seconds", "gauge", "Seconds since weir started");
    evbuffer_add_printf(out, "weir_uptime_seconds %.3f\n", weir_stats_uptime_s());
    prom_family(out, "weir_workers", "gauge", "Worker threads");
    evbuffer_add_printf(out, "weir_workers %d\n", rt->nworkers);
    prom_family(out, "weir_connections", "gauge", "Open connections by side and state");
    evbuffer_add_printf(out,
                        "weir_connections{side=\"client\",state=\"active\"} %ld\n"
                        "weir_connections{side=\"client\",state=\"idle\"} %ld\n"
                        "weir_connections{side=\"upstream\",state=\"active\"} %ld\n"
                        "weir_connections{side=\"upstream\",state=\"idle\"} %ld\n",
                        weir_stats_gauge_read(WEIR_G_CLIENT_ACTIVE),
                        weir_stats_gauge_read(WEIR_G_CLIENT_IDLE), weir_stats_gauge_read(WEIR_G_UP_ACTIVE),
                        weir_stats_gauge_read(WEIR_G_UP_IDLE));

    /* whole proxy (includes requests that reached no pool or server) */
    weir_stats_read_counters(weir_stats_global(), now_s, &gc);
    prom_family(out, "weir_proxy_requests_total", "counter", "Finished client exchanges, all routes");
    evbuffer_add_printf(out, "weir_proxy_requests_total %llu\n", (unsigned long long)gc.requests);
    prom_family(out, "weir_proxy_responses_total", "counter", "Responses sent to clients by status class");
    prom_classes(out, "weir_proxy_responses_total", "", &gc);

    /* pools and routes */
    prom_family(out, "weir_pool_requests_total", "counter", "Finished exchanges routed to the pool");
    for (size_t i = 0; i < rt->npools; i++) {
        struct weir_stats_counters c;
        weir_stats_read_counters(rt->pools[i].stats, now_s, &c);
        evbuffer_add(out, "weir_pool_requests_total{pool=\"", 31);
        weir_prom_label(out, rt->pools[i].name);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)c.requests);
    }
    prom_family(out, "weir_pool_panic", "gauge", "1 when the pool is in panic mode (every server down)");
    for (size_t i = 0; i < rt->npools; i++) {
        const struct weir_pool *p = &rt->pools[i];
        evbuffer_add(out, "weir_pool_panic{pool=\"", 22);
        weir_prom_label(out, p->name);
        evbuffer_add_printf(out, "\"} %d\n", p->conf->panic && weir_health_pool_all_down(p) ? 1 : 0);
    }
    prom_family(out, "weir_route_requests_total", "counter", "Finished exchanges that matched the route");
    for (size_t i = 0; i < rt->nroutes; i++) {
        struct weir_stats_counters c;
        weir_stats_read_counters(rt->routes[i].stats, now_s, &c);
        evbuffer_add(out, "weir_route_requests_total{host=\"", 32);
        weir_prom_label(out, rt->conf->routes[i].host);
        evbuffer_add(out, "\",path_prefix=\"", 15);
        weir_prom_label(out, rt->conf->routes[i].path_prefix);
        evbuffer_add(out, "\",pool=\"", 8);
        weir_prom_label(out, rt->routes[i].pool->name);
        evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)c.requests);
    }

    /* servers */
    PROM_SERVER_COUNTER(out, "weir_requests_total",
                        "Finished exchanges answered by the server (last attempt)", v, n, ps_->c.requests);
    prom_family(out, "weir_responses_total", "counter", "Responses sent to clients by status class");
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < WEIR_CLASS_N; k++) {
            snprintf(labels, sizeof(labels), "class=\"%s\"", weir_admin_class_names[k]);
            prom_series(out, "weir_responses_total", &v[i], labels);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)v[i].c.responses[k]);
        }
    }
    prom_family(out, "weir_upstream_errors_total", "counter", "Failed exchanges with the server by kind");
    for (size_t i = 0; i < n; i++) {
        for (int k = WEIR_UPERR_CONNECT; k <= WEIR_UPERR_5XX; k++) {
            snprintf(labels, sizeof(labels), "kind=\"%s\"", weir_admin_uperr_names[k]);
            prom_series(out, "weir_upstream_errors_total", &v[i], labels);
            evbuffer_add_printf(out, " %llu\n", (unsigned long long)v[i].c.upstream_errors[k]);
        }
    }
    PROM_SERVER_COUNTER(out, "weir_retries_total",
                        "Attempts beyond the first of exchanges ending on the server", v, n, ps_->c.retries);
    PROM_SERVER_COUNTER(out, "weir_client_received_bytes_total", "Bytes read from clients", v, n,
                        ps_->c.bytes_in);
    PROM_SERVER_COUNTER(out, "weir_client_sent_bytes_total", "Bytes written to clients", v, n,
                        ps_->c.bytes_out);

    prom_family(out, "weir_server_up", "gauge", "1 when the server takes new requests (state up)");
    for (size_t i = 0; i < n; i++) {
        prom_series(out, "weir_server_up", &v[i], NULL);
        evbuffer_add_printf(out, " %d\n", weir_server_available(v[i].s) ? 1 : 0);
    }
    prom_family(out, "weir_server_weight", "gauge", "Configured weight of the server");
    for (size_t i = 0; i < n; i++) {
        prom_series(out, "weir_server_weight", &v[i], NULL);
        evbuffer_add_printf(out, " %d\n", atomic_load(&v[i].s->weight));
    }
    prom_family(out, "weir_server_active_requests", "gauge", "Requests in flight to the server");
    for (size_t i = 0; i < n; i++) {
        prom_series(out, "weir_server_active_requests", &v[i], NULL);
        evbuffer_add_printf(out, " %ld\n", weir_server_active(v[i].s));
    }

    prom_histogram(out, "weir_request_duration_seconds",
                   "Total time of exchanges answered by the server: first request byte to last response byte",
                   v, n, WEIR_LAT_TOTAL);
    prom_histogram(out, "weir_upstream_ttfb_seconds",
                   "Upstream time to first byte: request sent to the server until its response head", v, n,
                   WEIR_LAT_TTFB);
    free(v);
    if (rt->tls != NULL) {
        struct weir_tls_stats_listener l[WEIR_CONTROL_MAX_LISTENS];
        return weir_tls_metrics(out, l, weir_admin_tls_listeners(rt, l), rt->tls->not_after, time(NULL));
    }
    return 0;
}
