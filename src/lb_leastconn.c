/*
 * lb_leastconn.c - least_conn: the usable server with the fewest requests in
 * flight per unit of weight.
 *
 * Load is active / eff_weight (weir_server_active over weir_server_eff_weight,
 * so a slow-starting server looks more loaded and gets less); loads are
 * compared exactly by cross-multiplication in 128-bit arithmetic, no floats.
 * Ties are broken round-robin: the scan starts just after the previous pick
 * and the first server with the lowest load wins, so idle (or equally loaded)
 * servers take turns. The proxy, not the policy, counts `active`.
 * Pick is one O(n) pass.
 */
#include "config.h"

#include <stdlib.h>

#include "weir/lb.h"

struct lb_lc {
    size_t n;    /* set size at init */
    size_t next; /* where the next scan starts (just after the last pick) */
};

/* a*b as a 128-bit value in hi:lo (portable, no __int128). */
static void lb_lc_mul(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);

    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* 1 when a1/w1 < a2/w2 (all >= 0, w > 0): a1*w2 < a2*w1. */
static int lb_lc_less(uint64_t a1, uint64_t w1, uint64_t a2, uint64_t w2)
{
    uint64_t h1, l1, h2, l2;

    lb_lc_mul(a1, w2, &h1, &l1);
    lb_lc_mul(a2, w1, &h2, &l2);
    return h1 < h2 || (h1 == h2 && l1 < l2);
}

static void *lb_lc_init(const struct weir_server_set *set)
{
    struct lb_lc *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->n = set->n;
    return st;
}

static struct weir_server *lb_lc_pick(void *state, const struct weir_server_set *set,
                                      const struct weir_lb_ctx *ctx)
{
    struct lb_lc *st = state;
    size_t n = set->n < st->n ? set->n : st->n;
    size_t i, idx, best = 0;
    uint64_t best_a = 0, best_w = 1;
    int found = 0;

    if (n == 0)
        return NULL;
    idx = st->next < n ? st->next : 0;
    for (i = 0; i < n; i++, idx = idx + 1 < n ? idx + 1 : 0) {
        const struct weir_server *s = set->v[idx];
        long act;
        uint64_t a, w;

        if (!weir_lb_usable(s, ctx))
            continue;
        act = weir_server_active(s);
        a = act > 0 ? (uint64_t)act : 0;
        w = (uint64_t)weir_server_eff_weight(s);
        if (!found || lb_lc_less(a, w, best_a, best_w)) {
            best = idx;
            best_a = a;
            best_w = w;
            found = 1;
        }
    }
    if (!found)
        return NULL;
    st->next = best + 1 < n ? best + 1 : 0;
    return set->v[best];
}

/* Ties keep taking turns from where they were. */
static void lb_lc_carry(void *state, const struct weir_server_set *set, const void *old,
                        const struct weir_server_set *old_set)
{
    struct lb_lc *st = state;
    const struct lb_lc *o = old;
    struct weir_server_set from = {old_set->v, old_set->n < o->n ? old_set->n : o->n};
    struct weir_server_set to = {set->v, set->n < st->n ? set->n : st->n};
    long *map = calloc(st->n ? st->n : 1, sizeof(*map));

    if (map != NULL && weir_lb_map_servers(&from, &to, map) == 0)
        st->next = weir_lb_carry_cursor(&from, o->next, &to, map);
    free(map);
}

static void lb_lc_destroy(void *state)
{
    free(state);
}

const struct weir_lb_ops weir_lb_least_conn = {
    .name = "least_conn",
    .init = lb_lc_init,
    .pick = lb_lc_pick,
    .release = NULL,
    .server_changed = NULL,
    .destroy = lb_lc_destroy,
    .carry = lb_lc_carry,
};
