/*
 * conf.c - the core configuration sections (workers, listen, timeouts,
 * limits, log, pools, routes, admin, stats) as key tables, and the entry
 * points that load and free a whole file.
 *
 * Every group is walked with a table of the keys it allows (struct key in
 * conf_int.h; the walk is in conf_load.c): the table gives each key's type,
 * range and where its value goes, so adding a key is one line in a table.
 * Scalars are stored generically; keys that need more (addresses, names,
 * lists of groups, cross-checks) have a handler. Every problem is recorded
 * as "FILE:LINE: message" and the walk goes on, so one run shows the
 * operator all errors; if there was any, the whole file is refused. Errors
 * about the whole file (cannot open it, out of memory) carry line 0; a
 * required top-level key that is missing is reported at line 1.
 *
 * Known limit of libconfig 1.5: an integer literal beyond 32 bits written
 * without the L suffix wraps silently (5000000000 reads as 705032704); the
 * range checks catch most such values, not all.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf_autoscale.h"
#include "conf_dns.h"
#include "conf_int.h"
#include "weir/conf_autoscale.h"
#include "weir/conf_dns.h"
#include "weir/lb.h"

/* ---- handlers --------------------------------------------------------------- */

static void key_workers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf *c = obj;
    int t = config_setting_type(s);
    char vbuf[128];

    if (t == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > WEIR_MAX_WORKERS ? WEIR_MAX_WORKERS : (int)n;
        return;
    }
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        long long v = config_setting_get_int64(s);
        if (v >= 1 && v <= WEIR_MAX_WORKERS) {
            c->workers = (int)v;
            return;
        }
    }
    conf_err_at(L, s, "%s must be an integer between 1 and %d or \"auto\" (got %s)", path, WEIR_MAX_WORKERS,
                conf_describe(s, vbuf, sizeof(vbuf)));
}
static int parse_status(const char *p, const char **end)
{
    int v = 0, n = 0;

    while (*p >= '0' && *p <= '9' && n < 4) {
        v = v * 10 + (*p - '0');
        p++;
        n++;
    }
    *end = p;
    return n == 3 ? v : -1;
}

static void key_expect_status(struct loader *L, const struct key *k, const config_setting_t *s,
                              const char *path, void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s), *e;
    int lo, hi;

    lo = parse_status(v, &e);
    hi = lo;
    if (lo >= 0 && *e == '-')
        hi = parse_status(e + 1, &e);
    if (lo < 0 || hi < 0 || *e != '\0') {
        conf_err_at(L, s, "%s must be a status code or a range such as \"200\" or \"200-399\" (got \"%s\")",
                    path, v);
        return;
    }
    if (lo < 100 || hi > 599 || lo > hi) {
        conf_err_at(L, s, "%s must be within 100-599 with the low bound first (got \"%s\")", path, v);
        return;
    }
    p->health.expect_status_lo = lo;
    p->health.expect_status_hi = hi;
}

static void health_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_pool *p = obj;

    if (p->health.type == WEIR_CHECK_NONE)
        p->health.type = WEIR_CHECK_HTTP;
    if (p->health.timeout_ms > p->health.interval_ms)
        conf_err_at(L, s, "%s.timeout_ms (%d) must not exceed %s.interval_ms (%d)", path,
                    p->health.timeout_ms, path, p->health.interval_ms);
}

static void passive_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_pool *p = obj;

    p->passive.enabled = 1;
    if (p->passive.max_eject_ms < p->passive.eject_ms)
        conf_err_at(L, s, "%s.max_eject_ms (%d) must not be less than %s.eject_ms (%d)", path,
                    p->passive.max_eject_ms, path, p->passive.eject_ms);
}

static void key_pool_name(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s), *q;

    /* Stored even when invalid so routes to it do not add a second error. */
    conf_set_str(L, &p->name, v);
    for (q = v; *q != '\0'; q++) {
        unsigned char ch = (unsigned char)*q;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-_.", ch) != NULL))
            break;
    }
    if (v[0] == '\0' || *q != '\0')
        conf_err_at(L, s, "%s must be made of letters, digits, '-', '_' and '.' (got \"%s\")", path, v);
}

static const char *const policy_names[] = {"round_robin", "weighted_round_robin", "least_conn", "random_two",
                                           "hash"};

static void key_policy(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s);
    char list[256];
    size_t i, used = 0;

    if (weir_lb_find(v) != NULL) {
        conf_set_str(L, &p->policy, v);
        return;
    }
    list[0] = '\0';
    for (i = 0; i < WEIR_ARRAY_LEN(policy_names); i++) {
        if (weir_lb_find(policy_names[i]) == NULL)
            continue;
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", policy_names[i]);
        if (used >= sizeof(list))
            used = sizeof(list) - 1;
    }
    conf_err_at(L, s, "unknown policy '%s' in %s (valid: %s)", v, path, list);
}

static void key_hash_key(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s);

    if (strcmp(v, "uri") == 0) {
        p->hash_key = WEIR_HASH_URI;
    } else if (strcmp(v, "client_ip") == 0) {
        p->hash_key = WEIR_HASH_CLIENT_IP;
    } else if (strncmp(v, "header:", 7) == 0 && conf_is_token(v + 7)) {
        p->hash_key = WEIR_HASH_HEADER;
        conf_set_str(L, &p->hash_header, v + 7);
        conf_lower(p->hash_header);
    } else {
        conf_err_at(
            L, s, "%s must be \"uri\", \"client_ip\" or \"header:NAME\" with NAME a header name (got \"%s\")",
            path, v);
    }
}

/* address is parsed by conf_dns_split once `resolve` is known (DNS discovery, conf_dns.c) */
static const struct key server_keys[] = {
    KEY_FN("address", K_STR, KF_REQUIRED, struct weir_conf_server, addr, conf_key_server_addr),
    KEY_INT("weight", struct weir_conf_server, weight, 1, WEIGHT_MAX),
    KEY_BOOL("resolve", struct weir_conf_server, resolve),
    KEY_INT("resolve_interval_ms", struct weir_conf_server, resolve_interval_ms, 100, MS_MAX),
};

static void server_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_server *srv = el;

    srv->weight = 1;
    srv->resolve_interval_ms = 5000;
    srv->line = conf_line(s);
}

static void key_servers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_pool *p = obj;
    size_t i, j;

    if (config_setting_length(s) > WEIR_CONF_POOL_MAX_SERVERS) {
        conf_err_at(L, s, "%s lists %d servers; a pool has at most %d", path, config_setting_length(s),
                    WEIR_CONF_POOL_MAX_SERVERS);
        return;
    }
    p->servers = conf_walk_list(L, s, path, "server", sizeof(*p->servers), &p->nservers, server_keys,
                                WEIR_ARRAY_LEN(server_keys), server_init);
    conf_dns_split(L, s, path, p); /* numeric addresses parsed, resolve = true entries moved to p->dns */
    for (i = 0; i < p->nservers; i++) {
        for (j = 0; j < i; j++) {
            if (conf_addr_equal(&p->servers[i].addr, &p->servers[j].addr)) {
                conf_err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "address"),
                            "duplicate server address '%s' in %s[%zu].address (also at line %d)",
                            p->servers[i].addr.text, path, i, p->servers[j].addr.line);
                break;
            }
        }
    }
}

static const struct choice check_types[] = {{"http", WEIR_CHECK_HTTP}, {"tcp", WEIR_CHECK_TCP}, {NULL, 0}};

static const struct key health_keys[] = {
    KEY_ENUM("type", struct weir_conf_pool, health.type, check_types),
    KEY_FN("path", K_STR, 0, struct weir_conf_pool, health.path, conf_key_http_path),
    KEY_FN("method", K_STR, 0, struct weir_conf_pool, health.method, conf_key_method),
    KEY_FN("host", K_STR, 0, struct weir_conf_pool, health.host, conf_key_host_header),
    KEY_CALL("expect_status", K_STR, 0, key_expect_status),
    KEY_STR("expect_body", struct weir_conf_pool, health.expect_body, KF_NONEMPTY),
    KEY_INT("interval_ms", struct weir_conf_pool, health.interval_ms, 1, MS_MAX),
    KEY_INT("timeout_ms", struct weir_conf_pool, health.timeout_ms, 1, MS_MAX),
    KEY_INT("jitter_pct", struct weir_conf_pool, health.jitter_pct, 0, 50),
    KEY_INT("rise", struct weir_conf_pool, health.rise, 1, 100),
    KEY_INT("fall", struct weir_conf_pool, health.fall, 1, 100),
};

static const struct key passive_keys[] = {
    KEY_INT("consecutive_failures", struct weir_conf_pool, passive.consecutive_failures, 1, 1000),
    KEY_BOOL("count_5xx", struct weir_conf_pool, passive.count_5xx),
    KEY_INT("eject_ms", struct weir_conf_pool, passive.eject_ms, 1, MS_MAX),
    KEY_INT("max_eject_ms", struct weir_conf_pool, passive.max_eject_ms, 1, MS_MAX),
    KEY_INT("max_ejected_pct", struct weir_conf_pool, passive.max_ejected_pct, 0, 100),
};

static const struct key pool_keys[] = {
    KEY_CALL("name", K_STR, KF_REQUIRED, key_pool_name),
    KEY_CALL("policy", K_STR, 0, key_policy),
    KEY_CALL("hash_key", K_STR, 0, key_hash_key),
    KEY_INT("retries", struct weir_conf_pool, retries, 0, 10),
    KEY_CALL("servers", K_LIST, KF_REQUIRED, key_servers),
    KEY_GROUP("health", health_keys, health_post),
    KEY_GROUP("passive", passive_keys, passive_post),
    KEY_INT("slow_start_ms", struct weir_conf_pool, slow_start_ms, 0, MS_MAX),
    KEY_BOOL("panic", struct weir_conf_pool, panic),
    KEY_CALL("tls", K_GROUP, 0, conf_key_pool_tls),
};

static void pool_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_pool *p = el;

    p->policy = conf_strdup(L, "round_robin");
    p->hash_key = WEIR_HASH_URI;
    p->retries = 2;
    p->health.type = WEIR_CHECK_NONE;
    p->health.path = conf_strdup(L, "/health");
    p->health.method = conf_strdup(L, "GET");
    p->health.expect_status_lo = 200;
    p->health.expect_status_hi = 399;
    p->health.interval_ms = 1000;
    p->health.timeout_ms = 500;
    p->health.jitter_pct = 10;
    p->health.rise = 2;
    p->health.fall = 3;
    p->passive.enabled = 0;
    p->passive.consecutive_failures = 5;
    p->passive.count_5xx = 1;
    p->passive.eject_ms = 10000;
    p->passive.max_eject_ms = 300000;
    p->passive.max_ejected_pct = 50;
    p->slow_start_ms = 0;
    p->panic = 1;
    p->line = conf_line(s);
}

static void key_pools(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    struct weir_conf *c = obj;
    size_t i, j;

    c->pools = conf_walk_list(L, s, path, "pool", sizeof(*c->pools), &c->npools, pool_keys,
                              WEIR_ARRAY_LEN(pool_keys), pool_init);
    for (i = 0; i < c->npools; i++) {
        for (j = 0; j < i && c->pools[i].name != NULL; j++) {
            if (c->pools[j].name != NULL && strcmp(c->pools[i].name, c->pools[j].name) == 0) {
                conf_err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "name"),
                            "duplicate pool name '%s' in %s[%zu].name (first defined at line %d)",
                            c->pools[i].name, path, i, c->pools[j].line);
                break;
            }
        }
    }
}

static const struct key listen_keys[] = {
    KEY_FN("address", K_STR, KF_REQUIRED, struct weir_conf_listen, addr, conf_key_addr),
    KEY_BOOL("redirect_https", struct weir_conf_listen, redirect_https),
    KEY_CALL("tls", K_GROUP, 0, conf_key_listen_tls),
};

static void key_listen(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;
    size_t i, j;

    c->listens = conf_walk_list(L, s, path, "listen address", sizeof(*c->listens), &c->nlistens, listen_keys,
                                WEIR_ARRAY_LEN(listen_keys), NULL);
    for (i = 0; i < c->nlistens; i++) {
        for (j = 0; j < i; j++) {
            if (conf_addr_equal(&c->listens[i].addr, &c->listens[j].addr)) {
                conf_err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "address"),
                            "duplicate listen address '%s' in %s[%zu].address (also at line %d)",
                            c->listens[i].addr.text, path, i, c->listens[j].addr.line);
                break;
            }
        }
    }
}

/* Route host: "*", "*.suffix", an exact host name or a bracketed ipv6 address. */
static void key_route_host(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                           void *obj)
{
    struct weir_conf_route *r = obj;
    const char *v = config_setting_get_string(s);
    int ok;

    if (strcmp(v, "*") == 0) {
        ok = 1;
    } else if (strncmp(v, "*.", 2) == 0) {
        ok = conf_is_hostname(v + 2);
    } else if (v[0] == '[') {
        struct in6_addr a6;
        char buf[64];
        size_t n = strlen(v);
        ok = n > 2 && n - 2 < sizeof(buf) && v[n - 1] == ']';
        if (ok) {
            memcpy(buf, v + 1, n - 2);
            buf[n - 2] = '\0';
            ok = inet_pton(AF_INET6, buf, &a6) == 1;
        }
    } else {
        ok = conf_is_hostname(v);
    }
    if (!ok) {
        if (v[0] != '[' && strchr(v, ':') != NULL)
            conf_err_at(L, s, "%s must not include a port (got \"%s\"): ports are ignored when matching",
                        path, v);
        else
            conf_err_at(L, s, "%s must be \"*\", a host name or \"*.suffix\" (got \"%s\")", path, v);
        return;
    }
    conf_set_str(L, &r->host, v);
    conf_lower(r->host);
}

static void key_path_prefix(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj)
{
    struct weir_conf_route *r = obj;
    const char *v = config_setting_get_string(s);

    if (!conf_is_http_path(v, 0)) {
        conf_err_at(
            L, s, "%s must start with '/' and contain no spaces, control characters, '?' or '#' (got \"%s\")",
            path, v);
        return;
    }
    conf_set_str(L, &r->path_prefix, v);
}

/* routes[i].pool is only type-checked here; resolve_routes() maps it. */
static const struct key route_keys[] = {
    KEY_CALL("host", K_STR, 0, key_route_host),
    KEY_CALL("path_prefix", K_STR, 0, key_path_prefix),
    KEY_CALL("pool", K_STR, KF_REQUIRED, NULL),
    KEY_BOOL("cache", struct weir_conf_route, cache),
};

static void route_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_route *r = el;

    r->host = conf_strdup(L, "*");
    r->path_prefix = conf_strdup(L, "/");
    r->line = conf_line(s);
}

static void key_routes(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;

    L->routes = s;
    c->routes = conf_walk_list(L, s, path, "route", sizeof(*c->routes), &c->nroutes, route_keys,
                               WEIR_ARRAY_LEN(route_keys), route_init);
}

/* After the whole file: routes[i].pool -> index into pools. */
static void resolve_routes(struct loader *L)
{
    struct weir_conf *c = L->c;
    size_t i, j;

    /* A missing pool list or a pool without a name was already reported;
     * an "unknown pool" for its routes would only repeat it. */
    if (c->npools == 0)
        return;
    for (j = 0; j < c->npools; j++) {
        if (c->pools[j].name == NULL)
            return;
    }
    for (i = 0; i < c->nroutes; i++) {
        const config_setting_t *s =
            config_setting_get_member(config_setting_get_elem(L->routes, (unsigned)i), "pool");
        const char *name;
        char list[256];
        size_t used = 0;

        if (s == NULL || config_setting_type(s) != CONFIG_TYPE_STRING)
            continue;
        name = config_setting_get_string(s);
        for (j = 0; j < c->npools; j++) {
            if (c->pools[j].name != NULL && strcmp(c->pools[j].name, name) == 0)
                break;
        }
        if (j < c->npools) {
            c->routes[i].pool = j;
            continue;
        }
        list[0] = '\0';
        for (j = 0; j < c->npools; j++) {
            if (c->pools[j].name == NULL)
                continue;
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                                     c->pools[j].name);
            if (used >= sizeof(list))
                used = sizeof(list) - 1;
        }
        conf_err_at(L, s, "unknown pool '%s' in routes[%zu].pool (defined pools: %s)", name, i,
                    used ? list : "none");
    }
}

static void admin_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;

    c->admin.enabled = 1;
    if (c->admin.token == NULL && c->admin.addr.len > 0 && !weir_conf_addr_is_loopback(&c->admin.addr.ss))
        conf_err_at(L, s, "%s.token is required when %s.address '%s' is not a loopback address", path, path,
                    c->admin.addr.text);
}

/* admin.allowed_hosts: a list of host names ("name" or "*.suffix"). */
static void key_admin_allowed_hosts(struct loader *L, const struct key *k, const config_setting_t *s,
                                    const char *path, void *obj)
{
    struct weir_conf *c = obj;
    int n = config_setting_length(s);

    if (n == 0)
        return;
    c->admin.allowed_hosts = calloc((size_t)n, sizeof(char *));
    if (c->admin.allowed_hosts == NULL) {
        L->oom = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        const char *name = v != NULL && strncmp(v, "*.", 2) == 0 ? v + 2 : v;
        if (v == NULL || !conf_is_hostname(name)) {
            conf_err_at(L, e, "%s[%d] must be a host name such as \"admin.example.com\" or \"*.example.com\"",
                        path, i);
            continue;
        }
        char *d = conf_strdup(L, v);
        if (d == NULL)
            return;
        conf_lower(d);
        c->admin.allowed_hosts[c->admin.nallowed_hosts++] = d;
    }
}

static const struct key timeout_keys[] = {
    KEY_INT("connect_ms", struct weir_conf, timeouts.connect_ms, 1, MS_MAX),
    KEY_INT("client_header_ms", struct weir_conf, timeouts.client_header_ms, 1, MS_MAX),
    KEY_INT("client_body_ms", struct weir_conf, timeouts.client_body_ms, 1, MS_MAX),
    KEY_INT("upstream_response_ms", struct weir_conf, timeouts.upstream_response_ms, 1, MS_MAX),
    KEY_INT("idle_ms", struct weir_conf, timeouts.idle_ms, 1, MS_MAX),
    KEY_INT("upstream_idle_ms", struct weir_conf, timeouts.upstream_idle_ms, 1, MS_MAX),
    KEY_INT("drain_ms", struct weir_conf, timeouts.drain_ms, 1, MS_MAX),
};

static const struct key limit_keys[] = {
    KEY_INT("header_bytes", struct weir_conf, limits.header_bytes, 1024, 1048576),
    KEY_INT("max_connections", struct weir_conf, limits.max_connections, 1, 10000000),
    KEY_INT("upstream_idle_per_server", struct weir_conf, limits.upstream_idle_per_server, 0, 65536),
};

static const struct choice log_formats[] = {
    {"combined", WEIR_LOG_COMBINED}, {"json", WEIR_LOG_JSON}, {NULL, 0}};
static const struct choice log_levels[] = {{"debug", WEIR_LOG_DEBUG},
                                           {"info", WEIR_LOG_INFO},
                                           {"warn", WEIR_LOG_WARN},
                                           {"error", WEIR_LOG_ERROR},
                                           {NULL, 0}};

static const struct key log_keys[] = {
    KEY_STR("access", struct weir_conf, log.access, KF_NONEMPTY),
    KEY_ENUM("format", struct weir_conf, log.format, log_formats),
    KEY_ENUM("level", struct weir_conf, log.level, log_levels),
    KEY_STR("error", struct weir_conf, log.error, KF_NONEMPTY),
};

static const struct key admin_keys[] = {
    KEY_FN("address", K_STR, 0, struct weir_conf, admin.addr, conf_key_addr),
    KEY_FN("token", K_STR, 0, struct weir_conf, admin.token, conf_key_visible),
    KEY_CALL("allowed_hosts", K_LIST, 0, key_admin_allowed_hosts),
    KEY_INT("max_connections", struct weir_conf, admin.max_connections, 1, 10000),
    KEY_INT("request_timeout_ms", struct weir_conf, admin.request_timeout_ms, 100, MS_MAX),
};

/* The admin endpoint cannot share a listen address (nor its port on a
 * wildcard address of the same family): one of the two binds would fail, or
 * with SO_REUSEPORT split the traffic silently. */
static int addr_is_any(const struct sockaddr_storage *ss)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return ss->ss_family == AF_INET6 &&
           memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &any6, sizeof(any6)) == 0;
}

static int addr_port(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void check_admin_addr(struct loader *L)
{
    const struct weir_conf *c = L->c;
    const struct weir_conf_addr *a = &c->admin.addr;

    if (!c->admin.enabled || a->len == 0)
        return;
    for (size_t i = 0; i < c->nlistens; i++) {
        const struct weir_conf_addr *l = &c->listens[i].addr;
        if (conf_addr_equal(a, l) ||
            (l->ss.ss_family == a->ss.ss_family && addr_port(&l->ss) == addr_port(&a->ss) &&
             (addr_is_any(&l->ss) || addr_is_any(&a->ss)))) {
            conf_err_line(L, c->file, a->line ? a->line : 1,
                          "admin.address '%s' overlaps listen address '%s' (line %d): give the admin "
                          "endpoint its own port",
                          a->text, l->text, l->line);
            return;
        }
    }
}

static const struct key stats_keys[] = {
    KEY_BOOL("enabled", struct weir_conf, stats.enabled),
};

static const struct key top_keys[] = {
    KEY_CALL("workers", K_ANY, 0, key_workers),
    KEY_CALL("listen", K_LIST, KF_REQUIRED, key_listen),
    KEY_GROUP("timeouts", timeout_keys, NULL),
    KEY_GROUP("limits", limit_keys, NULL),
    KEY_GROUP("log", log_keys, NULL),
    KEY_CALL("pools", K_LIST, KF_REQUIRED, key_pools),
    KEY_CALL("routes", K_LIST, KF_REQUIRED, key_routes),
    KEY_GROUP("admin", admin_keys, admin_post),
    KEY_GROUP("stats", stats_keys, NULL),
    KEY_CALL("autoscale", K_ANY, 0, conf_key_autoscale),  /* a group; conf_autoscale.c */
    KEY_CALL("resolvers", K_LIST, 0, conf_key_resolvers), /* conf_dns.c */
    KEY_CALL("cache", K_ANY, 0, conf_key_cache), /* a group: its table is in conf_cache.c */
};

static void conf_defaults(struct loader *L, struct weir_conf *c)
{
    c->workers = 1;
    c->timeouts.connect_ms = 2000;
    c->timeouts.client_header_ms = 10000;
    c->timeouts.client_body_ms = 60000;
    c->timeouts.upstream_response_ms = 30000;
    c->timeouts.idle_ms = 60000;
    c->timeouts.upstream_idle_ms = 30000;
    c->timeouts.drain_ms = 10000;
    c->limits.header_bytes = 32768;
    c->limits.max_connections = 20000;
    c->limits.upstream_idle_per_server = 64;
    c->log.access = conf_strdup(L, "stderr");
    c->log.format = WEIR_LOG_COMBINED;
    c->log.level = WEIR_LOG_INFO;
    c->log.error = conf_strdup(L, "stderr");
    c->stats.enabled = 1;
    conf_cache_defaults(L, c);
    c->admin.enabled = 0;
    c->admin.max_connections = 64;
    c->admin.request_timeout_ms = 10000;
    if (conf_set_addr_default(L, &c->admin.addr, "127.0.0.1:9901") < 0)
        L->oom = 1;
}

/* ---- entry points ----------------------------------------------------------- */

struct weir_conf *weir_conf_load(const char *path, struct weir_conf_errors *errs)
{
    struct loader L;
    struct weir_conf *c;
    config_t cf;
    FILE *fp;
    char *dir, *slash;

    memset(&L, 0, sizeof(L));
    L.file = path;
    L.errs = errs;

    fp = fopen(path, "r");
    if (fp == NULL) {
        conf_err_line(&L, path, 0, "cannot open the configuration file: %s", strerror(errno));
        return NULL;
    }
    fclose(fp);

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        conf_err_line(&L, path, 0, "out of memory");
        return NULL;
    }
    L.c = c;
    c->file = conf_strdup(&L, path);
    conf_defaults(&L, c);

    config_init(&cf);
    /* @include "x" is relative to the file's directory. */
    dir = conf_strdup(&L, path);
    if (dir != NULL) {
        slash = strrchr(dir, '/');
        if (slash != NULL) {
            slash[slash == dir ? 1 : 0] = '\0';
            config_set_include_dir(&cf, dir);
            L.dir = dir;
        }
    }
    if (!config_read_file(&cf, path)) {
        char full[1024];
        const char *ef = conf_source_file(&L, config_error_file(&cf), full, sizeof(full));
        const char *et = config_error_text(&cf) != NULL ? config_error_text(&cf) : "unknown error";
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            conf_err_line(&L, ef, config_error_line(&cf), "cannot read: %s", et);
        else if (strcmp(et, "syntax error") == 0)
            conf_err_line(&L, ef, config_error_line(&cf), "syntax error");
        else
            conf_err_line(&L, ef, config_error_line(&cf), "syntax error: %s", et);
    } else if (conf_prescan_ints(&L, path) == 0) {
        conf_walk_group(&L, config_root_setting(&cf), "", top_keys, WEIR_ARRAY_LEN(top_keys), c);
        resolve_routes(&L);
        check_admin_addr(&L);
    }
    config_destroy(&cf);
    free(dir);

    if (L.oom)
        conf_err_line(&L, path, 0, "out of memory while loading the configuration");
    if (errs->n > 0 || L.oom) {
        weir_conf_free(c);
        return NULL;
    }
    return c;
}

static void addr_free(struct weir_conf_addr *a)
{
    free(a->text);
}

void weir_conf_free(struct weir_conf *c)
{
    size_t i, j;

    if (c == NULL)
        return;
    free(c->file);
    for (i = 0; i < c->nlistens; i++) {
        addr_free(&c->listens[i].addr);
        conf_tls_listen_free(&c->listens[i]);
    }
    free(c->listens);
    free(c->log.access);
    free(c->log.error);
    for (i = 0; i < c->npools; i++) {
        struct weir_conf_pool *p = &c->pools[i];
        free(p->name);
        free(p->policy);
        free(p->hash_header);
        for (j = 0; j < p->nservers; j++)
            addr_free(&p->servers[j].addr);
        free(p->servers);
        free(p->health.path);
        free(p->health.method);
        free(p->health.host);
        free(p->health.expect_body);
        conf_tls_pool_free(p);
        weir_conf_dns_free(p);
    }
    free(c->pools);
    weir_conf_resolvers_free(c);
    for (i = 0; i < c->nroutes; i++) {
        free(c->routes[i].host);
        free(c->routes[i].path_prefix);
    }
    free(c->routes);
    addr_free(&c->admin.addr);
    free(c->admin.token);
    for (i = 0; i < c->admin.nallowed_hosts; i++)
        free(c->admin.allowed_hosts[i]);
    free(c->admin.allowed_hosts);
    weir_conf_autoscale_free(&c->autoscale);
    conf_cache_free(c);
    free(c);
}

void weir_conf_errors_free(struct weir_conf_errors *errs)
{
    size_t i;

    if (errs == NULL)
        return;
    for (i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}
