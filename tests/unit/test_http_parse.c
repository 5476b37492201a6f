/*
 * test_http_parse.c - unit tests for the HTTP/1.1 parser (src/http_parse.c).
 *
 * Most rules are table rows: every request, response and chunked row is its
 * own cmocka test, run one-shot and then again fed one byte more at a time
 * (resume) from exact-size heap copies, so that ASan sees any read past the
 * bytes given. The remaining tests check parsed spans, limits and resume.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/http_parse.h"

#define MAX_HEAD 65536

#define F_KA    WEIR_HTTP_F_KEEPALIVE
#define F_CLOSE WEIR_HTTP_F_CONN_CLOSE
#define F_100   WEIR_HTTP_F_EXPECT_100
#define F_UPG   WEIR_HTTP_F_UPGRADE
#define F_TRL   WEIR_HTTP_F_TE_TRAILERS

#define B_NONE  WEIR_BODY_NONE
#define B_LEN   WEIR_BODY_LENGTH
#define B_CHUNK WEIR_BODY_CHUNKED
#define B_EOF   WEIR_BODY_EOF

#define T_ORIG WEIR_TARGET_ORIGIN
#define T_ABS  WEIR_TARGET_ABSOLUTE
#define T_AUTH WEIR_TARGET_AUTHORITY
#define T_STAR WEIR_TARGET_ASTERISK

/* ---- helpers ---- */

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

static int in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && p + n <= buf + len;
}

/* Invariants of a parsed message over buf[0..len). */
static void check_msg(const struct weir_http_msg *m, int rc, const char *buf, size_t len, int is_req)
{
    size_t i;

    if (rc == WEIR_ERROR) {
        assert_non_null(m->error);
        if (is_req)
            assert_true(m->error_status == 400 || m->error_status == 414 || m->error_status == 431 ||
                        m->error_status == 505);
        else
            assert_int_equal(m->error_status, 502);
        return;
    }
    if (rc != WEIR_OK)
        return;
    assert_true(m->head_len > 0 && m->head_len <= len);
    assert_int_equal(buf[m->head_len - 1], '\n');
    assert_true(m->version == 10 || m->version == 11);
    assert_true(m->nheaders <= WEIR_HTTP_MAX_HEADERS);
    assert_true(m->host_idx >= -1 && m->host_idx < (int)m->nheaders);
    for (i = 0; i < m->nheaders; i++) {
        assert_true(in_buf(m->headers[i].name, m->headers[i].name_len, buf, m->head_len));
        assert_true(in_buf(m->headers[i].value, m->headers[i].value_len, buf, m->head_len));
        assert_true(m->headers[i].name_len > 0);
    }
    if (is_req) {
        assert_true(in_buf(m->method, m->method_len, buf, m->head_len));
        assert_true(in_buf(m->target, m->target_len, buf, m->head_len));
        if (m->authority != NULL)
            assert_true(in_buf(m->authority, m->authority_len, buf, m->head_len));
    } else {
        assert_true(m->status >= 100 && m->status <= 599);
    }
}

static void assert_span(const char *p, size_t n, const char *lit)
{
    assert_non_null(p);
    assert_int_equal(n, strlen(lit));
    assert_memory_equal(p, lit, n);
}

/* A span of a, relative to its buffer, equals the one of b. */
static void assert_same_span(const char *pa, size_t na, const char *ba, const char *pb, size_t nb,
                             const char *bb)
{
    assert_int_equal(na, nb);
    if (pa == NULL || pb == NULL) {
        assert_true(pa == NULL && pb == NULL);
        return;
    }
    assert_memory_equal(pa, pb, na);
    if (pa >= ba && pa < ba + MAX_HEAD)
        assert_int_equal(pa - ba, pb - bb);
}

static void assert_same_msg(const struct weir_http_msg *a, const char *ba, const struct weir_http_msg *b,
                            const char *bb)
{
    size_t i;

    assert_int_equal(a->head_len, b->head_len);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->method_id, b->method_id);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->target_form, b->target_form);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->content_length, b->content_length);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->nheaders, b->nheaders);
    assert_int_equal(a->host_idx, b->host_idx);
    assert_same_span(a->method, a->method_len, ba, b->method, b->method_len, bb);
    assert_same_span(a->target, a->target_len, ba, b->target, b->target_len, bb);
    assert_same_span(a->path, a->path_len, ba, b->path, b->path_len, bb);
    assert_same_span(a->authority, a->authority_len, ba, b->authority, b->authority_len, bb);
    for (i = 0; i < a->nheaders; i++) {
        assert_int_equal(a->headers[i].flags, b->headers[i].flags);
        assert_same_span(a->headers[i].name, a->headers[i].name_len, ba, b->headers[i].name,
                         b->headers[i].name_len, bb);
        assert_same_span(a->headers[i].value, a->headers[i].value_len, ba, b->headers[i].value,
                         b->headers[i].value_len, bb);
    }
}

static int parse_req(const char *s, size_t n, size_t max_head, struct weir_http_msg *m, char **copy)
{
    *copy = dup_bytes(s, n);
    weir_http_msg_reset(m);
    return weir_http_parse_request(*copy, n, max_head, m);
}

/*
 * Feed s one byte more at a time (each prefix in its own exact-size copy,
 * same msg), then compare with the one-shot result. Prefixes may only give
 * WEIR_AGAIN, or the one-shot result itself. step > 1 for long inputs.
 */
static void check_resume(const char *s, size_t n, int is_req, int req_method, size_t max_head, size_t step,
                         int rc1, const struct weir_http_msg *m1, const char *b1)
{
    static struct weir_http_msg m2;
    size_t k;
    int rc = WEIR_AGAIN;

    weir_http_msg_reset(&m2);
    for (k = 0; k <= n; k += (k + step <= n || k == n) ? step : n - k) {
        char *b = dup_bytes(s, k);
        size_t prev = m2.scan_pos;
        rc = is_req ? weir_http_parse_request(b, k, max_head, &m2)
                    : weir_http_parse_response(b, k, max_head, req_method, &m2);
        check_msg(&m2, rc, b, k, is_req);
        if (rc == WEIR_AGAIN) {
            assert_true(m2.scan_pos <= k);
            assert_true(m2.scan_pos >= prev || k == 0);
            free(b);
            if (k == n)
                break;
            continue;
        }
        assert_int_equal(rc, rc1);
        if (rc == WEIR_ERROR)
            assert_int_equal(m2.error_status, m1->error_status);
        else
            assert_same_msg(m1, b1, &m2, b);
        free(b);
        return;
    }
    assert_int_equal(rc, rc1);
}

/* ---- request table ---- */

struct req_row {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    int status; /* error_status on WEIR_ERROR */
    int method_id, version, body;
    uint64_t cl;
    unsigned flags;
    int form;
};

#define ROK(name, in, meth, ver, body, cl, flags, form)                                                      \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_OK, 0, WEIR_HTTP_##meth, ver, body, cl, flags, form                   \
    }
#define RERR(name, in, st)                                                                                   \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_ERROR, st, 0, 0, 0, 0, 0, 0                                           \
    }
#define RAGAIN(name, in)                                                                                     \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_AGAIN, 0, 0, 0, 0, 0, 0, 0                                            \
    }

#define H11 " HTTP/1.1\r\nHost: a\r\n"

static const struct req_row req_rows[] = {
    /* request line, versions, terminators */
    ROK("GET HTTP/1.1 keep-alive by default", "GET /" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("HTTP/1.0 without Host, not keep-alive", "GET / HTTP/1.0\r\n\r\n", GET, 10, B_NONE, 0, 0, T_ORIG),
    ROK("HTTP/1.0 with Host", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", GET, 10, B_NONE, 0, 0, T_ORIG),
    ROK("HTTP/1.0 Connection: keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", GET, 10,
        B_NONE, 0, F_KA, T_ORIG),
    ROK("HTTP/1.0 Connection: Keep-Alive mixed case", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", GET,
        10, B_NONE, 0, F_KA, T_ORIG),
    ROK("HTTP/1.0 keep-alive and close: close wins",
        "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", GET, 10, B_NONE, 0, F_CLOSE, T_ORIG),
    ROK("HTTP/1.1 Connection: close", "GET /" H11 "Connection: close\r\n\r\n", GET, 11, B_NONE, 0, F_CLOSE,
        T_ORIG),
    ROK("HTTP/1.1 Connection: CLOSE in a list", "GET /" H11 "Connection: foo ,CLOSE\r\n\r\n", GET, 11, B_NONE,
        0, F_CLOSE, T_ORIG),
    ROK("HTTP/1.1 close in second Connection field",
        "GET /" H11 "Connection: foo\r\nConnection: close\r\n\r\n", GET, 11, B_NONE, 0, F_CLOSE, T_ORIG),
    ROK("lone LF terminators", "GET / HTTP/1.1\nHost: a\n\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("mixed CRLF and LF", "GET / HTTP/1.1\nHost: a\r\nX: y\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("leading CRLF skipped", "\r\n\r\nGET /" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("leading LF skipped", "\n\nGET /" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    RERR("leading bare CR", "\rGET /" H11 "\r\n", 400),
    RERR("leading SP", " GET /" H11 "\r\n", 400),
    ROK("HTTP/1.2 is served as 1.1 (RFC 9110 2.5)", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", GET, 11, B_NONE, 0,
        F_KA, T_ORIG),
    RERR("HTTP/2.0 is 505", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    RERR("HTTP/0.9 is 505", "GET / HTTP/0.9\r\n\r\n", 505),
    RERR("HTTP/1 malformed", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    RERR("HTTP/1.1.1 malformed", "GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", 400),
    RERR("HTTP/11.1 malformed", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400),
    RERR("lower-case http/1.1", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    RERR("HTTP/a.b", "GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400),
    RERR("missing version", "GET /\r\nHost: a\r\n\r\n", 400),
    RERR("missing target and version", "GET\r\nHost: a\r\n\r\n", 400),
    RERR("trailing SP after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    RERR("two SP after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RERR("two SP before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RERR("HTAB as separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RERR("bare CR in request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    RERR("CR CR LF after request line", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    RERR("empty request line then garbage", "\r\n: x\r\n\r\n", 400),

    /* methods */
    ROK("HEAD", "HEAD /" H11 "\r\n", HEAD, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("POST", "POST /" H11 "Content-Length: 3\r\n\r\nabc", POST, 11, B_LEN, 3, F_KA, T_ORIG),
    ROK("PUT", "PUT /" H11 "\r\n", PUT, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("DELETE", "DELETE /" H11 "\r\n", DELETE, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("OPTIONS", "OPTIONS /" H11 "\r\n", OPTIONS, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("TRACE", "TRACE /" H11 "\r\n", TRACE, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("PATCH", "PATCH /" H11 "\r\n", PATCH, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("CONNECT", "CONNECT a:443" H11 "\r\n", CONNECT, 11, B_NONE, 0, F_KA, T_AUTH),
    ROK("unknown method token", "PURGE /" H11 "\r\n", OTHER, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("method with tchar symbols", "M-SEARCH_!#$%&'*+.^`|~ /" H11 "\r\n", OTHER, 11, B_NONE, 0, F_KA,
        T_ORIG),
    ROK("methods are case-sensitive", "get /" H11 "\r\n", OTHER, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("GETS is not GET", "GETS /" H11 "\r\n", OTHER, 11, B_NONE, 0, F_KA, T_ORIG),
    RERR("method with '('", "GE(T /" H11 "\r\n", 400),
    RERR("method with '/'", "GE/T /" H11 "\r\n", 400),
    RERR("method with NUL", "GE\0T /" H11 "\r\n", 400),
    RERR("method with 0x80", "GE\x80T /" H11 "\r\n", 400),

    /* origin-form */
    ROK("origin-form pchar set", "GET /a-z_A.Z~0!$&'()*+,;=:@/?/x?y=1&z HTTP/1.1\r\nHost: a\r\n\r\n", GET, 11,
        B_NONE, 0, F_KA, T_ORIG),
    ROK("origin-form pct-escapes", "GET /%20%aF%Ff?q=%00 HTTP/1.1\r\nHost: a\r\n\r\n", GET, 11, B_NONE, 0,
        F_KA, T_ORIG),
    RERR("target with NUL", "GET /a\0b" H11 "\r\n", 400),
    RERR("target with CTL", "GET /a\x01" H11 "\r\n", 400),
    RERR("target with HTAB", "GET /a\tb" H11 "\r\n", 400),
    RERR("target with DEL", "GET /a\x7f" H11 "\r\n", 400),
    RERR("target with 0x80", "GET /\x80" H11 "\r\n", 400),
    RERR("target with 0xff", "GET /\xff" H11 "\r\n", 400),
    RERR("target with '#'", "GET /a#f" H11 "\r\n", 400),
    RERR("target with '\"'", "GET /a\"" H11 "\r\n", 400),
    RERR("target with '<'", "GET /<" H11 "\r\n", 400),
    RERR("target with '>'", "GET />" H11 "\r\n", 400),
    RERR("target with '\\'", "GET /\\" H11 "\r\n", 400),
    RERR("target with '^'", "GET /^" H11 "\r\n", 400),
    RERR("target with '`'", "GET /`" H11 "\r\n", 400),
    RERR("target with '{'", "GET /{" H11 "\r\n", 400),
    RERR("target with '|'", "GET /|" H11 "\r\n", 400),
    RERR("target with '}'", "GET /}" H11 "\r\n", 400),
    RERR("target with '[' in the path", "GET /a[]" H11 "\r\n", 400),
    /* browsers send these unencoded in queries (WHATWG URL): accepted there */
    ROK("query with '[' ']'", "GET /?a[]=1&b[x]=2" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("query with '{|}^`\\'", "GET /s?q={a|b}^`\\" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    RERR("query with '\"' still refused", "GET /?q=\"" H11 "\r\n", 400),
    RERR("query with '<' still refused", "GET /?q=<" H11 "\r\n", 400),
    RERR("target with space (three parts)", "GET /a b" H11 "\r\n", 400),
    RERR("pct-escape with one digit", "GET /%4" H11 "\r\n", 400),
    RERR("pct-escape at end", "GET /a%" H11 "\r\n", 400),
    RERR("pct-escape not hex", "GET /%zz" H11 "\r\n", 400),
    RERR("pct-escape half hex", "GET /%4g" H11 "\r\n", 400),
    RERR("relative target", "GET a/b" H11 "\r\n", 400),
    RERR("query-only target", "GET ?a" H11 "\r\n", 400),

    /* absolute-form */
    ROK("absolute-form http", "GET http://a.example/x?y" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ABS),
    ROK("absolute-form HTTPS upper-case scheme", "GET HTTPS://a:8443/" H11 "\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ABS),
    ROK("absolute-form HtTp mixed case", "GET HtTp://a/" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ABS),
    ROK("absolute-form empty path", "GET http://a" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ABS),
    ROK("absolute-form IPv6", "GET http://[2001:db8::1]:80/x" H11 "\r\n", GET, 11, B_NONE, 0, F_KA, T_ABS),
    ROK("absolute-form HTTP/1.0 without Host", "GET http://a/ HTTP/1.0\r\n\r\n", GET, 10, B_NONE, 0, 0,
        T_ABS),
    RERR("absolute-form HTTP/1.1 still needs Host", "GET http://a/ HTTP/1.1\r\n\r\n", 400),
    RERR("absolute-form ftp scheme", "GET ftp://a/" H11 "\r\n", 400),
    RERR("absolute-form ws scheme", "GET ws://a/" H11 "\r\n", 400),
    RERR("absolute-form httpx scheme", "GET httpx://a/" H11 "\r\n", 400),
    RERR("absolute-form http:/ one slash", "GET http:/a/" H11 "\r\n", 400),
    RERR("absolute-form empty authority", "GET http:///x" H11 "\r\n", 400),
    RERR("absolute-form nothing after //", "GET http://" H11 "\r\n", 400),
    RERR("absolute-form userinfo", "GET http://u@a/" H11 "\r\n", 400),
    RERR("absolute-form query without path", "GET http://a?q" H11 "\r\n", 400),
    RERR("absolute-form fragment", "GET http://a/#f" H11 "\r\n", 400),
    RERR("absolute-form bad port", "GET http://a:x/" H11 "\r\n", 400),
    RERR("absolute-form port too big", "GET http://a:65536/" H11 "\r\n", 400),
    RERR("absolute-form bad path byte", "GET http://a/<" H11 "\r\n", 400),

    /* asterisk-form, authority-form */
    ROK("OPTIONS *", "OPTIONS *" H11 "\r\n", OPTIONS, 11, B_NONE, 0, F_KA, T_STAR),
    RERR("GET *", "GET *" H11 "\r\n", 400),
    RERR("OPTIONS *x", "OPTIONS *x" H11 "\r\n", 400),
    ROK("CONNECT IPv6 literal", "CONNECT [::1]:443" H11 "\r\n", CONNECT, 11, B_NONE, 0, F_KA, T_AUTH),
    RERR("CONNECT without port", "CONNECT a" H11 "\r\n", 400),
    RERR("CONNECT empty port", "CONNECT a:" H11 "\r\n", 400),
    RERR("CONNECT port too big", "CONNECT a:99999" H11 "\r\n", 400),
    RERR("CONNECT origin-form", "CONNECT /" H11 "\r\n", 400),
    RERR("CONNECT absolute-form", "CONNECT http://a:443/" H11 "\r\n", 400),
    RERR("authority-form for GET", "GET a:443" H11 "\r\n", 400),

    /* header field syntax */
    ROK("empty field value", "GET /" H11 "X-Empty:\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("OWS only field value", "GET /" H11 "X-Empty: \t \r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("obs-text in value", "GET /" H11 "X: caf\xc3\xa9 \x80\xff\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("HTAB inside value", "GET /" H11 "X: a\tb\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("tchar symbols in name", "GET /" H11 "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ORIG),
    RERR("empty field name", "GET /" H11 ": v\r\n\r\n", 400),
    RERR("SP before colon", "GET /" H11 "X : v\r\n\r\n", 400),
    RERR("HTAB before colon", "GET /" H11 "X\t: v\r\n\r\n", 400),
    RERR("SP before colon on Host", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    RERR("obs-fold", "GET /" H11 "X: a\r\n b\r\n\r\n", 400),
    RERR("obs-fold with HTAB", "GET /" H11 "X: a\r\n\tb\r\n\r\n", 400),
    RERR("SP before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    RERR("line without colon", "GET /" H11 "X\r\n\r\n", 400),
    RERR("NUL in name", "GET /" H11 "X\0Y: v\r\n\r\n", 400),
    RERR("0x80 in name", "GET /" H11 "X\x80: v\r\n\r\n", 400),
    RERR("'(' in name", "GET /" H11 "X(: v\r\n\r\n", 400),
    RERR("'@' in name", "GET /" H11 "X@Y: v\r\n\r\n", 400),
    RERR("NUL in value", "GET /" H11 "X: a\0b\r\n\r\n", 400),
    RERR("CTL 0x01 in value", "GET /" H11 "X: a\x01\r\n\r\n", 400),
    RERR("CTL 0x1f in value", "GET /" H11 "X: \x1f\r\n\r\n", 400),
    RERR("VT in value", "GET /" H11 "X: a\vb\r\n\r\n", 400),
    RERR("DEL in value", "GET /" H11 "X: a\x7f\r\n\r\n", 400),
    RERR("bare CR in value", "GET /" H11 "X: a\rb\r\n\r\n", 400),
    RERR("CR CR LF after value", "GET /" H11 "X: a\r\r\n\r\n", 400),
    RERR("bare CR in name", "GET /" H11 "X\r: a\r\n\r\n", 400),
    RERR("bare CR before final LF", "GET /" H11 "\r\r\n", 400),

    /* Host */
    RERR("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400),
    RERR("HTTP/1.1 two Host fields", "GET /" H11 "Host: a\r\n\r\n", 400),
    RERR("HTTP/1.0 two Host fields", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    RERR("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400),
    RERR("empty Host on HTTP/1.0", "GET / HTTP/1.0\r\nHost: \r\n\r\n", 400),
    ROK("Host IPv4 and port", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ORIG),
    ROK("Host IPv6", "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("Host IPv6 and port", "GET / HTTP/1.1\r\nHost: [2001:db8::7]:80\r\n\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ORIG),
    ROK("Host IPv4-mapped IPv6", "GET / HTTP/1.1\r\nHost: [::ffff:1.2.3.4]\r\n\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ORIG),
    ROK("Host empty port (RFC 3986)", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("Host reg-name sub-delims and pct", "GET / HTTP/1.1\r\nHost: a-b_c~d!$&'()*+,;=%41\r\n\r\n", GET, 11,
        B_NONE, 0, F_KA, T_ORIG),
    ROK("Host name case-insensitive", "GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    RERR("Host with SP inside", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    RERR("Host with two ports", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n", 400),
    RERR("Host port not digits", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    RERR("Host port six digits", "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400),
    RERR("Host port over 65535", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 400),
    RERR("Host userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    RERR("Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    RERR("Host bad IPv6", "GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n", 400),
    RERR("Host invalid IPv6 text", "GET / HTTP/1.1\r\nHost: [1:2:3]\r\n\r\n", 400),
    RERR("Host unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    RERR("Host junk after IPv6", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
    RERR("Host bad pct", "GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400),
    RERR("Host only port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    RERR("Host obs-text", "GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", 400),

    /* Content-Length */
    ROK("Content-Length 0", "POST /" H11 "Content-Length: 0\r\n\r\n", POST, 11, B_LEN, 0, F_KA, T_ORIG),
    ROK("Content-Length with OWS", "POST /" H11 "Content-Length: \t42 \r\n\r\n", POST, 11, B_LEN, 42, F_KA,
        T_ORIG),
    ROK("Content-Length leading zeros", "POST /" H11 "content-length: 007\r\n\r\n", POST, 11, B_LEN, 7, F_KA,
        T_ORIG),
    ROK("Content-Length 18 digits", "POST /" H11 "Content-Length: 999999999999999999\r\n\r\n", POST, 11,
        B_LEN, UINT64_C(999999999999999999), F_KA, T_ORIG),
    ROK("Content-Length identical list", "POST /" H11 "Content-Length: 5, 5,5\r\n\r\n", POST, 11, B_LEN, 5,
        F_KA, T_ORIG),
    ROK("Content-Length identical fields", "POST /" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        POST, 11, B_LEN, 5, F_KA, T_ORIG),
    ROK("Content-Length 5 and 05 are the same number",
        "POST /" H11 "Content-Length: 5\r\nContent-Length: 05\r\n\r\n", POST, 11, B_LEN, 5, F_KA, T_ORIG),
    ROK("Content-Length on HTTP/1.0", "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n", POST, 10, B_LEN, 2, 0,
        T_ORIG),
    RERR("Content-Length 19 digits", "POST /" H11 "Content-Length: 1000000000000000000\r\n\r\n", 400),
    RERR("Content-Length huge", "POST /" H11 "Content-Length: 99999999999999999999999\r\n\r\n", 400),
    RERR("Content-Length negative", "POST /" H11 "Content-Length: -1\r\n\r\n", 400),
    RERR("Content-Length plus sign", "POST /" H11 "Content-Length: +1\r\n\r\n", 400),
    RERR("Content-Length space inside", "POST /" H11 "Content-Length: 1 2\r\n\r\n", 400),
    RERR("Content-Length empty", "POST /" H11 "Content-Length:\r\n\r\n", 400),
    RERR("Content-Length letters", "POST /" H11 "Content-Length: abc\r\n\r\n", 400),
    RERR("Content-Length hex", "POST /" H11 "Content-Length: 0x10\r\n\r\n", 400),
    RERR("Content-Length decimal point", "POST /" H11 "Content-Length: 1.0\r\n\r\n", 400),
    RERR("Content-Length different list", "POST /" H11 "Content-Length: 1, 2\r\n\r\n", 400),
    RERR("Content-Length different fields", "POST /" H11 "Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
         400),
    RERR("Content-Length empty list element", "POST /" H11 "Content-Length: 5,,5\r\n\r\n", 400),
    RERR("Content-Length trailing comma", "POST /" H11 "Content-Length: 5,\r\n\r\n", 400),
    RERR("Content-Length leading comma", "POST /" H11 "Content-Length: ,5\r\n\r\n", 400),

    /* Transfer-Encoding */
    ROK("Transfer-Encoding chunked", "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n", POST, 11, B_CHUNK, 0,
        F_KA, T_ORIG),
    ROK("Transfer-Encoding Chunked with OWS", "POST /" H11 "transfer-encoding:  CHUNKED \t\r\n\r\n", POST, 11,
        B_CHUNK, 0, F_KA, T_ORIG),
    RERR("Transfer-Encoding gzip", "POST /" H11 "Transfer-Encoding: gzip\r\n\r\n", 400),
    RERR("Transfer-Encoding identity", "POST /" H11 "Transfer-Encoding: identity\r\n\r\n", 400),
    RERR("Transfer-Encoding chunked, chunked", "POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n",
         400),
    RERR("Transfer-Encoding gzip, chunked", "POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 400),
    RERR("Transfer-Encoding chunked, gzip", "POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    RERR("Transfer-Encoding chunked list trailing comma", "POST /" H11 "Transfer-Encoding: chunked,\r\n\r\n",
         400),
    RERR("Transfer-Encoding empty", "POST /" H11 "Transfer-Encoding:\r\n\r\n", 400),
    RERR("Transfer-Encoding chunked with parameter", "POST /" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n",
         400),
    RERR("Transfer-Encoding chunkedx", "POST /" H11 "Transfer-Encoding: chunkedx\r\n\r\n", 400),
    RERR("Transfer-Encoding in two fields",
         "POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RERR("Transfer-Encoding gzip then chunked fields",
         "POST /" H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RERR("Transfer-Encoding and Content-Length",
         "POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    RERR("Content-Length and Transfer-Encoding",
         "POST /" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RERR("Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    RERR("Transfer-Encoding with SP before colon", "POST /" H11 "Transfer-Encoding : chunked\r\n\r\n", 400),

    /* flags */
    ROK("Expect: 100-continue", "PUT /" H11 "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n", PUT, 11,
        B_LEN, 1, F_KA | F_100, T_ORIG),
    ROK("Expect: 100-Continue case-insensitive", "PUT /" H11 "Expect: 100-Continue\r\n\r\n", PUT, 11, B_NONE,
        0, F_KA | F_100, T_ORIG),
    ROK("Expect ignored on HTTP/1.0", "PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", PUT, 10, B_NONE, 0, 0,
        T_ORIG),
    ROK("other Expect value", "PUT /" H11 "Expect: 200-ok\r\n\r\n", PUT, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("Upgrade with Connection: upgrade", "GET /" H11 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        GET, 11, B_NONE, 0, F_KA | F_UPG, T_ORIG),
    ROK("Upgrade listed with keep-alive",
        "GET /" H11 "Connection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n", GET, 11, B_NONE, 0,
        F_KA | F_UPG, T_ORIG),
    ROK("Upgrade header without Connection: upgrade", "GET /" H11 "Upgrade: websocket\r\n\r\n", GET, 11,
        B_NONE, 0, F_KA, T_ORIG),
    ROK("Connection: upgrade without Upgrade header", "GET /" H11 "Connection: upgrade\r\n\r\n", GET, 11,
        B_NONE, 0, F_KA, T_ORIG),
    ROK("Upgrade ignored on HTTP/1.0", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        GET, 10, B_NONE, 0, 0, T_ORIG),
    ROK("TE: trailers", "GET /" H11 "TE: trailers\r\n\r\n", GET, 11, B_NONE, 0, F_KA | F_TRL, T_ORIG),
    ROK("TE: deflate, Trailers", "GET /" H11 "te: deflate;q=0.5 , Trailers\r\n\r\n", GET, 11, B_NONE, 0,
        F_KA | F_TRL, T_ORIG),
    ROK("TE without trailers", "GET /" H11 "TE: deflate\r\n\r\n", GET, 11, B_NONE, 0, F_KA, T_ORIG),
    ROK("Connection: keep-alive on HTTP/1.1", "GET /" H11 "Connection: keep-alive\r\n\r\n", GET, 11, B_NONE,
        0, F_KA, T_ORIG),
    ROK("Connection with empty elements", "GET /" H11 "Connection: , ,close,\r\n\r\n", GET, 11, B_NONE, 0,
        F_CLOSE, T_ORIG),
    ROK("Connection: closed is not close", "GET /" H11 "Connection: closed\r\n\r\n", GET, 11, B_NONE, 0, F_KA,
        T_ORIG),

    /* incomplete */
    RAGAIN("no empty line yet", "GET /" H11),
    RAGAIN("only the request line", "GET / HTTP/1.1\r\n"),
    RAGAIN("LF of the empty line missing", "GET /" H11 "\r"),
    RAGAIN("only leading empty lines", "\r\n\r\n"),
};

static void test_req_row(void **state)
{
    const struct req_row *r = *state;
    struct weir_http_msg *m = malloc(sizeof(*m));
    char *buf;
    int rc;

    assert_non_null(m);
    rc = parse_req(r->in, r->len, MAX_HEAD, m, &buf);
    if (rc != r->rc)
        print_error("got rc %d (%d %s), want %d\n", rc, m->error_status, m->error ? m->error : "-", r->rc);
    assert_int_equal(rc, r->rc);
    check_msg(m, rc, buf, r->len, 1);
    if (rc == WEIR_ERROR) {
        assert_int_equal(m->error_status, r->status);
    } else if (rc == WEIR_OK) {
        assert_int_equal(m->method_id, r->method_id);
        assert_int_equal(m->version, r->version);
        assert_int_equal(m->body, r->body);
        assert_int_equal(m->content_length, r->cl);
        assert_int_equal(m->flags, r->flags);
        assert_int_equal(m->target_form, r->form);
    }
    check_resume(r->in, r->len, 1, 0, MAX_HEAD, 1, rc, m, buf);
    free(buf);
    free(m);
}

/* ---- response table ---- */

struct resp_row {
    const char *name;
    const char *in;
    size_t len;
    int req_method;
    int rc;
    int status;
    int version;
    int body;
    uint64_t cl;
    unsigned flags;
};

#define SOK(name, in, meth, st, ver, body, cl, flags)                                                        \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_HTTP_##meth, WEIR_OK, st, ver, body, cl, flags                        \
    }
#define SERR(name, in)                                                                                       \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_HTTP_GET, WEIR_ERROR, 0, 0, 0, 0, 0                                   \
    }

static const struct resp_row resp_rows[] = {
    SOK("200 with Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", GET, 200, 11, B_LEN,
        5, F_KA),
    SOK("200 without reason or SP", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", GET, 200, 11, B_LEN, 0,
        F_KA),
    SOK("200 with empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", GET, 200, 11, B_LEN, 0, F_KA),
    SOK("reason with HTAB, SP and obs-text", "HTTP/1.1 200 O K\t\xe2\x9c\x93\r\nContent-Length: 0\r\n\r\n",
        GET, 200, 11, B_LEN, 0, F_KA),
    SOK("lone LF terminators", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", GET, 200, 11, B_LEN, 0, F_KA),
    SOK("no framing: read until close", "HTTP/1.1 200 OK\r\n\r\n", GET, 200, 11, B_EOF, 0, 0),
    SOK("HTTP/1.0 with Content-Length", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", GET, 200, 10, B_LEN,
        1, 0),
    SOK("HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", GET,
        200, 10, B_LEN, 1, F_KA),
    SOK("HTTP/1.0 keep-alive but EOF body", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", GET, 200, 10,
        B_EOF, 0, 0),
    SOK("Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", GET, 200,
        11, B_LEN, 0, F_CLOSE),
    SOK("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GET, 200, 11, B_CHUNK, 0, F_KA),
    SOK("gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", GET, 200, 11, B_CHUNK,
        0, F_KA),
    SOK("gzip then chunked in two fields",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", GET, 200, 11,
        B_CHUNK, 0, F_KA),
    SOK("gzip only: until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", GET, 200, 11, B_EOF,
        0, 0),
    SOK("chunked, gzip: until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", GET, 200,
        11, B_EOF, 0, 0),
    SOK("204 no body", "HTTP/1.1 204 No Content\r\n\r\n", GET, 204, 11, B_NONE, 0, F_KA),
    SOK("304 no body despite Content-Length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", GET,
        304, 11, B_NONE, 10, F_KA),
    SOK("100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", PUT, 100, 11, B_NONE, 0, F_KA),
    SOK("103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", GET, 103, 11, B_NONE, 0, F_KA),
    SOK("101 Switching Protocols",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", GET, 101, 11,
        B_NONE, 0, F_KA | F_UPG),
    SOK("response to HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", HEAD, 200, 11, B_NONE, 100,
        F_KA),
    SOK("chunked response to HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HEAD, 200, 11,
        B_NONE, 0, F_KA),
    SOK("2xx to CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n", CONNECT, 200, 11, B_NONE, 0, F_KA),
    SOK("404 with identical Content-Length", "HTTP/1.1 404 Not Found\r\nContent-Length: 3, 3\r\n\r\n", GET,
        404, 11, B_LEN, 3, F_KA),
    SOK("599 upper bound", "HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n", GET, 599, 11, B_LEN, 0, F_KA),
    SERR("status 099", "HTTP/1.1 099 X\r\n\r\n"),
    SERR("status 600", "HTTP/1.1 600 X\r\n\r\n"),
    SERR("status two digits", "HTTP/1.1 20 OK\r\n\r\n"),
    SERR("status four digits", "HTTP/1.1 2000 OK\r\n\r\n"),
    SERR("status not digits", "HTTP/1.1 2x0 OK\r\n\r\n"),
    SERR("no SP after version", "HTTP/1.1200 OK\r\n\r\n"),
    SERR("two SP after version", "HTTP/1.1  200 OK\r\n\r\n"),
    SERR("HTAB after status", "HTTP/1.1 200\tOK\r\n\r\n"),
    SERR("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"),
    SERR("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
    SERR("malformed version", "HTTP/1 200 OK\r\n\r\n"),
    SERR("lower-case version", "http/1.1 200 OK\r\n\r\n"),
    SERR("bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n"),
    SERR("CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"),
    SERR("NUL in reason", "HTTP/1.1 200 O\0K\r\n\r\n"),
    SERR("leading empty line", "\r\nHTTP/1.1 200 OK\r\n\r\n"),
    SERR("obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
    SERR("SP before colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n"),
    SERR("CTL in value", "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"),
    SERR("TE and Content-Length",
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"),
    SERR("TE and Content-Length on 204",
         "HTTP/1.1 204 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n"),
    SERR("different Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    SERR("invalid Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    SERR("chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    SERR("chunked with parameter", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"),
    SERR("empty Transfer-Encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n"),
    SERR("Transfer-Encoding on HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
    SERR("not HTTP", "ICY 200 OK\r\n\r\n"),
};

static void test_resp_row(void **state)
{
    const struct resp_row *r = *state;
    struct weir_http_msg *m = malloc(sizeof(*m));
    char *buf = dup_bytes(r->in, r->len);
    int rc;

    assert_non_null(m);
    weir_http_msg_reset(m);
    rc = weir_http_parse_response(buf, r->len, MAX_HEAD, r->req_method, m);
    if (rc != r->rc)
        print_error("got rc %d (%s), want %d\n", rc, m->error ? m->error : "-", r->rc);
    assert_int_equal(rc, r->rc);
    check_msg(m, rc, buf, r->len, 0);
    if (rc == WEIR_ERROR) {
        assert_int_equal(m->error_status, 502);
    } else {
        assert_int_equal(m->status, r->status);
        assert_int_equal(m->version, r->version);
        assert_int_equal(m->body, r->body);
        assert_int_equal(m->content_length, r->cl);
        assert_int_equal(m->flags, r->flags);
    }
    check_resume(r->in, r->len, 0, r->req_method, MAX_HEAD, 1, rc, m, buf);
    free(buf);
    free(m);
}

/* ---- chunked table ---- */

struct chunk_row {
    const char *name;
    const char *in;
    size_t len;
    int rc;
    size_t used; /* for WEIR_OK */
    const char *data;
};

#define COK(name, in, used, data)                                                                            \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_OK, used, data                                                        \
    }
#define CALL(name, in, data) COK(name, in, sizeof(in) - 1, data)
#define CERR(name, in)                                                                                       \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_ERROR, 0, ""                                                          \
    }
#define CAGAIN(name, in, data)                                                                               \
    {                                                                                                        \
        name, in, sizeof(in) - 1, WEIR_AGAIN, 0, data                                                        \
    }

static const struct chunk_row chunk_rows[] = {
    CALL("one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"),
    CALL("empty body", "0\r\n\r\n", ""),
    CALL("two chunks, hex sizes", "a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n",
         "0123456789abcdefghijk"),
    CALL("leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello"),
    CALL("16 hex digits", "0000000000000005\r\nhello\r\n0\r\n\r\n", "hello"),
    CALL("extension name only", "5;foo\r\nhello\r\n0;bar\r\n\r\n", "hello"),
    CALL("extension token value", "5;foo=bar;baz=1\r\nhello\r\n0\r\n\r\n", "hello"),
    CALL("extension quoted value", "5;foo=\"a b;c=d\\\"\"\r\nhello\r\n0\r\n\r\n", "hello"),
    CALL("whitespace before ';'", "5 \t;foo=\"x\" ;bar\r\nhello\r\n0\r\n\r\n", "hello"),
    /* chunked framing is forwarded as is, so only CRLF is accepted */
    CERR("lone LF size line", "5\nhello\r\n0\r\n\r\n"),
    CERR("lone LF last-chunk line", "5\r\nhello\r\n0\n\r\n"),
    CALL("trailer fields", "5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-B:\r\n\r\n", "hello"),
    CALL("trailer with obs-text and HTAB", "0\r\nX: \t\xc3\xa9\r\n\r\n", ""),
    CERR("trailer lone LF", "0\r\nX: a\n\r\n"),
    CERR("final lone LF", "0\r\n\n"),
    CALL("CR in data is data", "3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r"),
    COK("bytes after the body are not used", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 11, "x"),
    CAGAIN("incomplete size", "5", ""),
    CAGAIN("incomplete data", "5\r\nhel", "hel"),
    CAGAIN("missing final CRLF", "5\r\nhello\r\n0\r\n", "hello"),
    CAGAIN("inside trailers", "0\r\nX: y\r\n", ""),
    CAGAIN("max chunk size 2^62", "4000000000000000\r\nab", "ab"),
    CERR("empty size", "\r\nhello\r\n"),
    CERR("non-hex size", "g\r\n"),
    CERR("size with sign", "+5\r\nhello\r\n"),
    CERR("size 0x prefix", "0x5\r\nhello\r\n"),
    CERR("17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
    CERR("size over 2^62", "4000000000000001\r\n"),
    CERR("size 2^64-1", "ffffffffffffffff\r\n"),
    CERR("whitespace then CRLF", "5 \r\nhello\r\n0\r\n\r\n"),
    CERR("leading whitespace", " 5\r\nhello\r\n0\r\n\r\n"),
    CERR("';' without name", "5;\r\nhello\r\n0\r\n\r\n"),
    CERR("'=' without name", "5;=x\r\nhello\r\n"),
    CERR("'=' without value", "5;a=\r\nhello\r\n"),
    CERR("whitespace after ';'", "5; a\r\nhello\r\n"),
    CERR("whitespace around '='", "5;a =b\r\nhello\r\n"),
    CERR("CTL in quoted value", "5;a=\"x\x01\"\r\nhello\r\n"),
    CERR("unterminated quoted value", "5;a=\"x\r\nhello\r\n"),
    CERR("junk after quoted value", "5;a=\"x\"y\r\nhello\r\n"),
    CERR("bare CR in size line", "5\rhello\r\n"),
    CERR("data followed by junk", "5\r\nhelloX\r\n0\r\n\r\n"),
    CERR("data followed by lone LF", "5\r\nhello\n0\r\n\r\n"),
    CERR("data followed by CR junk", "5\r\nhello\rX0\r\n\r\n"),
    CERR("data too short before CRLF", "5\r\nhell\r\n0\r\n\r\n"),
    CERR("trailer without colon", "0\r\nX\r\n\r\n"),
    CERR("trailer empty name", "0\r\n: v\r\n\r\n"),
    CERR("trailer SP before colon", "0\r\nX : v\r\n\r\n"),
    CERR("trailer obs-fold", "0\r\nX: a\r\n b\r\n\r\n"),
    CERR("trailer CTL in value", "0\r\nX: a\x01\r\n\r\n"),
    CERR("trailer NUL in value", "0\r\nX: a\0\r\n\r\n"),
    CERR("trailer bare CR", "0\r\nX: a\rb\r\n\r\n"),
    CERR("final bare CR", "0\r\n\rX"),
    CERR("last-chunk bare CR", "0\rX"),
};

struct sink {
    char buf[256];
    size_t n;
    int overflow;
};

static void sink_cb(void *ud, const char *p, size_t n)
{
    struct sink *s = ud;
    assert_true(n > 0);
    if (s->n + n > sizeof(s->buf)) {
        s->overflow = 1;
        return;
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

/* Feed in[0..len) in pieces of the given sizes (cycled); each piece is an
 * exact-size heap copy. Returns the final rc, *total = bytes used. */
static int chunk_feed(const char *in, size_t len, const size_t *pieces, size_t npieces, struct sink *s,
                      size_t *total)
{
    struct weir_chunked c;
    size_t off = 0, i = 0, used;
    int rc = WEIR_AGAIN;

    weir_chunked_init(&c);
    memset(s, 0, sizeof(*s));
    *total = 0;
    while (off < len) {
        size_t n = pieces[i++ % npieces];
        char *b;
        if (n > len - off)
            n = len - off;
        b = dup_bytes(in + off, n);
        rc = weir_chunked_parse(&c, b, n, &used, sink_cb, s);
        free(b);
        assert_true(used <= n);
        *total += used;
        off += n;
        if (rc != WEIR_AGAIN)
            break;
        assert_int_equal(used, n);
    }
    return rc;
}

static void test_chunk_row(void **state)
{
    const struct chunk_row *r = *state;
    size_t one = r->len ? r->len : 1, bytes1 = 1, split[2], k, total, total1;
    struct sink s, s1;
    int rc, rc1;

    rc1 = chunk_feed(r->in, r->len, &one, 1, &s1, &total1);
    assert_int_equal(rc1, r->rc);
    assert_false(s1.overflow);
    if (rc1 == WEIR_OK) {
        assert_int_equal(total1, r->used);
    }
    if (rc1 != WEIR_ERROR) {
        assert_int_equal(s1.n, strlen(r->data));
        assert_memory_equal(s1.buf, r->data, s1.n);
    }

    /* byte by byte */
    rc = chunk_feed(r->in, r->len, &bytes1, 1, &s, &total);
    assert_int_equal(rc, rc1);
    assert_int_equal(total, total1);
    assert_int_equal(s.n, s1.n);
    assert_memory_equal(s.buf, s1.buf, s.n);

    /* every split in two */
    for (k = 1; k < r->len; k++) {
        split[0] = k;
        split[1] = r->len - k;
        rc = chunk_feed(r->in, r->len, split, 2, &s, &total);
        assert_int_equal(rc, rc1);
        assert_int_equal(total, total1);
        assert_int_equal(s.n, s1.n);
        assert_memory_equal(s.buf, s1.buf, s.n);
    }
}

/* ---- parsed fields ---- */

static void test_fields_origin(void **state)
{
    static const char in[] = "\r\nGET /p?q=1 HTTP/1.1\r\nHost:  example.com \r\nX-A:\tv1 v2\t\r\n"
                             "Connection: keep-alive, x-a\r\nKeep-Alive: timeout=5\r\nX-B: 1\r\n\r\nBODY";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_span(m.method, m.method_len, "GET");
    assert_int_equal(m.method_id, WEIR_HTTP_GET);
    assert_span(m.target, m.target_len, "/p?q=1");
    assert_span(m.path, m.path_len, "/p?q=1");
    assert_ptr_equal(m.target, buf + 6);
    assert_null(m.authority);
    assert_int_equal(m.target_form, WEIR_TARGET_ORIGIN);
    assert_int_equal(m.version, 11);
    assert_int_equal(m.nheaders, 5);
    assert_int_equal(m.host_idx, 0);
    assert_span(m.headers[0].name, m.headers[0].name_len, "Host");
    assert_span(m.headers[0].value, m.headers[0].value_len, "example.com");
    assert_int_equal(m.headers[0].flags, 0);
    assert_span(m.headers[1].name, m.headers[1].name_len, "X-A");
    assert_span(m.headers[1].value, m.headers[1].value_len, "v1 v2");
    assert_int_equal(m.headers[1].flags, WEIR_HDR_F_CONN_LISTED);
    assert_int_equal(m.headers[2].flags, WEIR_HDR_F_HOP);
    assert_span(m.headers[3].name, m.headers[3].name_len, "Keep-Alive");
    assert_int_equal(m.headers[3].flags, WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED);
    assert_int_equal(m.headers[4].flags, 0);
    assert_int_equal(m.head_len, sizeof(in) - 1 - 4); /* leading CRLF included, body excluded */
    assert_memory_equal(buf + m.head_len, "BODY", 4);
    assert_int_equal(weir_http_find_header(&m, "x-b"), 4);
    assert_int_equal(weir_http_find_header(&m, "host"), 0);
    assert_int_equal(weir_http_find_header(&m, "x"), -1);
    assert_null(m.error);
    free(buf);
}

static void test_fields_absolute(void **state)
{
    static const char in[] = "GET http://Example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\n\r\n";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.target_form, WEIR_TARGET_ABSOLUTE);
    assert_span(m.target, m.target_len, "http://Example.com:8080/a/b?c");
    assert_span(m.authority, m.authority_len, "Example.com:8080");
    assert_span(m.path, m.path_len, "/a/b?c");
    assert_true(in_buf(m.path, m.path_len, buf, m.head_len));
    assert_int_equal(m.host_idx, 0);
    free(buf);
}

static void test_fields_absolute_empty_path(void **state)
{
    static const char in[] = "GET https://[::1]:8443 HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char in2[] = "OPTIONS http://a HTTP/1.1\r\nHost: a\r\n\r\n";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_span(m.authority, m.authority_len, "[::1]:8443");
    assert_span(m.path, m.path_len, "/");
    free(buf);
    /* RFC 9112 3.2.4: OPTIONS with an empty path is forwarded as "*" */
    assert_int_equal(parse_req(in2, sizeof(in2) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_span(m.path, m.path_len, "*");
    free(buf);
}

static void test_fields_asterisk_and_connect(void **state)
{
    static const char in[] = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char in2[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.target_form, WEIR_TARGET_ASTERISK);
    assert_span(m.target, m.target_len, "*");
    assert_span(m.path, m.path_len, "*");
    assert_null(m.authority);
    free(buf);
    assert_int_equal(parse_req(in2, sizeof(in2) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.target_form, WEIR_TARGET_AUTHORITY);
    assert_span(m.authority, m.authority_len, "example.com:443");
    assert_null(m.path);
    free(buf);
}

static void test_hop_flags(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nconnection: X-Foo, TE\r\nKeep-Alive: 1\r\n"
                             "Proxy-Connection: x\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: y\r\n"
                             "X-FOO: 1\r\nX-Foo-Bar: 2\r\nContent-Type: z\r\nx-foo: 3\r\n\r\n";
    static const unsigned want[] = {0,
                                    WEIR_HDR_F_HOP,
                                    WEIR_HDR_F_HOP,
                                    WEIR_HDR_F_HOP,
                                    WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED,
                                    WEIR_HDR_F_HOP,
                                    WEIR_HDR_F_HOP,
                                    WEIR_HDR_F_CONN_LISTED,
                                    0,
                                    0,
                                    WEIR_HDR_F_CONN_LISTED};
    struct weir_http_msg m;
    char *buf;
    size_t i;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.nheaders, WEIR_ARRAY_LEN(want));
    for (i = 0; i < m.nheaders; i++)
        assert_int_equal(m.headers[i].flags, want[i]);
    /* Upgrade header present but Connection does not list upgrade */
    assert_int_equal(m.flags, WEIR_HTTP_F_KEEPALIVE | WEIR_HTTP_F_TE_TRAILERS);
    free(buf);
}

static void test_conn_listed_never_framing(void **state)
{
    /* "Connection: content-length" must not make the proxy drop the framing */
    static const char in[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                             "Connection: Content-Length, HOST, x\r\nX: 1\r\n\r\nhello";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.headers[0].flags, 0);
    assert_int_equal(m.headers[1].flags, 0);
    assert_int_equal(m.headers[2].flags, WEIR_HDR_F_HOP);
    assert_int_equal(m.headers[3].flags, WEIR_HDR_F_CONN_LISTED);
    assert_int_equal(m.body, WEIR_BODY_LENGTH);
    assert_int_equal(m.content_length, 5);
    free(buf);
}

static void test_error_texts(void **state)
{
    static const struct {
        const char *in;
        const char *error;
    } rows[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", "obsolete line folding"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX : a\r\n\r\n", "whitespace before colon"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bare CR"},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", "invalid character in header value"},
        {"GET / HTTP/1.1\r\n\r\n", "missing Host"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "duplicate Host"},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported HTTP version"},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"},
    };
    struct weir_http_msg m;
    size_t i;
    char *buf;

    for (i = 0; i < WEIR_ARRAY_LEN(rows); i++) {
        assert_int_equal(parse_req(rows[i].in, strlen(rows[i].in), MAX_HEAD, &m, &buf), WEIR_ERROR);
        assert_string_equal(m.error, rows[i].error);
        free(buf);
    }
}

static void test_hop_transfer_encoding(void **state)
{
    static const char in[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct weir_http_msg m;
    char *buf;

    assert_int_equal(parse_req(in, sizeof(in) - 1, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.headers[1].flags, WEIR_HDR_F_HOP);
    assert_int_equal(m.headers[0].flags, 0);
    free(buf);
}

static void test_response_fields(void **state)
{
    static const char in[] = "HTTP/1.1 404 Not  Found \r\nServer: x\r\nContent-Length: 0\r\n\r\n";
    static const char in2[] = "HTTP/1.0 200\r\n\r\n";
    struct weir_http_msg m;
    char *buf = dup_bytes(in, sizeof(in) - 1);

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_response(buf, sizeof(in) - 1, MAX_HEAD, WEIR_HTTP_GET, &m), WEIR_OK);
    assert_int_equal(m.status, 404);
    assert_span(m.reason, m.reason_len, "Not  Found ");
    assert_int_equal(m.nheaders, 2);
    assert_int_equal(m.host_idx, -1);
    assert_int_equal(m.head_len, sizeof(in) - 1);
    free(buf);
    buf = dup_bytes(in2, sizeof(in2) - 1);
    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_response(buf, sizeof(in2) - 1, MAX_HEAD, WEIR_HTTP_GET, &m), WEIR_OK);
    assert_int_equal(m.status, 200);
    assert_int_equal(m.reason_len, 0);
    assert_int_equal(m.version, 10);
    assert_int_equal(m.body, WEIR_BODY_EOF);
    assert_int_equal(m.flags, 0);
    free(buf);
}

static void test_msg_reset(void **state)
{
    struct weir_http_msg m;
    static const struct weir_http_header zero;
    size_t i;

    memset(&m, 0xa5, sizeof(m));
    weir_http_msg_reset(&m);
    assert_int_equal(m.host_idx, -1);
    assert_int_equal(m.scan_pos, 0);
    assert_int_equal(m.scan_lines, 0);
    assert_int_equal(m.nheaders, 0);
    assert_int_equal(m.flags, 0);
    assert_int_equal(m.head_len, 0);
    assert_int_equal(m.error_status, 0);
    assert_null(m.error);
    assert_null(m.method);
    for (i = 0; i < WEIR_HTTP_MAX_HEADERS; i++)
        assert_memory_equal(&m.headers[i], &zero, sizeof(zero));
}

static void test_list_has(void **state)
{
    assert_int_equal(weir_http_list_has("close", 5, "close"), 1);
    assert_int_equal(weir_http_list_has(" Close ", 7, "close"), 1);
    assert_int_equal(weir_http_list_has("a, b ,\tUPGRADE", 14, "upgrade"), 1);
    assert_int_equal(weir_http_list_has(",,x,,", 5, "x"), 1);
    assert_int_equal(weir_http_list_has("closed", 6, "close"), 0);
    assert_int_equal(weir_http_list_has("clos", 4, "close"), 0);
    assert_int_equal(weir_http_list_has("a b", 3, "a"), 0);
    assert_int_equal(weir_http_list_has("", 0, "a"), 0);
    assert_int_equal(weir_http_list_has("close", 3, "clo"), 1); /* n bounds the value */
}

/* ---- limits ---- */

/* "GET /aaa...a HTTP/1.1\r\n" with a request line of exactly n bytes. */
static char *long_request(size_t line, const char *rest, size_t *len)
{
    size_t rl = strlen(rest);
    char *b = malloc(line + 2 + rl);
    assert_non_null(b);
    memcpy(b, "GET /", 5);
    memset(b + 5, 'a', line - 5 - 9);
    memcpy(b + line - 9, " HTTP/1.1\r\n", 11);
    memcpy(b + line + 2, rest, rl);
    *len = line + 2 + rl;
    return b;
}

static void test_request_line_limit(void **state)
{
    struct weir_http_msg m;
    size_t len;
    char *b, *buf;

    /* exactly 8192 bytes: accepted */
    b = long_request(WEIR_HTTP_MAX_REQUEST_LINE, "Host: a\r\n\r\n", &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.target_len, WEIR_HTTP_MAX_REQUEST_LINE - 4 - 9);
    free(buf);
    free(b);
    /* 8193 bytes, complete head: 414 */
    b = long_request(WEIR_HTTP_MAX_REQUEST_LINE + 1, "Host: a\r\n\r\n", &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 414);
    free(buf);
    /* same, fed in 1000-byte steps: 414 as soon as the line is known too long */
    check_resume(b, len, 1, 0, MAX_HEAD, 1000, WEIR_ERROR, &m, NULL);
    free(b);
    /* 8193 bytes, only its LF missing after all: 414 */
    b = long_request(WEIR_HTTP_MAX_REQUEST_LINE + 1, "", &len);
    assert_int_equal(parse_req(b, len - 1, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 414);
    free(buf);
    free(b);
}

static void test_request_line_limit_before_lf(void **state)
{
    size_t n = WEIR_HTTP_MAX_REQUEST_LINE + 2;
    char *b = malloc(n), *buf;
    struct weir_http_msg m;

    assert_non_null(b);
    memcpy(b, "GET /", 5);
    memset(b + 5, 'a', n - 5);
    /* 8192 bytes without LF: could still be a valid line */
    assert_int_equal(parse_req(b, WEIR_HTTP_MAX_REQUEST_LINE, MAX_HEAD, &m, &buf), WEIR_AGAIN);
    free(buf);
    /* 8193 bytes ending with CR: the CR may start the CRLF of an 8192-byte line */
    b[WEIR_HTTP_MAX_REQUEST_LINE] = '\r';
    assert_int_equal(parse_req(b, WEIR_HTTP_MAX_REQUEST_LINE + 1, MAX_HEAD, &m, &buf), WEIR_AGAIN);
    free(buf);
    /* 8193 bytes, no CR: too long already */
    b[WEIR_HTTP_MAX_REQUEST_LINE] = 'a';
    assert_int_equal(parse_req(b, WEIR_HTTP_MAX_REQUEST_LINE + 1, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 414);
    free(buf);
    /* resumed with the same msg: AGAIN, then 414 */
    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request(b, 100, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 100);
    assert_int_equal(weir_http_parse_request(b, n, MAX_HEAD, &m), WEIR_ERROR);
    assert_int_equal(m.error_status, 414);
    assert_string_equal(m.error, "request line too long");
    free(b);
}

static void test_head_size_limit(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789\r\n\r\n"; /* 42 bytes */
    struct weir_http_msg m;
    char *buf;
    size_t n = sizeof(in) - 1;

    assert_int_equal(n, 42);
    assert_int_equal(parse_req(in, n, n, &m, &buf), WEIR_OK);
    free(buf);
    assert_int_equal(parse_req(in, n, n - 1, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 431);
    free(buf);
    /* incomplete: 431 once max_head bytes are scanned without the end */
    assert_int_equal(parse_req(in, 20, 21, &m, &buf), WEIR_AGAIN);
    free(buf);
    assert_int_equal(parse_req(in, 21, 21, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 431);
    free(buf);
    /* leading empty lines count */
    assert_int_equal(parse_req("\r\n\r\n\r\n", 6, 6, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 431);
    free(buf);
    /* responses: 502 */
    buf = dup_bytes("HTTP/1.1 200 OK\r\nX: y\r\n", 23);
    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_response(buf, 23, 23, WEIR_HTTP_GET, &m), WEIR_ERROR);
    assert_int_equal(m.error_status, 502);
    free(buf);
}

/* Request line + n "X: y" field lines, with or without the final empty line. */
static char *many_fields(size_t n, int complete, size_t *len)
{
    size_t i, off;
    char *b = malloc(64 + n * 8);

    assert_non_null(b);
    off = (size_t)sprintf(b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 1; i < n; i++)
        off += (size_t)sprintf(b + off, "X%02x: y\r\n", (unsigned)(i & 0xff));
    if (complete) {
        memcpy(b + off, "\r\n", 2);
        off += 2;
    }
    *len = off;
    return b;
}

static void test_header_count_limit(void **state)
{
    struct weir_http_msg m;
    size_t len;
    char *b, *buf;

    b = many_fields(WEIR_HTTP_MAX_HEADERS, 1, &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.nheaders, WEIR_HTTP_MAX_HEADERS);
    free(buf);
    free(b);
    b = many_fields(WEIR_HTTP_MAX_HEADERS + 1, 1, &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 431);
    free(buf);
    free(b);
    /* incomplete head: 128 fields are not yet too many, 129 are */
    b = many_fields(WEIR_HTTP_MAX_HEADERS, 0, &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_AGAIN);
    free(buf);
    free(b);
    b = many_fields(WEIR_HTTP_MAX_HEADERS + 1, 0, &len);
    assert_int_equal(parse_req(b, len, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 431);
    free(buf);
    /* same, resumed in 50-byte steps */
    check_resume(b, len, 1, 0, MAX_HEAD, 50, WEIR_ERROR, &m, NULL);
    free(b);
}

/* ---- resume ---- */

static void test_resume_scan_pos(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct weir_http_msg m;

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request(in, 10, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 10);
    /* "...HTTP/1.1\r\nHost: a\r\n": the last LF waits for the next bytes */
    assert_int_equal(weir_http_parse_request(in, 25, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 24);
    assert_int_equal(m.scan_lines, 1);
    /* "...\r\n\r": still waiting on the same LF */
    assert_int_equal(weir_http_parse_request(in, 26, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 24);
    assert_int_equal(weir_http_parse_request(in, 27, MAX_HEAD, &m), WEIR_OK);
    assert_int_equal(m.head_len, 27);
    assert_int_equal(m.nheaders, 1);
}

static void test_resume_only_new_bytes(void **state)
{
    /* After AGAIN, bytes before scan_pos are not looked at again by the
     * end-of-head search: changing them to an empty line goes unnoticed. */
    char in[] = "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
    struct weir_http_msg m;

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request(in, 28, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 28);
    memcpy(in + 23, "\n\n", 2); /* would end the head at 25 if rescanned */
    assert_int_equal(weir_http_parse_request(in, sizeof(in) - 1, MAX_HEAD, &m), WEIR_ERROR);
}

static void test_resume_shorter_buffer(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct weir_http_msg m;

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request(in, 20, MAX_HEAD, &m), WEIR_AGAIN);
    /* a shorter buffer than already scanned: the scan starts over */
    assert_int_equal(weir_http_parse_request(in, 10, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(m.scan_pos, 10);
    assert_int_equal(weir_http_parse_request(in, sizeof(in) - 1, MAX_HEAD, &m), WEIR_OK);
}

static void test_resume_leading_crlf_split(void **state)
{
    static const char in[] = "\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    struct weir_http_msg m;

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request(in, 1, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(weir_http_parse_request(in, 3, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(weir_http_parse_request(in, 4, MAX_HEAD, &m), WEIR_ERROR);
    assert_int_equal(m.error_status, 400);
}

static void test_leading_empty_lines_cap(void **state)
{
    char in[128];
    struct weir_http_msg m;
    char *buf;
    size_t i;

    /* 32 CRLFs (64 bytes) are skipped, 64 lone LFs too */
    for (i = 0; i < 32; i++)
        memcpy(in + 2 * i, "\r\n", 2);
    strcpy(in + 64, "GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(parse_req(in, strlen(in), MAX_HEAD, &m, &buf), WEIR_OK);
    assert_int_equal(m.head_len, strlen(in));
    free(buf);
    memset(in, '\n', 64);
    assert_int_equal(parse_req(in, strlen(in), MAX_HEAD, &m, &buf), WEIR_OK);
    free(buf);
    /* one more empty line is refused, even before the request line starts */
    memset(in, '\n', 65);
    strcpy(in + 65, "GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(parse_req(in, strlen(in), MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 400);
    free(buf);
    assert_int_equal(parse_req(in, 65, MAX_HEAD, &m, &buf), WEIR_ERROR);
    assert_int_equal(m.error_status, 400);
    free(buf);
    assert_int_equal(parse_req(in, 64, MAX_HEAD, &m, &buf), WEIR_AGAIN);
    free(buf);
}

static void test_zero_length(void **state)
{
    struct weir_http_msg m;
    struct weir_chunked c;
    size_t used = 99;

    weir_http_msg_reset(&m);
    assert_int_equal(weir_http_parse_request("", 0, MAX_HEAD, &m), WEIR_AGAIN);
    assert_int_equal(weir_http_parse_response("", 0, MAX_HEAD, WEIR_HTTP_GET, &m), WEIR_AGAIN);
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, "", 0, &used, NULL, NULL), WEIR_AGAIN);
    assert_int_equal(used, 0);
}

/* ---- chunked: state after the end, limits ---- */

static void test_chunked_done_and_error_sticky(void **state)
{
    struct weir_chunked c;
    size_t used;

    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, "0\r\n\r\nxyz", 8, &used, NULL, NULL), WEIR_OK);
    assert_int_equal(used, 5);
    assert_int_equal(weir_chunked_parse(&c, "xyz", 3, &used, NULL, NULL), WEIR_OK);
    assert_int_equal(used, 0);

    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, "5\r\nab", 5, &used, NULL, NULL), WEIR_AGAIN);
    assert_int_equal(used, 5);
    assert_int_equal(c.remaining, 3);
    assert_int_equal(weir_chunked_parse(&c, "cdeX", 4, &used, NULL, NULL), WEIR_ERROR);
    assert_int_equal(used, 3); /* the offending byte */
    assert_int_equal(weir_chunked_parse(&c, "\r\n0\r\n\r\n", 7, &used, NULL, NULL), WEIR_ERROR);
}

static void test_chunked_line_limit(void **state)
{
    size_t n = WEIR_HTTP_MAX_CHUNK_LINE + 16, used;
    char *b = malloc(n);
    struct weir_chunked c;

    assert_non_null(b);
    /* "1;" + "a"... so that the line incl. CRLF is exactly the limit */
    memset(b, 'a', n);
    memcpy(b, "1;", 2);
    memcpy(b + WEIR_HTTP_MAX_CHUNK_LINE - 2, "\r\nx\r\n0\r\n\r\n", 10);
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, b, WEIR_HTTP_MAX_CHUNK_LINE + 8, &used, NULL, NULL), WEIR_OK);
    assert_int_equal(used, WEIR_HTTP_MAX_CHUNK_LINE + 8);
    /* one byte longer */
    memset(b, 'a', n);
    memcpy(b, "1;", 2);
    memcpy(b + WEIR_HTTP_MAX_CHUNK_LINE - 1, "\r\nx\r\n0\r\n\r\n", 10);
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, b, WEIR_HTTP_MAX_CHUNK_LINE + 9, &used, NULL, NULL), WEIR_ERROR);
    free(b);
}

static void test_chunked_trailer_limit(void **state)
{
    /* "0\r\n" + trailer lines "X: aaaa...\r\n" + "\r\n" */
    size_t tl = WEIR_HTTP_MAX_TRAILERS, used;
    char *b = malloc(3 + tl + 1);
    struct weir_chunked c;

    assert_non_null(b);
    memcpy(b, "0\r\n", 3);
    memcpy(b + 3, "X: ", 3);
    memset(b + 6, 'a', tl - 3 - 4);
    memcpy(b + 3 + tl - 4, "\r\n\r\n", 4);
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, b, 3 + tl, &used, NULL, NULL), WEIR_OK);
    assert_int_equal(used, 3 + tl);
    /* one more byte of trailer */
    b[3 + tl - 4] = 'a';
    memcpy(b + 3 + tl - 3, "\r\n\r\n", 4);
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, b, 3 + tl + 1, &used, NULL, NULL), WEIR_ERROR);
    free(b);
}

static void test_chunked_large_chunk(void **state)
{
    struct weir_chunked c;
    size_t used;
    struct sink s;

    memset(&s, 0, sizeof(s));
    weir_chunked_init(&c);
    assert_int_equal(weir_chunked_parse(&c, "FFFFFFFF\r\n", 10, &used, sink_cb, &s), WEIR_AGAIN);
    assert_int_equal(c.remaining, UINT64_C(0xffffffff));
    assert_int_equal(weir_chunked_parse(&c, "abc", 3, &used, sink_cb, &s), WEIR_AGAIN);
    assert_int_equal(c.remaining, UINT64_C(0xffffffff) - 3);
    assert_int_equal(s.n, 3);
}

/* ---- runner ---- */

static struct CMUnitTest *row_tests(const void *rows, size_t nrows, size_t row_size, void (*fn)(void **state))
{
    struct CMUnitTest *t = calloc(nrows, sizeof(*t));
    size_t i;

    if (t == NULL)
        abort();
    for (i = 0; i < nrows; i++) {
        const char *row = (const char *)rows + i * row_size;
        t[i].name = *(const char *const *)row; /* every row starts with its name */
        t[i].test_func = fn;
        t[i].initial_state = (void *)row;
    }
    return t;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_origin),
        cmocka_unit_test(test_fields_absolute),
        cmocka_unit_test(test_fields_absolute_empty_path),
        cmocka_unit_test(test_fields_asterisk_and_connect),
        cmocka_unit_test(test_hop_flags),
        cmocka_unit_test(test_hop_transfer_encoding),
        cmocka_unit_test(test_conn_listed_never_framing),
        cmocka_unit_test(test_error_texts),
        cmocka_unit_test(test_response_fields),
        cmocka_unit_test(test_msg_reset),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_request_line_limit_before_lf),
        cmocka_unit_test(test_head_size_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_resume_scan_pos),
        cmocka_unit_test(test_resume_only_new_bytes),
        cmocka_unit_test(test_resume_shorter_buffer),
        cmocka_unit_test(test_resume_leading_crlf_split),
        cmocka_unit_test(test_leading_empty_lines_cap),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_chunked_done_and_error_sticky),
        cmocka_unit_test(test_chunked_line_limit),
        cmocka_unit_test(test_chunked_trailer_limit),
        cmocka_unit_test(test_chunked_large_chunk),
    };
    struct CMUnitTest *rq = row_tests(req_rows, WEIR_ARRAY_LEN(req_rows), sizeof(req_rows[0]), test_req_row);
    struct CMUnitTest *rs =
        row_tests(resp_rows, WEIR_ARRAY_LEN(resp_rows), sizeof(resp_rows[0]), test_resp_row);
    struct CMUnitTest *ch =
        row_tests(chunk_rows, WEIR_ARRAY_LEN(chunk_rows), sizeof(chunk_rows[0]), test_chunk_row);
    int failed = 0;

    failed += cmocka_run_group_tests_name("http_parse", tests, NULL, NULL);
    failed += _cmocka_run_group_tests("http_parse_request_rules", rq, WEIR_ARRAY_LEN(req_rows), NULL, NULL);
    failed += _cmocka_run_group_tests("http_parse_response_rules", rs, WEIR_ARRAY_LEN(resp_rows), NULL, NULL);
    failed += _cmocka_run_group_tests("http_parse_chunked_rules", ch, WEIR_ARRAY_LEN(chunk_rows), NULL, NULL);
    free(rq);
    free(rs);
    free(ch);
    return failed;
}
