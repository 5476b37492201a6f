/*
 * test_cache_rules.c - the shared-cache rules (src/cache_rules.c and
 * src/cache_match.c) checked against the text of RFC 9111, RFC 5861,
 * RFC 9213 and RFC 9110 (dates, conditionals, ranges).
 *
 * Header sections are written as "Name: value" strings and split into
 * struct weir_http_header spans by hdrs().
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/cache_rules.h"

#define T0 784111777LL /* Sun, 06 Nov 1994 08:49:37 GMT */

struct hs {
    struct weir_http_header h[32];
    size_t n;
};

/* Split NULL-terminated "Name: value" strings into spans. */
static struct hs hdrs(const char *first, ...)
{
    struct hs s;
    va_list ap;
    const char *l;

    memset(&s, 0, sizeof(s));
    va_start(ap, first);
    for (l = first; l != NULL; l = va_arg(ap, const char *)) {
        const char *colon = strchr(l, ':');
        const char *v = colon + 1;
        size_t vl;
        assert_non_null(colon);
        while (*v == ' ')
            v++;
        vl = strlen(v);
        s.h[s.n].name = l;
        s.h[s.n].name_len = (size_t)(colon - l);
        s.h[s.n].value = v;
        s.h[s.n].value_len = vl;
        s.n++;
    }
    va_end(ap);
    return s;
}

static struct weir_cc cc_of(const char *v)
{
    struct weir_cc cc;
    weir_cc_init(&cc);
    weir_cc_parse(&cc, v, strlen(v));
    return cc;
}

static int64_t date(const char *v)
{
    return weir_http_date_parse(v, strlen(v), T0);
}

/* ---- Cache-Control ---------------------------------------------------------- */

static void test_cc_basic(void **state)
{
    struct weir_cc cc =
        cc_of("public, max-age=60, s-maxage=30, must-revalidate, proxy-revalidate, immutable");
    assert_int_equal(cc.flags & WEIR_CC_PUBLIC, WEIR_CC_PUBLIC);
    assert_true(cc.flags & WEIR_CC_MUST_REVALIDATE);
    assert_true(cc.flags & WEIR_CC_PROXY_REVALIDATE);
    assert_true(cc.flags & WEIR_CC_IMMUTABLE);
    assert_true(cc.flags & WEIR_CC_HAS_SMAXAGE);
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 30);
    assert_int_equal(cc.malformed, 0);
    assert_false(cc.flags & WEIR_CC_BAD_FRESHNESS);

    cc = cc_of("no-store,no-cache,private,only-if-cached,no-transform,must-understand");
    assert_int_equal(cc.flags, WEIR_CC_NO_STORE | WEIR_CC_NO_CACHE | WEIR_CC_PRIVATE |
                                   WEIR_CC_ONLY_IF_CACHED | WEIR_CC_NO_TRANSFORM | WEIR_CC_MUST_UNDERSTAND);
    assert_int_equal(cc.max_age, WEIR_CC_UNSET);
}

static void test_cc_case_and_spaces(void **state)
{
    struct weir_cc cc = cc_of("  MAX-AGE=10 ,, No-Store ,\tPUBLIC  ");
    assert_int_equal(cc.max_age, 10);
    assert_true(cc.flags & WEIR_CC_NO_STORE);
    assert_true(cc.flags & WEIR_CC_PUBLIC);
    assert_int_equal(cc.malformed, 0);
    /* no whitespace around "=" in the §5.2 grammar: malformed, stale */
    cc = cc_of("max-age = 10");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("max-age= 10");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("s-maxage =10, max-age=5");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    assert_int_equal(cc.max_age, 5);
    cc = cc_of("no-store = 1, private =\"x\""); /* restrictive ones still count */
    assert_true(cc.flags & WEIR_CC_NO_STORE);
    assert_true(cc.flags & WEIR_CC_PRIVATE);
    cc = cc_of("max-age=10 , no-cache"); /* OWS around commas is fine */
    assert_int_equal(cc.max_age, 10);
    assert_false(cc.flags & WEIR_CC_BAD_FRESHNESS);
}

static void test_cc_quoted(void **state)
{
    /* §5.2: recipients accept both token and quoted-string arguments */
    struct weir_cc cc = cc_of("max-age=\"120\", s-maxage=\"5\"");
    assert_int_equal(cc.max_age, 120);
    assert_int_equal(cc.s_maxage, 5);
    /* commas inside a quoted argument do not split directives */
    cc = cc_of("no-cache=\"set-cookie, x-foo\", max-age=7");
    assert_true(cc.flags & WEIR_CC_NO_CACHE);
    assert_int_equal(cc.max_age, 7);
    cc = cc_of("private=\"a,b\"");
    assert_true(cc.flags & WEIR_CC_PRIVATE);
    cc = cc_of("foo=\"x\\\"y, max-age=1\", max-age=9");
    assert_int_equal(cc.max_age, 9);
    /* an escaped digit is not a delta-seconds */
    cc = cc_of("max-age=\"1\\2\"");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    /* unterminated quote: the rest is one malformed directive */
    cc = cc_of("ext=\"abc, max-age=5");
    assert_int_equal(cc.max_age, WEIR_CC_UNSET);
}

static void test_cc_malformed(void **state)
{
    struct weir_cc cc = cc_of("max-age=abc");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    assert_int_equal(cc.malformed, 1);
    cc = cc_of("max-age=-1");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("max-age=");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("max-age");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("max-age=5 6");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("s-maxage=1.5");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    assert_true(cc.flags & WEIR_CC_HAS_SMAXAGE);
    /* garbage elements are skipped, the rest is parsed */
    cc = cc_of("@@@, max-age=3, =x, no-store");
    assert_int_equal(cc.max_age, 3);
    assert_true(cc.flags & WEIR_CC_NO_STORE);
    assert_int_equal(cc.malformed, 2);
    /* stale windows with bad values are ignored */
    cc = cc_of("stale-while-revalidate=x, stale-if-error=, min-fresh=a, max-stale=b");
    assert_int_equal(cc.swr, WEIR_CC_UNSET);
    assert_int_equal(cc.sie, WEIR_CC_UNSET);
    assert_int_equal(cc.min_fresh, WEIR_CC_UNSET);
    assert_int_equal(cc.max_stale, WEIR_CC_UNSET);
    assert_int_equal(cc.malformed, 4);
    /* restrictive directives are honoured with a stray argument, permissive ones are not */
    cc = cc_of("no-store=1, public=yes, immutable=1, must-revalidate=x");
    assert_true(cc.flags & WEIR_CC_NO_STORE);
    assert_true(cc.flags & WEIR_CC_MUST_REVALIDATE);
    assert_false(cc.flags & WEIR_CC_PUBLIC);
    assert_false(cc.flags & WEIR_CC_IMMUTABLE);
    /* unknown extensions are ignored without being counted */
    cc = cc_of("community=\"UCI\", foo, bar=baz");
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.malformed, 0);
}

static void test_cc_duplicates(void **state)
{
    /* same value twice: fine; different values: the response is stale */
    struct weir_cc cc = cc_of("max-age=5, max-age=5");
    assert_int_equal(cc.max_age, 5);
    assert_false(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("max-age=5, max-age=50");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    cc = cc_of("s-maxage=1, s-maxage=2");
    assert_true(cc.flags & WEIR_CC_BAD_FRESHNESS);
    /* request directives keep the most restrictive */
    cc = cc_of("max-stale=100, max-stale=10, min-fresh=1, min-fresh=20");
    assert_int_equal(cc.max_stale, 10);
    assert_int_equal(cc.min_fresh, 20);
    cc = cc_of("stale-while-revalidate=30, stale-while-revalidate=3, stale-if-error=9, stale-if-error=90");
    assert_int_equal(cc.swr, 3);
    assert_int_equal(cc.sie, 9);
    /* two field lines are one list */
    struct hs h = hdrs("Cache-Control: max-age=10", "cache-control: no-cache", NULL);
    weir_cc_response(&cc, h.h, h.n);
    assert_int_equal(cc.max_age, 10);
    assert_true(cc.flags & WEIR_CC_NO_CACHE);
}

static void test_cc_big_numbers(void **state)
{
    /* §1.2.2: values beyond 2^31 are taken as 2^31 */
    struct weir_cc cc = cc_of("max-age=99999999999999999999999999");
    assert_int_equal(cc.max_age, WEIR_CC_DELTA_MAX);
    cc = cc_of("max-age=2147483648");
    assert_int_equal(cc.max_age, WEIR_CC_DELTA_MAX);
    cc = cc_of("max-age=2147483647");
    assert_int_equal(cc.max_age, 2147483647LL);
    cc = cc_of("max-age=0000000000000000000000000007");
    assert_int_equal(cc.max_age, 7);
}

static void test_cc_request(void **state)
{
    struct weir_cc cc = cc_of("max-stale");
    assert_int_equal(cc.max_stale, WEIR_CC_ANY);
    cc = cc_of("max-stale=20, min-fresh=5, max-age=0, only-if-cached, no-store, no-cache, stale-if-error=60");
    assert_int_equal(cc.max_stale, 20);
    assert_int_equal(cc.min_fresh, 5);
    assert_int_equal(cc.max_age, 0);
    assert_int_equal(cc.sie, 60);
    assert_true(cc.flags & WEIR_CC_ONLY_IF_CACHED);

    /* Pragma: no-cache only counts without Cache-Control (§5.4) */
    struct hs h = hdrs("Pragma: no-cache", NULL);
    weir_cc_request(&cc, h.h, h.n);
    assert_true(cc.flags & WEIR_CC_NO_CACHE);
    h = hdrs("Pragma: no-cache", "Cache-Control: max-age=5", NULL);
    weir_cc_request(&cc, h.h, h.n);
    assert_false(cc.flags & WEIR_CC_NO_CACHE);
}

static void test_cdn_cache_control(void **state)
{
    struct weir_cc cc;
    struct hs h;

    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=60, public", 18), 0);
    assert_int_equal(cc.max_age, 60);
    assert_true(cc.flags & WEIR_CC_PUBLIC);
    /* booleans, parameters, strings and inner lists are valid SF */
    assert_int_equal(weir_cc_parse_targeted(&cc, "no-store=?1;a=1, x=(1 2), y=\"s\", z=:aGk=:, w=1.5", 48),
                     0);
    assert_true(cc.flags & WEIR_CC_NO_STORE);
    assert_int_equal(weir_cc_parse_targeted(&cc, "no-store=?0", 11), 0);
    assert_false(cc.flags & WEIR_CC_NO_STORE);
    /* invalid dictionaries */
    assert_int_equal(weir_cc_parse_targeted(&cc, "Max-Age=60", 10), -1); /* keys are lower case */
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=60,", 11), -1);
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=\"60", 11), -1);
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=60 x", 12), -1);
    assert_int_equal(weir_cc_parse_targeted(&cc, "", 0), -1);
    assert_int_equal(weir_cc_parse_targeted(&cc, "a=1234567890123456", 18), -1);
    /* wrong type: directive ignored, the field still valid */
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=\"60\"", 12), 0);
    assert_int_equal(cc.max_age, WEIR_CC_UNSET);
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=-5", 10), 0);
    assert_int_equal(cc.max_age, WEIR_CC_UNSET);
    /* duplicates: the last wins (SF dictionary semantics) */
    assert_int_equal(weir_cc_parse_targeted(&cc, "max-age=1, max-age=2", 20), 0);
    assert_int_equal(cc.max_age, 2);

    /* precedence over Cache-Control and Expires (RFC 9213 §2.2) */
    h = hdrs("Cache-Control: no-store", "CDN-Cache-Control: max-age=600",
             "Expires: Thu, 01 Jan 1970 00:00:00 GMT", NULL);
    weir_cc_response(&cc, h.h, h.n);
    assert_true(cc.flags & WEIR_CC_TARGETED);
    assert_false(cc.flags & WEIR_CC_NO_STORE);
    assert_int_equal(cc.max_age, 600);
    /* invalid targeted field: ignored, Cache-Control used */
    h = hdrs("Cache-Control: max-age=5", "CDN-Cache-Control: max-age=600,,", NULL);
    weir_cc_response(&cc, h.h, h.n);
    assert_false(cc.flags & WEIR_CC_TARGETED);
    assert_int_equal(cc.max_age, 5);
    /* Surrogate-Control is not ours */
    h = hdrs("Surrogate-Control: max-age=600", "Cache-Control: max-age=5", NULL);
    weir_cc_response(&cc, h.h, h.n);
    assert_int_equal(cc.max_age, 5);
    /* with a targeted field, Expires does not count for storability or freshness */
    h = hdrs("CDN-Cache-Control: public", "Expires: Sun, 06 Nov 1994 09:49:37 GMT",
             "Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    weir_cc_response(&cc, h.h, h.n);
    {
        struct weir_cache_times t;
        weir_cache_times_init(&t, T0, T0, h.h, h.n);
        assert_int_equal(weir_cache_freshness(&cc, 500, h.h, h.n, &t, NULL), 0);
    }
}

/* ---- dates ------------------------------------------------------------------- */

static void test_dates(void **state)
{
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 GMT"), T0);
    assert_int_equal(date("Sunday, 06-Nov-94 08:49:37 GMT"), T0);
    assert_int_equal(date("Sun Nov  6 08:49:37 1994"), T0);
    assert_int_equal(date("Sun Nov 16 08:49:37 1994"), T0 + 10 * 86400);
    assert_int_equal(date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(date("Wed, 31 Dec 1969 23:59:59 GMT"), 0); /* before the epoch: long past */
    assert_int_equal(date("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
    assert_int_equal(date("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799LL);
    assert_int_equal(date("Sat, 31 Dec 2016 23:59:60 GMT"), 1483228800); /* leap second */
    /* invalid forms */
    assert_int_equal(date("0"), -1);
    assert_int_equal(date(""), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 UTC"), -1);
    assert_int_equal(date("sun, 06 Nov 1994 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06 nov 1994 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:37 GMT "), -1);
    assert_int_equal(date("Sun, 6 Nov 1994 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 24:00:00 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 08:60:00 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 08:49:61 GMT"), -1);
    assert_int_equal(date("Sun, 31 Nov 1994 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 29 Feb 1900 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 00 Nov 1994 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 0000 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 1994 08-49-37 GMT"), -1);
    assert_int_equal(date("Sun, 06 Nov 199a 08:49:37 GMT"), -1);
    assert_int_equal(date("Sunday, 06-Nov-94 08:49:37 UTC"), -1);
    assert_int_equal(date("Sundy, 06-Nov-94 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun, 06-Nov-94 08:49:37 GMT"), -1);
    assert_int_equal(date("Sun Nov 6 08:49:37 1994"), -1);
    assert_int_equal(date("Sun Nov  6 08:49:37 1994 "), -1);
    assert_int_equal(date("Xyz Nov  6 08:49:37 1994"), -1);
    assert_int_equal(weir_http_date_parse(NULL, 0, 0), -1);
}

static void test_date_rfc850_years(void **state)
{
    int64_t now2020 = 1577836800; /* 2020-01-01 */
    /* "71" would be 2071, more than 50 years after 2020: taken as 1971 */
    assert_int_equal(weir_http_date_parse("Friday, 01-Jan-71 00:00:00 GMT", 30, now2020), 31536000);
    /* "70" is 2070, exactly 50 years ahead: not more than 50, kept */
    assert_int_equal(weir_http_date_parse("Wednesday, 01-Jan-70 00:00:00 GMT", 33, now2020), 3155760000LL);
    /* "69" -> 2069 is within 50 years of 2020: 2069 */
    assert_int_equal(weir_http_date_parse("Tuesday, 01-Jan-69 00:00:00 GMT", 31, now2020), 3124224000LL);
    assert_int_equal(weir_http_date_parse("Wednesday, 01-Jan-20 00:00:00 GMT", 33, now2020), now2020);
}

static void test_date_format(void **state)
{
    char out[32];
    assert_int_equal(weir_http_date_format(T0, out), 29);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(weir_http_date_format(0, out), 29);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    /* round trip over many dates */
    for (int64_t t = 0; t < 4000000000LL; t += 7777777) {
        weir_http_date_format(t, out);
        assert_int_equal(weir_http_date_parse(out, 29, 0), t);
    }
}

/* ---- storability ---------------------------------------------------------------- */

static int storable(int method, struct hs *req, int status, struct hs *resp)
{
    struct weir_cc cc;
    weir_cc_response(&cc, resp->h, resp->n);
    return weir_cache_storable(method, req->h, req->n, status, resp->h, resp->n, &cc);
}

static void test_storable(void **state)
{
    struct hs none = hdrs(NULL);
    struct hs ok = hdrs("Cache-Control: max-age=60", NULL);
    struct hs r;

    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &ok), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &none), WEIR_STORE_OK); /* heuristically cacheable */
    assert_int_equal(storable(WEIR_HTTP_HEAD, &none, 200, &ok), WEIR_STORE_METHOD);
    assert_int_equal(storable(WEIR_HTTP_POST, &none, 200, &ok), WEIR_STORE_METHOD);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 206, &ok), WEIR_STORE_STATUS);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 304, &ok), WEIR_STORE_STATUS);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 100, &ok), WEIR_STORE_STATUS);
    /* a status weir does not know: stored with explicit freshness or public
     * (§3 asks to understand it only for 206/304/must-understand) */
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 299, &ok), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 599, &ok), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 599, &none), WEIR_STORE_NO_FRESHNESS);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 600, &ok), WEIR_STORE_STATUS);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 404, &none), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 500, &none), WEIR_STORE_NO_FRESHNESS);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 500, &ok), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 302, &none), WEIR_STORE_NO_FRESHNESS);
    r = hdrs("Expires: Sun, 06 Nov 1994 09:49:37 GMT", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 302, &r), WEIR_STORE_OK);
    r = hdrs("Expires: 0", NULL); /* present, though already expired: still storable */
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 302, &r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: public", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 302, &r), WEIR_STORE_OK);

    r = hdrs("Cache-Control: max-age=60, no-store", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_NO_STORE);
    r = hdrs("Cache-Control: max-age=60, private", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_PRIVATE);
    r = hdrs("Cache-Control: private=\"x-user\", max-age=60", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_PRIVATE);
    r = hdrs("Cache-Control: no-cache", NULL); /* stored, always revalidated */
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_OK);

    /* must-understand: no-store ignored for a known status, refused for an unknown one */
    r = hdrs("Cache-Control: must-understand, no-store, max-age=5", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_OK);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 299, &r), WEIR_STORE_MUST_UNDERSTAND);

    /* request no-store */
    r = hdrs("Cache-Control: no-store", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &r, 200, &ok), WEIR_STORE_REQ_NO_STORE);
}

static int worth(struct hs *resp)
{
    struct weir_cc cc;

    weir_cc_response(&cc, resp->h, resp->n);
    return weir_cache_worth_storing(resp->h, resp->n, &cc);
}

/* Storable by the RFC but never able to answer a request: not worth a copy. */
static void test_worth_storing(void **state)
{
    struct hs r = hdrs(NULL);

    assert_int_equal(worth(&r), WEIR_STORE_NEVER_FRESH); /* no freshness, no validator */
    r = hdrs("Cache-Control: max-age=60", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=0", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_NEVER_FRESH);
    r = hdrs("Cache-Control: max-age=60, s-maxage=0", NULL); /* a shared cache uses s-maxage */
    assert_int_equal(worth(&r), WEIR_STORE_NEVER_FRESH);
    r = hdrs("Cache-Control: s-maxage=30", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=0", "ETag: \"a\"", NULL); /* revalidated with a 304 */
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT", NULL); /* heuristic, validator */
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: no-cache, max-age=60", NULL); /* always revalidated, nothing to send */
    assert_int_equal(worth(&r), WEIR_STORE_NEVER_FRESH);
    r = hdrs("Cache-Control: no-cache", "ETag: \"a\"", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=0, stale-if-error=60", NULL); /* a failing origin gets it */
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=0, stale-while-revalidate=60", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Expires: Sun, 06 Nov 2094 08:49:37 GMT", NULL);
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=60, max-age=30", NULL); /* conflicting: stale at once */
    assert_int_equal(worth(&r), WEIR_STORE_NEVER_FRESH);
    r = hdrs("CDN-Cache-Control: max-age=60", NULL); /* the targeted field gives the lifetime */
    assert_int_equal(worth(&r), WEIR_STORE_OK);
    assert_string_equal(weir_cache_store_reason_name(WEIR_STORE_NEVER_FRESH), "never_fresh");
}

static void test_storable_authorization(void **state)
{
    struct hs req = hdrs("Authorization: Bearer x", NULL);
    struct hs r = hdrs("Cache-Control: max-age=60", NULL);

    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_AUTHORIZATION);
    r = hdrs("Cache-Control: max-age=60, public", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: s-maxage=60", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=60, must-revalidate", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_OK);
    r = hdrs("Cache-Control: max-age=60, proxy-revalidate", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_AUTHORIZATION);
    req = hdrs("authorization: Basic eDp5", NULL);
    r = hdrs("CDN-Cache-Control: max-age=60", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &req, 200, &r), WEIR_STORE_AUTHORIZATION);
}

static void test_storable_cookie_vary(void **state)
{
    struct hs none = hdrs(NULL);
    struct hs r = hdrs("Cache-Control: public, max-age=60", "Set-Cookie: sid=1", NULL);

    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_SET_COOKIE);
    r = hdrs("Cache-Control: max-age=60", "Vary: Accept-Encoding, *", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_VARY_STAR);
    r = hdrs("Cache-Control: max-age=60", "Vary: Accept-Encoding", NULL);
    assert_int_equal(storable(WEIR_HTTP_GET, &none, 200, &r), WEIR_STORE_OK);
    assert_string_equal(weir_cache_store_reason_name(WEIR_STORE_SET_COOKIE), "set_cookie");
    assert_string_equal(weir_cache_store_reason_name(99), "unknown");
    for (int i = 0; i < WEIR_STORE_REASONS; i++)
        assert_non_null(weir_cache_store_reason_name(i));
}

static void test_unstored_headers(void **state)
{
    assert_true(weir_cache_header_unstored("Connection", 10));
    assert_true(weir_cache_header_unstored("transfer-encoding", 17));
    assert_true(weir_cache_header_unstored("Proxy-Authenticate", 18));
    assert_false(weir_cache_header_unstored("Content-Type", 12));
}

/* ---- freshness and age ----------------------------------------------------------- */

static int64_t lifetime(struct hs *resp, int status, int *heur)
{
    struct weir_cc cc;
    struct weir_cache_times t;
    weir_cc_response(&cc, resp->h, resp->n);
    weir_cache_times_init(&t, T0, T0, resp->h, resp->n);
    return weir_cache_freshness(&cc, status, resp->h, resp->n, &t, heur);
}

static void test_freshness(void **state)
{
    int heur;
    struct hs r = hdrs("Cache-Control: max-age=60, s-maxage=30", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 30); /* s-maxage first for a shared cache */
    assert_int_equal(heur, 0);
    r = hdrs("Cache-Control: max-age=60", "Expires: Sun, 06 Nov 1994 10:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 60); /* max-age beats Expires */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Expires: Sun, 06 Nov 1994 09:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 3600);
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Expires: 0", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Expires: Sun, 06 Nov 1994 07:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    /* two different Expires: stale */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Expires: Sun, 06 Nov 1994 09:49:37 GMT",
             "Expires: Sun, 06 Nov 1994 10:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    /* no Date: the response time stands for it */
    r = hdrs("Expires: Sun, 06 Nov 1994 08:50:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 60);
    /* malformed max-age: stale even with Expires */
    r = hdrs("Cache-Control: max-age=x", "Expires: Sun, 06 Nov 1994 09:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    r = hdrs("Cache-Control: max-age=10, max-age=20", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
}

static void test_heuristic(void **state)
{
    int heur;
    /* 10% of Date - Last-Modified (1000 s -> 100 s) */
    struct hs r =
        hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: Sun, 06 Nov 1994 08:32:57 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 100);
    assert_int_equal(heur, 1);
    /* capped at a day */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: Sun, 06 Nov 1984 08:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), WEIR_CACHE_HEURISTIC_MAX);
    /* not for a status that is not heuristically cacheable, unless public */
    assert_int_equal(lifetime(&r, 302, &heur), 0);
    assert_int_equal(heur, 0);
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: Sun, 06 Nov 1994 08:32:57 GMT",
             "Cache-Control: public", NULL);
    assert_int_equal(lifetime(&r, 302, &heur), 100);
    /* not with explicit expiration, even an invalid one */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: Sun, 06 Nov 1994 08:32:57 GMT",
             "Expires: -1", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    assert_int_equal(heur, 0);
    /* Last-Modified in the future, or invalid: no heuristic */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: Sun, 06 Nov 1994 09:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Last-Modified: yesterday", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    assert_int_equal(lifetime(&r, 200, &heur), 0);
}

static void test_age(void **state)
{
    struct weir_cache_times t;
    struct hs r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);

    /* received 10 s after Date, request took 2 s, no Age */
    weir_cache_times_init(&t, T0 + 8, T0 + 10, r.h, r.n);
    assert_int_equal(t.date, T0);
    assert_int_equal(t.age_value, 0);
    /* apparent_age 10 > corrected_age_value 0 + 2 */
    assert_int_equal(weir_cache_age(&t, T0 + 10), 10);
    assert_int_equal(weir_cache_age(&t, T0 + 15), 15);
    /* Age: 100 from upstream + 2 s delay beats apparent age */
    r = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", "Age: 100", NULL);
    weir_cache_times_init(&t, T0 + 8, T0 + 10, r.h, r.n);
    assert_int_equal(weir_cache_age(&t, T0 + 10), 102);
    assert_int_equal(weir_cache_age(&t, T0 + 20), 112);
    /* Date in the future (clock skew): apparent age clamps at 0 */
    r = hdrs("Date: Sun, 06 Nov 1994 09:49:37 GMT", NULL);
    weir_cache_times_init(&t, T0, T0, r.h, r.n);
    assert_int_equal(weir_cache_age(&t, T0 + 5), 5);
    /* invalid Age and Date are ignored */
    r = hdrs("Date: garbage", "Age: -5", NULL);
    weir_cache_times_init(&t, T0, T0, r.h, r.n);
    assert_int_equal(t.date, T0);
    assert_int_equal(t.age_value, 0);
    r = hdrs("Age: 7, 8", NULL);
    weir_cache_times_init(&t, T0, T0, r.h, r.n);
    assert_int_equal(t.age_value, 7);
    r = hdrs("Age: 7x", NULL);
    weir_cache_times_init(&t, T0, T0, r.h, r.n);
    assert_int_equal(t.age_value, 0);
    r = hdrs("Age: 99999999999999", NULL);
    weir_cache_times_init(&t, T0, T0, r.h, r.n);
    assert_int_equal(t.age_value, WEIR_CC_DELTA_MAX);
}

/* ---- reuse decision --------------------------------------------------------------- */

static struct weir_cache_verdict decide(const char *resp_cc, int64_t life, const char *req_cc,
                                        int64_t elapsed)
{
    struct weir_cc rcc = cc_of(resp_cc), qcc = cc_of(req_cc);
    struct weir_cache_times t = {T0, T0, T0, 0};
    struct weir_cache_verdict v;
    weir_cache_decide(&rcc, life, &t, &qcc, T0 + elapsed, &v);
    return v;
}

static void test_decide_fresh_stale(void **state)
{
    struct weir_cache_verdict v = decide("max-age=60", 60, "", 10);
    assert_int_equal(v.use, WEIR_USE_FRESH);
    assert_int_equal(v.age, 10);
    assert_int_equal(v.ttl, 50);
    v = decide("max-age=60", 60, "", 60); /* age == lifetime: stale */
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    assert_int_equal(v.stale_if_error, 0);
    v = decide("max-age=60", 60, "", 59);
    assert_int_equal(v.use, WEIR_USE_FRESH);
    v = decide("max-age=0", 0, "", 0);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
}

static void test_decide_request(void **state)
{
    /* request no-cache, max-age, min-fresh */
    assert_int_equal(decide("max-age=60", 60, "no-cache", 1).use, WEIR_USE_REVALIDATE);
    /* request no-store: forwarded, even with max-stale or a fresh entry */
    assert_int_equal(decide("max-age=60", 60, "no-store", 1).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "no-store, max-stale", 100).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "max-stale", 100).use, WEIR_USE_STALE);
    assert_int_equal(decide("max-age=60", 60, "max-age=5", 10).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "max-age=10", 10).use, WEIR_USE_FRESH);
    assert_int_equal(decide("max-age=60", 60, "max-age=bad", 1).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "min-fresh=30", 40).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "min-fresh=30", 30).use, WEIR_USE_FRESH);
    /* max-stale */
    assert_int_equal(decide("max-age=60", 60, "max-stale=10", 65).use, WEIR_USE_STALE);
    assert_int_equal(decide("max-age=60", 60, "max-stale=10", 71).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60", 60, "max-stale", 100000).use, WEIR_USE_STALE);
    assert_int_equal(decide("max-age=60, must-revalidate", 60, "max-stale", 61).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("max-age=60, proxy-revalidate", 60, "max-stale", 61).use, WEIR_USE_REVALIDATE);
    assert_int_equal(decide("s-maxage=60", 60, "max-stale", 61).use, WEIR_USE_REVALIDATE);
    /* fresh but max-age in the request allows it; max-stale does not make a young response worse */
    assert_int_equal(decide("max-age=60", 60, "max-stale=5", 10).use, WEIR_USE_FRESH);
}

static void test_decide_no_cache_response(void **state)
{
    struct weir_cache_verdict v = decide("no-cache, max-age=60", 60, "", 1);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    assert_int_equal(v.stale_if_error, 0);
    assert_int_equal(decide("no-cache=\"set-cookie\", max-age=60", 60, "", 1).use, WEIR_USE_REVALIDATE);
}

static void test_decide_swr_sie(void **state)
{
    struct weir_cache_verdict v = decide("max-age=60, stale-while-revalidate=30", 60, "", 80);
    assert_int_equal(v.use, WEIR_USE_STALE_REVALIDATE);
    assert_int_equal(v.ttl, -20);
    v = decide("max-age=60, stale-while-revalidate=30", 60, "", 91);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    v = decide("max-age=60, stale-while-revalidate=30, must-revalidate", 60, "", 61);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    /* a request max-age overrides the response's stale window */
    v = decide("max-age=60, stale-while-revalidate=30", 60, "max-age=60", 70);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);

    v = decide("max-age=60, stale-if-error=100", 60, "", 150);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    assert_int_equal(v.stale_if_error, 1);
    v = decide("max-age=60, stale-if-error=100", 60, "", 161);
    assert_int_equal(v.stale_if_error, 0);
    v = decide("max-age=60, stale-if-error=100, must-revalidate", 60, "", 70);
    assert_int_equal(v.stale_if_error, 0);
    /* request stale-if-error (RFC 5861 §4) */
    v = decide("max-age=60", 60, "stale-if-error=20", 75);
    assert_int_equal(v.stale_if_error, 1);
    v = decide("max-age=60", 60, "", 75);
    assert_int_equal(v.stale_if_error, 0);
    /* a fresh response may always be served when the origin fails */
    v = decide("max-age=60", 60, "no-cache", 10);
    assert_int_equal(v.use, WEIR_USE_REVALIDATE);
    assert_int_equal(v.stale_if_error, 1);
}

static void test_keep_seconds(void **state)
{
    struct weir_cc cc = cc_of("max-age=60, stale-while-revalidate=30, stale-if-error=300");
    struct weir_cache_times t = {T0, T0, T0, 0};
    assert_int_equal(weir_cache_keep_seconds(&cc, 60, &t, 0), 360);
    assert_int_equal(weir_cache_keep_seconds(&cc, 60, &t, 1), 360 + WEIR_CACHE_KEEP_VALIDATABLE);
    t.age_value = 50;
    assert_int_equal(weir_cache_keep_seconds(&cc, 60, &t, 0), 310);
    cc = cc_of("max-age=60, stale-if-error=300, must-revalidate");
    t.age_value = 0;
    assert_int_equal(weir_cache_keep_seconds(&cc, 60, &t, 0), 60);
    cc = cc_of("max-age=0");
    assert_int_equal(weir_cache_keep_seconds(&cc, 0, &t, 0), 1);
}

/* ---- Vary ------------------------------------------------------------------------- */

static void test_vary_names(void **state)
{
    int star;
    struct hs r = hdrs("Vary: Accept-Encoding, user-agent", "vary: ACCEPT-encoding,Accept-Language", NULL);
    char *n = weir_cache_vary_names(r.h, r.n, &star);
    assert_string_equal(n, "accept-encoding,accept-language,user-agent");
    assert_int_equal(star, 0);
    free(n);
    r = hdrs("Vary: *", NULL);
    n = weir_cache_vary_names(r.h, r.n, &star);
    assert_int_equal(star, 1);
    free(n);
    r = hdrs("Content-Type: text/plain", NULL);
    n = weir_cache_vary_names(r.h, r.n, &star);
    assert_string_equal(n, "");
    free(n);
    r = hdrs("Vary: ,, ,", NULL);
    n = weir_cache_vary_names(r.h, r.n, &star);
    assert_string_equal(n, "");
    free(n);
}

static int vary_same(const char *names, struct hs *a, struct hs *b)
{
    size_t la, lb;
    char *va = weir_cache_vary_values(names, a->h, a->n, &la);
    char *vb = weir_cache_vary_values(names, b->h, b->n, &lb);
    int same = la == lb && memcmp(va, vb, la) == 0;
    free(va);
    free(vb);
    return same;
}

static void test_vary_match(void **state)
{
    struct hs a = hdrs("Accept-Encoding: gzip, br", "Accept-Language: en", NULL);
    struct hs b = hdrs("accept-encoding:   GZIP ,br", "ACCEPT-LANGUAGE: EN", NULL);
    struct hs c = hdrs("Accept-Encoding: gzip", "Accept-Encoding: br", "Accept-Language: en", NULL);
    struct hs d = hdrs("Accept-Encoding: br, gzip", NULL);
    struct hs e = hdrs(NULL);
    struct hs f = hdrs("Accept-Encoding: ", NULL);
    struct hs g = hdrs("X-Thing: A", NULL);
    struct hs h = hdrs("X-Thing: a", NULL);

    assert_true(vary_same("accept-encoding,accept-language", &a, &b));
    assert_true(vary_same("accept-encoding,accept-language", &a, &c)); /* lines combine */
    assert_false(vary_same("accept-encoding", &a, &d));                /* order kept */
    assert_false(vary_same("accept-encoding", &e, &f));                /* absent differs from empty */
    assert_true(vary_same("accept-encoding", &e, &g));
    assert_false(vary_same("x-thing", &g, &h)); /* unknown fields compare case-sensitively */
    assert_true(vary_same("", &a, &e));
    assert_false(vary_same("accept-encoding,accept-language", &a, &d));
}

static void test_url_key(void **state)
{
    char *u = weir_cache_url("http", "Example.COM:80", 14, "/a?b=C", 6);
    char *k;
    assert_string_equal(u, "http://example.com/a?b=C");
    k = weir_cache_key(WEIR_HTTP_HEAD, u);
    assert_string_equal(k, "GET http://example.com/a?b=C");
    free(k);
    k = weir_cache_key(WEIR_HTTP_GET, u);
    assert_string_equal(k, "GET http://example.com/a?b=C");
    free(k);
    assert_null(weir_cache_key(WEIR_HTTP_POST, u));
    free(u);
    u = weir_cache_url("https", "[::1]:443", 9, "/", 1);
    assert_string_equal(u, "https://[::1]/");
    free(u);
    u = weir_cache_url("http", "[::1]:8080", 10, "", 0);
    assert_string_equal(u, "http://[::1]:8080/");
    free(u);
    u = weir_cache_url("https", "h:80", 4, "/x", 2);
    assert_string_equal(u, "https://h:80/x");
    free(u);
    u = weir_cache_url("http", "h.example.", 10, "/x", 2);
    assert_string_equal(u, "http://h.example./x"); /* the dot kept: another Host for the backend */
    free(u);
}

/* ---- conditionals ----------------------------------------------------------------- */

static int cond(int method, struct hs *req, struct hs *stored)
{
    return weir_cache_conditional(method, req->h, req->n, stored->h, stored->n, T0);
}

static void test_etag_match(void **state)
{
    assert_true(weir_cache_etag_match("\"a\"", 3, "\"a\"", 3, 0));
    assert_true(weir_cache_etag_match("W/\"a\"", 5, "\"a\"", 3, 1));
    assert_false(weir_cache_etag_match("W/\"a\"", 5, "\"a\"", 3, 0));
    assert_false(weir_cache_etag_match("\"a\"", 3, "W/\"a\"", 5, 0));
    assert_true(weir_cache_etag_match("\"x\", \"y\" ,W/\"a\"", 16, "W/\"a\"", 5, 1));
    assert_true(weir_cache_etag_match(" * ", 3, "\"q\"", 3, 0));
    assert_true(weir_cache_etag_match("*", 1, NULL, 0, 0));
    assert_false(weir_cache_etag_match("\"a\"", 3, NULL, 0, 1));
    assert_false(weir_cache_etag_match("a", 1, "\"a\"", 3, 1));
    assert_false(weir_cache_etag_match("\"a", 2, "\"a\"", 3, 1));
    assert_false(weir_cache_etag_match("\"ab\"", 4, "\"a\"", 3, 1));
}

static void test_conditional(void **state)
{
    struct hs st = hdrs("ETag: W/\"v1\"", "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT",
                        "Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    struct hs none = hdrs(NULL), q;

    assert_int_equal(cond(WEIR_HTTP_GET, &none, &st), WEIR_COND_NONE);
    q = hdrs("If-None-Match: \"v1\"", NULL); /* weak comparison */
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_NOT_MODIFIED);
    assert_int_equal(cond(WEIR_HTTP_HEAD, &q, &st), WEIR_COND_NOT_MODIFIED);
    q = hdrs("If-None-Match: \"v2\", \"v3\"", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-None-Match: *", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_NOT_MODIFIED);
    /* If-None-Match wins over If-Modified-Since */
    q = hdrs("If-None-Match: \"other\"", "If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_NOT_MODIFIED);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 07:59:59 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-Modified-Since: not a date", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 09:00:00 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_POST, &q, &st), WEIR_COND_PASS);
    /* If-Match is strong: a weak stored tag never matches */
    q = hdrs("If-Match: \"v1\"", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_FAILED);
    q = hdrs("If-Match: *", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-Unmodified-Since: Sun, 06 Nov 1994 07:00:00 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_FAILED);
    q = hdrs("If-Unmodified-Since: Sun, 06 Nov 1994 08:00:00 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);

    /* no Last-Modified: Date is the reference, then the response time */
    st = hdrs("Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_NOT_MODIFIED);
    q = hdrs("If-None-Match: \"v1\"", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS); /* no ETag stored */
    st = hdrs(NULL);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_PASS);
    q = hdrs("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    assert_int_equal(cond(WEIR_HTTP_GET, &q, &st), WEIR_COND_NOT_MODIFIED);

    assert_true(weir_cache_304_keeps("ETag", 4));
    assert_true(weir_cache_304_keeps("cache-control", 13));
    assert_false(weir_cache_304_keeps("Content-Length", 14));
    assert_false(weir_cache_304_keeps("Content-Type", 12));
}

static void test_update_headers(void **state)
{
    struct hs st = hdrs("Content-Type: text/plain", "Cache-Control: max-age=10", "X-A: 1", "X-A: 2",
                        "Content-Length: 5", "Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    struct hs fr = hdrs("Cache-Control: max-age=60", "x-a: 3", "Date: Sun, 06 Nov 1994 09:49:37 GMT",
                        "Content-Length: 0", "Connection: close", "X-New: y", NULL);
    struct weir_http_header out[16];
    int n = weir_cache_update_headers(st.h, st.n, fr.h, fr.n, out, 16);

    assert_int_equal(n, 6);
    assert_memory_equal(out[0].value, "text/plain", 10);
    assert_memory_equal(out[1].value, "5", 1); /* Content-Length kept from the stored response */
    assert_memory_equal(out[1].name, "Content-Length", 14);
    assert_memory_equal(out[2].value, "max-age=60", 10);
    assert_memory_equal(out[3].value, "3", 1); /* both X-A lines replaced by one */
    assert_memory_equal(out[4].value, "Sun, 06 Nov 1994 09:49:37 GMT", 29);
    assert_memory_equal(out[5].name, "X-New", 5);
    assert_int_equal(weir_cache_update_headers(st.h, st.n, fr.h, fr.n, out, 3), -1);
}

static void test_304_selects(void **state)
{
    struct hs st = hdrs("ETag: \"v1\"", "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT", NULL);
    struct hs f = hdrs("ETag: \"v1\"", NULL);
    assert_true(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    f = hdrs("ETag: W/\"v1\"", NULL);
    assert_true(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    f = hdrs("ETag: \"v2\"", NULL);
    assert_false(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    f = hdrs("Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT", NULL);
    assert_true(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    f = hdrs("Last-Modified: Sun, 06 Nov 1994 08:00:01 GMT", NULL);
    assert_false(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    f = hdrs("Cache-Control: max-age=5", NULL);
    assert_true(weir_cache_304_selects(st.h, st.n, f.h, f.n));
    st = hdrs("Content-Type: x/y", NULL);
    f = hdrs("ETag: \"v1\"", NULL);
    assert_false(weir_cache_304_selects(st.h, st.n, f.h, f.n));
}

/* ---- ranges --------------------------------------------------------------------- */

static int range(const char *rh, uint64_t len, struct weir_range *out, size_t *n)
{
    struct hs q = hdrs(rh, NULL);
    struct hs st = hdrs("ETag: \"s\"", NULL);
    return weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, len, out, n);
}

static void test_range(void **state)
{
    struct weir_range r[WEIR_RANGE_MAX];
    size_t n;
    struct hs q, st;

    assert_int_equal(range("Range: bytes=0-99", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 99);
    assert_int_equal(range("Range: bytes=900-", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(r[0].first, 900);
    assert_int_equal(r[0].last, 999);
    assert_int_equal(range("Range: bytes=-100", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(r[0].first, 900);
    assert_int_equal(range("Range: bytes=-5000", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 999);
    assert_int_equal(range("Range: bytes=500-5000", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(r[0].last, 999);
    assert_int_equal(range("Range: BYTES=0-0", 1000, r, &n), WEIR_RANGE_SINGLE);
    /* multiple */
    assert_int_equal(range("Range: bytes=500-599, 0-99", 1000, r, &n), WEIR_RANGE_MULTI);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[1].first, 500);
    /* overlapping and adjacent ranges merge */
    assert_int_equal(range("Range: bytes=0-99,50-150,151-200", 1000, r, &n), WEIR_RANGE_SINGLE);
    assert_int_equal(r[0].last, 200);
    /* one unsatisfiable among satisfiable ones is dropped */
    assert_int_equal(range("Range: bytes=0-9, 5000-6000", 1000, r, &n), WEIR_RANGE_SINGLE);
    /* unsatisfiable */
    assert_int_equal(range("Range: bytes=1000-", 1000, r, &n), WEIR_RANGE_UNSATISFIABLE);
    assert_int_equal(range("Range: bytes=-0", 1000, r, &n), WEIR_RANGE_UNSATISFIABLE);
    assert_int_equal(range("Range: bytes=0-", 0, r, &n), WEIR_RANGE_UNSATISFIABLE);
    /* ignored: other unit, syntax errors, too many ranges */
    assert_int_equal(range("Range: items=0-5", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=5-1", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=a-b", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=5", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes 0-5", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=99999999999999999999-", 1000, r, &n), WEIR_RANGE_NONE);
    assert_int_equal(range("Range: bytes=0-1,2-3,4-5,6-7,8-9,10-11,12-13,14-15,16-17,18-19,20-21,22-23,24-25,"
                           "26-27,28-29,30-31,32-33",
                           1000, r, &n),
                     WEIR_RANGE_NONE);
    /* not for HEAD */
    q = hdrs("Range: bytes=0-1", NULL);
    st = hdrs(NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_HEAD, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_NONE);
}

static void test_if_range(void **state)
{
    struct weir_range r[WEIR_RANGE_MAX];
    size_t n;
    struct hs st = hdrs("ETag: \"s\"", "Last-Modified: Sun, 06 Nov 1994 08:00:00 GMT",
                        "Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    struct hs q = hdrs("Range: bytes=0-1", "If-Range: \"s\"", NULL);

    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_SINGLE);
    q = hdrs("Range: bytes=0-1", "If-Range: \"t\"", NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_NONE);
    q = hdrs("Range: bytes=0-1", "If-Range: W/\"s\"", NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_NONE);
    q = hdrs("Range: bytes=0-1", "If-Range: Sun, 06 Nov 1994 08:00:00 GMT", NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_SINGLE);
    q = hdrs("Range: bytes=0-1", "If-Range: Sun, 06 Nov 1994 07:00:00 GMT", NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_NONE);
    /* Last-Modified equal to Date: a weak validator, the date never matches */
    st = hdrs("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT", "Date: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    q = hdrs("Range: bytes=0-1", "If-Range: Sun, 06 Nov 1994 08:49:37 GMT", NULL);
    assert_int_equal(weir_cache_range(WEIR_HTTP_GET, q.h, q.n, st.h, st.n, 10, r, &n), WEIR_RANGE_NONE);
}

/* ---- invalidation ------------------------------------------------------------------ */

static void test_invalidations(void **state)
{
    char *out[3];
    struct hs r = hdrs("Location: /b?x=1", "Content-Location: http://EXAMPLE.com:80/c#frag", NULL);
    int n = weir_cache_invalidations(WEIR_HTTP_POST, 201, "http://example.com/a/x", r.h, r.n, out);

    assert_int_equal(n, 3);
    assert_string_equal(out[0], "http://example.com/a/x");
    assert_string_equal(out[1], "http://example.com/b?x=1");
    assert_string_equal(out[2], "http://example.com/c");
    while (n > 0)
        free(out[--n]);
    /* other hosts are not invalidated; relative references resolve against the target */
    r = hdrs("Location: http://other.example/b", "Content-Location: d", NULL);
    n = weir_cache_invalidations(WEIR_HTTP_PUT, 204, "http://example.com/a/x?q", r.h, r.n, out);
    assert_int_equal(n, 2);
    assert_string_equal(out[1], "http://example.com/a/d");
    while (n > 0)
        free(out[--n]);
    r = hdrs("Location: https://example.com/b", "Content-Location: //example.com/e", NULL);
    n = weir_cache_invalidations(WEIR_HTTP_DELETE, 302, "http://example.com/a", r.h, r.n, out);
    assert_int_equal(n, 2);
    assert_string_equal(out[1], "http://example.com/e");
    while (n > 0)
        free(out[--n]);
    /* a reference with bytes no URI has is not followed */
    r = hdrs("Location: /a b", "Content-Location: /\x01", NULL);
    n = weir_cache_invalidations(WEIR_HTTP_POST, 200, "http://example.com/a", r.h, r.n, out);
    assert_int_equal(n, 1);
    free(out[0]);
    /* duplicates collapse */
    r = hdrs("Location: /a", NULL);
    n = weir_cache_invalidations(WEIR_HTTP_OTHER, 200, "http://example.com/a", r.h, r.n, out);
    assert_int_equal(n, 1);
    free(out[0]);
    /* safe methods and error statuses invalidate nothing */
    assert_int_equal(weir_cache_invalidations(WEIR_HTTP_GET, 200, "http://e/a", r.h, r.n, out), 0);
    assert_int_equal(weir_cache_invalidations(WEIR_HTTP_OPTIONS, 200, "http://e/a", r.h, r.n, out), 0);
    assert_int_equal(weir_cache_invalidations(WEIR_HTTP_POST, 500, "http://e/a", r.h, r.n, out), 0);
    assert_int_equal(weir_cache_invalidations(WEIR_HTTP_POST, 404, "http://e/a", r.h, r.n, out), 0);
    assert_true(weir_http_method_safe(WEIR_HTTP_TRACE));
    assert_false(weir_http_method_safe(WEIR_HTTP_PATCH));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_basic),
        cmocka_unit_test(test_cc_case_and_spaces),
        cmocka_unit_test(test_cc_quoted),
        cmocka_unit_test(test_cc_malformed),
        cmocka_unit_test(test_cc_duplicates),
        cmocka_unit_test(test_cc_big_numbers),
        cmocka_unit_test(test_cc_request),
        cmocka_unit_test(test_cdn_cache_control),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_date_rfc850_years),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_storable),
        cmocka_unit_test(test_worth_storing),
        cmocka_unit_test(test_storable_authorization),
        cmocka_unit_test(test_storable_cookie_vary),
        cmocka_unit_test(test_unstored_headers),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_heuristic),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_decide_fresh_stale),
        cmocka_unit_test(test_decide_request),
        cmocka_unit_test(test_decide_no_cache_response),
        cmocka_unit_test(test_decide_swr_sie),
        cmocka_unit_test(test_keep_seconds),
        cmocka_unit_test(test_vary_names),
        cmocka_unit_test(test_vary_match),
        cmocka_unit_test(test_url_key),
        cmocka_unit_test(test_etag_match),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_update_headers),
        cmocka_unit_test(test_304_selects),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_invalidations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
