/*
 * origin_main.c - weir-origin's server plumbing: the per-connection state
 * machine that drives request parsing (origin_http.c) and responses
 * (origin.c), the bufferevent callbacks, accepting connections, worker
 * threads with one SO_REUSEPORT listener each, command-line options and
 * main().
 *
 * Depends on: origin.h (the settings, counters and struct worker defined in
 * origin.c, the request side of origin_http.c, the WebSocket echo of
 * origin_ws.c).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "origin.h"

static const char PATTERN64[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+\n";

/* ---------------------------------------------------------- connections */

/* Our last response is written: half-close and wait (bounded) for the peer's
 * FIN, so that unread input does not turn close() into a RST that destroys
 * the response in flight. */
static void conn_linger(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);

    if (c->eof) {
        c->dead = true;
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->state = ST_LINGER;
    bufferevent_set_timeouts(c->bev, c->w->linger_tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void conn_process(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int rc;

    while (!c->dead) {
        switch (c->state) {
        case ST_HEAD:
            if (evbuffer_get_length(out) >= ORIGIN_OUT_HIGH) /* a pipelining peer that does not read */
                return;
            rc = conn_read_head(c);
            if (rc == ORIGIN_AGAIN && !c->eof)
                return;
            if (rc == ORIGIN_AGAIN) { /* EOF between requests */
                c->req.keepalive = false;
                c->state = ST_CLOSING;
            } else if (rc > 0) {
                conn_error(c, rc, NULL);
            }
            break;
        case ST_BODY:
            rc = conn_read_body(c);
            if (rc == ORIGIN_AGAIN && !c->eof)
                return;
            if (rc == ORIGIN_AGAIN)
                c->dead = true; /* truncated body: nobody to answer */
            else if (rc > 0)
                conn_error(c, rc, NULL);
            else
                conn_dispatch(c);
            break;
        case ST_SEND:
            send_fill(c);
            if (c->state == ST_SEND)
                return;
            break;
        case ST_WS:
            if (origin_ws_echo(c->ws, in, out, ORIGIN_OUT_HIGH) != ORIGIN_WS_CLOSE && !c->eof)
                return;
            c->req.keepalive = false;
            c->state = ST_CLOSING;
            break;
        case ST_HANG:
            c->dead = c->eof;
            return;
        case ST_DELAY:
        case ST_SLOW:
            return;
        case ST_CLOSING:
            if (evbuffer_get_length(out) == 0)
                conn_linger(c);
            return;
        case ST_LINGER:
            evbuffer_drain(in, evbuffer_get_length(in));
            c->dead = c->eof;
            return;
        }
    }
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;

    event_del(&c->timer);
    bufferevent_free(c->bev);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    origin_ws_free(c->ws);
    free(c->head);
    free(c);
    DEC(g_stats.open);
}

/* Every callback ends here; c may be gone afterwards. */
static void conn_run(struct conn *c)
{
    conn_process(c);
    if (c->dead)
        conn_free(c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    conn_run(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    conn_run(arg);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_EOF) {
        c->eof = true;
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_WRITING)) { /* error, or the peer stopped reading */
        c->dead = true;
    } else if (c->state == ST_LINGER || ((c->state == ST_HEAD || c->state == ST_BODY) &&
                                         evbuffer_get_length(bufferevent_get_output(bev)) == 0)) {
        c->dead = true; /* read timeout while idle */
    } else {
        bufferevent_enable(bev, EV_READ); /* read timeout while busy answering: keep going */
    }
    conn_run(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (c->state == ST_DELAY)
        respond_route(c);
    else if (c->state == ST_SLOW)
        slow_tick(c);
    conn_run(c);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct worker *w = arg;
    struct conn *c;
    int one = 1;

    INC(g_stats.accepted);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    INC(g_stats.open);
    c->w = w;
    c->state = ST_HEAD;
    req_reset(&c->req);
    evtimer_assign(&c->timer, w->base, conn_timer_cb, c);
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, ORIGIN_IN_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, ORIGIN_OUT_LOW, 0);
    bufferevent_set_timeouts(c->bev, w->idle_tv, w->idle_tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* --tcp: a plain TCP server that says "hello\n" and closes. */
static void tcp_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
                          void *arg)
{
    INC(g_stats.accepted);
    if (send(fd, "hello\n", 6, MSG_NOSIGNAL) < 0 && g_settings.verbose)
        fprintf(stderr, "weir-origin %s: send: %s\n", g_settings.name, strerror(errno));
    evutil_closesocket(fd);
}

/* ---------------------------------------------------------------- main */

static struct worker *g_workers;

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    for (int i = 0; i < g_settings.threads; i++)
        event_base_loopbreak(g_workers[i].base);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

static int listen_socket(const struct sockaddr *sa, socklen_t salen, bool reuseport)
{
    int one = 1, e;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
        (!reuseport || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0) &&
        bind(fd, sa, salen) == 0 && listen(fd, 4096) == 0)
        return fd;
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: weir-origin [--listen IP:PORT] [--name NAME] [--delay-ms N] [--jitter-ms N]\n"
               "         [--fail-pct P] [--fail-status CODE] [--body-size N] [--chunked]\n"
               "         [--cache-control VALUE] [--health-status CODE] [--health-body TEXT]\n"
               "         [--threads N] [--tcp] [--verbose]\n");
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *v;
        size_t ol = eq ? (size_t)(eq - a) : strlen(a);
        char *end;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--chunked") == 0 || strcmp(a, "--verbose") == 0 || strcmp(a, "--tcp") == 0) {
            if (a[2] == 'c')
                STORE(g_settings.chunked, 1);
            g_settings.verbose |= a[2] == 'v';
            g_settings.tcp |= a[2] == 't';
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || (eq == NULL && i + 1 >= argc)) {
            usage(stderr);
            exit(2);
        }
        v = eq ? eq + 1 : argv[++i];
        if (key_is(a, ol, "--listen")) {
            g_settings.listen = v;
        } else if (key_is(a, ol, "--name")) {
            g_settings.name_len = strlen(v);
            if (g_settings.name_len > ORIGIN_NAME_MAX || strpbrk(v, "\r\n") != NULL) {
                fprintf(stderr, "weir-origin: --name: at most %d bytes, one line\n", ORIGIN_NAME_MAX);
                exit(2);
            }
            memcpy(g_settings.name, v, g_settings.name_len + 1);
        } else if (key_is(a, ol, "--threads")) {
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || t < 1 || t > ORIGIN_THREADS_MAX) {
                fprintf(stderr, "weir-origin: --threads: 1..%d\n", ORIGIN_THREADS_MAX);
                exit(2);
            }
            g_settings.threads = (int)t;
        } else if (setting_set(a + 2, ol - 2, v, strlen(v), false, false) == 0) {
            setting_set(a + 2, ol - 2, v, strlen(v), false, true);
        } else {
            fprintf(stderr, "weir-origin: unknown option or bad value: %.*s %s\n", (int)ol, a, v);
            usage(stderr);
            exit(2);
        }
    }
    if (g_settings.listen == NULL)
        g_settings.listen = "127.0.0.1:9001";
}

/* "IP:PORT", "[IPv6]:PORT", ":PORT" (all addresses) or "localhost:PORT";
 * port 0 lets the kernel choose. Returns 0 or -1. */
static int resolve(const char *spec, struct sockaddr_storage *ss, int *sl)
{
    char buf[300];
    size_t n;
    bool port0;

    if (strchr(spec, ':') == NULL)
        return -1;
    if (spec[0] == ':')
        snprintf(buf, sizeof(buf), "0.0.0.0%s", spec);
    else if (strncmp(spec, "localhost:", 10) == 0)
        snprintf(buf, sizeof(buf), "127.0.0.1%s", spec + 9);
    else
        snprintf(buf, sizeof(buf), "%s", spec);
    n = strlen(buf);
    port0 = n >= 2 && strcmp(buf + n - 2, ":0") == 0;
    if (port0) /* libevent refuses port 0 */
        buf[n - 1] = '1';
    *sl = (int)sizeof(*ss);
    if (evutil_parse_sockaddr_port(buf, (struct sockaddr *)ss, sl) < 0)
        return -1;
    if (port0 && ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = 0;
    else if (port0)
        ((struct sockaddr_in *)ss)->sin_port = 0;
    return 0;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    char h[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

    if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof(h));
        snprintf(buf, n, "[%s]:%u", h, ntohs(s6->sin6_port));
    } else {
        inet_ntop(AF_INET, &s4->sin_addr, h, sizeof(h));
        snprintf(buf, n, "%s:%u", h, ntohs(s4->sin_port));
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_storage ss;
    int sl;
    socklen_t bl;
    struct timeval idle = {ORIGIN_IDLE_SEC, 0}, linger = {ORIGIN_LINGER_SEC, 0};
    struct event *sigs[2] = {NULL, NULL};
    char addr[300];
    int rc = 1, started = 1;

    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < 256; i++)
        g_tchar[i] =
            (unsigned char)((i >= '0' && i <= '9') || (i >= 'a' && i <= 'z') || (i >= 'A' && i <= 'Z') ||
                            (i != 0 && strchr("!#$%&'*+-.^_`|~", i) != NULL));
    for (size_t i = 0; i < sizeof(g_pattern); i++)
        g_pattern[i] = PATTERN64[i % ORIGIN_PATTERN_LEN];
    if (resolve(g_settings.listen, &ss, &sl) < 0) {
        fprintf(stderr, "weir-origin: bad --listen '%s' (want IP:PORT)\n", g_settings.listen);
        return 2;
    }
    if (g_settings.threads > 1 && evthread_use_pthreads() < 0)
        return 1;
    g_workers = calloc((size_t)g_settings.threads, sizeof(*g_workers));
    if (g_workers == NULL)
        return 1;
    for (int i = 0; i < g_settings.threads; i++) {
        struct worker *w = &g_workers[i];
        int fd;

        w->rng = ((uint64_t)time(NULL) << 20) ^ ((uint64_t)getpid() << 8) ^
                 (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL;
        w->rng |= 1;
        w->base = event_base_new();
        if (w->base == NULL)
            goto out;
        w->idle_tv = event_base_init_common_timeout(w->base, &idle);
        w->linger_tv = event_base_init_common_timeout(w->base, &linger);
        fd = listen_socket((struct sockaddr *)&ss, (socklen_t)sl, g_settings.threads > 1);
        if (fd < 0) {
            fprintf(stderr, "weir-origin: listen on %s: %s\n", g_settings.listen, strerror(errno));
            goto out;
        }
        bl = sizeof(ss);
        if (i == 0) /* port 0: the other workers join the port the kernel chose */
            getsockname(fd, (struct sockaddr *)&ss, &bl);
        w->listener = evconnlistener_new(w->base, g_settings.tcp ? tcp_accept_cb : accept_cb, w,
                                         LEV_OPT_CLOSE_ON_FREE, 0, fd);
        if (w->listener == NULL) {
            close(fd);
            goto out;
        }
    }
    format_addr(&ss, addr, sizeof(addr));
    if (g_settings.name_len == 0) { /* the listen address, or the actual one for port 0 */
        const char *nm = strlen(g_settings.listen) >= 2 &&
                                 strcmp(g_settings.listen + strlen(g_settings.listen) - 2, ":0") == 0
                             ? addr
                             : g_settings.listen;
        g_settings.name_len = strlen(nm) < ORIGIN_NAME_MAX ? strlen(nm) : ORIGIN_NAME_MAX;
        memcpy(g_settings.name, nm, g_settings.name_len);
    }
    sigs[0] = evsignal_new(g_workers[0].base, SIGTERM, signal_cb, NULL);
    sigs[1] = evsignal_new(g_workers[0].base, SIGINT, signal_cb, NULL);
    if (sigs[0] == NULL || sigs[1] == NULL || evsignal_add(sigs[0], NULL) < 0 ||
        evsignal_add(sigs[1], NULL) < 0)
        goto out;
    printf("weir-origin %s listening on %s\n", g_settings.name, addr);
    fflush(stdout);
    for (; started < g_settings.threads; started++) {
        if (pthread_create(&g_workers[started].thread, NULL, worker_main, &g_workers[started]) != 0) {
            fprintf(stderr, "weir-origin: pthread_create failed\n");
            signal_cb(0, 0, NULL);
            break;
        }
    }
    if (started == g_settings.threads) {
        event_base_dispatch(g_workers[0].base);
        rc = 0;
    }
    for (int i = 1; i < started; i++)
        pthread_join(g_workers[i].thread, NULL);
out:
    for (int i = 0; i < 2; i++) {
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    }
    for (int i = 0; i < g_settings.threads; i++) {
        struct worker *w = &g_workers[i];
        while (w->conns != NULL)
            conn_free(w->conns);
        if (w->listener != NULL)
            evconnlistener_free(w->listener);
        if (w->base != NULL)
            event_base_free(w->base);
    }
    free(g_workers);
    free(g_last.buf);
    free(g_last_health.buf);
    libevent_global_shutdown();
    return rc;
}
