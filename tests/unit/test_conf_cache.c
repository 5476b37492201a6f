/*
 * test_conf_cache.c - the cache section of the configuration
 * (src/conf_cache.c) and the routes' `cache` key: defaults, every key, each
 * error with its exact "FILE:LINE: message", and weir_conf_dup copying the
 * section's strings.
 */
#include "config.h"

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
#include "weir/conf_edit.h"
#include "weir/core.h"

/* Lines 1-3 of every test file. */
#define BASE                                                                                                 \
    "listen = ( { address = \"127.0.0.1:8080\"; } );\n"                                                      \
    "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n"                    \
    "routes = ( { pool = \"api\"; cache = true; }, { path_prefix = \"/x\"; pool = \"api\"; } );\n"

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
    snprintf(ld->path, sizeof(ld->path), "/tmp/weir-test-conf-cache-XXXXXX");
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

/* Load, expect exactly one error equal to "<file>:" + suffix. */
static void expect_error_impl(const char *text, const char *suffix, const char *file, int line)
{
    struct loaded ld;
    char want[1024];
    size_t i;

    load_text(&ld, text);
    snprintf(want, sizeof(want), "%s:%s", ld.path, suffix);
    if (ld.c != NULL || ld.errs.n != 1 || strcmp(ld.errs.msgs[0], want) != 0) {
        print_message("expected: %s\n", want);
        for (i = 0; i < ld.errs.n; i++)
            print_message("  got[%zu]: %s\n", i, ld.errs.msgs[i]);
        unload(&ld);
        _fail(file, line);
    }
    unload(&ld);
}
#define expect_error(text, suffix) expect_error_impl((text), (suffix), __FILE__, __LINE__)

static void test_defaults(void **state)
{
    struct loaded ld;

    load_text(&ld, BASE);
    assert_non_null(ld.c);
    assert_int_equal(ld.c->cache.memory_bytes, 64 << 20);
    assert_int_equal(ld.c->cache.max_object_bytes, 8 << 20);
    assert_int_equal(ld.c->cache.redis.enabled, 0);
    assert_null(ld.c->cache.redis.address);
    assert_string_equal(ld.c->cache.redis.prefix, "weir:");
    assert_int_equal(ld.c->cache.redis.timeout_ms, 50);
    assert_int_equal(ld.c->routes[0].cache, 1);
    assert_int_equal(ld.c->routes[1].cache, 0);
    unload(&ld);
}

static void test_full_section(void **state)
{
    struct loaded ld;
    struct weir_conf *d;

    load_text(&ld, BASE "cache = {\n"
                        "  memory_bytes = 268435456;\n"
                        "  max_object_bytes = 8388608;\n"
                        "  redis = {\n"
                        "    address = \"127.0.0.1:6379\";\n"
                        "    password = \"secret\";\n"
                        "    db = 2;\n"
                        "    prefix = \"edge:\";\n"
                        "    timeout_ms = 25;\n"
                        "  };\n"
                        "};\n");
    assert_non_null(ld.c);
    assert_int_equal(ld.c->cache.memory_bytes, 268435456);
    assert_int_equal(ld.c->cache.max_object_bytes, 8388608);
    assert_int_equal(ld.c->cache.redis.enabled, 1);
    assert_int_equal(ld.c->cache.redis.line, 7);
    assert_string_equal(ld.c->cache.redis.address, "127.0.0.1:6379");
    assert_string_equal(ld.c->cache.redis.password, "secret");
    assert_int_equal(ld.c->cache.redis.db, 2);
    assert_string_equal(ld.c->cache.redis.prefix, "edge:");
    assert_int_equal(ld.c->cache.redis.timeout_ms, 25);

    d = weir_conf_dup(ld.c);
    assert_non_null(d);
    assert_ptr_not_equal(d->cache.redis.address, ld.c->cache.redis.address);
    assert_ptr_not_equal(d->cache.redis.password, ld.c->cache.redis.password);
    assert_ptr_not_equal(d->cache.redis.prefix, ld.c->cache.redis.prefix);
    assert_string_equal(d->cache.redis.address, "127.0.0.1:6379");
    assert_string_equal(d->cache.redis.password, "secret");
    assert_string_equal(d->cache.redis.prefix, "edge:");
    assert_int_equal(d->cache.memory_bytes, 268435456);
    assert_int_equal(d->routes[0].cache, 1);
    weir_conf_free(d);
    unload(&ld);

    load_text(&ld, BASE "cache = { redis = { address = \"unix:/run/redis.sock\"; prefix = \"\"; }; };\n"
                        "cache2 = 1;\n");
    assert_null(ld.c); /* cache2 is unknown */
    unload(&ld);
    load_text(&ld, BASE "cache = { redis = { address = \"[::1]:6380\"; prefix = \"\"; }; };\n");
    assert_non_null(ld.c);
    assert_string_equal(ld.c->cache.redis.prefix, "");
    assert_string_equal(ld.c->cache.redis.address, "[::1]:6380");
    assert_null(ld.c->cache.redis.password);
    unload(&ld);
}

static void test_errors(void **state)
{
    expect_error(BASE "cache = 5;\n", "4: cache must be a group { ... } (got the integer 5)");
    expect_error(BASE "cache = { memory_bytes = 1000; };\n",
                 "4: cache.memory_bytes must be between 1048576 and 1099511627776 (got 1000)");
    expect_error(BASE "cache = { max_object_bytes = 0; };\n",
                 "4: cache.max_object_bytes must be between 1 and 2147483648 (got 0)");
    expect_error(BASE "cache = {\n  memory_bytes = 2000000;\n  max_object_bytes = 3000000;\n};\n",
                 "4: cache.max_object_bytes (3000000) must not exceed cache.memory_bytes (2000000)");
    expect_error(BASE "cache = { size = 5; };\n", "4: unknown key 'size' in cache");
    expect_error(BASE "cache = { redis = { }; };\n", "4: missing required key 'address' in cache.redis");
    expect_error(
        BASE "cache = { redis = { address = \"redis.local:6379\"; }; };\n",
        "4: cache.redis.address: the Redis address must be a numeric IP address (host names would be "
        "resolved synchronously) or unix:/path (got \"redis.local:6379\")");
    expect_error(BASE "cache = { redis = { address = \"127.0.0.1\"; }; };\n",
                 "4: cache.redis.address: the address needs a port: \"127.0.0.1:6379\" (got \"127.0.0.1\")");
    expect_error(BASE "cache = { redis = {\n address = \"127.0.0.1:1\";\n timeout_ms = 0;\n }; };\n",
                 "6: cache.redis.timeout_ms must be between 1 and 60000 (got 0)");
    expect_error(BASE "cache = { redis = { address = \"127.0.0.1:1\"; db = -1; }; };\n",
                 "4: cache.redis.db must be between 0 and 1000000 (got -1)");
    expect_error(BASE "cache = { redis = { address = \"127.0.0.1:1\"; password = \"a b\"; }; };\n",
                 "4: cache.redis.password must be non-empty and contain no spaces or control characters (got "
                 "\"a b\")");
    expect_error(BASE "cache = { redis = { address = \"127.0.0.1:1\"; prefix = \"we ir\"; }; };\n",
                 "4: cache.redis.prefix must contain no spaces or control characters (got \"we ir\")");
    expect_error(BASE "cache = { redis = { address = 6379; }; };\n",
                 "4: cache.redis.address must be a string (got the integer 6379)");
    expect_error("listen = ( { address = \"127.0.0.1:8080\"; } );\n"
                 "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
                 "routes = ( { pool = \"api\"; cache = \"yes\"; } );\n",
                 "3: routes[0].cache must be a boolean (true or false) (got the string \"yes\")");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_section),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
