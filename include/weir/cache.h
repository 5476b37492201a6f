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
 * nothing. Reload keeps the cache sizes and Redis settings of the start
 * (logged when they changed); `cache = true` on routes follows reloads.
 */
#ifndef WEIR_CACHE_H
#define WEIR_CACHE_H

#include <event2/event.h>

#include "weir/cache_l1.h"
#include "weir/conf.h"

int weir_cache_init(const struct weir_conf *conf);
void weir_cache_worker_start(int id, struct event_base *base);
void weir_cache_worker_stop(int id);
void weir_cache_shutdown(void);

/* The instance's L1 (NULL before init). Any thread. */
struct weir_cache_l1 *weir_cache_get_l1(void);

/* Purge (admin API): removes from this instance's L1 and, through worker
 * 0's Redis connection, from L2 (by URL) and from every other instance's L1
 * (published on the purge channel). kind: "url", "prefix" or "tag". Returns
 * the L1 count. Any thread. */
size_t weir_cache_purge(const char *kind, const char *value, int soft);

/* Counters (all workers), for /stats and /metrics. */
struct weir_cache_counters {
    uint64_t hit_l1, hit_l2, miss, stale_served, stored, not_storable, coalesced, l2_garbage, only_if_cached,
        revalidated;
    uint64_t not_storable_by[16]; /* by enum weir_cache_store_reason */
};
void weir_cache_counters(struct weir_cache_counters *c);

#endif
