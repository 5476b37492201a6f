/*
 * lb_random_two.c - random_two: the power of two choices.
 *
 * A pick draws two distinct usable servers at random and sends the request to
 * the one with the lower load, active / eff_weight (compared exactly by
 * cross-multiplication, no floats; on a tie the first draw wins, which is
 * itself random). The most loaded server is never picked while another is
 * usable, and load spreads nearly as well as least_conn without every worker
 * herding onto the same "least loaded" server.
 *
 * Sampling is weight-aware: each draw picks a server with probability
 * proportional to its effective weight (weir_server_eff_weight, so slow start
 * ramps it in), the second draw among the servers left after the first. With
 * equal weights this is uniform sampling of two distinct servers. With one
 * usable server it is returned; with none, NULL.
 *
 * Each worker state has its own splitmix64 generator, seeded from the state's
 * address, the clock and a process counter, and a scratch array of one weight
 * per server, filled once per pick so the three O(n) passes see one
 * consistent view of the atomics. No malloc, no lock in pick.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "weir/lb.h"

struct lb_p2c {
    size_t n;     /* set size at init */
    uint64_t rng; /* splitmix64 state */
    uint64_t w[]; /* scratch: eff weight of each usable server this pick, 0 if unusable */
};

static _Atomic uint64_t lb_p2c_seq;

static uint64_t lb_p2c_next(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* a*b as a 128-bit value in hi:lo (portable, no __int128). */
static void lb_p2c_mul(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);

    *lo = (mid << 32) | (ll & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* 1 when a1/w1 < a2/w2 (all >= 0, w > 0): a1*w2 < a2*w1. */
static int lb_p2c_less(uint64_t a1, uint64_t w1, uint64_t a2, uint64_t w2)
{
    uint64_t h1, l1, h2, l2;

    lb_p2c_mul(a1, w2, &h1, &l1);
    lb_p2c_mul(a2, w1, &h2, &l2);
    return h1 < h2 || (h1 == h2 && l1 < l2);
}

static uint64_t lb_p2c_load(const struct weir_server *s)
{
    long a = weir_server_active(s);
    return a > 0 ? (uint64_t)a : 0;
}

static void *lb_p2c_init(const struct weir_server_set *set)
{
    struct lb_p2c *st = calloc(1, sizeof(*st) + set->n * sizeof(st->w[0]));
    uint64_t seed;

    if (st == NULL)
        return NULL;
    st->n = set->n;
    seed = (uint64_t)(uintptr_t)st ^ (weir_now_us() << 16) ^
           (atomic_fetch_add_explicit(&lb_p2c_seq, 1, memory_order_relaxed) * UINT64_C(0xD1B54A32D192ED03));
    st->rng = seed;
    (void)lb_p2c_next(&st->rng);
    return st;
}

/* Index of the server holding point r of the cumulative weights, skipping `skip`. */
static size_t lb_p2c_locate(const struct lb_p2c *st, size_t n, uint64_t r, size_t skip)
{
    size_t i, last = skip;

    for (i = 0; i < n; i++) {
        if (i == skip || st->w[i] == 0)
            continue;
        if (r < st->w[i])
            return i;
        r -= st->w[i];
        last = i;
    }
    return last; /* not reached: r < the sum of the weights walked */
}

static struct weir_server *lb_p2c_pick(void *state, const struct weir_server_set *set,
                                       const struct weir_lb_ctx *ctx)
{
    struct lb_p2c *st = state;
    size_t n = set->n < st->n ? set->n : st->n;
    size_t i, count = 0, one = 0, a, b;
    uint64_t total = 0;

    for (i = 0; i < n; i++) {
        if (weir_lb_usable(set->v[i], ctx)) {
            st->w[i] = (uint64_t)weir_server_eff_weight(set->v[i]);
            total += st->w[i];
            count++;
            one = i;
        } else {
            st->w[i] = 0;
        }
    }
    if (count == 0)
        return NULL;
    if (count == 1)
        return set->v[one];

    a = lb_p2c_locate(st, n, lb_p2c_next(&st->rng) % total, n);
    b = lb_p2c_locate(st, n, lb_p2c_next(&st->rng) % (total - st->w[a]), a);

    if (lb_p2c_less(lb_p2c_load(set->v[b]), st->w[b], lb_p2c_load(set->v[a]), st->w[a]))
        return set->v[b];
    return set->v[a];
}

static void lb_p2c_destroy(void *state)
{
    free(state);
}

const struct weir_lb_ops weir_lb_random_two = {
    .name = "random_two",
    .init = lb_p2c_init,
    .pick = lb_p2c_pick,
    .release = NULL,
    .server_changed = NULL,
    .destroy = lb_p2c_destroy,
};
