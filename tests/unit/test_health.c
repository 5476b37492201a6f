/*
 * test_health.c - unit tests for the health module (health.c, health_check.c).
 *
 *  - the pure decision functions: effective state, rise/fall counting,
 *    ejection time growth and cap, max_ejected_pct, slow-start ramp, HTTP
 *    check verdicts (status range, body substring);
 *  - passive ejection as the workers drive it (weir_health_report) on fake
 *    pools, including many threads racing against max_ejected_pct;
 *  - the control thread on a real event_base: re-admission after eject time,
 *    growth of the second ejection, slow-start ramp, sync keeping state and
 *    dropping removed servers, and active tcp/http checks against listeners
 *    served by the same loop (connect refused -> DOWN, rise -> UP, status,
 *    chunked body with expect_body).
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
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "weir/conf.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/runtime.h"

static long long now_ms(void)
{
    return (long long)(weir_now_us() / 1000u);
}

/* ---------------------------------------------------------------- pure */

static void test_effective(void **st)
{
    (void)st;
    assert_int_equal(weir_health_effective(WEIR_ADMIN_READY, WEIR_SRV_UP), WEIR_SRV_UP);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_READY, WEIR_SRV_DOWN), WEIR_SRV_DOWN);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_READY, WEIR_SRV_EJECTED), WEIR_SRV_EJECTED);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_DRAIN, WEIR_SRV_UP), WEIR_SRV_DRAINING);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_DRAIN, WEIR_SRV_DOWN), WEIR_SRV_DRAINING);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_MAINT, WEIR_SRV_UP), WEIR_SRV_MAINT);
    assert_int_equal(weir_health_effective(WEIR_ADMIN_MAINT, WEIR_SRV_EJECTED), WEIR_SRV_MAINT);
}

/* Feed a pattern of results ('+' pass, '-' fail); return the states after
 * each one as a string of 'U', 'D', 'E'. */
static void run_checks(int start, const char *pattern, int rise, int fall, char *out)
{
    struct weir_health_counts c = {0, 0};
    int s = start;
    for (size_t i = 0; pattern[i]; i++) {
        int passed = pattern[i] == '+';
        weir_health_count(&c, passed);
        s = weir_health_next_state(s, &c, passed, rise, fall);
        out[i] = s == WEIR_SRV_UP ? 'U' : s == WEIR_SRV_DOWN ? 'D' : 'E';
    }
    out[strlen(pattern)] = '\0';
}

static void test_rise_fall(void **st)
{
    char out[64];
    (void)st;
    /* fall 3: two failures are forgiven by a pass; the third in a row takes it down */
    run_checks(WEIR_SRV_UP, "--+---", 2, 3, out);
    assert_string_equal(out, "UUUUUD");
    /* rise 2: a single pass does not bring it back, two in a row do */
    run_checks(WEIR_SRV_DOWN, "+-++", 2, 3, out);
    assert_string_equal(out, "DDDU");
    /* rise 1 / fall 1 flip on every result */
    run_checks(WEIR_SRV_UP, "-+-+", 1, 1, out);
    assert_string_equal(out, "DUDU");
    /* ejected: passes keep it ejected (eject time decides), a failure makes it DOWN */
    run_checks(WEIR_SRV_EJECTED, "+++-++", 2, 3, out);
    assert_string_equal(out, "EEEDDU");
    /* a long run of failures then rise passes */
    run_checks(WEIR_SRV_UP, "------+++", 3, 2, out);
    assert_string_equal(out, "UDDDDDDDU");
}

static void test_counts_saturate(void **st)
{
    struct weir_health_counts c = {0, 0};
    (void)st;
    for (int i = 0; i < 2000000; i++)
        weir_health_count(&c, 0);
    assert_true(c.fail_streak > 0);
    assert_int_equal(c.ok_streak, 0);
    weir_health_count(&c, 1);
    assert_int_equal(c.fail_streak, 0);
    assert_int_equal(c.ok_streak, 1);
}

static void test_eject_ms(void **st)
{
    (void)st;
    assert_int_equal(weir_health_eject_ms(10000, 300000, 1), 10000);
    assert_int_equal(weir_health_eject_ms(10000, 300000, 0), 10000);
    assert_int_equal(weir_health_eject_ms(10000, 300000, 2), 20000);
    assert_int_equal(weir_health_eject_ms(10000, 300000, 3), 40000);
    assert_int_equal(weir_health_eject_ms(10000, 300000, 5), 160000);
    assert_int_equal(weir_health_eject_ms(10000, 300000, 6), 300000); /* 320000 capped */
    assert_int_equal(weir_health_eject_ms(10000, 300000, 1000), 300000);
    assert_int_equal(weir_health_eject_ms(86400000, 86400000, 1000000), 86400000);
    assert_int_equal(weir_health_eject_ms(500, 500, 7), 500);
}

static void test_max_ejected(void **st)
{
    (void)st;
    assert_int_equal(weir_health_max_ejected(2, 50), 1);
    assert_int_equal(weir_health_max_ejected(3, 50), 1);
    assert_int_equal(weir_health_max_ejected(4, 50), 2);
    assert_int_equal(weir_health_max_ejected(10, 10), 1);
    assert_int_equal(weir_health_max_ejected(3, 10), 1); /* at least one when pct > 0 */
    assert_int_equal(weir_health_max_ejected(1, 50), 1);
    assert_int_equal(weir_health_max_ejected(5, 100), 5);
    assert_int_equal(weir_health_max_ejected(5, 0), 0);
    assert_int_equal(weir_health_max_ejected(0, 50), 0);
    assert_int_equal(weir_health_max_ejected(7, 99), 6);
}

static void test_ramp(void **st)
{
    (void)st;
    assert_int_equal(weir_health_ramp(0, 10000), 0);
    assert_int_equal(weir_health_ramp(-5, 10000), 0);
    assert_int_equal(weir_health_ramp(100, 10000), 10);
    assert_int_equal(weir_health_ramp(5000, 10000), 500);
    assert_int_equal(weir_health_ramp(9999, 10000), 999);
    assert_int_equal(weir_health_ramp(10000, 10000), 1000);
    assert_int_equal(weir_health_ramp(99999, 10000), 1000);
    assert_int_equal(weir_health_ramp(5, 0), 1000);
    /* monotonic */
    int prev = 0;
    for (long long t = 0; t <= 7000; t += 7) {
        int r = weir_health_ramp(t, 7000);
        assert_true(r >= prev && r <= 1000);
        prev = r;
    }
    /* what a policy sees: eff weight grows from ~0 to full */
    struct weir_server *s = weir_server_new("10.0.0.1:80", NULL, 0, 3);
    atomic_store(&s->ramp_permille, weir_health_ramp(0, 1000));
    assert_int_equal(weir_server_eff_weight(s), 1);
    atomic_store(&s->ramp_permille, weir_health_ramp(500, 1000));
    assert_int_equal(weir_server_eff_weight(s), 1500);
    atomic_store(&s->ramp_permille, weir_health_ramp(1000, 1000));
    assert_int_equal(weir_server_eff_weight(s), 3000);
    weir_server_release(s);
}

static void test_eval_http(void **st)
{
    char d[128];
    (void)st;
    assert_int_equal(weir_health_eval_http(200, "", 0, 200, 399, NULL, d, sizeof(d)), 1);
    assert_int_equal(weir_health_eval_http(399, NULL, 0, 200, 399, NULL, d, sizeof(d)), 1);
    assert_int_equal(weir_health_eval_http(400, "", 0, 200, 399, NULL, d, sizeof(d)), 0);
    assert_string_equal(d, "status 400 not in 200-399");
    assert_int_equal(weir_health_eval_http(199, "", 0, 200, 399, NULL, d, sizeof(d)), 0);
    assert_int_equal(weir_health_eval_http(500, "ok", 2, 200, 399, "ok", d, sizeof(d)), 0);
    assert_int_equal(weir_health_eval_http(204, "", 0, 204, 204, NULL, d, sizeof(d)), 1);
    /* body substring, binary-safe, not NUL-terminated */
    const char body[] = {'s', 't', 'a', 't', 'u', 's', '\0', 'o', 'k', '!'};
    assert_int_equal(weir_health_eval_http(200, body, sizeof(body), 200, 399, "ok", d, sizeof(d)), 1);
    assert_int_equal(weir_health_eval_http(200, body, 8, 200, 399, "ok", d, sizeof(d)), 0);
    assert_non_null(strstr(d, "body mismatch"));
    assert_int_equal(weir_health_eval_http(200, "OK", 2, 200, 399, "ok", d, sizeof(d)), 0); /* case matters */
    assert_int_equal(weir_health_eval_http(200, NULL, 0, 200, 399, "ok", d, sizeof(d)), 0);
    assert_int_equal(weir_health_eval_http(200, "xxok", 4, 200, 399, "ok", d, sizeof(d)), 1);
    assert_int_equal(weir_health_eval_http(200, "o", 1, 200, 399, "ok", d, sizeof(d)), 0);
}

/* ------------------------------------------------------------- passive */

#define MAXS 16

struct fpool {
    struct weir_conf_pool conf;
    struct weir_pool pool;
    struct weir_server *s[MAXS];
};

static void fp_make(struct fpool *f, size_t n, int failures, int pct)
{
    char name[64];
    memset(f, 0, sizeof(*f));
    f->conf.name = "p";
    f->conf.passive.enabled = 1;
    f->conf.passive.consecutive_failures = failures;
    f->conf.passive.count_5xx = 1;
    f->conf.passive.eject_ms = 1000;
    f->conf.passive.max_eject_ms = 5000;
    f->conf.passive.max_ejected_pct = pct;
    f->conf.panic = 1;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "10.0.0.%zu:80", i + 1);
        f->s[i] = weir_server_new(name, NULL, 0, 1);
    }
    f->pool.conf = &f->conf;
    f->pool.name = "p";
    f->pool.set.v = f->s;
    f->pool.set.n = n;
}

static void fp_free(struct fpool *f)
{
    for (size_t i = 0; i < f->pool.set.n; i++)
        weir_server_release(f->s[i]);
}

static void report_n(struct fpool *f, int i, int outcome, int n)
{
    for (int k = 0; k < n; k++)
        weir_health_report(&f->pool, f->s[i], outcome);
}

static void test_passive_eject(void **st)
{
    struct fpool f;
    (void)st;
    fp_make(&f, 3, 3, 50);
    /* two failures, then a success: the streak starts again */
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 2);
    assert_int_equal(atomic_load(&f.s[0]->passive_fails), 2);
    report_n(&f, 0, WEIR_OUTCOME_OK, 1);
    assert_int_equal(atomic_load(&f.s[0]->passive_fails), 0);
    report_n(&f, 0, WEIR_OUTCOME_RESET, 2);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_UP);
    long long before = now_ms();
    report_n(&f, 0, WEIR_OUTCOME_TIMEOUT, 1);
    assert_int_equal(atomic_load(&f.s[0]->health_state), WEIR_SRV_EJECTED);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_EJECTED);
    assert_int_equal(atomic_load(&f.s[0]->ejections), 1);
    assert_int_equal(atomic_load(&f.s[0]->eject_level), 1);
    long long until = atomic_load(&f.s[0]->eject_until_ms);
    assert_true(until >= before + 1000 && until <= now_ms() + 1000);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 0);

    /* 3 servers at 50 %: one may be ejected, the second one is not */
    report_n(&f, 1, WEIR_OUTCOME_5XX, 10);
    assert_int_equal(atomic_load(&f.s[1]->state), WEIR_SRV_UP);
    assert_int_equal(atomic_load(&f.s[1]->ejections), 0);

    /* second ejection of server 0 (as if re-admitted): twice as long */
    atomic_store(&f.s[0]->health_state, WEIR_SRV_UP);
    atomic_store(&f.s[0]->state, WEIR_SRV_UP);
    atomic_store(&f.s[0]->passive_fails, 0);
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 3);
    assert_int_equal(atomic_load(&f.s[0]->health_state), WEIR_SRV_EJECTED);
    assert_int_equal(atomic_load(&f.s[0]->eject_level), 2);
    until = atomic_load(&f.s[0]->eject_until_ms);
    assert_true(until - now_ms() > 1500);
    /* a down server is never ejected (and not counted) */
    atomic_store(&f.s[2]->health_state, WEIR_SRV_DOWN);
    report_n(&f, 2, WEIR_OUTCOME_CONNECT, 5);
    assert_int_equal(atomic_load(&f.s[2]->health_state), WEIR_SRV_DOWN);
    fp_free(&f);
}

static void test_passive_options(void **st)
{
    struct fpool f;
    (void)st;
    /* count_5xx off: a 5xx is a success for passive health */
    fp_make(&f, 2, 2, 50);
    f.conf.passive.count_5xx = 0;
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 1);
    report_n(&f, 0, WEIR_OUTCOME_5XX, 5);
    assert_int_equal(atomic_load(&f.s[0]->passive_fails), 0);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_UP);
    /* 2 servers at 50 %: one may be ejected */
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 2);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_EJECTED);
    report_n(&f, 1, WEIR_OUTCOME_CONNECT, 2);
    assert_int_equal(atomic_load(&f.s[1]->state), WEIR_SRV_UP);
    fp_free(&f);

    /* passive off: failures never eject */
    fp_make(&f, 2, 2, 50);
    f.conf.passive.enabled = 0;
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 50);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_UP);
    fp_free(&f);

    /* max_ejected_pct 0: never */
    fp_make(&f, 4, 1, 0);
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 5);
    assert_int_equal(atomic_load(&f.s[0]->state), WEIR_SRV_UP);
    fp_free(&f);

    /* 100 %: every server, then the pool is all down */
    fp_make(&f, 3, 1, 100);
    for (int i = 0; i < 3; i++)
        report_n(&f, i, WEIR_OUTCOME_CONNECT, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&f.s[i]->state), WEIR_SRV_EJECTED);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 1);
    fp_free(&f);
}

static void test_all_down(void **st)
{
    struct fpool f;
    (void)st;
    fp_make(&f, 3, 5, 50);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 0);
    atomic_store(&f.s[0]->state, WEIR_SRV_DOWN);
    atomic_store(&f.s[1]->state, WEIR_SRV_EJECTED);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 0);
    atomic_store(&f.s[2]->state, WEIR_SRV_MAINT);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 1);
    atomic_store(&f.s[2]->state, WEIR_SRV_DRAINING);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 1);
    /* nothing down, everything administratively out: not panic */
    for (int i = 0; i < 3; i++)
        atomic_store(&f.s[i]->state, WEIR_SRV_MAINT);
    assert_int_equal(weir_health_pool_all_down(&f.pool), 0);
    f.pool.set.n = 0;
    assert_int_equal(weir_health_pool_all_down(&f.pool), 0);
    f.pool.set.n = 3;
    fp_free(&f);
}

static void test_admin(void **st)
{
    struct fpool f;
    (void)st;
    fp_make(&f, 2, 2, 100);
    struct weir_server *s = f.s[0];
    assert_int_equal(weir_health_set_admin(s, WEIR_ADMIN_DRAIN, "p"), 0);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_DRAINING);
    /* failures while draining may still eject it: admin wins in the state */
    report_n(&f, 0, WEIR_OUTCOME_CONNECT, 2);
    assert_int_equal(atomic_load(&s->health_state), WEIR_SRV_EJECTED);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_DRAINING);
    assert_int_equal(weir_health_set_admin(s, WEIR_ADMIN_MAINT, "p"), 0);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_MAINT);
    assert_int_equal(weir_health_set_admin(s, WEIR_ADMIN_READY, "p"), 0);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_EJECTED);
    assert_int_equal(weir_health_set_admin(s, 7, "p"), -1);
    assert_int_equal(weir_health_set_admin(s, -1, "p"), -1);
    assert_int_equal(atomic_load(&s->admin_state), WEIR_ADMIN_READY);
    fp_free(&f);
}

/* Many workers fail many servers at once: never more ejected than allowed. */
struct race {
    struct fpool *f;
    int idx;
    _Atomic int *go;
    _Atomic int *max_seen;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(r->go))
        ;
    for (int k = 0; k < 20000; k++) {
        struct weir_server *s = r->f->s[(r->idx + k) % (int)r->f->pool.set.n];
        weir_health_report(&r->f->pool, s, WEIR_OUTCOME_CONNECT);
        int ej = 0;
        for (size_t i = 0; i < r->f->pool.set.n; i++)
            ej += atomic_load(&r->f->s[i]->health_state) == WEIR_SRV_EJECTED;
        int m = atomic_load(r->max_seen);
        while (ej > m && !atomic_compare_exchange_weak(r->max_seen, &m, ej))
            ;
        if (k % 97 == 0) /* re-admit something, as the control thread would */
            for (size_t i = 0; i < r->f->pool.set.n; i++) {
                int e = WEIR_SRV_EJECTED;
                if (atomic_compare_exchange_strong(&r->f->s[i]->health_state, &e, WEIR_SRV_UP))
                    break;
            }
    }
    return NULL;
}

static void test_eject_race(void **st)
{
    struct fpool f;
    pthread_t th[8];
    struct race r[8];
    _Atomic int go = 0, max_seen = 0;
    (void)st;
    weir_log_set_level(WEIR_LOG_ERROR); /* thousands of ejection lines */
    fp_make(&f, 10, 1, 30);
    for (int i = 0; i < 8; i++) {
        r[i] = (struct race){&f, i, &go, &max_seen};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    weir_log_set_level(WEIR_LOG_INFO);
    /* An ejection over the limit may be visible between its CAS and its
     * undo, never after; the steady state respects the limit. */
    int ej = 0;
    for (int i = 0; i < 10; i++)
        ej += atomic_load(&f.s[i]->health_state) == WEIR_SRV_EJECTED;
    assert_true(ej <= 3);
    assert_true(atomic_load(&max_seen) <= 3 + 8);
    assert_true(atomic_load(&max_seen) >= 1);
    fp_free(&f);
}

/* ------------------------------------------------------- control thread */

struct ctl {
    char path[64];
    struct event_base *base;
    struct weir_rt *rt;
};

static struct weir_rt *build(struct ctl *c, const char *text, struct weir_rt *prev)
{
    struct weir_conf_errors errs = {0};
    FILE *fp = fopen(c->path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    struct weir_conf *conf = weir_conf_load(c->path, &errs);
    if (conf == NULL)
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
    weir_conf_errors_free(&errs);
    assert_non_null(conf);
    struct weir_rt *rt = weir_rt_build(conf, prev, 1);
    assert_non_null(rt);
    return rt;
}

static void ctl_open(struct ctl *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/weir-test-health-XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    close(fd);
    c->base = event_base_new();
    assert_non_null(c->base);
    assert_int_equal(weir_health_start(c->base), 0);
    c->rt = NULL;
}

/* Publish like main.c does: the module holds its own reference. */
static void ctl_sync(struct ctl *c, struct weir_rt *rt)
{
    weir_health_sync(rt);
    weir_rt_release(c->rt);
    c->rt = rt;
}

static void ctl_close(struct ctl *c)
{
    weir_health_stop();
    weir_rt_release(c->rt);
    event_base_free(c->base);
    unlink(c->path);
}

static void run_ms(struct ctl *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(c->base, &tv);
    event_base_dispatch(c->base);
}

/* Run until pred(arg) holds or ms pass; returns the elapsed ms. */
static int run_until(struct ctl *c, int (*pred)(void *), void *arg, int ms)
{
    long long t0 = now_ms();
    while (!pred(arg) && now_ms() - t0 < ms)
        run_ms(c, 10);
    return (int)(now_ms() - t0);
}

static int is_up(void *arg)
{
    return atomic_load(&((struct weir_server *)arg)->state) == WEIR_SRV_UP;
}

static int is_down(void *arg)
{
    return atomic_load(&((struct weir_server *)arg)->state) == WEIR_SRV_DOWN;
}

#define CONF_HEAD "listen = ( { address = \"127.0.0.1:1\"; } );\nroutes = ( { pool = \"p\"; } );\n"

static void test_control_readmit(void **st)
{
    struct ctl c;
    char text[1024];
    (void)st;
    ctl_open(&c);
    snprintf(text, sizeof(text),
             CONF_HEAD
             "pools = ( { name = \"p\"; slow_start_ms = 400;\n"
             "  passive = { consecutive_failures = 2; eject_ms = 300; max_eject_ms = 2000; };\n"
             "  servers = ( { address = \"127.0.0.1:9\"; }, { address = \"127.0.0.1:10\"; } ); } );\n");
    ctl_sync(&c, build(&c, text, NULL));
    struct weir_pool *pool = &c.rt->pools[0];
    struct weir_server *s = pool->set.v[0];
    assert_non_null(s->health);
    struct weir_health_view v;
    assert_int_equal(weir_health_view(s, &v), -1); /* no active checks */
    assert_int_equal(v.checked, 0);
    assert_int_equal(v.health_state, WEIR_SRV_UP);

    weir_health_report(pool, s, WEIR_OUTCOME_CONNECT);
    weir_health_report(pool, s, WEIR_OUTCOME_CONNECT);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_EJECTED);
    run_ms(&c, 150);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_EJECTED);
    int t = run_until(&c, is_up, s, 1000);
    assert_true(t < 400); /* eject_ms 300, 100 ms tick */
    assert_int_equal(atomic_load(&s->passive_fails), 0);
    /* slow start: the ramp climbs from ~0 */
    int r1 = atomic_load(&s->ramp_permille);
    assert_true(r1 < 600);
    run_ms(&c, 150);
    int r2 = atomic_load(&s->ramp_permille);
    assert_true(r2 > r1 && r2 < 1000);
    run_ms(&c, 400);
    assert_int_equal(atomic_load(&s->ramp_permille), 1000);

    /* a reload keeps the same object and its state; eject it again: twice as long */
    weir_health_report(pool, s, WEIR_OUTCOME_RESET);
    weir_health_report(pool, s, WEIR_OUTCOME_RESET);
    assert_int_equal(atomic_load(&s->ejections), 2);
    long long left = atomic_load(&s->eject_until_ms) - now_ms();
    assert_true(left > 450 && left <= 600);
    ctl_sync(&c, build(&c, text, c.rt));
    pool = &c.rt->pools[0];
    assert_ptr_equal(pool->set.v[0], s);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_EJECTED);
    run_ms(&c, 300);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_EJECTED);
    t = run_until(&c, is_up, s, 1000);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_UP);

    /* the second server leaves the configuration: its record is freed */
    struct weir_server *gone = pool->set.v[1];
    weir_server_retain(gone);
    assert_non_null(gone->health);
    snprintf(text, sizeof(text),
             CONF_HEAD "pools = ( { name = \"p\"; slow_start_ms = 400;\n"
                       "  passive = { consecutive_failures = 2; eject_ms = 300; max_eject_ms = 2000; };\n"
                       "  servers = ( { address = \"127.0.0.1:9\"; } ); } );\n");
    ctl_sync(&c, build(&c, text, c.rt));
    assert_null(gone->health);
    assert_non_null(s->health);
    weir_server_release(gone);
    ctl_close(&c);
}

/* A listener on the test's base answering every connection with `resp`
 * (NULL: accept and send nothing). */
struct fake {
    struct evconnlistener *lev;
    int port;
    const char *resp;
    int conns;
};

static void fake_write(struct bufferevent *bev, void *arg);
static void fake_event(struct bufferevent *bev, short what, void *arg);

static void fake_read(struct bufferevent *bev, void *arg)
{
    struct fake *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos < 0 || f->resp == NULL)
        return;
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_write(bev, f->resp, strlen(f->resp));
    bufferevent_setcb(bev, fake_read, fake_write, fake_event, f); /* close once written */
}

static void fake_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what, (void)arg;
    bufferevent_free(bev);
}

static void fake_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev); /* Connection: close */
}

static void fake_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int len,
                        void *arg)
{
    struct fake *f = arg;
    (void)sa, (void)len;
    f->conns++;
    struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(lev), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, fake_read, NULL, fake_event, f);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void fake_listen(struct ctl *c, struct fake *f, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lev = evconnlistener_new_bind(c->base, fake_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                     (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(f->lev);
    socklen_t sl = sizeof(sin);
    getsockname(evconnlistener_get_fd(f->lev), (struct sockaddr *)&sin, &sl);
    f->port = ntohs(sin.sin_port);
}

static void test_control_tcp_check(void **st)
{
    struct ctl c;
    struct fake f = {0};
    char text[1024];
    (void)st;
    ctl_open(&c);
    fake_listen(&c, &f, 0);
    snprintf(text, sizeof(text),
             CONF_HEAD
             "pools = ( { name = \"p\"; slow_start_ms = 0;\n"
             "  health = { type = \"tcp\"; interval_ms = 40; timeout_ms = 40; rise = 2; fall = 2; };\n"
             "  servers = ( { address = \"127.0.0.1:%d\"; } ); } );\n",
             f.port);
    ctl_sync(&c, build(&c, text, NULL));
    struct weir_server *s = c.rt->pools[0].set.v[0];
    run_ms(&c, 200);
    assert_true(f.conns >= 2);
    struct weir_health_view v;
    assert_int_equal(weir_health_view(s, &v), 0);
    assert_int_equal(v.checked, 1);
    assert_int_equal(v.last_ok, 1);
    assert_string_equal(v.last_detail, "connected");
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_UP);

    evconnlistener_free(f.lev); /* now connections are refused */
    int t = run_until(&c, is_down, s, 1000);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_DOWN);
    assert_true(t <= 2 * 40 + 2 * 8 + 60);
    weir_health_view(s, &v);
    assert_int_equal(v.last_ok, 0);
    assert_string_equal(v.last_detail, "connect refused");
    /* panic bookkeeping sees the pool all down */
    assert_int_equal(weir_health_pool_all_down(&c.rt->pools[0]), 1);

    fake_listen(&c, &f, f.port);
    t = run_until(&c, is_up, s, 1000);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_UP);
    assert_true(t <= 3 * 40 + 3 * 8 + 60);
    evconnlistener_free(f.lev);
    ctl_close(&c);
}

static const char RESP_OK_CHUNKED[] =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    "5\r\nall s\r\n8\r\nystems o\r\n1\r\nk\r\n0\r\n\r\n";
static const char RESP_OK_WRONG[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nsick now";
static const char RESP_500[] = "HTTP/1.1 500 Oops\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
static const char RESP_EOF_OK[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nstatus: ok\n";

static void test_control_http_check(void **st)
{
    struct ctl c;
    struct fake f = {0};
    char text[1024];
    struct weir_health_view v;
    (void)st;
    ctl_open(&c);
    fake_listen(&c, &f, 0);
    f.resp = RESP_OK_CHUNKED;
    snprintf(text, sizeof(text),
             CONF_HEAD "pools = ( { name = \"p\"; panic = false;\n"
                       "  health = { interval_ms = 30; timeout_ms = 30; rise = 1; fall = 1; jitter_pct = 0;\n"
                       "             expect_body = \"systems ok\"; expect_status = \"200-299\"; };\n"
                       "  servers = ( { address = \"127.0.0.1:%d\"; } ); } );\n",
             f.port);
    ctl_sync(&c, build(&c, text, NULL));
    struct weir_server *s = c.rt->pools[0].set.v[0];
    run_ms(&c, 120);
    assert_int_equal(weir_health_view(s, &v), 0);
    assert_int_equal(v.last_ok, 1);
    assert_int_equal(v.last_status, 200);
    assert_true(v.last_at_ms > 0);

    f.resp = RESP_OK_WRONG; /* body mismatch */
    run_until(&c, is_down, s, 500);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_DOWN);
    weir_health_view(s, &v);
    assert_non_null(strstr(v.last_detail, "body mismatch"));

    f.resp = RESP_EOF_OK; /* 1xx skipped, close-delimited body */
    snprintf(text, sizeof(text),
             CONF_HEAD "pools = ( { name = \"p\"; panic = false;\n"
                       "  health = { interval_ms = 30; timeout_ms = 30; rise = 1; fall = 1; jitter_pct = 0;\n"
                       "             expect_body = \"ok\"; expect_status = \"200-299\"; };\n"
                       "  servers = ( { address = \"127.0.0.1:%d\"; } ); } );\n",
             f.port);
    ctl_sync(&c, build(&c, text, c.rt)); /* new settings, same server, state kept */
    assert_ptr_equal(c.rt->pools[0].set.v[0], s);
    run_until(&c, is_up, s, 500);
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_UP);

    f.resp = RESP_500;
    run_until(&c, is_down, s, 500);
    weir_health_view(s, &v);
    assert_int_equal(v.last_status, 500);
    assert_string_equal(v.last_detail, "status 500 not in 200-299");

    f.resp = NULL; /* accepts, never answers: the check times out */
    run_ms(&c, 100);
    weir_health_view(s, &v);
    assert_int_equal(v.last_ok, 0);
    assert_non_null(strstr(v.last_detail, "timeout"));
    assert_true(v.last_ms >= 25 && v.last_ms < 80);

    /* checks removed by a reload: a server down by checks is trusted again */
    snprintf(text, sizeof(text),
             CONF_HEAD "pools = ( { name = \"p\"; servers = ( { address = \"127.0.0.1:%d\"; } ); } );\n",
             f.port);
    ctl_sync(&c, build(&c, text, c.rt));
    assert_int_equal(atomic_load(&s->state), WEIR_SRV_UP);
    assert_int_equal(weir_health_view(s, &v), -1);
    run_ms(&c, 50); /* the fake server sees the last check's close and frees it */
    evconnlistener_free(f.lev);
    ctl_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_effective),
        cmocka_unit_test(test_rise_fall),
        cmocka_unit_test(test_counts_saturate),
        cmocka_unit_test(test_eject_ms),
        cmocka_unit_test(test_max_ejected),
        cmocka_unit_test(test_ramp),
        cmocka_unit_test(test_eval_http),
        cmocka_unit_test(test_passive_eject),
        cmocka_unit_test(test_passive_options),
        cmocka_unit_test(test_all_down),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_eject_race),
        cmocka_unit_test(test_control_readmit),
        cmocka_unit_test(test_control_tcp_check),
        cmocka_unit_test(test_control_http_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
