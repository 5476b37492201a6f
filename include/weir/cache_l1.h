/*
 * cache_l1.h - the in-memory cache (L1): one per weir instance, shared by
 * every worker thread.
 *
 * Entries are stored objects (struct weir_cache_obj, one per key and Vary
 * variant) and hit-for-miss marks (a key whose last response was not
 * storable: requests for it go straight to the backend without waiting on
 * each other until the mark expires).
 *
 * Bound: the sum of the heap bytes of every entry (malloc_usable_size of
 * the entry, of the object's allocations, of the hash buckets) never stays
 * above memory_bytes: an insert evicts least recently used entries until it
 * fits. Objects are reference-counted: eviction and purge only drop the
 * cache's reference, so a client being sent an object keeps it alive.
 *
 * Concurrency: the table is split into stripes, each with its own mutex,
 * hash table and LRU list, chosen by the key's hash; an operation locks one
 * stripe at a time (never two), so workers rarely contend. LRU order is per
 * stripe; eviction walks stripes round-robin, so the bound is exact and the
 * order approximately global. Every function may be called from any
 * thread. Times are wall-clock seconds.
 */
#ifndef WEIR_CACHE_L1_H
#define WEIR_CACHE_L1_H

#include <stddef.h>
#include <stdint.h>

#include "weir/cache_obj.h"

struct weir_cache_l1;

#define WEIR_L1_STRIPES 16

/* Create an L1 of memory_bytes (> 0). NULL on allocation failure. */
struct weir_cache_l1 *weir_cache_l1_new(size_t memory_bytes);
/* Drop every entry (objects live on while referenced) and free the L1.
 * No other thread may be using it. */
void weir_cache_l1_free(struct weir_cache_l1 *l1);

struct weir_l1_hit {
    struct weir_cache_obj *obj; /* retained for the caller: weir_cache_obj_release() it */
    int64_t lifetime;           /* freshness lifetime to judge it by (a soft purge shortens it) */
    int hit_for_miss;           /* on a miss: a hit-for-miss mark is set for the key */
    int64_t hfm_until;          /* ... until then (seconds) */
};

/*
 * Find the variant of `key` that matches the request headers (Vary).
 * WEIR_OK: hit->obj is set and retained. WEIR_DECLINED: no usable entry
 * (hit->hit_for_miss says whether a mark is set). Entries past their
 * useful life (response_time + keep) are removed on the way. A hit moves
 * the entry to the front of its stripe's LRU list.
 */
int weir_cache_l1_lookup(struct weir_cache_l1 *l1, const char *key, const struct weir_http_header *req,
                         size_t nreq, int64_t now, struct weir_l1_hit *hit);

/*
 * Store a complete object (the L1 takes its own reference). It replaces
 * the entry with the same key and Vary values, and the key's hit-for-miss
 * mark. Returns WEIR_OK, WEIR_DECLINED when the object is not complete or
 * alone larger than the budget, WEIR_ERROR on allocation failure.
 */
int weir_cache_l1_insert(struct weir_cache_l1 *l1, struct weir_cache_obj *obj, int64_t now);

/* Set a hit-for-miss mark on key until `until` (replacing an older mark;
 * objects stored under the key are left alone). WEIR_OK or WEIR_ERROR. */
int weir_cache_l1_mark_hfm(struct weir_cache_l1 *l1, const char *key, int64_t until);

/* Purges. url: every variant stored for that URL (GET key); prefix: every
 * object whose URL starts with it; tag: every object with that
 * Surrogate-Key tag; all: everything. soft: objects are kept but become
 * stale from now on (their lifetime is capped at their current age), so
 * stale-while-revalidate and stale-if-error still apply. Hit-for-miss
 * marks are removed in every case. Return the number of objects purged. */
size_t weir_cache_l1_purge_url(struct weir_cache_l1 *l1, const char *url, int soft, int64_t now);
size_t weir_cache_l1_purge_prefix(struct weir_cache_l1 *l1, const char *prefix, int soft, int64_t now);
size_t weir_cache_l1_purge_tag(struct weir_cache_l1 *l1, const char *tag, int soft, int64_t now);
size_t weir_cache_l1_purge_all(struct weir_cache_l1 *l1);

struct weir_l1_stats {
    size_t budget;     /* memory_bytes */
    size_t bytes;      /* heap bytes held now */
    size_t objects;    /* stored objects */
    size_t marks;      /* hit-for-miss marks */
    uint64_t evicted;  /* objects evicted to make room */
    uint64_t expired;  /* objects dropped past their useful life */
    uint64_t inserted; /* objects stored */
};
void weir_cache_l1_stats(struct weir_cache_l1 *l1, struct weir_l1_stats *st);

#endif
