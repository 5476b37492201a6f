/*
 * test_cache_l2key.c - the Redis keys of objects, variants and leases
 * (src/cache_l2.c): a key that does not fit its buffer has length 0, never
 * the length snprintf wanted (a 2,100-byte URL made l2_lookup send 2,138
 * bytes read from a 2,048-byte stack buffer to Redis).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/cache_stage.h"

static char *long_key(size_t n)
{
    char *k = malloc(n + 1);
    assert_non_null(k);
    memcpy(k, "GET http://h/", 13);
    memset(k + 13, 'q', n - 13);
    k[n] = '\0';
    return k;
}

static void keys_that_fit(void **state)
{
    char buf[2048];
    size_t n;

    (void)state;
    n = cache_l2_key(buf, sizeof(buf), "GET http://h/a", NULL, 0);
    assert_int_equal(n, strlen("obj:GET http://h/a"));
    assert_memory_equal(buf, "obj:GET http://h/a", n);
    n = cache_l2_key(buf, sizeof(buf), "GET http://h/a", "=en\0", 4);
    assert_int_equal(n, strlen("obj:GET http://h/a#") + 16);
    assert_int_equal(buf[n - 17], '#');
    n = cache_lease_key(buf, sizeof(buf), "GET http://h/a");
    assert_int_equal(n, strlen("lease:GET http://h/a"));
}

static void keys_that_do_not_fit_are_empty(void **state)
{
    char buf[2048];
    char *k;

    (void)state;
    k = long_key(2100);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, NULL, 0), 0);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, "=x\0", 3), 0);
    assert_int_equal(cache_lease_key(buf, sizeof(buf), k), 0);
    free(k);
    /* the edges: "obj:" + 2043 bytes + NUL fills 2048 exactly; one more does not fit */
    k = long_key(2043);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, NULL, 0), 2047);
    free(k);
    k = long_key(2044);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, NULL, 0), 0);
    free(k);
    /* a variant adds 17 bytes */
    k = long_key(2043 - 17);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, "=x\0", 3), 2047);
    free(k);
    k = long_key(2044 - 17);
    assert_int_equal(cache_l2_key(buf, sizeof(buf), k, "=x\0", 3), 0);
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_that_fit),
        cmocka_unit_test(keys_that_do_not_fit_are_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
