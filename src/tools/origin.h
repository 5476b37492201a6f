/*
 * origin.h - what origin.c (settings, connections, responses, main) and
 * origin_http.c (request heads and bodies) share, and the interface of
 * origin_ws.c (WebSocket echo). Internal to weir-origin.
 */
#ifndef WEIR_ORIGIN_H
#define WEIR_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

struct worker; /* origin.c */

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

/* origin.c */
void req_head_done(struct conn *c);

#endif
