/*
 * cache_stats.h - response cache statistics per route and per tier.
 *
 * One entity per cache route, keyed like the route's own statistics
 * ("host path_prefix", weir_stats_key of the route's stats entity), so a
 * route's cache numbers survive reloads. Each entity holds one block of
 * counters per worker: a worker writes only its own block (single-writer
 * relaxed atomics, no locks), readers sum the blocks. Entities live until
 * weir_cache_stats_shutdown (their number is bounded by the routes ever
 * configured).
 *
 * Request results partition the requests of a cache route (each request
 * counts exactly one WEIR_CSR_* result); the events (WEIR_CSE_*) count
 * what happened on the side (stores, revalidations, coalescing...).
 *
 * The per-worker L2 clients are attached here too, so that their states,
 * errors, timeouts and latency histograms can be read and summed.
 */
#ifndef WEIR_CACHE_STATS_H
#define WEIR_CACHE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "weir/histogram.h"

/* Results: one per request on a cache route. */
enum weir_cs_result {
    WEIR_CSR_L1_HIT = 0,     /* fresh answer from L1 */
    WEIR_CSR_L1_STALE,       /* stale answer from L1 (max-stale, stale-while-revalidate) */
    WEIR_CSR_L2_HIT,         /* fresh answer from L2 */
    WEIR_CSR_L2_STALE,       /* stale answer from L2 */
    WEIR_CSR_MISS,           /* went to the backend */
    WEIR_CSR_REVALIDATED,    /* answered after a revalidation with the backend (304 or 200) */
    WEIR_CSR_STALE_ERROR,    /* the backend failed: stale-if-error answered */
    WEIR_CSR_ONLY_IF_CACHED, /* 504 to only-if-cached */
    WEIR_CSR_N
};

/* Events. */
enum weir_cs_event {
    WEIR_CSE_STORED = 0,      /* response stored in L1 */
    WEIR_CSE_NOT_STORABLE,    /* response not stored (any reason) */
    WEIR_CSE_REVALIDATED_304, /* revalidation answered 304 (entry refreshed) */
    WEIR_CSE_REVALIDATED_200, /* revalidation answered a new 200 (entry replaced) */
    WEIR_CSE_COALESCED,       /* request answered from another request's fetch */
    WEIR_CSE_ORIGIN_FETCH,    /* revalidation fetch sent to the backend (foreground or background) */
    WEIR_CSE_L2_GARBAGE,      /* L2 value refused (not weir's, truncated, other version) */
    WEIR_CSE_N
};

#define WEIR_CS_REASONS 16 /* not storable reasons: enum weir_cache_store_reason, 15 = too big */

struct weir_cache_rstats;

/* Summed counters of one entity. */
struct weir_cache_rcounters {
    uint64_t results[WEIR_CSR_N];
    uint64_t events[WEIR_CSE_N];
    uint64_t not_storable_by[WEIR_CS_REASONS];
};

/* Initialise for `nworkers` workers (main thread, before workers start; 0
 * or -1). Idempotent until shutdown. */
int weir_cache_stats_init(int nworkers);
void weir_cache_stats_shutdown(void);

/* The entity of the route whose statistics entity is `route_stats`
 * (struct weir_stats *, see runtime.h), from worker `worker`: looked up in
 * a small per-worker table first (no lock), created under a mutex on the
 * first use. NULL when not initialised, out of memory or NULL route_stats.
 * Worker thread `worker` only (or any thread with worker = -1: always locks). */
struct weir_cache_rstats *weir_cache_stats_for(int worker, const void *route_stats);
/* The entity for a route key, created if needed (any thread; locks). */
struct weir_cache_rstats *weir_cache_stats_by_key(const char *key);
/* Find without creating (any thread); NULL if never used. */
struct weir_cache_rstats *weir_cache_stats_find(const char *key);

/* Count (NULL entity or bad index: ignored). Worker `worker` only. */
void weir_cache_stats_result(struct weir_cache_rstats *rs, int worker, int result);
void weir_cache_stats_event(struct weir_cache_rstats *rs, int worker, int event);
void weir_cache_stats_not_storable(struct weir_cache_rstats *rs, int worker, int reason);

/* Sum the blocks of rs (NULL: zeros). Any thread. */
void weir_cache_stats_read(const struct weir_cache_rstats *rs, struct weir_cache_rcounters *out);
/* Sum over every entity. */
void weir_cache_stats_read_all(struct weir_cache_rcounters *out);
/* Cache answers without the backend (L1/L2 hits and stale) and all
 * requests, of c. */
uint64_t weir_cache_stats_hits(const struct weir_cache_rcounters *c);
uint64_t weir_cache_stats_requests(const struct weir_cache_rcounters *c);
/* Requests that reached a backend: misses plus revalidation fetches. */
uint64_t weir_cache_stats_origin(const struct weir_cache_rcounters *c);

/* Stable names for labels and JSON keys. */
const char *weir_cache_stats_result_name(int result);
const char *weir_cache_stats_result_tier(int result); /* "l1", "l2", "backend" or "none" */
const char *weir_cache_stats_result_kind(int result); /* "hit", "stale", "miss", ... */
const char *weir_cache_stats_event_name(int event);

/* ---- purged objects, per tier, instance-wide (any thread) ---- */
enum weir_cs_tier { WEIR_CS_TIER_L1 = 0, WEIR_CS_TIER_L2, WEIR_CS_TIERS };
void weir_cache_stats_purged(int tier, uint64_t n);
uint64_t weir_cache_stats_purged_read(int tier);

/* ---- admin exports (admin_cache.c; admin thread) ---- */

/* The "cache" object of a route in /stats (a jansson json_t *; NULL on
 * allocation failure). */
struct json_t;
struct json_t *weir_admin_cache_route_json(const char *route_key);
/* The instance-wide "cache" object of /stats: L1 and L2. */
struct json_t *weir_admin_cache_stats_json(void);

/* ---- L2 clients (struct weir_cache_redis of each worker) ---- */

/* Attach (redis != NULL) or detach (NULL) worker `worker`'s L2 client
 * (struct weir_cache_redis). Worker thread, at start and at stop. The
 * client's counters are plain fields written by its worker: a timer on the
 * worker's `base` copies them every 250 ms for the readers (the latency
 * histogram is read directly: its fields are atomic). */
struct event_base;
void weir_cache_stats_l2_attach(int worker, void *redis, struct event_base *base);

/* L2 over every worker's client. */
struct weir_cache_l2_summary {
    int clients;                       /* attached */
    int up, connecting, open, probing; /* clients by enum weir_redis_state */
    uint64_t commands, ok, miss, timeouts, errors, refused, late, opens, connects;
    struct weir_hist latency; /* reply latency (us), all clients merged */
};
/* Fill *out (zeroed first; counters and states as of the workers' last
 * copies, at most 250 ms old). Any thread. */
void weir_cache_stats_l2_read(struct weir_cache_l2_summary *out);
/* "off" (no client), "up" (all up), "degraded" (some up), "open" (none
 * up, a breaker open or probing), "connecting" (none up, none open). */
const char *weir_cache_stats_l2_state(const struct weir_cache_l2_summary *s);

#endif
