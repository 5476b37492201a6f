/*
 * cache_purge.c - invalidation on unsafe methods (RFC 9111 4.4), purges
 * (admin API and the Redis purge channel), the recent purge rules that L2
 * values are judged by, and the purge generation. Depends on cache_serve.c
 * and cache_l2.c.
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

/* Recent purges (from the channel): an L2 value stored before a purge
 * that matches it is refused (hard) or stale (soft), so prefix and tag
 * purges reach L2 without scanning it. */
static pthread_mutex_t rules_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rule {
    char kind; /* 'u' url, 'p' prefix, 't' tag */
    char soft;
    int64_t at;
    char *value;
} rules[RULES_MAX];
static size_t nrules, next_rule;

static void publish_purge(struct cache_worker *cw, const char *kind, const char *value, int soft);

/* Remember a purge made at `at` (unless a rule already covers it: the same
 * target, as late or later, and as hard). */
static void rule_add(char kind, int soft, const char *value, int64_t at)
{
    char *v;
    struct rule *r;

    pthread_mutex_lock(&rules_mu);
    for (size_t i = 0; i < nrules; i++) {
        r = &rules[i];
        if (r->value != NULL && r->kind == kind && r->at >= at && (!r->soft || soft) &&
            strcmp(r->value, value) == 0) {
            pthread_mutex_unlock(&rules_mu);
            return;
        }
    }
    v = strdup(value);
    if (v == NULL) {
        pthread_mutex_unlock(&rules_mu);
        return;
    }
    r = &rules[next_rule];
    free(r->value);
    r->kind = kind;
    r->soft = (char)soft;
    r->at = at;
    r->value = v;
    next_rule = (next_rule + 1) % RULES_MAX;
    if (nrules < RULES_MAX)
        nrules++;
    pthread_mutex_unlock(&rules_mu);
}

/* An L2 value after the purges it predates: -1 refused (a hard purge), or
 * the lifetime to judge it by (a soft purge caps it at its age then). */
int64_t cache_rules_apply(const struct weir_cache_obj *o)
{
    int64_t lifetime = o->lifetime, now = cache_now();

    pthread_mutex_lock(&rules_mu);
    for (size_t i = 0; i < nrules; i++) {
        const struct rule *r = &rules[i];
        int match;
        if (r->value == NULL || r->at < o->stored_time || r->at + RULES_SECONDS < now)
            continue;
        if (r->kind == 'u')
            match = strcmp(o->url, r->value) == 0;
        else if (r->kind == 'p')
            match = strncmp(o->url, r->value, strlen(r->value)) == 0;
        else
            match = weir_cache_obj_has_tag(o, r->value);
        if (!match)
            continue;
        if (!r->soft) {
            lifetime = -1;
            break;
        }
        int64_t age = weir_cache_age(&o->times, r->at);
        if (age < lifetime)
            lifetime = age;
    }
    pthread_mutex_unlock(&rules_mu);
    return lifetime;
}

struct inval {
    struct cache_worker *cw;
    int method;
    char *url;
};

static int inval_on_head(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m)
{
    struct inval *iv = fdata;
    char *urls[3];
    int n = weir_cache_invalidations(iv->method, m->status, iv->url, m->headers, m->nheaders, urls);

    cache_add_status(x, "method", m->status, 0, NULL);
    for (int i = 0; i < n; i++) {
        weir_cache_l1_purge_url(cache_g.l1, urls[i], 0, cache_now());
        publish_purge(iv->cw, "url", urls[i], 0);
        free(urls[i]);
    }
    return WEIR_DECLINED; /* nothing more to see */
}

static void inval_on_abort(struct weir_exchange *x, void *fdata)
{
    struct inval *iv = fdata;
    free(iv->url);
    free(iv);
}

static void inval_on_local(struct weir_exchange *x, void *fdata, int status)
{
    cache_add_local_status(x, "method", status); /* nothing changed upstream: nothing to invalidate */
}

static const struct weir_resp_filter inval_filter = {"cache-invalidate", inval_on_head,  NULL,
                                                     inval_on_abort,     inval_on_abort, inval_on_local};

int cache_on_request_unsafe(struct weir_exchange *x, const struct weir_req_info *ri, struct cache_worker *cw,
                            char *url)
{
    struct inval *iv = calloc(1, sizeof(*iv));

    if (iv == NULL) {
        free(url);
        return WEIR_HOOK_CONTINUE;
    }
    iv->cw = cw;
    iv->method = ri->method_id;
    iv->url = url;
    if (weir_exchange_add_filter(x, &inval_filter, iv) != WEIR_OK)
        inval_on_abort(x, iv);
    return WEIR_HOOK_CONTINUE;
}

/*
 * The purge log: every purge also goes into a Redis list (newest first, at
 * most RULES_MAX records, kept RULES_SECONDS) as "AT KIND SOFT VALUE", AT
 * the publisher's wall clock in seconds. An instance reads it whenever its
 * subscription (re)starts, so that prefix and tag purges made before it
 * started, or while it was not listening, still hold for the L2 values
 * they predate. Written before the generation is bumped and the message
 * published (one connection: in that order).
 */
static void log_purge(struct weir_cache_redis *r, const char *kind, const char *value, int soft)
{
    char rec[4096];
    int n = snprintf(rec, sizeof(rec), "%lld %c %d %s", (long long)cache_now(), kind[0], soft ? 1 : 0, value);

    if (n > 0 && (size_t)n < sizeof(rec))
        weir_cache_redis_lpush(r, PURGE_LOG, strlen(PURGE_LOG), rec, (size_t)n, RULES_MAX,
                               (int64_t)RULES_SECONDS * 1000, NULL, NULL, NULL);
}

static void log_reply(void *arg, int status, const char *data, size_t len)
{
    size_t pos = 0, n, loaded = 0;
    const char *item;

    if (status != WEIR_REDIS_OK)
        return;
    while (weir_redis_list_next(data, len, &pos, &item, &n)) {
        char rec[4096], kind;
        long long at;
        int soft, off = 0;
        if (n >= sizeof(rec))
            continue;
        memcpy(rec, item, n);
        rec[n] = '\0';
        if (sscanf(rec, "%lld %c %d %n", &at, &kind, &soft, &off) != 3 || off <= 0 || rec[off] == '\0' ||
            (kind != 'u' && kind != 'p' && kind != 't'))
            continue; /* not a record of ours */
        if (at + RULES_SECONDS < cache_now())
            continue;
        rule_add(kind, soft != 0, rec + off, at);
        loaded++;
    }
    weir_log_info("cache: purge log read: %zu recent purge(s) apply to L2 values", loaded);
}

/* Message: "KIND SOFT VALUE". */
static void publish_purge(struct cache_worker *cw, const char *kind, const char *value, int soft)
{
    char msg[4096];
    int n;

    if (cw == NULL || cw->l2 == NULL || !weir_cache_redis_usable(cw->l2))
        return;
    if (strcmp(kind, "url") == 0) {
        char kbuf[2048], *key = weir_cache_key(WEIR_HTTP_GET, value);
        if (key != NULL) {
            size_t kl = cache_l2_key(kbuf, sizeof(kbuf), key, NULL, 0);
            weir_cache_redis_del(cw->l2, kbuf, kl, NULL, NULL, NULL);
            free(key);
        }
    }
    log_purge(cw->l2, kind, value, soft);
    weir_cache_redis_incr(cw->l2, PURGE_GEN, strlen(PURGE_GEN), NULL, NULL, NULL);
    n = snprintf(msg, sizeof(msg), "%s %d %s", kind, soft ? 1 : 0, value);
    if (n > 0 && (size_t)n < sizeof(msg))
        weir_cache_redis_publish(cw->l2, PURGE_CHAN, msg, (size_t)n, NULL, NULL, NULL);
}

static size_t purge_local(const char *kind, const char *value, int soft)
{
    int64_t now = cache_now();

    if (strcmp(kind, "url") == 0)
        return weir_cache_l1_purge_url(cache_g.l1, value, soft, now);
    if (strcmp(kind, "prefix") == 0)
        return weir_cache_l1_purge_prefix(cache_g.l1, value, soft, now);
    if (strcmp(kind, "tag") == 0)
        return weir_cache_l1_purge_tag(cache_g.l1, value, soft, now);
    return 0;
}

void cache_on_purge_message(void *arg, const char *p, size_t n)
{
    char buf[4096], kind[16], *value;
    int soft;

    if (n >= sizeof(buf))
        return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (sscanf(buf, "%15s %d", kind, &soft) != 2)
        return;
    value = strchr(buf, ' ');
    value = value ? strchr(value + 1, ' ') : NULL;
    if (value == NULL)
        return;
    /* each message follows one INCR of the generation, in order */
    long long g = atomic_load(&cache_g.purge_gen);
    while (g >= 0 && !atomic_compare_exchange_weak(&cache_g.purge_gen, &g, g + 1))
        ;
    weir_cache_stats_purged(WEIR_CS_TIER_L1, purge_local(kind, value + 1, soft));
    rule_add(kind[0] == 'u' ? 'u' : kind[0] == 'p' ? 'p' : 't', soft, value + 1, cache_now());
}

static void gen_reply(void *arg, int status, long long v)
{
    long long prev;

    if (status == WEIR_REDIS_MISS)
        v = 0;
    else if (status != WEIR_REDIS_OK)
        return;
    prev = atomic_exchange(&cache_g.purge_gen, v);
    /* purges were published while we were not listening: drop what we
     * can no longer trust */
    if (prev >= 0 && prev != v) {
        size_t n = weir_cache_l1_purge_all(cache_g.l1);
        weir_cache_stats_purged(WEIR_CS_TIER_L1, n);
        weir_log_warn("cache: purges happened while the purge channel was down: dropped %zu L1 objects", n);
    }
}

void cache_on_subscribed(void *arg)
{
    struct cache_worker *cw = arg;
    weir_cache_redis_getint(cw->l2, PURGE_GEN, strlen(PURGE_GEN), gen_reply, NULL, NULL);
    weir_cache_redis_lrange(cw->l2, PURGE_LOG, strlen(PURGE_LOG), RULES_MAX, log_reply, NULL, NULL);
}

struct purge_req {
    weir_cache_purge_cb cb;
    void *arg;
    size_t l1;
};

static void purge_del_done(void *arg, int status, long long v)
{
    struct purge_req *p = arg;
    p->cb(p->arg, p->l1, status == WEIR_REDIS_OK ? (size_t)v : 0, status == WEIR_REDIS_OK);
    free(p);
}

int weir_cache_admin_attach(struct event_base *base)
{
    if (!cache_g.ready || !cache_g.has_l2 || cache_g.admin_l2 != NULL)
        return 0;
    cache_g.admin_l2 = weir_cache_redis_new(base, &cache_g.rconf, "admin");
    return cache_g.admin_l2 != NULL ? 0 : -1;
}

void weir_cache_admin_detach(void)
{
    weir_cache_redis_free(cache_g.admin_l2);
    cache_g.admin_l2 = NULL;
}

void weir_cache_purge(const char *kind, const char *value, int soft, weir_cache_purge_cb cb, void *arg)
{
    struct weir_cache_redis *r = cache_g.admin_l2;
    struct purge_req *p;
    size_t n;
    char msg[4096];
    int ml;

    n = cache_g.ready ? purge_local(kind, value, soft) : 0;
    ml = snprintf(msg, sizeof(msg), "%s %d %s", kind, soft ? 1 : 0, value);
    if (r == NULL || !weir_cache_redis_usable(r) || ml <= 0 || (size_t)ml >= sizeof(msg)) {
        weir_cache_stats_purged(WEIR_CS_TIER_L1, n); /* else counted when the channel brings it back */
        cb(arg, n, 0, r == NULL);
        return;
    }
    /* every instance (this one too) records the purge for its L2 reads and
     * purges its L1; a hard URL purge also deletes the stored value */
    log_purge(r, kind, value, soft);
    weir_cache_redis_incr(r, PURGE_GEN, strlen(PURGE_GEN), NULL, NULL, NULL);
    weir_cache_redis_publish(r, PURGE_CHAN, msg, (size_t)ml, NULL, NULL, NULL);
    p = malloc(sizeof(*p));
    if (strcmp(kind, "url") == 0 && !soft && p != NULL) {
        char kbuf[2048], *key = weir_cache_key(WEIR_HTTP_GET, value);
        size_t kl;
        p->cb = cb;
        p->arg = arg;
        p->l1 = n;
        if (key != NULL && strlen(key) < 1900) {
            kl = cache_l2_key(kbuf, sizeof(kbuf), key, NULL, 0);
            free(key);
            if (weir_cache_redis_del(r, kbuf, kl, purge_del_done, p, NULL) == WEIR_OK)
                return;
        } else {
            free(key);
        }
    }
    free(p);
    cb(arg, n, 0, 1);
}

void cache_purge_shutdown(void)
{
    pthread_mutex_lock(&rules_mu);
    for (size_t i = 0; i < RULES_MAX; i++) {
        free(rules[i].value);
        rules[i].value = NULL;
    }
    nrules = next_rule = 0;
    pthread_mutex_unlock(&rules_mu);
}
