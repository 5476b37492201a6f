/*
 * health.c - the health state model: passive ejection (workers), active
 * check verdicts, re-admission, slow start, admin drain/maint and panic
 * logging (control thread).
 *
 * Who writes what:
 *   - workers (weir_health_report): server->passive_fails, and on the
 *     consecutive_failures-th failure the UP -> EJECTED transition of
 *     health_state (CAS), with eject_until_ms, eject_level and ejections;
 *   - the control thread: every other health_state transition (DOWN / UP by
 *     checks, EJECTED -> UP when the eject time is over), admin_state,
 *     ramp_permille, the eject_level decay, and the records in server->health.
 * server->state, the only field a pick reads, is recomputed from admin_state
 * and health_state by whoever changed one of them (state_recompute: store,
 * then check the inputs did not move, else again), so the last writer always
 * leaves the state that matches the inputs and no lock is ever taken.
 *
 * max_ejected_pct: a worker counts the pool's EJECTED servers before its CAS
 * and again after it; when two workers raced past the limit, the one that
 * sees the excess after its CAS undoes its own ejection (both may, which only
 * ejects fewer, never more, and the next failure tries again).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "health_int.h"
#include "weir/health.h"
#include "weir/log.h"

#define HEALTH_TICK_MS   100 /* re-admission, slow start, decay, panic log */
#define HEALTH_LEVEL_MAX 30  /* eject_level stops growing here */

/* Panic / all-down bookkeeping per pool name (survives reloads). */
struct hpool {
    char *name;
    int all_down; /* last logged: every server down or ejected */
    struct hpool *next;
};

static struct {
    struct event_base *base; /* control thread's; NULL when not started */
    struct event *tick;
    struct weir_rt *rt; /* the last synced snapshot, retained */
    struct weir_hsrv *list;
    struct hpool *pools;
} G;

/* ------------------------------------------------------------------ */
/* decision logic (pure)                                                */
/* ------------------------------------------------------------------ */

int weir_health_effective(int admin_state, int health_state)
{
    switch (admin_state) {
    case WEIR_ADMIN_DRAIN:
        return WEIR_SRV_DRAINING;
    case WEIR_ADMIN_MAINT:
        return WEIR_SRV_MAINT;
    default:
        return health_state;
    }
}

void weir_health_count(struct weir_health_counts *c, int passed)
{
    if (passed) {
        if (c->ok_streak < 1000000)
            c->ok_streak++;
        c->fail_streak = 0;
    } else {
        if (c->fail_streak < 1000000)
            c->fail_streak++;
        c->ok_streak = 0;
    }
}

int weir_health_next_state(int health_state, const struct weir_health_counts *c, int passed, int rise,
                           int fall)
{
    switch (health_state) {
    case WEIR_SRV_UP:
        return !passed && c->fail_streak >= fall ? WEIR_SRV_DOWN : WEIR_SRV_UP;
    case WEIR_SRV_DOWN:
        return passed && c->ok_streak >= rise ? WEIR_SRV_UP : WEIR_SRV_DOWN;
    case WEIR_SRV_EJECTED:
        return passed ? WEIR_SRV_EJECTED : WEIR_SRV_DOWN;
    default:
        return health_state;
    }
}

long long weir_health_eject_ms(int eject_ms, int max_eject_ms, int level)
{
    long long t = eject_ms > 0 ? eject_ms : 0;
    for (int i = 1; i < level && t < max_eject_ms; i++)
        t *= 2;
    return t > max_eject_ms ? max_eject_ms : t;
}

size_t weir_health_max_ejected(size_t n, int pct)
{
    if (pct <= 0 || n == 0)
        return 0;
    size_t m = n * (size_t)(pct > 100 ? 100 : pct) / 100;
    return m < 1 ? 1 : m;
}

int weir_health_ramp(long long elapsed_ms, int slow_start_ms)
{
    if (slow_start_ms <= 0 || elapsed_ms >= slow_start_ms)
        return 1000;
    if (elapsed_ms <= 0)
        return 0;
    return (int)(elapsed_ms * 1000 / slow_start_ms);
}

static int mem_contains(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    if (k == 0)
        return 1;
    for (size_t i = 0; i + k <= n; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0)
            return 1;
    }
    return 0;
}

int weir_health_eval_http(int status, const char *body, size_t len, int lo, int hi, const char *expect,
                          char *detail, size_t cap)
{
    if (status < lo || status > hi) {
        snprintf(detail, cap, "status %d not in %d-%d", status, lo, hi);
        return 0;
    }
    if (expect != NULL && !mem_contains(body ? body : "", body ? len : 0, expect)) {
        snprintf(detail, cap, "status %d, body mismatch (no \"%.40s\")", status, expect);
        return 0;
    }
    snprintf(detail, cap, "status %d", status);
    return 1;
}

/* ------------------------------------------------------------------ */
/* shared helpers                                                       */
/* ------------------------------------------------------------------ */

long long weir_health_now_ms(void)
{
    return (long long)(weir_now_us() / 1000u);
}

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Make server->state match admin_state and health_state (any thread). */
static void state_recompute(struct weir_server *s)
{
    for (int i = 0; i < 1000; i++) {
        int a = atomic_load(&s->admin_state), h = atomic_load(&s->health_state);
        atomic_store(&s->state, weir_health_effective(a, h));
        if (atomic_load(&s->admin_state) == a && atomic_load(&s->health_state) == h)
            return;
    }
}

static size_t count_ejected(const struct weir_pool *pool)
{
    size_t n = 0;
    for (size_t i = 0; i < pool->set.n; i++)
        n += atomic_load(&pool->set.v[i]->health_state) == WEIR_SRV_EJECTED;
    return n;
}

static const char *outcome_text(int outcome)
{
    switch (outcome) {
    case WEIR_OUTCOME_CONNECT:
        return "connect failed";
    case WEIR_OUTCOME_RESET:
        return "connection reset";
    case WEIR_OUTCOME_TIMEOUT:
        return "response timeout";
    case WEIR_OUTCOME_5XX:
        return "5xx response";
    }
    return "ok";
}

/* ------------------------------------------------------------------ */
/* passive (workers)                                                    */
/* ------------------------------------------------------------------ */

static void try_eject(const struct weir_pool *pool, struct weir_server *s, int fails, int outcome)
{
    const struct weir_conf_passive *pc = &pool->conf->passive;
    size_t max = weir_health_max_ejected(pool->set.n, pc->max_ejected_pct);
    size_t ej = count_ejected(pool);

    if (ej >= max) {
        if (fails == pc->consecutive_failures) /* once per failure streak */
            weir_log_warn("pool %s server %s not ejected after %d consecutive failures (%s): %zu of %zu "
                          "servers already ejected, max_ejected_pct %d",
                          pool->name, s->address, fails, outcome_text(outcome), ej, pool->set.n,
                          pc->max_ejected_pct);
        return;
    }
    int level = atomic_load(&s->eject_level) + 1;
    if (level > HEALTH_LEVEL_MAX)
        level = HEALTH_LEVEL_MAX;
    long long ms = weir_health_eject_ms(pc->eject_ms, pc->max_eject_ms, level);
    /* eject_until_ms is published before the state that makes it matter. */
    atomic_store(&s->eject_until_ms, weir_health_now_ms() + ms);
    int expect = WEIR_SRV_UP;
    if (!atomic_compare_exchange_strong(&s->health_state, &expect, WEIR_SRV_EJECTED))
        return; /* another worker ejected it, or a check took it down */
    if (count_ejected(pool) > max) {
        /* Raced with another worker's ejection past the limit: undo ours. */
        expect = WEIR_SRV_EJECTED;
        atomic_compare_exchange_strong(&s->health_state, &expect, WEIR_SRV_UP);
        state_recompute(s);
        return;
    }
    atomic_store(&s->eject_level, level);
    int n = atomic_fetch_add(&s->ejections, 1) + 1;
    state_recompute(s);
    weir_log_warn("pool %s server %s EJECTED for %lld ms after %d consecutive failures: %s (ejection %d)",
                  pool->name, s->address, ms, fails, outcome_text(outcome), n);
}

void weir_health_report(const struct weir_pool *pool, struct weir_server *s, int outcome)
{
    const struct weir_conf_passive *pc = &pool->conf->passive;
    int failed = outcome != WEIR_OUTCOME_OK && !(outcome == WEIR_OUTCOME_5XX && !pc->count_5xx);

    if (!failed) {
        if (atomic_load_explicit(&s->passive_fails, memory_order_relaxed) != 0)
            atomic_store_explicit(&s->passive_fails, 0, memory_order_relaxed);
        return;
    }
    if (!pc->enabled)
        return;
    int fails = atomic_fetch_add(&s->passive_fails, 1) + 1;
    if (fails < pc->consecutive_failures || atomic_load(&s->health_state) != WEIR_SRV_UP)
        return;
    try_eject(pool, s, fails, outcome);
}

int weir_health_pool_all_down(const struct weir_pool *pool)
{
    size_t out = 0;
    for (size_t i = 0; i < pool->set.n; i++) {
        int st = atomic_load_explicit(&pool->set.v[i]->state, memory_order_relaxed);
        if (st == WEIR_SRV_UP)
            return 0;
        out += st == WEIR_SRV_DOWN || st == WEIR_SRV_EJECTED;
    }
    return out > 0;
}

/* ------------------------------------------------------------------ */
/* control thread                                                       */
/* ------------------------------------------------------------------ */

static void ramp_begin(struct weir_hsrv *h, long long now)
{
    if (h->pool == NULL || h->pool->conf->slow_start_ms <= 0)
        return;
    atomic_store(&h->s->ramp_permille, 0);
    h->ramping = 1;
    h->ramp_start_ms = now;
    weir_log_info("pool %s server %s slow start: full weight in %d ms", h->pool->name, h->s->address,
                  h->pool->conf->slow_start_ms);
}

/* A server came back up on the control thread's watch. */
static void came_up(struct weir_hsrv *h, long long now)
{
    atomic_store(&h->s->passive_fails, 0);
    h->level_since_ms = now;
    ramp_begin(h, now);
}

void weir_health_check_done(struct weir_hsrv *h, int passed, int status, const char *detail, double ms)
{
    struct weir_server *s = h->s;
    const struct weir_conf_health *hc = &h->pool->conf->health;

    h->last_ok = passed;
    h->last_status = status;
    h->last_ms = ms;
    h->last_at_ms = wall_ms();
    snprintf(h->last_detail, sizeof(h->last_detail), "%s", detail);
    weir_health_count(&h->counts, passed);
    weir_log_debug("pool %s server %s check %s in %.1f ms: %s", h->pool->name, s->address,
                   passed ? "passed" : "failed", ms, detail);

    for (;;) {
        int old = atomic_load(&s->health_state);
        int nw = weir_health_next_state(old, &h->counts, passed, hc->rise, hc->fall);
        if (nw == old)
            return;
        if (!atomic_compare_exchange_strong(&s->health_state, &old, nw))
            continue; /* a worker ejected it meanwhile: judge again */
        state_recompute(s);
        if (nw == WEIR_SRV_UP) {
            weir_log_info("pool %s server %s UP after %d passed checks: %s", h->pool->name, s->address,
                          h->counts.ok_streak, detail);
            came_up(h, weir_health_now_ms());
        } else if (old == WEIR_SRV_EJECTED) {
            weir_log_warn("pool %s server %s DOWN (was ejected) after a failed check: %s", h->pool->name,
                          s->address, detail);
        } else {
            weir_log_warn("pool %s server %s DOWN after %d failed checks: %s", h->pool->name, s->address,
                          h->counts.fail_streak, detail);
        }
        return;
    }
}

/* Ejection over, slow start, level decay for one server. */
static void tick_server(struct weir_hsrv *h, long long now)
{
    struct weir_server *s = h->s;
    const struct weir_conf_pool *cp = h->pool->conf;
    int hs = atomic_load(&s->health_state);

    if (hs == WEIR_SRV_EJECTED && now >= atomic_load(&s->eject_until_ms)) {
        int expect = WEIR_SRV_EJECTED;
        if (atomic_compare_exchange_strong(&s->health_state, &expect, WEIR_SRV_UP)) {
            state_recompute(s);
            weir_log_info("pool %s server %s re-admitted after its ejection (ejection %d)", h->pool->name,
                          s->address, atomic_load(&s->ejections));
            came_up(h, now);
            hs = WEIR_SRV_UP;
        }
    }
    if (hs != WEIR_SRV_UP) {
        h->level_since_ms = now;
    } else if (atomic_load(&s->eject_level) > 0 && now - h->level_since_ms >= cp->passive.max_eject_ms) {
        atomic_fetch_sub(&s->eject_level, 1);
        h->level_since_ms = now;
    }
    if (h->ramping) {
        int r = weir_health_ramp(now - h->ramp_start_ms, cp->slow_start_ms);
        atomic_store(&s->ramp_permille, r);
        if (r >= 1000) {
            h->ramping = 0;
            weir_log_info("pool %s server %s slow start done", h->pool->name, s->address);
        }
    }
}

static struct hpool *hpool_get(const char *name)
{
    for (struct hpool *p = G.pools; p != NULL; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    struct hpool *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name)) == NULL) {
        free(p);
        return NULL;
    }
    p->next = G.pools;
    G.pools = p;
    return p;
}

/* Log once when a pool enters or leaves the "every server down" state. */
static void tick_pools(void)
{
    for (size_t i = 0; G.rt != NULL && i < G.rt->npools; i++) {
        struct weir_pool *pool = &G.rt->pools[i];
        struct hpool *hp = hpool_get(pool->name);
        if (hp == NULL)
            continue;
        int down = weir_health_pool_all_down(pool);
        if (down == hp->all_down)
            continue;
        hp->all_down = down;
        size_t up = 0;
        for (size_t j = 0; j < pool->set.n; j++)
            up += weir_server_available(pool->set.v[j]);
        if (down && pool->conf->panic)
            weir_log_warn("pool %s: every server is down, entering panic mode (requests go to all of them)",
                          pool->name);
        else if (down)
            weir_log_warn("pool %s: every server is down and panic mode is off: requests get 503",
                          pool->name);
        else if (pool->conf->panic)
            weir_log_warn("pool %s: leaving panic mode, %zu of %zu servers up", pool->name, up, pool->set.n);
        else
            weir_log_info("pool %s: %zu of %zu servers up again", pool->name, up, pool->set.n);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    long long now = weir_health_now_ms();
    (void)fd, (void)what, (void)arg;
    for (struct weir_hsrv *h = G.list; h != NULL; h = h->next)
        tick_server(h, now);
    tick_pools();
}

int weir_health_start(struct event_base *control_base)
{
    static const struct timeval tv = {0, HEALTH_TICK_MS * 1000};
    if (G.base != NULL)
        return 0;
    G.tick = event_new(control_base, -1, EV_PERSIST, tick_cb, NULL);
    if (G.tick == NULL || event_add(G.tick, &tv) != 0) {
        if (G.tick != NULL)
            event_free(G.tick);
        G.tick = NULL;
        return -1;
    }
    G.base = control_base;
    return 0;
}

static void hsrv_free(struct weir_hsrv *h)
{
    weir_hcheck_stop(h);
    h->s->health = NULL;
    weir_server_release(h->s);
    free(h);
}

void weir_health_sync(const struct weir_rt *crt)
{
    struct weir_rt *rt = (struct weir_rt *)crt; /* retained below, never changed */
    long long now = weir_health_now_ms();

    if (G.base == NULL || rt == NULL)
        return;
    for (struct weir_hsrv *h = G.list; h != NULL; h = h->next)
        h->seen = 0;
    for (size_t i = 0; i < rt->npools; i++) {
        struct weir_pool *pool = &rt->pools[i];
        for (size_t j = 0; j < pool->set.n; j++) {
            struct weir_server *s = pool->set.v[j];
            struct weir_hsrv *h = s->health;
            if (h == NULL) {
                h = calloc(1, sizeof(*h));
                if (h == NULL) {
                    weir_log_error("pool %s server %s: out of memory, not health-checked", pool->name,
                                   s->address);
                    continue;
                }
                weir_server_retain(s);
                h->s = s;
                h->level_since_ms = now;
                snprintf(h->last_detail, sizeof(h->last_detail), "not checked yet");
                h->next = G.list;
                G.list = h;
                s->health = h;
            }
            h->seen = 1;
            int added = h->pool == NULL && G.rt != NULL; /* added by a reload */
            h->pool = pool;
            if (added)
                ramp_begin(h, now);
            int was_checked = h->check != NULL;
            if (weir_hcheck_apply(h, G.base) != 0)
                weir_log_error("pool %s server %s: cannot start health checks", pool->name, s->address);
            if (was_checked && h->check == NULL) {
                /* Nothing will bring a server down by checks back: trust it. */
                int expect = WEIR_SRV_DOWN;
                if (atomic_compare_exchange_strong(&s->health_state, &expect, WEIR_SRV_UP)) {
                    state_recompute(s);
                    weir_log_info("pool %s server %s UP: health checks removed from the configuration",
                                  pool->name, s->address);
                    came_up(h, now);
                }
                h->counts.ok_streak = h->counts.fail_streak = 0;
            }
            if (h->ramping && pool->conf->slow_start_ms <= 0) {
                h->ramping = 0;
                atomic_store(&s->ramp_permille, 1000);
            }
        }
    }
    struct weir_hsrv **pp = &G.list;
    while (*pp != NULL) {
        struct weir_hsrv *h = *pp;
        if (h->seen) {
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        hsrv_free(h);
    }
    struct hpool **hp = &G.pools;
    while (*hp != NULL) { /* forget pools that are gone */
        struct hpool *p = *hp;
        size_t i = 0;
        while (i < rt->npools && strcmp(rt->pools[i].name, p->name) != 0)
            i++;
        if (i < rt->npools) {
            hp = &p->next;
            continue;
        }
        *hp = p->next;
        free(p->name);
        free(p);
    }
    weir_rt_retain(rt);
    struct weir_rt *old = G.rt;
    G.rt = rt;
    weir_rt_release(old);
}

void weir_health_stop(void)
{
    while (G.list != NULL) {
        struct weir_hsrv *h = G.list;
        G.list = h->next;
        hsrv_free(h);
    }
    while (G.pools != NULL) {
        struct hpool *p = G.pools;
        G.pools = p->next;
        free(p->name);
        free(p);
    }
    if (G.tick != NULL)
        event_free(G.tick);
    weir_rt_release(G.rt);
    memset(&G, 0, sizeof(G));
}

static const char *admin_name(int a)
{
    return a == WEIR_ADMIN_DRAIN ? "drain" : a == WEIR_ADMIN_MAINT ? "maint" : "ready";
}

int weir_health_set_admin(struct weir_server *s, int admin_state, const char *pool_name)
{
    if (admin_state != WEIR_ADMIN_READY && admin_state != WEIR_ADMIN_DRAIN && admin_state != WEIR_ADMIN_MAINT)
        return -1;
    int old = atomic_exchange(&s->admin_state, admin_state);
    if (old == admin_state)
        return 0;
    state_recompute(s);
    int st = atomic_load(&s->state);
    switch (admin_state) {
    case WEIR_ADMIN_DRAIN:
        weir_log_info("pool %s server %s DRAINING (admin): no new requests, %ld in flight finish",
                      pool_name ? pool_name : "?", s->address, weir_server_active(s));
        break;
    case WEIR_ADMIN_MAINT:
        weir_log_info("pool %s server %s MAINT (admin): out of service", pool_name ? pool_name : "?",
                      s->address);
        break;
    default:
        weir_log_info("pool %s server %s READY (admin, was %s): state %s", pool_name ? pool_name : "?",
                      s->address, admin_name(old), weir_server_state_name(st));
        /* Back from maintenance: ramp up like any server coming back. */
        if (old == WEIR_ADMIN_MAINT && st == WEIR_SRV_UP && s->health != NULL)
            ramp_begin(s->health, weir_health_now_ms());
        break;
    }
    return 0;
}

int weir_health_view(const struct weir_server *s, struct weir_health_view *out)
{
    const struct weir_hsrv *h = s->health;

    memset(out, 0, sizeof(*out));
    out->health_state = atomic_load(&s->health_state);
    out->admin_state = atomic_load(&s->admin_state);
    out->ejections = atomic_load(&s->ejections);
    out->ramp_permille = atomic_load(&s->ramp_permille);
    if (h == NULL || h->check == NULL) {
        snprintf(out->last_detail, sizeof(out->last_detail), "not checked");
        return -1;
    }
    out->checked = 1;
    out->last_ok = h->last_ok;
    out->last_status = h->last_status;
    out->last_ms = h->last_ms;
    out->last_at_ms = h->last_at_ms;
    snprintf(out->last_detail, sizeof(out->last_detail), "%s", h->last_detail);
    return 0;
}
