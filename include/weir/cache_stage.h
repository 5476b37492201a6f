/*
 * cache_stage.h - internal to the cache stage (src/cache*.c that sit on
 * the exchange interface): shared state, per-exchange state and the
 * functions the stage's files call in one another. Not for other modules:
 * their interface is include/weir/cache.h.
 *
 * Files and their one-way dependencies (a file calls only those below it):
 *   cache.c        the request hook (L1, L2 lookup, the Redis lease),
 *                  life cycle, state and counters
 *   cache_reval.c  revalidation (foreground, stale-while-revalidate)
 *   cache_store.c  going upstream: the store filter, hit-for-miss
 *   cache_purge.c  invalidation (§4.4), purges, purge rules, generation
 *   cache_flight.c coalescing: flights, waiters, per-worker inboxes
 *   cache_l2.c     L2 keys, storing in Redis, releasing a lease
 *   cache_serve.c  answering from a stored object; Cache-Status
 */
#ifndef WEIR_CACHE_STAGE_H
#define WEIR_CACHE_STAGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>

#include "weir/cache.h"
#include "weir/cache_l1.h"
#include "weir/cache_obj.h"
#include "weir/cache_redis.h"
#include "weir/cache_rules.h"
#include "weir/cache_stats.h"
#include "weir/exchange.h"
#include "weir/core.h"

#define HFM_SECONDS    10   /* hit-for-miss mark after a response that could not be stored */
#define WAIT_MS        5000 /* longest a coalesced waiter waits for its leader */
#define L2_OBJ         "obj:"
#define PURGE_CHAN     "purge"
#define PURGE_LOG      "purge:log" /* recent purges, for instances that were not listening */
#define PURGE_GEN      "purge:gen"
#define REASON_TOO_BIG 15   /* not_storable_by[]: over max_object_bytes */
#define STALE_OK       1    /* flight result: the origin failed; stale-if-error may answer */
#define STREAM_OK      2    /* flight state: the leader's object grows; waiters may stream it */
#define WAIT_END       3    /* a waiter that cannot stream it waits for the end */
#define RULES_MAX      1024 /* recent purges remembered for L2 values */
#define LEASE_MS       3000 /* an instance's lease to fetch a key others miss too */
#define LEASE_POLL_MS  50   /* how often the others look for the value meanwhile */
#define L2_LEASE       "lease:"
#define RULES_SECONDS  86400 /* ... for at most a day */

struct waiter;
struct bg;

struct cache_worker {
    int id;
    struct event_base *base;
    struct weir_cache_redis *l2;
    struct weir_cache_redis_sub *sub; /* worker 0 */
    int efd;
    struct event *ev;
    pthread_mutex_t mu;
    struct waiter *inbox; /* woken waiters handed over by other threads */
    struct bg *bgs;       /* background revalidations running on this worker */
    /* counters: written by this worker only */
    _Atomic uint64_t hit_l1, hit_l2, miss, stale_served, stored, not_storable, coalesced, l2_garbage,
        only_if_cached, revalidated;
    _Atomic uint64_t not_storable_by[16];
    _Atomic uint64_t stream_cut; /* streaming waiters cut: too far behind a passing object */
};

struct flight {
    struct flight *next;
    char *key;
    struct waiter *waiters;
    struct weir_cache_obj *obj; /* the leader's growing object, once waiters may stream it (retained) */
};

/* State shared by the stage's files (worker threads read it; written at
 * init and shutdown on the main thread). */
struct cache_global {
    int ready;
    struct weir_cache_l1 *l1;
    size_t max_object_bytes;
    int has_l2;
    struct weir_redis_conf rconf;
    char *raddress, *rpassword, *rprefix;
    /* Published by each worker thread when it starts, read by the admin
     * thread (counters) and by other workers (waking waiters): atomic. */
    _Atomic(struct cache_worker *) workers[WEIR_MAX_WORKERS];
    _Atomic long long purge_gen;       /* last purge generation seen (-1: unknown) */
    struct weir_cache_redis *admin_l2; /* the admin thread's connection */
};
extern struct cache_global cache_g;

static inline void cache_count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static inline int64_t cache_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- per-exchange state ---- */

enum { CX_NEW, CX_L2, CX_WAITING, CX_DONE };

struct waiter {
    struct waiter *next;     /* in the flight */
    struct waiter *inext;    /* in its worker's inbox (under cw->mu) */
    int queued;              /* in the inbox (under cw->mu) */
    int streaming;           /* answered from the flight's growing object (waiter's thread) */
    struct cx *cx;           /* the waiting exchange */
    struct cache_worker *cw; /* its worker */
    struct flight *flight;   /* NULL once released (under flights_mu) */
    int result; /* WEIR_OK: stored; WEIR_DECLINED: go upstream; STALE_OK: origin failed; STREAM_OK: the
                 * object grows, stream it; WAIT_END: it cannot (under flights_mu) */
    int woken;  /* resumed already (by the leader or the timer) */
    struct event *timer; /* WAIT_MS bound, on the waiter's worker */
};

struct cx {
    struct weir_exchange *x;
    struct cache_worker *cw;
    int method;
    char *url, *key;
    const struct weir_http_msg *req; /* stable copy (weir_exchange_request) */
    struct weir_cc qcc;
    int64_t request_time;
    int state;
    struct weir_redis_cmd *l2cmd;
    struct flight *lead; /* a flight this exchange leads, until handed to its store filter */
    struct waiter *w;
    int l2_second;                  /* the second (variant) L2 lookup was sent */
    struct weir_cache_fetch *fetch; /* foreground revalidation */
    struct weir_cache_obj *stale;   /* what it revalidates (retained) */
    struct weir_cache_verdict sv;   /* the stale object's verdict */
    int leased;                     /* we hold the Redis lease for the key */
    int polling;                    /* another instance holds it: we wait for L2 */
    uint64_t lease_until_us;
    struct event *poll;
    struct weir_cache_obj *sobj;  /* streamed to this waiter (retained) */
    int revalidating;             /* conditional request to the origin for c->stale (session's upstream) */
    uint64_t ssent;               /* body bytes of sobj handed to the session */
    struct weir_cache_reader rdr; /* sobj's length unknown: registered reader (cache_obj.h) */
    int rdr_on;                   /* ... registered */
    const char *fwd;              /* Cache-Status fwd= when it goes upstream (RFC 9211) */
    const char *detail;           /* ... and its detail=, or NULL */
    struct weir_cache_rstats *rs; /* the route's cache statistics (cache_stats.h) */
    const struct weir_pool *pool; /* the route's pool (the exchange keeps its snapshot) */
    int range_tried;              /* a Range miss was fetched whole already (cache_range.c) */
};

struct store {
    struct cache_worker *cw;
    const char *fwd;    /* Cache-Status fwd= */
    const char *detail; /* Cache-Status detail=, or NULL */
    int leased;         /* tell the instances waiting on our lease how it ended */
    char *url, *key;
    const struct weir_http_msg *req;
    int64_t request_time;
    struct flight *flight;
    struct weir_cache_obj *obj;
    struct cx *cx;                /* the exchange's hook state (alive while filters run) */
    struct weir_cache_obj *stale; /* revalidating this (retained): a 304 answers from it */
    struct weir_cache_rstats *rs; /* the route's cache statistics */
    int reval_result;             /* its result is the revalidation's, not counted yet */
    int passing;                  /* grew past max_object_bytes while waiters stream it */
    int cut_logged;
};

/* ---- cache_serve.c ---- */

/* Answer c from o with this Cache-Status value (NULL: "weir; hit; ttl=N;
 * detail=" + detail). Evaluates the request's preconditions and Range.
 * WEIR_OK or WEIR_ERROR (nothing was answered). */
int cache_serve_cs(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                   const char *detail, const char *cstatus);
int cache_serve(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                const char *detail);
/* Can o answer this request now? Fills v. */
int cache_usable(struct cx *c, struct weir_cache_obj *o, int64_t lifetime, struct weir_cache_verdict *v);
/* Add "Cache-Status: weir; fwd=...; fwd-status=N[; stored][; detail=...]"
 * to a response from the server (from a filter's on_head only). */
void cache_add_status(struct weir_exchange *x, const char *fwd, int status, int stored, const char *detail);
/* Cache-Status of an error weir answered itself (on_local of the filters). */
void cache_add_local_status(struct weir_exchange *x, const char *fwd, int status);
/* Attach a filter that only says Cache-Status (a response not stored). */
void cache_attach_status(struct weir_exchange *x, const char *fwd, const char *detail);
/* Answer c from o while o still grows (a coalesced waiter), when the
 * request allows (no Range or precondition, its Vary variant, usable):
 * WEIR_OK (c->sobj holds o; the session pulls the body), or WEIR_DECLINED
 * (nothing sent). A length not known yet needs o's readers enabled: c is
 * registered as a reader (c->rdr.wake/arg set by the caller). */
int cache_serve_stream(struct cx *c, struct weir_cache_obj *o, const char *cstatus);
/* The exchange ends: unregister its reader, drop c->sobj. */
void cache_stream_stop(struct cx *c);

/* ---- cache_l2.c ---- */

/* The Redis keys (before the configured prefix) of an object, a variant
 * (vary_values not NULL) and a lease, written to out; their length, or 0
 * when they do not fit in size (no command is sent for a key of length 0:
 * weir_cache_redis_* refuse it). */
size_t cache_l2_key(char *out, size_t size, const char *key, const char *vary_values, size_t vlen);
void cache_l2_store(struct cache_worker *cw, struct weir_cache_obj *o);
size_t cache_lease_key(char *out, size_t size, const char *key);
void cache_lease_release(struct cache_worker *cw, const char *key, int pass);

/* ---- cache_flight.c ---- */

/* Join the flight for key or start one: the new flight when this exchange
 * leads, NULL when one runs already (w, when not NULL, joins its waiters)
 * or on allocation failure (*err set). */
struct flight *cache_flight_join(const char *key, struct waiter *w, int *err);
/* End a flight: wake every waiter on its own worker with result. */
void cache_flight_end(struct flight *f, int result);
/* The leader's object o grows: waiters may stream it (a length not known
 * yet: o's readers enabled, cache_obj.h). */
void cache_flight_stream(struct flight *f, struct weir_cache_obj *o);
/* More of the flight's object arrived: wake the waiters streaming it. */
void cache_flight_progress(struct flight *f);
/* The waiter's exchange ended or gave up: leave the flight. */
void cache_waiter_leave(struct waiter *w);
/* The exchange that owned w ended: leave, stop its timer, unqueue, free. */
void cache_waiter_drop(struct waiter *w);
void cache_waiter_timer_cb(evutil_socket_t fd, short what, void *arg);
void cache_inbox_cb(evutil_socket_t fd, short what, void *arg);

/* ---- cache_purge.c ---- */

/* A safe-method exchange was not for the cache; an unsafe one: invalidate
 * (§4.4) when the response says it succeeded. Takes url. */
int cache_on_request_unsafe(struct weir_exchange *x, const struct weir_req_info *ri, struct cache_worker *cw,
                            char *url);
/* An L2 value after the purges it predates: -1 refused (a hard purge), or
 * the lifetime to judge it by (a soft purge caps it at its age then). */
int64_t cache_rules_apply(const struct weir_cache_obj *o);
void cache_on_purge_message(void *arg, const char *p, size_t n);
void cache_on_subscribed(void *arg);
void cache_purge_shutdown(void);

/* ---- cache_store.c ---- */

/* Go upstream with a store filter (unless the request forbids storing),
 * or answer 504 to only-if-cached. Returns the hook's answer; when resume,
 * resumes the suspended exchange with it instead. */
int cache_go_upstream(struct cx *c, int resume);

/* ---- cache_range.c ---- */

/* A Range request leading its key's flight: fetch the object whole, store
 * it and answer the range from it. Returns WEIR_HOOK_SUSPENDED (the answer
 * or cache_go_upstream follows from the fetch), or -1 when it does not
 * apply (not a Range GET, no server, ...). */
int cache_range_miss(struct cx *c, int resume);
/* The deadline of a cache's own fetch: connect + response timeouts. */
int cache_fetch_timeout_ms(void);

/* ---- cache_reval.c ---- */

/* Revalidate o while the client waits; the hook's answer or -1 (go on as
 * a miss). */
int cache_revalidate(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *o,
                     const struct weir_cache_verdict *v);
/* stale-while-revalidate: one background revalidation for the key. */
void cache_start_background(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *stale);
/* The worker stops: cancel its background revalidations. */
void cache_reval_stop(struct cache_worker *cw);

#endif
