/*
 * cache.c - the cache stage over the exchange interface: the request hook
 * that answers from L1, then L2 (with the Redis lease between instances),
 * coalesces concurrent misses for a key (cache_flight.c), revalidates
 * (cache_reval.c), and otherwise lets the request go upstream with a store
 * filter attached (cache_store.c); unsafe methods and purges are in
 * cache_purge.c. Also the stage's life cycle, state and counters.
 * Contracts in include/weir/cache.h; the files' layering in
 * include/weir/cache_stage.h.
 *
 * Threads: the hook, filters, L2 clients and per-worker state run on their
 * worker's thread. Shared: the L1 (its own locks), the flight table (one
 * mutex, taken only on misses), and each worker's inbox of woken waiters.
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

#include "weir/cache_stage.h"
#include "weir/cache_fetch.h"
#include "weir/cache_redis.h"
#include "weir/cache_rules.h"
#include "weir/core.h"
#include "weir/exchange.h"
#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/worker.h"

struct cache_global cache_g;

static void l2_reply(void *arg, int status, const char *data, size_t len);

/* Send the L2 GET. WEIR_OK (l2_reply follows) or WEIR_DECLINED. */
static int l2_lookup(struct cx *c, const char *vary_values, size_t vlen)
{
    char kbuf[2048];
    size_t kl;

    /* nothing longer is ever stored (cache_l2_store): no round trip */
    if (strlen(c->key) > 1900)
        return WEIR_DECLINED;
    kl = cache_l2_key(kbuf, sizeof(kbuf), c->key, vary_values, vlen);
    if (weir_cache_redis_get(c->cw->l2, kbuf, kl, l2_reply, c, &c->l2cmd) != WEIR_OK) {
        c->l2cmd = NULL;
        return WEIR_DECLINED;
    }
    return WEIR_OK;
}

static void lease_wait(struct cx *c);

static void lease_state_reply(void *arg, int status, const char *data, size_t len)
{
    struct cx *c = arg;

    c->l2cmd = NULL;
    /* the lease is gone (expired, aborted) or says "pass": fetch ourselves */
    if (status != WEIR_REDIS_OK || (len == 4 && memcmp(data, "pass", 4) == 0)) {
        cache_go_upstream(c, 1);
        return;
    }
    lease_wait(c);
}

static void lease_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cx *c = arg;

    if (l2_lookup(c, NULL, 0) != WEIR_OK)
        cache_go_upstream(c, 1);
}

static void lease_wait(struct cx *c)
{
    struct timeval tv = {0, LEASE_POLL_MS * 1000};

    if (weir_now_us() >= c->lease_until_us) {
        cache_go_upstream(c, 1); /* waited long enough */
        return;
    }
    if (c->poll == NULL)
        c->poll = evtimer_new(c->cw->base, lease_poll_cb, c);
    if (c->poll == NULL) {
        cache_go_upstream(c, 1);
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
    cache_go_upstream(c, 1);
}

/* L2 has no value for the key. */
static void l2_missed(struct cx *c)
{
    char kbuf[2048], token[64];
    size_t kl = cache_lease_key(kbuf, sizeof(kbuf), c->key);

    if (c->polling) { /* still waiting for the lease holder: how is it doing? */
        if (weir_cache_redis_get(c->cw->l2, kbuf, kl, lease_state_reply, c, &c->l2cmd) != WEIR_OK)
            cache_go_upstream(c, 1);
        return;
    }
    snprintf(token, sizeof(token), "%ld:%d", (long)getpid(), c->cw->id);
    if (strlen(c->key) > 1900 || c->method != WEIR_HTTP_GET ||
        weir_cache_redis_lease(c->cw->l2, kbuf, kl, token, LEASE_MS, lease_reply, c, &c->l2cmd) != WEIR_OK)
        cache_go_upstream(c, 1);
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
    if (status != WEIR_REDIS_OK && status != WEIR_REDIS_WRONGTYPE) {
        cache_go_upstream(c, 1);
        return;
    }
    err = 0;
    o = status == WEIR_REDIS_OK ? weir_cache_obj_decode(data, len, cache_g.max_object_bytes, &err) : NULL;
    if (o == NULL || strcmp(o->key, c->key) != 0) {
        /* not ours (a list or hash under the key, garbage), truncated,
         * another version, or another key: a miss, deleted */
        char kbuf[2048];
        size_t kl = cache_l2_key(kbuf, sizeof(kbuf), c->key, NULL, 0);
        cache_count(&c->cw->l2_garbage);
        weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_L2_GARBAGE);
        weir_log_warn("cache: L2 value for %s refused (%s): deleted", c->key,
                      status == WEIR_REDIS_WRONGTYPE ? "not a string"
                      : o == NULL                    ? weir_cache_decode_error_name(err)
                                                     : "other key");
        weir_cache_redis_del(c->cw->l2, kbuf, kl, NULL, NULL, NULL);
        weir_cache_obj_release(o);
        cache_go_upstream(c, 1);
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
                cache_go_upstream(c, 1);
            free(vv);
            return;
        }
        free(vv);
        if (!same) {
            weir_cache_obj_release(o);
            cache_go_upstream(c, 1);
            return;
        }
    }
    {
        int64_t lifetime = cache_rules_apply(o);
        if (lifetime < 0) { /* purged after it was stored */
            weir_cache_obj_release(o);
            cache_go_upstream(c, 1);
            return;
        }
        if (lifetime < o->lifetime) { /* soft-purged: stale from then on */
            o->lifetime = lifetime;
            o->keep = weir_cache_keep_seconds(&o->cc, lifetime, &o->times, 1);
        }
    }
    weir_cache_l1_insert(cache_g.l1, o, cache_now()); /* promoted */
    if (!cache_usable(c, o, o->lifetime, &v) || cache_serve(c, o, &v, "l2") != WEIR_OK) {
        weir_cache_obj_release(o);
        cache_go_upstream(c, 1);
        return;
    }
    weir_cache_obj_release(o);
    cache_count(&c->cw->hit_l2);
    if (v.use != WEIR_USE_FRESH)
        cache_count(&c->cw->stale_served);
    weir_cache_stats_result(c->rs, c->cw->id, v.use == WEIR_USE_FRESH ? WEIR_CSR_L2_HIT : WEIR_CSR_L2_STALE);
    cache_flight_end(c->lead, WEIR_OK); /* our waiters find it in L1 */
    c->lead = NULL;
    c->state = CX_DONE;
    weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
}

static void cx_free(struct cx *c)
{
    free(c->url);
    free(c->key);
    free(c);
}

static int on_request(struct weir_exchange *x, const struct weir_req_info *ri, void **hook_data)
{
    struct cache_worker *cw;
    struct cx *c;
    struct weir_l1_hit hit;
    struct weir_cache_verdict v;
    int err, wid = weir_exchange_worker_id(x);
    char *url;

    if (ri->route == NULL || !ri->route->cache || wid < 0 || wid >= WEIR_MAX_WORKERS ||
        (cw = cache_g.workers[wid]) == NULL)
        return WEIR_HOOK_CONTINUE;
    /* The key names the authority the backend is sent (the Host field, or
     * an absolute-form target's authority, which replaces it), port
     * included: ri->host is the routing form, without the port, and keying
     * on it let "Host: a:8081" store the backend's answer to a:8081 (links,
     * redirects naming that port) under the key of plain "a" (RFC 9111
     * §4.1: the key is the target URI; RFC 9110 §4.2.3: only the default
     * port is equivalent to no port). */
    const char *kh = ri->host;
    size_t khl = ri->host_len;
    if (ri->msg != NULL && ri->msg->authority != NULL) {
        kh = ri->msg->authority;
        khl = ri->msg->authority_len;
    } else if (ri->msg != NULL && ri->msg->host_idx >= 0) {
        kh = ri->msg->headers[ri->msg->host_idx].value;
        khl = ri->msg->headers[ri->msg->host_idx].value_len;
    }
    /* and the scheme: what a plain-HTTP client had stored (a redirect to
     * https, absolute links) must not answer an HTTPS client (RFC 9111 4.1:
     * the key is the target URI, scheme included) */
    url = weir_cache_url(ri->scheme != NULL ? ri->scheme : "http", kh, khl, ri->target, ri->target_len);
    if (url == NULL)
        return WEIR_HOOK_CONTINUE;
    if (!weir_http_method_safe(ri->method_id))
        return cache_on_request_unsafe(x, ri, cw, url);
    if (ri->method_id != WEIR_HTTP_GET && ri->method_id != WEIR_HTTP_HEAD) {
        free(url);
        cache_attach_status(x, "method", NULL);
        return WEIR_HOOK_CONTINUE;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        free(url);
        return WEIR_HOOK_CONTINUE;
    }
    c->x = x;
    c->cw = cw;
    c->rs = weir_cache_stats_for(cw->id, ri->route->stats);
    c->pool = ri->pool;
    c->method = ri->method_id;
    c->url = url;
    c->fwd = "uri-miss";
    c->key = weir_cache_key(ri->method_id, url);
    /* The parsed head is valid during on_request only; a hit is answered
     * from it, anything that goes on later takes a stable copy first. */
    c->req = ri->msg;
    c->request_time = cache_now();
    *hook_data = c;
    if (c->key == NULL || c->req == NULL)
        return WEIR_HOOK_CONTINUE;
    weir_cc_request(&c->qcc, c->req->headers, c->req->nheaders);

    /* L1 */
    if (weir_cache_l1_lookup(cache_g.l1, c->key, c->req->headers, c->req->nheaders, cache_now(), &hit) ==
        WEIR_OK) {
        int ok = cache_usable(c, hit.obj, hit.lifetime, &v), rc;
        if (ok && v.use == WEIR_USE_STALE_REVALIDATE && ri->pool != NULL && ri->pool->tls != NULL)
            ok = 0; /* the background fetch speaks plain HTTP: over TLS the
                     * session revalidates it while the client waits */
        if (ok && cache_serve(c, hit.obj, &v, "l1") == WEIR_OK) {
            if (v.use == WEIR_USE_STALE_REVALIDATE)
                cache_start_background(c, ri->pool, hit.obj);
            weir_cache_obj_release(hit.obj);
            cache_count(&cw->hit_l1);
            if (v.use != WEIR_USE_FRESH)
                cache_count(&cw->stale_served);
            weir_cache_stats_result(c->rs, cw->id,
                                    v.use == WEIR_USE_FRESH ? WEIR_CSR_L1_HIT : WEIR_CSR_L1_STALE);
            c->state = CX_DONE;
            return WEIR_HOOK_ANSWERED;
        }
        c->req = weir_exchange_request(x);
        /* stored but not usable as is: stale, or the request asks for more */
        c->fwd = v.ttl <= 0 ? "stale" : "request";
        rc = ok || c->req == NULL ? -1 : cache_revalidate(c, ri->pool, hit.obj, &v);
        weir_cache_obj_release(hit.obj);
        if (rc >= 0)
            return rc;
        /* refused by the request, or nothing to revalidate with: fetch
         * again like a miss (the store filter replaces it) */
    }
    if (hit.hit_for_miss && c->method == WEIR_HTTP_GET) {
        c->fwd = "miss";
        c->detail = "hit-for-miss";
        if (hit.hfm_until - cache_now() > HFM_SECONDS / 2) {
            /* A young mark: the response goes by without a store filter
             * (hit-for-pass): no request copy, no storability decision, no
             * mark renewal per request of an uncacheable URL. In the mark's
             * second half the store filter runs again (hit-for-miss), so a
             * URL that became cacheable is stored within HFM_SECONDS / 2. */
            c->req = NULL; /* no stable copy taken: Cache-Status only */
            return cache_go_upstream(c, 0);
        }
    }
    c->req = weir_exchange_request(x);
    if (c->req == NULL) /* out of memory: no store, no wait */
        return WEIR_HOOK_CONTINUE;
    if (hit.hit_for_miss || c->method != WEIR_HTTP_GET)
        return cache_go_upstream(c, 0);

    /* coalesce */
    c->w = calloc(1, sizeof(*c->w));
    if (c->w != NULL) {
        c->w->cx = c;
        c->w->cw = cw;
        c->lead = cache_flight_join(c->key, c->w, &err);
        if (c->lead == NULL && !err) {
            struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
            c->w->timer = evtimer_new(cw->base, cache_waiter_timer_cb, c->w);
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
    return cache_go_upstream(c, 0);
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
        cache_lease_release(c->cw, c->key, 0);
    weir_cache_obj_release(c->stale);
    cache_stream_stop(c); /* before the waiter goes: the object may wake it */
    if (c->w != NULL)
        cache_waiter_drop(c->w);
    cache_flight_end(c->lead, WEIR_DECLINED);
    cx_free(c);
}

static const struct weir_req_hook cache_hook = {"cache", on_request, on_end};

void weir_cache_state(struct weir_cache_state *st)
{
    memset(st, 0, sizeof(*st));
    if (cache_g.l1 != NULL)
        weir_cache_l1_stats(cache_g.l1, &st->l1);
    weir_cache_counters(&st->counters);
    st->has_l2 = cache_g.has_l2;
    if (cache_g.admin_l2 != NULL)
        weir_cache_redis_stats(cache_g.admin_l2, &st->l2);
    st->purge_gen = atomic_load(&cache_g.purge_gen);
    st->max_object_bytes = cache_g.max_object_bytes;
}

int weir_cache_init(const struct weir_conf *conf)
{
    int needed = 0;

    for (size_t i = 0; i < conf->nroutes; i++)
        needed |= conf->routes[i].cache;
    cache_g.l1 = weir_cache_l1_new(conf->cache.memory_bytes);
    if (cache_g.l1 == NULL)
        return -1;
    cache_g.max_object_bytes = conf->cache.max_object_bytes;
    atomic_store(&cache_g.purge_gen, -1);
    if (weir_cache_stats_init(conf->workers > 0 ? conf->workers : WEIR_MAX_WORKERS) != 0)
        return -1;
    if (conf->cache.redis.enabled) {
        cache_g.raddress = strdup(conf->cache.redis.address);
        cache_g.rpassword = conf->cache.redis.password ? strdup(conf->cache.redis.password) : NULL;
        cache_g.rprefix = strdup(conf->cache.redis.prefix ? conf->cache.redis.prefix : "weir:");
        cache_g.rconf = (struct weir_redis_conf){cache_g.raddress, cache_g.rpassword, conf->cache.redis.db,
                                                 cache_g.rprefix, conf->cache.redis.timeout_ms};
        cache_g.has_l2 = cache_g.raddress != NULL && cache_g.rprefix != NULL;
    }
    if (weir_exchange_register_hook(&cache_hook) != WEIR_OK)
        return -1;
    cache_g.ready = 1;
    weir_log_info("cache: L1 %zu bytes, objects up to %zu bytes, L2 %s%s", conf->cache.memory_bytes,
                  conf->cache.max_object_bytes, cache_g.has_l2 ? cache_g.raddress : "off",
                  needed ? "" : " (no route has cache = true)");
    return 0;
}

void weir_cache_worker_start(int id, struct event_base *base)
{
    struct cache_worker *cw;
    char name[32];

    if (!cache_g.ready || id < 0 || id >= WEIR_MAX_WORKERS)
        return;
    cw = calloc(1, sizeof(*cw));
    if (cw == NULL)
        return;
    cw->id = id;
    cw->base = base;
    pthread_mutex_init(&cw->mu, NULL);
    cw->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    cw->ev = cw->efd >= 0 ? event_new(base, cw->efd, EV_READ | EV_PERSIST, cache_inbox_cb, cw) : NULL;
    if (cw->ev == NULL) {
        weir_log_error("cache: worker %d: cannot create its wake-up event; the cache is off on it", id);
        if (cw->efd >= 0)
            close(cw->efd);
        free(cw);
        return;
    }
    event_add(cw->ev, NULL);
    if (cache_g.has_l2) {
        snprintf(name, sizeof(name), "worker %d", id);
        cw->l2 = weir_cache_redis_new(base, &cache_g.rconf, name);
        if (id == 0 && cw->l2 != NULL)
            cw->sub = weir_cache_redis_sub_new(base, &cache_g.rconf, PURGE_CHAN, cache_on_purge_message,
                                               cache_on_subscribed, cw);
        weir_cache_stats_l2_attach(id, cw->l2, base);
    }
    cache_g.workers[id] = cw;
}

void weir_cache_worker_stop(int id)
{
    struct cache_worker *cw;

    if (id < 0 || id >= WEIR_MAX_WORKERS || (cw = cache_g.workers[id]) == NULL)
        return;
    /* Called after the worker's exchanges were aborted: none of its waiters
     * is left in a flight, so no other thread writes to its inbox now. */
    cache_reval_stop(cw);
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
        struct cache_worker *cw = cache_g.workers[i];
        if (cw == NULL)
            continue;
        if (cw->ev != NULL) /* a worker that never ran its stop */
            event_free(cw->ev);
        if (cw->efd >= 0)
            close(cw->efd);
        pthread_mutex_destroy(&cw->mu);
        free(cw);
        cache_g.workers[i] = NULL;
    }
    weir_cache_l1_free(cache_g.l1);
    cache_g.l1 = NULL;
    cache_purge_shutdown();
    weir_cache_stats_shutdown();
    free(cache_g.raddress);
    free(cache_g.rpassword);
    free(cache_g.rprefix);
    cache_g.ready = 0;
}

/* ---- reload ---------------------------------------------------------------------------- */

/* New Redis settings on their way to every worker (shared, the last one frees). */
struct l2_reconf {
    _Atomic int refs;
    struct weir_redis_conf rc;
    char *address, *password, *prefix;
};

static void reconf_put(struct l2_reconf *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    free(r->address);
    free(r->password);
    free(r->prefix);
    free(r);
}

static void reconf_dispose(void *arg)
{
    reconf_put(arg);
}

/* On the worker's thread: its L2 client and (worker 0) the subscriber. */
static void reconf_worker(void *ctx, void *arg)
{
    struct weir_worker *w = ctx;
    struct l2_reconf *r = arg;
    struct cache_worker *cw = w->id >= 0 && w->id < WEIR_MAX_WORKERS ? cache_g.workers[w->id] : NULL;

    if (cw != NULL) {
        weir_cache_redis_reconfigure(cw->l2, &r->rc);
        weir_cache_redis_sub_reconfigure(cw->sub, &r->rc, PURGE_CHAN);
    }
    reconf_put(r);
}

static int str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void weir_cache_reload(const struct weir_conf *conf, struct weir_worker *const *workers, int nworkers)
{
    const struct weir_conf_cache *cc = &conf->cache;
    const char *prefix = cc->redis.prefix ? cc->redis.prefix : "weir:";
    struct l2_reconf *r;

    if (!cache_g.ready)
        return;
    struct weir_l1_stats l1;
    weir_cache_l1_stats(cache_g.l1, &l1);
    if (cc->max_object_bytes != cache_g.max_object_bytes || cc->memory_bytes != l1.budget)
        weir_log_warn(
            "reload: cache.memory_bytes / max_object_bytes changed; they take effect at the next restart");
    if (cc->redis.enabled != cache_g.has_l2) {
        weir_log_warn("reload: cache.redis %s; that takes effect at the next restart",
                      cc->redis.enabled ? "added" : "removed");
        return;
    }
    if (!cache_g.has_l2 ||
        (str_eq(cc->redis.address, cache_g.raddress) && str_eq(cc->redis.password, cache_g.rpassword) &&
         cc->redis.db == cache_g.rconf.db && str_eq(prefix, cache_g.rprefix) &&
         cc->redis.timeout_ms == cache_g.rconf.timeout_ms))
        return;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->address = strdup(cc->redis.address)) == NULL ||
        (r->prefix = strdup(prefix)) == NULL ||
        (cc->redis.password != NULL && (r->password = strdup(cc->redis.password)) == NULL)) {
        if (r != NULL) {
            free(r->address);
            free(r->prefix);
        }
        free(r);
        weir_log_error("reload: out of memory: the cache keeps its Redis settings");
        return;
    }
    r->rc = (struct weir_redis_conf){r->address, r->password, cc->redis.db, r->prefix, cc->redis.timeout_ms};
    weir_log_info("reload: cache.redis changed: L2 reconnects to %s", r->address);
    /* the settings of record (for what starts later), then every connection */
    free(cache_g.raddress);
    free(cache_g.rpassword);
    free(cache_g.rprefix);
    cache_g.raddress = strdup(r->address);
    cache_g.rpassword = r->password != NULL ? strdup(r->password) : NULL;
    cache_g.rprefix = strdup(r->prefix);
    cache_g.rconf = (struct weir_redis_conf){cache_g.raddress, cache_g.rpassword, r->rc.db, cache_g.rprefix,
                                             r->rc.timeout_ms};
    weir_cache_redis_reconfigure(cache_g.admin_l2, &r->rc); /* the admin runs on this thread */
    atomic_store(&r->refs, 1);
    for (int i = 0; i < nworkers; i++) {
        if (workers[i] == NULL)
            continue;
        atomic_fetch_add(&r->refs, 1);
        if (weir_worker_call(workers[i], reconf_worker, r, reconf_dispose) != 0) {
            atomic_fetch_sub(&r->refs, 1);
            weir_log_error("reload: worker %d keeps the old Redis settings (out of memory)", i);
        }
    }
    reconf_put(r);
}

struct weir_cache_l1 *weir_cache_get_l1(void)
{
    return cache_g.l1;
}

void weir_cache_counters(struct weir_cache_counters *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < WEIR_MAX_WORKERS; i++) {
        struct cache_worker *cw = cache_g.workers[i];
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
        c->stream_cut += atomic_load(&cw->stream_cut);
        for (int k = 0; k < 16; k++)
            c->not_storable_by[k] += atomic_load(&cw->not_storable_by[k]);
    }
}
