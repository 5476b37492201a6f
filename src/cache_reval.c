/*
 * cache_reval.c - revalidation of stored responses that may not be used as
 * they are: in the foreground (the client waits; stale-if-error answers a
 * failure) and in the background for stale-while-revalidate. Depends on
 * cache_serve.c, cache_flight.c, cache_l2.c, cache_store.c.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "weir/cache_stage.h"
#include "weir/cache_fetch.h"
#include "weir/core.h"
#include "weir/log.h"
#include "weir/runtime.h"

int cache_fetch_timeout_ms(void)
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
    cache_count(&cw->revalidated);
    if (weir_cache_l1_insert(cache_g.l1, o, cache_now()) == WEIR_OK) {
        cache_count(&cw->stored);
        weir_cache_stats_event(rs, cw->id, WEIR_CSE_STORED);
    }
    cache_l2_store(cw, o);
}

/* A background revalidation (stale-while-cache_revalidate): one per key, as the
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
        weir_cache_l1_purge_url(cache_g.l1, b->url, 0, cache_now()); /* no longer cacheable */
    weir_cache_obj_release(o);
    cache_flight_end(b->f, result == WEIR_FETCH_ERROR ? STALE_OK : WEIR_OK);
    free(b->url);
    free(b);
}

void cache_start_background(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *stale)
{
    struct flight *f;
    struct bg *b;
    int err;

    if (pool == NULL || (f = cache_flight_join(c->key, NULL, &err)) == NULL)
        return; /* a fetch for this key runs already: exactly one */
    b = calloc(1, sizeof(*b));
    if (b != NULL && (b->url = strdup(c->url)) != NULL) {
        b->cw = c->cw;
        b->rs = c->rs;
        b->f = f;
        b->fetch = weir_cache_fetch_start(c->cw->base, pool, stale, c->req->headers, c->req->nheaders,
                                          cache_fetch_timeout_ms(), cache_g.max_object_bytes, bg_done, b);
        if (b->fetch != NULL) {
            weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_ORIGIN_FETCH);
            b->next = c->cw->bgs;
            c->cw->bgs = b;
            return;
        }
        free(b->url);
    }
    free(b);
    cache_flight_end(f, STALE_OK);
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
        snprintf(cs, sizeof(cs), "weir; fwd=%s; fwd-status=%d; stored; detail=revalidated", c->fwd, status);
        /* just validated with the origin: it answers this request whatever
         * the request's no-cache or max-age asked (RFC 9111 4.3.3) */
        struct weir_cc none;
        weir_cc_init(&none);
        weir_cache_decide(&o->cc, o->lifetime, &o->times, &none, cache_now(), &v);
        if (cache_serve_cs(c, o, &v, "l1", cs) == WEIR_OK) {
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_REVALIDATED);
            weir_cache_obj_release(o);
            cache_flight_end(c->lead, WEIR_OK);
            c->lead = NULL;
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
    } else if (result == WEIR_FETCH_ERROR && c->sv.stale_if_error) {
        /* RFC 9211 §2.3: fwd-status is the status the next hop returned;
         * none when it never answered (connect error, broken off, timeout) */
        if (status >= 100 && status <= 599)
            snprintf(cs, sizeof(cs), "weir; fwd=stale; fwd-status=%d; detail=stale-if-error", status);
        else
            snprintf(cs, sizeof(cs), "weir; fwd=stale; detail=stale-if-error");
        c->sv.age = weir_cache_age(&c->stale->times, cache_now());
        if (cache_serve_cs(c, c->stale, &c->sv, "l1", cs) == WEIR_OK) {
            cache_count(&c->cw->stale_served);
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_STALE_ERROR);
            cache_flight_end(c->lead, STALE_OK);
            c->lead = NULL;
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
    }
    weir_cache_obj_release(o);
    cache_go_upstream(c, 1); /* the session's own path answers (and its filter stores) */
}

/* A stored response that may not be used as is: revalidate it while the
 * client waits, when a 304 could save the body or stale-if-error could
 * answer a failure. Returns the hook's answer, or -1 to go on as a miss. */
/* Make the request that goes upstream conditional on o's validators (and
 * whole: the object is stored from it). */
static int conditional_upstream(struct cx *c, struct weir_cache_obj *o)
{
    const struct weir_http_header *et = weir_cache_obj_header(o, "etag");
    const struct weir_http_header *lm = weir_cache_obj_header(o, "last-modified");
    char *etv = et ? strndup(et->value, et->value_len) : NULL;
    char *lmv = lm ? strndup(lm->value, lm->value_len) : NULL;
    int rc = WEIR_ERROR;

    if ((et == NULL || etv != NULL) && (lm == NULL || lmv != NULL) && (etv != NULL || lmv != NULL) &&
        weir_exchange_set_request_field(c->x, "If-None-Match", etv) == WEIR_OK &&
        weir_exchange_set_request_field(c->x, "If-Modified-Since", lmv) == WEIR_OK &&
        weir_exchange_set_request_field(c->x, "If-Match", NULL) == WEIR_OK &&
        weir_exchange_set_request_field(c->x, "If-Unmodified-Since", NULL) == WEIR_OK &&
        weir_exchange_set_request_field(c->x, "If-Range", NULL) == WEIR_OK &&
        weir_exchange_set_request_field(c->x, "Range", NULL) == WEIR_OK)
        rc = WEIR_OK;
    free(etv);
    free(lmv);
    return rc;
}

int cache_revalidate(struct cx *c, const struct weir_pool *pool, struct weir_cache_obj *o,
                     const struct weir_cache_verdict *v)
{
    int err;

    /* request no-store: nothing of the answer may be stored, not even the
     * headers a 304 would freshen (§5.2.1.5): a plain fetch */
    if (c->qcc.flags & WEIR_CC_NO_STORE)
        return -1;
    if (!v->stale_if_error && weir_cache_obj_header(o, "etag") == NULL &&
        weir_cache_obj_header(o, "last-modified") == NULL)
        return -1;
    c->w = calloc(1, sizeof(*c->w));
    if (c->w == NULL)
        return -1;
    c->w->cx = c;
    c->w->cw = c->cw;
    c->lead = cache_flight_join(c->key, c->w, &err);
    if (c->lead == NULL) {
        if (err) {
            free(c->w);
            c->w = NULL;
            return -1;
        }
        struct timeval tv = {WAIT_MS / 1000, (WAIT_MS % 1000) * 1000};
        c->w->timer = evtimer_new(c->cw->base, cache_waiter_timer_cb, c->w);
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
    /* the cache's own fetch speaks plain HTTP: a pool reached over TLS with
     * a server available is revalidated through the session even when
     * stale-if-error would want the separate client (a failure then gets
     * weir's own error); with none available the stale copy answers */
    int via_session = pool != NULL && pool->tls != NULL && weir_cache_fetch_pool_available(pool);
    if (pool != NULL && (!v->stale_if_error || via_session) && conditional_upstream(c, o) == WEIR_OK) {
        /* through the session's upstream stage (its retries, keep-alive
         * pool, statistics); the store filter takes the 304 */
        c->revalidating = 1;
        return cache_go_upstream(c, 0);
    }
    /* stale-if-error: a failure must be answered from the stored response,
     * and the session answers connect errors, timeouts and "no server"
     * itself before any filter sees a head: the separate client then */
    c->fetch = pool != NULL
                   ? weir_cache_fetch_start(c->cw->base, pool, o, c->req->headers, c->req->nheaders,
                                            cache_fetch_timeout_ms(), cache_g.max_object_bytes, fg_done, c)
                   : NULL;
    if (c->fetch != NULL) {
        weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_ORIGIN_FETCH);
        c->state = CX_L2;
        return WEIR_HOOK_SUSPENDED;
    }
    /* no server available in the pool: no next hop answered, no fwd-status */
    if (v->stale_if_error && !via_session &&
        cache_serve_cs(c, o, v, "l1", "weir; fwd=stale; detail=stale-if-error") == WEIR_OK) {
        cache_count(&c->cw->stale_served);
        weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_STALE_ERROR);
        cache_flight_end(c->lead, STALE_OK);
        c->lead = NULL;
        c->state = CX_DONE;
        return WEIR_HOOK_ANSWERED;
    }
    return cache_go_upstream(c, 0);
}

void cache_reval_stop(struct cache_worker *cw)
{
    while (cw->bgs != NULL) {
        struct bg *b = cw->bgs;
        cw->bgs = b->next;
        weir_cache_fetch_cancel(b->fetch);
        cache_flight_end(b->f, WEIR_DECLINED);
        free(b->url);
        free(b);
    }
}
