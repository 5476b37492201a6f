/*
 * autoscaler.c - the autoscale engine on the control thread (see
 * autoscaler.h): samples, rule and alert evaluation, actions, hooks,
 * decision records.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

#include "weir/autoscale.h"
#include "weir/autoscale_metrics.h"
#include "weir/autoscaler.h"
#include "weir/conf_autoscale.h"
#include "weir/conf_edit.h"
#include "weir/health.h"
#include "weir/history.h"
#include "weir/hook.h"
#include "weir/lease.h"
#include "weir/log.h"
#include "weir/pool_edit.h"
#include "weir/runtime.h"
#include "weir/server.h"
#include "weir/stats.h"

#define MAX_RECORDS   1000
#define VALUES_KEPT   256 /* per rule: the values shown for a breach's for window */
#define DRAIN_POLL_MS 100

enum rule_alert { RA_AT_MAX = 0, RA_NOT_CAPACITY_BOUND, RA_HOOK_FAILED, RA_N };
static const char *const rule_alert_names[RA_N] = {"at_max", "not_capacity_bound", "hook_failed"};

/* A server of a watched pool as the engine knows it. */
struct known {
    unsigned id;
    int64_t first_seen_ms;
    long long first_seen_wall_ms;
    uint64_t base_requests, base_errors;
    int verified;
    int seen; /* mark for the sweep */
};

struct pool_track {
    char *name;
    struct weir_as_series *series;
    struct known *known;
    size_t nknown, capknown;
    struct action *act; /* the pool's action in flight, or NULL */
    int seen;
    LIST_ENTRY(pool_track) link;
};

enum phase { PH_UP_HOOK = 0, PH_UP_VERIFY, PH_DOWN_DRAIN, PH_DOWN_HOOK };

struct action {
    char *rule, *pool;
    int dir;
    int phase;
    int desired, before;
    long long id;
    int64_t started_ms, drain_started_ms, drain_ms, warmup_ms;
    unsigned *before_ids;
    size_t nbefore;
    char *server; /* scale-down: the chosen server's address */
    unsigned server_id;
    int quiet_polls; /* consecutive drain polls with nothing in flight */
    json_t *record;  /* the decision record (borrowed from the ring, retained) */
    char *hook;      /* NULL: no hook for this direction */
    int hook_ok;     /* scale-up hook finished well (or none) */
};

struct rule_rt {
    char *name;
    const struct weir_conf_as_rule *conf; /* in M.rt's conf */
    struct weir_as_rule_state st;
    struct weir_as_verdict last;
    int has_value;
    double value;
    struct weir_as_window win;
    struct {
        int64_t t;
        double v;
        int has;
    } values[VALUES_KEPT];
    size_t nvalues, vhead;
    struct weir_as_alert_state ra[RA_N];
    int failed;                      /* the last action failed (hook_failed stays firing) */
    uint64_t counts[2 + WEIR_ASR_N]; /* [0] scale_up, [1] scale_down, [2 + reason] skips */
    uint64_t failures;
    int seen;
    LIST_ENTRY(rule_rt) link;
};

struct alert_rt {
    char *name;
    const struct weir_conf_as_alert *conf;
    struct weir_as_alert_def def;
    struct weir_as_alert_state st;
    int has_value;
    int seen;
    LIST_ENTRY(alert_rt) link;
};

static struct {
    struct event_base *base;
    struct event *tick, *drain_poll;
    int interval_ms;
    struct weir_rt *rt; /* retained: the snapshot the conf pointers point into */
    LIST_HEAD(, pool_track) pools;
    LIST_HEAD(, rule_rt) rules;
    LIST_HEAD(, alert_rt) alerts;
    json_t *records; /* array, oldest first, at most MAX_RECORDS */
    long long next_id;
    long long start_wall_s;
    struct weir_hist *scratch;
    int started;
} M;

/* ---- small helpers ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    return (int64_t)(weir_now_us() / 1000);
}

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static const struct weir_pool *rt_pool(const struct weir_rt *rt, const char *name)
{
    for (size_t i = 0; rt != NULL && i < rt->npools; i++)
        if (strcmp(rt->pools[i].name, name) == 0)
            return &rt->pools[i];
    return NULL;
}

static struct weir_server *pool_server_by_id(const struct weir_pool *p, unsigned id)
{
    for (size_t i = 0; p != NULL && i < p->set.n; i++)
        if (p->set.v[i]->id == id)
            return p->set.v[i];
    return NULL;
}

static void server_counts(const struct weir_server *s, uint64_t *req, uint64_t *err)
{
    struct weir_stats_counters c;
    weir_stats_read_counters(s->stats, weir_stats_now_s(), &c);
    *req = c.requests;
    *err = c.responses[WEIR_CLASS_5XX] + c.responses[WEIR_CLASS_OTHER];
}

static double json_num(double v)
{
    return isfinite(v) ? round(v * 1000.0) / 1000.0 : 0;
}

/* ---- decision records ----------------------------------------------------- */

static json_t *record_new(const char *rule, const char *pool, const char *metric)
{
    json_t *r = json_pack("{s:I,s:I,s:s,s:s,s:s}", "id", (json_int_t)M.next_id, "time_ms",
                          (json_int_t)wall_ms(), "rule", rule, "pool", pool, "metric", metric);
    M.next_id++;
    if (r == NULL)
        return NULL;
    if (json_array_size(M.records) >= MAX_RECORDS)
        json_array_remove(M.records, 0);
    json_array_append(M.records, r); /* the ring holds one reference, the caller the other */
    return r;
}

static void decision_id(long long id, char *buf, size_t size)
{
    snprintf(buf, size, "%lld-%lld", M.start_wall_s, id);
}

/* The values of the breach's for window, oldest first. */
static json_t *values_since(const struct rule_rt *r, int64_t since)
{
    json_t *a = json_array();
    for (size_t k = 0; a != NULL && k < r->nvalues; k++) {
        size_t i = (r->vhead + VALUES_KEPT - r->nvalues + k) % VALUES_KEPT;
        if (r->values[i].t < since)
            continue;
        json_array_append_new(a, r->values[i].has ? json_real(json_num(r->values[i].v)) : json_null());
    }
    return a;
}

/* ---- pools ------------------------------------------------------------------ */

static struct pool_track *pool_get(const char *name, int create)
{
    struct pool_track *p;
    LIST_FOREACH(p, &M.pools, link)
    {
        if (strcmp(p->name, name) == 0)
            return p;
    }
    if (!create)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name)) == NULL || (p->series = weir_as_series_new(2)) == NULL) {
        if (p != NULL) {
            free(p->name);
            free(p);
        }
        return NULL;
    }
    LIST_INSERT_HEAD(&M.pools, p, link);
    return p;
}

static struct known *known_find(struct pool_track *pt, unsigned id)
{
    for (size_t i = 0; i < pt->nknown; i++)
        if (pt->known[i].id == id)
            return &pt->known[i];
    return NULL;
}

/* Track the pool's servers: new ones start unverified (except on the first
 * sample: the servers weir started with are the baseline); verify them. */
static void pool_servers(struct pool_track *pt, const struct weir_pool *p, int first, int64_t t)
{
    for (size_t i = 0; i < pt->nknown; i++)
        pt->known[i].seen = 0;
    for (size_t i = 0; i < p->set.n; i++) {
        struct weir_server *s = p->set.v[i];
        struct known *k = known_find(pt, s->id);
        if (k == NULL) {
            if (pt->nknown == pt->capknown) {
                size_t cap = pt->capknown ? pt->capknown * 2 : 8;
                struct known *v = realloc(pt->known, cap * sizeof(*v));
                if (v == NULL)
                    continue;
                pt->known = v;
                pt->capknown = cap;
            }
            k = &pt->known[pt->nknown++];
            memset(k, 0, sizeof(*k));
            k->id = s->id;
            k->first_seen_ms = t;
            k->first_seen_wall_ms = wall_ms();
            server_counts(s, &k->base_requests, &k->base_errors);
            k->verified = first;
        }
        k->seen = 1;
        if (!k->verified) {
            struct weir_health_view hv;
            int checked = weir_health_view(s, &hv) == 0 && hv.checked;
            if (checked) {
                k->verified =
                    hv.health_state == WEIR_SRV_UP && hv.last_ok && hv.last_at_ms >= k->first_seen_wall_ms;
            } else {
                uint64_t rq, er;
                server_counts(s, &rq, &er);
                k->verified = rq > k->base_requests && er == k->base_errors;
                if (er != k->base_errors) { /* failed answers restart the proof */
                    k->base_requests = rq;
                    k->base_errors = er;
                }
            }
            if (k->verified)
                weir_log_info("autoscale: pool '%s' server %s verified (%s) %lld ms after it appeared",
                              p->name, s->address,
                              checked ? "passed its health check" : "answered without error",
                              (long long)(t - k->first_seen_ms));
        }
    }
    for (size_t i = 0; i < pt->nknown;) {
        if (!pt->known[i].seen)
            pt->known[i] = pt->known[--pt->nknown];
        else
            i++;
    }
}

/* Why the pool may not scale down now: 0, UNVERIFIED or UNHEALTHY. */
static int pool_unsettled(struct pool_track *pt, const struct weir_pool *p)
{
    int unhealthy = 0, unverified = 0;
    for (size_t i = 0; i < p->set.n; i++) {
        const struct weir_server *s = p->set.v[i];
        struct known *k = known_find(pt, s->id);
        if (atomic_load(&s->state) != WEIR_SRV_UP)
            unhealthy = 1;
        else if (k != NULL && !k->verified)
            unverified = 1;
    }
    return unhealthy ? WEIR_ASR_UNHEALTHY : unverified ? WEIR_ASR_UNVERIFIED : 0;
}

/* ---- hooks ------------------------------------------------------------------ */

struct env {
    char *v[24];
    int n;
};

static void env_add(struct env *e, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_add(struct env *e, const char *name, const char *fmt, ...)
{
    char val[1024];
    va_list ap;
    char *s;

    if (e->n >= (int)WEIR_ARRAY_LEN(e->v) - 1)
        return;
    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    if (asprintf(&s, "%s=%s", name, val) >= 0)
        e->v[e->n++] = s;
    e->v[e->n] = NULL;
}

static void env_free(struct env *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->v[i]);
}

static void env_admin(struct env *e)
{
    const struct weir_conf *c = M.rt ? M.rt->conf : NULL;
    if (c == NULL || !c->admin.enabled)
        return;
    const char *a = c->admin.addr.text;
    if (strncmp(a, "*:", 2) == 0)
        env_add(e, "WEIR_ADMIN_URL", "http://127.0.0.1:%s", a + 2);
    else
        env_add(e, "WEIR_ADMIN_URL", "http://%s", a);
    if (c->admin.token != NULL)
        env_add(e, "WEIR_ADMIN_TOKEN", "%s", c->admin.token);
}

static json_t *window_json(const struct weir_as_window *w)
{
    json_t *o = json_object();
    for (int m = 0; o != NULL && m < WEIR_ASM_N; m++) {
        double v;
        json_object_set_new(o, weir_as_metric_name(m),
                            weir_as_window_value(w, m, &v) ? json_real(json_num(v)) : json_null());
    }
    if (o != NULL)
        json_object_set_new(o, "requests", json_integer((json_int_t)w->requests));
    return o;
}

static void hook_result_json(json_t *rec, const char *path, const struct weir_hook_result *r, int timeout_ms)
{
    char why[160];
    json_t *h = json_pack("{s:s,s:s,s:b,s:f,s:s}", "path", path, "status",
                          weir_hook_describe(r, timeout_ms, why, sizeof(why)), "ok", weir_hook_ok(r),
                          "duration_ms", json_num(r->duration_ms), "output", r->output);
    if (h != NULL) {
        if (r->exited)
            json_object_set_new(h, "exit_code", json_integer(r->exit_status));
        json_object_set_new(h, "pid", json_integer(r->pid));
    }
    json_object_set_new(rec, "hook", h);
}

/* ---- actions ---------------------------------------------------------------- */

static void action_free(struct action *a)
{
    if (a == NULL)
        return;
    free(a->rule);
    free(a->pool);
    free(a->before_ids);
    free(a->server);
    free(a->hook);
    json_decref(a->record);
    free(a);
}

static struct rule_rt *rule_find(const char *name)
{
    struct rule_rt *r;
    LIST_FOREACH(r, &M.rules, link)
    {
        if (strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

/* End the pool's action: ok starts the cooldown; a failure fires the rule's
 * hook_failed alert. */
static void action_end(struct pool_track *pt, int ok, const char *why)
{
    struct action *a = pt->act;
    struct rule_rt *r = rule_find(a->rule);
    int64_t t = now_ms();
    struct weir_rt *rt = weir_rt_current();
    const struct weir_pool *p = rt_pool(rt, a->pool);
    int after = p ? (int)p->set.n : -1;

    weir_rt_release(rt);
    json_object_set_new(a->record, "result", json_string(ok ? "completed" : "failed"));
    json_object_set_new(a->record, "result_detail", json_string(why));
    json_object_set_new(a->record, "servers_after", json_integer(after));
    json_object_set_new(a->record, "duration_ms", json_integer((json_int_t)(t - a->started_ms)));
    if (r != NULL && r->conf != NULL) {
        weir_as_rule_done(r->conf, &r->st, a->dir, ok, t);
        r->failed = !ok;
        if (!ok)
            r->failures++;
    }
    if (ok)
        weir_log_info("autoscale: rule '%s' pool '%s': %s decision %lld completed: %s; %d -> %d servers%s",
                      a->rule, a->pool, a->dir == WEIR_AS_UP ? "scale_up" : "scale_down", a->id, why,
                      a->before, after, r && r->conf ? "; cooldown started" : "");
    else
        weir_log_error(
            "autoscale: rule '%s' pool '%s': %s decision %lld failed (hook_failed): %s; %d -> %d servers, "
            "no cooldown",
            a->rule, a->pool, a->dir == WEIR_AS_UP ? "scale_up" : "scale_down", a->id, why, a->before, after);
    pt->act = NULL;
    action_free(a);
}

static struct pool_track *action_pool(const struct action *a)
{
    struct pool_track *pt = pool_get(a->pool, 0);
    return pt != NULL && pt->act == a ? pt : NULL;
}

static void up_hook_done(void *arg, const struct weir_hook_result *res)
{
    struct action *a = arg;
    struct pool_track *pt = action_pool(a);
    int timeout = M.rt ? M.rt->conf->autoscale.hook_timeout_ms : 0;
    char why[200];

    if (pt == NULL || res->cancelled) /* stopping: the action is freed with its pool */
        return;
    hook_result_json(a->record, a->hook, res, timeout);
    weir_log_info("autoscale: rule '%s' scale_up hook %s: %s after %.0f ms", a->rule, a->hook,
                  weir_hook_describe(res, timeout, why, sizeof(why)), res->duration_ms);
    if (!weir_hook_ok(res)) {
        char d[240];
        snprintf(d, sizeof(d), "scale_up hook %s", why);
        action_end(pt, 0, d);
        return;
    }
    a->phase = PH_UP_VERIFY;
}

static void down_hook_done(void *arg, const struct weir_hook_result *res)
{
    struct action *a = arg;
    struct pool_track *pt = action_pool(a);
    int timeout = M.rt ? M.rt->conf->autoscale.hook_timeout_ms : 0;
    char why[200], d[300];

    if (pt == NULL || res->cancelled) /* stopping: the action is freed with its pool */
        return;
    hook_result_json(a->record, a->hook, res, timeout);
    weir_hook_describe(res, timeout, why, sizeof(why));
    if (!weir_hook_ok(res)) {
        struct weir_rt *rt = weir_rt_current();
        struct weir_server *s = pool_server_by_id(rt_pool(rt, a->pool), a->server_id);
        if (s != NULL)
            weir_pool_edit_set_admin(s, WEIR_ADMIN_READY, a->pool);
        weir_rt_release(rt);
        snprintf(d, sizeof(d), "scale_down hook %s; server %s set ready again", why, a->server);
        action_end(pt, 0, d);
        return;
    }
    if (weir_pool_edit_remove(a->pool, a->server) != 0) {
        snprintf(d, sizeof(d), "scale_down hook %s but server %s could not be removed (gone already?)", why,
                 a->server);
        action_end(pt, 0, d);
        return;
    }
    snprintf(d, sizeof(d), "server %s drained, hook %s, removed", a->server, why);
    action_end(pt, 1, d);
}

/* Build and start the scale hook of action a. 0, or -1 (action failed). */
static int start_scale_hook(struct action *a, const struct rule_rt *r, weir_hook_done_fn cb)
{
    struct env e = {.n = 0};
    char did[64];
    const struct weir_conf_autoscale *ac = &M.rt->conf->autoscale;
    int timeout = ac->hook_timeout_ms;
    const char *ev = a->dir == WEIR_AS_UP ? "scale_up" : "scale_down";

    decision_id(a->id, did, sizeof(did));
    env_add(&e, "WEIR_EVENT", "%s", ev);
    env_add(&e, "WEIR_RULE", "%s", a->rule);
    env_add(&e, "WEIR_POOL", "%s", a->pool);
    env_add(&e, "WEIR_METRIC", "%s", weir_as_metric_name(r->conf->metric));
    env_add(&e, "WEIR_VALUE", "%.3f", r->has_value ? r->value : 0.0);
    env_add(&e, "WEIR_THRESHOLD", "%.3f", r->last.threshold);
    env_add(&e, "WEIR_SERVERS", "%d", a->before);
    env_add(&e, "WEIR_DESIRED", "%d", a->desired);
    env_add(&e, "WEIR_DECISION_ID", "%s", did);
    if (a->server != NULL)
        env_add(&e, "WEIR_SERVER", "%s", a->server);
    env_admin(&e);
    json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:i,s:i,s:s,s:s*,s:o}", "event", ev, "rule", a->rule,
                           "pool", a->pool, "metric", weir_as_metric_name(r->conf->metric), "value",
                           json_num(r->has_value ? r->value : 0.0), "threshold", json_num(r->last.threshold),
                           "servers", a->before, "desired", a->desired, "decision_id", did, "server",
                           a->server, "window", window_json(&r->win));
    char *doc = in ? json_dumps(in, JSON_COMPACT) : NULL;
    json_decref(in);
    if (doc != NULL) {
        size_t n = strlen(doc);
        doc = realloc(doc, n + 2);
        if (doc != NULL)
            strcpy(doc + n, "\n");
    }
    pid_t pid = 0;
    int rc = weir_hook_run(a->hook, e.v, doc, doc ? strlen(doc) : 0, timeout, cb, a, &pid);
    free(doc);
    env_free(&e);
    if (rc != 0) {
        struct weir_hook_result res;
        memset(&res, 0, sizeof(res));
        res.spawn_errno = errno;
        hook_result_json(a->record, a->hook, &res, timeout);
        return -1;
    }
    json_object_set_new(a->record, "hook",
                        json_pack("{s:s,s:s,s:i}", "path", a->hook, "status", "running", "pid", (int)pid));
    weir_log_info("autoscale: rule '%s' pool '%s': %s hook %s started (pid %d, decision %s)", a->rule,
                  a->pool, ev, a->hook, (int)pid, did);
    return 0;
}

/* Choose the server to remove: available, fewest in flight, then the most
 * recently added (highest id). */
static struct weir_server *pick_victim(const struct weir_pool *p)
{
    struct weir_server *best = NULL;
    for (size_t i = 0; i < p->set.n; i++) {
        struct weir_server *s = p->set.v[i];
        if (atomic_load(&s->state) != WEIR_SRV_UP)
            continue;
        if (best == NULL || weir_server_active(s) < weir_server_active(best) ||
            (weir_server_active(s) == weir_server_active(best) && s->id > best->id))
            best = s;
    }
    return best;
}

static void drain_poll_arm(void)
{
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    if (M.drain_poll != NULL && !evtimer_pending(M.drain_poll, NULL))
        evtimer_add(M.drain_poll, &tv);
}

/* Start the action of verdict v for rule r on pool p. */
static void action_start(struct rule_rt *r, struct pool_track *pt, const struct weir_pool *p, json_t *rec)
{
    const struct weir_as_verdict *v = &r->last;
    struct action *a = calloc(1, sizeof(*a));
    const struct weir_conf_as_step *step = v->dir == WEIR_AS_UP ? &r->conf->up : &r->conf->down;

    if (a == NULL || (a->rule = strdup(r->name)) == NULL || (a->pool = strdup(p->name)) == NULL ||
        (step->hook != NULL && (a->hook = strdup(step->hook)) == NULL)) {
        action_free(a);
        weir_log_error("autoscale: out of memory starting an action of rule '%s'", r->name);
        return;
    }
    a->dir = v->dir;
    a->desired = v->desired;
    a->before = (int)p->set.n;
    a->id = json_integer_value(json_object_get(rec, "id"));
    a->started_ms = now_ms();
    a->warmup_ms = r->conf->warmup_ms;
    a->drain_ms = r->conf->drain_ms;
    a->record = json_incref(rec);
    json_object_set_new(rec, "result", json_string("in_progress"));
    pt->act = a;
    if (a->dir == WEIR_AS_UP) {
        a->before_ids = calloc(p->set.n ? p->set.n : 1, sizeof(*a->before_ids));
        for (size_t i = 0; a->before_ids != NULL && i < p->set.n; i++)
            a->before_ids[a->nbefore++] = p->set.v[i]->id;
        a->phase = PH_UP_VERIFY;
        a->hook_ok = 1;
        if (a->hook != NULL) {
            a->phase = PH_UP_HOOK;
            if (start_scale_hook(a, r, up_hook_done) != 0)
                action_end(pt, 0, "scale_up hook could not be started");
        }
        return;
    }
    struct weir_server *s = pick_victim(p);
    if (s == NULL || (a->server = strdup(s->address)) == NULL) {
        action_end(pt, 0, "no available server to remove");
        return;
    }
    a->server_id = s->id;
    json_object_set_new(rec, "server", json_string(s->address));
    a->phase = PH_DOWN_DRAIN;
    a->drain_started_ms = now_ms();
    weir_pool_edit_set_admin(s, WEIR_ADMIN_DRAIN, p->name);
    weir_log_info("autoscale: rule '%s' pool '%s': draining server %s (%ld in flight, up to %lld ms)",
                  r->name, p->name, s->address, weir_server_active(s), (long long)a->drain_ms);
    drain_poll_arm();
}

/* Move an action forward (called every tick and every drain poll). */
static void action_progress(struct pool_track *pt, const struct weir_pool *p)
{
    struct action *a = pt->act;
    int64_t t = now_ms();

    if (a == NULL)
        return;
    if (a->dir == WEIR_AS_UP) {
        if (a->phase == PH_UP_HOOK)
            return; /* the hook's completion moves it on */
        int wanted = a->desired - a->before, verified = 0, fresh = 0;
        for (size_t i = 0; p != NULL && i < p->set.n; i++) {
            unsigned id = p->set.v[i]->id;
            int old = 0;
            for (size_t j = 0; j < a->nbefore && !old; j++)
                old = a->before_ids[j] == id;
            if (old)
                continue;
            fresh++;
            struct known *k = known_find(pt, id);
            verified += k != NULL && k->verified;
        }
        if (wanted < 1)
            wanted = 1;
        if (verified >= wanted) {
            char d[160];
            snprintf(d, sizeof(d), "%d new server(s) verified %lld ms after the decision", verified,
                     (long long)(t - a->started_ms));
            json_object_set_new(a->record, "verified_ms", json_integer((json_int_t)(t - a->started_ms)));
            action_end(pt, 1, d);
        } else if (t - a->started_ms >= a->warmup_ms) {
            char d[200];
            snprintf(
                d, sizeof(d),
                "unverified: %d of %d new server(s) proved themselves within warmup_ms %lld (%d appeared)",
                verified, wanted, (long long)a->warmup_ms, fresh);
            action_end(pt, 0, d);
        }
        return;
    }
    if (a->phase != PH_DOWN_DRAIN)
        return;
    struct weir_server *s = pool_server_by_id(p, a->server_id);
    if (s == NULL) {
        action_end(pt, 0, "the server left the pool while draining (reload or runtime API)");
        return;
    }
    /* Two quiet polls in a row: a pick made just before the drain flag was
     * set has had time to show in the active count. */
    a->quiet_polls = weir_server_active(s) == 0 ? a->quiet_polls + 1 : 0;
    int timed_out = t - a->drain_started_ms >= a->drain_ms;
    if (a->quiet_polls < 2 && !timed_out) {
        drain_poll_arm();
        return;
    }
    json_object_set_new(a->record, "drain_ms", json_integer((json_int_t)(t - a->drain_started_ms)));
    if (timed_out && a->quiet_polls < 2)
        weir_log_warn("autoscale: pool '%s' server %s still has %ld request(s) in flight after drain_ms %lld",
                      a->pool, a->server, weir_server_active(s), (long long)a->drain_ms);
    a->phase = PH_DOWN_HOOK;
    if (a->hook == NULL) {
        struct weir_hook_result res;
        memset(&res, 0, sizeof(res));
        res.exited = 1; /* no hook: weir removes the server itself */
        down_hook_done(a, &res);
        return;
    }
    struct rule_rt *r = rule_find(a->rule);
    if (r == NULL || r->conf == NULL || start_scale_hook(a, r, down_hook_done) != 0) {
        weir_pool_edit_set_admin(s, WEIR_ADMIN_READY, a->pool);
        action_end(pt, 0, "scale_down hook could not be started; server set ready again");
    }
}

static void drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_rt *rt = weir_rt_current();
    struct pool_track *pt, *next;

    for (pt = LIST_FIRST(&M.pools); pt != NULL; pt = next) {
        next = LIST_NEXT(pt, link);
        if (pt->act != NULL && pt->act->phase == PH_DOWN_DRAIN)
            action_progress(pt, rt_pool(rt, pt->name));
    }
    weir_rt_release(rt);
}

/* ---- alerts ------------------------------------------------------------------ */

struct alert_hook_ctx {
    json_t *record;
    char *path;
};

static void alert_hook_done(void *arg, const struct weir_hook_result *res)
{
    struct alert_hook_ctx *c = arg;
    int timeout = M.rt ? M.rt->conf->autoscale.hook_timeout_ms : 0;
    char why[200];

    hook_result_json(c->record, c->path, res, timeout);
    if (!weir_hook_ok(res) && !res->cancelled)
        weir_log_warn("autoscale: alert hook %s: %s", c->path,
                      weir_hook_describe(res, timeout, why, sizeof(why)));
    json_decref(c->record);
    free(c->path);
    free(c);
}

/* Record, log and hook one alert transition. name is the alert's name
 * ("rule:at_max" for a rule's own alerts). */
static void alert_event(const char *name, const char *rule, const char *pool, int metric, int ev,
                        const struct weir_as_alert_state *st, double threshold, const char *hook,
                        const char *detail)
{
    const char *event = ev == WEIR_AEV_FIRING     ? "alert_firing"
                        : ev == WEIR_AEV_RESOLVED ? "alert_resolved"
                        : ev == WEIR_AEV_PENDING  ? "alert_pending"
                                                  : "alert_cancelled";
    const char *sev = weir_alert_sev_name(st->severity);
    int lvl = ev == WEIR_AEV_FIRING ? WEIR_LOG_WARN : WEIR_LOG_INFO;

    weir_log(lvl, "autoscale: alert '%s' pool '%s' %s (severity %s): %s %.3f, threshold %.3f%s%s", name, pool,
             event + 6, sev, weir_as_metric_name(metric), st->value, threshold, detail ? "; " : "",
             detail ? detail : "");
    if (ev != WEIR_AEV_FIRING && ev != WEIR_AEV_RESOLVED)
        return;
    json_t *rec = record_new(rule ? rule : name, pool, weir_as_metric_name(metric));
    if (rec == NULL)
        return;
    json_object_set_new(rec, "action", json_string(event));
    json_object_set_new(rec, "alert", json_string(name));
    json_object_set_new(rec, "severity", json_string(sev));
    json_object_set_new(rec, "value", json_real(json_num(st->value)));
    json_object_set_new(rec, "threshold", json_real(json_num(threshold)));
    if (detail != NULL)
        json_object_set_new(rec, "detail", json_string(detail));
    if (hook == NULL) {
        json_decref(rec);
        return;
    }
    struct env e = {.n = 0};
    char did[64];
    decision_id(json_integer_value(json_object_get(rec, "id")), did, sizeof(did));
    env_add(&e, "WEIR_EVENT", "%s", event);
    env_add(&e, "WEIR_RULE", "%s", rule ? rule : name);
    env_add(&e, "WEIR_ALERT", "%s", name);
    env_add(&e, "WEIR_POOL", "%s", pool);
    env_add(&e, "WEIR_METRIC", "%s", weir_as_metric_name(metric));
    env_add(&e, "WEIR_VALUE", "%.3f", st->value);
    env_add(&e, "WEIR_THRESHOLD", "%.3f", threshold);
    env_add(&e, "WEIR_SEVERITY", "%s", sev);
    env_add(&e, "WEIR_DECISION_ID", "%s", did);
    env_admin(&e);
    json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:s,s:s,s:s*}", "event", event, "alert", name,
                           "rule", rule ? rule : name, "pool", pool, "metric", weir_as_metric_name(metric),
                           "value", json_num(st->value), "threshold", json_num(threshold), "severity", sev,
                           "decision_id", did, "detail", detail);
    char *doc = in ? json_dumps(in, JSON_COMPACT) : NULL;
    json_decref(in);
    struct alert_hook_ctx *c = calloc(1, sizeof(*c));
    int timeout = M.rt->conf->autoscale.hook_timeout_ms;
    if (c != NULL && (c->path = strdup(hook)) != NULL) {
        c->record = rec;
        rec = NULL;
        if (weir_hook_run(hook, e.v, doc, doc ? strlen(doc) : 0, timeout, alert_hook_done, c, NULL) != 0) {
            struct weir_hook_result res;
            memset(&res, 0, sizeof(res));
            res.spawn_errno = errno;
            alert_hook_done(c, &res);
        }
    } else if (c != NULL) {
        free(c);
    }
    json_decref(rec);
    free(doc);
    env_free(&e);
}

static double alert_threshold(const struct weir_as_alert_def *d, int sev)
{
    return sev == WEIR_SEV_CRITICAL ? d->critical : d->warning;
}

/* The rule's own alerts: at_max and not_capacity_bound while the verdict
 * says so, hook_failed while the last action failed. */
static void rule_alerts(struct rule_rt *r, int64_t t)
{
    static const struct weir_as_alert_def warn = {.has_warning = 1, .warning = 0.5};
    static const struct weir_as_alert_def crit = {.has_critical = 1, .critical = 0.5};
    int cond[RA_N] = {
        [RA_AT_MAX] = r->last.dir == WEIR_AS_UP && r->last.reason == WEIR_ASR_AT_MAX,
        [RA_NOT_CAPACITY_BOUND] = r->last.dir == WEIR_AS_UP && r->last.reason == WEIR_ASR_NOT_CAPACITY_BOUND,
        [RA_HOOK_FAILED] = r->failed,
    };
    for (int i = 0; i < RA_N; i++) {
        const struct weir_as_alert_def *d = i == RA_HOOK_FAILED ? &crit : &warn;
        struct weir_as_alert_state *st = &r->ra[i];
        double keep = st->value;
        int ev = weir_as_alert_eval(d, st, 1, cond[i] ? 1.0 : 0.0, t);
        st->value = r->has_value ? r->value : keep;
        if (ev == WEIR_AEV_FIRING || ev == WEIR_AEV_RESOLVED) {
            char name[160], detail[200];
            snprintf(name, sizeof(name), "%s:%s", r->name, rule_alert_names[i]);
            snprintf(detail, sizeof(detail), "%s with %d server(s) (min %d, max %d)",
                     i == RA_AT_MAX ? "breach held at max_servers"
                     : i == RA_NOT_CAPACITY_BOUND
                         ? "latency high while servers are idle: not a capacity problem"
                         : "the last scale action failed",
                     r->last.desired, r->conf->min_servers, r->conf->max_servers);
            alert_event(name, r->name, r->conf->pool, r->conf->metric, ev, st, r->last.threshold,
                        r->conf->alert_hook, ev == WEIR_AEV_FIRING ? detail : NULL);
        }
    }
}

static void eval_alert(struct alert_rt *a, int64_t t)
{
    struct pool_track *pt = pool_get(a->conf->pool, 0);
    struct weir_as_window w;
    double v = 0;
    int has = 0;

    if (pt != NULL && weir_as_series_window(pt->series, a->conf->window_ms, &w) == 0)
        has = weir_as_window_value(&w, a->conf->metric, &v);
    a->has_value = has;
    int ev = weir_as_alert_eval(&a->def, &a->st, has, v, t);
    if (ev != WEIR_AEV_NONE)
        alert_event(a->name, NULL, a->conf->pool, a->conf->metric, ev, &a->st,
                    alert_threshold(&a->def, a->st.severity), a->conf->hook, NULL);
}

/* ---- rules ------------------------------------------------------------------- */

static void rule_push_value(struct rule_rt *r, int64_t t)
{
    r->values[r->vhead].t = t;
    r->values[r->vhead].v = r->value;
    r->values[r->vhead].has = r->has_value;
    r->vhead = (r->vhead + 1) % VALUES_KEPT;
    if (r->nvalues < VALUES_KEPT)
        r->nvalues++;
}

static void eval_rule(struct rule_rt *r, const struct weir_rt *rt, int64_t t)
{
    const struct weir_conf_as_rule *c = r->conf;
    const struct weir_pool *p = rt_pool(rt, c->pool);
    struct pool_track *pt = pool_get(c->pool, 0);
    struct weir_as_tick tk;
    double v = 0;

    if (p == NULL || pt == NULL)
        return;
    r->has_value = weir_as_series_window(pt->series, c->window_ms, &r->win) == 0 &&
                   weir_as_window_value(&r->win, c->metric, &v);
    r->value = v;
    rule_push_value(r, t);
    memset(&tk, 0, sizeof(tk));
    tk.now_ms = t;
    tk.has_value = r->has_value;
    tk.value = v;
    tk.servers = (int)p->set.n;
    tk.unsettled = pool_unsettled(pt, p);
    tk.inflight_per_server = r->win.v[WEIR_ASM_INFLIGHT_PER_SERVER];
    tk.action_in_flight = pt->act != NULL;
    tk.leader = weir_lease_leader();
    tk.dry_run = rt->conf->autoscale.dry_run;
    int64_t up_since = r->st.up_since, down_since = r->st.down_since;
    weir_as_rule_eval(c, &r->st, &tk, &r->last);
    const struct weir_as_verdict *vd = &r->last;

    if (vd->action == WEIR_AS_SCALE_UP || vd->action == WEIR_AS_SCALE_DOWN)
        r->counts[vd->action == WEIR_AS_SCALE_UP ? 0 : 1]++;
    else if (vd->action == WEIR_AS_SKIP && vd->record)
        r->counts[2 + vd->reason]++;
    if (vd->record) {
        const char *act = vd->action == WEIR_AS_SKIP ? "skipped" : weir_as_action_name(vd->action, vd->dir);
        json_t *rec = record_new(r->name, c->pool, weir_as_metric_name(c->metric));
        int64_t since = vd->dir == WEIR_AS_UP ? up_since : down_since;
        if (rec != NULL) {
            json_object_set_new(rec, "action", json_string(act));
            json_object_set_new(rec, "direction", json_string(vd->dir == WEIR_AS_UP ? "up" : "down"));
            if (vd->action == WEIR_AS_SKIP)
                json_object_set_new(rec, "reason", json_string(weir_as_reason_name(vd->reason)));
            json_object_set_new(rec, "value", r->has_value ? json_real(json_num(v)) : json_null());
            json_object_set_new(rec, "threshold", json_real(json_num(vd->threshold)));
            json_object_set_new(rec, "mode", json_string(c->has_target ? "target" : "threshold"));
            json_object_set_new(rec, "held_ms", json_integer((json_int_t)vd->held_ms));
            json_object_set_new(rec, "values", values_since(r, since >= 0 ? since : t));
            json_object_set_new(rec, "inflight_per_server",
                                json_real(json_num(r->win.v[WEIR_ASM_INFLIGHT_PER_SERVER])));
            json_object_set_new(rec, "servers_before", json_integer(tk.servers));
            json_object_set_new(rec, "desired", json_integer(vd->desired));
            json_object_set_new(rec, "role", json_string(weir_lease_role()));
            json_object_set_new(rec, "dry_run", json_boolean(tk.dry_run));
        }
        if (vd->action == WEIR_AS_SKIP)
            weir_log_info("autoscale: rule '%s' pool '%s': %s skipped (%s): %s %s %.3f %s %.3f held %lld ms; "
                          "servers %d, desired %d",
                          r->name, c->pool, vd->dir == WEIR_AS_UP ? "scale_up" : "scale_down",
                          weir_as_reason_name(vd->reason), weir_as_metric_name(c->metric),
                          r->has_value ? "" : "(no data)", v, vd->dir == WEIR_AS_UP ? ">" : "<",
                          vd->threshold, (long long)vd->held_ms, tk.servers, vd->desired);
        else
            weir_log_warn("autoscale: rule '%s' pool '%s': %s decision %lld: %s %s%.3f %s %.3f held %lld ms "
                          "(inflight/server %.2f); servers %d -> %d",
                          r->name, c->pool, act,
                          rec ? (long long)json_integer_value(json_object_get(rec, "id")) : -1,
                          weir_as_metric_name(c->metric), r->has_value ? "" : "(no data: an idle pool) ", v,
                          vd->dir == WEIR_AS_UP ? ">" : "<", vd->threshold, (long long)vd->held_ms,
                          r->win.v[WEIR_ASM_INFLIGHT_PER_SERVER], tk.servers, vd->desired);
        if ((vd->action == WEIR_AS_SCALE_UP || vd->action == WEIR_AS_SCALE_DOWN) && rec != NULL)
            action_start(r, pt, p, rec);
        json_decref(rec);
    }
    rule_alerts(r, t);
}

/* ---- configuration sync ------------------------------------------------------ */

static void rule_free(struct rule_rt *r)
{
    free(r->name);
    free(r);
}

static void alert_free(struct alert_rt *a)
{
    free(a->name);
    free(a);
}

static void pool_track_free(struct pool_track *p)
{
    weir_as_series_free(p->series);
    free(p->known);
    if (p->act != NULL)
        action_free(p->act); /* a running hook's callback finds no action: ignored */
    free(p->name);
    free(p);
}

static void want_pool(const char *name, int window_ms, int interval_ms)
{
    struct pool_track *pt = pool_get(name, 1);
    if (pt == NULL)
        return;
    pt->seen = 1;
    weir_as_series_reserve(pt->series, (size_t)(window_ms / interval_ms) + 3);
}

/* Follow the rules and alerts of snapshot rt, keeping state by name. */
static void sync_conf(struct weir_rt *rt)
{
    const struct weir_conf_autoscale *ac = &rt->conf->autoscale;
    struct rule_rt *r, *rn;
    struct alert_rt *a, *an;
    struct pool_track *pt, *pn;
    int interval = ac->enabled ? ac->interval_ms : 1000;

    LIST_FOREACH(r, &M.rules, link)
    r->seen = 0;
    LIST_FOREACH(a, &M.alerts, link)
    a->seen = 0;
    LIST_FOREACH(pt, &M.pools, link)
    pt->seen = pt->act != NULL; /* a pool with an action keeps its track until it ends */
    for (size_t i = 0; ac->enabled && i < ac->nrules; i++) {
        const struct weir_conf_as_rule *c = &ac->rules[i];
        r = rule_find(c->name);
        if (r == NULL) {
            r = calloc(1, sizeof(*r));
            if (r == NULL || (r->name = strdup(c->name)) == NULL) {
                free(r);
                continue;
            }
            weir_as_rule_state_init(&r->st);
            for (int k = 0; k < RA_N; k++)
                weir_as_alert_state_init(&r->ra[k]);
            LIST_INSERT_HEAD(&M.rules, r, link);
        }
        r->conf = c;
        r->seen = 1;
        want_pool(c->pool, c->window_ms, interval);
    }
    for (size_t i = 0; ac->enabled && i < ac->nalerts; i++) {
        const struct weir_conf_as_alert *c = &ac->alerts[i];
        LIST_FOREACH(a, &M.alerts, link)
        {
            if (strcmp(a->name, c->name) == 0)
                break;
        }
        if (a == NULL) {
            a = calloc(1, sizeof(*a));
            if (a == NULL || (a->name = strdup(c->name)) == NULL) {
                free(a);
                continue;
            }
            weir_as_alert_state_init(&a->st);
            LIST_INSERT_HEAD(&M.alerts, a, link);
        }
        a->conf = c;
        weir_as_alert_def_from_conf(&a->def, c);
        a->seen = 1;
        want_pool(c->pool, c->window_ms, interval);
    }
    for (r = LIST_FIRST(&M.rules); r != NULL; r = rn) {
        rn = LIST_NEXT(r, link);
        if (!r->seen) {
            LIST_REMOVE(r, link);
            rule_free(r);
        }
    }
    for (a = LIST_FIRST(&M.alerts); a != NULL; a = an) {
        an = LIST_NEXT(a, link);
        if (!a->seen) {
            LIST_REMOVE(a, link);
            alert_free(a);
        }
    }
    for (pt = LIST_FIRST(&M.pools); pt != NULL; pt = pn) {
        pn = LIST_NEXT(pt, link);
        if (!pt->seen) {
            LIST_REMOVE(pt, link);
            pool_track_free(pt);
        }
    }
    M.interval_ms = interval;
}

/* ---- the tick ---------------------------------------------------------------- */

static void arm_tick(void)
{
    struct timeval tv = {M.interval_ms / 1000, (M.interval_ms % 1000) * 1000};
    evtimer_add(M.tick, &tv);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_rt *rt = weir_rt_current();
    int64_t t = now_ms();
    struct pool_track *pt;
    struct rule_rt *r;
    struct alert_rt *a;

    if (rt == NULL) {
        arm_tick();
        return;
    }
    if (rt != M.rt) {
        sync_conf(rt);
        weir_rt_release(M.rt);
        M.rt = rt;
        weir_rt_retain(rt);
    }
    weir_lease_tick(&rt->conf->autoscale, M.interval_ms);
    LIST_FOREACH(pt, &M.pools, link)
    {
        const struct weir_pool *p = rt_pool(rt, pt->name);
        struct weir_as_sample smp;
        if (p == NULL) {
            if (pt->act != NULL)
                action_end(pt, 0, "the pool is gone (reload)");
            continue;
        }
        int first = weir_as_series_len(pt->series) == 0;
        weir_as_sample_pool(p, t, M.scratch, &smp);
        weir_as_series_push(pt->series, &smp);
        pool_servers(pt, p, first, t);
        action_progress(pt, p);
    }
    LIST_FOREACH(r, &M.rules, link)
    eval_rule(r, rt, t);
    LIST_FOREACH(a, &M.alerts, link)
    eval_alert(a, t);
    weir_rt_release(rt);
    arm_tick();
}

/* ---- lifecycle --------------------------------------------------------------- */

int weir_autoscaler_start(struct event_base *base)
{
    if (M.started)
        return 0;
    memset(&M, 0, sizeof(M));
    LIST_INIT(&M.pools);
    LIST_INIT(&M.rules);
    LIST_INIT(&M.alerts);
    M.base = base;
    M.records = json_array();
    M.scratch = malloc(sizeof(*M.scratch));
    M.tick = evtimer_new(base, tick_cb, NULL);
    M.drain_poll = evtimer_new(base, drain_poll_cb, NULL);
    M.next_id = 1;
    M.start_wall_s = wall_ms() / 1000;
    M.interval_ms = 1000;
    if (M.records == NULL || M.scratch == NULL || M.tick == NULL || M.drain_poll == NULL ||
        weir_hook_init(base) != 0 || weir_lease_start(base) != 0 || weir_history_start(base) != 0) {
        weir_log_error("autoscale: cannot start (out of memory?)");
        return -1;
    }
    M.started = 1;
    struct timeval tv = {0, 1000};
    evtimer_add(M.tick, &tv); /* the first tick reads the configuration */
    return 0;
}

void weir_autoscaler_stop(void)
{
    struct pool_track *pt;
    struct rule_rt *r;
    struct alert_rt *a;

    if (!M.started)
        return;
    weir_hook_shutdown();
    weir_lease_stop();
    weir_history_stop();
    while ((pt = LIST_FIRST(&M.pools)) != NULL) {
        LIST_REMOVE(pt, link);
        pool_track_free(pt);
    }
    while ((r = LIST_FIRST(&M.rules)) != NULL) {
        LIST_REMOVE(r, link);
        rule_free(r);
    }
    while ((a = LIST_FIRST(&M.alerts)) != NULL) {
        LIST_REMOVE(a, link);
        alert_free(a);
    }
    event_free(M.tick);
    event_free(M.drain_poll);
    json_decref(M.records);
    free(M.scratch);
    weir_rt_release(M.rt);
    memset(&M, 0, sizeof(M));
}

/* ---- documents --------------------------------------------------------------- */

static json_t *dir_json(const struct weir_conf_as_step *s, int64_t since, int64_t cool_until, int64_t t,
                        int has_target)
{
    if (!s->enabled)
        return json_null();
    json_t *o = json_pack("{s:I,s:i,s:i,s:I,s:I,s:s*}", "breach_ms", (json_int_t)(since >= 0 ? t - since : 0),
                          "for_ms", s->for_ms, "step", s->step_pct ? 0 : s->step, "cooldown_ms",
                          (json_int_t)s->cooldown_ms, "cooldown_left_ms",
                          (json_int_t)(cool_until > t ? cool_until - t : 0), "hook", s->hook);
    if (o != NULL) {
        json_object_set_new(o, "breaching", json_boolean(since >= 0));
        if (s->step_pct)
            json_object_set_new(o, "step_pct", json_integer(s->step_pct));
        if (!has_target)
            json_object_set_new(o, "threshold", json_real(s->threshold));
    }
    return o;
}

static json_t *action_json(const struct action *a, int64_t t)
{
    static const char *const phases[] = {"hook_running", "verifying", "draining", "hook_running"};
    if (a == NULL)
        return json_null();
    return json_pack("{s:I,s:s,s:s,s:i,s:i,s:I,s:s*}", "decision", (json_int_t)a->id, "action",
                     a->dir == WEIR_AS_UP ? "scale_up" : "scale_down", "phase", phases[a->phase],
                     "servers_before", a->before, "desired", a->desired, "elapsed_ms",
                     (json_int_t)(t - a->started_ms), "server", a->server);
}

json_t *weir_autoscaler_json(void)
{
    const struct weir_conf_autoscale *ac = M.rt ? &M.rt->conf->autoscale : NULL;
    int64_t t = now_ms();
    json_t *rules = json_array(), *doc;
    struct rule_rt *r;

    LIST_FOREACH(r, &M.rules, link)
    {
        const struct weir_conf_as_rule *c = r->conf;
        const struct weir_pool *p = rt_pool(M.rt, c->pool);
        struct pool_track *pt = pool_get(c->pool, 0);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:o,s:i,s:i,s:s}", "name", r->name, "pool",
                              c->pool, "metric", weir_as_metric_name(c->metric), "mode",
                              c->has_target ? "target" : "threshold", "window_ms", c->window_ms,
                              "min_servers", c->min_servers, "max_servers", c->max_servers, "value",
                              r->has_value ? json_real(json_num(r->value)) : json_null(), "servers",
                              p ? (int)p->set.n : 0, "desired", r->last.desired, "role", weir_lease_role());
        if (o == NULL)
            continue;
        if (c->has_target)
            json_object_set_new(o, "target", json_real(c->target));
        json_object_set_new(o, "scale_up",
                            dir_json(&c->up, r->st.up_since, r->st.up_cool_until, t, c->has_target));
        json_object_set_new(o, "scale_down",
                            dir_json(&c->down, r->st.down_since, r->st.down_cool_until, t, c->has_target));
        json_object_set_new(o, "state",
                            json_string(pt && pt->act                    ? "action_in_flight"
                                        : r->last.action == WEIR_AS_SKIP ? weir_as_reason_name(r->last.reason)
                                        : r->st.up_since >= 0            ? "breach_up"
                                        : r->st.down_since >= 0          ? "breach_down"
                                                                         : "steady"));
        json_object_set_new(o, "action", action_json(pt ? pt->act : NULL, t));
        json_object_set_new(o, "window", window_json(&r->win));
        json_object_set_new(o, "busy_inflight", json_real(c->busy_inflight));
        json_array_append_new(rules, o);
    }
    doc = json_pack("{s:b,s:i,s:b,s:i,s:s,s:o,s:O}", "enabled", ac ? ac->enabled : 0, "interval_ms",
                    M.interval_ms, "dry_run", ac ? ac->dry_run : 0, "hook_timeout_ms",
                    ac ? ac->hook_timeout_ms : 0, "role", weir_lease_role(), "rules", rules, "decisions",
                    M.records);
    if (doc != NULL)
        json_object_set_new(doc, "lease", weir_lease_json());
    return doc;
}

static json_t *alert_json(const char *name, const char *kind, const char *pool, int metric,
                          const struct weir_as_alert_state *st, const struct weir_as_alert_def *d, int64_t t)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:I}", "name", name, "kind", kind, "pool", pool, "metric",
                  weir_as_metric_name(metric), "state", weir_alert_state_name(st->state), "severity",
                  st->state == WEIR_ALERT_OK ? "none" : weir_alert_sev_name(st->severity), "value",
                  json_num(st->value), "since_ms", (json_int_t)(st->changed_ms ? t - st->changed_ms : 0));
    if (o != NULL && d != NULL) {
        if (d->has_warning)
            json_object_set_new(o, "warning", json_real(d->warning));
        if (d->has_critical)
            json_object_set_new(o, "critical", json_real(d->critical));
        json_object_set_new(o, "below", json_boolean(d->below));
        json_object_set_new(o, "for_ms", json_integer(d->for_ms));
        json_object_set_new(o, "keep_firing_for_ms", json_integer(d->keep_firing_for_ms));
    }
    return o;
}

json_t *weir_autoscaler_alerts_json(void)
{
    json_t *list = json_array();
    int64_t t = now_ms();
    struct alert_rt *a;
    struct rule_rt *r;

    LIST_FOREACH(a, &M.alerts, link)
    json_array_append_new(list,
                          alert_json(a->name, "alert", a->conf->pool, a->conf->metric, &a->st, &a->def, t));
    LIST_FOREACH(r, &M.rules, link)
    {
        for (int i = 0; i < RA_N; i++) {
            char name[160];
            snprintf(name, sizeof(name), "%s:%s", r->name, rule_alert_names[i]);
            json_array_append_new(
                list, alert_json(name, "rule", r->conf->pool, r->conf->metric, &r->ra[i], NULL, t));
        }
    }
    return json_pack("{s:o}", "alerts", list);
}

/* ---- /metrics ---------------------------------------------------------------- */

static void prom_label(struct evbuffer *out, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

static void prom_alert(struct evbuffer *out, const char *name, const struct weir_as_alert_state *st)
{
    static const int sevs[] = {WEIR_SEV_WARNING, WEIR_SEV_CRITICAL};
    for (int i = 0; i < 2; i++) {
        int v = 0;
        if (st->severity == sevs[i])
            v = st->state == WEIR_ALERT_FIRING ? 2 : st->state == WEIR_ALERT_PENDING ? 1 : 0;
        evbuffer_add_printf(out, "weir_alert_state{alert=\"");
        prom_label(out, name);
        evbuffer_add_printf(out, "\",severity=\"%s\"} %d\n", weir_alert_sev_name(sevs[i]), v);
    }
}

int weir_autoscaler_metrics(struct evbuffer *out)
{
    struct rule_rt *r;
    struct alert_rt *a;

    if (!M.started || (LIST_EMPTY(&M.rules) && LIST_EMPTY(&M.alerts)))
        return 0;
    evbuffer_add_printf(out, "# HELP weir_autoscale_decisions_total Autoscale decisions by rule and action "
                             "(scale_up, scale_down, or the reason a held breach was skipped)\n"
                             "# TYPE weir_autoscale_decisions_total counter\n");
    LIST_FOREACH(r, &M.rules, link)
    {
        for (int i = 0; i < 2 + WEIR_ASR_N; i++) {
            if (i == 2 + WEIR_ASR_NONE)
                continue;
            evbuffer_add_printf(out, "weir_autoscale_decisions_total{rule=\"");
            prom_label(out, r->name);
            evbuffer_add_printf(out, "\",action=\"%s\"} %llu\n",
                                i == 0   ? "scale_up"
                                : i == 1 ? "scale_down"
                                         : weir_as_reason_name(i - 2),
                                (unsigned long long)r->counts[i]);
        }
        evbuffer_add_printf(out, "weir_autoscale_decisions_total{rule=\"");
        prom_label(out, r->name);
        evbuffer_add_printf(out, "\",action=\"hook_failed\"} %llu\n", (unsigned long long)r->failures);
    }
    evbuffer_add_printf(out, "# HELP weir_autoscale_desired_servers Servers the rule wants for its pool now\n"
                             "# TYPE weir_autoscale_desired_servers gauge\n");
    LIST_FOREACH(r, &M.rules, link)
    {
        evbuffer_add_printf(out, "weir_autoscale_desired_servers{rule=\"");
        prom_label(out, r->name);
        evbuffer_add_printf(out, "\"} %d\n", r->last.desired);
    }
    evbuffer_add_printf(
        out, "# HELP weir_alert_state Alert state per severity: 0 ok or resolved, 1 pending, 2 firing\n"
             "# TYPE weir_alert_state gauge\n");
    LIST_FOREACH(a, &M.alerts, link)
    prom_alert(out, a->name, &a->st);
    LIST_FOREACH(r, &M.rules, link)
    {
        for (int i = 0; i < RA_N; i++) {
            char name[160];
            snprintf(name, sizeof(name), "%s:%s", r->name, rule_alert_names[i]);
            prom_alert(out, name, &r->ra[i]);
        }
    }
    return 0;
}
