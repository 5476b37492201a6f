/* upstream.c - backend connections and per-worker keep-alive pools. */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "weir/log.h"
#include "weir/stats.h"
#include "weir/transport_tls.h"
#include "weir/upstream.h"
#include "weir/worker.h"

static struct weir_server_idle *idle_of(struct weir_worker *w, struct weir_server *s)
{
    struct weir_server_idle *si = s->idle[w->id];
    if (si == NULL) {
        si = calloc(1, sizeof(*si));
        if (si == NULL)
            return NULL;
        TAILQ_INIT(&si->list);
        s->idle[w->id] = si;
    }
    return si;
}

static void unlink_idle(struct weir_upconn *c)
{
    struct weir_server_idle *si = c->server->idle[c->w->id];
    TAILQ_REMOVE(&si->list, c, srv_link);
    si->n--;
    TAILQ_REMOVE(&c->w->idle_all, c, all_link);
    weir_stats_gauge_add(c->w->id, WEIR_G_UP_IDLE, -1);
}

void weir_up_close(struct weir_upconn *c)
{
    if (c == NULL)
        return;
    weir_conn_free(c->conn);
    weir_server_release(c->server);
    free(c);
}

/* Anything happening on an idle connection ends it: data the server sent
 * unasked, its close, an error or the idle timeout. */
static void idle_cb(struct weir_conn *conn, int ev, void *arg)
{
    struct weir_upconn *c = arg;
    unlink_idle(c);
    weir_up_close(c);
}

struct weir_upconn *weir_up_take_idle(struct weir_worker *w, struct weir_server *s, uint64_t max_idle_us,
                                      const struct weir_tls_client *tls)
{
    struct weir_server_idle *si = s->idle[w->id];
    struct weir_upconn *c;
    /* Connections of another TLS context (an earlier configuration, or the
     * server in a pool configured otherwise) are never reused: closed. The
     * newest idle first; the list is at most upstream_idle_per_server long. */
    while (si != NULL && (c = TAILQ_FIRST(&si->list)) != NULL && c->tls != tls) {
        unlink_idle(c);
        weir_up_close(c);
    }
    if (si == NULL || si->n == 0)
        return NULL;
    c = TAILQ_FIRST(&si->list);
    if (max_idle_us != 0 && weir_now_us() - c->idle_since_us > max_idle_us)
        return NULL;
    unlink_idle(c);
    return c;
}

/* The host part of "host:port" / "[v6]:port" into buf. */
static void host_of(const char *address, char *buf, size_t n)
{
    const char *p = address, *e;
    if (*p == '[') {
        p++;
        e = strchr(p, ']');
    } else {
        e = strrchr(p, ':');
    }
    size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
    if (len >= n)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
}

struct weir_upconn *weir_up_connect(struct weir_worker *w, struct weir_server *s, struct weir_tls_client *tls,
                                    weir_conn_handler h, void *ctx)
{
    struct weir_upconn *c = calloc(1, sizeof(*c));
    void *x = NULL;
    if (c == NULL)
        return NULL;
    if (tls != NULL) {
        char host[256];
        host_of(s->address, host, sizeof(host));
        /* The handshake shares the connect timeout's deadline. */
        x = weir_xprt_tls_client_new(tls, host, s->address, w->rt->conf->timeouts.connect_ms);
        if (x == NULL) {
            free(c);
            return NULL;
        }
    }
    c->conn = weir_conn_connect(w->base, (const struct sockaddr *)&s->addr, (socklen_t)s->addrlen,
                                x != NULL ? &weir_xprt_tls : &weir_xprt_plain, x, w->tv_connect, h, ctx);
    if (c->conn == NULL) {
        weir_xprt_tls_free(x);
        free(c);
        return NULL;
    }
    c->tls = tls;
    c->w = w;
    c->server = s;
    weir_server_retain(s);
    return c;
}

void weir_up_release_idle(struct weir_upconn *c, size_t max_idle)
{
    struct weir_worker *w = c->w;
    struct weir_server_idle *si = idle_of(w, c->server);
    struct weir_conn *conn = c->conn;
    if (si == NULL || w->draining || si->n >= max_idle || conn->eof || conn->error ||
        evbuffer_get_length(conn->in) != 0 || evbuffer_get_length(conn->out) != 0) {
        weir_up_close(c);
        return;
    }
    c->idle_since_us = weir_now_us();
    weir_conn_set_handler(conn, idle_cb, c);
    conn->rd_max = 0;
    conn->reading = 1;
    weir_conn_set_timeouts(conn, w->tv_up_idle, NULL);
    TAILQ_INSERT_HEAD(&si->list, c, srv_link);
    si->n++;
    TAILQ_INSERT_HEAD(&w->idle_all, c, all_link);
    weir_stats_gauge_add(w->id, WEIR_G_UP_IDLE, 1);
}

void weir_up_close_all_idle(struct weir_worker *w)
{
    struct weir_upconn *c;
    while ((c = TAILQ_FIRST(&w->idle_all)) != NULL) {
        unlink_idle(c);
        weir_up_close(c);
    }
}
