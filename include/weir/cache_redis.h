/*
 * cache_redis.h - the cache's second tier (L2) in Redis, on hiredis' async
 * API with its libevent adapter, attached to one worker's event_base.
 *
 * Nothing here blocks: the address must be numeric ("127.0.0.1:6379",
 * "[::1]:6379") or a Unix socket ("unix:/run/redis.sock"), because
 * hiredis 0.14 would resolve a host name synchronously; hiredis 0.14 has
 * no command timeout, so every command carries weir's own timer: after
 * timeout_ms its callback runs with WEIR_REDIS_TIMEOUT and the reply, if
 * it ever comes, is dropped.
 *
 * Circuit breaker: after WEIR_REDIS_FAIL_THRESHOLD consecutive failures
 * (timeouts, connection errors, unexpected replies) the client drops the
 * connection and opens: commands are refused at once (WEIR_DECLINED) so
 * requests go on as L2 misses without waiting. After a backoff (doubling
 * from min to max) it reconnects (half-open): AUTH, SELECT and a PING
 * probe; a good probe closes the breaker, a bad one reopens it with a
 * longer backoff. Each transition is logged once, with the reason.
 *
 * Keys are given without the configured prefix; the client adds it.
 *
 * Threading: a client belongs to the thread running its event_base; every
 * function, and every callback, runs on that thread. Callbacks are never
 * called from inside the function that issued the command.
 */
#ifndef WEIR_CACHE_REDIS_H
#define WEIR_CACHE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "weir/histogram.h"

#define WEIR_REDIS_FAIL_THRESHOLD 3
#define WEIR_REDIS_BACKOFF_MIN_MS 200
#define WEIR_REDIS_BACKOFF_MAX_MS 10000

/* Reply status given to callbacks. */
enum weir_redis_status {
    WEIR_REDIS_OK = 0,    /* value found / command done / lease acquired */
    WEIR_REDIS_MISS,      /* nil: no such key / lease held by someone else */
    WEIR_REDIS_TIMEOUT,   /* no reply within timeout_ms */
    WEIR_REDIS_ERROR,     /* connection lost, error reply, or unexpected reply type */
    WEIR_REDIS_WRONGTYPE, /* get: the key holds a list, hash...: not a failure of Redis,
                           * a value that is not ours (counted neither ok nor error) */
};

enum weir_redis_state {
    WEIR_REDIS_CONNECTING = 0, /* first connection (commands are queued) */
    WEIR_REDIS_UP,             /* breaker closed */
    WEIR_REDIS_OPEN,           /* breaker open: commands refused until the backoff ends */
    WEIR_REDIS_PROBING,        /* half-open: reconnecting, commands refused until the probe passes */
};

struct weir_redis_conf {
    const char *address;  /* numeric host:port, [v6]:port or unix:/path */
    const char *password; /* NULL: no AUTH */
    int db;               /* SELECT when != 0 */
    const char *prefix;   /* prepended to every key, e.g. "weir:" */
    int timeout_ms;       /* per command */
};

/* Parse an L2 address. Returns 0 or -1 with a static message in *why. */
int weir_redis_parse_address(const char *address, char *host, size_t host_size, int *port, int *is_unix,
                             const char **why);

struct weir_cache_redis;
struct weir_redis_cmd; /* a command in flight: a handle to cancel it */

/*
 * A client on base; connects at once. name labels its log lines. Returns
 * NULL on a bad address or allocation failure. The conf strings are
 * copied.
 */
struct weir_cache_redis *weir_cache_redis_new(struct event_base *base, const struct weir_redis_conf *conf,
                                              const char *name);
/* Close and free. Pending callbacks are called with WEIR_REDIS_ERROR first
 * (unless cancelled). Not from inside one of this client's callbacks. */
void weir_cache_redis_free(struct weir_cache_redis *r);
/* New settings (a reload): when they differ, the client reconnects with
 * them at once (AUTH, SELECT and the probe again; commands in flight end as
 * on a lost connection). r's thread. 1 reconnecting, 0 unchanged, -1 bad
 * address or out of memory (the old settings stay). */
int weir_cache_redis_reconfigure(struct weir_cache_redis *r, const struct weir_redis_conf *conf);

/* Tests: change the breaker's backoff bounds. */
void weir_cache_redis_set_backoff(struct weir_cache_redis *r, int min_ms, int max_ms);

/* Value callback: data[0..len) valid only during the call (NULL unless OK). */
typedef void (*weir_redis_value_cb)(void *arg, int status, const char *data, size_t len);
/* Integer callback (INCR, GET of a number, PUBLISH receivers). */
typedef void (*weir_redis_int_cb)(void *arg, int status, long long value);

/*
 * Commands. Each returns WEIR_OK when the command was sent (cb, when not
 * NULL, will be called exactly once, later, unless cancelled) or
 * WEIR_DECLINED when the breaker refuses it or the key is empty (klen 0:
 * a key that did not fit its buffer; cb is never called). *h (may
 * be NULL) receives a handle valid until the callback runs or
 * weir_cache_redis_cancel() is called.
 *
 * get:    GET prefix+key                      -> OK value | MISS
 * set:    SET prefix+key value PX ttl_ms      -> OK
 * del:    DEL prefix+key ...                  -> OK (value = keys removed, via int cb)
 * lease:  SET prefix+key token NX PX ttl_ms   -> OK acquired | MISS held elsewhere
 * incr:   INCR prefix+key                     -> OK value
 * getint: GET prefix+key as an integer        -> OK value | MISS
 * publish: PUBLISH prefix+channel msg         -> OK receivers
 * lpush:  LPUSH prefix+key val; LTRIM to max_items; PEXPIRE ttl_ms
 *                                             -> OK list length (LPUSH's)
 * lrange: LRANGE prefix+key 0 max_items-1     -> OK items | MISS (empty);
 *         the value is every item as a 4-byte big-endian length then its
 *         bytes, newest first (weir_redis_list_next() walks it)
 */
int weir_cache_redis_get(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_value_cb cb,
                         void *arg, struct weir_redis_cmd **h);
int weir_cache_redis_set(struct weir_cache_redis *r, const char *key, size_t klen, const char *val,
                         size_t vlen, int64_t ttl_ms, weir_redis_int_cb cb, void *arg,
                         struct weir_redis_cmd **h);
int weir_cache_redis_del(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                         void *arg, struct weir_redis_cmd **h);
int weir_cache_redis_lease(struct weir_cache_redis *r, const char *key, size_t klen, const char *token,
                           int64_t ttl_ms, weir_redis_int_cb cb, void *arg, struct weir_redis_cmd **h);
int weir_cache_redis_incr(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                          void *arg, struct weir_redis_cmd **h);
int weir_cache_redis_getint(struct weir_cache_redis *r, const char *key, size_t klen, weir_redis_int_cb cb,
                            void *arg, struct weir_redis_cmd **h);
int weir_cache_redis_lpush(struct weir_cache_redis *r, const char *key, size_t klen, const char *val,
                           size_t vlen, int max_items, int64_t ttl_ms, weir_redis_int_cb cb, void *arg,
                           struct weir_redis_cmd **h);
int weir_cache_redis_lrange(struct weir_cache_redis *r, const char *key, size_t klen, int max_items,
                            weir_redis_value_cb cb, void *arg, struct weir_redis_cmd **h);

/* Walk an lrange value: the next item from *pos into *item and *len; 1, or 0
 * at the end (or on a truncated value). */
static inline int weir_redis_list_next(const char *data, size_t n, size_t *pos, const char **item,
                                       size_t *len)
{
    const unsigned char *p = (const unsigned char *)data + *pos;
    size_t k;

    if (*pos + 4 > n)
        return 0;
    k = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (k > n - *pos - 4)
        return 0;
    *item = data + *pos + 4;
    *len = k;
    *pos += 4 + k;
    return 1;
}

int weir_cache_redis_publish(struct weir_cache_redis *r, const char *channel, const char *msg, size_t mlen,
                             weir_redis_int_cb cb, void *arg, struct weir_redis_cmd **h);
/* INCR prefix+counter and PUBLISH "N msg" (N the new value) on
 * prefix+channel in one atomic step (a script): no other command runs
 * between them, so a subscriber that reads the counter sees exactly the
 * messages numbered above it still to come. cb gets N. */
int weir_cache_redis_incr_publish(struct weir_cache_redis *r, const char *counter, const char *channel,
                                  const char *msg, size_t mlen, weir_redis_int_cb cb, void *arg,
                                  struct weir_redis_cmd **h);

/* The caller no longer wants the reply: its callback will not be called. */
void weir_cache_redis_cancel(struct weir_redis_cmd *h);

/* Is the breaker letting commands through? (CONNECTING or UP) */
int weir_cache_redis_usable(const struct weir_cache_redis *r);

struct weir_redis_stats {
    int state;         /* enum weir_redis_state */
    uint64_t commands; /* sent */
    uint64_t ok, miss; /* replies */
    uint64_t timeouts; /* callbacks fired by our timer */
    uint64_t errors;   /* connection errors and error replies */
    uint64_t refused;  /* commands refused by the open breaker */
    uint64_t late;     /* replies that arrived after their timeout (dropped) */
    uint64_t opens;    /* times the breaker opened */
    uint64_t connects; /* successful (re)connections */
    char last_error[128];
};
void weir_cache_redis_stats(const struct weir_cache_redis *r, struct weir_redis_stats *st);
/* Reply latency of answered commands (microseconds): owned by the client,
 * written on its thread. */
const struct weir_hist *weir_cache_redis_latency(const struct weir_cache_redis *r);

const char *weir_redis_state_name(int state);

/* ---- subscriber (purge notifications) --------------------------------------- */

struct weir_cache_redis_sub;

/* on_message: one message on the channel (payload valid during the call).
 * on_subscribed: the subscription is (again) in place; messages published
 * while it was not were missed, so the owner resynchronises here. */
typedef void (*weir_redis_msg_cb)(void *arg, const char *payload, size_t len);
typedef void (*weir_redis_sub_cb)(void *arg);

/* A subscriber to prefix+channel on its own connection; reconnects with
 * backoff when the connection drops. NULL on a bad address or allocation
 * failure. */
struct weir_cache_redis_sub *weir_cache_redis_sub_new(struct event_base *base,
                                                      const struct weir_redis_conf *conf, const char *channel,
                                                      weir_redis_msg_cb on_message,
                                                      weir_redis_sub_cb on_subscribed, void *arg);
void weir_cache_redis_sub_free(struct weir_cache_redis_sub *s);
/* The same for the subscriber (channel: without the prefix, as at _new):
 * a subscription that was up is reported lost, then it subscribes again at
 * once with the new settings. s's thread. 1, 0 or -1 as above. */
int weir_cache_redis_sub_reconfigure(struct weir_cache_redis_sub *s, const struct weir_redis_conf *conf,
                                     const char *channel);
void weir_cache_redis_sub_set_backoff(struct weir_cache_redis_sub *s, int min_ms, int max_ms);
/* 1 while subscribed. */
int weir_cache_redis_sub_active(const struct weir_cache_redis_sub *s);
/* on_lost: a confirmed subscription ended (its connection dropped); it is
 * being re-established with backoff. Called on the subscriber's thread. */
void weir_cache_redis_sub_set_on_lost(struct weir_cache_redis_sub *s, weir_redis_sub_cb on_lost);
/* Run cb(arg) once after ms on the subscriber's event base (its thread); a
 * later call replaces a pending one; freeing the subscriber cancels it. */
int weir_cache_redis_sub_after(struct weir_cache_redis_sub *s, int ms, weir_redis_sub_cb cb, void *arg);

#endif
