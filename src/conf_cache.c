/*
 * conf_cache.c - the cache section of the configuration:
 *
 *   cache = {
 *       memory_bytes = 268435456;     # L1 budget (whole instance), default 64 MiB
 *       max_object_bytes = 8388608;   # default 8 MiB, at most memory_bytes
 *       redis = {                     # optional: L2
 *           address = "127.0.0.1:6379";   # numeric, or "unix:/path"
 *           password = "secret";          # optional
 *           db = 0;
 *           prefix = "weir:";
 *           timeout_ms = 50;
 *       };
 *   };
 *
 * and the routes' `cache = true` (a key of route_keys in conf.c). The
 * section's keys use the table engine of conf_load.c; conf.c's top_keys
 * has one line that hands the group to conf_key_cache().
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conf_int.h"
#include "weir/cache_redis.h"

#define CACHE_MIN_BYTES  1048576LL   /* 1 MiB */
#define CACHE_MAX_BYTES  (1LL << 40) /* 1 TiB */
#define OBJECT_MAX_BYTES (1LL << 31) /* 2 GiB */

static void key_redis_address(struct loader *L, const struct key *k, const config_setting_t *s,
                              const char *path, void *obj)
{
    struct weir_conf *c = obj;
    const char *v = config_setting_get_string(s), *why;
    char host[256];
    int port, is_unix;

    if (weir_redis_parse_address(v, host, sizeof(host), &port, &is_unix, &why) < 0) {
        conf_err_at(L, s, "%s: %s (got \"%s\")", path, why, v);
        return;
    }
    conf_set_str(L, &c->cache.redis.address, v);
}

static void key_redis_prefix(struct loader *L, const struct key *k, const config_setting_t *s,
                             const char *path, void *obj)
{
    struct weir_conf *c = obj;
    const char *v = config_setting_get_string(s);

    /* "" is allowed (a Redis of its own); otherwise visible ASCII without spaces */
    if (v[0] != '\0' && !conf_is_visible(v)) {
        conf_err_at(L, s, "%s must contain no spaces or control characters (got \"%s\")", path, v);
        return;
    }
    if (strlen(v) > 64) {
        conf_err_at(L, s, "%s must be at most 64 bytes (got %zu)", path, strlen(v));
        return;
    }
    conf_set_str(L, &c->cache.redis.prefix, v);
}

static void redis_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;

    c->cache.redis.enabled = 1;
    c->cache.redis.line = conf_line(s);
}

static const struct key redis_keys[] = {
    KEY_CALL("address", K_STR, KF_REQUIRED, key_redis_address),
    KEY_FN("password", K_STR, 0, struct weir_conf, cache.redis.password, conf_key_visible),
    KEY_INT("db", struct weir_conf, cache.redis.db, 0, 1000000),
    KEY_CALL("prefix", K_STR, 0, key_redis_prefix),
    KEY_INT("timeout_ms", struct weir_conf, cache.redis.timeout_ms, 1, 60000),
};

static const struct key cache_keys[] = {
    KEY_INT("memory_bytes", struct weir_conf, cache.memory_bytes, CACHE_MIN_BYTES, CACHE_MAX_BYTES),
    KEY_INT("max_object_bytes", struct weir_conf, cache.max_object_bytes, 1, OBJECT_MAX_BYTES),
    KEY_GROUP("redis", redis_keys, redis_post),
};

void conf_key_cache(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                    void *obj)
{
    struct weir_conf *c = obj;
    char vbuf[128];

    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        conf_err_at(L, s, "%s must be a group { ... } (got %s)", path, conf_describe(s, vbuf, sizeof(vbuf)));
        return;
    }
    conf_walk_group(L, s, path, cache_keys, WEIR_ARRAY_LEN(cache_keys), obj);
    if (c->cache.max_object_bytes > c->cache.memory_bytes)
        conf_err_at(L, s, "%s.max_object_bytes (%zu) must not exceed %s.memory_bytes (%zu)", path,
                    c->cache.max_object_bytes, path, c->cache.memory_bytes);
}

void conf_cache_defaults(struct loader *L, struct weir_conf *c)
{
    c->cache.memory_bytes = 64u << 20;
    c->cache.max_object_bytes = 8u << 20;
    c->cache.redis.enabled = 0;
    c->cache.redis.db = 0;
    c->cache.redis.timeout_ms = 50;
    c->cache.redis.prefix = conf_strdup(L, "weir:");
}

void conf_cache_free(struct weir_conf *c)
{
    free(c->cache.redis.address);
    free(c->cache.redis.password);
    free(c->cache.redis.prefix);
}
