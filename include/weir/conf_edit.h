/*
 * conf_edit.h - copy a loaded configuration and edit a pool's server list,
 * for the runtime API (admin): it copies the running snapshot's conf, edits
 * the copy and builds a new snapshot from it (weir_rt_build + publish).
 *
 * Nothing here touches a file: edits live until the next reload from file.
 * Control thread only.
 */
#ifndef WEIR_CONF_EDIT_H
#define WEIR_CONF_EDIT_H

#include "weir/conf.h"

/* Weight range of a server, as in the config file. */
#define WEIR_CONF_WEIGHT_MIN 1
#define WEIR_CONF_WEIGHT_MAX 1000

/* Deep copy of c (every string and array duplicated); free with
 * weir_conf_free. NULL on allocation failure. c is unchanged. */
struct weir_conf *weir_conf_dup(const struct weir_conf *c);

/* The pool named `name`, or NULL. */
struct weir_conf_pool *weir_conf_find_pool(struct weir_conf *c, const char *name);

/* Index of the server of p whose address is `address`: the same text as
 * configured, or (when `ss` is not NULL) the same socket address. -1 when
 * there is none. */
long weir_conf_find_server(const struct weir_conf_pool *p, const char *address,
                           const struct sockaddr_storage *ss);

/* Parse a server address for the runtime API: like the config file
 * ("host:port", "[v6]:port"), but "*" is refused. Returns 0 or -1 with a
 * static message in *why. */
int weir_conf_parse_server_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                                const char **why);

/* Append server (address, weight) to p. Returns WEIR_OK; WEIR_DECLINED when
 * p already has that address (text or socket address); WEIR_ERROR with
 * *why set for a bad address or weight, or on allocation failure (p
 * unchanged on any error). */
int weir_conf_pool_add_server(struct weir_conf_pool *p, const char *address, int weight, const char **why);

/* Remove server index i of p (order of the others kept). */
void weir_conf_pool_remove_server(struct weir_conf_pool *p, size_t i);

#endif
