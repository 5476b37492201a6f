/*
 * tls_stats.h - the TLS part of GET /stats (JSON) and GET /metrics
 * (Prometheus text), rendered from the per-listener counters of tls.h.
 *
 * Pure functions of their arguments (they read the counters' atomics): the
 * admin thread calls them with the listeners of the running snapshot, the
 * process's counters and the current set's earliest certificate expiry.
 */
#ifndef WEIR_TLS_STATS_H
#define WEIR_TLS_STATS_H

#include <stddef.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "weir/tls.h"

/* One TLS listener as shown: its configured address and its counters. */
struct weir_tls_stats_listener {
    const char *address;
    const struct weir_tls_counters *counters;
};

/*
 * {"listeners": [{"address": "...", "handshakes": {"full": N, "resumed": N},
 *                 "failures": {"version": N, ..., "other": N}}, ...],
 *  "cert_expiry_seconds": S, "cert_expiry_days": D}
 * The expiry fields are seconds/whole days from now to not_after (negative
 * once expired), null when not_after is 0 (no certificate). New reference,
 * NULL on allocation failure.
 */
json_t *weir_tls_stats_json(const struct weir_tls_stats_listener *l, size_t n, time_t not_after, time_t now);

/*
 * Append the families weir_tls_handshakes_total{listen,kind=full|resumed},
 * weir_tls_handshake_failures_total{listen,reason} (every reason, zeros
 * included) and weir_tls_cert_expiry_seconds (only when not_after != 0).
 * Returns 0, or -1 when out of memory.
 */
int weir_tls_metrics(struct evbuffer *out, const struct weir_tls_stats_listener *l, size_t n,
                     time_t not_after, time_t now);

#endif
