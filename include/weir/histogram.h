/*
 * histogram.h - latency histograms, windowed histograms and windowed counters.
 *
 * Values are microseconds (uint64_t). A histogram is log-linear (HDR style):
 * values 0..63 each have an exact bucket; above, every power of two
 * [2^k, 2^(k+1)) is split into 32 linear sub-buckets of width 2^(k-5). A
 * bucket reports its midpoint, so the reported value r of any recorded value v
 * in 0..WEIR_HIST_MAX_US satisfies
 *
 *     |r - v| < v / 64        (relative error < 1.5625 %, exact for v < 64)
 *
 * and percentiles carry the same bound against the exact order statistic (see
 * weir_hist_percentile). Values above WEIR_HIST_MAX_US (60 s) go into one
 * overflow bucket that reports 60 s; sum and max keep the true values.
 *
 * Threading: every recording structure here has exactly one writer thread
 * (the worker that owns it) and any number of reader threads (the admin
 * thread). Writers take no lock and do no locked read-modify-write: each field
 * is an _Atomic updated with a relaxed load + relaxed store, which is correct
 * because the writer is the only thread storing to it. Readers load with
 * relaxed loads and merge into a histogram private to them. A read concurrent
 * with writes sees each bucket either before or after each in-flight record;
 * the merged count is always the sum of the merged buckets, but sum, min and
 * max may include or miss the records in flight. Slots of the windowed types
 * are recycled under a sequence check (the slot's epoch), so a reader never
 * mixes the data of two different periods.
 *
 * Memory: struct weir_hist 5,624 bytes; struct weir_whist 42,440 bytes
 * (13 slots of 2,832 bytes + one weir_hist); struct weir_wcounter 1,032
 * bytes. None of them holds pointers or resources: init them in place, free
 * them with their container; there is no destroy.
 */
#ifndef WEIR_HISTOGRAM_H
#define WEIR_HISTOGRAM_H

#include <stdatomic.h>
#include <stdint.h>

#include "weir/core.h"

/* Bucket layout. The error bound is 1/2^(SUB_BITS+1); changing SUB_BITS or
 * MAX_US means recomputing TOP (histogram.c checks it at compile time). */
#define WEIR_HIST_SUB_BITS 5                    /* 32 linear sub-buckets per power of two */
#define WEIR_HIST_MAX_US   60000000u            /* largest value resolved: 60 s */
#define WEIR_HIST_TOP      697u                 /* bucket index of WEIR_HIST_MAX_US */
#define WEIR_HIST_OVERFLOW (WEIR_HIST_TOP + 1u) /* bucket of every value > WEIR_HIST_MAX_US */
#define WEIR_HIST_NBUCKETS (WEIR_HIST_OVERFLOW + 1u)

/* Epoch of a slot that holds nothing (never used, or being recycled). */
#define WEIR_EPOCH_NONE UINT64_MAX

/*
 * A plain histogram. Used for all-time recording (64-bit buckets never wrap)
 * and as the private result of reads and merges. Initialise with
 * weir_hist_init(); fields are read through the accessors below.
 */
struct weir_hist {
    _Atomic uint64_t count;                      /* number of recorded values (== sum of counts[]) */
    _Atomic uint64_t sum;                        /* sum of recorded values, unclamped, in us */
    _Atomic uint64_t min;                        /* smallest recorded value; UINT64_MAX when empty */
    _Atomic uint64_t max;                        /* largest recorded value, unclamped; 0 when empty */
    _Atomic uint64_t counts[WEIR_HIST_NBUCKETS]; /* records per bucket (weir_hist_bucket_of) */
};

/* Make h empty. Call before any other use and before publishing h to other
 * threads; must not race with any access to h. */
void weir_hist_init(struct weir_hist *h);

/* Record one value `us` (microseconds; 0 allowed; > 60 s counted in the
 * overflow bucket). Lock-free, no allocation, O(1). Only h's single writer
 * thread may call it. */
void weir_hist_record(struct weir_hist *h, uint64_t us);

/* Add src's contents into dst. dst must be private to the calling thread
 * (e.g. a fresh weir_hist_init'd local); src may be concurrently recorded
 * into by its writer (see the threading note above). dst != src. Any thread. */
void weir_hist_merge(struct weir_hist *dst, const struct weir_hist *src);

/* Accessors; any thread (one relaxed load). min returns 0 when empty. */
uint64_t weir_hist_count(const struct weir_hist *h);
uint64_t weir_hist_sum(const struct weir_hist *h);
uint64_t weir_hist_min(const struct weir_hist *h);
uint64_t weir_hist_max(const struct weir_hist *h);

/*
 * The q-th percentile, q in [0, 100] (clamped). Returns 0 when h is empty,
 * the exact min for q <= 0 and the exact max for q >= 100. Otherwise, with
 * n = count and rank = ceil(q * n / 100) (at least 1), returns the reported
 * value of the bucket holding the rank-th smallest recorded value, clamped to
 * [min, max]: within the error bound above of that value when it is <= 60 s.
 * Any thread; meant for a private histogram (on a live one the result is
 * approximate).
 */
uint64_t weir_hist_percentile(const struct weir_hist *h, double q);

/*
 * Cumulative count for a Prometheus `le` bucket: the number of recorded values
 * whose bucket starts at or below bound_us. Every value <= bound_us is
 * counted; values in (bound_us, bucket end] that share bound_us's bucket are
 * counted too (relative excess < 1/32; exact for bound_us < 64 and when
 * bound_us + 1 starts a bucket). Overflow values (> 60 s) are counted only
 * when bound_us >= max, so count_le(UINT64_MAX) == count. Monotone in
 * bound_us. Any thread; meant for a private histogram.
 */
uint64_t weir_hist_count_le(const struct weir_hist *h, uint64_t bound_us);

/* Bucket layout helpers (pure, any thread): the bucket of a value, and a
 * bucket's lowest value and reported value. Bucket WEIR_HIST_OVERFLOW starts
 * at WEIR_HIST_MAX_US + 1 and reports WEIR_HIST_MAX_US. */
unsigned weir_hist_bucket_of(uint64_t us);
uint64_t weir_hist_bucket_low(unsigned bucket);
uint64_t weir_hist_bucket_value(unsigned bucket);

/*
 * Windowed histogram: a ring of WEIR_WHIST_NSLOTS time slots of
 * WEIR_WHIST_SLOT_S seconds each, plus an all-time histogram.
 *
 * A record at monotonic second t goes into the slot of period
 * p = t - t % WEIR_WHIST_SLOT_S (slot index (t / SLOT_S) % NSLOTS), tagged
 * with epoch p; the writer empties a slot whose epoch is not p before writing
 * into it. A read at second `now` with current period c = now - now % SLOT_S:
 *
 *   WEIR_WIN_10S: slots with epoch c-10, c-5, c: the current, partial period
 *                 plus the 2 previous complete ones, i.e. the records made at
 *                 seconds [c - 10, now] -- between 10 and 15 seconds of data.
 *   WEIR_WIN_60S: slots with epoch c-60 .. c (13 slots): records made at
 *                 seconds [c - 60, now] -- between 60 and 65 seconds.
 *   WEIR_WIN_ALL: everything since weir_whist_init.
 *
 * Slots are matched by exact epoch, so a period nobody recorded in (an idle
 * server) contributes nothing and windows empty by themselves; slots of
 * future periods (writer's clock ahead of the reader's) are skipped. A slot
 * that the writer recycles while it is being read (the writer's clock has
 * entered the period that reuses it) is skipped whole, never half-read; with
 * 13 slots this can only drop the oldest period of a 60 s read made by a
 * reader whose clock still shows the previous period.
 * Slot counts are 32-bit: a 5-second slot wraps only past 4e9 records in one
 * bucket.
 */
#define WEIR_WHIST_SLOT_S 5
#define WEIR_WHIST_NSLOTS 13

enum weir_win {
    WEIR_WIN_10S = 0, /* current period + previous 10 s */
    WEIR_WIN_60S,     /* current period + previous 60 s */
    WEIR_WIN_ALL      /* since init */
};

/* One period of a windowed histogram; internal to histogram.c, visible for
 * embedding only. */
struct weir_hist_slot {
    _Atomic uint64_t epoch; /* first second of the period held; WEIR_EPOCH_NONE when empty/recycling */
    _Atomic uint64_t sum;   /* sum of the period's records, us (their count is the sum of counts[]) */
    _Atomic uint64_t min;   /* UINT64_MAX when empty */
    _Atomic uint64_t max;   /* 0 when empty */
    _Atomic uint32_t counts[WEIR_HIST_NBUCKETS]; /* records per bucket */
};

struct weir_whist {
    struct weir_hist all;                           /* every record since init */
    struct weir_hist_slot slots[WEIR_WHIST_NSLOTS]; /* ring indexed by (t / SLOT_S) % NSLOTS */
};

/* Make w empty. Same rules as weir_hist_init. */
void weir_whist_init(struct weir_whist *w);

/* Record `us` at monotonic second now_s (non-decreasing across calls). Only
 * w's single writer thread may call it. O(1); once per period per slot it
 * also empties the slot (one store per bucket between the old period's min
 * and max buckets, at most ~700). */
void weir_whist_record(struct weir_whist *w, uint64_t now_s, uint64_t us);

/* Merge the records of `window` (enum weir_win), as seen at second now_s,
 * into out. out must be initialised by the caller and private to it; several
 * reads (windows, workers) may be merged into one out. Any thread, concurrent
 * with the writer. Returns WEIR_OK, or WEIR_ERROR for an unknown window (out
 * unchanged). */
int weir_whist_read(const struct weir_whist *w, uint64_t now_s, int window, struct weir_hist *out);

/*
 * Windowed counter for rates: a ring of WEIR_WCOUNTER_NSLOTS one-second slots
 * tagged with their second, plus an all-time total.
 */
/* A power of two, > MAX_SECONDS + 1: the slot the writer recycles is outside
 * every window of a reader less than 3 s behind it. */
#define WEIR_WCOUNTER_NSLOTS      64
#define WEIR_WCOUNTER_MAX_SECONDS 60

struct weir_wcounter_slot {
    _Atomic uint64_t epoch; /* the second counted; WEIR_EPOCH_NONE when empty/recycling */
    _Atomic uint64_t n;     /* sum added during that second */
};

struct weir_wcounter {
    _Atomic uint64_t total;                                /* sum added since init */
    struct weir_wcounter_slot slots[WEIR_WCOUNTER_NSLOTS]; /* indexed by second % NSLOTS */
};

/* Make c zero. Same rules as weir_hist_init. */
void weir_wcounter_init(struct weir_wcounter *c);

/* Add n at monotonic second now_s (non-decreasing across calls). Only c's
 * single writer thread may call it. */
void weir_wcounter_add(struct weir_wcounter *c, uint64_t now_s, uint64_t n);

/* Sum added during the `seconds` complete seconds before now_s, i.e. at
 * seconds [now_s - seconds, now_s - 1]; the current, partial second now_s is
 * NOT included, so sum / seconds is a rate over whole seconds. seconds is
 * clamped to WEIR_WCOUNTER_MAX_SECONDS; 0 returns 0. Any thread. */
uint64_t weir_wcounter_sum(const struct weir_wcounter *c, uint64_t now_s, unsigned seconds);

/* Sum added since init (including the current second). Any thread. */
uint64_t weir_wcounter_total(const struct weir_wcounter *c);

#endif
