/*
 * conf.h - the configuration file (libconfig syntax), parsed and validated.
 *
 * weir_conf_load() reads a whole file into a plain, immutable struct
 * weir_conf. Validation is complete: an unknown key, a wrong type, a bad
 * address, an unknown policy, a route to an unknown pool, weight 0, a
 * duplicate pool or server... each gives one "FILE:LINE: message" error and
 * the whole file is refused (NULL is returned), so weir never runs half
 * configured. Addresses are parsed here and must be IP addresses (or
 * "localhost"): no DNS lookup, on any thread; names are resolved
 * asynchronously by DNS discovery (servers with resolve = true, dns.h).
 *
 * Control thread / main thread only.
 */
#ifndef WEIR_CONF_H
#define WEIR_CONF_H

#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

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
    /* DNS discovery (conf_dns.c): with resolve = true the entry moves from
     * the pool's servers to its dns list at load time. */
    int resolve;
    int resolve_interval_ms; /* default 5000 */
};

/* A name DNS discovery resolves into servers (server with resolve = true). */
struct weir_conf_dns {
    char *text; /* "name:port" as written */
    char *name; /* lower-cased host name */
    int port;
    int weight;
    int interval_ms;
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

/* Servers per pool, in the file and through the runtime API: a balancer
 * pick and a snapshot rebuild are O(servers), and each server costs a health
 * check and per-worker statistics. */
#define WEIR_CONF_POOL_MAX_SERVERS 1000

/* ---- TLS (conf_tls.c): listen[].tls, listen[].redirect_https, pools[].tls ---- */
enum weir_tls_version { WEIR_TLS_1_2 = 0, WEIR_TLS_1_3 };

struct weir_conf_tls_cert { /* listen[].tls.certificates[i] */
    char *cert;             /* PEM file: the certificate, then its chain */
    char *key;              /* PEM file: its private key (not encrypted) */
    int line, cert_line, key_line;
};

struct weir_conf_listen_tls { /* listen[].tls; enabled = 0 when absent (plain listener) */
    int enabled;
    struct weir_conf_tls_cert *certs; /* >= 1; certs[0] is the default (no or unknown SNI) */
    size_t ncerts;
    int min_version;          /* enum weir_tls_version, default TLS 1.2 (the maximum is 1.3) */
    char *ciphers;            /* TLS 1.2 cipher list, OpenSSL syntax; NULL = weir's default */
    char *ciphersuites;       /* TLS 1.3 suites, OpenSSL syntax; NULL = OpenSSL's default */
    int session_tickets;      /* default 1 */
    int handshake_timeout_ms; /* default 10000 */
    int line;
};

struct weir_conf_listen {
    struct weir_conf_addr addr;
    int redirect_https; /* plain listener only: answer 308 to https://host/target */
    struct weir_conf_listen_tls tls;
};

struct weir_conf_pool_tls { /* pools[].tls; enabled = 0 when absent (plain upstream) */
    int enabled;
    int verify;        /* default 1: the chain and the name are verified */
    char *ca_file;     /* NULL = the system's trust store */
    char *server_name; /* SNI and the name verified; NULL = each server's host */
    char *cert, *key;  /* client certificate (mTLS): both or neither */
    int line, cert_line, key_line;
};
/* ---- end TLS ---- */

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
    struct weir_conf_pool_tls tls;
    int line;
    struct weir_conf_dns *dns; /* names resolved into servers (conf_dns.c, dns.c) */
    size_t ndns;
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
    /* Host header names the admin answers besides IP literals and localhost
     * (DNS rebinding defence): lower-case, "name" or "*.suffix". */
    char **allowed_hosts;
    size_t nallowed_hosts;
    int max_connections;    /* default 64: open admin connections at most */
    int request_timeout_ms; /* default 10000: a whole request (head and body) must arrive within it */
};

/* ---- autoscale section (conf_autoscale.c; the semantics: autoscale.h) ---- */

/* Metrics a rule or an alert watches, per pool, over its window. */
enum weir_as_metric {
    WEIR_ASM_RPS = 0,
    WEIR_ASM_RPS_PER_SERVER,
    WEIR_ASM_P50_MS,
    WEIR_ASM_P95_MS,
    WEIR_ASM_P99_MS,
    WEIR_ASM_MEAN_MS,
    WEIR_ASM_ERROR_RATE,
    WEIR_ASM_INFLIGHT_PER_SERVER,
    WEIR_ASM_HEALTHY_SERVERS,
    WEIR_ASM_CACHE_HIT_RATIO, /* cache answers / requests of the pool's cache routes (cache_stats.h) */
    WEIR_ASM_ORIGIN_RPS,      /* requests that reached a backend, per second */
    WEIR_ASM_N
};

struct weir_conf_as_step { /* rule.scale_up / rule.scale_down; enabled = 0 when absent */
    int enabled;
    int has_threshold; /* above (scale_up) / below (scale_down) given */
    double threshold;
    int for_ms;      /* default 3000 (up), 60000 (down) */
    int step;        /* servers per action, default 1 */
    int step_pct;    /* 0 = use step; else ceil(servers * pct / 100) */
    int cooldown_ms; /* default 30000 (up), 300000 (down) */
    char *hook;      /* NULL: none (then the rule only records) */
    int line;
};

struct weir_conf_as_rule {
    char *name;
    char *pool;
    int metric;      /* enum weir_as_metric */
    int window_ms;   /* default 10000 */
    int min_servers; /* default 1 */
    int max_servers; /* default 10 */
    int has_target;  /* target mode */
    double target;
    double busy_inflight; /* latency rules scale up only at inflight_per_server >= this; default 1 */
    int warmup_ms;        /* default 120000: new servers must prove themselves within this */
    int drain_ms;         /* default 30000: bound on a scale-down drain */
    char *alert_hook;     /* run on the rule's alerts (at_max, not_capacity_bound, hook_failed) */
    struct weir_conf_as_step up, down;
    int line;
};

struct weir_conf_as_alert {
    char *name;
    char *pool;
    int metric;
    int window_ms; /* default 60000 */
    int below;     /* 1: fires when the metric is below the thresholds */
    int has_warning, has_critical;
    double warning, critical;
    int for_ms;             /* default 0 */
    int keep_firing_for_ms; /* default 0 */
    char *hook;
    int line;
};

struct weir_conf_autoscale { /* enabled = 0 when the group is absent */
    int enabled;
    int interval_ms;     /* default 1000 */
    int dry_run;         /* default 0 */
    int hook_timeout_ms; /* default 30000 */
    struct weir_conf_as_rule *rules;
    size_t nrules;
    struct weir_conf_as_alert *alerts;
    size_t nalerts;
    struct {
        int enabled;
        struct weir_conf_addr addr;
        char *key;    /* lease key prefix, default "weir:autoscale:leader" */
        int lease_ms; /* default 5000 */
    } redis;
};

struct weir_conf {
    char *file;
    int workers; /* resolved: "auto" -> online cores; 1..WEIR_MAX_WORKERS */

    struct weir_conf_listen *listens;
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

    struct weir_conf_autoscale autoscale; /* conf_autoscale.c */

    struct weir_conf_addr *resolvers; /* DNS servers for discovery; none: /etc/resolv.conf */
    size_t nresolvers;
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

/* Parse "IP:port", "[v6]:port", "localhost:port" or "*:port" into ss/len.
 * Never looks a name up (a host name is an error: use DNS discovery).
 * Returns 0 or -1 with a static message in *why. */
int weir_conf_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len, const char **why);

/* 1 when the address is a loopback address (127/8 or ::1). */
int weir_conf_addr_is_loopback(const struct sockaddr_storage *ss);

/*
 * TLS checks beyond validity, for `weir -t` and start-up (conf_tls.c): every
 * certificate (served or client) that has expired or expires within
 * warn_days of `now` adds "FILE:LINE: warning: ..." to warns (zeroed by the
 * caller, freed with weir_conf_errors_free). Returns the number added.
 */
#define WEIR_TLS_EXPIRY_WARN_DAYS 14
size_t weir_conf_tls_warnings(const struct weir_conf *c, time_t now, int warn_days,
                              struct weir_conf_errors *warns);

#endif
