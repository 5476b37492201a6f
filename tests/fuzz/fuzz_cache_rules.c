/*
 * fuzz_cache_rules.c - libFuzzer harness for the cache's parsers of
 * untrusted text (src/cache_rules.c, src/cache_match.c): Cache-Control,
 * CDN-Cache-Control (Structured Fields), HTTP dates, Vary, entity-tag
 * lists, Range and Location resolution.
 *
 * The input is parsed whole by each parser (as an exact-size heap copy, so
 * ASan sees any read past it), and, split at its newlines, as a header
 * section given to the functions that take one. Invariants: numbers within
 * their documented ranges, a date that parses formats back to itself, Vary
 * values deterministic, ranges inside the object and ascending. A broken
 * invariant aborts.
 *
 * Build: scripts/fuzz (clang -fsanitize=fuzzer,address,undefined).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/cache_rules.h"

#define CHECK(x)                                                                                             \
    do {                                                                                                     \
        if (!(x)) {                                                                                          \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);                       \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static void check_num(int64_t v, int any_ok)
{
    CHECK(v == WEIR_CC_UNSET || (v >= 0 && v <= WEIR_CC_DELTA_MAX) || (any_ok && v == WEIR_CC_ANY));
}

static void check_cc(const struct weir_cc *cc)
{
    check_num(cc->max_age, 0);
    check_num(cc->s_maxage, 0);
    check_num(cc->max_stale, 1);
    check_num(cc->min_fresh, 0);
    check_num(cc->swr, 0);
    check_num(cc->sie, 0);
}

/* Split p[0..n) at '\n' into "name: value" headers (lines without a colon
 * become a header with an empty name). */
static size_t split(const char *p, size_t n, struct weir_http_header *h, size_t cap)
{
    size_t count = 0, s = 0, i;

    for (i = 0; i <= n && count < cap; i++) {
        if (i < n && p[i] != '\n')
            continue;
        {
            const char *line = p + s, *colon = memchr(line, ':', i - s);
            size_t ll = i - s;
            h[count].name = line;
            h[count].name_len = colon ? (size_t)(colon - line) : 0;
            h[count].value = colon ? colon + 1 : line;
            h[count].value_len = colon ? ll - h[count].name_len - 1 : ll;
            while (h[count].value_len > 0 && h[count].value[0] == ' ') {
                h[count].value++;
                h[count].value_len--;
            }
            h[count].flags = 0;
            count++;
        }
        s = i + 1;
    }
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);
    struct weir_cc cc;
    struct weir_http_header h[64];
    struct weir_range r[WEIR_RANGE_MAX];
    struct weir_cache_times t;
    struct weir_cache_verdict v;
    size_t nh, nr, i, l1, l2;
    int64_t d, life;
    int star, rc;
    char *names, *v1, *v2, *inv[3];

    CHECK(p != NULL);
    if (n)
        memcpy(p, data, n);

    weir_cc_init(&cc);
    weir_cc_parse(&cc, p, n);
    check_cc(&cc);
    if (weir_cc_parse_targeted(&cc, p, n) == 0)
        check_cc(&cc);

    d = weir_http_date_parse(p, n, 1700000000);
    CHECK(d >= -1);
    if (d > 0 && d < 253402300800LL) {
        char out[32];
        CHECK(weir_http_date_format(d, out) == 29);
        CHECK(weir_http_date_parse(out, 29, 0) == d);
    }

    weir_cache_etag_match(p, n, "\"abc\"", 5, 1);
    weir_cache_etag_match("\"abc\", W/\"x\"", 12, p, n, 0);

    nh = split(p, n, h, 64);
    weir_cc_response(&cc, h, nh);
    check_cc(&cc);
    weir_cc_request(&cc, h, nh);
    check_cc(&cc);
    weir_cache_times_init(&t, 1700000000, 1700000001, h, nh);
    CHECK(t.age_value >= 0 && t.age_value <= WEIR_CC_DELTA_MAX);
    weir_cc_response(&cc, h, nh);
    life = weir_cache_freshness(&cc, 200, h, nh, &t, NULL);
    CHECK(life >= 0);
    weir_cache_decide(&cc, life, &t, &cc, 1700000100, &v);
    CHECK(v.age >= 0);
    CHECK(weir_cache_keep_seconds(&cc, life, &t, 1) >= 1);
    rc = weir_cache_storable(WEIR_HTTP_GET, h, nh, 200, h, nh, &cc);
    CHECK(rc >= 0 && rc < WEIR_STORE_REASONS);
    rc = weir_cache_conditional(WEIR_HTTP_GET, h, nh, h, nh, 1700000000);
    CHECK(rc >= WEIR_COND_NONE && rc <= WEIR_COND_FAILED);

    names = weir_cache_vary_names(h, nh, &star);
    CHECK(names != NULL);
    v1 = weir_cache_vary_values(names, h, nh, &l1);
    v2 = weir_cache_vary_values(names, h, nh, &l2);
    CHECK(v1 != NULL && v2 != NULL && l1 == l2 && memcmp(v1, v2, l1) == 0);
    free(v1);
    free(v2);
    free(names);

    rc = weir_cache_range(WEIR_HTTP_GET, h, nh, h, nh, 1000, r, &nr);
    if (rc == WEIR_RANGE_SINGLE || rc == WEIR_RANGE_MULTI) {
        CHECK(nr >= 1 && nr <= WEIR_RANGE_MAX);
        CHECK(rc == WEIR_RANGE_SINGLE ? nr == 1 : nr > 1);
        for (i = 0; i < nr; i++) {
            CHECK(r[i].first <= r[i].last && r[i].last < 1000);
            CHECK(i == 0 || r[i].first > r[i - 1].last + 1);
        }
    }

    rc = weir_cache_invalidations(WEIR_HTTP_POST, 200, "http://example.com/a/b?c", h, nh, inv);
    CHECK(rc >= 1 && rc <= 3);
    for (i = 0; i < (size_t)rc; i++) {
        CHECK(strncmp(inv[i], "http://example.com/", 19) == 0);
        free(inv[i]);
    }

    {
        struct weir_http_header out[128];
        CHECK(weir_cache_update_headers(h, nh, h, nh, out, 128) >= 0);
    }
    free(p);
    return 0;
}
