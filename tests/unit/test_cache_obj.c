/*
 * test_cache_obj.c - stored objects (src/cache_obj.c): what is stored from a
 * response head, the body growing across chunks, the byte limit, readers
 * on another thread while the body grows, freshening by a 304, memory
 * accounting, and the L2 format (round trip; garbage, truncated, altered
 * and other-version values refused).
 */
#include "config.h"

#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "weir/cache_obj.h"

#define T0 784111777LL

struct hs {
    struct weir_http_header h[32];
    size_t n;
};

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
        while (*v == ' ')
            v++;
        s.h[s.n].name = l;
        s.h[s.n].name_len = (size_t)(colon - l);
        s.h[s.n].value = v;
        s.h[s.n].value_len = strlen(v);
        if (strncmp(l, "Connection", 10) == 0 || strncmp(l, "Transfer-Encoding", 17) == 0)
            s.h[s.n].flags = WEIR_HDR_F_HOP;
        s.n++;
    }
    va_end(ap);
    return s;
}

static struct weir_cache_obj *make(const char *extra, size_t max)
{
    struct hs req = hdrs("Accept-Encoding: gzip", "Host: example.com", NULL);
    struct hs resp =
        hdrs("Content-Type: text/plain", "Cache-Control: max-age=60, stale-if-error=30",
             "Date: Sun, 06 Nov 1994 08:49:37 GMT", "Connection: close", "Transfer-Encoding: chunked",
             "Vary: Accept-Encoding", "Surrogate-Key: product-42  cat-7", "ETag: \"v1\"",
             extra != NULL ? extra : "X-None: 1", NULL);
    return weir_cache_obj_new("GET http://example.com/a", "http://example.com/a", req.h, req.n, 200, resp.h,
                              resp.n, T0, T0 + 1, max);
}

static char *pattern(size_t n)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 131 + (i >> 8));
    return p;
}

/* Read the whole body through spans and compare. */
static void check_body(const struct weir_cache_obj *o, const char *want, size_t n)
{
    struct weir_cache_cursor cur = {NULL, 0};
    uint64_t len = weir_cache_obj_length(o), off = 0;
    const char *p;

    assert_int_equal(len, n);
    while (off < len) {
        size_t k = weir_cache_obj_span(o, &cur, off, len, &p);
        assert_true(k > 0);
        assert_memory_equal(p, want + off, k);
        off += k;
    }
    assert_int_equal(weir_cache_obj_span(o, &cur, len, len, &p), 0);
}

static void test_new_headers(void **state)
{
    struct weir_cache_obj *o = make("Content-Length: 0", 1 << 20);
    size_t i;

    assert_non_null(o);
    assert_int_equal(o->status, 200);
    for (i = 0; i < o->nheaders; i++) {
        assert_false(weir_span_ieq(o->headers[i].name, o->headers[i].name_len, "connection"));
        assert_false(weir_span_ieq(o->headers[i].name, o->headers[i].name_len, "transfer-encoding"));
        assert_false(weir_span_ieq(o->headers[i].name, o->headers[i].name_len, "content-length"));
    }
    assert_non_null(weir_cache_obj_header(o, "content-type"));
    assert_string_equal(o->vary_names, "accept-encoding");
    assert_int_equal(o->vary_values_len, strlen("=gzip") + 1);
    assert_string_equal(o->tags, "product-42  cat-7");
    assert_true(weir_cache_obj_has_tag(o, "product-42"));
    assert_true(weir_cache_obj_has_tag(o, "cat-7"));
    assert_false(weir_cache_obj_has_tag(o, "product-4"));
    assert_false(weir_cache_obj_has_tag(o, ""));
    assert_int_equal(o->lifetime, 60);
    assert_int_equal(o->times.date, T0);
    assert_int_equal(o->keep, 60 + 30 - 1 + WEIR_CACHE_KEEP_VALIDATABLE);
    assert_int_equal(o->expected_len, 0);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_COMPLETE);
    weir_cache_obj_release(o);
}

static void test_body_chunks(void **state)
{
    size_t n = 1000000, off = 0;
    char *data = pattern(n);
    struct weir_cache_obj *o = make(NULL, 8 << 20);
    size_t mem0 = atomic_load(&o->mem);

    /* uneven pieces so chunk boundaries fall everywhere */
    while (off < n) {
        size_t k = (off * 7 + 13) % 7001 + 1;
        if (k > n - off)
            k = n - off;
        assert_int_equal(weir_cache_obj_append(o, data + off, k), WEIR_OK);
        off += k;
    }
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    check_body(o, data, n);
    /* measured memory: at least the body, at most a few percent above it */
    assert_true(atomic_load(&o->mem) >= mem0 + n);
    assert_true(atomic_load(&o->mem) <= mem0 + n + n / 20);
    /* random access with a fresh cursor */
    {
        struct weir_cache_cursor cur = {NULL, 0};
        const char *p;
        size_t k = weir_cache_obj_span(o, &cur, 777777, n, &p);
        assert_true(k > 0);
        assert_memory_equal(p, data + 777777, k);
        k = weir_cache_obj_span(o, &cur, 5, n, &p); /* backwards: restarts at the head */
        assert_memory_equal(p, data + 5, k);
    }
    assert_int_equal(weir_cache_obj_append(o, "x", 1), WEIR_DECLINED); /* complete: no more */
    weir_cache_obj_release(o);
    free(data);
}

static void test_exact_length_one_chunk(void **state)
{
    char *data = pattern(1000);
    struct weir_cache_obj *o = make("Content-Length: 1000", 8 << 20);

    assert_int_equal(weir_cache_obj_append(o, data, 600), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data + 600, 400), WEIR_OK);
    assert_non_null(o->head);
    assert_ptr_equal(o->head, o->tail); /* sized from Content-Length */
    assert_int_equal(o->head->cap, 1000);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    check_body(o, data, 1000);
    weir_cache_obj_release(o);
    free(data);
}

static void test_limits(void **state)
{
    char *data = pattern(5000);
    struct weir_cache_obj *o = make(NULL, 4096);

    assert_int_equal(weir_cache_obj_append(o, data, 4000), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 97), WEIR_DECLINED);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    assert_int_equal(weir_cache_obj_length(o), 4000); /* readers keep what they had */
    assert_int_equal(weir_cache_obj_append(o, data, 1), WEIR_DECLINED);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_ERROR);
    weir_cache_obj_release(o);

    /* exactly at the limit is fine */
    o = make(NULL, 4096);
    assert_int_equal(weir_cache_obj_append(o, data, 4096), WEIR_OK);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    weir_cache_obj_release(o);

    /* announced too big: abandoned from the start */
    o = make("Content-Length: 5000", 4096);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_release(o);

    /* shorter than announced: not complete */
    o = make("Content-Length: 10", 4096);
    assert_int_equal(weir_cache_obj_append(o, data, 5), WEIR_OK);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_ERROR);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_release(o);

    /* longer than announced */
    o = make("Content-Length: 10", 4096);
    assert_int_equal(weir_cache_obj_append(o, data, 11), WEIR_DECLINED);
    weir_cache_obj_release(o);
    free(data);
}

static void test_refcount(void **state)
{
    struct weir_cache_obj *o = make(NULL, 4096);
    weir_cache_obj_retain(o);
    weir_cache_obj_retain(o);
    assert_int_equal(atomic_load(&o->refs), 3);
    weir_cache_obj_release(o);
    weir_cache_obj_release(o);
    assert_int_equal(atomic_load(&o->refs), 1);
    weir_cache_obj_release(o); /* freed: ASan/valgrind would see a leak otherwise */
    weir_cache_obj_release(NULL);
}

/* A reader on another thread follows the body while it grows. */
struct reader {
    struct weir_cache_obj *o;
    const char *want;
    size_t n;
    int ok;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct weir_cache_cursor cur = {NULL, 0};
    uint64_t off = 0;
    const char *p;

    r->ok = 1;
    for (;;) {
        uint64_t avail = weir_cache_obj_length(r->o);
        int st = weir_cache_obj_state(r->o);
        while (off < avail) {
            size_t k = weir_cache_obj_span(r->o, &cur, off, avail, &p);
            if (k == 0 || memcmp(p, r->want + off, k) != 0) {
                r->ok = 0;
                return NULL;
            }
            off += k;
        }
        if (st == WEIR_OBJ_COMPLETE && off == weir_cache_obj_length(r->o))
            break;
        sched_yield();
    }
    r->ok = off == r->n;
    return NULL;
}

static void test_concurrent_reader(void **state)
{
    size_t n = 3000000, off = 0;
    char *data = pattern(n);
    struct weir_cache_obj *o = make(NULL, 8 << 20);
    struct reader r[2] = {{o, data, n, 0}, {o, data, n, 0}};
    pthread_t t[2];

    for (int i = 0; i < 2; i++) {
        weir_cache_obj_retain(o);
        assert_int_equal(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
    }
    while (off < n) {
        size_t k = n - off < 1500 ? n - off : 1500;
        assert_int_equal(weir_cache_obj_append(o, data + off, k), WEIR_OK);
        off += k;
    }
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    /* drop the writer's reference before the readers finish: they hold theirs */
    weir_cache_obj_release(o);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_true(r[i].ok);
    }
    /* the readers' references */
    weir_cache_obj_release(o);
    weir_cache_obj_release(o);
    free(data);
}

/* ---- registered readers: a body passing through past max_bytes ---- */

static void count_wake(void *arg)
{
    (*(int *)arg)++;
}

/* Read all r can get now into got+*off. */
static long drain(struct weir_cache_obj *o, struct weir_cache_reader *r, char *got, size_t *off)
{
    long k, total = 0;
    while ((k = weir_cache_obj_read(o, r, got + *off, 1000)) > 0) {
        *off += (size_t)k;
        total += k;
    }
    return k < 0 ? -1 : total;
}

static void test_readers_without_readers_abandon(void **state)
{
    char *data = pattern(5000);
    struct weir_cache_obj *o = make(NULL, 4096);

    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 4000), WEIR_OK);
    /* nobody registered: too big is abandoned as before */
    assert_int_equal(weir_cache_obj_append(o, data, 200), WEIR_DECLINED);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_release(o);

    /* without reader support nobody may register */
    o = make(NULL, 4096);
    struct weir_cache_reader r = {0};
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_DECLINED);
    weir_cache_obj_release(o);
    free(data);
}

static void test_pass_through(void **state)
{
    size_t n = 100000, off = 0, roff = 0, max = 8192;
    char *data = pattern(n), *got = malloc(n);
    struct weir_cache_obj *o = make(NULL, max);
    struct weir_cache_reader r = {0}, late = {0};
    int w = 0;

    r.wake = count_wake;
    r.arg = &w;
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 6000), WEIR_OK);
    assert_int_equal(drain(o, &r, got, &roff), 6000);
    assert_int_equal(w, 0); /* growing: the flight wakes readers, not the object */
    /* past max_bytes with a reader: passing, not abandoned */
    assert_int_equal(weir_cache_obj_append(o, data + 6000, 4000), WEIR_AGAIN);
    off = 10000;
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_PASSING);
    assert_int_equal(w, 1);
    /* the reader follows in steps; the object drops what it read */
    while (off < n) {
        size_t k = n - off < 1500 ? n - off : 1500;
        assert_int_equal(weir_cache_obj_append(o, data + off, k), WEIR_AGAIN);
        off += k;
        assert_true(drain(o, &r, got, &roff) >= 0);
        /* it holds about max_bytes, never the whole body */
        assert_true(atomic_load(&o->mem) < 4 * max + 4096);
    }
    assert_true(weir_cache_obj_base(o) > 0);
    assert_true(weir_cache_obj_base(o) <= roff);
    /* a reader that comes after the prefix was dropped cannot start */
    assert_int_equal(weir_cache_obj_reader_add(o, &late), WEIR_DECLINED);
    /* the end: complete for the reader, but never storable */
    int before = w;
    assert_int_equal(weir_cache_obj_finish(o), WEIR_DECLINED);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_PASSED);
    assert_true(w > before);
    assert_true(drain(o, &r, got, &roff) >= 0);
    assert_int_equal(roff, n);
    assert_memory_equal(got, data, n);
    size_t len;
    assert_null(weir_cache_obj_encode(o, &len));
    assert_int_equal(weir_cache_obj_take_cut(o), 0);
    weir_cache_obj_reader_remove(o, &r);
    weir_cache_obj_reader_remove(o, &r); /* harmless twice */
    weir_cache_obj_release(o);
    free(data);
    free(got);
}

static void test_pass_cuts_a_reader_too_far_behind(void **state)
{
    size_t n = 200000, off = 0, fast_off = 0, max = 16384;
    char *data = pattern(n), *got = malloc(n), *slow_got = malloc(n);
    struct weir_cache_obj *o = make(NULL, max);
    struct weir_cache_reader fast = {0}, slow = {0};
    int fw = 0, sw = 0;
    size_t slow_off = 0;

    fast.wake = count_wake;
    fast.arg = &fw;
    slow.wake = count_wake;
    slow.arg = &sw;
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &fast), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &slow), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 10000), WEIR_OK);
    assert_int_equal(drain(o, &slow, slow_got, &slow_off), 10000); /* then it stops reading */
    off = 10000;
    while (off < n) {
        size_t k = n - off < 3000 ? n - off : 3000;
        assert_int_equal(weir_cache_obj_append(o, data + off, k), off + k > max ? WEIR_AGAIN : WEIR_OK);
        off += k;
        assert_true(drain(o, &fast, got, &fast_off) >= 0);
        if (off - 10000 <= max)
            assert_int_equal(slow.cut, 0);
        assert_true(atomic_load(&o->mem) < 4 * max + 4096);
    }
    /* more than max_bytes behind: cut once, counted once, told */
    assert_int_equal(slow.cut, 1);
    assert_int_equal(weir_cache_obj_take_cut(o), 1);
    assert_int_equal(weir_cache_obj_take_cut(o), 0);
    assert_true(sw > 0);
    assert_int_equal(weir_cache_obj_read(o, &slow, slow_got, 100), -1);
    weir_cache_obj_reader_remove(o, &slow); /* it was cut: harmless */
    assert_int_equal(weir_cache_obj_finish(o), WEIR_DECLINED);
    assert_true(drain(o, &fast, got, &fast_off) >= 0);
    assert_int_equal(fast_off, n);
    assert_memory_equal(got, data, n);
    weir_cache_obj_reader_remove(o, &fast);
    weir_cache_obj_release(o);
    free(data);
    free(got);
    free(slow_got);
}

static void test_pass_left_alone_or_abandoned(void **state)
{
    char *data = pattern(20000), *got = malloc(20000);
    struct weir_cache_obj *o = make(NULL, 4096);
    struct weir_cache_reader r = {0};
    int w = 0;
    size_t roff = 0;

    r.wake = count_wake;
    r.arg = &w;
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 3000), WEIR_OK);
    assert_int_equal(drain(o, &r, got, &roff), 3000);
    assert_int_equal(weir_cache_obj_append(o, data + 3000, 2000), WEIR_AGAIN);
    /* the writer breaks off: the reader is told, gets what there is, then the end */
    int before = w;
    weir_cache_obj_abandon(o);
    assert_true(w > before);
    assert_int_equal(drain(o, &r, got, &roff), 2000);
    assert_int_equal(roff, 5000);
    assert_memory_equal(got, data, 5000);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_reader_remove(o, &r);
    weir_cache_obj_release(o);

    /* a reader more than max_bytes behind the first passing append is cut
     * at once; with no reader left it is abandoned */
    o = make(NULL, 4096);
    memset(&r, 0, sizeof(r));
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 3000), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 3000), WEIR_DECLINED);
    assert_int_equal(r.cut, 1);
    assert_int_equal(weir_cache_obj_take_cut(o), 1);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_reader_remove(o, &r);
    weir_cache_obj_release(o);

    /* its last reader left: nothing to pass through to, abandoned */
    o = make(NULL, 4096);
    memset(&r, 0, sizeof(r));
    roff = 0;
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 3000), WEIR_OK);
    assert_int_equal(drain(o, &r, got, &roff), 3000);
    assert_int_equal(weir_cache_obj_append(o, data, 2000), WEIR_AGAIN);
    weir_cache_obj_reader_remove(o, &r);
    assert_int_equal(weir_cache_obj_append(o, data, 100), WEIR_DECLINED);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_ABANDONED);
    weir_cache_obj_release(o);

    /* a body of unknown length that fits: complete and storable, readers or not */
    o = make(NULL, 4096);
    memset(&r, 0, sizeof(r));
    roff = 0;
    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_reader_add(o, &r), WEIR_OK);
    assert_int_equal(weir_cache_obj_append(o, data, 4096), WEIR_OK);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_COMPLETE);
    assert_int_equal(drain(o, &r, got, &roff), 4096);
    check_body(o, data, 4096);
    weir_cache_obj_reader_remove(o, &r);
    weir_cache_obj_release(o);
    free(data);
    free(got);
}

/* Readers on other threads follow a passing body while the writer drops
 * what they read (run under TSan by scripts/test). */
struct preader {
    struct weir_cache_obj *o;
    struct weir_cache_reader r;
    const char *want;
    size_t n;
    int ok;
    _Atomic uint64_t seen; /* how far it read, for the writer to pace itself */
};

static void *preader_main(void *arg)
{
    struct preader *p = arg;
    char buf[4096];
    uint64_t off = 0;

    p->ok = 0;
    for (;;) {
        int st = weir_cache_obj_state(p->o);
        long k = weir_cache_obj_read(p->o, &p->r, buf, sizeof(buf));
        if (k < 0)
            return NULL;
        if (k > 0 && memcmp(buf, p->want + off, (size_t)k) != 0)
            return NULL;
        off += (uint64_t)k;
        atomic_store(&p->seen, off);
        if (k == 0 && st == WEIR_OBJ_PASSED && off == weir_cache_obj_length(p->o))
            break;
        if (k == 0)
            sched_yield();
    }
    p->ok = off == p->n;
    return NULL;
}

static void test_pass_concurrent_readers(void **state)
{
    /* max_bytes large enough that a reader on a loaded machine is never cut */
    size_t n = 4000000, off = 0, max = 1 << 20;
    char *data = pattern(n);
    struct weir_cache_obj *o = make(NULL, max);
    struct preader p[2];
    pthread_t t[2];

    assert_int_equal(weir_cache_obj_readers_enable(o), WEIR_OK);
    for (int i = 0; i < 2; i++) {
        memset(&p[i], 0, sizeof(p[i]));
        p[i].o = o;
        p[i].want = data;
        p[i].n = n;
        assert_int_equal(weir_cache_obj_reader_add(o, &p[i].r), WEIR_OK);
        weir_cache_obj_retain(o);
        assert_int_equal(pthread_create(&t[i], NULL, preader_main, &p[i]), 0);
    }
    while (off < n) {
        size_t k = n - off < 1500 ? n - off : 1500;
        int rc = weir_cache_obj_append(o, data + off, k);
        assert_true(rc == WEIR_OK || rc == WEIR_AGAIN);
        off += k;
        /* do not outrun the readers by max_bytes: they would be cut */
        while (off - atomic_load(&p[0].seen) > (uint64_t)max / 2 ||
               off - atomic_load(&p[1].seen) > (uint64_t)max / 2)
            sched_yield();
        /* what every reader read is dropped: it holds about max_bytes */
        assert_true(off - weir_cache_obj_base(o) <= (uint64_t)max + max / 4 + 1500);
    }
    assert_int_equal(weir_cache_obj_state(o), WEIR_OBJ_PASSING);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_DECLINED);
    weir_cache_obj_release(o);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_true(p[i].ok);
        weir_cache_obj_reader_remove(o, &p[i].r);
        weir_cache_obj_release(o);
    }
    free(data);
}

static void test_freshen(void **state)
{
    struct weir_cache_obj *o = make(NULL, 4096), *f;
    struct hs fresh = hdrs("Cache-Control: max-age=600", "Date: Sun, 06 Nov 1994 09:49:37 GMT",
                           "Connection: close", "Content-Length: 0", "X-New: 1", NULL);
    const struct weir_http_header *h;

    assert_int_equal(weir_cache_obj_append(o, "hello", 5), WEIR_OK);
    assert_null(weir_cache_obj_freshen(o, fresh.h, fresh.n, T0 + 3600, T0 + 3600)); /* not complete */
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    f = weir_cache_obj_freshen(o, fresh.h, fresh.n, T0 + 3600, T0 + 3601);
    assert_non_null(f);
    assert_int_equal(f->lifetime, 600);
    assert_int_equal(f->times.date, T0 + 3600);
    assert_int_equal(f->times.response_time, T0 + 3601);
    h = weir_cache_obj_header(f, "cache-control");
    assert_memory_equal(h->value, "max-age=600", 11);
    assert_non_null(weir_cache_obj_header(f, "x-new"));
    assert_non_null(weir_cache_obj_header(f, "etag"));
    assert_null(weir_cache_obj_header(f, "connection"));
    assert_null(weir_cache_obj_header(f, "content-length"));
    assert_string_equal(f->tags, o->tags);
    assert_string_equal(f->key, o->key);
    check_body(f, "hello", 5);
    /* the original is unchanged */
    assert_int_equal(o->lifetime, 60);
    h = weir_cache_obj_header(o, "cache-control");
    assert_memory_equal(h->value, "max-age=60, stale-if-error=30", 29);
    weir_cache_obj_release(f);
    weir_cache_obj_release(o);
}

/* ---- serialisation ------------------------------------------------------------ */

static struct weir_cache_obj *complete(size_t n)
{
    char *data = pattern(n);
    struct weir_cache_obj *o = make(NULL, 8 << 20);
    assert_int_equal(weir_cache_obj_append(o, data, n), WEIR_OK);
    assert_int_equal(weir_cache_obj_finish(o), WEIR_OK);
    free(data);
    return o;
}

static void test_encode_roundtrip(void **state)
{
    size_t sizes[] = {0, 1, 4095, 4096, 300000};
    for (size_t s = 0; s < WEIR_ARRAY_LEN(sizes); s++) {
        struct weir_cache_obj *o = complete(sizes[s]), *d;
        size_t len, len2, i;
        char *enc = weir_cache_obj_encode(o, &len), *enc2;
        char *data = pattern(sizes[s]);
        int err = -1;

        assert_non_null(enc);
        d = weir_cache_obj_decode(enc, len, 8 << 20, &err);
        assert_non_null(d);
        assert_int_equal(err, WEIR_DECODE_OK);
        assert_int_equal(d->status, o->status);
        assert_string_equal(d->key, o->key);
        assert_string_equal(d->url, o->url);
        assert_string_equal(d->vary_names, o->vary_names);
        assert_int_equal(d->vary_values_len, o->vary_values_len);
        assert_memory_equal(d->vary_values, o->vary_values, o->vary_values_len);
        assert_string_equal(d->tags, o->tags);
        assert_int_equal(d->nheaders, o->nheaders);
        for (i = 0; i < o->nheaders; i++) {
            assert_int_equal(d->headers[i].name_len, o->headers[i].name_len);
            assert_memory_equal(d->headers[i].value, o->headers[i].value, o->headers[i].value_len);
        }
        assert_int_equal(d->times.request_time, T0);
        assert_int_equal(d->times.response_time, T0 + 1);
        assert_int_equal(d->stored_time, o->stored_time);
        assert_int_equal(d->lifetime, o->lifetime);
        assert_int_equal(d->keep, o->keep);
        assert_int_equal(weir_cache_obj_state(d), WEIR_OBJ_COMPLETE);
        check_body(d, data, sizes[s]);
        /* canonical: encoding the decoded object gives the same bytes */
        enc2 = weir_cache_obj_encode(d, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(enc2, enc, len);
        free(enc2);
        free(enc);
        free(data);
        weir_cache_obj_release(d);
        weir_cache_obj_release(o);
    }
}

static void test_encode_incomplete(void **state)
{
    struct weir_cache_obj *o = make(NULL, 4096);
    size_t len;
    assert_null(weir_cache_obj_encode(o, &len));
    weir_cache_obj_release(o);
}

static void test_decode_rejects(void **state)
{
    struct weir_cache_obj *o = complete(100);
    size_t len, i;
    char *enc = weir_cache_obj_encode(o, &len);
    char *copy = malloc(len + 1);
    int err;

    /* garbage */
    assert_null(weir_cache_obj_decode("hello world, not ours", 21, 1 << 20, &err));
    assert_int_equal(err, WEIR_DECODE_MAGIC);
    assert_null(weir_cache_obj_decode("", 0, 1 << 20, &err));
    assert_int_equal(err, WEIR_DECODE_TRUNCATED);
    /* another version */
    memcpy(copy, enc, len);
    copy[4] = 2;
    assert_null(weir_cache_obj_decode(copy, len, 1 << 20, &err));
    assert_int_equal(err, WEIR_DECODE_VERSION);
    /* every truncation */
    for (i = 0; i < len; i++) {
        struct weir_cache_obj *d = weir_cache_obj_decode(enc, i, 1 << 20, &err);
        assert_null(d);
        assert_true(err == WEIR_DECODE_TRUNCATED || err == WEIR_DECODE_CHECKSUM);
    }
    /* a byte too many */
    memcpy(copy, enc, len);
    copy[len] = 0;
    assert_null(weir_cache_obj_decode(copy, len + 1, 1 << 20, &err));
    /* every single-byte change past the version is caught */
    for (i = 6; i < len; i++) {
        memcpy(copy, enc, len);
        copy[i] ^= 0x20;
        assert_null(weir_cache_obj_decode(copy, len, 1 << 20, &err));
        assert_int_not_equal(err, WEIR_DECODE_OK);
    }
    /* a body over the reader's limit */
    assert_null(weir_cache_obj_decode(enc, len, 99, &err));
    assert_int_equal(err, WEIR_DECODE_INVALID);
    assert_string_equal(weir_cache_decode_error_name(WEIR_DECODE_CHECKSUM), "checksum");
    assert_string_equal(weir_cache_decode_error_name(42), "unknown");
    free(copy);
    free(enc);
    weir_cache_obj_release(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_headers),
        cmocka_unit_test(test_body_chunks),
        cmocka_unit_test(test_exact_length_one_chunk),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_concurrent_reader),
        cmocka_unit_test(test_readers_without_readers_abandon),
        cmocka_unit_test(test_pass_through),
        cmocka_unit_test(test_pass_cuts_a_reader_too_far_behind),
        cmocka_unit_test(test_pass_left_alone_or_abandoned),
        cmocka_unit_test(test_pass_concurrent_readers),
        cmocka_unit_test(test_freshen),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_encode_incomplete),
        cmocka_unit_test(test_decode_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
