/*
 * conf_edit.c - deep copy of a struct weir_conf and server list edits for
 * the runtime API.
 *
 * weir_conf_dup copies the struct whole first (so scalar fields added later
 * are copied without a change here), then replaces every pointer by a copy
 * of what it points to. A new pointer field in struct weir_conf must be
 * added to dup_* below, or the copy and the original would share it (the
 * unit test duplicates the example configuration, which sets every key).
 */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "weir/conf_autoscale.h"
#include "weir/conf_dns.h"
#include "weir/conf_edit.h"
#include "weir/core.h"

/* A copy of s (NULL for NULL); sets *oom when the copy fails. */
static char *xdup(const char *s, int *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

/* A copy of an array of n elements of `size` bytes (NULL for NULL). */
static void *xdup_array(const void *v, size_t n, size_t size, int *oom)
{
    void *d;

    if (v == NULL)
        return NULL;
    d = malloc(n ? n * size : 1);
    if (d == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(d, v, n * size);
    return d;
}

/* Every pointer of the byte copy is overwritten with its own copy, or NULL
 * when that copy failed (never left shared), so weir_conf_free of a partial
 * copy frees only what the copy owns. */
struct weir_conf *weir_conf_dup(const struct weir_conf *c)
{
    struct weir_conf *d = malloc(sizeof(*d));
    int oom = 0;
    size_t i, j;

    if (d == NULL)
        return NULL;
    memcpy(d, c, sizeof(*d));
    d->file = xdup(c->file, &oom);
    d->log.access = xdup(c->log.access, &oom);
    d->log.error = xdup(c->log.error, &oom);
    d->admin.addr.text = xdup(c->admin.addr.text, &oom);
    d->admin.token = xdup(c->admin.token, &oom);
    d->admin.allowed_hosts =
        xdup_array(c->admin.allowed_hosts, c->admin.nallowed_hosts, sizeof(char *), &oom);
    if (d->admin.allowed_hosts == NULL)
        d->admin.nallowed_hosts = 0;
    for (i = 0; i < d->admin.nallowed_hosts; i++)
        d->admin.allowed_hosts[i] = xdup(c->admin.allowed_hosts[i], &oom);
    d->cache.redis.address = xdup(c->cache.redis.address, &oom);
    d->cache.redis.password = xdup(c->cache.redis.password, &oom);
    d->cache.redis.prefix = xdup(c->cache.redis.prefix, &oom);

    d->listens = xdup_array(c->listens, c->nlistens, sizeof(*c->listens), &oom);
    if (d->listens == NULL)
        d->nlistens = 0;
    for (i = 0; i < d->nlistens; i++) {
        const struct weir_conf_listen_tls *st = &c->listens[i].tls;
        struct weir_conf_listen_tls *t = &d->listens[i].tls;

        d->listens[i].addr.text = xdup(c->listens[i].addr.text, &oom);
        t->ciphers = xdup(st->ciphers, &oom);
        t->ciphersuites = xdup(st->ciphersuites, &oom);
        t->certs = xdup_array(st->certs, st->ncerts, sizeof(*st->certs), &oom);
        if (t->certs == NULL)
            t->ncerts = 0;
        for (j = 0; j < t->ncerts; j++) {
            t->certs[j].cert = xdup(st->certs[j].cert, &oom);
            t->certs[j].key = xdup(st->certs[j].key, &oom);
        }
    }

    d->pools = xdup_array(c->pools, c->npools, sizeof(*c->pools), &oom);
    if (d->pools == NULL)
        d->npools = 0;
    for (i = 0; i < d->npools; i++) {
        const struct weir_conf_pool *sp = &c->pools[i];
        struct weir_conf_pool *p = &d->pools[i];

        p->name = xdup(sp->name, &oom);
        p->policy = xdup(sp->policy, &oom);
        p->hash_header = xdup(sp->hash_header, &oom);
        p->health.path = xdup(sp->health.path, &oom);
        p->health.method = xdup(sp->health.method, &oom);
        p->health.host = xdup(sp->health.host, &oom);
        p->health.expect_body = xdup(sp->health.expect_body, &oom);
        p->tls.ca_file = xdup(sp->tls.ca_file, &oom);
        p->tls.server_name = xdup(sp->tls.server_name, &oom);
        p->tls.cert = xdup(sp->tls.cert, &oom);
        p->tls.key = xdup(sp->tls.key, &oom);
        p->servers = xdup_array(sp->servers, sp->nservers, sizeof(*sp->servers), &oom);
        if (p->servers == NULL)
            p->nservers = 0;
        for (j = 0; j < p->nservers; j++)
            p->servers[j].addr.text = xdup(sp->servers[j].addr.text, &oom);
        if (weir_conf_dns_dup(p, sp) != 0)
            oom = 1;
    }

    d->routes = xdup_array(c->routes, c->nroutes, sizeof(*c->routes), &oom);
    if (d->routes == NULL)
        d->nroutes = 0;
    for (i = 0; i < d->nroutes; i++) {
        d->routes[i].host = xdup(c->routes[i].host, &oom);
        d->routes[i].path_prefix = xdup(c->routes[i].path_prefix, &oom);
    }

    if (weir_conf_autoscale_dup(&d->autoscale, &c->autoscale) != 0 || weir_conf_resolvers_dup(d, c) != 0)
        oom = 1;
    if (oom) {
        weir_conf_free(d);
        return NULL;
    }
    return d;
}

struct weir_conf_pool *weir_conf_find_pool(struct weir_conf *c, const char *name)
{
    for (size_t i = 0; i < c->npools; i++)
        if (c->pools[i].name != NULL && strcmp(c->pools[i].name, name) == 0)
            return &c->pools[i];
    return NULL;
}

static int same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a, *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a, *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

long weir_conf_find_server(const struct weir_conf_pool *p, const char *address,
                           const struct sockaddr_storage *ss)
{
    size_t i;

    for (i = 0; i < p->nservers; i++)
        if (p->servers[i].addr.text != NULL && strcmp(p->servers[i].addr.text, address) == 0)
            return (long)i;
    if (ss != NULL)
        for (i = 0; i < p->nservers; i++)
            if (p->servers[i].addr.len > 0 && same_sockaddr(&p->servers[i].addr.ss, ss))
                return (long)i;
    return -1;
}

int weir_conf_parse_server_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len,
                                const char **why)
{
    if (text == NULL || text[0] == '*') {
        *why = "a server address must name one host (\"*\" is for listen addresses)";
        return -1;
    }
    if (strlen(text) > 255 + 8) {
        *why = "address too long";
        return -1;
    }
    return weir_conf_parse_addr(text, ss, len, why);
}

int weir_conf_pool_add_server(struct weir_conf_pool *p, const char *address, int weight, const char **why)
{
    struct weir_conf_server *v, *s;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char *text;

    if (weight < WEIR_CONF_WEIGHT_MIN || weight > WEIR_CONF_WEIGHT_MAX) {
        *why = "weight must be an integer between 1 and 1000";
        return WEIR_ERROR;
    }
    if (p->nservers >= WEIR_CONF_POOL_MAX_SERVERS) {
        *why = "the pool already has the maximum number of servers";
        return WEIR_ERROR;
    }
    if (weir_conf_parse_server_addr(address, &ss, &len, why) != 0)
        return WEIR_ERROR;
    if (weir_conf_find_server(p, address, &ss) >= 0)
        return WEIR_DECLINED;
    text = strdup(address);
    v = realloc(p->servers, (p->nservers + 1) * sizeof(*v));
    if (text == NULL || v == NULL) {
        free(text);
        if (v != NULL)
            p->servers = v;
        *why = "out of memory";
        return WEIR_ERROR;
    }
    p->servers = v;
    s = &v[p->nservers++];
    memset(s, 0, sizeof(*s));
    s->addr.text = text;
    s->addr.ss = ss;
    s->addr.len = len;
    s->weight = weight;
    return WEIR_OK;
}

void weir_conf_pool_remove_server(struct weir_conf_pool *p, size_t i)
{
    if (i >= p->nservers)
        return;
    free(p->servers[i].addr.text);
    memmove(&p->servers[i], &p->servers[i + 1], (p->nservers - i - 1) * sizeof(*p->servers));
    p->nservers--;
}
