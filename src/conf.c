/*
 * conf.c - load and validate the configuration file (libconfig syntax).
 *
 * Every group is walked with a table of the keys it allows (struct key): the
 * table gives each key's type, range and where its value goes, so adding a
 * key is one line in a table. Scalars are stored generically; keys that need
 * more (addresses, names, lists of groups, cross-checks) have a handler.
 * Every problem is recorded as "FILE:LINE: message" and the walk goes on, so
 * one run shows the operator all errors; if there was any, the whole file is
 * refused. Errors about the whole file (cannot open it, out of memory) carry
 * line 0; a required top-level key that is missing is reported at line 1.
 *
 * Known limit of libconfig 1.5: an integer literal beyond 32 bits written
 * without the L suffix wraps silently (5000000000 reads as 705032704); the
 * range checks catch most such values, not all.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weir/conf.h"
#include "weir/core.h"
#include "weir/lb.h"

#define MS_MAX     86400000 /* one day: upper bound of every *_ms value */
#define WEIGHT_MAX 1000
#define NO_OFF     ((size_t)-1)
#define PATH_LEN   256

struct loader {
    const char *file; /* the path given to weir_conf_load */
    const char *dir;  /* its directory: where @include files are looked up */
    struct weir_conf *c;
    struct weir_conf_errors *errs;
    int oom;
    /* The routes list (owned by the config_t): routes[i].pool is resolved
     * once every pool is known, whatever the order in the file. */
    const config_setting_t *routes;
};

struct key;
typedef void (*key_fn)(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj);

enum key_kind { K_INT, K_BOOL, K_STR, K_GROUP, K_LIST, K_ANY };

#define KF_REQUIRED 0x1u /* missing key is an error */
#define KF_NONEMPTY 0x2u /* K_STR: "" is an error */

struct choice {
    const char *name;
    int value;
};

/*
 * One allowed key of a group. Offsets are relative to the object the group's
 * walk fills (the same object for nested groups: timeouts.connect_ms lives in
 * struct weir_conf). Generic storing: K_INT/K_BOOL into an int (or size_t,
 * by width) at off; K_STR with choices maps the string to an int at off;
 * K_STR without fn strdup()s into a char * at off. fn, when set, runs after
 * the type and range checks (for K_GROUP after the members were walked).
 */
struct key {
    const char *name;
    enum key_kind kind;
    unsigned flags;
    long long min, max;           /* K_INT */
    size_t off;                   /* NO_OFF: fn stores */
    size_t width;                 /* K_INT: sizeof the field */
    const struct choice *choices; /* K_STR: NULL-name terminated */
    const struct key *sub;        /* K_GROUP: member table */
    size_t nsub;
    key_fn fn;
};

#define KEY_INT(n, T, f, lo, hi)                                                                             \
    {                                                                                                        \
        .name = (n), .kind = K_INT, .min = (lo), .max = (hi), .off = offsetof(T, f),                         \
        .width = sizeof(((T *)0)->f)                                                                         \
    }
#define KEY_BOOL(n, T, f)                                                                                    \
    {                                                                                                        \
        .name = (n), .kind = K_BOOL, .off = offsetof(T, f), .width = sizeof(int)                             \
    }
#define KEY_STR(n, T, f, fl)                                                                                 \
    {                                                                                                        \
        .name = (n), .kind = K_STR, .flags = (fl), .off = offsetof(T, f)                                     \
    }
#define KEY_ENUM(n, T, f, ch)                                                                                \
    {                                                                                                        \
        .name = (n), .kind = K_STR, .off = offsetof(T, f), .choices = (ch)                                   \
    }
#define KEY_FN(n, kd, fl, T, f, h)                                                                           \
    {                                                                                                        \
        .name = (n), .kind = (kd), .flags = (fl), .off = offsetof(T, f), .fn = (h)                           \
    }
#define KEY_CALL(n, kd, fl, h)                                                                               \
    {                                                                                                        \
        .name = (n), .kind = (kd), .flags = (fl), .off = NO_OFF, .fn = (h)                                   \
    }
#define KEY_GROUP(n, tbl, h)                                                                                 \
    {                                                                                                        \
        .name = (n), .kind = K_GROUP, .off = NO_OFF, .sub = (tbl), .nsub = WEIR_ARRAY_LEN(tbl), .fn = (h)    \
    }

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

__attribute__((format(printf, 4, 5))) static void err_line(struct loader *L, const char *file, int line,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vline(L, file, line, fmt, ap);
    va_end(ap);
}

/* The file to name in a message: libconfig names an included file as it is
 * written in @include, relative to the include directory. */
static const char *source_file(const struct loader *L, const char *file, char *buf, size_t size)
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
__attribute__((format(printf, 3, 4))) static void err_at(struct loader *L, const config_setting_t *s,
                                                         const char *fmt, ...)
{
    int line = s != NULL ? config_setting_source_line(s) : 0;
    char full[1024];
    va_list ap;

    va_start(ap, fmt);
    err_vline(L, source_file(L, s != NULL ? config_setting_source_file(s) : NULL, full, sizeof(full)),
              line > 0 ? line : 1, fmt, ap);
    va_end(ap);
}

static char *xstrdup(struct loader *L, const char *s)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        L->oom = 1;
    return d;
}

static void set_str(struct loader *L, char **dst, const char *v)
{
    free(*dst);
    *dst = xstrdup(L, v);
}

static int setting_line(const config_setting_t *s)
{
    return s != NULL ? config_setting_source_line(s) : 0;
}

/* "the string \"x\"", "the integer 3", "a group { ... }"... for messages. */
static const char *describe(const config_setting_t *s, char *buf, size_t size)
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
    default:
        return 1;
    }
}

/* ---- the table walk ------------------------------------------------------- */

static void walk_group(struct loader *L, const config_setting_t *g, const char *path, const struct key *keys,
                       size_t nkeys, void *obj);

static void store_key(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    char *field = k->off != NO_OFF ? (char *)obj + k->off : NULL;

    switch (k->kind) {
    case K_INT: {
        long long v = config_setting_get_int64(s);
        if (v < k->min || v > k->max) {
            err_at(L, s, "%s must be between %lld and %lld (got %lld)", path, k->min, k->max, v);
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
    case K_BOOL:
        if (field != NULL)
            *(int *)(void *)field = config_setting_get_bool(s) ? 1 : 0;
        break;
    case K_STR: {
        const char *v = config_setting_get_string(s);
        if ((k->flags & KF_NONEMPTY) && v[0] == '\0') {
            err_at(L, s, "%s must not be empty", path);
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
                err_at(L, s, "%s must be one of %s (got \"%s\")", path, list, v);
                return;
            }
        } else if (k->fn == NULL && field != NULL) {
            set_str(L, (char **)(void *)field, v);
        }
        break;
    }
    case K_GROUP:
        walk_group(L, s, path, k->sub, k->nsub, obj);
        break;
    default:
        break;
    }
    if (k->fn != NULL)
        k->fn(L, k, s, path, obj);
}

static void walk_group(struct loader *L, const config_setting_t *g, const char *path, const struct key *keys,
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
                err_at(L, s, "unknown key '%s' in %s", name ? name : "?", path);
            else
                err_at(L, s, "unknown key '%s' at top level", name ? name : "?");
            continue;
        }
        snprintf(cpath, sizeof(cpath), "%s%s%s", path, path[0] ? "." : "", name);
        if (!kind_ok(k->kind, s)) {
            err_at(L, s, "%s must be %s (got %s)", cpath, kind_name(k->kind),
                   describe(s, vbuf, sizeof(vbuf)));
            continue;
        }
        store_key(L, k, s, cpath, obj);
    }
    for (j = 0; j < nkeys; j++) {
        if ((keys[j].flags & KF_REQUIRED) && config_setting_get_member(g, keys[j].name) == NULL) {
            if (path[0] != '\0')
                err_at(L, g, "missing required key '%s' in %s", keys[j].name, path);
            else
                err_at(L, g, "missing required key '%s' at top level", keys[j].name);
        }
    }
}

typedef void (*elem_init_fn)(struct loader *L, const config_setting_t *s, void *el);

/*
 * A list of groups: allocate n elements of elsize, init each, walk it with
 * keys. Returns the array (NULL when empty or on error) and its length.
 */
static void *walk_list(struct loader *L, const config_setting_t *list, const char *path, const char *what,
                       size_t elsize, size_t *n_out, const struct key *keys, size_t nkeys, elem_init_fn init)
{
    int i, n = config_setting_length(list);
    char epath[PATH_LEN], vbuf[128];
    char *base;

    *n_out = 0;
    if (n <= 0) {
        err_at(L, list, "%s is empty: at least one %s is required", path, what);
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
            err_at(L, s, "%s must be a group { ... } (got %s)", epath, describe(s, vbuf, sizeof(vbuf)));
            continue;
        }
        walk_group(L, s, epath, keys, nkeys, el);
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
    {
        struct addrinfo hints, *res = NULL;
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = v6 ? AF_INET6 : AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = v6 ? AI_NUMERICHOST : 0;
        rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0 || res == NULL) {
            if (v6)
                *why = "not a valid ipv6 address";
            else if (rc == EAI_AGAIN)
                *why = "temporary failure resolving the host name";
            else if (rc == EAI_NONAME || rc == EAI_FAIL)
                *why = "unknown host";
            else
                *why = "cannot resolve the host name";
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

static int addr_equal(const struct weir_conf_addr *a, const struct weir_conf_addr *b)
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
static void key_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                     void *obj)
{
    struct weir_conf_addr *a = (struct weir_conf_addr *)(void *)((char *)obj + k->off);
    const char *v = config_setting_get_string(s);
    const char *why = "invalid";
    struct sockaddr_storage ss;
    socklen_t len = 0;

    if (weir_conf_parse_addr(v, &ss, &len, &why) < 0) {
        err_at(L, s, "invalid address '%s' in %s: %s", v, path, why);
        return;
    }
    set_str(L, &a->text, v);
    a->ss = ss;
    a->len = len;
    a->line = setting_line(s);
}

static int set_addr_default(struct loader *L, struct weir_conf_addr *a, const char *text)
{
    const char *why;

    if (weir_conf_parse_addr(text, &a->ss, &a->len, &why) < 0)
        return -1;
    set_str(L, &a->text, text);
    return 0;
}

/* ---- string checks --------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s)
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
static int is_visible(const char *s)
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
static int is_http_path(const char *s, int allow_query)
{
    if (s[0] != '/' || !is_visible(s))
        return 0;
    if (strchr(s, '#') != NULL || (!allow_query && strchr(s, '?') != NULL))
        return 0;
    return 1;
}

/* Host name: labels of [a-z0-9_-] separated by single dots. */
static int is_hostname(const char *s)
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

static void lower_in_place(char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        *s = (char)weir_lower((unsigned char)*s);
}

/* ---- handlers --------------------------------------------------------------- */

static void key_workers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf *c = obj;
    int t = config_setting_type(s);
    char vbuf[128];

    if (t == CONFIG_TYPE_STRING && strcmp(config_setting_get_string(s), "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->workers = n < 1 ? 1 : n > WEIR_MAX_WORKERS ? WEIR_MAX_WORKERS : (int)n;
        return;
    }
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        long long v = config_setting_get_int64(s);
        if (v >= 1 && v <= WEIR_MAX_WORKERS) {
            c->workers = (int)v;
            return;
        }
    }
    err_at(L, s, "%s must be an integer between 1 and %d or \"auto\" (got %s)", path, WEIR_MAX_WORKERS,
           describe(s, vbuf, sizeof(vbuf)));
}

/* K_STR: visible ASCII without spaces (tokens, file names are checked loosely). */
static void key_visible(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!is_visible(v)) {
        err_at(L, s, "%s must be non-empty and contain no spaces or control characters (got \"%s\")", path,
               v);
        return;
    }
    set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

static void key_http_path(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!is_http_path(v, 1)) {
        err_at(L, s, "%s must start with '/' and contain no spaces, control characters or '#' (got \"%s\")",
               path, v);
        return;
    }
    set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

static void key_method(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!is_token(v)) {
        err_at(L, s, "%s must be an http method token such as GET or HEAD (got \"%s\")", path, v);
        return;
    }
    set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

/* health.host: a Host header value, host or host:port. */
static void key_host_header(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj)
{
    const char *v = config_setting_get_string(s);

    if (!is_visible(v) || strpbrk(v, "/?#@") != NULL) {
        err_at(L, s, "%s must be a host name, optionally with :port (got \"%s\")", path, v);
        return;
    }
    set_str(L, (char **)(void *)((char *)obj + k->off), v);
}

static int parse_status(const char *p, const char **end)
{
    int v = 0, n = 0;

    while (*p >= '0' && *p <= '9' && n < 4) {
        v = v * 10 + (*p - '0');
        p++;
        n++;
    }
    *end = p;
    return n == 3 ? v : -1;
}

static void key_expect_status(struct loader *L, const struct key *k, const config_setting_t *s,
                              const char *path, void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s), *e;
    int lo, hi;

    lo = parse_status(v, &e);
    hi = lo;
    if (lo >= 0 && *e == '-')
        hi = parse_status(e + 1, &e);
    if (lo < 0 || hi < 0 || *e != '\0') {
        err_at(L, s, "%s must be a status code or a range such as \"200\" or \"200-399\" (got \"%s\")", path,
               v);
        return;
    }
    if (lo < 100 || hi > 599 || lo > hi) {
        err_at(L, s, "%s must be within 100-599 with the low bound first (got \"%s\")", path, v);
        return;
    }
    p->health.expect_status_lo = lo;
    p->health.expect_status_hi = hi;
}

static void health_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_pool *p = obj;

    if (p->health.type == WEIR_CHECK_NONE)
        p->health.type = WEIR_CHECK_HTTP;
    if (p->health.timeout_ms > p->health.interval_ms)
        err_at(L, s, "%s.timeout_ms (%d) must not exceed %s.interval_ms (%d)", path, p->health.timeout_ms,
               path, p->health.interval_ms);
}

static void passive_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_pool *p = obj;

    p->passive.enabled = 1;
    if (p->passive.max_eject_ms < p->passive.eject_ms)
        err_at(L, s, "%s.max_eject_ms (%d) must not be less than %s.eject_ms (%d)", path,
               p->passive.max_eject_ms, path, p->passive.eject_ms);
}

static void key_pool_name(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s), *q;

    /* Stored even when invalid so routes to it do not add a second error. */
    set_str(L, &p->name, v);
    for (q = v; *q != '\0'; q++) {
        unsigned char ch = (unsigned char)*q;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-_.", ch) != NULL))
            break;
    }
    if (v[0] == '\0' || *q != '\0')
        err_at(L, s, "%s must be made of letters, digits, '-', '_' and '.' (got \"%s\")", path, v);
}

static const char *const policy_names[] = {"round_robin", "weighted_round_robin", "least_conn", "random_two",
                                           "hash"};

static void key_policy(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s);
    char list[256];
    size_t i, used = 0;

    if (weir_lb_find(v) != NULL) {
        set_str(L, &p->policy, v);
        return;
    }
    list[0] = '\0';
    for (i = 0; i < WEIR_ARRAY_LEN(policy_names); i++) {
        if (weir_lb_find(policy_names[i]) == NULL)
            continue;
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "", policy_names[i]);
        if (used >= sizeof(list))
            used = sizeof(list) - 1;
    }
    err_at(L, s, "unknown policy '%s' in %s (valid: %s)", v, path, list);
}

static void key_hash_key(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_pool *p = obj;
    const char *v = config_setting_get_string(s);

    if (strcmp(v, "uri") == 0) {
        p->hash_key = WEIR_HASH_URI;
    } else if (strcmp(v, "client_ip") == 0) {
        p->hash_key = WEIR_HASH_CLIENT_IP;
    } else if (strncmp(v, "header:", 7) == 0 && is_token(v + 7)) {
        p->hash_key = WEIR_HASH_HEADER;
        set_str(L, &p->hash_header, v + 7);
        lower_in_place(p->hash_header);
    } else {
        err_at(L, s,
               "%s must be \"uri\", \"client_ip\" or \"header:NAME\" with NAME a header name (got \"%s\")",
               path, v);
    }
}

static const struct key server_keys[] = {
    KEY_FN("address", K_STR, KF_REQUIRED, struct weir_conf_server, addr, key_addr),
    KEY_INT("weight", struct weir_conf_server, weight, 1, WEIGHT_MAX),
};

static void server_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_server *srv = el;

    srv->weight = 1;
    srv->line = setting_line(s);
}

static void key_servers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_pool *p = obj;
    size_t i, j;

    p->servers = walk_list(L, s, path, "server", sizeof(*p->servers), &p->nservers, server_keys,
                           WEIR_ARRAY_LEN(server_keys), server_init);
    for (i = 0; i < p->nservers; i++) {
        for (j = 0; j < i; j++) {
            if (addr_equal(&p->servers[i].addr, &p->servers[j].addr)) {
                err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "address"),
                       "duplicate server address '%s' in %s[%zu].address (also at line %d)",
                       p->servers[i].addr.text, path, i, p->servers[j].addr.line);
                break;
            }
        }
    }
}

static const struct choice check_types[] = {{"http", WEIR_CHECK_HTTP}, {"tcp", WEIR_CHECK_TCP}, {NULL, 0}};

static const struct key health_keys[] = {
    KEY_ENUM("type", struct weir_conf_pool, health.type, check_types),
    KEY_FN("path", K_STR, 0, struct weir_conf_pool, health.path, key_http_path),
    KEY_FN("method", K_STR, 0, struct weir_conf_pool, health.method, key_method),
    KEY_FN("host", K_STR, 0, struct weir_conf_pool, health.host, key_host_header),
    KEY_CALL("expect_status", K_STR, 0, key_expect_status),
    KEY_STR("expect_body", struct weir_conf_pool, health.expect_body, KF_NONEMPTY),
    KEY_INT("interval_ms", struct weir_conf_pool, health.interval_ms, 1, MS_MAX),
    KEY_INT("timeout_ms", struct weir_conf_pool, health.timeout_ms, 1, MS_MAX),
    KEY_INT("jitter_pct", struct weir_conf_pool, health.jitter_pct, 0, 50),
    KEY_INT("rise", struct weir_conf_pool, health.rise, 1, 100),
    KEY_INT("fall", struct weir_conf_pool, health.fall, 1, 100),
};

static const struct key passive_keys[] = {
    KEY_INT("consecutive_failures", struct weir_conf_pool, passive.consecutive_failures, 1, 1000),
    KEY_BOOL("count_5xx", struct weir_conf_pool, passive.count_5xx),
    KEY_INT("eject_ms", struct weir_conf_pool, passive.eject_ms, 1, MS_MAX),
    KEY_INT("max_eject_ms", struct weir_conf_pool, passive.max_eject_ms, 1, MS_MAX),
    KEY_INT("max_ejected_pct", struct weir_conf_pool, passive.max_ejected_pct, 0, 100),
};

static const struct key pool_keys[] = {
    KEY_CALL("name", K_STR, KF_REQUIRED, key_pool_name),
    KEY_CALL("policy", K_STR, 0, key_policy),
    KEY_CALL("hash_key", K_STR, 0, key_hash_key),
    KEY_INT("retries", struct weir_conf_pool, retries, 0, 10),
    KEY_CALL("servers", K_LIST, KF_REQUIRED, key_servers),
    KEY_GROUP("health", health_keys, health_post),
    KEY_GROUP("passive", passive_keys, passive_post),
    KEY_INT("slow_start_ms", struct weir_conf_pool, slow_start_ms, 0, MS_MAX),
    KEY_BOOL("panic", struct weir_conf_pool, panic),
};

static void pool_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_pool *p = el;

    p->policy = xstrdup(L, "round_robin");
    p->hash_key = WEIR_HASH_URI;
    p->retries = 2;
    p->health.type = WEIR_CHECK_NONE;
    p->health.path = xstrdup(L, "/health");
    p->health.method = xstrdup(L, "GET");
    p->health.expect_status_lo = 200;
    p->health.expect_status_hi = 399;
    p->health.interval_ms = 1000;
    p->health.timeout_ms = 500;
    p->health.jitter_pct = 10;
    p->health.rise = 2;
    p->health.fall = 3;
    p->passive.enabled = 0;
    p->passive.consecutive_failures = 5;
    p->passive.count_5xx = 1;
    p->passive.eject_ms = 10000;
    p->passive.max_eject_ms = 300000;
    p->passive.max_ejected_pct = 50;
    p->slow_start_ms = 0;
    p->panic = 1;
    p->line = setting_line(s);
}

static void key_pools(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj)
{
    struct weir_conf *c = obj;
    size_t i, j;

    c->pools = walk_list(L, s, path, "pool", sizeof(*c->pools), &c->npools, pool_keys,
                         WEIR_ARRAY_LEN(pool_keys), pool_init);
    for (i = 0; i < c->npools; i++) {
        for (j = 0; j < i && c->pools[i].name != NULL; j++) {
            if (c->pools[j].name != NULL && strcmp(c->pools[i].name, c->pools[j].name) == 0) {
                err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "name"),
                       "duplicate pool name '%s' in %s[%zu].name (first defined at line %d)",
                       c->pools[i].name, path, i, c->pools[j].line);
                break;
            }
        }
    }
}

static const struct key listen_keys[] = {
    {.name = "address", .kind = K_STR, .flags = KF_REQUIRED, .off = 0, .fn = key_addr},
};

static void key_listen(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;
    size_t i, j;

    c->listens = walk_list(L, s, path, "listen address", sizeof(*c->listens), &c->nlistens, listen_keys,
                           WEIR_ARRAY_LEN(listen_keys), NULL);
    for (i = 0; i < c->nlistens; i++) {
        for (j = 0; j < i; j++) {
            if (addr_equal(&c->listens[i], &c->listens[j])) {
                err_at(L, config_setting_get_member(config_setting_get_elem(s, (unsigned)i), "address"),
                       "duplicate listen address '%s' in %s[%zu].address (also at line %d)",
                       c->listens[i].text, path, i, c->listens[j].line);
                break;
            }
        }
    }
}

/* Route host: "*", "*.suffix", an exact host name or a bracketed ipv6 address. */
static void key_route_host(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                           void *obj)
{
    struct weir_conf_route *r = obj;
    const char *v = config_setting_get_string(s);
    int ok;

    if (strcmp(v, "*") == 0) {
        ok = 1;
    } else if (strncmp(v, "*.", 2) == 0) {
        ok = is_hostname(v + 2);
    } else if (v[0] == '[') {
        struct in6_addr a6;
        char buf[64];
        size_t n = strlen(v);
        ok = n > 2 && n - 2 < sizeof(buf) && v[n - 1] == ']';
        if (ok) {
            memcpy(buf, v + 1, n - 2);
            buf[n - 2] = '\0';
            ok = inet_pton(AF_INET6, buf, &a6) == 1;
        }
    } else {
        ok = is_hostname(v);
    }
    if (!ok) {
        if (v[0] != '[' && strchr(v, ':') != NULL)
            err_at(L, s, "%s must not include a port (got \"%s\"): ports are ignored when matching", path, v);
        else
            err_at(L, s, "%s must be \"*\", a host name or \"*.suffix\" (got \"%s\")", path, v);
        return;
    }
    set_str(L, &r->host, v);
    lower_in_place(r->host);
}

static void key_path_prefix(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj)
{
    struct weir_conf_route *r = obj;
    const char *v = config_setting_get_string(s);

    if (!is_http_path(v, 0)) {
        err_at(L, s,
               "%s must start with '/' and contain no spaces, control characters, '?' or '#' (got \"%s\")",
               path, v);
        return;
    }
    set_str(L, &r->path_prefix, v);
}

/* routes[i].pool is only type-checked here; resolve_routes() maps it. */
static const struct key route_keys[] = {
    KEY_CALL("host", K_STR, 0, key_route_host),
    KEY_CALL("path_prefix", K_STR, 0, key_path_prefix),
    KEY_CALL("pool", K_STR, KF_REQUIRED, NULL),
};

static void route_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_route *r = el;

    r->host = xstrdup(L, "*");
    r->path_prefix = xstrdup(L, "/");
    r->line = setting_line(s);
}

static void key_routes(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;

    L->routes = s;
    c->routes = walk_list(L, s, path, "route", sizeof(*c->routes), &c->nroutes, route_keys,
                          WEIR_ARRAY_LEN(route_keys), route_init);
}

/* After the whole file: routes[i].pool -> index into pools. */
static void resolve_routes(struct loader *L)
{
    struct weir_conf *c = L->c;
    size_t i, j;

    /* A missing pool list or a pool without a name was already reported;
     * an "unknown pool" for its routes would only repeat it. */
    if (c->npools == 0)
        return;
    for (j = 0; j < c->npools; j++) {
        if (c->pools[j].name == NULL)
            return;
    }
    for (i = 0; i < c->nroutes; i++) {
        const config_setting_t *s =
            config_setting_get_member(config_setting_get_elem(L->routes, (unsigned)i), "pool");
        const char *name;
        char list[256];
        size_t used = 0;

        if (s == NULL || config_setting_type(s) != CONFIG_TYPE_STRING)
            continue;
        name = config_setting_get_string(s);
        for (j = 0; j < c->npools; j++) {
            if (c->pools[j].name != NULL && strcmp(c->pools[j].name, name) == 0)
                break;
        }
        if (j < c->npools) {
            c->routes[i].pool = j;
            continue;
        }
        list[0] = '\0';
        for (j = 0; j < c->npools; j++) {
            if (c->pools[j].name == NULL)
                continue;
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
                                     c->pools[j].name);
            if (used >= sizeof(list))
                used = sizeof(list) - 1;
        }
        err_at(L, s, "unknown pool '%s' in routes[%zu].pool (defined pools: %s)", name, i,
               used ? list : "none");
    }
}

static void admin_post(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf *c = obj;

    c->admin.enabled = 1;
    if (c->admin.token == NULL && c->admin.addr.len > 0 && !weir_conf_addr_is_loopback(&c->admin.addr.ss))
        err_at(L, s, "%s.token is required when %s.address '%s' is not a loopback address", path, path,
               c->admin.addr.text);
}

static const struct key timeout_keys[] = {
    KEY_INT("connect_ms", struct weir_conf, timeouts.connect_ms, 1, MS_MAX),
    KEY_INT("client_header_ms", struct weir_conf, timeouts.client_header_ms, 1, MS_MAX),
    KEY_INT("client_body_ms", struct weir_conf, timeouts.client_body_ms, 1, MS_MAX),
    KEY_INT("upstream_response_ms", struct weir_conf, timeouts.upstream_response_ms, 1, MS_MAX),
    KEY_INT("idle_ms", struct weir_conf, timeouts.idle_ms, 1, MS_MAX),
    KEY_INT("upstream_idle_ms", struct weir_conf, timeouts.upstream_idle_ms, 1, MS_MAX),
    KEY_INT("drain_ms", struct weir_conf, timeouts.drain_ms, 1, MS_MAX),
};

static const struct key limit_keys[] = {
    KEY_INT("header_bytes", struct weir_conf, limits.header_bytes, 1024, 1048576),
    KEY_INT("max_connections", struct weir_conf, limits.max_connections, 1, 10000000),
    KEY_INT("upstream_idle_per_server", struct weir_conf, limits.upstream_idle_per_server, 0, 65536),
};

static const struct choice log_formats[] = {
    {"combined", WEIR_LOG_COMBINED}, {"json", WEIR_LOG_JSON}, {NULL, 0}};
static const struct choice log_levels[] = {{"debug", WEIR_LOG_DEBUG},
                                           {"info", WEIR_LOG_INFO},
                                           {"warn", WEIR_LOG_WARN},
                                           {"error", WEIR_LOG_ERROR},
                                           {NULL, 0}};

static const struct key log_keys[] = {
    KEY_STR("access", struct weir_conf, log.access, KF_NONEMPTY),
    KEY_ENUM("format", struct weir_conf, log.format, log_formats),
    KEY_ENUM("level", struct weir_conf, log.level, log_levels),
    KEY_STR("error", struct weir_conf, log.error, KF_NONEMPTY),
};

static const struct key admin_keys[] = {
    KEY_FN("address", K_STR, 0, struct weir_conf, admin.addr, key_addr),
    KEY_FN("token", K_STR, 0, struct weir_conf, admin.token, key_visible),
};

static const struct key stats_keys[] = {
    KEY_BOOL("enabled", struct weir_conf, stats.enabled),
};

static const struct key top_keys[] = {
    KEY_CALL("workers", K_ANY, 0, key_workers),
    KEY_CALL("listen", K_LIST, KF_REQUIRED, key_listen),
    KEY_GROUP("timeouts", timeout_keys, NULL),
    KEY_GROUP("limits", limit_keys, NULL),
    KEY_GROUP("log", log_keys, NULL),
    KEY_CALL("pools", K_LIST, KF_REQUIRED, key_pools),
    KEY_CALL("routes", K_LIST, KF_REQUIRED, key_routes),
    KEY_GROUP("admin", admin_keys, admin_post),
    KEY_GROUP("stats", stats_keys, NULL),
};

static void conf_defaults(struct loader *L, struct weir_conf *c)
{
    c->workers = 1;
    c->timeouts.connect_ms = 2000;
    c->timeouts.client_header_ms = 10000;
    c->timeouts.client_body_ms = 60000;
    c->timeouts.upstream_response_ms = 30000;
    c->timeouts.idle_ms = 60000;
    c->timeouts.upstream_idle_ms = 30000;
    c->timeouts.drain_ms = 10000;
    c->limits.header_bytes = 32768;
    c->limits.max_connections = 20000;
    c->limits.upstream_idle_per_server = 64;
    c->log.access = xstrdup(L, "stderr");
    c->log.format = WEIR_LOG_COMBINED;
    c->log.level = WEIR_LOG_INFO;
    c->log.error = xstrdup(L, "stderr");
    c->stats.enabled = 1;
    c->admin.enabled = 0;
    if (set_addr_default(L, &c->admin.addr, "127.0.0.1:9901") < 0)
        L->oom = 1;
}

/* ---- entry points ----------------------------------------------------------- */

struct weir_conf *weir_conf_load(const char *path, struct weir_conf_errors *errs)
{
    struct loader L;
    struct weir_conf *c;
    config_t cf;
    FILE *fp;
    char *dir, *slash;

    memset(&L, 0, sizeof(L));
    L.file = path;
    L.errs = errs;

    fp = fopen(path, "r");
    if (fp == NULL) {
        err_line(&L, path, 0, "cannot open the configuration file: %s", strerror(errno));
        return NULL;
    }
    fclose(fp);

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        err_line(&L, path, 0, "out of memory");
        return NULL;
    }
    L.c = c;
    c->file = xstrdup(&L, path);
    conf_defaults(&L, c);

    config_init(&cf);
    /* @include "x" is relative to the file's directory. */
    dir = xstrdup(&L, path);
    if (dir != NULL) {
        slash = strrchr(dir, '/');
        if (slash != NULL) {
            slash[slash == dir ? 1 : 0] = '\0';
            config_set_include_dir(&cf, dir);
            L.dir = dir;
        }
    }
    if (!config_read_file(&cf, path)) {
        char full[1024];
        const char *ef = source_file(&L, config_error_file(&cf), full, sizeof(full));
        const char *et = config_error_text(&cf) != NULL ? config_error_text(&cf) : "unknown error";
        if (config_error_type(&cf) == CONFIG_ERR_FILE_IO)
            err_line(&L, ef, config_error_line(&cf), "cannot read: %s", et);
        else if (strcmp(et, "syntax error") == 0)
            err_line(&L, ef, config_error_line(&cf), "syntax error");
        else
            err_line(&L, ef, config_error_line(&cf), "syntax error: %s", et);
    } else {
        walk_group(&L, config_root_setting(&cf), "", top_keys, WEIR_ARRAY_LEN(top_keys), c);
        resolve_routes(&L);
    }
    config_destroy(&cf);
    free(dir);

    if (L.oom)
        err_line(&L, path, 0, "out of memory while loading the configuration");
    if (errs->n > 0 || L.oom) {
        weir_conf_free(c);
        return NULL;
    }
    return c;
}

static void addr_free(struct weir_conf_addr *a)
{
    free(a->text);
}

void weir_conf_free(struct weir_conf *c)
{
    size_t i, j;

    if (c == NULL)
        return;
    free(c->file);
    for (i = 0; i < c->nlistens; i++)
        addr_free(&c->listens[i]);
    free(c->listens);
    free(c->log.access);
    free(c->log.error);
    for (i = 0; i < c->npools; i++) {
        struct weir_conf_pool *p = &c->pools[i];
        free(p->name);
        free(p->policy);
        free(p->hash_header);
        for (j = 0; j < p->nservers; j++)
            addr_free(&p->servers[j].addr);
        free(p->servers);
        free(p->health.path);
        free(p->health.method);
        free(p->health.host);
        free(p->health.expect_body);
    }
    free(c->pools);
    for (i = 0; i < c->nroutes; i++) {
        free(c->routes[i].host);
        free(c->routes[i].path_prefix);
    }
    free(c->routes);
    addr_free(&c->admin.addr);
    free(c->admin.token);
    free(c);
}

void weir_conf_errors_free(struct weir_conf_errors *errs)
{
    size_t i;

    if (errs == NULL)
        return;
    for (i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}
