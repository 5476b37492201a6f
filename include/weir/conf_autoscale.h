/*
 * conf_autoscale.h - the `autoscale` section of the configuration: names of
 * the metrics, copy and free of struct weir_conf_autoscale (conf.h).
 *
 * The loader's table lives in src/conf_autoscale.c; conf.c lists the
 * section, conf_edit.c copies it, weir_conf_free frees it. Pure functions,
 * any thread.
 */
#ifndef WEIR_CONF_AUTOSCALE_H
#define WEIR_CONF_AUTOSCALE_H

#include "weir/conf.h"

/* "p95_ms"... for an enum weir_as_metric; "?" when out of range. */
const char *weir_as_metric_name(int metric);
/* The enum weir_as_metric of a name, -1 when unknown. */
int weir_as_metric_find(const char *name);
/* 1 for the latency metrics (p50/p95/p99/mean): they scale up only while
 * the pool's servers are busy. */
int weir_as_metric_is_latency(int metric);

/* Free what a (zeroed or loaded) section owns; the struct itself stays. */
void weir_conf_autoscale_free(struct weir_conf_autoscale *a);
/* Replace every pointer of *d (a byte copy of *s) by its own copy. Returns
 * 0, or -1 on allocation failure (then the pointers that could not be
 * copied are NULL and counts 0, so weir_conf_autoscale_free(d) is safe). */
int weir_conf_autoscale_dup(struct weir_conf_autoscale *d, const struct weir_conf_autoscale *s);

#endif
