/*
 * worker.h - one worker thread: its own event_base, listeners (SO_REUSEPORT),
 * client sessions and upstream keep-alive pools.
 *
 * Everything in struct weir_worker is touched only by its own thread, except
 * its message queue `mq` (any thread posts to it: weir_worker_signal,
 * weir_worker_call), so each worker's event_base runs without locks.
 */
#ifndef WEIR_WORKER_H
#define WEIR_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "weir/http_parse.h"
#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/wqueue.h"

struct weir_session;
struct weir_accept_guard;
struct weir_upconn;

struct weir_worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct evconnlistener **listeners;
    size_t nlisteners;

    struct weir_rt *rt; /* current snapshot as this worker knows it (retained) */
    unsigned rt_gen;

    /* cross-thread: the message queue (wqueue.h), drained on this thread */
    struct weir_wqueue mq;
    int mq_ready;                           /* mq initialised */
    struct event *notify;                   /* reads mq.efd on the worker */
    struct weir_accept_guard *guard;        /* EMFILE back-off of the listeners */
    void (*on_exit)(struct weir_worker *w); /* called on the worker thread when its loop ends */

    int draining;
    struct event *tick; /* 100 ms: access log flush, clock cache, drain check */

    TAILQ_HEAD(, weir_session) sessions;
    size_t nsessions;
    TAILQ_HEAD(, weir_upconn) idle_all; /* every idle upstream connection */

    /* Common timeouts (libevent O(1) timeout queues), refreshed with rt. */
    const struct timeval *tv_idle, *tv_header, *tv_body, *tv_upstream, *tv_connect, *tv_up_idle;
    struct timeval tv_plain[6]; /* used when a common timeout cannot be created */
    int tv_plain_warned;

    struct weir_http_msg msg; /* parse scratch: a parse is used before any callback returns */
    struct weir_alog alog;

    uint64_t rid_seq;
    uint32_t rid_salt;
    uint64_t rng;

    time_t clf_sec; /* cached access log time */
    char clf_time[40];
    char iso_time[40];
};

/*
 * Create worker `id` bound to the listen addresses of `conf` (each worker
 * binds its own socket with SO_REUSEPORT). Main thread. Returns NULL and
 * logs the reason on failure (bind error, ...).
 */
struct weir_worker *weir_worker_new(int id, const struct weir_conf *conf);
/* Start the worker thread. Returns 0 or -1. */
int weir_worker_start(struct weir_worker *w);
/* Post signals (enum weir_wsig: WEIR_WSIG_DRAIN, _STOP, _SNAPSHOT) to the
 * worker. Never fails; handled on the worker thread. Any thread. */
void weir_worker_signal(struct weir_worker *w, unsigned sigs);
/* Run fn(ctx = w, arg) on the worker thread (purges, runtime changes), in
 * the order posted. 0, or -1 when out of memory (arg stays the caller's). If
 * the worker ends before it runs, dispose(arg) is called at weir_worker_free
 * instead. Any thread. */
int weir_worker_call(struct weir_worker *w, weir_wcall_fn fn, void *arg, void (*dispose)(void *arg));
/* Join and free. Main thread, after the worker's loop ended. */
void weir_worker_free(struct weir_worker *w);

/* Refresh w->rt if a newer snapshot was published. Worker thread. */
void weir_worker_sync_rt(struct weir_worker *w);

/* Global client connection count (all workers) for limits.max_connections. */
extern _Atomic long weir_client_conns;

#endif
