/*
 * origin.h - what origin.c (settings, counters, responses), origin_main.c
 * (connections, threads, options, main) and origin_http.c (request heads
 * and bodies) share, and the interface of origin_ws.c (WebSocket echo).
 * Internal to weir-origin.
 */
#ifndef WEIR_ORIGIN_H
#define WEIR_ORIGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event_struct.h>

#define ORIGIN_HEAD_MAX     (64 * 1024)  /* request head limit (431 beyond) */
#define ORIGIN_HEADERS_MAX  128          /* header fields per request (431 beyond) */
#define ORIGIN_LINE_MAX     4096         /* chunk-size / trailer line limit */
#define ORIGIN_TRAILER_MAX  (64 * 1024)  /* whole trailer section limit */
#define ORIGIN_IN_HIGH      (256 * 1024) /* stop reading above this much unparsed input */
#define ORIGIN_OUT_HIGH     (256 * 1024) /* stop generating above this much unsent output */
#define ORIGIN_OUT_LOW      (64 * 1024)  /* the write callback fires at or below this */
#define ORIGIN_SPAN         (64 * 1024)  /* body bytes per evbuffer_add_reference */
#define ORIGIN_CHUNK        (16 * 1024)  /* chunk size of chunked responses */
#define ORIGIN_PATTERN_LEN  64           /* period of the generated body */
#define ORIGIN_NAME_MAX     256
#define ORIGIN_CC_MAX       512
#define ORIGIN_HBODY_MAX    256
#define ORIGIN_IDLE_SEC     60 /* idle keep-alive and stalled-write timeout */
#define ORIGIN_LINGER_SEC   2  /* wait for the peer's FIN after our last response */
#define ORIGIN_SLOW_TICK_MS 10
#define ORIGIN_MS_MAX       3600000
#define ORIGIN_SIZE_MAX     (1ULL << 40)
#define ORIGIN_THREADS_MAX  64
#define ORIGIN_HEAD_BUF     4096 /* response head scratch buffer */

#define ORIGIN_OK    0
#define ORIGIN_AGAIN (-1) /* more input needed; positive returns are HTTP error statuses */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

#define LOAD(x)      atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v)  atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define INC(x)       atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)
#define DEC(x)       atomic_fetch_sub_explicit(&(x), 1, memory_order_relaxed)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define NAME_IS(n, len, lit) ((len) == sizeof(lit) - 1 && strncasecmp((n), (lit), sizeof(lit) - 1) == 0)
/* origin_ws.c: WebSocket echo between two evbuffers. */
struct origin_ws;
struct origin_ws *origin_ws_new(void);
void origin_ws_free(struct origin_ws *ws);
int origin_ws_accept(const char *key, size_t len, char out[29]);
int origin_ws_echo(struct origin_ws *ws, struct evbuffer *in, struct evbuffer *out, size_t out_high);

#define ORIGIN_WS_AGAIN 0 /* needs more input, or out reached out_high */
#define ORIGIN_WS_CLOSE 1 /* a close frame was queued: close once out is written */

/* Process-wide settings. The numbers may change at run time (/_ctl/set) on
 * any worker, hence atomics; the strings are guarded by lock. */
struct origin_settings {
    char name[ORIGIN_NAME_MAX + 1];
    size_t name_len;
    const char *listen;
    int threads;
    bool verbose;
    bool tcp;
    atomic_int delay_ms, jitter_ms, fail_pct, fail_status, health_status, health_hang, chunked;
    atomic_llong body_size; /* -1: the body is "NAME METHOD PATH\n" */
    atomic_int has_cc;      /* cache_control is not empty (read without the lock) */
    pthread_mutex_t lock;   /* guards cache_control, health_body */
    char cache_control[ORIGIN_CC_MAX + 1];
    char health_body[ORIGIN_HBODY_MAX + 1];
};

struct origin_stats {
    atomic_llong accepted, open;
    atomic_llong requests; /* everything but /_ctl/ and /health */
    atomic_llong health;   /* /health */
};

/* Raw head of the last request of a kind (/_ctl/last, /_ctl/last_health). */
struct origin_last {
    char *buf;
    size_t len, cap;
};

/* One thread: its event loop and listener, and what its callbacks share. */
struct worker {
    struct event_base *base;
    struct evconnlistener *listener;
    const struct timeval *idle_tv, *linger_tv; /* common timeouts */
    struct conn *conns;                        /* every open connection, freed at exit */
    uint64_t rng;
    time_t date_sec;
    char date[64];
    size_t date_len;
    pthread_t thread;
};

/* origin.c: settings, counters, the last request heads and the pattern the
 * generated bodies are cut from (filled in by main). */
extern struct origin_settings g_settings;
extern struct origin_stats g_stats;
extern struct origin_last g_last, g_last_health;
extern char g_pattern[ORIGIN_SPAN + ORIGIN_PATTERN_LEN];

enum conn_state {
    ST_HEAD,    /* waiting for / parsing a request head */
    ST_BODY,    /* reading and discarding the request body */
    ST_DELAY,   /* body read, response timer pending */
    ST_SEND,    /* generating a sized body under backpressure */
    ST_SLOW,    /* /slow: the timer trickles the body */
    ST_HANG,    /* /health while health_hang=1: never answers */
    ST_WS,      /* WebSocket echo after 101 */
    ST_CLOSING, /* last response queued, waiting for the output to drain */
    ST_LINGER   /* write side shut down, discarding input until EOF */
};

enum body_state { B_NONE, B_LENGTH, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_CRLF, B_TRAILER };

/* Routes; everything from R_CTL_STATS on is a control endpoint. */
enum route {
    R_DEFAULT,
    R_ECHO,
    R_HEALTH,
    R_WS,
    R_SLOW,
    R_RESET,
    R_CTL_STATS,
    R_CTL_RESET,
    R_CTL_SET,
    R_CTL_LAST,
    R_CTL_LAST_HEALTH,
    R_CTL_UNKNOWN
};

enum { RB_NONE, RB_LENGTH, RB_CHUNKED }; /* response framing */

struct hdr {
    uint32_t name, name_len, value, value_len; /* offsets into conn.head */
};

/* One request. Pointers point into conn.head, valid until the next head. */
struct req {
    const char *method, *target, *path, *query;
    size_t method_len, target_len, path_len, query_len;
    int minor; /* HTTP/1.minor */
    enum route route;
    unsigned nhdrs, host_count, ws_key_count;
    bool is_head, keepalive;
    bool conn_close, conn_keepalive, conn_upgrade, upgrade_ws;
    bool has_cl, has_te, te_chunked, te_other;
    bool expect_continue, expect_other;
    uint64_t content_length;
    const char *ws_key, *ws_version;
    size_t ws_key_len, ws_version_len;
    /* query overrides, -1 when absent */
    int delay_ms, jitter_ms, status, fail_pct, chunked, trailer;
    long long size;
    bool expect417;
    bool has_cc; /* cc= given (possibly empty); the value is in conn.cc */
    size_t cc_len;
    uint64_t body_bytes, body_fnv;
};

struct conn {
    struct conn *prev, *next;
    struct worker *w;
    struct bufferevent *bev;
    struct event timer; /* delay and /slow ticks */
    enum conn_state state;
    bool eof;  /* the peer will send nothing more */
    bool dead; /* free at the end of the current callback */
    enum body_state bstate;
    uint64_t body_left;
    size_t trailer_bytes;
    struct req req;
    uint64_t out_left, out_off; /* generated body: bytes to go, pattern offset */
    bool out_chunked, out_trailer;
    uint64_t slow_total;
    unsigned slow_tick, slow_ticks, slow_interval_ms;
    struct origin_ws *ws;
    char *head; /* copy of the current request head */
    size_t head_len, head_cap;
    struct hdr hdrs[ORIGIN_HEADERS_MAX];
    char cc[ORIGIN_CC_MAX + 1];
};

/* origin_http.c: the request side. */
extern unsigned char g_tchar[256]; /* RFC 9110 tchar, filled in by main */
int parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out);
bool query_next(const char **pp, const char *e, const char **k, size_t *kl, const char **v, size_t *vl);
long value_copy(const char *s, size_t n, char *out, size_t cap, bool decode, bool header);
bool key_is(const char *k, size_t kl, const char *name);
void req_reset(struct req *r);
int req_query(struct conn *c);
int conn_read_head(struct conn *c);
int conn_read_body(struct conn *c);

/* origin.c: responses. */
int setting_set(const char *k, size_t kl, const char *v, size_t vl, bool decode, bool apply);
void req_head_done(struct conn *c);
void conn_dispatch(struct conn *c);
void conn_error(struct conn *c, int status, const char *extra);
void respond_route(struct conn *c);
void send_fill(struct conn *c);
void slow_tick(struct conn *c);

#endif
