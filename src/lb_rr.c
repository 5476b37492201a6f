/*
 * lb_rr.c - round_robin: plain cyclic order over the usable servers.
 *
 * The state is one cursor: the index after the last pick. A pick scans from
 * the cursor for the first usable server, so servers that are down or
 * excluded are skipped without disturbing the cycle (a, b, c with b down
 * gives a, c, a, c, and b rejoins in its place when it comes back).
 * Weights are ignored; use weighted_round_robin for them. Slow start is
 * honoured: a server ramping up (ramp_permille < 1000) earns ramp/1000 of a
 * turn each time the cursor reaches it and takes the turn once it has a
 * whole one, so its share grows linearly with the ramp while servers at full
 * ramp keep the exact cyclic order.
 */
#include "config.h"

#include <stdlib.h>

#include "weir/lb.h"

struct lb_rr {
    size_t n;     /* set size at init */
    size_t next;  /* index the next scan starts from */
    int credit[]; /* per server: slow-start turn credit, in permille */
};

static void *lb_rr_init(const struct weir_server_set *set)
{
    struct lb_rr *st = calloc(1, sizeof(*st) + set->n * sizeof(st->credit[0]));
    if (st == NULL)
        return NULL;
    st->n = set->n;
    return st;
}

static struct weir_server *lb_rr_pick(void *state, const struct weir_server_set *set,
                                      const struct weir_lb_ctx *ctx)
{
    struct lb_rr *st = state;
    size_t n = set->n < st->n ? set->n : st->n;
    size_t i, idx;

    if (n == 0)
        return NULL;
    size_t fallback = n;
    idx = st->next < n ? st->next : 0;
    for (i = 0; i < n; i++) {
        struct weir_server *s = set->v[idx];
        if (weir_lb_usable(s, ctx)) {
            int ramp = atomic_load_explicit(&s->ramp_permille, memory_order_relaxed);
            if (ramp >= 1000 || (st->credit[idx] += ramp) >= 1000) {
                if (ramp < 1000)
                    st->credit[idx] -= 1000;
                st->next = idx + 1 < n ? idx + 1 : 0;
                return s;
            }
            if (fallback == n)
                fallback = idx;
        }
        idx = idx + 1 < n ? idx + 1 : 0;
    }
    if (fallback == n)
        return NULL;
    /* Only ramping servers are usable and none had a whole turn yet. */
    st->next = fallback + 1 < n ? fallback + 1 : 0;
    return set->v[fallback];
}

/* Continue the cycle at the server the old cursor pointed to, and keep the
 * slow-start credit of the servers that stay. */
static void lb_rr_carry(void *state, const struct weir_server_set *set, const void *old,
                        const struct weir_server_set *old_set)
{
    struct lb_rr *st = state;
    const struct lb_rr *o = old;
    struct weir_server_set from = {old_set->v, old_set->n < o->n ? old_set->n : o->n};
    long *map = calloc(st->n ? st->n : 1, sizeof(*map));
    struct weir_server_set to = {set->v, set->n < st->n ? set->n : st->n};

    if (map == NULL || weir_lb_map_servers(&from, &to, map) != 0) {
        free(map);
        return;
    }
    st->next = weir_lb_carry_cursor(&from, o->next, &to, map);
    for (size_t i = 0; i < to.n; i++)
        if (map[i] >= 0)
            st->credit[i] = o->credit[map[i]];
    free(map);
}

static void lb_rr_destroy(void *state)
{
    free(state);
}

const struct weir_lb_ops weir_lb_round_robin = {
    .name = "round_robin",
    .init = lb_rr_init,
    .pick = lb_rr_pick,
    .release = NULL,
    .server_changed = NULL,
    .destroy = lb_rr_destroy,
    .carry = lb_rr_carry,
};
