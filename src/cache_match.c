/*
 * cache_match.c - what a stored response is matched and answered with:
 * Vary (RFC 9111 §4.1), cache keys, conditional requests (RFC 9110 §13),
 * freshening with a 304 (RFC 9111 §4.3.4), ranges (RFC 9110 §14) and the
 * invalidation targets of unsafe methods (RFC 9111 §4.4). Pure functions;
 * contracts in include/weir/cache_rules.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "weir/cache_rules.h"

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static const struct weir_http_header *find(const struct weir_http_header *h, size_t n, const char *lname)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (weir_span_ieq(h[i].name, h[i].name_len, lname))
            return &h[i];
    return NULL;
}

/* A growable byte string. */
struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *q;
        while (cap < b->len + n + 1)
            cap *= 2;
        q = realloc(b->p, cap);
        if (q == NULL) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *buf_take(struct buf *b, size_t *len)
{
    buf_add(b, "", 0);
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (len != NULL)
        *len = b->len;
    return b->p;
}

/* Next element of a comma list in v[*i..n): trimmed span, commas inside
 * quoted strings kept. Returns 0 at the end of the list. */
static int next_elem(const char *v, size_t n, size_t *i, const char **e, size_t *el)
{
    size_t s, end;
    int q = 0;

    while (*i < n && (is_ows(v[*i]) || v[*i] == ','))
        (*i)++;
    if (*i >= n)
        return 0;
    s = *i;
    while (*i < n && (q || v[*i] != ',')) {
        if (v[*i] == '"')
            q = !q;
        else if (q && v[*i] == '\\' && *i + 1 < n)
            (*i)++;
        (*i)++;
    }
    end = *i;
    while (end > s && is_ows(v[end - 1]))
        end--;
    *e = v + s;
    *el = end - s;
    return 1;
}

/* ---- Vary ----------------------------------------------------------------- */

struct span {
    const char *p;
    size_t n;
};

static int span_icmp(const struct span *a, const struct span *b)
{
    size_t i, m = a->n < b->n ? a->n : b->n;
    for (i = 0; i < m; i++) {
        int d = weir_lower((unsigned char)a->p[i]) - weir_lower((unsigned char)b->p[i]);
        if (d)
            return d;
    }
    return a->n < b->n ? -1 : a->n > b->n;
}

static int span_cmp_qsort(const void *a, const void *b)
{
    return span_icmp(a, b);
}

char *weir_cache_vary_names(const struct weir_http_header *h, size_t n, int *star)
{
    struct span names[64];
    size_t count = 0, i, k;
    struct buf b = {0};

    *star = 0;
    for (i = 0; i < n; i++) {
        size_t pos = 0;
        const char *e;
        size_t el;

        if (!weir_span_ieq(h[i].name, h[i].name_len, "vary"))
            continue;
        while (next_elem(h[i].value, h[i].value_len, &pos, &e, &el)) {
            if (el == 1 && e[0] == '*')
                *star = 1;
            else if (count < WEIR_ARRAY_LEN(names))
                names[count++] = (struct span){e, el};
            else
                *star = 1; /* more varied fields than we track: never match */
        }
    }
    qsort(names, count, sizeof(names[0]), span_cmp_qsort);
    for (i = 0; i < count; i++) {
        if (i > 0 && span_icmp(&names[i], &names[i - 1]) == 0)
            continue;
        if (b.len > 0)
            buf_add(&b, ",", 1);
        for (k = 0; k < names[i].n; k++) {
            char c = (char)weir_lower((unsigned char)names[i].p[k]);
            buf_add(&b, &c, 1);
        }
    }
    return buf_take(&b, NULL);
}

static int case_insensitive_field(const char *name, size_t n)
{
    return weir_span_ieq(name, n, "accept-encoding") || weir_span_ieq(name, n, "accept-language") ||
           weir_span_ieq(name, n, "accept-charset");
}

char *weir_cache_vary_values(const char *names, const struct weir_http_header *req, size_t nreq, size_t *len)
{
    struct buf b = {0};
    const char *p = names;

    buf_add(&b, "", 0);
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t nl = end != NULL ? (size_t)(end - p) : strlen(p);
        int lower = case_insensitive_field(p, nl), present = 0, first = 1;
        size_t i, k;

        for (i = 0; i < nreq; i++) {
            size_t pos = 0;
            const char *e;
            size_t el;

            /* names compare case-insensitively with the lower-case list entry */
            if (req[i].name_len != nl)
                continue;
            for (k = 0; k < nl; k++)
                if (weir_lower((unsigned char)req[i].name[k]) != (unsigned char)p[k])
                    break;
            if (k < nl)
                continue;
            if (!present)
                buf_add(&b, "=", 1);
            present = 1;
            while (next_elem(req[i].value, req[i].value_len, &pos, &e, &el)) {
                if (!first)
                    buf_add(&b, ",", 1);
                first = 0;
                for (k = 0; k < el; k++) {
                    char c = lower ? (char)weir_lower((unsigned char)e[k]) : e[k];
                    buf_add(&b, &c, 1);
                }
            }
        }
        if (!present)
            buf_add(&b, "\x01", 1);
        buf_add(&b, "\0", 1);
        p += nl;
        if (*p == ',')
            p++;
    }
    return buf_take(&b, len);
}

/* ---- keys ----------------------------------------------------------------- */

char *weir_cache_url(const char *scheme, const char *host, size_t host_len, const char *path, size_t path_len)
{
    size_t i, hl = host_len;
    const char *colon = NULL;

    /* the port separator: the last ':' outside an IPv6 literal */
    for (i = 0; i < host_len; i++) {
        if (host[i] == ']')
            colon = NULL;
        else if (host[i] == ':')
            colon = host + i;
    }
    if (colon != NULL) {
        size_t pl = host_len - (size_t)(colon + 1 - host);
        if ((pl == 2 && memcmp(colon + 1, "80", 2) == 0 && strcmp(scheme, "http") == 0) ||
            (pl == 3 && memcmp(colon + 1, "443", 3) == 0 && strcmp(scheme, "https") == 0) || pl == 0)
            hl = (size_t)(colon - host);
    }
    /* "example.com." keeps its dot: the backend is sent that Host, and may
     * answer it as another name (no equivalence in RFC 9110 §4.2.3), so
     * it is another key, never a way to store under "example.com"'s. */
    /* one allocation of the exact size: every request of a cache route
     * builds its URL */
    size_t sl = strlen(scheme), n = sl + 3 + hl + (path_len == 0 ? 1 : path_len);
    char *u = malloc(n + 1), *q = u;
    if (u == NULL)
        return NULL;
    memcpy(q, scheme, sl);
    memcpy(q + sl, "://", 3);
    q += sl + 3;
    for (i = 0; i < hl; i++)
        *q++ = (char)weir_lower((unsigned char)host[i]);
    if (path_len == 0)
        *q++ = '/';
    else {
        memcpy(q, path, path_len);
        q += path_len;
    }
    *q = '\0';
    return u;
}

char *weir_cache_key(int method, const char *url)
{
    size_t n;
    char *k;

    if (method != WEIR_HTTP_GET && method != WEIR_HTTP_HEAD)
        return NULL;
    n = strlen(url);
    if ((k = malloc(n + 5)) == NULL)
        return NULL;
    memcpy(k, "GET ", 4);
    memcpy(k + 4, url, n + 1);
    return k;
}

/* ---- entity tags and conditionals ------------------------------------------ */

/* Parse one entity-tag at v[*i]: [W/]"opaque". */
static int etag_parse(const char *v, size_t n, size_t *i, const char **op, size_t *ol, int *weak)
{
    size_t s;

    *weak = 0;
    if (*i + 1 < n && v[*i] == 'W' && v[*i + 1] == '/') {
        *weak = 1;
        *i += 2;
    }
    if (*i >= n || v[*i] != '"')
        return -1;
    s = ++(*i);
    while (*i < n && v[*i] != '"') {
        unsigned char c = (unsigned char)v[*i];
        if (c < 0x21 || c == 0x7f)
            return -1;
        (*i)++;
    }
    if (*i >= n)
        return -1;
    *op = v + s;
    *ol = *i - s;
    (*i)++;
    return 0;
}

int weir_cache_etag_match(const char *list, size_t list_len, const char *etag, size_t etag_len, int weak)
{
    const char *so, *lo;
    size_t sl, ll, i = 0, j = 0;
    int sw, lw;

    while (list_len > 0 && is_ows(list[list_len - 1]))
        list_len--;
    while (i < list_len && is_ows(list[i]))
        i++;
    if (i + 1 == list_len && list[i] == '*')
        return 1;
    if (etag == NULL || etag_parse(etag, etag_len, &j, &so, &sl, &sw) < 0)
        return 0;
    for (;;) {
        while (i < list_len && (is_ows(list[i]) || list[i] == ','))
            i++;
        if (i >= list_len)
            return 0;
        if (etag_parse(list, list_len, &i, &lo, &ll, &lw) < 0)
            return 0; /* a malformed list matches nothing */
        if (ll == sl && memcmp(lo, so, sl) == 0 && (weak || (!lw && !sw)))
            return 1;
    }
}

static int conditional_eval(int method, const struct weir_http_header *req, size_t nreq,
                            const struct weir_http_header *stored, size_t nstored, int64_t response_time);

/* Any "If-..." field? Most requests have none: one pass over the names
 * instead of four lookups and a date parse on every hit. */
static int has_precondition(const struct weir_http_header *req, size_t nreq)
{
    for (size_t i = 0; i < nreq; i++)
        if (req[i].name_len >= 8 && (req[i].name[0] | 0x20) == 'i' && (req[i].name[1] | 0x20) == 'f' &&
            req[i].name[2] == '-')
            return 1;
    return 0;
}

int weir_cache_conditional(int method, const struct weir_http_header *req, size_t nreq,
                           const struct weir_http_header *stored, size_t nstored, int64_t response_time)
{
    if (!has_precondition(req, nreq))
        return WEIR_COND_NONE;
    return conditional_eval(method, req, nreq, stored, nstored, response_time);
}

static int conditional_eval(int method, const struct weir_http_header *req, size_t nreq,
                            const struct weir_http_header *stored, size_t nstored, int64_t response_time)
{
    const struct weir_http_header *im = find(req, nreq, "if-match");
    const struct weir_http_header *ius = find(req, nreq, "if-unmodified-since");
    const struct weir_http_header *inm = find(req, nreq, "if-none-match");
    const struct weir_http_header *ims = find(req, nreq, "if-modified-since");
    const struct weir_http_header *etag = find(stored, nstored, "etag");
    const struct weir_http_header *lmh = find(stored, nstored, "last-modified");
    int get = method == WEIR_HTTP_GET || method == WEIR_HTTP_HEAD;
    int64_t lm = lmh != NULL ? weir_http_date_parse(lmh->value, lmh->value_len, response_time) : -1;
    int64_t d;

    if (im == NULL && ius == NULL && inm == NULL && ims == NULL)
        return WEIR_COND_NONE;
    if (im != NULL) {
        if (!weir_cache_etag_match(im->value, im->value_len, etag ? etag->value : NULL,
                                   etag ? etag->value_len : 0, 0))
            return WEIR_COND_FAILED;
    } else if (ius != NULL) {
        d = weir_http_date_parse(ius->value, ius->value_len, response_time);
        if (d >= 0 && lm >= 0 && lm > d)
            return WEIR_COND_FAILED;
    }
    if (inm != NULL) {
        if (weir_cache_etag_match(inm->value, inm->value_len, etag ? etag->value : NULL,
                                  etag ? etag->value_len : 0, 1))
            return get ? WEIR_COND_NOT_MODIFIED : WEIR_COND_FAILED;
        return WEIR_COND_PASS;
    }
    if (ims != NULL && get) {
        d = weir_http_date_parse(ims->value, ims->value_len, response_time);
        if (d >= 0) {
            int64_t ref = lm;
            if (ref < 0) {
                const struct weir_http_header *dh = find(stored, nstored, "date");
                ref = dh != NULL ? weir_http_date_parse(dh->value, dh->value_len, response_time) : -1;
            }
            if (ref < 0)
                ref = response_time;
            if (ref <= d)
                return WEIR_COND_NOT_MODIFIED;
        }
    }
    return WEIR_COND_PASS;
}

int weir_cache_304_keeps(const char *name, size_t n)
{
    static const char *const keep[] = {"cache-control", "content-location", "date", "etag", "expires",
                                       "vary",          "last-modified"};
    size_t i;
    for (i = 0; i < WEIR_ARRAY_LEN(keep); i++)
        if (weir_span_ieq(name, n, keep[i]))
            return 1;
    return 0;
}

static int updatable(const struct weir_http_header *h)
{
    return !weir_cache_header_unstored(h->name, h->name_len) &&
           !weir_span_ieq(h->name, h->name_len, "content-length");
}

static int has_name(const struct weir_http_header *h, size_t n, const char *name, size_t nl)
{
    size_t i, k;
    for (i = 0; i < n; i++) {
        if (h[i].name_len != nl || !updatable(&h[i]))
            continue;
        for (k = 0; k < nl; k++)
            if (weir_lower((unsigned char)h[i].name[k]) != weir_lower((unsigned char)name[k]))
                break;
        if (k == nl)
            return 1;
    }
    return 0;
}

int weir_cache_update_headers(const struct weir_http_header *stored, size_t nstored,
                              const struct weir_http_header *fresh, size_t nfresh,
                              struct weir_http_header *out, size_t cap)
{
    size_t i, o = 0;

    for (i = 0; i < nstored; i++) {
        if (has_name(fresh, nfresh, stored[i].name, stored[i].name_len))
            continue;
        if (o >= cap)
            return -1;
        out[o++] = stored[i];
    }
    for (i = 0; i < nfresh; i++) {
        if (!updatable(&fresh[i]))
            continue;
        if (o >= cap)
            return -1;
        out[o++] = fresh[i];
    }
    return (int)o;
}

int weir_cache_304_selects(const struct weir_http_header *stored, size_t nstored,
                           const struct weir_http_header *fresh, size_t nfresh)
{
    const struct weir_http_header *fe = find(fresh, nfresh, "etag");
    const struct weir_http_header *se = find(stored, nstored, "etag");
    const struct weir_http_header *fl = find(fresh, nfresh, "last-modified");
    const struct weir_http_header *sl = find(stored, nstored, "last-modified");

    if (fe != NULL) {
        const char *o;
        size_t ol, i = 0;
        int w;
        if (se == NULL || etag_parse(fe->value, fe->value_len, &i, &o, &ol, &w) < 0)
            return 0;
        return weir_cache_etag_match(fe->value, fe->value_len, se->value, se->value_len, 1);
    }
    if (fl != NULL) {
        int64_t a = weir_http_date_parse(fl->value, fl->value_len, 0);
        int64_t b = sl != NULL ? weir_http_date_parse(sl->value, sl->value_len, 0) : -1;
        return a >= 0 && a == b;
    }
    /* No validator in the 304: it answers the one conditional request we
     * sent for this stored response. */
    return 1;
}

/* ---- ranges ------------------------------------------------------------------ */

static int parse_u64(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0 || n > 19)
        return -1;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

static int range_cmp(const void *a, const void *b)
{
    const struct weir_range *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* If-Range (RFC 9110 §13.1.5): 1 when the Range may be honoured. */
static int if_range_ok(const struct weir_http_header *req, size_t nreq, const struct weir_http_header *stored,
                       size_t nstored)
{
    const struct weir_http_header *ir = find(req, nreq, "if-range");
    const struct weir_http_header *x;
    int64_t d, lm, date;

    if (ir == NULL)
        return 1;
    if (ir->value_len > 0 && (ir->value[0] == '"' || ir->value[0] == 'W')) {
        x = find(stored, nstored, "etag");
        return x != NULL && weir_cache_etag_match(ir->value, ir->value_len, x->value, x->value_len, 0) &&
               !(ir->value_len == 1 && ir->value[0] == '*');
    }
    d = weir_http_date_parse(ir->value, ir->value_len, 0);
    x = find(stored, nstored, "last-modified");
    lm = x != NULL ? weir_http_date_parse(x->value, x->value_len, 0) : -1;
    x = find(stored, nstored, "date");
    date = x != NULL ? weir_http_date_parse(x->value, x->value_len, 0) : -1;
    /* a date validates only when Last-Modified is strong: a second or more before Date */
    return d >= 0 && lm == d && date >= 0 && lm + 1 <= date;
}

int weir_cache_range(int method, const struct weir_http_header *req, size_t nreq,
                     const struct weir_http_header *stored, size_t nstored, uint64_t length,
                     struct weir_range *out, size_t *nout)
{
    const struct weir_http_header *rh = find(req, nreq, "range");
    const char *v, *e;
    size_t n, i = 0, el, count = 0, k, m;
    int any = 0;

    *nout = 0;
    if (method != WEIR_HTTP_GET || rh == NULL)
        return WEIR_RANGE_NONE;
    v = rh->value;
    n = rh->value_len;
    if (n < 6 || !weir_span_ieq(v, 5, "bytes") || v[5] != '=')
        return WEIR_RANGE_NONE;
    i = 6;
    if (!if_range_ok(req, nreq, stored, nstored))
        return WEIR_RANGE_NONE;
    while (next_elem(v, n, &i, &e, &el)) {
        const char *dash = memchr(e, '-', el);
        uint64_t a, b;

        if (dash == NULL)
            return WEIR_RANGE_NONE;
        any = 1;
        if (dash == e) { /* suffix-range */
            if (parse_u64(dash + 1, el - 1, &b) < 0)
                return WEIR_RANGE_NONE;
            if (b == 0 || length == 0)
                continue;
            a = b >= length ? 0 : length - b;
            b = length - 1;
        } else {
            size_t al = (size_t)(dash - e), bl = el - al - 1;
            if (parse_u64(e, al, &a) < 0)
                return WEIR_RANGE_NONE;
            if (bl == 0) {
                b = UINT64_MAX;
            } else {
                if (parse_u64(dash + 1, bl, &b) < 0 || b < a)
                    return WEIR_RANGE_NONE; /* invalid range-spec: the whole field is invalid */
            }
            if (a >= length)
                continue; /* unsatisfiable on its own */
            if (b >= length)
                b = length - 1;
        }
        if (count >= WEIR_RANGE_MAX)
            return WEIR_RANGE_NONE;
        out[count].first = a;
        out[count].last = b;
        count++;
    }
    /* a range-set must have at least one range-spec */
    if (!any)
        return WEIR_RANGE_NONE;
    if (count == 0)
        return WEIR_RANGE_UNSATISFIABLE;
    qsort(out, count, sizeof(out[0]), range_cmp);
    for (k = 1, m = 0; k < count; k++) {
        if (out[k].first <= out[m].last + 1) {
            if (out[k].last > out[m].last)
                out[m].last = out[k].last;
        } else {
            out[++m] = out[k];
        }
    }
    *nout = m + 1;
    return *nout == 1 ? WEIR_RANGE_SINGLE : WEIR_RANGE_MULTI;
}

/* ---- invalidation ------------------------------------------------------------- */

int weir_http_method_safe(int method)
{
    return method == WEIR_HTTP_GET || method == WEIR_HTTP_HEAD || method == WEIR_HTTP_OPTIONS ||
           method == WEIR_HTTP_TRACE;
}

/* Resolve a Location-style reference against url ("scheme://host/path").
 * Returns an allocated URL on the same scheme and host, NULL when it points
 * elsewhere or cannot be resolved (*oom set on allocation failure). */
static char *resolve_same_origin(const char *url, const char *v, size_t n, int *oom)
{
    const char *hs = strstr(url, "://");
    const char *ps, *hash;
    char scheme[8], *r;
    size_t sl;

    if (hs == NULL || (size_t)(hs - url) >= sizeof(scheme))
        return NULL;
    sl = (size_t)(hs - url);
    memcpy(scheme, url, sl);
    scheme[sl] = '\0';
    ps = strchr(hs + 3, '/');
    if (ps == NULL)
        return NULL;
    hash = memchr(v, '#', n);
    if (hash != NULL)
        n = (size_t)(hash - v);
    if (n == 0)
        return NULL;
    for (size_t k = 0; k < n; k++) /* a URI reference is visible ASCII */
        if ((unsigned char)v[k] <= 0x20 || (unsigned char)v[k] >= 0x7f)
            return NULL;
    if (n >= 2 && v[0] == '/' && v[1] == '/') { /* network-path reference: same scheme */
        const char *p = memchr(v + 2, '/', n - 2);
        size_t hl = p ? (size_t)(p - v - 2) : n - 2;
        r = weir_cache_url(scheme, v + 2, hl, p, p ? n - (size_t)(p - v) : 0);
    } else if (v[0] == '/') {
        r = weir_cache_url(scheme, hs + 3, (size_t)(ps - hs - 3), v, n);
    } else {
        size_t i;
        for (i = 0; i < n && v[i] != '/' && v[i] != '?'; i++)
            if (v[i] == ':')
                break;
        if (i < n && v[i] == ':') { /* absolute URI */
            const char *rest = v + i + 1, *p;
            size_t rl = n - i - 1, hl;
            if (i != sl || !weir_span_ieq(v, i, scheme) || rl < 2 || rest[0] != '/' || rest[1] != '/')
                return NULL;
            p = memchr(rest + 2, '/', rl - 2);
            hl = p ? (size_t)(p - rest - 2) : rl - 2;
            r = weir_cache_url(scheme, rest + 2, hl, p, p ? rl - (size_t)(p - rest) : 0);
        } else { /* relative path: merge with the target's directory */
            const char *q = strchr(ps, '?'), *dir_end;
            size_t dl, ul;
            char *m;
            dir_end = q != NULL ? q : ps + strlen(ps);
            while (dir_end > ps && dir_end[-1] != '/')
                dir_end--;
            dl = (size_t)(dir_end - url);
            ul = dl + n;
            m = malloc(ul + 1);
            if (m == NULL) {
                *oom = 1;
                return NULL;
            }
            memcpy(m, url, dl);
            memcpy(m + dl, v, n);
            m[ul] = '\0';
            return m;
        }
    }
    if (r == NULL) {
        *oom = 1;
        return NULL;
    }
    /* same scheme and host? */
    {
        size_t base = (size_t)(ps - url);
        if (strncmp(r, url, base) != 0 || (r[base] != '/' && r[base] != '\0')) {
            free(r);
            return NULL;
        }
    }
    return r;
}

int weir_cache_invalidations(int method, int status, const char *url, const struct weir_http_header *resp,
                             size_t nresp, char *out[3])
{
    static const char *const fields[] = {"location", "content-location"};
    int count = 0, oom = 0;
    size_t f;

    if (weir_http_method_safe(method) || status < 200 || status > 399)
        return 0;
    out[count] = strdup(url);
    if (out[count] == NULL)
        return -1;
    count++;
    for (f = 0; f < WEIR_ARRAY_LEN(fields); f++) {
        const struct weir_http_header *h = find(resp, nresp, fields[f]);
        char *r;
        int k, dup = 0;

        if (h == NULL)
            continue;
        r = resolve_same_origin(url, h->value, h->value_len, &oom);
        if (r == NULL) {
            if (oom)
                goto fail;
            continue;
        }
        for (k = 0; k < count; k++)
            if (strcmp(out[k], r) == 0)
                dup = 1;
        if (dup)
            free(r);
        else
            out[count++] = r;
    }
    return count;
fail:
    while (count > 0)
        free(out[--count]);
    return -1;
}
