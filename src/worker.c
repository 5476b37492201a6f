/* worker.c - worker threads: event loop, listeners, snapshot refresh, drain. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "weir/accept_guard.h"
#include "weir/log.h"
#include "weir/session.h"
#include "weir/upstream.h"
#include "weir/worker.h"
#include "weir/cache.h"

_Atomic long weir_client_conns;

static void ms_tv(struct timeval *tv, int ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/* libevent allows 256 common timeouts per event base and every reload with
 * new values adds some: past that limit a duration gets a plain timeval
 * (heap timeout, O(log n) per arm) in the worker, never no timeout at all. */
static const struct timeval *common_tv(struct weir_worker *w, int ms, struct timeval *plain)
{
    ms_tv(plain, ms);
    const struct timeval *c = event_base_init_common_timeout(w->base, plain);
    if (c != NULL)
        return c;
    if (!w->tv_plain_warned) {
        weir_log_warn("worker %d: out of libevent common timeouts; using plain timers", w->id);
        w->tv_plain_warned = 1;
    }
    return plain;
}

/* Timeouts come from the snapshot; libevent's common timeouts make each
 * (re)arm O(1) for the thousands of connections sharing one duration. */
static void refresh_timeouts(struct weir_worker *w)
{
    const struct weir_conf *c = w->rt->conf;
    w->tv_idle = common_tv(w, c->timeouts.idle_ms, &w->tv_plain[0]);
    w->tv_header = common_tv(w, c->timeouts.client_header_ms, &w->tv_plain[1]);
    w->tv_body = common_tv(w, c->timeouts.client_body_ms, &w->tv_plain[2]);
    w->tv_upstream = common_tv(w, c->timeouts.upstream_response_ms, &w->tv_plain[3]);
    w->tv_connect = common_tv(w, c->timeouts.connect_ms, &w->tv_plain[4]);
    w->tv_up_idle = common_tv(w, c->timeouts.upstream_idle_ms, &w->tv_plain[5]);
}

/* Carry this worker's balancing positions from the snapshot it leaves to the
 * one it takes, pool by pool (same name and policy), so round robin and its
 * kin continue where they were instead of restarting at the first server.
 * Both states are this worker's own: no other thread touches them. */
static void carry_lb(struct weir_worker *w, const struct weir_rt *from, struct weir_rt *to)
{
    if (from == NULL || from->nworkers != to->nworkers || w->id >= to->nworkers)
        return;
    for (size_t i = 0; i < to->npools; i++) {
        struct weir_pool *np = &to->pools[i];
        if (np->lb->carry == NULL)
            continue;
        for (size_t j = 0; j < from->npools; j++) {
            const struct weir_pool *op = &from->pools[j];
            if (op->lb == np->lb && strcmp(op->name, np->name) == 0) {
                np->lb->carry(np->lb_state[w->id], &np->set, op->lb_state[w->id], &op->set);
                break;
            }
        }
    }
}

void weir_worker_sync_rt(struct weir_worker *w)
{
    unsigned gen = weir_rt_generation();
    if (gen == w->rt_gen)
        return;
    struct weir_rt *rt = weir_rt_current();
    if (rt == NULL)
        return;
    carry_lb(w, w->rt, rt);
    weir_rt_release(w->rt);
    w->rt = rt;
    w->rt_gen = rt->generation;
    refresh_timeouts(w);
}

static void update_clock(struct weir_worker *w)
{
    time_t now = time(NULL);
    if (now == w->clf_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(w->clf_time, sizeof(w->clf_time), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    strftime(w->iso_time, sizeof(w->iso_time), "%Y-%m-%dT%H:%M:%SZ", &tm);
    w->clf_sec = now;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct weir_worker *w = arg;
    size_t idx = 0;
    while (idx < w->nlisteners && w->listeners[idx] != l)
        idx++;
    weir_worker_sync_rt(w);
    weir_session_accept_on(w, idx, fd, sa, salen);
}

/* Out of descriptors: every listener of this worker pauses (accept_guard.h)
 * instead of spinning, and the burst is logged once. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct weir_worker *w = arg;
    (void)l;
    weir_accept_guard_error(w->guard, EVUTIL_SOCKET_ERROR());
}

static void stop_listening(struct weir_worker *w)
{
    weir_accept_guard_clear(w->guard);
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i] != NULL)
            evconnlistener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_worker *w = arg;
    update_clock(w);
    weir_alog_flush(&w->alog);
    weir_worker_sync_rt(w);
    if (w->draining && w->nsessions == 0) {
        weir_up_close_all_idle(w);
        event_base_loopexit(w->base, NULL);
    }
}

/* The message queue: signals first (drain, stop, snapshot), then the queued
 * calls in the order they were posted. */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_worker *w = arg;
    struct weir_wmsg *calls;
    unsigned sigs = weir_wqueue_take(&w->mq, &calls);

    if ((sigs & (WEIR_WSIG_DRAIN | WEIR_WSIG_STOP)) && !w->draining) {
        w->draining = 1;
        stop_listening(w);
        weir_session_drain_all(w);
        weir_up_close_all_idle(w);
    }
    if (sigs & WEIR_WSIG_STOP) {
        weir_session_abort_all(w);
        weir_up_close_all_idle(w);
    }
    weir_wqueue_run(calls, w);
    tick_cb(fd, what, arg); /* picks a new snapshot up (WEIR_WSIG_SNAPSHOT) */
}

struct weir_worker *weir_worker_new(int id, const struct weir_conf *conf)
{
    struct weir_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->id = id;
    TAILQ_INIT(&w->sessions);
    TAILQ_INIT(&w->idle_all);
    /* Each base is touched by its own thread only (other threads talk to a
     * worker through its eventfd), so libevent needs no locks. (No epoll
     * changelist: it defers epoll_ctl(DEL) past close(), which another
     * worker's accept may already have reused the number for.) */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        goto err;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (w->base == NULL)
        goto err;
    w->rt = weir_rt_current();
    w->rt_gen = w->rt->generation;
    refresh_timeouts(w);
    w->listeners = calloc(conf->nlistens, sizeof(*w->listeners));
    char who[32];
    snprintf(who, sizeof(who), "worker %d", id);
    w->guard = weir_accept_guard_new(w->base, who);
    if (w->listeners == NULL || w->guard == NULL)
        goto err;
    for (size_t i = 0; i < conf->nlistens; i++) {
        const struct weir_conf_addr *a = &conf->listens[i].addr;
        w->listeners[i] = evconnlistener_new_bind(w->base, accept_cb, w,
                                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                                      LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT,
                                                  4096, (const struct sockaddr *)&a->ss, (int)a->len);
        if (w->listeners[i] == NULL) {
            weir_log_error("%s:%d: cannot listen on %s: %s", conf->file, a->line, a->text, strerror(errno));
            goto err;
        }
        w->nlisteners++;
        evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
        if (weir_accept_guard_add(w->guard, w->listeners[i]) != 0) {
            weir_log_error("%s:%d: too many listen addresses (at most %d)", conf->file, a->line,
                           WEIR_ACCEPT_GUARD_MAX);
            goto err;
        }
    }
    if (weir_wqueue_init(&w->mq) != 0)
        goto err;
    w->mq_ready = 1;
    w->notify = event_new(w->base, w->mq.efd, EV_READ | EV_PERSIST, notify_cb, w);
    w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
    if (w->notify == NULL || w->tick == NULL)
        goto err;
    struct timeval tv = {0, 100000};
    event_add(w->tick, &tv);
    event_add(w->notify, NULL);
    w->rid_salt = (uint32_t)getpid() * 2654435761u ^ (uint32_t)time(NULL) ^ ((uint32_t)id << 24);
    update_clock(w);
    return w;
err:
    weir_worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct weir_worker *w = arg;
    weir_log_thread_budget(1); /* per-request warnings: at most 20 a second per call site */
    weir_cache_worker_start(w->id, w->base);
    event_base_dispatch(w->base);
    weir_session_abort_all(w);
    weir_up_close_all_idle(w);
    weir_cache_worker_stop(w->id);
    weir_alog_flush(&w->alog);
    weir_session_thread_exit();
    if (w->on_exit != NULL)
        w->on_exit(w);
    return NULL;
}

int weir_worker_start(struct weir_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void weir_worker_signal(struct weir_worker *w, unsigned sigs)
{
    weir_wqueue_signal(&w->mq, sigs);
}

int weir_worker_call(struct weir_worker *w, weir_wcall_fn fn, void *arg, void (*dispose)(void *arg))
{
    return weir_wqueue_call(&w->mq, fn, arg, dispose);
}

void weir_worker_free(struct weir_worker *w)
{
    if (w == NULL)
        return;
    stop_listening(w);
    free(w->listeners);
    if (w->notify != NULL)
        event_free(w->notify);
    if (w->tick != NULL)
        event_free(w->tick);
    weir_accept_guard_free(w->guard);
    if (w->base != NULL)
        event_base_free(w->base);
    if (w->mq_ready)
        weir_wqueue_destroy(&w->mq);
    weir_rt_release(w->rt);
    free(w);
}
