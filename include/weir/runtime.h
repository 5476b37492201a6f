/*
 * runtime.h - the immutable, reference-counted snapshot every worker routes
 * and balances with.
 *
 * A snapshot is built from a validated struct weir_conf (which it then owns)
 * and swapped whole on reload or runtime API change. Servers with the same
 * (pool name, address) as in the previous snapshot are the same objects, so
 * their health state, counters and idle connections persist across swaps.
 * Each pool holds one balancing-policy state per worker: a worker's pick
 * touches only its own.
 *
 * Requests retain the snapshot they started with and release it when done,
 * so a swap never disturbs a request in flight.
 */
#ifndef WEIR_RUNTIME_H
#define WEIR_RUNTIME_H

#include <stdatomic.h>
#include <stddef.h>

#include "weir/conf.h"
#include "weir/lb.h"

struct weir_tls_set;
struct weir_tls_client;

struct weir_pool {
    const struct weir_conf_pool *conf; /* points into the snapshot's conf */
    const char *name;
    const struct weir_lb_ops *lb;
    struct weir_server_set set;       /* retained servers */
    void *lb_state[WEIR_MAX_WORKERS]; /* one per worker, [0..nworkers) */
    void *stats;                      /* struct weir_stats of this pool (registry-owned) */
    struct weir_tls_client *tls; /* client context (pools[].tls), in the snapshot's TLS set; NULL: plain */
};

enum weir_route_host { WEIR_ROUTE_ANY = 0, WEIR_ROUTE_EXACT, WEIR_ROUTE_SUFFIX };

struct weir_route {
    int host_kind;    /* enum weir_route_host */
    const char *host; /* exact host, or ".suffix" for "*.suffix" */
    size_t host_len;
    const char *prefix;
    size_t prefix_len;
    struct weir_pool *pool;
    void *stats; /* struct weir_stats of this route */
    int cache;   /* routes[].cache: answered through the response cache */
};

struct weir_rt {
    _Atomic unsigned refcnt;
    unsigned generation;
    int nworkers;
    struct weir_conf *conf; /* owned */
    struct weir_pool *pools;
    size_t npools;
    struct weir_route *routes;
    size_t nroutes;
    /* TLS contexts of this configuration (owned; NULL when nothing is TLS):
     * servers[listener] for accepted connections, clients[pool] (also in
     * pools[i].tls). A connection keeps the contexts it started with after
     * the snapshot goes (tls.h: SSLs hold references). Set by
     * weir_control_apply before publishing. */
    struct weir_tls_set *tls;
};

/*
 * Build a snapshot from `conf` (ownership passes to the snapshot on success;
 * on failure conf is left to the caller). `prev` (may be NULL) supplies
 * server objects to carry over. Returns NULL on allocation failure.
 * Control/main thread.
 */
struct weir_rt *weir_rt_build(struct weir_conf *conf, const struct weir_rt *prev, int nworkers);
void weir_rt_retain(struct weir_rt *rt);
void weir_rt_release(struct weir_rt *rt);

/* Route a request: host (lower-case, without port) and path. NULL when no
 * route matches. Any thread holding a reference. */
const struct weir_route *weir_rt_route(const struct weir_rt *rt, const char *host, size_t host_len,
                                       const char *path, size_t path_len);

/* The current snapshot. weir_rt_current() returns it retained (caller
 * releases); weir_rt_generation() is a cheap check for "has it changed".
 * weir_rt_publish() makes rt current (taking over the caller's reference)
 * and drops the previous one; NULL drops the last one at exit. */
struct weir_rt *weir_rt_current(void);
unsigned weir_rt_generation(void);
void weir_rt_publish(struct weir_rt *rt);

#endif
