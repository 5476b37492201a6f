/*
 * history.h - the last 15 minutes of the dashboard's charts, kept by weir
 * itself so that a dashboard opened during an incident shows what led to
 * it, not an empty chart.
 *
 * Once a second the control thread takes a small snapshot: the global
 * counters (requests, 5xx, upstream errors, bytes), the global 10-second
 * latency percentiles and the requests of the first WEIR_HISTORY_POOLS
 * pools. GET /history serves them in the shape of GET /stats documents
 * (reduced to those fields), oldest first, so the page replays them through
 * the same code as its live polls. 900 points, a fixed ~0.5 MiB.
 *
 * Control thread only.
 */
#ifndef WEIR_HISTORY_H
#define WEIR_HISTORY_H

#include <event2/event.h>
#include <jansson.h>

#define WEIR_HISTORY_POINTS 900
#define WEIR_HISTORY_POOLS  8

int weir_history_start(struct event_base *base);
void weir_history_stop(void);

/* {"interval_ms": 1000, "points": [ {time_ms, uptime_s, global{...}, pools[...]}, ... ]}.
 * New reference, NULL on allocation failure. */
json_t *weir_history_json(void);

#endif
