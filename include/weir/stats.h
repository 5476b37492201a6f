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
    int status;        /* status sent to the client; 0 when none was sent */
    uint64_t ttfb_us;  /* request sent upstream -> response head; 0 when no upstream response */
    uint64_t total_us; /* first byte of the request -> end of the response */
    uint64_t bytes_in; /* bytes read from the client for this exchange */
    uint64_t bytes_out;/* bytes written to the client for this exchange */
    int retries;       /* attempts beyond the first */
};

struct weir_stats;

/* Find or create the entity (kind, key); key is e.g. the pool name, the
 * route's "host path_prefix", or "pool/address" for a server; NULL for
 * global. The registry owns it until weir_stats_shutdown. Control/main
 * thread (called while building a snapshot). NULL on allocation failure. */
struct weir_stats *weir_stats_get(int kind, const char *key);

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

#endif
