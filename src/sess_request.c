/*
 * sess_request.c - the request stage: parse the request head, apply the
 * limits, keep the log fields, give the request its id, route it and build
 * the head that goes upstream. Returns to session.c; calls no other stage.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "session_int.h"
#include "weir/https_redirect.h"
#include "weir/http_msg.h"
#include "weir/lb.h"
#include "weir/log.h"

static int is_idempotent(int m)
{
    return m == WEIR_HTTP_GET || m == WEIR_HTTP_HEAD || m == WEIR_HTTP_PUT || m == WEIR_HTTP_DELETE ||
           m == WEIR_HTTP_OPTIONS || m == WEIR_HTTP_TRACE;
}

static void make_request_id(struct weir_session *s)
{
    static const char hex[] = "0123456789abcdef";
    /* The first half (salt and worker) only changes with the worker: kept
     * in hex per thread. */
    static __thread uint64_t pre_key;
    static __thread char pre[16];
    struct weir_worker *w = s->w;
    uint64_t a = ((uint64_t)w->rid_salt << 32) | (uint32_t)w->id;
    if (pre_key != a || pre[0] == '\0') {
        for (int i = 0; i < 16; i++)
            pre[i] = hex[(a >> (60 - 4 * i)) & 15];
        pre_key = a;
    }
    uint64_t b = ++w->rid_seq;
    memcpy(s->x->rid, pre, 16);
    for (int i = 0; i < 16; i++)
        s->x->rid[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    s->x->rid[32] = '\0';
}

/* Normalise host[:port] to lower-case host without port. Returns length or
 * -1 when it does not fit. */
static int normalize_host(const char *h, size_t n, char *out, size_t cap)
{
    size_t end = n;
    if (n > 0 && h[0] == '[') {
        const char *rb = memchr(h, ']', n);
        end = rb ? (size_t)(rb - h) + 1 : n;
    } else {
        const char *colon = memchr(h, ':', n);
        if (colon != NULL)
            end = (size_t)(colon - h);
    }
    if (end >= cap)
        return -1;
    for (size_t i = 0; i < end; i++)
        out[i] = (char)weir_lower((unsigned char)h[i]);
    out[end] = '\0';
    return (int)end;
}

static void raw_host(const struct weir_http_msg *m, const char **p, size_t *n)
{
    *p = "";
    *n = 0;
    if (m->authority != NULL) {
        *p = m->authority;
        *n = m->authority_len;
    } else if (m->host_idx >= 0) {
        *p = m->headers[m->host_idx].value;
        *n = m->headers[m->host_idx].value_len;
    }
}

static void route_path(const struct weir_http_msg *m, const char **p, size_t *n)
{
    *p = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    *n = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    if (m->target_form == WEIR_TARGET_ASTERISK) {
        *p = "/";
        *n = 1;
    }
}

static uint64_t hash_key(struct weir_session *s, const struct weir_http_msg *m)
{
    const struct weir_conf_pool *cp = s->x->pool->conf;
    if (cp->hash_key == WEIR_HASH_CLIENT_IP)
        return weir_lb_hash64(s->peer, s->peer_len);
    if (cp->hash_key == WEIR_HASH_HEADER && cp->hash_header != NULL) {
        int i = weir_http_find_header(m, cp->hash_header);
        if (i >= 0)
            return weir_lb_hash64(m->headers[i].value, m->headers[i].value_len);
    }
    const char *p = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t n = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    return weir_lb_hash64(p, n);
}

/* Refuse with `status` after consuming the head. */
static int refuse(struct weir_session *s, int status, const char *detail, int close)
{
    evbuffer_drain(s->cc->in, s->x->head_len);
    s->x->head_p = NULL;
    s->x->answer = status;
    s->x->detail = detail;
    s->x->answer_close = close;
    return WEIR_ERROR;
}

/* The port HTTPS is served on: the first TLS listener's (443 when none). */
static int https_port(const struct weir_conf *conf)
{
    for (size_t i = 0; i < conf->nlistens; i++) {
        const struct sockaddr_storage *ss = &conf->listens[i].addr.ss;
        if (!conf->listens[i].tls.enabled)
            continue;
        if (ss->ss_family == AF_INET)
            return ntohs(((const struct sockaddr_in *)ss)->sin_port);
        if (ss->ss_family == AF_INET6)
            return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    return 443;
}

/* redirect_https listener: 308 to the same host and target over https (the
 * body, if any, is not read: the connection closes after the answer). */
static int redirect_https(struct weir_session *s, const struct weir_http_msg *m, const struct weir_conf *conf,
                          const char *host, size_t host_len)
{
    char loc[8192];
    const char *t = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path : m->target;
    size_t tl = m->target_form == WEIR_TARGET_ABSOLUTE ? m->path_len : m->target_len;
    int n = weir_https_location(loc, sizeof(loc), host, host_len, t, tl, https_port(conf));
    if (n < 0)
        return refuse(s, 400, "no valid Host to redirect to", 1);
    if ((s->x->location = strndup(loc, (size_t)n)) == NULL)
        return refuse(s, 500, NULL, 1);
    return refuse(s, 308, NULL, !s->x->req_done);
}

/* A complete, valid request head is at the front of the client input. */
static int route(struct weir_session *s, struct weir_http_msg *m, const char *p)
{
    struct weir_worker *w = s->w;
    s->scan_pos = s->scan_lines = 0;
    s->x->head_p = p;
    s->x->head_len = m->head_len;
    s->nreq++;
    s->x->bytes_in = m->head_len;
    weir_worker_sync_rt(w);
    s->x->rt = w->rt;
    weir_rt_retain(s->x->rt);
    s->x->method_id = m->method_id;
    s->x->version = m->version;
    s->x->idempotent = is_idempotent(m->method_id);
    s->x->req_body = m->body;
    s->x->req_left = m->content_length;
    s->x->req_done = m->body == WEIR_BODY_NONE || (m->body == WEIR_BODY_LENGTH && m->content_length == 0);
    weir_chunked_init(&s->x->req_chunk);
    s->close_after = !(m->flags & WEIR_HTTP_F_KEEPALIVE);

    int ri = weir_http_find_header(m, "x-request-id");
    if (ri >= 0 && m->headers[ri].value_len > 0 && m->headers[ri].value_len < sizeof(s->x->rid)) {
        memcpy(s->x->rid, m->headers[ri].value, m->headers[ri].value_len);
        s->x->rid[m->headers[ri].value_len] = '\0';
    } else {
        make_request_id(s);
    }

    const char *hraw;
    size_t hraw_len;
    raw_host(m, &hraw, &hraw_len);
    if (weir_alog_fd() >= 0) { /* the fields are only kept for the access log */
        weir_x_lf_set(s, LF_METHOD, m->method, m->method_len);
        weir_x_lf_set(s, LF_TARGET, m->target, m->target_len);
        weir_x_lf_set(s, LF_HOST, hraw, hraw_len);
        int i = weir_http_find_header(m, "referer");
        if (i >= 0)
            weir_x_lf_set(s, LF_REFERER, m->headers[i].value, m->headers[i].value_len);
        i = weir_http_find_header(m, "user-agent");
        if (i >= 0)
            weir_x_lf_set(s, LF_UA, m->headers[i].value, m->headers[i].value_len);
    }

    if (m->method_id == WEIR_HTTP_CONNECT)
        return refuse(s, 405, "CONNECT is not supported by this reverse proxy", 1);
    const struct weir_conf *conf = s->x->rt->conf;
    if (s->listener < conf->nlistens && conf->listens[s->listener].redirect_https)
        return redirect_https(s, m, conf, hraw, hraw_len);
    char host[256];
    int hl = normalize_host(hraw, hraw_len, host, sizeof(host));
    if (hl < 0)
        return refuse(s, 400, "host name too long", 1);
    const char *path;
    size_t path_len;
    route_path(m, &path, &path_len);
    const struct weir_route *rte = weir_rt_route(s->x->rt, host, (size_t)hl, path, path_len);
    if (rte == NULL)
        return refuse(s, 404, "no route for this host and path", !s->x->req_done);
    s->x->pool = rte->pool;
    s->x->route = rte;
    s->x->upgrade = (m->flags & WEIR_HTTP_F_UPGRADE) != 0;
    if (s->x->upgrade) {
        int ui = weir_http_find_header(m, "upgrade");
        const struct weir_http_header *uh = &m->headers[ui];
        /* An h2c upgrade is never forwarded: a server that switches would
         * get a tunnel past every rule of this proxy (h2c smuggling). The
         * request goes up as plain HTTP/1.1 (Upgrade and the fields named
         * in Connection, HTTP2-Settings, are hop-by-hop and dropped). */
        if (ui < 0 || weir_http_list_has(uh->value, uh->value_len, "h2c"))
            s->x->upgrade = 0;
        else if ((s->x->up_proto = strndup(uh->value, uh->value_len)) == NULL)
            return refuse(s, 500, NULL, 1);
    }
    s->x->hash = hash_key(s, m);
    s->x->uphead_pending = 1; /* built after the hooks, unless one answers */
    return WEIR_OK;
}

int weir_sreq_build_uphead(struct weir_session *s)
{
    if (!s->x->uphead_pending)
        return WEIR_OK;
    if (s->x->head_p == NULL)
        return WEIR_ERROR; /* the parsed head is gone */
    const struct weir_http_msg *m = &s->w->msg;
    const char *hraw;
    size_t hraw_len;
    raw_host(m, &hraw, &hraw_len);
    struct weir_sbuf b = {s->x->uphead, 0, s->x->uphead_cap, 0};
    struct weir_up_head_params hp = {
        .host = hraw,
        .host_len = hraw_len,
        .client = s->peer,
        .client_len = s->peer_len,
        .proto = strcmp(s->cc->xprt->name, "plain") == 0 ? "http" : "https",
        .rid = s->x->rid,
        .upgrade = s->x->upgrade,
    };
    int rc = weir_http_build_upstream_head(&b, m, &hp);
    s->x->uphead = b.p;
    s->x->uphead_cap = b.cap;
    s->x->uphead_len = b.len;
    s->x->uphead_pending = 0;
    return rc;
}

int weir_sreq_head(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    struct evbuffer *in = s->cc->in;
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return s->cc->eof ? WEIR_DONE : WEIR_AGAIN;
    size_t max_head = w->rt->conf->limits.header_bytes;
    size_t cap = (max_head > WEIR_HTTP_MAX_REQUEST_LINE ? max_head : WEIR_HTTP_MAX_REQUEST_LINE) + 4;
    size_t want = len < cap ? len : cap;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
    /* The parser clears its outputs itself; only the resume point is
     * carried between reads (no 5 KiB memset per parse). */
    struct weir_http_msg *m = &w->msg;
    m->scan_pos = s->scan_pos;
    m->scan_lines = s->scan_lines;
    int rc = weir_http_parse_request(p, want, max_head, m);
    if (rc == WEIR_AGAIN) {
        s->scan_pos = (uint32_t)m->scan_pos;
        s->scan_lines = (uint32_t)m->scan_lines;
        /* a head that can never complete */
        return s->cc->eof || s->peer_eof ? WEIR_DONE : WEIR_AGAIN;
    }
    if (rc != WEIR_OK) {
        weir_log_debug("client %s: bad request (%d): %s", s->peer, m->error_status,
                       m->error ? m->error : "invalid");
        if (s->x->rid[0] == '\0')
            make_request_id(s);
        s->x->req_done = 1;
        s->scan_pos = s->scan_lines = 0;
        evbuffer_drain(in, len);
        s->x->answer = m->error_status ? m->error_status : 400;
        s->x->detail = m->error;
        s->x->answer_close = 1;
        return WEIR_ERROR;
    }
    return route(s, m, p);
}

int weir_sreq_info(struct weir_session *s, struct weir_req_info *ri)
{
    const struct weir_http_msg *m = &s->w->msg;
    const char *hraw, *path;
    size_t hraw_len, path_len;
    char host[256];
    raw_host(m, &hraw, &hraw_len);
    int hl = normalize_host(hraw, hraw_len, host, sizeof(host));
    route_path(m, &path, &path_len);
    free(s->x->host_copy);
    free(s->x->target_copy);
    s->x->host_copy = strndup(host, hl > 0 ? (size_t)hl : 0);
    s->x->target_copy = strndup(path, path_len);
    if (s->x->host_copy == NULL || s->x->target_copy == NULL)
        return WEIR_ERROR;
    *ri = (struct weir_req_info){
        .msg = m,
        .method_id = s->x->method_id,
        .host = s->x->host_copy,
        .host_len = hl > 0 ? (size_t)hl : 0,
        .target = s->x->target_copy,
        .target_len = path_len,
        .route = s->x->route,
        .pool = s->x->pool,
        .request_id = s->x->rid,
        .has_body = !s->x->req_done,
        .scheme = strcmp(s->cc->xprt->name, "plain") == 0 ? "http" : "https",
    };
    return WEIR_OK;
}

void weir_sreq_consume(struct weir_session *s)
{
    struct weir_worker *w = s->w;
    evbuffer_drain(s->cc->in, s->x->head_len);
    s->x->head_p = NULL;
    /* Client reading stays on for the whole exchange (no epoll churn): a
     * body waits in the client buffer until a server is connected, bounded
     * by the read high-water mark, and so do pipelined requests. The body
     * read timeout applies while a body is expected; without a body the
     * idle/header timer stays armed (lazily: session.c ignores it while a
     * complete request is answered, so no timer is re-armed per request). */
    if (!s->x->req_done)
        weir_conn_set_timeouts(s->cc, w->tv_body, w->tv_idle);
}
