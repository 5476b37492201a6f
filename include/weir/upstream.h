/*
 * upstream.h - connections from a worker to backend servers, with per-worker
 * keep-alive pools.
 *
 * Idle connections live in server->idle[worker] (LIFO, so the most recently
 * used is reused first and the rest age out) and in the worker's idle_all
 * list. An idle connection that gets data, EOF or an error, or stays idle
 * past timeouts.upstream_idle_ms, is closed. Each connection holds a
 * reference on its server. Worker thread only.
 */
#ifndef WEIR_UPSTREAM_H
#define WEIR_UPSTREAM_H

#include <stdint.h>
#include <sys/queue.h>

#include "weir/transport.h"

#include "weir/server.h"

struct weir_worker;
struct weir_tls_client;

struct weir_upconn {
    struct weir_conn *conn;
    struct weir_server *server; /* retained */
    struct weir_worker *w;
    TAILQ_ENTRY(weir_upconn) srv_link; /* in server->idle[w->id] while idle */
    TAILQ_ENTRY(weir_upconn) all_link; /* in w->idle_all while idle */
    uint64_t idle_since_us;
    unsigned nreq; /* requests this connection has carried */
    int connected; /* the TCP connect completed */
    /* The TLS client context it was made with (NULL: plain). A kept-alive
     * connection is only reused by a request whose pool has the same context,
     * that is the same pool configuration (server_name, verification,
     * client certificate) and the same server: a context of another pool or
     * of an earlier configuration never gets it. The SSL holds a reference,
     * so the pointer stays unique while the connection lives. */
    const struct weir_tls_client *tls;
};

struct weir_server_idle {
    TAILQ_HEAD(, weir_upconn) list;
    size_t n;
};

/* Take the most recently idled connection to `s` that has been idle for at
 * most max_idle_us (0 = any age), or NULL. The caller sets the conn's
 * handler and timeouts (weir_conn_set_handler/_set_timeouts). */
struct weir_upconn *weir_up_take_idle(struct weir_worker *w, struct weir_server *s, uint64_t max_idle_us,
                                      const struct weir_tls_client *tls);

/* Start a non-blocking connect to `s` (socket SOCK_NONBLOCK|SOCK_CLOEXEC,
 * TCP_NODELAY; timeouts.connect_ms). The handler (with ctx) gets
 * WEIR_CONN_CONNECTED, or WEIR_CONN_ERROR / WEIR_CONN_TIMEOUT_W, from the
 * event loop, also for a connect that failed at once. Returns NULL when no
 * socket could be created (treated as a connect failure). */
struct weir_upconn *weir_up_connect(struct weir_worker *w, struct weir_server *s, struct weir_tls_client *tls,
                                    weir_conn_handler h, void *ctx);

/* Park a connection whose last exchange ended cleanly; closes it instead
 * when the pool is full or the worker is draining. */
void weir_up_release_idle(struct weir_upconn *c, size_t max_idle);

/* Close and free a connection (not in an idle list). */
void weir_up_close(struct weir_upconn *c);

/* Close every idle connection of the worker (shutdown). */
void weir_up_close_all_idle(struct weir_worker *w);

#endif
