/*
 * cache_redis.c - the L2 client: hiredis async on a worker's event_base,
 * weir's own per-command timers, a circuit breaker with backoff, and a
 * subscriber for purge notifications. Contracts in
 * include/weir/cache_redis.h.
 *
 * Command life: a struct weir_redis_cmd is allocated when a command is
 * sent and freed only when hiredis calls its callback, which hiredis
 * always does exactly once (with the reply, or with NULL when the
 * connection goes away or is freed). Our timer or a cancel may finish the
 * command for the caller earlier (cmd->done); the hiredis callback then
 * only frees it. So a late reply never reaches a caller that has moved on.
 *
 * A connection (redisAsyncContext) is dropped with redisAsyncFree, never
 * redisAsyncDisconnect: the latter waits for pending replies, which a
 * stopped server never sends. hiredis calls every pending callback from
 * inside redisAsyncFree, so r->ctx is cleared first and failures reported
 * from there see the breaker already open.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache_redis_int.h"
#include "weir/cache_redis.h"
#include "weir/core.h"
#include "weir/log.h"

enum cmd_kind {
    K_VALUE,  /* bulk string or nil */
    K_INT,    /* integer reply */
    K_STATUS, /* +OK */
    K_LEASE,  /* +OK acquired, nil not */
    K_GETINT, /* bulk string holding an integer, or nil */
    K_SETUP,  /* AUTH / SELECT: failure opens the breaker */
    K_PROBE,  /* PING while half-open */
    K_LIST,   /* array of bulk strings: handed over length-prefixed */
};

struct weir_redis_cmd {
    struct weir_cache_redis *r;
    struct event *timer;
    int kind;
    int done; /* the caller's callback has run or was cancelled */
    weir_redis_value_cb vcb;
    weir_redis_int_cb icb;
    void *arg;
    uint64_t sent_us;
};

struct weir_cache_redis {
    struct event_base *base;
    char *name, *address, *password, *prefix;
    char host[256];
    int port, is_unix, db, timeout_ms;
    redisAsyncContext *ctx;
    int connected;
    int state;
    int failures; /* consecutive */
    int backoff_ms, backoff_min, backoff_max;
    struct event *retry;   /* backoff timer */
    struct event *conn_to; /* connect timeout */
    struct weir_redis_stats st;
    struct weir_hist lat;
};

static const char *const state_names[] = {"connecting", "up", "open", "probing"};

const char *weir_redis_state_name(int state)
{
    return state >= 0 && state < (int)WEIR_ARRAY_LEN(state_names) ? state_names[state] : "unknown";
}

int weir_redis_parse_address(const char *address, char *host, size_t host_size, int *port, int *is_unix,
                             const char **why)
{
    const char *colon;
    unsigned char buf[sizeof(struct in6_addr)];
    char *end;
    long p;
    size_t hl;

    *is_unix = 0;
    if (address == NULL || address[0] == '\0') {
        *why = "the address is empty";
        return -1;
    }
    if (strncmp(address, "unix:", 5) == 0) {
        if (address[5] != '/' || strlen(address + 5) >= host_size || strlen(address + 5) >= 108) {
            *why = "a Unix socket address must be \"unix:/absolute/path\" (at most 107 bytes)";
            return -1;
        }
        strcpy(host, address + 5);
        *is_unix = 1;
        *port = 0;
        return 0;
    }
    if (address[0] == '[') {
        const char *rb = strchr(address, ']');
        if (rb == NULL || rb[1] != ':') {
            *why = "an IPv6 address must be written \"[addr]:port\"";
            return -1;
        }
        hl = (size_t)(rb - address - 1);
        if (hl >= host_size) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, address + 1, hl);
        host[hl] = '\0';
        colon = rb + 1;
        if (inet_pton(AF_INET6, host, buf) != 1) {
            *why = "not a numeric IPv6 address";
            return -1;
        }
    } else {
        colon = strrchr(address, ':');
        if (colon == NULL) {
            *why = "the address needs a port: \"127.0.0.1:6379\"";
            return -1;
        }
        hl = (size_t)(colon - address);
        if (hl >= host_size) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, address, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, buf) != 1) {
            *why = "the Redis address must be a numeric IP address (host names would be resolved "
                   "synchronously) or unix:/path";
            return -1;
        }
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
        *why = "the port must be a number between 1 and 65535";
        return -1;
    }
    *port = (int)p;
    return 0;
}

/* ---- breaker ------------------------------------------------------------------ */

static void do_connect(struct weir_cache_redis *r);

static void set_error(struct weir_cache_redis *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct weir_cache_redis *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->st.last_error, sizeof(r->st.last_error), fmt, ap);
    va_end(ap);
}

/* Drop the connection; hiredis calls the pending callbacks from here. */
static void drop_ctx(struct weir_cache_redis *r)
{
    redisAsyncContext *ac = r->ctx;

    evtimer_del(r->conn_to);
    r->ctx = NULL;
    r->connected = 0;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

static void open_breaker(struct weir_cache_redis *r, const char *why)
{
    struct timeval tv;

    if (r->state == WEIR_REDIS_OPEN)
        return;
    if (r->state == WEIR_REDIS_PROBING) {
        r->backoff_ms = r->backoff_ms * 2 > r->backoff_max ? r->backoff_max : r->backoff_ms * 2;
        weir_log_debug("redis %s: still unavailable (%s); next try in %d ms", r->name, why, r->backoff_ms);
    } else {
        r->backoff_ms = r->backoff_min;
        weir_log_warn("redis %s: L2 unavailable (%s): serving without it, retrying in %d ms", r->name, why,
                      r->backoff_ms);
    }
    set_error(r, "%s", why);
    r->state = WEIR_REDIS_OPEN;
    r->st.opens++;
    drop_ctx(r);
    tv.tv_sec = r->backoff_ms / 1000;
    tv.tv_usec = (r->backoff_ms % 1000) * 1000;
    evtimer_add(r->retry, &tv);
}

static void close_breaker(struct weir_cache_redis *r)
{
    if (r->state == WEIR_REDIS_UP)
        return;
    if (r->state == WEIR_REDIS_CONNECTING)
        weir_log_info("redis %s: connected to %s", r->name, r->address);
    else
        weir_log_warn("redis %s: L2 available again at %s", r->name, r->address);
    r->state = WEIR_REDIS_UP;
    r->failures = 0;
    r->backoff_ms = r->backoff_min;
    r->st.connects++;
}

static void failure(struct weir_cache_redis *r, const char *why)
{
    r->failures++;
    if (r->state == WEIR_REDIS_PROBING || r->failures >= WEIR_REDIS_FAIL_THRESHOLD)
        open_breaker(r, why);
    else
        set_error(r, "%s", why);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_cache_redis *r = arg;

    r->state = WEIR_REDIS_PROBING;
    r->failures = 0;
    do_connect(r);
}

/* ---- replies ---------------------------------------------------------------------- */

static void finish(struct weir_redis_cmd *c, int status, const char *data, size_t len, long long v)
{
    if (c->done)
        return;
    c->done = 1;
    if (c->timer != NULL)
        evtimer_del(c->timer);
    if (c->vcb != NULL)
        c->vcb(c->arg, status, status == WEIR_REDIS_OK ? data : NULL, status == WEIR_REDIS_OK ? len : 0);
    else if (c->icb != NULL)
        c->icb(c->arg, status, v);
}

static void free_cmd(struct weir_redis_cmd *c)
{
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

static int parse_ll(const char *s, size_t n, long long *v)
{
    char buf[32], *end;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    *v = strtoll(buf, &end, 10);
    return *end == '\0' && errno == 0 ? 0 : -1;
}

static void reply_cb(redisAsyncContext *ac, void *reply_, void *priv)
{
    struct weir_redis_cmd *c = priv;
    struct weir_cache_redis *r = c->r;
    redisReply *reply = reply_;
    int status = WEIR_REDIS_ERROR;
    long long v = 0;

    if (reply == NULL) {
        /* connection gone (or being freed) */
        if (!c->done) {
            r->st.errors++;
            finish(c, WEIR_REDIS_ERROR, NULL, 0, 0);
            if (r->state != WEIR_REDIS_OPEN)
                failure(r, "connection lost");
        }
        free_cmd(c);
        return;
    }
    if (c->done) {
        r->st.late++;
        free_cmd(c);
        return;
    }
    weir_hist_record(&r->lat, weir_now_us() - c->sent_us);
    if (reply->type == REDIS_REPLY_ERROR && c->kind == K_VALUE && reply->len >= 9 &&
        memcmp(reply->str, "WRONGTYPE", 9) == 0) {
        /* someone put another type under the key: Redis answered, the
         * connection is fine, the value is just not ours */
        r->failures = 0;
        finish(c, WEIR_REDIS_WRONGTYPE, NULL, 0, 0);
        free_cmd(c);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        r->st.errors++;
        set_error(r, "error reply: %.*s", (int)(reply->len > 100 ? 100 : reply->len), reply->str);
        if (c->kind == K_SETUP || c->kind == K_PROBE) {
            char why[160];
            snprintf(why, sizeof(why), "%s", r->st.last_error);
            if (strstr(why, "WRONGPASS") != NULL || strstr(why, "NOAUTH") != NULL ||
                strstr(why, "invalid password") != NULL || strstr(why, "AUTH") != NULL)
                weir_log_error("redis %s: authentication failed at %s: %s", r->name, r->address, why);
            finish(c, WEIR_REDIS_ERROR, NULL, 0, 0);
            free_cmd(c);
            open_breaker(r, why);
            return;
        }
        finish(c, WEIR_REDIS_ERROR, NULL, 0, 0);
        free_cmd(c);
        return;
    }
    switch (c->kind) {
    case K_VALUE:
        if (reply->type == REDIS_REPLY_STRING)
            status = WEIR_REDIS_OK;
        else if (reply->type == REDIS_REPLY_NIL)
            status = WEIR_REDIS_MISS;
        break;
    case K_GETINT:
        if (reply->type == REDIS_REPLY_NIL)
            status = WEIR_REDIS_MISS;
        else if (reply->type == REDIS_REPLY_STRING && parse_ll(reply->str, reply->len, &v) == 0)
            status = WEIR_REDIS_OK;
        break;
    case K_INT:
        if (reply->type == REDIS_REPLY_INTEGER) {
            v = reply->integer;
            status = WEIR_REDIS_OK;
        }
        break;
    case K_STATUS:
    case K_SETUP:
    case K_PROBE:
        if (reply->type == REDIS_REPLY_STATUS)
            status = WEIR_REDIS_OK;
        break;
    case K_LEASE:
        if (reply->type == REDIS_REPLY_STATUS)
            status = WEIR_REDIS_OK;
        else if (reply->type == REDIS_REPLY_NIL)
            status = WEIR_REDIS_MISS;
        break;
    case K_LIST:
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 0)
            status = WEIR_REDIS_MISS;
        else if (reply->type == REDIS_REPLY_ARRAY) {
            /* each element as a 4-byte big-endian length and its bytes */
            size_t total = 0, off = 0;
            char *buf;
            for (size_t i = 0; i < reply->elements; i++)
                total += 4 + (reply->element[i]->type == REDIS_REPLY_STRING ? reply->element[i]->len : 0);
            buf = malloc(total ? total : 1);
            if (buf == NULL)
                break;
            for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *e = reply->element[i];
                size_t n = e->type == REDIS_REPLY_STRING ? e->len : 0;
                buf[off] = (char)(n >> 24);
                buf[off + 1] = (char)(n >> 16);
                buf[off + 2] = (char)(n >> 8);
                buf[off + 3] = (char)n;
                if (n > 0)
                    memcpy(buf + off + 4, e->str, n);
                off += 4 + n;
            }
            r->st.ok++;
            r->failures = 0;
            finish(c, WEIR_REDIS_OK, buf, total, 0);
            free(buf);
            free_cmd(c);
            return;
        }
        break;
    }
    if (status == WEIR_REDIS_OK)
        r->st.ok++;
    else if (status == WEIR_REDIS_MISS)
        r->st.miss++;
    else
        r->st.errors++;
    if (status != WEIR_REDIS_ERROR)
        r->failures = 0;
    finish(c, status, reply->str, reply->type == REDIS_REPLY_STRING ? reply->len : 0, v);
    free_cmd(c);
    if (status == WEIR_REDIS_ERROR)
        failure(r, "unexpected reply");
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_redis_cmd *c = arg;
    struct weir_cache_redis *r = c->r;

    if (c->done)
        return;
    r->st.timeouts++;
    finish(c, WEIR_REDIS_TIMEOUT, NULL, 0, 0);
    /* the command stays allocated until hiredis hands it back */
    failure(r, "command timed out");
}

/* Send argv; kind says how to read the reply. */
static int send_cmd(struct weir_cache_redis *r, int kind, int argc, const char **argv, const size_t *argvlen,
                    weir_redis_value_cb vcb, weir_redis_int_cb icb, void *arg, struct weir_redis_cmd **h)
{
    struct weir_redis_cmd *c;
    struct timeval tv;

    if (h != NULL)
        *h = NULL;
    if (r->ctx == NULL || (kind != K_SETUP && kind != K_PROBE && !weir_cache_redis_usable(r))) {
        r->st.refused++;
        return WEIR_DECLINED;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WEIR_DECLINED;
    c->r = r;
    c->kind = kind;
    c->vcb = vcb;
    c->icb = icb;
    c->arg = arg;
    c->sent_us = weir_now_us();
    c->timer = evtimer_new(r->base, timeout_cb, c);
    if (c->timer == NULL) {
        free(c);
        return WEIR_DECLINED;
    }
    if (redisAsyncCommandArgv(r->ctx, reply_cb, c, argc, argv, argvlen) != REDIS_OK) {
        free_cmd(c);
        r->st.errors++;
        return WEIR_DECLINED;
    }
    tv.tv_sec = r->timeout_ms / 1000;
    tv.tv_usec = (r->timeout_ms % 1000) * 1000;
    evtimer_add(c->timer, &tv);
    r->st.commands++;
    if (h != NULL)
        *h = c;
    return WEIR_OK;
}

void weir_cache_redis_cancel(struct weir_redis_cmd *h)
{
    if (h == NULL || h->done)
        return;
    h->done = 1;
    evtimer_del(h->timer);
}

/* ---- connection ------------------------------------------------------------------------ */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct weir_cache_redis *r = ac->data;

    if (r == NULL || r->ctx != ac)
        return;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof(why), "cannot connect to %s: %s", r->address,
                 ac->errstr[0] ? ac->errstr : "error");
        /* hiredis frees this context after the callback */
        r->ctx = NULL;
        ((redisAsyncContext *)ac)->data = NULL;
        r->st.errors++;
        evtimer_del(r->conn_to);
        open_breaker(r, why);
        return;
    }
    r->connected = 1;
    evtimer_del(r->conn_to);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct weir_cache_redis *r = ac->data;

    if (r == NULL || r->ctx != ac)
        return; /* our own drop_ctx */
    r->ctx = NULL;
    r->connected = 0;
    r->st.errors++;
    open_breaker(r, status == REDIS_OK ? "connection closed" : "connection lost");
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_cache_redis *r = arg;

    if (r->ctx != NULL && !r->connected)
        open_breaker(r, "connect timed out");
}

/* The PING probe's reply closes the breaker (also on the first connection). */
static void probe_done(void *arg, int status, long long v)
{
    struct weir_cache_redis *r = arg;
    if (status == WEIR_REDIS_OK)
        close_breaker(r);
}

static void do_connect(struct weir_cache_redis *r)
{
    redisAsyncContext *ac;
    struct timeval tv;
    int ms = r->timeout_ms < 500 ? 500 : r->timeout_ms;

    ac = r->is_unix ? redisAsyncConnectUnix(r->host) : redisAsyncConnect(r->host, r->port);
    if (ac == NULL || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "cannot connect to %s: %s", r->address, ac ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        open_breaker(r, why);
        return;
    }
    ac->data = r;
    r->ctx = ac;
    r->connected = 0;
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(r->conn_to, &tv);
    /* Pipelined ahead of every other command. */
    if (r->password != NULL) {
        const char *argv[2] = {"AUTH", r->password};
        size_t len[2] = {4, strlen(r->password)};
        send_cmd(r, K_SETUP, 2, argv, len, NULL, NULL, NULL, NULL);
    }
    if (r->db != 0 && r->ctx != NULL) {
        char db[16];
        const char *argv[2] = {"SELECT", db};
        size_t len[2] = {6, 0};
        len[1] = (size_t)snprintf(db, sizeof(db), "%d", r->db);
        send_cmd(r, K_SETUP, 2, argv, len, NULL, NULL, NULL, NULL);
    }
    if (r->ctx != NULL) {
        const char *argv[1] = {"PING"};
        size_t len[1] = {4};
        send_cmd(r, K_PROBE, 1, argv, len, NULL, probe_done, r, NULL);
    }
}

struct weir_cache_redis *weir_cache_redis_new(struct event_base *base, const struct weir_redis_conf *conf,
                                              const char *name)
{
    struct weir_cache_redis *r = calloc(1, sizeof(*r));
    const char *why;

    if (r == NULL)
        return NULL;
    if (weir_redis_parse_address(conf->address, r->host, sizeof(r->host), &r->port, &r->is_unix, &why) < 0) {
        weir_log_error("redis %s: bad address '%s': %s", name, conf->address ? conf->address : "", why);
        free(r);
        return NULL;
    }
    r->base = base;
    r->name = strdup(name != NULL ? name : "l2");
    r->address = strdup(conf->address);
    r->password = conf->password != NULL ? strdup(conf->password) : NULL;
    r->prefix = strdup(conf->prefix != NULL ? conf->prefix : "");
    r->db = conf->db;
    r->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 50;
    r->backoff_min = WEIR_REDIS_BACKOFF_MIN_MS;
    r->backoff_max = WEIR_REDIS_BACKOFF_MAX_MS;
    r->backoff_ms = r->backoff_min;
    r->state = WEIR_REDIS_CONNECTING;
    r->retry = evtimer_new(base, retry_cb, r);
    r->conn_to = evtimer_new(base, conn_timeout_cb, r);
    weir_hist_init(&r->lat);
    if (r->name == NULL || r->address == NULL || r->prefix == NULL || r->retry == NULL ||
        r->conn_to == NULL || (conf->password != NULL && r->password == NULL)) {
        weir_cache_redis_free(r);
        return NULL;
    }
    do_connect(r);
    return r;
}

void weir_cache_redis_free(struct weir_cache_redis *r)
{
    if (r == NULL)
        return;
    r->state = WEIR_REDIS_OPEN; /* failures reported while freeing change nothing */
    drop_ctx(r);
    if (r->retry != NULL)
        event_free(r->retry);
    if (r->conn_to != NULL)
        event_free(r->conn_to);
    free(r->name);
    free(r->address);
    free(r->password);
    free(r->prefix);
    free(r);
}

int weir_redis_str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int weir_redis_endpoint(const struct weir_redis_conf *conf, char *host, size_t host_size, int *port,
                        int *is_unix, char **address, char **password, const char **why)
{
    char *a, *pw;

    if (weir_redis_parse_address(conf->address, host, host_size, port, is_unix, why) < 0)
        return -1;
    a = strdup(conf->address);
    pw = conf->password != NULL ? strdup(conf->password) : NULL;
    if (a == NULL || (conf->password != NULL && pw == NULL)) {
        free(a);
        free(pw);
        *why = "out of memory";
        return -1;
    }
    *address = a;
    *password = pw;
    return 0;
}

int weir_cache_redis_reconfigure(struct weir_cache_redis *r, const struct weir_redis_conf *conf)
{
    char host[sizeof(r->host)];
    int port, is_unix;
    const char *why;
    char *a, *pw, *pf;

    if (r == NULL)
        return 0;
    if (weir_redis_str_eq(r->address, conf->address) && weir_redis_str_eq(r->password, conf->password) &&
        r->db == conf->db && weir_redis_str_eq(r->prefix, conf->prefix != NULL ? conf->prefix : "") &&
        r->timeout_ms == (conf->timeout_ms > 0 ? conf->timeout_ms : 50))
        return 0;
    if (weir_redis_endpoint(conf, host, sizeof(host), &port, &is_unix, &a, &pw, &why) < 0) {
        weir_log_error("redis %s: cannot use '%s': %s; keeping %s", r->name, conf->address, why, r->address);
        return -1;
    }
    if ((pf = strdup(conf->prefix != NULL ? conf->prefix : "")) == NULL) {
        free(a);
        free(pw);
        return -1;
    }
    free(r->address);
    free(r->password);
    free(r->prefix);
    r->address = a;
    r->password = pw;
    r->prefix = pf;
    memcpy(r->host, host, sizeof(r->host));
    r->port = port;
    r->is_unix = is_unix;
    r->db = conf->db;
    r->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : 50;
    /* start over with the new settings: commands in flight end as on a lost
     * connection (their callers go on as on an L2 miss), not counted as
     * failures of the new server */
    r->state = WEIR_REDIS_OPEN;
    drop_ctx(r);
    evtimer_del(r->retry);
    r->state = WEIR_REDIS_CONNECTING;
    r->failures = 0;
    r->backoff_ms = r->backoff_min;
    do_connect(r);
    return 1;
}

void weir_cache_redis_set_backoff(struct weir_cache_redis *r, int min_ms, int max_ms)
{
    r->backoff_min = min_ms;
    r->backoff_max = max_ms;
    if (r->backoff_ms < min_ms || r->backoff_ms > max_ms)
        r->backoff_ms = min_ms;
}

int weir_cache_redis_usable(const struct weir_cache_redis *r)
{
    return r->ctx != NULL && (r->state == WEIR_REDIS_UP || r->state == WEIR_REDIS_CONNECTING);
}

void weir_cache_redis_stats(const struct weir_cache_redis *r, struct weir_redis_stats *st)
{
    *st = r->st;
    st->state = r->state;
}

const struct weir_hist *weir_cache_redis_latency(const struct weir_cache_redis *r)
{
    return &r->lat;
}

/* ---- commands ---------------------------------------------------------------------- */

/* prefix + key in buf (or an allocation when long); returns the pointer. */
static char *full_key(const struct weir_cache_redis *r, const char *key, size_t klen, char *buf, size_t size,
                      size_t *len)
{
    size_t pl = strlen(r->prefix);
    char *p = pl + klen <= size ? buf : malloc(pl + klen);

    if (p == NULL)
        return NULL;
    memcpy(p, r->prefix, pl);
    memcpy(p + pl, key, klen);
    *len = pl + klen;
    return p;
}

#define KEYBUF 512

static int keyed(struct weir_cache_redis *r, int kind, const char *cmd, const char *key, size_t klen,
                 const char **extra, const size_t *extralen, int nextra, weir_redis_value_cb vcb,
                 weir_redis_int_cb icb, void *arg, struct weir_redis_cmd **h)
{
    char buf[KEYBUF], *k;
    const char *argv[8];
    size_t len[8], kl;
    int i, rc;

    if (klen == 0) /* a key that did not fit its buffer (cache_l2_key) */
        return WEIR_DECLINED;
    k = full_key(r, key, klen, buf, sizeof(buf), &kl);
    if (k == NULL)
        return WEIR_DECLINED;
    argv[0] = cmd;
    len[0] = strlen(cmd);
    argv[1] = k;
    len[1] = kl;
    for (i = 0; i < nextra; i++) {
        argv[2 + i] = extra[i];
        len[2 + i] = extralen[i];
    }
    rc = send_cmd(r, kind, 2 + nextra, argv, len, vcb, icb, arg, h);
    if (k != buf)
        free(k);
    return rc;
}

int weir_cache_redis_get(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_value_cb cb,
                         void *arg, struct weir_redis_cmd **h)
{
    return keyed(r, K_VALUE, "GET", key, klen, NULL, NULL, 0, cb, NULL, arg, h);
}

int weir_cache_redis_set(struct weir_cache_redis *r, const char *key, size_t klen, const char *val,
                         size_t vlen, int64_t ttl_ms, weir_redis_int_cb cb, void *arg,
                         struct weir_redis_cmd **h)
{
    char ttl[24];
    const char *extra[3] = {val, "PX", ttl};
    size_t el[3] = {vlen, 2, 0};

    el[2] = (size_t)snprintf(ttl, sizeof(ttl), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    return keyed(r, K_STATUS, "SET", key, klen, extra, el, 3, NULL, cb, arg, h);
}

int weir_cache_redis_del(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                         void *arg, struct weir_redis_cmd **h)
{
    return keyed(r, K_INT, "DEL", key, klen, NULL, NULL, 0, NULL, cb, arg, h);
}

int weir_cache_redis_lease(struct weir_cache_redis *r, const char *key, size_t klen, const char *token,
                           int64_t ttl_ms, weir_redis_int_cb cb, void *arg, struct weir_redis_cmd **h)
{
    char ttl[24];
    const char *extra[4] = {token, "NX", "PX", ttl};
    size_t el[4] = {strlen(token), 2, 2, 0};

    el[3] = (size_t)snprintf(ttl, sizeof(ttl), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    return keyed(r, K_LEASE, "SET", key, klen, extra, el, 4, NULL, cb, arg, h);
}

int weir_cache_redis_incr(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                          void *arg, struct weir_redis_cmd **h)
{
    return keyed(r, K_INT, "INCR", key, klen, NULL, NULL, 0, NULL, cb, arg, h);
}

int weir_cache_redis_getint(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                            void *arg, struct weir_redis_cmd **h)
{
    return keyed(r, K_GETINT, "GET", key, klen, NULL, NULL, 0, NULL, cb, arg, h);
}

int weir_cache_redis_lpush(struct weir_cache_redis *r, const char *key, size_t klen, const char *val,
                           size_t vlen, int max_items, int64_t ttl_ms, weir_redis_int_cb cb, void *arg,
                           struct weir_redis_cmd **h)
{
    char stop[24], ttl[24];
    const char *e1[1] = {val}, *e2[2] = {"0", stop}, *e3[1] = {ttl};
    size_t l1[1] = {vlen}, l2[2] = {1, 0}, l3[1] = {0};
    int rc;

    l2[1] = (size_t)snprintf(stop, sizeof(stop), "%d", max_items > 0 ? max_items - 1 : 0);
    l3[0] = (size_t)snprintf(ttl, sizeof(ttl), "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    rc = keyed(r, K_INT, "LPUSH", key, klen, e1, l1, 1, NULL, cb, arg, h);
    if (rc != WEIR_OK)
        return rc;
    /* pipelined on the same connection: they run in this order */
    keyed(r, K_STATUS, "LTRIM", key, klen, e2, l2, 2, NULL, NULL, NULL, NULL);
    keyed(r, K_INT, "PEXPIRE", key, klen, e3, l3, 1, NULL, NULL, NULL, NULL);
    return WEIR_OK;
}

int weir_cache_redis_lrange(struct weir_cache_redis *r, const char *key, size_t klen, int max_items,
                            weir_redis_value_cb cb, void *arg, struct weir_redis_cmd **h)
{
    char stop[24];
    const char *e[2] = {"0", stop};
    size_t l[2] = {1, 0};

    l[1] = (size_t)snprintf(stop, sizeof(stop), "%d", max_items > 0 ? max_items - 1 : 0);
    return keyed(r, K_LIST, "LRANGE", key, klen, e, l, 2, cb, NULL, arg, h);
}

int weir_cache_redis_publish(struct weir_cache_redis *r, const char *channel, const char *msg, size_t mlen,
                             weir_redis_int_cb cb, void *arg, struct weir_redis_cmd **h)
{
    const char *extra[1] = {msg};
    size_t el[1] = {mlen};
    return keyed(r, K_INT, "PUBLISH", channel, strlen(channel), extra, el, 1, NULL, cb, arg, h);
}

static const char incr_publish_lua[] = "local n = redis.call('INCR', KEYS[1]) "
                                       "redis.call('PUBLISH', ARGV[1], n .. ' ' .. ARGV[2]) return n";

int weir_cache_redis_incr_publish(struct weir_cache_redis *r, const char *counter, const char *channel,
                                  const char *msg, size_t mlen, weir_redis_int_cb cb, void *arg,
                                  struct weir_redis_cmd **h)
{
    char kbuf[KEYBUF], cbuf[KEYBUF], *k, *c;
    const char *argv[6];
    size_t len[6], kl, cl;
    int rc = WEIR_DECLINED;

    k = full_key(r, counter, strlen(counter), kbuf, sizeof(kbuf), &kl);
    c = full_key(r, channel, strlen(channel), cbuf, sizeof(cbuf), &cl);
    if (k != NULL && c != NULL) {
        argv[0] = "EVAL";
        len[0] = 4;
        argv[1] = incr_publish_lua;
        len[1] = sizeof(incr_publish_lua) - 1;
        argv[2] = "1";
        len[2] = 1;
        argv[3] = k;
        len[3] = kl;
        argv[4] = c;
        len[4] = cl;
        argv[5] = msg;
        len[5] = mlen;
        rc = send_cmd(r, K_INT, 6, argv, len, NULL, cb, arg, h);
    }
    if (k != NULL && k != kbuf)
        free(k);
    if (c != NULL && c != cbuf)
        free(c);
    return rc;
}
