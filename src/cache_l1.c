/*
 * cache_l1.c - the instance-wide in-memory cache: striped hash tables with
 * per-stripe LRU lists under one global byte budget. Contracts in
 * include/weir/cache_l1.h.
 *
 * Locking: a stripe's mutex guards its buckets, LRU list and entries. No
 * function holds two stripe locks at once, and objects are released only
 * after the lock is dropped (a release may free megabytes). The global
 * byte and object counts are atomics so that the bound is checked without
 * locks.
 */
#include "config.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "weir/cache_l1.h"

struct l1_entry {
    struct l1_entry *hnext;         /* hash chain */
    struct l1_entry *lprev, *lnext; /* LRU list, most recent first */
    uint64_t hash;
    struct weir_cache_obj *obj; /* NULL: a hit-for-miss mark */
    char *key;                  /* marks only; objects use obj->key */
    int64_t expires;            /* useless after this time */
    int64_t lifetime;           /* effective freshness lifetime */
    size_t mem;                 /* bytes counted for this entry */
};

struct l1_stripe {
    pthread_mutex_t mu;
    struct l1_entry **buckets;
    size_t nbuckets, count;
    struct l1_entry *lru_head, *lru_tail;
    char pad[64]; /* keep stripes' locks on separate cache lines */
};

struct weir_cache_l1 {
    size_t budget;
    atomic_size_t bytes;
    atomic_size_t objects, marks;
    atomic_uint_fast64_t evicted, expired, inserted;
    atomic_uint next_victim;
    struct l1_stripe stripes[WEIR_L1_STRIPES];
};

/* Objects dropped under a lock, released after it. */
struct dropped {
    struct l1_entry *list;
};

static size_t usable(const void *p)
{
    return weir_cache_heap_size(p);
}

/* FNV-1a with a final avalanche (murmur3 fmix64) so that keys differing
 * only in their last bytes spread over stripes and buckets alike. */
static uint64_t hash_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static const char *entry_key(const struct l1_entry *e)
{
    return e->obj != NULL ? e->obj->key : e->key;
}

static struct l1_stripe *stripe_of(struct weir_cache_l1 *l1, uint64_t h)
{
    return &l1->stripes[(h >> 40) % WEIR_L1_STRIPES];
}

struct weir_cache_l1 *weir_cache_l1_new(size_t memory_bytes)
{
    struct weir_cache_l1 *l1 = calloc(1, sizeof(*l1));
    size_t i;

    if (l1 == NULL || memory_bytes == 0) {
        free(l1);
        return NULL;
    }
    l1->budget = memory_bytes;
    atomic_init(&l1->bytes, 0);
    for (i = 0; i < WEIR_L1_STRIPES; i++) {
        struct l1_stripe *s = &l1->stripes[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 64;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (s->buckets == NULL) {
            weir_cache_l1_free(l1);
            return NULL;
        }
        atomic_fetch_add(&l1->bytes, usable(s->buckets));
    }
    return l1;
}

/* ---- under the stripe lock -------------------------------------------------- */

static void lru_unlink(struct l1_stripe *s, struct l1_entry *e)
{
    if (e->lprev != NULL)
        e->lprev->lnext = e->lnext;
    else
        s->lru_head = e->lnext;
    if (e->lnext != NULL)
        e->lnext->lprev = e->lprev;
    else
        s->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_front(struct l1_stripe *s, struct l1_entry *e)
{
    e->lprev = NULL;
    e->lnext = s->lru_head;
    if (s->lru_head != NULL)
        s->lru_head->lprev = e;
    s->lru_head = e;
    if (s->lru_tail == NULL)
        s->lru_tail = e;
}

/* Unlink e from its chain and the LRU list; queue it for release. */
static void unlink_entry(struct weir_cache_l1 *l1, struct l1_stripe *s, struct l1_entry *e, struct dropped *d)
{
    struct l1_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    atomic_fetch_sub(&l1->bytes, e->mem);
    if (e->obj != NULL)
        atomic_fetch_sub(&l1->objects, 1);
    else
        atomic_fetch_sub(&l1->marks, 1);
    e->hnext = d->list;
    d->list = e;
}

static void grow(struct weir_cache_l1 *l1, struct l1_stripe *s)
{
    size_t n = s->nbuckets * 2, i;
    struct l1_entry **nb = calloc(n, sizeof(*nb));

    if (nb == NULL)
        return; /* chains just get longer */
    for (i = 0; i < s->nbuckets; i++) {
        struct l1_entry *e = s->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->hnext;
            e->hnext = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    atomic_fetch_add(&l1->bytes, usable(nb));
    atomic_fetch_sub(&l1->bytes, usable(s->buckets));
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

static void link_entry(struct weir_cache_l1 *l1, struct l1_stripe *s, struct l1_entry *e)
{
    struct l1_entry **b;

    if (s->count >= s->nbuckets)
        grow(l1, s);
    b = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(s, e);
    s->count++;
    atomic_fetch_add(&l1->bytes, e->mem);
    if (e->obj != NULL)
        atomic_fetch_add(&l1->objects, 1);
    else
        atomic_fetch_add(&l1->marks, 1);
}

/* ---- outside the lock ----------------------------------------------------------- */

static void release_dropped(struct dropped *d)
{
    struct l1_entry *e = d->list, *next;

    for (; e != NULL; e = next) {
        next = e->hnext;
        weir_cache_obj_release(e->obj);
        free(e->key);
        free(e);
    }
    d->list = NULL;
}

/* Evict one least recently used entry of stripe s, but never its only
 * entry when keep_last (the one just inserted). Returns 1 when it did. */
static int evict_one(struct weir_cache_l1 *l1, struct l1_stripe *s, int keep_last)
{
    struct dropped d = {NULL};
    int done = 0;

    pthread_mutex_lock(&s->mu);
    if (s->lru_tail != NULL && !(keep_last && s->count == 1)) {
        if (s->lru_tail->obj != NULL)
            atomic_fetch_add(&l1->evicted, 1);
        unlink_entry(l1, s, s->lru_tail, &d);
        done = 1;
    }
    pthread_mutex_unlock(&s->mu);
    release_dropped(&d);
    return done;
}

/* Until the bytes fit the budget: evict from the stripe that just grew
 * (keys spread evenly, so this follows each stripe's share of the inserts
 * and keeps the order close to a global LRU), then from the others in
 * turn when it has nothing else to give. */
static void evict(struct weir_cache_l1 *l1, struct l1_stripe *own)
{
    unsigned empty = 0;

    while (atomic_load(&l1->bytes) > l1->budget && evict_one(l1, own, 1))
        ;
    while (atomic_load(&l1->bytes) > l1->budget && empty < WEIR_L1_STRIPES) {
        unsigned i = atomic_fetch_add(&l1->next_victim, 1) % WEIR_L1_STRIPES;
        if (evict_one(l1, &l1->stripes[i], &l1->stripes[i] == own))
            empty = 0;
        else
            empty++;
    }
}

void weir_cache_l1_free(struct weir_cache_l1 *l1)
{
    size_t i;

    if (l1 == NULL)
        return;
    weir_cache_l1_purge_all(l1);
    for (i = 0; i < WEIR_L1_STRIPES; i++) {
        /* marks are dropped too */
        struct l1_stripe *s = &l1->stripes[i];
        struct dropped d = {NULL};
        while (s->lru_tail != NULL)
            unlink_entry(l1, s, s->lru_tail, &d);
        release_dropped(&d);
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(l1);
}

static int vary_matches(const struct weir_cache_obj *o, const struct weir_http_header *req, size_t nreq)
{
    size_t len;
    char *v;
    int same;

    if (o->vary_names[0] == '\0')
        return 1;
    v = weir_cache_vary_values(o->vary_names, req, nreq, &len);
    if (v == NULL)
        return 0;
    same = len == o->vary_values_len && memcmp(v, o->vary_values, len) == 0;
    free(v);
    return same;
}

int weir_cache_l1_lookup(struct weir_cache_l1 *l1, const char *key, const struct weir_http_header *req,
                         size_t nreq, int64_t now, struct weir_l1_hit *hit)
{
    uint64_t h = hash_key(key);
    struct l1_stripe *s = stripe_of(l1, h);
    struct l1_entry *e, *next;
    struct dropped d = {NULL};
    int rc = WEIR_DECLINED;

    hit->obj = NULL;
    hit->lifetime = 0;
    hit->hit_for_miss = 0;
    hit->hfm_until = 0;
    pthread_mutex_lock(&s->mu);
    for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = next) {
        next = e->hnext;
        if (e->hash != h || strcmp(entry_key(e), key) != 0)
            continue;
        if (e->expires <= now) {
            if (e->obj != NULL)
                atomic_fetch_add(&l1->expired, 1);
            unlink_entry(l1, s, e, &d);
            continue;
        }
        if (e->obj == NULL) {
            hit->hit_for_miss = 1;
            hit->hfm_until = e->expires;
            continue;
        }
        if (hit->obj != NULL || !vary_matches(e->obj, req, nreq))
            continue;
        weir_cache_obj_retain(e->obj);
        hit->obj = e->obj;
        hit->lifetime = e->lifetime;
        lru_unlink(s, e);
        lru_push_front(s, e);
        rc = WEIR_OK;
    }
    pthread_mutex_unlock(&s->mu);
    release_dropped(&d);
    if (rc == WEIR_OK)
        hit->hit_for_miss = 0;
    return rc;
}

int weir_cache_l1_insert(struct weir_cache_l1 *l1, struct weir_cache_obj *obj, int64_t now)
{
    uint64_t h = hash_key(obj->key);
    struct l1_stripe *s = stripe_of(l1, h);
    struct l1_entry *e, *next, *n;
    struct dropped d = {NULL};

    if (weir_cache_obj_state(obj) != WEIR_OBJ_COMPLETE)
        return WEIR_DECLINED;
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return WEIR_ERROR;
    n->hash = h;
    n->obj = obj;
    n->expires = obj->times.response_time + obj->keep;
    n->lifetime = obj->lifetime;
    n->mem = usable(n) + atomic_load(&obj->mem);
    if (n->mem > l1->budget) {
        free(n);
        return WEIR_DECLINED;
    }
    weir_cache_obj_retain(obj);
    pthread_mutex_lock(&s->mu);
    for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = next) {
        next = e->hnext;
        if (e->hash != h || strcmp(entry_key(e), obj->key) != 0)
            continue;
        if (e->obj == NULL || (strcmp(e->obj->vary_names, obj->vary_names) == 0 &&
                               e->obj->vary_values_len == obj->vary_values_len &&
                               memcmp(e->obj->vary_values, obj->vary_values, obj->vary_values_len) == 0))
            unlink_entry(l1, s, e, &d);
    }
    link_entry(l1, s, n);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&l1->inserted, 1);
    release_dropped(&d);
    evict(l1, s);
    (void)now;
    return WEIR_OK;
}

int weir_cache_l1_mark_hfm(struct weir_cache_l1 *l1, const char *key, int64_t until)
{
    uint64_t h = hash_key(key);
    struct l1_stripe *s = stripe_of(l1, h);
    struct l1_entry *e, *next, *n;
    struct dropped d = {NULL};

    /* renewing a mark (every request of an uncacheable URL does): in place */
    pthread_mutex_lock(&s->mu);
    for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = e->hnext)
        if (e->obj == NULL && e->hash == h && strcmp(e->key, key) == 0) {
            e->expires = until;
            lru_unlink(s, e);
            lru_push_front(s, e);
            pthread_mutex_unlock(&s->mu);
            return WEIR_OK;
        }
    pthread_mutex_unlock(&s->mu);
    n = calloc(1, sizeof(*n));
    if (n == NULL || (n->key = strdup(key)) == NULL) {
        free(n);
        return WEIR_ERROR;
    }
    n->hash = h;
    n->expires = until;
    n->mem = usable(n) + usable(n->key);
    pthread_mutex_lock(&s->mu);
    for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = next) {
        next = e->hnext;
        if (e->obj == NULL && e->hash == h && strcmp(e->key, key) == 0)
            unlink_entry(l1, s, e, &d);
    }
    link_entry(l1, s, n);
    pthread_mutex_unlock(&s->mu);
    release_dropped(&d);
    evict(l1, s);
    return WEIR_OK;
}

/* ---- purges ------------------------------------------------------------------------ */

/* Apply a purge to one entry (under the lock). Returns 1 when an object was purged. */
static int purge_entry(struct weir_cache_l1 *l1, struct l1_stripe *s, struct l1_entry *e, int soft,
                       int64_t now, struct dropped *d)
{
    if (e->obj == NULL) {
        unlink_entry(l1, s, e, d);
        return 0;
    }
    if (soft) {
        int64_t age = weir_cache_age(&e->obj->times, now);
        if (e->lifetime > age)
            e->lifetime = age;
        return 1;
    }
    unlink_entry(l1, s, e, d);
    return 1;
}

size_t weir_cache_l1_purge_url(struct weir_cache_l1 *l1, const char *url, int soft, int64_t now)
{
    char *key = weir_cache_key(WEIR_HTTP_GET, url);
    uint64_t h;
    struct l1_stripe *s;
    struct l1_entry *e, *next;
    struct dropped d = {NULL};
    size_t n = 0;

    if (key == NULL)
        return 0;
    h = hash_key(key);
    s = stripe_of(l1, h);
    pthread_mutex_lock(&s->mu);
    for (e = s->buckets[h & (s->nbuckets - 1)]; e != NULL; e = next) {
        next = e->hnext;
        if (e->hash == h && strcmp(entry_key(e), key) == 0)
            n += (size_t)purge_entry(l1, s, e, soft, now, &d);
    }
    pthread_mutex_unlock(&s->mu);
    release_dropped(&d);
    free(key);
    return n;
}

typedef int (*match_fn)(const struct l1_entry *e, const char *arg);

static int match_prefix(const struct l1_entry *e, const char *prefix)
{
    const char *k = entry_key(e);
    /* marks have only a key: "GET " + url */
    const char *url = e->obj != NULL ? e->obj->url : (strncmp(k, "GET ", 4) == 0 ? k + 4 : k);
    return strncmp(url, prefix, strlen(prefix)) == 0;
}

static int match_tag(const struct l1_entry *e, const char *tag)
{
    return e->obj != NULL && weir_cache_obj_has_tag(e->obj, tag);
}

static int match_all(const struct l1_entry *e, const char *arg)
{
    return 1;
}

static size_t purge_scan(struct weir_cache_l1 *l1, match_fn match, const char *arg, int soft, int64_t now)
{
    size_t n = 0, i, b;

    for (i = 0; i < WEIR_L1_STRIPES; i++) {
        struct l1_stripe *s = &l1->stripes[i];
        struct dropped d = {NULL};

        pthread_mutex_lock(&s->mu);
        for (b = 0; b < s->nbuckets; b++) {
            struct l1_entry *e, *next;
            for (e = s->buckets[b]; e != NULL; e = next) {
                next = e->hnext;
                if (match(e, arg))
                    n += (size_t)purge_entry(l1, s, e, soft, now, &d);
            }
        }
        pthread_mutex_unlock(&s->mu);
        release_dropped(&d);
    }
    return n;
}

size_t weir_cache_l1_purge_prefix(struct weir_cache_l1 *l1, const char *prefix, int soft, int64_t now)
{
    return purge_scan(l1, match_prefix, prefix, soft, now);
}

size_t weir_cache_l1_purge_tag(struct weir_cache_l1 *l1, const char *tag, int soft, int64_t now)
{
    return purge_scan(l1, match_tag, tag, soft, now);
}

size_t weir_cache_l1_purge_all(struct weir_cache_l1 *l1)
{
    return purge_scan(l1, match_all, NULL, 0, 0);
}

void weir_cache_l1_stats(struct weir_cache_l1 *l1, struct weir_l1_stats *st)
{
    st->budget = l1->budget;
    st->bytes = atomic_load(&l1->bytes);
    st->objects = atomic_load(&l1->objects);
    st->marks = atomic_load(&l1->marks);
    st->evicted = atomic_load(&l1->evicted);
    st->expired = atomic_load(&l1->expired);
    st->inserted = atomic_load(&l1->inserted);
}
