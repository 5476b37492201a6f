/* https_redirect.c - Location for redirect_https listeners (see https_redirect.h). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "weir/core.h"
#include "weir/https_redirect.h"

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* Length of the host part of a Host value without its port, or 0 when it
 * is not a host name, an IPv4 address or a bracketed IPv6 address
 * followed only by an optional ":digits". */
static size_t host_part(const char *h, size_t n)
{
    size_t i = 0, end;

    if (n == 0)
        return 0;
    if (h[0] == '[') {
        for (i = 1; i < n && h[i] != ']'; i++) {
            unsigned char c = (unsigned char)h[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
                  c == '.'))
                return 0;
        }
        if (i >= n || i == 1)
            return 0;
        end = ++i;
    } else {
        while (i < n && name_char((unsigned char)h[i]))
            i++;
        if (i == 0 || h[0] == '.')
            return 0;
        end = i;
    }
    if (i < n) {
        if (h[i] != ':' || i + 1 == n)
            return 0;
        for (i++; i < n; i++) {
            if (h[i] < '0' || h[i] > '9')
                return 0;
        }
    }
    return end;
}

int weir_https_location(char *buf, size_t n, const char *host, size_t hlen, const char *target, size_t tlen,
                        int https_port)
{
    size_t hp = host_part(host, hlen), need, i;
    char port[16] = "";

    if (hp == 0 || tlen == 0 || target[0] != '/')
        return -1;
    for (i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f) /* the parser refused these already; never echo them */
            return -1;
    }
    if (https_port > 0 && https_port != 443)
        snprintf(port, sizeof(port), ":%d", https_port);
    need = sizeof("https://") - 1 + hp + strlen(port) + tlen;
    if (need + 1 > n)
        return -1;
    memcpy(buf, "https://", sizeof("https://") - 1);
    for (i = 0; i < hp; i++)
        buf[sizeof("https://") - 1 + i] = (char)weir_lower((unsigned char)host[i]);
    memcpy(buf + sizeof("https://") - 1 + hp, port, strlen(port));
    memcpy(buf + need - tlen, target, tlen);
    buf[need] = '\0';
    return (int)need;
}
