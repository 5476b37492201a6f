/*
 * admin_autoscale.h - the admin endpoint's autoscale pages:
 *
 *   GET /autoscale   rules (live value, thresholds, breach timers, cooldown
 *                    left, servers / desired, role) and the last 1,000
 *                    decision records
 *   GET /alerts      every alert's state (ok, pending, firing + severity,
 *                    resolved), configured alerts and the rules' own
 *   GET /history     the last 15 minutes of the dashboard's charts (history.h)
 *
 * Control thread (admin callbacks).
 */
#ifndef WEIR_ADMIN_AUTOSCALE_H
#define WEIR_ADMIN_AUTOSCALE_H

#include <event2/http.h>

/* Serve `seg` (the only path segment) when it is one of these pages:
 * returns 1 after replying, 0 when seg is not ours. */
int weir_admin_autoscale_route(struct evhttp_request *req, const char *seg, int is_get);

#endif
