/*
 * pool_edit.h - the changes the control plane's own modules (autoscale,
 * DNS discovery) make to the running pools: add servers, remove a server,
 * set a server's admin state. Each add/remove builds and publishes one new
 * snapshot from a copy of the running configuration, like the runtime API
 * (servers that stay are the same objects). Every such change in
 * autoscaler.c and dns.c goes through here, so that when the control plane
 * gets a single snapshot build/publish function (control.c) only this file
 * is re-pointed.
 *
 * Control thread only.
 */
#ifndef WEIR_POOL_EDIT_H
#define WEIR_POOL_EDIT_H

#include <stddef.h>

#include "weir/server.h"

/* Add the servers `addresses[0..n)` ("IP:port") with `weight` to pool
 * `pool` in one snapshot; addresses the pool already has are skipped.
 * Returns how many were added, or -1 (pool unknown, out of memory,
 * invalid address: nothing changed). */
int weir_pool_edit_add(const char *pool, const char *const *addresses, size_t n, int weight);

/* Remove server `address` (as the pool lists it) from pool `pool`. 0 or -1
 * (not there). */
int weir_pool_edit_remove(const char *pool, const char *address);

/* Admin state (enum weir_admin_state) of a server. 0 or -1. */
int weir_pool_edit_set_admin(struct weir_server *s, int state, const char *pool);

#endif
