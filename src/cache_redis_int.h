/*
 * cache_redis_int.h - what the Redis command client (cache_redis.c) and the
 * purge-channel subscriber (cache_redis_sub.c) share. Internal.
 */
#ifndef WEIR_CACHE_REDIS_INT_H
#define WEIR_CACHE_REDIS_INT_H

#include <stddef.h>

#include "weir/cache_redis.h"

/* Two optional strings equal (both NULL, or the same text). */
int weir_redis_str_eq(const char *a, const char *b);

/* conf's address parsed into host/port/is_unix, and its address and
 * password copied (caller frees). 0, or -1 with *why (bad address, out of
 * memory). */
int weir_redis_endpoint(const struct weir_redis_conf *conf, char *host, size_t host_size, int *port,
                        int *is_unix, char **address, char **password, const char **why);

#endif
