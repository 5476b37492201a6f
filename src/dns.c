/*
 * dns.c - DNS discovery (see dns.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/dns.h>

#include "weir/conf_edit.h"
#include "weir/core.h"
#include "weir/dns.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/pool_edit.h"
#include "weir/runtime.h"
#include "weir/server.h"

#define HOUSEKEEP_MS   100
#define MIN_RESOLVE_MS 500
#define MAX_ADDRS      64

struct draining {
    char addr[64];
    unsigned server_id;
    int64_t since_ms;
    int quiet;
};

struct name {
    char *pool, *name;
    int port, weight, interval_ms;
    char addrs[MAX_ADDRS][64]; /* last good answer, "IP:port" */
    int naddrs;
    int answered; /* at least one good answer */
    struct draining drains[MAX_ADDRS];
    int ndrains;
    struct event *timer;
    struct evdns_request *req[2]; /* [0] A, [1] AAAA, NULL when answered */
    int pending;                  /* queries of this round not answered yet */
    char got[MAX_ADDRS][64];      /* this round's addresses so far */
    int ngot, round_ok, round_err, round_cancel, round_ttl;
    int dead;    /* removed from the configuration; freed when req ends */
    int failing; /* logged as failing */
    int seen;
    LIST_ENTRY(name) link;
};

/* An address a scale-down removed while DNS may still list it. */
struct suppressed {
    char pool[64], addr[64];
    int64_t until_ms;
};

static struct {
    struct event_base *base;
    struct evdns_base *dns;
    struct suppressed supp[MAX_ADDRS];
    int nsupp;
    char resolvers_key[1024]; /* the resolvers dns was made with */
    struct event *house;
    unsigned gen;
    int drain_ms;
    LIST_HEAD(, name) names;
    int started;
} D;

static int64_t now_ms(void)
{
    return (int64_t)(weir_now_us() / 1000);
}

static void name_free(struct name *n)
{
    if (n->timer != NULL)
        event_free(n->timer);
    free(n->pool);
    free(n->name);
    free(n);
}

static void arm(struct name *n, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(n->timer, &tv);
}

static const struct weir_pool *rt_pool(const struct weir_rt *rt, const char *name)
{
    for (size_t i = 0; rt != NULL && i < rt->npools; i++)
        if (strcmp(rt->pools[i].name, name) == 0)
            return &rt->pools[i];
    return NULL;
}

static struct weir_server *pool_server(const struct weir_pool *p, const char *addr)
{
    for (size_t i = 0; p != NULL && i < p->set.n; i++)
        if (strcmp(p->set.v[i]->address, addr) == 0)
            return p->set.v[i];
    return NULL;
}

static int has_addr(char (*v)[64], int n, const char *a)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i], a) == 0)
            return 1;
    return 0;
}

static int supp_find(const char *pool, const char *addr)
{
    int64_t t = now_ms();
    for (int i = 0; i < D.nsupp;) {
        if (D.supp[i].until_ms <= t) { /* expired */
            D.supp[i] = D.supp[--D.nsupp];
            continue;
        }
        if (strcmp(D.supp[i].pool, pool) == 0 && strcmp(D.supp[i].addr, addr) == 0)
            return i;
        i++;
    }
    return -1;
}

void weir_dns_suppress(const char *pool, const char *address, int ms)
{
    int i = supp_find(pool, address);

    if (i < 0) {
        if (D.nsupp == MAX_ADDRS || strlen(pool) >= sizeof(D.supp[0].pool) ||
            strlen(address) >= sizeof(D.supp[0].addr))
            return;
        i = D.nsupp++;
        snprintf(D.supp[i].pool, sizeof(D.supp[i].pool), "%s", pool);
        snprintf(D.supp[i].addr, sizeof(D.supp[i].addr), "%s", address);
    }
    D.supp[i].until_ms = now_ms() + ms;
}

/* Apply a good answer: add the new addresses (not those a scale-down just
 * removed), drain the vanished ones, un-drain the ones that came back. */
static void reconcile(struct name *n, char (*addrs)[64], int count)
{
    struct weir_rt *rt = weir_rt_current();
    const struct weir_pool *p = rt_pool(rt, n->pool);
    const char *add[MAX_ADDRS];
    size_t nadd = 0;

    if (p == NULL) {
        weir_rt_release(rt);
        return;
    }
    /* a suppressed address the name no longer lists is forgotten: if it
     * comes back later, it is a new server */
    for (int i = 0; i < D.nsupp;) {
        const char *colon = strrchr(D.supp[i].addr, ':');
        if (strcmp(D.supp[i].pool, n->pool) == 0 && colon != NULL && atoi(colon + 1) == n->port &&
            !has_addr(addrs, count, D.supp[i].addr)) {
            D.supp[i] = D.supp[--D.nsupp];
            continue;
        }
        i++;
    }
    for (int i = 0; i < count; i++) {
        struct weir_server *s = pool_server(p, addrs[i]);
        if (s == NULL) {
            if (supp_find(n->pool, addrs[i]) < 0)
                add[nadd++] = addrs[i];
            continue;
        }
        for (int d = 0; d < n->ndrains; d++) {
            if (strcmp(n->drains[d].addr, addrs[i]) == 0) { /* back in the answers */
                weir_pool_edit_set_admin(s, WEIR_ADMIN_READY, n->pool);
                weir_log_info("dns: %s:%d lists %s again: drain cancelled", n->name, n->port, addrs[i]);
                n->drains[d] = n->drains[--n->ndrains];
                break;
            }
        }
    }
    for (int i = 0; i < n->naddrs; i++) {
        if (has_addr(addrs, count, n->addrs[i]))
            continue;
        struct weir_server *s = pool_server(p, n->addrs[i]);
        if (s == NULL || n->ndrains >= MAX_ADDRS)
            continue;
        struct draining *d = &n->drains[n->ndrains++];
        snprintf(d->addr, sizeof(d->addr), "%s", n->addrs[i]);
        d->server_id = s->id;
        d->since_ms = now_ms();
        d->quiet = 0;
        weir_pool_edit_set_admin(s, WEIR_ADMIN_DRAIN, n->pool);
        weir_log_info("dns: %s:%d no longer lists %s: draining it from pool '%s' (%ld in flight)", n->name,
                      n->port, d->addr, n->pool, weir_server_active(s));
    }
    weir_rt_release(rt);
    memcpy(n->addrs, addrs, sizeof(n->addrs[0]) * (size_t)count);
    n->naddrs = count;
    if (nadd > 0) {
        int added = weir_pool_edit_add(n->pool, add, nadd, n->weight);
        for (size_t i = 0; added > 0 && i < nadd; i++)
            weir_log_info("dns: %s:%d resolves to %s: added to pool '%s'", n->name, n->port, add[i], n->pool);
    }
}

static int cmp_addr(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The round (A and AAAA) is over: apply it, or keep everything on failure. */
static void round_done(struct name *n)
{
    int next = n->interval_ms;

    if (n->round_cancel) { /* the resolvers changed: ask again */
        arm(n, HOUSEKEEP_MS);
        return;
    }
    if (!n->round_ok) {
        if (!n->failing)
            weir_log_warn(
                "dns: cannot resolve %s (pool '%s'): %s; keeping its %d server(s), retrying every %d ms",
                n->name, n->pool, evdns_err_to_string(n->round_err), n->naddrs, n->interval_ms);
        n->failing = 1;
    } else {
        qsort(n->got, (size_t)n->ngot, sizeof(n->got[0]), cmp_addr);
        if (n->failing)
            weir_log_info("dns: %s (pool '%s') resolves again", n->name, n->pool);
        n->failing = 0;
        n->answered = 1;
        reconcile(n, n->got, n->ngot);
        /* honour the TTL: ask again when the answer expires, if sooner */
        if (n->round_ttl >= 0 && (int64_t)n->round_ttl * 1000 < next)
            next = n->round_ttl * 1000;
    }
    arm(n, next < MIN_RESOLVE_MS ? MIN_RESOLVE_MS : next);
}

static void resolved(struct name *n, int v6, int result, char type, int count, int ttl, void *addresses)
{
    n->req[v6] = NULL;
    n->pending--;
    if (result == DNS_ERR_SHUTDOWN || result == DNS_ERR_CANCEL) {
        n->round_cancel = 1;
    } else if (result == DNS_ERR_NONE || result == DNS_ERR_NODATA) {
        /* NODATA: the name exists without records of this type */
        n->round_ok = 1;
        if (result == DNS_ERR_NONE && ttl >= 0 && (n->round_ttl < 0 || ttl < n->round_ttl))
            n->round_ttl = ttl;
        for (int i = 0; result == DNS_ERR_NONE && i < count && n->ngot < MAX_ADDRS; i++) {
            char ip[INET6_ADDRSTRLEN];
            if (type == DNS_IPv4_A) {
                inet_ntop(AF_INET, &((const struct in_addr *)addresses)[i], ip, sizeof(ip));
                snprintf(n->got[n->ngot], sizeof(n->got[0]), "%s:%d", ip, n->port);
            } else if (type == DNS_IPv6_AAAA) {
                inet_ntop(AF_INET6, &((const struct in6_addr *)addresses)[i], ip, sizeof(ip));
                snprintf(n->got[n->ngot], sizeof(n->got[0]), "[%s]:%d", ip, n->port);
            } else {
                break;
            }
            if (!has_addr(n->got, n->ngot, n->got[n->ngot]))
                n->ngot++;
        }
    } else if (n->round_err == 0) {
        n->round_err = result;
    }
    if (n->pending > 0)
        return;
    if (n->dead) {
        name_free(n);
        return;
    }
    round_done(n);
}

static void resolved_a_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    resolved(arg, 0, result, type, count, ttl, addresses);
}

static void resolved_aaaa_cb(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    resolved(arg, 1, result, type, count, ttl, addresses);
}

static void resolve_cb(evutil_socket_t fd, short what, void *arg)
{
    struct name *n = arg;

    if (n->pending > 0 || D.dns == NULL)
        return;
    n->ngot = n->round_ok = n->round_err = n->round_cancel = 0;
    n->round_ttl = -1;
    /* both queries first, so that an answer arriving at once (from a cache)
     * never ends the round early */
    n->pending = 2;
    n->req[0] = evdns_base_resolve_ipv4(D.dns, n->name, DNS_QUERY_NO_SEARCH, resolved_a_cb, n);
    if (n->req[0] == NULL)
        n->pending--;
    n->req[1] = n->pending > 0
                    ? evdns_base_resolve_ipv6(D.dns, n->name, DNS_QUERY_NO_SEARCH, resolved_aaaa_cb, n)
                    : NULL;
    if (n->req[1] == NULL)
        n->pending--;
    if (n->pending == 0) {
        weir_log_warn("dns: cannot send the query for %s", n->name);
        arm(n, n->interval_ms);
    }
}

/* (Re)create the evdns base when the resolvers changed. */
static void sync_resolvers(const struct weir_conf *c)
{
    char key[1024] = "";
    size_t used = 0;

    for (size_t i = 0; i < c->nresolvers; i++)
        used += (size_t)snprintf(key + used, sizeof(key) - used, "%s,", c->resolvers[i].text);
    if (D.dns != NULL && strcmp(key, D.resolvers_key) == 0)
        return;
    if (D.dns != NULL)
        evdns_base_free(D.dns, 1); /* pending lookups end with DNS_ERR_SHUTDOWN */
    D.dns = evdns_base_new(D.base, c->nresolvers ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    snprintf(D.resolvers_key, sizeof(D.resolvers_key), "%s", key);
    if (D.dns == NULL) {
        weir_log_error("dns: cannot set up the resolver");
        return;
    }
    for (size_t i = 0; i < c->nresolvers; i++)
        if (evdns_base_nameserver_sockaddr_add(D.dns, (const struct sockaddr *)&c->resolvers[i].ss,
                                               c->resolvers[i].len, 0) != 0)
            weir_log_error("dns: cannot use resolver %s", c->resolvers[i].text);
    evdns_base_set_option(D.dns, "timeout:", "2");
    evdns_base_set_option(D.dns, "attempts:", "2");
}

static struct name *name_find(const char *pool, const char *name, int port)
{
    struct name *n;
    LIST_FOREACH(n, &D.names, link)
    {
        if (!n->dead && n->port == port && strcmp(n->pool, pool) == 0 && strcmp(n->name, name) == 0)
            return n;
    }
    return NULL;
}

static void sync_names(const struct weir_rt *rt)
{
    struct name *n, *next;
    int any = 0;

    LIST_FOREACH(n, &D.names, link)
    n->seen = 0;
    for (size_t i = 0; i < rt->conf->npools; i++) {
        const struct weir_conf_pool *cp = &rt->conf->pools[i];
        for (size_t j = 0; j < cp->ndns; j++) {
            const struct weir_conf_dns *cd = &cp->dns[j];
            any = 1;
            n = name_find(cp->name, cd->name, cd->port);
            if (n == NULL) {
                n = calloc(1, sizeof(*n));
                if (n == NULL || (n->pool = strdup(cp->name)) == NULL ||
                    (n->name = strdup(cd->name)) == NULL ||
                    (n->timer = evtimer_new(D.base, resolve_cb, n)) == NULL) {
                    if (n != NULL)
                        name_free(n);
                    continue;
                }
                n->port = cd->port;
                LIST_INSERT_HEAD(&D.names, n, link);
                arm(n, 0);
            }
            n->weight = cd->weight;
            n->interval_ms = cd->interval_ms;
            n->seen = 1;
        }
    }
    if (any)
        sync_resolvers(rt->conf);
    for (n = LIST_FIRST(&D.names); n != NULL; n = next) {
        next = LIST_NEXT(n, link);
        if (n->seen || n->dead)
            continue;
        LIST_REMOVE(n, link);
        evtimer_del(n->timer);
        if (n->pending > 0) {
            n->dead = 1; /* freed by its last callback */
            for (int q = 0; q < 2; q++)
                if (n->req[q] != NULL)
                    evdns_cancel_request(D.dns, n->req[q]);
        } else {
            name_free(n);
        }
    }
}

/* Finish drains: remove a drained server once nothing is in flight (two
 * polls in a row) or drain_ms has passed. */
static void progress_drains(const struct weir_rt *rt)
{
    struct name *n;
    int64_t t = now_ms();

    LIST_FOREACH(n, &D.names, link)
    {
        const struct weir_pool *p = rt_pool(rt, n->pool);
        for (int d = 0; d < n->ndrains;) {
            struct draining *dr = &n->drains[d];
            struct weir_server *s = pool_server(p, dr->addr);
            if (s == NULL || s->id != dr->server_id) {
                n->drains[d] = n->drains[--n->ndrains];
                continue;
            }
            dr->quiet = weir_server_active(s) == 0 ? dr->quiet + 1 : 0;
            if (dr->quiet >= 2 || t - dr->since_ms >= D.drain_ms) {
                char addr[64];
                snprintf(addr, sizeof(addr), "%s", dr->addr);
                n->drains[d] = n->drains[--n->ndrains];
                if (weir_pool_edit_remove(n->pool, addr) == 0)
                    weir_log_info("dns: server %s removed from pool '%s' (drained)", addr, n->pool);
                return; /* the snapshot changed: the next poll goes on */
            }
            d++;
        }
    }
}

static void house_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_rt *rt = weir_rt_current();
    struct timeval tv = {0, HOUSEKEEP_MS * 1000};

    if (rt != NULL) {
        D.drain_ms = rt->conf->timeouts.drain_ms;
        if (rt->generation != D.gen) {
            D.gen = rt->generation;
            sync_names(rt);
        }
        progress_drains(rt);
        weir_rt_release(rt);
    }
    evtimer_add(D.house, &tv);
}

int weir_dns_start(struct event_base *base)
{
    memset(&D, 0, sizeof(D));
    LIST_INIT(&D.names);
    D.base = base;
    D.drain_ms = 10000;
    D.house = evtimer_new(base, house_cb, NULL);
    if (D.house == NULL)
        return -1;
    D.started = 1;
    house_cb(-1, 0, NULL);
    return 0;
}

void weir_dns_stop(void)
{
    struct name *n;

    if (!D.started)
        return;
    while ((n = LIST_FIRST(&D.names)) != NULL) {
        LIST_REMOVE(n, link);
        n->dead = 1;
        if (n->pending == 0)
            name_free(n);
    }
    if (D.dns != NULL)
        evdns_base_free(D.dns, 1); /* callbacks free the names still asking */
    event_free(D.house);
    memset(&D, 0, sizeof(D));
}

int weir_dns_expand(struct weir_conf *conf)
{
    struct name *n;
    int added = 0;

    LIST_FOREACH(n, &D.names, link)
    {
        if (n->dead)
            continue;
        struct weir_conf_pool *cp = NULL;
        for (size_t i = 0; i < conf->npools; i++)
            if (strcmp(conf->pools[i].name, n->pool) == 0)
                cp = &conf->pools[i];
        int listed = 0;
        for (size_t j = 0; cp != NULL && j < cp->ndns; j++)
            listed |= cp->dns[j].port == n->port && strcmp(cp->dns[j].name, n->name) == 0;
        if (!listed)
            continue;
        for (int i = 0; i < n->naddrs; i++) {
            const char *why;
            int draining = 0;
            for (int d = 0; d < n->ndrains; d++)
                draining |= strcmp(n->drains[d].addr, n->addrs[i]) == 0;
            if (!draining && supp_find(n->pool, n->addrs[i]) < 0 &&
                weir_conf_pool_add_server(cp, n->addrs[i], n->weight, &why) == WEIR_OK)
                added++;
        }
    }
    return added;
}
