/*
 * access_log.h - formatting one access log line ("combined" or "json").
 *
 * Every field a client can influence (method, target, Host, Referer,
 * User-Agent, X-Request-Id) is escaped: in JSON as a JSON string (quote,
 * backslash, control and non-ASCII bytes as \uXXXX escapes, so every line
 * is one valid object whatever the client sent); in the combined format as
 * nginx does (quote, backslash, control and non-ASCII bytes as \xHH), so a
 * client can neither end a quoted field nor forge a line or a key.
 *
 * Pure: no I/O, no global state, any thread. The caller hands the line to
 * the worker's access log buffer (log.h).
 */
#ifndef WEIR_ACCESS_LOG_H
#define WEIR_ACCESS_LOG_H

#include <stddef.h>
#include <stdint.h>

/* One finished exchange. Spans need not be NUL-terminated; NULL/0 = absent. */
struct weir_access_rec {
    const char *client; /* peer address text (NUL-terminated) */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    const char *host;
    size_t host_len;
    const char *referer;
    size_t referer_len;
    const char *ua;
    size_t ua_len;
    const char *rid; /* request id (client-supplied or ours) */
    size_t rid_len;
    int http10;
    int status;
    uint64_t bytes;       /* body bytes sent to the client */
    const char *pool;     /* pool name or NULL */
    const char *upstream; /* last server tried or NULL */
    double upstream_s;    /* time to the response head, < 0 when none */
    double total_s;
    int tries;
    /* TLS connections only (NULL for plain HTTP): protocol ("TLSv1.3"),
     * cipher and the SNI the client sent (NULL: none). Combined format: "
     * tls=V cipher=C sni=S" after rid ("-" for no SNI); JSON: "tls_version",
     * "tls_cipher", "tls_sni" (null for no SNI) after request_id. */
    const char *tls_version;
    const char *tls_cipher;
    const char *tls_sni;
};

/* Largest line the formatter produces (client fields are cut to fit). */
#define WEIR_ACCESS_LINE_MAX 16384

/*
 * Format r as one line ending in '\n' into out (cap bytes, cap >= 256).
 * json: 1 for JSON, 0 for combined. clf_time: "06/Dec/2026:19:05:58 +0000";
 * iso_time: "2026-12-06T19:05:58Z". Returns the line length; a line that
 * would not fit has its client fields cut (never the closing quote or '\n').
 */
size_t weir_access_format(char *out, size_t cap, int json, const char *clf_time, const char *iso_time,
                          const struct weir_access_rec *r);

/* Escape s[0..n) for inside a JSON string into out (at most cap bytes,
 * never cutting an escape). Returns the bytes written. */
size_t weir_access_escape_json(char *out, size_t cap, const char *s, size_t n);
/* Escape s[0..n) for inside a quoted combined-format field (nginx:
 * '"', '\\', bytes < 0x20 and >= 0x7f as \xHH). Returns the bytes written. */
size_t weir_access_escape_clf(char *out, size_t cap, const char *s, size_t n);

#endif
