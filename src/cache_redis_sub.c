/*
 * cache_redis_sub.c - the Redis subscriber of the purge channel (its own
 * connection: a subscribed connection takes no other command), with its
 * backoff, lost/subscribed callbacks, reconfiguration on reload and a
 * one-shot timer for its user. Split from cache_redis.c (the command
 * client); contracts in include/weir/cache_redis.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache_redis_int.h"
#include "weir/cache_redis.h"
#include "weir/core.h"
#include "weir/log.h"

struct weir_cache_redis_sub {
    struct event_base *base;
    char *address, *password, *channel;
    char host[256];
    int port, is_unix;
    redisAsyncContext *ctx;
    int active;
    int backoff_ms, backoff_min, backoff_max;
    int logged_down;
    struct event *retry;
    weir_redis_msg_cb on_message;
    weir_redis_sub_cb on_subscribed, on_lost;
    void *arg;
    struct event *after; /* weir_cache_redis_sub_after's timer */
    weir_redis_sub_cb after_cb;
    void *after_arg;
};

static void sub_connect(struct weir_cache_redis_sub *s);

static void sub_schedule(struct weir_cache_redis_sub *s, const char *why)
{
    struct timeval tv;

    s->active = 0;
    if (!s->logged_down) {
        weir_log_warn("redis subscriber: %s; purge notifications paused, retrying", why);
        s->logged_down = 1;
    }
    tv.tv_sec = s->backoff_ms / 1000;
    tv.tv_usec = (s->backoff_ms % 1000) * 1000;
    evtimer_add(s->retry, &tv);
    s->backoff_ms = s->backoff_ms * 2 > s->backoff_max ? s->backoff_max : s->backoff_ms * 2;
}

static void sub_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    sub_connect(arg);
}

static void sub_reply_cb(redisAsyncContext *ac, void *reply_, void *priv)
{
    struct weir_cache_redis_sub *s = ac->data;
    redisReply *reply = reply_;

    if (s == NULL || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        weir_log_error("redis subscriber: %.*s", (int)(reply->len > 100 ? 100 : reply->len), reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        s->active = 1;
        s->backoff_ms = s->backoff_min;
        if (s->logged_down)
            weir_log_warn("redis subscriber: subscribed again to %s", s->channel);
        s->logged_down = 0;
        if (s->on_subscribed != NULL)
            s->on_subscribed(s->arg);
    } else if (strcmp(reply->element[0]->str, "message") == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        if (s->on_message != NULL)
            s->on_message(s->arg, reply->element[2]->str, reply->element[2]->len);
    }
}

static void sub_on_connect(const redisAsyncContext *ac, int status)
{
    struct weir_cache_redis_sub *s = ac->data;

    if (s == NULL || s->ctx != ac || status == REDIS_OK)
        return;
    s->ctx = NULL;
    sub_schedule(s, "cannot connect");
}

static void sub_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct weir_cache_redis_sub *s = ac->data;
    int was_active;

    if (s == NULL || s->ctx != ac)
        return;
    was_active = s->active;
    s->ctx = NULL;
    sub_schedule(s, "connection lost");
    if (was_active && s->on_lost != NULL)
        s->on_lost(s->arg);
}

static void sub_connect(struct weir_cache_redis_sub *s)
{
    redisAsyncContext *ac = s->is_unix ? redisAsyncConnectUnix(s->host) : redisAsyncConnect(s->host, s->port);

    if (ac == NULL || ac->err) {
        if (ac != NULL)
            redisAsyncFree(ac);
        sub_schedule(s, "cannot connect");
        return;
    }
    ac->data = s;
    s->ctx = ac;
    redisLibeventAttach(ac, s->base);
    redisAsyncSetConnectCallback(ac, sub_on_connect);
    redisAsyncSetDisconnectCallback(ac, sub_on_disconnect);
    if (s->password != NULL)
        redisAsyncCommand(ac, NULL, NULL, "AUTH %b", s->password, strlen(s->password));
    redisAsyncCommand(ac, sub_reply_cb, NULL, "SUBSCRIBE %b", s->channel, strlen(s->channel));
}

struct weir_cache_redis_sub *weir_cache_redis_sub_new(struct event_base *base,
                                                      const struct weir_redis_conf *conf, const char *channel,
                                                      weir_redis_msg_cb on_message,
                                                      weir_redis_sub_cb on_subscribed, void *arg)
{
    struct weir_cache_redis_sub *s = calloc(1, sizeof(*s));
    const char *why;
    size_t pl = conf->prefix ? strlen(conf->prefix) : 0;

    if (s == NULL)
        return NULL;
    if (weir_redis_parse_address(conf->address, s->host, sizeof(s->host), &s->port, &s->is_unix, &why) < 0) {
        free(s);
        return NULL;
    }
    s->base = base;
    s->address = strdup(conf->address);
    s->password = conf->password ? strdup(conf->password) : NULL;
    s->channel = malloc(pl + strlen(channel) + 1);
    s->retry = evtimer_new(base, sub_retry_cb, s);
    s->on_message = on_message;
    s->on_subscribed = on_subscribed;
    s->arg = arg;
    s->backoff_min = s->backoff_ms = WEIR_REDIS_BACKOFF_MIN_MS;
    s->backoff_max = WEIR_REDIS_BACKOFF_MAX_MS;
    if (s->address == NULL || s->channel == NULL || s->retry == NULL ||
        (conf->password && s->password == NULL)) {
        weir_cache_redis_sub_free(s);
        return NULL;
    }
    memcpy(s->channel, conf->prefix ? conf->prefix : "", pl);
    strcpy(s->channel + pl, channel);
    sub_connect(s);
    return s;
}

void weir_cache_redis_sub_free(struct weir_cache_redis_sub *s)
{
    if (s == NULL)
        return;
    if (s->ctx != NULL) {
        redisAsyncContext *ac = s->ctx;
        s->ctx = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    if (s->retry != NULL)
        event_free(s->retry);
    if (s->after != NULL)
        event_free(s->after);
    free(s->address);
    free(s->password);
    free(s->channel);
    free(s);
}

int weir_cache_redis_sub_reconfigure(struct weir_cache_redis_sub *s, const struct weir_redis_conf *conf,
                                     const char *channel)
{
    char host[sizeof(s->host)];
    int port, is_unix, was_active;
    const char *why;
    size_t pl = conf->prefix ? strlen(conf->prefix) : 0;
    char *a, *pw, *ch;

    if (s == NULL)
        return 0;
    if (weir_redis_endpoint(conf, host, sizeof(host), &port, &is_unix, &a, &pw, &why) < 0)
        return -1;
    if ((ch = malloc(pl + strlen(channel) + 1)) == NULL) {
        free(a);
        free(pw);
        return -1;
    }
    memcpy(ch, conf->prefix ? conf->prefix : "", pl);
    strcpy(ch + pl, channel);
    if (weir_redis_str_eq(s->address, a) && weir_redis_str_eq(s->password, pw) &&
        strcmp(s->channel, ch) == 0) {
        free(a);
        free(pw);
        free(ch);
        return 0;
    }
    free(s->address);
    free(s->password);
    free(s->channel);
    s->address = a;
    s->password = pw;
    s->channel = ch;
    memcpy(s->host, host, sizeof(s->host));
    s->port = port;
    s->is_unix = is_unix;
    /* as if the connection were lost (the purge generation logic hears of
     * it), then subscribe at once with the new settings */
    was_active = s->active;
    s->active = 0;
    if (s->ctx != NULL) {
        redisAsyncContext *ac = s->ctx;
        s->ctx = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    evtimer_del(s->retry);
    s->backoff_ms = s->backoff_min;
    if (was_active && s->on_lost != NULL)
        s->on_lost(s->arg);
    sub_connect(s);
    return 1;
}

void weir_cache_redis_sub_set_backoff(struct weir_cache_redis_sub *s, int min_ms, int max_ms)
{
    s->backoff_min = s->backoff_ms = min_ms;
    s->backoff_max = max_ms;
}

int weir_cache_redis_sub_active(const struct weir_cache_redis_sub *s)
{
    return s->active;
}

void weir_cache_redis_sub_set_on_lost(struct weir_cache_redis_sub *s, weir_redis_sub_cb on_lost)
{
    s->on_lost = on_lost;
}

static void sub_after_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_cache_redis_sub *s = arg;

    if (s->after_cb != NULL)
        s->after_cb(s->after_arg);
}

int weir_cache_redis_sub_after(struct weir_cache_redis_sub *s, int ms, weir_redis_sub_cb cb, void *arg)
{
    struct timeval tv;

    if (s->after == NULL && (s->after = evtimer_new(s->base, sub_after_cb, s)) == NULL)
        return -1;
    s->after_cb = cb;
    s->after_arg = arg;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return evtimer_add(s->after, &tv) == 0 ? 0 : -1;
}
