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

/* 64-bit hash of a key (for the hash policy's ctx->hash). */
uint64_t weir_lb_hash64(const void *p, size_t n);

#endif
