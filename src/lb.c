/*
 * lb.c - what every balancing policy shares: the policy table looked up by
 * config name, the "may this server be picked" rule, and the 64-bit key hash
 * (XXH64, seed 0) used by the hash policy for keys and ring points.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "weir/lb.h"

static const struct weir_lb_ops *const lb_policies[] = {
    &weir_lb_round_robin, &weir_lb_weighted_round_robin, &weir_lb_least_conn, &weir_lb_random_two,
    &weir_lb_hash,
};

const struct weir_lb_ops *weir_lb_find(const char *name)
{
    size_t i;

    if (name == NULL)
        return NULL;
    for (i = 0; i < WEIR_ARRAY_LEN(lb_policies); i++) {
        if (strcmp(lb_policies[i]->name, name) == 0)
            return lb_policies[i];
    }
    return NULL;
}

/*
 * Normal mode: only UP servers. Panic mode (ignore_health): any state but the
 * administrative ones; DRAINING and MAINT never get new requests.
 * Excluded servers (already tried for this request) are never usable.
 */
int weir_lb_usable(const struct weir_server *s, const struct weir_lb_ctx *ctx)
{
    int st = atomic_load_explicit(&s->state, memory_order_relaxed);
    size_t i;

    if (ctx != NULL && ctx->ignore_health) {
        if (st == WEIR_SRV_DRAINING || st == WEIR_SRV_MAINT)
            return 0;
    } else if (st != WEIR_SRV_UP) {
        return 0;
    }
    if (ctx != NULL && ctx->exclude != NULL) {
        for (i = 0; i < ctx->nexclude; i++) {
            if (ctx->exclude[i] == s)
                return 0;
        }
    }
    return 1;
}

struct lb_idx {
    const struct weir_server *s;
    long i;
};

static int lb_idx_cmp(const void *pa, const void *pb)
{
    const struct lb_idx *a = pa, *b = pb;
    return a->s < b->s ? -1 : a->s > b->s;
}

int weir_lb_map_servers(const struct weir_server_set *from, const struct weir_server_set *to, long *map)
{
    struct lb_idx *idx = malloc((from->n ? from->n : 1) * sizeof(*idx));
    size_t i;

    for (i = 0; i < to->n; i++)
        map[i] = -1;
    if (idx == NULL)
        return -1;
    for (i = 0; i < from->n; i++) {
        idx[i].s = from->v[i];
        idx[i].i = (long)i;
    }
    qsort(idx, from->n, sizeof(*idx), lb_idx_cmp);
    for (i = 0; i < to->n; i++) {
        struct lb_idx key = {to->v[i], 0};
        const struct lb_idx *hit = from->n ? bsearch(&key, idx, from->n, sizeof(*idx), lb_idx_cmp) : NULL;
        if (hit != NULL)
            map[i] = hit->i;
    }
    free(idx);
    return 0;
}

size_t weir_lb_carry_cursor(const struct weir_server_set *from, size_t old_next,
                            const struct weir_server_set *to, const long *map)
{
    size_t best = 0;
    size_t best_dist = (size_t)-1;

    if (from->n == 0 || to->n == 0)
        return 0;
    if (old_next >= from->n)
        old_next = 0;
    /* The kept server closest after the cursor, in from's cyclic order. */
    for (size_t i = 0; i < to->n; i++) {
        if (map[i] < 0)
            continue;
        size_t d = ((size_t)map[i] + from->n - old_next) % from->n;
        if (d < best_dist) {
            best_dist = d;
            best = i;
        }
    }
    return best;
}

/* XXH64 (Yann Collet's xxHash, 64-bit, seed 0), reading bytes little-endian so
 * the result is the same on every host. */

#define XXH_P1 UINT64_C(0x9E3779B185EBCA87)
#define XXH_P2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define XXH_P3 UINT64_C(0x165667B19E3779F9)
#define XXH_P4 UINT64_C(0x85EBCA77C2B2AE63)
#define XXH_P5 UINT64_C(0x27D4EB2F165667C5)

static inline uint64_t xxh_rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t xxh_read64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint64_t xxh_read32(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * XXH_P2;
    acc = xxh_rotl(acc, 31);
    return acc * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t val)
{
    acc ^= xxh_round(0, val);
    return acc * XXH_P1 + XXH_P4;
}

uint64_t weir_lb_hash64(const void *data, size_t n)
{
    const unsigned char *p = data;
    const unsigned char *end = p + n;
    uint64_t h;

    if (n >= 32) {
        const unsigned char *limit = end - 32;
        uint64_t v1 = XXH_P1 + XXH_P2, v2 = XXH_P2, v3 = 0, v4 = (uint64_t)0 - XXH_P1;
        do {
            v1 = xxh_round(v1, xxh_read64(p));
            v2 = xxh_round(v2, xxh_read64(p + 8));
            v3 = xxh_round(v3, xxh_read64(p + 16));
            v4 = xxh_round(v4, xxh_read64(p + 24));
            p += 32;
        } while (p <= limit);
        h = xxh_rotl(v1, 1) + xxh_rotl(v2, 7) + xxh_rotl(v3, 12) + xxh_rotl(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = XXH_P5;
    }
    h += (uint64_t)n;

    while (end - p >= 8) {
        h ^= xxh_round(0, xxh_read64(p));
        h = xxh_rotl(h, 27) * XXH_P1 + XXH_P4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= xxh_read32(p) * XXH_P1;
        h = xxh_rotl(h, 23) * XXH_P2 + XXH_P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)*p * XXH_P5;
        h = xxh_rotl(h, 11) * XXH_P1;
        p++;
    }

    h ^= h >> 33;
    h *= XXH_P2;
    h ^= h >> 29;
    h *= XXH_P3;
    h ^= h >> 32;
    return h;
}
