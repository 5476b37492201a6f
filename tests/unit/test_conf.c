/*
 * test_conf.c - the configuration loader: the shipped example, defaults, and
 * one test per kind of error with its exact "FILE:LINE: message".
 *
 * Each test writes its configuration to a temporary file (mkstemp), loads it
 * and removes it. Expected messages are written without the file name: the
 * helpers prepend "<tmpfile>:".
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir/conf.h"
#include "weir/core.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

/* A valid configuration in three parts so tests can insert lines and keep
 * the line numbers easy to count. Lines 1-2: */
#define LISTEN "listen = ( { address = \"127.0.0.1:8080\"; } );\n"                                   /* 1 */
#define POOLS  "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" /* 2 */
#define ROUTES "routes = ( { pool = \"api\"; } );\n"

struct loaded {
    char path[64];
    struct weir_conf *c;
    struct weir_conf_errors errs;
};

static void load_text(struct loaded *ld, const char *text)
{
    int fd;
    size_t n = strlen(text);

    memset(ld, 0, sizeof(*ld));
    snprintf(ld->path, sizeof(ld->path), "/tmp/weir-test-conf-XXXXXX");
    fd = mkstemp(ld->path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    ld->c = weir_conf_load(ld->path, &ld->errs);
    unlink(ld->path);
}

static void unload(struct loaded *ld)
{
    weir_conf_free(ld->c);
    weir_conf_errors_free(&ld->errs);
}

static void dump_errors(const struct loaded *ld)
{
    size_t i;
    for (i = 0; i < ld->errs.n; i++)
        print_message("  error[%zu]: %s\n", i, ld->errs.msgs[i]);
}

/* Load text, expect success. */
static struct weir_conf *load_ok(struct loaded *ld, const char *text)
{
    load_text(ld, text);
    if (ld->c == NULL)
        dump_errors(ld);
    assert_non_null(ld->c);
    assert_int_equal(ld->errs.n, 0);
    return ld->c;
}

/* 1 when errs holds exactly "<path>:<suffix>". */
static int has_error(const struct loaded *ld, const char *suffix)
{
    char want[1024];
    size_t i;

    snprintf(want, sizeof(want), "%s:%s", ld->path, suffix);
    for (i = 0; i < ld->errs.n; i++) {
        if (strcmp(ld->errs.msgs[i], want) == 0)
            return 1;
    }
    return 0;
}

static void assert_error_impl(const struct loaded *ld, const char *suffix, const char *file, int line)
{
    if (!has_error(ld, suffix)) {
        print_message("expected error: %s:%s\n", ld->path, suffix);
        dump_errors(ld);
        _fail(file, line);
    }
}
#define assert_error(ld, suffix) assert_error_impl((ld), (suffix), __FILE__, __LINE__)

/* Load text, expect it refused with exactly one error, equal to suffix. */
static void expect_one_error_impl(const char *text, const char *suffix, const char *file, int line)
{
    struct loaded ld;

    load_text(&ld, text);
    if (ld.c != NULL || ld.errs.n != 1) {
        print_message("expected exactly one error: %s\n", suffix);
        dump_errors(&ld);
        unload(&ld);
        _fail(file, line);
    }
    assert_error_impl(&ld, suffix, file, line);
    unload(&ld);
}
#define expect_one_error(text, suffix) expect_one_error_impl((text), (suffix), __FILE__, __LINE__)

static int addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const char *addr_ip(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    if (ss->ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)n);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)n);
}

/* ---- valid files ---------------------------------------------------------- */

static void test_example_file(void **state)
{
    struct weir_conf_errors errs = {0};
    struct weir_conf *c = weir_conf_load(TEST_SRCDIR "/conf/weir.conf", &errs);
    char ip[64];

    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);

    assert_int_equal(c->workers, 2);
    assert_int_equal(c->nlistens, 1);
    assert_string_equal(c->listens[0].addr.text, "127.0.0.1:8080");
    assert_string_equal(addr_ip(&c->listens[0].addr.ss, ip, sizeof(ip)), "127.0.0.1");
    assert_int_equal(addr_port(&c->listens[0].addr.ss), 8080);
    assert_int_equal(c->listens[0].addr.len, sizeof(struct sockaddr_in));

    assert_int_equal(c->timeouts.connect_ms, 2000);
    assert_int_equal(c->timeouts.drain_ms, 10000);
    assert_int_equal(c->limits.header_bytes, 32768);
    assert_string_equal(c->log.access, "stderr");
    assert_int_equal(c->log.format, WEIR_LOG_COMBINED);
    assert_int_equal(c->log.level, WEIR_LOG_INFO);

    assert_int_equal(c->npools, 2);
    struct weir_conf_pool *api = &c->pools[0], *st = &c->pools[1];
    assert_string_equal(api->name, "api");
    assert_string_equal(api->policy, "round_robin");
    assert_int_equal(api->retries, 2);
    assert_int_equal(api->nservers, 2);
    assert_string_equal(api->servers[0].addr.text, "127.0.0.1:9001");
    assert_int_equal(addr_port(&api->servers[1].addr.ss), 9002);
    assert_int_equal(api->servers[0].weight, 1);
    assert_int_equal(api->servers[1].weight, 1);
    assert_int_equal(api->health.type, WEIR_CHECK_HTTP);
    assert_string_equal(api->health.path, "/health");
    assert_int_equal(api->health.expect_status_lo, 200);
    assert_int_equal(api->health.expect_status_hi, 399);
    assert_int_equal(api->passive.enabled, 1);
    assert_int_equal(api->slow_start_ms, 5000);
    assert_int_equal(api->panic, 1);
    assert_string_equal(st->name, "static");
    assert_string_equal(st->policy, "weighted_round_robin");
    assert_int_equal(st->nservers, 1);
    assert_int_equal(addr_port(&st->servers[0].addr.ss), 9003);
    assert_int_equal(st->health.type, WEIR_CHECK_NONE);
    assert_int_equal(st->passive.enabled, 0);

    /* "/static/" -> static, then everything else -> api */
    assert_int_equal(c->nroutes, 2);
    assert_string_equal(c->routes[0].path_prefix, "/static/");
    assert_int_equal(c->routes[0].pool, 1);
    assert_string_equal(c->routes[1].host, "*");
    assert_string_equal(c->routes[1].path_prefix, "/");
    assert_int_equal(c->routes[1].pool, 0);

    assert_int_equal(c->admin.enabled, 1);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    assert_string_equal(c->admin.token, "change-me");
    assert_true(weir_conf_addr_is_loopback(&c->admin.addr.ss));

    weir_conf_free(c);
    weir_conf_errors_free(&errs);
}

static void test_defaults(void **state)
{
    struct loaded ld;
    struct weir_conf *c = load_ok(&ld, LISTEN POOLS ROUTES);

    assert_int_equal(c->workers, 1);
    assert_int_equal(c->timeouts.connect_ms, 2000);
    assert_int_equal(c->timeouts.client_header_ms, 10000);
    assert_int_equal(c->timeouts.client_body_ms, 60000);
    assert_int_equal(c->timeouts.upstream_response_ms, 30000);
    assert_int_equal(c->timeouts.idle_ms, 60000);
    assert_int_equal(c->timeouts.upstream_idle_ms, 30000);
    assert_int_equal(c->timeouts.drain_ms, 10000);
    assert_int_equal(c->limits.header_bytes, 32768);
    assert_int_equal(c->limits.max_connections, 20000);
    assert_int_equal(c->limits.upstream_idle_per_server, 64);
    assert_string_equal(c->log.access, "stderr");
    assert_string_equal(c->log.error, "stderr");
    assert_int_equal(c->log.format, WEIR_LOG_COMBINED);
    assert_int_equal(c->log.level, WEIR_LOG_INFO);

    assert_int_equal(c->npools, 1);
    struct weir_conf_pool *p = &c->pools[0];
    assert_string_equal(p->name, "api");
    assert_string_equal(p->policy, "round_robin");
    assert_int_equal(p->hash_key, WEIR_HASH_URI);
    assert_null(p->hash_header);
    assert_int_equal(p->retries, 2);
    assert_int_equal(p->nservers, 1);
    assert_int_equal(p->servers[0].weight, 1);
    assert_int_equal(p->servers[0].line, 2);
    assert_int_equal(p->servers[0].addr.line, 2);
    assert_int_equal(p->health.type, WEIR_CHECK_NONE);
    assert_int_equal(p->passive.enabled, 0);
    assert_int_equal(p->slow_start_ms, 0);
    assert_int_equal(p->panic, 1);
    assert_int_equal(p->line, 2);

    assert_int_equal(c->nroutes, 1);
    assert_string_equal(c->routes[0].host, "*");
    assert_string_equal(c->routes[0].path_prefix, "/");
    assert_int_equal(c->routes[0].pool, 0);
    assert_int_equal(c->routes[0].line, 3);

    assert_int_equal(c->admin.enabled, 0);
    assert_null(c->admin.token);
    assert_string_equal(c->file, ld.path);
    unload(&ld);
}

/* Groups present but empty: the group defaults apply. */
static void test_group_defaults(void **state)
{
    struct loaded ld;
    struct weir_conf *c =
        load_ok(&ld, LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
                            "            health = { }; passive = { }; } );\n" ROUTES "admin = { };\n");
    struct weir_conf_pool *p = &c->pools[0];

    assert_int_equal(p->health.type, WEIR_CHECK_HTTP);
    assert_string_equal(p->health.path, "/health");
    assert_string_equal(p->health.method, "GET");
    assert_null(p->health.host);
    assert_int_equal(p->health.expect_status_lo, 200);
    assert_int_equal(p->health.expect_status_hi, 399);
    assert_null(p->health.expect_body);
    assert_int_equal(p->health.interval_ms, 1000);
    assert_int_equal(p->health.timeout_ms, 500);
    assert_int_equal(p->health.jitter_pct, 10);
    assert_int_equal(p->health.rise, 2);
    assert_int_equal(p->health.fall, 3);
    assert_int_equal(p->passive.enabled, 1);
    assert_int_equal(p->passive.consecutive_failures, 5);
    assert_int_equal(p->passive.count_5xx, 1);
    assert_int_equal(p->passive.eject_ms, 10000);
    assert_int_equal(p->passive.max_eject_ms, 300000);
    assert_int_equal(p->passive.max_ejected_pct, 50);
    assert_int_equal(c->admin.enabled, 1);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    assert_int_equal(addr_port(&c->admin.addr.ss), 9901);
    assert_null(c->admin.token);
    unload(&ld);
}

/* Every key set to a non-default value ends up in the struct. */
static void test_all_keys(void **state)
{
    struct loaded ld;
    struct weir_conf *c = load_ok(
        &ld,
        "workers = 4;\n"
        "listen = ( { address = \"*:8080\"; }, { address = \"[::1]:8081\"; } );\n"
        "timeouts = { connect_ms = 1; client_header_ms = 2; client_body_ms = 3; upstream_response_ms = 4;\n"
        "             idle_ms = 5; upstream_idle_ms = 6; drain_ms = 86400000; };\n"
        "limits = { header_bytes = 1024; max_connections = 7; upstream_idle_per_server = 0; };\n"
        "log = { access = \"off\"; format = \"json\"; level = \"debug\"; error = \"/var/log/weir.err\"; };\n"
        "pools = ( { name = \"api-v1.x_y\"; policy = \"hash\"; hash_key = \"header:X-User-ID\"; retries = "
        "0;\n"
        "  servers = ( { address = \"127.0.0.1:9001\"; weight = 1000; },\n"
        "              { address = \"[::1]:9001\"; weight = 3; } );\n"
        "  health = { type = \"tcp\"; path = \"/ready?full=1\"; method = \"HEAD\"; host = "
        "\"api.internal:80\";\n"
        "             expect_status = \"204\"; expect_body = \"ok\"; interval_ms = 2000; timeout_ms = 2000;\n"
        "             jitter_pct = 50; rise = 1; fall = 100; };\n"
        "  passive = { consecutive_failures = 9; count_5xx = false; eject_ms = 100; max_eject_ms = 100;\n"
        "              max_ejected_pct = 0; };\n"
        "  slow_start_ms = 86400000; panic = false; } );\n"
        "routes = ( { host = \"API.Example.COM\"; path_prefix = \"/v1/\"; pool = \"api-v1.x_y\"; },\n"
        "           { host = \"*.Example.com\"; pool = \"api-v1.x_y\"; },\n"
        "           { host = \"[::1]\"; pool = \"api-v1.x_y\"; } );\n"
        "admin = { address = \"0.0.0.0:9901\"; token = \"s3cr3t!\"; };\n");
    char ip[64];

    assert_int_equal(c->workers, 4);
    assert_int_equal(c->nlistens, 2);
    assert_string_equal(addr_ip(&c->listens[0].addr.ss, ip, sizeof(ip)), "0.0.0.0");
    assert_int_equal(c->listens[0].addr.ss.ss_family, AF_INET);
    assert_int_equal(c->listens[1].addr.ss.ss_family, AF_INET6);
    assert_string_equal(addr_ip(&c->listens[1].addr.ss, ip, sizeof(ip)), "::1");
    assert_int_equal(addr_port(&c->listens[1].addr.ss), 8081);
    assert_int_equal(c->timeouts.connect_ms, 1);
    assert_int_equal(c->timeouts.client_header_ms, 2);
    assert_int_equal(c->timeouts.client_body_ms, 3);
    assert_int_equal(c->timeouts.upstream_response_ms, 4);
    assert_int_equal(c->timeouts.idle_ms, 5);
    assert_int_equal(c->timeouts.upstream_idle_ms, 6);
    assert_int_equal(c->timeouts.drain_ms, 86400000);
    assert_int_equal(c->limits.header_bytes, 1024);
    assert_int_equal(c->limits.max_connections, 7);
    assert_int_equal(c->limits.upstream_idle_per_server, 0);
    assert_string_equal(c->log.access, "off");
    assert_int_equal(c->log.format, WEIR_LOG_JSON);
    assert_int_equal(c->log.level, WEIR_LOG_DEBUG);
    assert_string_equal(c->log.error, "/var/log/weir.err");

    struct weir_conf_pool *p = &c->pools[0];
    assert_string_equal(p->name, "api-v1.x_y");
    assert_string_equal(p->policy, "hash");
    assert_int_equal(p->hash_key, WEIR_HASH_HEADER);
    assert_string_equal(p->hash_header, "x-user-id");
    assert_int_equal(p->retries, 0);
    assert_int_equal(p->nservers, 2);
    assert_int_equal(p->servers[0].weight, 1000);
    assert_int_equal(p->servers[1].weight, 3);
    assert_int_equal(p->servers[1].line, 9);
    assert_int_equal(p->health.type, WEIR_CHECK_TCP);
    assert_string_equal(p->health.path, "/ready?full=1");
    assert_string_equal(p->health.method, "HEAD");
    assert_string_equal(p->health.host, "api.internal:80");
    assert_int_equal(p->health.expect_status_lo, 204);
    assert_int_equal(p->health.expect_status_hi, 204);
    assert_string_equal(p->health.expect_body, "ok");
    assert_int_equal(p->health.interval_ms, 2000);
    assert_int_equal(p->health.timeout_ms, 2000);
    assert_int_equal(p->health.jitter_pct, 50);
    assert_int_equal(p->health.rise, 1);
    assert_int_equal(p->health.fall, 100);
    assert_int_equal(p->passive.enabled, 1);
    assert_int_equal(p->passive.consecutive_failures, 9);
    assert_int_equal(p->passive.count_5xx, 0);
    assert_int_equal(p->passive.eject_ms, 100);
    assert_int_equal(p->passive.max_eject_ms, 100);
    assert_int_equal(p->passive.max_ejected_pct, 0);
    assert_int_equal(p->slow_start_ms, 86400000);
    assert_int_equal(p->panic, 0);

    assert_int_equal(c->nroutes, 3);
    assert_string_equal(c->routes[0].host, "api.example.com");
    assert_string_equal(c->routes[0].path_prefix, "/v1/");
    assert_string_equal(c->routes[1].host, "*.example.com");
    assert_string_equal(c->routes[1].path_prefix, "/");
    assert_string_equal(c->routes[2].host, "[::1]");
    assert_int_equal(c->routes[2].line, 18);

    assert_int_equal(c->admin.enabled, 1);
    assert_false(weir_conf_addr_is_loopback(&c->admin.addr.ss));
    assert_string_equal(c->admin.token, "s3cr3t!");
    unload(&ld);
}

static void test_workers_auto(void **state)
{
    struct loaded ld;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int want = n < 1 ? 1 : n > WEIR_MAX_WORKERS ? WEIR_MAX_WORKERS : (int)n;
    struct weir_conf *c = load_ok(&ld, "workers = \"auto\";\n" LISTEN POOLS ROUTES);

    assert_int_equal(c->workers, want);
    assert_true(c->workers >= 1 && c->workers <= WEIR_MAX_WORKERS);
    unload(&ld);
}

/* 64-bit integer settings ("3000L") are accepted like plain ones. */
static void test_int64_and_order(void **state)
{
    struct loaded ld;
    /* routes before pools: the pool is resolved after the whole file */
    struct weir_conf *c =
        load_ok(&ld, "timeouts = { connect_ms = 3000L; };\n"
                     "routes = ( { pool = \"b\"; }, { pool = \"a\"; } );\n" LISTEN
                     "pools = ( { name = \"a\"; servers = ( { address = \"127.0.0.1:1\"; } ); },\n"
                     "          { name = \"b\"; servers = ( { address = \"127.0.0.1:1\"; } ); } );\n");

    assert_int_equal(c->timeouts.connect_ms, 3000);
    assert_int_equal(c->routes[0].pool, 1);
    assert_int_equal(c->routes[1].pool, 0);
    /* the same address in two pools is fine */
    assert_int_equal(c->pools[1].nservers, 1);
    unload(&ld);
}

static void test_policies(void **state)
{
    static const char *names[] = {"round_robin", "weighted_round_robin", "least_conn", "random_two", "hash"};
    char text[1024];
    size_t i;

    for (i = 0; i < WEIR_ARRAY_LEN(names); i++) {
        struct loaded ld;
        snprintf(text, sizeof(text),
                 LISTEN "pools = ( { name = \"p\"; policy = \"%s\"; hash_key = \"client_ip\";\n"
                        "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
                        "routes = ( { pool = \"p\"; } );\n",
                 names[i]);
        struct weir_conf *c = load_ok(&ld, text);
        assert_string_equal(c->pools[0].policy, names[i]);
        assert_int_equal(c->pools[0].hash_key, WEIR_HASH_CLIENT_IP);
        unload(&ld);
    }
}

/* ---- addresses -------------------------------------------------------------- */

static void test_parse_addr(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = NULL;
    char ip[64];

    assert_int_equal(weir_conf_parse_addr("*:8080", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_string_equal(addr_ip(&ss, ip, sizeof(ip)), "0.0.0.0");
    assert_int_equal(addr_port(&ss), 8080);
    assert_int_equal(len, sizeof(struct sockaddr_in));

    assert_int_equal(weir_conf_parse_addr("10.1.2.3:65535", &ss, &len, &why), 0);
    assert_string_equal(addr_ip(&ss, ip, sizeof(ip)), "10.1.2.3");
    assert_int_equal(addr_port(&ss), 65535);
    assert_false(weir_conf_addr_is_loopback(&ss));

    assert_int_equal(weir_conf_parse_addr("[::1]:1", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(addr_port(&ss), 1);
    assert_true(weir_conf_addr_is_loopback(&ss));

    assert_int_equal(weir_conf_parse_addr("[::]:80", &ss, &len, &why), 0);
    assert_false(weir_conf_addr_is_loopback(&ss));
    assert_int_equal(weir_conf_parse_addr("127.0.0.2:80", &ss, &len, &why), 0);
    assert_true(weir_conf_addr_is_loopback(&ss));
    assert_int_equal(weir_conf_parse_addr("[::ffff:127.0.0.1]:80", &ss, &len, &why), 0);
    assert_true(weir_conf_addr_is_loopback(&ss));
    assert_int_equal(weir_conf_parse_addr("128.0.0.1:80", &ss, &len, &why), 0);
    assert_false(weir_conf_addr_is_loopback(&ss));

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "empty address (expected host:port)"},
        {"127.0.0.1", "missing port (expected host:port)"},
        {"127.0.0.1:", "missing port"},
        {"1.2.3:x", "port is not a number"},
        {"127.0.0.1:0", "port must be between 1 and 65535"},
        {"127.0.0.1:65536", "port must be between 1 and 65535"},
        {"127.0.0.1:99999999999999999999", "port must be between 1 and 65535"},
        {"127.0.0.1:-1", "port is not a number"},
        {":80", "missing host (use '*' for all addresses)"},
        {"::1:80", "an ipv6 address must be written in brackets, e.g. [::1]:8080"},
        {"[::1]", "missing port (expected [v6]:port)"},
        {"[::1]80", "expected ':' and a port after ']'"},
        {"[::1:80", "missing ']' after the ipv6 address"},
        {"[1.2.3.4]:80", "not a valid ipv6 address"},
        {"[zz]:80", "not a valid ipv6 address"},
    };
    for (size_t i = 0; i < WEIR_ARRAY_LEN(bad); i++) {
        why = NULL;
        if (weir_conf_parse_addr(bad[i].text, &ss, &len, &why) != -1 || why == NULL ||
            strcmp(why, bad[i].why) != 0) {
            print_message("'%s': why=%s, want %s\n", bad[i].text, why ? why : "(null)", bad[i].why);
            fail();
        }
    }
}

static void test_error_bad_address(void **state)
{
    expect_one_error("listen = ( { address = \"1.2.3:x\"; } );\n" POOLS ROUTES,
                     "1: invalid address '1.2.3:x' in listen[0].address: port is not a number");
    expect_one_error(
        LISTEN "pools = ( { name = \"api\";\n"
               "  servers = ( { address = \"127.0.0.1:0\"; } ); } );\n" ROUTES,
        "3: invalid address '127.0.0.1:0' in pools[0].servers[0].address: port must be between 1 "
        "and 65535");
    expect_one_error(LISTEN POOLS ROUTES "admin = {\n  address = \"localhost\";\n};\n",
                     "5: invalid address 'localhost' in admin.address: missing port (expected host:port)");
}

/* ---- errors ------------------------------------------------------------------ */

static void test_error_missing_file(void **state)
{
    struct weir_conf_errors errs = {0};
    struct weir_conf *c = weir_conf_load("/nonexistent/weir.conf", &errs);

    assert_null(c);
    assert_int_equal(errs.n, 1);
    assert_string_equal(
        errs.msgs[0],
        "/nonexistent/weir.conf:0: cannot open the configuration file: No such file or directory");
    weir_conf_errors_free(&errs);
}

static void test_error_syntax(void **state)
{
    expect_one_error(LISTEN "workers = 2\nfoo = bar;\n" POOLS ROUTES, "3: syntax error");
    expect_one_error(LISTEN "workers = 2;\nworkers = 3;\n" POOLS ROUTES,
                     "3: syntax error: duplicate setting name");
}

static void test_error_unknown_key(void **state)
{
    expect_one_error(LISTEN POOLS ROUTES "foo = 1;\n", "4: unknown key 'foo' at top level");
    expect_one_error(LISTEN "pools = ( { name = \"api\";\n"
                            "  foo = 1;\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
                     "3: unknown key 'foo' in pools[0]");
    expect_one_error(LISTEN "pools = ( { name = \"api\";\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; },\n"
                            "              { address = \"127.0.0.1:9002\"; wieght = 2; } ); } );\n" ROUTES,
                     "4: unknown key 'wieght' in pools[0].servers[1]");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
                            "  health = {\n    interval = 5;\n  }; } );\n" ROUTES,
                     "4: unknown key 'interval' in pools[0].health");
    expect_one_error(LISTEN POOLS ROUTES "timeouts = { connect = 5; };\n",
                     "4: unknown key 'connect' in timeouts");
}

static void test_error_wrong_type(void **state)
{
    expect_one_error(LISTEN
                     "pools = ( { name = \"api\";\n"
                     "  servers = ( { address = \"127.0.0.1:9001\"; },\n"
                     "              { address = \"127.0.0.1:9002\"; weight = \"3\"; } ); } );\n" ROUTES,
                     "4: pools[0].servers[1].weight must be an integer (got the string \"3\")");
    expect_one_error(LISTEN POOLS ROUTES "timeouts = { connect_ms = 2.5; };\n",
                     "4: timeouts.connect_ms must be an integer (got the float 2.5)");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; panic = 1;\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
                     "2: pools[0].panic must be a boolean (true or false) (got the integer 1)");
    expect_one_error("listen = { address = \"127.0.0.1:8080\"; };\n" POOLS ROUTES,
                     "1: listen must be a list ( ... ) (got a group { ... })");
    expect_one_error(LISTEN POOLS ROUTES "log = \"stderr\";\n",
                     "4: log must be a group { ... } (got the string "
                     "\"stderr\")");
    expect_one_error(LISTEN "pools = ( \"api\" );\n" ROUTES,
                     "2: pools[0] must be a group { ... } (got the string "
                     "\"api\")");
    expect_one_error(LISTEN POOLS "routes = ( { pool = 1; } );\n",
                     "3: routes[0].pool must be a string (got the integer 1)");
}

static void test_error_range(void **state)
{
    expect_one_error(LISTEN POOLS ROUTES "timeouts = { connect_ms = 0; };\n",
                     "4: timeouts.connect_ms must be between 1 and 86400000 (got 0)");
    expect_one_error(LISTEN POOLS ROUTES "timeouts = {\n  idle_ms = -5;\n};\n",
                     "5: timeouts.idle_ms must be between 1 and 86400000 (got -5)");
    expect_one_error(LISTEN POOLS ROUTES "limits = { header_bytes = 100; };\n",
                     "4: limits.header_bytes must be between 1024 and 1048576 (got 100)");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; retries = 11;\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
                     "2: pools[0].retries must be between 0 and 10 (got 11)");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
                            "  health = { jitter_pct = 51; }; } );\n" ROUTES,
                     "3: pools[0].health.jitter_pct must be between 0 and 50 (got 51)");
    expect_one_error("workers = 0;\n" LISTEN POOLS ROUTES,
                     "1: workers must be an integer between 1 and 64 or \"auto\" (got the integer 0)");
    expect_one_error("workers = 65;\n" LISTEN POOLS ROUTES,
                     "1: workers must be an integer between 1 and 64 or \"auto\" (got the integer 65)");
    expect_one_error("workers = \"many\";\n" LISTEN POOLS ROUTES,
                     "1: workers must be an integer between 1 and 64 or \"auto\" (got the string \"many\")");
}

static void test_error_weight(void **state)
{
    expect_one_error(LISTEN "pools = ( { name = \"api\";\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; weight = 0; } ); } );\n" ROUTES,
                     "3: pools[0].servers[0].weight must be between 1 and 1000 (got 0)");
    expect_one_error(LISTEN "pools = ( { name = \"api\";\n"
                            "  servers = ( { address = \"127.0.0.1:9001\"; weight = -2; } ); } );\n" ROUTES,
                     "3: pools[0].servers[0].weight must be between 1 and 1000 (got -2)");
}

static void test_error_unknown_policy(void **state)
{
    expect_one_error(
        LISTEN "pools = ( { name = \"api\";\n"
               "  policy = \"fastest\";\n"
               "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
        "3: unknown policy 'fastest' in pools[0].policy (valid: round_robin, weighted_round_robin, "
        "least_conn, random_two, hash)");
}

static void test_error_route_unknown_pool(void **state)
{
    expect_one_error(LISTEN POOLS
                     "routes = ( { pool = \"api\"; },\n  { path_prefix = \"/x/\"; pool = \"nope\"; } );\n",
                     "4: unknown pool 'nope' in routes[1].pool (defined pools: api)");
}

static void test_error_duplicates(void **state)
{
    expect_one_error(LISTEN
                     "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); },\n"
                     "  { name = \"api\"; servers = ( { address = \"127.0.0.1:9002\"; } ); } );\n" ROUTES,
                     "3: duplicate pool name 'api' in pools[1].name (first defined at line 2)");
    expect_one_error(
        LISTEN "pools = ( { name = \"api\";\n"
               "  servers = ( { address = \"127.0.0.1:9001\"; },\n"
               "              { address = \"127.0.0.1:9002\"; },\n"
               "              { address = \"127.0.0.1:9001\"; weight = 2; } ); } );\n" ROUTES,
        "5: duplicate server address '127.0.0.1:9001' in pools[0].servers[2].address (also at line 3)");
    /* the same socket address written two ways */
    expect_one_error("listen = ( { address = \"*:8080\"; },\n"
                     "           { address = \"0.0.0.0:8080\"; } );\n" POOLS ROUTES,
                     "2: duplicate listen address '0.0.0.0:8080' in listen[1].address (also at line 1)");
}

static void test_error_missing_sections(void **state)
{
    expect_one_error(POOLS ROUTES, "1: missing required key 'listen' at top level");
    expect_one_error(LISTEN ROUTES, "1: missing required key 'pools' at top level");
    expect_one_error(LISTEN POOLS, "1: missing required key 'routes' at top level");
    expect_one_error("listen = ( );\n" POOLS ROUTES,
                     "1: listen is empty: at least one listen address is required");
    /* no pools: no second error for the route to "api" */
    expect_one_error(LISTEN "pools = ();\n" ROUTES, "2: pools is empty: at least one pool is required");
    expect_one_error(LISTEN POOLS "routes = ();\n", "3: routes is empty: at least one route is required");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; servers = (); } );\n" ROUTES,
                     "2: pools[0].servers is empty: at least one server is required");
    expect_one_error(LISTEN
                     "pools = ( {\n  servers = ( { address = \"127.0.0.1:9001\"; } ); },\n"
                     "  { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
                     "2: missing required key 'name' in pools[0]");
    expect_one_error(LISTEN "pools = ( { name = \"api\"; servers = ( { weight = 2; } ); } );\n" ROUTES,
                     "2: missing required key 'address' in pools[0].servers[0]");
    expect_one_error(LISTEN POOLS "routes = ( { host = \"*\"; } );\n",
                     "3: missing required key 'pool' in routes[0]");
}

static void test_error_admin_token(void **state)
{
    expect_one_error(
        LISTEN POOLS ROUTES "admin = {\n  address = \"0.0.0.0:9901\";\n};\n",
        "4: admin.token is required when admin.address '0.0.0.0:9901' is not a loopback address");
    expect_one_error(LISTEN POOLS ROUTES "admin = { address = \"*:9901\"; };\n",
                     "4: admin.token is required when admin.address '*:9901' is not a loopback address");
    expect_one_error(
        LISTEN POOLS ROUTES "admin = { address = \"[::1]:9901\"; token = \"a b\"; };\n",
        "4: admin.token must be non-empty and contain no spaces or control characters (got \"a b\")");

    /* loopback without a token, and any address with one, are fine */
    struct loaded ld;
    struct weir_conf *c = load_ok(&ld, LISTEN POOLS ROUTES "admin = { address = \"[::1]:9901\"; };\n");
    assert_int_equal(c->admin.enabled, 1);
    assert_null(c->admin.token);
    unload(&ld);
    c = load_ok(&ld, LISTEN POOLS ROUTES "admin = { address = \"10.0.0.1:9901\"; token = \"t\"; };\n");
    assert_string_equal(c->admin.token, "t");
    unload(&ld);
}

static void test_stats_key(void **state)
{
    struct loaded ld;
    struct weir_conf *c = load_ok(&ld, LISTEN POOLS ROUTES);
    assert_int_equal(c->stats.enabled, 1); /* default on */
    unload(&ld);
    c = load_ok(&ld, LISTEN POOLS ROUTES "stats = { enabled = false; };\n");
    assert_int_equal(c->stats.enabled, 0);
    unload(&ld);
    c = load_ok(&ld, LISTEN POOLS ROUTES "stats = { enabled = true; };\n");
    assert_int_equal(c->stats.enabled, 1);
    unload(&ld);
    expect_one_error(LISTEN POOLS ROUTES "stats = { enabled = 0; };\n",
                     "4: stats.enabled must be a boolean (true or false) (got the integer 0)");
    expect_one_error(LISTEN POOLS ROUTES "stats = { on = true; };\n", "4: unknown key 'on' in stats");
}

static void test_error_hash_key(void **state)
{
    expect_one_error(
        LISTEN "pools = ( { name = \"api\"; policy = \"hash\";\n"
               "  hash_key = \"cookie\";\n"
               "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
        "3: pools[0].hash_key must be \"uri\", \"client_ip\" or \"header:NAME\" with NAME a header "
        "name (got \"cookie\")");
    expect_one_error(
        LISTEN "pools = ( { name = \"api\"; hash_key = \"header:\";\n"
               "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
        "2: pools[0].hash_key must be \"uri\", \"client_ip\" or \"header:NAME\" with NAME a header "
        "name (got \"header:\")");
    expect_one_error(
        LISTEN "pools = ( { name = \"api\"; hash_key = \"header:a b\";\n"
               "  servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n" ROUTES,
        "2: pools[0].hash_key must be \"uri\", \"client_ip\" or \"header:NAME\" with NAME a header "
        "name (got \"header:a b\")");
}

static void test_error_health(void **state)
{
#define HPOOL(h)                                                                                             \
    LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"                  \
           "  health = { " h " }; } );\n" ROUTES
    expect_one_error(HPOOL("type = \"udp\";"),
                     "3: pools[0].health.type must be one of http, tcp (got \"udp\")");
    expect_one_error(HPOOL("expect_status = \"2xx\";"),
                     "3: pools[0].health.expect_status must be a status code or a range such as \"200\" or "
                     "\"200-399\" (got \"2xx\")");
    expect_one_error(HPOOL("expect_status = \"200,204\";"),
                     "3: pools[0].health.expect_status must be a status code or a range such as \"200\" or "
                     "\"200-399\" (got \"200,204\")");
    expect_one_error(HPOOL("expect_status = \"399-200\";"),
                     "3: pools[0].health.expect_status must be within 100-599 with the low bound first (got "
                     "\"399-200\")");
    expect_one_error(HPOOL("expect_status = \"600\";"),
                     "3: pools[0].health.expect_status must be within 100-599 with the low bound first (got "
                     "\"600\")");
    expect_one_error(HPOOL("path = \"health\";"),
                     "3: pools[0].health.path must start with '/' and contain no "
                     "spaces, control characters or '#' (got \"health\")");
    expect_one_error(
        HPOOL("method = \"GE T\";"),
        "3: pools[0].health.method must be an http method token such as GET or HEAD (got \"GE T\")");
    expect_one_error(HPOOL("interval_ms = 100; timeout_ms = 200;"),
                     "3: pools[0].health.timeout_ms (200) must not exceed pools[0].health.interval_ms (100)");

    struct loaded ld;
    struct weir_conf *c = load_ok(&ld, HPOOL("expect_status = \"200-299\"; expect_body = \"pong\";"));
    assert_int_equal(c->pools[0].health.type, WEIR_CHECK_HTTP);
    assert_int_equal(c->pools[0].health.expect_status_lo, 200);
    assert_int_equal(c->pools[0].health.expect_status_hi, 299);
    assert_string_equal(c->pools[0].health.expect_body, "pong");
    unload(&ld);
#undef HPOOL
}

static void test_error_passive(void **state)
{
    expect_one_error(
        LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
               "  passive = { eject_ms = 5000; max_eject_ms = 1000; }; } );\n" ROUTES,
        "3: pools[0].passive.max_eject_ms (1000) must not be less than pools[0].passive.eject_ms "
        "(5000)");
    expect_one_error(
        LISTEN "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
               "  passive = { count_5xx = \"yes\"; }; } );\n" ROUTES,
        "3: pools[0].passive.count_5xx must be a boolean (true or false) (got the string \"yes\")");
}

static void test_error_routes(void **state)
{
    expect_one_error(
        LISTEN POOLS "routes = ( { host = \"example.com:8080\"; pool = \"api\"; } );\n",
        "3: routes[0].host must not include a port (got \"example.com:8080\"): ports are ignored "
        "when matching");
    expect_one_error(LISTEN POOLS "routes = ( { host = \"a..b\"; pool = \"api\"; } );\n",
                     "3: routes[0].host must be \"*\", a host name or \"*.suffix\" (got \"a..b\")");
    expect_one_error(LISTEN POOLS "routes = ( { host = \"*x.com\"; pool = \"api\"; } );\n",
                     "3: routes[0].host must be \"*\", a host name or \"*.suffix\" (got \"*x.com\")");
    expect_one_error(
        LISTEN POOLS "routes = ( { path_prefix = \"static/\"; pool = \"api\"; } );\n",
        "3: routes[0].path_prefix must start with '/' and contain no spaces, control characters, '?' "
        "or '#' (got \"static/\")");
    expect_one_error(LISTEN
                     "pools = ( { name = \"a b\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
                     "routes = ( { pool = \"a b\"; } );\n",
                     "2: pools[0].name must be made of letters, digits, '-', '_' and '.' (got \"a b\")");
}

static void test_error_log(void **state)
{
    expect_one_error(LISTEN POOLS ROUTES "log = { level = \"verbose\"; };\n",
                     "4: log.level must be one of debug, info, warn, error (got \"verbose\")");
    expect_one_error(LISTEN POOLS ROUTES "log = { format = \"clf\"; };\n",
                     "4: log.format must be one of combined, json (got \"clf\")");
    expect_one_error(LISTEN POOLS ROUTES "log = { access = \"\"; };\n", "4: log.access must not be empty");
}

/* All errors are reported at once, in file order, and nothing leaks. */
static void test_multiple_errors(void **state)
{
    struct loaded ld;

    load_text(&ld, "workers = 100;\n"                                                      /* 1 */
                   "listen = ( { address = \"127.0.0.1:8080\"; },\n"                       /* 2 */
                   "           { address = \"127.0.0.1:8080\"; } );\n"                     /* 3 */
                   "timeouts = { connect_ms = 0; bogus = 1; };\n"                          /* 4 */
                   "pools = (\n"                                                           /* 5 */
                   "  { name = \"api\"; policy = \"nope\";\n"                              /* 6 */
                   "    servers = ( { address = \"127.0.0.1:9001\"; weight = 0; },\n"      /* 7 */
                   "                { address = \"bad\"; } ); },\n"                        /* 8 */
                   "  { name = \"api\"; servers = ( { address = \"127.0.0.1:1\"; } ); }\n" /* 9 */
                   ");\n"                                                                  /* 10 */
                   "routes = ( { pool = \"ghost\"; } );\n"                                 /* 11 */
                   "admin = { address = \"0.0.0.0:9901\"; };\n");                          /* 12 */
    assert_null(ld.c);
    assert_error(&ld, "1: workers must be an integer between 1 and 64 or \"auto\" (got the integer 100)");
    assert_error(&ld, "3: duplicate listen address '127.0.0.1:8080' in listen[1].address (also at line 2)");
    assert_error(&ld, "4: timeouts.connect_ms must be between 1 and 86400000 (got 0)");
    assert_error(&ld, "4: unknown key 'bogus' in timeouts");
    assert_error(&ld,
                 "6: unknown policy 'nope' in pools[0].policy (valid: round_robin, weighted_round_robin, "
                 "least_conn, random_two, hash)");
    assert_error(&ld, "7: pools[0].servers[0].weight must be between 1 and 1000 (got 0)");
    assert_error(
        &ld, "8: invalid address 'bad' in pools[0].servers[1].address: missing port (expected host:port)");
    assert_error(&ld, "9: duplicate pool name 'api' in pools[1].name (first defined at line 6)");
    assert_error(&ld, "11: unknown pool 'ghost' in routes[0].pool (defined pools: api, api)");
    assert_error(&ld,
                 "12: admin.token is required when admin.address '0.0.0.0:9901' is not a loopback address");
    if (ld.errs.n != 10)
        dump_errors(&ld);
    assert_int_equal(ld.errs.n, 10);
    /* discovery order follows the file (route pools are resolved last) */
    char want[128];
    snprintf(want, sizeof(want), "%s:1: ", ld.path);
    assert_memory_equal(ld.errs.msgs[0], want, strlen(want));
    unload(&ld);
}

/* An @include is resolved relative to the including file's directory. */
static void test_include(void **state)
{
    char dir[] = "/tmp/weir-test-dir-XXXXXX", main_path[128], inc_path[128];
    FILE *f;
    struct weir_conf_errors errs = {0};
    struct weir_conf *c;

    assert_non_null(mkdtemp(dir));
    snprintf(main_path, sizeof(main_path), "%s/weir.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/pools.conf", dir);
    f = fopen(inc_path, "w");
    assert_non_null(f);
    fputs(
        "pools = ( { name = \"api\";\n  servers = ( { address = \"127.0.0.1:9001\"; weight = 0; } ); } );\n",
        f);
    fclose(f);
    f = fopen(main_path, "w");
    assert_non_null(f);
    fputs(LISTEN "@include \"pools.conf\"\n" ROUTES, f);
    fclose(f);

    /* a syntax error inside the included file names that file too */
    f = fopen(main_path, "w");
    assert_non_null(f);
    fputs(LISTEN "@include \"pools.conf\"\n" ROUTES, f);
    fclose(f);
    f = fopen(inc_path, "w");
    assert_non_null(f);
    fputs("# pools\npools = ;\n", f);
    fclose(f);
    c = weir_conf_load(main_path, &errs);
    assert_null(c);
    assert_int_equal(errs.n, 1);
    char want1[512];
    snprintf(want1, sizeof(want1), "%s:2: syntax error", inc_path);
    assert_string_equal(errs.msgs[0], want1);
    weir_conf_errors_free(&errs);

    f = fopen(inc_path, "w");
    assert_non_null(f);
    fputs(
        "pools = ( { name = \"api\";\n  servers = ( { address = \"127.0.0.1:9001\"; weight = 0; } ); } );\n",
        f);
    fclose(f);
    c = weir_conf_load(main_path, &errs);
    assert_null(c);
    assert_int_equal(errs.n, 1);
    char want[512];
    snprintf(want, sizeof(want), "%s:2: pools[0].servers[0].weight must be between 1 and 1000 (got 0)",
             inc_path);
    assert_string_equal(errs.msgs[0], want);
    weir_conf_errors_free(&errs);
    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
}

/* Integers beyond 32 bits without the L suffix: libconfig 1.5 would wrap
 * them silently (4294967496 -> 200); they are refused with FILE:LINE. */
static void test_int_wrap_refused(void **state)
{
    struct loaded ld;

    expect_one_error(LISTEN POOLS ROUTES "limits = { max_connections = 4294967496; };\n",
                     "4: the integer 4294967496 does not fit in 32 bits (at most 2147483647); write it "
                     "with an L suffix (4294967496L) only where a key takes such values");
    expect_one_error(LISTEN POOLS ROUTES
                     "\n# a comment 99999999999\ntimeouts = { connect_ms = 0x100000000; };\n",
                     "6: the integer 0x100000000 does not fit in 32 bits (at most 2147483647); write it "
                     "with an L suffix (0x100000000L) only where a key takes such values");
    expect_one_error(LISTEN POOLS ROUTES "limits = { max_connections = -3000000000; };\n",
                     "4: the integer -3000000000 does not fit in 32 bits (at most 2147483647); write it "
                     "with an L suffix (-3000000000L) only where a key takes such values");
    /* digits in strings, comments, names and floats, and L literals, are fine */
    struct weir_conf *c = load_ok(&ld, LISTEN POOLS ROUTES "/* 99999999999 */ // 88888888888\n"
                                                           "limits = { max_connections = 200; };\n"
                                                           "log = { access = \"/tmp/x99999999999\"; };\n"
                                                           "timeouts = { connect_ms = 3000L; };\n");
    assert_int_equal(c->limits.max_connections, 200);
    assert_int_equal(c->timeouts.connect_ms, 3000);
    unload(&ld);
    /* 2^31 - 1 fits: the key's own range check speaks, not the pre-scan */
    expect_one_error(LISTEN POOLS ROUTES "limits = { max_connections = 2147483647; };\n",
                     "4: limits.max_connections must be between 1 and 10000000 (got 2147483647)");
}

/* The same inside an @include file names that file and its line. */
static void test_int_wrap_in_include(void **state)
{
    char dir[] = "/tmp/weir-test-dir-XXXXXX", main_path[128], inc_path[128], want[512];
    struct weir_conf_errors errs = {0};
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(main_path, sizeof(main_path), "%s/weir.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/limits.conf", dir);
    f = fopen(inc_path, "w");
    assert_non_null(f);
    fputs("# limits\n\nlimits = { max_connections = 4294967496; };\n", f);
    fclose(f);
    f = fopen(main_path, "w");
    assert_non_null(f);
    fputs(LISTEN POOLS ROUTES "@include \"limits.conf\"\n", f);
    fclose(f);
    assert_null(weir_conf_load(main_path, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof(want),
             "%s:3: the integer 4294967496 does not fit in 32 bits (at most 2147483647); write it with an L "
             "suffix (4294967496L) only where a key takes such values",
             inc_path);
    assert_string_equal(errs.msgs[0], want);
    weir_conf_errors_free(&errs);
    unlink(inc_path);
    unlink(main_path);
    rmdir(dir);
}

/* admin: allowed_hosts, connection cap, request timeout; the admin address
 * must not overlap a listen address. */
static void test_admin_keys(void **state)
{
    struct loaded ld;
    struct weir_conf *c = load_ok(&ld, LISTEN POOLS ROUTES
                                  "admin = { address = \"127.0.0.1:9901\"; max_connections = 8; "
                                  "request_timeout_ms = 2500; allowed_hosts = ( \"Admin.Example.com\", "
                                  "\"*.internal\" ); };\n");
    assert_int_equal(c->admin.max_connections, 8);
    assert_int_equal(c->admin.request_timeout_ms, 2500);
    assert_int_equal(c->admin.nallowed_hosts, 2);
    assert_string_equal(c->admin.allowed_hosts[0], "admin.example.com");
    assert_string_equal(c->admin.allowed_hosts[1], "*.internal");
    unload(&ld);
    c = load_ok(&ld, LISTEN POOLS ROUTES "admin = { };\n");
    assert_int_equal(c->admin.max_connections, 64);
    assert_int_equal(c->admin.request_timeout_ms, 10000);
    assert_int_equal(c->admin.nallowed_hosts, 0);
    unload(&ld);

    expect_one_error(LISTEN POOLS ROUTES "admin = { allowed_hosts = ( \"ok.example\", \"bad host\" ); };\n",
                     "4: admin.allowed_hosts[1] must be a host name such as \"admin.example.com\" or "
                     "\"*.example.com\"");
    expect_one_error(LISTEN POOLS ROUTES "admin = {\n address = \"127.0.0.1:8080\"; };\n",
                     "5: admin.address '127.0.0.1:8080' overlaps listen address '127.0.0.1:8080' (line 1): "
                     "give the admin endpoint its own port");
    expect_one_error("listen = ( { address = \"0.0.0.0:8080\"; } );\n" POOLS ROUTES
                     "admin = { address = \"127.0.0.1:8080\"; };\n",
                     "4: admin.address '127.0.0.1:8080' overlaps listen address '0.0.0.0:8080' (line 1): "
                     "give the admin endpoint its own port");
    /* another port, or the same port on another address, is fine */
    c = load_ok(&ld, LISTEN POOLS ROUTES "admin = { address = \"127.0.0.2:8080\"; };\n");
    unload(&ld);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_wrap_refused),
        cmocka_unit_test(test_admin_keys),
        cmocka_unit_test(test_int_wrap_in_include),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_group_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_workers_auto),
        cmocka_unit_test(test_int64_and_order),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_error_bad_address),
        cmocka_unit_test(test_error_missing_file),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_wrong_type),
        cmocka_unit_test(test_error_range),
        cmocka_unit_test(test_error_weight),
        cmocka_unit_test(test_error_unknown_policy),
        cmocka_unit_test(test_error_route_unknown_pool),
        cmocka_unit_test(test_error_duplicates),
        cmocka_unit_test(test_error_missing_sections),
        cmocka_unit_test(test_error_admin_token),
        cmocka_unit_test(test_stats_key),
        cmocka_unit_test(test_error_hash_key),
        cmocka_unit_test(test_error_health),
        cmocka_unit_test(test_error_passive),
        cmocka_unit_test(test_error_routes),
        cmocka_unit_test(test_error_log),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_include),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
