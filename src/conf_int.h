/*
 * conf_int.h - the configuration loader's internals, shared by conf_load.c
 * (the generic table walk, errors and checks) and the files that hold key
 * tables (conf.c for the core; one conf_*.c per subsystem). Not a public
 * header: only the loader's own files include it.
 *
 * A subsystem adds its section as a table of struct key in its own
 * conf_NAME.c, one KEY_GROUP line in conf.c's top_keys, its defaults and
 * its free. Handlers record errors with conf_err_at() and go on.
 */
#ifndef WEIR_CONF_INT_H
#define WEIR_CONF_INT_H

#include <stddef.h>

#include <libconfig.h>

#include "weir/conf.h"
#include "weir/core.h"

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
typedef void (*conf_key_fn)(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj);

enum key_kind { K_INT, K_BOOL, K_STR, K_GROUP, K_LIST, K_ANY, K_FLOAT };

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
    double fmin, fmax;            /* K_FLOAT (stored into a double at off) */
    size_t off;                   /* NO_OFF: fn stores */
    size_t width;                 /* K_INT: sizeof the field */
    const struct choice *choices; /* K_STR: NULL-name terminated */
    const struct key *sub;        /* K_GROUP: member table */
    size_t nsub;
    conf_key_fn fn;
};

#define KEY_INT(n, T, f, lo, hi)                                                                             \
    {                                                                                                        \
        .name = (n), .kind = K_INT, .min = (lo), .max = (hi), .off = offsetof(T, f),                         \
        .width = sizeof(((T *)0)->f)                                                                         \
    }
#define KEY_FLOAT(n, T, f, lo, hi)                                                                           \
    {                                                                                                        \
        .name = (n), .kind = K_FLOAT, .fmin = (lo), .fmax = (hi), .off = offsetof(T, f)                      \
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

/* ---- the engine (conf_load.c): errors, the table walk, shared checks ------- */

__attribute__((format(printf, 4, 5))) void conf_err_line(struct loader *L, const char *file, int line,
                                                         const char *fmt, ...);
/* Error located at setting s (the root setting has no line: use 1). */
__attribute__((format(printf, 3, 4))) void conf_err_at(struct loader *L, const config_setting_t *s,
                                                       const char *fmt, ...);
char *conf_strdup(struct loader *L, const char *s);
void conf_set_str(struct loader *L, char **dst, const char *v);
int conf_line(const config_setting_t *s);
/* "the string \"x\"", "the integer 3"... for messages. */
const char *conf_describe(const config_setting_t *s, char *buf, size_t size);
const char *conf_source_file(const struct loader *L, const char *file, char *buf, size_t size);

/* Refuse integer literals libconfig would wrap (no L suffix, beyond 32
 * bits) in the file at path and its @include files, FILE:LINE each.
 * Returns 0, or -1 when it recorded errors. */
int conf_prescan_ints(struct loader *L, const char *path);

void conf_walk_group(struct loader *L, const config_setting_t *g, const char *path, const struct key *keys,
                     size_t nkeys, void *obj);
typedef void (*conf_elem_init_fn)(struct loader *L, const config_setting_t *s, void *el);
/* A list of groups: allocate n elements of elsize, init each, walk it with
 * keys. Returns the array (NULL when empty or on error) and its length. */
void *conf_walk_list(struct loader *L, const config_setting_t *list, const char *path, const char *what,
                     size_t elsize, size_t *n_out, const struct key *keys, size_t nkeys,
                     conf_elem_init_fn init);

int conf_addr_equal(const struct weir_conf_addr *a, const struct weir_conf_addr *b);
int conf_set_addr_default(struct loader *L, struct weir_conf_addr *a, const char *text);
int conf_is_token(const char *s);
int conf_is_visible(const char *s);
int conf_is_http_path(const char *s, int allow_query);
int conf_is_hostname(const char *s);
void conf_lower(char *s);

/* conf_tls.c: K_GROUP handlers (KEY_CALL) that walk listen[].tls into the
 * struct weir_conf_listen and pools[].tls into the struct weir_conf_pool, and
 * the frees of what they allocate. */
void conf_key_listen_tls(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj);
void conf_key_pool_tls(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj);
void conf_tls_listen_free(struct weir_conf_listen *l);
void conf_tls_pool_free(struct weir_conf_pool *p);

/* Handlers for K_STR keys stored at k->off. */
void conf_key_addr(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                   void *obj); /* struct weir_conf_addr */
void conf_key_visible(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                      void *obj); /* visible ASCII, no spaces */
void conf_key_http_path(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj);
void conf_key_method(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                     void *obj);
void conf_key_host_header(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj);

/* The cache section (conf_cache.c): its key handler, defaults and free. */
void conf_key_cache(struct loader *L, const struct key *k, const config_setting_t *s, const char *path, void *obj);
void conf_cache_defaults(struct loader *L, struct weir_conf *c);
void conf_cache_free(struct weir_conf *c);

#endif
