/*
 * http_int.h - what the HTTP/1.1 head parser (http_parse.c) and the chunked
 * body parser (http_chunked.c) share: the character classes of the RFC 9110 /
 * RFC 3986 grammar, as one table defined in http_parse.c. Internal to src/.
 */
#ifndef WEIR_HTTP_INT_H
#define WEIR_HTTP_INT_H

#define C_TCHAR   0x01 /* token (RFC 9110 5.6.2) */
#define C_ORIGIN  0x02 /* origin-form byte: pchar / "/" / "?" without "%" */
#define C_VALUE   0x04 /* field-value byte: HTAB / SP / VCHAR / obs-text */
#define C_REGNAME 0x08 /* reg-name byte: unreserved / sub-delims (no "%") */
#define C_QDTEXT  0x10 /* quoted-string qdtext */
#define C_HEX     0x20 /* HEXDIG */
#define C_DIGIT   0x40 /* DIGIT */
#define C_QLAX    0x80 /* sent unencoded in queries by browsers (WHATWG URL): [ \ ] ^ ` { | } */

/* Class bits of every byte; '\n' and '\r' are in no class. */
extern const unsigned char weir_http_ctab[256];

#define CT(c, cls) (weir_http_ctab[(unsigned char)(c)] & (cls))

#endif
