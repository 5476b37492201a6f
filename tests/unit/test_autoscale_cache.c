/* Unit tests: the autoscale metrics cache_hit_ratio and origin_rps
 * (autoscale_metrics.c over cache_stats.c), and their names in rules. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir/autoscale_metrics.h"
#include "weir/cache_stats.h"
#include "weir/conf.h"
#include "weir/conf_autoscale.h"
#include "weir/runtime.h"
#include "weir/stats.h"

static void test_names(void **unused)
{
    (void)unused;
    assert_int_equal(weir_as_metric_find("cache_hit_ratio"), WEIR_ASM_CACHE_HIT_RATIO);
    assert_int_equal(weir_as_metric_find("origin_rps"), WEIR_ASM_ORIGIN_RPS);
    assert_string_equal(weir_as_metric_name(WEIR_ASM_CACHE_HIT_RATIO), "cache_hit_ratio");
    assert_string_equal(weir_as_metric_name(WEIR_ASM_ORIGIN_RPS), "origin_rps");
    assert_false(weir_as_metric_is_latency(WEIR_ASM_CACHE_HIT_RATIO));
    for (int m = 0; m < WEIR_ASM_N; m++) /* every metric has its name, in order */
        assert_int_equal(weir_as_metric_find(weir_as_metric_name(m)), m);
}

static void test_window(void **unused)
{
    struct weir_as_series *s = weir_as_series_new(16);
    struct weir_as_sample x;
    struct weir_as_window w;
    double v;

    (void)unused;
    memset(&x, 0, sizeof(x));
    x.servers = x.available = 1;
    for (int i = 0; i <= 10; i++) {
        x.t_ms = i * 1000;
        /* first 5 s: 100 cache requests/s, 20% hits; then 90% hits */
        x.cache_requests += 100;
        x.cache_hits += i < 5 ? 20 : 90;
        x.origin += i < 5 ? 80 : 10;
        x.requests += 100;
        weir_as_series_push(s, &x);
    }
    assert_int_equal(weir_as_series_window(s, 4000, &w), 0);
    assert_true(weir_as_window_value(&w, WEIR_ASM_CACHE_HIT_RATIO, &v));
    assert_true(v > 0.899 && v < 0.901);
    assert_true(weir_as_window_value(&w, WEIR_ASM_ORIGIN_RPS, &v));
    assert_true(v > 9.99 && v < 10.01);
    assert_int_equal(weir_as_series_window(s, 8000, &w), 0); /* 2 s at 20%, 6 s at 90% */
    assert_true(weir_as_window_value(&w, WEIR_ASM_CACHE_HIT_RATIO, &v));
    assert_true(v > (40 + 540) / 800.0 - 0.001 && v < (40 + 540) / 800.0 + 0.001);

    /* no cache request in the window: the ratio is missing, origin_rps is 0 */
    for (int i = 11; i <= 16; i++) {
        x.t_ms = i * 1000;
        weir_as_series_push(s, &x);
    }
    assert_int_equal(weir_as_series_window(s, 4000, &w), 0);
    assert_false(weir_as_window_value(&w, WEIR_ASM_CACHE_HIT_RATIO, &v));
    assert_true(weir_as_window_value(&w, WEIR_ASM_ORIGIN_RPS, &v) && v == 0);
    weir_as_series_free(s);
}

static struct weir_conf *load_text(const char *text)
{
    char path[64];
    struct weir_conf_errors errs;
    struct weir_conf *c;
    FILE *f;

    snprintf(path, sizeof(path), "/tmp/weir-test-ascache-%d.conf", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memset(&errs, 0, sizeof(errs));
    c = weir_conf_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    unlink(path);
    return c;
}

/* A pool's sample sums its cache routes' statistics and counts every
 * request of its other routes as reaching the backend. */
static void test_sample_pool(void **unused)
{
    struct weir_conf *c;
    struct weir_rt *rt;
    struct weir_as_sample x;
    struct weir_hist *scratch = malloc(sizeof(*scratch));
    struct weir_cache_rstats *rs;
    struct weir_stats_sample smp = {.status = 200, .total_us = 1000};

    (void)unused;
    assert_int_equal(weir_stats_init(1), 0);
    assert_int_equal(weir_cache_stats_init(1), 0);
    c = load_text("listen = ( { address = \"127.0.0.1:8080\"; } );\n"
                  "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); },\n"
                  "          { name = \"other\"; servers = ( { address = \"127.0.0.1:9002\"; } ); } );\n"
                  "cache = { memory_bytes = 16777216; };\n"
                  "routes = ( { host = \"*\"; path_prefix = \"/c/\"; pool = \"api\"; cache = true; },\n"
                  "           { host = \"*\"; path_prefix = \"/n/\"; pool = \"api\"; },\n"
                  "           { host = \"*\"; path_prefix = \"/\"; pool = \"other\"; cache = true; } );\n");
    assert_non_null(c);
    rt = weir_rt_build(c, NULL, 1);
    assert_non_null(rt);
    weir_rt_publish(rt);

    rs = weir_cache_stats_for(0, rt->routes[0].stats);
    for (int i = 0; i < 7; i++)
        weir_cache_stats_result(rs, 0, WEIR_CSR_L1_HIT);
    weir_cache_stats_result(rs, 0, WEIR_CSR_L2_STALE);
    weir_cache_stats_result(rs, 0, WEIR_CSR_MISS);
    weir_cache_stats_result(rs, 0, WEIR_CSR_MISS);
    weir_cache_stats_event(rs, 0, WEIR_CSE_ORIGIN_FETCH);
    for (int i = 0; i < 3; i++) /* the non-cache route of the pool */
        weir_stats_record(rt->routes[1].stats, 0, &smp);
    /* another pool's cache route is not counted */
    weir_cache_stats_result(weir_cache_stats_for(0, rt->routes[2].stats), 0, WEIR_CSR_MISS);

    weir_as_sample_pool(&rt->pools[0], 1000, scratch, &x);
    assert_int_equal(x.cache_requests, 10);
    assert_int_equal(x.cache_hits, 8);
    assert_int_equal(x.origin, 2 + 1 + 3);
    weir_as_sample_pool(&rt->pools[1], 1000, scratch, &x);
    assert_int_equal(x.cache_requests, 1);
    assert_int_equal(x.origin, 1);

    weir_rt_publish(NULL);
    weir_cache_stats_shutdown();
    weir_stats_shutdown();
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_sample_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
