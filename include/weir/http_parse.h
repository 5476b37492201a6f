/*
 * http_parse.h - weir's own HTTP/1.1 message parser (RFC 9112), no I/O.
 *
 * The head parser works over one contiguous buffer (the caller pulls up the
 * head with evbuffer_pullup) and never copies: every span in struct
 * weir_http_msg points into that buffer, so the buffer must stay unchanged
 * while the message is used. It is resumable in the sense that matters for a
 * proxy: the caller keeps the same msg across reads and the parser only scans
 * bytes it has not scanned before while looking for the end of the head
 * (msg->scan_pos), then parses the head once, strictly.
 *
 * The chunked body parser is declared in weir/http_chunked.h, which this
 * header includes so that users of either need only this one.
 *
 * Any thread; no global state.
 */
#ifndef WEIR_HTTP_PARSE_H
#define WEIR_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "weir/core.h"
#include "weir/http_chunked.h"

#define WEIR_HTTP_MAX_HEADERS      128
#define WEIR_HTTP_MAX_REQUEST_LINE 8192 /* longer request line -> 414 */

enum weir_http_method {
    WEIR_HTTP_OTHER = 0, /* a valid token we do not know: forwarded as is */
    WEIR_HTTP_GET,
    WEIR_HTTP_HEAD,
    WEIR_HTTP_POST,
    WEIR_HTTP_PUT,
    WEIR_HTTP_DELETE,
    WEIR_HTTP_OPTIONS,
    WEIR_HTTP_TRACE,
    WEIR_HTTP_PATCH,
    WEIR_HTTP_CONNECT
};

enum weir_http_body {
    WEIR_BODY_NONE = 0, /* no body follows the head */
    WEIR_BODY_LENGTH,   /* content_length bytes follow */
    WEIR_BODY_CHUNKED,  /* chunked coding follows (final coding is chunked) */
    WEIR_BODY_EOF       /* response only: body runs until the server closes */
};

enum weir_http_target_form {
    WEIR_TARGET_ORIGIN = 0, /* "/path?query" */
    WEIR_TARGET_ABSOLUTE,   /* "http://host/path" (host/path spans filled) */
    WEIR_TARGET_AUTHORITY,  /* "host:port" (CONNECT only) */
    WEIR_TARGET_ASTERISK    /* "*" (OPTIONS only) */
};

/* msg->flags bits */
#define WEIR_HTTP_F_KEEPALIVE   0x0001u /* connection persists after this message */
#define WEIR_HTTP_F_CONN_CLOSE  0x0002u /* "Connection: close" was present */
#define WEIR_HTTP_F_EXPECT_100  0x0004u /* request: "Expect: 100-continue" */
#define WEIR_HTTP_F_UPGRADE     0x0008u /* Connection lists "upgrade" and Upgrade present */
#define WEIR_HTTP_F_TE_TRAILERS 0x0010u /* request: "TE: trailers" */

/* header->flags bits: which headers are hop-by-hop (never forwarded as is) */
#define WEIR_HDR_F_HOP                                                                                       \
    0x01u /* Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Transfer-Encoding */
#define WEIR_HDR_F_CONN_LISTED 0x02u /* named by a token in the Connection header */

struct weir_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS stripped */
    size_t value_len;
    unsigned flags; /* WEIR_HDR_F_* */
};

struct weir_http_msg {
    /* request line */
    const char *method;
    size_t method_len;
    int method_id; /* enum weir_http_method */
    const char *target;
    size_t target_len;
    int target_form;  /* enum weir_http_target_form */
    const char *path; /* origin-form part of target ("/..."), also for absolute-form */
    size_t path_len;
    const char *authority; /* absolute-form or authority-form host[:port], else NULL */
    size_t authority_len;

    /* status line */
    int status;
    const char *reason;
    size_t reason_len;

    int version; /* 10 or 11 */

    struct weir_http_header headers[WEIR_HTTP_MAX_HEADERS];
    size_t nheaders;
    int host_idx; /* index of the Host header, or -1 */

    size_t head_len; /* bytes of the head, through the empty line */
    int body;        /* enum weir_http_body */
    uint64_t content_length;
    unsigned flags; /* WEIR_HTTP_F_* */

    /* On WEIR_ERROR: the status to answer (400, 414, 431, 501, 505) and a
     * short static text for the log. */
    int error_status;
    const char *error;

    /* Internal resume point: bytes already scanned for the end of the head.
     * weir_http_msg_reset() clears it. */
    size_t scan_pos;
    /* Internal: lines ended so far during that scan, so that more than
     * WEIR_HTTP_MAX_HEADERS fields is refused before the head is complete.
     * weir_http_msg_reset() clears it. */
    size_t scan_lines;
};

/* Clear a message before parsing a new one. */
void weir_http_msg_reset(struct weir_http_msg *m);

/*
 * Parse a request head from buf[0..len).
 * Returns WEIR_OK (m filled, m->head_len is the head's length), WEIR_AGAIN
 * (no complete head yet; call again with the same m and a longer buffer that
 * starts at the same byte), or WEIR_ERROR (m->error_status/m->error set).
 * A request line longer than WEIR_HTTP_MAX_REQUEST_LINE gives 414, a head
 * longer than max_head bytes or with more than WEIR_HTTP_MAX_HEADERS fields
 * gives 431, even before the head is complete.
 */
int weir_http_parse_request(const char *buf, size_t len, size_t max_head, struct weir_http_msg *m);

/*
 * Parse a response head. req_method_id is the method of the request this
 * answers (HEAD responses have no body). Same returns as the request parser;
 * on WEIR_ERROR the proxy answers 502.
 * 1xx (other than 101), 204, 304 and responses to HEAD get WEIR_BODY_NONE;
 * 101 gets WEIR_BODY_NONE with WEIR_HTTP_F_UPGRADE set.
 */
int weir_http_parse_response(const char *buf, size_t len, size_t max_head, int req_method_id,
                             struct weir_http_msg *m);

/* Find the first header named `lname` (lower-case literal). Returns its index
 * or -1. */
int weir_http_find_header(const struct weir_http_msg *m, const char *lname);

/* Returns 1 when the comma-separated list value[0..n) holds the token `ltoken`
 * (lower-case literal, compared case-insensitively), else 0. */
int weir_http_list_has(const char *value, size_t n, const char *ltoken);

#endif
