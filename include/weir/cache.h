/*
 * cache.h - the cache stage: the request hook and response filters (see
 * exchange.h) that answer routes with `cache = true` from L1 (memory) and
 * L2 (Redis), coalesce concurrent misses, and store what the backends send.
 *
 * Life cycle:
 *   weir_cache_init(conf)            main thread, after the first snapshot is
 *                                    published, before workers start:
 *                                    creates the L1 and registers the hook.
 *   weir_cache_worker_start(id, base) on worker `id`'s thread before its loop:
 *                                    its L2 client, its wake-up eventfd (other
 *                                    threads hand it coalesced waiters), and
 *                                    on worker 0 the purge subscriber.
 *   weir_cache_worker_stop(id)       on the same thread after its loop.
 *   weir_cache_shutdown()            main thread, after the workers ended.
 * Without weir_cache_init the hooks are not registered and the stage costs
 * nothing. weir_cache_reload(conf, workers, n) (main thread, after a
 * reload was applied): changed Redis settings (address, password, db,
 * prefix, timeout) reconnect every L2 connection with them, so a wrong new
 * password is said at once as at start; the cache sizes, and adding or
 * removing `redis`, take effect at the next restart (logged when they
 * changed); `cache = true` on routes follows reloads.
 */
#ifndef WEIR_CACHE_H
#define WEIR_CACHE_H

#include <event2/event.h>

#include "weir/cache_l1.h"
#include "weir/cache_redis.h"
#include "weir/conf.h"

int weir_cache_init(const struct weir_conf *conf);
void weir_cache_worker_start(int id, struct event_base *base);
void weir_cache_worker_stop(int id);
void weir_cache_shutdown(void);
struct weir_worker;
void weir_cache_reload(const struct weir_conf *conf, struct weir_worker *const *workers, int nworkers);

/* The instance's L1 (NULL before init). Any thread. */
struct weir_cache_l1 *weir_cache_get_l1(void);

/* The admin thread's Redis connection, for purges (on the admin's
 * event_base; no-op without L2). Admin thread. */
int weir_cache_admin_attach(struct event_base *base);
void weir_cache_admin_detach(void);

/*
 * Purge (admin API, admin thread): kind "url", "prefix" or "tag". Removes
 * from this instance's L1 now; publishes the purge on the channel so every
 * instance (this one too) purges its L1 and refuses L2 values stored before
 * it (soft: makes them stale); a hard URL purge also deletes the L2 value.
 * cb gets the counts (l2: values deleted) and l2_ok = 0 when L2 is
 * configured but unusable; it may run before this returns.
 */
typedef void (*weir_cache_purge_cb)(void *arg, size_t l1, size_t l2, int l2_ok);
void weir_cache_purge(const char *kind, const char *value, int soft, weir_cache_purge_cb cb, void *arg);

/* Counters (all workers), for /stats and /metrics. */
struct weir_cache_counters {
    uint64_t hit_l1, hit_l2, miss, stale_served, stored, not_storable, coalesced, l2_garbage, only_if_cached,
        revalidated;
    uint64_t not_storable_by[16]; /* by enum weir_cache_store_reason */
    uint64_t stream_cut; /* coalesced waiters cut: more than max_object_bytes behind a passing body */
};
void weir_cache_counters(struct weir_cache_counters *c);

/* Everything GET /cache shows. Any thread (L2 figures from the admin's
 * connection: call on the admin thread). */
struct weir_cache_state {
    struct weir_l1_stats l1;
    struct weir_cache_counters counters;
    int has_l2;
    struct weir_redis_stats l2;
    long long purge_gen;
    size_t max_object_bytes;
};
void weir_cache_state(struct weir_cache_state *st);

/* Admin endpoints (admin_cache.c), dispatched by admin.c after its token
 * check: POST /cache/purge and GET /cache. Admin thread. */
struct evhttp_request;
void weir_admin_cache_purge(struct evhttp_request *req);
void weir_admin_cache_get(struct evhttp_request *req);
/* The cache's families for /metrics (Prometheus text). Returns 0. */
struct evbuffer;
int weir_cache_metrics(struct evbuffer *out);

#endif
