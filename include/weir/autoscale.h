/*
 * autoscale.h - the decision logic of autoscaling rules and alerts: pure
 * state machines over one metric value per tick (no I/O, no clock, no
 * globals), unit-tested on synthetic series (tests/unit/test_autoscale.c).
 *
 * The control thread (autoscale_run.c) feeds them every autoscale.interval_ms
 * with the pool's window statistics (autoscale_metrics.h) and acts on the
 * verdicts: it runs hooks, verifies new servers, drains and removes.
 *
 * Rules. A breach (threshold mode: value > above for scale-up, value <
 * below for scale-down; target mode: desired = ceil(servers * value /
 * target) outside a 10 % tolerance) must hold on every tick for the
 * direction's for_ms before anything happens; a tick without the breach
 * restarts that timer. Once held, the first reason that applies wins:
 *
 *   scale-up:   action_in_flight, at_max, not_capacity_bound (latency
 *               metric with inflight_per_server < busy_inflight), cooldown,
 *               follower, dry_run; otherwise scale_up
 *   scale-down: action_in_flight, at_min, unverified / unhealthy pool (the
 *               caller's `unsettled` reason), cooldown, follower, dry_run;
 *               otherwise scale_down
 *
 * A tick without data (no requests in the window, has_value = 0) never
 * scales up (no_data) and scales down only a pool whose servers are all
 * settled (an idle pool: the value counts as below every threshold).
 * An action resets both breach timers; its cooldown starts when the
 * caller reports it complete (weir_as_rule_done), and a failed action
 * starts none. Skips are recorded once per reason and direction (the
 * verdict's `record`), actions always.
 */
#ifndef WEIR_AUTOSCALE_H
#define WEIR_AUTOSCALE_H

#include <stdint.h>

#include "weir/conf.h"

enum weir_as_action { WEIR_AS_NONE = 0, WEIR_AS_SCALE_UP, WEIR_AS_SCALE_DOWN, WEIR_AS_SKIP };

/* Why a held breach did not act (verdict.reason). */
enum weir_as_reason {
    WEIR_ASR_NONE = 0,
    WEIR_ASR_COOLDOWN,
    WEIR_ASR_AT_MAX,
    WEIR_ASR_AT_MIN,
    WEIR_ASR_NOT_CAPACITY_BOUND,
    WEIR_ASR_ACTION_IN_FLIGHT,
    WEIR_ASR_UNVERIFIED,
    WEIR_ASR_UNHEALTHY,
    WEIR_ASR_NO_DATA,
    WEIR_ASR_DRY_RUN,
    WEIR_ASR_FOLLOWER,
    WEIR_ASR_N
};

enum weir_as_dir { WEIR_AS_UP = 0, WEIR_AS_DOWN = 1 };

/* One tick's facts about a rule's pool. */
struct weir_as_tick {
    int64_t now_ms;
    int has_value; /* 0: no data in the window */
    double value;
    int servers;                /* servers in the pool now */
    int unsettled;              /* 0, WEIR_ASR_UNVERIFIED or WEIR_ASR_UNHEALTHY: blocks scale-down */
    double inflight_per_server; /* for not_capacity_bound */
    int action_in_flight;       /* an action of this pool is running */
    int leader;                 /* 1: this instance may run scale hooks */
    int dry_run;
};

struct weir_as_rule_state {
    int64_t up_since, down_since;           /* breach start, -1 when none */
    int64_t up_cool_until, down_cool_until; /* cooldown end, 0 when none */
    int last_reason[2];                     /* last skip recorded per direction */
    int no_data;                            /* no_data already recorded for this gap */
};

struct weir_as_verdict {
    int action;       /* enum weir_as_action */
    int dir;          /* enum weir_as_dir of the held breach (action != NONE) */
    int reason;       /* enum weir_as_reason, for SKIP */
    int desired;      /* servers wanted after step and bounds */
    int record;       /* 1: write a decision record for this verdict */
    int64_t held_ms;  /* how long the breach had held */
    double threshold; /* above / below, or the target */
};

/* A fresh state (no breach, no cooldown). */
void weir_as_rule_state_init(struct weir_as_rule_state *st);

/* Evaluate rule r on tick t, update st, fill *out. Pure. */
void weir_as_rule_eval(const struct weir_conf_as_rule *r, struct weir_as_rule_state *st,
                       const struct weir_as_tick *t, struct weir_as_verdict *out);

/* The action of direction dir finished at now_ms: ok starts its cooldown;
 * a failure starts none. Both breach timers restart. */
void weir_as_rule_done(const struct weir_conf_as_rule *r, struct weir_as_rule_state *st, int dir, int ok,
                       int64_t now_ms);

/* Servers to add or remove per action for a pool of `servers`: step, or
 * ceil(servers * step_pct / 100) (at least 1) when step_pct is set. */
int weir_as_step_count(const struct weir_conf_as_step *s, int servers);

/* Target mode: ceil(servers * value / target); servers < 1 counts as 1. */
int weir_as_target_desired(int servers, double value, double target);

/* "cooldown", "at_max"... and "scale_up", "scale_down". */
const char *weir_as_reason_name(int reason);
const char *weir_as_action_name(int action, int dir);

/* ---- alerts ---- */

enum weir_alert_state { WEIR_ALERT_OK = 0, WEIR_ALERT_PENDING, WEIR_ALERT_FIRING, WEIR_ALERT_RESOLVED };
enum weir_alert_sev { WEIR_SEV_NONE = 0, WEIR_SEV_WARNING, WEIR_SEV_CRITICAL };

/* What an alert watches; taken from a struct weir_conf_as_alert, or built
 * by the control thread for a rule's own alerts (at_max...). */
struct weir_as_alert_def {
    int below;
    int has_warning, has_critical;
    double warning, critical;
    int for_ms, keep_firing_for_ms;
};

struct weir_as_alert_state {
    int state;    /* enum weir_alert_state */
    int severity; /* enum weir_alert_sev while pending/firing */
    int64_t pending_since, clear_since, changed_ms;
    double value; /* last value seen */
};

/* Transitions worth a hook and a log line. */
enum weir_alert_event {
    WEIR_AEV_NONE = 0,
    WEIR_AEV_FIRING,
    WEIR_AEV_RESOLVED,
    WEIR_AEV_PENDING,
    WEIR_AEV_CANCELLED
};

void weir_as_alert_def_from_conf(struct weir_as_alert_def *d, const struct weir_conf_as_alert *a);
void weir_as_alert_state_init(struct weir_as_alert_state *st);

/* Severity the value reaches (no data: NONE). Pure. */
int weir_as_alert_level(const struct weir_as_alert_def *d, int has_value, double value);

/* One tick: pending for for_ms before firing; a firing alert whose
 * severity changes fires again (FIRING event); it resolves only after the
 * condition has stayed clear for keep_firing_for_ms. Returns the event. */
int weir_as_alert_eval(const struct weir_as_alert_def *d, struct weir_as_alert_state *st, int has_value,
                       double value, int64_t now_ms);

const char *weir_alert_state_name(int state);
const char *weir_alert_sev_name(int sev);

#endif
