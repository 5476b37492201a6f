/*
 * cache_stats.c - response cache statistics per route and per tier (see
 * include/weir/cache_stats.h).
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "weir/cache_redis.h"
#include "weir/cache_stats.h"
#include "weir/core.h"
#include "weir/stats.h"

#define NCOUNTERS  (WEIR_CSR_N + WEIR_CSE_N + WEIR_CS_REASONS)
#define SLOTS      64  /* per-worker lookup table (direct mapped) */
#define L2_TICK_MS 250 /* how often a worker copies its L2 client's counters */

/* One worker's counters, on cache lines of their own. */
struct block {
    _Alignas(64) _Atomic uint64_t c[NCOUNTERS];
};

struct weir_cache_rstats {
    struct weir_cache_rstats *next; /* registry */
    char *key;
    struct block *w; /* [nworkers] */
};

struct slot {
    const void *route_stats;
    struct weir_cache_rstats *rs;
};

static struct {
    int nworkers;
    pthread_mutex_t mu; /* registry and L2 attachments */
    struct weir_cache_rstats *list;
    struct slot (*slots)[SLOTS]; /* [nworkers][SLOTS] */
    struct l2slot {
        struct weir_cache_redis *r; /* latency histogram read here (atomics) */
        struct event *ev;           /* the worker's timer copying r's counters */
        int has;                    /* snap taken at least once */
        struct weir_redis_stats snap;
    } l2[WEIR_MAX_WORKERS];
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

int weir_cache_stats_init(int nworkers)
{
    if (nworkers < 1 || nworkers > WEIR_MAX_WORKERS)
        return -1;
    pthread_mutex_lock(&S.mu);
    if (S.nworkers == 0) {
        S.slots = calloc((size_t)nworkers, sizeof(*S.slots));
        if (S.slots != NULL)
            S.nworkers = nworkers;
    }
    pthread_mutex_unlock(&S.mu);
    return S.slots != NULL ? 0 : -1;
}

void weir_cache_stats_shutdown(void)
{
    pthread_mutex_lock(&S.mu);
    while (S.list != NULL) {
        struct weir_cache_rstats *rs = S.list;
        S.list = rs->next;
        free(rs->key);
        free(rs->w);
        free(rs);
    }
    free(S.slots);
    S.slots = NULL;
    S.nworkers = 0;
    for (int i = 0; i < WEIR_MAX_WORKERS; i++)
        if (S.l2[i].ev != NULL)
            event_free(S.l2[i].ev); /* a worker that never ran its stop */
    memset(S.l2, 0, sizeof(S.l2));
    pthread_mutex_unlock(&S.mu);
}

/* Under S.mu. */
static struct weir_cache_rstats *find_locked(const char *key)
{
    for (struct weir_cache_rstats *rs = S.list; rs != NULL; rs = rs->next)
        if (strcmp(rs->key, key) == 0)
            return rs;
    return NULL;
}

static struct weir_cache_rstats *get_locked(const char *key)
{
    struct weir_cache_rstats *rs = find_locked(key);

    if (rs != NULL || S.nworkers == 0)
        return rs;
    rs = calloc(1, sizeof(*rs));
    if (rs == NULL)
        return NULL;
    rs->key = strdup(key);
    rs->w = aligned_alloc(64, sizeof(struct block) * (size_t)S.nworkers);
    if (rs->key == NULL || rs->w == NULL) {
        free(rs->key);
        free(rs->w);
        free(rs);
        return NULL;
    }
    for (int i = 0; i < S.nworkers; i++)
        for (int k = 0; k < NCOUNTERS; k++)
            atomic_init(&rs->w[i].c[k], 0);
    rs->next = S.list;
    S.list = rs;
    return rs;
}

struct weir_cache_rstats *weir_cache_stats_by_key(const char *key)
{
    struct weir_cache_rstats *rs;

    if (key == NULL)
        return NULL;
    pthread_mutex_lock(&S.mu);
    rs = get_locked(key);
    pthread_mutex_unlock(&S.mu);
    return rs;
}

struct weir_cache_rstats *weir_cache_stats_find(const char *key)
{
    struct weir_cache_rstats *rs;

    if (key == NULL)
        return NULL;
    pthread_mutex_lock(&S.mu);
    rs = find_locked(key);
    pthread_mutex_unlock(&S.mu);
    return rs;
}

struct weir_cache_rstats *weir_cache_stats_for(int worker, const void *route_stats)
{
    const char *key;
    struct slot *sl;

    if (route_stats == NULL || S.slots == NULL)
        return NULL;
    key = weir_stats_key(route_stats);
    if (key == NULL)
        return NULL;
    if (worker < 0 || worker >= S.nworkers)
        return weir_cache_stats_by_key(key);
    sl = &S.slots[worker][((uintptr_t)route_stats >> 6) % SLOTS];
    /* The route's stats entity is alive during the request (the snapshot
     * holds it); an address reused by another entity has another key. */
    if (sl->route_stats == route_stats && sl->rs != NULL && strcmp(sl->rs->key, key) == 0)
        return sl->rs;
    sl->rs = weir_cache_stats_by_key(key);
    sl->route_stats = sl->rs != NULL ? route_stats : NULL;
    return sl->rs;
}

static void add(struct weir_cache_rstats *rs, int worker, int k)
{
    _Atomic uint64_t *c;

    if (rs == NULL || worker < 0 || worker >= S.nworkers)
        return;
    c = &rs->w[worker].c[k];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

void weir_cache_stats_result(struct weir_cache_rstats *rs, int worker, int result)
{
    if (result >= 0 && result < WEIR_CSR_N)
        add(rs, worker, result);
}

void weir_cache_stats_event(struct weir_cache_rstats *rs, int worker, int event)
{
    if (event >= 0 && event < WEIR_CSE_N)
        add(rs, worker, WEIR_CSR_N + event);
}

void weir_cache_stats_not_storable(struct weir_cache_rstats *rs, int worker, int reason)
{
    add(rs, worker, WEIR_CSR_N + WEIR_CSE_NOT_STORABLE);
    if (reason >= 0 && reason < WEIR_CS_REASONS)
        add(rs, worker, WEIR_CSR_N + WEIR_CSE_N + reason);
}

static void sum_into(const struct weir_cache_rstats *rs, struct weir_cache_rcounters *out)
{
    for (int i = 0; i < S.nworkers; i++) {
        const _Atomic uint64_t *c = rs->w[i].c;
        for (int k = 0; k < WEIR_CSR_N; k++)
            out->results[k] += atomic_load_explicit(&c[k], memory_order_relaxed);
        for (int k = 0; k < WEIR_CSE_N; k++)
            out->events[k] += atomic_load_explicit(&c[WEIR_CSR_N + k], memory_order_relaxed);
        for (int k = 0; k < WEIR_CS_REASONS; k++)
            out->not_storable_by[k] +=
                atomic_load_explicit(&c[WEIR_CSR_N + WEIR_CSE_N + k], memory_order_relaxed);
    }
}

void weir_cache_stats_read(const struct weir_cache_rstats *rs, struct weir_cache_rcounters *out)
{
    memset(out, 0, sizeof(*out));
    if (rs != NULL)
        sum_into(rs, out);
}

void weir_cache_stats_read_all(struct weir_cache_rcounters *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&S.mu);
    for (const struct weir_cache_rstats *rs = S.list; rs != NULL; rs = rs->next)
        sum_into(rs, out);
    pthread_mutex_unlock(&S.mu);
}

uint64_t weir_cache_stats_hits(const struct weir_cache_rcounters *c)
{
    return c->results[WEIR_CSR_L1_HIT] + c->results[WEIR_CSR_L1_STALE] + c->results[WEIR_CSR_L2_HIT] +
           c->results[WEIR_CSR_L2_STALE];
}

uint64_t weir_cache_stats_requests(const struct weir_cache_rcounters *c)
{
    uint64_t n = 0;
    for (int k = 0; k < WEIR_CSR_N; k++)
        n += c->results[k];
    return n;
}

uint64_t weir_cache_stats_origin(const struct weir_cache_rcounters *c)
{
    return c->results[WEIR_CSR_MISS] + c->events[WEIR_CSE_ORIGIN_FETCH];
}

static const struct {
    const char *name, *tier, *kind;
} result_names[WEIR_CSR_N] = {
    [WEIR_CSR_L1_HIT] = {"l1_hit", "l1", "hit"},
    [WEIR_CSR_L1_STALE] = {"l1_stale", "l1", "stale"},
    [WEIR_CSR_L2_HIT] = {"l2_hit", "l2", "hit"},
    [WEIR_CSR_L2_STALE] = {"l2_stale", "l2", "stale"},
    [WEIR_CSR_MISS] = {"miss", "backend", "miss"},
    [WEIR_CSR_REVALIDATED] = {"revalidated", "backend", "revalidated"},
    [WEIR_CSR_STALE_ERROR] = {"stale_if_error", "l1", "stale_if_error"},
    [WEIR_CSR_ONLY_IF_CACHED] = {"only_if_cached", "none", "only_if_cached"},
};

static const char *const event_names[WEIR_CSE_N] = {
    [WEIR_CSE_STORED] = "stored",
    [WEIR_CSE_NOT_STORABLE] = "not_storable",
    [WEIR_CSE_REVALIDATED_304] = "revalidated_304",
    [WEIR_CSE_REVALIDATED_200] = "revalidated_200",
    [WEIR_CSE_COALESCED] = "coalesced",
    [WEIR_CSE_ORIGIN_FETCH] = "origin_fetches",
    [WEIR_CSE_L2_GARBAGE] = "l2_garbage",
};

const char *weir_cache_stats_result_name(int r)
{
    return r >= 0 && r < WEIR_CSR_N ? result_names[r].name : "?";
}

const char *weir_cache_stats_result_tier(int r)
{
    return r >= 0 && r < WEIR_CSR_N ? result_names[r].tier : "?";
}

const char *weir_cache_stats_result_kind(int r)
{
    return r >= 0 && r < WEIR_CSR_N ? result_names[r].kind : "?";
}

const char *weir_cache_stats_event_name(int e)
{
    return e >= 0 && e < WEIR_CSE_N ? event_names[e] : "?";
}

/* ---- purged ---- */

static _Atomic uint64_t purged[WEIR_CS_TIERS];

void weir_cache_stats_purged(int tier, uint64_t n)
{
    if (tier >= 0 && tier < WEIR_CS_TIERS && n > 0)
        atomic_fetch_add_explicit(&purged[tier], n, memory_order_relaxed);
}

uint64_t weir_cache_stats_purged_read(int tier)
{
    return tier >= 0 && tier < WEIR_CS_TIERS ? atomic_load_explicit(&purged[tier], memory_order_relaxed) : 0;
}

/* ---- L2 clients ---- */

/* On the worker: copy its client's counters for the readers (the client's
 * own fields are plain, written on that thread only). */
static void l2_tick(evutil_socket_t fd, short what, void *arg)
{
    struct l2slot *sl = arg;
    struct weir_redis_stats st;

    (void)fd;
    (void)what;
    if (sl->r == NULL)
        return;
    weir_cache_redis_stats(sl->r, &st);
    pthread_mutex_lock(&S.mu);
    sl->snap = st;
    sl->has = 1;
    pthread_mutex_unlock(&S.mu);
}

void weir_cache_stats_l2_attach(int worker, void *redis, struct event_base *base)
{
    struct l2slot *sl;
    struct event *old = NULL;

    if (worker < 0 || worker >= WEIR_MAX_WORKERS)
        return;
    sl = &S.l2[worker];
    if (redis == NULL || base == NULL) {
        pthread_mutex_lock(&S.mu);
        old = sl->ev;
        memset(sl, 0, sizeof(*sl));
        pthread_mutex_unlock(&S.mu);
        if (old != NULL)
            event_free(old);
        return;
    }
    pthread_mutex_lock(&S.mu);
    old = sl->ev;
    sl->r = redis;
    sl->has = 0;
    sl->ev = event_new(base, -1, EV_PERSIST, l2_tick, sl);
    pthread_mutex_unlock(&S.mu);
    if (old != NULL)
        event_free(old);
    if (sl->ev != NULL) {
        struct timeval tv = {0, L2_TICK_MS * 1000};
        event_add(sl->ev, &tv);
    }
    l2_tick(-1, 0, sl); /* a first copy now */
}

void weir_cache_stats_l2_read(struct weir_cache_l2_summary *out)
{
    memset(out, 0, sizeof(*out));
    weir_hist_init(&out->latency);
    pthread_mutex_lock(&S.mu);
    for (int i = 0; i < WEIR_MAX_WORKERS; i++) {
        const struct l2slot *sl = &S.l2[i];
        const struct weir_redis_stats *st = &sl->snap;
        if (sl->r == NULL || !sl->has)
            continue;
        out->clients++;
        switch (st->state) {
        case WEIR_REDIS_UP:
            out->up++;
            break;
        case WEIR_REDIS_OPEN:
            out->open++;
            break;
        case WEIR_REDIS_PROBING:
            out->probing++;
            break;
        default:
            out->connecting++;
        }
        out->commands += st->commands;
        out->ok += st->ok;
        out->miss += st->miss;
        out->timeouts += st->timeouts;
        out->errors += st->errors;
        out->refused += st->refused;
        out->late += st->late;
        out->opens += st->opens;
        out->connects += st->connects;
        weir_hist_merge(&out->latency, weir_cache_redis_latency(sl->r));
    }
    pthread_mutex_unlock(&S.mu);
}

const char *weir_cache_stats_l2_state(const struct weir_cache_l2_summary *s)
{
    if (s->clients == 0)
        return "off";
    if (s->up == s->clients)
        return "up";
    if (s->up > 0)
        return "degraded";
    if (s->open + s->probing > 0)
        return "open";
    return "connecting";
}
