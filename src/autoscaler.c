/*
 * autoscaler.c - the autoscale engine on the control thread (see
 * autoscaler.h): samples, rule and alert evaluation, decision records, the
 * tick. Actions are in autoscaler_action.c, documents in autoscaler_view.c.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "autoscaler_int.h"
#include "weir/autoscaler.h"
#include "weir/conf_autoscale.h"
#include "weir/health.h"
#include "weir/history.h"
#include "weir/lease.h"
#include "weir/log.h"
#include "weir/pool_edit.h"
#include "weir/stats.h"

const char *const asc_rule_alert_names[RA_N] = {"at_max", "not_capacity_bound", "hook_failed"};
struct asc_state M;

/* ---- small helpers ---------------------------------------------------------- */

int64_t asc_now_ms(void)
{
    return (int64_t)(weir_now_us() / 1000);
}

long long asc_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

const struct weir_pool *asc_rt_pool(const struct weir_rt *rt, const char *name)
{
    for (size_t i = 0; rt != NULL && i < rt->npools; i++)
        if (strcmp(rt->pools[i].name, name) == 0)
            return &rt->pools[i];
    return NULL;
}

struct weir_server *asc_pool_server_by_id(const struct weir_pool *p, unsigned id)
{
    for (size_t i = 0; p != NULL && i < p->set.n; i++)
        if (p->set.v[i]->id == id)
            return p->set.v[i];
    return NULL;
}

void asc_server_counts(const struct weir_server *s, uint64_t *req, uint64_t *err)
{
    struct weir_stats_counters c;
    weir_stats_read_counters(s->stats, weir_stats_now_s(), &c);
    *req = c.requests;
    *err = c.responses[WEIR_CLASS_5XX] + c.responses[WEIR_CLASS_OTHER];
}

double asc_json_num(double v)
{
    return isfinite(v) ? round(v * 1000.0) / 1000.0 : 0;
}

/* ---- decision records ----------------------------------------------------- */

json_t *asc_record_new(const char *rule, const char *pool, const char *metric)
{
    json_t *r = json_pack("{s:I,s:I,s:s,s:s,s:s}", "id", (json_int_t)M.next_id, "time_ms",
                          (json_int_t)asc_wall_ms(), "rule", rule, "pool", pool, "metric", metric);
    M.next_id++;
    if (r == NULL)
        return NULL;
    if (json_array_size(M.records) >= MAX_RECORDS)
        json_array_remove(M.records, 0);
    json_array_append(M.records, r); /* the ring holds one reference, the caller the other */
    return r;
}

void asc_decision_id(long long id, char *buf, size_t size)
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
        json_array_append_new(a, r->values[i].has ? json_real(asc_json_num(r->values[i].v)) : json_null());
    }
    return a;
}

/* ---- pools ------------------------------------------------------------------ */

struct pool_track *asc_pool_get(const char *name, int create)
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

struct known *asc_known_find(struct pool_track *pt, unsigned id)
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
        struct known *k = asc_known_find(pt, s->id);
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
            k->first_seen_wall_ms = asc_wall_ms();
            asc_server_counts(s, &k->base_requests, &k->base_errors);
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
                asc_server_counts(s, &rq, &er);
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
        struct known *k = asc_known_find(pt, s->id);
        if (atomic_load(&s->state) != WEIR_SRV_UP)
            unhealthy = 1;
        else if (k != NULL && !k->verified)
            unverified = 1;
    }
    return unhealthy ? WEIR_ASR_UNHEALTHY : unverified ? WEIR_ASR_UNVERIFIED : 0;
}

/* ---- hooks ------------------------------------------------------------------ */

void asc_env_add(struct env *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void asc_env_add(struct env *e, const char *name, const char *fmt, ...)
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

void asc_env_free(struct env *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->v[i]);
}

void asc_env_admin(struct env *e)
{
    const struct weir_conf *c = M.rt ? M.rt->conf : NULL;
    if (c == NULL || !c->admin.enabled)
        return;
    const char *a = c->admin.addr.text;
    if (strncmp(a, "*:", 2) == 0)
        asc_env_add(e, "WEIR_ADMIN_URL", "http://127.0.0.1:%s", a + 2);
    else
        asc_env_add(e, "WEIR_ADMIN_URL", "http://%s", a);
    if (c->admin.token != NULL)
        asc_env_add(e, "WEIR_ADMIN_TOKEN", "%s", c->admin.token);
}

json_t *asc_window_json(const struct weir_as_window *w)
{
    json_t *o = json_object();
    for (int m = 0; o != NULL && m < WEIR_ASM_N; m++) {
        double v;
        json_object_set_new(o, weir_as_metric_name(m),
                            weir_as_window_value(w, m, &v) ? json_real(asc_json_num(v)) : json_null());
    }
    if (o != NULL)
        json_object_set_new(o, "requests", json_integer((json_int_t)w->requests));
    return o;
}

void asc_hook_result_json(json_t *rec, const char *path, const struct weir_hook_result *r, int timeout_ms)
{
    char why[160];
    json_t *h = json_pack("{s:s,s:s,s:b,s:f,s:s}", "path", path, "status",
                          weir_hook_describe(r, timeout_ms, why, sizeof(why)), "ok", weir_hook_ok(r),
                          "duration_ms", asc_json_num(r->duration_ms), "output", r->output);
    if (h != NULL) {
        if (r->exited)
            json_object_set_new(h, "exit_code", json_integer(r->exit_status));
        json_object_set_new(h, "pid", json_integer(r->pid));
    }
    json_object_set_new(rec, "hook", h);
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

    asc_hook_result_json(c->record, c->path, res, timeout);
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
    json_t *rec = asc_record_new(rule ? rule : name, pool, weir_as_metric_name(metric));
    if (rec == NULL)
        return;
    json_object_set_new(rec, "action", json_string(event));
    json_object_set_new(rec, "alert", json_string(name));
    json_object_set_new(rec, "severity", json_string(sev));
    json_object_set_new(rec, "value", json_real(asc_json_num(st->value)));
    json_object_set_new(rec, "threshold", json_real(asc_json_num(threshold)));
    if (detail != NULL)
        json_object_set_new(rec, "detail", json_string(detail));
    if (hook == NULL) {
        json_decref(rec);
        return;
    }
    struct env e = {.n = 0};
    char did[64];
    asc_decision_id(json_integer_value(json_object_get(rec, "id")), did, sizeof(did));
    asc_env_add(&e, "WEIR_EVENT", "%s", event);
    asc_env_add(&e, "WEIR_RULE", "%s", rule ? rule : name);
    asc_env_add(&e, "WEIR_ALERT", "%s", name);
    asc_env_add(&e, "WEIR_POOL", "%s", pool);
    asc_env_add(&e, "WEIR_METRIC", "%s", weir_as_metric_name(metric));
    asc_env_add(&e, "WEIR_VALUE", "%.3f", st->value);
    asc_env_add(&e, "WEIR_THRESHOLD", "%.3f", threshold);
    asc_env_add(&e, "WEIR_SEVERITY", "%s", sev);
    asc_env_add(&e, "WEIR_DECISION_ID", "%s", did);
    asc_env_admin(&e);
    json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:s,s:s,s:s*}", "event", event, "alert", name,
                           "rule", rule ? rule : name, "pool", pool, "metric", weir_as_metric_name(metric),
                           "value", asc_json_num(st->value), "threshold", asc_json_num(threshold), "severity",
                           sev, "decision_id", did, "detail", detail);
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
    asc_env_free(&e);
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
            snprintf(name, sizeof(name), "%s:%s", r->name, asc_rule_alert_names[i]);
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
    struct pool_track *pt = asc_pool_get(a->conf->pool, 0);
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
    const struct weir_pool *p = asc_rt_pool(rt, c->pool);
    struct pool_track *pt = asc_pool_get(c->pool, 0);
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
        json_t *rec = asc_record_new(r->name, c->pool, weir_as_metric_name(c->metric));
        int64_t since = vd->dir == WEIR_AS_UP ? up_since : down_since;
        if (rec != NULL) {
            json_object_set_new(rec, "action", json_string(act));
            json_object_set_new(rec, "direction", json_string(vd->dir == WEIR_AS_UP ? "up" : "down"));
            if (vd->action == WEIR_AS_SKIP)
                json_object_set_new(rec, "reason", json_string(weir_as_reason_name(vd->reason)));
            json_object_set_new(rec, "value", r->has_value ? json_real(asc_json_num(v)) : json_null());
            json_object_set_new(rec, "threshold", json_real(asc_json_num(vd->threshold)));
            json_object_set_new(rec, "mode", json_string(c->has_target ? "target" : "threshold"));
            json_object_set_new(rec, "held_ms", json_integer((json_int_t)vd->held_ms));
            json_object_set_new(rec, "values", values_since(r, since >= 0 ? since : t));
            json_object_set_new(rec, "inflight_per_server",
                                json_real(asc_json_num(r->win.v[WEIR_ASM_INFLIGHT_PER_SERVER])));
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
            asc_action_start(r, pt, p, rec);
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
        asc_action_free(p->act); /* a running hook's callback finds no action: ignored */
    free(p->name);
    free(p);
}

static void want_pool(const char *name, int window_ms, int interval_ms)
{
    struct pool_track *pt = asc_pool_get(name, 1);
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
        r = asc_rule_find(c->name);
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
    int64_t t = asc_now_ms();
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
        const struct weir_pool *p = asc_rt_pool(rt, pt->name);
        struct weir_as_sample smp;
        if (p == NULL) {
            if (pt->act != NULL)
                asc_action_end(pt, 0, "the pool is gone (reload)");
            continue;
        }
        int first = weir_as_series_len(pt->series) == 0;
        weir_as_sample_pool(p, t, M.scratch, &smp);
        weir_as_series_push(pt->series, &smp);
        pool_servers(pt, p, first, t);
        asc_action_progress(pt, p);
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
    M.drain_poll = evtimer_new(base, asc_drain_poll_cb, NULL);
    M.next_id = 1;
    M.start_wall_s = asc_wall_ms() / 1000;
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
