/*
 * transport.h - a connection (socket, its events, its buffers, its timeouts)
 * and the transport under it (plain TCP, or TLS: transport_tls.h), as nginx's
 * c->recv/c->send and HAProxy's xprt.
 *
 * A struct weir_conn owns one socket, two events (read and write readiness,
 * each with an optional inactivity timeout) and two evbuffers: `in`
 * (bytes read, consumed by the owner from the front) and `out` (bytes to
 * send, appended by the owner at the back). All socket I/O goes through the
 * transport's ops table, and only the conn calls the ops, so nothing writes
 * a socket behind the event loop's back:
 *
 *  - Reads go into reserved evbuffer space of a fixed size
 *    (WEIR_CONN_READ_SIZE): one recv per readiness event, no FIONREAD.
 *  - Writes are eager: the owner appends to c->out and calls
 *    weir_conn_flush(), which sends at once; EV_WRITE is armed only for what
 *    the socket did not take, and disarmed when the output is empty.
 *  - A transport may need the opposite readiness to make progress (TLS:
 *    SSL_read returning WANT_WRITE, SSL_write returning WANT_READ, a
 *    handshake): it says so in c->want when returning WEIR_AGAIN, and the
 *    conn arms the event that was asked for and retries the same op when it
 *    fires.
 *
 * The owner gets one handler callback per readiness event that changed
 * something (data read, output drained, connected, EOF, error, timeout).
 * Rules that keep the owner simple and safe:
 *  - The handler is called only from the conn's own event callbacks, never
 *    from a weir_conn_* call, so no weir_conn_* call re-enters the owner.
 *  - Calling the handler is the last thing an event callback does: the
 *    handler may free the conn (weir_conn_free) before it returns.
 *
 * Worker thread only (the thread running the conn's event_base). No locks.
 */
#ifndef WEIR_TRANSPORT_H
#define WEIR_TRANSPORT_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "weir/core.h"

/* Bytes reserved in c->in for one recv (the fixed read size): a 16 KiB
 * evbuffer chunk with its header. */
#define WEIR_CONN_READ_SIZE (16384 - 128)

struct weir_conn;

/* c->want bits, set by a transport op that returns WEIR_AGAIN. */
#define WEIR_WANT_READ  0x1u /* retry when the socket is readable */
#define WEIR_WANT_WRITE 0x2u /* retry when the socket is writable */

/*
 * The transport ops table. A transport keeps its own state in c->xprt_ctx
 * (TLS: the SSL *); the conn owns the socket c->fd and closes it.
 * Every op is called by the conn only, on the worker thread.
 */
struct weir_xprt_ops {
    const char *name; /* "plain", "tls": for logs */

    /*
     * Optional (NULL: no handshake). Called before any recv/send, first
     * when the conn starts (weir_conn_start() for accepted sockets, after
     * the TCP connect completes for outgoing ones), then again each time
     * the readiness asked for in c->want is there.
     * Returns WEIR_OK (handshake done: data ops may run), WEIR_AGAIN (c->want
     * set to WEIR_WANT_READ and/or WEIR_WANT_WRITE), WEIR_ERROR (c->err set
     * to an errno value or 0, the reason logged by the transport at debug).
     * A handshake that already holds application data (TLS records read
     * with the last handshake flight) sets c->pending = 1, as recv does.
     */
    int (*handshake)(struct weir_conn *c);

    /*
     * Read at most `max` bytes into `in` (append; use
     * evbuffer_reserve_space/evbuffer_commit_space, never FIONREAD).
     * Returns the number of bytes appended (> 0), 0 when the peer closed its
     * sending side cleanly (TLS: close_notify or TCP FIN), WEIR_AGAIN with
     * c->want set when nothing can be read now, WEIR_ERROR with c->err set.
     * A transport that buffers already-decrypted bytes beyond `max` (TLS:
     * SSL_pending) sets c->pending = 1 so the conn calls recv again without
     * waiting for the socket; it clears it when nothing is left.
     */
    ssize_t (*recv)(struct weir_conn *c, struct evbuffer *in, size_t max);

    /*
     * Send bytes from the front of `out`, draining what was sent.
     * Returns the number of bytes sent and drained (> 0), WEIR_AGAIN with
     * c->want set when the transport cannot send now (nothing drained),
     * WEIR_ERROR with c->err set. The conn calls send again while bytes
     * remain and it returned > 0, unless the op also set c->want to
     * WEIR_WANT_WRITE with its positive return ("the socket is full": a
     * short writev), which saves a send that would only say EAGAIN. Between an WEIR_AGAIN and its retry the
     * conn only appends to `out`, never drains it, so the first bytes are
     * the same (SSL_write retry rule; set SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
     * as evbuffer_pullup may move them).
     */
    ssize_t (*send)(struct weir_conn *c, struct evbuffer *out);

    /*
     * Optional. Close the sending direction once everything queued was
     * sent (TLS: SSL_shutdown sends close_notify, then shutdown(SHUT_WR)).
     * Returns WEIR_OK, WEIR_AGAIN (c->want set; the conn calls it again),
     * WEIR_ERROR. NULL: the conn calls shutdown(fd, SHUT_WR) itself.
     */
    int (*shutdown)(struct weir_conn *c);

    /*
     * Optional. Free the transport state (c->xprt_ctx). Called once, from
     * weir_conn_free(), before the conn closes the socket. Must not send.
     */
    void (*close)(struct weir_conn *c);
};

/* The plain TCP transport (recv(2)/sendmsg(2); no handshake). */
extern const struct weir_xprt_ops weir_xprt_plain;

/* Events passed to the owner's handler (one per call). */
enum weir_conn_event {
    WEIR_CONN_READ = 1,  /* bytes were appended to c->in */
    WEIR_CONN_WRITE,     /* c->out fell to c->wr_lowat or below after a send */
    WEIR_CONN_CONNECTED, /* outgoing connect (and handshake, if any) done */
    WEIR_CONN_EOF,       /* the peer closed its sending side; c->eof is 1 */
    WEIR_CONN_ERROR,     /* socket/transport error; c->err holds errno or 0 */
    WEIR_CONN_TIMEOUT_R, /* no read progress within the read timeout */
    WEIR_CONN_TIMEOUT_W  /* no write progress (or connect) within the write timeout */
};

typedef void (*weir_conn_handler)(struct weir_conn *c, int event, void *ctx);

struct weir_conn {
    evutil_socket_t fd;
    const struct weir_xprt_ops *xprt;
    void *xprt_ctx; /* transport state, owned by the transport */
    struct evbuffer *in, *out;
    struct event_base *base;
    struct event rev, wev; /* read/write readiness (persistent) */
    weir_conn_handler handler;
    void *ctx;
    const struct timeval *rd_tmo, *wr_tmo; /* NULL = none; often common timeouts */
    size_t rd_max;                         /* stop reading while c->in holds this much (0 = no limit) */
    size_t wr_lowat;                       /* WEIR_CONN_WRITE when c->out drops to this or below */
    size_t last_read;                      /* bytes of the last recv */
    int err;                               /* errno (or 0) of the last WEIR_CONN_ERROR */
    unsigned want;                         /* WEIR_WANT_* from the transport's last WEIR_AGAIN */
    unsigned pending : 1;                  /* transport holds readable bytes (see recv) */
    unsigned reading : 1;                  /* the owner wants input (weir_conn_read) */
    unsigned eof : 1;                      /* the peer closed its side */
    unsigned error : 1;                    /* an error happened: no more I/O */
    unsigned connecting : 1;               /* TCP connect in progress */
    unsigned handshaking : 1;              /* transport handshake in progress */
    unsigned shut_wr : 1;                  /* shutdown requested once output drains */
    unsigned shut_done : 1;                /* the sending side is closed */
    unsigned send_blocked : 1;             /* send returned AGAIN; waits for c->want */
    unsigned recv_blocked : 1;             /* recv returned AGAIN wanting WRITE */
    unsigned r_armed : 1;                  /* rev is added */
    unsigned w_armed : 1;                  /* wev is added */
    unsigned outgoing : 1;                 /* made by weir_conn_connect */
    const struct timeval *r_tv, *w_tv;     /* timeouts rev/wev were added with */
};

/*
 * Wrap an accepted socket. Sets O_NONBLOCK|FD_CLOEXEC and TCP_NODELAY is
 * left to the caller. Takes ownership of fd (closed on failure too).
 * Call weir_conn_start() to begin (runs the handshake, then reads when
 * weir_conn_read(c, 1) was set). Returns NULL on allocation failure.
 */
struct weir_conn *weir_conn_new(struct event_base *base, evutil_socket_t fd, const struct weir_xprt_ops *xprt,
                                void *xprt_ctx, weir_conn_handler handler, void *ctx);

/*
 * Open a socket (SOCK_NONBLOCK|SOCK_CLOEXEC, TCP_NODELAY) and start a
 * connect to sa. WEIR_CONN_CONNECTED (after the handshake, if any) or
 * WEIR_CONN_ERROR / WEIR_CONN_TIMEOUT_W (connect_tmo) follows from the
 * event loop. Returns NULL (errno set) when the socket cannot be created or
 * the connect fails at once; the caller treats that as a connect failure.
 */
struct weir_conn *weir_conn_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
                                    const struct weir_xprt_ops *xprt, void *xprt_ctx,
                                    const struct timeval *connect_tmo, weir_conn_handler handler, void *ctx);

/* Begin an accepted conn: handshake if the transport has one, then arm
 * what weir_conn_read() asked. Returns WEIR_OK or WEIR_ERROR. */
int weir_conn_start(struct weir_conn *c);

/* Close the transport and the socket, free the buffers and the conn. No
 * callback follows. NULL is accepted. */
void weir_conn_free(struct weir_conn *c);

/* Change the owner (e.g. a keep-alive pool taking an upstream conn). */
void weir_conn_set_handler(struct weir_conn *c, weir_conn_handler h, void *ctx);

/* Set the read and write inactivity timeouts (NULL = none). They apply
 * from the next arm of each event; the read one runs while the conn is
 * reading, the write one while output waits. */
void weir_conn_set_timeouts(struct weir_conn *c, const struct timeval *rd, const struct timeval *wr);

/* Want input (on = 1) or not. Reading also stops by itself while c->in
 * holds c->rd_max bytes, after EOF and after an error; weir_conn_update()
 * re-evaluates after the owner consumed input. */
void weir_conn_read(struct weir_conn *c, int on);

/* Restart the read timeout's countdown (activity the conn cannot see,
 * e.g. request body bytes going up count as life of the exchange). */
void weir_conn_touch(struct weir_conn *c);

/* Ask the kernel to acknowledge received data at once (TCP_QUICKACK; it
 * falls back to delayed ACKs by itself, so re-arm after reads). A peer with
 * Nagle on that wrote a small segment waits for this ACK before sending
 * the rest. */
void weir_conn_quickack(struct weir_conn *c);

/* Re-arm the read event from the current state (call after draining
 * c->in below rd_max). Never calls the handler. */
void weir_conn_update(struct weir_conn *c);

/*
 * Send what c->out holds now; arm EV_WRITE for what is left. Queued bytes
 * go out only through this call (or the write event once a call found the
 * socket full): the owner flushes after queuing.
 * Returns WEIR_OK (c->out empty), WEIR_AGAIN (bytes left; the handler gets
 * WEIR_CONN_WRITE once they drain to wr_lowat), WEIR_ERROR (c->error set;
 * the owner handles it: the handler is not called for it).
 */
int weir_conn_flush(struct weir_conn *c);

/* Close the sending side once c->out is sent (half-close; TLS
 * close_notify). Returns like weir_conn_flush(). */
int weir_conn_shutdown(struct weir_conn *c);

/* 1 when the conn has queued output. */
static inline int weir_conn_out_pending(const struct weir_conn *c)
{
    return evbuffer_get_length(c->out) != 0;
}

#endif
