/*
 * conf_autoscale.c - the `autoscale` section: evaluation settings, scaling
 * rules, alerts and the Redis leader lease (struct weir_conf_autoscale).
 *
 * Everything a rule refers to is checked here, with FILE:LINE: the pool
 * exists in the same file (whatever the order of the sections), the metric
 * is known, above > below, min_servers <= max_servers, threshold or target
 * mode (not both), hooks are executable files. The semantics are in
 * autoscale.h.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_autoscale.h"
#include "weir/conf_autoscale.h"

#define AS_MAX_SERVERS 1000
#define AS_MAX_TICKS   900 /* window_ms / interval_ms: statistics kept per tick */
#define AS_MAX_WINDOW  900000

static const struct choice metric_choices[] = {
    {"rps", WEIR_ASM_RPS},
    {"rps_per_server", WEIR_ASM_RPS_PER_SERVER},
    {"p50_ms", WEIR_ASM_P50_MS},
    {"p95_ms", WEIR_ASM_P95_MS},
    {"p99_ms", WEIR_ASM_P99_MS},
    {"mean_ms", WEIR_ASM_MEAN_MS},
    {"error_rate", WEIR_ASM_ERROR_RATE},
    {"inflight_per_server", WEIR_ASM_INFLIGHT_PER_SERVER},
    {"healthy_servers", WEIR_ASM_HEALTHY_SERVERS},
    {"cache_hit_ratio", WEIR_ASM_CACHE_HIT_RATIO},
    {"origin_rps", WEIR_ASM_ORIGIN_RPS},
    {NULL, 0},
};

const char *weir_as_metric_name(int metric)
{
    if (metric < 0 || metric >= WEIR_ASM_N)
        return "?";
    return metric_choices[metric].name;
}

int weir_as_metric_find(const char *name)
{
    for (const struct choice *c = metric_choices; c->name != NULL; c++)
        if (strcmp(c->name, name) == 0)
            return c->value;
    return -1;
}

int weir_as_metric_is_latency(int metric)
{
    return metric == WEIR_ASM_P50_MS || metric == WEIR_ASM_P95_MS || metric == WEIR_ASM_P99_MS ||
           metric == WEIR_ASM_MEAN_MS;
}

/* ---- key handlers ---------------------------------------------------------- */

/* Names show up in metrics labels, environment variables and log lines. */
static int is_name(const char *s)
{
    if (s[0] == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static void key_name(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                     void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!is_name(v)) {
        conf_err_at(L, s, "%s must be 1 to 64 characters from A-Z a-z 0-9 - _ . (got \"%s\")", path, v);
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

static void key_hook(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                     void *obj)
{
    const char *v = config_setting_get_string(s);

    if (v[0] == '\0') {
        conf_err_at(L, s, "%s must not be empty", path);
        return;
    }
    if (access(v, X_OK) != 0) {
        conf_err_at(L, s, "%s: hook '%s' is not an executable file: %s", path, v, strerror(errno));
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

static void key_pool_ref(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    const char *v = config_setting_get_string(s);
    const config_setting_t *root = s;
    while (config_setting_parent(root) != NULL)
        root = config_setting_parent(root);
    const config_setting_t *pools = config_setting_get_member(root, "pools");
    char list[256] = "";
    size_t used = 0;

    for (int i = 0; pools != NULL && i < config_setting_length(pools); i++) {
        const config_setting_t *p = config_setting_get_elem(pools, (unsigned)i);
        const char *name = NULL;
        if (p == NULL || config_setting_lookup_string(p, "name", &name) != CONFIG_TRUE)
            continue;
        if (strcmp(name, v) == 0) {
            conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
            return;
        }
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", name);
        if (used >= sizeof(list))
            used = sizeof(list) - 1;
    }
    conf_err_at(L, s, "unknown pool '%s' in %s (defined pools: %s)", v, path, used ? list : "none");
}

static void step_up_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_as_rule *r = obj;
    r->up.enabled = 1;
    r->up.has_threshold = config_setting_get_member(s, "above") != NULL;
    r->up.line = conf_line(s);
}

static void step_down_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                           void *obj)
{
    struct weir_conf_as_rule *r = obj;
    r->down.enabled = 1;
    r->down.has_threshold = config_setting_get_member(s, "below") != NULL;
    r->down.line = conf_line(s);
}

#define STEP_KEYS(G, THR)                                                                                    \
    KEY_FLOAT(THR, struct weir_conf_as_rule, G.threshold, -1e12, 1e12),                                      \
        KEY_INT("for_ms", struct weir_conf_as_rule, G.for_ms, 0, MS_MAX),                                    \
        KEY_INT("step", struct weir_conf_as_rule, G.step, 1, AS_MAX_SERVERS),                                \
        KEY_INT("step_pct", struct weir_conf_as_rule, G.step_pct, 1, 1000),                                  \
        KEY_INT("cooldown_ms", struct weir_conf_as_rule, G.cooldown_ms, 0, MS_MAX),                          \
        KEY_FN("hook", K_STR, 0, struct weir_conf_as_rule, G.hook, key_hook)

static const struct key up_keys[] = {STEP_KEYS(up, "above")};
static const struct key down_keys[] = {STEP_KEYS(down, "below")};

static void key_target(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_as_rule *r = obj;
    if (!(r->target > 0)) {
        conf_err_at(L, s, "%s must be greater than 0 (got %g)", path, r->target);
        return;
    }
    r->has_target = 1;
}

static const struct key rule_keys[] = {
    KEY_FN("name", K_STR, KF_REQUIRED, struct weir_conf_as_rule, name, key_name),
    KEY_FN("pool", K_STR, KF_REQUIRED, struct weir_conf_as_rule, pool, key_pool_ref),
    KEY_ENUM("metric", struct weir_conf_as_rule, metric, metric_choices),
    KEY_INT("window_ms", struct weir_conf_as_rule, window_ms, 1000, AS_MAX_WINDOW),
    KEY_INT("min_servers", struct weir_conf_as_rule, min_servers, 0, AS_MAX_SERVERS),
    KEY_INT("max_servers", struct weir_conf_as_rule, max_servers, 1, AS_MAX_SERVERS),
    {.name = "target",
     .kind = K_FLOAT,
     .fmin = -1e12,
     .fmax = 1e12,
     .off = offsetof(struct weir_conf_as_rule, target),
     .fn = key_target},
    KEY_FLOAT("busy_inflight", struct weir_conf_as_rule, busy_inflight, 0, 1e6),
    KEY_INT("warmup_ms", struct weir_conf_as_rule, warmup_ms, 1, MS_MAX),
    KEY_INT("drain_ms", struct weir_conf_as_rule, drain_ms, 1, MS_MAX),
    KEY_FN("alert_hook", K_STR, 0, struct weir_conf_as_rule, alert_hook, key_hook),
    KEY_GROUP("scale_up", up_keys, step_up_post),
    KEY_GROUP("scale_down", down_keys, step_down_post),
};

static void rule_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_as_rule *r = el;

    r->metric = -1;
    r->window_ms = 10000;
    r->min_servers = 1;
    r->max_servers = 10;
    r->busy_inflight = 1.0;
    r->warmup_ms = 120000;
    r->drain_ms = 30000;
    r->up.for_ms = 3000;
    r->up.step = 1;
    r->up.cooldown_ms = 30000;
    r->down.for_ms = 60000;
    r->down.step = 1;
    r->down.cooldown_ms = 300000;
    r->line = conf_line(s);
}

static void key_alert_threshold(struct loader *L, const struct key *k, const config_setting_t *s,
                                const char *path, void *obj)
{
    struct weir_conf_as_alert *a = obj;
    if (strcmp(k->name, "warning") == 0)
        a->has_warning = 1;
    else
        a->has_critical = 1;
}

static const struct key alert_keys[] = {
    KEY_FN("name", K_STR, KF_REQUIRED, struct weir_conf_as_alert, name, key_name),
    KEY_FN("pool", K_STR, KF_REQUIRED, struct weir_conf_as_alert, pool, key_pool_ref),
    KEY_ENUM("metric", struct weir_conf_as_alert, metric, metric_choices),
    KEY_INT("window_ms", struct weir_conf_as_alert, window_ms, 1000, AS_MAX_WINDOW),
    KEY_BOOL("below", struct weir_conf_as_alert, below),
    {.name = "warning",
     .kind = K_FLOAT,
     .fmin = -1e12,
     .fmax = 1e12,
     .off = offsetof(struct weir_conf_as_alert, warning),
     .fn = key_alert_threshold},
    {.name = "critical",
     .kind = K_FLOAT,
     .fmin = -1e12,
     .fmax = 1e12,
     .off = offsetof(struct weir_conf_as_alert, critical),
     .fn = key_alert_threshold},
    KEY_INT("for_ms", struct weir_conf_as_alert, for_ms, 0, MS_MAX),
    KEY_INT("keep_firing_for_ms", struct weir_conf_as_alert, keep_firing_for_ms, 0, MS_MAX),
    KEY_FN("hook", K_STR, 0, struct weir_conf_as_alert, hook, key_hook),
};

static void alert_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_as_alert *a = el;

    a->metric = -1;
    a->window_ms = 60000;
    a->line = conf_line(s);
}

static void key_rules(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    struct weir_conf_autoscale *as = obj;

    as->rules = conf_walk_list(L, s, path, "rule", sizeof(*as->rules), &as->nrules, rule_keys,
                               WEIR_ARRAY_LEN(rule_keys), rule_init);
}

static void key_alerts(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_autoscale *as = obj;

    as->alerts = conf_walk_list(L, s, path, "alert", sizeof(*as->alerts), &as->nalerts, alert_keys,
                                WEIR_ARRAY_LEN(alert_keys), alert_init);
}

static void redis_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_autoscale *as = obj;

    if (config_setting_get_member(s, "address") == NULL) {
        conf_err_at(L, s, "missing required key 'address' in %s", path);
        return;
    }
    as->redis.enabled = 1;
}

static void key_redis_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                           void *obj)
{
    struct weir_conf_autoscale *as = obj;
    const char *why = NULL;
    const char *v = config_setting_get_string(s);

    if (weir_conf_parse_addr(v, &as->redis.addr.ss, &as->redis.addr.len, &why) != 0 ||
        strncmp(v, "*:", 2) == 0) {
        conf_err_at(L, s, "%s: bad address '%s': %s", path, v, why ? why : "a host is required");
        return;
    }
    conf_set_str(L, &as->redis.addr.text, v);
    as->redis.addr.line = conf_line(s);
}

static const struct key redis_keys[] = {
    KEY_CALL("address", K_STR, 0, key_redis_addr),
    KEY_FN("key", K_STR, KF_NONEMPTY, struct weir_conf_autoscale, redis.key, conf_key_visible),
    KEY_INT("lease_ms", struct weir_conf_autoscale, redis.lease_ms, 500, MS_MAX),
};

static const struct key autoscale_keys[] = {
    KEY_INT("interval_ms", struct weir_conf_autoscale, interval_ms, 100, 60000),
    KEY_BOOL("dry_run", struct weir_conf_autoscale, dry_run),
    KEY_INT("hook_timeout_ms", struct weir_conf_autoscale, hook_timeout_ms, 100, MS_MAX),
    KEY_CALL("rules", K_LIST, 0, key_rules),
    KEY_CALL("alerts", K_LIST, 0, key_alerts),
    KEY_GROUP("redis", redis_keys, redis_post),
};

/* ---- cross checks ---------------------------------------------------------- */

static const config_setting_t *elem_member(const config_setting_t *list, size_t i, const char *name)
{
    const config_setting_t *e = list ? config_setting_get_elem(list, (unsigned)i) : NULL;
    const config_setting_t *m = e ? config_setting_get_member(e, name) : NULL;
    return m ? m : e;
}

static void check_rules(struct loader *L, const config_setting_t *list, struct weir_conf_autoscale *as)
{
    for (size_t i = 0; i < as->nrules; i++) {
        struct weir_conf_as_rule *r = &as->rules[i];
        const config_setting_t *e = list ? config_setting_get_elem(list, (unsigned)i) : NULL;
        char p[64];

        if (e == NULL || config_setting_type(e) != CONFIG_TYPE_GROUP)
            continue;
        snprintf(p, sizeof(p), "autoscale.rules[%zu]", i);
        for (size_t j = 0; j < i && r->name != NULL; j++)
            if (as->rules[j].name != NULL && strcmp(as->rules[j].name, r->name) == 0)
                conf_err_at(L, elem_member(list, i, "name"),
                            "duplicate rule name '%s' in %s.name (also at line %d)", r->name, p,
                            as->rules[j].line);
        if (r->metric < 0)
            conf_err_at(L, e, "missing required key 'metric' in %s", p);
        if (r->min_servers > r->max_servers)
            conf_err_at(L, elem_member(list, i, "min_servers"),
                        "%s.min_servers (%d) is above max_servers (%d)", p, r->min_servers, r->max_servers);
        if (!r->up.enabled && !r->down.enabled)
            conf_err_at(L, e, "%s needs scale_up and/or scale_down", p);
        if (r->has_target) {
            if (r->up.has_threshold || r->down.has_threshold)
                conf_err_at(L, elem_member(list, i, "target"),
                            "%s: target mode and above/below thresholds exclude each other", p);
        } else {
            if (r->up.enabled && !r->up.has_threshold)
                conf_err_at(L, elem_member(list, i, "scale_up"),
                            "%s.scale_up needs 'above' (or the rule a 'target')", p);
            if (r->down.enabled && !r->down.has_threshold)
                conf_err_at(L, elem_member(list, i, "scale_down"),
                            "%s.scale_down needs 'below' (or the rule a 'target')", p);
            if (r->up.enabled && r->down.enabled && r->up.has_threshold && r->down.has_threshold &&
                r->up.threshold <= r->down.threshold)
                conf_err_at(L, elem_member(list, i, "scale_up"),
                            "%s: scale_up.above (%g) must be greater than scale_down.below (%g)", p,
                            r->up.threshold, r->down.threshold);
        }
        if (r->window_ms < as->interval_ms || r->window_ms / as->interval_ms > AS_MAX_TICKS)
            conf_err_at(L, elem_member(list, i, "window_ms"),
                        "%s.window_ms (%d) must be between interval_ms (%d) and %d ticks of it", p,
                        r->window_ms, as->interval_ms, AS_MAX_TICKS);
    }
}

static void check_alerts(struct loader *L, const config_setting_t *list, struct weir_conf_autoscale *as)
{
    for (size_t i = 0; i < as->nalerts; i++) {
        struct weir_conf_as_alert *a = &as->alerts[i];
        const config_setting_t *e = list ? config_setting_get_elem(list, (unsigned)i) : NULL;
        char p[64];

        if (e == NULL || config_setting_type(e) != CONFIG_TYPE_GROUP)
            continue;
        snprintf(p, sizeof(p), "autoscale.alerts[%zu]", i);
        for (size_t j = 0; j < i && a->name != NULL; j++)
            if (as->alerts[j].name != NULL && strcmp(as->alerts[j].name, a->name) == 0)
                conf_err_at(L, elem_member(list, i, "name"),
                            "duplicate alert name '%s' in %s.name (also at line %d)", a->name, p,
                            as->alerts[j].line);
        if (a->metric < 0)
            conf_err_at(L, e, "missing required key 'metric' in %s", p);
        if (!a->has_warning && !a->has_critical)
            conf_err_at(L, e, "%s needs 'warning' and/or 'critical'", p);
        if (a->has_warning && a->has_critical &&
            (a->below ? a->critical > a->warning : a->critical < a->warning))
            conf_err_at(L, elem_member(list, i, "critical"), "%s.critical (%g) must be %s warning (%g)", p,
                        a->critical, a->below ? "at or below" : "at or above", a->warning);
        if (a->window_ms < as->interval_ms || a->window_ms / as->interval_ms > AS_MAX_TICKS)
            conf_err_at(L, elem_member(list, i, "window_ms"),
                        "%s.window_ms (%d) must be between interval_ms (%d) and %d ticks of it", p,
                        a->window_ms, as->interval_ms, AS_MAX_TICKS);
    }
}

void conf_key_autoscale(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf *c = obj;
    struct weir_conf_autoscale *as = &c->autoscale;
    char vbuf[128];

    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        conf_err_at(L, s, "%s must be a group { ... } (got %s)", path, conf_describe(s, vbuf, sizeof(vbuf)));
        return;
    }
    as->enabled = 1;
    as->interval_ms = 1000;
    as->hook_timeout_ms = 30000;
    as->redis.lease_ms = 5000;
    conf_set_str(L, &as->redis.key, "weir:autoscale:leader");
    conf_walk_group(L, s, path, autoscale_keys, WEIR_ARRAY_LEN(autoscale_keys), as);
    if (as->redis.enabled && as->redis.lease_ms < 2 * as->interval_ms)
        conf_err_at(
            L, config_setting_get_member(s, "redis"),
            "%s.redis.lease_ms (%d) must be at least twice interval_ms (%d): the lease is renewed every tick",
            path, as->redis.lease_ms, as->interval_ms);
    check_rules(L, config_setting_get_member(s, "rules"), as);
    check_alerts(L, config_setting_get_member(s, "alerts"), as);
}

/* ---- copy and free --------------------------------------------------------- */

static void step_free(struct weir_conf_as_step *st)
{
    free(st->hook);
}

void weir_conf_autoscale_free(struct weir_conf_autoscale *a)
{
    for (size_t i = 0; i < a->nrules; i++) {
        struct weir_conf_as_rule *r = &a->rules[i];
        free(r->name);
        free(r->pool);
        free(r->alert_hook);
        step_free(&r->up);
        step_free(&r->down);
    }
    free(a->rules);
    for (size_t i = 0; i < a->nalerts; i++) {
        free(a->alerts[i].name);
        free(a->alerts[i].pool);
        free(a->alerts[i].hook);
    }
    free(a->alerts);
    free(a->redis.addr.text);
    free(a->redis.key);
    a->rules = NULL;
    a->alerts = NULL;
    a->nrules = a->nalerts = 0;
    a->redis.addr.text = NULL;
    a->redis.key = NULL;
}

static char *sdup(const char *s, int *oom)
{
    char *d;
    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

int weir_conf_autoscale_dup(struct weir_conf_autoscale *d, const struct weir_conf_autoscale *s)
{
    int oom = 0;

    d->redis.addr.text = sdup(s->redis.addr.text, &oom);
    d->redis.key = sdup(s->redis.key, &oom);
    d->rules = NULL;
    d->alerts = NULL;
    d->nrules = d->nalerts = 0;
    if (s->nrules > 0) {
        d->rules = calloc(s->nrules, sizeof(*d->rules));
        if (d->rules == NULL)
            return -1;
        d->nrules = s->nrules;
        for (size_t i = 0; i < s->nrules; i++) {
            struct weir_conf_as_rule *r = &d->rules[i];
            *r = s->rules[i];
            r->name = sdup(s->rules[i].name, &oom);
            r->pool = sdup(s->rules[i].pool, &oom);
            r->alert_hook = sdup(s->rules[i].alert_hook, &oom);
            r->up.hook = sdup(s->rules[i].up.hook, &oom);
            r->down.hook = sdup(s->rules[i].down.hook, &oom);
        }
    }
    if (s->nalerts > 0) {
        d->alerts = calloc(s->nalerts, sizeof(*d->alerts));
        if (d->alerts == NULL)
            return -1;
        d->nalerts = s->nalerts;
        for (size_t i = 0; i < s->nalerts; i++) {
            struct weir_conf_as_alert *a = &d->alerts[i];
            *a = s->alerts[i];
            a->name = sdup(s->alerts[i].name, &oom);
            a->pool = sdup(s->alerts[i].pool, &oom);
            a->hook = sdup(s->alerts[i].hook, &oom);
        }
    }
    return oom ? -1 : 0;
}
