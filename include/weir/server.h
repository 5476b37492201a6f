/*
 * server.h - a backend server as every module sees it.
 *
 * A server object outlives configuration snapshots: a reload or a runtime API
 * change builds a new snapshot that retains the same object for the same
 * (pool, address), so health state, counters and idle connections persist.
 * Fields written by the control thread (state, weight, ramp) are atomics; the
 * workers only read them, and a worker's pick never takes a lock.
 */
#ifndef WEIR_SERVER_H
#define WEIR_SERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "weir/core.h"

enum weir_server_state {
    WEIR_SRV_UP = 0,   /* takes requests */
    WEIR_SRV_DOWN,     /* failed active checks */
    WEIR_SRV_EJECTED,  /* passive outlier ejection */
    WEIR_SRV_DRAINING, /* admin: no new requests, in-flight ones finish */
    WEIR_SRV_MAINT     /* admin: out of service */
};

/* Weights are scaled by this factor internally so slow start can ramp a
 * server's share smoothly from ~0 to full without floating point. */
#define WEIR_WEIGHT_SCALE 1000

struct weir_server_idle; /* per-worker idle upstream connections (upstream.c) */

struct weir_server {
    char *address;                /* "host:port" as configured, NUL-terminated */
    struct sockaddr_storage addr; /* resolved at config time */
    socklen_t addrlen;
    unsigned id; /* unique for the process lifetime */

    _Atomic int weight;        /* configured weight, >= 1 */
    _Atomic int state;         /* enum weir_server_state */
    _Atomic int ramp_permille; /* slow start: 0..1000 share of weight; 1000 = full */
    _Atomic long active;       /* requests in flight, all workers */
    _Atomic unsigned refcnt;

    /* Health (health.c): admin and health states combine into `state`;
     * the passive counters are updated by workers lock-free. */
    _Atomic int admin_state;          /* enum weir_admin_state */
    _Atomic int health_state;         /* WEIR_SRV_UP, DOWN or EJECTED */
    _Atomic int passive_fails;        /* consecutive failed exchanges */
    _Atomic long long eject_until_ms; /* monotonic ms when an ejection ends */
    _Atomic int ejections;            /* times ejected (for the stats) */
    _Atomic int eject_level;          /* eject time is eject_ms * 2^(level-1); +1 per
                                       * ejection, -1 per max_eject_ms spent up */

    /* Per-worker data, each slot touched only by its worker thread. */
    struct weir_server_idle *idle[WEIR_MAX_WORKERS];

    /* Opaque slots for later modules (health, stats); owned by them. */
    void *health;
    void *stats;
};

/* Create a server with refcnt 1. Returns NULL on allocation failure. */
struct weir_server *weir_server_new(const char *address, const struct sockaddr *sa, socklen_t salen,
                                    int weight);
/* Reference counting; any thread. The last release frees the object. */
void weir_server_retain(struct weir_server *s);
void weir_server_release(struct weir_server *s);

/* 1 when the server may take a new request (state == UP). Any thread. */
static inline int weir_server_available(const struct weir_server *s)
{
    return atomic_load_explicit(&s->state, memory_order_relaxed) == WEIR_SRV_UP;
}

/* Effective weight in WEIR_WEIGHT_SCALE units: weight * SCALE scaled by the
 * slow-start ramp, never below 1 for a server with weight >= 1. */
static inline long weir_server_eff_weight(const struct weir_server *s)
{
    long w = (long)atomic_load_explicit(&s->weight, memory_order_relaxed) * WEIR_WEIGHT_SCALE;
    int r = atomic_load_explicit(&s->ramp_permille, memory_order_relaxed);
    if (r < 1000)
        w = w * r / 1000;
    return w < 1 ? 1 : w;
}

static inline long weir_server_active(const struct weir_server *s)
{
    return atomic_load_explicit(&s->active, memory_order_relaxed);
}

const char *weir_server_state_name(int state);

#endif
