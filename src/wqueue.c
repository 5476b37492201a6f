/* wqueue.c - multi-producer, single-consumer message queue woken by an eventfd. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "weir/wqueue.h"

int weir_wqueue_init(struct weir_wqueue *q)
{
    q->head = q->tail = NULL;
    atomic_init(&q->sigs, 0);
    if (pthread_mutex_init(&q->lock, NULL) != 0)
        return -1;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        int e = errno;
        pthread_mutex_destroy(&q->lock);
        errno = e;
        return -1;
    }
    return 0;
}

static void wake(struct weir_wqueue *q)
{
    uint64_t one = 1;
    /* EAGAIN only when the counter is about to overflow: the consumer has
     * a wake-up pending anyway. */
    while (write(q->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

void weir_wqueue_signal(struct weir_wqueue *q, unsigned sigs)
{
    atomic_fetch_or_explicit(&q->sigs, sigs, memory_order_release);
    wake(q);
}

int weir_wqueue_call(struct weir_wqueue *q, weir_wcall_fn fn, void *arg, void (*dispose)(void *arg))
{
    struct weir_wmsg *m = malloc(sizeof(*m));

    if (m == NULL)
        return -1;
    m->fn = fn;
    m->dispose = dispose;
    m->arg = arg;
    m->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail != NULL)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    pthread_mutex_unlock(&q->lock);
    wake(q);
    return 0;
}

unsigned weir_wqueue_take(struct weir_wqueue *q, struct weir_wmsg **calls)
{
    uint64_t n;

    /* Read the eventfd first: a post that lands after this read wakes the
     * consumer again, so nothing posted is ever left unseen. */
    while (read(q->efd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&q->lock);
    *calls = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return atomic_exchange_explicit(&q->sigs, 0, memory_order_acquire);
}

void weir_wqueue_run(struct weir_wmsg *calls, void *ctx)
{
    while (calls != NULL) {
        struct weir_wmsg *next = calls->next;
        calls->fn(ctx, calls->arg);
        free(calls);
        calls = next;
    }
}

void weir_wqueue_destroy(struct weir_wqueue *q)
{
    struct weir_wmsg *m = q->head;

    while (m != NULL) {
        struct weir_wmsg *next = m->next;
        if (m->dispose != NULL)
            m->dispose(m->arg);
        free(m);
        m = next;
    }
    q->head = q->tail = NULL;
    if (q->efd >= 0)
        close(q->efd);
    q->efd = -1;
    pthread_mutex_destroy(&q->lock);
}
