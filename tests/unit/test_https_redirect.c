/* test_https_redirect.c - the Location of redirect_https answers. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "weir/https_redirect.h"

static const char *loc(char *buf, size_t n, const char *host, const char *target, int port)
{
    int r = weir_https_location(buf, n, host, strlen(host), target, strlen(target), port);
    return r < 0 ? NULL : buf;
}

static void test_location(void **state)
{
    char b[128];

    assert_string_equal(loc(b, sizeof(b), "Example.COM", "/a?b=c", 443), "https://example.com/a?b=c");
    assert_string_equal(loc(b, sizeof(b), "example.com:80", "/", 0), "https://example.com/");
    assert_string_equal(loc(b, sizeof(b), "example.com:8080", "/x", 8443), "https://example.com:8443/x");
    assert_string_equal(loc(b, sizeof(b), "10.0.0.1:80", "/", 443), "https://10.0.0.1/");
    assert_string_equal(loc(b, sizeof(b), "[::1]:8080", "/v6", 443), "https://[::1]/v6");
    assert_string_equal(loc(b, sizeof(b), "[2001:DB8::1]", "/", 8443), "https://[2001:db8::1]:8443/");
    assert_int_equal(weir_https_location(b, sizeof(b), "a.b", 3, "/p", 2, 443), (int)strlen("https://a.b/p"));
}

static void test_refused(void **state)
{
    char b[64];

    memset(b, 'z', sizeof(b));
    assert_null(loc(b, sizeof(b), "", "/", 443));
    assert_null(loc(b, sizeof(b), "evil.com/x", "/", 443));
    assert_null(loc(b, sizeof(b), "user@evil.com", "/", 443));
    assert_null(loc(b, sizeof(b), "a.com:", "/", 443));
    assert_null(loc(b, sizeof(b), "a.com:80x", "/", 443));
    assert_null(loc(b, sizeof(b), ".a.com", "/", 443));
    assert_null(loc(b, sizeof(b), "[::1", "/", 443));
    assert_null(loc(b, sizeof(b), "[]", "/", 443));
    assert_null(loc(b, sizeof(b), "[::g]", "/", 443));
    assert_null(loc(b, sizeof(b), "a.com\r\nSet-Cookie: x", "/", 443));
    assert_null(loc(b, sizeof(b), "a.com", "*", 443));
    assert_null(loc(b, sizeof(b), "a.com", "http://a.com/", 443));
    assert_null(loc(b, sizeof(b), "a.com", "/a b", 443));
    assert_null(loc(b, sizeof(b), "a.com", "", 443));
    /* Too small: nothing written. */
    assert_null(loc(b, 17, "a.com", "/xyz", 443)); /* needs 17 bytes and the NUL */
    assert_int_equal(b[0], 'z');
    assert_string_equal(loc(b, 18, "a.com", "/xyz", 443), "https://a.com/xyz");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_location),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
