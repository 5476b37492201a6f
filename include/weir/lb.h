/*
 * lb.h - balancing policies behind one small ops table.
 *
 * A policy never touches sockets. Each worker owns one policy state per pool
 * per configuration snapshot (created by init, freed by destroy), so a pick
 * runs on one thread and takes no lock; what is shared between workers
 * (server state, weight, active count) is read through atomics.
 */
#ifndef WEIR_LB_H
#define WEIR_LB_H

#include <stddef.h>
#include <stdint.h>

#include "weir/server.h"

/* The servers a policy balances over; immutable for the state's lifetime. */
struct weir_server_set {
    struct weir_server **v;
    size_t n;
};

/* What a pick may use. */
struct weir_lb_ctx {
    uint64_t hash;                      /* policy hash: key hash (weir_lb_hash64) */
    struct weir_server *const *exclude; /* servers already tried for this request */
    size_t nexclude;
    int ignore_health; /* panic mode: consider servers in any state but MAINT */
};

struct weir_lb_ops {
    const char *name; /* config name: "round_robin", ... */
    /* Build one worker's state for `set`. Returns NULL on allocation failure. */
    void *(*init)(const struct weir_server_set *set);
    /* Pick an available, non-excluded server or NULL when there is none. */
    struct weir_server *(*pick)(void *state, const struct weir_server_set *set,
                                const struct weir_lb_ctx *ctx);
    /* The request given to `s` has finished (optional, may be NULL). */
    void (*release)(void *state, struct weir_server *s);
    /* Weights or states changed; rebuild cached data (optional, may be NULL). */
    void (*server_changed)(void *state, const struct weir_server_set *set);
    void (*destroy)(void *state);
    /*
     * Optional (NULL: the new state starts afresh). Carry the balancing
     * position of `old` (a state of this policy built for old_set) into
     * `state` (built by init for set), matching servers by identity, so a
     * snapshot rebuild (runtime API change, reload) continues the rotation
     * where it was instead of restarting at the first server. Both states
     * belong to the calling worker; old is not modified.
     */
    void (*carry)(void *state, const struct weir_server_set *set, const void *old,
                  const struct weir_server_set *old_set);
};

extern const struct weir_lb_ops weir_lb_round_robin;
extern const struct weir_lb_ops weir_lb_weighted_round_robin;
extern const struct weir_lb_ops weir_lb_least_conn;
extern const struct weir_lb_ops weir_lb_random_two;
extern const struct weir_lb_ops weir_lb_hash;

/* Look a policy up by its config name. NULL when unknown. */
const struct weir_lb_ops *weir_lb_find(const char *name);

/* 1 when s may be picked under ctx (available or panic, and not excluded). */
int weir_lb_usable(const struct weir_server *s, const struct weir_lb_ctx *ctx);

/*
 * For each server of `to`, its index in `from` (map[i], -1 when absent);
 * servers are matched by identity. map has to->n slots. O((n + m) log m).
 * Returns 0, or -1 when out of memory (map then all -1).
 */
int weir_lb_map_servers(const struct weir_server_set *from, const struct weir_server_set *to, long *map);

/*
 * Where a cyclic cursor at index `old_next` of `from` goes in `to`: the index
 * of that server in `to`, or, when it was removed, of the next server after
 * it (in `from`'s cyclic order) that is still there; 0 when none is. map is
 * weir_lb_map_servers(from, to).
 */
size_t weir_lb_carry_cursor(const struct weir_server_set *from, size_t old_next,
                            const struct weir_server_set *to, const long *map);

/* 64-bit hash of a key (for the hash policy's ctx->hash). */
uint64_t weir_lb_hash64(const void *p, size_t n);

#endif
