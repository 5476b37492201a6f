/*
 * session.c - a client connection's lifecycle and the state machine that
 * drives the stages (see session_int.h for who calls whom).
 *
 * Every event of the session (client conn, upstream conn, header timer, a
 * hook's resume) enters through one function that counts itself in
 * s->depth. Ending a session (session_kill) releases its connections and
 * marks it dead; the memory is freed only when the outermost entry unwinds,
 * so no function below ever returns into a freed session, and each returns
 * OK / AGAIN / DONE / ERROR instead of "-1 means freed".
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "session_int.h"
#include "weir/access_log.h"
#include "weir/http_msg.h"
#include "weir/log.h"
#include "weir/session.h"
#include "weir/upstream.h"
#include "weir/stats.h"
#include "weir/tls.h"
#include "weir/transport_tls.h"

static const struct weir_req_hook *hooks[WEIR_EXCHANGE_MAX_HOOKS];
static int nhooks;

int weir_exchange_register_hook(const struct weir_req_hook *h)
{
    if (nhooks >= WEIR_EXCHANGE_MAX_HOOKS)
        return WEIR_ERROR;
    hooks[nhooks++] = h;
    return WEIR_OK;
}

void weir_exchange_clear_hooks(void)
{
    nhooks = 0;
}

void weir_session_thread_exit(void)
{
    weir_sresp_thread_exit();
}

static void client_cb(struct weir_conn *c, int ev, void *arg);
static void up_cb(struct weir_conn *c, int ev, void *arg);
static void session_run(struct weir_session *s);

/* ---- lifecycle ---- */

static void destroy(struct weir_session *s)
{
    free(s);
}

static void hooks_end(struct weir_session *s, int aborted)
{
    if (s->x == NULL)
        return;
    for (int i = 0; i < nhooks; i++) {
        if (!(s->x->hooks_run & (1u << i)))
            continue;
        s->x->hooks_run &= ~(1u << i);
        if (hooks[i]->on_end != NULL)
            hooks[i]->on_end((struct weir_exchange *)s, s->x->hook_data[i], aborted);
        s->x->hook_data[i] = NULL;
    }
}

/* End the session: connections closed now, memory once the stack unwinds. */
static void session_kill(struct weir_session *s)
{
    if (s->dead)
        return;
    struct weir_worker *w = s->w;
    s->dead = 1;
    hooks_end(s, 1);
    weir_x_reset(s);
    weir_x_set_gauge(s, -1);
    weir_conn_free(s->cc);
    s->cc = NULL;
    TAILQ_REMOVE(&w->sessions, s, link);
    w->nsessions--;
    atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
    if (s->depth == 0)
        destroy(s);
}

static void enter(struct weir_session *s)
{
    s->depth++;
}

static void leave(struct weir_session *s)
{
    if (--s->depth == 0 && s->dead)
        destroy(s);
}

/* The exchange ended abnormally with the connection: log what it got. */
static void abort_exchange(struct weir_session *s, int status)
{
    if (s->state == S_UPSTREAM || s->state == S_RESP || s->state == S_HOOK || s->state == S_TUNNEL ||
        s->state == S_STREAM) {
        if (s->x->status == 0)
            s->x->status = status;
        weir_x_log(s);
    }
    session_kill(s);
}

/* Waiting for a request: a new connection must send its first head within
 * client_header_ms (no free ride for connections that never speak); a
 * kept-alive one may idle for idle_ms between requests. */
static void arm_idle(struct weir_session *s)
{
    const struct timeval *rd = s->nreq == 0 ? s->w->tv_header : s->w->tv_idle;
    weir_conn_set_timeouts(s->cc, rd, s->w->tv_idle);
}

/* The response has been queued: account for the exchange, then close the
 * connection (after flushing) or wait for the next request. */
static void exchange_end(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    weir_sup_release(s);
    weir_x_filters_end(s, 0);
    hooks_end(s, !s->x->resp_done && !s->x->answered);
    weir_x_log(s);
    int must_close = s->close_after || !s->x->req_done || w->draining ||
                     ((s->peer_eof || s->cc->eof) && evbuffer_get_length(s->cc->in) == 0);
    /* The client may still be sending (a refused head, a body not read,
     * pipelined requests): close lingering, or the close with unread data
     * resets the connection and can destroy the answer before it is read. */
    s->linger = must_close && !s->cc->eof && !s->peer_eof &&
                (!s->x->req_done || s->x->answer_close || evbuffer_get_length(s->cc->in) > 0);
    weir_x_reset(s);
    if (must_close) {
        s->state = S_CLOSING;
        weir_conn_read(s->cc, 0);
        return;
    }
    s->state = S_IDLE;
    weir_x_set_gauge(s, WEIR_G_CLIENT_IDLE);
    arm_idle(s);
}

/* Answer locally with s->x->answer (errors, no route, no server). */
static void answer_local(struct weir_session *s)
{
    weir_x_release_server(s);
    weir_x_drop_upstream(s);
    if (s->x->answer_close)
        s->close_after = 1;
    struct weir_sbuf b = {0};
    size_t body_len = 0;
    int close = s->close_after || !s->x->req_done, head_only = s->x->method_id == WEIR_HTTP_HEAD;
    if (s->x->nfilters > 0) { /* e.g. the cache's Cache-Status on a 502 */
        s->x->resp_fields.len = 0;
        weir_x_filters_local(s, s->x->answer);
    }
    int rc = s->x->location != NULL ? weir_http_build_redirect(&b, s->x->answer, s->x->location, s->x->rid,
                                                               close, head_only, &body_len)
                                    : weir_http_build_local(&b, s->x->answer, s->x->detail, s->x->rid, close,
                                                            head_only, &body_len);
    const char *eoh = rc == WEIR_OK && s->x->resp_fields.len > 0 ? memmem(b.p, b.len, "\r\n\r\n", 4) : NULL;
    if (eoh != NULL) { /* the filters' fields before the blank line */
        size_t at = (size_t)(eoh - b.p) + 2;
        evbuffer_add(s->cc->out, b.p, at);
        evbuffer_add(s->cc->out, s->x->resp_fields.p, s->x->resp_fields.len);
        evbuffer_add(s->cc->out, b.p + at, b.len - at);
    } else if (rc == WEIR_OK) {
        evbuffer_add(s->cc->out, b.p, b.len);
    }
    weir_sbuf_free(&b);
    s->x->bytes_out = body_len;
    s->x->status = s->x->answer;
    if (s->x->t_start == 0)
        s->x->t_start = weir_now_us();
    exchange_end(s);
}

/* A stage returned WEIR_ERROR: answer when nothing went to the client yet,
 * else cut the connection. */
static void stage_failed(struct weir_session *s)
{
    if (s->x->answer != 0 && !s->x->resp_sent) {
        answer_local(s);
        return;
    }
    abort_exchange(s, s->x->answer != 0 ? s->x->answer : 502);
}

static void hdr_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_session *s = arg;
    enter(s);
    s->x->timer_on = 0;
    /* A client too slow to send its head is closed quietly. */
    weir_log_debug("client %s: request head timeout", s->peer);
    session_kill(s);
    leave(s);
}

/* A request begins: its exchange state. Returns WEIR_OK or WEIR_ERROR. */
static int start_head(struct weir_session *s)
{
    if (weir_x_begin(s) != WEIR_OK)
        return WEIR_ERROR;
    s->state = S_HEAD;
    weir_x_set_gauge(s, WEIR_G_CLIENT_ACTIVE);
    s->x->t_start = weir_now_us();
    return WEIR_OK;
}

/* The head is incomplete: client_header_ms runs. Armed only then, in the
 * same callback as start_head (so from the same moment): a head that came
 * whole, nearly every one, costs no timer add and delete (callgrind: ~600
 * instructions per request). */
static void arm_head_timer(struct weir_session *s)
{
    if (s->x->timer_on)
        return;
    evtimer_assign(&s->x->timer, s->w->base, hdr_timeout_cb, s);
    evtimer_add(&s->x->timer, s->w->tv_header);
    s->x->timer_on = 1;
}

static int run_hooks(struct weir_session *s)
{
    if (nhooks == 0)
        return WEIR_HOOK_CONTINUE;
    struct weir_req_info ri;
    if (weir_sreq_info(s, &ri) != WEIR_OK)
        return WEIR_HOOK_CONTINUE;
    for (int i = 0; i < nhooks; i++) {
        s->x->hooks_run |= 1u << i;
        int rc = hooks[i]->on_request((struct weir_exchange *)s, &ri, &s->x->hook_data[i]);
        if (rc == WEIR_HOOK_ANSWERED && !s->x->answered)
            rc = WEIR_HOOK_CONTINUE; /* a hook that says it answered but did not */
        if (rc != WEIR_HOOK_CONTINUE)
            return rc;
    }
    return WEIR_HOOK_CONTINUE;
}

/* After a hook: go upstream. */
static void go_upstream(struct weir_session *s)
{
    if (s->x->uphead_pending) { /* its head could not be built */
        s->x->answer = 500;
        s->x->answer_close = 1;
        stage_failed(s);
        return;
    }
    s->state = S_UPSTREAM;
    if (weir_sup_start(s, up_cb) == WEIR_ERROR)
        stage_failed(s);
}

/* A hook answered: the exchange ends, or its streamed body follows. */
static void answered(struct weir_session *s)
{
    if (s->x->src != NULL)
        s->state = S_STREAM;
    else
        exchange_end(s);
}

/* A routed request head: hooks, then upstream. */
static void request_routed(struct weir_session *s)
{
    if (s->x->timer_on) {
        evtimer_del(&s->x->timer);
        s->x->timer_on = 0;
    }
    s->state = S_HOOK;
    int rc = run_hooks(s);
    if (!s->dead && rc != WEIR_HOOK_ANSWERED)
        (void)weir_sreq_build_uphead(s); /* out of memory: go_upstream answers 500 */
    weir_sreq_consume(s);
    if (s->dead)
        return;
    if (rc == WEIR_HOOK_ANSWERED)
        answered(s);
    else if (rc == WEIR_HOOK_CONTINUE)
        go_upstream(s);
    /* WEIR_HOOK_SUSPENDED: weir_exchange_resume() follows */
}

/* Lingering close (as nginx's lingering_close): the answer is sent; shut
 * our side, then read and drop what the client still sends, for at most
 * LINGER_MS or LINGER_BYTES, before closing. */
#define LINGER_MS    2000
#define LINGER_BYTES (1024 * 1024)

static void linger_close(struct weir_session *s)
{
    size_t n = evbuffer_get_length(s->cc->in);
    evbuffer_drain(s->cc->in, n);
    if (!s->lingering) {
        static const struct timeval linger_tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
        s->lingering = 1;
        s->linger_bytes = 0;
        if (weir_conn_shutdown(s->cc) != WEIR_OK) {
            session_kill(s);
            return;
        }
        s->cc->rd_max = 0;
        weir_conn_set_timeouts(s->cc, &linger_tv, NULL); /* then a read timeout kills it */
        weir_conn_read(s->cc, 1);
        return;
    }
    s->linger_bytes += (uint32_t)(n < LINGER_BYTES ? n : LINGER_BYTES);
    if (s->linger_bytes >= LINGER_BYTES || s->cc->eof)
        session_kill(s);
    else
        weir_conn_update(s->cc);
}

/* Write what is queued (eagerly) and re-arm reading on both sides. */
static void flush_all(struct weir_session *s)
{
    if (s->x != NULL && s->x->up != NULL) {
        if (weir_conn_flush(s->x->up->conn) == WEIR_ERROR) {
            /* reported like the event it is */
            up_cb(s->x->up->conn, WEIR_CONN_ERROR, s);
            if (s->dead)
                return;
        } /* a flush re-arms the conn's events itself */
    }
    if (s->cc != NULL && weir_conn_flush(s->cc) == WEIR_ERROR) {
        abort_exchange(s, 499);
        return;
    }
    if (s->state == S_CLOSING && !weir_conn_out_pending(s->cc)) {
        if (s->linger)
            linger_close(s);
        else
            session_kill(s);
    }
}

static void session_run(struct weir_session *s)
{
    int tunnel;
    while (!s->dead) {
        switch (s->state) {
        case S_IDLE:
            if (evbuffer_get_length(s->cc->in) == 0) {
                if (s->cc->eof || s->peer_eof) {
                    s->state = S_CLOSING; /* flush what is queued, then close */
                    weir_conn_read(s->cc, 0);
                }
                goto out;
            }
            /* Answers the client has not read yet pile up: read no more
             * requests until they drain (its input then fills to its read
             * limit and the conn stops reading it). The client's write
             * event resumes. */
            if (weir_x_out_full(s->cc))
                goto out;
            if (start_head(s) != WEIR_OK) {
                session_kill(s);
                goto out;
            }
            continue;
        case S_HEAD:
            switch (weir_sreq_head(s)) {
            case WEIR_AGAIN:
                arm_head_timer(s);
                goto out;
            case WEIR_DONE:
                session_kill(s);
                goto out;
            case WEIR_ERROR:
                if (s->x->timer_on) {
                    evtimer_del(&s->x->timer);
                    s->x->timer_on = 0;
                }
                answer_local(s);
                continue;
            default:
                request_routed(s);
                continue;
            }
        case S_HOOK:
            goto out;
        case S_UPSTREAM:
            if (!s->x->up_ready)
                goto out; /* connecting */
            if (!s->x->req_done && weir_sup_body(s) == WEIR_ERROR) {
                stage_failed(s);
                continue;
            }
            switch (weir_sresp_head(s, &tunnel)) {
            case WEIR_AGAIN:
                goto out;
            case WEIR_OK:
                if (tunnel) {
                    s->state = S_TUNNEL;
                    weir_stunnel_start(s);
                } else {
                    s->state = S_RESP;
                }
                continue;
            default:
                stage_failed(s);
                continue;
            }
        case S_RESP:
            if (!s->x->req_done && s->x->up_ready && weir_sup_body(s) == WEIR_ERROR) {
                stage_failed(s);
                continue;
            }
            switch (weir_sresp_body(s)) {
            case WEIR_AGAIN:
                goto out;
            case WEIR_DONE:
                exchange_end(s);
                continue;
            default:
                stage_failed(s);
                continue;
            }
        case S_TUNNEL:
            if (weir_stunnel_move(s) == WEIR_AGAIN)
                goto out;
            weir_x_log(s); /* the tunnel's line, at its end */
            weir_x_drop_upstream(s);
            s->state = S_CLOSING;
            weir_conn_read(s->cc, 0);
            continue;
        case S_STREAM:
            switch (weir_x_stream(s)) {
            case WEIR_AGAIN:
                goto out;
            case WEIR_DONE:
                exchange_end(s);
                continue;
            default:
                abort_exchange(s, s->x->status); /* the body broke off: cut */
                goto out;
            }
        case S_CLOSING:
            goto out;
        }
    }
out:
    if (!s->dead)
        flush_all(s);
}

/* ---- events ---- */

static void client_cb(struct weir_conn *c, int ev, void *arg)
{
    struct weir_session *s = arg;
    enter(s);
    if (s->handshaking && ev == WEIR_CONN_READ) {
        /* The handshake is done and the first bytes of a request came:
         * from now on the request head's timeout. */
        s->handshaking = 0;
        arm_idle(s);
    }
    switch (ev) {
    case WEIR_CONN_READ:
    case WEIR_CONN_WRITE:
        session_run(s);
        break;
    case WEIR_CONN_EOF:
        if ((s->state == S_UPSTREAM || s->state == S_RESP || s->state == S_HOOK || s->state == S_STREAM) &&
            s->x->req_done) {
            /* The client half-closed after a complete request: answer it and
             * any complete requests it pipelined before, then close. */
            s->peer_eof = 1;
            session_run(s);
        } else if (s->state == S_IDLE || s->state == S_HEAD) {
            session_run(s);
        } else {
            abort_exchange(s, 499);
        }
        break;
    case WEIR_CONN_TIMEOUT_R:
        /* The read timer is left armed while a complete request is being
         * answered (not re-armed per request): nothing to do then. */
        if ((s->state == S_UPSTREAM || s->state == S_RESP || s->state == S_HOOK || s->state == S_STREAM) &&
            s->x->req_done)
            break;
        /* The client stopped sending its body (client_body_ms): weir ends
         * the exchange, so it is a 408, answered when nothing was sent yet;
         * 499 is only for clients that left. A head timeout closes
         * quietly. */
        if (s->state == S_IDLE || s->state == S_HEAD) {
            if (s->handshaking)
                weir_xprt_tls_timed_out(s->cc);
            session_kill(s);
        } else if ((s->state == S_UPSTREAM || s->state == S_HOOK) && !s->x->resp_sent) {
            weir_log_debug("client %s: request body timeout", s->peer);
            s->x->req_done = 0;
            s->x->answer = 408;
            s->x->detail = "the request body did not arrive in time";
            s->x->answer_close = 1;
            answer_local(s);
            session_run(s);
        } else {
            abort_exchange(s, 408);
        }
        break;
    case WEIR_CONN_TIMEOUT_W:
        /* The client does not read what it asked for (idle_ms). */
        abort_exchange(s, 408);
        break;
    default: /* the client closed or reset its connection */
        abort_exchange(s, 499);
        break;
    }
    leave(s);
}

static void up_cb(struct weir_conn *c, int ev, void *arg)
{
    struct weir_session *s = arg;
    enter(s);
    switch (ev) {
    case WEIR_CONN_CONNECTED:
        weir_sup_ready(s);
        session_run(s);
        break;
    case WEIR_CONN_READ:
        session_run(s);
        if (!s->dead && s->x != NULL && s->x->up != NULL && s->x->up->conn == c &&
            (s->state == S_UPSTREAM || s->state == S_RESP))
            weir_sup_read_more(s);
        break;
    case WEIR_CONN_WRITE:
        session_run(s);
        break;
    default: /* EOF, error, timeouts */
        if (s->state == S_TUNNEL) {
            if (ev != WEIR_CONN_EOF && ev != WEIR_CONN_ERROR) {
                abort_exchange(s, 0); /* idle tunnel */
                break;
            }
            session_run(s); /* moves what is left, then closes */
            break;
        }
        if (s->state == S_RESP) {
            int rc = weir_sresp_upstream_end(s, ev);
            if (rc == WEIR_DONE)
                exchange_end(s);
            else if (rc == WEIR_ERROR)
                stage_failed(s);
            session_run(s);
            break;
        }
        if (s->state == S_UPSTREAM) {
            if (weir_sup_failed(s, ev, up_cb) == WEIR_ERROR)
                stage_failed(s);
            session_run(s);
        }
        break;
    }
    leave(s);
}

void weir_exchange_resume(struct weir_exchange *x, int rc)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->dead || s->state != S_HOOK)
        return;
    enter(s);
    if (rc == WEIR_HOOK_ANSWERED && s->x->answered)
        answered(s);
    else
        go_upstream(s);
    session_run(s);
    leave(s);
}

void weir_exchange_stream_kick(struct weir_exchange *x)
{
    struct weir_session *s = (struct weir_session *)x;
    if (s->dead || s->state != S_STREAM)
        return;
    enter(s);
    session_run(s);
    leave(s);
}

/* ---- accept / shutdown ---- */

static void peer_text(const struct sockaddr *sa, char *out, size_t cap)
{
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    else
        snprintf(out, cap, "unix");
}

/* Over limits.max_connections: answer 503 at once (one read to take what
 * the client already sent, one write, close), count it in the statistics
 * as a 503, give it an access log line, and say so in the error log at
 * most once a second per worker. */
static void refuse_connection(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
                              long limit, int plain)
{
    static const char answer[] =
        "HTTP/1.1 503 Service Unavailable\r\nServer: weir\r\nContent-Type: text/plain\r\n"
        "Content-Length: 45\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        "503 Service Unavailable\ntoo many connections\n";
    char junk[4096];
    if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) < 0) {
        /* nothing sent yet: fine */
    }
    /* (over TLS there is no session to answer in: the close says it) */
    if (plain && send(fd, answer, sizeof(answer) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* the client is gone or its window is full: closing is all that is left */
    }
    shutdown(fd, SHUT_WR);
    evutil_closesocket(fd);
    static _Thread_local uint64_t last_us, refused;
    uint64_t now = weir_now_us();
    refused++;
    if (now - last_us >= 1000000) {
        weir_log_warn("worker %d: max_connections (%ld) reached: %llu connection(s) refused with 503", w->id,
                      limit, (unsigned long long)refused);
        last_us = now;
        refused = 0;
    }
    struct weir_stats_sample smp = {.status = 503, .now_us = now};
    weir_stats_record(weir_stats_global(), w->id, &smp);
    if (weir_alog_fd() >= 0) {
        char peer[46];
        peer_text(sa, peer, sizeof(peer));
        struct weir_access_rec r = {.client = peer,
                                    .method = "-",
                                    .method_len = 1,
                                    .target = "-",
                                    .target_len = 1,
                                    .rid = "max_connections",
                                    .rid_len = 15,
                                    .status = 503,
                                    .upstream_s = -1};
        char line[1024];
        size_t n = weir_access_format(line, sizeof(line), w->rt->conf->log.format == WEIR_LOG_JSON,
                                      w->clf_time, w->iso_time, &r);
        weir_alog_append(&w->alog, line, n);
    }
}

void weir_session_accept(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
    weir_session_accept_xprt(w, fd, sa, salen, &weir_xprt_plain, NULL);
}

/* The transport state of a connection that never got a conn. */
static void drop_xprt(const struct weir_xprt_ops *xprt, void *xprt_ctx, evutil_socket_t fd)
{
    if (xprt_ctx != NULL && xprt->close != NULL) {
        struct weir_conn tmp = {.fd = fd, .xprt = xprt, .xprt_ctx = xprt_ctx};
        xprt->close(&tmp);
    }
}

static void accept_common(struct weir_worker *w, size_t listener, evutil_socket_t fd,
                          const struct sockaddr *sa, const struct weir_xprt_ops *xprt, void *xprt_ctx,
                          int handshake_ms);

void weir_session_accept_xprt(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                              const struct weir_xprt_ops *xprt, void *xprt_ctx)
{
    (void)salen;
    accept_common(w, 255, fd, sa, xprt, xprt_ctx, 0); /* no listener: no redirect */
}

void weir_session_accept_on(struct weir_worker *w, size_t listener, evutil_socket_t fd,
                            const struct sockaddr *sa, int salen)
{
    const struct weir_tls_set *set = w->rt->tls;
    struct weir_tls_server *ts = set != NULL && listener < set->nservers ? set->servers[listener] : NULL;
    (void)salen;
    if (ts == NULL) {
        accept_common(w, listener, fd, sa, &weir_xprt_plain, NULL, 0);
        return;
    }
    void *x = weir_xprt_tls_server_new(ts);
    if (x == NULL) {
        evutil_closesocket(fd);
        return;
    }
    accept_common(w, listener, fd, sa, &weir_xprt_tls, x, weir_tls_server_handshake_timeout_ms(ts));
}

static void accept_common(struct weir_worker *w, size_t listener, evutil_socket_t fd,
                          const struct sockaddr *sa, const struct weir_xprt_ops *xprt, void *xprt_ctx,
                          int handshake_ms)
{
    long limit = w->rt->conf->limits.max_connections;
    if (w->draining) {
        drop_xprt(xprt, xprt_ctx, fd);
        evutil_closesocket(fd);
        return;
    }
    if (atomic_fetch_add_explicit(&weir_client_conns, 1, memory_order_relaxed) >= limit) {
        atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
        drop_xprt(xprt, xprt_ctx, fd);
        refuse_connection(w, fd, sa, limit, xprt == &weir_xprt_plain);
        return;
    }
    struct weir_session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
        drop_xprt(xprt, xprt_ctx, fd);
        evutil_closesocket(fd);
        return;
    }
    s->cc = weir_conn_new(w->base, fd, xprt, xprt_ctx, client_cb, s);
    if (s->cc == NULL) { /* fd closed */
        drop_xprt(xprt, xprt_ctx, -1);
        free(s);
        atomic_fetch_sub_explicit(&weir_client_conns, 1, memory_order_relaxed);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->w = w;
    s->listener = (uint8_t)(listener < 255 ? listener : 255);
    peer_text(sa, s->peer, sizeof(s->peer));
    s->peer_len = (uint8_t)strlen(s->peer);
    s->state = S_IDLE;
    s->gauge = -1;
    weir_x_set_gauge(s, WEIR_G_CLIENT_IDLE);
    TAILQ_INSERT_TAIL(&w->sessions, s, link);
    w->nsessions++;
    s->cc->wr_lowat = WEIR_S_LWM;
    s->cc->rd_max = weir_x_read_hwm(w->rt);
    s->cc->reading = 1;
    if (handshake_ms > 0) {
        /* A client that sends nothing of its handshake is closed after the
         * handshake timeout (the transport bounds one that trickles). */
        s->handshaking = 1;
        s->hs_tv.tv_sec = handshake_ms / 1000;
        s->hs_tv.tv_usec = (handshake_ms % 1000) * 1000;
        weir_conn_set_timeouts(s->cc, &s->hs_tv, &s->hs_tv);
    } else {
        arm_idle(s);
    }
    if (weir_conn_start(s->cc) != WEIR_OK)
        session_kill(s);
}

void weir_session_drain_all(struct weir_worker *w)
{
    struct weir_session *s, *next;
    for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = next) {
        next = TAILQ_NEXT(s, link);
        if (s->state == S_IDLE)
            session_kill(s);
        else
            s->close_after = 1;
    }
}

void weir_session_abort_all(struct weir_worker *w)
{
    struct weir_session *s;
    /* weir cuts these (drain deadline): 503 unless a response had begun */
    while ((s = TAILQ_FIRST(&w->sessions)) != NULL)
        abort_exchange(s, 503);
}
