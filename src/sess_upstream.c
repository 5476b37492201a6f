/*
 * sess_upstream.c - the upstream stage: choose a server (balancer, panic
 * mode), take a kept-alive connection or connect, retry by the rules below,
 * send the head and stream the request body with backpressure. Returns to
 * session.c; calls no other stage.
 */
#include "config.h"

#include <string.h>

#include "session_int.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/stats.h"
#include "weir/transport_tls.h"
#include "weir/upstream.h"

/* A non-idempotent request only goes on a kept-alive connection this fresh:
 * an older one may be closed by the server as we write, and such a request
 * could not be retried safely. */
#define NONIDEM_MAX_IDLE_US 2000000u

static int give_up(struct weir_session *s, int status, const char *detail)
{
    weir_x_release_server(s);
    weir_x_drop_upstream(s);
    s->x->answer = status;
    s->x->detail = detail;
    /* The body that was not forwarded would be read as the next request. */
    s->x->answer_close = !s->x->req_done || s->x->req_consumed;
    return WEIR_ERROR;
}

/* Every try failed or no server is left to try. A request that reached no
 * server (every connect refused, failed or timed out) is 503 with
 * Retry-After, as HAProxy and Envoy answer; 502 is for a server that took
 * the request and answered badly or broke off. */
static int out_of_servers(struct weir_session *s)
{
    if (s->x->reached)
        return give_up(s, 502, "no server could take the request");
    return give_up(s, 503, "no server accepted the connection");
}

int weir_sup_start(struct weir_session *s, weir_conn_handler h)
{
    struct weir_worker *w = s->w;
    struct weir_pool *pool = s->x->pool;
    int max_tries = 1 + pool->conf->retries;
    for (;;) {
        if (s->x->ntried >= max_tries || s->x->ntried >= WEIR_S_MAX_TRIES)
            return out_of_servers(s);
        struct weir_lb_ctx ctx = {
            .hash = s->x->hash, .exclude = s->x->tried, .nexclude = (size_t)s->x->ntried};
        struct weir_server *srv = pool->lb->pick(pool->lb_state[w->id], &pool->set, &ctx);
        if (srv == NULL && pool->conf->panic && weir_health_pool_all_down(pool)) {
            /* Every server is down by checks: sending to all of them beats
             * failing everything (panic mode, logged by the health module). */
            ctx.ignore_health = 1;
            srv = pool->lb->pick(pool->lb_state[w->id], &pool->set, &ctx);
        }
        if (srv == NULL) {
            if (s->x->ntried == 0)
                return give_up(s, 503, "no server available");
            return out_of_servers(s);
        }
        s->x->server = srv;
        atomic_fetch_add_explicit(&srv->active, 1, memory_order_relaxed);
        s->x->tried[s->x->ntried++] = srv;
        struct weir_upconn *c = NULL;
        if (!s->x->fresh_retry)
            c = weir_up_take_idle(w, srv, s->x->idempotent ? 0 : NONIDEM_MAX_IDLE_US, pool->tls);
        if (c != NULL) {
            s->x->up = c;
            weir_stats_gauge_add(w->id, WEIR_G_UP_ACTIVE, 1);
            s->x->up_reused = 1;
            weir_conn_set_handler(c->conn, h, s);
            weir_sup_ready(s);
            return WEIR_OK;
        }
        c = weir_up_connect(w, srv, pool->tls, h, s);
        if (c != NULL) {
            s->x->up = c;
            weir_stats_gauge_add(w->id, WEIR_G_UP_ACTIVE, 1);
            s->x->up_reused = 0;
            return WEIR_AGAIN;
        }
        weir_log_warn("pool %s server %s: cannot create a connection", pool->name, srv->address);
        weir_x_release_server(s);
    }
}

/* The whole request went up: the response timeout runs. (The client's
 * read timer is left as it is: session.c ignores it once the request is
 * complete, which spares re-arming timers on every request.) */
static void request_sent(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    weir_conn_set_timeouts(s->x->up->conn, w->tv_upstream, w->tv_upstream);
}

void weir_sup_ready(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct weir_conn *uc = s->x->up->conn;
    s->x->up_ready = 1;
    s->x->reached = 1;
    s->x->up->connected = 1;
    s->x->up->nreq++;
    s->x->t_up = weir_now_us();
    uc->wr_lowat = WEIR_S_LWM;
    uc->rd_max = weir_x_read_hwm(s->x->rt);
    uc->reading = 1;
    /* upstream_response_ms runs from the moment the head goes up (also
     * when the client waits for 100 Continue before its body); body bytes
     * going up restart it (weir_sup_body). */
    weir_conn_set_timeouts(uc, w->tv_upstream, w->tv_upstream);
    evbuffer_add(uc->out, s->x->uphead, s->x->uphead_len);
    if (s->x->req_done)
        request_sent(s);
}

int weir_sup_body(struct weir_session *s)
{
    struct evbuffer *in = s->cc->in;
    struct weir_conn *uc = s->x->up->conn;
    int moved = 0;
    while (!s->x->req_done) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        /* Backpressure: the client input fills to its read limit and the
         * conn stops reading it; the upstream's write event resumes. */
        size_t room = weir_x_out_room(uc);
        if (room == 0)
            break;
        if (avail > room)
            avail = room;
        if (s->x->req_body == WEIR_BODY_LENGTH) {
            size_t n = avail < s->x->req_left ? avail : (size_t)s->x->req_left;
            evbuffer_remove_buffer(in, uc->out, n);
            moved = 1;
            s->x->bytes_in += n;
            s->x->req_left -= n;
            s->x->req_consumed = 1;
            if (s->x->req_left == 0)
                s->x->req_done = 1;
        } else {
            size_t total;
            int rc = weir_x_chunked_scan(in, avail, &s->x->req_chunk, &total, NULL, NULL);
            if (rc == WEIR_ERROR) {
                weir_log_debug("client %s: malformed chunked request body", s->peer);
                s->x->req_done = 1;
                s->x->req_consumed = 1;
                evbuffer_drain(in, evbuffer_get_length(in));
                if (s->x->resp_started) {
                    /* a response is on its way: nothing can be answered */
                    if (s->x->status == 0)
                        s->x->status = 400;
                    s->x->answer = 0;
                    return WEIR_ERROR;
                }
                return give_up(s, 400, "malformed chunked body");
            }
            evbuffer_remove_buffer(in, uc->out, total);
            moved = 1;
            s->x->bytes_in += total;
            s->x->req_consumed = 1;
            if (rc == WEIR_OK)
                s->x->req_done = 1;
        }
    }
    if (moved)
        weir_conn_touch(uc);
    if (!s->x->req_done)
        return WEIR_AGAIN;
    if (s->state == S_UPSTREAM)
        request_sent(s);
    return WEIR_OK;
}

int weir_sup_failed(struct weir_session *s, int ev, weir_conn_handler h)
{
    struct weir_server *srv = s->x->server;
    int timeout = ev == WEIR_CONN_TIMEOUT_R || ev == WEIR_CONN_TIMEOUT_W;
    const char *why = timeout ? (s->x->up_ready ? "timeout" : "connect timeout")
                              : (s->x->up_ready ? "connection reset before response" : "connect failed");
    int err = s->x->up != NULL ? s->x->up->conn->err : 0;
    /* A TLS failure (verification, handshake) says why. */
    const char *tls_why = s->x->up != NULL ? weir_xprt_tls_error(s->x->up->conn) : "";
    if (tls_why[0] != '\0' && !s->x->up_ready)
        why = "TLS handshake failed";
    if (!s->x->up_ready || !s->x->resp_started)
        weir_log_warn("pool %s server %s: %s%s%s", s->x->pool->name, srv->address, why,
                      tls_why[0] != '\0' ? ": "
                      : err && !timeout  ? ": "
                                         : "",
                      tls_why[0] != '\0' ? tls_why
                      : err && !timeout  ? strerror(err)
                                         : "");
    int stale = s->x->up_reused && !s->x->fresh_retry && !s->x->resp_started && !timeout;
    /* A kept-alive connection the server closed while idle is not the
     * server's fault: no passive-health failure for it. */
    if (!stale)
        weir_x_note_outcome(s, !s->x->up_ready ? WEIR_OUTCOME_CONNECT
                               : timeout       ? WEIR_OUTCOME_TIMEOUT
                                               : WEIR_OUTCOME_RESET);
    if (s->x->up_ready && timeout) /* the server had the request: it may be acting on it */
        return give_up(s, 504, "the server did not answer in time");
    if (s->x->resp_started)
        return give_up(s, 502, "the server closed the connection mid-response");
    /* Retry only what a client could not lose: a request no byte of which
     * reached a server (connect failed), or an idempotent one, and never
     * after body bytes left the client buffer (they cannot be replayed). */
    int nothing_sent = !s->x->up_ready;
    if (s->x->req_consumed || !(nothing_sent || s->x->idempotent))
        return give_up(s, 502, "the server failed before answering");
    weir_x_release_server(s);
    weir_x_drop_upstream(s);
    if (stale) {
        /* A kept-alive connection the server had already closed: one more
         * try on a new connection, not counted as an attempt. */
        s->x->fresh_retry = 1;
        s->x->ntried--;
    }
    int rc = weir_sup_start(s, h);
    return rc == WEIR_ERROR ? WEIR_ERROR : WEIR_AGAIN;
}

void weir_sup_release(struct weir_session *s)
{
    struct weir_upconn *c = s->x->up;
    if (c == NULL || !s->x->resp_done || !s->x->resp_keepalive || !s->x->req_done ||
        s->x->resp_body == WEIR_BODY_EOF)
        return;
    s->x->up = NULL;
    s->x->up_ready = 0;
    weir_stats_gauge_add(s->w->id, WEIR_G_UP_ACTIVE, -1);
    weir_up_release_idle(c, (size_t)s->x->rt->conf->limits.upstream_idle_per_server);
}

void weir_sup_read_more(struct weir_session *s)
{
    struct weir_conn *uc = s->x->up->conn;
    /* Only after a read that drained the socket (a full read means bulk
     * data, whose ACKs flow anyway): one system call in the split-write
     * case, none for a response that came in one read. */
    if (uc->last_read < WEIR_CONN_READ_SIZE && !uc->eof && !uc->error)
        weir_conn_quickack(uc);
}
