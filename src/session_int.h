/*
 * session_int.h - the session's state shared by its stages (private to
 * session.c, sess_request.c, sess_upstream.c, sess_response.c and
 * exchange.c).
 *
 * Who calls whom (the arrows run one way):
 *
 *   session.c        lifecycle and the state machine: accept, conn
 *      |             events, one exchange_end(), local answers, drain,
 *      |             abort, deferred free, hooks
 *      v
 *   sess_request.c   request head, limits, routing, request id
 *   sess_upstream.c  choose a server, connect, retry, request body
 *   sess_response.c  response head, body (filters), tunnel
 *      |             (a stage returns OK / AGAIN / DONE / ERROR to
 *      |             session.c and never calls another stage)
 *      v
 *   exchange.c       the exchange's bookkeeping: server and upstream
 *      |             release, passive health, gauges, statistics, log line
 *      v
 *   transport.c, upstream.c, http_msg.c, access_log.c, http_parse.c, ...
 *
 * Stage return values: WEIR_OK (step done, go on), WEIR_AGAIN (waiting for
 * an event), WEIR_DONE (the step ended the exchange's part it runs: body
 * complete, tunnel over), WEIR_ERROR (the exchange failed: when no response
 * byte went to the client yet the session answers s->status locally with
 * s->detail, else it aborts the connection). No stage frees the session:
 * the session is freed by session.c only, after the event callback that
 * ended it unwinds.
 *
 * Worker thread only.
 */
#ifndef WEIR_SESSION_INT_H
#define WEIR_SESSION_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "weir/exchange.h"
#include "weir/http_msg.h"
#include "weir/http_parse.h"
#include "weir/runtime.h"
#include "weir/transport.h"
#include "weir/worker.h"

/* Output above this stops feeding it (backpressure). */
/* A connection's output holds at most about this much before the side
 * feeding it stops (the kernel's socket buffers do the bulk buffering);
 * with the read limit it bounds what a slow reader costs in weir's memory
 * to about 2 x 32 KiB. */
#define WEIR_S_HWM       (16 * 1024)
#define WEIR_S_LWM       (8 * 1024)
#define WEIR_S_MAX_TRIES 12

enum weir_sstate {
    S_IDLE,     /* keep-alive: waiting for the first byte of a request */
    S_HEAD,     /* reading a request head */
    S_HOOK,     /* a request hook suspended the exchange */
    S_UPSTREAM, /* connecting / request going up, waiting for the response head */
    S_RESP,     /* streaming the response body */
    S_TUNNEL,   /* after 101: raw bytes both ways */
    S_STREAM,   /* a hook's streamed answer (weir_exchange_respond_stream) */
    S_CLOSING   /* flushing the last output, then close */
};

/* Indexes of request fields kept for the access log. */
enum { LF_METHOD, LF_TARGET, LF_HOST, LF_REFERER, LF_UA, LF_POOL, LF_UP, LF_N };

struct weir_filter_slot {
    const struct weir_resp_filter *f;
    void *data;
};

struct weir_xstate;

/*
 * One client connection. Only what a connection needs between requests
 * lives here (an idle keep-alive connection costs this, its weir_conn and
 * two empty evbuffers: under 1 KiB); the state of an exchange is in
 * struct weir_xstate, allocated when a request starts and freed when it
 * ends.
 */
struct weir_session {
    TAILQ_ENTRY(weir_session) link;
    struct weir_worker *w;
    struct weir_conn *cc;          /* client connection */
    struct weir_xstate *x;         /* the exchange in progress, or NULL */
    int state;                     /* enum weir_sstate */
    unsigned depth;                /* event callbacks of this session on the stack */
    unsigned dead : 1;             /* freed once depth drops to 0 */
    unsigned close_after : 1;      /* close the client connection after this exchange */
    unsigned peer_eof : 1;         /* the client half-closed: answer what it sent, then close */
    unsigned linger : 1;           /* close lingering: the client may still be sending */
    unsigned lingering : 1;        /* our side is shut; reading and dropping input */
    unsigned handshaking : 1;      /* TLS: no byte of plaintext yet (handshake timeout armed) */
    uint32_t linger_bytes;         /* input dropped while lingering */
    uint32_t scan_pos, scan_lines; /* request head resume point */
    unsigned nreq;
    int gauge; /* the client gauge this session is counted in, or -1 */
    uint8_t peer_len;
    uint8_t listener;     /* index of the listen address it came in on */
    char peer[46];        /* INET6_ADDRSTRLEN */
    struct timeval hs_tv; /* TLS handshake timeout (the conn points to it) */
};

/* The state of one exchange (request and response). */
struct weir_xstate {
    struct event timer; /* client_header_ms deadline */
    int timer_on;
    const char *head_p; /* the parsed head in the client input (until consumed) */
    size_t head_len;

    /* the current request */
    struct weir_rt *rt; /* retained for the exchange */
    struct weir_pool *pool;
    const struct weir_route *route;
    int method_id;
    int version; /* 10 or 11 */
    int idempotent;
    int upgrade;
    char *up_proto; /* the request's Upgrade value (while upgrade) */
    int req_body;   /* enum weir_http_body */
    uint64_t req_left;
    struct weir_chunked req_chunk;
    int req_done;     /* whole body moved upstream */
    int req_consumed; /* some body byte left the client buffer */
    char *uphead;     /* upstream request head, kept for retries */
    size_t uphead_len, uphead_cap;
    int uphead_pending; /* routed, head not built yet (weir_sreq_build_uphead) */
    char *lf; /* log fields, NUL-separated */
    size_t lf_len, lf_cap;
    uint32_t lf_off[LF_N], lf_n[LF_N];
    char rid[72];
    uint64_t hash;
    struct weir_server *tried[WEIR_S_MAX_TRIES];
    int ntried;
    int fresh_retry; /* a stale kept-alive connection failed: use a new one */
    int reached;     /* some try got a connection to a server */
    int detached;    /* a tunnel: counted, snapshot and server released */

    /* local answer on WEIR_ERROR */
    int answer;       /* status to answer; 0: abort the connection */
    int answer_close; /* close the connection after the answer */
    const char *detail;
    char *location; /* Location of a local 308 answer (redirect_https), malloc'd */

    /* hooks and filters */
    void *hook_data[WEIR_EXCHANGE_MAX_HOOKS];
    unsigned hooks_run; /* hooks whose on_request ran */
    int hook_rc;        /* WEIR_HOOK_* given to weir_exchange_resume() */
    int answered;       /* weir_exchange_respond() queued an answer */
    struct weir_filter_slot filters[WEIR_EXCHANGE_MAX_FILTERS];
    int nfilters;

    /* exchange.h extensions: fields filters add, a streamed answer */
    struct weir_sbuf resp_fields;       /* weir_exchange_add_response_field() lines */
    int in_head_filters;                /* the filters' on_head runs: fields may be added */
    const struct weir_resp_source *src; /* weir_exchange_respond_stream(): its body */
    void *src_arg;
    uint64_t stream_left; /* body bytes still to pull */

    char *reqcopy; /* weir_exchange_request(): head bytes */
    struct weir_http_msg *reqmsg;
    char *host_copy, *target_copy;

    /* upstream side */
    struct weir_server *server; /* counted in server->active while set */
    struct weir_upconn *up;
    int up_ready; /* connected (or reused) and the head handed over */
    int up_reused;
    uint64_t t_start, t_up, t_first;

    /* response */
    int status;
    int resp_body; /* enum weir_http_body */
    uint64_t resp_left;
    struct weir_chunked resp_chunk;
    int resp_keepalive; /* upstream connection reusable after the body */
    int dechunk;        /* HTTP/1.0 client: strip chunked coding */
    int resp_started;   /* a response byte arrived from upstream */
    int resp_sent;      /* a response head went to the client */
    int resp_done;      /* the whole response body was queued to the client */
    size_t resp_scan_pos, resp_scan_lines;
    uint64_t bytes_out;
    uint64_t bytes_in;
};

/* ---- exchange.c: bookkeeping shared by session.c and the stages ---- */

/* Read high-water mark for both sides (always room for a whole head). */
size_t weir_x_read_hwm(const struct weir_rt *rt);
void weir_x_release_server(struct weir_session *s);
void weir_x_drop_upstream(struct weir_session *s);
void weir_x_set_gauge(struct weir_session *s, int g);
/* Passive health and error counters for the current server. */
void weir_x_note_outcome(struct weir_session *s, int outcome);
/* Statistics and the access log line of the finished exchange (only the
 * line for a detached tunnel: its statistics were recorded at the 101). */
void weir_x_log(struct weir_session *s);
/* A tunnel starts: record its statistics now, keep copies of what its log
 * line needs, and release the snapshot and the server's active count (a
 * tunnel may live for hours; an admin DELETE of its server must finish). */
void weir_x_tunnel_detach(struct weir_session *s);
void weir_x_lf_set(struct weir_session *s, int idx, const char *p, size_t n);
/* Filters: head/data to every attached one; end or abort detaches all. */
void weir_x_filters_head(struct weir_session *s, const struct weir_http_msg *m);
void weir_x_filters_data(struct weir_session *s, const char *p, size_t n);
void weir_x_filters_end(struct weir_session *s, int complete);
/* weir answers locally with `status`: the filters' on_local may add fields. */
void weir_x_filters_local(struct weir_session *s, int status);
/* S_STREAM: pull the streamed answer's body while the client's output has
 * room. WEIR_AGAIN (output full, or the source has nothing yet), WEIR_DONE
 * (the whole body is queued), WEIR_ERROR (the source failed: cut). */
int weir_x_stream(struct weir_session *s);
/* A request starts: allocate s->x. Returns WEIR_OK or WEIR_ERROR. */
int weir_x_begin(struct weir_session *s);
/* Forget and free the finished exchange (s->x becomes NULL); the
 * connection's state stays. NULL-safe. */
void weir_x_reset(struct weir_session *s);
/* Run the chunked parser over the first `max` bytes of `in` (without
 * consuming them).
 * *total = bytes that belong to the body; WEIR_OK (body ended), WEIR_AGAIN,
 * WEIR_ERROR. data_cb, if set, receives the chunk payload. */
int weir_x_chunked_scan(struct evbuffer *in, size_t max, struct weir_chunked *c, size_t *total,
                        void (*data_cb)(void *, const char *, size_t), void *ud);
/* 1 when c's output holds HWM or more after sending what the socket takes. */
int weir_x_out_full(struct weir_conn *c);
/* Bytes that may still be queued on c's output (HWM minus what it holds
 * after sending what the socket takes); 0 when full. */
size_t weir_x_out_room(struct weir_conn *c);

/* ---- sess_request.c ---- */

/* Parse the next request head from the client input and route it.
 * AGAIN: no complete head; OK: routed (s->uphead built, head consumed);
 * ERROR: answer s->answer; DONE: close quietly (a head that can never
 * complete). */
int weir_sreq_head(struct weir_session *s);
/* Fill the hook's view of the routed request (valid during on_request).
 * Returns WEIR_OK or WEIR_ERROR (out of memory). */
int weir_sreq_info(struct weir_session *s, struct weir_req_info *ri);
/* Drop the routed head from the client input (after the hooks ran) and
 * set the client timeouts for the body. */
void weir_sreq_consume(struct weir_session *s);

/* ---- sess_upstream.c ---- */

/* Choose a server and connect or reuse. OK: the upstream conn is ready
 * (reused); AGAIN: connect in progress; ERROR: answer s->answer. */
int weir_sup_start(struct weir_session *s, weir_conn_handler h);
/* The connection is usable: queue the head. */
/* Build the upstream request head of a routed request (a no-op when built).
 * Only while the parsed head is there: before weir_sreq_consume(). Saves
 * the work for requests a hook answers (cache hits). WEIR_OK or WEIR_ERROR. */
int weir_sreq_build_uphead(struct weir_session *s);
void weir_sup_ready(struct weir_session *s);
/* Move request body bytes from the client up. OK: whole body sent;
 * AGAIN: more to come; ERROR: malformed body (answer s->answer, or abort
 * when a response already went out). */
int weir_sup_body(struct weir_session *s);
/* The upstream conn failed (event ev) before a complete response head.
 * AGAIN: a retry started (or is ready: then s->up_ready); ERROR: answer
 * s->answer. */
int weir_sup_failed(struct weir_session *s, int ev, weir_conn_handler h);
/* A read left the response incomplete: acknowledge the server's data at
 * once (a server with Nagle on waits for that ACK before its next write;
 * delayed, it costs 40 ms). */
void weir_sup_read_more(struct weir_session *s);
/* Keep the upstream connection for reuse if the exchange left it clean. */
void weir_sup_release(struct weir_session *s);

/* ---- sess_response.c ---- */

/* Parse response heads from upstream (1xx forwarded). AGAIN; OK: final
 * head forwarded (s->state to set: S_RESP or S_TUNNEL via *tunnel);
 * ERROR: answer s->answer (502). */
int weir_sresp_head(struct weir_session *s, int *tunnel);
/* Move response body bytes to the client. AGAIN; DONE: body complete;
 * ERROR: abort (malformed). */
int weir_sresp_body(struct weir_session *s);
/* The server closed or failed during the body. DONE: the body was
 * close-delimited and is complete; ERROR: abort. */
int weir_sresp_upstream_end(struct weir_session *s, int ev);
/* Move tunnel bytes both ways. AGAIN; DONE: a side is gone and its bytes
 * were moved. */
int weir_stunnel_move(struct weir_session *s);
/* Enter tunnel mode (timeouts, both directions). */
void weir_stunnel_start(struct weir_session *s);
/* Free the calling thread's scratch buffer. */
void weir_sresp_thread_exit(void);

#endif
