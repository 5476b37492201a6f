/*
 * cache_l2.c - L2 primitives shared by the stages: value and lease keys,
 * storing an object in Redis, releasing a lease. No upcalls.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "weir/cache_stage.h"
#include "weir/core.h"
#include "weir/log.h"

/* snprintf's length, or 0 when the key did not fit (snprintf returns the
 * length it wanted: passing that on read past the buffer). */
static size_t fitted(int n, size_t size)
{
    return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

size_t cache_l2_key(char *out, size_t size, const char *key, const char *vary_values, size_t vlen)
{
    if (vary_values == NULL)
        return fitted(snprintf(out, size, L2_OBJ "%s", key), size);
    /* a variant: the key plus a hash of its Vary values */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < vlen; i++) {
        h ^= (unsigned char)vary_values[i];
        h *= 0x100000001b3ull;
    }
    return fitted(snprintf(out, size, L2_OBJ "%s#%016llx", key, (unsigned long long)h), size);
}

void cache_l2_store(struct cache_worker *cw, struct weir_cache_obj *o)
{
    size_t len, kl;
    char *val, kbuf[2048];
    int64_t ttl = (o->times.response_time + o->keep - cache_now()) * 1000;

    if (cw->l2 == NULL || !weir_cache_redis_usable(cw->l2) || ttl <= 0 || strlen(o->key) > 1900)
        return;
    val = weir_cache_obj_encode(o, &len);
    if (val == NULL)
        return;
    /* the latest variant under the key itself (one round trip for most
     * lookups), and every variant under key#hash(Vary values) */
    kl = cache_l2_key(kbuf, sizeof(kbuf), o->key, NULL, 0);
    weir_cache_redis_set(cw->l2, kbuf, kl, val, len, ttl, NULL, NULL, NULL);
    if (o->vary_names[0] != '\0') {
        kl = cache_l2_key(kbuf, sizeof(kbuf), o->key, o->vary_values, o->vary_values_len);
        weir_cache_redis_set(cw->l2, kbuf, kl, val, len, ttl, NULL, NULL, NULL);
    }
    free(val);
}

size_t cache_lease_key(char *out, size_t size, const char *key)
{
    return fitted(snprintf(out, size, L2_LEASE "%s", key), size);
}

/* The leader's word to the waiting instances: "pass" (not storable: fetch
 * yourselves) or the lease deleted (aborted). */
void cache_lease_release(struct cache_worker *cw, const char *key, int pass)
{
    char kbuf[2048];
    size_t kl = cache_lease_key(kbuf, sizeof(kbuf), key);

    if (cw->l2 == NULL || !weir_cache_redis_usable(cw->l2) || strlen(key) > 1900)
        return;
    if (pass)
        weir_cache_redis_set(cw->l2, kbuf, kl, "pass", 4, 10000, NULL, NULL, NULL);
    else
        weir_cache_redis_del(cw->l2, kbuf, kl, NULL, NULL, NULL);
}
