/*
 * health.h - active health checks, passive outlier ejection, slow start,
 * admin drain/maint, and the per-server state every worker reads.
 *
 * Active checks run on the control thread (its own event_base): one timer
 * per checked server, with jitter, each check non-blocking with its own
 * timeout. Passive results are reported by workers lock-free (atomics); a
 * worker may eject a server itself (CAS UP -> EJECTED on
 * server->health_state). Re-admission after eject time, slow-start ramps and
 * every other state change happen on the control thread. Every transition is
 * logged once with its reason.
 *
 * Effective state (server->state, read by every pick) is derived from the
 * admin state (ready / drain / maint) and the health state (up / down /
 * ejected): an admin state other than ready wins.
 *
 * The model, in one place:
 *   UP      -- fall consecutive failed checks -----------------> DOWN
 *   DOWN    -- rise consecutive passed checks -----------------> UP (slow start)
 *   UP      -- consecutive_failures failed exchanges (worker) --> EJECTED,
 *              unless weir_health_max_ejected(n, max_ejected_pct) servers of
 *              the pool are ejected already
 *   EJECTED -- eject time over (control tick, 100 ms) ---------> UP (slow start)
 *   EJECTED -- one failed check -------------------------------> DOWN
 * The k-th ejection lasts eject_ms * 2^(k-1), capped at max_eject_ms; k
 * (server->eject_level) goes down by one for every max_eject_ms the server
 * then stays up. A server added by a reload, or leaving MAINT, also ramps up.
 * A pool whose servers are all DOWN / EJECTED (DRAINING and MAINT aside) is
 * in panic mode when the pool allows it (logged on entering and leaving).
 */
#ifndef WEIR_HEALTH_H
#define WEIR_HEALTH_H

#include <event2/event.h>

#include "weir/runtime.h"
#include "weir/server.h"

/* What a worker saw at the end of one exchange with a server. */
enum weir_outcome {
    WEIR_OUTCOME_OK = 0,  /* a response (status < 500, or 5xx when count_5xx is off) */
    WEIR_OUTCOME_CONNECT, /* connect refused / failed / timed out */
    WEIR_OUTCOME_RESET,   /* connection lost before or during the response */
    WEIR_OUTCOME_TIMEOUT, /* no response within upstream_response_ms */
    WEIR_OUTCOME_5XX      /* a 5xx response */
};

/* Admin states (server admin requests). */
enum weir_admin_state { WEIR_ADMIN_READY = 0, WEIR_ADMIN_DRAIN, WEIR_ADMIN_MAINT };

/* Start the health subsystem on the control thread's base. Returns 0/-1. */
int weir_health_start(struct event_base *control_base);

/* Reconcile with a newly published snapshot: start checks for new servers,
 * stop them for servers no longer present, apply new check settings.
 * Control thread, after each weir_rt_publish. */
void weir_health_sync(const struct weir_rt *rt);

/* Stop every check and free the health state. Control thread, at exit. */
void weir_health_stop(void);

/* Report an exchange's outcome (passive checks). Worker threads; lock-free. */
void weir_health_report(const struct weir_pool *pool, struct weir_server *s, int outcome);

/* 1 when every server of the pool that is not drained/maint is down or
 * ejected (panic mode applies if the pool allows it). Any thread. */
int weir_health_pool_all_down(const struct weir_pool *pool);

/* Set an admin state (control thread). Returns 0, or -1 (nothing changed)
 * when admin_state is not an enum weir_admin_state value. DRAIN lets
 * in-flight requests finish; leaving MAINT for READY starts slow start. */
int weir_health_set_admin(struct weir_server *s, int admin_state, const char *pool_name);

/* Last active check of a server, for the stats endpoint (control thread):
 * fills the fields, returns 0, or -1 when the server is not checked. The
 * fields are filled in both cases (checked = 0 and no last check when the
 * pool has no active checks; states, ejections and ramp are always valid). */
struct weir_health_view {
    int checked;           /* active checks configured */
    int health_state;      /* WEIR_SRV_UP / DOWN / EJECTED */
    int admin_state;       /* enum weir_admin_state */
    int last_ok;           /* last check passed */
    int last_status;       /* HTTP status of the last check, 0 for tcp / none */
    double last_ms;        /* duration of the last check */
    long long last_at_ms;  /* wall-clock ms of the last check, 0 = never */
    char last_detail[128]; /* e.g. "status 200", "connect refused", "timeout after 500 ms" */
    int ejections;         /* times passively ejected */
    int ramp_permille;     /* slow start progress, 1000 = full */
};
int weir_health_view(const struct weir_server *s, struct weir_health_view *out);

/*
 * ---- decision logic ----
 * Pure functions (no I/O, no globals, any thread): the module's policy in one
 * place, unit-tested without sockets (tests/unit/test_health.c).
 */

/* Effective state (what server->state holds) from the admin state
 * (enum weir_admin_state) and the health state (UP / DOWN / EJECTED):
 * DRAIN -> DRAINING, MAINT -> MAINT, READY -> the health state. */
int weir_health_effective(int admin_state, int health_state);

/* Consecutive active-check results of one server (control thread). */
struct weir_health_counts {
    int ok_streak;   /* consecutive passed checks */
    int fail_streak; /* consecutive failed checks */
};

/* Count one check result: a pass clears the failure streak, a failure clears
 * the pass streak. */
void weir_health_count(struct weir_health_counts *c, int passed);

/* Health state after a check result already counted in c:
 *   UP      -> DOWN once fail_streak >= fall;
 *   DOWN    -> UP   once ok_streak >= rise;
 *   EJECTED -> DOWN on any failed check (the passive verdict is confirmed),
 *              a pass leaves it EJECTED until its eject time ends.
 * Returns health_state unchanged otherwise. */
int weir_health_next_state(int health_state, const struct weir_health_counts *c, int passed, int rise,
                           int fall);

/* Ejection time of the level-th ejection (level >= 1):
 * eject_ms * 2^(level-1), capped at max_eject_ms (no overflow for any level).
 * Level <= 0 counts as 1. */
long long weir_health_eject_ms(int eject_ms, int max_eject_ms, int level);

/* How many of a pool's n servers may be ejected at once: floor(n * pct / 100),
 * but at least 1 when pct > 0 and n > 0 (Envoy's rule: with 50 % of 2, or of
 * 3, servers one may be ejected); 0 when pct is 0 (passive ejection off). */
size_t weir_health_max_ejected(size_t n, int pct);

/* Slow-start ramp, in permille of the weight, elapsed_ms after the server
 * came back: linear from 0 to 1000 over slow_start_ms; 1000 when
 * slow_start_ms <= 0 or elapsed_ms >= slow_start_ms. */
int weir_health_ramp(long long elapsed_ms, int slow_start_ms);

/* Judge an HTTP check response: pass (1) when lo <= status <= hi and, if
 * expect is not NULL, body[0..len) contains expect (byte substring).
 * Writes a short reason to detail (cap bytes, NUL-terminated), e.g.
 * "200", "status 500 not in 200-399", "body mismatch (no \"ok\")". */
int weir_health_eval_http(int status, const char *body, size_t len, int lo, int hi, const char *expect,
                          char *detail, size_t cap);

#endif
