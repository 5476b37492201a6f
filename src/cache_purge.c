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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "weir/cache_pgen.h"
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

/* A purge's INCR and PUBLISH go out as one script; where Redis refuses
 * scripts (EVAL disabled or not allowed to this user) they go out as two
 * commands, the message without its generation: subscribers apply it and,
 * not knowing its number, drop their L1 on their next reconnect rather
 * than trust it. */
struct pub {
    struct weir_cache_redis *r;
    size_t n;
    char msg[];
};

static _Atomic int script_refused_logged;

static void incr_publish_done(void *arg, int status, long long v)
{
    struct pub *p = arg;

    if (status == WEIR_REDIS_ERROR) {
        struct weir_redis_stats st;
        weir_cache_redis_stats(p->r, &st);
        if (strstr(st.last_error, "error reply") != NULL) { /* not a lost connection */
            if (atomic_exchange(&script_refused_logged, 1) == 0)
                weir_log_warn(
                    "cache: Redis refused the purge script (%s): purges are published without their "
                    "generation, so instances drop their L1 whenever they reconnect",
                    st.last_error);
            weir_cache_redis_incr(p->r, PURGE_GEN, strlen(PURGE_GEN), NULL, NULL, NULL);
            weir_cache_redis_publish(p->r, PURGE_CHAN, p->msg, p->n, NULL, NULL, NULL);
        }
    }
    free(p);
}

static void incr_publish(struct weir_cache_redis *r, const char *msg, size_t n)
{
    struct pub *p = malloc(sizeof(*p) + n);

    if (p == NULL) {
        weir_cache_redis_incr_publish(r, PURGE_GEN, PURGE_CHAN, msg, n, NULL, NULL, NULL);
        return;
    }
    p->r = r;
    p->n = n;
    memcpy(p->msg, msg, n);
    if (weir_cache_redis_incr_publish(r, PURGE_GEN, PURGE_CHAN, msg, n, incr_publish_done, p, NULL) !=
        WEIR_OK)
        free(p);
}

/* Message: "KIND SOFT VALUE", published by a script as "GEN KIND SOFT
 * VALUE" with GEN the purge generation it brought (see cache_pgen.h). */
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
    n = snprintf(msg, sizeof(msg), "%s %d %s", kind, soft ? 1 : 0, value);
    if (n > 0 && (size_t)n < sizeof(msg))
        incr_publish(cw->l2, msg, (size_t)n);
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

/*
 * The purge generation (state machine in cache_pgen.c). Everything here
 * runs on worker 0's thread: the subscriber, its timer and worker 0's L2
 * connection, which makes the reads, all live on its event base.
 * cache_g.purge_gen mirrors the known generation for GET /cache.
 *
 * On every subscription the generation and the purge log are read; a
 * read that fails (error reply, timeout, connection or breaker down) is
 * retried with backoff while that subscription lasts (a new one starts
 * over), the failure logged once and the recovery once.
 */
#define SYNC_BACKOFF_MIN_MS 100
#define SYNC_BACKOFF_MAX_MS 5000

static struct {
    int inited;
    struct weir_pgen g;
    struct cache_worker *cw;
    unsigned epoch;           /* the subscription the reads below are for */
    int gen_state, log_state; /* SYNC_* */
    int retry_set, failures, backoff_ms;
} ps;

enum { SYNC_TODO, SYNC_PENDING, SYNC_DONE };

static void sync_send(void);

static void sync_retry_cb(void *arg)
{
    ps.retry_set = 0;
    if ((uintptr_t)arg == ps.epoch)
        sync_send();
}

/* A read of this subscription failed: try it again later. */
static void sync_failed(const char *what, const char *why)
{
    int delay = ps.backoff_ms;

    if (ps.cw == NULL || ps.cw->sub == NULL || !weir_cache_redis_sub_active(ps.cw->sub))
        return; /* the next subscription reads again */
    if (ps.failures++ == 0)
        weir_log_warn("cache: reading the purge %s failed (%s); retrying with backoff (at most every %d ms) "
                      "while the purge channel is up",
                      what, why, SYNC_BACKOFF_MAX_MS);
    else
        weir_log_debug("cache: reading the purge %s failed again (%s); next try in %d ms", what, why, delay);
    if (ps.retry_set)
        return;
    ps.backoff_ms = ps.backoff_ms * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : ps.backoff_ms * 2;
    if (weir_cache_redis_sub_after(ps.cw->sub, delay, sync_retry_cb, (void *)(uintptr_t)ps.epoch) == 0)
        ps.retry_set = 1;
    else
        weir_log_error(
            "cache: cannot arm the purge %s retry timer; it is read again on the next subscription", what);
}

static const char *status_why(int status)
{
    struct weir_redis_stats st;

    if (status == WEIR_REDIS_TIMEOUT)
        return "timed out";
    if (ps.cw != NULL && ps.cw->l2 != NULL) {
        weir_cache_redis_stats(ps.cw->l2, &st);
        if (st.last_error[0] != '\0') {
            static char why[sizeof(st.last_error)];
            memcpy(why, st.last_error, sizeof(why));
            return why;
        }
    }
    return "error";
}

static void sync_succeeded(void)
{
    if (ps.failures > 0 && ps.gen_state == SYNC_DONE && ps.log_state == SYNC_DONE) {
        weir_log_info("cache: purge generation and log read after %d failed attempt(s)", ps.failures);
        ps.failures = 0;
    }
}

static void gen_reply(void *arg, int status, long long v)
{
    unsigned epoch = (unsigned)(uintptr_t)arg;
    int check = ps.g.check;
    long long before = ps.g.known;
    int verdict;

    if (epoch != ps.epoch || ps.gen_state != SYNC_PENDING)
        return; /* for a subscription that is gone */
    if (status == WEIR_REDIS_MISS)
        v = 0;
    else if (status != WEIR_REDIS_OK || v < 0) {
        ps.gen_state = SYNC_TODO;
        sync_failed("generation", status == WEIR_REDIS_OK ? "a negative value" : status_why(status));
        return;
    }
    ps.gen_state = SYNC_DONE;
    verdict = weir_pgen_read(&ps.g, epoch, v);
    if (verdict == WEIR_PGEN_IGNORE)
        return; /* the subscription ended while the read was out: it says nothing of the gap */
    atomic_store(&cache_g.purge_gen, weir_pgen_current(&ps.g));
    if (verdict == WEIR_PGEN_DROP) {
        size_t n = weir_cache_l1_purge_all(cache_g.l1);
        weir_cache_stats_purged(WEIR_CS_TIER_L1, n);
        if (check == WEIR_PGEN_CHECK_KNOWN)
            weir_log_warn(
                "cache: purge generation %lld read: purges happened while the purge channel was down "
                "(generation %lld before): dropped %zu L1 objects",
                v, before, n);
        else if (check == WEIR_PGEN_CHECK_UNKNOWN)
            weir_log_warn(
                "cache: purge generation %lld read: the purge channel was cut before the generation "
                "was known, purges published meanwhile are unknown: dropped %zu L1 objects",
                v, n);
        else
            weir_log_warn(
                "cache: purge generation %lld read: L1 objects were stored before the purge channel "
                "was up, purges published meanwhile are unknown: dropped %zu L1 objects",
                v, n);
    } else {
        weir_log_info("cache: purge generation %lld read: L1 kept", v);
    }
    sync_succeeded();
}

static void log_reply(void *arg, int status, const char *data, size_t len)
{
    unsigned epoch = (unsigned)(uintptr_t)arg;
    size_t pos = 0, n, loaded = 0;
    const char *item;

    if (epoch != ps.epoch || ps.log_state != SYNC_PENDING)
        return;
    if (status != WEIR_REDIS_OK && status != WEIR_REDIS_MISS) {
        ps.log_state = SYNC_TODO;
        sync_failed("log", status_why(status));
        return;
    }
    ps.log_state = SYNC_DONE;
    while (status == WEIR_REDIS_OK && weir_redis_list_next(data, len, &pos, &item, &n)) {
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
    sync_succeeded();
}

/* Send the reads this subscription still needs. */
static void sync_send(void)
{
    struct cache_worker *cw = ps.cw;
    void *tag = (void *)(uintptr_t)ps.epoch;

    if (cw == NULL || cw->sub == NULL || !weir_cache_redis_sub_active(cw->sub))
        return;
    if (ps.gen_state == SYNC_TODO) {
        ps.gen_state = SYNC_PENDING;
        if (cw->l2 == NULL ||
            weir_cache_redis_getint(cw->l2, PURGE_GEN, strlen(PURGE_GEN), gen_reply, tag, NULL) != WEIR_OK) {
            ps.gen_state = SYNC_TODO;
            sync_failed("generation", "the L2 connection is down");
        }
    }
    if (ps.log_state == SYNC_TODO) {
        ps.log_state = SYNC_PENDING;
        if (cw->l2 == NULL || weir_cache_redis_lrange(cw->l2, PURGE_LOG, strlen(PURGE_LOG), RULES_MAX,
                                                      log_reply, tag, NULL) != WEIR_OK) {
            ps.log_state = SYNC_TODO;
            sync_failed("log", "the L2 connection is down");
        }
    }
}

static void on_unsubscribed(void *arg)
{
    weir_pgen_lost(&ps.g);
    atomic_store(&cache_g.purge_gen, weir_pgen_current(&ps.g));
}

void cache_on_subscribed(void *arg)
{
    struct cache_worker *cw = arg;
    struct weir_l1_stats st;

    if (!ps.inited) {
        weir_pgen_init(&ps.g);
        ps.inited = 1;
    }
    weir_cache_l1_stats(cache_g.l1, &st);
    weir_cache_redis_sub_set_on_lost(cw->sub, on_unsubscribed);
    ps.cw = cw;
    ps.epoch = weir_pgen_subscribed(&ps.g, st.objects > 0);
    ps.gen_state = ps.log_state = SYNC_TODO;
    ps.failures = 0;
    ps.backoff_ms = SYNC_BACKOFF_MIN_MS;
    ps.retry_set = 0; /* a pending retry carries the old epoch: it does nothing */
    sync_send();
}

void cache_on_purge_message(void *arg, const char *p, size_t n)
{
    char buf[4096], kind[16], *value, *rest = buf, *end;
    long long gen = -1;
    int soft;

    if (n >= sizeof(buf))
        return;
    memcpy(buf, p, n);
    buf[n] = '\0';
    if (buf[0] >= '0' && buf[0] <= '9') { /* "GEN KIND SOFT VALUE" */
        errno = 0;
        gen = strtoll(buf, &end, 10);
        if (errno != 0 || *end != ' ')
            return;
        rest = end + 1;
    }
    if (sscanf(rest, "%15s %d", kind, &soft) != 2)
        return;
    value = strchr(rest, ' ');
    value = value ? strchr(value + 1, ' ') : NULL;
    if (value == NULL)
        return;
    weir_cache_stats_purged(WEIR_CS_TIER_L1, purge_local(kind, value + 1, soft));
    rule_add(kind[0] == 'u' ? 'u' : kind[0] == 'p' ? 'p' : 't', soft, value + 1, cache_now());
    if (ps.inited) {
        weir_pgen_message(&ps.g, gen);
        atomic_store(&cache_g.purge_gen, weir_pgen_current(&ps.g));
    }
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
    incr_publish(r, msg, (size_t)ml);
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
    memset(&ps, 0, sizeof(ps)); /* the workers are stopped: a restart starts over */
}
