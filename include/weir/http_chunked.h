/*
 * http_chunked.h - weir's chunked transfer-coding parser (RFC 9112 7.1), no
 * I/O. It is a true byte-at-a-time state machine that can be fed arbitrary
 * fragments (evbuffer_peek iovecs) and validates framing while the bytes
 * themselves are forwarded unchanged by the caller.
 *
 * weir/http_parse.h includes this header. Any thread; no global state.
 */
#ifndef WEIR_HTTP_CHUNKED_H
#define WEIR_HTTP_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "weir/core.h"

#define WEIR_HTTP_MAX_CHUNK_LINE 4096  /* chunk-size line incl. extensions */
#define WEIR_HTTP_MAX_TRAILERS   32768 /* bytes of trailer section */

struct weir_chunked {
    int state;
    uint64_t remaining;   /* data bytes left in the current chunk */
    size_t line_len;      /* bytes of the current size/trailer line */
    size_t trailer_bytes; /* bytes of trailer section so far */
    unsigned ndigits;
};

void weir_chunked_init(struct weir_chunked *c);

/*
 * Scan buf[0..len) as the continuation of a chunked body.
 * Returns WEIR_OK when the body ended in this buffer (*used = bytes up to and
 * including the final CRLF after the trailers), WEIR_AGAIN when all len
 * bytes belong to the body and more are needed (*used = len), WEIR_ERROR on
 * malformed framing (bad hex, size overflow, missing CRLF, bare CR/LF, over
 * long lines, trailer section too long, invalid trailer field).
 * If data_cb is not NULL it is called for each run of chunk-data bytes (used
 * to de-chunk a body for an HTTP/1.0 client).
 */
int weir_chunked_parse(struct weir_chunked *c, const char *buf, size_t len, size_t *used,
                       void (*data_cb)(void *ud, const char *p, size_t n), void *ud);

#endif
