/*
 * stats.c - request statistics: a registry of accounted entities, each with
 * one block of counters and latency histograms per worker.
 *
 * Recording (worker threads) follows histogram.h's single-writer rule: a
 * worker writes only its own block of an entity, every field an _Atomic
 * updated with a relaxed load + relaxed store, no lock and no locked
 * read-modify-write. A worker's block of an entity is allocated by that
 * worker on its first record into the entity and published with a release
 * store, so an entity a worker never touches costs it no memory (a block is
 * ~86 KB: two windowed histograms and a windowed counter). Readers (the admin
 * endpoint) load the block pointers with acquire and merge the blocks.
 *
 * Entities live in a registry keyed by (kind, key) and are reference
 * counted: weir_stats_get takes a reference for its caller (a snapshot for
 * its pools and routes, a server object for its own), weir_stats_put drops
 * it, and the entity is freed, blocks and all, when the last one goes. So a
 * pool, route or server that stays across reloads and runtime changes keeps
 * its numbers (the new snapshot takes its reference before the old one
 * drops its own), while one that is gone for good frees its ~86 KB per
 * worker instead of leaking it. The registry mutex is taken by snapshot
 * builds (control thread) and by the final put, which may run on a worker
 * releasing the last snapshot or server; never on the recording path.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir/core.h"
#include "weir/histogram.h"
#include "weir/stats.h"

#define LD(p)     atomic_load_explicit((p), memory_order_relaxed)
#define ST(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define ADD(p, v) ST((p), LD(p) + (v)) /* single writer: no RMW instruction */

#define CACHELINE 64

/* One worker's numbers for one entity. Written only by that worker. */
struct stats_block {
    struct weir_wcounter requests;              /* finished exchanges; windows give rates */
    _Atomic uint64_t responses[WEIR_CLASS_N];   /* by status class */
    _Atomic uint64_t uperr[WEIR_UPERR_5XX + 1]; /* by enum weir_upstream_err */
    _Atomic uint64_t retries, bytes_in, bytes_out;
    struct weir_whist lat[2]; /* [WEIR_LAT_TOTAL], [WEIR_LAT_TTFB] */
};

struct weir_stats {
    int kind;                               /* enum weir_stats_kind */
    char *key;                              /* "" for the global entity */
    uint64_t created_s;                     /* weir_stats_now_s() at creation: bounds rate divisors */
    unsigned refs;                          /* references (weir_stats_get/put), under reg_lock */
    struct weir_stats *next, *prev;         /* registry list */
    _Atomic(struct stats_block *) blocks[]; /* [nworkers]; NULL until the worker's first record */
};

/* Connection gauges: one cache line per worker, written by that worker. */
struct gauge_line {
    _Atomic long v[WEIR_G_N];
    char pad[CACHELINE - (WEIR_G_N * sizeof(long)) % CACHELINE];
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weir_stats *reg_head; /* every entity, newest first */
static struct weir_stats *reg_global;
static int n_workers; /* set by weir_stats_init before workers start */
static uint64_t start_ns;
static _Atomic int stats_on = 1;
static _Alignas(CACHELINE) struct gauge_line gauges[WEIR_MAX_WORKERS];

/* ---- clock ---- */

static uint64_t mono_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t weir_stats_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec;
}

double weir_stats_uptime_s(void)
{
    return start_ns ? (double)(mono_ns(CLOCK_MONOTONIC) - start_ns) / 1e9 : 0.0;
}

int weir_stats_nworkers(void)
{
    return n_workers;
}

/* ---- registry ---- */

static struct weir_stats *entity_new(int kind, const char *key)
{
    size_t n = n_workers > 0 ? (size_t)n_workers : 1;
    struct weir_stats *st = calloc(1, sizeof(*st) + n * sizeof(st->blocks[0]));

    if (st == NULL)
        return NULL;
    st->key = strdup(key != NULL ? key : "");
    if (st->key == NULL) {
        free(st);
        return NULL;
    }
    st->kind = kind;
    st->created_s = weir_stats_now_s();
    for (size_t i = 0; i < n; i++)
        atomic_init(&st->blocks[i], NULL);
    return st;
}

static void entity_free(struct weir_stats *st)
{
    for (int i = 0; i < (n_workers > 0 ? n_workers : 1); i++)
        free(atomic_load_explicit(&st->blocks[i], memory_order_acquire));
    free(st->key);
    free(st);
}

int weir_stats_init(int nworkers)
{
    if (nworkers < 1 || nworkers > WEIR_MAX_WORKERS)
        return -1;
    weir_stats_shutdown();
    n_workers = nworkers;
    start_ns = mono_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < WEIR_MAX_WORKERS; i++)
        for (int g = 0; g < WEIR_G_N; g++)
            ST(&gauges[i].v[g], 0);
    reg_global = entity_new(WEIR_STATS_GLOBAL, NULL);
    if (reg_global == NULL)
        return -1;
    pthread_mutex_lock(&reg_lock);
    reg_global->next = reg_head;
    if (reg_head != NULL)
        reg_head->prev = reg_global;
    reg_head = reg_global;
    pthread_mutex_unlock(&reg_lock);
    return 0;
}

void weir_stats_shutdown(void)
{
    pthread_mutex_lock(&reg_lock);
    struct weir_stats *st = reg_head;
    reg_head = NULL;
    reg_global = NULL;
    pthread_mutex_unlock(&reg_lock);
    while (st != NULL) {
        struct weir_stats *next = st->next;
        entity_free(st);
        st = next;
    }
}

struct weir_stats *weir_stats_global(void)
{
    return reg_global;
}

struct weir_stats *weir_stats_get(int kind, const char *key)
{
    struct weir_stats *st;

    if (kind == WEIR_STATS_GLOBAL || key == NULL)
        return reg_global;
    if (reg_global == NULL) /* not initialised */
        return NULL;
    pthread_mutex_lock(&reg_lock);
    for (st = reg_head; st != NULL; st = st->next)
        if (st->kind == kind && strcmp(st->key, key) == 0)
            break;
    if (st == NULL) {
        st = entity_new(kind, key);
        if (st != NULL) {
            st->next = reg_head;
            if (reg_head != NULL)
                reg_head->prev = st;
            reg_head = st;
        }
    }
    if (st != NULL)
        st->refs++;
    pthread_mutex_unlock(&reg_lock);
    return st;
}

void weir_stats_put(struct weir_stats *st)
{
    if (st == NULL || st == reg_global)
        return;
    pthread_mutex_lock(&reg_lock);
    if (--st->refs > 0) {
        pthread_mutex_unlock(&reg_lock);
        return;
    }
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        reg_head = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    pthread_mutex_unlock(&reg_lock);
    entity_free(st);
}

size_t weir_stats_registry_size(void)
{
    size_t n = 0;
    pthread_mutex_lock(&reg_lock);
    for (const struct weir_stats *st = reg_head; st != NULL; st = st->next)
        n++;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

int weir_stats_kind(const struct weir_stats *st)
{
    return st->kind;
}

const char *weir_stats_key(const struct weir_stats *st)
{
    return st->key;
}

/* ---- recording (worker threads) ---- */

void weir_stats_set_enabled(int on)
{
    atomic_store_explicit(&stats_on, on ? 1 : 0, memory_order_relaxed);
}

int weir_stats_enabled(void)
{
    return atomic_load_explicit(&stats_on, memory_order_relaxed);
}

int weir_stats_status_class(int status)
{
    if (status >= 100 && status < 600)
        return status / 100 - 1;
    return WEIR_CLASS_OTHER;
}

/* The worker's block of st, allocated on first use (by that worker only). */
static struct stats_block *block_of(struct weir_stats *st, int worker)
{
    struct stats_block *b;
    size_t size;

    if (st == NULL || worker < 0 || worker >= n_workers)
        return NULL;
    b = atomic_load_explicit(&st->blocks[worker], memory_order_relaxed);
    if (__builtin_expect(b != NULL, 1))
        return b;
    size = (sizeof(*b) + CACHELINE - 1) / CACHELINE * CACHELINE;
    b = aligned_alloc(CACHELINE, size);
    if (b == NULL)
        return NULL; /* this record is lost; the next one tries again */
    weir_wcounter_init(&b->requests);
    for (int i = 0; i < WEIR_CLASS_N; i++)
        atomic_init(&b->responses[i], 0);
    for (int i = 0; i <= WEIR_UPERR_5XX; i++)
        atomic_init(&b->uperr[i], 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->bytes_in, 0);
    atomic_init(&b->bytes_out, 0);
    weir_whist_init(&b->lat[WEIR_LAT_TOTAL]);
    weir_whist_init(&b->lat[WEIR_LAT_TTFB]);
    atomic_store_explicit(&st->blocks[worker], b, memory_order_release);
    return b;
}

void weir_stats_record(struct weir_stats *st, int worker, const struct weir_stats_sample *s)
{
    struct stats_block *b;
    uint64_t now;

    if (!atomic_load_explicit(&stats_on, memory_order_relaxed) || (b = block_of(st, worker)) == NULL)
        return;
    /* weir_now_us() and weir_stats_now_s() share CLOCK_MONOTONIC's epoch; at a
     * second boundary they may differ by one coarse tick, which the windows
     * tolerate (a record lands in the neighbouring period). */
    now = s->now_us != 0 ? s->now_us / 1000000u : weir_stats_now_s();
    weir_wcounter_add(&b->requests, now, 1);
    ADD(&b->responses[weir_stats_status_class(s->status)], 1);
    if (s->retries > 0)
        ADD(&b->retries, (uint64_t)s->retries);
    ADD(&b->bytes_in, s->bytes_in);
    ADD(&b->bytes_out, s->bytes_out);
    weir_whist_record(&b->lat[WEIR_LAT_TOTAL], now, s->total_us);
    if (s->ttfb_us != 0)
        weir_whist_record(&b->lat[WEIR_LAT_TTFB], now, s->ttfb_us);
}

void weir_stats_upstream_error(struct weir_stats *st, int worker, int kind)
{
    struct stats_block *b;

    if (kind <= WEIR_UPERR_NONE || kind > WEIR_UPERR_5XX ||
        !atomic_load_explicit(&stats_on, memory_order_relaxed) || (b = block_of(st, worker)) == NULL)
        return;
    ADD(&b->uperr[kind], 1);
}

void weir_stats_gauge_add(int worker, int gauge, long delta)
{
    if (worker < 0 || worker >= WEIR_MAX_WORKERS || gauge < 0 || gauge >= WEIR_G_N)
        return;
    ADD(&gauges[worker].v[gauge], delta);
}

/* ---- reading (any thread) ---- */

long weir_stats_gauge_read(int gauge)
{
    long sum = 0;

    if (gauge < 0 || gauge >= WEIR_G_N)
        return 0;
    for (int i = 0; i < WEIR_MAX_WORKERS; i++)
        sum += LD(&gauges[i].v[gauge]);
    return sum < 0 ? 0 : sum;
}

static const struct stats_block *block_read(const struct weir_stats *st, int worker)
{
    return atomic_load_explicit(&st->blocks[worker], memory_order_acquire);
}

void weir_stats_read_counters(const struct weir_stats *st, uint64_t now_s, struct weir_stats_counters *out)
{
    static const unsigned secs[WEIR_RATE_N] = {1, 10, 60};
    uint64_t win[WEIR_RATE_N] = {0};

    memset(out, 0, sizeof(*out));
    if (st == NULL)
        return;
    for (int w = 0; w < n_workers; w++) {
        const struct stats_block *b = block_read(st, w);
        if (b == NULL)
            continue;
        out->requests += weir_wcounter_total(&b->requests);
        for (int i = 0; i < WEIR_CLASS_N; i++)
            out->responses[i] += LD(&b->responses[i]);
        for (int i = WEIR_UPERR_CONNECT; i <= WEIR_UPERR_5XX; i++)
            out->upstream_errors[i] += LD(&b->uperr[i]);
        out->retries += LD(&b->retries);
        out->bytes_in += LD(&b->bytes_in);
        out->bytes_out += LD(&b->bytes_out);
        for (int r = 0; r < WEIR_RATE_N; r++)
            win[r] += weir_wcounter_sum(&b->requests, now_s, secs[r]);
    }
    /* A window longer than the entity's life is divided by its life. */
    uint64_t life = now_s > st->created_s ? now_s - st->created_s : 1;
    for (int r = 0; r < WEIR_RATE_N; r++) {
        uint64_t d = secs[r] < life ? secs[r] : life;
        out->rps[r] = (double)win[r] / (double)d;
    }
}

int weir_stats_read_latency(const struct weir_stats *st, int lat, int window, uint64_t now_s,
                            struct weir_hist *out)
{
    if ((lat != WEIR_LAT_TOTAL && lat != WEIR_LAT_TTFB) ||
        (window != WEIR_WIN_10S && window != WEIR_WIN_60S && window != WEIR_WIN_ALL))
        return WEIR_ERROR;
    if (st == NULL)
        return WEIR_OK;
    for (int w = 0; w < n_workers; w++) {
        const struct stats_block *b = block_read(st, w);
        if (b != NULL)
            weir_whist_read(&b->lat[lat], now_s, window, out);
    }
    return WEIR_OK;
}
