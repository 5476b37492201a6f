/*
 * lease.h - the autoscale leader lease in Redis, so that of several weir
 * instances fronting the same pools only one runs scale hooks.
 *
 * With autoscale.redis configured, every tick the control thread asks Redis
 * (hiredis async on the control thread's event_base, never blocking) to take
 * or renew the lease: one atomic script that does SET key id NX PX lease_ms
 * when the key is free and PEXPIRE when this instance holds it. The
 * instance is leader while its last renewal succeeded less than lease_ms
 * ago (measured from when the request was sent); otherwise follower. Redis
 * unreachable (connect or reply not within lease_ms): no instance is
 * leader, so no scale hook runs anywhere (alerts still fire locally);
 * logged once when it happens and once when Redis is back.
 * Without autoscale.redis the instance is always leader ("standalone").
 *
 * Control thread only.
 */
#ifndef WEIR_LEASE_H
#define WEIR_LEASE_H

#include <event2/event.h>
#include <jansson.h>

#include "weir/conf.h"

int weir_lease_start(struct event_base *base);
void weir_lease_stop(void);

/* Called every autoscale tick with the current section: (re)connects,
 * sends the renewal when none is outstanding, expires a lease not renewed
 * in time. */
void weir_lease_tick(const struct weir_conf_autoscale *ac, int interval_ms);

/* 1 when this instance may run scale hooks. */
int weir_lease_leader(void);

/* "standalone", "leader", "follower" or "redis_unreachable". */
const char *weir_lease_role(void);

/* {"role", "key", "holder", "address", "renewals", "errors"...}. New reference. */
json_t *weir_lease_json(void);

#endif
