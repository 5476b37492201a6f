/*
 * cache_range.c - a Range request that misses: the cache fetches the whole
 * object itself (its own fetch, cache_fetch.c, as the leader of the key's
 * flight), stores it in L1 and L2 and answers the range from it (206, 416,
 * or 200 when If-Range does not match), so the next range of the same
 * object is a hit. Forwarding the Range would store nothing (206 is not
 * stored) and every range of a video or a large download would go to the
 * origin. A response that may not be stored, one larger than
 * max_object_bytes, or a failed fetch sends the request to the backend as
 * it came, Range and all. Depends on cache_serve.c, cache_flight.c,
 * cache_l2.c, cache_store.c.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "weir/cache_fetch.h"
#include "weir/cache_stage.h"
#include "weir/core.h"

static void range_done(void *arg, int result, struct weir_cache_obj *o, int status)
{
    struct cx *c = arg;
    struct weir_cache_verdict v;
    struct weir_cc none;

    c->fetch = NULL;
    if (result == WEIR_FETCH_STORED) {
        weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_ORIGIN_FETCH);
        if (weir_cache_l1_insert(cache_g.l1, o, cache_now()) == WEIR_OK) {
            cache_count(&c->cw->stored);
            weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_STORED);
        }
        cache_l2_store(c->cw, o);
        /* just fetched: it answers this request whatever its directives asked */
        weir_cc_init(&none);
        weir_cache_decide(&o->cc, o->lifetime, &o->times, &none, cache_now(), &v);
        if (cache_serve_cs(c, o, &v, "l1", "weir; fwd=uri-miss; fwd-status=200; stored; detail=range") ==
            WEIR_OK) {
            weir_cache_obj_release(o);
            cache_count(&c->cw->miss);
            weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_MISS);
            c->leased = 0; /* the value is in L2 for the instances waiting on our lease */
            cache_flight_end(c->lead, WEIR_OK);
            c->lead = NULL;
            c->state = CX_DONE;
            weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
            return;
        }
        cache_flight_end(c->lead, WEIR_OK); /* stored: our waiters find it in L1 */
        c->lead = NULL;
    } else if (result == WEIR_FETCH_NOT_STORABLE && status != 206 && status != 304) {
        cache_count(&c->cw->not_storable);
        weir_cache_l1_mark_hfm(cache_g.l1, c->key, cache_now() + HFM_SECONDS);
        c->detail = "range-not-stored";
    } else {
        c->detail = "range-fetch-failed";
    }
    weir_cache_obj_release(o);
    /* the request goes to the backend as it came (its Range and all); the
     * waiters of the flight go too */
    c->range_tried = 1;
    cache_go_upstream(c, 1);
}

int cache_range_miss(struct cx *c, int resume)
{
    if (c->range_tried || c->lead == NULL || c->pool == NULL || c->method != WEIR_HTTP_GET ||
        c->req == NULL || weir_http_find_header(c->req, "range") < 0 ||
        (c->qcc.flags & (WEIR_CC_NO_STORE | WEIR_CC_ONLY_IF_CACHED)))
        return -1;
    c->range_tried = 1;
    c->fetch = weir_cache_fetch_fresh(c->cw->base, c->pool, c->key, c->url, c->req->headers, c->req->nheaders,
                                      cache_fetch_timeout_ms(), cache_g.max_object_bytes, range_done, c);
    if (c->fetch == NULL)
        return -1;    /* no server available, too many fields: as it came */
    c->state = CX_L2; /* suspended on an upstream event, like an L2 lookup */
    (void)resume;     /* either way the exchange stays suspended until range_done */
    return WEIR_HOOK_SUSPENDED;
}
