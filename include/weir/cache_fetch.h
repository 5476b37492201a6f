/*
 * cache_fetch.h - the cache's own small upstream client, for the fetches no
 * client connection carries: revalidating a stored response with its
 * validators (If-None-Match / If-Modified-Since), in the background
 * (stale-while-revalidate) or while the client waits (a stale or no-cache
 * entry, so that a 304 freshens it and a failing backend can be answered
 * with the stale copy, stale-if-error).
 *
 * One fetch = one new connection to one available server of the pool
 * ("Connection: close"), a GET with the Host, the varied request fields and
 * the validators, and the whole response read (Content-Length, chunked or
 * until close) up to max_object_bytes. Never blocks: bufferevents on the
 * caller's event_base, one deadline for the whole exchange.
 *
 * Worker thread owning `base`; the callback runs there, never from inside
 * weir_cache_fetch_start().
 */
#ifndef WEIR_CACHE_FETCH_H
#define WEIR_CACHE_FETCH_H

#include <event2/event.h>

#include "weir/cache_obj.h"
#include "weir/runtime.h"

enum weir_fetch_result {
    WEIR_FETCH_STORED = 0,   /* a storable 200-class response: *obj is the new object */
    WEIR_FETCH_NOT_MODIFIED, /* 304 selecting the stale object: *obj is it, freshened */
    WEIR_FETCH_NOT_STORABLE, /* a valid response that may not be stored (status in *status) */
    WEIR_FETCH_ERROR,        /* no server, connect error, timeout, bad response, 5xx, too big */
};

/* obj (retained for the callee, may be NULL) and the response status (0
 * when none arrived). */
typedef void (*weir_cache_fetch_cb)(void *arg, int result, struct weir_cache_obj *obj, int status);

struct weir_cache_fetch;

/*
 * Start a fetch of `stale`'s URL from `pool` (a server is picked now, among
 * the available ones, and held until the fetch ends). req/nreq: the
 * request whose Vary-named fields are sent along. timeout_ms bounds the
 * whole exchange. Returns the fetch (cancel it with weir_cache_fetch_cancel
 * while it runs) or NULL when it cannot start (no server available, out of
 * memory): the callback is then not called.
 */
struct weir_cache_fetch *weir_cache_fetch_start(struct event_base *base, const struct weir_pool *pool,
                                                struct weir_cache_obj *stale,
                                                const struct weir_http_header *req, size_t nreq,
                                                int timeout_ms, size_t max_object_bytes,
                                                weir_cache_fetch_cb cb, void *arg);

/*
 * Fetch `url` whole for the cache (a Range request that missed): the
 * request's end-to-end fields are sent along, except connection fields,
 * Range, If-Range and the preconditions; the result is a new object under
 * `key` (WEIR_FETCH_STORED) or why not. Same contract as above otherwise;
 * NULL also when the request has more fields than a fetch carries (32).
 */
struct weir_cache_fetch *weir_cache_fetch_fresh(struct event_base *base, const struct weir_pool *pool,
                                                const char *key, const char *url,
                                                const struct weir_http_header *req, size_t nreq,
                                                int timeout_ms, size_t max_object_bytes,
                                                weir_cache_fetch_cb cb, void *arg);

/* 1 when some server of pool is available (health, drain, slow start). A
 * fetch speaks plain HTTP: for a pool with upstream TLS it never starts. */
int weir_cache_fetch_pool_available(const struct weir_pool *pool);

/* Stop a running fetch; its callback will not be called. */
void weir_cache_fetch_cancel(struct weir_cache_fetch *f);

#endif
