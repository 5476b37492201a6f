/*
 * histogram.c - log-linear latency histograms, windowed histograms and
 * windowed counters, recorded by one writer thread without locks.
 *
 * Single-writer discipline: a field is only ever stored by its owner thread,
 * so an increment is a relaxed load followed by a relaxed store (plain
 * load/add/store on x86-64 and arm64: no lock prefix, no LL/SC loop).
 * Readers use relaxed loads.
 *
 * Slot recycling is a sequence lock whose sequence is the slot's epoch:
 *
 *   writer: epoch = NONE (relaxed); fence(release); clear fields (relaxed);
 *           epoch = new (release); ...later records (relaxed)...
 *   reader: e1 = epoch (acquire); copy fields (relaxed); fence(acquire);
 *           e2 = epoch (relaxed); use the copy only if e1 == e2 == wanted.
 *
 * If the reader copied any value stored after the writer's release fence, its
 * acquire fence synchronises with that fence and e2 sees NONE or a later
 * epoch, so the copy is discarded; if e1 saw the new epoch, the acquire load
 * synchronises with the release store and the copy sees the cleared fields.
 * A discarded slot is not retried: its epoch has changed, so it no longer
 * holds the period the reader asked for.
 */
#include "config.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>

#include "weir/core.h"
#include "weir/histogram.h"

/* GCC >= 11 warns that ThreadSanitizer does not model atomic_thread_fence.
 * The fences below only order accesses to _Atomic fields, which TSan never
 * reports as races, so an unmodelled fence can neither hide nor cause a report
 * here; the ordering they give is for the real memory model (see above). */
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#define SUB      (1u << WEIR_HIST_SUB_BITS) /* linear sub-buckets per power of two */
#define EXACT_LT (2u * SUB)                 /* values below this have their own bucket */

/* WEIR_HIST_MAX_US lies in [2^25, 2^26): its bucket is (25 - SUB_BITS) << SUB_BITS plus its top bits. */
_Static_assert((WEIR_HIST_MAX_US >> 25) == 1, "WEIR_HIST_MAX_US must lie in [2^25, 2^26)");
_Static_assert(((25u - WEIR_HIST_SUB_BITS) << WEIR_HIST_SUB_BITS) +
                       (WEIR_HIST_MAX_US >> (25u - WEIR_HIST_SUB_BITS)) ==
                   WEIR_HIST_TOP,
               "WEIR_HIST_TOP must be the bucket of WEIR_HIST_MAX_US");
_Static_assert(60 / WEIR_WHIST_SLOT_S + 1 <= WEIR_WHIST_NSLOTS, "ring too short for the 60 s window");
_Static_assert((WEIR_WCOUNTER_NSLOTS & (WEIR_WCOUNTER_NSLOTS - 1)) == 0, "NSLOTS must be a power of two");
_Static_assert(WEIR_WCOUNTER_NSLOTS > WEIR_WCOUNTER_MAX_SECONDS + 1, "wcounter ring too short");

#define LD(p)    atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)
/* Increment by the single writer: no read-modify-write instruction. */
#define ADD(p, v) ST((p), LD(p) + (v))

/* ---- bucket layout ---- */

static inline unsigned bucket_of(uint64_t v)
{
    unsigned shift;

    if (v > WEIR_HIST_MAX_US)
        return WEIR_HIST_OVERFLOW;
    if (v < EXACT_LT)
        return (unsigned)v;
    /* v in [2^k, 2^(k+1)), k >= SUB_BITS + 1: keep its top SUB_BITS + 1 bits. */
    shift = (unsigned)(63 - __builtin_clzll(v)) - WEIR_HIST_SUB_BITS;
    return (shift << WEIR_HIST_SUB_BITS) + (unsigned)(v >> shift);
}

unsigned weir_hist_bucket_of(uint64_t us)
{
    return bucket_of(us);
}

uint64_t weir_hist_bucket_low(unsigned bucket)
{
    unsigned shift;

    if (bucket >= WEIR_HIST_OVERFLOW)
        return (uint64_t)WEIR_HIST_MAX_US + 1;
    if (bucket < EXACT_LT)
        return bucket;
    shift = (bucket >> WEIR_HIST_SUB_BITS) - 1;
    return (uint64_t)((bucket & (SUB - 1)) | SUB) << shift;
}

uint64_t weir_hist_bucket_value(unsigned bucket)
{
    uint64_t lo, hi;

    if (bucket >= WEIR_HIST_OVERFLOW)
        return WEIR_HIST_MAX_US;
    if (bucket < EXACT_LT)
        return bucket;
    lo = weir_hist_bucket_low(bucket);
    hi = lo + ((uint64_t)1 << ((bucket >> WEIR_HIST_SUB_BITS) - 1)) - 1;
    if (hi > WEIR_HIST_MAX_US)
        hi = WEIR_HIST_MAX_US;
    return lo + (hi - lo) / 2;
}

/* ---- plain histogram ---- */

void weir_hist_init(struct weir_hist *h)
{
    unsigned i;

    atomic_init(&h->count, 0);
    atomic_init(&h->sum, 0);
    atomic_init(&h->min, UINT64_MAX);
    atomic_init(&h->max, 0);
    for (i = 0; i < WEIR_HIST_NBUCKETS; i++)
        atomic_init(&h->counts[i], 0);
}

static inline void hist_record_at(struct weir_hist *h, unsigned bucket, uint64_t us)
{
    ADD(&h->counts[bucket], 1);
    ADD(&h->count, 1);
    ADD(&h->sum, us);
    if (us < LD(&h->min))
        ST(&h->min, us);
    if (us > LD(&h->max))
        ST(&h->max, us);
}

void weir_hist_record(struct weir_hist *h, uint64_t us)
{
    hist_record_at(h, bucket_of(us), us);
}

/* Fold a copied summary into a private dst. */
static void hist_add_summary(struct weir_hist *dst, uint64_t n, uint64_t sum, uint64_t mn, uint64_t mx)
{
    if (n == 0)
        return;
    ST(&dst->count, LD(&dst->count) + n);
    ST(&dst->sum, LD(&dst->sum) + sum);
    if (mn < LD(&dst->min))
        ST(&dst->min, mn);
    if (mx > LD(&dst->max))
        ST(&dst->max, mx);
}

void weir_hist_merge(struct weir_hist *dst, const struct weir_hist *src)
{
    uint64_t mn = LD(&src->min), mx = LD(&src->max), n = 0, c;
    unsigned i, last;

    if (mn > mx) /* empty (or its first record in flight) */
        return;
    /* Only buckets between those of min and max can be non-zero. */
    last = bucket_of(mx);
    for (i = bucket_of(mn); i <= last; i++) {
        c = LD(&src->counts[i]);
        if (c != 0) {
            ST(&dst->counts[i], LD(&dst->counts[i]) + c);
            n += c;
        }
    }
    hist_add_summary(dst, n, LD(&src->sum), mn, mx);
}

uint64_t weir_hist_count(const struct weir_hist *h)
{
    return LD(&h->count);
}

uint64_t weir_hist_sum(const struct weir_hist *h)
{
    return LD(&h->sum);
}

uint64_t weir_hist_min(const struct weir_hist *h)
{
    uint64_t mn = LD(&h->min);
    return mn == UINT64_MAX ? 0 : mn;
}

uint64_t weir_hist_max(const struct weir_hist *h)
{
    return LD(&h->max);
}

uint64_t weir_hist_percentile(const struct weir_hist *h, double q)
{
    uint64_t mn = LD(&h->min), mx = LD(&h->max), n = 0, cum = 0, rank, v;
    double r;
    unsigned i;

    for (i = 0; i < WEIR_HIST_NBUCKETS; i++)
        n += LD(&h->counts[i]);
    if (n == 0 || mn > mx)
        return 0;
    if (!(q > 0)) /* also NaN */
        return mn;
    if (q >= 100)
        return mx;
    r = ceil(q * (double)n / 100.0);
    rank = r < 1 ? 1 : r >= (double)n ? n : (uint64_t)r;
    for (i = 0; i < WEIR_HIST_NBUCKETS; i++) {
        cum += LD(&h->counts[i]);
        if (cum >= rank)
            break;
    }
    if (i == WEIR_HIST_NBUCKETS) /* counts changed under us (live histogram) */
        return mx;
    /* The rank-th value lies in [min, max]: clamping never moves away from it. */
    v = weir_hist_bucket_value(i);
    return v < mn ? mn : v > mx ? mx : v;
}

uint64_t weir_hist_count_le(const struct weir_hist *h, uint64_t bound_us)
{
    unsigned i, last = bound_us > WEIR_HIST_MAX_US ? WEIR_HIST_TOP : bucket_of(bound_us);
    uint64_t n = 0;

    for (i = 0; i <= last; i++)
        n += LD(&h->counts[i]);
    if (bound_us >= LD(&h->max))
        n += LD(&h->counts[WEIR_HIST_OVERFLOW]);
    return n;
}

/* ---- windowed histogram ---- */

/* Writer only: make slot s hold the (empty) period starting at `epoch`. */
static void slot_recycle(struct weir_hist_slot *s, uint64_t epoch)
{
    uint64_t mn = LD(&s->min), mx = LD(&s->max);
    unsigned i, last;

    ST(&s->epoch, WEIR_EPOCH_NONE);
    atomic_thread_fence(memory_order_release);
    if (mn <= mx) {
        /* The writer's own min/max are exact: only this bucket range is dirty. */
        last = bucket_of(mx);
        for (i = bucket_of(mn); i <= last; i++)
            ST(&s->counts[i], 0);
        ST(&s->sum, 0);
        ST(&s->min, UINT64_MAX);
        ST(&s->max, 0);
    }
    atomic_store_explicit(&s->epoch, epoch, memory_order_release);
}

/* Reader: merge slot s into private dst if it holds the period `epoch`. */
static void slot_merge(struct weir_hist *dst, const struct weir_hist_slot *s, uint64_t epoch)
{
    uint32_t tmp[WEIR_HIST_NBUCKETS];
    uint64_t mn, mx, sum, n = 0;
    unsigned i, first, last;

    if (atomic_load_explicit(&s->epoch, memory_order_acquire) != epoch)
        return;
    mn = LD(&s->min);
    mx = LD(&s->max);
    sum = LD(&s->sum);
    if (mn > mx)
        return;
    first = bucket_of(mn);
    last = bucket_of(mx);
    for (i = first; i <= last; i++)
        tmp[i] = LD(&s->counts[i]);
    atomic_thread_fence(memory_order_acquire);
    if (LD(&s->epoch) != epoch) /* recycled while we copied */
        return;
    for (i = first; i <= last; i++) {
        if (tmp[i] != 0) {
            ST(&dst->counts[i], LD(&dst->counts[i]) + tmp[i]);
            n += tmp[i];
        }
    }
    hist_add_summary(dst, n, sum, mn, mx);
}

void weir_whist_init(struct weir_whist *w)
{
    unsigned i, j;

    weir_hist_init(&w->all);
    for (i = 0; i < WEIR_WHIST_NSLOTS; i++) {
        struct weir_hist_slot *s = &w->slots[i];

        atomic_init(&s->epoch, WEIR_EPOCH_NONE);
        atomic_init(&s->sum, 0);
        atomic_init(&s->min, UINT64_MAX);
        atomic_init(&s->max, 0);
        for (j = 0; j < WEIR_HIST_NBUCKETS; j++)
            atomic_init(&s->counts[j], 0);
    }
}

void weir_whist_record(struct weir_whist *w, uint64_t now_s, uint64_t us)
{
    uint64_t period = now_s / WEIR_WHIST_SLOT_S, epoch = period * WEIR_WHIST_SLOT_S;
    struct weir_hist_slot *s = &w->slots[period % WEIR_WHIST_NSLOTS];
    unsigned bucket = bucket_of(us);

    if (LD(&s->epoch) != epoch)
        slot_recycle(s, epoch);
    ADD(&s->counts[bucket], 1);
    ADD(&s->sum, us);
    if (us < LD(&s->min))
        ST(&s->min, us);
    if (us > LD(&s->max))
        ST(&s->max, us);
    hist_record_at(&w->all, bucket, us);
}

int weir_whist_read(const struct weir_whist *w, uint64_t now_s, int window, struct weir_hist *out)
{
    uint64_t period = now_s / WEIR_WHIST_SLOT_S, k, nperiods;

    switch (window) {
    case WEIR_WIN_10S:
        nperiods = 10 / WEIR_WHIST_SLOT_S + 1;
        break;
    case WEIR_WIN_60S:
        nperiods = 60 / WEIR_WHIST_SLOT_S + 1;
        break;
    case WEIR_WIN_ALL:
        weir_hist_merge(out, &w->all);
        return WEIR_OK;
    default:
        return WEIR_ERROR;
    }
    for (k = 0; k < nperiods && k <= period; k++)
        slot_merge(out, &w->slots[(period - k) % WEIR_WHIST_NSLOTS], (period - k) * WEIR_WHIST_SLOT_S);
    return WEIR_OK;
}

/* ---- windowed counter ---- */

void weir_wcounter_init(struct weir_wcounter *c)
{
    unsigned i;

    atomic_init(&c->total, 0);
    for (i = 0; i < WEIR_WCOUNTER_NSLOTS; i++) {
        atomic_init(&c->slots[i].epoch, WEIR_EPOCH_NONE);
        atomic_init(&c->slots[i].n, 0);
    }
}

void weir_wcounter_add(struct weir_wcounter *c, uint64_t now_s, uint64_t n)
{
    struct weir_wcounter_slot *s = &c->slots[now_s & (WEIR_WCOUNTER_NSLOTS - 1)];

    if (LD(&s->epoch) != now_s) {
        ST(&s->epoch, WEIR_EPOCH_NONE);
        atomic_thread_fence(memory_order_release);
        ST(&s->n, 0);
        atomic_store_explicit(&s->epoch, now_s, memory_order_release);
    }
    ADD(&s->n, n);
    ADD(&c->total, n);
}

uint64_t weir_wcounter_sum(const struct weir_wcounter *c, uint64_t now_s, unsigned seconds)
{
    const struct weir_wcounter_slot *s;
    uint64_t t, v, sum = 0;
    unsigned k;

    if (seconds > WEIR_WCOUNTER_MAX_SECONDS)
        seconds = WEIR_WCOUNTER_MAX_SECONDS;
    for (k = 1; k <= seconds && k <= now_s; k++) {
        t = now_s - k;
        s = &c->slots[t & (WEIR_WCOUNTER_NSLOTS - 1)];
        if (atomic_load_explicit(&s->epoch, memory_order_acquire) != t)
            continue;
        v = LD(&s->n);
        atomic_thread_fence(memory_order_acquire);
        if (LD(&s->epoch) == t)
            sum += v;
    }
    return sum;
}

uint64_t weir_wcounter_total(const struct weir_wcounter *c)
{
    return LD(&c->total);
}
