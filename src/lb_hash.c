/*
 * lb_hash.c - hash: consistent hashing on a ring of virtual nodes.
 *
 * Each server owns LB_HASH_POINTS_PER_WEIGHT points per unit of configured
 * weight; point r of a server sits at weir_lb_hash64("ADDRESS#r"), so a
 * server's points depend on its address only, never on the other servers or
 * their order. A request with key hash h goes to the owner of the first point
 * >= h (binary search, wrapping past the top), walking clockwise past servers
 * that are unusable or excluded. Hence:
 *  - the same key goes to the same server while the set is unchanged;
 *  - adding or removing one of N servers moves only about 1/N of the keys,
 *    and only to or from that server;
 *  - a server that goes down hands its keys to its ring neighbours and gets
 *    exactly the same keys back when it returns (the ring is not rebuilt on
 *    state changes).
 * Slow start does not apply here: the ring uses the configured weight, since
 * ramping it would move keys. server_changed rebuilds the ring when a
 * configured weight changed (points 0..w-1 of a server are the same for every
 * w, so only the difference moves).
 *
 * A point takes 16 bytes (2.5 KB per weight unit per worker). The ring is
 * capped at LB_HASH_MAX_POINTS (4 MB); beyond it every server's share is
 * scaled down in proportion (never below LB_HASH_MIN_POINTS), which also
 * weakens the 1/N remapping bound for such huge pools.
 * Pick is O(log points) plus a short walk (usually zero or one step past a
 * down server). The walk reads each server's state at most once (an
 * epoch-stamped "found unusable" array kept in the state, no malloc) and
 * stops as soon as every server was found unusable.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/lb.h"

#define LB_HASH_POINTS_PER_WEIGHT 160
#define LB_HASH_MIN_POINTS        16
#define LB_HASH_MAX_POINTS        (1u << 18)

struct lb_hash_point {
    uint64_t hash;
    uint32_t server; /* index in the set */
};

struct lb_hash {
    size_t n;                   /* set size at init */
    struct lb_hash_point *ring; /* sorted by hash */
    size_t npoints;
    int *weights;   /* configured weights the ring was built with */
    uint32_t *seen; /* seen[i] == epoch: server i found unusable this pick */
    uint32_t epoch;
};

static int lb_hash_point_cmp(const void *pa, const void *pb)
{
    const struct lb_hash_point *a = pa, *b = pb;

    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    if (a->server != b->server)
        return a->server < b->server ? -1 : 1;
    return 0;
}

/* Number of ring points for weight w given the scaling (num/den). */
static size_t lb_hash_npoints(int w, size_t num, size_t den)
{
    size_t p = (size_t)w * LB_HASH_POINTS_PER_WEIGHT;

    if (num < den) {
        p = (size_t)((unsigned long long)p * num / den);
        if (p < LB_HASH_MIN_POINTS)
            p = LB_HASH_MIN_POINTS;
    }
    return p;
}

/* Build a new ring for `set` with the current configured weights and swap it
 * in. Returns 0, or -1 on allocation failure with the old ring kept. */
static int lb_hash_build(struct lb_hash *st, const struct weir_server_set *set)
{
    size_t n = set->n < st->n ? set->n : st->n, i, total = 0, maxlen = 0, k = 0;
    struct lb_hash_point *ring;
    int *weights;
    char *buf;

    weights = calloc(n ? n : 1, sizeof(*weights));
    if (weights == NULL)
        return -1;
    for (i = 0; i < n; i++) {
        size_t len = strlen(set->v[i]->address);
        weights[i] = atomic_load_explicit(&set->v[i]->weight, memory_order_relaxed);
        if (weights[i] < 1)
            weights[i] = 1;
        total += (size_t)weights[i] * LB_HASH_POINTS_PER_WEIGHT;
        if (len > maxlen)
            maxlen = len;
    }
    {
        size_t num = total > LB_HASH_MAX_POINTS ? LB_HASH_MAX_POINTS : total;
        size_t den = total ? total : 1;
        total = 0;
        for (i = 0; i < n; i++)
            total += lb_hash_npoints(weights[i], num, den);
        ring = malloc((total ? total : 1) * sizeof(*ring));
        buf = malloc(maxlen + 16);
        if (ring == NULL || buf == NULL) {
            free(ring);
            free(buf);
            free(weights);
            return -1;
        }
        for (i = 0; i < n; i++) {
            size_t r, np = lb_hash_npoints(weights[i], num, den);
            for (r = 0; r < np; r++) {
                int len = snprintf(buf, maxlen + 16, "%s#%zu", set->v[i]->address, r);
                ring[k].hash = weir_lb_hash64(buf, (size_t)len);
                ring[k].server = (uint32_t)i;
                k++;
            }
        }
    }
    free(buf);
    qsort(ring, k, sizeof(*ring), lb_hash_point_cmp);

    free(st->ring);
    free(st->weights);
    st->ring = ring;
    st->npoints = k;
    st->weights = weights;
    return 0;
}

static void lb_hash_destroy(void *state)
{
    struct lb_hash *st = state;

    if (st == NULL)
        return;
    free(st->ring);
    free(st->weights);
    free(st->seen);
    free(st);
}

static void *lb_hash_init(const struct weir_server_set *set)
{
    struct lb_hash *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    st->n = set->n;
    st->seen = calloc(set->n ? set->n : 1, sizeof(*st->seen));
    if (st->seen == NULL || lb_hash_build(st, set) != 0) {
        lb_hash_destroy(st);
        return NULL;
    }
    return st;
}

static struct weir_server *lb_hash_pick(void *state, const struct weir_server_set *set,
                                        const struct weir_lb_ctx *ctx)
{
    struct lb_hash *st = state;
    size_t n = set->n < st->n ? set->n : st->n;
    uint64_t h = ctx != NULL ? ctx->hash : 0;
    size_t lo = 0, hi = st->npoints, idx, step, nseen = 0;

    if (n == 0 || st->npoints == 0)
        return NULL;

    /* First point with hash >= h. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    idx = lo == st->npoints ? 0 : lo;

    if (++st->epoch == 0) {
        memset(st->seen, 0, st->n * sizeof(*st->seen));
        st->epoch = 1;
    }
    for (step = 0; step < st->npoints; step++) {
        uint32_t si = st->ring[idx].server;
        if (si < n && st->seen[si] != st->epoch) {
            if (weir_lb_usable(set->v[si], ctx))
                return set->v[si];
            st->seen[si] = st->epoch;
            if (++nseen == n)
                return NULL;
        }
        idx = idx + 1 < st->npoints ? idx + 1 : 0;
    }
    return NULL;
}

static void lb_hash_server_changed(void *state, const struct weir_server_set *set)
{
    struct lb_hash *st = state;
    size_t n = set->n < st->n ? set->n : st->n, i;

    for (i = 0; i < n; i++) {
        if (atomic_load_explicit(&set->v[i]->weight, memory_order_relaxed) != st->weights[i]) {
            /* On allocation failure the old ring stays: still correct, only
             * the weights are stale until the next change. */
            (void)lb_hash_build(st, set);
            return;
        }
    }
}

const struct weir_lb_ops weir_lb_hash = {
    .name = "hash",
    .init = lb_hash_init,
    .pick = lb_hash_pick,
    .release = NULL,
    .server_changed = lb_hash_server_changed,
    .destroy = lb_hash_destroy,
};
