/*
 * cache.c - the cache stage over the exchange interface (exchange.h of the
 * session branch, commit 53e8d31): a request hook that answers from L1,
 * then L2, coalesces concurrent misses for a key, and otherwise lets the
 * request go upstream with a store filter attached; an invalidation filter
 * for unsafe methods; the purge channel. Contracts in include/weir/cache.h.
 *
 * Threads: the hook, filters, L2 clients and per-worker state run on their
 * worker's thread. Shared: the L1 (its own locks), the flight table (one
 * mutex, taken only on misses), and each worker's inbox of woken waiters
 * (a mutex-protected list plus an eventfd, since worker event bases run
 * without libevent locks and must not be touched from another thread).
 *
 * Coalescing: the first miss for a key becomes the leader of a flight; the
 * next requests for the key suspend as its waiters. When the leader's
 * response has been stored (end of body) the waiters are woken on their
 * own workers and answered from L1; when it turns out not storable they are
 * released to the backend at once and a hit-for-miss mark (10 s) keeps the
 * next requests from waiting. A waiter waits at most WAIT_MS.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "weir/cache.h"
#include "weir/cache_fetch.h"
#include "weir/cache_redis.h"
#include "weir/cache_rules.h"
#include "weir/cache_stats.h"
#include "weir/core.h"
#include "weir/exchange.h"
#include "weir/log.h"
#include "weir/runtime.h"

#define HFM_SECONDS    10   /* hit-for-miss mark after a response that could not be stored */
#define WAIT_MS        5000 /* longest a coalesced waiter waits for its leader */
#define L2_OBJ         "obj:"
#define PURGE_CHAN     "purge"
#define PURGE_GEN      "purge:gen"
#define REASON_TOO_BIG 15   /* not_storable_by[]: over max_object_bytes */
#define STALE_OK       1    /* flight result: the origin failed; stale-if-error may answer */
#define RULES_MAX      1024 /* recent purges remembered for L2 values */
#define LEASE_MS       3000 /* an instance's lease to fetch a key others miss too */
#define LEASE_POLL_MS  50   /* how often the others look for the value meanwhile */
#define L2_LEASE       "lease:"
#define RULES_SECONDS  86400 /* ... for at most a day */

struct waiter;
struct bg;

struct cache_worker {
    int id;
    struct event_base *base;
    struct weir_cache_redis *l2;
    struct weir_cache_redis_sub *sub; /* worker 0 */
    int efd;
    struct event *ev;
    pthread_mutex_t mu;
    struct waiter *inbox; /* woken waiters handed over by other threads */
    struct bg *bgs;       /* background revalidations running on this worker */
    /* counters: written by this worker only */
    _Atomic uint64_t hit_l1, hit_l2, miss, stale_served, stored, not_storable, coalesced, l2_garbage,
        only_if_cached, revalidated;
    _Atomic uint64_t not_storable_by[16];
};

struct flight {
    struct flight *next;
    char *key;
    struct waiter *waiters;
};

static struct {
    int ready;
    struct weir_cache_l1 *l1;
    size_t max_object_bytes;
    int has_l2;
    struct weir_redis_conf rconf;
    char *raddress, *rpassword, *rprefix;
    struct cache_worker *workers[WEIR_MAX_WORKERS];
    pthread_mutex_t flights_mu;
    struct flight *flights;
    _Atomic long long purge_gen; /* last purge generation seen (-1: unknown) */
    /* Recent purges (from the channel): an L2 value stored before a purge
     * that matches it is refused (hard) or stale (soft), so prefix and tag
     * purges reach L2 without scanning it. */
    pthread_mutex_t rules_mu;
    struct rule {
        char kind; /* 'u' url, 'p' prefix, 't' tag */
        char soft;
        int64_t at;
        char *value;
    } rules[RULES_MAX];
    size_t nrules, next_rule;
    struct weir_cache_redis *admin_l2; /* the admin thread's connection */
} G = {.flights_mu = PTHREAD_MUTEX_INITIALIZER, .rules_mu = PTHREAD_MUTEX_INITIALIZER};

static void count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- per-exchange state ------------------------------------------------------ */

enum { CX_NEW, CX_L2, CX_WAITING, CX_DONE };

struct waiter {
    struct waiter *next;     /* in the flight, then in the inbox */
    struct cx *cx;           /* the waiting exchange */
    struct cache_worker *cw; /* its worker */
    struct flight *flight;   /* NULL once released (under flights_mu) */
    int result;              /* WEIR_OK: stored; WEIR_DECLINED: go upstream; STALE_OK: origin failed */
    int woken;               /* resumed already (by the leader or the timer) */
    struct event *timer;     /* WAIT_MS bound, on the waiter's worker */
};

struct cx {
    struct weir_exchange *x;
    struct cache_worker *cw;
    int method;
    char *url, *key;
    const struct weir_http_msg *req; /* stable copy (weir_exchange_request) */
    struct weir_cc qcc;
    int64_t request_time;
    int state;
    struct weir_redis_cmd *l2cmd;
    struct flight *lead; /* a flight this exchange leads, until handed to its store filter */
    struct waiter *w;
    int l2_second;                  /* the second (variant) L2 lookup was sent */
    struct weir_cache_fetch *fetch; /* foreground revalidation */
    struct weir_cache_obj *stale;   /* what it revalidates (retained) */
    struct weir_cache_verdict sv;   /* the stale object's verdict */
    int leased;                     /* we hold the Redis lease for the key */
    int polling;                    /* another instance holds it: we wait for L2 */
    uint64_t lease_until_us;
    struct event *poll;
    struct weir_cache_rstats *rs; /* the route's cache statistics */
};

struct store {
    struct cache_worker *cw;
    int leased; /* tell the instances waiting on our lease how it ended */
    char *url, *key;
    const struct weir_http_msg *req;
    int64_t request_time;
    struct flight *flight;
    struct weir_cache_obj *obj;
    struct weir_cache_rstats *rs;
};

static const struct weir_resp_filter store_filter;
static const struct weir_resp_filter inval_filter;

/* ---- flights ------------------------------------------------------------------- */

static void inbox_push(struct waiter *w)
{
    struct cache_worker *cw = w->cw;
    uint64_t one = 1;

    pthread_mutex_lock(&cw->mu);
    w->next = cw->inbox;
    cw->inbox = w;
    pthread_mutex_unlock(&cw->mu);
    if (write(cw->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        weir_log_warn("cache: cannot wake worker %d: %s", cw->id, strerror(errno));
}

/* End a flight: wake every waiter on its own worker. Leader's thread. */
static void flight_end(struct flight *f, int result)
{
    struct waiter *w, *next;
    struct flight **pp;

    if (f == NULL)
        return;
    pthread_mutex_lock(&G.flights_mu);
    for (pp = &G.flights; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    w = f->waiters;
    f->waiters = NULL;
    for (; w != NULL; w = next) {
        next = w->next;
        w->flight = NULL;
        w->result = result;
        inbox_push(w);
    }
    pthread_mutex_unlock(&G.flights_mu);
    free(f->key);
    free(f);
}

/* Join the flight for key or start one. Returns the new flight when this
 * exchange leads, NULL when a flight runs already (w, when not NULL, is
 * added to its waiters) or on allocation failure (*err set). */
static struct flight *flight_join(const char *key, struct waiter *w, int *err)
{
    struct flight *f;

    *err = 0;
    pthread_mutex_lock(&G.flights_mu);
    for (f = G.flights; f != NULL; f = f->next)
        if (strcmp(f->key, key) == 0)
            break;
    if (f != NULL) { /* someone fetches it already: wait for it (or, w == NULL, not) */
        if (w != NULL) {
            w->flight = f;
            w->next = f->waiters;
            f->waiters = w;
        }
        pthread_mutex_unlock(&G.flights_mu);
        return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->key = strdup(key)) == NULL) {
        free(f);
        *err = 1;
        pthread_mutex_unlock(&G.flights_mu);
        return NULL;
    }
    f->next = G.flights;
    G.flights = f;
    pthread_mutex_unlock(&G.flights_mu);
    return f;
}

/* The waiter's exchange ended or gave up: leave the flight. Waiter's thread. */
static void waiter_leave(struct waiter *w)
{
    struct waiter **pp;

    pthread_mutex_lock(&G.flights_mu);
    if (w->flight != NULL) {
        for (pp = &w->flight->waiters; *pp != NULL; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        w->flight = NULL;
    }
    pthread_mutex_unlock(&G.flights_mu);
}

/* ---- answering from a stored object ------------------------------------------ */

struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        char *q;
        while (cap < b->len + n + 1)
            cap *= 2;
        q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_fmt(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void release_ref(const void *data, size_t len, void *arg)
{
    weir_cache_obj_release(arg);
}

/* Add body bytes [first, last] of o to buf by reference. */
static int add_body(struct evbuffer *buf, struct weir_cache_obj *o, uint64_t first, uint64_t last)
{
    struct weir_cache_cursor cur = {NULL, 0};
    uint64_t end = last + 1, off = first, len = weir_cache_obj_length(o);
    const char *p;

    if (end > len)
        end = len;
    while (off < end) {
        size_t k = weir_cache_obj_span(o, &cur, off, end, &p);
        if (k == 0)
            return -1;
        weir_cache_obj_retain(o);
        if (evbuffer_add_reference(buf, p, k, release_ref, o) != 0) {
            weir_cache_obj_release(o);
            return -1;
        }
        off += k;
    }
    return 0;
}

/* Stored fields to send (not the ones we set ourselves). */
static int skip_field(const struct weir_http_header *h, int drop_type)
{
    return weir_span_ieq(h->name, h->name_len, "age") ||
           weir_span_ieq(h->name, h->name_len, "x-request-id") ||
           (drop_type && weir_span_ieq(h->name, h->name_len, "content-type"));
}

static void add_fields(struct sbuf *b, const struct weir_cache_obj *o, int only_304, int drop_type)
{
    for (size_t i = 0; i < o->nheaders; i++) {
        const struct weir_http_header *h = &o->headers[i];
        if (skip_field(h, drop_type) || (only_304 && !weir_cache_304_keeps(h->name, h->name_len)))
            continue;
        sb_add(b, h->name, h->name_len);
        sb_add(b, ": ", 2);
        sb_add(b, h->value, h->value_len);
        sb_add(b, "\r\n", 2);
    }
}

/*
 * Answer x from o with this Cache-Status value (NULL: "weir; hit; ttl=N;
 * detail=" + detail). Evaluates the request's preconditions and Range.
 * Returns WEIR_OK or WEIR_ERROR (nothing was answered).
 */
static int serve_cs(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                    const char *detail, const char *cstatus)
{
    const struct weir_http_msg *m = c->req;
    struct sbuf b = {0};
    struct evbuffer *body = NULL;
    struct weir_range r[WEIR_RANGE_MAX];
    size_t nr = 0;
    int status = o->status, cond, range = WEIR_RANGE_NONE, rc;
    uint64_t len = weir_cache_obj_length(o);
    char boundary[40];

    cond = weir_cache_conditional(c->method, m->headers, m->nheaders, o->headers, o->nheaders,
                                  o->times.response_time);
    if (cond == WEIR_COND_NOT_MODIFIED)
        status = 304;
    else if (cond == WEIR_COND_FAILED)
        status = 412;
    else if (o->status == 200)
        range = weir_cache_range(c->method, m->headers, m->nheaders, o->headers, o->nheaders, len, r, &nr);

    if (status == 412) {
        if (cstatus != NULL)
            sb_fmt(&b, "Cache-Status: %s\r\n", cstatus);
        else
            sb_fmt(&b, "Cache-Status: weir; hit; detail=%s\r\n", detail);
        rc = b.oom ? WEIR_ERROR : weir_exchange_respond(c->x, 412, b.p, b.len, NULL);
        free(b.p);
        return rc;
    }
    add_fields(&b, o, status == 304, range == WEIR_RANGE_MULTI);
    sb_fmt(&b, "Age: %lld\r\n", (long long)v->age);
    if (cstatus != NULL)
        sb_fmt(&b, "Cache-Status: %s\r\n", cstatus);
    else
        sb_fmt(&b, "Cache-Status: weir; hit; ttl=%lld; detail=%s\r\n", (long long)v->ttl, detail);
    if (status != 304) {
        body = evbuffer_new();
        if (body == NULL) {
            free(b.p);
            return WEIR_ERROR;
        }
        if (range == WEIR_RANGE_SINGLE) {
            status = 206;
            sb_fmt(&b, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)r[0].first,
                   (unsigned long long)r[0].last, (unsigned long long)len);
            if (add_body(body, o, r[0].first, r[0].last) < 0)
                b.oom = 1;
        } else if (range == WEIR_RANGE_MULTI) {
            const struct weir_http_header *ct = weir_cache_obj_header(o, "content-type");
            status = 206;
            snprintf(boundary, sizeof(boundary), "weir%016llx",
                     (unsigned long long)weir_now_us() ^ (uintptr_t)c);
            sb_fmt(&b, "Content-Type: multipart/byteranges; boundary=%s\r\n", boundary);
            for (size_t i = 0; i < nr && !b.oom; i++) {
                char part[512];
                int pn = snprintf(part, sizeof(part),
                                  "%s--%s\r\n%s%.*s%sContent-Range: bytes %llu-%llu/%llu\r\n\r\n",
                                  i ? "\r\n" : "", boundary, ct ? "Content-Type: " : "",
                                  ct ? (int)(ct->value_len > 200 ? 200 : ct->value_len) : 0,
                                  ct ? ct->value : "", ct ? "\r\n" : "", (unsigned long long)r[i].first,
                                  (unsigned long long)r[i].last, (unsigned long long)len);
                if (evbuffer_add(body, part, (size_t)pn) != 0 || add_body(body, o, r[i].first, r[i].last) < 0)
                    b.oom = 1;
            }
            {
                char tail[64];
                int tn = snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", boundary);
                if (evbuffer_add(body, tail, (size_t)tn) != 0)
                    b.oom = 1;
            }
        } else if (range == WEIR_RANGE_UNSATISFIABLE) {
            status = 416;
            sb_fmt(&b, "Content-Range: bytes */%llu\r\n", (unsigned long long)len);
        } else if (len > 0 && add_body(body, o, 0, len - 1) < 0) {
            b.oom = 1;
        }
    }
    rc = b.oom ? WEIR_ERROR : weir_exchange_respond(c->x, status, b.p, b.len, body);
    if (body != NULL)
        evbuffer_free(body);
    free(b.p);
    return rc;
}

static int serve(struct cx *c, struct weir_cache_obj *o, const struct weir_cache_verdict *v,
                 const char *detail)
{
    return serve_cs(c, o, v, detail, NULL);
}

/* Can o answer this request now? Fills v. */
static int usable(struct cx *c, struct weir_cache_obj *o, int64_t lifetime, struct weir_cache_verdict *v)
{
    weir_cache_decide(&o->cc, lifetime, &o->times, &c->qcc, wall_now(), v);
    return v->use == WEIR_USE_FRESH || v->use == WEIR_USE_STALE || v->use == WEIR_USE_STALE_REVALIDATE;
}

/* ---- purge rules ------------------------------------------------------------- */

static void rule_add(char kind, int soft, const char *value)
{
    char *v = strdup(value);
    struct rule *r;

    if (v == NULL)
        return;
    pthread_mutex_lock(&G.rules_mu);
    r = &G.rules[G.next_rule];
    free(r->value);
    r->kind = kind;
    r->soft = (char)soft;
    r->at = wall_now();
    r->value = v;
    G.next_rule = (G.next_rule + 1) % RULES_MAX;
    if (G.nrules < RULES_MAX)
        G.nrules++;
    pthread_mutex_unlock(&G.rules_mu);
}

/* An L2 value after the purges it predates: -1 refused (a hard purge), or
 * the lifetime to judge it by (a soft purge caps it at its age then). */
static int64_t rules_apply(const struct weir_cache_obj *o)
{
    int64_t lifetime = o->lifetime, now = wall_now();

    pthread_mutex_lock(&G.rules_mu);
    for (size_t i = 0; i < G.nrules; i++) {
        const struct rule *r = &G.rules[i];
        int match;
        if (r->value == NULL || r->at < o->stored_time || r->at + RULES_SECONDS < now)
            continue;
        if (r->kind == 'u')
            match = strcmp(o->url, r->value) == 0;
        else if (r->kind == 'p')
            match = strncmp(o->url, r->value, strlen(r->value)) == 0;
        else
            match = weir_cache_obj_has_tag(o, r->value);
        if (!match)
            continue;
        if (!r->soft) {
            lifetime = -1;
            break;
        }
        int64_t age = weir_cache_age(&o->times, r->at);
        if (age < lifetime)
            lifetime = age;
    }
    pthread_mutex_unlock(&G.rules_mu);
    return lifetime;
}

/* ---- L2 ---------------------------------------------------------------------- */

static size_t l2_key(char *out, size_t size, const char *key, const char *vary_values, size_t vlen)
{
    if (vary_values == NULL)
        return (size_t)snprintf(out, size, L2_OBJ "%s", key);
    /* a variant: the key plus a hash of its Vary values */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < vlen; i++) {
        h ^= (unsigned char)vary_values[i];
        h *= 0x100000001b3ull;
    }
    return (size_t)snprintf(out, size, L2_OBJ "%s#%016llx", key, (unsigned long long)h);
}

static void l2_store(struct cache_worker *cw, struct weir_cache_obj *o)
{
    size_t len, kl;
    char *val, kbuf[2048];
    int64_t ttl = (o->times.response_time + o->keep - wall_now()) * 1000;

    if (cw->l2 == NULL || !weir_cache_redis_usable(cw->l2) || ttl <= 0 || strlen(o->key) > 1900)
        return;
    val = weir_cache_obj_encode(o, &len);
    if (val == NULL)
        return;
    /* the latest variant under the key itself (one round trip for most
     * lookups), and every variant under key#hash(Vary values) */
    kl = l2_key(kbuf, sizeof(kbuf), o->key, NULL, 0);
    weir_cache_redis_set(cw->l2, kbuf, kl, val, len, ttl, NULL, NULL, NULL);
    if (o->vary_names[0] != '\0') {
        kl = l2_key(kbuf, sizeof(kbuf), o->key, o->vary_values, o->vary_values_len);
        weir_cache_redis_set(cw->l2, kbuf, kl, val, len, ttl, NULL, NULL, NULL);
    }
    free(val);
}

static int go_upstream(struct cx *c, int resume);
static void l2_reply(void *arg, int status, const char *data, size_t len);

/* Send the L2 GET. WEIR_OK (l2_reply follows) or WEIR_DECLINED. */
static int l2_lookup(struct cx *c, const char *vary_values, size_t vlen)
{
    char kbuf[2048];
    size_t kl = l2_key(kbuf, sizeof(kbuf), c->key, vary_values, vlen);

    if (weir_cache_redis_get(c->cw->l2, kbuf, kl, l2_reply, c, &c->l2cmd) != WEIR_OK) {
        c->l2cmd = NULL;
        return WEIR_DECLINED;
    }
    return WEIR_OK;
}

/* ---- the lease between instances: one fetches, the others wait for L2 ---- */

static size_t lease_key(char *out, size_t size, const char *key)
{
    return (size_t)snprintf(out, size, L2_LEASE "%s", key);
}

/* The leader's word to the waiting instances: "pass" (not storable: fetch
 * yourselves) or the lease deleted (aborted). */
static void lease_release(struct cache_worker *cw, const char *key, int pass)
{
    char kbuf[2048];
    size_t kl = lease_key(kbuf, sizeof(kbuf), key);

    if (cw->l2 == NULL || !weir_cache_redis_usable(cw->l2) || strlen(key) > 1900)
        return;
    if (pass)
        weir_cache_redis_set(cw->l2, kbuf, kl, "pass", 4, 10000, NULL, NULL, NULL);
    else
        weir_cache_redis_del(cw->l2, kbuf, kl, NULL, NULL, NULL);
}

static void lease_wait(struct cx *c);

static void lease_state_reply(void *arg, int status, const char *data, size_t len)
{
    struct cx *c = arg;

    c->l2cmd = NULL;
    /* the lease is gone (expired, aborted) or says "pass": fetch ourselves */
    if (status != WEIR_REDIS_OK || (len == 4 && memcmp(data, "pass", 4) == 0)) {
        go_upstream(c, 1);
        return;
    }
    lease_wait(c);
}

static void lease_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cx *c = arg;

    if (l2_lookup(c, NULL, 0) != WEIR_OK)
        go_upstream(c, 1);
}

static void lease_wait(struct cx *c)
{
    struct timeval tv = {0, LEASE_POLL_MS * 1000};

    if (weir_now_us() >= c->lease_until_us) {
        go_upstream(c, 1); /* waited long enough */
        return;
    }
    if (c->poll == NULL)
        c->poll = evtimer_new(c->cw->base, lease_poll_cb, c);
    if (c->poll == NULL) {
        go_upstream(c, 1);
        return;
    }
    evtimer_add(c->poll, &tv);
}

static void lease_reply(void *arg, int status, long long v)
{
    struct cx *c = arg;

    c->l2cmd = NULL;
    if (status == WEIR_REDIS_MISS) { /* another instance fetches it */
        c->polling = 1;
        c->lease_until_us = weir_now_us() + (uint64_t)LEASE_MS * 1000;
        lease_wait(c);
        return;
    }
    c->leased = status == WEIR_REDIS_OK;
    go_upstream(c, 1);
}

/* L2 has no value for the key. */
static void l2_missed(struct cx *c)
{
    char kbuf[2048], token[64];
    size_t kl = lease_key(kbuf, sizeof(kbuf), c->key);

    if (c->polling) { /* still waiting for the lease holder: how is it doing? */
        if (weir_cache_redis_get(c->cw->l2, kbuf, kl, lease_state_reply, c, &c->l2cmd) != WEIR_OK)
            go_upstream(c, 1);
        return;
    }
    snprintf(token, sizeof(token), "%ld:%d", (long)getpid(), c->cw->id);
    if (strlen(c->key) > 1900 || c->method != WEIR_HTTP_GET ||
        weir_cache_redis_lease(c->cw->l2, kbuf, kl, token, LEASE_MS, lease_reply, c, &c->l2cmd) != WEIR_OK)
        go_upstream(c, 1);
}

static void l2_reply(void *arg, int status, const char *data, size_t len)
{
    struct cx *c = arg;
    struct weir_cache_obj *o;
    struct weir_cache_verdict v;
    int err;

    c->l2cmd = NULL;
    if (status == WEIR_REDIS_MISS && !c->l2_second) {
        l2_missed(c);
        return;
    }
    if (status != WEIR_REDIS_OK) {
        go_upstream(c, 1);
        return;
    }
    o = weir_cache_obj_decode(data, len, G.max_object_bytes, &err);
    if (o == NULL || strcmp(o->key, c->key) != 0) {
        /* not ours, truncated, another version, or another key: a miss, deleted */
        char kbuf[2048];
        size_t kl = l2_key(kbuf, sizeof(kbuf), c->key, NULL, 0);
        count(&c->cw->l2_garbage);
        weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_L2_GARBAGE);
        weir_log_warn("cache: L2 value for %s refused (%s): deleted", c->key,
                      o == NULL ? weir_cache_decode_error_name(err) : "other key");
        weir_cache_redis_del(c->cw->l2, kbuf, kl, NULL, NULL, NULL);
        weir_cache_obj_release(o);
        go_upstream(c, 1);
        return;
    }
    if (o->vary_names[0] != '\0') {
        size_t vl;
        char *vv = weir_cache_vary_values(o->vary_names, c->req->headers, c->req->nheaders, &vl);
        int same = vv != NULL && vl == o->vary_values_len && memcmp(vv, o->vary_values, vl) == 0;
        if (!same && vv != NULL && !c->l2_second) {
            /* another variant: look for ours under key#hash */
            c->l2_second = 1;
            weir_cache_obj_release(o);
            if (l2_lookup(c, vv, vl) != WEIR_OK)
                go_upstream(c, 1);
            free(vv);
            return;
        }
        free(vv);
        if (!same) {
            weir_cache_obj_release(o);
            go_upstream(c, 1);
            return;
        }
    }
    {
        int64_t lifetime = rules_apply(o);
        if (lifetime < 0) { /* purged after it was stored */
            weir_cache_obj_release(o);
            go_upstream(c, 1);
            return;
        }
        if (lifetime < o->lifetime) { /* soft-purged: stale from then on */
            o->lifetime = lifetime;
            o->keep = weir_cache_keep_seconds(&o->cc, lifetime, &o->times, 1);
        }
    }
    weir_cache_l1_insert(G.l1, o, wall_now()); /* promoted */
    if (!usable(c, o, o->lifetime, &v) || serve(c, o, &v, "l2") != WEIR_OK) {
        weir_cache_obj_release(o);
        go_upstream(c, 1);
        return;
    }
    weir_cache_obj_release(o);
    count(&c->cw->hit_l2);
    if (v.use != WEIR_USE_FRESH)
        count(&c->cw->stale_served);
    weir_cache_stats_result(c->rs, c->cw->id, v.use == WEIR_USE_FRESH ? WEIR_CSR_L2_HIT : WEIR_CSR_L2_STALE);
    flight_end(c->lead, WEIR_OK); /* our waiters find it in L1 */
    c->lead = NULL;
    c->state = CX_DONE;
    weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
}

/* ---- the store filter ---------------------------------------------------------- */

static void store_free(struct store *s)
{
    weir_cache_obj_release(s->obj);
    free(s->url);
    free(s->key);
    free(s);
}

/* Response-intrinsic reasons leave a hit-for-miss mark; request-dependent
 * ones (conditional 304, Authorization, no-store in the request) do not. */
static int marks_hfm(int reason, int status)
{
    switch (reason) {
    case WEIR_STORE_NO_STORE:
    case WEIR_STORE_PRIVATE:
    case WEIR_STORE_SET_COOKIE:
    case WEIR_STORE_VARY_STAR:
    case WEIR_STORE_NO_FRESHNESS:
    case WEIR_STORE_MUST_UNDERSTAND:
    case REASON_TOO_BIG:
        return 1;
    case WEIR_STORE_STATUS:
        return status != 304 && status != 206;
    default:
        return 0;
    }
}

static void not_stored(struct store *s, int reason, int status)
{
    if (s->leased)
        lease_release(s->cw, s->key, 1);
    s->leased = 0;
    count(&s->cw->not_storable);
    if (reason >= 0 && reason < 16)
        count(&s->cw->not_storable_by[reason]);
    weir_cache_stats_not_storable(s->rs, s->cw->id, reason);
    if (marks_hfm(reason, status))
        weir_cache_l1_mark_hfm(G.l1, s->key, wall_now() + HFM_SECONDS);
    flight_end(s->flight, WEIR_DECLINED);
    s->flight = NULL;
}

static int store_on_head(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m)
{
    struct store *s = fdata;
    struct weir_cc rcc;
    int reason;

    weir_cc_response(&rcc, m->headers, m->nheaders);
    reason = weir_cache_storable(WEIR_HTTP_GET, s->req->headers, s->req->nheaders, m->status, m->headers,
                                 m->nheaders, &rcc);
    if (reason != WEIR_STORE_OK) {
        not_stored(s, reason, m->status);
        return WEIR_DECLINED;
    }
    s->obj = weir_cache_obj_new(s->key, s->url, s->req->headers, s->req->nheaders, m->status, m->headers,
                                m->nheaders, s->request_time, wall_now(), G.max_object_bytes);
    if (s->obj == NULL || weir_cache_obj_state(s->obj) != WEIR_OBJ_GROWING) {
        not_stored(s, REASON_TOO_BIG, m->status); /* announced too big: mark it */
        return WEIR_DECLINED;
    }
    return WEIR_OK;
}

static int store_on_data(struct weir_exchange *x, void *fdata, const char *p, size_t n)
{
    struct store *s = fdata;

    if (weir_cache_obj_append(s->obj, p, n) != WEIR_OK) {
        not_stored(s, REASON_TOO_BIG, 200); /* grew past max_object_bytes */
        return WEIR_DECLINED;
    }
    return WEIR_OK;
}

static void store_on_end(struct weir_exchange *x, void *fdata)
{
    struct store *s = fdata;

    if (s->obj != NULL && weir_cache_obj_finish(s->obj) == WEIR_OK &&
        weir_cache_l1_insert(G.l1, s->obj, wall_now()) != WEIR_ERROR) {
        count(&s->cw->stored);
        weir_cache_stats_event(s->rs, s->cw->id, WEIR_CSE_STORED);
        l2_store(s->cw, s->obj);
        flight_end(s->flight, WEIR_OK);
    } else {
        if (s->leased)
            lease_release(s->cw, s->key, 0);
        flight_end(s->flight, WEIR_DECLINED);
    }
    s->flight = NULL;
    store_free(s);
}

static void store_on_abort(struct weir_exchange *x, void *fdata)
{
    struct store *s = fdata;

    if (s->obj != NULL)
        weir_cache_obj_abandon(s->obj);
    if (s->leased)
        lease_release(s->cw, s->key, 0);
    flight_end(s->flight, WEIR_DECLINED);
    s->flight = NULL;
    store_free(s);
}

static const struct weir_resp_filter store_filter = {"cache-store", store_on_head, store_on_data,
                                                     store_on_end, store_on_abort};

/* Go upstream with a store filter (unless the request forbids storing),
 * or answer 504 to only-if-cached. Returns the hook's answer; when resume,
 * resumes the suspended exchange with it instead. */
static int go_upstream(struct cx *c, int resume)
{
    struct store *s = NULL;

    count(&c->cw->miss);
    if (c->qcc.flags & WEIR_CC_ONLY_IF_CACHED) {
        /* §5.2.1.7: nothing stored may answer: 504 */
        static const char f[] = "Cache-Status: weir; fwd=miss; detail=only-if-cached\r\n";
        count(&c->cw->only_if_cached);
        flight_end(c->lead, WEIR_DECLINED);
        c->lead = NULL;
        c->state = CX_DONE;
        if (weir_exchange_respond(c->x, 504, f, sizeof(f) - 1, NULL) == WEIR_OK) {
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_ONLY_IF_CACHED);
            if (resume)
                weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return WEIR_HOOK_ANSWERED;
        }
    }
    weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_MISS);
    if (c->method == WEIR_HTTP_GET && c->req != NULL && !(c->qcc.flags & WEIR_CC_NO_STORE))
        s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->cw = c->cw;
        s->rs = c->rs;
        s->url = strdup(c->url);
        s->key = strdup(c->key);
        s->req = c->req;
        s->request_time = c->request_time;
        s->flight = c->lead;
        s->leased = c->leased;
        c->leased = 0;
        if (s->url == NULL || s->key == NULL || weir_exchange_add_filter(c->x, &store_filter, s) != WEIR_OK) {
            s->flight = NULL;
            store_free(s);
        } else {
            c->lead = NULL; /* the filter ends the flight */
        }
    }
    flight_end(c->lead, WEIR_DECLINED); /* HEAD, no-store, or no filter: waiters go too */
    c->lead = NULL;
    c->state = CX_DONE;
    if (resume)
        weir_exchange_resume(c->x, WEIR_HOOK_CONTINUE);
    return WEIR_HOOK_CONTINUE;
}

/* ---- coalesced waiters ---------------------------------------------------------- */

/* A waiter woken (by its leader or its timer), on its own worker. */
static void waiter_wake(struct waiter *w, int timed_out)
{
    struct cx *c = w->cx;
    struct weir_l1_hit hit;
    struct weir_cache_verdict v;

    if (w->woken)
        return;
    w->woken = 1;
    if (timed_out)
        waiter_leave(w); /* a wake-up already queued finds w->woken */
    else if (w->timer != NULL)
        evtimer_del(w->timer);
    if (!timed_out && (w->result == WEIR_OK || w->result == STALE_OK) &&
        weir_cache_l1_lookup(G.l1, c->key, c->req->headers, c->req->nheaders, wall_now(), &hit) == WEIR_OK) {
        int ok = usable(c, hit.obj, hit.lifetime, &v);
        if ((ok && serve(c, hit.obj, &v, "l1") == WEIR_OK) ||
            (!ok && w->result == STALE_OK && v.stale_if_error &&
             serve_cs(c, hit.obj, &v, "l1", "weir; fwd=stale; collapsed; detail=stale-if-error") ==
                 WEIR_OK)) {
            weir_cache_obj_release(hit.obj);
            count(&c->cw->coalesced);
            count(ok ? &c->cw->hit_l1 : &c->cw->stale_served);
            weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_COALESCED);
            weir_cache_stats_result(c->rs, c->cw->id,
                                    !ok                       ? WEIR_CSR_STALE_ERROR
                                    : v.use == WEIR_USE_FRESH ? WEIR_CSR_L1_HIT
                                                              : WEIR_CSR_L1_STALE);
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
        weir_cache_obj_release(hit.obj);
    }
    c->state = CX_DONE;
    count(&c->cw->miss);
    weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_MISS);
    weir_exchange_resume(c->x, WEIR_HOOK_CONTINUE);
}

static void waiter_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    waiter_wake(arg, 1);
}

static void inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache_worker *cw = arg;
    struct waiter *list, *w, *next;
    uint64_t n;

    if (read(cw->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        weir_log_warn("cache: worker %d inbox: %s", cw->id, strerror(errno));
    pthread_mutex_lock(&cw->mu);
    list = cw->inbox;
    cw->inbox = NULL;
    pthread_mutex_unlock(&cw->mu);
    for (w = list; w != NULL; w = next) {
        next = w->next;
        waiter_wake(w, 0);
    }
}

/* ---- revalidation ------------------------------------------------------------------ */

static int fetch_timeout_ms(void)
{
    struct weir_rt *rt = weir_rt_current();
    int ms = 32000;

    if (rt != NULL) {
        ms = rt->conf->timeouts.connect_ms + rt->conf->timeouts.upstream_response_ms;
        weir_rt_release(rt);
    }
    return ms;
}

static void store_fetched(struct cache_worker *cw, struct weir_cache_obj *o, struct weir_cache_rstats *rs)
{
    count(&cw->revalidated);
    if (weir_cache_l1_insert(G.l1, o, wall_now()) == WEIR_OK) {
        count(&cw->stored);
        weir_cache_stats_event(rs, cw->id, WEIR_CSE_STORED);
    }
    l2_store(cw, o);
}

/* A background revalidation (stale-while-revalidate): one per key, as the
 * leader of the key's flight, not tied to any client. */
struct bg {
    struct bg *next;
    struct cache_worker *cw;
    struct flight *f;
    struct weir_cache_fetch *fetch;
    char *url;
    struct weir_cache_rstats *rs;
};

static void bg_unlink(struct bg *b)
{
    for (struct bg **pp = &b->cw->bgs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
}

static void bg_done(void *arg, int result, struct weir_cache_obj *o, int status)
{
    struct bg *b = arg;

    bg_unlink(b);
    weir_cache_stats_event(b->rs, b->cw->id,
                           result == WEIR_FETCH_NOT_MODIFIED ? WEIR_CSE_REVALIDATED_304
                           : result == WEIR_FETCH_STORED     ? WEIR_CSE_REVALIDATED_200
                                                             : -1);
    if (result == WEIR_FETCH_STORED || result == WEIR_FETCH_NOT_MODIFIED)
        store_fetched(b->cw, o, b->rs);
    else if (result == WEIR_FETCH_NOT_STORABLE && status != 304)
        weir_cache_l1_purge_url(G.l1, b->url, 0, wall_now()); /* no longer cacheable */
    weir_cache_obj_release(o);
    flight_end(b->f, result == WEIR_FETCH_ERROR ? STALE_OK : WEIR_OK);
    free(b->url);
    free(b);
}

static void start_background(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *stale)
{
    struct flight *f;
    struct bg *b;
    int err;

    if (pool == NULL || (f = flight_join(c->key, NULL, &err)) == NULL)
        return; /* a fetch for this key runs already: exactly one */
    b = calloc(1, sizeof(*b));
    if (b != NULL && (b->url = strdup(c->url)) != NULL) {
        b->cw = c->cw;
        b->rs = c->rs;
        b->f = f;
        b->fetch = weir_cache_fetch_start(c->cw->base, pool, stale, c->req->headers, c->req->nheaders,
                                          fetch_timeout_ms(), G.max_object_bytes, bg_done, b);
        if (b->fetch != NULL) {
            weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_ORIGIN_FETCH);
            b->next = c->cw->bgs;
            c->cw->bgs = b;
            return;
        }
        free(b->url);
    }
    free(b);
    flight_end(f, STALE_OK);
}

/* Foreground revalidation done (the client waits, suspended). */
static void fg_done(void *arg, int result, struct weir_cache_obj *o, int status)
{
    struct cx *c = arg;
    struct weir_cache_verdict v;
    char cs[160];

    c->fetch = NULL;
    weir_cache_stats_event(c->rs, c->cw->id,
                           result == WEIR_FETCH_NOT_MODIFIED ? WEIR_CSE_REVALIDATED_304
                           : result == WEIR_FETCH_STORED     ? WEIR_CSE_REVALIDATED_200
                                                             : -1);
    if (result == WEIR_FETCH_STORED || result == WEIR_FETCH_NOT_MODIFIED) {
        store_fetched(c->cw, o, c->rs);
        snprintf(cs, sizeof(cs), "weir; fwd=stale; fwd-status=%d; stored; detail=revalidated", status);
        /* just validated with the origin: it answers this request whatever
         * the request's no-cache or max-age asked (RFC 9111 4.3.3) */
        struct weir_cc none;
        weir_cc_init(&none);
        weir_cache_decide(&o->cc, o->lifetime, &o->times, &none, wall_now(), &v);
        if (serve_cs(c, o, &v, "l1", cs) == WEIR_OK) {
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_REVALIDATED);
            weir_cache_obj_release(o);
            flight_end(c->lead, WEIR_OK);
            c->lead = NULL;
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
    } else if (result == WEIR_FETCH_ERROR && c->sv.stale_if_error) {
        snprintf(cs, sizeof(cs), "weir; fwd=stale; fwd-status=%d; detail=stale-if-error", status);
        c->sv.age = weir_cache_age(&c->stale->times, wall_now());
        if (serve_cs(c, c->stale, &c->sv, "l1", cs) == WEIR_OK) {
            count(&c->cw->stale_served);
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_STALE_ERROR);
            flight_end(c->lead, STALE_OK);
            c->lead = NULL;
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
    }
    weir_cache_obj_release(o);
    go_upstream(c, 1); /* the session's own path answers (and its filter stores) */
}

/* A stored response that may not be used as is: revalidate it while the
 * client waits, when a 304 could save the body or stale-if-error could
 * answer a failure. Returns the hook's answer, or -1 to go on as a miss. */
static int revalidate(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *o,
                      const struct weir_cache_verdict *v)
{
    int err;

    if (!v->stale_if_error && weir_cache_obj_header(o, "etag") == NULL &&
        weir_cache_obj_header(o, "last-modified") == NULL)
        return -1;
    c->w = calloc(1, sizeof(*c->w));
    if (c->w == NULL)
        return -1;
    c->w->cx = c;
    c->w->cw = c->cw;
    c->lead = flight_join(c->key, c->w, &err);
    if (c->lead == NULL) {
        if (err) {
            free(c->w);
            c->w = NULL;
            return -1;
        }
        struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
        c->w->timer = evtimer_new(c->cw->base, waiter_timer_cb, c->w);
        if (c->w->timer != NULL)
            evtimer_add(c->w->timer, &tv);
        c->state = CX_WAITING;
        return WEIR_HOOK_SUSPENDED;
    }
    free(c->w);
    c->w = NULL;
    weir_cache_obj_retain(o);
    c->stale = o;
    c->sv = *v;
    c->fetch = pool != NULL ? weir_cache_fetch_start(c->cw->base, pool, o, c->req->headers, c->req->nheaders,
                                                     fetch_timeout_ms(), G.max_object_bytes, fg_done, c)
                            : NULL;
    if (c->fetch != NULL) {
        weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_ORIGIN_FETCH);
        c->state = CX_L2;
        return WEIR_HOOK_SUSPENDED;
    }
    /* no server available in the pool */
    if (v->stale_if_error &&
        serve_cs(c, o, v, "l1", "weir; fwd=stale; fwd-status=503; detail=stale-if-error") == WEIR_OK) {
        count(&c->cw->stale_served);
        weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_STALE_ERROR);
        flight_end(c->lead, STALE_OK);
        c->lead = NULL;
        c->state = CX_DONE;
        return WEIR_HOOK_ANSWERED;
    }
    return go_upstream(c, 0);
}

/* ---- the hook ---------------------------------------------------------------------- */

static void cx_free(struct cx *c)
{
    free(c->url);
    free(c->key);
    free(c);
}

static int on_request_unsafe(struct weir_exchange *x, const struct weir_req_info *ri, struct cache_worker *cw,
                             char *url);

static int on_request(struct weir_exchange *x, const struct weir_req_info *ri, void **hook_data)
{
    struct cache_worker *cw;
    struct cx *c;
    struct weir_l1_hit hit;
    struct weir_cache_verdict v;
    int err, wid = weir_exchange_worker_id(x);
    char *url;

    if (ri->route == NULL || !ri->route->cache || wid < 0 || wid >= WEIR_MAX_WORKERS ||
        (cw = G.workers[wid]) == NULL)
        return WEIR_HOOK_CONTINUE;
    url = weir_cache_url("http", ri->host, ri->host_len, ri->target, ri->target_len);
    if (url == NULL)
        return WEIR_HOOK_CONTINUE;
    if (!weir_http_method_safe(ri->method_id))
        return on_request_unsafe(x, ri, cw, url);
    if (ri->method_id != WEIR_HTTP_GET && ri->method_id != WEIR_HTTP_HEAD) {
        free(url);
        return WEIR_HOOK_CONTINUE;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        free(url);
        return WEIR_HOOK_CONTINUE;
    }
    c->x = x;
    c->cw = cw;
    c->rs = weir_cache_stats_for(wid, ri->route->stats);
    c->method = ri->method_id;
    c->url = url;
    c->key = weir_cache_key(ri->method_id, url);
    /* The parsed head is valid during on_request only; a hit is answered
     * from it, anything that goes on later takes a stable copy first. */
    c->req = ri->msg;
    c->request_time = wall_now();
    *hook_data = c;
    if (c->key == NULL || c->req == NULL)
        return WEIR_HOOK_CONTINUE;
    weir_cc_request(&c->qcc, c->req->headers, c->req->nheaders);

    /* L1 */
    if (weir_cache_l1_lookup(G.l1, c->key, c->req->headers, c->req->nheaders, wall_now(), &hit) == WEIR_OK) {
        int ok = usable(c, hit.obj, hit.lifetime, &v), rc;
        if (ok && serve(c, hit.obj, &v, "l1") == WEIR_OK) {
            if (v.use == WEIR_USE_STALE_REVALIDATE)
                start_background(c, ri->pool, hit.obj);
            weir_cache_obj_release(hit.obj);
            count(&cw->hit_l1);
            if (v.use != WEIR_USE_FRESH)
                count(&cw->stale_served);
            weir_cache_stats_result(c->rs, wid,
                                    v.use == WEIR_USE_FRESH ? WEIR_CSR_L1_HIT : WEIR_CSR_L1_STALE);
            c->state = CX_DONE;
            return WEIR_HOOK_ANSWERED;
        }
        c->req = weir_exchange_request(x);
        rc = ok || c->req == NULL ? -1 : revalidate(c, ri->pool, hit.obj, &v);
        weir_cache_obj_release(hit.obj);
        if (rc >= 0)
            return rc;
        /* refused by the request, or nothing to revalidate with: fetch
         * again like a miss (the store filter replaces it) */
    }
    c->req = weir_exchange_request(x);
    if (c->req == NULL) /* out of memory: no store, no wait */
        return WEIR_HOOK_CONTINUE;
    if (hit.hit_for_miss || c->method != WEIR_HTTP_GET)
        return go_upstream(c, 0);

    /* coalesce */
    c->w = calloc(1, sizeof(*c->w));
    if (c->w != NULL) {
        c->w->cx = c;
        c->w->cw = cw;
        c->lead = flight_join(c->key, c->w, &err);
        if (c->lead == NULL && !err) {
            struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
            c->w->timer = evtimer_new(cw->base, waiter_timer_cb, c->w);
            if (c->w->timer != NULL)
                evtimer_add(c->w->timer, &tv);
            c->state = CX_WAITING;
            return WEIR_HOOK_SUSPENDED;
        }
        free(c->w);
        c->w = NULL;
    }

    /* L2 */
    if (cw->l2 != NULL && weir_cache_redis_usable(cw->l2) && l2_lookup(c, NULL, 0) == WEIR_OK) {
        c->state = CX_L2;
        return WEIR_HOOK_SUSPENDED;
    }
    return go_upstream(c, 0);
}

static void on_end(struct weir_exchange *x, void *hook_data, int aborted)
{
    struct cx *c = hook_data;

    if (c == NULL)
        return;
    if (c->l2cmd != NULL)
        weir_cache_redis_cancel(c->l2cmd);
    if (c->fetch != NULL)
        weir_cache_fetch_cancel(c->fetch);
    if (c->poll != NULL)
        event_free(c->poll);
    if (c->leased)
        lease_release(c->cw, c->key, 0);
    weir_cache_obj_release(c->stale);
    if (c->w != NULL) {
        waiter_leave(c->w);
        if (c->w->timer != NULL)
            event_free(c->w->timer);
        /* a wake-up already queued in the inbox holds w: it sees cx == NULL.
         * The inbox runs on this thread, so w is freed there or here. */
        pthread_mutex_lock(&c->cw->mu);
        for (struct waiter **pp = &c->cw->inbox; *pp != NULL; pp = &(*pp)->next)
            if (*pp == c->w) {
                *pp = c->w->next;
                break;
            }
        pthread_mutex_unlock(&c->cw->mu);
        free(c->w);
    }
    flight_end(c->lead, WEIR_DECLINED);
    cx_free(c);
}

static const struct weir_req_hook cache_hook = {"cache", on_request, on_end};

/* ---- invalidation (§4.4) ---------------------------------------------------------- */

struct inval {
    struct cache_worker *cw;
    int method;
    char *url;
};

static void publish_purge(struct cache_worker *cw, const char *kind, const char *value, int soft);

static int inval_on_head(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m)
{
    struct inval *iv = fdata;
    char *urls[3];
    int n = weir_cache_invalidations(iv->method, m->status, iv->url, m->headers, m->nheaders, urls);

    for (int i = 0; i < n; i++) {
        weir_cache_l1_purge_url(G.l1, urls[i], 0, wall_now());
        publish_purge(iv->cw, "url", urls[i], 0);
        free(urls[i]);
    }
    return WEIR_DECLINED; /* nothing more to see */
}

static void inval_on_abort(struct weir_exchange *x, void *fdata)
{
    struct inval *iv = fdata;
    free(iv->url);
    free(iv);
}

static const struct weir_resp_filter inval_filter = {"cache-invalidate", inval_on_head, NULL, inval_on_abort,
                                                     inval_on_abort};

static int on_request_unsafe(struct weir_exchange *x, const struct weir_req_info *ri, struct cache_worker *cw,
                             char *url)
{
    struct inval *iv = calloc(1, sizeof(*iv));

    if (iv == NULL) {
        free(url);
        return WEIR_HOOK_CONTINUE;
    }
    iv->cw = cw;
    iv->method = ri->method_id;
    iv->url = url;
    if (weir_exchange_add_filter(x, &inval_filter, iv) != WEIR_OK)
        inval_on_abort(x, iv);
    return WEIR_HOOK_CONTINUE;
}

/* ---- purges ---------------------------------------------------------------------------- */

/* Message: "GEN KIND SOFT VALUE". */
static void publish_purge(struct cache_worker *cw, const char *kind, const char *value, int soft)
{
    char msg[4096];
    int n;

    if (cw == NULL || cw->l2 == NULL || !weir_cache_redis_usable(cw->l2))
        return;
    if (strcmp(kind, "url") == 0) {
        char kbuf[2048], *key = weir_cache_key(WEIR_HTTP_GET, value);
        if (key != NULL) {
            size_t kl = l2_key(kbuf, sizeof(kbuf), key, NULL, 0);
            weir_cache_redis_del(cw->l2, kbuf, kl, NULL, NULL, NULL);
            free(key);
        }
    }
    weir_cache_redis_incr(cw->l2, PURGE_GEN, strlen(PURGE_GEN), NULL, NULL, NULL);
    n = snprintf(msg, sizeof(msg), "%s %d %s", kind, soft ? 1 : 0, value);
    if (n > 0 && (size_t)n < sizeof(msg))
        weir_cache_redis_publish(cw->l2, PURGE_CHAN, msg, (size_t)n, NULL, NULL, NULL);
}

static size_t purge_local(const char *kind, const char *value, int soft)
{
    int64_t now = wall_now();

    if (strcmp(kind, "url") == 0)
        return weir_cache_l1_purge_url(G.l1, value, soft, now);
    if (strcmp(kind, "prefix") == 0)
        return weir_cache_l1_purge_prefix(G.l1, value, soft, now);
    if (strcmp(kind, "tag") == 0)
        return weir_cache_l1_purge_tag(G.l1, value, soft, now);
    return 0;
}

static void on_purge_message(void *arg, const char *p, size_t n)
{
    char buf[4096], kind[16], *value;
    int soft;

    if (n >= sizeof(buf))
        return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (sscanf(buf, "%15s %d", kind, &soft) != 2)
        return;
    value = strchr(buf, ' ');
    value = value ? strchr(value + 1, ' ') : NULL;
    if (value == NULL)
        return;
    /* each message follows one INCR of the generation, in order */
    long long g = atomic_load(&G.purge_gen);
    while (g >= 0 && !atomic_compare_exchange_weak(&G.purge_gen, &g, g + 1))
        ;
    weir_cache_stats_purged(WEIR_CS_TIER_L1, purge_local(kind, value + 1, soft));
    rule_add(kind[0] == 'u' ? 'u' : kind[0] == 'p' ? 'p' : 't', soft, value + 1);
}

static void gen_reply(void *arg, int status, long long v)
{
    long long prev;

    if (status == WEIR_REDIS_MISS)
        v = 0;
    else if (status != WEIR_REDIS_OK)
        return;
    prev = atomic_exchange(&G.purge_gen, v);
    /* purges were published while we were not listening: drop what we
     * can no longer trust */
    if (prev >= 0 && prev != v) {
        size_t n = weir_cache_l1_purge_all(G.l1);
        weir_cache_stats_purged(WEIR_CS_TIER_L1, n);
        weir_log_warn("cache: purges happened while the purge channel was down: dropped %zu L1 objects", n);
    }
}

static void on_subscribed(void *arg)
{
    struct cache_worker *cw = arg;
    weir_cache_redis_getint(cw->l2, PURGE_GEN, strlen(PURGE_GEN), gen_reply, NULL, NULL);
}

struct purge_req {
    weir_cache_purge_cb cb;
    void *arg;
    size_t l1;
};

static void purge_del_done(void *arg, int status, long long v)
{
    struct purge_req *p = arg;
    p->cb(p->arg, p->l1, status == WEIR_REDIS_OK ? (size_t)v : 0, status == WEIR_REDIS_OK);
    free(p);
}

int weir_cache_admin_attach(struct event_base *base)
{
    if (!G.ready || !G.has_l2 || G.admin_l2 != NULL)
        return 0;
    G.admin_l2 = weir_cache_redis_new(base, &G.rconf, "admin");
    return G.admin_l2 != NULL ? 0 : -1;
}

void weir_cache_admin_detach(void)
{
    weir_cache_redis_free(G.admin_l2);
    G.admin_l2 = NULL;
}

void weir_cache_purge(const char *kind, const char *value, int soft, weir_cache_purge_cb cb, void *arg)
{
    struct weir_cache_redis *r = G.admin_l2;
    struct purge_req *p;
    size_t n;
    char msg[4096];
    int ml;

    n = G.ready ? purge_local(kind, value, soft) : 0;
    ml = snprintf(msg, sizeof(msg), "%s %d %s", kind, soft ? 1 : 0, value);
    if (r == NULL || !weir_cache_redis_usable(r) || ml <= 0 || (size_t)ml >= sizeof(msg)) {
        weir_cache_stats_purged(WEIR_CS_TIER_L1, n); /* else counted when the channel brings it back */
        cb(arg, n, 0, r == NULL);
        return;
    }
    /* every instance (this one too) records the purge for its L2 reads and
     * purges its L1; a hard URL purge also deletes the stored value */
    weir_cache_redis_incr(r, PURGE_GEN, strlen(PURGE_GEN), NULL, NULL, NULL);
    weir_cache_redis_publish(r, PURGE_CHAN, msg, (size_t)ml, NULL, NULL, NULL);
    p = malloc(sizeof(*p));
    if (strcmp(kind, "url") == 0 && !soft && p != NULL) {
        char kbuf[2048], *key = weir_cache_key(WEIR_HTTP_GET, value);
        size_t kl;
        p->cb = cb;
        p->arg = arg;
        p->l1 = n;
        if (key != NULL && strlen(key) < 1900) {
            kl = l2_key(kbuf, sizeof(kbuf), key, NULL, 0);
            free(key);
            if (weir_cache_redis_del(r, kbuf, kl, purge_del_done, p, NULL) == WEIR_OK)
                return;
        } else {
            free(key);
        }
    }
    free(p);
    cb(arg, n, 0, 1);
}

void weir_cache_state(struct weir_cache_state *st)
{
    memset(st, 0, sizeof(*st));
    if (G.l1 != NULL)
        weir_cache_l1_stats(G.l1, &st->l1);
    weir_cache_counters(&st->counters);
    st->has_l2 = G.has_l2;
    if (G.admin_l2 != NULL)
        weir_cache_redis_stats(G.admin_l2, &st->l2);
    st->purge_gen = atomic_load(&G.purge_gen);
    st->max_object_bytes = G.max_object_bytes;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int weir_cache_init(const struct weir_conf *conf)
{
    int needed = 0;

    for (size_t i = 0; i < conf->nroutes; i++)
        needed |= conf->routes[i].cache;
    G.l1 = weir_cache_l1_new(conf->cache.memory_bytes);
    if (G.l1 == NULL)
        return -1;
    G.max_object_bytes = conf->cache.max_object_bytes;
    atomic_store(&G.purge_gen, -1);
    if (weir_cache_stats_init(conf->workers > 0 ? conf->workers : WEIR_MAX_WORKERS) != 0)
        return -1;
    if (conf->cache.redis.enabled) {
        G.raddress = strdup(conf->cache.redis.address);
        G.rpassword = conf->cache.redis.password ? strdup(conf->cache.redis.password) : NULL;
        G.rprefix = strdup(conf->cache.redis.prefix ? conf->cache.redis.prefix : "weir:");
        G.rconf = (struct weir_redis_conf){G.raddress, G.rpassword, conf->cache.redis.db, G.rprefix,
                                           conf->cache.redis.timeout_ms};
        G.has_l2 = G.raddress != NULL && G.rprefix != NULL;
    }
    if (weir_exchange_register_hook(&cache_hook) != WEIR_OK)
        return -1;
    G.ready = 1;
    weir_log_info("cache: L1 %zu bytes, objects up to %zu bytes, L2 %s%s", conf->cache.memory_bytes,
                  conf->cache.max_object_bytes, G.has_l2 ? G.raddress : "off",
                  needed ? "" : " (no route has cache = true)");
    return 0;
}

void weir_cache_worker_start(int id, struct event_base *base)
{
    struct cache_worker *cw;
    char name[32];

    if (!G.ready || id < 0 || id >= WEIR_MAX_WORKERS)
        return;
    cw = calloc(1, sizeof(*cw));
    if (cw == NULL)
        return;
    cw->id = id;
    cw->base = base;
    pthread_mutex_init(&cw->mu, NULL);
    cw->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cw->ev = cw->efd >= 0 ? event_new(base, cw->efd, EV_READ | EV_PERSIST, inbox_cb, cw) : NULL;
    if (cw->ev == NULL) {
        weir_log_error("cache: worker %d: cannot create its wake-up event; the cache is off on it", id);
        if (cw->efd >= 0)
            close(cw->efd);
        free(cw);
        return;
    }
    event_add(cw->ev, NULL);
    if (G.has_l2) {
        snprintf(name, sizeof(name), "worker %d", id);
        cw->l2 = weir_cache_redis_new(base, &G.rconf, name);
        if (id == 0 && cw->l2 != NULL)
            cw->sub =
                weir_cache_redis_sub_new(base, &G.rconf, PURGE_CHAN, on_purge_message, on_subscribed, cw);
        weir_cache_stats_l2_attach(id, cw->l2, base);
    }
    G.workers[id] = cw;
}

void weir_cache_worker_stop(int id)
{
    struct cache_worker *cw;

    if (id < 0 || id >= WEIR_MAX_WORKERS || (cw = G.workers[id]) == NULL)
        return;
    /* Called after the worker's exchanges were aborted: none of its waiters
     * is left in a flight, so no other thread writes to its inbox now. */
    while (cw->bgs != NULL) {
        struct bg *b = cw->bgs;
        cw->bgs = b->next;
        weir_cache_fetch_cancel(b->fetch);
        flight_end(b->f, WEIR_DECLINED);
        free(b->url);
        free(b);
    }
    weir_cache_redis_sub_free(cw->sub);
    cw->sub = NULL;
    weir_cache_stats_l2_attach(id, NULL, NULL);
    weir_cache_redis_free(cw->l2);
    cw->l2 = NULL;
    event_free(cw->ev);
    cw->ev = NULL;
    close(cw->efd);
    cw->efd = -1;
}

void weir_cache_shutdown(void)
{
    for (int i = 0; i < WEIR_MAX_WORKERS; i++) {
        struct cache_worker *cw = G.workers[i];
        if (cw == NULL)
            continue;
        if (cw->ev != NULL) /* a worker that never ran its stop */
            event_free(cw->ev);
        if (cw->efd >= 0)
            close(cw->efd);
        pthread_mutex_destroy(&cw->mu);
        free(cw);
        G.workers[i] = NULL;
    }
    weir_cache_l1_free(G.l1);
    G.l1 = NULL;
    for (size_t i = 0; i < RULES_MAX; i++) {
        free(G.rules[i].value);
        G.rules[i].value = NULL;
    }
    G.nrules = G.next_rule = 0;
    weir_cache_stats_shutdown();
    free(G.raddress);
    free(G.rpassword);
    free(G.rprefix);
    G.ready = 0;
}

struct weir_cache_l1 *weir_cache_get_l1(void)
{
    return G.l1;
}

void weir_cache_counters(struct weir_cache_counters *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < WEIR_MAX_WORKERS; i++) {
        struct cache_worker *cw = G.workers[i];
        if (cw == NULL)
            continue;
        c->hit_l1 += atomic_load(&cw->hit_l1);
        c->hit_l2 += atomic_load(&cw->hit_l2);
        c->miss += atomic_load(&cw->miss);
        c->stale_served += atomic_load(&cw->stale_served);
        c->stored += atomic_load(&cw->stored);
        c->not_storable += atomic_load(&cw->not_storable);
        c->coalesced += atomic_load(&cw->coalesced);
        c->l2_garbage += atomic_load(&cw->l2_garbage);
        c->only_if_cached += atomic_load(&cw->only_if_cached);
        c->revalidated += atomic_load(&cw->revalidated);
        for (int k = 0; k < 16; k++)
            c->not_storable_by[k] += atomic_load(&cw->not_storable_by[k]);
    }
}
