/* runtime.c - configuration snapshots: pools, servers, routes. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/stats.h"
#include "weir/tls.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weir_rt *current;
static _Atomic unsigned current_gen;

/* The previous snapshot's pool of the same name, or NULL. */
static const struct weir_pool *find_prev_pool(const struct weir_rt *prev, const char *pool)
{
    if (prev == NULL)
        return NULL;
    for (size_t i = 0; i < prev->npools; i++)
        if (strcmp(prev->pools[i].name, pool) == 0)
            return &prev->pools[i];
    return NULL;
}

static int server_addr_cmp(const void *a, const void *b)
{
    const struct weir_server *const *x = a, *const *y = b;
    return strcmp((*x)->address, (*y)->address);
}

/* The previous pool's servers sorted by address, so each server of the new
 * pool is found in O(log n): a rebuild is O(n log n), not O(n^2) (the
 * runtime API rebuilds on every add). NULL when there is nothing to search
 * or out of memory (*n = 0). */
static struct weir_server **prev_index(const struct weir_pool *pp, size_t *n)
{
    struct weir_server **v;

    *n = 0;
    if (pp == NULL || pp->set.n == 0 || (v = malloc(pp->set.n * sizeof(*v))) == NULL)
        return NULL;
    memcpy(v, pp->set.v, pp->set.n * sizeof(*v));
    qsort(v, pp->set.n, sizeof(*v), server_addr_cmp);
    *n = pp->set.n;
    return v;
}

static struct weir_server *find_prev_server(struct weir_server **idx, size_t n, const char *addr)
{
    struct weir_server key = {.address = (char *)addr}, *kp = &key;
    struct weir_server **hit = n ? bsearch(&kp, idx, n, sizeof(*idx), server_addr_cmp) : NULL;
    return hit != NULL ? *hit : NULL;
}

static void pool_destroy(struct weir_pool *p, int nworkers)
{
    for (int w = 0; w < nworkers; w++)
        if (p->lb_state[w] != NULL)
            p->lb->destroy(p->lb_state[w]);
    for (size_t j = 0; j < p->set.n; j++)
        weir_server_release(p->set.v[j]);
    free(p->set.v);
    weir_stats_put(p->stats);
}

static int pool_build(struct weir_pool *p, const struct weir_conf_pool *cp, const struct weir_rt *prev,
                      int nworkers)
{
    p->conf = cp;
    p->name = cp->name;
    p->lb = weir_lb_find(cp->policy);
    p->stats = weir_stats_get(WEIR_STATS_POOL, cp->name);
    if (p->lb == NULL)
        return -1;
    p->set.v = calloc(cp->nservers ? cp->nservers : 1, sizeof(*p->set.v));
    if (p->set.v == NULL)
        return -1;
    size_t nidx;
    struct weir_server **idx = prev_index(find_prev_pool(prev, cp->name), &nidx);
    for (size_t j = 0; j < cp->nservers; j++) {
        const struct weir_conf_server *cs = &cp->servers[j];
        struct weir_server *s = find_prev_server(idx, nidx, cs->addr.text);
        if (s != NULL) {
            weir_server_retain(s);
            atomic_store(&s->weight, cs->weight);
        } else {
            s = weir_server_new(cs->addr.text, (const struct sockaddr *)&cs->addr.ss, cs->addr.len,
                                cs->weight);
            if (s == NULL) {
                free(idx);
                return -1;
            }
            char key[512];
            snprintf(key, sizeof(key), "%s/%s", cp->name, cs->addr.text);
            s->stats = weir_stats_get(WEIR_STATS_SERVER, key);
        }
        p->set.v[p->set.n++] = s;
    }
    free(idx);
    for (int w = 0; w < nworkers; w++) {
        p->lb_state[w] = p->lb->init(&p->set);
        if (p->lb_state[w] == NULL)
            return -1;
    }
    return 0;
}

struct weir_rt *weir_rt_build(struct weir_conf *conf, const struct weir_rt *prev, int nworkers)
{
    struct weir_rt *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    atomic_init(&rt->refcnt, 1);
    rt->nworkers = nworkers;
    rt->pools = calloc(conf->npools ? conf->npools : 1, sizeof(*rt->pools));
    rt->routes = calloc(conf->nroutes ? conf->nroutes : 1, sizeof(*rt->routes));
    if (rt->pools == NULL || rt->routes == NULL)
        goto err;
    for (size_t i = 0; i < conf->npools; i++) {
        rt->npools++;
        if (pool_build(&rt->pools[i], &conf->pools[i], prev, nworkers) != 0)
            goto err;
    }
    for (size_t i = 0; i < conf->nroutes; i++) {
        const struct weir_conf_route *cr = &conf->routes[i];
        struct weir_route *r = &rt->routes[i];
        if (strcmp(cr->host, "*") == 0) {
            r->host_kind = WEIR_ROUTE_ANY;
        } else if (cr->host[0] == '*' && cr->host[1] == '.') {
            r->host_kind = WEIR_ROUTE_SUFFIX;
            r->host = cr->host + 1; /* ".example.com" */
        } else {
            r->host_kind = WEIR_ROUTE_EXACT;
            r->host = cr->host;
        }
        r->host_len = r->host ? strlen(r->host) : 0;
        r->prefix = cr->path_prefix;
        r->prefix_len = strlen(cr->path_prefix);
        r->pool = &rt->pools[cr->pool];
        r->cache = cr->cache;
        char key[1024];
        snprintf(key, sizeof(key), "%s %s", cr->host, cr->path_prefix);
        r->stats = weir_stats_get(WEIR_STATS_ROUTE, key);
        rt->nroutes++;
    }
    rt->conf = conf;
    return rt;
err:
    for (size_t i = 0; i < rt->npools; i++)
        pool_destroy(&rt->pools[i], nworkers);
    free(rt->pools);
    free(rt->routes);
    free(rt);
    return NULL;
}

void weir_rt_retain(struct weir_rt *rt)
{
    atomic_fetch_add_explicit(&rt->refcnt, 1, memory_order_relaxed);
}

void weir_rt_release(struct weir_rt *rt)
{
    if (rt == NULL || atomic_fetch_sub_explicit(&rt->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < rt->npools; i++)
        pool_destroy(&rt->pools[i], rt->nworkers);
    for (size_t i = 0; i < rt->nroutes; i++)
        weir_stats_put(rt->routes[i].stats);
    free(rt->pools);
    free(rt->routes);
    weir_tls_set_free(rt->tls);
    weir_conf_free(rt->conf);
    free(rt);
}

const struct weir_route *weir_rt_route(const struct weir_rt *rt, const char *host, size_t host_len,
                                       const char *path, size_t path_len)
{
    for (size_t i = 0; i < rt->nroutes; i++) {
        const struct weir_route *r = &rt->routes[i];
        switch (r->host_kind) {
        case WEIR_ROUTE_EXACT:
            if (host_len != r->host_len || memcmp(host, r->host, host_len) != 0)
                continue;
            break;
        case WEIR_ROUTE_SUFFIX:
            /* "*.example.com" matches "a.example.com" but not "example.com" */
            if (host_len <= r->host_len || memcmp(host + host_len - r->host_len, r->host, r->host_len) != 0)
                continue;
            break;
        default:
            break;
        }
        if (path_len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0)
            continue;
        return r;
    }
    return NULL;
}

struct weir_rt *weir_rt_current(void)
{
    pthread_mutex_lock(&current_lock);
    struct weir_rt *rt = current;
    if (rt != NULL)
        weir_rt_retain(rt);
    pthread_mutex_unlock(&current_lock);
    return rt;
}

unsigned weir_rt_generation(void)
{
    return atomic_load_explicit(&current_gen, memory_order_acquire);
}

void weir_rt_publish(struct weir_rt *rt)
{
    pthread_mutex_lock(&current_lock);
    struct weir_rt *old = current;
    unsigned gen = atomic_load(&current_gen) + 1;
    if (rt != NULL)
        rt->generation = gen;
    current = rt;
    atomic_store_explicit(&current_gen, gen, memory_order_release);
    pthread_mutex_unlock(&current_lock);
    weir_rt_release(old);
}
