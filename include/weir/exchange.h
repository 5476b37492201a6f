/*
 * exchange.h - how a later stage (the response cache) plugs into the
 * request path: one request hook point and response filters.
 *
 * An exchange is one request and its response on a client connection
 * (struct weir_exchange is the session; opaque here). Worker thread only:
 * every function below is called on, and calls back on, the worker thread
 * that owns the exchange.
 *
 * Request hook
 * ------------
 * The session calls every registered hook's on_request() once per request,
 * after the head was parsed and routed and before a server is chosen (in
 * registration order, until one does not return WEIR_HOOK_CONTINUE). A
 * hook may:
 *   - let the request go upstream: return WEIR_HOOK_CONTINUE;
 *   - answer it itself: call weir_exchange_respond(), return
 *     WEIR_HOOK_ANSWERED (an L1 cache hit);
 *   - suspend it: return WEIR_HOOK_SUSPENDED, and later, from an event of
 *     its own (a Redis reply, the end of a fetch it waited for), call
 *     weir_exchange_resume() with WEIR_HOOK_CONTINUE or (after
 *     weir_exchange_respond()) WEIR_HOOK_ANSWERED. Never resume from inside
 *     on_request itself.
 * The parsed head (ri->msg) points into the client's read buffer and is
 * valid only during on_request; a hook that suspends and needs the head
 * later calls weir_exchange_request() during on_request, which copies the
 * head into memory the exchange owns until it ends. The request as it will
 * go upstream is kept by the session either way.
 * While suspended the client connection is still watched: if the client
 * leaves or weir aborts the exchange (drain deadline), the hook's on_end()
 * is called with aborted = 1 and the hook must drop every reference to the
 * exchange (cancel or ignore its pending callback: never resume it).
 * on_end() is called exactly once for every hook whose on_request() ran,
 * when the exchange ends (any way); it frees the hook's per-exchange data.
 *
 * Response filters
 * ----------------
 * A hook (during on_request or before it resumes with CONTINUE) attaches
 * filters to the exchange with weir_exchange_add_filter(). For the response
 * that comes from a server:
 *   on_head(m)   the final response head (not 1xx interim, not 101), before
 *                the body; m points into the upstream read buffer: valid
 *                only during the call (copy what you keep).
 *   on_data(p,n) body payload bytes in order as they are queued to the
 *                client, with chunked framing removed; p is valid only
 *                during the call.
 *   on_end()     the whole body was queued to the client.
 *   on_abort()   the exchange ended without a complete body: the server or
 *                the client broke off, a timeout, a drain, or a local error
 *                answer, or the response is a tunnel (101).
 *   on_local(st) (may be NULL) weir answers the request itself with status
 *                st (no server available 503, bad gateway 502, timeout 504)
 *                after the filter was attached and before any response
 *                head went to the client: the filter may add response
 *                fields to that answer; on_abort follows.
 * on_head and on_data return WEIR_OK to go on or WEIR_DECLINED to detach
 * (too big to store, not cacheable after all): on_abort is then called at
 * once. For every attached filter exactly one of on_end / on_abort is
 * called, once; after it the filter is detached and owns nothing of the
 * exchange (it frees its fdata there). on_head runs before the head is sent
 * to the client: during it (and during an on_abort it causes) a filter may
 * add response header fields with weir_exchange_add_response_field(),
 * and, when the server's response has no body (304, 204, HEAD), answer
 * the client instead with weir_exchange_respond() (the cache answering a
 * revalidated request from its stored object): the server's head is then
 * not sent.
 * Otherwise a filter only observes: it must not change the buffers, write
 * sockets, or call weir_exchange_* functions other than the getters.
 */
#ifndef WEIR_EXCHANGE_H
#define WEIR_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "weir/http_parse.h"

struct weir_exchange;
struct weir_route;
struct weir_pool;

enum weir_hook_rc {
    WEIR_HOOK_CONTINUE = 0, /* go upstream */
    WEIR_HOOK_ANSWERED,     /* weir_exchange_respond() was called */
    WEIR_HOOK_SUSPENDED     /* weir_exchange_resume() follows from an event */
};

/* What a hook gets about the request (strings valid during on_request; the
 * host/path copies stay valid until the exchange ends). */
struct weir_req_info {
    const struct weir_http_msg *msg; /* the parsed head: during on_request only */
    int method_id;                   /* enum weir_http_method */
    const char *host;                /* normalised: lower case, no port */
    size_t host_len;
    const char *target; /* origin-form path and query */
    size_t target_len;
    const struct weir_route *route;
    const struct weir_pool *pool;
    const char *request_id;
    int has_body;       /* a request body follows (not consumed yet) */
    const char *scheme; /* "http" or "https": the client's connection (a cache key's scheme) */
};

struct weir_req_hook {
    const char *name;
    /* See above. *hook_data starts NULL; the hook may set it (per exchange). */
    int (*on_request)(struct weir_exchange *x, const struct weir_req_info *ri, void **hook_data);
    /* The exchange ended; aborted = 1 when it ended while suspended or
     * without a complete answer. May be NULL. */
    void (*on_end)(struct weir_exchange *x, void *hook_data, int aborted);
};

struct weir_resp_filter {
    const char *name;
    int (*on_head)(struct weir_exchange *x, void *fdata, const struct weir_http_msg *m);
    int (*on_data)(struct weir_exchange *x, void *fdata, const char *p, size_t n);
    void (*on_end)(struct weir_exchange *x, void *fdata);
    void (*on_abort)(struct weir_exchange *x, void *fdata);
    void (*on_local)(struct weir_exchange *x, void *fdata, int status);
};

#define WEIR_EXCHANGE_MAX_HOOKS   4
#define WEIR_EXCHANGE_MAX_FILTERS 4

/* Register a hook for every worker. Main thread, before workers start.
 * Returns WEIR_OK or WEIR_ERROR (too many hooks). */
int weir_exchange_register_hook(const struct weir_req_hook *h);
/* Forget every hook (tests, shutdown). Main thread, workers stopped. */
void weir_exchange_clear_hooks(void);

/*
 * Answer the request: status, extra fields `fields` (complete
 * "Name: value\r\n" lines without framing or connection fields; may be
 * NULL), and the body, moved out of `body` (may be NULL; the evbuffer may
 * hold references to the caller's memory: evbuffer_add_reference). The
 * session adds Content-Length, X-Request-Id and Connection, omits the body
 * for HEAD, and logs the exchange with this status. Call at most once, from
 * on_request or before resuming with WEIR_HOOK_ANSWERED.
 * Returns WEIR_OK or WEIR_ERROR (out of memory: resume with CONTINUE).
 */
int weir_exchange_respond(struct weir_exchange *x, int status, const char *fields, size_t fields_len,
                          struct evbuffer *body);

/* Set a field of the request as it goes upstream: every field named
 * name (a token, compared without case) is removed, and "name: value"
 * added unless value is NULL. From on_request, or while suspended before resuming with
 * WEIR_HOOK_CONTINUE (revalidation: If-None-Match, If-Modified-Since).
 * Returns WEIR_OK or WEIR_ERROR (bad name or value, out of memory, or the
 * request went upstream already). */
int weir_exchange_set_request_field(struct weir_exchange *x, const char *name, const char *value);

/* Add one response header field, a complete "Name: value\r\n" line (a
 * token name, no CR/LF in the value), to the head of the response that
 * comes from a server. Only from a filter's on_head (see above); the
 * session adds the fields after the server's own, in call order, up to
 * 8 KiB in total. Returns WEIR_OK, or WEIR_ERROR (called outside on_head,
 * a malformed line, over the bound, out of memory: nothing added). */
int weir_exchange_add_response_field(struct weir_exchange *x, const char *line, size_t len);

/*
 * Answer the request with a body that is not all there yet (a response
 * another exchange is still receiving): the head (as for
 * weir_exchange_respond(), with Content-Length: body_len) is queued now;
 * the body is then pulled from src as the client's output has room:
 *   pull(x, arg, out, max) moves at most max bytes into out (by reference
 *   is fine) and returns WEIR_OK, WEIR_DONE (what it moved, if anything,
 *   ends the body), or WEIR_ERROR to cut the connection (the body will never
 *   be complete). Moving 0 bytes with WEIR_OK means "nothing yet": the
 *   source calls weir_exchange_stream_kick() when it has more.
 * The exchange ends when body_len bytes were pulled (none for HEAD, 204,
 * 304). body_len UINT64_MAX is a length not known yet: the session frames
 * the body itself, chunked to an HTTP/1.1 client (the last chunk after
 * WEIR_DONE) or delimited by closing the connection to HTTP/1.0, and a cut
 * (WEIR_ERROR) leaves the body visibly incomplete either way. arg must stay valid until the hook's on_end
 * (which runs when the exchange ends, aborted = 1 when it was cut or the client left). Call instead of
 * weir_exchange_respond(), from on_request or before resuming with WEIR_HOOK_ANSWERED. Returns WEIR_OK or
 * WEIR_ERROR (nothing sent).
 */
struct weir_resp_source {
    int (*pull)(struct weir_exchange *x, void *arg, struct evbuffer *out, size_t max);
};
int weir_exchange_respond_stream(struct weir_exchange *x, int status, const char *fields, size_t fields_len,
                                 uint64_t body_len, const struct weir_resp_source *src, void *arg);
/* More body is available for a streamed answer (worker thread; ignored
 * when the exchange is not streaming any more). Never from inside pull. */
void weir_exchange_stream_kick(struct weir_exchange *x);

/* Resume a suspended exchange (WEIR_HOOK_CONTINUE or WEIR_HOOK_ANSWERED).
 * Called from the hook's own event callback. */
void weir_exchange_resume(struct weir_exchange *x, int rc);

/* Attach a response filter with its per-exchange data. Returns WEIR_OK or
 * WEIR_ERROR (too many filters: the filter is not attached and none of its
 * callbacks will be called). */
int weir_exchange_add_filter(struct weir_exchange *x, const struct weir_resp_filter *f, void *fdata);

/* A stable copy of the request head (see above), or NULL (out of memory).
 * Valid until the exchange ends. */
const struct weir_http_msg *weir_exchange_request(struct weir_exchange *x);

/* Getters (valid until the exchange ends). */
int weir_exchange_worker_id(const struct weir_exchange *x);
const char *weir_exchange_request_id(const struct weir_exchange *x);

#endif
