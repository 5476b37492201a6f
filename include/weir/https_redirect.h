/*
 * https_redirect.h - the Location of listen[].redirect_https answers
 * (308 Permanent Redirect to the same host and target over https).
 *
 * Pure function, any thread.
 */
#ifndef WEIR_HTTPS_REDIRECT_H
#define WEIR_HTTPS_REDIRECT_H

#include <stddef.h>

/*
 * Write "https://HOST[:PORT]TARGET" into buf (NUL-terminated).
 * host: the request's Host value (a name, an IPv4 address or a bracketed
 *   IPv6 address, optionally ":port"); its port is dropped (it was the plain
 *   port) and the name lower-cased.
 * target: the request target in origin form ("/path?query").
 * https_port: the port the redirect goes to; omitted when 443 or <= 0.
 * Returns the length written, or -1 when host or target is not acceptable
 * (the caller answers 400) or buf is too small. buf is unchanged on error.
 */
int weir_https_location(char *buf, size_t n, const char *host, size_t hlen, const char *target, size_t tlen,
                        int https_port);

#endif
