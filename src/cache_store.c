/*
 * cache_store.c - going upstream: the store filter that builds the object
 * as the response streams to the client, stores it in L1 and L2 and ends
 * the key's flight; hit-for-miss marks. Depends on cache_serve.c,
 * cache_flight.c, cache_l2.c.
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
#include "weir/core.h"
#include "weir/log.h"

/* The result of a foreground revalidation sent through the session's
 * upstream stage, counted once: a 304 that answered or a 200 stored is a
 * revalidation (one origin fetch); anything else went to the backend as a
 * miss would. */
static void reval_count(struct store *s, int event)
{
    if (!s->reval_result)
        return;
    s->reval_result = 0;
    if (event < 0) {
        weir_cache_stats_result(s->rs, s->cw->id, WEIR_CSR_MISS);
        return;
    }
    weir_cache_stats_event(s->rs, s->cw->id, WEIR_CSE_ORIGIN_FETCH);
    weir_cache_stats_event(s->rs, s->cw->id, event);
    weir_cache_stats_result(s->rs, s->cw->id, WEIR_CSR_REVALIDATED);
}

static void store_free(struct store *s)
{
    reval_count(s, -1);
    weir_cache_obj_release(s->obj);
    weir_cache_obj_release(s->stale);
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
    case WEIR_STORE_NEVER_FRESH:
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
        cache_lease_release(s->cw, s->key, 1);
    s->leased = 0;
    cache_count(&s->cw->not_storable);
    if (reason >= 0 && reason < 16)
        cache_count(&s->cw->not_storable_by[reason]);
    weir_cache_stats_not_storable(s->rs, s->cw->id, reason);
    if (marks_hfm(reason, status))
        weir_cache_l1_mark_hfm(cache_g.l1, s->key, cache_now() + HFM_SECONDS);
    cache_flight_end(s->flight, WEIR_DECLINED);
    s->flight = NULL;
}

/* A 304 to the validators of a foreground revalidation (sent through the
 * session's own upstream stage): update the stored response as RFC 9111
 * 4.3.4 says, store it, and answer the client from it (its own
 * preconditions and Range evaluated) instead of forwarding the 304.
 * 1 when answered. */
static int revalidated(struct weir_exchange *x, struct store *s, const struct weir_http_msg *m)
{
    struct weir_cache_obj *o = NULL;
    struct weir_cache_verdict v;
    struct weir_cc none;
    char cs[160];
    int ok, reason = WEIR_STORE_OK;

    if (weir_cache_304_selects(s->stale->headers, s->stale->nheaders, m->headers, m->nheaders))
        o = weir_cache_obj_freshen(s->stale, m->headers, m->nheaders, s->request_time, cache_now());
    /* The updated response is this client's answer, but it is stored only
     * if a 200 with the same fields would be (RFC 9111 §3 applies to what
     * is stored): a 304 carrying Set-Cookie (the origin logging in the
     * client that triggered the revalidation), private or no-store, or one
     * sent for an Authorization request, must not become every later
     * client's copy. The old entry stays, still stale. */
    if (o != NULL)
        reason = weir_cache_storable(WEIR_HTTP_GET, s->req->headers, s->req->nheaders, o->status, o->headers,
                                     o->nheaders, &o->cc);
    if (o == NULL) { /* the 304 does not select it: still "not modified" for our validators */
        o = s->stale;
        weir_cache_obj_retain(o);
    } else if (reason != WEIR_STORE_OK) {
        cache_count(&s->cw->not_storable);
        weir_cache_stats_not_storable(s->rs, s->cw->id, reason);
    } else {
        cache_count(&s->cw->revalidated);
        if (weir_cache_l1_insert(cache_g.l1, o, cache_now()) == WEIR_OK) {
            cache_count(&s->cw->stored);
            weir_cache_stats_event(s->rs, s->cw->id, WEIR_CSE_STORED);
        }
        cache_l2_store(s->cw, o);
    }
    /* just validated with the origin: it answers this request whatever the
     * request's no-cache or max-age asked (RFC 9111 4.3.3) */
    weir_cc_init(&none);
    weir_cache_decide(&o->cc, o->lifetime, &o->times, &none, cache_now(), &v);
    snprintf(cs, sizeof(cs), "weir; fwd=%s; fwd-status=304; %sdetail=revalidated", s->fwd,
             o != s->stale && reason == WEIR_STORE_OK ? "stored; " : "");
    ok = cache_serve_cs(s->cx, o, &v, "l1", cs) == WEIR_OK;
    weir_cache_obj_release(o);
    if (!ok)
        return 0;
    reval_count(s, WEIR_CSE_REVALIDATED_304);
    if (s->leased) /* nothing new in L2 when not stored: the others fetch themselves */
        cache_lease_release(s->cw, s->key, reason != WEIR_STORE_OK);
    s->leased = 0;
    /* not stored: the waiters go to the backend with their own requests */
    cache_flight_end(s->flight, reason == WEIR_STORE_OK ? WEIR_OK : WEIR_DECLINED);
    s->flight = NULL;
    return 1;
}

static int store_on_head(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m)
{
    struct store *s = fdata;
    struct weir_cc rcc;
    int reason;

    if (m->status == 304 && s->stale != NULL && revalidated(x, s, m))
        return WEIR_DECLINED; /* answered from the stored response */
    weir_cc_response(&rcc, m->headers, m->nheaders);
    reason = weir_cache_storable(WEIR_HTTP_GET, s->req->headers, s->req->nheaders, m->status, m->headers,
                                 m->nheaders, &rcc);
    if (reason == WEIR_STORE_OK)
        reason = weir_cache_worth_storing(m->headers, m->nheaders, &rcc);
    if (reason != WEIR_STORE_OK) {
        cache_add_status(x, s->fwd, m->status, 0, s->detail);
        not_stored(s, reason, m->status);
        return WEIR_DECLINED;
    }
    s->obj = weir_cache_obj_new(s->key, s->url, s->req->headers, s->req->nheaders, m->status, m->headers,
                                m->nheaders, s->request_time, cache_now(), cache_g.max_object_bytes);
    if (s->obj == NULL || weir_cache_obj_state(s->obj) != WEIR_OBJ_GROWING) {
        cache_add_status(x, s->fwd, m->status, 0, s->obj != NULL ? "too-big" : s->detail);
        not_stored(s, REASON_TOO_BIG, m->status); /* announced too big: mark it */
        return WEIR_DECLINED;
    }
    /* waiters may stream it as it grows; a length not known yet through
     * registered readers, so that a body outgrowing max_object_bytes can
     * pass through to them unstored (cache_obj.h) */
    if (m->status == 200)
        reval_count(s, WEIR_CSE_REVALIDATED_200); /* the new response replaces the stored one */
    if (m->status == 200 && s->flight != NULL &&
        (s->obj->expected_len != UINT64_MAX || weir_cache_obj_readers_enable(s->obj) == WEIR_OK))
        cache_flight_stream(s->flight, s->obj);
    /* "stored" as intended when the head arrives: a body that grows past
     * max_object_bytes after it is still abandoned (README) */
    cache_add_status(x, s->fwd, m->status, 1, s->detail);
    return WEIR_OK;
}

/* Waiters cut from a passing object: counted, logged once per response. */
static void note_cut(struct store *s)
{
    unsigned k = weir_cache_obj_take_cut(s->obj);

    for (unsigned i = 0; i < k; i++)
        cache_count(&s->cw->stream_cut);
    if (k > 0 && !s->cut_logged) {
        s->cut_logged = 1;
        weir_log_warn("cache: %s: a coalesced client fell more than max_object_bytes (%zu) behind a response "
                      "too big to store: cut",
                      s->url, cache_g.max_object_bytes);
    }
}

static int store_on_data(struct weir_exchange *x, void *fdata, const char *p, size_t n)
{
    struct store *s = fdata;
    int rc = weir_cache_obj_append(s->obj, p, n);

    if (rc == WEIR_AGAIN) { /* past max_object_bytes, passing through to streaming waiters */
        if (!s->passing) {
            s->passing = 1;
            not_stored(s, REASON_TOO_BIG, 200); /* the others go to the backend */
        }
        note_cut(s);
        return WEIR_OK;
    }
    if (rc != WEIR_OK) {
        if (s->passing)
            note_cut(s); /* and no reader is left */
        else
            not_stored(s, REASON_TOO_BIG, 200); /* grew past max_object_bytes */
        return WEIR_DECLINED;
    }
    cache_flight_progress(s->flight);
    return WEIR_OK;
}

static void store_on_end(struct weir_exchange *x, void *fdata)
{
    struct store *s = fdata;

    if (s->obj != NULL && weir_cache_obj_finish(s->obj) == WEIR_OK &&
        weir_cache_l1_insert(cache_g.l1, s->obj, cache_now()) != WEIR_ERROR) {
        cache_count(&s->cw->stored);
        weir_cache_stats_event(s->rs, s->cw->id, WEIR_CSE_STORED);
        cache_l2_store(s->cw, s->obj);
        cache_flight_end(s->flight, WEIR_OK);
    } else {
        if (s->leased)
            cache_lease_release(s->cw, s->key, 0);
        cache_flight_end(s->flight, WEIR_DECLINED);
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
        cache_lease_release(s->cw, s->key, 0);
    cache_flight_end(s->flight, WEIR_DECLINED);
    s->flight = NULL;
    store_free(s);
}

static void store_on_local(struct weir_exchange *x, void *fdata, int status)
{
    cache_add_local_status(x, ((struct store *)fdata)->fwd, status);
}

static const struct weir_resp_filter store_filter = {"cache-store", store_on_head,  store_on_data,
                                                     store_on_end,  store_on_abort, store_on_local};

/* Go upstream with a store filter (unless the request forbids storing),
 * or answer 504 to only-if-cached. Returns the hook's answer; when resume,
 * resumes the suspended exchange with it instead. */
int cache_go_upstream(struct cx *c, int resume)
{
    struct store *s = NULL;
    int rc = cache_range_miss(c, resume);

    if (rc >= 0)
        return rc; /* fetched whole by the cache, answered from the stored object */
    cache_count(&c->cw->miss);
    if (c->qcc.flags & WEIR_CC_ONLY_IF_CACHED) {
        /* §5.2.1.7: nothing stored may answer: 504 */
        static const char f[] = "Cache-Status: weir; fwd=miss; detail=only-if-cached\r\n";
        cache_count(&c->cw->only_if_cached);
        cache_flight_end(c->lead, WEIR_DECLINED);
        c->lead = NULL;
        c->state = CX_DONE;
        if (weir_exchange_respond(c->x, 504, f, sizeof(f) - 1, NULL) == WEIR_OK) {
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_ONLY_IF_CACHED);
            if (resume)
                weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return WEIR_HOOK_ANSWERED;
        }
    }
    if (c->method != WEIR_HTTP_GET || c->req == NULL || (c->qcc.flags & WEIR_CC_NO_STORE))
        cache_attach_status(c->x, c->fwd, (c->qcc.flags & WEIR_CC_NO_STORE) ? "no-store" : c->detail);
    else
        s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->fwd = c->fwd;
        s->detail = c->detail;
        s->cx = c;
        s->stale = c->revalidating ? c->stale : NULL;
        if (s->stale != NULL)
            weir_cache_obj_retain(s->stale);
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
            s = NULL;
        } else {
            s->reval_result = s->stale != NULL; /* counted from its response */
            c->lead = NULL;                     /* the filter ends the flight */
        }
    }
    if (s == NULL || !s->reval_result) /* else its filter counts it: a revalidation, or a miss */
        weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_MISS);
    cache_flight_end(c->lead, WEIR_DECLINED); /* HEAD, no-store, or no filter: waiters go too */
    c->lead = NULL;
    c->state = CX_DONE;
    if (resume)
        weir_exchange_resume(c->x, WEIR_HOOK_CONTINUE);
    return WEIR_HOOK_CONTINUE;
}
