/*
 * autoscale.c - rule and alert state machines (see autoscale.h). Pure: no
 * I/O, no clock, no globals.
 */
#include "config.h"

#include <math.h>

#include "weir/autoscale.h"
#include "weir/conf_autoscale.h"

#define TOLERANCE 0.10 /* target mode: act only outside +-10 % of the target */

static const char *const reason_names[WEIR_ASR_N] = {
    [WEIR_ASR_NONE] = "none",
    [WEIR_ASR_COOLDOWN] = "cooldown",
    [WEIR_ASR_AT_MAX] = "at_max",
    [WEIR_ASR_AT_MIN] = "at_min",
    [WEIR_ASR_NOT_CAPACITY_BOUND] = "not_capacity_bound",
    [WEIR_ASR_ACTION_IN_FLIGHT] = "action_in_flight",
    [WEIR_ASR_UNVERIFIED] = "unverified",
    [WEIR_ASR_UNHEALTHY] = "unhealthy",
    [WEIR_ASR_NO_DATA] = "no_data",
    [WEIR_ASR_DRY_RUN] = "dry_run",
    [WEIR_ASR_FOLLOWER] = "follower",
};

const char *weir_as_reason_name(int reason)
{
    return reason >= 0 && reason < WEIR_ASR_N ? reason_names[reason] : "?";
}

const char *weir_as_action_name(int action, int dir)
{
    switch (action) {
    case WEIR_AS_SCALE_UP:
        return "scale_up";
    case WEIR_AS_SCALE_DOWN:
        return "scale_down";
    case WEIR_AS_SKIP:
        return "skip";
    default:
        return dir == WEIR_AS_UP ? "none_up" : "none";
    }
}

void weir_as_rule_state_init(struct weir_as_rule_state *st)
{
    st->up_since = st->down_since = -1;
    st->up_cool_until = st->down_cool_until = 0;
    st->last_reason[0] = st->last_reason[1] = WEIR_ASR_NONE;
    st->no_data = 0;
}

int weir_as_step_count(const struct weir_conf_as_step *s, int servers)
{
    if (s->step_pct > 0) {
        long n = ((long)servers * s->step_pct + 99) / 100;
        return n < 1 ? 1 : (int)n;
    }
    return s->step < 1 ? 1 : s->step;
}

int weir_as_target_desired(int servers, double value, double target)
{
    if (servers < 1)
        servers = 1;
    if (!(target > 0) || !(value >= 0))
        return servers;
    double d = ceil((double)servers * value / target - 1e-9);
    if (d > 1e6)
        d = 1e6;
    return (int)d;
}

/* The reason a held scale-up may not act, or NONE. */
static int up_block(const struct weir_conf_as_rule *r, const struct weir_as_rule_state *st,
                    const struct weir_as_tick *t)
{
    if (t->action_in_flight)
        return WEIR_ASR_ACTION_IN_FLIGHT;
    if (t->servers >= r->max_servers)
        return WEIR_ASR_AT_MAX;
    if (weir_as_metric_is_latency(r->metric) && t->inflight_per_server < r->busy_inflight)
        return WEIR_ASR_NOT_CAPACITY_BOUND;
    if (t->now_ms < st->up_cool_until)
        return WEIR_ASR_COOLDOWN;
    if (!t->leader)
        return WEIR_ASR_FOLLOWER;
    if (t->dry_run)
        return WEIR_ASR_DRY_RUN;
    return WEIR_ASR_NONE;
}

static int down_block(const struct weir_conf_as_rule *r, const struct weir_as_rule_state *st,
                      const struct weir_as_tick *t)
{
    if (t->action_in_flight)
        return WEIR_ASR_ACTION_IN_FLIGHT;
    if (t->servers <= r->min_servers)
        return WEIR_ASR_AT_MIN;
    if (t->unsettled)
        return t->unsettled;
    if (t->now_ms < st->down_cool_until)
        return WEIR_ASR_COOLDOWN;
    if (!t->leader)
        return WEIR_ASR_FOLLOWER;
    if (t->dry_run)
        return WEIR_ASR_DRY_RUN;
    return WEIR_ASR_NONE;
}

static void track(int breach, int64_t *since, int *last_reason, int64_t now)
{
    if (breach) {
        if (*since < 0)
            *since = now;
    } else {
        *since = -1;
        *last_reason = WEIR_ASR_NONE;
    }
}

void weir_as_rule_eval(const struct weir_conf_as_rule *r, struct weir_as_rule_state *st,
                       const struct weir_as_tick *t, struct weir_as_verdict *out)
{
    int breach_up = 0, breach_down = 0, target_desired = -1;
    int servers = t->servers;

    out->action = WEIR_AS_NONE;
    out->dir = WEIR_AS_UP;
    out->reason = WEIR_ASR_NONE;
    out->desired = servers;
    out->record = 0;
    out->held_ms = 0;
    out->threshold = r->has_target ? r->target : r->up.threshold;

    if (!t->has_value) {
        /* Never scale up on missing data; an idle pool whose servers are
         * all settled may scale down (it is below every threshold). */
        breach_down = r->down.enabled && !t->unsettled;
        if (r->has_target)
            target_desired = r->min_servers;
    } else if (r->has_target) {
        double ratio = t->value / r->target;
        target_desired = weir_as_target_desired(servers, t->value, r->target);
        breach_up = r->up.enabled && ratio > 1.0 + TOLERANCE && target_desired > servers;
        breach_down = r->down.enabled && ratio < 1.0 - TOLERANCE && target_desired < servers;
    } else {
        breach_up = r->up.enabled && t->value > r->up.threshold;
        breach_down = r->down.enabled && t->value < r->down.threshold;
    }
    track(breach_up, &st->up_since, &st->last_reason[WEIR_AS_UP], t->now_ms);
    track(breach_down, &st->down_since, &st->last_reason[WEIR_AS_DOWN], t->now_ms);

    if (!t->has_value && !breach_down) {
        /* Recorded once per gap in the data. */
        out->action = WEIR_AS_SKIP;
        out->reason = WEIR_ASR_NO_DATA;
        out->record = !st->no_data;
        st->no_data = 1;
        return;
    }
    st->no_data = t->has_value ? 0 : st->no_data;

    if (st->up_since >= 0 && t->now_ms - st->up_since >= r->up.for_ms) {
        int want = servers + weir_as_step_count(&r->up, servers);
        if (target_desired >= 0 && target_desired < want)
            want = target_desired;
        if (want > r->max_servers)
            want = r->max_servers;
        if (want < r->min_servers)
            want = r->min_servers;
        out->dir = WEIR_AS_UP;
        out->desired = want;
        out->held_ms = t->now_ms - st->up_since;
        out->threshold = r->has_target ? r->target : r->up.threshold;
        out->reason = up_block(r, st, t);
    } else if (st->down_since >= 0 && t->now_ms - st->down_since >= r->down.for_ms) {
        int want = servers - weir_as_step_count(&r->down, servers);
        if (target_desired >= 0 && target_desired > want)
            want = target_desired;
        if (want < r->min_servers)
            want = r->min_servers;
        if (want > r->max_servers)
            want = r->max_servers;
        out->dir = WEIR_AS_DOWN;
        out->desired = want;
        out->held_ms = t->now_ms - st->down_since;
        out->threshold = r->has_target ? r->target : r->down.threshold;
        out->reason = down_block(r, st, t);
    } else {
        return;
    }
    if (out->reason == WEIR_ASR_NONE) {
        out->action = out->dir == WEIR_AS_UP ? WEIR_AS_SCALE_UP : WEIR_AS_SCALE_DOWN;
        out->record = 1;
        st->up_since = st->down_since = -1;
        st->last_reason[0] = st->last_reason[1] = WEIR_ASR_NONE;
        return;
    }
    out->action = WEIR_AS_SKIP;
    out->record = st->last_reason[out->dir] != out->reason;
    st->last_reason[out->dir] = out->reason;
}

void weir_as_rule_done(const struct weir_conf_as_rule *r, struct weir_as_rule_state *st, int dir, int ok,
                       int64_t now_ms)
{
    if (ok) {
        if (dir == WEIR_AS_UP)
            st->up_cool_until = now_ms + r->up.cooldown_ms;
        else
            st->down_cool_until = now_ms + r->down.cooldown_ms;
    }
    st->up_since = st->down_since = -1;
    st->last_reason[0] = st->last_reason[1] = WEIR_ASR_NONE;
}

/* ---- alerts ---- */

void weir_as_alert_def_from_conf(struct weir_as_alert_def *d, const struct weir_conf_as_alert *a)
{
    d->below = a->below;
    d->has_warning = a->has_warning;
    d->has_critical = a->has_critical;
    d->warning = a->warning;
    d->critical = a->critical;
    d->for_ms = a->for_ms;
    d->keep_firing_for_ms = a->keep_firing_for_ms;
}

void weir_as_alert_state_init(struct weir_as_alert_state *st)
{
    st->state = WEIR_ALERT_OK;
    st->severity = WEIR_SEV_NONE;
    st->pending_since = st->clear_since = -1;
    st->changed_ms = 0;
    st->value = 0;
}

static int beyond(const struct weir_as_alert_def *d, double v, double thr)
{
    return d->below ? v < thr : v > thr;
}

int weir_as_alert_level(const struct weir_as_alert_def *d, int has_value, double value)
{
    if (!has_value)
        return WEIR_SEV_NONE;
    if (d->has_critical && beyond(d, value, d->critical))
        return WEIR_SEV_CRITICAL;
    if (d->has_warning && beyond(d, value, d->warning))
        return WEIR_SEV_WARNING;
    return WEIR_SEV_NONE;
}

int weir_as_alert_eval(const struct weir_as_alert_def *d, struct weir_as_alert_state *st, int has_value,
                       double value, int64_t now_ms)
{
    int sev = weir_as_alert_level(d, has_value, value);

    if (has_value)
        st->value = value;
    if (sev != WEIR_SEV_NONE) {
        st->clear_since = -1;
        switch (st->state) {
        case WEIR_ALERT_OK:
        case WEIR_ALERT_RESOLVED:
            st->pending_since = now_ms;
            st->severity = sev;
            st->changed_ms = now_ms;
            if (d->for_ms <= 0) {
                st->state = WEIR_ALERT_FIRING;
                return WEIR_AEV_FIRING;
            }
            st->state = WEIR_ALERT_PENDING;
            return WEIR_AEV_PENDING;
        case WEIR_ALERT_PENDING:
            st->severity = sev;
            if (now_ms - st->pending_since >= d->for_ms) {
                st->state = WEIR_ALERT_FIRING;
                st->changed_ms = now_ms;
                return WEIR_AEV_FIRING;
            }
            return WEIR_AEV_NONE;
        default: /* FIRING */
            if (sev != st->severity) {
                st->severity = sev;
                st->changed_ms = now_ms;
                return WEIR_AEV_FIRING;
            }
            return WEIR_AEV_NONE;
        }
    }
    switch (st->state) {
    case WEIR_ALERT_PENDING:
        st->state = WEIR_ALERT_OK;
        st->severity = WEIR_SEV_NONE;
        st->pending_since = -1;
        st->changed_ms = now_ms;
        return WEIR_AEV_CANCELLED;
    case WEIR_ALERT_FIRING:
        if (st->clear_since < 0)
            st->clear_since = now_ms;
        if (now_ms - st->clear_since >= d->keep_firing_for_ms) {
            st->state = WEIR_ALERT_RESOLVED;
            st->changed_ms = now_ms;
            st->clear_since = -1;
            return WEIR_AEV_RESOLVED;
        }
        return WEIR_AEV_NONE;
    default:
        return WEIR_AEV_NONE;
    }
}

const char *weir_alert_state_name(int state)
{
    switch (state) {
    case WEIR_ALERT_PENDING:
        return "pending";
    case WEIR_ALERT_FIRING:
        return "firing";
    case WEIR_ALERT_RESOLVED:
        return "resolved";
    default:
        return "ok";
    }
}

const char *weir_alert_sev_name(int sev)
{
    return sev == WEIR_SEV_CRITICAL ? "critical" : sev == WEIR_SEV_WARNING ? "warning" : "none";
}
