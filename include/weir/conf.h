/*
 * conf.h - the configuration file (libconfig syntax), parsed and validated.
 *
 * weir_conf_load() reads a whole file into a plain, immutable struct
 * weir_conf. Validation is complete: an unknown key, a wrong type, a bad
 * address, an unknown policy, a route to an unknown pool, weight 0, a
 * duplicate pool or server... each gives one "FILE:LINE: message" error and
 * the whole file is refused (NULL is returned), so weir never runs half
 * configured. Addresses are resolved here (on the loading thread), never on a
 * worker.
 *
 * Control thread / main thread only.
 */
#ifndef WEIR_CONF_H
#define WEIR_CONF_H

#include <stddef.h>
#include <sys/socket.h>

enum weir_log_format { WEIR_LOG_COMBINED = 0, WEIR_LOG_JSON };
enum weir_log_level { WEIR_LOG_DEBUG = 0, WEIR_LOG_INFO, WEIR_LOG_WARN, WEIR_LOG_ERROR };
enum weir_hash_key { WEIR_HASH_URI = 0, WEIR_HASH_CLIENT_IP, WEIR_HASH_HEADER };
enum weir_check_type { WEIR_CHECK_NONE = 0, WEIR_CHECK_HTTP, WEIR_CHECK_TCP };

struct weir_conf_addr {
    char *text; /* as written, e.g. "127.0.0.1:9001" */
    struct sockaddr_storage ss;
    socklen_t len;
    int line;
};

struct weir_conf_server {
    struct weir_conf_addr addr;
    int weight; /* >= 1, default 1 */
    int line;
};

struct weir_conf_health {                   /* pool.health; type NONE when the group is absent */
    int type;                               /* enum weir_check_type */
    char *path;                             /* default "/health" */
    char *method;                           /* default "GET" */
    char *host;                             /* Host header; NULL = server address */
    int expect_status_lo, expect_status_hi; /* default 200-399 */
    char *expect_body;                      /* substring, NULL = any */
    int interval_ms;                        /* default 1000 */
    int timeout_ms;                         /* default 500, must be < interval_ms... or <= */
    int jitter_pct;                         /* default 10, 0..50 */
    int rise, fall;                         /* default 2, 3 */
};

struct weir_conf_passive { /* pool.passive; enabled = 0 when absent */
    int enabled;
    int consecutive_failures; /* default 5 */
    int count_5xx;            /* default 1 */
    int eject_ms;             /* default 10000 */
    int max_eject_ms;         /* default 300000 */
    int max_ejected_pct;      /* default 50, 0..100 */
};

struct weir_conf_pool {
    char *name;
    char *policy;      /* validated: weir_lb_find(policy) != NULL */
    int hash_key;      /* enum weir_hash_key, default URI */
    char *hash_header; /* lower-cased NAME for "header:NAME" */
    int retries;       /* default 2, 0..10 */
    struct weir_conf_server *servers;
    size_t nservers;
    struct weir_conf_health health;
    struct weir_conf_passive passive;
    int slow_start_ms; /* default 0 = off */
    int panic;         /* default 1 */
    int line;
};

struct weir_conf_route {
    char *host;        /* "*" = any; exact host (lower-cased, port stripped) or "*.suffix" */
    char *path_prefix; /* default "/" */
    size_t pool;       /* index into conf->pools */
    int cache;         /* cache = true: answered through the response cache (default 0) */
    int line;
};

/* The cache section (conf_cache.c); defaults apply when it is absent. */
struct weir_conf_cache {
    size_t memory_bytes;     /* L1 budget for the whole instance, default 64 MiB */
    size_t max_object_bytes; /* larger bodies stream through unstored, default 8 MiB, <= memory_bytes */
    struct {
        int enabled;     /* 1 when the redis group is present */
        char *address;   /* numeric "host:port", "[v6]:port" or "unix:/path" */
        char *password;  /* NULL: no AUTH */
        int db;          /* default 0 */
        char *prefix;    /* default "weir:" */
        int timeout_ms;  /* per command, default 50 */
        int line;
    } redis;
};

struct weir_conf_admin { /* admin group; enabled = 0 when absent */
    int enabled;
    struct weir_conf_addr addr; /* default 127.0.0.1:9901 */
    char *token;                /* NULL when absent; required when addr is not loopback */
};

struct weir_conf {
    char *file;
    int workers; /* resolved: "auto" -> online cores; 1..WEIR_MAX_WORKERS */

    struct weir_conf_addr *listens;
    size_t nlistens;

    struct {
        int connect_ms;           /* default 2000 */
        int client_header_ms;     /* default 10000 */
        int client_body_ms;       /* default 60000: max gap between body reads */
        int upstream_response_ms; /* default 30000 */
        int idle_ms;              /* default 60000: client keep-alive idle */
        int upstream_idle_ms;     /* default 30000: idle upstream keep-alive conns */
        int drain_ms;             /* default 10000: graceful stop bound */
    } timeouts;

    struct {
        size_t header_bytes;          /* default 32768, 1024..1048576 */
        int max_connections;          /* default 20000 (all workers) */
        int upstream_idle_per_server; /* default 64 per worker */
    } limits;

    struct {
        char *access; /* "stderr", "stdout", "off" or a file path; default "stderr" */
        int format;   /* enum weir_log_format */
        int level;    /* enum weir_log_level, default INFO */
        char *error;  /* error log: "stderr" or a path; default "stderr" */
    } log;

    struct weir_conf_pool *pools;
    size_t npools;
    struct weir_conf_route *routes;
    size_t nroutes;

    struct weir_conf_admin admin;

    struct {
        int enabled; /* default 1; 0 turns request statistics off (overhead measurement) */
    } stats;

    struct weir_conf_cache cache;

    /* NOTE: conf_edit.c (weir_conf_dup) deep-copies this struct for the
     * runtime API: a new pointer field must be copied there too. */
};

/* Error list filled by the loader: each entry is "FILE:LINE: message". */
struct weir_conf_errors {
    char **msgs;
    size_t n;
};

/*
 * Load and validate `path`. Returns the configuration (caller frees with
 * weir_conf_free) or NULL, in which case errs holds at least one message.
 * errs must be zeroed by the caller and freed with weir_conf_errors_free.
 */
struct weir_conf *weir_conf_load(const char *path, struct weir_conf_errors *errs);
void weir_conf_free(struct weir_conf *c);
void weir_conf_errors_free(struct weir_conf_errors *errs);

/* Parse "host:port", "[v6]:port" or "*:port" into ss/len (numeric or
 * resolvable host). Returns 0 or -1 with a static message in *why. */
int weir_conf_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, const char **why);

/* 1 when the address is a loopback address (127/8 or ::1). */
int weir_conf_addr_is_loopback(const struct sockaddr_storage *ss);

#endif
