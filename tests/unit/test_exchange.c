/*
 * test_exchange.c - the response filter contract of exchange.c (what the
 * cache relies on): every attached filter gets exactly one of on_end /
 * on_abort; WEIR_DECLINED from on_head or on_data detaches the filter and
 * calls its on_abort at once; data reaches the filters in order; the
 * attach limit is enforced.
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

#include "../../src/session_int.h"

struct rec {
    int heads, ends, aborts;
    char data[256];
    size_t n;
    int decline_head, decline_after; /* decline on_data once n reaches this (0 = never) */
};

static int f_head(struct weir_exchange *x, void *d, const struct weir_http_msg *m)
{
    struct rec *r = d;
    (void)x;
    (void)m;
    r->heads++;
    return r->decline_head ? WEIR_DECLINED : WEIR_OK;
}

static int f_data(struct weir_exchange *x, void *d, const char *p, size_t n)
{
    struct rec *r = d;
    (void)x;
    memcpy(r->data + r->n, p, n);
    r->n += n;
    return r->decline_after && r->n >= (size_t)r->decline_after ? WEIR_DECLINED : WEIR_OK;
}

static void f_end(struct weir_exchange *x, void *d)
{
    (void)x;
    ((struct rec *)d)->ends++;
}

static void f_abort(struct weir_exchange *x, void *d)
{
    (void)x;
    ((struct rec *)d)->aborts++;
}

static const struct weir_resp_filter filt = {"test", f_head, f_data, f_end, f_abort, NULL};

static struct weir_session *mk(void)
{
    struct weir_session *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    assert_int_equal(weir_x_begin(s), WEIR_OK);
    s->gauge = -1;
    return s;
}

static void done(struct weir_session *s)
{
    weir_x_reset(s); /* aborts what is still attached, frees the exchange */
    assert_null(s->x);
    free(s);
}

static void test_end_once(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct rec a = {0}, b = {0};
    assert_int_equal(weir_exchange_add_filter((struct weir_exchange *)s, &filt, &a), WEIR_OK);
    assert_int_equal(weir_exchange_add_filter((struct weir_exchange *)s, &filt, &b), WEIR_OK);
    weir_x_filters_head(s, NULL);
    weir_x_filters_data(s, "hello ", 6);
    weir_x_filters_data(s, "world", 5);
    weir_x_filters_end(s, 1);
    weir_x_filters_end(s, 0); /* nothing left attached: no second call */
    done(s);
    for (int i = 0; i < 2; i++) {
        struct rec *r = i ? &b : &a;
        assert_int_equal(r->heads, 1);
        assert_int_equal(r->ends, 1);
        assert_int_equal(r->aborts, 0);
        assert_int_equal(r->n, 11);
        assert_memory_equal(r->data, "hello world", 11);
    }
}

static void test_abort_on_reset(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct rec a = {0};
    weir_exchange_add_filter((struct weir_exchange *)s, &filt, &a);
    weir_x_filters_head(s, NULL);
    weir_x_filters_data(s, "abc", 3);
    done(s); /* the exchange ended without a complete body */
    assert_int_equal(a.ends, 0);
    assert_int_equal(a.aborts, 1);
}

static void test_decline_detaches(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct rec a = {.decline_after = 4}, b = {0}, c = {.decline_head = 1};
    weir_exchange_add_filter((struct weir_exchange *)s, &filt, &a);
    weir_exchange_add_filter((struct weir_exchange *)s, &filt, &b);
    weir_exchange_add_filter((struct weir_exchange *)s, &filt, &c);
    weir_x_filters_head(s, NULL);
    assert_int_equal(c.aborts, 1); /* declined the head: aborted at once */
    weir_x_filters_data(s, "ab", 2);
    weir_x_filters_data(s, "cd", 2);
    assert_int_equal(a.aborts, 1); /* too big to keep: aborted at once */
    weir_x_filters_data(s, "ef", 2);
    weir_x_filters_end(s, 1);
    done(s);
    assert_int_equal(a.n, 4);
    assert_int_equal(a.ends, 0);
    assert_int_equal(b.n, 6);
    assert_int_equal(b.ends, 1);
    assert_int_equal(b.aborts, 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.ends + c.aborts, 1);
}

static void test_attach_limit(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct rec r[WEIR_EXCHANGE_MAX_FILTERS + 1];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < WEIR_EXCHANGE_MAX_FILTERS; i++)
        assert_int_equal(weir_exchange_add_filter((struct weir_exchange *)s, &filt, &r[i]), WEIR_OK);
    assert_int_equal(
        weir_exchange_add_filter((struct weir_exchange *)s, &filt, &r[WEIR_EXCHANGE_MAX_FILTERS]),
        WEIR_ERROR);
    done(s);
    for (int i = 0; i < WEIR_EXCHANGE_MAX_FILTERS; i++)
        assert_int_equal(r[i].aborts, 1);
    assert_int_equal(r[WEIR_EXCHANGE_MAX_FILTERS].aborts, 0); /* never attached: never called */
}

static const char *add_lines[4];
static int add_rc[4];

static int f_head_add(struct weir_exchange *x, void *d, const struct weir_http_msg *m)
{
    (void)d;
    (void)m;
    for (int i = 0; i < 4 && add_lines[i] != NULL; i++)
        add_rc[i] = weir_exchange_add_response_field(x, add_lines[i], strlen(add_lines[i]));
    return WEIR_DECLINED;
}

static void f_noop(struct weir_exchange *x, void *d)
{
    (void)x;
    (void)d;
}

static const struct weir_resp_filter filt_add = {"add", f_head_add, NULL, f_noop, f_noop, NULL};

/* Fields may be added during on_head only, well-formed lines only, kept
 * in call order for the head the session sends. */
static void test_add_response_field(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct weir_exchange *x = (struct weir_exchange *)s;
    add_lines[0] = "Cache-Status: weir; fwd=miss\r\n";
    add_lines[1] = "Bad Name: x\r\n";
    add_lines[2] = "X-Split: a\r\nInjected: b\r\n";
    add_lines[3] = "X-Two: 2\r\n";
    assert_int_equal(weir_exchange_add_response_field(x, "X-Early: 1\r\n", 12), WEIR_ERROR);
    weir_exchange_add_filter(x, &filt_add, NULL);
    weir_x_filters_head(s, NULL);
    assert_int_equal(add_rc[0], WEIR_OK);
    assert_int_equal(add_rc[1], WEIR_ERROR);
    assert_int_equal(add_rc[2], WEIR_ERROR);
    assert_int_equal(add_rc[3], WEIR_OK);
    assert_int_equal(weir_exchange_add_response_field(x, "X-Late: 1\r\n", 11), WEIR_ERROR);
    assert_int_equal(weir_exchange_add_response_field(x, "X-NoCrlf: 1", 11), WEIR_ERROR);
    const char want[] = "Cache-Status: weir; fwd=miss\r\nX-Two: 2\r\n";
    assert_int_equal(s->x->resp_fields.len, sizeof(want) - 1);
    assert_memory_equal(s->x->resp_fields.p, want, sizeof(want) - 1);
    done(s);
}

/* The upstream request head: every field of that name replaced by one,
 * or removed; bad names and values refused; the head keeps its end. */
static void test_set_request_field(void **st)
{
    (void)st;
    struct weir_session *s = mk();
    struct weir_exchange *x = (struct weir_exchange *)s;
    const char head[] = "GET /a HTTP/1.1\r\nHost: h\r\nif-none-match: \"x\"\r\nAccept: */*\r\n"
                        "IF-NONE-MATCH: \"y\"\r\nRange: bytes=0-1\r\n\r\n";
    s->x->uphead = strdup(head);
    s->x->uphead_len = s->x->uphead_cap = sizeof(head) - 1;
    assert_int_equal(weir_exchange_set_request_field(x, "If-None-Match", "\"v1\""), WEIR_OK);
    assert_int_equal(weir_exchange_set_request_field(x, "Range", NULL), WEIR_OK);
    assert_int_equal(weir_exchange_set_request_field(x, "If-Modified-Since", NULL), WEIR_OK); /* absent */
    assert_int_equal(weir_exchange_set_request_field(x, "Bad Name", "v"), WEIR_ERROR);
    assert_int_equal(weir_exchange_set_request_field(x, "X-Split", "a\r\nInjected: b"), WEIR_ERROR);
    const char want[] = "GET /a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nIf-None-Match: \"v1\"\r\n\r\n";
    assert_int_equal(s->x->uphead_len, sizeof(want) - 1);
    assert_memory_equal(s->x->uphead, want, sizeof(want) - 1);
    s->x->up_ready = 1; /* the request went upstream: too late */
    assert_int_equal(weir_exchange_set_request_field(x, "X-Late", "1"), WEIR_ERROR);
    done(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_end_once),       cmocka_unit_test(test_add_response_field),
        cmocka_unit_test(test_abort_on_reset), cmocka_unit_test(test_decline_detaches),
        cmocka_unit_test(test_attach_limit),   cmocka_unit_test(test_set_request_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
