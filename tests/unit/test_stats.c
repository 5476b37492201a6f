/*
 * test_stats.c - the statistics registry, recording and merging across
 * workers (with real concurrent writer threads), the on/off switch, the
 * connection gauges, the JSON shape of GET /stats and the Prometheus text of
 * GET /metrics (admin.c's pure renderers), and conf_edit.c (deep copy and
 * server list edits used by the runtime API).
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "weir/admin.h"
#include "weir/conf.h"
#include "weir/conf_edit.h"
#include "weir/histogram.h"
#include "weir/runtime.h"
#include "weir/server.h"
#include "weir/stats.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

static int setup(void **state)
{
    return weir_stats_init(4);
}

static int teardown(void **state)
{
    weir_stats_shutdown();
    weir_stats_set_enabled(1);
    return 0;
}

static struct weir_stats_sample sample(int status, uint64_t ttfb_us, uint64_t total_us)
{
    struct weir_stats_sample s = {
        .status = status, .ttfb_us = ttfb_us, .total_us = total_us, .bytes_in = 100, .bytes_out = 1000};
    return s;
}

/* ---- registry ---- */

static void test_registry(void **state)
{
    struct weir_stats *g = weir_stats_global();
    struct weir_stats *p = weir_stats_get(WEIR_STATS_POOL, "api");
    struct weir_stats *p2 = weir_stats_get(WEIR_STATS_POOL, "api");
    struct weir_stats *r = weir_stats_get(WEIR_STATS_ROUTE, "api");
    struct weir_stats *s = weir_stats_get(WEIR_STATS_SERVER, "api/127.0.0.1:9001");

    assert_non_null(g);
    assert_non_null(p);
    assert_ptr_equal(p, p2);    /* same (kind, key): same entity */
    assert_ptr_not_equal(p, r); /* same key, other kind */
    assert_ptr_equal(weir_stats_get(WEIR_STATS_GLOBAL, "x"), g);
    assert_ptr_equal(weir_stats_get(WEIR_STATS_POOL, NULL), g);
    assert_int_equal(weir_stats_kind(s), WEIR_STATS_SERVER);
    assert_string_equal(weir_stats_key(s), "api/127.0.0.1:9001");
    assert_string_equal(weir_stats_key(g), "");
    assert_int_equal(weir_stats_nworkers(), 4);

    /* Numbers survive a "reload" (the entity is found again). */
    struct weir_stats_sample smp = sample(200, 10, 20);
    weir_stats_record(p, 1, &smp);
    struct weir_stats_counters c;
    weir_stats_read_counters(weir_stats_get(WEIR_STATS_POOL, "api"), weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 1);

    /* Bad worker ids and NULL entities are ignored. */
    weir_stats_record(p, 4, &smp);
    weir_stats_record(p, -1, &smp);
    weir_stats_record(NULL, 0, &smp);
    weir_stats_upstream_error(NULL, 0, WEIR_UPERR_CONNECT);
    weir_stats_read_counters(p, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 1);
    weir_stats_read_counters(NULL, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 0);
}

static void test_not_initialised(void **state)
{
    weir_stats_shutdown();
    assert_null(weir_stats_global());
    assert_null(weir_stats_get(WEIR_STATS_POOL, "api"));
    assert_int_equal(weir_stats_init(0), -1);
    assert_int_equal(weir_stats_init(WEIR_MAX_WORKERS + 1), -1);
    assert_int_equal(weir_stats_init(2), 0);
    assert_non_null(weir_stats_get(WEIR_STATS_POOL, "api"));
}

static void test_status_class(void **state)
{
    assert_int_equal(weir_stats_status_class(0), WEIR_CLASS_OTHER);
    assert_int_equal(weir_stats_status_class(99), WEIR_CLASS_OTHER);
    assert_int_equal(weir_stats_status_class(100), WEIR_CLASS_1XX);
    assert_int_equal(weir_stats_status_class(204), WEIR_CLASS_2XX);
    assert_int_equal(weir_stats_status_class(308), WEIR_CLASS_3XX);
    assert_int_equal(weir_stats_status_class(499), WEIR_CLASS_4XX);
    assert_int_equal(weir_stats_status_class(503), WEIR_CLASS_5XX);
    assert_int_equal(weir_stats_status_class(600), WEIR_CLASS_OTHER);
}

/* ---- recording and merging ---- */

static void test_counters_merge(void **state)
{
    struct weir_stats *st = weir_stats_get(WEIR_STATS_SERVER, "p/a");
    struct weir_stats_counters c;
    struct weir_stats_sample s;

    for (int w = 0; w < 4; w++) {
        for (int i = 0; i < 10 * (w + 1); i++) {
            s = sample(200 + 100 * (i % 4), 1000, 2000); /* 2xx, 3xx, 4xx, 5xx */
            s.retries = i % 2;
            weir_stats_record(st, w, &s);
        }
        weir_stats_upstream_error(st, w, WEIR_UPERR_CONNECT);
        weir_stats_upstream_error(st, w, WEIR_UPERR_5XX);
        weir_stats_upstream_error(st, w, WEIR_UPERR_NONE); /* ignored */
        weir_stats_upstream_error(st, w, 99);              /* ignored */
    }
    s = sample(0, 0, 5); /* no response sent, no upstream response */
    weir_stats_record(st, 0, &s);

    weir_stats_read_counters(st, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 101); /* 10+20+30+40+1 */
    assert_int_equal(c.responses[WEIR_CLASS_1XX], 0);
    assert_int_equal(c.responses[WEIR_CLASS_2XX], 3 + 5 + 8 + 10);
    assert_int_equal(c.responses[WEIR_CLASS_3XX], 3 + 5 + 8 + 10);
    assert_int_equal(c.responses[WEIR_CLASS_4XX], 2 + 5 + 7 + 10);
    assert_int_equal(c.responses[WEIR_CLASS_5XX], 2 + 5 + 7 + 10);
    assert_int_equal(c.responses[WEIR_CLASS_OTHER], 1);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_CONNECT], 4);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_5XX], 4);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_TIMEOUT], 0);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_NONE], 0);
    assert_int_equal(c.retries, 5 + 10 + 15 + 20);
    assert_int_equal(c.bytes_in, 101 * 100);
    assert_int_equal(c.bytes_out, 101 * 1000);

    /* Latencies: total for every exchange, ttfb only with an upstream response. */
    struct weir_hist h;
    weir_hist_init(&h);
    assert_int_equal(weir_stats_read_latency(st, WEIR_LAT_TOTAL, WEIR_WIN_ALL, weir_stats_now_s(), &h),
                     WEIR_OK);
    assert_int_equal(weir_hist_count(&h), 101);
    weir_hist_init(&h);
    weir_stats_read_latency(st, WEIR_LAT_TTFB, WEIR_WIN_10S, weir_stats_now_s(), &h);
    assert_int_equal(weir_hist_count(&h), 100);
    assert_int_equal(weir_hist_min(&h), 1000);
    assert_int_equal(weir_stats_read_latency(st, 7, WEIR_WIN_ALL, 0, &h), WEIR_ERROR);
    assert_int_equal(weir_stats_read_latency(st, WEIR_LAT_TTFB, 9, 0, &h), WEIR_ERROR);
}

/* Percentiles of a merged histogram within the 2 % bound, 1 us .. 60 s. */
static void test_latency_accuracy(void **state)
{
    static const uint64_t vals[] = {1, 7, 63, 64, 999, 1500, 20000, 80000, 123457, 999999, 5000000, 60000000};
    struct weir_stats *st = weir_stats_get(WEIR_STATS_POOL, "acc");
    uint64_t now = weir_stats_now_s();

    for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
        char key[32];
        snprintf(key, sizeof(key), "acc%zu", k);
        struct weir_stats *e = weir_stats_get(WEIR_STATS_SERVER, key);
        for (int w = 0; w < 4; w++) {
            struct weir_stats_sample s = sample(200, vals[k], vals[k]);
            weir_stats_record(e, w, &s);
            weir_stats_record(st, w, &s);
        }
        struct weir_hist h;
        weir_hist_init(&h);
        weir_stats_read_latency(e, WEIR_LAT_TOTAL, WEIR_WIN_60S, now, &h);
        assert_int_equal(weir_hist_count(&h), 4);
        for (double q = 1; q <= 100; q += 33) {
            double got = (double)weir_hist_percentile(&h, q), want = (double)vals[k];
            if (got < want * 0.98 || got > want * 1.02)
                fail_msg("value %llu: p%.0f = %.0f", (unsigned long long)vals[k], q, got);
        }
    }
}

struct writer_arg {
    struct weir_stats *st;
    int worker;
    int n;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        struct weir_stats_sample s = sample(200, 100 + (uint64_t)i % 1000, 200 + (uint64_t)i % 5000);
        weir_stats_record(a->st, a->worker, &s);
        if (i % 100 == 0)
            weir_stats_upstream_error(a->st, a->worker, WEIR_UPERR_RESET);
        weir_stats_gauge_add(a->worker, WEIR_G_CLIENT_ACTIVE, 1);
        weir_stats_gauge_add(a->worker, WEIR_G_CLIENT_ACTIVE, -1);
    }
    weir_stats_gauge_add(a->worker, WEIR_G_UP_IDLE, a->worker + 1);
    return NULL;
}

/* Four writer threads record while this thread reads: reads never go
 * backwards and the final merge is exact. */
static void test_concurrent_merge(void **state)
{
    enum { N = 200000 };
    struct weir_stats *st = weir_stats_get(WEIR_STATS_ROUTE, "* /");
    struct writer_arg args[4];
    pthread_t th[4];
    uint64_t last = 0;

    for (int w = 0; w < 4; w++) {
        args[w] = (struct writer_arg){st, w, N};
        assert_int_equal(pthread_create(&th[w], NULL, writer, &args[w]), 0);
    }
    for (int i = 0; i < 200; i++) {
        struct weir_stats_counters c;
        struct weir_hist h;
        weir_stats_read_counters(st, weir_stats_now_s(), &c);
        assert_true(c.requests >= last);
        last = c.requests;
        weir_hist_init(&h);
        weir_stats_read_latency(st, WEIR_LAT_TOTAL, WEIR_WIN_ALL, weir_stats_now_s(), &h);
        assert_true(weir_hist_count(&h) <= 4u * N);
        assert_true(weir_stats_gauge_read(WEIR_G_CLIENT_ACTIVE) <= 4);
    }
    for (int w = 0; w < 4; w++)
        pthread_join(th[w], NULL);

    struct weir_stats_counters c;
    struct weir_hist h;
    weir_stats_read_counters(st, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 4u * N);
    assert_int_equal(c.responses[WEIR_CLASS_2XX], 4u * N);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_RESET], 4u * (N / 100));
    weir_hist_init(&h);
    weir_stats_read_latency(st, WEIR_LAT_TTFB, WEIR_WIN_ALL, weir_stats_now_s(), &h);
    assert_int_equal(weir_hist_count(&h), 4u * N);
    assert_int_equal(weir_hist_min(&h), 100);
    assert_int_equal(weir_hist_max(&h), 1099);
    assert_int_equal(weir_stats_gauge_read(WEIR_G_CLIENT_ACTIVE), 0);
    assert_int_equal(weir_stats_gauge_read(WEIR_G_UP_IDLE), 1 + 2 + 3 + 4);
}

static void test_gauges(void **state)
{
    weir_stats_gauge_add(0, WEIR_G_CLIENT_IDLE, 3);
    weir_stats_gauge_add(3, WEIR_G_CLIENT_IDLE, 2);
    weir_stats_gauge_add(3, WEIR_G_CLIENT_IDLE, -1);
    weir_stats_gauge_add(WEIR_MAX_WORKERS, WEIR_G_CLIENT_IDLE, 100); /* ignored */
    weir_stats_gauge_add(0, WEIR_G_N, 100);                          /* ignored */
    assert_int_equal(weir_stats_gauge_read(WEIR_G_CLIENT_IDLE), 4);
    assert_int_equal(weir_stats_gauge_read(WEIR_G_UP_ACTIVE), 0);
    weir_stats_gauge_add(1, WEIR_G_UP_ACTIVE, -2); /* a transient negative sum reads as 0 */
    assert_int_equal(weir_stats_gauge_read(WEIR_G_UP_ACTIVE), 0);
    assert_int_equal(weir_stats_gauge_read(-1), 0);
}

static void test_disabled(void **state)
{
    struct weir_stats *st = weir_stats_get(WEIR_STATS_POOL, "off");
    struct weir_stats_sample s = sample(200, 1, 2);
    struct weir_stats_counters c;

    weir_stats_set_enabled(0);
    assert_int_equal(weir_stats_enabled(), 0);
    weir_stats_record(st, 0, &s);
    weir_stats_upstream_error(st, 0, WEIR_UPERR_TIMEOUT);
    weir_stats_gauge_add(0, WEIR_G_CLIENT_ACTIVE, 1); /* gauges keep counting */
    weir_stats_read_counters(st, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 0);
    assert_int_equal(c.upstream_errors[WEIR_UPERR_TIMEOUT], 0);
    assert_int_equal(weir_stats_gauge_read(WEIR_G_CLIENT_ACTIVE), 1);
    weir_stats_set_enabled(1);
    weir_stats_record(st, 0, &s);
    weir_stats_read_counters(st, weir_stats_now_s(), &c);
    assert_int_equal(c.requests, 1);
}

/* Rates count whole seconds only, divided by the entity's life when short. */
static void test_rates(void **state)
{
    struct weir_stats *st = weir_stats_get(WEIR_STATS_POOL, "rate");
    struct weir_stats_sample s = sample(200, 1, 2);
    struct weir_stats_counters c;
    uint64_t t0 = weir_stats_now_s();

    for (int i = 0; i < 30; i++)
        weir_stats_record(st, i % 4, &s);
    weir_stats_read_counters(st, t0, &c);
    assert_true(c.rps[WEIR_RATE_1S] == 0.0); /* the current second is not complete */
    /* Read as if at the next seconds (what the records saw as now is t0 or t0 + 1). */
    uint64_t rec_s = weir_stats_now_s();
    weir_stats_read_counters(st, rec_s + 1, &c);
    if (rec_s == t0) {
        assert_true(c.rps[WEIR_RATE_1S] == 30.0);
        assert_true(c.rps[WEIR_RATE_10S] == 30.0); /* life is 1 s */
    }
    weir_stats_read_counters(st, t0 + 20, &c);
    assert_true(c.rps[WEIR_RATE_1S] == 0.0);
    assert_true(c.rps[WEIR_RATE_10S] == 0.0);
    /* life is 20 s, or 21 s when the entity was made in the second before t0 */
    assert_true(c.rps[WEIR_RATE_60S] == 30.0 / 20.0 || c.rps[WEIR_RATE_60S] == 30.0 / 21.0);
    weir_stats_read_counters(st, t0 + 100, &c);
    assert_true(c.rps[WEIR_RATE_60S] == 0.0);
    assert_int_equal(c.requests, 30);

    /* A sample that carries its own time (now_us) is counted in that second. */
    struct weir_stats *st2 = weir_stats_get(WEIR_STATS_POOL, "rate2");
    s.now_us = (t0 + 200) * 1000000u + 123456u;
    for (int i = 0; i < 12; i++)
        weir_stats_record(st2, 1, &s);
    weir_stats_read_counters(st2, t0 + 201, &c);
    assert_true(c.rps[WEIR_RATE_1S] == 12.0);
    weir_stats_read_counters(st2, t0 + 215, &c);
    assert_true(c.rps[WEIR_RATE_1S] == 0.0 && c.rps[WEIR_RATE_10S] == 0.0);
    assert_true(c.rps[WEIR_RATE_60S] > 0.0);
    struct weir_hist h;
    weir_hist_init(&h);
    weir_stats_read_latency(st2, WEIR_LAT_TOTAL, WEIR_WIN_10S, t0 + 201, &h);
    assert_int_equal(weir_hist_count(&h), 12);
    weir_hist_init(&h);
    weir_stats_read_latency(st2, WEIR_LAT_TOTAL, WEIR_WIN_10S, t0 + 230, &h);
    assert_int_equal(weir_hist_count(&h), 0); /* out of the 10 s window */
}

/* ---- JSON and Prometheus renderers ---- */

#define LISTEN "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
#define POOLS                                                                                                \
    "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; }, { address = "                \
    "\"127.0.0.1:9002\"; weight = 3; } ); },\n"                                                              \
    "          { name = \"web\"; policy = \"least_conn\"; servers = ( { address = \"[::1]:9003\"; } ); } "   \
    ");\n"
#define ROUTES                                                                                               \
    "routes = ( { host = \"*.example.com\"; pool = \"web\"; }, { path_prefix = \"/\"; pool = \"api\"; } "    \
    ");\n"

static struct weir_conf *load_text(const char *text)
{
    char path[] = "/tmp/weir-test-stats-XXXXXX";
    struct weir_conf_errors errs = {0};
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct weir_conf *c = weir_conf_load(path, &errs);
    unlink(path);
    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    weir_conf_errors_free(&errs);
    assert_non_null(c);
    return c;
}

/* The sorted key list of a JSON object, comma-separated. */
static const char *keys_of(const json_t *o, char *buf, size_t n)
{
    const char *names[64];
    size_t k = 0;
    const char *key;
    json_t *v;

    assert_true(json_is_object(o));
    json_object_foreach((json_t *)o, key, v)
    {
        if (k < 64)
            names[k++] = key;
    }
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    buf[0] = '\0';
    for (size_t i = 0; i < k; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? "," : "", names[i]);
    return buf;
}

/* expected: a comma-separated key list in any order. */
static void assert_keys_impl(const json_t *o, const char *expected, const char *file, int line)
{
    char got[1024], want[1024], tmp[1024];
    json_t *w = json_object();

    snprintf(tmp, sizeof(tmp), "%s", expected);
    for (char *save = NULL, *k = strtok_r(tmp, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
        json_object_set_new(w, k, json_null());
    keys_of(w, want, sizeof(want));
    json_decref(w);
    keys_of(o, got, sizeof(got));
    if (strcmp(got, want) != 0) {
        print_message("keys: %s\nwant: %s\n", got, want);
        _fail(file, line);
    }
}
#define assert_keys(o, expected) assert_keys_impl((o), (expected), __FILE__, __LINE__)

#define COUNTER_KEYS "bytes_in,bytes_out,latency_ms,requests,responses,retries,rps,ttfb_ms,upstream_errors"
#define LAT_KEYS     "count,max,mean,p50,p90,p95,p99,p999"

static void check_counters(const json_t *o, int windows)
{
    assert_keys(json_object_get(o, "responses"), "1xx,2xx,3xx,4xx,5xx,other");
    assert_keys(json_object_get(o, "upstream_errors"), "5xx,connect,reset,timeout");
    assert_keys(json_object_get(o, "rps"), "10s,1s,60s");
    for (int k = 0; k < 2; k++) {
        const json_t *l = json_object_get(o, k ? "ttfb_ms" : "latency_ms");
        assert_keys(l, windows ? "10s,60s,all" : "all");
        assert_keys(json_object_get(l, "all"), LAT_KEYS);
    }
}

static void test_lat_json(void **state)
{
    struct weir_hist h;

    weir_hist_init(&h);
    json_t *o = weir_admin_lat_json(&h);
    assert_keys(o, LAT_KEYS);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 0);
    assert_true(json_real_value(json_object_get(o, "p99")) == 0.0);
    assert_true(json_real_value(json_object_get(o, "mean")) == 0.0);
    json_decref(o);

    for (int i = 1; i <= 1000; i++)
        weir_hist_record(&h, (uint64_t)i * 100); /* 0.1 .. 100 ms */
    o = weir_admin_lat_json(&h);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 1000);
    double p50 = json_real_value(json_object_get(o, "p50")),
           p999 = json_real_value(json_object_get(o, "p999"));
    assert_true(p50 > 50.0 * 0.98 && p50 < 50.0 * 1.02);
    assert_true(p999 > 99.9 * 0.98 && p999 < 99.9 * 1.02);
    assert_true(json_real_value(json_object_get(o, "max")) == 100.0);
    assert_true(json_real_value(json_object_get(o, "mean")) == 50.05);
    json_decref(o);
}

static void test_stats_json_shape(void **state)
{
    struct weir_conf *c = load_text(LISTEN POOLS ROUTES);
    struct weir_rt *rt = weir_rt_build(c, NULL, 4);

    assert_non_null(rt);
    /* 3 requests on api's first server from two workers, one on web. */
    struct weir_server *s1 = rt->pools[0].set.v[0];
    for (int i = 0; i < 3; i++) {
        struct weir_stats_sample s = sample(200, 20000, 21000);
        weir_stats_record(s1->stats, i % 2, &s);
        weir_stats_record(rt->pools[0].stats, i % 2, &s);
        weir_stats_record(rt->routes[1].stats, i % 2, &s);
        weir_stats_record(weir_stats_global(), i % 2, &s);
    }
    weir_stats_upstream_error(s1->stats, 0, WEIR_UPERR_TIMEOUT);
    weir_stats_upstream_error(s1->stats, 1, WEIR_UPERR_RESET);
    weir_stats_gauge_add(2, WEIR_G_UP_IDLE, 2);

    json_t *doc = weir_admin_stats_json(rt, WEIR_ADMIN_ALL_WINDOWS, weir_stats_now_s(), 1234567890123LL);
    assert_non_null(doc);
    assert_keys(doc, "global,pools,routes,stats_entities,time_ms,uptime_s,version,workers");
    assert_string_equal(json_string_value(json_object_get(doc, "version")), PACKAGE_VERSION);
    assert_int_equal(json_integer_value(json_object_get(doc, "workers")), 4);
    assert_int_equal(json_integer_value(json_object_get(doc, "time_ms")), 1234567890123LL);
    assert_true(json_is_real(json_object_get(doc, "uptime_s")));

    const json_t *g = json_object_get(doc, "global");
    assert_keys(g, COUNTER_KEYS ",connections");
    check_counters(g, 1);
    assert_keys(json_object_get(g, "connections"), "client_active,client_idle,upstream_active,upstream_idle");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "connections"), "upstream_idle")),
                     2);
    assert_int_equal(json_integer_value(json_object_get(g, "requests")), 3);

    const json_t *pools = json_object_get(doc, "pools");
    assert_int_equal(json_array_size(pools), 2);
    const json_t *api = json_array_get(pools, 0);
    assert_keys(api, COUNTER_KEYS ",name,panic,policy,servers");
    check_counters(api, 1);
    assert_string_equal(json_string_value(json_object_get(api, "name")), "api");
    assert_string_equal(json_string_value(json_object_get(api, "policy")), "round_robin");
    assert_true(json_is_false(json_object_get(api, "panic")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(pools, 1), "policy")), "least_conn");

    const json_t *servers = json_object_get(api, "servers");
    assert_int_equal(json_array_size(servers), 2);
    const json_t *sv = json_array_get(servers, 0);
    assert_keys(sv,
                "active,address,admin_state," COUNTER_KEYS ",effective_weight,errors,health,state,weight");
    check_counters(sv, 1);
    assert_string_equal(json_string_value(json_object_get(sv, "address")), "127.0.0.1:9001");
    assert_string_equal(json_string_value(json_object_get(sv, "state")), "up");
    assert_string_equal(json_string_value(json_object_get(sv, "admin_state")), "ready");
    assert_int_equal(json_integer_value(json_object_get(sv, "weight")), 1);
    assert_true(json_real_value(json_object_get(sv, "effective_weight")) == 1.0);
    assert_int_equal(json_integer_value(json_object_get(sv, "errors")), 2);
    assert_int_equal(json_integer_value(json_object_get(sv, "requests")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sv, "responses"), "2xx")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sv, "upstream_errors"), "timeout")),
                     1);
    const json_t *lat = json_object_get(json_object_get(sv, "ttfb_ms"), "10s");
    assert_int_equal(json_integer_value(json_object_get(lat, "count")), 3);
    double p50 = json_real_value(json_object_get(lat, "p50"));
    assert_true(p50 > 20.0 * 0.98 && p50 < 20.0 * 1.02);
    assert_keys(json_object_get(sv, "health"),
                "checked,ejections,last_at_ms,last_detail,last_ms,last_ok,last_status,slow_start_pct");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sv, "health"), "slow_start_pct")),
                     100);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(servers, 1), "weight")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(servers, 1), "requests")), 0);

    const json_t *routes = json_object_get(doc, "routes");
    assert_int_equal(json_array_size(routes), 2);
    const json_t *r0 = json_array_get(routes, 0);
    assert_keys(r0, COUNTER_KEYS ",host,path_prefix,pool");
    assert_string_equal(json_string_value(json_object_get(r0, "host")), "*.example.com");
    assert_string_equal(json_string_value(json_object_get(r0, "path_prefix")), "/");
    assert_string_equal(json_string_value(json_object_get(r0, "pool")), "web");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(routes, 1), "requests")), 3);
    json_decref(doc);

    /* ?window=60s keeps one key */
    doc = weir_admin_stats_json(rt, WEIR_WIN_60S, weir_stats_now_s(), 0);
    sv = json_array_get(json_object_get(json_array_get(json_object_get(doc, "pools"), 0), "servers"), 0);
    assert_keys(json_object_get(sv, "latency_ms"), "60s");
    assert_keys(json_object_get(json_object_get(doc, "global"), "ttfb_ms"), "60s");
    json_decref(doc);

    /* weir_admin_add_counters alone */
    json_t *o = json_object();
    assert_int_equal(weir_admin_add_counters(o, s1->stats, weir_stats_now_s(), WEIR_WIN_ALL), 0);
    assert_keys(o, COUNTER_KEYS);
    check_counters(o, 0);
    json_decref(o);
    weir_rt_release(rt);
}

/* Value of the exposition line that starts with `series` + ' ', or -1. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void test_metrics_text(void **state)
{
    struct weir_conf *c = load_text(LISTEN POOLS ROUTES);
    struct weir_rt *rt = weir_rt_build(c, NULL, 4);
    struct evbuffer *out = evbuffer_new();
    static const uint64_t lat_us[] = {300, 2000, 20000, 20000, 80000, 70000000};

    struct weir_server *s1 = rt->pools[0].set.v[0];
    for (size_t i = 0; i < sizeof(lat_us) / sizeof(lat_us[0]); i++) {
        struct weir_stats_sample s = sample(i == 0 ? 503 : 200, lat_us[i] / 2, lat_us[i]);
        weir_stats_record(s1->stats, (int)i % 4, &s);
    }
    weir_stats_upstream_error(s1->stats, 3, WEIR_UPERR_CONNECT);
    assert_int_equal(weir_admin_metrics(out, rt, weir_stats_now_s()), 0);
    evbuffer_add(out, "", 1);
    const char *t = (const char *)evbuffer_pullup(out, -1);

    assert_non_null(strstr(t, "# TYPE weir_request_duration_seconds histogram\n"));
    assert_non_null(strstr(t, "# TYPE weir_upstream_ttfb_seconds histogram\n"));
    assert_non_null(strstr(t, "# TYPE weir_requests_total counter\n"));
    assert_true(metric(t, "weir_requests_total{pool=\"api\",server=\"127.0.0.1:9001\"}") == 6);
    assert_true(metric(t, "weir_requests_total{pool=\"api\",server=\"127.0.0.1:9002\"}") == 0);
    assert_true(metric(t, "weir_requests_total{pool=\"web\",server=\"[::1]:9003\"}") == 0);
    assert_true(metric(t, "weir_responses_total{pool=\"api\",server=\"127.0.0.1:9001\",class=\"5xx\"}") == 1);
    assert_true(
        metric(t, "weir_upstream_errors_total{pool=\"api\",server=\"127.0.0.1:9001\",kind=\"connect\"}") ==
        1);
    assert_true(metric(t, "weir_server_up{pool=\"api\",server=\"127.0.0.1:9001\"}") == 1);
    assert_true(metric(t, "weir_server_weight{pool=\"api\",server=\"127.0.0.1:9002\"}") == 3);
    assert_true(metric(t, "weir_client_sent_bytes_total{pool=\"api\",server=\"127.0.0.1:9001\"}") == 6000);

#define H "weir_request_duration_seconds"
#define L "{pool=\"api\",server=\"127.0.0.1:9001\""
    assert_true(metric(t, H "_bucket" L ",le=\"0.0005\"}") == 1);
    assert_true(metric(t, H "_bucket" L ",le=\"0.001\"}") == 1);
    assert_true(metric(t, H "_bucket" L ",le=\"0.0025\"}") == 2);
    assert_true(metric(t, H "_bucket" L ",le=\"0.025\"}") == 4);
    assert_true(metric(t, H "_bucket" L ",le=\"0.1\"}") == 5);
    assert_true(metric(t, H "_bucket" L ",le=\"60\"}") == 5); /* 70 s is above the last bound */
    assert_true(metric(t, H "_bucket" L ",le=\"+Inf\"}") == 6);
    assert_true(metric(t, H "_count" L "}") == 6);
    double sum = metric(t, H "_sum" L "}");
    assert_true(sum > 70.12229 && sum < 70.12231);
    assert_true(metric(t, "weir_upstream_ttfb_seconds_count" L "}") == 6);
    assert_true(metric(t, "weir_upstream_ttfb_seconds_bucket" L ",le=\"0.01\"}") == 4);
#undef H
#undef L
    evbuffer_free(out);
    weir_rt_release(rt);
}

/* ---- conf_edit ---- */

static void test_conf_dup_example(void **state)
{
    struct weir_conf_errors errs = {0};
    struct weir_conf *c = weir_conf_load(TEST_SRCDIR "/conf/weir.conf", &errs);
    assert_non_null(c);
    struct weir_conf *d = weir_conf_dup(c);
    assert_non_null(d);
    /* Every string is a copy, equal in content. */
    assert_ptr_not_equal(d->file, c->file);
    assert_string_equal(d->file, c->file);
    assert_int_equal(d->npools, c->npools);
    assert_int_equal(d->nroutes, c->nroutes);
    for (size_t i = 0; i < c->npools; i++) {
        assert_ptr_not_equal(d->pools[i].name, c->pools[i].name);
        assert_string_equal(d->pools[i].name, c->pools[i].name);
        assert_int_equal(d->pools[i].nservers, c->pools[i].nservers);
        for (size_t j = 0; j < c->pools[i].nservers; j++) {
            assert_ptr_not_equal(d->pools[i].servers[j].addr.text, c->pools[i].servers[j].addr.text);
            assert_string_equal(d->pools[i].servers[j].addr.text, c->pools[i].servers[j].addr.text);
            assert_int_equal(d->pools[i].servers[j].weight, c->pools[i].servers[j].weight);
        }
    }
    if (c->admin.token != NULL) {
        assert_ptr_not_equal(d->admin.token, c->admin.token);
        assert_string_equal(d->admin.token, c->admin.token);
    }
    assert_int_equal(d->timeouts.connect_ms, c->timeouts.connect_ms);
    /* Both free cleanly (a shared pointer would be a double free). */
    weir_conf_free(c);
    weir_conf_free(d);
}

static void test_conf_edit_servers(void **state)
{
    struct weir_conf *c = load_text(LISTEN POOLS ROUTES);
    struct weir_conf *d = weir_conf_dup(c);
    const char *why = NULL;

    weir_conf_free(c);
    assert_null(weir_conf_find_pool(d, "nope"));
    struct weir_conf_pool *p = weir_conf_find_pool(d, "api");
    assert_non_null(p);
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1:9004", 2, &why), WEIR_OK);
    assert_int_equal(p->nservers, 3);
    assert_string_equal(p->servers[2].addr.text, "127.0.0.1:9004");
    assert_int_equal(p->servers[2].weight, 2);
    /* duplicates: same text, or same socket address written differently */
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1:9004", 1, &why), WEIR_DECLINED);
    assert_int_equal(weir_conf_pool_add_server(p, "127.1:9001", 1, &why), WEIR_DECLINED);
    /* bad input */
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1:9005", 0, &why), WEIR_ERROR);
    assert_string_equal(why, "weight must be an integer between 1 and 1000");
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1:9005", 1001, &why), WEIR_ERROR);
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1", 1, &why), WEIR_ERROR);
    assert_string_equal(why, "missing port (expected host:port)");
    assert_int_equal(weir_conf_pool_add_server(p, "*:9005", 1, &why), WEIR_ERROR);
    assert_int_equal(weir_conf_pool_add_server(p, "127.0.0.1:0", 1, &why), WEIR_ERROR);
    assert_int_equal(p->nservers, 3);

    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(weir_conf_find_server(p, "127.0.0.1:9002", NULL), 1);
    assert_int_equal(weir_conf_find_server(p, "127.1:9002", NULL), -1);
    assert_int_equal(weir_conf_parse_server_addr("127.1:9002", &ss, &len, &why), 0);
    assert_int_equal(weir_conf_find_server(p, "127.1:9002", &ss), 1);

    weir_conf_pool_remove_server(p, 0);
    assert_int_equal(p->nservers, 2);
    assert_string_equal(p->servers[0].addr.text, "127.0.0.1:9002");
    assert_string_equal(p->servers[1].addr.text, "127.0.0.1:9004");
    weir_conf_pool_remove_server(p, 5); /* out of range: nothing */
    assert_int_equal(p->nservers, 2);

    /* The edited copy builds a snapshot that keeps the servers of the
     * previous one and adds the new one. */
    struct weir_rt *rt0 = weir_rt_build(weir_conf_dup(d), NULL, 2);
    assert_non_null(rt0);
    struct weir_conf *e = weir_conf_dup(d);
    assert_int_equal(weir_conf_pool_add_server(weir_conf_find_pool(e, "api"), "127.0.0.1:9006", 5, &why),
                     WEIR_OK);
    struct weir_rt *rt1 = weir_rt_build(e, rt0, 2);
    assert_non_null(rt1);
    assert_int_equal(rt1->pools[0].set.n, 3);
    assert_ptr_equal(rt1->pools[0].set.v[0], rt0->pools[0].set.v[0]);
    assert_ptr_equal(rt1->pools[0].set.v[0]->stats, rt0->pools[0].set.v[0]->stats);
    assert_int_equal(atomic_load(&rt1->pools[0].set.v[2]->weight), 5);
    weir_rt_release(rt0);
    weir_rt_release(rt1);
    weir_conf_free(d);
}

/* Entities are reference counted: one a snapshot or server no longer holds
 * is freed (a server removed at run time must not leak its blocks). */
static void test_registry_frees_unreferenced(void **state)
{
    size_t base = weir_stats_registry_size();
    struct weir_stats *a = weir_stats_get(WEIR_STATS_SERVER, "p/x");
    struct weir_stats *b = weir_stats_get(WEIR_STATS_SERVER, "p/x");
    struct weir_stats_sample smp = sample(200, 10, 20);

    assert_ptr_equal(a, b);
    assert_int_equal(weir_stats_registry_size(), base + 1);
    weir_stats_record(a, 0, &smp); /* allocates a block: freed with the entity */
    weir_stats_put(a);
    assert_int_equal(weir_stats_registry_size(), base + 1);
    weir_stats_put(b);
    assert_int_equal(weir_stats_registry_size(), base);
    weir_stats_put(weir_stats_global()); /* not counted: stays */
    assert_int_equal(weir_stats_registry_size(), base);

    /* Snapshots: a removed server's entity goes with the last snapshot
     * holding it; the pool's and the kept server's stay. */
    struct weir_conf *c = load_text(LISTEN POOLS ROUTES);
    struct weir_rt *rt0 = weir_rt_build(c, NULL, 2);
    assert_non_null(rt0);
    size_t with = weir_stats_registry_size();
    assert_true(with > base);
    struct weir_conf *d = weir_conf_dup(rt0->conf);
    weir_conf_pool_remove_server(weir_conf_find_pool(d, "api"), 0);
    struct weir_rt *rt1 = weir_rt_build(d, rt0, 2);
    assert_non_null(rt1);
    assert_int_equal(weir_stats_registry_size(), with);
    weir_rt_release(rt0);
    assert_int_equal(weir_stats_registry_size(), with - 1);
    weir_rt_release(rt1);
    assert_int_equal(weir_stats_registry_size(), base);
}

/* The admin's Host check (DNS rebinding), a pure function. */
static void test_admin_host_allowed(void **state)
{
    static const char *const allowed[] = {"ops.example", "*.corp.example"};
    static const char *const ok[] = {
        NULL,          "127.0.0.1",        "127.0.0.1:9901", "10.1.2.3",          "[::1]:9901",
        "[fe80::1]",   "localhost",        "LocalHost:80",   "localhost.",        "a.localhost",
        "ops.example", "OPS.example:9901", "x.corp.example", "a.b.corp.example:1"};
    static const char *const bad[] = {"",
                                      ":80",
                                      "evil.example",
                                      "ops.example.evil",
                                      "corp.example",
                                      "xcorp.example",
                                      "localhost.evil.example",
                                      "127.0.0.1.evil.example",
                                      "[::1",
                                      "notlocalhost"};
    (void)state;
    for (size_t i = 0; i < WEIR_ARRAY_LEN(ok); i++)
        if (!weir_admin_host_allowed(ok[i], allowed, 2))
            fail_msg("refused: %s", ok[i] ? ok[i] : "(none)");
    for (size_t i = 0; i < WEIR_ARRAY_LEN(bad); i++)
        if (weir_admin_host_allowed(bad[i], allowed, 2))
            fail_msg("allowed: %s", bad[i]);
    assert_false(weir_admin_host_allowed("ops.example", NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_initialised, setup, teardown),
        cmocka_unit_test(test_status_class),
        cmocka_unit_test_setup_teardown(test_counters_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_accuracy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rates, setup, teardown),
        cmocka_unit_test(test_lat_json),
        cmocka_unit_test_setup_teardown(test_stats_json_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_text, setup, teardown),
        cmocka_unit_test(test_conf_dup_example),
        cmocka_unit_test_setup_teardown(test_conf_edit_servers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_frees_unreferenced, setup, teardown),
        cmocka_unit_test(test_admin_host_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
