/*
 * transport_tls.c - the TLS transport (weir_xprt_tls): OpenSSL over the
 * conn's non-blocking socket, with SSL_ERROR_WANT_READ/WRITE mapped to
 * c->want. The contract is in weir/transport_tls.h and weir/transport.h.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <openssl/err.h>

#include "weir/log.h"
#include "weir/transport_tls.h"

#define TLS_RECORD 16384 /* plaintext bytes of a full TLS record */

struct tls_conn {
    SSL *ssl;
    uint64_t deadline_us;      /* the handshake must be done by then (monotonic) */
    unsigned server : 1;       /* accepted connection (counted per listener) */
    unsigned hs_done : 1;      /* handshake completed */
    unsigned fatal : 1;        /* a fatal error: no close_notify, no reuse of the session */
    unsigned counted : 1;      /* the handshake's outcome was counted */
    unsigned shut_pending : 1; /* close_notify is waiting for the socket */
    signed char fail;          /* WEIR_TLS_FAIL_* of a failed handshake, -1 = none */
    char *why;                 /* the last failure, for logs; NULL = none */
};

static void *state_new(SSL *ssl, int timeout_ms, int server)
{
    struct tls_conn *t;

    if (ssl == NULL)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    t->ssl = ssl;
    t->server = server != 0;
    t->fail = -1;
    t->deadline_us = weir_now_us() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000u;
    return t;
}

void *weir_xprt_tls_server_new(struct weir_tls_server *s)
{
    return state_new(weir_tls_server_ssl(s), weir_tls_server_handshake_timeout_ms(s), 1);
}

void *weir_xprt_tls_client_new(struct weir_tls_client *cl, const char *host, const char *session_key,
                               int timeout_ms)
{
    return state_new(weir_tls_client_ssl(cl, host, session_key), timeout_ms, 0);
}

void weir_xprt_tls_free(void *xprt_ctx)
{
    struct tls_conn *t = xprt_ctx;

    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t->why);
    free(t);
}

static struct tls_conn *state_of(const struct weir_conn *c)
{
    return c != NULL && c->xprt == &weir_xprt_tls ? c->xprt_ctx : NULL;
}

SSL *weir_xprt_tls_ssl(const struct weir_conn *c)
{
    struct tls_conn *t = state_of(c);

    return t != NULL ? t->ssl : NULL;
}

void weir_xprt_tls_timed_out(struct weir_conn *c)
{
    struct tls_conn *t = state_of(c);

    if (t != NULL && !t->hs_done)
        t->deadline_us = 0; /* counted as "timeout" when the conn goes */
}

const char *weir_xprt_tls_error(const struct weir_conn *c)
{
    struct tls_conn *t = state_of(c);

    return t != NULL && t->why != NULL ? t->why : "";
}

int weir_xprt_tls_fail_reason(const struct weir_conn *c)
{
    struct tls_conn *t = state_of(c);

    return t != NULL ? t->fail : -1;
}

static void set_why(struct tls_conn *t, const char *why)
{
    free(t->why);
    t->why = strdup(why);
}

/* Attach the socket at the first op (a connect creates it after the state). */
static int attach(struct weir_conn *c, struct tls_conn *t)
{
    if (SSL_get_fd(t->ssl) == c->fd)
        return 0;
    if (SSL_set_fd(t->ssl, c->fd) != 1) {
        ERR_clear_error();
        c->err = ENOMEM;
        return -1;
    }
    return 0;
}

/* A handshake that failed: count it once, remember why. */
static void hs_failed(struct tls_conn *t, int reason, const char *why)
{
    t->fatal = 1;
    t->fail = (signed char)reason;
    set_why(t, why);
    if (t->server && !t->counted)
        weir_tls_note_failure(t->ssl, reason);
    t->counted = 1;
}

/* The errno of a failed system call under SSL_ERROR_SYSCALL: OpenSSL 3
 * queues it as an ERR_LIB_SYS error; errno itself when nothing is queued.
 * Clears the queue. */
static int sys_errno(int saved)
{
    unsigned long q = ERR_peek_error();
    int e = q != 0 && ERR_GET_LIB(q) == ERR_LIB_SYS ? ERR_GET_REASON(q) : saved;

    ERR_clear_error();
    return e != 0 ? e : EPIPE;
}

/*
 * A failed SSL call after the handshake: 0 for EOF, WEIR_AGAIN with
 * c->want, WEIR_ERROR with c->err. `what` names the call for the log.
 */
static int io_result(struct weir_conn *c, struct tls_conn *t, int r, const char *what)
{
    int e = SSL_get_error(t->ssl, r), saved = errno;
    unsigned long q;
    char why[256];

    switch (e) {
    case SSL_ERROR_WANT_READ:
        c->want = WEIR_WANT_READ;
        return WEIR_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->want = WEIR_WANT_WRITE;
        return WEIR_AGAIN;
    case SSL_ERROR_ZERO_RETURN: /* close_notify */
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 || ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SYS) {
            t->fatal = 1;
            c->err = sys_errno(saved);
            snprintf(why, sizeof(why), "%s: %s", what, strerror(c->err));
            set_why(t, why);
            return WEIR_ERROR;
        }
        break;
    default:
        break;
    }
    q = ERR_peek_error();
    t->fatal = 1;
    if (ERR_GET_LIB(q) == ERR_LIB_SSL && ERR_GET_REASON(q) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return 0; /* closed without close_notify: EOF (see transport_tls.h) */
    }
    weir_tls_classify(t->ssl, e, why, sizeof(why));
    set_why(t, why);
    weir_log_debug("tls %s failed: %s", what, why);
    c->err = EPROTO;
    return WEIR_ERROR;
}

/*
 * An HTTP request on the TLS port: answer it in plain HTTP (400, like
 * nginx), so a user who typed http:// sees why, then read off what the
 * socket holds so that the close is a FIN, not a reset that could destroy
 * the answer. Best effort, never blocks: a fresh socket has room for it.
 */
static void answer_plain_http(int fd)
{
    static const char body[] = "This port speaks HTTPS: use https:// in the URL.\n";
    char head[160], sink[4096];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     sizeof(body) - 1);
    struct iovec v[2] = {{head, (size_t)n}, {(void *)body, sizeof(body) - 1}};
    struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};

    if (sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        return;
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    shutdown(fd, SHUT_WR);
}

static int tls_handshake(struct weir_conn *c)
{
    struct tls_conn *t = c->xprt_ctx;
    char why[256];
    unsigned long q;
    int r, e, saved, err;

    if (t->hs_done)
        return WEIR_OK;
    if (attach(c, t) != 0)
        return WEIR_ERROR;
    if (weir_now_us() >= t->deadline_us) {
        hs_failed(t, WEIR_TLS_FAIL_TIMEOUT, "handshake timeout");
        c->err = ETIMEDOUT;
        return WEIR_ERROR;
    }
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->hs_done = 1;
        c->want = 0;
        if (t->server && !t->counted)
            weir_tls_note_handshake(t->ssl);
        t->counted = 1;
        return WEIR_OK;
    }
    saved = errno;
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        c->want = WEIR_WANT_READ;
        return WEIR_AGAIN;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c->want = WEIR_WANT_WRITE;
        return WEIR_AGAIN;
    }
    q = ERR_peek_error();
    err = e == SSL_ERROR_SYSCALL && (q == 0 || ERR_GET_LIB(q) == ERR_LIB_SYS)
              ? (q ? ERR_GET_REASON(q) : saved)
              : EPROTO;
    r = weir_tls_classify(t->ssl, e, why, sizeof(why));
    hs_failed(t, r, why);
    if (r == WEIR_TLS_FAIL_PLAIN_HTTP && t->server)
        answer_plain_http(c->fd);
    c->err = err; /* 0 when the peer closed */
    weir_log_debug("tls handshake failed (%s): %s", weir_tls_fail_name(r), why);
    return WEIR_ERROR;
}

static ssize_t tls_recv(struct weir_conn *c, struct evbuffer *in, size_t max)
{
    struct tls_conn *t = c->xprt_ctx;
    struct evbuffer_iovec v[2];
    size_t total = 0;
    int nv, used = 0, r = 0;

    if (attach(c, t) != 0)
        return WEIR_ERROR;
    if (max > INT_MAX)
        max = INT_MAX;
    /* Two vectors, as the plain transport: the free tail of the last
     * chunk, then a new one, so a short read does not strand half a chunk. */
    nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (nv < 1) {
        c->err = ENOMEM;
        return WEIR_ERROR;
    }
    ERR_clear_error();
    for (int i = 0; i < nv && total < max; i++) {
        size_t room = v[i].iov_len < max - total ? v[i].iov_len : max - total;

        /* The second vector only takes bytes OpenSSL already holds: a
         * read that would go to the socket waits for the next event. */
        if (i > 0 && SSL_pending(t->ssl) <= 0)
            break;
        r = SSL_read(t->ssl, v[i].iov_base, (int)room);
        if (r <= 0)
            break;
        v[i].iov_len = (size_t)r;
        total += (size_t)r;
        used = i + 1;
        if ((size_t)r < room)
            break;
    }
    if (total > 0) {
        evbuffer_commit_space(in, v, used);
        ERR_clear_error();
        c->pending = SSL_pending(t->ssl) > 0;
        return (ssize_t)total;
    }
    c->pending = 0;
    return io_result(c, t, r, "read");
}

static ssize_t tls_send(struct weir_conn *c, struct evbuffer *out)
{
    struct tls_conn *t = c->xprt_ctx;
    size_t len = evbuffer_get_length(out), k = len < TLS_RECORD ? len : TLS_RECORD;
    unsigned char *p;
    int r;

    if (attach(c, t) != 0)
        return WEIR_ERROR;
    if (len == 0)
        return 0;
    /* One contiguous record's worth (a copy only when the first chunk is
     * shorter; SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows the move). A
     * retry after WEIR_AGAIN passes the same or a longer span: the conn
     * only appends in between. */
    p = evbuffer_pullup(out, (ev_ssize_t)k);
    if (p == NULL) {
        c->err = ENOMEM;
        return WEIR_ERROR;
    }
    ERR_clear_error();
    r = SSL_write(t->ssl, p, (int)k);
    if (r > 0) {
        evbuffer_drain(out, (size_t)r);
        /* Partial write mode returns short when a later record blocked. */
        c->want = (size_t)r < k ? WEIR_WANT_WRITE : 0;
        return r;
    }
    r = io_result(c, t, r, "write");
    if (r == 0) { /* the peer's close_notify arrived while writing */
        c->err = EPIPE;
        return WEIR_ERROR;
    }
    return r;
}

static int tls_shutdown(struct weir_conn *c)
{
    struct tls_conn *t = c->xprt_ctx;
    int r, e;

    if (attach(c, t) != 0)
        return WEIR_ERROR;
    if (t->hs_done && !t->fatal && (!(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) || t->shut_pending)) {
        ERR_clear_error();
        /* 0 or 1: close_notify is out. A retry that already flushed it
         * goes on to wait for the peer's (WANT_READ): done as well. */
        r = SSL_shutdown(t->ssl);
        e = r < 0 ? SSL_get_error(t->ssl, r) : SSL_ERROR_NONE;
        if (e == SSL_ERROR_WANT_WRITE) {
            t->shut_pending = 1;
            c->want = WEIR_WANT_WRITE;
            return WEIR_AGAIN;
        }
        t->shut_pending = 0;
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ)
            t->fatal = 1; /* the socket failed: close it like a plain one */
        ERR_clear_error();
    }
    if (shutdown(c->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        c->err = errno;
        return WEIR_ERROR;
    }
    return WEIR_OK;
}

static void tls_close(struct weir_conn *c)
{
    struct tls_conn *t = c->xprt_ctx;

    if (t == NULL)
        return;
    if (!t->hs_done && t->server && !t->counted) {
        /* Never finished: the handshake timeout (the conn's read timeout
         * fired) or the connection went away before. */
        weir_tls_note_failure(t->ssl,
                              weir_now_us() >= t->deadline_us ? WEIR_TLS_FAIL_TIMEOUT : WEIR_TLS_FAIL_CLOSED);
        t->counted = 1;
    }
    if (t->hs_done && !t->fatal)
        /* A clean end (as far as TLS knows): keep the session resumable from
         * the server's cache. Nothing is sent here. */
        SSL_set_shutdown(t->ssl, SSL_get_shutdown(t->ssl) | SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    weir_xprt_tls_free(t);
    c->xprt_ctx = NULL;
    ERR_clear_error();
}

const struct weir_xprt_ops weir_xprt_tls = {
    .name = "tls",
    .handshake = tls_handshake,
    .recv = tls_recv,
    .send = tls_send,
    .shutdown = tls_shutdown,
    .close = tls_close,
};
