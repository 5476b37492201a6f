/*
 * test_histogram.c - histograms: bucket error bound, percentiles against exact
 * order statistics, merge, count_le, sliding windows with a fake clock,
 * windowed counters, and a writer/reader thread pair (also run under TSan).
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/histogram.h"

/* ---- helpers ---- */

/* splitmix64: fixed seeds give the same values on every run and platform. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* [0, 1) */
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static double rng_normal(uint64_t *s, double mean, double sd)
{
    double u1 = 1.0 - rng_unit(s), u2 = rng_unit(s);
    return mean + sd * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static uint64_t clamp_us(double v)
{
    if (v < 1)
        return 1;
    if (v > WEIR_HIST_MAX_US)
        return WEIR_HIST_MAX_US;
    return (uint64_t)llround(v);
}

static uint64_t absdiff(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

/* The documented bound: |r - v| < v / 64 (exact below 64). */
static int within_bound(uint64_t r, uint64_t v)
{
    return r == v || absdiff(r, v) * 64 < v;
}

static void assert_within(uint64_t r, uint64_t v)
{
    if (!within_bound(r, v))
        fail_msg("reported %llu for %llu: error above 1/64", (unsigned long long)r, (unsigned long long)v);
    /* and hence within the 2% of the requirement */
    assert_true(absdiff(r, v) * 50 <= v);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Same rank rule as weir_hist_percentile. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double q)
{
    double r;
    size_t rank;

    if (q <= 0)
        return sorted[0];
    if (q >= 100)
        return sorted[n - 1];
    r = ceil(q * (double)n / 100.0);
    rank = r < 1 ? 1 : r >= (double)n ? n : (size_t)r;
    return sorted[rank - 1];
}

/* Number of elements <= b in a sorted array. */
static uint64_t count_leq(const uint64_t *sorted, size_t n, uint64_t b)
{
    size_t lo = 0, hi = n, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (sorted[mid] <= b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Sum of all buckets (must always equal count for a private histogram). */
static uint64_t bucket_total(const struct weir_hist *h)
{
    uint64_t n = 0;
    unsigned i;

    for (i = 0; i < WEIR_HIST_NBUCKETS; i++)
        n += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    return n;
}

/* ---- bucket layout and error bound ---- */

static void test_layout(void **state)
{
    unsigned i;

    (void)state;
    assert_int_equal(weir_hist_bucket_of(0), 0);
    assert_int_equal(weir_hist_bucket_of(1), 1);
    assert_int_equal(weir_hist_bucket_of(63), 63);
    assert_int_equal(weir_hist_bucket_of(64), 64);
    assert_int_equal(weir_hist_bucket_of(65), 64);
    assert_int_equal(weir_hist_bucket_of(WEIR_HIST_MAX_US), WEIR_HIST_TOP);
    assert_int_equal(weir_hist_bucket_of(WEIR_HIST_MAX_US + 1ull), WEIR_HIST_OVERFLOW);
    assert_int_equal(weir_hist_bucket_of(UINT64_MAX), WEIR_HIST_OVERFLOW);
    assert_int_equal(weir_hist_bucket_value(WEIR_HIST_OVERFLOW), WEIR_HIST_MAX_US);
    assert_int_equal(weir_hist_bucket_value(0), 0);

    /* Buckets tile [0, MAX] without gaps: each starts one past the previous. */
    for (i = 1; i <= WEIR_HIST_OVERFLOW; i++) {
        uint64_t lo = weir_hist_bucket_low(i);
        assert_true(lo > weir_hist_bucket_low(i - 1));
        assert_int_equal(weir_hist_bucket_of(lo), i);
        assert_int_equal(weir_hist_bucket_of(lo - 1), i - 1);
    }

    /* Memory budget. */
    assert_true(sizeof(struct weir_hist) <= 6 * 1024);
    assert_true(sizeof(struct weir_whist) <= 42 * 1024);
    assert_true(sizeof(struct weir_wcounter) <= 1100);
    print_message("sizeof weir_hist=%zu weir_hist_slot=%zu weir_whist=%zu weir_wcounter=%zu\n",
                  sizeof(struct weir_hist), sizeof(struct weir_hist_slot), sizeof(struct weir_whist),
                  sizeof(struct weir_wcounter));
}

static void test_error_every_value_to_100ms(void **state)
{
    uint64_t v;

    (void)state;
    for (v = 0; v <= 100000; v++)
        assert_within(weir_hist_bucket_value(weir_hist_bucket_of(v)), v);
}

static void test_error_to_60s(void **state)
{
    uint64_t seed = 42, v, r;
    double worst = 0, e;
    unsigned i;
    int k;

    (void)state;
    /* Both ends of every bucket: the worst case of each bucket is at an end. */
    for (i = 1; i <= WEIR_HIST_TOP; i++) {
        uint64_t lo = weir_hist_bucket_low(i), hi = weir_hist_bucket_low(i + 1) - 1;
        r = weir_hist_bucket_value(i);
        assert_true(r >= lo && r <= hi);
        assert_within(r, lo);
        assert_within(r, hi);
        e = (double)absdiff(r, lo) / (double)lo;
        worst = e > worst ? e : worst;
        e = (double)absdiff(r, hi) / (double)hi;
        worst = e > worst ? e : worst;
    }
    assert_true(worst < 1.0 / 64);
    print_message("worst relative error over all buckets: %.6f%%\n", worst * 100);

    /* Log-uniform samples from 1 us to 60 s. */
    for (k = 0; k < 2000000; k++) {
        v = clamp_us(exp(rng_unit(&seed) * log((double)WEIR_HIST_MAX_US)));
        assert_within(weir_hist_bucket_value(weir_hist_bucket_of(v)), v);
    }
    /* Every 997th value up to 60 s. */
    for (v = 1; v <= WEIR_HIST_MAX_US; v += 997)
        assert_within(weir_hist_bucket_value(weir_hist_bucket_of(v)), v);
    assert_within(weir_hist_bucket_value(weir_hist_bucket_of(WEIR_HIST_MAX_US)), WEIR_HIST_MAX_US);
}

/* ---- percentiles ---- */

static const double quantiles[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};

static void check_distribution(const char *name, uint64_t *v, size_t n)
{
    struct weir_hist h;
    uint64_t sum = 0;
    size_t i;

    weir_hist_init(&h);
    for (i = 0; i < n; i++) {
        weir_hist_record(&h, v[i]);
        sum += v[i];
    }
    qsort(v, n, sizeof(*v), cmp_u64);
    assert_int_equal(weir_hist_count(&h), n);
    assert_int_equal(bucket_total(&h), n);
    assert_int_equal(weir_hist_sum(&h), sum);
    assert_int_equal(weir_hist_min(&h), v[0]);
    assert_int_equal(weir_hist_max(&h), v[n - 1]);
    for (i = 0; i < WEIR_ARRAY_LEN(quantiles); i++) {
        uint64_t est = weir_hist_percentile(&h, quantiles[i]);
        uint64_t ex = exact_percentile(v, n, quantiles[i]);
        if (!within_bound(est, ex))
            fail_msg("%s p%g: got %llu, exact %llu", name, quantiles[i], (unsigned long long)est,
                     (unsigned long long)ex);
    }
    assert_int_equal(weir_hist_percentile(&h, 0), v[0]);
    assert_int_equal(weir_hist_percentile(&h, 100), v[n - 1]);
}

#define NVALUES 200000

static void test_percentiles_log_uniform(void **state)
{
    uint64_t *v = malloc(NVALUES * sizeof(*v)), seed = 1;
    size_t i;

    (void)state;
    assert_non_null(v);
    for (i = 0; i < NVALUES; i++)
        v[i] = clamp_us(exp(rng_unit(&seed) * log((double)WEIR_HIST_MAX_US)));
    check_distribution("log-uniform", v, NVALUES);
    free(v);
}

static void test_percentiles_normal(void **state)
{
    uint64_t *v = malloc(NVALUES * sizeof(*v)), seed = 2;
    size_t i;

    (void)state;
    assert_non_null(v);
    for (i = 0; i < NVALUES; i++)
        v[i] = clamp_us(rng_normal(&seed, 20000, 3000));
    check_distribution("normal 20ms", v, NVALUES);
    free(v);
}

static void test_percentiles_bimodal(void **state)
{
    uint64_t *v = malloc(NVALUES * sizeof(*v)), seed = 3;
    size_t i;

    (void)state;
    assert_non_null(v);
    for (i = 0; i < NVALUES; i++) {
        if (rng_unit(&seed) < 0.7)
            v[i] = clamp_us(rng_normal(&seed, 20000, 2000));
        else
            v[i] = clamp_us(rng_normal(&seed, 80000, 5000));
    }
    check_distribution("bimodal 20ms/80ms", v, NVALUES);
    free(v);
}

static void test_percentiles_constant(void **state)
{
    static const uint64_t consts[] = {1, 63, 64, 999, 1000, 20000, 1234567, WEIR_HIST_MAX_US};
    uint64_t v[1000];
    struct weir_hist h;
    size_t i, j;

    (void)state;
    for (i = 0; i < WEIR_ARRAY_LEN(consts); i++) {
        for (j = 0; j < WEIR_ARRAY_LEN(v); j++)
            v[j] = consts[i];
        check_distribution("constant", v, WEIR_ARRAY_LEN(v));
        /* min/max clamping makes a constant distribution exact. */
        weir_hist_init(&h);
        for (j = 0; j < 1000; j++)
            weir_hist_record(&h, consts[i]);
        for (j = 0; j < WEIR_ARRAY_LEN(quantiles); j++)
            assert_int_equal(weir_hist_percentile(&h, quantiles[j]), consts[i]);
    }
}

static void test_empty_zero_overflow(void **state)
{
    struct weir_hist h;

    (void)state;
    weir_hist_init(&h);
    assert_int_equal(weir_hist_count(&h), 0);
    assert_int_equal(weir_hist_min(&h), 0);
    assert_int_equal(weir_hist_max(&h), 0);
    assert_int_equal(weir_hist_percentile(&h, 50), 0);
    assert_int_equal(weir_hist_percentile(&h, 100), 0);
    assert_int_equal(weir_hist_count_le(&h, UINT64_MAX), 0);

    weir_hist_record(&h, 0);
    assert_int_equal(weir_hist_min(&h), 0);
    assert_int_equal(weir_hist_percentile(&h, 50), 0);
    assert_int_equal(atomic_load(&h.counts[0]), 1);

    /* 0, 1 ms, 120 s, 500 s */
    weir_hist_record(&h, 1000);
    weir_hist_record(&h, 120000000);
    weir_hist_record(&h, 500000000);
    assert_int_equal(weir_hist_count(&h), 4);
    assert_int_equal(weir_hist_sum(&h), 620001000ull);
    assert_int_equal(weir_hist_max(&h), 500000000);
    assert_int_equal(atomic_load(&h.counts[WEIR_HIST_OVERFLOW]), 2);
    assert_int_equal(weir_hist_percentile(&h, 50), weir_hist_bucket_value(weir_hist_bucket_of(1000)));
    assert_true(within_bound(weir_hist_percentile(&h, 50), 1000));
    assert_int_equal(weir_hist_percentile(&h, 75), WEIR_HIST_MAX_US); /* overflow reports 60 s */
    assert_int_equal(weir_hist_percentile(&h, 100), 500000000);       /* true max */
    /* Values above 60 s are not "<= 60 s", nor <= 200 s (unresolved), but <= max. */
    assert_int_equal(weir_hist_count_le(&h, WEIR_HIST_MAX_US), 2);
    assert_int_equal(weir_hist_count_le(&h, 200000000), 2);
    assert_int_equal(weir_hist_count_le(&h, 500000000), 4);
    assert_int_equal(weir_hist_count_le(&h, UINT64_MAX), 4);

    /* Only overflow values: min/max clamping still reports the truth. */
    weir_hist_init(&h);
    weir_hist_record(&h, 90000000);
    weir_hist_record(&h, 90000000);
    assert_int_equal(weir_hist_percentile(&h, 50), 90000000);

    /* q out of range is clamped. */
    assert_int_equal(weir_hist_percentile(&h, -5), 90000000);
    assert_int_equal(weir_hist_percentile(&h, 1e9), 90000000);
}

/* ---- merge and count_le ---- */

static void assert_hist_equal(const struct weir_hist *a, const struct weir_hist *b)
{
    unsigned i;

    assert_int_equal(weir_hist_count(a), weir_hist_count(b));
    assert_int_equal(weir_hist_sum(a), weir_hist_sum(b));
    assert_int_equal(weir_hist_min(a), weir_hist_min(b));
    assert_int_equal(weir_hist_max(a), weir_hist_max(b));
    for (i = 0; i < WEIR_HIST_NBUCKETS; i++)
        assert_int_equal(atomic_load(&a->counts[i]), atomic_load(&b->counts[i]));
}

static void test_merge(void **state)
{
    struct weir_hist *parts = malloc(4 * sizeof(*parts)), one, merged;
    uint64_t seed = 7, v;
    unsigned i;
    int k;

    (void)state;
    assert_non_null(parts);
    weir_hist_init(&one);
    weir_hist_init(&merged);
    for (i = 0; i < 4; i++)
        weir_hist_init(&parts[i]);
    /* parts[3] stays empty: merging an empty histogram changes nothing. */
    for (k = 0; k < 300000; k++) {
        v = rng_unit(&seed) < 0.001 ? 70000000 + rng_next(&seed) % 1000000
                                    : clamp_us(exp(rng_unit(&seed) * log(1e7)));
        weir_hist_record(&one, v);
        weir_hist_record(&parts[k % 3], v);
    }
    for (i = 0; i < 4; i++)
        weir_hist_merge(&merged, &parts[i]);
    assert_hist_equal(&merged, &one);
    for (i = 0; i < WEIR_ARRAY_LEN(quantiles); i++)
        assert_int_equal(weir_hist_percentile(&merged, quantiles[i]),
                         weir_hist_percentile(&one, quantiles[i]));

    /* Merging into an empty histogram copies. */
    weir_hist_init(&merged);
    weir_hist_merge(&merged, &one);
    assert_hist_equal(&merged, &one);
    free(parts);
}

static void test_count_le(void **state)
{
    /* Prometheus-style bounds, in us. */
    static const uint64_t bounds[] = {1000,   2500,    5000,    10000,   25000,    50000,    100000,  250000,
                                      500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000};
    uint64_t *v = malloc(NVALUES * sizeof(*v)), seed = 11, prev = 0, b, c, exact_le, exact_le_hi;
    struct weir_hist h;
    size_t i;

    (void)state;
    assert_non_null(v);
    weir_hist_init(&h);
    for (i = 0; i < NVALUES; i++) {
        v[i] = clamp_us(exp(rng_unit(&seed) * log((double)WEIR_HIST_MAX_US)));
        weir_hist_record(&h, v[i]);
    }
    qsort(v, NVALUES, sizeof(*v), cmp_u64);

    /* Monotone, and bracketed by the exact counts: every value <= b is
     * counted, nothing above b * (1 + 1/32) is. */
    for (b = 0; b < 70000000; b = b < 100 ? b + 1 : b + b / 97) {
        c = weir_hist_count_le(&h, b);
        assert_true(c >= prev);
        prev = c;
        exact_le = count_leq(v, NVALUES, b);
        exact_le_hi = count_leq(v, NVALUES, b + b / 32);
        assert_true(c >= exact_le);
        assert_true(c <= exact_le_hi);
        if (b < 64)
            assert_int_equal(c, exact_le);
    }
    for (i = 1; i < WEIR_ARRAY_LEN(bounds); i++)
        assert_true(weir_hist_count_le(&h, bounds[i]) >= weir_hist_count_le(&h, bounds[i - 1]));
    assert_int_equal(weir_hist_count_le(&h, 60000000), NVALUES);
    assert_int_equal(weir_hist_count_le(&h, UINT64_MAX), NVALUES);
    free(v);
}

/* ---- windows ---- */

#define PER_SECOND 10

/* Value recorded at second t: identifies the second. */
static uint64_t value_at(uint64_t t)
{
    return 1000 + t;
}

/* Check a window read against the records made at seconds [first, last]. */
static void check_window(const struct weir_whist *w, uint64_t now, int window, uint64_t first, uint64_t last,
                         int any)
{
    struct weir_hist out;
    uint64_t t, sum = 0, n = 0;

    weir_hist_init(&out);
    assert_int_equal(weir_whist_read(w, now, window, &out), WEIR_OK);
    if (!any) {
        assert_int_equal(weir_hist_count(&out), 0);
        assert_int_equal(bucket_total(&out), 0);
        return;
    }
    for (t = first; t <= last; t++) {
        n += PER_SECOND;
        sum += PER_SECOND * value_at(t);
    }
    assert_int_equal(weir_hist_count(&out), n);
    assert_int_equal(bucket_total(&out), n);
    assert_int_equal(weir_hist_sum(&out), sum);
    assert_int_equal(weir_hist_min(&out), value_at(first));
    assert_int_equal(weir_hist_max(&out), value_at(last));
}

static void test_windows(void **state)
{
    struct weir_whist *w = malloc(sizeof(*w));
    struct weir_hist out;
    uint64_t now, c;
    int k;

    (void)state;
    assert_non_null(w);
    weir_whist_init(w);
    check_window(w, 0, WEIR_WIN_10S, 0, 0, 0);
    check_window(w, 0, WEIR_WIN_ALL, 0, 0, 0);

    for (now = 0; now <= 200; now++) {
        for (k = 0; k < PER_SECOND; k++)
            weir_whist_record(w, now, value_at(now));
        c = now - now % 5;
        /* 10 s: current period + 2 previous = seconds [c - 10, now]. */
        check_window(w, now, WEIR_WIN_10S, c >= 10 ? c - 10 : 0, now, 1);
        /* 60 s: seconds [c - 60, now]. */
        check_window(w, now, WEIR_WIN_60S, c >= 60 ? c - 60 : 0, now, 1);
        check_window(w, now, WEIR_WIN_ALL, 0, now, 1);
    }
    /* Exact statements at now = 200. */
    check_window(w, 200, WEIR_WIN_10S, 190, 200, 1);
    check_window(w, 200, WEIR_WIN_60S, 140, 200, 1);

    /* Idle: the windows slide and empty by themselves; the all-time stays. */
    check_window(w, 204, WEIR_WIN_10S, 190, 200, 1); /* same period as 200 */
    check_window(w, 205, WEIR_WIN_10S, 195, 200, 1);
    check_window(w, 214, WEIR_WIN_10S, 200, 200, 1);
    check_window(w, 215, WEIR_WIN_10S, 0, 0, 0);
    check_window(w, 215, WEIR_WIN_60S, 155, 200, 1);
    check_window(w, 264, WEIR_WIN_60S, 200, 200, 1);
    check_window(w, 265, WEIR_WIN_60S, 0, 0, 0);
    check_window(w, 1000, WEIR_WIN_60S, 0, 0, 0);
    check_window(w, 1000, WEIR_WIN_ALL, 0, 200, 1);

    /* Resume after the gap: recycled slots hold only new data. */
    for (now = 1000; now <= 1012; now++)
        for (k = 0; k < PER_SECOND; k++)
            weir_whist_record(w, now, value_at(now));
    check_window(w, 1012, WEIR_WIN_10S, 1000, 1012, 1);
    check_window(w, 1012, WEIR_WIN_60S, 1000, 1012, 1);

    /* A reader whose clock is behind the writer's skips future periods. */
    check_window(w, 1007, WEIR_WIN_10S, 1000, 1009, 1);
    check_window(w, 1004, WEIR_WIN_60S, 1000, 1004, 1);

    /* Reads add into out; an unknown window leaves out unchanged. */
    weir_hist_init(&out);
    assert_int_equal(weir_whist_read(w, 1012, WEIR_WIN_10S, &out), WEIR_OK);
    assert_int_equal(weir_whist_read(w, 1012, WEIR_WIN_10S, &out), WEIR_OK);
    assert_int_equal(weir_hist_count(&out), 2 * 13 * PER_SECOND);
    assert_int_equal(weir_whist_read(w, 1012, 42, &out), WEIR_ERROR);
    assert_int_equal(weir_hist_count(&out), 2 * 13 * PER_SECOND);
    assert_true(within_bound(weir_hist_percentile(&out, 50), value_at(1006)));
    free(w);
}

/* ---- windowed counter ---- */

static void test_wcounter(void **state)
{
    struct weir_wcounter wc;
    uint64_t now, t, exp10, exp60, total = 0;

    (void)state;
    weir_wcounter_init(&wc);
    assert_int_equal(weir_wcounter_sum(&wc, 0, 1), 0);
    assert_int_equal(weir_wcounter_sum(&wc, 100, 60), 0);

    /* n = t + 1 added at second t, in two parts. */
    for (now = 0; now <= 200; now++) {
        weir_wcounter_add(&wc, now, 1);
        weir_wcounter_add(&wc, now, now);
        total += now + 1;
        /* The current, partial second is not included. */
        assert_int_equal(weir_wcounter_sum(&wc, now, 1), now);
        for (exp10 = 0, t = now >= 10 ? now - 10 : 0; t < now; t++)
            exp10 += t + 1;
        for (exp60 = 0, t = now >= 60 ? now - 60 : 0; t < now; t++)
            exp60 += t + 1;
        assert_int_equal(weir_wcounter_sum(&wc, now, 10), exp10);
        assert_int_equal(weir_wcounter_sum(&wc, now, 60), exp60);
        assert_int_equal(weir_wcounter_sum(&wc, now, 600), exp60); /* clamped to 60 */
        assert_int_equal(weir_wcounter_sum(&wc, now, 0), 0);
        assert_int_equal(weir_wcounter_total(&wc), total);
    }
    /* Once second 200 is complete it counts. */
    assert_int_equal(weir_wcounter_sum(&wc, 201, 1), 201);
    /* Idle gap empties the windows. */
    assert_int_equal(weir_wcounter_sum(&wc, 211, 10), 0);
    assert_int_equal(weir_wcounter_sum(&wc, 210, 10), 201);
    assert_int_equal(weir_wcounter_sum(&wc, 261, 60), 0);
    assert_int_equal(weir_wcounter_sum(&wc, 260, 60), 201);
    /* Resume much later: recycled slots hold only new data. */
    weir_wcounter_add(&wc, 1000, 5);
    weir_wcounter_add(&wc, 1001, 7);
    assert_int_equal(weir_wcounter_sum(&wc, 1002, 60), 12);
    assert_int_equal(weir_wcounter_sum(&wc, 1002, 1), 7);
    assert_int_equal(weir_wcounter_total(&wc), total + 12);
}

/* ---- one writer, one concurrent reader ---- */

#define NRECORDS   1000000u
#define PER_SEC_MT 5000u /* fake clock: 200 s over the run, ~40 slot recycles */

struct mt {
    struct weir_hist h;
    struct weir_whist w;
    struct weir_wcounter c;
    _Atomic uint64_t clock; /* writer's fake second, published for the reader */
    _Atomic int done;
    uint64_t sum;         /* written by the writer, read after join */
    unsigned long reads;  /* reader's passes, read after join */
    unsigned long errors; /* reader's failed checks (cmocka asserts are not thread-safe) */
    int first_error_line;
};

#define CHECK(m, cond)                                                                                       \
    do {                                                                                                     \
        if (!(cond) && (m)->errors++ == 0)                                                                   \
            (m)->first_error_line = __LINE__;                                                                \
    } while (0)

static uint64_t mt_value(uint64_t i)
{
    /* Encodes the second in the value so a window's min/max reveal stale data. */
    return 100000 * (i / PER_SEC_MT) + (i % 997);
}

static void *mt_writer(void *arg)
{
    struct mt *m = arg;
    uint64_t i, now, v;

    for (i = 0; i < NRECORDS; i++) {
        now = i / PER_SEC_MT;
        if (i % PER_SEC_MT == 0)
            atomic_store_explicit(&m->clock, now, memory_order_relaxed);
        v = mt_value(i);
        weir_hist_record(&m->h, v);
        weir_whist_record(&m->w, now, v);
        weir_wcounter_add(&m->c, now, 1);
        m->sum += v;
    }
    atomic_store_explicit(&m->done, 1, memory_order_release);
    return NULL;
}

static void *mt_reader(void *arg)
{
    struct mt *m = arg;
    struct weir_hist out;
    uint64_t prev_all = 0, n, now, c, lo;

    while (!atomic_load_explicit(&m->done, memory_order_acquire)) {
        now = atomic_load_explicit(&m->clock, memory_order_relaxed);
        c = now - now % WEIR_WHIST_SLOT_S;

        weir_hist_init(&out);
        weir_hist_merge(&out, &m->h);
        n = weir_hist_count(&out);
        CHECK(m, n == bucket_total(&out));
        CHECK(m, n >= prev_all && n <= NRECORDS);
        prev_all = n;
        (void)weir_hist_percentile(&out, 99);

        /* A window never holds data from outside its periods (no stale slot). */
        weir_hist_init(&out);
        CHECK(m, weir_whist_read(&m->w, now, WEIR_WIN_10S, &out) == WEIR_OK);
        n = weir_hist_count(&out);
        CHECK(m, n == bucket_total(&out));
        CHECK(m, n <= 15 * PER_SEC_MT);
        lo = c >= 10 ? c - 10 : 0;
        if (n > 0) {
            CHECK(m, weir_hist_min(&out) >= 100000 * lo);
            CHECK(m, weir_hist_max(&out) < 100000 * (c + WEIR_WHIST_SLOT_S));
        }

        weir_hist_init(&out);
        CHECK(m, weir_whist_read(&m->w, now, WEIR_WIN_60S, &out) == WEIR_OK);
        n = weir_hist_count(&out);
        CHECK(m, n <= 65 * PER_SEC_MT);
        lo = c >= 60 ? c - 60 : 0;
        if (n > 0) {
            CHECK(m, weir_hist_min(&out) >= 100000 * lo);
            CHECK(m, weir_hist_max(&out) < 100000 * (c + WEIR_WHIST_SLOT_S));
        }

        CHECK(m, weir_wcounter_sum(&m->c, now, 1) <= PER_SEC_MT);
        CHECK(m, weir_wcounter_sum(&m->c, now, 10) <= 10 * PER_SEC_MT);
        m->reads++;
    }
    return NULL;
}

static void test_two_threads(void **state)
{
    struct mt *m = malloc(sizeof(*m));
    struct weir_hist out;
    pthread_t wt, rt;
    uint64_t last = (NRECORDS - 1) / PER_SEC_MT;

    (void)state;
    assert_non_null(m);
    weir_hist_init(&m->h);
    weir_whist_init(&m->w);
    weir_wcounter_init(&m->c);
    atomic_init(&m->clock, 0);
    atomic_init(&m->done, 0);
    m->sum = 0;
    m->reads = 0;
    m->errors = 0;
    m->first_error_line = 0;

    assert_int_equal(pthread_create(&rt, NULL, mt_reader, m), 0);
    assert_int_equal(pthread_create(&wt, NULL, mt_writer, m), 0);
    assert_int_equal(pthread_join(wt, NULL), 0);
    assert_int_equal(pthread_join(rt, NULL), 0);
    print_message("reader merged %lu times during 1M records\n", m->reads);
    if (m->errors != 0)
        fail_msg("reader: %lu failed checks, first at line %d", m->errors, m->first_error_line);

    weir_hist_init(&out);
    weir_hist_merge(&out, &m->h);
    assert_int_equal(weir_hist_count(&out), NRECORDS);
    assert_int_equal(bucket_total(&out), NRECORDS);
    assert_int_equal(weir_hist_sum(&out), m->sum);

    weir_hist_init(&out);
    assert_int_equal(weir_whist_read(&m->w, last, WEIR_WIN_ALL, &out), WEIR_OK);
    assert_int_equal(weir_hist_count(&out), NRECORDS);
    assert_int_equal(weir_hist_sum(&out), m->sum);

    /* last = 199: 10 s window = seconds [185, 199]. */
    weir_hist_init(&out);
    assert_int_equal(weir_whist_read(&m->w, last, WEIR_WIN_10S, &out), WEIR_OK);
    assert_int_equal(weir_hist_count(&out), 15 * PER_SEC_MT);
    weir_hist_init(&out);
    assert_int_equal(weir_whist_read(&m->w, last, WEIR_WIN_60S, &out), WEIR_OK);
    assert_int_equal(weir_hist_count(&out), 65 * PER_SEC_MT);

    assert_int_equal(weir_wcounter_total(&m->c), NRECORDS);
    assert_int_equal(weir_wcounter_sum(&m->c, last + 1, 60), 60 * PER_SEC_MT);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_error_every_value_to_100ms),
        cmocka_unit_test(test_error_to_60s),
        cmocka_unit_test(test_percentiles_log_uniform),
        cmocka_unit_test(test_percentiles_normal),
        cmocka_unit_test(test_percentiles_bimodal),
        cmocka_unit_test(test_percentiles_constant),
        cmocka_unit_test(test_empty_zero_overflow),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_count_le),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_wcounter),
        cmocka_unit_test(test_two_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
