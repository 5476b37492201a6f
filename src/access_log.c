/* access_log.c - access log line formatting with every client field escaped. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "weir/access_log.h"

static const char hex[] = "0123456789ABCDEF";

size_t weir_access_escape_json(char *out, size_t cap, const char *s, size_t n)
{
    static const char lhex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (o + 2 > cap)
                break;
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Non-ASCII bytes too: the line stays valid JSON even when a
             * client sends invalid UTF-8 (obs-text). */
            if (o + 6 > cap)
                break;
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = lhex[c >> 4];
            out[o + 5] = lhex[c & 15];
            o += 6;
        } else {
            if (o + 1 > cap)
                break;
            out[o++] = (char)c;
        }
    }
    return o;
}

/* bare: the field is not quoted (rid=...), so a space is escaped too and
 * cannot start a forged key=value. */
static size_t escape_clf(char *out, size_t cap, const char *s, size_t n, int bare)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f || (bare && c == ' ')) {
            if (o + 4 > cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            if (o + 1 > cap)
                break;
            out[o++] = (char)c;
        }
    }
    return o;
}

size_t weir_access_escape_clf(char *out, size_t cap, const char *s, size_t n)
{
    return escape_clf(out, cap, s, n, 0);
}

/* A bounded line writer. */
struct lw {
    char *p;
    size_t len, cap;
};

static void lw_add(struct lw *w, const char *s, size_t n)
{
    if (n > w->cap - w->len)
        n = w->cap - w->len;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void lw_str(struct lw *w, const char *s)
{
    lw_add(w, s, strlen(s));
}

static void lw_fmt(struct lw *w, const char *fmt, double v)
{
    char tmp[48];
    int n = snprintf(tmp, sizeof(tmp), fmt, v);
    if (n > 0)
        lw_add(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void lw_u64(struct lw *w, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    lw_add(w, tmp, (size_t)n);
}

/* An escaped client field (mode 1: JSON, 0: quoted combined, 2: bare
 * combined), given at most `room` bytes of the line (and
 * never more than what is left once `reserve` bytes are kept for the rest). */
static void lw_esc(struct lw *w, int mode, const char *s, size_t n, size_t room, size_t reserve)
{
    size_t left = w->cap - w->len;
    left = left > reserve ? left - reserve : 0;
    if (room > left)
        room = left;
    if (s == NULL)
        return;
    w->len += mode == 1 ? weir_access_escape_json(w->p + w->len, room, s, n)
                        : escape_clf(w->p + w->len, room, s, n, mode == 2);
}

/* Per-field output budgets: together with the fixed text they fit
 * WEIR_ACCESS_LINE_MAX. */
#define B_METHOD  128
#define B_TARGET  8192
#define B_HOST    1024
#define B_REFERER 2048
#define B_UA      2048
#define B_RID     512
#define RESERVE   512 /* bytes kept for what follows a field */

size_t weir_access_format(char *out, size_t cap, int json, const char *clf_time, const char *iso_time,
                          const struct weir_access_rec *r)
{
    struct lw w = {out, 0, cap - 1}; /* one byte kept for '\n' */
    const char *proto = r->http10 ? "HTTP/1.0" : "HTTP/1.1";
    if (json) {
        lw_str(&w, "{\"time\":\"");
        lw_str(&w, iso_time);
        lw_str(&w, "\",\"client\":\"");
        lw_esc(&w, 1, r->client, r->client ? strlen(r->client) : 0, 128, RESERVE);
        lw_str(&w, "\",\"method\":\"");
        lw_esc(&w, 1, r->method, r->method_len, B_METHOD, RESERVE);
        lw_str(&w, "\",\"uri\":\"");
        lw_esc(&w, 1, r->target, r->target_len, B_TARGET, RESERVE);
        lw_str(&w, "\",\"proto\":\"");
        lw_str(&w, proto);
        lw_str(&w, "\",\"host\":\"");
        lw_esc(&w, 1, r->host, r->host_len, B_HOST, RESERVE);
        lw_str(&w, "\",\"status\":");
        lw_u64(&w, (uint64_t)r->status);
        lw_str(&w, ",\"bytes\":");
        lw_u64(&w, r->bytes);
        lw_str(&w, ",\"referer\":\"");
        lw_esc(&w, 1, r->referer, r->referer_len, B_REFERER, RESERVE);
        lw_str(&w, "\",\"user_agent\":\"");
        lw_esc(&w, 1, r->ua, r->ua_len, B_UA, RESERVE);
        lw_str(&w, "\",\"pool\":\"");
        lw_esc(&w, 1, r->pool ? r->pool : "-", strlen(r->pool ? r->pool : "-"), 256, RESERVE);
        lw_str(&w, "\",\"upstream\":\"");
        lw_esc(&w, 1, r->upstream ? r->upstream : "-", strlen(r->upstream ? r->upstream : "-"), 256, RESERVE);
        lw_str(&w, "\",\"upstream_time\":");
        if (r->upstream_s >= 0)
            lw_fmt(&w, "%.6f", r->upstream_s);
        else
            lw_str(&w, "null");
        lw_fmt(&w, ",\"total_time\":%.6f", r->total_s);
        lw_fmt(&w, ",\"tries\":%.0f", (double)r->tries);
        lw_str(&w, ",\"request_id\":\"");
        lw_esc(&w, 1, r->rid, r->rid_len, B_RID, r->tls_version != NULL ? 384 : 8);
        lw_str(&w, "\"");
        if (r->tls_version != NULL) {
            lw_str(&w, ",\"tls_version\":\"");
            lw_esc(&w, 1, r->tls_version, strlen(r->tls_version), 32, 8);
            lw_str(&w, "\",\"tls_cipher\":\"");
            lw_esc(&w, 1, r->tls_cipher ? r->tls_cipher : "", r->tls_cipher ? strlen(r->tls_cipher) : 0, 96,
                   8);
            lw_str(&w, "\",\"tls_sni\":");
            if (r->tls_sni != NULL) {
                lw_str(&w, "\"");
                lw_esc(&w, 1, r->tls_sni, strlen(r->tls_sni), 256, 8);
                lw_str(&w, "\"");
            } else {
                lw_str(&w, "null");
            }
        }
        lw_str(&w, "}");
    } else {
        lw_esc(&w, 2, r->client, r->client ? strlen(r->client) : 0, 128, RESERVE);
        lw_str(&w, " - - [");
        lw_str(&w, clf_time);
        lw_str(&w, "] \"");
        lw_esc(&w, 0, r->method, r->method_len, B_METHOD, RESERVE);
        lw_str(&w, " ");
        lw_esc(&w, 0, r->target, r->target_len, B_TARGET, RESERVE);
        lw_str(&w, " ");
        lw_str(&w, proto);
        lw_str(&w, "\" ");
        lw_u64(&w, (uint64_t)r->status);
        lw_str(&w, " ");
        lw_u64(&w, r->bytes);
        lw_str(&w, " \"");
        if (r->referer_len > 0)
            lw_esc(&w, 0, r->referer, r->referer_len, B_REFERER, RESERVE);
        else
            lw_str(&w, "-");
        lw_str(&w, "\" \"");
        if (r->ua_len > 0)
            lw_esc(&w, 0, r->ua, r->ua_len, B_UA, RESERVE);
        else
            lw_str(&w, "-");
        lw_str(&w, "\" host=\"");
        lw_esc(&w, 0, r->host, r->host_len, B_HOST, RESERVE);
        lw_str(&w, "\" pool=");
        lw_esc(&w, 2, r->pool ? r->pool : "-", strlen(r->pool ? r->pool : "-"), 256, RESERVE);
        lw_str(&w, " upstream=");
        lw_esc(&w, 2, r->upstream ? r->upstream : "-", strlen(r->upstream ? r->upstream : "-"), 256, RESERVE);
        lw_str(&w, " upstream_time=");
        if (r->upstream_s >= 0)
            lw_fmt(&w, "%.3f", r->upstream_s);
        else
            lw_str(&w, "-");
        lw_fmt(&w, " total_time=%.3f", r->total_s);
        lw_fmt(&w, " tries=%.0f", (double)r->tries);
        lw_str(&w, " rid=");
        if (r->rid_len > 0)
            lw_esc(&w, 2, r->rid, r->rid_len, B_RID, r->tls_version != NULL ? 384 : 0);
        else
            lw_str(&w, "-");
        if (r->tls_version != NULL) {
            lw_str(&w, " tls=");
            lw_esc(&w, 2, r->tls_version, strlen(r->tls_version), 32, 0);
            lw_str(&w, " cipher=");
            lw_esc(&w, 2, r->tls_cipher ? r->tls_cipher : "-", strlen(r->tls_cipher ? r->tls_cipher : "-"),
                   96, 0);
            lw_str(&w, " sni=");
            lw_esc(&w, 2, r->tls_sni ? r->tls_sni : "-", strlen(r->tls_sni ? r->tls_sni : "-"), 256, 0);
        }
    }
    out[w.len++] = '\n';
    return w.len;
}
