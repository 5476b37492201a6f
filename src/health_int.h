/*
 * health_int.h - what health.c (the state model) and health_check.c (the
 * active-check I/O) share. Control thread only: nothing here is ever touched
 * by a worker.
 */
#ifndef WEIR_HEALTH_INT_H
#define WEIR_HEALTH_INT_H

#include <event2/event.h>

#include "weir/health.h"
#include "weir/runtime.h"

struct weir_hcheck; /* a server's active check (health_check.c) */

/* The control thread's record of one server (server->health). Created by
 * weir_health_sync for every server of the snapshot, freed when the server
 * leaves the configuration or at weir_health_stop. Holds a reference on the
 * server, so the object outlives the snapshots that dropped it. */
struct weir_hsrv {
    struct weir_server *s;     /* retained */
    struct weir_pool *pool;    /* in the health module's current snapshot */
    struct weir_hsrv *next;    /* every record, in sync order */
    int seen;                  /* mark for sync */
    struct weir_hcheck *check; /* NULL when the pool has no active checks */

    struct weir_health_counts counts;
    int last_ok;
    int last_status;
    double last_ms;
    long long last_at_ms; /* wall clock */
    char last_detail[128];

    int ramping;              /* slow start in progress */
    long long ramp_start_ms;  /* monotonic */
    long long level_since_ms; /* last eject_level decay step or last time not up */
};

/* Monotonic milliseconds. */
long long weir_health_now_ms(void);

/* health.c: an active check finished (never called for an aborted one). */
void weir_health_check_done(struct weir_hsrv *h, int passed, int status, const char *detail, double ms);

/* health_check.c: start, restart (settings changed) or keep the active
 * check of h as h->pool->conf->health says, stop it when the pool has none.
 * Returns 0, or -1 on allocation failure (the server is then not checked). */
int weir_hcheck_apply(struct weir_hsrv *h, struct event_base *base);
/* Abort any running check and free h->check (NULL afterwards). */
void weir_hcheck_stop(struct weir_hsrv *h);

#endif
