/*
 * stats.h - request statistics: counters and latency histograms per worker,
 * merged when read.
 *
 * A struct weir_stats is one accounted entity (the whole proxy, a pool, a
 * route or a server). It holds one block per worker; a worker writes only
 * its own block, without locks (single-writer relaxed atomics), and readers
 * (the admin endpoint) merge the blocks. Entities are kept in a registry by
 * (kind, key) so a pool's, route's or server's numbers survive reloads.
 */
#ifndef WEIR_STATS_H
#define WEIR_STATS_H

#include <stddef.h>
#include <stdint.h>

enum weir_stats_kind { WEIR_STATS_GLOBAL = 0, WEIR_STATS_POOL, WEIR_STATS_ROUTE, WEIR_STATS_SERVER };

/* Upstream error kinds. */
enum weir_upstream_err {
    WEIR_UPERR_NONE = 0,
    WEIR_UPERR_CONNECT,
    WEIR_UPERR_TIMEOUT,
    WEIR_UPERR_RESET,
    WEIR_UPERR_5XX
};

/* One finished exchange, as a worker saw it. */
struct weir_stats_sample {
    int status;         /* status sent to the client; 0 when none was sent */
    uint64_t ttfb_us;   /* request sent upstream -> response head; 0 when no upstream response */
    uint64_t total_us;  /* first byte of the request -> end of the response */
    uint64_t bytes_in;  /* bytes read from the client for this exchange */
    uint64_t bytes_out; /* bytes written to the client for this exchange */
    int retries;        /* attempts beyond the first */
    uint64_t now_us;    /* weir_now_us() at the end of the exchange, so the records of one
                           exchange read no clock; 0: the stats module reads its own */
};

struct weir_stats;

/* Find or create the entity (kind, key); key is e.g. the pool name, the
 * route's "host path_prefix", or "pool/address" for a server; NULL for
 * global. Takes a reference for the caller, which gives it back with
 * weir_stats_put; the entity is freed with the last one (the global entity
 * is not counted: it lives until weir_stats_shutdown). Control/main thread
 * (called while building a snapshot). NULL on allocation failure. */
struct weir_stats *weir_stats_get(int kind, const char *key);
/* Drop a reference from weir_stats_get (NULL: nothing). The entity must not
 * be used by the caller afterwards; a recording in flight elsewhere holds
 * its own reference through its snapshot or server. Any thread; before
 * weir_stats_shutdown. */
void weir_stats_put(struct weir_stats *st);
/* Entities in the registry, the global one included. Any thread. */
size_t weir_stats_registry_size(void);

/* The global entity (created by weir_stats_init). */
struct weir_stats *weir_stats_global(void);

/* Initialise for `nworkers` workers (main thread, before workers start). */
int weir_stats_init(int nworkers);
void weir_stats_shutdown(void);

/* Record one exchange into an entity (NULL entity: ignored). Worker thread
 * `worker` only. */
void weir_stats_record(struct weir_stats *st, int worker, const struct weir_stats_sample *s);

/* Count one upstream error of `kind` (enum weir_upstream_err). Worker. */
void weir_stats_upstream_error(struct weir_stats *st, int worker, int kind);

/* Connection gauges, per worker (worker thread adds, anyone reads). */
enum weir_gauge {
    WEIR_G_CLIENT_ACTIVE = 0, /* client connections with an exchange in progress */
    WEIR_G_CLIENT_IDLE,       /* keep-alive client connections between requests */
    WEIR_G_UP_ACTIVE,         /* upstream connections carrying a request */
    WEIR_G_UP_IDLE,           /* pooled idle upstream connections */
    WEIR_G_N
};
void weir_stats_gauge_add(int worker, int gauge, long delta);

/*
 * ---- switching recording off (config key stats.enabled) ----
 *
 * When disabled, weir_stats_record and weir_stats_upstream_error return at
 * once (one relaxed load); gauges keep counting so they stay balanced.
 * Any thread; the control thread sets it at start and on reload.
 */
void weir_stats_set_enabled(int on);
int weir_stats_enabled(void);

/*
 * ---- reading (admin endpoint; any thread, usually the control thread) ----
 *
 * Readers merge the per-worker blocks. A read concurrent with recording sees
 * each record either wholly or not at all in each histogram bucket and
 * counter, but different fields of one entity may be a few records apart.
 */

/* Which latency of an exchange. */
enum weir_stats_lat {
    WEIR_LAT_TOTAL = 0, /* first byte of the request -> end of the response */
    WEIR_LAT_TTFB       /* request sent upstream -> response head */
};

/* Response classes, index into weir_stats_counters.responses. */
enum weir_stats_class {
    WEIR_CLASS_1XX = 0,
    WEIR_CLASS_2XX,
    WEIR_CLASS_3XX,
    WEIR_CLASS_4XX,
    WEIR_CLASS_5XX,
    WEIR_CLASS_OTHER,
    WEIR_CLASS_N
};

/* Rate windows, index into weir_stats_counters.rps. */
enum weir_stats_rate { WEIR_RATE_1S = 0, WEIR_RATE_10S, WEIR_RATE_60S, WEIR_RATE_N };

/* The summed counters of one entity. */
struct weir_stats_counters {
    uint64_t requests;                /* finished exchanges */
    uint64_t responses[WEIR_CLASS_N]; /* by the status sent to the client; OTHER = none sent or < 100 */
    uint64_t upstream_errors[WEIR_UPERR_5XX + 1]; /* by enum weir_upstream_err; [NONE] stays 0 */
    uint64_t retries;
    uint64_t bytes_in, bytes_out;
    double rps[WEIR_RATE_N]; /* requests per second over the last 1, 10, 60 whole seconds */
};

/* Monotonic second used by recording and reading (CLOCK_MONOTONIC_COARSE). */
uint64_t weir_stats_now_s(void);
/* Seconds since weir_stats_init (monotonic). */
double weir_stats_uptime_s(void);
/* Workers the module was initialised for. */
int weir_stats_nworkers(void);

/* Kind and key an entity was registered with (registry-owned string). */
int weir_stats_kind(const struct weir_stats *st);
const char *weir_stats_key(const struct weir_stats *st);

/* Sum the counters of `st` at monotonic second now_s into *out (zeroed first;
 * a NULL st gives zeros). */
void weir_stats_read_counters(const struct weir_stats *st, uint64_t now_s, struct weir_stats_counters *out);

/* Merge the latency `lat` (enum weir_stats_lat) of `st` over `window`
 * (enum weir_win, histogram.h) into `out`, which the caller initialised with
 * weir_hist_init and owns (several reads may go into one out). Returns
 * WEIR_OK, or WEIR_ERROR for a bad lat/window (out unchanged). */
struct weir_hist;
int weir_stats_read_latency(const struct weir_stats *st, int lat, int window, uint64_t now_s,
                            struct weir_hist *out);

/* Sum of one connection gauge over all workers (never negative). */
long weir_stats_gauge_read(int gauge);

/* Class index (enum weir_stats_class) of an HTTP status. Pure. */
int weir_stats_status_class(int status);

#endif
