/*
 * http_msg.h - building HTTP/1.1 heads: the request head weir sends
 * upstream, the response head it sends to the client, heads of the answers
 * weir gives itself, and the one status/reason table (RFC 9110 and the
 * codes of RFC 6585 and RFC 8297) shared by the proxy and the admin
 * endpoint.
 *
 * Pure functions over parsed messages (struct weir_http_msg from
 * http_parse.h) and a growable byte buffer: no I/O, no global state, any
 * thread.
 */
#ifndef WEIR_HTTP_MSG_H
#define WEIR_HTTP_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "weir/http_parse.h"

/* A growable byte buffer. Zero-initialise; appends after an allocation
 * failure are dropped and `oom` stays set, so a builder checks once at the
 * end. The caller owns p (free it with weir_sbuf_free). */
struct weir_sbuf {
    char *p;
    size_t len, cap;
    int oom;
};

/* Grow b for n more bytes (the slow path of weir_sbuf_add). Returns 0, or
 * -1 with b->oom set. */
int weir_sbuf_grow(struct weir_sbuf *b, size_t n);

static inline void weir_sbuf_add(struct weir_sbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap && weir_sbuf_grow(b, n) != 0)
        return;
    if (b->oom)
        return;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
}

void weir_sbuf_str(struct weir_sbuf *b, const char *s);
void weir_sbuf_u64(struct weir_sbuf *b, uint64_t v);
void weir_sbuf_free(struct weir_sbuf *b);
/* Append a string literal (its length counted by sizeof). */
#define WEIR_SBUF_LIT(b, lit) weir_sbuf_add((b), "" lit, sizeof(lit) - 1)

/*
 * The reason phrase of `status` (100..599): the registered phrase, or for
 * a code with none, a phrase for its class ("Client Error", ...). Never
 * NULL; static storage.
 */
const char *weir_http_reason(int status);
/* 1 when `status` has a registered reason phrase in the table. */
int weir_http_status_known(int status);

/* What the upstream request head needs besides the client's head. */
struct weir_up_head_params {
    const char *host; /* Host value to send: as the client gave it */
    size_t host_len;
    const char *client; /* client address, appended to X-Forwarded-For */
    size_t client_len;
    const char *proto; /* X-Forwarded-Proto value: "http" or "https" */
    const char *rid;   /* request id, sent as X-Request-Id when the client sent none */
    int upgrade;       /* forward the request's Upgrade (Connection: upgrade) */
};

/*
 * Append to b the head to send upstream for the client request m: request
 * line in origin form (HTTP/1.1), Host, the client's end-to-end fields
 * (hop-by-hop fields and those named in Connection dropped; X-Forwarded-*
 * and Via rebuilt: earlier X-Forwarded-For and Via values kept and ours
 * appended), X-Request-Id when the client sent none, Transfer-Encoding:
 * chunked for a chunked body, Connection/Upgrade for an upgrade.
 * Returns WEIR_OK or WEIR_ERROR (out of memory: b->oom).
 */
int weir_http_build_upstream_head(struct weir_sbuf *b, const struct weir_http_msg *m,
                                  const struct weir_up_head_params *p);

/* What the client-facing response head needs besides the server's head. */
struct weir_resp_head_params {
    const char *rid; /* X-Request-Id to add when the server sent none, or NULL */
    int interim;     /* a 1xx interim head: nothing added */
    int chunked;     /* the body goes out chunked: add Transfer-Encoding */
    int close;       /* add Connection: close */
    int http10;      /* the client speaks HTTP/1.0: say keep-alive when not closing */
};

/*
 * Append to b the response head for the server's head m: status line
 * (HTTP/1.1, the server's code and reason), its end-to-end fields, and the
 * framing and connection fields weir decides. A 101 gets Connection:
 * upgrade and the server's Upgrade. Returns WEIR_OK or WEIR_ERROR (oom).
 */
int weir_http_build_response_head(struct weir_sbuf *b, const struct weir_http_msg *m,
                                  const struct weir_resp_head_params *p);

/*
 * Append to b a complete answer weir gives itself: head and, unless
 * head_only (HEAD request), a text/plain body "<status> <reason>\n[detail\n]".
 * Adds X-Request-Id (rid non-empty), Retry-After: 1 for 503, Connection:
 * close when close. *body_len gets the body bytes written.
 * Returns WEIR_OK or WEIR_ERROR (oom).
 */
int weir_http_build_local(struct weir_sbuf *b, int status, const char *detail, const char *rid, int close,
                          int head_only, size_t *body_len);

/*
 * Append to b a redirect weir gives itself (redirect_https: 308): as
 * weir_http_build_local, plus "Location: location" (a valid URI, written as
 * is); the body is "<status> <reason>\n<location>\n".
 */
int weir_http_build_redirect(struct weir_sbuf *b, int status, const char *location, const char *rid,
                             int close, int head_only, size_t *body_len);

/*
 * Append to b the head of an answer whose body another module holds (the
 * cache): status line, the caller's fields `fields` (complete "Name: value\r\n"
 * lines, no framing or connection fields), Content-Length: body_len (not for
 * 1xx, 204, 304, which have no body, nor when body_len is UINT64_MAX: a
 * length not known yet, framed by the caller),
 * X-Request-Id (rid non-empty), Connection: close when close.
 * Returns WEIR_OK or WEIR_ERROR (oom).
 */
int weir_http_build_answer_head(struct weir_sbuf *b, int status, const char *fields, size_t fields_len,
                                uint64_t body_len, const char *rid, int close);

#endif
