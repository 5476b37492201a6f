/*
 * test_access_log.c - unit tests for access log formatting (access_log.c):
 * escaping of every client-supplied field in both formats, so a client can
 * forge neither a JSON key nor a combined-format field or line.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/access_log.h"

#define CLF "06/Dec/2026:19:05:58 +0000"
#define ISO "2026-12-06T19:05:58Z"

static struct weir_access_rec rec(void)
{
    struct weir_access_rec r = {
        .client = "127.0.0.1",
        .method = "GET",
        .method_len = 3,
        .target = "/a?b=c",
        .target_len = 6,
        .host = "h.test",
        .host_len = 6,
        .rid = "rid1",
        .rid_len = 4,
        .status = 200,
        .bytes = 1234,
        .pool = "p",
        .upstream = "127.0.0.1:8080",
        .upstream_s = 0.25,
        .total_s = 0.5,
        .tries = 1,
    };
    return r;
}

static void test_tls_fields(void **st)
{
    (void)st;
    struct weir_access_rec r = rec();
    char line[WEIR_ACCESS_LINE_MAX];
    r.tls_version = "TLSv1.3";
    r.tls_cipher = "TLS_AES_128_GCM_SHA256";
    r.tls_sni = "a\"b.test"; /* a client-chosen name is escaped */
    size_t n = weir_access_format(line, sizeof(line), 0, CLF, ISO, &r);
    line[n] = '\0';
    assert_non_null(strstr(line, " rid=rid1 tls=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 sni=a\\x22b.test\n"));
    n = weir_access_format(line, sizeof(line), 1, CLF, ISO, &r);
    line[n] = '\0';
    assert_non_null(strstr(line, "\"request_id\":\"rid1\",\"tls_version\":\"TLSv1.3\","
                                 "\"tls_cipher\":\"TLS_AES_128_GCM_SHA256\",\"tls_sni\":\"a\\\"b.test\"}\n"));
    /* no SNI */
    r.tls_sni = NULL;
    n = weir_access_format(line, sizeof(line), 0, CLF, ISO, &r);
    line[n] = '\0';
    assert_non_null(strstr(line, " sni=-\n"));
    n = weir_access_format(line, sizeof(line), 1, CLF, ISO, &r);
    line[n] = '\0';
    assert_non_null(strstr(line, "\"tls_sni\":null}\n"));
    /* plain: no TLS field at all */
    r.tls_version = NULL;
    n = weir_access_format(line, sizeof(line), 1, CLF, ISO, &r);
    line[n] = '\0';
    assert_null(strstr(line, "tls_"));
}

static void test_escape_json(void **st)
{
    (void)st;
    char out[64];
    size_t n = weir_access_escape_json(out, sizeof(out), "a\"b\\c\n\x01\xe9z", 9);
    assert_int_equal(n, strlen("a\\\"b\\\\c\\u000a\\u0001\\u00e9z"));
    assert_memory_equal(out, "a\\\"b\\\\c\\u000a\\u0001\\u00e9z", n);
    /* never cuts an escape in half */
    n = weir_access_escape_json(out, 5, "ab\"\"", 4);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "ab\\\"", 4);
    n = weir_access_escape_json(out, 7, "a\x01", 2);
    assert_int_equal(n, 7);
    n = weir_access_escape_json(out, 6, "a\x01", 2);
    assert_int_equal(n, 1);
}

static void test_escape_clf(void **st)
{
    (void)st;
    char out[64];
    size_t n = weir_access_escape_clf(out, sizeof(out), "a\"b\\c\n\x7f\xff ", 9);
    const char *want = "a\\x22b\\x5Cc\\x0A\\x7F\\xFF ";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    n = weir_access_escape_clf(out, 4, "\"", 1);
    assert_int_equal(n, 4);
    n = weir_access_escape_clf(out, 3, "\"", 1);
    assert_int_equal(n, 0);
}

static void test_json_forged_keys(void **st)
{
    (void)st;
    struct weir_access_rec r = rec();
    const char *forged = "a\",\"status\":999,\"client\":\"10.9.9.9";
    r.rid = forged;
    r.rid_len = strlen(forged);
    r.ua = "x\"}\n{\"status\":1";
    r.ua_len = strlen(r.ua);
    char line[WEIR_ACCESS_LINE_MAX];
    size_t n = weir_access_format(line, sizeof(line), 1, CLF, ISO, &r);
    assert_true(n > 0 && line[n - 1] == '\n');
    line[n] = '\0';
    /* one line, one status key, one client key */
    assert_null(memchr(line, '\n', n - 1));
    assert_non_null(strstr(line, "\"status\":200,"));
    assert_null(strstr(line, "\"status\":999"));
    const char *first = strstr(line, "\"status\":");
    assert_null(strstr(first + 1, "\"status\":"));
    assert_non_null(strstr(line, "\"request_id\":\"a\\\",\\\"status\\\":999,\\\"client\\\":\\\"10.9.9.9\"}"));
    assert_non_null(strstr(line, "\"upstream_time\":0.250000,\"total_time\":0.500000,\"tries\":1,"));
}

static void test_combined(void **st)
{
    (void)st;
    struct weir_access_rec r = rec();
    char line[WEIR_ACCESS_LINE_MAX];
    size_t n = weir_access_format(line, sizeof(line), 0, CLF, ISO, &r);
    line[n] = '\0';
    assert_string_equal(line, "127.0.0.1 - - [" CLF
                              "] \"GET /a?b=c HTTP/1.1\" 200 1234 \"-\" \"-\" host=\"h.test\" "
                              "pool=p upstream=127.0.0.1:8080 upstream_time=0.250 total_time=0.500 tries=1 "
                              "rid=rid1\n");
    /* client fields cannot end their quotes, start a line or forge a key */
    r.target = "/x\" 999 \"";
    r.target_len = strlen(r.target);
    r.ua = "ua\"\r\nfake line";
    r.ua_len = strlen(r.ua);
    r.rid = "a b=c";
    r.rid_len = 5;
    r.upstream_s = -1;
    r.http10 = 1;
    n = weir_access_format(line, sizeof(line), 0, CLF, ISO, &r);
    line[n] = '\0';
    assert_string_equal(line, "127.0.0.1 - - [" CLF "] \"GET /x\\x22 999 \\x22 HTTP/1.0\" 200 1234 \"-\" "
                              "\"ua\\x22\\x0D\\x0Afake line\" host=\"h.test\" pool=p upstream=127.0.0.1:8080 "
                              "upstream_time=- total_time=0.500 tries=1 rid=a\\x20b=c\n");
}

static void test_long_fields_fit(void **st)
{
    (void)st;
    /* fields of the worst bytes still give one complete line */
    static char big[20000];
    memset(big, '"', sizeof(big));
    struct weir_access_rec r = rec();
    r.target = r.ua = r.referer = r.host = r.rid = big;
    r.target_len = r.ua_len = r.referer_len = r.host_len = r.rid_len = sizeof(big);
    char line[WEIR_ACCESS_LINE_MAX];
    for (int json = 0; json < 2; json++) {
        size_t n = weir_access_format(line, sizeof(line), json, CLF, ISO, &r);
        assert_true(n <= sizeof(line));
        assert_int_equal(line[n - 1], '\n');
        assert_null(memchr(line, '\n', n - 1));
        if (json) {
            assert_memory_equal(line + n - 3, "\"}\n", 3);
            assert_non_null(memmem(line, n, "\"status\":200,", 13));
        } else {
            assert_non_null(memmem(line, n, "\" 200 1234 \"", 12));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_json),      cmocka_unit_test(test_escape_clf),
        cmocka_unit_test(test_json_forged_keys), cmocka_unit_test(test_combined),
        cmocka_unit_test(test_long_fields_fit),  cmocka_unit_test(test_tls_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
