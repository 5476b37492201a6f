/*
 * test_http_msg.c - unit tests for the head builders and the status/reason
 * table (http_msg.c). Heads are parsed with http_parse.c, built, and the
 * result compared byte for byte.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "weir/http_date.h"
#include "weir/http_msg.h"

static struct weir_http_msg msg;

static void parse_req(const char *text)
{
    weir_http_msg_reset(&msg);
    assert_int_equal(weir_http_parse_request(text, strlen(text), 65536, &msg), WEIR_OK);
}

static void parse_resp(const char *text, int method)
{
    weir_http_msg_reset(&msg);
    assert_int_equal(weir_http_parse_response(text, strlen(text), 65536, method, &msg), WEIR_OK);
}

/* Take out the one "Date: " line weir adds (a valid HTTP date of about
 * now); 1 when there was one. */
static int cut_date(struct weir_sbuf *b)
{
    char *d = b->p != NULL ? memmem(b->p, b->len, "\r\nDate: ", 8) : NULL;
    if (d == NULL)
        return 0;
    d += 2;
    char *e = memmem(d, b->len - (size_t)(d - b->p), "\r\n", 2);
    assert_non_null(e);
    int64_t t = weir_http_date_parse(d + 6, (size_t)(e - d - 6), (int64_t)time(NULL));
    assert_true(t > 0);
    if (llabs((long long)(t - (int64_t)time(NULL))) > 2)
        return 0; /* not one weir added now: the server's own */
    e += 2;
    memmove(d, e, b->len - (size_t)(e - b->p));
    b->len -= (size_t)(e - d);
    assert_null(memmem(b->p, b->len, "\r\nDate: ", 8)); /* only one */
    return 1;
}

static void assert_sbuf(struct weir_sbuf *b, const char *want)
{
    (void)cut_date(b);
    assert_false(b->oom);
    assert_int_equal(b->len, strlen(want));
    if (memcmp(b->p, want, b->len) != 0) {
        fprintf(stderr, "got:\n%.*s\nwant:\n%s\n", (int)b->len, b->p, want);
        fail();
    }
}

static void test_reasons(void **st)
{
    (void)st;
    /* every code of RFC 9110 section 15 has its phrase */
    static const struct {
        int code;
        const char *text;
    } rfc[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {305, "Use Proxy"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {426, "Upgrade Required"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        /* RFC 6585 */
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {511, "Network Authentication Required"},
    };
    for (size_t i = 0; i < sizeof(rfc) / sizeof(rfc[0]); i++) {
        assert_string_equal(weir_http_reason(rfc[i].code), rfc[i].text);
        assert_true(weir_http_status_known(rfc[i].code));
    }
    /* unregistered codes get their class, never "Unknown" */
    assert_false(weir_http_status_known(599));
    assert_string_equal(weir_http_reason(599), "Server Error");
    assert_string_equal(weir_http_reason(499), "Client Error");
    assert_string_equal(weir_http_reason(299), "Success");
    assert_string_equal(weir_http_reason(399), "Redirection");
    assert_string_equal(weir_http_reason(199), "Informational");
    assert_false(weir_http_status_known(306));
    assert_false(weir_http_status_known(418));
}

static void test_sbuf(void **st)
{
    (void)st;
    struct weir_sbuf b = {0};
    WEIR_SBUF_LIT(&b, "abc");
    weir_sbuf_u64(&b, 0);
    weir_sbuf_u64(&b, 18446744073709551615ull);
    weir_sbuf_str(&b, "");
    for (int i = 0; i < 1000; i++)
        WEIR_SBUF_LIT(&b, "0123456789");
    assert_false(b.oom);
    assert_int_equal(b.len, 3 + 1 + 20 + 10000);
    assert_memory_equal(b.p, "abc018446744073709551615", 24);
    weir_sbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

static void test_upstream_head(void **st)
{
    (void)st;
    parse_req("POST /a/b?c=d HTTP/1.1\r\n"
              "Host: Example.TEST:8080\r\n"
              "Connection: keep-alive, X-Secret\r\n"
              "X-Secret: dropped\r\n"
              "Keep-Alive: timeout=5\r\n"
              "X-Forwarded-For: 10.0.0.1\r\n"
              "Via: 1.0 front\r\n"
              "X-Forwarded-Host: evil\r\n"
              "X-Forwarded-Proto: https\r\n"
              "Accept: */*\r\n"
              "X-Forwarded-For: 10.0.0.2\r\n"
              "Transfer-Encoding: chunked\r\n"
              "\r\n");
    struct weir_sbuf b = {0};
    struct weir_up_head_params p = {.host = "Example.TEST:8080",
                                    .host_len = 17,
                                    .client = "127.0.0.9",
                                    .client_len = 9,
                                    .proto = "http",
                                    .rid = "rid-1"};
    assert_int_equal(weir_http_build_upstream_head(&b, &msg, &p), WEIR_OK);
    assert_sbuf(&b, "POST /a/b?c=d HTTP/1.1\r\n"
                    "Host: Example.TEST:8080\r\n"
                    "Accept: */*\r\n"
                    "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.9\r\n"
                    "X-Forwarded-Proto: http\r\n"
                    "X-Forwarded-Host: Example.TEST:8080\r\n"
                    "Via: 1.0 front, 1.1 weir\r\n"
                    "X-Request-Id: rid-1\r\n"
                    "Transfer-Encoding: chunked\r\n"
                    "\r\n");
    weir_sbuf_free(&b);
}

static void test_upstream_head_absolute_and_rid(void **st)
{
    (void)st;
    /* absolute-form goes up in origin form; a client request id is kept */
    parse_req("GET http://h.test/p?q HTTP/1.0\r\nX-Request-Id: mine\r\nUpgrade: websocket\r\n"
              "Connection: upgrade\r\n\r\n");
    struct weir_sbuf b = {0};
    struct weir_up_head_params p = {
        .host = "h.test", .host_len = 6, .client = "::1", .client_len = 3, .rid = "ours", .upgrade = 1};
    assert_int_equal(weir_http_build_upstream_head(&b, &msg, &p), WEIR_OK);
    assert_sbuf(&b, "GET /p?q HTTP/1.1\r\n"
                    "Host: h.test\r\n"
                    "X-Request-Id: mine\r\n"
                    "X-Forwarded-For: ::1\r\n"
                    "X-Forwarded-Proto: http\r\n"
                    "X-Forwarded-Host: h.test\r\n"
                    "Via: 1.0 weir\r\n"
                    "Connection: upgrade\r\nUpgrade: websocket\r\n"
                    "\r\n");
    weir_sbuf_free(&b);
}

static void test_response_head(void **st)
{
    (void)st;
    parse_resp("HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
               "Transfer-Encoding: chunked\r\n\r\n",
               WEIR_HTTP_GET);
    struct weir_sbuf b = {0};
    struct weir_resp_head_params p = {.rid = "r1", .chunked = 1, .close = 1};
    assert_int_equal(weir_http_build_response_head(&b, &msg, &p), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nX-Request-Id: r1\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    weir_sbuf_free(&b);

    /* the server's own X-Request-Id wins; HTTP/1.0 clients hear keep-alive */
    parse_resp("HTTP/1.1 200 OK\r\nX-Request-Id: srv\r\nContent-Length: 0\r\n\r\n", WEIR_HTTP_GET);
    struct weir_resp_head_params p10 = {.rid = "r1", .http10 = 1};
    assert_int_equal(weir_http_build_response_head(&b, &msg, &p10), WEIR_OK);
    assert_sbuf(
        &b, "HTTP/1.1 200 OK\r\nX-Request-Id: srv\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    weir_sbuf_free(&b);

    /* interim: nothing added */
    parse_resp("HTTP/1.1 100 Continue\r\n\r\n", WEIR_HTTP_POST);
    struct weir_resp_head_params pi = {.rid = "r1", .interim = 1, .close = 1};
    assert_int_equal(weir_http_build_response_head(&b, &msg, &pi), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 100 Continue\r\n\r\n");
    weir_sbuf_free(&b);

    /* 101 keeps the upgrade */
    parse_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
               WEIR_HTTP_GET);
    struct weir_resp_head_params pu = {.rid = "r2"};
    assert_int_equal(weir_http_build_response_head(&b, &msg, &pu), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 101 Switching Protocols\r\nX-Request-Id: r2\r\nConnection: upgrade\r\n"
                    "Upgrade: websocket\r\n\r\n");
    weir_sbuf_free(&b);
}

/* RFC 9110 6.6.1: a forwarded response without Date gets one; one with a
 * Date keeps it (not a second one); 1xx get none. */
static void test_response_date(void **st)
{
    (void)st;
    struct weir_sbuf b = {0};
    struct weir_resp_head_params p = {0};
    parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", WEIR_HTTP_GET);
    assert_int_equal(weir_http_build_response_head(&b, &msg, &p), WEIR_OK);
    assert_int_equal(cut_date(&b), 1);
    b.len = 0;
    parse_resp("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
               WEIR_HTTP_GET);
    assert_int_equal(weir_http_build_response_head(&b, &msg, &p), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n");
    b.len = 0;
    p.interim = 1;
    parse_resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", WEIR_HTTP_GET);
    assert_int_equal(weir_http_build_response_head(&b, &msg, &p), WEIR_OK);
    assert_int_equal(cut_date(&b), 0);
    weir_sbuf_free(&b);
}

static void test_local(void **st)
{
    (void)st;
    struct weir_sbuf b = {0};
    size_t blen;
    assert_int_equal(weir_http_build_local(&b, 503, "no server available", "abc", 0, 0, &blen), WEIR_OK);
    assert_non_null(memmem(b.p, b.len, "\r\nDate: ", 8)); /* weir is the origin of it: it says when */
    const char *body = "503 Service Unavailable\nno server available\n";
    assert_int_equal(blen, strlen(body));
    char want[512];
    snprintf(want, sizeof(want),
             "HTTP/1.1 503 Service Unavailable\r\nServer: weir\r\nContent-Type: text/plain\r\n"
             "Content-Length: %zu\r\nX-Request-Id: abc\r\nRetry-After: 1\r\n\r\n%s",
             strlen(body), body);
    assert_sbuf(&b, want);
    weir_sbuf_free(&b);

    /* 500 has its phrase; HEAD gets the head only, with the body's length */
    assert_int_equal(weir_http_build_local(&b, 500, NULL, "", 1, 1, &blen), WEIR_OK);
    assert_int_equal(blen, 0);
    assert_sbuf(&b, "HTTP/1.1 500 Internal Server Error\r\nServer: weir\r\nContent-Type: text/plain\r\n"
                    "Content-Length: 26\r\nConnection: close\r\n\r\n");
    weir_sbuf_free(&b);
}

static void test_redirect(void **st)
{
    (void)st;
    struct weir_sbuf b = {0};
    size_t blen;
    const char *loc = "https://example.com:8443/a?b=c";
    assert_int_equal(weir_http_build_redirect(&b, 308, loc, "id1", 0, 0, &blen), WEIR_OK);
    char body[128], want[512];
    snprintf(body, sizeof(body), "308 Permanent Redirect\n%s\n", loc);
    assert_int_equal(blen, strlen(body));
    snprintf(want, sizeof(want),
             "HTTP/1.1 308 Permanent Redirect\r\nLocation: %s\r\nServer: weir\r\nContent-Type: text/plain\r\n"
             "Content-Length: %zu\r\nX-Request-Id: id1\r\n\r\n%s",
             loc, strlen(body), body);
    assert_sbuf(&b, want);
    weir_sbuf_free(&b);

    /* HEAD: the head only; close adds Connection: close */
    assert_int_equal(weir_http_build_redirect(&b, 308, loc, "", 1, 1, &blen), WEIR_OK);
    assert_int_equal(blen, 0);
    snprintf(want, sizeof(want),
             "HTTP/1.1 308 Permanent Redirect\r\nLocation: %s\r\nServer: weir\r\nContent-Type: text/plain\r\n"
             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
             loc, strlen(body));
    assert_sbuf(&b, want);
    weir_sbuf_free(&b);
}

static void test_answer_head(void **st)
{
    (void)st;
    struct weir_sbuf b = {0};
    const char *f = "Content-Type: text/html\r\nAge: 3\r\n";
    assert_int_equal(weir_http_build_answer_head(&b, 200, f, strlen(f), 12345, "id", 0), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nAge: 3\r\nContent-Length: 12345\r\n"
                    "X-Request-Id: id\r\n\r\n");
    weir_sbuf_free(&b);
    assert_int_equal(weir_http_build_answer_head(&b, 304, NULL, 0, 0, NULL, 1), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n");
    weir_sbuf_free(&b);
    /* a length not known yet: no Content-Length, the caller frames the body */
    f = "Transfer-Encoding: chunked\r\n";
    assert_int_equal(weir_http_build_answer_head(&b, 200, f, strlen(f), UINT64_MAX, NULL, 0), WEIR_OK);
    assert_sbuf(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    weir_sbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasons),       cmocka_unit_test(test_sbuf),
        cmocka_unit_test(test_upstream_head), cmocka_unit_test(test_upstream_head_absolute_and_rid),
        cmocka_unit_test(test_response_head), cmocka_unit_test(test_response_date),
        cmocka_unit_test(test_local),         cmocka_unit_test(test_redirect),
        cmocka_unit_test(test_answer_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
