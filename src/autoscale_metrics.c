/*
 * autoscale_metrics.c - per-pool sample rings and window statistics (see
 * autoscale_metrics.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "weir/autoscale_metrics.h"
#include "weir/cache_stats.h"
#include "weir/conf.h"
#include "weir/server.h"
#include "weir/stats.h"

struct slot {
    int64_t t_ms;
    uint64_t requests, errors;
    uint64_t cache_requests, cache_hits, origin;
    long inflight;
    int servers, available;
    struct weir_hist *hist; /* owned; allocated on first use */
};

struct weir_as_series {
    struct slot *v;
    size_t cap, n, head; /* head: index of the oldest of n */
};

struct weir_as_series *weir_as_series_new(size_t depth)
{
    struct weir_as_series *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    if (weir_as_series_reserve(s, depth < 2 ? 2 : depth) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void weir_as_series_free(struct weir_as_series *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->cap; i++)
        free(s->v[i].hist);
    free(s->v);
    free(s);
}

static struct slot *at(const struct weir_as_series *s, size_t i) /* i-th oldest */
{
    return &s->v[(s->head + i) % s->cap];
}

int weir_as_series_reserve(struct weir_as_series *s, size_t depth)
{
    if (depth <= s->cap)
        return 0;
    struct slot *v = calloc(depth, sizeof(*v));
    if (v == NULL)
        return -1;
    /* Keep the samples in order, oldest first; recycle the spare hists. */
    for (size_t i = 0; i < s->n; i++) {
        v[i] = *at(s, i);
        at(s, i)->hist = NULL;
    }
    for (size_t i = 0; i < s->cap; i++)
        free(s->v[i].hist);
    free(s->v);
    s->v = v;
    s->cap = depth;
    s->head = 0;
    return 0;
}

size_t weir_as_series_len(const struct weir_as_series *s)
{
    return s->n;
}

void weir_as_series_push(struct weir_as_series *s, const struct weir_as_sample *x)
{
    struct slot *sl;

    if (s->n == s->cap) { /* overwrite the oldest */
        sl = at(s, 0);
        s->head = (s->head + 1) % s->cap;
    } else {
        sl = at(s, s->n);
        s->n++;
    }
    sl->t_ms = x->t_ms;
    sl->requests = x->requests;
    sl->errors = x->errors;
    sl->cache_requests = x->cache_requests;
    sl->cache_hits = x->cache_hits;
    sl->origin = x->origin;
    sl->inflight = x->inflight;
    sl->servers = x->servers;
    sl->available = x->available;
    if (sl->hist == NULL)
        sl->hist = malloc(sizeof(*sl->hist));
    if (sl->hist != NULL) {
        weir_hist_init(sl->hist);
        if (x->hist != NULL)
            weir_hist_merge(sl->hist, x->hist);
    }
}

/* d = a - b bucket by bucket (a is the later cumulative histogram). */
static void hist_diff(struct weir_hist *d, const struct weir_hist *a, const struct weir_hist *b)
{
    uint64_t count = 0;
    int first = -1, last = -1;

    weir_hist_init(d);
    for (unsigned i = 0; i < WEIR_HIST_NBUCKETS; i++) {
        uint64_t x = atomic_load_explicit(&a->counts[i], memory_order_relaxed);
        uint64_t y = b ? atomic_load_explicit(&b->counts[i], memory_order_relaxed) : 0;
        uint64_t n = x > y ? x - y : 0;
        atomic_store_explicit(&d->counts[i], n, memory_order_relaxed);
        if (n > 0) {
            count += n;
            if (first < 0)
                first = (int)i;
            last = (int)i;
        }
    }
    uint64_t sa = weir_hist_sum(a), sb = b ? weir_hist_sum(b) : 0;
    atomic_store(&d->count, count);
    atomic_store(&d->sum, sa > sb ? sa - sb : 0);
    if (count > 0) {
        atomic_store(&d->min, weir_hist_bucket_low((unsigned)first));
        atomic_store(&d->max, weir_hist_bucket_value((unsigned)last));
    }
}

int weir_as_series_window(const struct weir_as_series *s, int window_ms, struct weir_as_window *w)
{
    memset(w, 0, sizeof(*w));
    if (s->n < 2)
        return -1;
    const struct slot *now = at(s, s->n - 1);
    const struct slot *base = at(s, 0);
    size_t bi = 0;
    for (size_t i = s->n - 1; i-- > 0;) {
        if (now->t_ms - at(s, i)->t_ms >= window_ms) {
            base = at(s, i);
            bi = i;
            break;
        }
    }
    w->span_ms = (double)(now->t_ms - base->t_ms);
    w->requests = now->requests > base->requests ? now->requests - base->requests : 0;
    w->has_requests = w->requests > 0;
    double span_s = w->span_ms > 0 ? w->span_ms / 1000.0 : 1.0;
    w->v[WEIR_ASM_RPS] = (double)w->requests / span_s;
    w->v[WEIR_ASM_HEALTHY_SERVERS] = now->available;
    w->v[WEIR_ASM_RPS_PER_SERVER] = now->available > 0 ? w->v[WEIR_ASM_RPS] / now->available : 0;
    double ips = 0;
    int nips = 0;
    for (size_t i = bi + 1; i < s->n; i++) {
        const struct slot *x = at(s, i);
        if (x->available > 0) {
            ips += (double)x->inflight / x->available;
            nips++;
        }
    }
    w->v[WEIR_ASM_INFLIGHT_PER_SERVER] = nips ? ips / nips : 0;
    w->cache_requests =
        now->cache_requests > base->cache_requests ? now->cache_requests - base->cache_requests : 0;
    if (w->cache_requests > 0) {
        uint64_t h = now->cache_hits > base->cache_hits ? now->cache_hits - base->cache_hits : 0;
        w->v[WEIR_ASM_CACHE_HIT_RATIO] = h > w->cache_requests ? 1.0 : (double)h / (double)w->cache_requests;
    }
    w->v[WEIR_ASM_ORIGIN_RPS] =
        (double)(now->origin > base->origin ? now->origin - base->origin : 0) / span_s;
    if (w->has_requests) {
        uint64_t e = now->errors > base->errors ? now->errors - base->errors : 0;
        w->v[WEIR_ASM_ERROR_RATE] = e > w->requests ? 1.0 : (double)e / (double)w->requests;
        if (now->hist != NULL) {
            struct weir_hist *d = malloc(sizeof(*d));
            if (d != NULL) {
                hist_diff(d, now->hist, base->hist);
                w->v[WEIR_ASM_P50_MS] = weir_hist_percentile(d, 50) / 1000.0;
                w->v[WEIR_ASM_P95_MS] = weir_hist_percentile(d, 95) / 1000.0;
                w->v[WEIR_ASM_P99_MS] = weir_hist_percentile(d, 99) / 1000.0;
                uint64_t c = weir_hist_count(d);
                w->v[WEIR_ASM_MEAN_MS] = c ? (double)weir_hist_sum(d) / (double)c / 1000.0 : 0;
                free(d);
            }
        }
    }
    return 0;
}

int weir_as_window_value(const struct weir_as_window *w, int metric, double *out)
{
    *out = 0;
    switch (metric) {
    case WEIR_ASM_RPS:
    case WEIR_ASM_HEALTHY_SERVERS:
    case WEIR_ASM_INFLIGHT_PER_SERVER:
    case WEIR_ASM_ORIGIN_RPS:
        break;
    case WEIR_ASM_CACHE_HIT_RATIO:
        if (w->cache_requests == 0)
            return 0;
        break;
    case WEIR_ASM_RPS_PER_SERVER:
        if (w->v[WEIR_ASM_HEALTHY_SERVERS] <= 0)
            return 0;
        break;
    case WEIR_ASM_P50_MS:
    case WEIR_ASM_P95_MS:
    case WEIR_ASM_P99_MS:
    case WEIR_ASM_MEAN_MS:
    case WEIR_ASM_ERROR_RATE:
        if (!w->has_requests)
            return 0;
        break;
    default:
        return 0;
    }
    *out = w->v[metric];
    return 1;
}

/* The cache and origin counters of pool p: summed over the routes of the
 * current snapshot whose pool has p's name (p may belong to an older one). */
static void sample_cache(const struct weir_pool *p, uint64_t now_s, struct weir_as_sample *out)
{
    struct weir_rt *rt = weir_rt_current();

    if (rt == NULL)
        return;
    for (size_t i = 0; i < rt->nroutes; i++) {
        const struct weir_route *r = &rt->routes[i];
        if (r->pool == NULL || r->stats == NULL || strcmp(r->pool->name, p->name) != 0)
            continue;
        if (r->cache) {
            struct weir_cache_rcounters c;
            weir_cache_stats_read(weir_cache_stats_find(weir_stats_key(r->stats)), &c);
            out->cache_requests += weir_cache_stats_requests(&c);
            out->cache_hits += weir_cache_stats_hits(&c);
            out->origin += weir_cache_stats_origin(&c);
        } else {
            struct weir_stats_counters c;
            weir_stats_read_counters(r->stats, now_s, &c);
            out->origin += c.requests;
        }
    }
    weir_rt_release(rt);
}

void weir_as_sample_pool(const struct weir_pool *p, int64_t now_ms, struct weir_hist *scratch,
                         struct weir_as_sample *out)
{
    struct weir_stats_counters c;
    uint64_t now_s = weir_stats_now_s();

    memset(out, 0, sizeof(*out));
    out->t_ms = now_ms;
    weir_stats_read_counters(p->stats, now_s, &c);
    out->requests = c.requests;
    out->errors = c.responses[WEIR_CLASS_5XX] + c.responses[WEIR_CLASS_OTHER];
    weir_hist_init(scratch);
    if (p->stats != NULL)
        weir_stats_read_latency(p->stats, WEIR_LAT_TOTAL, WEIR_WIN_ALL, now_s, scratch);
    out->hist = scratch;
    sample_cache(p, now_s, out);
    out->servers = (int)p->set.n;
    for (size_t i = 0; i < p->set.n; i++) {
        const struct weir_server *sv = p->set.v[i];
        out->inflight += weir_server_active(sv);
        out->available += weir_server_available(sv);
    }
}
