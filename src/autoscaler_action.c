/*
 * autoscaler_action.c - the autoscale engine's actions (see autoscaler.h):
 * a scale-up runs its hook and waits for the new servers to prove
 * themselves; a scale-down picks, drains, runs its hook and removes.
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
#include "weir/dns.h"
#include "weir/health.h"
#include "weir/history.h"
#include "weir/lease.h"
#include "weir/log.h"
#include "weir/pool_edit.h"
#include "weir/stats.h"

/* How long DNS discovery may not re-add a server a scale-down removed. */
#define DNS_SUPPRESS_MS 300000

/* ---- actions ---------------------------------------------------------------- */

void asc_action_free(struct action *a)
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

struct rule_rt *asc_rule_find(const char *name)
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
void asc_action_end(struct pool_track *pt, int ok, const char *why)
{
    struct action *a = pt->act;
    struct rule_rt *r = asc_rule_find(a->rule);
    int64_t t = asc_now_ms();
    struct weir_rt *rt = weir_rt_current();
    const struct weir_pool *p = asc_rt_pool(rt, a->pool);
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
    if (a->hook_running) /* the hook's callback holds it: freed there */
        a->orphan = 1;
    else
        asc_action_free(a);
}

static struct pool_track *action_pool(const struct action *a)
{
    struct pool_track *pt = asc_pool_get(a->pool, 0);
    return pt != NULL && pt->act == a ? pt : NULL;
}

static void up_hook_done(void *arg, const struct weir_hook_result *res)
{
    struct action *a = arg;
    struct pool_track *pt = action_pool(a);
    int timeout = M.rt ? M.rt->conf->autoscale.hook_timeout_ms : 0;
    char why[200];

    a->hook_running = 0;
    if (a->orphan) { /* its action ended meanwhile (the pool went away) */
        asc_action_free(a);
        return;
    }
    if (pt == NULL || res->cancelled) /* stopping: the action is freed with its pool */
        return;
    asc_hook_result_json(a->record, a->hook, res, timeout);
    weir_log_info("autoscale: rule '%s' scale_up hook %s: %s after %.0f ms", a->rule, a->hook,
                  weir_hook_describe(res, timeout, why, sizeof(why)), res->duration_ms);
    if (!weir_hook_ok(res)) {
        char d[240];
        snprintf(d, sizeof(d), "scale_up hook %s", why);
        asc_action_end(pt, 0, d);
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

    a->hook_running = 0;
    if (a->orphan) { /* its action ended meanwhile (the pool went away) */
        asc_action_free(a);
        return;
    }
    if (pt == NULL || res->cancelled) /* stopping: the action is freed with its pool */
        return;
    if (a->hook != NULL) {
        asc_hook_result_json(a->record, a->hook, res, timeout);
        weir_hook_describe(res, timeout, why, sizeof(why));
    } else {
        snprintf(why, sizeof(why), "none");
    }
    if (!weir_hook_ok(res)) {
        struct weir_rt *rt = weir_rt_current();
        struct weir_server *s = asc_pool_server_by_id(asc_rt_pool(rt, a->pool), a->server_id);
        if (s != NULL)
            weir_pool_edit_set_admin(s, WEIR_ADMIN_READY, a->pool);
        weir_rt_release(rt);
        snprintf(d, sizeof(d), "scale_down hook %s; server %s set ready again", why, a->server);
        asc_action_end(pt, 0, d);
        return;
    }
    if (weir_pool_edit_remove(a->pool, a->server) != 0) {
        snprintf(d, sizeof(d), "scale_down hook %s but server %s could not be removed (gone already?)", why,
                 a->server);
        asc_action_end(pt, 0, d);
        return;
    }
    weir_dns_suppress(a->pool, a->server, DNS_SUPPRESS_MS); /* a lagging DNS answer must not bring it back */
    if (a->hook != NULL)
        snprintf(d, sizeof(d), "server %s drained, hook %s, removed", a->server, why);
    else
        snprintf(d, sizeof(d), "server %s drained and removed (no scale_down hook)", a->server);
    asc_action_end(pt, 1, d);
}

/* Build and start the scale hook of action a. 0, or -1 (action failed). */
static int start_scale_hook(struct action *a, const struct rule_rt *r, weir_hook_done_fn cb)
{
    struct env e = {.n = 0};
    char did[64];
    const struct weir_conf_autoscale *ac = &M.rt->conf->autoscale;
    int timeout = ac->hook_timeout_ms;
    const char *ev = a->dir == WEIR_AS_UP ? "scale_up" : "scale_down";

    asc_decision_id(a->id, did, sizeof(did));
    asc_env_add(&e, "WEIR_EVENT", "%s", ev);
    asc_env_add(&e, "WEIR_RULE", "%s", a->rule);
    asc_env_add(&e, "WEIR_POOL", "%s", a->pool);
    asc_env_add(&e, "WEIR_METRIC", "%s", weir_as_metric_name(r->conf->metric));
    asc_env_add(&e, "WEIR_VALUE", "%.3f", r->has_value ? r->value : 0.0);
    asc_env_add(&e, "WEIR_THRESHOLD", "%.3f", r->last.threshold);
    asc_env_add(&e, "WEIR_SERVERS", "%d", a->before);
    asc_env_add(&e, "WEIR_DESIRED", "%d", a->desired);
    asc_env_add(&e, "WEIR_DECISION_ID", "%s", did);
    if (a->server != NULL)
        asc_env_add(&e, "WEIR_SERVER", "%s", a->server);
    asc_env_admin(&e);
    json_t *in = json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:i,s:i,s:s,s:s*,s:o}", "event", ev, "rule", a->rule,
                           "pool", a->pool, "metric", weir_as_metric_name(r->conf->metric), "value",
                           asc_json_num(r->has_value ? r->value : 0.0), "threshold",
                           asc_json_num(r->last.threshold), "servers", a->before, "desired", a->desired,
                           "decision_id", did, "server", a->server, "window", asc_window_json(&r->win));
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
    asc_env_free(&e);
    if (rc != 0) {
        struct weir_hook_result res;
        memset(&res, 0, sizeof(res));
        res.spawn_errno = errno;
        asc_hook_result_json(a->record, a->hook, &res, timeout);
        return -1;
    }
    a->hook_running = 1;
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
void asc_action_start(struct rule_rt *r, struct pool_track *pt, const struct weir_pool *p, json_t *rec)
{
    const struct weir_as_verdict *v = &r->last;
    struct action *a = calloc(1, sizeof(*a));
    const struct weir_conf_as_step *step = v->dir == WEIR_AS_UP ? &r->conf->up : &r->conf->down;

    if (a == NULL || (a->rule = strdup(r->name)) == NULL || (a->pool = strdup(p->name)) == NULL ||
        (step->hook != NULL && (a->hook = strdup(step->hook)) == NULL)) {
        asc_action_free(a);
        weir_log_error("autoscale: out of memory starting an action of rule '%s'", r->name);
        return;
    }
    a->dir = v->dir;
    a->desired = v->desired;
    a->before = (int)p->set.n;
    a->id = json_integer_value(json_object_get(rec, "id"));
    a->started_ms = asc_now_ms();
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
                asc_action_end(pt, 0, "scale_up hook could not be started");
        }
        return;
    }
    struct weir_server *s = pick_victim(p);
    if (s == NULL || (a->server = strdup(s->address)) == NULL) {
        asc_action_end(pt, 0, "no available server to remove");
        return;
    }
    a->server_id = s->id;
    json_object_set_new(rec, "server", json_string(s->address));
    a->phase = PH_DOWN_DRAIN;
    a->drain_started_ms = asc_now_ms();
    weir_pool_edit_set_admin(s, WEIR_ADMIN_DRAIN, p->name);
    weir_log_info("autoscale: rule '%s' pool '%s': draining server %s (%ld in flight, up to %lld ms)",
                  r->name, p->name, s->address, weir_server_active(s), (long long)a->drain_ms);
    drain_poll_arm();
}

/* Move an action forward (called every tick and every drain poll). */
void asc_action_progress(struct pool_track *pt, const struct weir_pool *p)
{
    struct action *a = pt->act;
    int64_t t = asc_now_ms();

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
            struct known *k = asc_known_find(pt, id);
            verified += k != NULL && k->verified;
        }
        if (wanted < 1)
            wanted = 1;
        if (verified >= wanted) {
            char d[160];
            snprintf(d, sizeof(d), "%d new server(s) verified %lld ms after the decision", verified,
                     (long long)(t - a->started_ms));
            json_object_set_new(a->record, "verified_ms", json_integer((json_int_t)(t - a->started_ms)));
            asc_action_end(pt, 1, d);
        } else if (t - a->started_ms >= a->warmup_ms) {
            char d[200];
            snprintf(
                d, sizeof(d),
                "unverified: %d of %d new server(s) proved themselves within warmup_ms %lld (%d appeared)",
                verified, wanted, (long long)a->warmup_ms, fresh);
            asc_action_end(pt, 0, d);
        }
        return;
    }
    if (a->phase != PH_DOWN_DRAIN)
        return;
    struct weir_server *s = asc_pool_server_by_id(p, a->server_id);
    if (s == NULL) {
        asc_action_end(pt, 0, "the server left the pool while draining (reload or runtime API)");
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
    struct rule_rt *r = asc_rule_find(a->rule);
    if (r == NULL || r->conf == NULL || start_scale_hook(a, r, down_hook_done) != 0) {
        weir_pool_edit_set_admin(s, WEIR_ADMIN_READY, a->pool);
        asc_action_end(pt, 0, "scale_down hook could not be started; server set ready again");
    }
}

void asc_drain_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_rt *rt = weir_rt_current();
    struct pool_track *pt, *next;

    for (pt = LIST_FIRST(&M.pools); pt != NULL; pt = next) {
        next = LIST_NEXT(pt, link);
        if (pt->act != NULL && pt->act->phase == PH_DOWN_DRAIN)
            asc_action_progress(pt, asc_rt_pool(rt, pt->name));
    }
    weir_rt_release(rt);
}
