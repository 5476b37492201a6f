/*
 * conf_dns.h - configuration of DNS discovery: the pools' resolved names
 * (server entries with `resolve = true`) and the top-level `resolvers`
 * list. Copy and free helpers for conf.c / conf_edit.c. Pure.
 */
#ifndef WEIR_CONF_DNS_H
#define WEIR_CONF_DNS_H

#include "weir/conf.h"

void weir_conf_dns_free(struct weir_conf_pool *p);
/* Replace p->dns (a byte copy of s->dns) by its own copy; 0 or -1 (then
 * p->dns is NULL / ndns 0). */
int weir_conf_dns_dup(struct weir_conf_pool *p, const struct weir_conf_pool *s);

void weir_conf_resolvers_free(struct weir_conf *c);
int weir_conf_resolvers_dup(struct weir_conf *d, const struct weir_conf *s);

#endif
