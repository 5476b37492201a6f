/*
 * test_cache_redis.c - the L2 client (src/cache_redis.c) against a real
 * redis-server (Debian's), started by each test on a free loopback port
 * (or a Unix socket) and killed by PID: get/set/del/incr/lease, binary
 * values, per-command timeouts with a stopped server (SIGSTOP) and the late
 * reply dropped, the breaker opening and closing, Redis killed and
 * restarted, AUTH and SELECT, a garbage value, cancel, and purge messages
 * through the subscriber.
 *
 * Skipped (not failed) when redis-server is not installed, so that unit
 * tests still run on a machine without it; scripts/install-deps installs
 * it (scripts/debian-packages.txt).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "weir/cache_obj.h"
#include "weir/cache_redis.h"
#include "weir/core.h"

struct redis {
    pid_t pid;
    int port;
    char unix_path[64];
    char password[32];
};

/* Every redis-server started and not yet killed: a failed assertion
 * leaves its test early, and the teardown kills what it left. */
static pid_t live[8];

static void live_add(pid_t pid)
{
    for (size_t i = 0; i < WEIR_ARRAY_LEN(live); i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid)
{
    for (size_t i = 0; i < WEIR_ARRAY_LEN(live); i++)
        if (live[i] == pid)
            live[i] = 0;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < WEIR_ARRAY_LEN(live); i++)
        if (live[i] > 0) {
            kill(live[i], SIGCONT);
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    return 0;
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int can_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Start redis-server on rd->port (chosen when 0). */
static void redis_start(struct redis *rd)
{
    char port[16];
    const char *argv[24];
    int n = 0, i;

    if (rd->port == 0)
        rd->port = free_port();
    snprintf(port, sizeof(port), "%d", rd->port);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = "/tmp";
    argv[n++] = "--enable-debug-command";
    argv[n++] = "local";
    if (rd->unix_path[0]) {
        argv[n++] = "--unixsocket";
        argv[n++] = rd->unix_path;
    }
    if (rd->password[0]) {
        argv[n++] = "--requirepass";
        argv[n++] = rd->password;
    }
    argv[n] = NULL;
    rd->pid = fork();
    assert_true(rd->pid >= 0);
    if (rd->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    live_add(rd->pid);
    /* the TCP port first; the Unix socket may come a moment later */
    for (i = 0; i < 500 && (!can_connect(rd->port) || (rd->unix_path[0] && access(rd->unix_path, F_OK) != 0));
         i++)
        usleep(10000);
    assert_true(can_connect(rd->port));
    assert_true(rd->unix_path[0] == '\0' || access(rd->unix_path, F_OK) == 0);
}

static void redis_kill(struct redis *rd)
{
    if (rd->pid > 0) {
        kill(rd->pid, SIGCONT);
        kill(rd->pid, SIGKILL);
        waitpid(rd->pid, NULL, 0);
        live_del(rd->pid);
        rd->pid = 0;
    }
}

static int have_redis(void)
{
    return system("command -v redis-server >/dev/null 2>&1") == 0;
}

/* ---- event loop helpers ---------------------------------------------------------- */

static void tick(evutil_socket_t fd, short what, void *arg)
{
}

struct loop {
    struct event_base *base;
    struct event *ticker;
};

static void loop_init(struct loop *l)
{
    struct timeval tv = {0, 5000};
    l->base = event_base_new();
    l->ticker = event_new(l->base, -1, EV_PERSIST, tick, NULL);
    event_add(l->ticker, &tv);
}

static void loop_free(struct loop *l)
{
    event_free(l->ticker);
    event_base_free(l->base);
}

/* Run until *flag becomes nonzero or ms pass. Returns *flag. */
static int run_until(struct loop *l, volatile int *flag, int ms)
{
    uint64_t end = weir_now_us() + (uint64_t)ms * 1000;
    while (!*flag && weir_now_us() < end)
        event_base_loop(l->base, EVLOOP_ONCE);
    return *flag;
}

static void run_for(struct loop *l, int ms)
{
    int never = 0;
    run_until(l, &never, ms);
}

struct result {
    int called, status;
    long long v;
    char data[64];
    size_t len;
    uint64_t at_us;
};

static void value_cb(void *arg, int status, const char *data, size_t len)
{
    struct result *r = arg;
    r->called++;
    r->status = status;
    r->len = len;
    r->at_us = weir_now_us();
    if (data != NULL)
        memcpy(r->data, data, len < sizeof(r->data) ? len : sizeof(r->data));
}

static void int_cb(void *arg, int status, long long v)
{
    struct result *r = arg;
    r->called++;
    r->status = status;
    r->v = v;
    r->at_us = weir_now_us();
}

static struct weir_cache_redis *client(struct loop *l, const char *addr, const char *pw, int db,
                                       int timeout_ms)
{
    struct weir_redis_conf c = {addr, pw, db, "test:", timeout_ms};
    struct weir_cache_redis *r = weir_cache_redis_new(l->base, &c, "test");
    assert_non_null(r);
    weir_cache_redis_set_backoff(r, 50, 200);
    return r;
}

static int wait_state(struct loop *l, struct weir_cache_redis *r, int state, int ms)
{
    uint64_t end = weir_now_us() + (uint64_t)ms * 1000;
    struct weir_redis_stats st;
    for (;;) {
        weir_cache_redis_stats(r, &st);
        if (st.state == state || weir_now_us() >= end)
            return st.state == state;
        event_base_loop(l->base, EVLOOP_ONCE);
    }
}

static char addr_buf[64];

static const char *addr_of(const struct redis *rd)
{
    snprintf(addr_buf, sizeof(addr_buf), "127.0.0.1:%d", rd->port);
    return addr_buf;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_address(void **state)
{
    char host[256];
    int port, is_unix;
    const char *why;

    assert_int_equal(weir_redis_parse_address("127.0.0.1:6379", host, sizeof(host), &port, &is_unix, &why),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6379);
    assert_int_equal(weir_redis_parse_address("[::1]:7000", host, sizeof(host), &port, &is_unix, &why), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(
        weir_redis_parse_address("unix:/run/redis.sock", host, sizeof(host), &port, &is_unix, &why), 0);
    assert_int_equal(is_unix, 1);
    assert_string_equal(host, "/run/redis.sock");
    assert_int_equal(weir_redis_parse_address("localhost:6379", host, sizeof(host), &port, &is_unix, &why),
                     -1);
    assert_non_null(strstr(why, "numeric"));
    assert_int_equal(weir_redis_parse_address("127.0.0.1", host, sizeof(host), &port, &is_unix, &why), -1);
    assert_int_equal(weir_redis_parse_address("127.0.0.1:0", host, sizeof(host), &port, &is_unix, &why), -1);
    assert_int_equal(weir_redis_parse_address("127.0.0.1:70000", host, sizeof(host), &port, &is_unix, &why),
                     -1);
    assert_int_equal(weir_redis_parse_address("127.0.0.1:6x", host, sizeof(host), &port, &is_unix, &why), -1);
    assert_int_equal(weir_redis_parse_address("unix:rel", host, sizeof(host), &port, &is_unix, &why), -1);
    assert_int_equal(weir_redis_parse_address("[::1:6379", host, sizeof(host), &port, &is_unix, &why), -1);
    assert_int_equal(weir_redis_parse_address("", host, sizeof(host), &port, &is_unix, &why), -1);
}

static void test_commands(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0}, b = {0}, c = {0};
    static const char bin[] = "a\0b\r\nc";
    struct weir_redis_stats st;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 500);
    assert_true(weir_cache_redis_usable(r)); /* connecting: commands are queued */

    assert_int_equal(weir_cache_redis_set(r, "k1", 2, bin, sizeof(bin), 60000, int_cb, &a, NULL), WEIR_OK);
    assert_int_equal(a.called, 0); /* never from inside the call */
    assert_int_equal(weir_cache_redis_get(r, "k1", 2, value_cb, &b, NULL), WEIR_OK);
    assert_int_equal(weir_cache_redis_get(r, "nope", 4, value_cb, &c, NULL), WEIR_OK);
    assert_true(run_until(&l, &c.called, 2000));
    assert_int_equal(a.status, WEIR_REDIS_OK);
    assert_int_equal(b.status, WEIR_REDIS_OK);
    assert_int_equal(b.len, sizeof(bin));
    assert_memory_equal(b.data, bin, sizeof(bin));
    assert_int_equal(c.status, WEIR_REDIS_MISS);
    assert_int_equal(c.len, 0);
    weir_cache_redis_stats(r, &st);
    assert_int_equal(st.state, WEIR_REDIS_UP);

    /* del, incr, getint */
    memset(&a, 0, sizeof(a));
    weir_cache_redis_del(r, "k1", 2, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.v, 1);
    memset(&a, 0, sizeof(a));
    weir_cache_redis_incr(r, "gen", 3, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.v, 1);
    memset(&a, 0, sizeof(a));
    weir_cache_redis_incr(r, "gen", 3, int_cb, &a, NULL);
    memset(&b, 0, sizeof(b));
    weir_cache_redis_getint(r, "gen", 3, int_cb, &b, NULL);
    memset(&c, 0, sizeof(c));
    weir_cache_redis_getint(r, "nogen", 5, int_cb, &c, NULL);
    assert_true(run_until(&l, &c.called, 2000));
    assert_int_equal(a.v, 2);
    assert_int_equal(b.status, WEIR_REDIS_OK);
    assert_int_equal(b.v, 2);
    assert_int_equal(c.status, WEIR_REDIS_MISS);

    /* lease: first wins, second is refused until it expires */
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    weir_cache_redis_lease(r, "lease:x", 7, "me", 200, int_cb, &a, NULL);
    weir_cache_redis_lease(r, "lease:x", 7, "other", 200, int_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(a.status, WEIR_REDIS_OK);
    assert_int_equal(b.status, WEIR_REDIS_MISS);
    run_for(&l, 300);
    memset(&b, 0, sizeof(b));
    weir_cache_redis_lease(r, "lease:x", 7, "other", 200, int_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_OK);

    /* list: pushed newest first, trimmed to max_items, read back whole */
    memset(&b, 0, sizeof(b));
    weir_cache_redis_lrange(r, "log", 3, 10, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_MISS);
    for (int i = 0; i < 4; i++) {
        char item[8];
        int n = snprintf(item, sizeof(item), "i%d", i);
        memset(&a, 0, sizeof(a));
        assert_int_equal(weir_cache_redis_lpush(r, "log", 3, item, (size_t)n, 3, 60000, int_cb, &a, NULL),
                         WEIR_OK);
        assert_true(run_until(&l, &a.called, 2000));
        assert_int_equal(a.status, WEIR_REDIS_OK);
    }
    memset(&b, 0, sizeof(b));
    weir_cache_redis_lrange(r, "log", 3, 10, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_OK);
    {
        size_t pos = 0, n;
        const char *item;
        const char *want[] = {"i3", "i2", "i1"};
        for (int i = 0; i < 3; i++) {
            assert_true(weir_redis_list_next(b.data, b.len, &pos, &item, &n));
            assert_int_equal(n, 2);
            assert_memory_equal(item, want[i], 2);
        }
        assert_false(weir_redis_list_next(b.data, b.len, &pos, &item, &n));
        pos = 0;                                                        /* a truncated value ends the walk */
        assert_false(weir_redis_list_next(b.data, 5, &pos, &item, &n)); /* 4 + 2 bytes needed */
    }

    /* TTL: the value goes away */
    memset(&a, 0, sizeof(a));
    weir_cache_redis_set(r, "short", 5, "v", 1, 100, int_cb, &a, NULL);
    run_for(&l, 250);
    memset(&b, 0, sizeof(b));
    weir_cache_redis_get(r, "short", 5, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_MISS);

    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_large_and_garbage(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0};
    size_t n = 3 << 20;
    char *big = malloc(n);
    int err;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 2000);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7);
    weir_cache_redis_set(r, "big", 3, big, n, 60000, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 5000));
    assert_int_equal(a.status, WEIR_REDIS_OK);
    memset(&a, 0, sizeof(a));
    weir_cache_redis_get(r, "big", 3, value_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 5000));
    assert_int_equal(a.len, n);
    assert_memory_equal(a.data, big, sizeof(a.data));

    /* a value under our prefix that is not ours: returned as is, refused by the decoder */
    memset(&a, 0, sizeof(a));
    weir_cache_redis_set(r, "obj", 3, "garbage!", 8, 60000, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    memset(&a, 0, sizeof(a));
    weir_cache_redis_get(r, "obj", 3, value_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.len, 8);
    assert_null(weir_cache_obj_decode(a.data, a.len, 1 << 20, &err));
    assert_int_equal(err, WEIR_DECODE_MAGIC);

    free(big);
    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_timeout_and_late_reply(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0}, b = {0};
    struct weir_redis_stats st;
    uint64_t t0;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 100);
    assert_true(wait_state(&l, r, WEIR_REDIS_UP, 2000));
    kill(rd.pid, SIGSTOP);
    t0 = weir_now_us();
    assert_int_equal(weir_cache_redis_get(r, "k", 1, value_cb, &a, NULL), WEIR_OK);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.status, WEIR_REDIS_TIMEOUT);
    /* fired by our timer: 100 ms, with a margin for a loaded machine */
    assert_true(a.at_us - t0 >= 95000);
    assert_true(a.at_us - t0 < 600000);
    kill(rd.pid, SIGCONT);
    run_for(&l, 300);
    weir_cache_redis_stats(r, &st);
    assert_int_equal(a.called, 1); /* the late reply did not call it again */
    assert_int_equal(st.late, 1);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.state, WEIR_REDIS_UP); /* one timeout does not open the breaker */
    weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_MISS);
    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_breaker(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a[WEIR_REDIS_FAIL_THRESHOLD], b = {0};
    struct weir_redis_stats st;
    int i;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 80);
    assert_true(wait_state(&l, r, WEIR_REDIS_UP, 2000));
    kill(rd.pid, SIGSTOP);
    memset(a, 0, sizeof(a));
    for (i = 0; i < WEIR_REDIS_FAIL_THRESHOLD; i++)
        assert_int_equal(weir_cache_redis_get(r, "k", 1, value_cb, &a[i], NULL), WEIR_OK);
    assert_true(run_until(&l, &a[WEIR_REDIS_FAIL_THRESHOLD - 1].called, 2000));
    for (i = 0; i < WEIR_REDIS_FAIL_THRESHOLD; i++) {
        assert_int_equal(a[i].called, 1);
        assert_int_equal(a[i].status, WEIR_REDIS_TIMEOUT);
    }
    weir_cache_redis_stats(r, &st);
    assert_int_equal(st.state, WEIR_REDIS_OPEN);
    assert_int_equal(st.opens, 1);
    /* open: refused at once, no callback */
    assert_false(weir_cache_redis_usable(r));
    assert_int_equal(weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL), WEIR_DECLINED);
    run_for(&l, 20);
    assert_int_equal(b.called, 0);
    /* still stopped: probes fail, the breaker stays open (probing in between) */
    run_for(&l, 400);
    weir_cache_redis_stats(r, &st);
    assert_int_not_equal(st.state, WEIR_REDIS_UP);
    assert_true(st.opens >= 2);
    /* back: the next probe closes it */
    kill(rd.pid, SIGCONT);
    assert_true(wait_state(&l, r, WEIR_REDIS_UP, 3000));
    weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_MISS);
    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_killed_and_restarted(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0}, b = {0};
    struct weir_redis_stats st;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 200);
    weir_cache_redis_set(r, "k", 1, "v", 1, 60000, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    redis_kill(&rd);
    assert_true(wait_state(&l, r, WEIR_REDIS_OPEN, 2000)); /* connection loss opens at once */
    assert_int_equal(weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL), WEIR_DECLINED);
    run_for(&l, 300); /* a few failed reconnections */
    weir_cache_redis_stats(r, &st);
    assert_int_not_equal(st.state, WEIR_REDIS_UP);
    redis_start(&rd); /* same port, empty */
    assert_true(wait_state(&l, r, WEIR_REDIS_UP, 3000));
    memset(&a, 0, sizeof(a));
    weir_cache_redis_set(r, "k2", 2, "w", 1, 60000, int_cb, &a, NULL);
    weir_cache_redis_get(r, "k2", 2, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_OK);
    assert_memory_equal(b.data, "w", 1);
    weir_cache_redis_stats(r, &st);
    assert_int_equal(st.connects, 2);
    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_no_server(void **state)
{
    struct loop l;
    struct weir_cache_redis *r;
    char addr[32];
    struct weir_redis_stats st;

    loop_init(&l);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    r = client(&l, addr, NULL, 0, 50);
    assert_true(wait_state(&l, r, WEIR_REDIS_OPEN, 2000));
    weir_cache_redis_stats(r, &st);
    assert_non_null(strstr(st.last_error, "cannot connect"));
    weir_cache_redis_free(r);
    loop_free(&l);
}

static void test_auth_select(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r, *r3, *r0;
    struct result a = {0}, b = {0}, c = {0};
    struct weir_redis_stats st;

    if (!have_redis())
        skip();
    strcpy(rd.password, "s3cret");
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), "wrong", 0, 500);
    assert_true(wait_state(&l, r, WEIR_REDIS_OPEN, 2000));
    weir_cache_redis_stats(r, &st);
    assert_true(strstr(st.last_error, "WRONGPASS") != NULL || strstr(st.last_error, "invalid") != NULL);
    weir_cache_redis_free(r);
    r = client(&l, addr_of(&rd), NULL, 0, 500); /* no password at all */
    assert_true(wait_state(&l, r, WEIR_REDIS_OPEN, 2000));
    weir_cache_redis_free(r);

    r3 = client(&l, addr_of(&rd), "s3cret", 3, 500);
    r0 = client(&l, addr_of(&rd), "s3cret", 0, 500);
    weir_cache_redis_set(r3, "db", 2, "three", 5, 60000, int_cb, &a, NULL);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.status, WEIR_REDIS_OK);
    weir_cache_redis_get(r0, "db", 2, value_cb, &b, NULL);
    weir_cache_redis_get(r3, "db", 2, value_cb, &c, NULL);
    assert_true(run_until(&l, &c.called, 2000));
    assert_true(run_until(&l, &b.called, 2000));
    assert_int_equal(b.status, WEIR_REDIS_MISS);
    assert_int_equal(c.status, WEIR_REDIS_OK);
    weir_cache_redis_free(r3);
    weir_cache_redis_free(r0);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_cancel_and_free_pending(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0}, b = {0};
    struct weir_redis_cmd *h;

    if (!have_redis())
        skip();
    redis_start(&rd);
    loop_init(&l);
    r = client(&l, addr_of(&rd), NULL, 0, 500);
    assert_int_equal(weir_cache_redis_get(r, "k", 1, value_cb, &a, &h), WEIR_OK);
    assert_non_null(h);
    weir_cache_redis_cancel(h);
    weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL);
    assert_true(run_until(&l, &b.called, 2000));
    run_for(&l, 50);
    assert_int_equal(a.called, 0);
    /* freeing with a command pending reports it as an error, once */
    kill(rd.pid, SIGSTOP);
    memset(&b, 0, sizeof(b));
    weir_cache_redis_get(r, "k", 1, value_cb, &b, NULL);
    weir_cache_redis_free(r);
    assert_int_equal(b.called, 1);
    assert_int_equal(b.status, WEIR_REDIS_ERROR);
    loop_free(&l);
    redis_kill(&rd);
}

struct subres {
    int subscribed, messages;
    char last[64];
};

static void on_msg(void *arg, const char *p, size_t n)
{
    struct subres *s = arg;
    s->messages++;
    snprintf(s->last, sizeof(s->last), "%.*s", (int)n, p);
}

static void on_sub(void *arg)
{
    struct subres *s = arg;
    s->subscribed++;
}

static void test_pubsub(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct weir_cache_redis_sub *s;
    struct weir_redis_conf c = {NULL, "pw", 0, "test:", 500};
    struct subres sr = {0};
    struct result a = {0};
    int want;

    if (!have_redis())
        skip();
    strcpy(rd.password, "pw");
    redis_start(&rd);
    loop_init(&l);
    c.address = addr_of(&rd);
    s = weir_cache_redis_sub_new(l.base, &c, "purge", on_msg, on_sub, &sr);
    assert_non_null(s);
    weir_cache_redis_sub_set_backoff(s, 50, 200);
    assert_true(run_until(&l, &sr.subscribed, 2000));
    assert_true(weir_cache_redis_sub_active(s));
    r = client(&l, addr_of(&rd), "pw", 0, 500);
    weir_cache_redis_publish(r, "purge", "7 url http://h/a", 16, int_cb, &a, NULL);
    assert_true(run_until(&l, &sr.messages, 2000));
    assert_string_equal(sr.last, "7 url http://h/a");
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.v, 1); /* one receiver */
    /* restart: subscribed again, told so */
    redis_kill(&rd);
    weir_cache_redis_free(r);
    run_for(&l, 100);
    assert_false(weir_cache_redis_sub_active(s));
    redis_start(&rd);
    want = 2;
    {
        uint64_t end = weir_now_us() + 3000000;
        while (sr.subscribed < want && weir_now_us() < end)
            event_base_loop(l.base, EVLOOP_ONCE);
    }
    assert_int_equal(sr.subscribed, 2);
    weir_cache_redis_sub_free(s);
    loop_free(&l);
    redis_kill(&rd);
}

static void test_unix_socket(void **state)
{
    struct redis rd = {0};
    struct loop l;
    struct weir_cache_redis *r;
    struct result a = {0};
    char addr[80];

    if (!have_redis())
        skip();
    snprintf(rd.unix_path, sizeof(rd.unix_path), "/tmp/weir-test-redis-%d.sock", (int)getpid());
    redis_start(&rd);
    loop_init(&l);
    snprintf(addr, sizeof(addr), "unix:%s", rd.unix_path);
    r = client(&l, addr, NULL, 0, 500);
    assert_int_equal(weir_cache_redis_incr(r, "u", 1, int_cb, &a, NULL), WEIR_OK);
    assert_true(run_until(&l, &a.called, 2000));
    assert_int_equal(a.status, WEIR_REDIS_OK);
    assert_int_equal(a.v, 1);
    weir_cache_redis_free(r);
    loop_free(&l);
    redis_kill(&rd);
    unlink(rd.unix_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_address, teardown),
        cmocka_unit_test_teardown(test_commands, teardown),
        cmocka_unit_test_teardown(test_large_and_garbage, teardown),
        cmocka_unit_test_teardown(test_timeout_and_late_reply, teardown),
        cmocka_unit_test_teardown(test_breaker, teardown),
        cmocka_unit_test_teardown(test_killed_and_restarted, teardown),
        cmocka_unit_test_teardown(test_no_server, teardown),
        cmocka_unit_test_teardown(test_auth_select, teardown),
        cmocka_unit_test_teardown(test_cancel_and_free_pending, teardown),
        cmocka_unit_test_teardown(test_pubsub, teardown),
        cmocka_unit_test_teardown(test_unix_socket, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
