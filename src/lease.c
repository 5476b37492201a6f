/*
 * lease.c - the autoscale leader lease in Redis (see lease.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "weir/core.h"
#include "weir/lease.h"
#include "weir/log.h"

/* Take the lease when free, renew it when ours; 1 = held by us. */
static const char LEASE_SCRIPT[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false then redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) "
    "return 1 end "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
    "return 0";

static struct {
    struct event_base *base;
    redisAsyncContext *ac;
    int connected;
    int64_t connect_started_ms;
    int enabled;
    char addr[128];
    char key[256];
    int lease_ms;
    char id[96];            /* this instance's value in the key */
    int pending;            /* a renewal is outstanding */
    int64_t sent_ms;        /* when the outstanding / last answered renewal was sent */
    int64_t valid_until_ms; /* leader until then */
    int unreachable;        /* logged as unreachable */
    int was_leader;
    unsigned long long renewals, errors;
    int started;
} L;

static int64_t now_ms(void)
{
    return (int64_t)(weir_now_us() / 1000);
}

static void drop_ctx(void)
{
    if (L.ac != NULL) {
        redisAsyncContext *ac = L.ac;
        L.ac = NULL;
        L.connected = 0;
        L.pending = 0;
        ac->data = NULL;
        redisAsyncFree(ac); /* runs the pending callbacks with a NULL reply */
    }
}

static void set_unreachable(const char *why)
{
    L.errors++;
    L.valid_until_ms = 0;
    if (!L.unreachable)
        weir_log_error(
            "autoscale: Redis %s unreachable for the leader lease (%s): no scale hook runs until it is "
            "back; alerts still fire",
            L.addr, why);
    L.unreachable = 1;
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    if (ac->data == NULL)
        return;
    if (status != REDIS_OK) {
        set_unreachable(ac->errstr[0] ? ac->errstr : "connect failed");
        L.ac = NULL; /* hiredis frees the context after this callback */
        L.connected = 0;
        L.pending = 0;
        return;
    }
    L.connected = 1;
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    if (ac->data == NULL)
        return;
    if (L.ac == ac) {
        L.ac = NULL;
        L.connected = 0;
        L.pending = 0;
        set_unreachable(status == REDIS_OK ? "connection closed" : ac->errstr);
    }
}

static void reply_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;

    if (ac->data == NULL || L.ac != ac)
        return;
    L.pending = 0;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        set_unreachable(reply ? reply->str : "no reply");
        return;
    }
    if (L.unreachable)
        weir_log_info("autoscale: Redis %s reachable again for the leader lease", L.addr);
    L.unreachable = 0;
    L.renewals++;
    int held = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    L.valid_until_ms = held ? L.sent_ms + L.lease_ms : 0;
    if (held != L.was_leader)
        weir_log_info("autoscale: this instance (%s) is now the autoscale %s (lease %s, %d ms)", L.id,
                      held ? "leader" : "follower", L.key, L.lease_ms);
    L.was_leader = held;
}

static int start_connect(void)
{
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    const char *colon = strrchr(L.addr, ':');

    if (colon == NULL)
        return -1;
    port = atoi(colon + 1);
    size_t hl = (size_t)(colon - L.addr);
    if (L.addr[0] == '[' && hl >= 2) {
        memcpy(host, L.addr + 1, hl - 2 < sizeof(host) - 1 ? hl - 2 : sizeof(host) - 1);
    } else {
        memcpy(host, L.addr, hl < sizeof(host) - 1 ? hl : sizeof(host) - 1);
    }
    L.ac = redisAsyncConnect(host, port);
    if (L.ac == NULL)
        return -1;
    if (L.ac->err) {
        set_unreachable(L.ac->errstr);
        redisAsyncFree(L.ac);
        L.ac = NULL;
        return -1;
    }
    L.ac->data = &L;
    redisLibeventAttach(L.ac, L.base);
    redisAsyncSetConnectCallback(L.ac, connect_cb);
    redisAsyncSetDisconnectCallback(L.ac, disconnect_cb);
    L.connect_started_ms = now_ms();
    return 0;
}

int weir_lease_start(struct event_base *base)
{
    char host[64] = "?";

    memset(&L, 0, sizeof(L));
    L.base = base;
    gethostname(host, sizeof(host) - 1);
    snprintf(L.id, sizeof(L.id), "%s-%d-%llx", host, (int)getpid(), (unsigned long long)weir_now_us());
    L.started = 1;
    return 0;
}

void weir_lease_stop(void)
{
    if (!L.started)
        return;
    drop_ctx();
    memset(&L, 0, sizeof(L));
}

void weir_lease_tick(const struct weir_conf_autoscale *ac, int interval_ms)
{
    int64_t t = now_ms();

    if (!L.started)
        return;
    if (!ac->enabled || !ac->redis.enabled) {
        if (L.enabled)
            drop_ctx();
        L.enabled = 0;
        return;
    }
    if (!L.enabled || strcmp(L.addr, ac->redis.addr.text) != 0 || strcmp(L.key, ac->redis.key) != 0) {
        drop_ctx();
        snprintf(L.addr, sizeof(L.addr), "%s", ac->redis.addr.text);
        snprintf(L.key, sizeof(L.key), "%s", ac->redis.key);
        L.valid_until_ms = 0;
        L.was_leader = 0;
    }
    L.enabled = 1;
    L.lease_ms = ac->redis.lease_ms;
    if (L.ac == NULL) {
        start_connect();
        return;
    }
    if (!L.connected) {
        if (t - L.connect_started_ms >= L.lease_ms) {
            drop_ctx();
            set_unreachable("connect timed out");
        }
        return;
    }
    if (L.pending) {
        if (t - L.sent_ms >= L.lease_ms) { /* no answer in a lease: give it up */
            drop_ctx();
            set_unreachable("no reply within lease_ms");
        }
        return;
    }
    char ms[24];
    snprintf(ms, sizeof(ms), "%d", L.lease_ms);
    L.sent_ms = t;
    if (redisAsyncCommand(L.ac, reply_cb, NULL, "EVAL %s 1 %s %s %s", LEASE_SCRIPT, L.key, L.id, ms) ==
        REDIS_OK)
        L.pending = 1;
    else
        set_unreachable("cannot send");
}

int weir_lease_leader(void)
{
    if (!L.enabled)
        return 1;
    return L.valid_until_ms > now_ms();
}

const char *weir_lease_role(void)
{
    if (!L.enabled)
        return "standalone";
    if (L.unreachable)
        return "redis_unreachable";
    return weir_lease_leader() ? "leader" : "follower";
}

json_t *weir_lease_json(void)
{
    if (!L.enabled)
        return json_pack("{s:s}", "role", "standalone");
    int64_t t = now_ms();
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:I,s:I,s:I}", "role", weir_lease_role(), "address", L.addr, "key",
                     L.key, "id", L.id, "lease_ms", L.lease_ms, "valid_for_ms",
                     (json_int_t)(L.valid_until_ms > t ? L.valid_until_ms - t : 0), "renewals",
                     (json_int_t)L.renewals, "errors", (json_int_t)L.errors);
}
