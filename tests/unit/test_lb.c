/*
 * test_lb.c - unit tests for the balancing policies (lb.c, lb_*.c).
 *
 * Servers are fake: built by weir_server_new with no socket address, their
 * state, weight, slow-start ramp and active count set directly. Exact
 * sequences are asserted where a policy is deterministic (round_robin,
 * weighted_round_robin, least_conn, hash); random_two is checked by its
 * guarantees (never the more loaded of two) and by distributions with wide
 * statistical margins.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "weir/lb.h"

#define MAXS 8

struct fx {
    struct weir_server *s[MAXS];
    struct weir_server_set set;
};

/* n servers "10.0.0.<i+1>:8080" with the given weights (NULL = all 1). */
static void fx_make(struct fx *f, size_t n, const int *weights)
{
    size_t i;
    char name[64];

    assert_true(n <= MAXS);
    memset(f, 0, sizeof(*f));
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "10.0.0.%zu:8080", i + 1);
        f->s[i] = weir_server_new(name, NULL, 0, weights ? weights[i] : 1);
        assert_non_null(f->s[i]);
    }
    f->set.v = f->s;
    f->set.n = n;
}

static void fx_free(struct fx *f)
{
    size_t i;
    for (i = 0; i < f->set.n; i++)
        weir_server_release(f->s[i]);
}

static void set_state(struct weir_server *s, int st)
{
    atomic_store(&s->state, st);
}

static void set_active(struct weir_server *s, long a)
{
    atomic_store(&s->active, a);
}

/* Index of s in f, or -1. */
static int fx_index(const struct fx *f, const struct weir_server *s)
{
    size_t i;
    for (i = 0; i < f->set.n; i++) {
        if (f->s[i] == s)
            return (int)i;
    }
    return -1;
}

/* One pick, as an index ('a' + index for sequences), failing on NULL. */
static int pick_idx(const struct weir_lb_ops *ops, void *st, struct fx *f, const struct weir_lb_ctx *ctx)
{
    struct weir_server *s = ops->pick(st, &f->set, ctx);
    assert_non_null(s);
    return fx_index(f, s);
}

/* Picks `n` times and returns the picked sequence as letters a, b, c... */
static void pick_seq(const struct weir_lb_ops *ops, void *st, struct fx *f, const struct weir_lb_ctx *ctx,
                     char *out, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        out[i] = (char)('a' + pick_idx(ops, st, f, ctx));
    out[n] = '\0';
}

static void pick_counts(const struct weir_lb_ops *ops, void *st, struct fx *f, const struct weir_lb_ctx *ctx,
                        long n, long *counts)
{
    long i;
    memset(counts, 0, MAXS * sizeof(*counts));
    for (i = 0; i < n; i++)
        counts[pick_idx(ops, st, f, ctx)]++;
}

static const struct weir_lb_ops *const all_ops[] = {
    &weir_lb_round_robin, &weir_lb_weighted_round_robin, &weir_lb_least_conn, &weir_lb_random_two,
    &weir_lb_hash,
};

static uint64_t key_hash(long k)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "/key/%ld", k);
    return weir_lb_hash64(buf, (size_t)n);
}

/* ---- lb.c ---- */

static void test_find(void **unused)
{
    size_t i;

    assert_ptr_equal(weir_lb_find("round_robin"), &weir_lb_round_robin);
    assert_ptr_equal(weir_lb_find("weighted_round_robin"), &weir_lb_weighted_round_robin);
    assert_ptr_equal(weir_lb_find("least_conn"), &weir_lb_least_conn);
    assert_ptr_equal(weir_lb_find("random_two"), &weir_lb_random_two);
    assert_ptr_equal(weir_lb_find("hash"), &weir_lb_hash);
    assert_null(weir_lb_find("roundrobin"));
    assert_null(weir_lb_find("Round_Robin"));
    assert_null(weir_lb_find(""));
    assert_null(weir_lb_find(NULL));
    for (i = 0; i < WEIR_ARRAY_LEN(all_ops); i++) {
        assert_non_null(all_ops[i]->name);
        assert_non_null(all_ops[i]->init);
        assert_non_null(all_ops[i]->pick);
        assert_non_null(all_ops[i]->destroy);
    }
}

static void test_usable(void **unused)
{
    struct fx f;
    struct weir_lb_ctx normal = {0}, panic = {0}, excl = {0};
    /* state -> usable normally, usable in panic mode */
    static const int want[][3] = {
        {WEIR_SRV_UP, 1, 1},       {WEIR_SRV_DOWN, 0, 1},  {WEIR_SRV_EJECTED, 0, 1},
        {WEIR_SRV_DRAINING, 0, 0}, {WEIR_SRV_MAINT, 0, 0},
    };
    size_t i;

    fx_make(&f, 2, NULL);
    panic.ignore_health = 1;
    for (i = 0; i < WEIR_ARRAY_LEN(want); i++) {
        set_state(f.s[0], want[i][0]);
        assert_int_equal(weir_lb_usable(f.s[0], &normal), want[i][1]);
        assert_int_equal(weir_lb_usable(f.s[0], &panic), want[i][2]);
    }
    set_state(f.s[0], WEIR_SRV_UP);
    excl.exclude = &f.s[1];
    excl.nexclude = 1;
    assert_int_equal(weir_lb_usable(f.s[0], &excl), 1);
    assert_int_equal(weir_lb_usable(f.s[1], &excl), 0);
    excl.ignore_health = 1; /* panic mode does not override exclusion */
    assert_int_equal(weir_lb_usable(f.s[1], &excl), 0);
    fx_free(&f);
}

static void test_hash64(void **unused)
{
    static const char nobody[] = "Nobody inspects the spammish repetition";
    char buf[256];
    size_t i, len;
    long flips = 0, trials = 0;

    /* XXH64 reference values, seed 0. */
    assert_true(weir_lb_hash64("", 0) == UINT64_C(0xEF46DB3751D8E999));
    assert_true(weir_lb_hash64("abc", 3) == UINT64_C(0x44BC2CF5AD770999));
    assert_true(weir_lb_hash64(nobody, strlen(nobody)) == UINT64_C(0xFBCEA83C8A378BF1));
    assert_true(weir_lb_hash64("abc", 3) != weir_lb_hash64("abd", 3));
    assert_true(weir_lb_hash64("abc", 3) != weir_lb_hash64("abc", 2));

    /* Avalanche: flipping any one input bit flips about half the output bits
     * (on average over many inputs of every tail length path). */
    for (len = 1; len <= 70; len += 3) {
        for (i = 0; i < len; i++)
            buf[i] = (char)(i * 31 + len);
        for (i = 0; i < len * 8; i++) {
            uint64_t h0 = weir_lb_hash64(buf, len), h1;
            buf[i / 8] ^= (char)(1 << (i % 8));
            h1 = weir_lb_hash64(buf, len);
            buf[i / 8] ^= (char)(1 << (i % 8));
            flips += __builtin_popcountll(h0 ^ h1);
            trials++;
        }
    }
    assert_true(flips * 100 / trials > 3100 && flips * 100 / trials < 3300);
}

/* ---- round_robin ---- */

static void test_rr_sequence(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    char seq[32];
    void *st;
    static const int w[] = {5, 1, 1}; /* weights are ignored */

    fx_make(&f, 3, w);
    st = weir_lb_round_robin.init(&f.set);
    assert_non_null(st);
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 9);
    assert_string_equal(seq, "abcabcabc");
    weir_lb_round_robin.destroy(st);
    fx_free(&f);
}

static void test_rr_skips_down(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    char seq[32];
    void *st;

    fx_make(&f, 4, NULL);
    st = weir_lb_round_robin.init(&f.set);
    set_state(f.s[1], WEIR_SRV_DOWN);
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 6);
    assert_string_equal(seq, "acdacd");
    /* b comes back after a: it takes its place in the same cycle. */
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 1);
    assert_string_equal(seq, "a");
    set_state(f.s[1], WEIR_SRV_UP);
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 7);
    assert_string_equal(seq, "bcdabcd");
    /* d in maintenance, c draining. */
    set_state(f.s[3], WEIR_SRV_MAINT);
    set_state(f.s[2], WEIR_SRV_DRAINING);
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 4);
    assert_string_equal(seq, "abab");
    weir_lb_round_robin.destroy(st);
    fx_free(&f);
}

static void test_rr_excluded(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0}, ex = {0};
    char seq[32];
    void *st;

    fx_make(&f, 3, NULL);
    st = weir_lb_round_robin.init(&f.set);
    ex.exclude = &f.s[1];
    ex.nexclude = 1;
    pick_seq(&weir_lb_round_robin, st, &f, &ex, seq, 4);
    assert_string_equal(seq, "acac");
    /* A retry that excludes a skips to b; the cycle then continues with c. */
    ex.exclude = &f.s[0];
    pick_seq(&weir_lb_round_robin, st, &f, &ex, seq, 1);
    assert_string_equal(seq, "b");
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 4);
    assert_string_equal(seq, "cabc");
    weir_lb_round_robin.destroy(st);
    fx_free(&f);
}

/* ---- weighted_round_robin ---- */

static void test_wrr_smooth_5_1_1(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    char seq[64];
    void *st;
    static const int w[] = {5, 1, 1};

    fx_make(&f, 3, w);
    st = weir_lb_weighted_round_robin.init(&f.set);
    assert_non_null(st);
    pick_seq(&weir_lb_weighted_round_robin, st, &f, &ctx, seq, 21);
    assert_string_equal(seq, "aabacaaaabacaaaabacaa");
    weir_lb_weighted_round_robin.destroy(st);
    fx_free(&f);
}

static void test_wrr_1_3_exact(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    char seq[16];
    void *st;
    static const int w[] = {1, 3};

    fx_make(&f, 2, w);
    st = weir_lb_weighted_round_robin.init(&f.set);
    pick_seq(&weir_lb_weighted_round_robin, st, &f, &ctx, seq, 8);
    assert_string_equal(seq, "babbbabb");
    weir_lb_weighted_round_robin.destroy(st);

    st = weir_lb_weighted_round_robin.init(&f.set);
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 10000, counts);
    assert_int_equal(counts[0], 2500);
    assert_int_equal(counts[1], 7500);
    weir_lb_weighted_round_robin.destroy(st);
    fx_free(&f);
}

static void test_wrr_skips_unusable(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0}, ex = {0};
    long counts[MAXS];
    void *st;
    static const int w[] = {5, 1, 1};

    fx_make(&f, 3, w);
    st = weir_lb_weighted_round_robin.init(&f.set);
    set_state(f.s[2], WEIR_SRV_DOWN);
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 600, counts);
    assert_int_equal(counts[0], 500);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 0);
    set_state(f.s[2], WEIR_SRV_UP);
    ex.exclude = &f.s[0];
    ex.nexclude = 1;
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ex, 600, counts);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1], 300);
    assert_int_equal(counts[2], 300);
    /* Back to all three: exact 5:1:1 over whole periods again. */
    weir_lb_weighted_round_robin.destroy(st);
    st = weir_lb_weighted_round_robin.init(&f.set);
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 700, counts);
    assert_int_equal(counts[0], 500);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 100);
    weir_lb_weighted_round_robin.destroy(st);
    fx_free(&f);
}

/* round_robin honours slow start: a ramping server gets a share that grows
 * with its ramp, servers at full ramp keep the exact cycle. */
static void test_rr_slow_start(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    char seq[16];
    void *st;

    fx_make(&f, 2, NULL);
    st = weir_lb_round_robin.init(&f.set);
    atomic_store(&f.s[1]->ramp_permille, 0);
    pick_counts(&weir_lb_round_robin, st, &f, &ctx, 1000, counts);
    assert_int_equal(counts[1], 0);
    atomic_store(&f.s[1]->ramp_permille, 250);
    pick_counts(&weir_lb_round_robin, st, &f, &ctx, 1000, counts);
    assert_in_range(counts[1], 150, 300);
    long quarter = counts[1];
    atomic_store(&f.s[1]->ramp_permille, 500);
    pick_counts(&weir_lb_round_robin, st, &f, &ctx, 1000, counts);
    assert_in_range(counts[1], 250, 400);
    assert_true(counts[1] > quarter);
    atomic_store(&f.s[1]->ramp_permille, 1000);
    weir_lb_round_robin.destroy(st);
    st = weir_lb_round_robin.init(&f.set);
    pick_seq(&weir_lb_round_robin, st, &f, &ctx, seq, 6);
    assert_string_equal(seq, "ababab");
    /* only a ramping server usable: it is still returned */
    atomic_store(&f.s[1]->ramp_permille, 10);
    set_state(f.s[0], WEIR_SRV_DOWN);
    assert_ptr_equal(weir_lb_round_robin.pick(st, &f.set, &ctx), f.s[1]);
    weir_lb_round_robin.destroy(st);
    fx_free(&f);
}

static void test_wrr_slow_start(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    void *st;

    fx_make(&f, 2, NULL);
    st = weir_lb_weighted_round_robin.init(&f.set);
    atomic_store(&f.s[1]->ramp_permille, 250); /* b at a quarter of its weight */
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 1000, counts);
    assert_int_equal(counts[0], 800);
    assert_int_equal(counts[1], 200);
    atomic_store(&f.s[1]->ramp_permille, 0); /* just started: a tiny share, not none */
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 10000, counts);
    assert_true(counts[1] >= 1 && counts[1] <= 20);
    atomic_store(&f.s[1]->ramp_permille, 1000);
    weir_lb_weighted_round_robin.destroy(st);
    st = weir_lb_weighted_round_robin.init(&f.set);
    pick_counts(&weir_lb_weighted_round_robin, st, &f, &ctx, 1000, counts);
    assert_int_equal(counts[0], 500);
    assert_int_equal(counts[1], 500);
    weir_lb_weighted_round_robin.destroy(st);
    fx_free(&f);
}

/* ---- least_conn ---- */

static void test_lc_prefers_fewer_active(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    void *st;
    int i;

    fx_make(&f, 3, NULL);
    st = weir_lb_least_conn.init(&f.set);
    set_active(f.s[0], 3);
    set_active(f.s[1], 1);
    set_active(f.s[2], 2);
    for (i = 0; i < 10; i++)
        assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 1);
    set_state(f.s[1], WEIR_SRV_DOWN);
    for (i = 0; i < 10; i++)
        assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 2);
    /* The policy never changes active counts itself. */
    assert_int_equal(weir_server_active(f.s[0]), 3);
    assert_int_equal(weir_server_active(f.s[1]), 1);
    assert_int_equal(weir_server_active(f.s[2]), 2);
    weir_lb_least_conn.destroy(st);
    fx_free(&f);
}

static void test_lc_weight_aware(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    void *st;
    static const int w[] = {3, 1};

    fx_make(&f, 2, w);
    st = weir_lb_least_conn.init(&f.set);
    set_active(f.s[0], 2); /* 2/3 */
    set_active(f.s[1], 1); /* 1/1 */
    assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 0);
    assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 0);
    set_active(f.s[0], 4); /* 4/3 */
    assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 1);
    assert_int_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx), 1);
    set_active(f.s[0], 3); /* 3/3 == 1/1: a tie, taken in turn */
    assert_int_not_equal(pick_idx(&weir_lb_least_conn, st, &f, &ctx),
                         pick_idx(&weir_lb_least_conn, st, &f, &ctx));
    weir_lb_least_conn.destroy(st);
    fx_free(&f);
}

static void test_lc_tie_rotation(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    char seq[32];
    void *st;

    fx_make(&f, 3, NULL);
    st = weir_lb_least_conn.init(&f.set);
    pick_seq(&weir_lb_least_conn, st, &f, &ctx, seq, 9);
    assert_string_equal(seq, "abcabcabc");
    /* Ties among the least loaded only. */
    set_active(f.s[0], 1);
    pick_seq(&weir_lb_least_conn, st, &f, &ctx, seq, 6);
    assert_string_equal(seq, "bcbcbc");
    /* A down server does not make its neighbour take two turns. */
    set_active(f.s[0], 0);
    set_state(f.s[1], WEIR_SRV_DOWN);
    pick_seq(&weir_lb_least_conn, st, &f, &ctx, seq, 6);
    assert_string_equal(seq, "acacac");
    weir_lb_least_conn.destroy(st);
    fx_free(&f);
}

/*
 * Closed-loop simulation: `inflight` requests always in flight, each taking
 * the same time (FIFO completion); the simulated proxy counts active.
 * Returns server b's (index 1) share of `n` picks.
 */
static double sim_share_b(const struct weir_lb_ops *ops, struct fx *f, long n, int inflight)
{
    struct weir_lb_ctx ctx = {0};
    struct weir_server *q[64];
    long i, b = 0;
    int head = 0;
    void *st = ops->init(&f->set);

    assert_true(inflight <= 64);
    for (i = 0; i < inflight; i++) {
        q[i] = ops->pick(st, &f->set, &ctx);
        atomic_fetch_add(&q[i]->active, 1);
    }
    for (i = 0; i < n; i++) {
        struct weir_server *s;
        atomic_fetch_sub(&q[head]->active, 1);
        s = ops->pick(st, &f->set, &ctx);
        assert_non_null(s);
        atomic_fetch_add(&s->active, 1);
        q[head] = s;
        head = (head + 1) % inflight;
        b += s == f->s[1];
    }
    for (i = 0; i < inflight; i++)
        atomic_fetch_sub(&q[i]->active, 1);
    for (i = 0; i < (long)f->set.n; i++)
        assert_int_equal(weir_server_active(f->s[i]), 0);
    ops->destroy(st);
    return (double)b / (double)n;
}

static void test_lc_slow_start(void **unused)
{
    struct fx f;
    double share;

    fx_make(&f, 2, NULL);
    share = sim_share_b(&weir_lb_least_conn, &f, 20000, 30);
    assert_true(share > 0.45 && share < 0.55);
    atomic_store(&f.s[1]->ramp_permille, 200); /* b weighs 1/5 of a: ~1/6 of the load */
    share = sim_share_b(&weir_lb_least_conn, &f, 20000, 30);
    assert_true(share > 0.10 && share < 0.25);
    fx_free(&f);
}

static void test_lc_weights_under_load(void **unused)
{
    struct fx f;
    double share;
    static const int w[] = {3, 1};

    fx_make(&f, 2, w);
    share = sim_share_b(&weir_lb_least_conn, &f, 20000, 40);
    assert_true(share > 0.20 && share < 0.30);
    fx_free(&f);
}

/* Loads whose cross products overflow 64 bits still compare exactly. */
static void test_lc_p2c_large_values(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    void *st;
    static const int w[] = {2000000000, 1000000000};

    fx_make(&f, 2, w);
    set_active(f.s[0], 3000000000L); /* 1.5 per weight unit */
    set_active(f.s[1], 1000000001L); /* 1.000000001 */
    st = weir_lb_least_conn.init(&f.set);
    pick_counts(&weir_lb_least_conn, st, &f, &ctx, 10, counts);
    assert_int_equal(counts[1], 10);
    weir_lb_least_conn.destroy(st);
    st = weir_lb_random_two.init(&f.set);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 100, counts);
    assert_int_equal(counts[1], 100);
    weir_lb_random_two.destroy(st);
    set_active(f.s[1], 1600000000L); /* 1.6 */
    st = weir_lb_least_conn.init(&f.set);
    pick_counts(&weir_lb_least_conn, st, &f, &ctx, 10, counts);
    assert_int_equal(counts[0], 10);
    weir_lb_least_conn.destroy(st);
    fx_free(&f);
}

/* ---- random_two ---- */

static void test_p2c_never_more_loaded(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    void *st;

    fx_make(&f, 3, NULL);
    st = weir_lb_random_two.init(&f.set);
    assert_non_null(st);
    set_active(f.s[0], 0);
    set_active(f.s[1], 5);
    set_active(f.s[2], 10);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 30000, counts);
    /* c is the more loaded of every pair it is in; a wins both its pairs. */
    assert_int_equal(counts[2], 0);
    assert_true(counts[0] > 19000 && counts[0] < 21000); /* 2/3 */
    assert_true(counts[1] > 9000 && counts[1] < 11000);  /* 1/3 */

    /* Two servers: the less loaded one, every time. */
    set_state(f.s[0], WEIR_SRV_DOWN);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 1000, counts);
    assert_int_equal(counts[1], 1000);

    /* One usable server is returned. */
    set_state(f.s[1], WEIR_SRV_MAINT);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 100, counts);
    assert_int_equal(counts[2], 100);
    assert_int_equal(weir_server_active(f.s[2]), 10);
    weir_lb_random_two.destroy(st);
    fx_free(&f);
}

static void test_p2c_uniform(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    void *st;
    int i;

    fx_make(&f, 4, NULL);
    st = weir_lb_random_two.init(&f.set);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 40000, counts);
    for (i = 0; i < 4; i++)
        assert_true(counts[i] > 9400 && counts[i] < 10600);
    /* Same load everywhere, not zero. */
    for (i = 0; i < 4; i++)
        set_active(f.s[i], 7);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 40000, counts);
    for (i = 0; i < 4; i++)
        assert_true(counts[i] > 9400 && counts[i] < 10600);
    weir_lb_random_two.destroy(st);
    fx_free(&f);
}

static void test_p2c_loaded_gets_less(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS];
    void *st;
    int i;

    fx_make(&f, 5, NULL);
    st = weir_lb_random_two.init(&f.set);
    set_active(f.s[0], 100);
    for (i = 1; i < 5; i++)
        set_active(f.s[i], 2);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 50000, counts);
    assert_int_equal(counts[0], 0);
    for (i = 1; i < 5; i++)
        assert_true(counts[i] > 11500 && counts[i] < 13500);
    weir_lb_random_two.destroy(st);
    fx_free(&f);
}

static void test_p2c_weighted_and_slow_start(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0}, ex = {0};
    long counts[MAXS];
    double share;
    void *st;
    static const int w[] = {3, 1};

    /* Sampling proportional to weight: idle a:b = 3:1. */
    fx_make(&f, 2, w);
    st = weir_lb_random_two.init(&f.set);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 40000, counts);
    assert_true(counts[0] > 29200 && counts[0] < 30800);
    /* Loads compare per weight: 2/3 < 1/1. */
    set_active(f.s[0], 2);
    set_active(f.s[1], 1);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 1000, counts);
    assert_int_equal(counts[0], 1000);
    set_active(f.s[0], 0);
    set_active(f.s[1], 0);
    weir_lb_random_two.destroy(st);
    fx_free(&f);

    /* Slow start: b at 10% of its weight gets ~1/11 of idle picks and a small
     * share under load. */
    fx_make(&f, 3, NULL);
    st = weir_lb_random_two.init(&f.set);
    atomic_store(&f.s[1]->ramp_permille, 100);
    pick_counts(&weir_lb_random_two, st, &f, &ctx, 42000, counts);
    assert_true(counts[1] > 1000 && counts[1] < 3000); /* ~2000 */
    /* Excluded servers are never drawn. */
    ex.exclude = &f.s[0];
    ex.nexclude = 1;
    pick_counts(&weir_lb_random_two, st, &f, &ex, 1000, counts);
    assert_int_equal(counts[0], 0);
    assert_int_equal(counts[1] + counts[2], 1000);
    weir_lb_random_two.destroy(st);
    share = sim_share_b(&weir_lb_random_two, &f, 30000, 30);
    assert_true(share < 0.15);
    atomic_store(&f.s[1]->ramp_permille, 1000);
    share = sim_share_b(&weir_lb_random_two, &f, 30000, 30);
    assert_true(share > 0.28 && share < 0.39);
    fx_free(&f);
}

/* ---- hash ---- */

#define NKEYS 100000

/* Server index for each of NKEYS keys. */
static void hash_map(struct fx *f, const struct weir_lb_ctx *base, int *out)
{
    struct weir_lb_ctx ctx = *base;
    void *st = weir_lb_hash.init(&f->set);
    long k;

    assert_non_null(st);
    for (k = 0; k < NKEYS; k++) {
        ctx.hash = key_hash(k);
        out[k] = pick_idx(&weir_lb_hash, st, f, &ctx);
    }
    weir_lb_hash.destroy(st);
}

static int map_a[NKEYS], map_b[NKEYS];

static void test_hash_stable_and_even(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS] = {0};
    struct weir_server *rev[5];
    struct weir_server_set rset;
    void *st;
    long k;
    int i;

    fx_make(&f, 5, NULL);
    hash_map(&f, &ctx, map_a);
    /* Same key, same server: another worker state, and repeated picks. */
    hash_map(&f, &ctx, map_b);
    assert_memory_equal(map_a, map_b, sizeof(map_a));
    st = weir_lb_hash.init(&f.set);
    for (k = 0; k < 1000; k++) {
        ctx.hash = key_hash(k);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ctx), map_a[k]);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ctx), map_a[k]);
    }
    weir_lb_hash.destroy(st);
    /* Roughly even spread with 160 points per server. */
    for (k = 0; k < NKEYS; k++)
        counts[map_a[k]]++;
    for (i = 0; i < 5; i++)
        assert_true(counts[i] > NKEYS * 14 / 100 && counts[i] < NKEYS * 26 / 100);
    /* The mapping depends on addresses, not on the order of the set. */
    for (i = 0; i < 5; i++)
        rev[i] = f.s[4 - i];
    rset.v = rev;
    rset.n = 5;
    st = weir_lb_hash.init(&rset);
    for (k = 0; k < NKEYS; k += 7) {
        ctx.hash = key_hash(k);
        assert_ptr_equal(weir_lb_hash.pick(st, &rset, &ctx), f.s[map_a[k]]);
    }
    weir_lb_hash.destroy(st);
    fx_free(&f);
}

/* Server for each of NKEYS keys, picked over `set`. */
static void hash_map_set(const struct weir_server_set *set, struct weir_server **out)
{
    struct weir_lb_ctx ctx = {0};
    void *st = weir_lb_hash.init(set);
    long k;

    assert_non_null(st);
    for (k = 0; k < NKEYS; k++) {
        ctx.hash = key_hash(k);
        out[k] = weir_lb_hash.pick(st, set, &ctx);
        assert_non_null(out[k]);
    }
    weir_lb_hash.destroy(st);
}

static struct weir_server *pmap_a[NKEYS], *pmap_b[NKEYS];

static void test_hash_remap_add_remove(void **unused)
{
    struct fx f;
    struct weir_server *four[4];
    struct weir_server_set set4 = {four, 4};
    long k, moved = 0;
    double frac;

    /* Add a sixth server to five: ~1/6 of the keys move, all of them to it. */
    fx_make(&f, 6, NULL);
    f.set.n = 5;
    hash_map_set(&f.set, pmap_a);
    f.set.n = 6;
    hash_map_set(&f.set, pmap_b);
    for (k = 0; k < NKEYS; k++) {
        if (pmap_a[k] != pmap_b[k]) {
            moved++;
            assert_ptr_equal(pmap_b[k], f.s[5]);
        }
    }
    frac = (double)moved / NKEYS;
    assert_true(frac > 1.0 / 6 - 0.05 && frac < 1.0 / 6 + 0.05);

    /* Remove the middle one of five: ~1/5 move, all of them from it. */
    f.set.n = 5;
    hash_map_set(&f.set, pmap_a);
    four[0] = f.s[0];
    four[1] = f.s[1];
    four[2] = f.s[3];
    four[3] = f.s[4];
    hash_map_set(&set4, pmap_b);
    moved = 0;
    for (k = 0; k < NKEYS; k++) {
        if (pmap_a[k] != pmap_b[k]) {
            moved++;
            assert_ptr_equal(pmap_a[k], f.s[2]);
        }
    }
    frac = (double)moved / NKEYS;
    assert_true(frac > 1.0 / 5 - 0.05 && frac < 1.0 / 5 + 0.05);
    f.set.n = 6;
    fx_free(&f);
}

static void test_hash_down_and_back(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0}, ex = {0};
    void *st;
    long k, moved = 0;

    fx_make(&f, 5, NULL);
    hash_map(&f, &ctx, map_a);
    st = weir_lb_hash.init(&f.set);
    set_state(f.s[2], WEIR_SRV_DOWN);
    for (k = 0; k < NKEYS; k++) {
        int now;
        ctx.hash = key_hash(k);
        now = pick_idx(&weir_lb_hash, st, &f, &ctx);
        assert_int_not_equal(now, 2);
        if (map_a[k] != 2)
            assert_int_equal(now, map_a[k]); /* only c's keys move */
        else
            moved++;
        map_b[k] = now;
    }
    assert_true(moved > NKEYS / 10);
    /* Excluding c (a retry) sends its keys where "c down" sends them. */
    set_state(f.s[2], WEIR_SRV_UP);
    ex.exclude = &f.s[2];
    ex.nexclude = 1;
    for (k = 0; k < NKEYS; k += 3) {
        ex.hash = key_hash(k);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ex), map_b[k]);
    }
    /* c is back: exactly the original mapping. */
    for (k = 0; k < NKEYS; k++) {
        ctx.hash = key_hash(k);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ctx), map_a[k]);
    }
    weir_lb_hash.destroy(st);
    fx_free(&f);
}

static void test_hash_weights(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    long counts[MAXS] = {0}, k;
    void *st;
    static const int w[] = {3, 1};

    fx_make(&f, 2, w);
    hash_map(&f, &ctx, map_a);
    for (k = 0; k < NKEYS; k++)
        counts[map_a[k]]++;
    assert_true(counts[0] > NKEYS * 70 / 100 && counts[0] < NKEYS * 80 / 100);

    /* b goes to weight 3: the cached ring holds until server_changed, which
     * then moves keys only towards b, to about half. */
    st = weir_lb_hash.init(&f.set);
    atomic_store(&f.s[1]->weight, 3);
    for (k = 0; k < NKEYS; k += 11) {
        ctx.hash = key_hash(k);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ctx), map_a[k]);
    }
    weir_lb_hash.server_changed(st, &f.set);
    memset(counts, 0, sizeof(counts));
    for (k = 0; k < NKEYS; k++) {
        int now;
        ctx.hash = key_hash(k);
        now = pick_idx(&weir_lb_hash, st, &f, &ctx);
        if (now != map_a[k])
            assert_int_equal(now, 1);
        counts[now]++;
    }
    assert_true(counts[1] > NKEYS * 45 / 100 && counts[1] < NKEYS * 55 / 100);
    /* Back to weight 1: exactly the first mapping again. A state change
     * notified through server_changed moves nothing once the server is back. */
    atomic_store(&f.s[1]->weight, 1);
    weir_lb_hash.server_changed(st, &f.set);
    set_state(f.s[1], WEIR_SRV_DOWN);
    weir_lb_hash.server_changed(st, &f.set);
    set_state(f.s[1], WEIR_SRV_UP);
    weir_lb_hash.server_changed(st, &f.set);
    for (k = 0; k < NKEYS; k++) {
        ctx.hash = key_hash(k);
        assert_int_equal(pick_idx(&weir_lb_hash, st, &f, &ctx), map_a[k]);
    }
    weir_lb_hash.destroy(st);
    fx_free(&f);
}

/* ---- all policies ---- */

static void test_none_usable(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0}, ex = {0};
    struct weir_server_set empty = {NULL, 0};
    size_t i, j;
    int states[] = {WEIR_SRV_DOWN, WEIR_SRV_EJECTED, WEIR_SRV_DRAINING, WEIR_SRV_MAINT};

    fx_make(&f, 4, NULL);
    for (i = 0; i < 4; i++)
        set_state(f.s[i], states[i]);
    ex.exclude = f.s;
    ex.nexclude = 4;
    for (i = 0; i < WEIR_ARRAY_LEN(all_ops); i++) {
        const struct weir_lb_ops *ops = all_ops[i];
        void *st = ops->init(&f.set), *est = ops->init(&empty);

        assert_non_null(st);
        assert_non_null(est);
        for (j = 0; j < 10; j++) {
            ctx.hash = key_hash((long)j);
            assert_null(ops->pick(st, &f.set, &ctx));
            assert_null(ops->pick(est, &empty, &ctx));
        }
        /* All up but all excluded, also in panic mode. */
        for (j = 0; j < 4; j++)
            set_state(f.s[j], WEIR_SRV_UP);
        for (j = 0; j < 2; j++) {
            ex.ignore_health = (int)j;
            assert_null(ops->pick(st, &f.set, &ex));
        }
        for (j = 0; j < 4; j++)
            set_state(f.s[j], states[j]);
        if (ops->server_changed != NULL) {
            ops->server_changed(st, &f.set);
            ops->server_changed(est, &empty);
        }
        ops->destroy(st);
        ops->destroy(est);
    }
    fx_free(&f);
}

static void test_panic_mode(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    size_t i;
    long k;

    fx_make(&f, 5, NULL);
    set_state(f.s[0], WEIR_SRV_DOWN);
    set_state(f.s[1], WEIR_SRV_EJECTED);
    set_state(f.s[2], WEIR_SRV_DRAINING);
    set_state(f.s[3], WEIR_SRV_MAINT);
    set_state(f.s[4], WEIR_SRV_DOWN);
    for (i = 0; i < WEIR_ARRAY_LEN(all_ops); i++) {
        const struct weir_lb_ops *ops = all_ops[i];
        void *st = ops->init(&f.set);
        long counts[MAXS] = {0};

        ctx.ignore_health = 0;
        assert_null(ops->pick(st, &f.set, &ctx));
        ctx.ignore_health = 1;
        for (k = 0; k < 3000; k++) {
            ctx.hash = key_hash(k);
            counts[pick_idx(ops, st, &f, &ctx)]++;
        }
        assert_int_equal(counts[2], 0); /* DRAINING */
        assert_int_equal(counts[3], 0); /* MAINT */
        assert_true(counts[0] > 300);
        assert_true(counts[1] > 300);
        assert_true(counts[4] > 300);
        ops->destroy(st);
    }
    fx_free(&f);
}

static void test_active_untouched(void **unused)
{
    struct fx f;
    struct weir_lb_ctx ctx = {0};
    size_t i;
    long k;

    fx_make(&f, 3, NULL);
    set_active(f.s[0], 4);
    for (i = 0; i < WEIR_ARRAY_LEN(all_ops); i++) {
        const struct weir_lb_ops *ops = all_ops[i];
        void *st = ops->init(&f.set);
        for (k = 0; k < 100; k++) {
            struct weir_server *s;
            ctx.hash = key_hash(k);
            s = ops->pick(st, &f.set, &ctx);
            assert_non_null(s);
            if (ops->release != NULL)
                ops->release(st, s);
        }
        assert_int_equal(weir_server_active(f.s[0]), 4);
        assert_int_equal(weir_server_active(f.s[1]), 0);
        assert_int_equal(weir_server_active(f.s[2]), 0);
        ops->destroy(st);
    }
    fx_free(&f);
}

/* ---- carrying positions across snapshot rebuilds (lb.h carry) ---- */

/* A set made of servers of f picked by index (a new snapshot's order). */
static struct weir_server_set subset(struct fx *f, struct weir_server **v, const int *idx, size_t n)
{
    struct weir_server_set s = {v, n};
    for (size_t i = 0; i < n; i++)
        v[i] = f->s[idx[i]];
    return s;
}

static void test_carry_map_and_cursor(void **state)
{
    struct fx f;
    struct weir_server *v1[MAXS], *v2[MAXS];
    long map[MAXS];
    static const int a[] = {0, 1, 2, 3}, b[] = {3, 0, 2, 4};

    fx_make(&f, 5, NULL);
    struct weir_server_set from = subset(&f, v1, a, 4), to = subset(&f, v2, b, 4);
    assert_int_equal(weir_lb_map_servers(&from, &to, map), 0);
    assert_int_equal(map[0], 3);
    assert_int_equal(map[1], 0);
    assert_int_equal(map[2], 2);
    assert_int_equal(map[3], -1);
    /* cursor on s2 (kept) -> its new index; on s1 (removed) -> next kept (s2) */
    assert_int_equal(weir_lb_carry_cursor(&from, 2, &to, map), 2);
    assert_int_equal(weir_lb_carry_cursor(&from, 1, &to, map), 2);
    /* cursor on s3 -> new index 0; wraps: past the end -> s0 */
    assert_int_equal(weir_lb_carry_cursor(&from, 3, &to, map), 0);
    assert_int_equal(weir_lb_carry_cursor(&from, 4, &to, map), 1);
    fx_free(&f);
}

/* Round robin continues after a server is added, instead of restarting. */
static void test_rr_carry_on_add(void **state)
{
    const struct weir_lb_ops *ops = &weir_lb_round_robin;
    struct fx f;
    struct weir_server *v1[MAXS], *v2[MAXS];
    static const int a[] = {0, 1, 2}, b[] = {0, 1, 2, 3};

    fx_make(&f, 4, NULL);
    assert_non_null(ops->carry);
    struct weir_server_set s1 = subset(&f, v1, a, 3), s2 = subset(&f, v2, b, 4);
    void *old = ops->init(&s1);
    assert_ptr_equal(ops->pick(old, &s1, NULL), f.s[0]);
    assert_ptr_equal(ops->pick(old, &s1, NULL), f.s[1]);
    void *st = ops->init(&s2);
    ops->carry(st, &s2, old, &s1);
    assert_ptr_equal(ops->pick(st, &s2, NULL), f.s[2]);
    assert_ptr_equal(ops->pick(st, &s2, NULL), f.s[3]);
    assert_ptr_equal(ops->pick(st, &s2, NULL), f.s[0]);
    ops->destroy(old);
    ops->destroy(st);
    fx_free(&f);
}

/* Removing the server the cursor points at moves the cycle to the next one. */
static void test_rr_carry_on_remove(void **state)
{
    const struct weir_lb_ops *ops = &weir_lb_round_robin;
    struct fx f;
    struct weir_server *v1[MAXS], *v2[MAXS];
    static const int a[] = {0, 1, 2, 3}, b[] = {0, 1, 3};

    fx_make(&f, 4, NULL);
    struct weir_server_set s1 = subset(&f, v1, a, 4), s2 = subset(&f, v2, b, 3);
    void *old = ops->init(&s1);
    assert_ptr_equal(ops->pick(old, &s1, NULL), f.s[0]);
    assert_ptr_equal(ops->pick(old, &s1, NULL), f.s[1]);
    void *st = ops->init(&s2);
    ops->carry(st, &s2, old, &s1);
    assert_ptr_equal(ops->pick(st, &s2, NULL), f.s[3]);
    assert_ptr_equal(ops->pick(st, &s2, NULL), f.s[0]);
    ops->destroy(old);
    ops->destroy(st);
    fx_free(&f);
}

/* Smooth WRR keeps its accumulators: the sequence after a rebuild with the
 * same set is the one the old state would have produced. */
static void test_wrr_carry_same_set(void **state)
{
    const struct weir_lb_ops *ops = &weir_lb_weighted_round_robin;
    static const int w[] = {5, 1, 1};
    struct fx f;
    char seq_old[16] = "", seq_new[16] = "";

    fx_make(&f, 3, w);
    assert_non_null(ops->carry);
    void *ref = ops->init(&f.set), *old = ops->init(&f.set);
    for (int i = 0; i < 3; i++) {
        ops->pick(ref, &f.set, NULL);
        ops->pick(old, &f.set, NULL);
    }
    void *st = ops->init(&f.set);
    ops->carry(st, &f.set, old, &f.set);
    for (int i = 0; i < 7; i++) {
        seq_old[i] = (char)('a' + fx_index(&f, ops->pick(ref, &f.set, NULL)));
        seq_new[i] = (char)('a' + fx_index(&f, ops->pick(st, &f.set, NULL)));
    }
    assert_string_equal(seq_new, seq_old);
    ops->destroy(ref);
    ops->destroy(old);
    ops->destroy(st);
    fx_free(&f);
}

/* least_conn's tie rotation continues too. */
static void test_lc_carry(void **state)
{
    const struct weir_lb_ops *ops = &weir_lb_least_conn;
    struct fx f;

    fx_make(&f, 3, NULL);
    assert_non_null(ops->carry);
    void *old = ops->init(&f.set);
    assert_ptr_equal(ops->pick(old, &f.set, NULL), f.s[0]);
    void *st = ops->init(&f.set);
    ops->carry(st, &f.set, old, &f.set);
    assert_ptr_equal(ops->pick(st, &f.set, NULL), f.s[1]);
    ops->destroy(old);
    ops->destroy(st);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_usable),
        cmocka_unit_test(test_hash64),
        cmocka_unit_test(test_rr_sequence),
        cmocka_unit_test(test_rr_skips_down),
        cmocka_unit_test(test_rr_excluded),
        cmocka_unit_test(test_rr_slow_start),
        cmocka_unit_test(test_wrr_smooth_5_1_1),
        cmocka_unit_test(test_wrr_1_3_exact),
        cmocka_unit_test(test_wrr_skips_unusable),
        cmocka_unit_test(test_wrr_slow_start),
        cmocka_unit_test(test_lc_prefers_fewer_active),
        cmocka_unit_test(test_lc_weight_aware),
        cmocka_unit_test(test_lc_tie_rotation),
        cmocka_unit_test(test_lc_slow_start),
        cmocka_unit_test(test_lc_weights_under_load),
        cmocka_unit_test(test_lc_p2c_large_values),
        cmocka_unit_test(test_p2c_never_more_loaded),
        cmocka_unit_test(test_p2c_uniform),
        cmocka_unit_test(test_p2c_loaded_gets_less),
        cmocka_unit_test(test_p2c_weighted_and_slow_start),
        cmocka_unit_test(test_hash_stable_and_even),
        cmocka_unit_test(test_hash_remap_add_remove),
        cmocka_unit_test(test_hash_down_and_back),
        cmocka_unit_test(test_hash_weights),
        cmocka_unit_test(test_none_usable),
        cmocka_unit_test(test_panic_mode),
        cmocka_unit_test(test_active_untouched),
        cmocka_unit_test(test_carry_map_and_cursor),
        cmocka_unit_test(test_rr_carry_on_add),
        cmocka_unit_test(test_rr_carry_on_remove),
        cmocka_unit_test(test_wrr_carry_same_set),
        cmocka_unit_test(test_lc_carry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
