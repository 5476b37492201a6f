/*
 * wqueue.h - a worker's message queue: many producer threads, one consumer
 * (the worker thread), woken through an eventfd (memcached thread.c style).
 *
 * Two kinds of messages share the one eventfd:
 *  - signals (drain, stop, snapshot published): bits in an atomic mask.
 *    Posting one never allocates and never fails; repeated posts before the
 *    worker runs coalesce into one.
 *  - calls (purges, runtime changes, anything carrying data): a function and
 *    its argument, queued in FIFO order under a mutex and run on the
 *    consumer thread. A call whose queue is destroyed before it ran has its
 *    `dispose` (if any) called instead, so its argument never leaks.
 *
 * The consumer reads the eventfd, takes the signal bits, then runs the calls
 * that were queued at that moment (signals first, then the calls in order).
 * Every function here is safe from any thread except where noted.
 */
#ifndef WEIR_WQUEUE_H
#define WEIR_WQUEUE_H

#include <pthread.h>
#include <stdatomic.h>

/* Signal bits (weir_wqueue_signal). */
enum weir_wsig {
    WEIR_WSIG_DRAIN = 1u << 0,    /* stop accepting, finish in-flight requests, then exit */
    WEIR_WSIG_STOP = 1u << 1,     /* drain deadline passed: close every connection now */
    WEIR_WSIG_SNAPSHOT = 1u << 2, /* a new configuration snapshot was published */
};

/* A queued call: fn(ctx, arg) on the consumer thread, ctx being the
 * consumer's own context (the worker). dispose(arg) instead when the queue is
 * destroyed before the call ran; NULL when arg needs no freeing. */
typedef void (*weir_wcall_fn)(void *ctx, void *arg);

struct weir_wmsg {
    weir_wcall_fn fn;
    void (*dispose)(void *arg);
    void *arg;
    struct weir_wmsg *next;
};

struct weir_wqueue {
    int efd;               /* eventfd (non-blocking, close-on-exec); the consumer polls it */
    _Atomic unsigned sigs; /* pending enum weir_wsig bits */
    pthread_mutex_t lock;  /* guards head/tail */
    struct weir_wmsg *head, *tail;
};

/* Create the eventfd and an empty queue. 0, or -1 with errno set. */
int weir_wqueue_init(struct weir_wqueue *q);
/* Dispose of every call still queued and close the eventfd. Once no
 * producer can post any more. */
void weir_wqueue_destroy(struct weir_wqueue *q);

/* Post signal bits and wake the consumer. Never fails. */
void weir_wqueue_signal(struct weir_wqueue *q, unsigned sigs);
/* Queue fn(ctx, arg) and wake the consumer. 0, or -1 (out of memory: arg
 * stays the caller's and nothing was queued). */
int weir_wqueue_call(struct weir_wqueue *q, weir_wcall_fn fn, void *arg, void (*dispose)(void *arg));

/* Consumer thread: acknowledge the eventfd and take the pending signals
 * (returned) and calls (*calls, a FIFO list the caller runs with
 * weir_wqueue_run and owns). */
unsigned weir_wqueue_take(struct weir_wqueue *q, struct weir_wmsg **calls);
/* Run and free a list from weir_wqueue_take, in order. Consumer thread. */
void weir_wqueue_run(struct weir_wmsg *calls, void *ctx);

#endif
