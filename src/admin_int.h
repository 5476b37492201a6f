/*
 * admin_int.h - what admin.c and admin_metrics.c share (internal).
 */
#ifndef WEIR_ADMIN_INT_H
#define WEIR_ADMIN_INT_H

#include <stddef.h>

#include "weir/runtime.h"
#include "weir/stats.h"
#include "weir/tls_stats.h"

/* Names of the status classes and upstream error kinds, as the JSON and
 * the metrics say them. */
extern const char *const weir_admin_class_names[WEIR_CLASS_N];
extern const char *const weir_admin_uperr_names[WEIR_UPERR_5XX + 1];

/* The TLS listeners of rt with their counters; l has room for
 * WEIR_CONTROL_MAX_LISTENS. Returns how many. */
size_t weir_admin_tls_listeners(const struct weir_rt *rt, struct weir_tls_stats_listener *l);

#endif
