/*
 * cache_rules.c - Cache-Control and CDN-Cache-Control directives, HTTP
 * dates, storability, freshness lifetime, age and the reuse decision of a
 * shared cache (RFC 9111, RFC 5861, RFC 9213). Pure functions; see
 * include/weir/cache_rules.h for the contracts.
 *
 * Choices where the RFCs leave one:
 * - A freshness directive (max-age, s-maxage) given twice with different
 *   values, or with a malformed argument, makes the response stale (§4.2.1
 *   allows "first occurrence" or "stale"; stale is the safe one).
 * - A request max-age that is malformed counts as max-age=0 (the most
 *   restrictive reading); other malformed directives are ignored.
 * - Whitespace around "=" makes a directive malformed (the §5.2 grammar
 *   has none): "max-age = 60" gives a stale response, "no-store = 1" is
 *   still honoured as no-store.
 * - Qualified no-cache="f" and private="f" are treated as unqualified
 *   (§5.2.2.4 and §5.2.2.7 allow it): never storing a private field is
 *   simpler to prove than storing the rest of the response without it.
 * - A restrictive directive with an argument it should not have
 *   (no-store=1, must-revalidate=x) is still honoured; a permissive one
 *   (public=1, immutable=x) is ignored.
 * - Responses with Set-Cookie are not stored (README: cookies are per user).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "weir/cache_rules.h"

/* ---- small lexers ------------------------------------------------------------ */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Skip a quoted-string starting at v[i] == '"'. Returns the index after the
 * closing quote, or n + 1 when it is unterminated or holds a control byte. */
static size_t skip_quoted(const char *v, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"')
            return i + 1;
        if (c == '\\') {
            if (++i >= n)
                return n + 1;
            c = (unsigned char)v[i];
            if (c < 0x20 && c != '\t')
                return n + 1;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return n + 1;
    }
    return n + 1;
}

/* Skip to the next top-level comma (outside quoted strings). */
static size_t skip_to_comma(const char *v, size_t n, size_t i)
{
    while (i < n && v[i] != ',') {
        if (v[i] == '"') {
            size_t j = skip_quoted(v, n, i);
            i = j > n ? n : j;
        } else {
            i++;
        }
    }
    return i;
}

/* delta-seconds from 1*DIGIT, clamped to WEIR_CC_DELTA_MAX; -1 if not all digits. */
static int64_t parse_delta(const char *p, size_t n)
{
    int64_t v = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < WEIR_CC_DELTA_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v > WEIR_CC_DELTA_MAX ? WEIR_CC_DELTA_MAX : v;
}

/* ---- Cache-Control ------------------------------------------------------------ */

void weir_cc_init(struct weir_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = WEIR_CC_UNSET;
    cc->s_maxage = WEIR_CC_UNSET;
    cc->max_stale = WEIR_CC_UNSET;
    cc->min_fresh = WEIR_CC_UNSET;
    cc->swr = WEIR_CC_UNSET;
    cc->sie = WEIR_CC_UNSET;
}

enum { PICK_MIN, PICK_MAX, PICK_SAME };

/* Store a numeric directive, resolving duplicates. Returns 0, or -1 when a
 * PICK_SAME duplicate disagrees. */
static int set_num(int64_t *dst, int64_t v, int pick)
{
    if (*dst == WEIR_CC_UNSET) {
        *dst = v;
        return 0;
    }
    if (pick == PICK_MIN && v < *dst)
        *dst = v;
    else if (pick == PICK_MAX && v > *dst)
        *dst = v;
    else if (pick == PICK_SAME && v != *dst)
        return -1;
    return 0;
}

struct cc_dir {
    const char *name;
    unsigned flag;    /* boolean directive, or 0 */
    int restrictive;  /* honoured even with an unexpected argument */
    int arg_optional; /* boolean directive that may carry an argument */
};

static const struct cc_dir cc_flags[] = {
    {"no-store", WEIR_CC_NO_STORE, 1, 0},
    {"no-cache", WEIR_CC_NO_CACHE, 1, 1},
    {"private", WEIR_CC_PRIVATE, 1, 1},
    {"public", WEIR_CC_PUBLIC, 0, 0},
    {"must-revalidate", WEIR_CC_MUST_REVALIDATE, 1, 0},
    {"proxy-revalidate", WEIR_CC_PROXY_REVALIDATE, 1, 0},
    {"immutable", WEIR_CC_IMMUTABLE, 0, 0},
    {"only-if-cached", WEIR_CC_ONLY_IF_CACHED, 1, 0},
    {"no-transform", WEIR_CC_NO_TRANSFORM, 1, 0},
    {"must-understand", WEIR_CC_MUST_UNDERSTAND, 1, 0},
};

/* One directive: name[0..nl), argument arg[0..al) (unquoted form; has_arg
 * says whether "=" was present, bad_arg that the argument was malformed). */
static void cc_apply(struct weir_cc *cc, const char *name, size_t nl, const char *arg, size_t al, int has_arg,
                     int bad_arg, int quoted_escape)
{
    size_t i;
    int64_t d;

    for (i = 0; i < WEIR_ARRAY_LEN(cc_flags); i++) {
        if (!weir_span_ieq(name, nl, cc_flags[i].name))
            continue;
        if (has_arg && !cc_flags[i].arg_optional && !cc_flags[i].restrictive) {
            cc->malformed++;
            return;
        }
        if ((has_arg && !cc_flags[i].arg_optional) || bad_arg)
            cc->malformed++;
        cc->flags |= cc_flags[i].flag;
        return;
    }
    /* Numeric directives. A quoted argument with escapes is never digits. */
    d = (!has_arg || bad_arg || quoted_escape) ? -1 : parse_delta(arg, al);
    if (weir_span_ieq(name, nl, "max-age")) {
        if (d < 0 || set_num(&cc->max_age, d, PICK_SAME) < 0) {
            cc->flags |= WEIR_CC_BAD_FRESHNESS;
            if (d < 0)
                cc->malformed++;
        }
    } else if (weir_span_ieq(name, nl, "s-maxage")) {
        cc->flags |= WEIR_CC_HAS_SMAXAGE;
        if (d < 0 || set_num(&cc->s_maxage, d, PICK_SAME) < 0) {
            cc->flags |= WEIR_CC_BAD_FRESHNESS;
            if (d < 0)
                cc->malformed++;
        }
    } else if (weir_span_ieq(name, nl, "max-stale")) {
        if (!has_arg)
            d = WEIR_CC_ANY;
        if (d < 0)
            cc->malformed++;
        else
            set_num(&cc->max_stale, d, PICK_MIN);
    } else if (weir_span_ieq(name, nl, "min-fresh")) {
        if (d < 0)
            cc->malformed++;
        else
            set_num(&cc->min_fresh, d, PICK_MAX);
    } else if (weir_span_ieq(name, nl, "stale-while-revalidate")) {
        if (d < 0)
            cc->malformed++;
        else
            set_num(&cc->swr, d, PICK_MIN);
    } else if (weir_span_ieq(name, nl, "stale-if-error")) {
        if (d < 0)
            cc->malformed++;
        else
            set_num(&cc->sie, d, PICK_MIN);
    }
    /* anything else: an extension we do not know, ignored (§5.2.3) */
}

void weir_cc_parse(struct weir_cc *cc, const char *v, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t ns, ne, as = 0, al = 0;
        int has_arg = 0, bad = 0, esc = 0;

        while (i < n && (is_ows((unsigned char)v[i]) || v[i] == ','))
            i++;
        if (i >= n)
            break;
        ns = i;
        while (i < n && is_tchar((unsigned char)v[i]))
            i++;
        ne = i;
        if (ne == ns) { /* not a directive name: skip the element */
            cc->malformed++;
            i = skip_to_comma(v, n, i);
            continue;
        }
        while (i < n && is_ows((unsigned char)v[i]))
            i++;
        if (i < n && v[i] == '=') {
            /* §5.2: token [ "=" ( token / quoted-string ) ], no whitespace
             * around "=": "max-age = 60" is malformed (a stale response,
             * §4.2.1), though its argument is still read for the name */
            if (i > ne || (i + 1 < n && is_ows((unsigned char)v[i + 1])))
                bad = 1;
            has_arg = 1;
            i++;
            while (i < n && is_ows((unsigned char)v[i]))
                i++;
            if (i < n && v[i] == '"') {
                size_t e = skip_quoted(v, n, i);
                if (e > n) {
                    bad = 1;
                    i = n;
                } else {
                    as = i + 1;
                    al = e - 1 - as;
                    esc = memchr(v + as, '\\', al) != NULL;
                    i = e;
                }
            } else {
                as = i;
                while (i < n && is_tchar((unsigned char)v[i]))
                    i++;
                al = i - as;
                if (al == 0)
                    bad = 1;
            }
            while (i < n && is_ows((unsigned char)v[i]))
                i++;
        }
        if (i < n && v[i] != ',') { /* trailing garbage in this element */
            bad = 1;
            i = skip_to_comma(v, n, i);
        }
        cc_apply(cc, v + ns, ne - ns, v + as, al, has_arg, bad, esc);
    }
}

/* ---- CDN-Cache-Control: a Structured Field Dictionary (RFC 8941) -------------- */

enum sf_type { SF_NONE, SF_INT, SF_DEC, SF_STR, SF_TOKEN, SF_BIN, SF_BOOL, SF_LIST };

struct sf_item {
    int type;
    int64_t i; /* SF_INT value; SF_BOOL 0/1 */
};

static int is_lcalpha(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int sf_key(const char *v, size_t n, size_t *i)
{
    unsigned char c;

    if (*i >= n || !(is_lcalpha((unsigned char)v[*i]) || v[*i] == '*'))
        return -1;
    for ((*i)++; *i < n; (*i)++) {
        c = (unsigned char)v[*i];
        if (!(is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.' || c == '*'))
            break;
    }
    return 0;
}

static int sf_bare_item(const char *v, size_t n, size_t *i, struct sf_item *it)
{
    unsigned char c;

    if (*i >= n)
        return -1;
    c = (unsigned char)v[*i];
    if (c == '-' || is_digit(c)) {
        int neg = c == '-', digits = 0, dot = -1;
        int64_t x = 0;
        if (neg)
            (*i)++;
        for (; *i < n; (*i)++) {
            c = (unsigned char)v[*i];
            if (is_digit(c)) {
                digits++;
                if (dot < 0)
                    x = x * 10 + (c - '0');
            } else if (c == '.' && dot < 0) {
                if (digits > 12)
                    return -1;
                dot = digits;
            } else {
                break;
            }
            if ((dot < 0 && digits > 15) || (dot >= 0 && digits - dot > 3))
                return -1;
        }
        if (digits == 0 || (dot >= 0 && digits == dot))
            return -1;
        it->type = dot >= 0 ? SF_DEC : SF_INT;
        it->i = neg ? -x : x;
        return 0;
    }
    if (c == '"') {
        for ((*i)++; *i < n; (*i)++) {
            c = (unsigned char)v[*i];
            if (c == '\\') {
                if (++(*i) >= n || (v[*i] != '"' && v[*i] != '\\'))
                    return -1;
            } else if (c == '"') {
                (*i)++;
                it->type = SF_STR;
                return 0;
            } else if (c < 0x20 || c > 0x7e) {
                return -1;
            }
        }
        return -1;
    }
    if (c == ':') {
        for ((*i)++; *i < n; (*i)++) {
            c = (unsigned char)v[*i];
            if (c == ':') {
                (*i)++;
                it->type = SF_BIN;
                return 0;
            }
            if (!(is_lcalpha(c) || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '+' || c == '/' || c == '='))
                return -1;
        }
        return -1;
    }
    if (c == '?') {
        if (*i + 1 >= n || (v[*i + 1] != '0' && v[*i + 1] != '1'))
            return -1;
        it->type = SF_BOOL;
        it->i = v[*i + 1] == '1';
        *i += 2;
        return 0;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*') {
        for ((*i)++; *i < n; (*i)++) {
            c = (unsigned char)v[*i];
            if (!(is_tchar(c) || c == ':' || c == '/'))
                break;
        }
        it->type = SF_TOKEN;
        return 0;
    }
    return -1;
}

static int sf_params(const char *v, size_t n, size_t *i)
{
    struct sf_item it;

    while (*i < n && v[*i] == ';') {
        (*i)++;
        while (*i < n && v[*i] == ' ')
            (*i)++;
        if (sf_key(v, n, i) < 0)
            return -1;
        if (*i < n && v[*i] == '=') {
            (*i)++;
            if (sf_bare_item(v, n, i, &it) < 0)
                return -1;
        }
    }
    return 0;
}

static int sf_member_value(const char *v, size_t n, size_t *i, struct sf_item *it)
{
    if (*i < n && v[*i] == '(') { /* inner list */
        struct sf_item inner;
        (*i)++;
        for (;;) {
            while (*i < n && v[*i] == ' ')
                (*i)++;
            if (*i >= n)
                return -1;
            if (v[*i] == ')') {
                (*i)++;
                break;
            }
            if (sf_bare_item(v, n, i, &inner) < 0 || sf_params(v, n, i) < 0)
                return -1;
            if (*i < n && v[*i] != ' ' && v[*i] != ')')
                return -1;
        }
        it->type = SF_LIST;
        return sf_params(v, n, i);
    }
    if (sf_bare_item(v, n, i, it) < 0)
        return -1;
    return sf_params(v, n, i);
}

static void cc_apply_sf(struct weir_cc *cc, const char *key, size_t kl, const struct sf_item *it)
{
    size_t i;
    int64_t *num = NULL;

    for (i = 0; i < WEIR_ARRAY_LEN(cc_flags); i++) {
        if (!weir_span_ieq(key, kl, cc_flags[i].name))
            continue;
        if (it->type == SF_BOOL) {
            if (it->i)
                cc->flags |= cc_flags[i].flag;
            else
                cc->flags &= ~cc_flags[i].flag; /* a later member overrides an earlier one */
        } else if (cc_flags[i].arg_optional && (it->type == SF_STR || it->type == SF_LIST)) {
            cc->flags |= cc_flags[i].flag; /* qualified form, taken as unqualified */
        } else {
            cc->malformed++;
        }
        return;
    }
    if (weir_span_ieq(key, kl, "max-age"))
        num = &cc->max_age;
    else if (weir_span_ieq(key, kl, "s-maxage"))
        num = &cc->s_maxage;
    else if (weir_span_ieq(key, kl, "stale-while-revalidate"))
        num = &cc->swr;
    else if (weir_span_ieq(key, kl, "stale-if-error"))
        num = &cc->sie;
    if (num == NULL)
        return;
    if (it->type != SF_INT || it->i < 0) { /* wrong type: the directive is ignored (RFC 9213 §2.1) */
        cc->malformed++;
        return;
    }
    *num = it->i > WEIR_CC_DELTA_MAX ? WEIR_CC_DELTA_MAX : it->i;
    if (num == &cc->s_maxage)
        cc->flags |= WEIR_CC_HAS_SMAXAGE;
}

static int sf_dict_into(struct weir_cc *cc, const char *v, size_t n)
{
    size_t i = 0;

    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (i >= n)
        return -1;
    for (;;) {
        size_t ks = i, ke;
        struct sf_item it = {SF_BOOL, 1};

        if (sf_key(v, n, &i) < 0)
            return -1;
        ke = i;
        if (i < n && v[i] == '=') {
            i++;
            if (sf_member_value(v, n, &i, &it) < 0)
                return -1;
        } else if (sf_params(v, n, &i) < 0) {
            return -1;
        }
        cc_apply_sf(cc, v + ks, ke - ks, &it);
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i >= n)
            return 0;
        if (v[i] != ',')
            return -1;
        i++;
        while (i < n && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i >= n)
            return -1; /* trailing comma */
    }
}

int weir_cc_parse_targeted(struct weir_cc *cc, const char *v, size_t n)
{
    weir_cc_init(cc);
    return sf_dict_into(cc, v, n);
}

void weir_cc_response(struct weir_cc *cc, const struct weir_http_header *h, size_t n)
{
    size_t i;
    int targeted = 0, bad = 0;

    weir_cc_init(cc);
    for (i = 0; i < n; i++) {
        if (weir_span_ieq(h[i].name, h[i].name_len, "cdn-cache-control")) {
            targeted = 1;
            if (sf_dict_into(cc, h[i].value, h[i].value_len) < 0)
                bad = 1;
        }
    }
    if (targeted && !bad) {
        cc->flags |= WEIR_CC_TARGETED;
        return;
    }
    weir_cc_init(cc);
    for (i = 0; i < n; i++)
        if (weir_span_ieq(h[i].name, h[i].name_len, "cache-control"))
            weir_cc_parse(cc, h[i].value, h[i].value_len);
}

void weir_cc_request(struct weir_cc *cc, const struct weir_http_header *h, size_t n)
{
    size_t i;
    int seen = 0, pragma = 0;

    weir_cc_init(cc);
    for (i = 0; i < n; i++) {
        if (weir_span_ieq(h[i].name, h[i].name_len, "cache-control")) {
            seen = 1;
            weir_cc_parse(cc, h[i].value, h[i].value_len);
        } else if (weir_span_ieq(h[i].name, h[i].name_len, "pragma") &&
                   weir_http_list_has(h[i].value, h[i].value_len, "no-cache")) {
            pragma = 1;
        }
    }
    /* §5.4: Pragma: no-cache counts only without Cache-Control. */
    if (!seen && pragma)
        cc->flags |= WEIR_CC_NO_CACHE;
}

/* ---- header helpers --------------------------------------------------------------- */

static const struct weir_http_header *find(const struct weir_http_header *h, size_t n, const char *lname)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (weir_span_ieq(h[i].name, h[i].name_len, lname))
            return &h[i];
    return NULL;
}

static int64_t header_date(const struct weir_http_header *h, size_t n, const char *lname, int64_t now)
{
    const struct weir_http_header *x = find(h, n, lname);
    return x == NULL ? -1 : weir_http_date_parse(x->value, x->value_len, now);
}

/* ---- storing ------------------------------------------------------------------------ */

static const char *const reason_names[WEIR_STORE_REASONS] = {
    "ok",         "method",    "status",       "request_no_store", "no_store",    "private", "authorization",
    "set_cookie", "vary_star", "no_freshness", "must_understand",  "never_fresh",
};

const char *weir_cache_store_reason_name(int reason)
{
    if (reason < 0 || reason >= WEIR_STORE_REASONS)
        return "unknown";
    return reason_names[reason];
}

int weir_cache_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return 1;
    default:
        return 0;
    }
}

/* Final statuses whose caching rules we implement (RFC 9110 and 6585, 7725). */
static int status_understood(int status)
{
    if (status >= 200 && status <= 205)
        return 1;
    if (status >= 300 && status <= 308 && status != 304 && status != 306)
        return 1;
    if (status >= 400 && status <= 417)
        return 1;
    switch (status) {
    case 421:
    case 422:
    case 426:
    case 428:
    case 429:
    case 431:
    case 451:
        return 1;
    default:
        return status >= 500 && status <= 505;
    }
}

int weir_cache_header_unstored(const char *name, size_t n)
{
    static const char *const names[] = {"connection",
                                        "keep-alive",
                                        "proxy-connection",
                                        "te",
                                        "transfer-encoding",
                                        "upgrade",
                                        "trailer",
                                        "proxy-authenticate",
                                        "proxy-authentication-info",
                                        "proxy-authorization"};
    size_t i;
    for (i = 0; i < WEIR_ARRAY_LEN(names); i++)
        if (weir_span_ieq(name, n, names[i]))
            return 1;
    return 0;
}

static int vary_has_star(const struct weir_http_header *h, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (weir_span_ieq(h[i].name, h[i].name_len, "vary") &&
            weir_http_list_has(h[i].value, h[i].value_len, "*"))
            return 1;
    return 0;
}

int weir_cache_worth_storing(const struct weir_http_header *h, size_t n, const struct weir_cc *rcc)
{
    int64_t life = rcc->s_maxage != WEIR_CC_UNSET ? rcc->s_maxage : rcc->max_age;

    if (find(h, n, "etag") != NULL || find(h, n, "last-modified") != NULL)
        return WEIR_STORE_OK;
    if (rcc->flags & WEIR_CC_NO_CACHE)
        return WEIR_STORE_NEVER_FRESH; /* always revalidated, with nothing to revalidate with */
    if ((rcc->flags & WEIR_CC_BAD_FRESHNESS) == 0 &&
        (life > 0 ||
         (life == WEIR_CC_UNSET && !(rcc->flags & WEIR_CC_TARGETED) && find(h, n, "expires") != NULL)))
        return WEIR_STORE_OK;
    if ((rcc->swr != WEIR_CC_UNSET && rcc->swr > 0) || (rcc->sie != WEIR_CC_UNSET && rcc->sie > 0))
        return WEIR_STORE_OK; /* stale-while-revalidate / stale-if-error may still answer */
    return WEIR_STORE_NEVER_FRESH;
}

int weir_cache_storable(int req_method, const struct weir_http_header *req, size_t nreq, int status,
                        const struct weir_http_header *resp, size_t nresp, const struct weir_cc *rcc)
{
    struct weir_cc qcc;
    int understood = status_understood(status);
    size_t i;

    if (req_method != WEIR_HTTP_GET)
        return WEIR_STORE_METHOD;
    if (status < 200 || status == 206 || status == 304 || status > 599)
        return WEIR_STORE_STATUS;
    weir_cc_request(&qcc, req, nreq);
    if (qcc.flags & WEIR_CC_NO_STORE)
        return WEIR_STORE_REQ_NO_STORE;
    if (rcc->flags & WEIR_CC_MUST_UNDERSTAND) {
        if (!understood)
            return WEIR_STORE_MUST_UNDERSTAND;
        /* §5.2.2.3: a cache that understands must-understand ignores no-store */
    } else if (rcc->flags & WEIR_CC_NO_STORE) {
        /* §3: understanding the status is required only for 206, 304 and
         * must-understand; another final status (299, 599...) is stored
         * like any, with explicit freshness or public (never heuristics) */
        return WEIR_STORE_NO_STORE;
    }
    if (rcc->flags & WEIR_CC_PRIVATE)
        return WEIR_STORE_PRIVATE;
    if (find(req, nreq, "authorization") != NULL &&
        !(rcc->flags & (WEIR_CC_PUBLIC | WEIR_CC_MUST_REVALIDATE | WEIR_CC_HAS_SMAXAGE)))
        return WEIR_STORE_AUTHORIZATION;
    for (i = 0; i < nresp; i++)
        if (weir_span_ieq(resp[i].name, resp[i].name_len, "set-cookie") ||
            weir_span_ieq(resp[i].name, resp[i].name_len, "set-cookie2"))
            return WEIR_STORE_SET_COOKIE;
    if (vary_has_star(resp, nresp))
        return WEIR_STORE_VARY_STAR;
    if (!(rcc->flags & (WEIR_CC_PUBLIC | WEIR_CC_HAS_SMAXAGE | WEIR_CC_BAD_FRESHNESS)) &&
        rcc->max_age == WEIR_CC_UNSET && !weir_cache_status_heuristic(status) &&
        ((rcc->flags & WEIR_CC_TARGETED) || find(resp, nresp, "expires") == NULL))
        return WEIR_STORE_NO_FRESHNESS;
    return WEIR_STORE_OK;
}

/* ---- freshness and age ------------------------------------------------------------------ */

void weir_cache_times_init(struct weir_cache_times *t, int64_t request_time, int64_t response_time,
                           const struct weir_http_header *h, size_t n)
{
    const struct weir_http_header *age = find(h, n, "age");
    int64_t d;

    t->request_time = request_time;
    t->response_time = response_time;
    d = header_date(h, n, "date", response_time);
    t->date = d < 0 ? response_time : d;
    t->age_value = 0;
    if (age != NULL) {
        /* "Age: 5, 6" (two lines joined): the first element */
        size_t e = 0;
        while (e < age->value_len && is_digit((unsigned char)age->value[e]))
            e++;
        d = parse_delta(age->value, e);
        if (d >= 0 && (e == age->value_len || age->value[e] == ',' || is_ows((unsigned char)age->value[e])))
            t->age_value = d;
    }
}

int64_t weir_cache_freshness(const struct weir_cc *rcc, int status, const struct weir_http_header *h,
                             size_t n, const struct weir_cache_times *t, int *heuristic)
{
    const struct weir_http_header *ex = NULL;
    int64_t e, lm;
    size_t i;

    if (heuristic != NULL)
        *heuristic = 0;
    if (rcc->flags & WEIR_CC_BAD_FRESHNESS)
        return 0;
    if (rcc->s_maxage != WEIR_CC_UNSET)
        return rcc->s_maxage;
    if (rcc->max_age != WEIR_CC_UNSET)
        return rcc->max_age;
    if (!(rcc->flags & WEIR_CC_TARGETED)) {
        for (i = 0; i < n; i++) {
            if (!weir_span_ieq(h[i].name, h[i].name_len, "expires"))
                continue;
            if (ex != NULL &&
                (ex->value_len != h[i].value_len || memcmp(ex->value, h[i].value, ex->value_len)))
                return 0; /* two different Expires: stale (§4.2.1) */
            ex = &h[i];
        }
        if (ex != NULL) {
            e = weir_http_date_parse(ex->value, ex->value_len, t->response_time);
            if (e < 0 || e <= t->date)
                return 0; /* invalid (e.g. "0") means already expired (§5.3) */
            return e - t->date > WEIR_CC_DELTA_MAX ? WEIR_CC_DELTA_MAX : e - t->date;
        }
    }
    if (!weir_cache_status_heuristic(status) && !(rcc->flags & WEIR_CC_PUBLIC))
        return 0;
    lm = header_date(h, n, "last-modified", t->response_time);
    if (lm < 0 || lm > t->date)
        return 0;
    e = (t->date - lm) * WEIR_CACHE_HEURISTIC_PCT / 100;
    if (e > WEIR_CACHE_HEURISTIC_MAX)
        e = WEIR_CACHE_HEURISTIC_MAX;
    if (heuristic != NULL)
        *heuristic = 1;
    return e;
}

int64_t weir_cache_age(const struct weir_cache_times *t, int64_t now)
{
    int64_t apparent = t->response_time - t->date;
    int64_t delay = t->response_time - t->request_time;
    int64_t corrected, initial, resident;

    if (apparent < 0)
        apparent = 0;
    if (delay < 0)
        delay = 0;
    corrected = t->age_value + delay;
    initial = apparent > corrected ? apparent : corrected;
    resident = now - t->response_time;
    if (resident < 0)
        resident = 0;
    return initial + resident;
}

void weir_cache_decide(const struct weir_cc *rcc, int64_t lifetime, const struct weir_cache_times *t,
                       const struct weir_cc *qcc, int64_t now, struct weir_cache_verdict *v)
{
    int forbid_stale = (rcc->flags & (WEIR_CC_MUST_REVALIDATE | WEIR_CC_PROXY_REVALIDATE | WEIR_CC_NO_CACHE |
                                      WEIR_CC_HAS_SMAXAGE)) != 0;
    int64_t qmax_age = (qcc->flags & WEIR_CC_BAD_FRESHNESS) ? 0 : qcc->max_age;
    int64_t stale, sie = WEIR_CC_UNSET;

    v->age = weir_cache_age(t, now);
    v->ttl = lifetime - v->age;
    stale = v->age - lifetime;
    if (rcc->sie != WEIR_CC_UNSET)
        sie = rcc->sie;
    if (qcc->sie != WEIR_CC_UNSET && qcc->sie > sie)
        sie = qcc->sie;
    v->stale_if_error = !forbid_stale && (stale < 0 || (sie != WEIR_CC_UNSET && stale <= sie));

    v->use = WEIR_USE_REVALIDATE;
    /* Request no-store (§5.2.1.5) forbids storing, not using; weir still
     * sends such a request on, unconditionally: a client that says no-store
     * wants the origin's answer, and forwarding is always allowed. */
    if ((rcc->flags & WEIR_CC_NO_CACHE) || (qcc->flags & (WEIR_CC_NO_CACHE | WEIR_CC_NO_STORE)))
        return;
    if (qmax_age != WEIR_CC_UNSET && v->age > qmax_age)
        return;
    if (qcc->min_fresh != WEIR_CC_UNSET && v->ttl < qcc->min_fresh)
        return;
    if (v->age < lifetime) {
        v->use = WEIR_USE_FRESH;
        return;
    }
    if (forbid_stale)
        return;
    if (qcc->max_stale != WEIR_CC_UNSET && stale <= qcc->max_stale)
        v->use = WEIR_USE_STALE;
    else if (rcc->swr != WEIR_CC_UNSET && stale <= rcc->swr)
        v->use = WEIR_USE_STALE_REVALIDATE;
}

int64_t weir_cache_keep_seconds(const struct weir_cc *rcc, int64_t lifetime, const struct weir_cache_times *t,
                                int has_validator)
{
    int64_t window = 0, keep;

    if (!(rcc->flags &
          (WEIR_CC_MUST_REVALIDATE | WEIR_CC_PROXY_REVALIDATE | WEIR_CC_NO_CACHE | WEIR_CC_HAS_SMAXAGE))) {
        if (rcc->swr > window)
            window = rcc->swr;
        if (rcc->sie > window)
            window = rcc->sie;
    }
    keep = lifetime + window - weir_cache_age(t, t->response_time);
    if (has_validator)
        keep = (keep > 0 ? keep : 0) + WEIR_CACHE_KEEP_VALIDATABLE;
    if (keep > 2 * WEIR_CC_DELTA_MAX)
        keep = 2 * WEIR_CC_DELTA_MAX;
    return keep < 1 ? 1 : keep;
}
