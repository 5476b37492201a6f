/* Unit tests: per-route cache statistics (src/cache_stats.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "weir/cache_stats.h"
#include "weir/stats.h"

static int setup(void **state)
{
    (void)state;
    assert_int_equal(weir_stats_init(2), 0);
    assert_int_equal(weir_cache_stats_init(2), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    weir_cache_stats_shutdown();
    weir_stats_shutdown();
    return 0;
}

static void test_entity_per_route_key(void **state)
{
    struct weir_stats *a = weir_stats_get(WEIR_STATS_ROUTE, "* /a");
    struct weir_stats *b = weir_stats_get(WEIR_STATS_ROUTE, "* /b");
    struct weir_cache_rstats *ra, *rb;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_null(weir_cache_stats_find("* /a"));
    ra = weir_cache_stats_for(0, a);
    rb = weir_cache_stats_for(1, b);
    assert_non_null(ra);
    assert_non_null(rb);
    assert_ptr_not_equal(ra, rb);
    /* same route from another worker, from the table and by key */
    assert_ptr_equal(weir_cache_stats_for(1, a), ra);
    assert_ptr_equal(weir_cache_stats_for(0, a), ra);
    assert_ptr_equal(weir_cache_stats_for(-1, a), ra);
    assert_ptr_equal(weir_cache_stats_find("* /a"), ra);
    assert_ptr_equal(weir_cache_stats_by_key("* /b"), rb);
    assert_null(weir_cache_stats_for(0, NULL));
    weir_stats_put(a);
    weir_stats_put(b);
}

static void test_reload_keeps_numbers(void **state)
{
    struct weir_stats *a = weir_stats_get(WEIR_STATS_ROUTE, "h /x");
    struct weir_cache_rstats *ra = weir_cache_stats_for(0, a);
    struct weir_cache_rcounters c;

    (void)state;
    weir_cache_stats_result(ra, 0, WEIR_CSR_L1_HIT);
    weir_stats_put(a); /* the route goes away (reload) ... */
    struct weir_stats *filler = weir_stats_get(WEIR_STATS_ROUTE, "other /y");
    struct weir_stats *a2 = weir_stats_get(WEIR_STATS_ROUTE, "h /x"); /* ... and comes back */
    assert_ptr_equal(weir_cache_stats_for(0, a2), ra);
    /* an entity that reuses an old address with another key gets its own */
    assert_ptr_not_equal(weir_cache_stats_for(0, filler), ra);
    weir_cache_stats_read(ra, &c);
    assert_int_equal(c.results[WEIR_CSR_L1_HIT], 1);
    weir_stats_put(a2);
    weir_stats_put(filler);
}

static void test_counts_summed_over_workers(void **state)
{
    struct weir_cache_rstats *r = weir_cache_stats_by_key("* /c"), *o = weir_cache_stats_by_key("* /d");
    struct weir_cache_rcounters c;

    (void)state;
    for (int i = 0; i < 5; i++)
        weir_cache_stats_result(r, 0, WEIR_CSR_L1_HIT);
    for (int i = 0; i < 3; i++)
        weir_cache_stats_result(r, 1, WEIR_CSR_L1_HIT);
    weir_cache_stats_result(r, 1, WEIR_CSR_L2_HIT);
    weir_cache_stats_result(r, 0, WEIR_CSR_L1_STALE);
    weir_cache_stats_result(r, 0, WEIR_CSR_MISS);
    weir_cache_stats_result(r, 0, WEIR_CSR_MISS);
    weir_cache_stats_result(r, 1, WEIR_CSR_STALE_ERROR);
    weir_cache_stats_result(r, 1, WEIR_CSR_ONLY_IF_CACHED);
    weir_cache_stats_event(r, 0, WEIR_CSE_ORIGIN_FETCH);
    weir_cache_stats_event(r, 1, WEIR_CSE_REVALIDATED_304);
    weir_cache_stats_not_storable(r, 0, 3);
    weir_cache_stats_not_storable(r, 1, 15);
    /* ignored: bad indexes, bad workers, NULL entity */
    weir_cache_stats_result(r, 2, WEIR_CSR_MISS);
    weir_cache_stats_result(r, -1, WEIR_CSR_MISS);
    weir_cache_stats_result(r, 0, WEIR_CSR_N);
    weir_cache_stats_event(r, 0, -1);
    weir_cache_stats_event(NULL, 0, WEIR_CSE_STORED);
    weir_cache_stats_not_storable(r, 0, 99); /* counted as not storable, no reason */
    weir_cache_stats_result(o, 0, WEIR_CSR_MISS);

    weir_cache_stats_read(r, &c);
    assert_int_equal(c.results[WEIR_CSR_L1_HIT], 8);
    assert_int_equal(c.results[WEIR_CSR_L2_HIT], 1);
    assert_int_equal(c.results[WEIR_CSR_MISS], 2);
    assert_int_equal(c.events[WEIR_CSE_NOT_STORABLE], 3);
    assert_int_equal(c.not_storable_by[3], 1);
    assert_int_equal(c.not_storable_by[15], 1);
    assert_int_equal(c.events[WEIR_CSE_REVALIDATED_304], 1);
    assert_int_equal(weir_cache_stats_hits(&c), 10);     /* 8 + 1 + 1 stale */
    assert_int_equal(weir_cache_stats_requests(&c), 14); /* + 2 miss + stale-if-error + 504 */
    assert_int_equal(weir_cache_stats_origin(&c), 3);    /* 2 misses + 1 revalidation */

    weir_cache_stats_read_all(&c);
    assert_int_equal(c.results[WEIR_CSR_MISS], 3);
    weir_cache_stats_read(NULL, &c);
    assert_int_equal(weir_cache_stats_requests(&c), 0);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(weir_cache_stats_result_tier(WEIR_CSR_L2_STALE), "l2");
    assert_string_equal(weir_cache_stats_result_kind(WEIR_CSR_L2_STALE), "stale");
    assert_string_equal(weir_cache_stats_result_tier(WEIR_CSR_MISS), "backend");
    assert_string_equal(weir_cache_stats_result_name(WEIR_CSR_L1_HIT), "l1_hit");
    assert_string_equal(weir_cache_stats_event_name(WEIR_CSE_COALESCED), "coalesced");
    for (int i = 0; i < WEIR_CSR_N; i++)
        assert_string_not_equal(weir_cache_stats_result_name(i), "?");
    for (int i = 0; i < WEIR_CSE_N; i++)
        assert_string_not_equal(weir_cache_stats_event_name(i), "?");
    assert_string_equal(weir_cache_stats_result_name(WEIR_CSR_N), "?");
}

static void test_l2_off(void **state)
{
    struct weir_cache_l2_summary s;

    (void)state;
    weir_cache_stats_l2_read(&s);
    assert_int_equal(s.clients, 0);
    assert_string_equal(weir_cache_stats_l2_state(&s), "off");
    s.clients = 2;
    s.up = 2;
    assert_string_equal(weir_cache_stats_l2_state(&s), "up");
    s.up = 1;
    assert_string_equal(weir_cache_stats_l2_state(&s), "degraded");
    s.up = 0;
    s.open = 1;
    assert_string_equal(weir_cache_stats_l2_state(&s), "open");
    s.open = 0;
    assert_string_equal(weir_cache_stats_l2_state(&s), "connecting");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entity_per_route_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_keeps_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts_summed_over_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_l2_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
