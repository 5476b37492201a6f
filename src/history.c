/*
 * history.c - 15 minutes of chart history kept by weir (see history.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "weir/histogram.h"
#include "weir/history.h"
#include "weir/runtime.h"
#include "weir/stats.h"

#define INTERVAL_MS 1000

struct point {
    long long time_ms;
    double uptime_s;
    uint64_t requests, r2xx, r4xx, r5xx, other, bytes_in, bytes_out;
    uint64_t uperr[WEIR_UPERR_5XX + 1];
    uint64_t lat_count;
    double p50, p95, p99;
    int npools;
    struct {
        char name[48];
        uint64_t requests;
    } pools[WEIR_HISTORY_POOLS];
};

static struct {
    struct event *timer;
    struct point *v; /* ring of WEIR_HISTORY_POINTS */
    size_t n, head;
    struct weir_hist *scratch;
    int started;
} H;

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void sample(void)
{
    struct weir_rt *rt = weir_rt_current();
    uint64_t now_s = weir_stats_now_s();
    struct weir_stats_counters c;
    struct point *p;

    if (rt == NULL)
        return;
    p = &H.v[(H.head + H.n) % WEIR_HISTORY_POINTS];
    if (H.n == WEIR_HISTORY_POINTS)
        H.head = (H.head + 1) % WEIR_HISTORY_POINTS;
    else
        H.n++;
    memset(p, 0, sizeof(*p));
    p->time_ms = wall_ms();
    p->uptime_s = weir_stats_uptime_s();
    weir_stats_read_counters(weir_stats_global(), now_s, &c);
    p->requests = c.requests;
    p->r2xx = c.responses[WEIR_CLASS_2XX];
    p->r4xx = c.responses[WEIR_CLASS_4XX];
    p->r5xx = c.responses[WEIR_CLASS_5XX];
    p->other = c.responses[WEIR_CLASS_OTHER];
    p->bytes_in = c.bytes_in;
    p->bytes_out = c.bytes_out;
    memcpy(p->uperr, c.upstream_errors, sizeof(p->uperr));
    weir_hist_init(H.scratch);
    weir_stats_read_latency(weir_stats_global(), WEIR_LAT_TOTAL, WEIR_WIN_10S, now_s, H.scratch);
    p->lat_count = weir_hist_count(H.scratch);
    p->p50 = weir_hist_percentile(H.scratch, 50) / 1000.0;
    p->p95 = weir_hist_percentile(H.scratch, 95) / 1000.0;
    p->p99 = weir_hist_percentile(H.scratch, 99) / 1000.0;
    for (size_t i = 0; i < rt->npools && p->npools < WEIR_HISTORY_POOLS; i++) {
        weir_stats_read_counters(rt->pools[i].stats, now_s, &c);
        snprintf(p->pools[p->npools].name, sizeof(p->pools[0].name), "%s", rt->pools[i].name);
        p->pools[p->npools].requests = c.requests;
        p->npools++;
    }
    weir_rt_release(rt);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tv = {INTERVAL_MS / 1000, (INTERVAL_MS % 1000) * 1000};
    sample();
    evtimer_add(H.timer, &tv);
}

int weir_history_start(struct event_base *base)
{
    if (H.started)
        return 0;
    memset(&H, 0, sizeof(H));
    H.v = calloc(WEIR_HISTORY_POINTS, sizeof(*H.v));
    H.scratch = malloc(sizeof(*H.scratch));
    H.timer = evtimer_new(base, tick_cb, NULL);
    if (H.v == NULL || H.scratch == NULL || H.timer == NULL) {
        free(H.v);
        free(H.scratch);
        if (H.timer != NULL)
            event_free(H.timer);
        memset(&H, 0, sizeof(H));
        return -1;
    }
    H.started = 1;
    struct timeval tv = {INTERVAL_MS / 1000, (INTERVAL_MS % 1000) * 1000};
    evtimer_add(H.timer, &tv);
    return 0;
}

void weir_history_stop(void)
{
    if (!H.started)
        return;
    event_free(H.timer);
    free(H.v);
    free(H.scratch);
    memset(&H, 0, sizeof(H));
}

static json_t *point_json(const struct point *p)
{
    json_t *pools = json_array();
    for (int i = 0; pools != NULL && i < p->npools; i++)
        json_array_append_new(pools, json_pack("{s:s,s:I}", "name", p->pools[i].name, "requests",
                                               (json_int_t)p->pools[i].requests));
    json_t *lat = p->lat_count ? json_pack("{s:I,s:f,s:f,s:f}", "count", (json_int_t)p->lat_count, "p50",
                                           p->p50, "p95", p->p95, "p99", p->p99)
                               : json_pack("{s:i}", "count", 0);
    return json_pack(
        "{s:I,s:f,s:{s:I,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I},s:I,s:I,s:{s:o}},s:o}", "time_ms",
        (json_int_t)p->time_ms, "uptime_s", p->uptime_s, "global", "requests", (json_int_t)p->requests,
        "responses", "2xx", (json_int_t)p->r2xx, "4xx", (json_int_t)p->r4xx, "5xx", (json_int_t)p->r5xx,
        "other", (json_int_t)p->other, "upstream_errors", "connect", (json_int_t)p->uperr[WEIR_UPERR_CONNECT],
        "timeout", (json_int_t)p->uperr[WEIR_UPERR_TIMEOUT], "reset", (json_int_t)p->uperr[WEIR_UPERR_RESET],
        "5xx", (json_int_t)p->uperr[WEIR_UPERR_5XX], "bytes_in", (json_int_t)p->bytes_in, "bytes_out",
        (json_int_t)p->bytes_out, "latency_ms", "10s", lat, "pools", pools);
}

json_t *weir_history_json(void)
{
    json_t *pts = json_array();
    for (size_t i = 0; pts != NULL && i < H.n; i++)
        json_array_append_new(pts, point_json(&H.v[(H.head + i) % WEIR_HISTORY_POINTS]));
    return json_pack("{s:i,s:o}", "interval_ms", INTERVAL_MS, "points", pts);
}
