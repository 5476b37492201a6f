/*
 * autoscaler.h - the autoscale engine on the control thread: every
 * autoscale.interval_ms it samples the pools that rules and alerts watch
 * (autoscale_metrics.h), evaluates them (autoscale.h), and acts:
 *
 *   scale-up    runs the rule's scale_up hook (hook.h) with WEIR_DESIRED;
 *               the action completes when the new servers have proven they
 *               can serve (a passed health check after they appeared, or,
 *               without checks, requests answered without error) within the
 *               rule's warmup_ms; then the cooldown starts. A hook that
 *               fails, or servers that never prove themselves, fail the
 *               action: the rule's hook_failed alert fires, no cooldown.
 *   scale-down  picks the server (fewest requests in flight; among equals
 *               the most recently added), drains it (no new requests, those
 *               in flight finish, at most drain_ms), runs the scale_down
 *               hook with WEIR_SERVER, and removes the server from the pool
 *               when the hook succeeds (on failure it is set ready again).
 *
 * One action per pool at a time. Every decision is kept (the last 1,000,
 * with the numbers behind it), logged in one error-log line and counted for
 * /metrics. State (breach timers, cooldowns, alert states) is kept by rule
 * and alert name across reloads and runtime API changes.
 *
 * Control thread only.
 */
#ifndef WEIR_AUTOSCALER_H
#define WEIR_AUTOSCALER_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

/* Start ticking on the control thread's base; the rules come from the
 * current snapshot on every tick (so reloads need no call). 0 or -1. */
int weir_autoscaler_start(struct event_base *base);

/* Stop: kill running hooks, free everything. Safe when not started. */
void weir_autoscaler_stop(void);

/* GET /autoscale and GET /alerts documents (new references; NULL on
 * allocation failure). */
json_t *weir_autoscaler_json(void);
json_t *weir_autoscaler_alerts_json(void);

/* Append the weir_autoscale_* and weir_alert_* metric families. 0 or -1. */
int weir_autoscaler_metrics(struct evbuffer *out);

#endif
