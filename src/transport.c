/* transport.c - connections over a transport ops table; the plain transport. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "weir/transport.h"

/* ---- the plain transport ---- */

/* Small reads land here first and are copied into the conn's buffer (see
 * plain_recv). One per thread: the workers each have their own. */
static __thread char recv_scratch[WEIR_CONN_READ_SIZE];

static ssize_t plain_recv(struct weir_conn *c, struct evbuffer *in, size_t max)
{
    /* Unless the last read filled its buffer (bulk data: read in place,
     * no copy), read into the thread's scratch buffer and append what came:
     * reserving WEIR_CONN_READ_SIZE in an evbuffer mallocs a 16 KiB chunk
     * that a 200-byte request or response head leaves nearly empty and
     * frees when drained, and with a small head evbuffer_add takes a
     * small chunk instead (callgrind: -~1,000 of ~14,500 instructions per
     * proxied request). */
    if (c->last_read < WEIR_CONN_READ_SIZE / 2) {
        if (max > sizeof(recv_scratch))
            max = sizeof(recv_scratch);
        ssize_t n;
        do
            n = recv(c->fd, recv_scratch, max, 0);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            if (evbuffer_add(in, recv_scratch, (size_t)n) != 0) {
                c->err = ENOMEM;
                return WEIR_ERROR;
            }
            return n;
        }
        if (n == 0)
            return 0;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->want = WEIR_WANT_READ;
            return WEIR_AGAIN;
        }
        c->err = errno;
        return WEIR_ERROR;
    }
    /* Two vectors: the free tail of the last chunk, then a new one, so a
     * short read does not strand half a chunk. */
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
    if (nv < 1) {
        c->err = ENOMEM;
        return WEIR_ERROR;
    }
    struct iovec iov[2];
    size_t left = max;
    int k = 0;
    for (int i = 0; i < nv && left > 0; i++, k++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len < left ? v[i].iov_len : left;
        left -= iov[i].iov_len;
    }
    ssize_t n;
    do
        n = k == 1 ? recv(c->fd, iov[0].iov_base, iov[0].iov_len, 0)
                   : recvmsg(c->fd, &(struct msghdr){.msg_iov = iov, .msg_iovlen = (size_t)k}, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        size_t got = (size_t)n;
        int used = 0;
        for (int i = 0; i < k && got > 0; i++, used++) {
            v[i].iov_len = got < iov[i].iov_len ? got : iov[i].iov_len;
            got -= v[i].iov_len;
        }
        evbuffer_commit_space(in, v, used);
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->want = WEIR_WANT_READ;
        return WEIR_AGAIN;
    }
    c->err = errno;
    return WEIR_ERROR;
}

/* Up to this many evbuffer chunks go out in one sendmsg. */
#define PLAIN_SEND_IOV 16

static ssize_t plain_send(struct weir_conn *c, struct evbuffer *out)
{
    /* send/sendmsg rather than evbuffer_write's writev: the socket calls
     * skip the VFS layer (permission and fsnotify hooks) that read/writev
     * go through on every call, as HAProxy's recv/send do. */
    struct evbuffer_iovec v[PLAIN_SEND_IOV];
    int nv = evbuffer_peek(out, -1, NULL, v, PLAIN_SEND_IOV);
    if (nv > PLAIN_SEND_IOV)
        nv = PLAIN_SEND_IOV;
    size_t len = 0;
    for (int i = 0; i < nv; i++)
        len += v[i].iov_len;
    ssize_t n;
    do {
        if (nv == 1) {
            n = send(c->fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)nv};
            n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        }
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        evbuffer_drain(out, (size_t)n);
        /* A short send means the socket buffer is full. */
        c->want = (size_t)n < len ? WEIR_WANT_WRITE : 0;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->want = WEIR_WANT_WRITE;
        return WEIR_AGAIN;
    }
    c->err = n < 0 ? errno : EPIPE;
    return WEIR_ERROR;
}

static int plain_shutdown(struct weir_conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0 && errno != ENOTCONN) {
        c->err = errno;
        return WEIR_ERROR;
    }
    return WEIR_OK;
}

const struct weir_xprt_ops weir_xprt_plain = {
    .name = "plain",
    .handshake = NULL,
    .recv = plain_recv,
    .send = plain_send,
    .shutdown = plain_shutdown,
    .close = NULL,
};

/* ---- event registration ---- */

static void set_ev(struct event *ev, int need, const struct timeval *tv, const struct timeval **cur,
                   unsigned *armed)
{
    if (need) {
        if (*armed && *cur != tv && tv == NULL)
            event_remove_timer(ev); /* event_add(ev, NULL) would keep the old timer */
        else if (!*armed || *cur != tv)
            event_add(ev, tv);
        *cur = tv;
        *armed = 1;
    } else if (*armed) {
        event_del(ev);
        *armed = 0;
    }
}

static int read_ok(const struct weir_conn *c)
{
    return c->reading && !c->eof && (c->rd_max == 0 || evbuffer_get_length(c->in) < c->rd_max);
}

/* Make the registered events match the state. Never calls the handler. */
static void conn_arm(struct weir_conn *c)
{
    int need_r = 0, need_w = 0;
    const struct timeval *rtv = NULL;
    if (c->error) {
        /* nothing */
    } else if (c->connecting) {
        need_w = 1;
    } else if (c->handshaking) {
        need_r = (c->want & WEIR_WANT_READ) != 0;
        need_w = (c->want & WEIR_WANT_WRITE) != 0 || !need_r;
        rtv = c->rd_tmo;
    } else {
        int rd = read_ok(c);
        if (rd) {
            if (c->recv_blocked) {
                need_w = 1;
            } else {
                need_r = 1;
                rtv = c->rd_tmo;
            }
        }
        /* Output is written eagerly by weir_conn_flush(): EV_WRITE is
         * armed only for a send that found the socket full (or the
         * transport wanting the other readiness), never merely because
         * bytes were queued: that would cost two epoll_ctl per write. */
        if (c->send_blocked && (evbuffer_get_length(c->out) > 0 || (c->shut_wr && !c->shut_done))) {
            if (c->want & WEIR_WANT_READ) {
                need_r = 1;
                if (rtv == NULL)
                    rtv = c->wr_tmo;
            } else {
                need_w = 1;
            }
        }
        if (rd && c->pending && !c->recv_blocked)
            event_active(&c->rev, EV_READ, 1);
    }
    unsigned ra = c->r_armed, wa = c->w_armed;
    set_ev(&c->rev, need_r, rtv, &c->r_tv, &ra);
    set_ev(&c->wev, need_w, c->wr_tmo, &c->w_tv, &wa);
    c->r_armed = ra;
    c->w_armed = wa;
}

/* ---- I/O steps (never call the handler) ---- */

/* Returns WEIR_OK (output empty, shutdown done if asked), WEIR_AGAIN,
 * WEIR_ERROR. */
static int do_send(struct weir_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        ssize_t n = c->xprt->send(c, c->out);
        if (n > 0) {
            c->send_blocked = 0;
            if (c->want & WEIR_WANT_WRITE) {
                c->send_blocked = 1;
                return WEIR_AGAIN;
            }
            continue;
        }
        if (n == WEIR_AGAIN) {
            c->send_blocked = 1;
            return WEIR_AGAIN;
        }
        c->error = 1;
        return WEIR_ERROR;
    }
    c->send_blocked = 0;
    if (c->shut_wr && !c->shut_done) {
        int rc = c->xprt->shutdown != NULL ? c->xprt->shutdown(c) : plain_shutdown(c);
        if (rc == WEIR_AGAIN) {
            c->send_blocked = 1;
            return WEIR_AGAIN;
        }
        if (rc != WEIR_OK) {
            c->error = 1;
            return WEIR_ERROR;
        }
        c->shut_done = 1;
    }
    return WEIR_OK;
}

/* One recv. Returns the event to deliver, or 0 for none. */
static int do_recv(struct weir_conn *c)
{
    size_t max = WEIR_CONN_READ_SIZE, have = evbuffer_get_length(c->in);
    if (c->rd_max != 0 && c->rd_max - have < max) /* never past the read limit */
        max = c->rd_max - have;
    ssize_t n = c->xprt->recv(c, c->in, max);
    if (n > 0) {
        c->recv_blocked = 0;
        c->last_read = (size_t)n;
        return WEIR_CONN_READ;
    }
    if (n == 0) {
        c->eof = 1;
        c->pending = 0;
        return WEIR_CONN_EOF;
    }
    if (n == WEIR_AGAIN) {
        c->recv_blocked = (c->want & WEIR_WANT_WRITE) != 0;
        return 0;
    }
    c->error = 1;
    return WEIR_CONN_ERROR;
}

/* Returns WEIR_OK, WEIR_AGAIN or WEIR_ERROR. */
static int do_handshake(struct weir_conn *c)
{
    int rc = c->xprt->handshake(c);
    if (rc == WEIR_OK)
        c->handshaking = 0;
    else if (rc != WEIR_AGAIN)
        c->error = 1;
    return rc;
}

static void deliver(struct weir_conn *c, int ev)
{
    conn_arm(c);
    if (ev != 0 && c->handler != NULL)
        c->handler(c, ev, c->ctx); /* last: the handler may free c */
}

/* ---- event callbacks ---- */

static void conn_rev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_conn *c = arg;
    int ev = 0;
    if (what & EV_TIMEOUT) {
        /* The read event's timer is the read timeout, or the write one when
         * only a send waiting for readability armed it. */
        deliver(c, read_ok(c) ? WEIR_CONN_TIMEOUT_R : WEIR_CONN_TIMEOUT_W);
        return;
    }
    if (c->handshaking) {
        int rc = do_handshake(c);
        if (rc == WEIR_ERROR)
            ev = WEIR_CONN_ERROR;
        else if (rc == WEIR_OK && c->outgoing)
            ev = WEIR_CONN_CONNECTED;
        deliver(c, ev);
        return;
    }
    if (c->send_blocked && (c->want & WEIR_WANT_READ)) {
        size_t before = evbuffer_get_length(c->out);
        int rc = do_send(c);
        if (rc == WEIR_ERROR) {
            deliver(c, WEIR_CONN_ERROR);
            return;
        }
        if (evbuffer_get_length(c->out) < before && evbuffer_get_length(c->out) <= c->wr_lowat)
            ev = WEIR_CONN_WRITE;
    }
    if (read_ok(c) && !c->recv_blocked) {
        int r = do_recv(c);
        if (r != 0)
            ev = r;
    }
    deliver(c, ev);
}

static void conn_wev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_conn *c = arg;
    if (what & EV_TIMEOUT) {
        deliver(c, WEIR_CONN_TIMEOUT_W);
        return;
    }
    if (c->connecting) {
        int err = c->err;
        socklen_t len = sizeof(err);
        if (err == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        c->connecting = 0;
        if (err != 0) {
            c->err = err;
            c->error = 1;
            deliver(c, WEIR_CONN_ERROR);
            return;
        }
        if (c->xprt->handshake != NULL) {
            c->handshaking = 1;
            int rc = do_handshake(c);
            deliver(c, rc == WEIR_OK ? WEIR_CONN_CONNECTED : rc == WEIR_AGAIN ? 0 : WEIR_CONN_ERROR);
            return;
        }
        deliver(c, WEIR_CONN_CONNECTED);
        return;
    }
    if (c->handshaking) {
        int rc = do_handshake(c);
        deliver(c, rc == WEIR_ERROR               ? WEIR_CONN_ERROR
                   : rc == WEIR_OK && c->outgoing ? WEIR_CONN_CONNECTED
                                                  : 0);
        return;
    }
    int ev = 0;
    if (c->recv_blocked && read_ok(c)) {
        c->recv_blocked = 0;
        ev = do_recv(c);
        if (ev == WEIR_CONN_ERROR) {
            deliver(c, ev);
            return;
        }
    }
    size_t before = evbuffer_get_length(c->out);
    if (before > 0 || (c->shut_wr && !c->shut_done)) {
        if (!(c->send_blocked && (c->want & WEIR_WANT_READ))) {
            int rc = do_send(c);
            if (rc == WEIR_ERROR) {
                deliver(c, WEIR_CONN_ERROR);
                return;
            }
            if (ev == 0 && evbuffer_get_length(c->out) < before && evbuffer_get_length(c->out) <= c->wr_lowat)
                ev = WEIR_CONN_WRITE;
        }
    }
    deliver(c, ev);
}

/* ---- public ---- */

static struct weir_conn *conn_alloc(struct event_base *base, evutil_socket_t fd,
                                    const struct weir_xprt_ops *xprt, void *xprt_ctx,
                                    weir_conn_handler handler, void *ctx)
{
    struct weir_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (c->in == NULL || c->out == NULL) {
        if (c->in != NULL)
            evbuffer_free(c->in);
        if (c->out != NULL)
            evbuffer_free(c->out);
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->base = base;
    c->xprt = xprt;
    c->xprt_ctx = xprt_ctx;
    c->handler = handler;
    c->ctx = ctx;
    event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, conn_rev_cb, c);
    event_assign(&c->wev, base, fd, EV_WRITE | EV_PERSIST, conn_wev_cb, c);
    return c;
}

struct weir_conn *weir_conn_new(struct event_base *base, evutil_socket_t fd, const struct weir_xprt_ops *xprt,
                                void *xprt_ctx, weir_conn_handler handler, void *ctx)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    struct weir_conn *c = conn_alloc(base, fd, xprt, xprt_ctx, handler, ctx);
    if (c == NULL)
        close(fd);
    return c;
}

struct weir_conn *weir_conn_connect(struct event_base *base, const struct sockaddr *sa, socklen_t salen,
                                    const struct weir_xprt_ops *xprt, void *xprt_ctx,
                                    const struct timeval *connect_tmo, weir_conn_handler handler, void *ctx)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct weir_conn *c = conn_alloc(base, fd, xprt, xprt_ctx, handler, ctx);
    if (c == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    c->outgoing = 1;
    c->connecting = 1;
    c->wr_tmo = connect_tmo;
    int rc;
    do
        rc = connect(fd, sa, salen);
    while (rc != 0 && errno == EINTR);
    if (rc != 0 && errno != EINPROGRESS) {
        /* Reported from the loop like an asynchronous failure, so the owner
         * has one path for every connect error. */
        c->err = errno;
        event_active(&c->wev, EV_WRITE, 1);
        c->w_armed = 0;
        return c;
    }
    conn_arm(c);
    return c;
}

int weir_conn_start(struct weir_conn *c)
{
    if (c->xprt->handshake != NULL) {
        c->handshaking = 1;
        if (do_handshake(c) == WEIR_ERROR)
            return WEIR_ERROR;
    }
    conn_arm(c);
    return WEIR_OK;
}

void weir_conn_free(struct weir_conn *c)
{
    if (c == NULL)
        return;
    event_del(&c->rev);
    event_del(&c->wev);
    if (c->xprt->close != NULL)
        c->xprt->close(c);
    if (c->fd >= 0)
        close(c->fd);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    free(c);
}

void weir_conn_set_handler(struct weir_conn *c, weir_conn_handler h, void *ctx)
{
    c->handler = h;
    c->ctx = ctx;
}

void weir_conn_set_timeouts(struct weir_conn *c, const struct timeval *rd, const struct timeval *wr)
{
    if (c->rd_tmo == rd && (c->connecting || c->wr_tmo == wr))
        return;
    c->rd_tmo = rd;
    if (!c->connecting)
        c->wr_tmo = wr;
    conn_arm(c);
}

void weir_conn_read(struct weir_conn *c, int on)
{
    c->reading = on != 0;
    conn_arm(c);
}

void weir_conn_touch(struct weir_conn *c)
{
    if (c->r_armed && c->r_tv != NULL)
        event_add(&c->rev, c->r_tv);
}

void weir_conn_quickack(struct weir_conn *c)
{
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

void weir_conn_update(struct weir_conn *c)
{
    conn_arm(c);
}

int weir_conn_flush(struct weir_conn *c)
{
    if (c->error)
        return WEIR_ERROR;
    int rc = WEIR_OK;
    /* A send that is blocked waits for its event: trying again now would
     * only cost a system call that says EAGAIN. */
    if (!c->connecting && !c->handshaking && !c->send_blocked &&
        (evbuffer_get_length(c->out) > 0 || (c->shut_wr && !c->shut_done)))
        rc = do_send(c);
    else if (evbuffer_get_length(c->out) > 0)
        rc = WEIR_AGAIN;
    conn_arm(c);
    return rc;
}

int weir_conn_shutdown(struct weir_conn *c)
{
    c->shut_wr = 1;
    return weir_conn_flush(c);
}
