/*
 * autoscaler_view.c - what the autoscale engine shows: GET /autoscale,
 * GET /alerts and its /metrics families.
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
#include "weir/prom.h"
#include "weir/pool_edit.h"
#include "weir/stats.h"

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
    int64_t t = asc_now_ms();
    json_t *rules = json_array(), *doc;
    struct rule_rt *r;

    LIST_FOREACH(r, &M.rules, link)
    {
        const struct weir_conf_as_rule *c = r->conf;
        const struct weir_pool *p = asc_rt_pool(M.rt, c->pool);
        struct pool_track *pt = asc_pool_get(c->pool, 0);
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:o,s:i,s:i,s:s}", "name", r->name, "pool",
                              c->pool, "metric", weir_as_metric_name(c->metric), "mode",
                              c->has_target ? "target" : "threshold", "window_ms", c->window_ms,
                              "min_servers", c->min_servers, "max_servers", c->max_servers, "value",
                              r->has_value ? json_real(asc_json_num(r->value)) : json_null(), "servers",
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
        json_object_set_new(o, "window", asc_window_json(&r->win));
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
                  asc_json_num(st->value), "since_ms", (json_int_t)(st->changed_ms ? t - st->changed_ms : 0));
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
    int64_t t = asc_now_ms();
    struct alert_rt *a;
    struct rule_rt *r;

    LIST_FOREACH(a, &M.alerts, link)
    json_array_append_new(list,
                          alert_json(a->name, "alert", a->conf->pool, a->conf->metric, &a->st, &a->def, t));
    LIST_FOREACH(r, &M.rules, link)
    {
        for (int i = 0; i < RA_N; i++) {
            char name[160];
            snprintf(name, sizeof(name), "%s:%s", r->name, asc_rule_alert_names[i]);
            json_array_append_new(
                list, alert_json(name, "rule", r->conf->pool, r->conf->metric, &r->ra[i], NULL, t));
        }
    }
    return json_pack("{s:o}", "alerts", list);
}

/* ---- /metrics ---------------------------------------------------------------- */

static void prom_alert(struct evbuffer *out, const char *name, const struct weir_as_alert_state *st)
{
    static const int sevs[] = {WEIR_SEV_WARNING, WEIR_SEV_CRITICAL};
    for (int i = 0; i < 2; i++) {
        int v = 0;
        if (st->severity == sevs[i])
            v = st->state == WEIR_ALERT_FIRING ? 2 : st->state == WEIR_ALERT_PENDING ? 1 : 0;
        evbuffer_add_printf(out, "weir_alert_state{alert=\"");
        weir_prom_label(out, name);
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
            weir_prom_label(out, r->name);
            evbuffer_add_printf(out, "\",action=\"%s\"} %llu\n",
                                i == 0   ? "scale_up"
                                : i == 1 ? "scale_down"
                                         : weir_as_reason_name(i - 2),
                                (unsigned long long)r->counts[i]);
        }
        evbuffer_add_printf(out, "weir_autoscale_decisions_total{rule=\"");
        weir_prom_label(out, r->name);
        evbuffer_add_printf(out, "\",action=\"hook_failed\"} %llu\n", (unsigned long long)r->failures);
    }
    evbuffer_add_printf(out, "# HELP weir_autoscale_desired_servers Servers the rule wants for its pool now\n"
                             "# TYPE weir_autoscale_desired_servers gauge\n");
    LIST_FOREACH(r, &M.rules, link)
    {
        evbuffer_add_printf(out, "weir_autoscale_desired_servers{rule=\"");
        weir_prom_label(out, r->name);
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
            snprintf(name, sizeof(name), "%s:%s", r->name, asc_rule_alert_names[i]);
            prom_alert(out, name, &r->ra[i]);
        }
    }
    return 0;
}
