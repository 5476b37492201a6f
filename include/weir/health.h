/*
 * health.h - active health checks, passive outlier ejection, slow start,
 * admin drain/maint, and the per-server state every worker reads.
 *
 * Active checks run on the control thread (its own event_base): one timer
 * per checked server, with jitter, each check non-blocking with its own
 * timeout. Passive results are reported by workers lock-free (atomics); a
 * worker may eject a server itself (CAS on server->state). Re-admission after
 * eject time, slow-start ramps and every other state change happen on the
 * control thread. Every transition is logged once with its reason.
 *
 * Effective state (server->state, read by every pick) is derived from the
 * admin state (ready / drain / maint) and the health state (up / down /
 * ejected): an admin state other than ready wins.
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

/* Set an admin state (control thread). Returns 0. */
int weir_health_set_admin(struct weir_server *s, int admin_state, const char *pool_name);

/* Last active check of a server, for the stats endpoint (control thread):
 * fills the fields, returns 0, or -1 when the server is not checked. */
struct weir_health_view {
    int checked;          /* active checks configured */
    int health_state;     /* WEIR_SRV_UP / DOWN / EJECTED */
    int admin_state;      /* enum weir_admin_state */
    int last_ok;          /* last check passed */
    int last_status;      /* HTTP status of the last check, 0 for tcp / none */
    double last_ms;       /* duration of the last check */
    long long last_at_ms; /* wall-clock ms of the last check, 0 = never */
    char last_detail[128];/* e.g. "200 OK", "connect refused", "timeout", "body mismatch" */
    int ejections;        /* times passively ejected */
    int ramp_permille;    /* slow start progress, 1000 = full */
};
int weir_health_view(const struct weir_server *s, struct weir_health_view *out);

#endif
