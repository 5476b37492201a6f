/*
 * test_autoscale.c - the autoscale decision logic on synthetic metric
 * series (autoscale.c) and the window statistics (autoscale_metrics.c):
 * for_ms and its restart, hysteresis under +-10 % noise (no reversal),
 * cooldowns, bounds, not_capacity_bound, no_data, action_in_flight /
 * follower / dry_run, target-mode arithmetic, alert pending / firing /
 * escalation / keep_firing_for / resolved, percentiles and rates of a
 * window; the configuration sections (defaults, order independence, DNS
 * split, deep copy) and their FILE:LINE errors.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/autoscale.h"
#include "weir/autoscale_metrics.h"
#include "weir/conf.h"
#include "weir/conf_autoscale.h"
#include "weir/conf_edit.h"

#include <stdio.h>
#include <unistd.h>

#define TICK 1000

static struct weir_conf_as_rule threshold_rule(int metric)
{
    struct weir_conf_as_rule r;
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.pool = "api";
    r.metric = metric;
    r.window_ms = 10000;
    r.min_servers = 2;
    r.max_servers = 10;
    r.busy_inflight = 1.0;
    r.up.enabled = r.up.has_threshold = 1;
    r.up.threshold = 250;
    r.up.for_ms = 3000;
    r.up.step = 1;
    r.up.cooldown_ms = 30000;
    r.down.enabled = r.down.has_threshold = 1;
    r.down.threshold = 80;
    r.down.for_ms = 60000;
    r.down.step = 1;
    r.down.cooldown_ms = 300000;
    return r;
}

static struct weir_as_tick tick_at(int64_t t, double v, int servers)
{
    struct weir_as_tick k;
    memset(&k, 0, sizeof(k));
    k.now_ms = t;
    k.has_value = 1;
    k.value = v;
    k.servers = servers;
    k.inflight_per_server = 4;
    k.leader = 1;
    return k;
}

static void test_for_ms(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_P95_MS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    weir_as_rule_state_init(&st);

    for (int64_t t = 0; t < 3000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 300, 2);
        weir_as_rule_eval(&r, &st, &k, &v);
        assert_int_equal(v.action, WEIR_AS_NONE);
    }
    struct weir_as_tick k = tick_at(3000, 300, 2);
    weir_as_rule_eval(&r, &st, &k, &v);
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);
    assert_int_equal(v.desired, 3);
    assert_int_equal(v.held_ms, 3000);
    assert_true(v.record);
    /* the action restarted the timers: the next tick does not act again */
    k = tick_at(4000, 300, 3);
    weir_as_rule_eval(&r, &st, &k, &v);
    assert_int_equal(v.action, WEIR_AS_NONE);
}

static void test_breach_restart(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_P95_MS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    const double series[] = {300, 300, 300, 249, 300, 300, 300, 300};
    int acted_at = -1;
    weir_as_rule_state_init(&st);

    for (int i = 0; i < (int)(sizeof(series) / sizeof(series[0])); i++) {
        struct weir_as_tick k = tick_at(i * TICK, series[i], 2);
        weir_as_rule_eval(&r, &st, &k, &v);
        if (v.action == WEIR_AS_SCALE_UP && acted_at < 0)
            acted_at = i;
    }
    /* one tick at 249 restarts the 3 s: the breach from tick 4 holds at tick 7 */
    assert_int_equal(acted_at, 7);
}

/* Deterministic noise in [-1, 1). */
static double noise(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return ((double)((*seed >> 8) & 0xffff) / 32768.0) - 1.0;
}

static void test_hysteresis_noise(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_P95_MS);
    unsigned seed = 42;
    /* around the scale-up threshold, then around the scale-down one: */
    const double centres[] = {250, 80};
    for (int c = 0; c < 2; c++) {
        struct weir_as_rule_state st;
        struct weir_as_verdict v;
        int servers = 5, ups = 0, downs = 0;
        weir_as_rule_state_init(&st);
        for (int i = 0; i < 3600; i++) {
            int64_t t = (int64_t)i * TICK;
            struct weir_as_tick k = tick_at(t, centres[c] * (1.0 + 0.10 * noise(&seed)), servers);
            k.servers = servers;
            weir_as_rule_eval(&r, &st, &k, &v);
            if (v.action == WEIR_AS_SCALE_UP) {
                ups++;
                servers = v.desired;
                weir_as_rule_done(&r, &st, WEIR_AS_UP, 1, t);
            } else if (v.action == WEIR_AS_SCALE_DOWN) {
                downs++;
                servers = v.desired;
                weir_as_rule_done(&r, &st, WEIR_AS_DOWN, 1, t);
            }
        }
        /* never both directions: no flapping */
        assert_true(ups == 0 || downs == 0);
        if (c == 0)
            assert_int_equal(downs, 0);
        else
            assert_int_equal(ups, 0);
        /* +-10 % around the threshold: a held breach of 3 ticks (up) is
         * rare and then rate-limited by the cooldown; 60 ticks (down) never */
        if (c == 0)
            assert_true(ups <= 3600 / 30);
        else
            assert_int_equal(downs, 0);
    }
}

static void test_cooldown(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_RPS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    int records = 0, acted = 0;
    weir_as_rule_state_init(&st);

    weir_as_rule_done(&r, &st, WEIR_AS_UP, 1, 0); /* cooldown until 30000 */
    for (int64_t t = 0; t <= 40000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 400, 3);
        weir_as_rule_eval(&r, &st, &k, &v);
        if (v.action == WEIR_AS_SKIP) {
            assert_int_equal(v.reason, WEIR_ASR_COOLDOWN);
            assert_true(t < 30000);
            records += v.record;
        }
        if (v.action == WEIR_AS_SCALE_UP) {
            assert_int_equal(t, 30000);
            acted++;
            break;
        }
    }
    assert_int_equal(records, 1); /* the skip is recorded once, not every tick */
    assert_int_equal(acted, 1);

    /* a failed action starts no cooldown */
    weir_as_rule_state_init(&st);
    weir_as_rule_done(&r, &st, WEIR_AS_UP, 0, 0);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 400, 3);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);
}

static void test_bounds(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_RPS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    struct weir_as_tick k;

    r.up.step = 5;
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 400, 8);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);
    assert_int_equal(v.desired, 10); /* 8 + 5 capped at max_servers */

    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 400, 10);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SKIP);
    assert_int_equal(v.reason, WEIR_ASR_AT_MAX);

    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 60000; t += TICK) {
        k = tick_at(t, 10, 2);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SKIP);
    assert_int_equal(v.reason, WEIR_ASR_AT_MIN);

    r.down.step = 4;
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 60000; t += TICK) {
        k = tick_at(t, 10, 4);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_DOWN);
    assert_int_equal(v.desired, 2); /* 4 - 4 raised to min_servers */
}

static void test_not_capacity_bound(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_P95_MS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    weir_as_rule_state_init(&st);

    for (int64_t t = 0; t <= 3000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 900, 2);
        k.inflight_per_server = 0.3; /* slow, but idle: a slow dependency */
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SKIP);
    assert_int_equal(v.reason, WEIR_ASR_NOT_CAPACITY_BOUND);
    /* the servers get busy: now it scales */
    struct weir_as_tick k = tick_at(4000, 900, 2);
    k.inflight_per_server = 3;
    weir_as_rule_eval(&r, &st, &k, &v);
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);

    /* an rps rule does not care how busy the servers are */
    r = threshold_rule(WEIR_ASM_RPS);
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 900, 2);
        k.inflight_per_server = 0;
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);
}

static void test_no_data(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_P95_MS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    int records = 0;
    weir_as_rule_state_init(&st);

    /* unhealthy pool without data: never scales, recorded once */
    for (int64_t t = 0; t <= 120000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 0, 4);
        k.has_value = 0;
        k.unsettled = WEIR_ASR_UNHEALTHY;
        weir_as_rule_eval(&r, &st, &k, &v);
        assert_int_equal(v.action, WEIR_AS_SKIP);
        assert_int_equal(v.reason, WEIR_ASR_NO_DATA);
        records += v.record;
    }
    assert_int_equal(records, 1);

    /* a breach up interrupted by missing data never scales up */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 10000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 900, 4);
        k.has_value = (t / TICK) % 2 == 0;
        weir_as_rule_eval(&r, &st, &k, &v);
        assert_int_not_equal(v.action, WEIR_AS_SCALE_UP);
    }

    /* an idle, healthy pool scales down after for_ms */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 60000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 0, 4);
        k.has_value = 0;
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_DOWN);
    assert_int_equal(v.desired, 3);
}

static void test_blockers(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_RPS);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    struct {
        int in_flight, leader, dry_run, unsettled, expect;
    } cases[] = {
        {1, 1, 0, 0, WEIR_ASR_ACTION_IN_FLIGHT},
        {0, 0, 0, 0, WEIR_ASR_FOLLOWER},
        {0, 1, 1, 0, WEIR_ASR_DRY_RUN},
        {0, 0, 1, 0, WEIR_ASR_FOLLOWER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        weir_as_rule_state_init(&st);
        for (int64_t t = 0; t <= 3000; t += TICK) {
            struct weir_as_tick k = tick_at(t, 400, 3);
            k.action_in_flight = cases[i].in_flight;
            k.leader = cases[i].leader;
            k.dry_run = cases[i].dry_run;
            weir_as_rule_eval(&r, &st, &k, &v);
        }
        assert_int_equal(v.action, WEIR_AS_SKIP);
        assert_int_equal(v.reason, cases[i].expect);
        assert_int_equal(v.desired, 4);
    }
    /* scale-down waits for unverified servers */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 60000; t += TICK) {
        struct weir_as_tick k = tick_at(t, 10, 4);
        k.unsettled = WEIR_ASR_UNVERIFIED;
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SKIP);
    assert_int_equal(v.reason, WEIR_ASR_UNVERIFIED);
}

static void test_target_mode(void **unused)
{
    struct weir_conf_as_rule r = threshold_rule(WEIR_ASM_RPS_PER_SERVER);
    struct weir_as_rule_state st;
    struct weir_as_verdict v;
    struct weir_as_tick k;

    assert_int_equal(weir_as_target_desired(4, 300, 150), 8);
    assert_int_equal(weir_as_target_desired(4, 100, 150), 3);
    assert_int_equal(weir_as_target_desired(3, 150, 150), 3);
    assert_int_equal(weir_as_target_desired(0, 10, 150), 1);
    struct weir_conf_as_step s = {.step = 2};
    assert_int_equal(weir_as_step_count(&s, 7), 2);
    s.step_pct = 50;
    assert_int_equal(weir_as_step_count(&s, 7), 4);
    s.step_pct = 10;
    assert_int_equal(weir_as_step_count(&s, 3), 1);

    r.has_target = 1;
    r.target = 150;
    r.up.has_threshold = r.down.has_threshold = 0;
    r.up.step = 10;
    r.down.for_ms = 3000;
    r.down.step = 10;

    /* within 10 %: nothing, however long */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 20000; t += TICK) {
        k = tick_at(t, 160, 4);
        weir_as_rule_eval(&r, &st, &k, &v);
        assert_int_equal(v.action, WEIR_AS_NONE);
    }
    /* twice the target on 4 servers: 8 wanted */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 300, 4);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_UP);
    assert_int_equal(v.desired, 8);
    /* the step limits it */
    r.up.step = 1;
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 300, 4);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.desired, 5);
    /* two thirds of the target on 4 servers: 3 */
    weir_as_rule_state_init(&st);
    for (int64_t t = 0; t <= 3000; t += TICK) {
        k = tick_at(t, 100, 4);
        weir_as_rule_eval(&r, &st, &k, &v);
    }
    assert_int_equal(v.action, WEIR_AS_SCALE_DOWN);
    assert_int_equal(v.desired, 3);
}

static void test_alerts(void **unused)
{
    struct weir_conf_as_alert c;
    struct weir_as_alert_def d;
    struct weir_as_alert_state st;

    memset(&c, 0, sizeof(c));
    c.has_warning = c.has_critical = 1;
    c.warning = 0.01;
    c.critical = 0.05;
    c.for_ms = 5000;
    c.keep_firing_for_ms = 30000;
    weir_as_alert_def_from_conf(&d, &c);
    weir_as_alert_state_init(&st);

    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.001, 0), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.02, 1000), WEIR_AEV_PENDING);
    assert_int_equal(st.state, WEIR_ALERT_PENDING);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.02, 5000), WEIR_AEV_NONE);
    /* pending cleared before for_ms: back to ok, nothing fired */
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.0, 5500), WEIR_AEV_CANCELLED);
    assert_int_equal(st.state, WEIR_ALERT_OK);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.02, 10000), WEIR_AEV_PENDING);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.02, 15000), WEIR_AEV_FIRING);
    assert_int_equal(st.severity, WEIR_SEV_WARNING);
    /* escalation fires again with the new severity */
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.2, 16000), WEIR_AEV_FIRING);
    assert_int_equal(st.severity, WEIR_SEV_CRITICAL);
    /* cleared: keeps firing for 30 s */
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.0, 17000), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 0, 0.0, 40000), WEIR_AEV_NONE);
    assert_int_equal(st.state, WEIR_ALERT_FIRING);
    /* back during keep_firing_for: the clear timer restarts */
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.2, 41000), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.0, 42000), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.0, 71000), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 0.0, 72000), WEIR_AEV_RESOLVED);
    assert_int_equal(st.state, WEIR_ALERT_RESOLVED);

    /* below-alerts (healthy_servers < 2) */
    d.below = 1;
    d.has_critical = 0;
    d.warning = 2;
    d.for_ms = 0;
    weir_as_alert_state_init(&st);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 3, 0), WEIR_AEV_NONE);
    assert_int_equal(weir_as_alert_eval(&d, &st, 1, 1, 1000), WEIR_AEV_FIRING);
}

/* A cumulative histogram after n more values of `us` each. */
static void add_values(struct weir_hist *h, int n, uint64_t us)
{
    for (int i = 0; i < n; i++)
        weir_hist_record(h, us);
}

static void test_window(void **unused)
{
    struct weir_as_series *s = weir_as_series_new(4);
    struct weir_hist *h = malloc(sizeof(*h));
    struct weir_as_window w;
    struct weir_as_sample x;
    double v;

    assert_non_null(s);
    weir_hist_init(h);
    memset(&x, 0, sizeof(x));
    x.hist = h;
    x.servers = x.available = 2;
    assert_int_equal(weir_as_series_window(s, 10000, &w), -1);
    for (int i = 0; i <= 12; i++) {
        x.t_ms = i * 1000;
        /* old traffic at 500 ms, then 100 per second at 10 ms with 5 errors */
        if (i < 5) {
            add_values(h, 100, 500000);
            x.requests += 100;
        } else {
            add_values(h, 95, 10000);
            add_values(h, 5, 20000);
            x.requests += 100;
            x.errors += 5;
        }
        x.inflight = 4;
        weir_as_series_push(s, &x);
    }
    /* depth 4 grows to the window's need */
    assert_int_equal(weir_as_series_reserve(s, 8), 0);
    assert_int_equal(weir_as_series_len(s), 4);
    assert_int_equal(weir_as_series_window(s, 3000, &w), 0);
    assert_int_equal(w.requests, 300);
    assert_true(weir_as_window_value(&w, WEIR_ASM_RPS, &v) && v > 99.9 && v < 100.1);
    assert_true(weir_as_window_value(&w, WEIR_ASM_RPS_PER_SERVER, &v) && v > 49.9 && v < 50.1);
    assert_true(weir_as_window_value(&w, WEIR_ASM_ERROR_RATE, &v) && v > 0.0499 && v < 0.0501);
    assert_true(weir_as_window_value(&w, WEIR_ASM_P50_MS, &v) && v > 9.8 && v < 10.2);
    assert_true(weir_as_window_value(&w, WEIR_ASM_P99_MS, &v) && v > 19.6 && v < 20.4);
    assert_true(weir_as_window_value(&w, WEIR_ASM_INFLIGHT_PER_SERVER, &v) && v > 1.99 && v < 2.01);
    assert_true(weir_as_window_value(&w, WEIR_ASM_HEALTHY_SERVERS, &v) && v == 2);

    /* no requests in the window: latency and errors are missing, rps is 0 */
    for (int i = 13; i <= 20; i++) {
        x.t_ms = i * 1000;
        x.available = 0;
        weir_as_series_push(s, &x);
    }
    assert_int_equal(weir_as_series_window(s, 3000, &w), 0);
    assert_false(weir_as_window_value(&w, WEIR_ASM_P95_MS, &v));
    assert_false(weir_as_window_value(&w, WEIR_ASM_ERROR_RATE, &v));
    assert_false(weir_as_window_value(&w, WEIR_ASM_RPS_PER_SERVER, &v));
    assert_true(weir_as_window_value(&w, WEIR_ASM_RPS, &v) && v == 0);
    weir_as_series_free(s);
    free(h);
}

static void test_names(void **unused)
{
    for (int m = 0; m < WEIR_ASM_N; m++)
        assert_int_equal(weir_as_metric_find(weir_as_metric_name(m)), m);
    assert_int_equal(weir_as_metric_find("cache_miss_ratio"), -1);
    assert_string_equal(weir_as_reason_name(WEIR_ASR_NOT_CAPACITY_BOUND), "not_capacity_bound");
    assert_string_equal(weir_as_reason_name(WEIR_ASR_FOLLOWER), "follower");
    assert_true(weir_as_metric_is_latency(WEIR_ASM_P95_MS));
    assert_false(weir_as_metric_is_latency(WEIR_ASM_ERROR_RATE));
}

/* ---- the configuration sections (conf_autoscale.c, conf_dns.c) ---- */

static char conf_path[64];

static struct weir_conf *load_text(const char *text, struct weir_conf_errors *errs)
{
    snprintf(conf_path, sizeof(conf_path), "/tmp/weir-test-autoscale-%d.conf", (int)getpid());
    FILE *f = fopen(conf_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memset(errs, 0, sizeof(*errs));
    struct weir_conf *c = weir_conf_load(conf_path, errs);
    unlink(conf_path);
    return c;
}

/* The autoscale section comes before the pools it names: still valid. */
static void test_conf_sections(void **unused)
{
    struct weir_conf_errors errs;
    struct weir_conf *c =
        load_text("autoscale = { interval_ms = 500; dry_run = true;\n"
                  "  rules = ( { name = \"r1\"; pool = \"api\"; metric = \"rps_per_server\"; target = 100;\n"
                  "              scale_up = { step_pct = 50; }; scale_down = { for_ms = 1000; }; } );\n"
                  "  alerts = ( { name = \"a1\"; pool = \"api\"; metric = \"healthy_servers\"; below = true; "
                  "warning = 2; } );\n"
                  "  redis = { address = \"127.0.0.1:6379\"; }; };\n"
                  "resolvers = ( \"127.0.0.1\", \"10.0.0.2:5353\" );\n"
                  "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
                  "pools = ( { name = \"api\"; servers = ( { address = \"localhost:9001\"; },\n"
                  "            { address = \"API.Internal:8080\"; resolve = true; resolve_interval_ms = "
                  "2000; weight = 3; } ); } );\n"
                  "routes = ( { host = \"*\"; path_prefix = \"/\"; pool = \"api\"; } );\n",
                  &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    assert_non_null(c);
    const struct weir_conf_autoscale *a = &c->autoscale;
    assert_true(a->enabled && a->dry_run);
    assert_int_equal(a->interval_ms, 500);
    assert_int_equal(a->hook_timeout_ms, 30000);
    assert_int_equal(a->nrules, 1);
    assert_true(a->rules[0].has_target && a->rules[0].target == 100.0);
    assert_int_equal(a->rules[0].up.step_pct, 50);
    assert_int_equal(a->rules[0].up.for_ms, 3000); /* default */
    assert_int_equal(a->rules[0].down.cooldown_ms, 300000);
    assert_int_equal(a->rules[0].warmup_ms, 120000);
    assert_int_equal(a->nalerts, 1);
    assert_true(a->alerts[0].below && a->alerts[0].has_warning && !a->alerts[0].has_critical);
    assert_true(a->redis.enabled);
    assert_int_equal(a->redis.lease_ms, 5000);
    assert_string_equal(a->redis.key, "weir:autoscale:leader");
    /* the resolved name left the server list; localhost needed no lookup */
    assert_int_equal(c->pools[0].nservers, 1);
    assert_string_equal(c->pools[0].servers[0].addr.text, "localhost:9001");
    assert_int_equal(c->pools[0].ndns, 1);
    assert_string_equal(c->pools[0].dns[0].name, "api.internal");
    assert_int_equal(c->pools[0].dns[0].port, 8080);
    assert_int_equal(c->pools[0].dns[0].weight, 3);
    assert_int_equal(c->pools[0].dns[0].interval_ms, 2000);
    assert_int_equal(c->nresolvers, 2);
    assert_string_equal(c->resolvers[0].text, "127.0.0.1:53");
    assert_string_equal(c->resolvers[1].text, "10.0.0.2:5353");

    /* a deep copy owns everything (freeing both is clean under ASan) */
    struct weir_conf *d = weir_conf_dup(c);
    assert_non_null(d);
    assert_ptr_not_equal(d->autoscale.rules, c->autoscale.rules);
    assert_ptr_not_equal(d->autoscale.rules[0].name, c->autoscale.rules[0].name);
    assert_string_equal(d->autoscale.rules[0].name, "r1");
    assert_ptr_not_equal(d->pools[0].dns[0].name, c->pools[0].dns[0].name);
    assert_ptr_not_equal(d->resolvers[0].text, c->resolvers[0].text);
    assert_string_equal(d->autoscale.redis.key, "weir:autoscale:leader");
    weir_conf_free(c);
    weir_conf_free(d);
    weir_conf_errors_free(&errs);
}

static void expect_error(const char *autoscale, const char *servers, const char *want)
{
    struct weir_conf_errors errs;
    char text[2048];
    snprintf(text, sizeof(text),
             "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
             "pools = ( { name = \"api\"; servers = ( %s ); } );\n"
             "routes = ( { host = \"*\"; path_prefix = \"/\"; pool = \"api\"; } );\n"
             "%s\n",
             servers, autoscale);
    struct weir_conf *c = load_text(text, &errs);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        found |= strstr(errs.msgs[i], want) != NULL;
    if (!found)
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "got: %s\n", errs.msgs[i]);
    assert_null(c);
    assert_true(found);
    weir_conf_errors_free(&errs);
}

static void test_conf_errors(void **unused)
{
    const char *ok = "{ address = \"127.0.0.1:9001\"; }";
    expect_error(
        "autoscale = { rules = ( { name = \"r\"; pool = \"api\"; metric = \"rps\";\n"
        "  scale_up = { above = 10.0; }; scale_down = { below = 20.0; }; } ); };",
        ok, ".conf:5: autoscale.rules[0]: scale_up.above (10) must be greater than scale_down.below (20)");
    expect_error("autoscale = { rules = ( { name = \"r\"; pool = \"api\"; metric = \"rps\"; } ); };", ok,
                 "autoscale.rules[0] needs scale_up and/or scale_down");
    expect_error(
        "autoscale = { rules = ( { name = \"r\"; pool = \"api\"; metric = \"rps\"; window_ms = 500;\n"
        "  scale_up = { above = 1.0; }; } ); };",
        ok, "autoscale.rules[0].window_ms must be between 1000 and 900000 (got 500)");
    expect_error(
        "autoscale = { interval_ms = 1000; redis = { address = \"127.0.0.1:6379\"; lease_ms = 1500; }; };",
        ok, "lease_ms (1500) must be at least twice interval_ms (1000)");
    expect_error("autoscale = { alerts = ( { name = \"a\"; pool = \"api\"; metric = \"rps\"; warning = 5.0;\n"
                 "  critical = 1.0; } ); };",
                 ok, ".conf:5: autoscale.alerts[0].critical (1) must be at or above warning (5)");
    expect_error("autoscale = { rules = ( { name = \"bad name\"; pool = \"api\"; metric = \"rps\";\n"
                 "  scale_up = { above = 1.0; }; } ); };",
                 ok, "autoscale.rules[0].name must be 1 to 64 characters");
    expect_error("autoscale = 3;", ok, "autoscale must be a group");
    expect_error(
        "", "{ address = \"api.example.com:80\"; }",
        ".conf:2: invalid address 'api.example.com:80' in pools[0].servers[0].address: not an IP address");
    expect_error("", "{ address = \"bad_:name:80\"; resolve = true; }", "(resolve = true): not a host name");
    expect_error("", "{ address = \"api.test:99999\"; resolve = true; }", "(resolve = true): port");
    expect_error(
        "", "{ address = \"api.test:80\"; resolve = true; }, { address = \"API.test:80\"; resolve = true; }",
        "duplicate resolved server 'API.test:80'");
    expect_error("resolvers = ( \"*\" );", ok,
                 "invalid address '*' in resolvers[0]: an IP address is required");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_ms),           cmocka_unit_test(test_breach_restart),
        cmocka_unit_test(test_hysteresis_noise), cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_bounds),           cmocka_unit_test(test_not_capacity_bound),
        cmocka_unit_test(test_no_data),          cmocka_unit_test(test_blockers),
        cmocka_unit_test(test_target_mode),      cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_window),           cmocka_unit_test(test_names),
        cmocka_unit_test(test_conf_sections),    cmocka_unit_test(test_conf_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
