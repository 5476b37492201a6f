/*
 * test_wqueue.c - the worker message queue (wqueue.c): calls from several
 * producer threads all arrive, in each producer's order; signals coalesce
 * and never allocate; the eventfd wakes the consumer; calls left queued are
 * disposed of, never leaked.
 */
#include "config.h"

#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/wqueue.h"

#define PRODUCERS    4
#define PER_PRODUCER 5000

struct consumer {
    long last[PRODUCERS]; /* last sequence number seen per producer */
    long count;
    int out_of_order;
};

struct prod {
    struct weir_wqueue *q;
    int id;
};

static void on_call(void *ctx, void *arg)
{
    struct consumer *c = ctx;
    long v = (long)(intptr_t)arg;
    int p = (int)(v / PER_PRODUCER);
    long seq = v % PER_PRODUCER;

    if (seq != c->last[p] + 1)
        c->out_of_order++;
    c->last[p] = seq;
    c->count++;
}

static void *producer(void *arg)
{
    struct prod *p = arg;
    for (long i = 0; i < PER_PRODUCER; i++)
        while (weir_wqueue_call(p->q, on_call, (void *)(intptr_t)(p->id * PER_PRODUCER + i), NULL) != 0)
            ;
    return NULL;
}

static int readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 1;
}

static void test_many_producers(void **state)
{
    struct weir_wqueue q;
    struct consumer c;
    pthread_t th[PRODUCERS];
    struct prod ps[PRODUCERS];

    (void)state;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < PRODUCERS; i++)
        c.last[i] = -1;
    assert_int_equal(weir_wqueue_init(&q), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i].q = &q;
        ps[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, producer, &ps[i]), 0);
    }
    /* Consume while they produce, woken by the eventfd only. */
    for (int spins = 0; c.count < (long)PRODUCERS * PER_PRODUCER && spins < 100000; spins++) {
        struct weir_wmsg *calls;
        if (!readable(q.efd, 2000))
            break;
        assert_int_equal(weir_wqueue_take(&q, &calls), 0);
        weir_wqueue_run(calls, &c);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(c.count, (long)PRODUCERS * PER_PRODUCER);
    assert_int_equal(c.out_of_order, 0);
    /* Everything taken. A producer's wake-up may land after the consumer's
     * last take (it appends, then writes the eventfd): that leaves at most
     * one spurious wake-up, whose take finds nothing; then it is quiet. */
    if (readable(q.efd, 0)) {
        struct weir_wmsg *rest = NULL;
        assert_int_equal(weir_wqueue_take(&q, &rest), 0);
        assert_null(rest);
    }
    assert_false(readable(q.efd, 0));
    weir_wqueue_destroy(&q);
}

static void test_signals_coalesce(void **state)
{
    struct weir_wqueue q;
    struct weir_wmsg *calls;

    (void)state;
    assert_int_equal(weir_wqueue_init(&q), 0);
    assert_false(readable(q.efd, 0));
    weir_wqueue_signal(&q, WEIR_WSIG_SNAPSHOT);
    weir_wqueue_signal(&q, WEIR_WSIG_DRAIN);
    weir_wqueue_signal(&q, WEIR_WSIG_SNAPSHOT);
    assert_true(readable(q.efd, 0));
    assert_int_equal(weir_wqueue_take(&q, &calls), WEIR_WSIG_SNAPSHOT | WEIR_WSIG_DRAIN);
    assert_null(calls);
    assert_false(readable(q.efd, 0));
    assert_int_equal(weir_wqueue_take(&q, &calls), 0);
    weir_wqueue_destroy(&q);
}

static int disposed;

static void dispose(void *arg)
{
    disposed++;
    free(arg);
}

static void never(void *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    fail_msg("a call ran after its queue was destroyed");
}

static void test_destroy_disposes(void **state)
{
    struct weir_wqueue q;

    (void)state;
    disposed = 0;
    assert_int_equal(weir_wqueue_init(&q), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(weir_wqueue_call(&q, never, malloc(16), dispose), 0);
    weir_wqueue_destroy(&q);
    assert_int_equal(disposed, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_producers),
        cmocka_unit_test(test_signals_coalesce),
        cmocka_unit_test(test_destroy_disposes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
