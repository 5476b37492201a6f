/*
 * test_tls_stats.c - the TLS series of /stats and /metrics (tls_stats.c):
 * exact text and JSON for known counters, label escaping, expiry in the
 * past and the future, and the Prometheus text checked by promtool when it
 * is installed (Debian package "prometheus", in scripts/debian-packages.txt).
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

#include "weir/tls_stats.h"

static char *text_of(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);

    assert_non_null(s);
    evbuffer_copyout(b, s, n);
    s[n] = '\0';
    return s;
}

static void fill(struct weir_tls_counters *c, unsigned long long base)
{
    memset(c, 0, sizeof(*c));
    atomic_store(&c->full, base + 1);
    atomic_store(&c->resumed, base + 2);
    for (int r = 0; r < WEIR_TLS_FAIL_N; r++)
        atomic_store(&c->fail[r], base + 10 + (unsigned long long)r);
}

static void test_metrics_text(void **state)
{
    struct weir_tls_counters a, b;
    struct weir_tls_stats_listener l[2] = {{"0.0.0.0:443", &a}, {"[::1]:8443 \"x\"\\", &b}};
    struct evbuffer *out = evbuffer_new();
    char *s;

    fill(&a, 0);
    fill(&b, 100);
    evbuffer_add_printf(out, "before\n");
    assert_int_equal(weir_tls_metrics(out, l, 2, 1000000 + 86400 * 3, 1000000), 0);
    s = text_of(out);
    assert_string_equal(
        s,
        "before\n"
        "# HELP weir_tls_handshakes_total Completed TLS handshakes by listener, full or resumed (ticket or "
        "session cache)\n"
        "# TYPE weir_tls_handshakes_total counter\n"
        "weir_tls_handshakes_total{listen=\"0.0.0.0:443\",kind=\"full\"} 1\n"
        "weir_tls_handshakes_total{listen=\"0.0.0.0:443\",kind=\"resumed\"} 2\n"
        "weir_tls_handshakes_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",kind=\"full\"} 101\n"
        "weir_tls_handshakes_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",kind=\"resumed\"} 102\n"
        "# HELP weir_tls_handshake_failures_total Failed TLS handshakes by listener and reason\n"
        "# TYPE weir_tls_handshake_failures_total counter\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"version\"} 10\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"cipher\"} 11\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"alpn\"} 12\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"plain_http\"} 13\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"protocol\"} 14\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"certificate\"} 15\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"peer_alert\"} 16\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"timeout\"} 17\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"closed\"} 18\n"
        "weir_tls_handshake_failures_total{listen=\"0.0.0.0:443\",reason=\"other\"} 19\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"version\"} 110\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"cipher\"} 111\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"alpn\"} 112\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"plain_http\"} 113\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"protocol\"} 114\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"certificate\"} 115\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"peer_alert\"} 116\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"timeout\"} 117\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"closed\"} 118\n"
        "weir_tls_handshake_failures_total{listen=\"[::1]:8443 \\\"x\\\"\\\\\",reason=\"other\"} 119\n"
        "# HELP weir_tls_cert_expiry_seconds Seconds until the earliest certificate (served or client) "
        "expires; negative once expired\n"
        "# TYPE weir_tls_cert_expiry_seconds gauge\n"
        "weir_tls_cert_expiry_seconds 259200\n");

    /* promtool, when installed, must accept the exposition. */
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
        assert_non_null(p);
        fputs(s + strlen("before\n"), p);
        assert_int_equal(pclose(p), 0);
    } else {
        print_message("promtool not installed: text checked against the expected string only\n");
    }
    free(s);
    evbuffer_free(out);
}

static void test_metrics_edge(void **state)
{
    struct weir_tls_counters a = {0};
    struct weir_tls_stats_listener l = {"x:1", &a};
    struct evbuffer *out = evbuffer_new();
    char *s;

    /* No TLS listener, no certificate: nothing at all. */
    assert_int_equal(weir_tls_metrics(out, NULL, 0, 0, 1000), 0);
    assert_int_equal(evbuffer_get_length(out), 0);
    /* An expired certificate: negative seconds. */
    assert_int_equal(weir_tls_metrics(out, NULL, 0, 1000, 1060), 0);
    s = text_of(out);
    assert_non_null(strstr(s, "\nweir_tls_cert_expiry_seconds -60\n"));
    free(s);
    /* A listener but no certificate expiry (cannot happen, but stays valid). */
    evbuffer_drain(out, evbuffer_get_length(out));
    assert_int_equal(weir_tls_metrics(out, &l, 1, 0, 1000), 0);
    s = text_of(out);
    assert_null(strstr(s, "expiry"));
    assert_non_null(strstr(s, "weir_tls_handshakes_total{listen=\"x:1\",kind=\"full\"} 0\n"));
    free(s);
    evbuffer_free(out);
}

static void test_json(void **state)
{
    struct weir_tls_counters a;
    struct weir_tls_stats_listener l = {"0.0.0.0:443", &a};
    json_t *o;
    char *s;

    fill(&a, 0);
    o = weir_tls_stats_json(&l, 1, 1000000 + 86400 * 3 + 5, 1000000);
    assert_non_null(o);
    s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(
        s, "{\"cert_expiry_days\":3,\"cert_expiry_seconds\":259205,\"listeners\":[{\"address\":"
           "\"0.0.0.0:443\",\"failures\":{\"alpn\":12,\"certificate\":15,\"cipher\":11,\"closed\":18,"
           "\"other\":19,\"peer_alert\":16,\"plain_http\":13,\"protocol\":14,\"timeout\":17,"
           "\"version\":10},\"handshakes\":{\"full\":1,\"resumed\":2}}]}");
    free(s);
    json_decref(o);

    /* Expired half a day ago: -1 day; no certificate: nulls. */
    o = weir_tls_stats_json(&l, 0, 1000000, 1000000 + 43200);
    s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"cert_expiry_days\":-1,\"cert_expiry_seconds\":-43200,\"listeners\":[]}");
    free(s);
    json_decref(o);
    o = weir_tls_stats_json(NULL, 0, 0, 1000000);
    s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"cert_expiry_days\":null,\"cert_expiry_seconds\":null,\"listeners\":[]}");
    free(s);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_metrics_edge),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
