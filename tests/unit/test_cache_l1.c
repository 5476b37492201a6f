/*
 * test_cache_l1.c - the in-memory cache (src/cache_l1.c): hits, Vary
 * variants, expiry, hit-for-miss marks, purges (url, prefix, tag, soft),
 * the memory bound with LRU eviction, objects outliving their eviction
 * while referenced, and a threaded stress test (also run under TSan:
 * see README).
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/cache_l1.h"

#define NOW 1700000000LL

static struct weir_cache_obj *mkobj(const char *url, const char *ae, const char *cc, const char *tags,
                                    size_t body)
{
    char key[512], *buf;
    struct weir_http_header req[1] = {{"Accept-Encoding", 15, ae, ae ? strlen(ae) : 0, 0}};
    struct weir_http_header resp[3] = {
        {"Cache-Control", 13, cc, strlen(cc), 0},
        {"Vary", 4, "Accept-Encoding", 15, 0},
        {"Surrogate-Key", 13, tags, strlen(tags), 0},
    };
    struct weir_cache_obj *o;

    snprintf(key, sizeof(key), "GET %s", url);
    o = weir_cache_obj_new(key, url, req, ae ? 1 : 0, 200, resp, 3, NOW, NOW, 1 << 24);
    assert_non_null(o);
    buf = calloc(1, body + 1);
    memset(buf, 'x', body);
    assert_int_equal(weir_cache_obj_append(o, buf, body), WEIR_OK);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    free(buf);
    return o;
}

static int lookup(struct weir_cache_l1 *l1, const char *url, const char *ae, int64_t now,
                  struct weir_l1_hit *hit)
{
    char key[512];
    struct weir_http_header req[1] = {{"accept-encoding", 15, ae, ae ? strlen(ae) : 0, 0}};
    int rc;

    snprintf(key, sizeof(key), "GET %s", url);
    rc = weir_cache_l1_lookup(l1, key, req, ae ? 1 : 0, now, hit);
    return rc;
}

static int has(struct weir_cache_l1 *l1, const char *url, const char *ae)
{
    struct weir_l1_hit hit;
    int rc = lookup(l1, url, ae, NOW, &hit);
    weir_cache_obj_release(hit.obj);
    return rc == WEIR_OK;
}

static void insert(struct weir_cache_l1 *l1, struct weir_cache_obj *o)
{
    assert_int_equal(weir_cache_l1_insert(l1, o, NOW), WEIR_OK);
    weir_cache_obj_release(o);
}

static void test_hit_miss_variants(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(1 << 20);
    struct weir_l1_hit hit;
    struct weir_l1_stats st;

    insert(l1, mkobj("http://h/a", "gzip", "max-age=60", "", 10));
    insert(l1, mkobj("http://h/a", "br", "max-age=60", "", 20));
    insert(l1, mkobj("http://h/a", NULL, "max-age=60", "", 30));
    assert_int_equal(lookup(l1, "http://h/a", "GZIP", NOW, &hit), WEIR_OK); /* normalised */
    assert_int_equal(weir_cache_obj_length(hit.obj), 10);
    assert_int_equal(hit.lifetime, 60);
    weir_cache_obj_release(hit.obj);
    assert_int_equal(lookup(l1, "http://h/a", "br", NOW, &hit), WEIR_OK);
    assert_int_equal(weir_cache_obj_length(hit.obj), 20);
    weir_cache_obj_release(hit.obj);
    assert_int_equal(lookup(l1, "http://h/a", NULL, NOW, &hit), WEIR_OK);
    assert_int_equal(weir_cache_obj_length(hit.obj), 30);
    weir_cache_obj_release(hit.obj);
    assert_int_equal(lookup(l1, "http://h/a", "zstd", NOW, &hit), WEIR_DECLINED);
    assert_null(hit.obj);
    assert_int_equal(hit.hit_for_miss, 0);
    assert_false(has(l1, "http://h/b", "gzip"));
    /* the same variant again replaces the first */
    insert(l1, mkobj("http://h/a", "gzip", "max-age=60", "", 11));
    assert_int_equal(lookup(l1, "http://h/a", "gzip", NOW, &hit), WEIR_OK);
    assert_int_equal(weir_cache_obj_length(hit.obj), 11);
    weir_cache_obj_release(hit.obj);
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.inserted, 4);
    weir_cache_l1_free(l1);
}

static void test_incomplete_and_too_big(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(64 * 1024);
    struct weir_http_header resp[1] = {{"Cache-Control", 13, "max-age=5", 9, 0}};
    struct weir_cache_obj *o =
        weir_cache_obj_new("GET http://h/x", "http://h/x", NULL, 0, 200, resp, 1, NOW, NOW, 100);

    assert_int_equal(weir_cache_l1_insert(l1, o, NOW), WEIR_DECLINED);
    weir_cache_obj_release(o);
    o = mkobj("http://h/big", NULL, "max-age=60", "", 100000);
    assert_int_equal(weir_cache_l1_insert(l1, o, NOW), WEIR_DECLINED);
    assert_int_equal(atomic_load(&o->refs), 1); /* not kept */
    weir_cache_obj_release(o);
    weir_cache_l1_free(l1);
}

static void test_expiry(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(1 << 20);
    struct weir_l1_hit hit;
    struct weir_l1_stats st;

    /* max-age=60, stale-if-error=40, no validator: useful for 100 s */
    insert(l1, mkobj("http://h/e", NULL, "max-age=60, stale-if-error=40", "", 5));
    assert_int_equal(lookup(l1, "http://h/e", NULL, NOW + 99, &hit), WEIR_OK);
    weir_cache_obj_release(hit.obj);
    assert_int_equal(lookup(l1, "http://h/e", NULL, NOW + 100, &hit), WEIR_DECLINED);
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.expired, 1);
    weir_cache_l1_free(l1);
}

static void test_hit_for_miss(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(1 << 20);
    struct weir_l1_hit hit;
    struct weir_l1_stats st;

    assert_int_equal(weir_cache_l1_mark_hfm(l1, "GET http://h/p", NOW + 10), WEIR_OK);
    assert_int_equal(lookup(l1, "http://h/p", NULL, NOW, &hit), WEIR_DECLINED);
    assert_int_equal(hit.hit_for_miss, 1);
    assert_int_equal(lookup(l1, "http://h/p", NULL, NOW + 10, &hit), WEIR_DECLINED);
    assert_int_equal(hit.hit_for_miss, 0); /* expired */
    assert_int_equal(weir_cache_l1_mark_hfm(l1, "GET http://h/p", NOW + 10), WEIR_OK);
    assert_int_equal(weir_cache_l1_mark_hfm(l1, "GET http://h/p", NOW + 20), WEIR_OK); /* replaces */
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.marks, 1);
    /* a stored object clears the mark */
    insert(l1, mkobj("http://h/p", NULL, "max-age=60", "", 5));
    assert_int_equal(lookup(l1, "http://h/p", NULL, NOW, &hit), WEIR_OK);
    assert_int_equal(hit.hit_for_miss, 0);
    weir_cache_obj_release(hit.obj);
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.marks, 0);
    /* a purge removes marks */
    assert_int_equal(weir_cache_l1_mark_hfm(l1, "GET http://h/q", NOW + 10), WEIR_OK);
    assert_int_equal(weir_cache_l1_purge_prefix(l1, "http://h/q", 0, NOW), 0);
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.marks, 0);
    weir_cache_l1_free(l1);
}

static void test_purges(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(1 << 20);
    struct weir_l1_hit hit;

    insert(l1, mkobj("http://h/p/1", "gzip", "max-age=60", "product-42 list", 5));
    insert(l1, mkobj("http://h/p/1", "br", "max-age=60", "product-42", 5));
    insert(l1, mkobj("http://h/p/2", NULL, "max-age=60", "product-43 list", 5));
    insert(l1, mkobj("http://h/q/1", NULL, "max-age=60", "other", 5));
    insert(l1, mkobj("http://g/p/1", NULL, "max-age=60", "list", 5));

    assert_int_equal(weir_cache_l1_purge_url(l1, "http://h/p/1", 0, NOW), 2); /* both variants */
    assert_false(has(l1, "http://h/p/1", "gzip"));
    assert_true(has(l1, "http://h/p/2", NULL));
    assert_int_equal(weir_cache_l1_purge_url(l1, "http://h/p/1", 0, NOW), 0);

    assert_int_equal(weir_cache_l1_purge_tag(l1, "list", 0, NOW), 2);
    assert_false(has(l1, "http://h/p/2", NULL));
    assert_false(has(l1, "http://g/p/1", NULL));
    assert_true(has(l1, "http://h/q/1", NULL));

    insert(l1, mkobj("http://h/p/3", NULL, "max-age=60", "", 5));
    assert_int_equal(weir_cache_l1_purge_prefix(l1, "http://h/p/", 0, NOW), 1);
    assert_true(has(l1, "http://h/q/1", NULL));
    assert_int_equal(weir_cache_l1_purge_all(l1), 1);
    assert_false(has(l1, "http://h/q/1", NULL));

    /* soft: kept, but stale from now on */
    insert(l1, mkobj("http://h/s", NULL, "max-age=600, stale-while-revalidate=60", "t", 5));
    assert_int_equal(lookup(l1, "http://h/s", NULL, NOW + 10, &hit), WEIR_OK);
    assert_int_equal(hit.lifetime, 600);
    weir_cache_obj_release(hit.obj);
    assert_int_equal(weir_cache_l1_purge_tag(l1, "t", 1, NOW + 10), 1);
    assert_int_equal(lookup(l1, "http://h/s", NULL, NOW + 20, &hit), WEIR_OK);
    assert_int_equal(hit.lifetime, 10);
    {
        struct weir_cache_verdict v;
        struct weir_cc q;
        weir_cc_init(&q);
        weir_cache_decide(&hit.obj->cc, hit.lifetime, &hit.obj->times, &q, NOW + 20, &v);
        assert_int_equal(v.use, WEIR_USE_STALE_REVALIDATE);
    }
    weir_cache_obj_release(hit.obj);
    weir_cache_l1_free(l1);
}

static void test_memory_bound(void **state)
{
    size_t budget = 2 << 20, i;
    struct weir_cache_l1 *l1 = weir_cache_l1_new(budget);
    struct weir_l1_stats st, base;
    struct weir_l1_hit hit;
    char url[64];

    weir_cache_l1_stats(l1, &base);
    assert_true(base.bytes > 0); /* the empty hash tables count */
    for (i = 0; i < 2000; i++) {
        snprintf(url, sizeof(url), "http://h/m/%zu", i);
        insert(l1, mkobj(url, NULL, "max-age=600", "", 10000));
        weir_cache_l1_stats(l1, &st);
        assert_true(st.bytes <= budget);
        /* keep one key hot: LRU must keep it */
        assert_true(has(l1, "http://h/m/0", NULL));
    }
    weir_cache_l1_stats(l1, &st);
    assert_true(st.evicted > 1700);
    assert_int_equal(st.objects + st.evicted, 2000);
    /* nearly full: within one object of the budget and each counted at its real size */
    assert_true(st.bytes > budget - 16 * 11000);
    assert_true(st.objects * 10000 < st.bytes);
    assert_true(st.objects * 11000 > st.bytes - base.bytes - 16 * 4096);
    /* an object being sent survives its eviction */
    assert_int_equal(lookup(l1, "http://h/m/1999", NULL, NOW, &hit), WEIR_OK);
    weir_cache_l1_purge_all(l1);
    weir_cache_l1_stats(l1, &st);
    assert_int_equal(st.objects, 0);
    {
        struct weir_cache_cursor cur = {NULL, 0};
        const char *p;
        assert_int_equal(weir_cache_obj_length(hit.obj), 10000);
        assert_int_equal(weir_cache_obj_span(hit.obj, &cur, 9999, 10000, &p), 1);
        assert_int_equal(p[0], 'x');
    }
    weir_cache_obj_release(hit.obj);
    weir_cache_l1_free(l1);
}

/* ---- threads -------------------------------------------------------------------- */

struct worker {
    struct weir_cache_l1 *l1;
    unsigned seed;
    int hits, ops;
};

static void *stress_main(void *arg)
{
    struct worker *w = arg;
    char url[64], key[80];
    int i;

    for (i = 0; i < w->ops; i++) {
        unsigned r = (unsigned)rand_r(&w->seed);
        snprintf(url, sizeof(url), "http://h/s/%u", r % 200);
        switch (r % 16) {
        case 0:
        case 1:
        case 2: {
            struct weir_cache_obj *o =
                mkobj(url, (r & 64) ? "gzip" : NULL, "max-age=600", (r & 128) ? "x" : "y", (r >> 8) % 5000);
            weir_cache_l1_insert(w->l1, o, NOW);
            weir_cache_obj_release(o);
            break;
        }
        case 3:
            weir_cache_l1_purge_url(w->l1, url, r & 32, NOW);
            break;
        case 4:
            if ((r >> 8) % 50 == 0)
                weir_cache_l1_purge_tag(w->l1, "x", r & 32, NOW);
            break;
        case 5:
            snprintf(key, sizeof(key), "GET %s", url);
            weir_cache_l1_mark_hfm(w->l1, key, NOW + 5);
            break;
        default: {
            struct weir_l1_hit hit;
            if (lookup(w->l1, url, (r & 64) ? "gzip" : NULL, NOW, &hit) == WEIR_OK) {
                struct weir_cache_cursor cur = {NULL, 0};
                const char *p;
                uint64_t len = weir_cache_obj_length(hit.obj);
                if (len > 0) {
                    size_t k = weir_cache_obj_span(hit.obj, &cur, len - 1, len, &p);
                    /* cmocka's asserts are for the main thread */
                    if (k != 1 || p[0] != 'x')
                        abort();
                }
                weir_cache_obj_release(hit.obj);
                w->hits++;
            }
        }
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct weir_cache_l1 *l1 = weir_cache_l1_new(300000);
    struct worker w[4];
    pthread_t t[4];
    struct weir_l1_stats st;
    int i, hits = 0;

    for (i = 0; i < 4; i++) {
        w[i] = (struct worker){l1, (unsigned)i * 7919u + 1, 0, 20000};
        assert_int_equal(pthread_create(&t[i], NULL, stress_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        hits += w[i].hits;
    }
    weir_cache_l1_stats(l1, &st);
    assert_true(st.bytes <= 300000);
    assert_true(hits > 0);
    assert_true(st.evicted > 0);
    weir_cache_l1_free(l1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_variants),
        cmocka_unit_test(test_incomplete_and_too_big),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_hit_for_miss),
        cmocka_unit_test(test_purges),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
