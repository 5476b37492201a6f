/*
 * dns.h - DNS discovery: pool servers from names, resolved with libevent's
 * evdns on the control thread (never a blocking lookup, on any thread).
 *
 * A server written `{ address = "api.internal:8080"; resolve = true; }` is a
 * name, not a server: every resolve_interval_ms (default 5000), or sooner
 * when the answer's TTL is shorter, weir asks for its A and AAAA records
 * (a name with only one kind is fine); each
 * address becomes a server "IP:8080" / "[IPv6]:8080" of the pool (health-checked, slow
 * start, like any other); an address that disappears from the answers is
 * drained (no new requests, those in flight finish, at most
 * timeouts.drain_ms) and removed. A failed lookup (timeout, SERVFAIL,
 * NXDOMAIN) changes nothing: the pool keeps the servers it has, and the
 * failure is logged once until a lookup succeeds again. The DNS servers are
 * the top-level `resolvers` list, or /etc/resolv.conf's.
 *
 * The addresses known for each name are cached so that a reload (which
 * builds the pools from the file) keeps them: weir_dns_expand adds them to
 * the new configuration before its snapshot is built.
 *
 * Control thread only.
 */
#ifndef WEIR_DNS_H
#define WEIR_DNS_H

#include <event2/event.h>

#include "weir/conf.h"

/* Start on the control thread's base (reads the current snapshot's names
 * at once and on every later snapshot). 0 or -1. */
int weir_dns_start(struct event_base *base);
void weir_dns_stop(void);

/* A scale-down removed `address` from `pool`: do not add it back while the
 * name still lists it (DNS lags behind a terminating instance), for at most
 * `ms`; once an answer no longer lists it, it is forgotten. */
void weir_dns_suppress(const char *pool, const char *address, int ms);

/* Add to conf the servers discovered so far for its pools' names (before
 * weir_rt_build on a reload). Returns how many were added. */
int weir_dns_expand(struct weir_conf *conf);

#endif
