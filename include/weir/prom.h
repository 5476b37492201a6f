/*
 * prom.h - helpers shared by every module that writes Prometheus text
 * exposition (admin.c, autoscaler_view.c, tls_stats.c, the cache's metrics).
 * Pure; any thread.
 */
#ifndef WEIR_PROM_H
#define WEIR_PROM_H

#include <event2/buffer.h>

/* Append the label value v (NUL-terminated) escaped as the text format
 * requires: backslash, double quote and line feed. */
void weir_prom_label(struct evbuffer *out, const char *v);

#endif
