/*
 * cache_rules.h - the rules of a shared HTTP cache, with no I/O and no state:
 * RFC 9111 (caching), RFC 5861 (stale-while-revalidate, stale-if-error),
 * RFC 9213 (CDN-Cache-Control) and the parts of RFC 9110 a cache answers
 * itself (HTTP dates, conditional requests, ranges).
 *
 * Header sections are given as arrays of struct weir_http_header (the
 * parser's spans; only name/value are read), so the rules work on a parsed
 * request or response as well as on a stored object's headers. Times are
 * wall-clock seconds since the epoch (int64_t). Nothing here allocates
 * except the functions that say they return an allocated string.
 *
 * Implementation: src/cache_rules.c (directives, dates, storability,
 * freshness, age, reuse decision) and src/cache_match.c (Vary, keys,
 * conditional requests, 304 updates, ranges, invalidation).
 *
 * Any thread; no global state.
 */
#ifndef WEIR_CACHE_RULES_H
#define WEIR_CACHE_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "weir/http_date.h"
#include "weir/http_parse.h"

/* delta-seconds beyond what we represent are taken as 2^31 (RFC 9111 §1.2.2). */
#define WEIR_CC_DELTA_MAX 2147483648LL
/* Absent numeric directive. */
#define WEIR_CC_UNSET (-1LL)
/* max-stale without a value: any staleness is acceptable. */
#define WEIR_CC_ANY INT64_MAX
/* Heuristic freshness: this fraction of (Date - Last-Modified), at most
 * WEIR_CACHE_HEURISTIC_MAX seconds (RFC 9111 §4.2.2 suggests 10%). */
#define WEIR_CACHE_HEURISTIC_PCT 10
#define WEIR_CACHE_HEURISTIC_MAX 86400

/* struct weir_cc.flags bits: one per boolean directive. */
#define WEIR_CC_NO_STORE         0x0001u /* request and response */
#define WEIR_CC_NO_CACHE         0x0002u /* request; response: unqualified or qualified (taken as unqualified) */
#define WEIR_CC_PRIVATE          0x0004u /* response; qualified private="f" taken as unqualified */
#define WEIR_CC_PUBLIC           0x0008u /* response */
#define WEIR_CC_MUST_REVALIDATE  0x0010u /* response */
#define WEIR_CC_PROXY_REVALIDATE 0x0020u /* response */
#define WEIR_CC_IMMUTABLE        0x0040u /* response (RFC 8246) */
#define WEIR_CC_ONLY_IF_CACHED   0x0080u /* request */
#define WEIR_CC_NO_TRANSFORM     0x0100u /* both */
#define WEIR_CC_MUST_UNDERSTAND  0x0200u /* response */
#define WEIR_CC_HAS_SMAXAGE                                                                                  \
    0x0400u /* response: s-maxage present (valid or not): implies proxy-revalidate                           \
             */
/* A freshness directive (max-age, s-maxage) was malformed or given twice
 * with different values: the response is treated as stale (§4.2.1). */
#define WEIR_CC_BAD_FRESHNESS 0x1000u
/* CDN-Cache-Control was present, valid, and its directives were used. */
#define WEIR_CC_TARGETED 0x2000u

/* Parsed Cache-Control (request or response). Numbers are seconds, clamped
 * to WEIR_CC_DELTA_MAX; WEIR_CC_UNSET when absent or ignored. */
struct weir_cc {
    unsigned flags;
    int64_t max_age;    /* request and response */
    int64_t s_maxage;   /* response */
    int64_t max_stale;  /* request; WEIR_CC_ANY without a value */
    int64_t min_fresh;  /* request */
    int64_t swr;        /* stale-while-revalidate (response) */
    int64_t sie;        /* stale-if-error (request and response) */
    unsigned malformed; /* directives ignored as malformed (for statistics) */
};

void weir_cc_init(struct weir_cc *cc);

/*
 * Parse one Cache-Control field value v[0..n) into cc (call weir_cc_init
 * first; several field lines are parsed into the same cc in order, which is
 * the same as parsing their comma-joined value). Directive names are
 * case-insensitive; arguments may be tokens or quoted strings. Unknown
 * directives are ignored. A second occurrence of a numeric directive with
 * the same value is harmless; with a different value: max-age/s-maxage set
 * WEIR_CC_BAD_FRESHNESS, the others keep the most restrictive value. A
 * malformed max-age/s-maxage sets WEIR_CC_BAD_FRESHNESS; any other
 * malformed directive is ignored (counted in cc->malformed).
 */
void weir_cc_parse(struct weir_cc *cc, const char *v, size_t n);

/*
 * Parse a CDN-Cache-Control value (RFC 9213: a Structured Field Dictionary,
 * RFC 8941). Returns 0 and fills cc (initialised here) when the value is a
 * valid dictionary, -1 when it is not (the field is then to be ignored).
 */
int weir_cc_parse_targeted(struct weir_cc *cc, const char *v, size_t n);

/*
 * The directives that govern a response for this cache: CDN-Cache-Control
 * when present and valid (WEIR_CC_TARGETED set; Cache-Control and Expires
 * are then ignored), else every Cache-Control line. Surrogate-Control is
 * never read. A request's directives: use weir_cc_request().
 */
void weir_cc_response(struct weir_cc *cc, const struct weir_http_header *h, size_t n);
void weir_cc_request(struct weir_cc *cc, const struct weir_http_header *h, size_t n);

/* HTTP-date parsing and formatting: weir/http_date.h (included above). */

/* ---- storing -------------------------------------------------------------- */

enum weir_cache_store_reason {
    WEIR_STORE_OK = 0,
    WEIR_STORE_METHOD,          /* only GET responses are stored */
    WEIR_STORE_STATUS,          /* 1xx, 206, 304, or not a status (above 599) */
    WEIR_STORE_REQ_NO_STORE,    /* request Cache-Control: no-store */
    WEIR_STORE_NO_STORE,        /* response no-store (without must-understand for a known status) */
    WEIR_STORE_PRIVATE,         /* response private */
    WEIR_STORE_AUTHORIZATION,   /* request had Authorization; response not public/s-maxage/must-revalidate */
    WEIR_STORE_SET_COOKIE,      /* response carries Set-Cookie (weir's policy) */
    WEIR_STORE_VARY_STAR,       /* Vary: * can never be matched */
    WEIR_STORE_NO_FRESHNESS,    /* no explicit freshness and the status is not heuristically cacheable */
    WEIR_STORE_MUST_UNDERSTAND, /* must-understand with a status we do not understand */
    WEIR_STORE_NEVER_FRESH,     /* could never answer a request: see weir_cache_storable() */
    WEIR_STORE_REASONS
};

/* Short stable name of a reason ("ok", "method", ...) for statistics. */
const char *weir_cache_store_reason_name(int reason);

/*
 * May this response be stored by a shared cache (RFC 9111 §3)?
 * req_method is enum weir_http_method of the request; req/resp headers as
 * received; rcc the response's directives (weir_cc_response). Returns a
 * enum weir_cache_store_reason (WEIR_STORE_OK when storable).
 */
int weir_cache_storable(int req_method, const struct weir_http_header *req, size_t nreq, int status,
                        const struct weir_http_header *resp, size_t nresp, const struct weir_cc *rcc);

/*
 * Is a storable response worth storing? One that is never fresh (no
 * s-maxage, max-age or Expires giving it a lifetime above 0, or no-cache),
 * carries no validator (ETag, Last-Modified) and no stale-while-revalidate /
 * stale-if-error window could not answer any request without a full fetch
 * from the origin: RFC 9111 lets a cache store it (a 200 is heuristically
 * cacheable), but storing it would only cost a copy per request. Returns
 * WEIR_STORE_NEVER_FRESH for such a response, else WEIR_STORE_OK. An
 * Expires date is not judged here (that needs the times): any Expires
 * counts as a lifetime.
 */
int weir_cache_worth_storing(const struct weir_http_header *resp, size_t nresp, const struct weir_cc *rcc);

/* 1 when the status is heuristically cacheable (RFC 9110 §15.1). */
int weir_cache_status_heuristic(int status);

/* 1 when a stored header with this name must not be stored or updated
 * (hop-by-hop and proxy fields, RFC 9111 §3.1). Compared case-insensitively. */
int weir_cache_header_unstored(const char *name, size_t n);

/* ---- freshness and age ---------------------------------------------------- */

/* The times a stored response is judged by. */
struct weir_cache_times {
    int64_t request_time;  /* when the request that got it was sent */
    int64_t response_time; /* when the response was received */
    int64_t date;          /* Date header, or response_time when absent/invalid */
    int64_t age_value;     /* Age header, 0 when absent/invalid */
};

/* Read Date and Age from response headers. */
void weir_cache_times_init(struct weir_cache_times *t, int64_t request_time, int64_t response_time,
                           const struct weir_http_header *h, size_t n);

/*
 * Freshness lifetime in seconds (RFC 9111 §4.2.1 for a shared cache):
 * s-maxage, else max-age, else Expires - Date (Expires invalid: 0), else
 * the heuristic from Last-Modified when §4.2.2 allows it, else 0.
 * WEIR_CC_BAD_FRESHNESS gives 0. *heuristic (may be NULL) is set to 1 when
 * the heuristic was used.
 */
int64_t weir_cache_freshness(const struct weir_cc *rcc, int status, const struct weir_http_header *h,
                             size_t n, const struct weir_cache_times *t, int *heuristic);

/* current_age (RFC 9111 §4.2.3) at `now`; never negative. */
int64_t weir_cache_age(const struct weir_cache_times *t, int64_t now);

/* ---- reuse ---------------------------------------------------------------- */

enum weir_cache_use {
    WEIR_USE_FRESH = 0,        /* serve as is */
    WEIR_USE_STALE,            /* stale, and the client accepts it (max-stale): serve as is */
    WEIR_USE_STALE_REVALIDATE, /* stale-while-revalidate: serve now, revalidate in the background */
    WEIR_USE_REVALIDATE,       /* must be validated with the origin first (or refetched) */
};

struct weir_cache_verdict {
    int use;            /* enum weir_cache_use */
    int64_t age;        /* current age, for the Age header */
    int64_t ttl;        /* freshness lifetime - age (negative when stale) */
    int stale_if_error; /* 1 when the stored response may be served if the origin fails */
};

/*
 * May a stored response answer this request without contacting the origin?
 * rcc is the stored response's directives, lifetime its freshness lifetime,
 * qcc the request's directives. The response side forbids serving stale
 * with no-cache (always revalidate), must-revalidate, proxy-revalidate and
 * s-maxage (§5.2.2.10); the request side asks with no-cache, max-age,
 * min-fresh, max-stale, and no-store (weir's choice: sent on, never
 * answered from the cache). stale-if-error comes from the response or the
 * request (RFC 5861 §4) and is refused by must-revalidate-like directives.
 */
void weir_cache_decide(const struct weir_cc *rcc, int64_t lifetime, const struct weir_cache_times *t,
                       const struct weir_cc *qcc, int64_t now, struct weir_cache_verdict *v);

/* Extra seconds a stale response with a validator (ETag or Last-Modified)
 * is kept so that it can be revalidated with a conditional request. */
#define WEIR_CACHE_KEEP_VALIDATABLE 300

/* Seconds a stored response stays useful after it was received: lifetime
 * plus the longest stale window (stale-while-revalidate, stale-if-error),
 * minus the age it had on arrival, plus WEIR_CACHE_KEEP_VALIDATABLE when
 * has_validator; at least 1. Used as the L2 TTL and to drop dead L1
 * entries. */
int64_t weir_cache_keep_seconds(const struct weir_cc *rcc, int64_t lifetime, const struct weir_cache_times *t,
                                int has_validator);

/* ---- Vary and keys (cache_match.c) ---------------------------------------- */

/*
 * The Vary field names of a response: lower-cased, deduplicated, sorted,
 * joined with "," into an allocated string (caller frees); "" when there is
 * no Vary. Returns NULL on allocation failure; *star is set to 1 when Vary
 * contains "*" (never matches).
 */
char *weir_cache_vary_names(const struct weir_http_header *h, size_t n, int *star);

/*
 * The normalised values of the request headers named by `names` (as built
 * by weir_cache_vary_names), as an allocated string (caller frees, *len
 * set; binary safe): for each name, the lines of that field joined by
 * commas, with whitespace around commas and at the ends removed, empty
 * elements dropped, and lower-cased for fields whose values are
 * case-insensitive (Accept-Encoding, Accept-Language, Accept-Charset);
 * an absent field is distinct from an empty one. Two requests select the
 * same variant iff the strings are equal. NULL on allocation failure.
 */
char *weir_cache_vary_values(const char *names, const struct weir_http_header *req, size_t nreq, size_t *len);

/*
 * The URL a request's responses are stored under: "SCHEME://HOST" + path,
 * with the host lower-cased and a default or empty port removed (":80"
 * for http, ":443" for https, ":"); any other port and a trailing dot are
 * kept (the backend is sent them: another resource). The path is the
 * origin-form target, kept as sent.
 * host may come from the Host header or an absolute-form target. Allocated
 * (caller frees); NULL on allocation failure.
 */
char *weir_cache_url(const char *scheme, const char *host, size_t host_len, const char *path,
                     size_t path_len);

/*
 * The primary cache key for a method and URL: "GET " + url. HEAD maps to
 * GET (a stored GET answers a HEAD). Allocated; NULL for other methods
 * (nothing is looked up) or on allocation failure.
 */
char *weir_cache_key(int method, const char *url);

/* ---- conditional requests (cache_match.c) --------------------------------- */

enum weir_cache_cond {
    WEIR_COND_NONE = 0,     /* no precondition: send the stored response */
    WEIR_COND_PASS,         /* preconditions hold: send the stored response */
    WEIR_COND_NOT_MODIFIED, /* answer 304 */
    WEIR_COND_FAILED,       /* answer 412 */
};

/*
 * Evaluate the request's preconditions against a stored response (RFC 9110
 * §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match,
 * If-Modified-Since; If-Range is left to weir_cache_range). ETags compare
 * weakly for If-None-Match and strongly for If-Match; If-Modified-Since
 * uses Last-Modified, else Date, else response_time, and is only for
 * GET/HEAD and ignored when If-None-Match is present or the date is
 * invalid. Returns enum weir_cache_cond.
 */
int weir_cache_conditional(int method, const struct weir_http_header *req, size_t nreq,
                           const struct weir_http_header *stored, size_t nstored, int64_t response_time);

/* 1 when the entity-tag lists match: weak (1) or strong (0) comparison of
 * every tag of `list` (or "*") against the single tag `etag`. */
int weir_cache_etag_match(const char *list, size_t list_len, const char *etag, size_t etag_len, int weak);

/* 1 when a stored header with this name is kept in a 304 built from the
 * cache (Cache-Control, Content-Location, Date, ETag, Expires, Vary, and
 * Last-Modified, Surrogate-Key... kept as metadata; RFC 9110 §15.4.5). */
int weir_cache_304_keeps(const char *name, size_t n);

/*
 * Headers of a stored response freshened by a 304 (RFC 9111 §3.2, §4.3.4):
 * every field the 304 carries replaces all stored lines of that name,
 * except fields never stored (weir_cache_header_unstored) and
 * Content-Length; other stored lines are kept in order, new ones appended.
 * Fills out (capacity cap) with spans into stored/fresh; returns the count,
 * or -1 when cap is too small.
 */
int weir_cache_update_headers(const struct weir_http_header *stored, size_t nstored,
                              const struct weir_http_header *fresh, size_t nfresh,
                              struct weir_http_header *out, size_t cap);

/*
 * Does a 304 validate this stored response (§4.3.4)? 1 when the 304 carries
 * a strong ETag equal to the stored one, or (no ETag in the 304) a
 * Last-Modified equal to the stored one, or neither validator and the
 * stored response has none either (it was the only one asked about).
 */
int weir_cache_304_selects(const struct weir_http_header *stored, size_t nstored,
                           const struct weir_http_header *fresh, size_t nfresh);

/* ---- ranges (cache_match.c) ----------------------------------------------- */

#define WEIR_RANGE_MAX 16 /* more ranges than this: the Range field is ignored */

enum weir_range_result {
    WEIR_RANGE_NONE = 0,      /* no usable Range: send 200 with the whole body */
    WEIR_RANGE_SINGLE,        /* 206 with Content-Range */
    WEIR_RANGE_MULTI,         /* 206 multipart/byteranges */
    WEIR_RANGE_UNSATISFIABLE, /* 416 with Content-Range: bytes * /length */
};

struct weir_range {
    uint64_t first, last; /* inclusive */
};

/*
 * Evaluate Range (and If-Range) of a GET against a stored response of
 * `length` body bytes (RFC 9110 §14). Not GET, no Range, a unit other than
 * bytes, a syntax error, more than WEIR_RANGE_MAX ranges, or an If-Range
 * that does not match (strong ETag, or a date equal to a Last-Modified at
 * least one second before Date): WEIR_RANGE_NONE. Overlapping or adjacent
 * ranges are merged (ascending order) so no byte is sent twice. Fills
 * out[0..*nout) for SINGLE and MULTI.
 */
int weir_cache_range(int method, const struct weir_http_header *req, size_t nreq,
                     const struct weir_http_header *stored, size_t nstored, uint64_t length,
                     struct weir_range *out, size_t *nout);

/* ---- invalidation (cache_match.c) ----------------------------------------- */

/* 1 for methods that are safe (GET, HEAD, OPTIONS, TRACE). */
int weir_http_method_safe(int method);

/*
 * URLs to invalidate after an unsafe request got a non-error (2xx/3xx)
 * response (RFC 9111 §4.4): the target URL, and Location and
 * Content-Location when they resolve to the same scheme and host. Writes
 * up to 3 allocated URLs into out (caller frees each) and returns the
 * count (0 for safe methods or error statuses; -1 on allocation failure,
 * with nothing left allocated).
 */
int weir_cache_invalidations(int method, int status, const char *url, const struct weir_http_header *resp,
                             size_t nresp, char *out[3]);

#endif
