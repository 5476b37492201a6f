/*
 * cache_flight.c - request coalescing within an instance: the first miss
 * for a key leads a flight, the next ones wait as its waiters; when the
 * leader ends its flight they are woken on their own workers (a
 * mutex-protected inbox plus an eventfd per worker, since worker event
 * bases run without libevent locks) and answered from L1, or released to
 * the backend.
 *
 * Streaming: when the leader's response is storable, the leader publishes
 * its growing object in the flight (a length not known yet: with registered
 * readers, so that a body outgrowing max_object_bytes passes through to the
 * waiters streaming it, which the object then wakes itself: cache_obj.h);
 * each waiter that
 * may use it (cache_serve_stream) is answered at once with the head and
 * fed the body as it grows: every append wakes the streaming waiters
 * through their inboxes (a waiter is queued at most once at a time), and
 * the session pulls what is there as the waiter's client reads (its own
 * backpressure). If the object is abandoned (the leader broke off) the
 * streaming waiters are cut; those that had not started go upstream, as
 * they do when a body passes max_object_bytes.
 * Depends on cache_serve.c.
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

static pthread_mutex_t flights_mu = PTHREAD_MUTEX_INITIALIZER;
static struct flight *flights; /* running flights (under flights_mu) */

/* Queue w on its worker's inbox (once) and wake the worker. */
static void inbox_push(struct waiter *w)
{
    struct cache_worker *cw = w->cw;
    uint64_t one = 1;
    int wake = 0;

    pthread_mutex_lock(&cw->mu);
    if (!w->queued) {
        w->queued = 1;
        w->inext = cw->inbox;
        cw->inbox = w;
        wake = 1;
    }
    pthread_mutex_unlock(&cw->mu);
    if (wake && write(cw->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        weir_log_warn("cache: cannot wake worker %d: %s", cw->id, strerror(errno));
}

/* End a flight: wake every waiter on its own worker. Leader's thread. */
void cache_flight_end(struct flight *f, int result)
{
    struct waiter *w, *next;
    struct flight **pp;

    if (f == NULL)
        return;
    pthread_mutex_lock(&flights_mu);
    for (pp = &flights; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    w = f->waiters;
    f->waiters = NULL;
    for (; w != NULL; w = next) {
        next = w->next;
        w->flight = NULL;
        w->result = result; /* a streaming waiter ignores it: it looks at the object's end */
        inbox_push(w);
    }
    pthread_mutex_unlock(&flights_mu);
    weir_cache_obj_release(f->obj);
    free(f->key);
    free(f);
}

void cache_flight_stream(struct flight *f, struct weir_cache_obj *o)
{
    if (f == NULL || f->obj != NULL)
        return;
    weir_cache_obj_retain(o);
    pthread_mutex_lock(&flights_mu);
    f->obj = o;
    for (struct waiter *w = f->waiters; w != NULL; w = w->next) {
        w->result = STREAM_OK;
        inbox_push(w);
    }
    pthread_mutex_unlock(&flights_mu);
}

void cache_flight_progress(struct flight *f)
{
    if (f == NULL || f->obj == NULL)
        return;
    pthread_mutex_lock(&flights_mu);
    for (struct waiter *w = f->waiters; w != NULL; w = w->next)
        if (w->result == STREAM_OK)
            inbox_push(w);
    pthread_mutex_unlock(&flights_mu);
}

/* Join the flight for key or start one. Returns the new flight when this
 * exchange leads, NULL when a flight runs already (w, when not NULL, is
 * added to its waiters) or on allocation failure (*err set). */
struct flight *cache_flight_join(const char *key, struct waiter *w, int *err)
{
    struct flight *f;

    *err = 0;
    pthread_mutex_lock(&flights_mu);
    for (f = flights; f != NULL; f = f->next)
        if (strcmp(f->key, key) == 0)
            break;
    if (f != NULL) { /* someone fetches it already: wait for it (or, w == NULL, not) */
        if (w != NULL) {
            w->flight = f;
            w->next = f->waiters;
            f->waiters = w;
            if (f->obj != NULL) { /* it streams already: join it */
                w->result = STREAM_OK;
                inbox_push(w);
            }
        }
        pthread_mutex_unlock(&flights_mu);
        return NULL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->key = strdup(key)) == NULL) {
        free(f);
        *err = 1;
        pthread_mutex_unlock(&flights_mu);
        return NULL;
    }
    f->next = flights;
    flights = f;
    pthread_mutex_unlock(&flights_mu);
    return f;
}

/* The waiter's exchange ended or gave up: leave the flight. Waiter's thread. */
void cache_waiter_leave(struct waiter *w)
{
    struct waiter **pp;

    pthread_mutex_lock(&flights_mu);
    if (w->flight != NULL) {
        for (pp = &w->flight->waiters; *pp != NULL; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        w->flight = NULL;
    }
    pthread_mutex_unlock(&flights_mu);
}

/* The object's writer wakes a reader of a passing object (cache_obj.h):
 * under the object's reader lock, on the writer's thread. */
static void reader_wake(void *arg)
{
    inbox_push(arg);
}

/* Answer the waiter from the flight's growing object if its request may
 * use it: 1 (streaming, resumed), or 0 (it waits for the flight's end). */
static int waiter_stream(struct waiter *w)
{
    struct cx *c = w->cx;
    struct weir_cache_obj *o = NULL;
    char cs[128];
    int ok;

    pthread_mutex_lock(&flights_mu);
    if (w->flight != NULL && w->flight->obj != NULL) {
        o = w->flight->obj;
        weir_cache_obj_retain(o);
    }
    pthread_mutex_unlock(&flights_mu);
    if (o == NULL)
        return 0;
    snprintf(cs, sizeof(cs), "weir; fwd=%s; fwd-status=%d; collapsed", c->fwd, o->status);
    c->rdr.wake = reader_wake; /* a length not known yet: c reads through the object */
    c->rdr.arg = w;
    ok = cache_serve_stream(c, o, cs) == WEIR_OK;
    weir_cache_obj_release(o);
    if (!ok) {
        pthread_mutex_lock(&flights_mu);
        if (w->flight != NULL && w->result == STREAM_OK)
            w->result = WAIT_END;
        pthread_mutex_unlock(&flights_mu);
        return 0;
    }
    w->streaming = 1;
    w->woken = 1;
    if (w->timer != NULL)
        evtimer_del(w->timer);
    cache_count(&c->cw->coalesced);
    /* coalesced, answered fresh from the leader's object as it arrives */
    weir_cache_stats_event(c->rs, c->cw->id, WEIR_CSE_COALESCED);
    weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_L1_HIT);
    c->state = CX_DONE;
    weir_exchange_resume(c->x, WEIR_HOOK_ANSWERED);
    return 1;
}

/* A waiter woken (by its leader or its timer), on its own worker. */
static void waiter_wake(struct waiter *w, int timed_out)
{
    struct cx *c = w->cx;
    struct weir_l1_hit hit;
    struct weir_cache_verdict v;
    int result;

    if (w->streaming) { /* more of the object, or its end */
        weir_exchange_stream_kick(c->x);
        return;
    }
    if (w->woken)
        return;
    pthread_mutex_lock(&flights_mu);
    result = w->result; /* the leader's thread writes it */
    pthread_mutex_unlock(&flights_mu);
    if (!timed_out && result == STREAM_OK && waiter_stream(w))
        return;
    if (!timed_out && (result == STREAM_OK || result == WAIT_END))
        return; /* still in the flight: its end wakes it again */
    w->woken = 1;
    if (timed_out)
        cache_waiter_leave(w); /* a wake-up already queued finds w->woken */
    else if (w->timer != NULL)
        evtimer_del(w->timer);
    if (!timed_out && (result == WEIR_OK || result == STALE_OK) &&
        weir_cache_l1_lookup(cache_g.l1, c->key, c->req->headers, c->req->nheaders, cache_now(), &hit) ==
            WEIR_OK) {
        int ok = cache_usable(c, hit.obj, hit.lifetime, &v);
        char cs[128];
        /* answered from what the request it was collapsed with fetched */
        snprintf(cs, sizeof(cs), "weir; fwd=%s; fwd-status=%d; collapsed", c->fwd, hit.obj->status);
        if ((ok && cache_serve_cs(c, hit.obj, &v, "l1", cs) == WEIR_OK) ||
            (!ok && result == STALE_OK && v.stale_if_error &&
             cache_serve_cs(c, hit.obj, &v, "l1", "weir; fwd=stale; collapsed; detail=stale-if-error") ==
                 WEIR_OK)) {
            weir_cache_obj_release(hit.obj);
            cache_count(&c->cw->coalesced);
            cache_count(ok ? &c->cw->hit_l1 : &c->cw->stale_served);
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
    cache_count(&c->cw->miss);
    weir_cache_stats_result(c->rs, c->cw->id, WEIR_CSR_MISS);
    cache_attach_status(c->x, c->fwd, timed_out ? "wait-timeout" : "released");
    weir_exchange_resume(c->x, WEIR_HOOK_CONTINUE);
}

void cache_waiter_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    waiter_wake(arg, 1);
}

void cache_inbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct cache_worker *cw = arg;
    struct waiter *w;
    uint64_t n;

    if (read(cw->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        weir_log_warn("cache: worker %d inbox: %s", cw->id, strerror(errno));
    /* one at a time: a waiter may be queued again (more data) or dropped
     * (its exchange ended) while the others are handled */
    for (;;) {
        pthread_mutex_lock(&cw->mu);
        w = cw->inbox;
        if (w != NULL) {
            cw->inbox = w->inext;
            w->queued = 0;
        }
        pthread_mutex_unlock(&cw->mu);
        if (w == NULL)
            break;
        waiter_wake(w, 0);
    }
}

void cache_waiter_drop(struct waiter *w)
{
    struct cache_worker *cw = w->cw;

    cache_waiter_leave(w);
    if (w->timer != NULL)
        event_free(w->timer);
    /* a wake-up already queued in the inbox holds w: the inbox runs on
     * this thread, so w is unqueued and freed here */
    pthread_mutex_lock(&cw->mu);
    if (w->queued)
        for (struct waiter **pp = &cw->inbox; *pp != NULL; pp = &(*pp)->inext)
            if (*pp == w) {
                *pp = w->inext;
                break;
            }
    pthread_mutex_unlock(&cw->mu);
    free(w);
}
