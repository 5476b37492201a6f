/*
 * autoscale_metrics.h - per-pool window statistics for autoscale rules and
 * alerts, from the stats registry (stats.h) and the servers' gauges.
 *
 * Every tick the control thread takes one sample of a pool: its cumulative
 * request and error counters, a copy of its all-time latency histogram
 * (first request byte -> last response byte), the requests in flight and
 * the available servers. A window's statistics are the difference between
 * the newest sample and the newest one at least window_ms older (or the
 * oldest kept, when weir has not run that long): exact percentiles of the
 * requests that finished in the window, not an average of averages.
 *
 * Control thread only (the series is not shared).
 */
#ifndef WEIR_AUTOSCALE_METRICS_H
#define WEIR_AUTOSCALE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "weir/histogram.h"
#include "weir/runtime.h"

/* One sample, as fed to the series. */
struct weir_as_sample {
    int64_t t_ms;
    uint64_t requests;            /* cumulative finished exchanges */
    uint64_t errors;              /* cumulative 5xx answers + exchanges ended without an answer */
    long inflight;                /* requests in flight to the pool's servers now */
    int servers;                  /* servers in the pool */
    int available;                /* servers taking requests (state UP) */
    const struct weir_hist *hist; /* cumulative latency; copied */
    uint64_t cache_requests;      /* cumulative requests on the pool's cache routes */
    uint64_t cache_hits;          /* cumulative answers from L1/L2 without the backend */
    uint64_t origin;              /* cumulative requests that reached a backend: cache misses and
                                     revalidations plus every request of the pool's other routes */
};

/* Statistics of one window (enum weir_as_metric values in v[]). */
struct weir_as_window {
    int has_requests; /* at least one request finished in the window */
    uint64_t requests;
    uint64_t cache_requests; /* on the pool's cache routes, in the window */
    double span_ms;          /* time actually covered */
    double v[16];            /* indexed by enum weir_as_metric */
};

struct weir_as_series;

/* A series keeping `depth` samples (>= 2). NULL on allocation failure. */
struct weir_as_series *weir_as_series_new(size_t depth);
void weir_as_series_free(struct weir_as_series *s);
/* Grow (never shrink) to keep `depth` samples; 0 or -1. */
int weir_as_series_reserve(struct weir_as_series *s, size_t depth);

/* Samples kept. */
size_t weir_as_series_len(const struct weir_as_series *s);

/* Append a sample (t_ms non-decreasing). */
void weir_as_series_push(struct weir_as_series *s, const struct weir_as_sample *x);

/* Statistics over the last window_ms at the newest sample. A window
 * without finished requests has has_requests = 0: the latency and error
 * metrics are then missing (weir_as_window_value returns 0), rps is 0.
 * Returns 0, or -1 when fewer than 2 samples exist. */
int weir_as_series_window(const struct weir_as_series *s, int window_ms, struct weir_as_window *w);

/* Value of `metric` in w: 1 and *out, or 0 when that metric has no data
 * (latency/error metrics without requests; per-server metrics without an
 * available server). */
int weir_as_window_value(const struct weir_as_window *w, int metric, double *out);

/* Take a sample of pool p now (reads its stats entity and its servers, and
 * the cache statistics of the routes of the current snapshot that use a
 * pool of p's name). */
void weir_as_sample_pool(const struct weir_pool *p, int64_t now_ms, struct weir_hist *scratch,
                         struct weir_as_sample *out);

#endif
