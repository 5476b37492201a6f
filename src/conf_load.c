/*
 * conf_load.c - the configuration loader's engine: FILE:LINE errors, the
 * table walk that type- and range-checks every key, lists of groups,
 * addresses and the string checks shared by every section's handlers.
 * The tables themselves live in conf.c and conf_*.c (see conf_int.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_int.h"

/* ---- errors ---------------------------------------------------------------- */

static void err_vline(struct loader *L, const char *file, int line, const char *fmt, va_list ap)
{
    char body[1024];
    char **v;
    char *m;
    int n;

    vsnprintf(body, sizeof(body), fmt, ap);
    n = snprintf(NULL, 0, "%s:%d: %s", file, line, body);
    m = malloc((size_t)n + 1);
    v = realloc(L->errs->msgs, (L->errs->n + 1) * sizeof(*v));
    if (m == NULL || v == NULL) {
        free(m);
        if (v != NULL)
            L->errs->msgs = v;
        L->oom = 1;
        return;
    }
    snprintf(m, (size_t)n + 1, "%s:%d: %s", file, line, body);
    L->errs->msgs = v;
    L->errs->msgs[L->errs->n++] = m;
}

void conf_err_line(struct loader *L, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vline(L, file, line, fmt, ap);
    va_end(ap);
}

/* The file to name in a message: libconfig names an included file as it is
 * written in @include, relative to the include directory. */
const char *conf_source_file(const struct loader *L, const char *file, char *buf, size_t size)
{
    if (file == NULL)
        return L->file;
    if (strcmp(file, L->file) != 0 && file[0] != '/' && L->dir != NULL) {
        snprintf(buf, size, "%s%s%s", L->dir, strcmp(L->dir, "/") == 0 ? "" : "/", file);
        return buf;
    }
    return file;
}

/* Error located at setting s (the root setting has no line: use 1). */
void conf_err_at(struct loader *L, const config_setting_t *s, const char *fmt, ...)
{
    int line = s != NULL ? config_setting_source_line(s) : 0;
    char full[1024];
    va_list ap;

    va_start(ap, fmt);
    err_vline(L, conf_source_file(L, s != NULL ? config_setting_source_file(s) : NULL, full, sizeof(full)),
              line > 0 ? line : 1, fmt, ap);
    va_end(ap);
}

char *conf_strdup(struct loader *L, const char *s)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        L->oom = 1;
    return d;
}

void conf_set_str(struct loader *L, char **dst, const char *v)
{
    free(*dst);
    *dst = conf_strdup(L, v);
}

int conf_line(const config_setting_t *s)
{
    return s != NULL ? config_setting_source_line(s) : 0;
}

/* "the string \"x\"", "the integer 3", "a group { ... }"... for messages. */
const char *conf_describe(const config_setting_t *s, char *buf, size_t size)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(buf, size, "the integer %lld", config_setting_get_int64(s));
        return buf;
    case CONFIG_TYPE_FLOAT:
        snprintf(buf, size, "the float %g", config_setting_get_float(s));
        return buf;
    case CONFIG_TYPE_STRING:
        snprintf(buf, size, "the string \"%.64s\"", config_setting_get_string(s));
        return buf;
    case CONFIG_TYPE_BOOL:
        return config_setting_get_bool(s) ? "the boolean true" : "the boolean false";
    case CONFIG_TYPE_ARRAY:
        return "an array [ ... ]";
    case CONFIG_TYPE_LIST:
        return "a list ( ... )";
    case CONFIG_TYPE_GROUP:
        return "a group { ... }";
    default:
        return "an unknown type";
    }
}

static const char *kind_name(enum key_kind k)
{
    switch (k) {
    case K_INT:
        return "an integer";
    case K_BOOL:
        return "a boolean (true or false)";
    case K_STR:
        return "a string";
    case K_GROUP:
        return "a group { ... }";
    case K_LIST:
        return "a list ( ... )";
    case K_FLOAT:
        return "a number";
    default:
        return "a value";
    }
}

static int kind_ok(enum key_kind k, const config_setting_t *s)
{
    int t = config_setting_type(s);

    switch (k) {
    case K_INT:
        return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    case K_BOOL:
        return t == CONFIG_TYPE_BOOL;
    case K_STR:
        return t == CONFIG_TYPE_STRING;
    case K_GROUP:
        return t == CONFIG_TYPE_GROUP;
    case K_LIST:
        return t == CONFIG_TYPE_LIST;
    case K_FLOAT:
        return t == CONFIG_TYPE_FLOAT || t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    default:
        return 1;
    }
}

/* ---- the table walk ------------------------------------------------------- */

static void store_key(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    char *field = k->off != NO_OFF ? (char *)obj + k->off : NULL;

    switch (k->kind) {
    case K_INT: {
        long long v = config_setting_get_int64(s);
        if (v < k->min || v > k->max) {
            conf_err_at(L, s, "%s must be between %lld and %lld (got %lld)", path, k->min, k->max, v);
            return;
        }
        if (field != NULL) {
            if (k->width == sizeof(size_t) && k->width != sizeof(int))
                *(size_t *)(void *)field = (size_t)v;
            else
                *(int *)(void *)field = (int)v;
        }
        break;
    }
    case K_FLOAT: {
        double v = config_setting_type(s) == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                                               : (double)config_setting_get_int64(s);
        if (!(v >= k->fmin && v <= k->fmax)) {
            conf_err_at(L, s, "%s must be between %g and %g (got %g)", path, k->fmin, k->fmax, v);
            return;
        }
        if (field != NULL)
            *(double *)(void *)field = v;
        break;
    }
    case K_BOOL:
        if (field != NULL)
            *(int *)(void *)field = config_setting_get_bool(s) ? 1 : 0;
        break;
    case K_STR: {
        const char *v = config_setting_get_string(s);
        if ((k->flags & KF_NONEMPTY) && v[0] == '\0') {
            conf_err_at(L, s, "%s must not be empty", path);
            return;
        }
        if (k->choices != NULL) {
            const struct choice *ch;
            char list[256];
            size_t used = 0;
            for (ch = k->choices; ch->name != NULL; ch++) {
                if (strcmp(ch->name, v) == 0) {
                    *(int *)(void *)field = ch->value;
                    break;
                }
                used +=
                    (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", ch->name);
                if (used >= sizeof(list))
                    used = sizeof(list) - 1;
            }
            if (ch->name == NULL) {
                conf_err_at(L, s, "%s must be one of %s (got \"%s\")", path, list, v);
                return;
            }
        } else if (k->fn == NULL && field != NULL) {
            conf_set_str(L, (char **)(void *)field, v);
        }
        break;
    }
    case K_GROUP:
        if (k->sub != NULL) /* without a table, fn walks the group itself */
            conf_walk_group(L, s, path, k->sub, k->nsub, obj);
        break;
    default:
        break;
    }
    if (k->fn != NULL)
        k->fn(L, k, s, path, obj);
}

void conf_walk_group(struct loader *L, const config_setting_t *g, const char *path, const struct key *keys,
                     size_t nkeys, void *obj)
{
    int i, n = config_setting_length(g);
    size_t j;
    char cpath[PATH_LEN], vbuf[128];

    for (i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct key *k = NULL;

        for (j = 0; j < nkeys; j++) {
            if (name != NULL && strcmp(keys[j].name, name) == 0) {
                k = &keys[j];
                break;
            }
        }
        if (k == NULL) {
            if (path[0] != '\0')
                conf_err_at(L, s, "unknown key '%s' in %s", name ? name : "?", path);
            else
                conf_err_at(L, s, "unknown key '%s' at top level", name ? name : "?");
            continue;
        }
        snprintf(cpath, sizeof(cpath), "%s%s%s", path, path[0] ? "." : "", name);
        if (!kind_ok(k->kind, s)) {
            conf_err_at(L, s, "%s must be %s (got %s)", cpath, kind_name(k->kind),
                        conf_describe(s, vbuf, sizeof(vbuf)));
            continue;
        }
        store_key(L, k, s, cpath, obj);
    }
    for (j = 0; j < nkeys; j++) {
        if ((keys[j].flags & KF_REQUIRED) && config_setting_get_member(g, keys[j].name) == NULL) {
            if (path[0] != '\0')
                conf_err_at(L, g, "missing required key '%s' in %s", keys[j].name, path);
            else
                conf_err_at(L, g, "missing required key '%s' at top level", keys[j].name);
        }
    }
}

/*
 * A list of groups: allocate n elements of elsize, init each, walk it with
 * keys. Returns the array (NULL when empty or on error) and its length.
 */
void *conf_walk_list(struct loader *L, const config_setting_t *list, const char *path, const char *what,
                     size_t elsize, size_t *n_out, const struct key *keys, size_t nkeys,
                     conf_elem_init_fn init)
{
    int i, n = config_setting_length(list);
    char epath[PATH_LEN], vbuf[128];
    char *base;

    *n_out = 0;
    if (n <= 0) {
        conf_err_at(L, list, "%s is empty: at least one %s is required", path, what);
        return NULL;
    }
    base = calloc((size_t)n, elsize);
    if (base == NULL) {
        L->oom = 1;
        return NULL;
    }
    *n_out = (size_t)n;
    for (i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
        void *el = base + (size_t)i * elsize;

        snprintf(epath, sizeof(epath), "%s[%d]", path, i);
        if (init != NULL)
            init(L, s, el);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            conf_err_at(L, s, "%s must be a group { ... } (got %s)", epath,
                        conf_describe(s, vbuf, sizeof(vbuf)));
            continue;
        }
        conf_walk_group(L, s, epath, keys, nkeys, el);
    }
    return base;
}

/* ---- addresses ------------------------------------------------------------- */

int weir_conf_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, const char **why)
{
    char host[256];
    const char *hs, *he, *port;
    unsigned long p = 0;
    int v6 = 0;

    if (text == NULL || text[0] == '\0') {
        *why = "empty address (expected host:port)";
        return -1;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL) {
            *why = "missing ']' after the ipv6 address";
            return -1;
        }
        if (close[1] == '\0') {
            *why = "missing port (expected [v6]:port)";
            return -1;
        }
        if (close[1] != ':') {
            *why = "expected ':' and a port after ']'";
            return -1;
        }
        hs = text + 1;
        he = close;
        port = close + 2;
        v6 = 1;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            *why = "missing port (expected host:port)";
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            *why = "an ipv6 address must be written in brackets, e.g. [::1]:8080";
            return -1;
        }
        hs = text;
        he = colon;
        port = colon + 1;
    }
    if (he == hs) {
        *why = "missing host (use '*' for all addresses)";
        return -1;
    }
    if ((size_t)(he - hs) >= sizeof(host)) {
        *why = "host name too long";
        return -1;
    }
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';

    if (port[0] == '\0') {
        *why = "missing port";
        return -1;
    }
    for (const char *q = port; *q != '\0'; q++) {
        if (*q < '0' || *q > '9') {
            *why = "port is not a number";
            return -1;
        }
        p = p * 10 + (unsigned long)(*q - '0');
        if (p > 65535) {
            break;
        }
    }
    if (p < 1 || p > 65535) {
        *why = "port must be between 1 and 65535";
        return -1;
    }

    memset(ss, 0, sizeof(*ss));
    if (!v6 && strcmp(host, "*") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)p);
        *len = sizeof(*sin);
        return 0;
    }
    /* Never a DNS lookup here (issue 7, defect 9: a blocking getaddrinfo at
     * start or reload stalls the control thread): numeric addresses only,
     * and "localhost" as the loopback address. Names are resolved by DNS
     * discovery (server key `resolve = true`, dns.c), asynchronously. */
    if (!v6 && strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    {
        struct addrinfo hints, *res = NULL;
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST;
        rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || res == NULL) {
            if (v6)
                *why = "not a valid ipv6 address";
            else
                *why = "not an IP address (host names are not looked up here, so weir never blocks on DNS: "
                       "write the IP address, or give a server `resolve = true` for DNS discovery)";
            if (res != NULL)
                freeaddrinfo(res);
            return -1;
        }
        if (res->ai_addrlen > sizeof(*ss) || (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
            freeaddrinfo(res);
            *why = "unsupported address family";
            return -1;
        }
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *len = (socklen_t)res->ai_addrlen;
        freeaddrinfo(res);
    }
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)p);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)p);
    return 0;
}

int weir_conf_addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        const unsigned char *b = sin6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127;
    }
    return 0;
}

int conf_addr_equal(const struct weir_conf_addr *a, const struct weir_conf_addr *b)
{
    if (a->len == 0 || b->len == 0 || a->ss.ss_family != b->ss.ss_family)
        return 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss,
                                 *y = (const struct sockaddr_in *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss,
                                  *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return 0;
}

/* K_STR handler: parse into the struct weir_conf_addr at k->off. */
void conf_key_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                   void *obj)
{
    struct weir_conf_addr *a = (struct weir_conf_addr *)(void *)((char *)obj + k->off);
    const char *v = config_setting_get_string(s);
    const char *why = "invalid";
    struct sockaddr_storage ss;
    socklen_t len = 0;

    if (weir_conf_parse_addr(v, &ss, &len, &why) < 0) {
        conf_err_at(L, s, "invalid address '%s' in %s: %s", v, path, why);
        return;
    }
    conf_set_str(L, &a->text, v);
    a->ss = ss;
    a->len = len;
    a->line = conf_line(s);
}

int conf_set_addr_default(struct loader *L, struct weir_conf_addr *a, const char *text)
{
    const char *why;

    if (weir_conf_parse_addr(text, &a->ss, &a->len, &why) < 0)
        return -1;
    conf_set_str(L, &a->text, text);
    return 0;
}

/* ---- string checks --------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int conf_is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        if (!is_tchar((unsigned char)*s))
            return 0;
    }
    return 1;
}

/* Visible ASCII, no space (0x21..0x7e). */
int conf_is_visible(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return 0;
    }
    return 1;
}

/* "/..." with visible characters, no '?' or '#' (allow_query lets '?' in). */
int conf_is_http_path(const char *s, int allow_query)
{
    if (s[0] != '/' || !conf_is_visible(s))
        return 0;
    if (strchr(s, '#') != NULL || (!allow_query && strchr(s, '?') != NULL))
        return 0;
    return 1;
}

/* Host name: labels of [a-z0-9_-] separated by single dots. */
int conf_is_hostname(const char *s)
{
    size_t label = 0;

    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return 0;
        label++;
    }
    return label > 0;
}

void conf_lower(char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        *s = (char)weir_lower((unsigned char)*s);
}

/* K_STR: visible ASCII without spaces (tokens, file names are checked loosely). */
void conf_key_visible(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!conf_is_visible(v)) {
        conf_err_at(L, s, "%s must be non-empty and contain no spaces or control characters (got \"%s\")",
                    path, v);
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

void conf_key_http_path(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!conf_is_http_path(v, 1)) {
        conf_err_at(L, s,
                    "%s must start with '/' and contain no spaces, control characters or '#' (got \"%s\")",
                    path, v);
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

void conf_key_method(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                     void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!conf_is_token(v)) {
        conf_err_at(L, s, "%s must be an http method token such as GET or HEAD (got \"%s\")", path, v);
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

/* health.host: a Host header value, host or host:port. */
void conf_key_host_header(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!conf_is_visible(v) || strpbrk(v, "/?#@") != NULL) {
        conf_err_at(L, s, "%s must be a host name, optionally with :port (got \"%s\")", path, v);
        return;
    }
    conf_set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

/* ---- integer literals that libconfig would wrap ------------------------------ */

/*
 * libconfig 1.5 reads an integer literal without the L suffix with atoi():
 * 4294967496 becomes 200, 3000000000 a negative number, silently. Before the
 * table walk, scan the file's text (and every @include file, as libconfig
 * resolves them) for such literals and refuse each with FILE:LINE. Comments
 * and strings are skipped; floats and L-suffixed integers are fine.
 */
#define PRESCAN_MAX_DEPTH 10
#define INT32_TOP         2147483647ULL

static void prescan_file(struct loader *L, const char *path, const char *shown, int depth);

/* Value of the digits [p, e) in base (10 or 16), saturated at UINT64_MAX. */
static unsigned long long prescan_value(const char *p, const char *e, int base)
{
    unsigned long long v = 0;
    for (; p < e; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10;
        if (v > (~0ULL - (unsigned)d) / (unsigned)base)
            return ~0ULL;
        v = v * (unsigned)base + (unsigned)d;
    }
    return v;
}

static int is_ident_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '*';
}

static int is_ident(int c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static int is_hex(int c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static void prescan_text(struct loader *L, const char *text, size_t n, const char *shown, int depth)
{
    const char *p = text, *end = text + n;
    int line = 1, bol = 1; /* at the beginning of a line (only blanks so far) */

    while (p < end) {
        char c = *p;
        if (c == '\n') {
            line++;
            bol = 1;
            p++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            p++;
            continue;
        }
        if (c == '#' || (c == '/' && p + 1 < end && p[1] == '/')) {
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        if (c == '/' && p + 1 < end && p[1] == '*') {
            for (p += 2; p < end && !(*p == '*' && p + 1 < end && p[1] == '/'); p++)
                if (*p == '\n')
                    line++;
            p = p < end ? p + 2 : end;
            bol = 0;
            continue;
        }
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                if (*p == '\n')
                    line++;
            }
            p = p < end ? p + 1 : end;
            bol = 0;
            continue;
        }
        if (c == '@' && bol && (size_t)(end - p) > 8 && strncmp(p, "@include", 8) == 0) {
            const char *q = p + 8, *s;
            while (q < end && (*q == ' ' || *q == '\t'))
                q++;
            if (q < end && *q == '"') {
                s = ++q;
                while (q < end && *q != '"' && *q != '\n')
                    q++;
                if (q < end && *q == '"') {
                    char name[PATH_LEN], full[2 * PATH_LEN];
                    snprintf(name, sizeof(name), "%.*s", (int)(q - s), s);
                    const char *path = conf_source_file(L, name, full, sizeof(full));
                    if (depth < PRESCAN_MAX_DEPTH)
                        prescan_file(L, path, path, depth + 1);
                }
            }
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        bol = 0;
        if (is_ident_start((unsigned char)c)) {
            while (p < end && is_ident((unsigned char)*p))
                p++;
            continue;
        }
        if ((c >= '0' && c <= '9') || ((c == '-' || c == '+') && p + 1 < end && p[1] >= '0' && p[1] <= '9')) {
            const char *start = p, *ds, *de;
            int base = 10;
            if (c == '-' || c == '+')
                p++;
            if (p + 1 < end && p[0] == '0' && (p[1] | 0x20) == 'x') {
                base = 16;
                p += 2;
                ds = p;
                while (p < end && is_hex((unsigned char)*p))
                    p++;
            } else {
                ds = p;
                while (p < end && *p >= '0' && *p <= '9')
                    p++;
                if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) { /* a float */
                    while (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                                       *p == '-' || *p == '+'))
                        p++;
                    continue;
                }
            }
            de = p;
            if (p < end && *p == 'L') { /* 64-bit literal: read whole by libconfig */
                while (p < end && *p == 'L')
                    p++;
                continue;
            }
            unsigned long long v = prescan_value(ds, de, base);
            int neg = start[0] == '-';
            if (de > ds && v > INT32_TOP + (neg ? 1 : 0))
                conf_err_line(L, shown, line,
                              "the integer %.*s does not fit in 32 bits (at most %llu); write it with an "
                              "L suffix (%.*sL) only where a key takes such values",
                              (int)(de - start), start, INT32_TOP, (int)(de - start), start);
            continue;
        }
        p++;
    }
}

static void prescan_file(struct loader *L, const char *path, const char *shown, int depth)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return; /* libconfig has read it already; nothing to add */
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap ? cap * 2 : 65536);
            if (nb == NULL) {
                L->oom = 1;
                break;
            }
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        if (k == 0)
            break;
        n += k;
    }
    fclose(f);
    if (!L->oom)
        prescan_text(L, buf, n, shown, depth);
    free(buf);
}

int conf_prescan_ints(struct loader *L, const char *path)
{
    size_t before = L->errs->n;
    prescan_file(L, path, path, 0);
    return L->errs->n > before ? -1 : 0;
}
