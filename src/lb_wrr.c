/*
 * lb_wrr.c - weighted_round_robin: nginx's smooth weighted round robin.
 *
 * Each pick, every usable server gains its effective weight
 * (weir_server_eff_weight: configured weight in WEIR_WEIGHT_SCALE units, scaled
 * by the slow-start ramp) in `current`; the server with the largest `current`
 * wins and pays back the total of the weights handed out. Over any window of
 * sum(weights) picks each server gets exactly its weight's share, spread out
 * rather than in bursts: weights 5, 1, 1 give a a b a c a a, repeating.
 *
 * Unusable and excluded servers take no part in a pick, so their `current`
 * stays as it was; the sum of `current` over the servers taking part is
 * unchanged by each pick, so the values stay bounded. `current` is per worker
 * state (one slot per server of the set); pick is one O(n) pass.
 */
#include "config.h"

#include <stdlib.h>

#include "weir/lb.h"

struct lb_wrr {
    size_t n;       /* set size at init */
    long current[]; /* smooth WRR accumulator, one per server */
};

static void *lb_wrr_init(const struct weir_server_set *set)
{
    struct lb_wrr *st = calloc(1, sizeof(*st) + set->n * sizeof(st->current[0]));
    if (st == NULL)
        return NULL;
    st->n = set->n;
    return st;
}

static struct weir_server *lb_wrr_pick(void *state, const struct weir_server_set *set,
                                       const struct weir_lb_ctx *ctx)
{
    struct lb_wrr *st = state;
    size_t n = set->n < st->n ? set->n : st->n;
    size_t i, best = 0;
    long total = 0;
    int found = 0;

    for (i = 0; i < n; i++) {
        long w;
        if (!weir_lb_usable(set->v[i], ctx))
            continue;
        w = weir_server_eff_weight(set->v[i]);
        st->current[i] += w;
        total += w;
        if (!found || st->current[i] > st->current[best]) {
            best = i;
            found = 1;
        }
    }
    if (!found)
        return NULL;
    st->current[best] -= total;
    return set->v[best];
}

/* Keep the accumulators of the servers that stay; a new server starts at 0
 * like every server of a fresh pool. */
static void lb_wrr_carry(void *state, const struct weir_server_set *set, const void *old,
                         const struct weir_server_set *old_set)
{
    struct lb_wrr *st = state;
    const struct lb_wrr *o = old;
    struct weir_server_set from = {old_set->v, old_set->n < o->n ? old_set->n : o->n};
    struct weir_server_set to = {set->v, set->n < st->n ? set->n : st->n};
    long *map = calloc(st->n ? st->n : 1, sizeof(*map));

    if (map == NULL || weir_lb_map_servers(&from, &to, map) != 0) {
        free(map);
        return;
    }
    for (size_t i = 0; i < to.n; i++)
        if (map[i] >= 0)
            st->current[i] = o->current[map[i]];
    free(map);
}

static void lb_wrr_destroy(void *state)
{
    free(state);
}

const struct weir_lb_ops weir_lb_weighted_round_robin = {
    .name = "weighted_round_robin",
    .init = lb_wrr_init,
    .pick = lb_wrr_pick,
    .release = NULL,
    .server_changed = NULL,
    .destroy = lb_wrr_destroy,
    .carry = lb_wrr_carry,
};
