/*
 * autoscaler_int.h - the autoscale engine's internals, shared by its three
 * files: autoscaler.c (records, pools, rules, alerts, the tick),
 * autoscaler_action.c (scale-up / scale-down actions and their hooks) and
 * autoscaler_view.c (GET /autoscale, GET /alerts, /metrics). Not a public
 * header. Control thread only.
 */
#ifndef WEIR_SRC_AUTOSCALER_INT_H
#define WEIR_SRC_AUTOSCALER_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <jansson.h>

#include "weir/autoscale.h"
#include "weir/autoscale_metrics.h"
#include "weir/hook.h"
#include "weir/runtime.h"
#include "weir/server.h"

#define MAX_RECORDS   1000
#define VALUES_KEPT   256 /* per rule: the values shown for a breach's for window */
#define DRAIN_POLL_MS 100

enum rule_alert { RA_AT_MAX = 0, RA_NOT_CAPACITY_BOUND, RA_HOOK_FAILED, RA_N };
extern const char *const asc_rule_alert_names[RA_N];

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
    int quiet_polls;  /* consecutive drain polls with nothing in flight */
    json_t *record;   /* the decision record (borrowed from the ring, retained) */
    char *hook;       /* NULL: no hook for this direction */
    int hook_ok;      /* scale-up hook finished well (or none) */
    int hook_running; /* its hook has not been reaped yet */
    int orphan;       /* ended while its hook ran: freed by the hook's callback */
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

struct asc_state {
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
};
extern struct asc_state M; /* the engine (autoscaler.c) */

/* ---- shared by autoscaler.c, autoscaler_action.c, autoscaler_view.c ---- */

int64_t asc_now_ms(void);
long long asc_wall_ms(void);
const struct weir_pool *asc_rt_pool(const struct weir_rt *rt, const char *name);
struct weir_server *asc_pool_server_by_id(const struct weir_pool *p, unsigned id);
void asc_server_counts(const struct weir_server *s, uint64_t *req, uint64_t *err);
double asc_json_num(double v);
/* A new decision record in the ring (the ring and the caller each hold a reference). */
json_t *asc_record_new(const char *rule, const char *pool, const char *metric);
void asc_decision_id(long long id, char *buf, size_t size);
struct pool_track *asc_pool_get(const char *name, int create);
struct known *asc_known_find(struct pool_track *pt, unsigned id);
struct rule_rt *asc_rule_find(const char *name);
json_t *asc_window_json(const struct weir_as_window *w);

/* A hook's environment: "NAME=value" strings, NULL-terminated. */
struct env {
    char *v[24];
    int n;
};
void asc_env_add(struct env *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void asc_env_free(struct env *e);
void asc_env_admin(struct env *e);
void asc_hook_result_json(json_t *rec, const char *path, const struct weir_hook_result *r, int timeout_ms);

/* Actions (autoscaler_action.c): one per pool at a time. */
void asc_action_start(struct rule_rt *r, struct pool_track *pt, const struct weir_pool *p, json_t *rec);
void asc_action_progress(struct pool_track *pt, const struct weir_pool *p);
void asc_action_end(struct pool_track *pt, int ok, const char *why);
void asc_action_free(struct action *a);
void asc_drain_poll_cb(evutil_socket_t fd, short what, void *arg);

#endif
