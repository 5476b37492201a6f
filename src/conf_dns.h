/* conf_dns.h - the loader's handlers for DNS discovery (private to the
 * loader; conf.c lists them in its tables). */
#ifndef WEIR_SRC_CONF_DNS_H
#define WEIR_SRC_CONF_DNS_H

#include "conf_int.h"

/* pools[].servers[].address: keeps the text; conf_dns_split parses it once
 * `resolve` is known. */
void conf_key_server_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj);

/* After a pool's servers were walked: parse the numeric addresses (FILE:LINE
 * errors), move the resolve = true entries to p->dns. list is the servers
 * setting. */
void conf_dns_split(struct loader *L, const config_setting_t *list, const char *path,
                    struct weir_conf_pool *p);

/* Top-level `resolvers = ( "IP[:port]", ... )`. */
void conf_key_resolvers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj);

#endif
