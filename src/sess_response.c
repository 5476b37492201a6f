/*
 * sess_response.c - the response stage: response heads (1xx forwarded),
 * the body streamed to the client with backpressure and through the
 * response filters, and tunnels after a 101. Returns to session.c; calls no
 * other stage.
 */
#include "config.h"

#include <string.h>

#include "session_int.h"
#include "weir/health.h"
#include "weir/http_msg.h"
#include "weir/log.h"
#include "weir/upstream.h"

/* Per-worker scratch for response heads (one thread, used synchronously). */
static _Thread_local struct weir_sbuf scratch;

void weir_sresp_thread_exit(void)
{
    weir_sbuf_free(&scratch);
}

static void send_head(struct weir_session *s, const struct weir_http_msg *m, int interim)
{
    struct weir_sbuf *b = &scratch;
    b->len = 0;
    b->oom = 0;
    struct weir_resp_head_params p = {
        .rid = s->x->rid,
        .interim = interim,
        .chunked = s->x->resp_body == WEIR_BODY_CHUNKED && !s->x->dechunk,
        .close = s->close_after,
        .http10 = s->x->version == 10,
    };
    if (weir_http_build_response_head(b, m, &p) != WEIR_OK)
        return;
    if (!interim && s->x->resp_fields.len > 0 && b->len >= 2) {
        /* fields the filters added (exchange.h), before the blank line */
        b->len -= 2;
        weir_sbuf_add(b, s->x->resp_fields.p, s->x->resp_fields.len);
        WEIR_SBUF_LIT(b, "\r\n");
        if (b->oom)
            return;
    }
    evbuffer_add(s->cc->out, b->p, b->len);
}

/* Next comma-separated token of list[*pos..n) (OWS trimmed); returns its
 * length (0 at the end) and its start in *tok. */
static size_t next_token(const char *list, size_t n, size_t *pos, const char **tok)
{
    for (;;) {
        size_t i = *pos;
        while (i < n && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i >= n) {
            *pos = n;
            return 0;
        }
        size_t start = i;
        while (i < n && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        *pos = i;
        *tok = list + start;
        return end - start;
    }
}

static int token_in(const char *list, size_t n, const char *t, size_t tn)
{
    size_t pos = 0;
    const char *tok;
    size_t k;
    while ((k = next_token(list, n, &pos, &tok)) != 0) {
        if (k != tn)
            continue;
        size_t i = 0;
        while (i < k && weir_lower((unsigned char)tok[i]) == weir_lower((unsigned char)t[i]))
            i++;
        if (i == k)
            return 1;
    }
    return 0;
}

/* 1 when the 101's Upgrade names only protocols the client asked for
 * (RFC 9110 7.8), and at least one. */
static int switch_allowed(const struct weir_session *s, const struct weir_http_msg *m)
{
    int ui = weir_http_find_header(m, "upgrade");
    if (ui < 0 || s->x->up_proto == NULL)
        return 0;
    const struct weir_http_header *h = &m->headers[ui];
    size_t pos = 0, k, n = 0;
    const char *tok;
    while ((k = next_token(h->value, h->value_len, &pos, &tok)) != 0) {
        if (!token_in(s->x->up_proto, strlen(s->x->up_proto), tok, k))
            return 0;
        n++;
    }
    return n > 0;
}

int weir_sresp_head(struct weir_session *s, int *tunnel)
{
    struct weir_worker *w = s->w;
    struct evbuffer *in = s->x->up->conn->in;
    *tunnel = 0;
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return WEIR_AGAIN;
        /* Interim heads the client has not read pile up in its output:
         * stop here until it drains (the server's input fills to its read
         * limit and reading stops; the client's write event resumes). */
        if (s->x->resp_started && weir_x_out_full(s->cc))
            return WEIR_AGAIN;
        s->x->resp_started = 1;
        size_t max_head = s->x->rt->conf->limits.header_bytes;
        size_t cap = max_head + 4;
        size_t want = len < cap ? len : cap;
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        struct weir_http_msg *m = &w->msg;
        m->scan_pos = s->x->resp_scan_pos;
        m->scan_lines = s->x->resp_scan_lines;
        int rc = weir_http_parse_response(p, want, max_head, s->x->method_id, m);
        if (rc == WEIR_AGAIN) {
            s->x->resp_scan_pos = m->scan_pos;
            s->x->resp_scan_lines = m->scan_lines;
            return WEIR_AGAIN;
        }
        if (rc != WEIR_OK) {
            weir_log_warn("pool %s server %s: invalid response: %s", s->x->pool->name, s->x->server->address,
                          m->error ? m->error : "malformed");
            weir_x_note_outcome(s, WEIR_OUTCOME_RESET);
            s->x->answer = 502;
            s->x->detail = "invalid response from server";
            s->x->answer_close = !s->x->req_done || s->x->req_consumed;
            return WEIR_ERROR;
        }
        s->x->resp_scan_pos = s->x->resp_scan_lines = 0;
        if (m->status < 200 && m->status != 101) {
            /* Interim responses go to HTTP/1.1 clients only. */
            if (s->x->version == 11)
                send_head(s, m, 1);
            evbuffer_drain(in, m->head_len);
            continue;
        }
        if (s->x->t_first == 0)
            s->x->t_first = weir_now_us();
        s->x->status = m->status;
        weir_x_note_outcome(s, m->status >= 500 ? WEIR_OUTCOME_5XX : WEIR_OUTCOME_OK);
        if (m->status == 101) {
            if (!s->x->upgrade || !switch_allowed(s, m)) {
                weir_log_warn("pool %s server %s: 101 %s", s->x->pool->name, s->x->server->address,
                              s->x->upgrade ? "switches to a protocol the client did not request"
                                            : "without an upgrade request");
                s->x->answer = 502;
                s->x->detail = "invalid response from server";
                s->x->answer_close = !s->x->req_done || s->x->req_consumed;
                return WEIR_ERROR;
            }
            send_head(s, m, 0);
            s->x->resp_sent = 1;
            evbuffer_drain(in, m->head_len);
            weir_x_filters_end(s, 0); /* a tunnel is not a response body */
            *tunnel = 1;
            return WEIR_OK;
        }
        s->x->resp_body = m->body;
        s->x->resp_left = m->content_length;
        weir_chunked_init(&s->x->resp_chunk);
        s->x->resp_keepalive = (m->flags & WEIR_HTTP_F_KEEPALIVE) != 0;
        if (m->body == WEIR_BODY_CHUNKED && s->x->version == 10) {
            s->x->dechunk = 1;
            s->close_after = 1;
        }
        if (m->body == WEIR_BODY_EOF)
            s->close_after = 1;
        if (!s->x->req_done)
            s->close_after = 1; /* the server answered before the whole body */
        if (s->x->nfilters > 0) /* before the head goes: they may add fields, or answer */
            weir_x_filters_head(s, m);
        if (!s->x->answered) /* a filter answered instead of a bodiless response (exchange.h) */
            send_head(s, m, 0);
        s->x->resp_sent = 1;
        /* the head is read: the body needs no more than the output's
         * high-water mark buffered on this side */
        s->x->up->conn->rd_max = WEIR_S_HWM;
        evbuffer_drain(in, m->head_len);
        return WEIR_OK;
    }
}

/* Chunk payload: to HTTP/1.0 clients without framing, and to the filters. */
static void payload_cb(void *ud, const char *p, size_t n)
{
    struct weir_session *s = ud;
    if (s->x->dechunk) {
        evbuffer_add(s->cc->out, p, n);
        s->x->bytes_out += n;
    }
    if (s->x->nfilters > 0)
        weir_x_filters_data(s, p, n);
}

/* Show the first n bytes of `in` to the filters. */
static void filter_span(struct weir_session *s, struct evbuffer *in, size_t n)
{
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
    while (n > 0 && s->x->nfilters > 0) {
        struct evbuffer_iovec v[8];
        int nv = evbuffer_peek(in, (ev_ssize_t)n, &pos, v, 8);
        if (nv <= 0)
            break;
        size_t seen = 0;
        for (int i = 0; i < nv && i < 8 && seen < n; i++) {
            size_t k = v[i].iov_len < n - seen ? v[i].iov_len : n - seen;
            weir_x_filters_data(s, v[i].iov_base, k);
            seen += k;
        }
        n -= seen;
        if (n > 0 && evbuffer_ptr_set(in, &pos, seen, EVBUFFER_PTR_ADD) != 0)
            break;
    }
}

static void move_span(struct weir_session *s, struct evbuffer *in, size_t n)
{
    if (s->x->nfilters > 0)
        filter_span(s, in, n);
    evbuffer_remove_buffer(in, s->cc->out, n);
    s->x->bytes_out += n;
}

static int body_done(struct weir_session *s)
{
    s->x->resp_done = 1;
    weir_x_filters_end(s, 1);
    return WEIR_DONE;
}

int weir_sresp_body(struct weir_session *s)
{
    struct evbuffer *in = s->x->up->conn->in;
    if (s->x->resp_body == WEIR_BODY_NONE || (s->x->resp_body == WEIR_BODY_LENGTH && s->x->resp_left == 0))
        return body_done(s);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return WEIR_AGAIN;
        /* the upstream input fills to its read limit and the conn stops
         * reading it; the client's write event resumes */
        size_t room = weir_x_out_room(s->cc);
        if (room == 0)
            return WEIR_AGAIN;
        if (avail > room)
            avail = room;
        if (s->x->resp_body == WEIR_BODY_LENGTH) {
            size_t n = avail < s->x->resp_left ? avail : (size_t)s->x->resp_left;
            move_span(s, in, n);
            s->x->resp_left -= n;
            if (s->x->resp_left == 0)
                return body_done(s);
        } else if (s->x->resp_body == WEIR_BODY_CHUNKED) {
            size_t total;
            int need_cb = s->x->dechunk || s->x->nfilters > 0;
            int rc =
                weir_x_chunked_scan(in, avail, &s->x->resp_chunk, &total, need_cb ? payload_cb : NULL, s);
            if (rc == WEIR_ERROR) {
                weir_log_warn("pool %s server %s: malformed chunked response", s->x->pool->name,
                              s->x->tried[s->x->ntried - 1]->address);
                s->x->status = 502;
                s->x->answer = 0;
                return WEIR_ERROR;
            }
            if (s->x->dechunk) {
                evbuffer_drain(in, total);
            } else {
                evbuffer_remove_buffer(in, s->cc->out, total);
                s->x->bytes_out += total;
            }
            if (rc == WEIR_OK)
                return body_done(s);
        } else { /* until the server closes */
            move_span(s, in, avail);
        }
    }
}

/* 1 when what `in` holds completes the body. */
static int body_buffered(struct weir_session *s, struct evbuffer *in)
{
    if (s->x->resp_body == WEIR_BODY_LENGTH)
        return evbuffer_get_length(in) >= s->x->resp_left;
    if (s->x->resp_body == WEIR_BODY_CHUNKED) {
        struct weir_chunked tmp = s->x->resp_chunk;
        size_t total;
        return weir_x_chunked_scan(in, evbuffer_get_length(in), &tmp, &total, NULL, NULL) == WEIR_OK;
    }
    return 0;
}

int weir_sresp_upstream_end(struct weir_session *s, int ev)
{
    struct evbuffer *in = s->x->up->conn->in;
    if (ev == WEIR_CONN_EOF) {
        if (s->x->resp_body == WEIR_BODY_EOF) {
            /* close-delimited body: take what is still buffered */
            move_span(s, in, evbuffer_get_length(in));
            weir_x_drop_upstream(s);
            return body_done(s);
        }
        if (body_buffered(s, in))
            return WEIR_AGAIN; /* the rest is buffered: it goes out as the client reads */
    }
    int timeout = ev == WEIR_CONN_TIMEOUT_R || ev == WEIR_CONN_TIMEOUT_W;
    weir_log_warn("pool %s server %s: response cut short (%s)", s->x->pool->name,
                  s->x->tried[s->x->ntried - 1]->address, timeout ? "timeout" : "connection lost");
    weir_x_note_outcome(s, timeout ? WEIR_OUTCOME_TIMEOUT : WEIR_OUTCOME_RESET);
    s->x->answer = 0;
    return WEIR_ERROR;
}

/* ---- tunnel (after 101) ---- */

/* Move what `from` read to `to`, unless `to` already has HWM queued (then
 * `from` fills to its read limit and stops reading until to's write event
 * moves again). */
static size_t tunnel_move(struct weir_conn *from, struct weir_conn *to)
{
    size_t n = evbuffer_get_length(from->in);
    if (n == 0)
        return 0;
    size_t room = weir_x_out_room(to);
    if (n > room)
        n = room;
    if (n > 0)
        evbuffer_remove_buffer(from->in, to->out, n);
    return n;
}

void weir_stunnel_start(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    s->x->req_done = 1;
    weir_x_tunnel_detach(s);
    s->cc->wr_lowat = WEIR_S_LWM;
    s->cc->rd_max = WEIR_S_HWM;
    s->x->up->conn->rd_max = WEIR_S_HWM;
    weir_conn_set_timeouts(s->cc, w->tv_idle, w->tv_idle);
    weir_conn_set_timeouts(s->x->up->conn, w->tv_idle, w->tv_idle);
}

int weir_stunnel_move(struct weir_session *s)
{
    struct weir_conn *uc = s->x->up->conn;
    s->x->bytes_out += tunnel_move(uc, s->cc);
    s->x->bytes_in += tunnel_move(s->cc, uc);
    if ((uc->eof || uc->error) && evbuffer_get_length(uc->in) == 0)
        return WEIR_DONE;
    return WEIR_AGAIN;
}
