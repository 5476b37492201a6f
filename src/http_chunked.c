/*
 * http_chunked.c - the chunked transfer-coding parser (RFC 9112 7.1): a
 * byte-at-a-time state machine that is fed arbitrary fragments of a body,
 * validates its framing (chunk sizes, extensions, CRLFs, trailer fields)
 * and optionally hands the chunk-data bytes to a callback to de-chunk them.
 * No I/O, no allocation, no global mutable state: any thread.
 *
 * Depends on: weir/http_chunked.h (its API and limits), http_int.h (the
 * character-class table defined in http_parse.c).
 */
#include "config.h"

#include <string.h>

#include "weir/http_chunked.h"

#include "http_int.h"

static unsigned hexval(unsigned char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

enum {
    CH_SIZE0 = 0, /* first HEXDIG of chunk-size */
    CH_SIZE,      /* more HEXDIG */
    CH_EXT_WS,    /* SP/HTAB before ";" */
    CH_EXT_NAME0, /* after ";": first byte of ext-name */
    CH_EXT_NAME,
    CH_EXT_VAL0, /* after "=": token or quoted-string */
    CH_EXT_TOKEN,
    CH_EXT_QSTR,
    CH_EXT_QPAIR, /* after a backslash in a quoted-string */
    CH_EXT_QEND,  /* after the closing quote */
    CH_SIZE_LF,   /* CR seen, LF must follow; last state of the size line */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRL0, /* start of a trailer line, or the final empty line */
    CH_TRL_NAME,
    CH_TRL_VALUE,
    CH_TRL_LF,
    CH_END_LF, /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR
};

#define CHUNK_SIZE_MAX (UINT64_C(1) << 62)

void weir_chunked_init(struct weir_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE0;
}

int weir_chunked_parse(struct weir_chunked *c, const char *buf, size_t len, size_t *used,
                       void (*data_cb)(void *ud, const char *p, size_t n), void *ud)
{
    const unsigned char *p = (const unsigned char *)buf, *end = p + len;
    int state = c->state;
    unsigned char ch;

    if (state == CH_DONE) {
        *used = 0;
        return WEIR_OK;
    }
    if (state == CH_ERROR) {
        *used = 0;
        return WEIR_ERROR;
    }

    while (p < end) {
        if (state == CH_DATA) {
            size_t avail = (size_t)(end - p);
            size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
            if (data_cb != NULL)
                data_cb(ud, (const char *)p, n);
            p += n;
            c->remaining -= n;
            if (c->remaining == 0)
                state = CH_DATA_CR;
            continue;
        }

        ch = *p;
        if (state <= CH_SIZE_LF) {
            if (++c->line_len > WEIR_HTTP_MAX_CHUNK_LINE)
                goto err;
        } else if (state >= CH_TRL0) {
            if (++c->trailer_bytes > WEIR_HTTP_MAX_TRAILERS)
                goto err;
        }

        switch (state) {
        case CH_SIZE0:
        case CH_SIZE:
            if (CT(ch, C_HEX)) {
                if (++c->ndigits > 16 || c->remaining > (CHUNK_SIZE_MAX >> 4))
                    goto err;
                c->remaining = (c->remaining << 4) | hexval(ch);
                if (c->remaining > CHUNK_SIZE_MAX)
                    goto err;
                state = CH_SIZE;
                break;
            }
            if (state == CH_SIZE0)
                goto err;
            goto ext_end;

        case CH_EXT_WS:
            if (ch == ' ' || ch == '\t')
                break;
            if (ch == ';') {
                state = CH_EXT_NAME0;
                break;
            }
            goto err;

        case CH_EXT_NAME0:
            if (!CT(ch, C_TCHAR))
                goto err;
            state = CH_EXT_NAME;
            break;

        case CH_EXT_NAME:
            if (CT(ch, C_TCHAR))
                break;
            if (ch == '=') {
                state = CH_EXT_VAL0;
                break;
            }
            goto ext_end;

        case CH_EXT_VAL0:
            if (CT(ch, C_TCHAR))
                state = CH_EXT_TOKEN;
            else if (ch == '"')
                state = CH_EXT_QSTR;
            else
                goto err;
            break;

        case CH_EXT_TOKEN:
            if (CT(ch, C_TCHAR))
                break;
            goto ext_end;

        case CH_EXT_QSTR:
            if (ch == '"')
                state = CH_EXT_QEND;
            else if (ch == '\\')
                state = CH_EXT_QPAIR;
            else if (!CT(ch, C_QDTEXT))
                goto err;
            break;

        case CH_EXT_QPAIR:
            if (!CT(ch, C_VALUE)) /* HTAB / SP / VCHAR / obs-text */
                goto err;
            state = CH_EXT_QSTR;
            break;

        case CH_EXT_QEND:
        ext_end:
            /* after chunk-size or a complete extension */
            if (ch == ';') {
                state = CH_EXT_NAME0;
            } else if (ch == ' ' || ch == '\t') {
                state = CH_EXT_WS;
            } else if (ch == '\r') {
                state = CH_SIZE_LF;
            } else {
                /* A lone LF is refused here (unlike in heads): chunked
                 * bytes are forwarded unchanged, and a backend that read
                 * "5\n" differently could be made to see another request. */
                goto err;
            }
            break;

        case CH_SIZE_LF:
            if (ch != '\n')
                goto err;
            c->line_len = 0;
            c->ndigits = 0;
            if (c->remaining == 0) {
                c->trailer_bytes = 0;
                state = CH_TRL0;
            } else {
                state = CH_DATA;
            }
            break;

        case CH_DATA_CR:
            if (ch != '\r')
                goto err;
            state = CH_DATA_LF;
            break;

        case CH_DATA_LF:
            if (ch != '\n')
                goto err;
            state = CH_SIZE0;
            break;

        case CH_TRL0:
            if (ch == '\r') {
                state = CH_END_LF;
            } else if (CT(ch, C_TCHAR)) {
                state = CH_TRL_NAME;
            } else {
                goto err; /* obs-fold, CTL, separators */
            }
            break;

        case CH_TRL_NAME:
            if (ch == ':')
                state = CH_TRL_VALUE;
            else if (!CT(ch, C_TCHAR))
                goto err;
            break;

        case CH_TRL_VALUE:
            if (ch == '\r')
                state = CH_TRL_LF;
            else if (!CT(ch, C_VALUE))
                goto err;
            break;

        case CH_TRL_LF:
            if (ch != '\n')
                goto err;
            state = CH_TRL0;
            break;

        case CH_END_LF:
            if (ch != '\n')
                goto err;
            p++;
            goto done;

        default:
            goto err;
        }
        p++;
    }

    c->state = state;
    *used = len;
    return WEIR_AGAIN;

done:
    c->state = CH_DONE;
    *used = (size_t)(p - (const unsigned char *)buf);
    return WEIR_OK;

err:
    c->state = CH_ERROR;
    *used = (size_t)(p - (const unsigned char *)buf);
    return WEIR_ERROR;
}
