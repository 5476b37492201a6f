/*
 * admin_conn.c - the admin endpoint's connections: at most
 * admin.max_connections open (the listener stops accepting at the cap),
 * each request due whole within admin.request_timeout_ms, and the listener
 * paused instead of spinning when descriptors run out (accept_guard.h).
 * Plus the Host check's pure rule (DNS rebinding). Control thread only.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "weir/accept_guard.h"
#include "weir/admin.h"
#include "weir/log.h"

#define SWEEP_MS 100

/*
 * One admin connection, tracked from accept to close so their number can be
 * capped and each request given a deadline (evhttp 2.1 has neither: its
 * timeout restarts on every byte). evhttp creates each connection's
 * bufferevent through weir_admin_conn_bev; we keep a reference on it, so after evhttp
 * frees the connection (it then clears the callbacks and shuts the socket
 * for writing) the object stays valid until the sweep sees it unused and
 * drops the reference, which closes the socket. The sweep runs right after
 * evhttp frees a connection that carried a request (its close callback);
 * one that never did is found by the SWEEP_MS tick.
 */
struct admin_conn {
    struct bufferevent *bev;
    long long deadline_ms; /* monotonic: the request must have arrived by then */
    int has_closecb;       /* evhttp tells us when it frees the connection */
    TAILQ_ENTRY(admin_conn) link;
};

static struct {
    TAILQ_HEAD(, admin_conn) conns;
    int nconns;
    struct event *sweep; /* SWEEP_MS while connections are open */
    struct event *reap;  /* activated when evhttp frees a connection: close it at once */
    struct weir_accept_guard *guard;
    long long cap_logged_ms; /* last "at the connection cap" line */
    unsigned long cap_hits;  /* times the cap was reached since that line */
    unsigned long timeouts;  /* requests cut at their deadline */
} C;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void admin_limits(int *max_conns, int *timeout_ms)
{
    struct weir_rt *rt = weir_rt_current();
    *max_conns = rt ? rt->conf->admin.max_connections : 64;
    *timeout_ms = rt ? rt->conf->admin.request_timeout_ms : 10000;
    weir_rt_release(rt);
}

/* At the cap, stop accepting (connections wait in the backlog) until one
 * closes; one log line per 10 s of such bursts. */
static void check_cap(void)
{
    int max_conns, timeout_ms;

    admin_limits(&max_conns, &timeout_ms);
    if (C.nconns < max_conns) {
        weir_accept_guard_hold(C.guard, 0);
        return;
    }
    if (C.guard->held)
        return;
    weir_accept_guard_hold(C.guard, 1);
    C.cap_hits++;
    long long now = mono_ms();
    if (now - C.cap_logged_ms >= 10000) {
        weir_log_warn(
            "admin: %d connections open, the most admin.max_connections allows; new ones wait until "
            "one closes (%lu time(s) since the last such line)",
            C.nconns, C.cap_hits);
        C.cap_logged_ms = now;
        C.cap_hits = 0;
    }
}

static void conn_release(struct admin_conn *c)
{
    TAILQ_REMOVE(&C.conns, c, link);
    C.nconns--;
    bufferevent_decref(c->bev); /* the last reference: closes the socket */
    free(c);
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct admin_conn *c, *next;
    long long now = mono_ms();

    (void)fd, (void)what, (void)arg;
    for (c = TAILQ_FIRST(&C.conns); c != NULL; c = next) {
        bufferevent_data_cb rcb, wcb;
        bufferevent_event_cb ecb;
        next = TAILQ_NEXT(c, link);
        bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, NULL);
        if (rcb == NULL && wcb == NULL && ecb == NULL) { /* evhttp is done with it */
            conn_release(c);
        } else if (now >= c->deadline_ms) {
            /* Too slow: end it the way a peer would; evhttp sees the EOF
             * and frees the connection, the next sweep closes it. */
            evutil_socket_t s = bufferevent_getfd(c->bev);
            if (s >= 0)
                shutdown(s, SHUT_RDWR);
            c->deadline_ms = now + 1000000000LL;
            C.timeouts++;
            weir_log_debug("admin: a request took longer than admin.request_timeout_ms; connection closed");
        }
    }
    check_cap();
    if (C.nconns > 0) {
        struct timeval tv = {0, SWEEP_MS * 1000};
        evtimer_add(C.sweep, &tv);
    }
}

/* Every admin connection's bufferevent, created by evhttp through this
 * callback when it accepts: tracked (struct admin_conn) and counted.
 *
 * libevent 2.1's evhttp, freeing a connection from inside one of the
 * connection's own callbacks, closes the socket itself while the bufferevent's
 * events are still registered; they come off later (epoll_ctl DEL -> EBADF).
 * Between the two a worker thread may accept a client that gets the same
 * descriptor number, and the late DEL then names the worker's socket: the
 * kernel shrugs (ENOENT), ThreadSanitizer rightly reports a cross-thread use.
 * Handing evhttp a bufferevent that owns its socket (BEV_OPT_CLOSE_ON_FREE)
 * makes evhttp leave the close to the bufferevent, which deletes its events
 * first and closes after. */
struct bufferevent *weir_admin_conn_bev(struct event_base *base, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct admin_conn *c = bev != NULL ? calloc(1, sizeof(*c)) : NULL;
    int max_conns, timeout_ms;

    (void)arg;
    if (c == NULL)
        return bev; /* untracked; evhttp still serves it */
    admin_limits(&max_conns, &timeout_ms);
    bufferevent_incref(bev);
    c->bev = bev;
    c->deadline_ms = mono_ms() + timeout_ms;
    TAILQ_INSERT_TAIL(&C.conns, c, link);
    C.nconns++;
    if (!evtimer_pending(C.sweep, NULL)) {
        struct timeval tv = {0, SWEEP_MS * 1000};
        evtimer_add(C.sweep, &tv);
    }
    check_cap();
    return bev;
}

/* evhttp is freeing this connection (it still uses the bufferevent until
 * it returns): have the sweep run right after, which drops our reference
 * and so closes the socket without waiting for the next SWEEP_MS tick. */
static void conn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon, (void)arg;
    if (C.reap != NULL)
        event_active(C.reap, EV_TIMEOUT, 0);
}

/* A request arrived whole on the connection: the next one gets a fresh
 * deadline (keep-alive). */
void weir_admin_conn_request(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct admin_conn *c;
    int max_conns, timeout_ms;

    admin_limits(&max_conns, &timeout_ms);
    TAILQ_FOREACH(c, &C.conns, link)
    {
        if (c->bev == bev) {
            c->deadline_ms = mono_ms() + timeout_ms;
            if (!c->has_closecb) {
                evhttp_connection_set_closecb(evcon, conn_closed_cb, NULL);
                c->has_closecb = 1;
            }
            break;
        }
    }
}

static void admin_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l, (void)arg;
    weir_accept_guard_error(C.guard, EVUTIL_SOCKET_ERROR());
}

void weir_admin_conn_listener(struct evconnlistener *l)
{
    evconnlistener_set_error_cb(l, admin_accept_error);
    weir_accept_guard_add(C.guard, l);
}

void weir_admin_conn_stop_accepting(void)
{
    weir_accept_guard_clear(C.guard);
}

int weir_admin_conn_init(struct event_base *base)
{
    memset(&C, 0, sizeof(C));
    TAILQ_INIT(&C.conns);
    C.sweep = evtimer_new(base, sweep_cb, NULL);
    C.reap = event_new(base, -1, 0, sweep_cb, NULL);
    C.guard = weir_accept_guard_new(base, "admin");
    return C.sweep != NULL && C.reap != NULL && C.guard != NULL ? 0 : -1;
}

/* ---- Host header (DNS rebinding) ---- */

int weir_admin_host_allowed(const char *host, const char *const *allowed, size_t nallowed)
{
    char name[256];
    size_t n;

    if (host == NULL)
        return 1; /* HTTP/1.0 without Host: not a browser */
    while (*host == ' ' || *host == '\t')
        host++;
    if (host[0] == '[') /* an IPv6 literal: no name to rebind */
        return strchr(host, ']') != NULL;
    n = strcspn(host, ":");
    if (n == 0 || n >= sizeof(name))
        return 0;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)weir_lower((unsigned char)host[i]);
    name[n] = '\0';
    while (n > 0 && name[n - 1] == '.') /* "localhost." is "localhost" */
        name[--n] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1) /* an IPv4 literal: no name to rebind */
        return 1;
    if (strcmp(name, "localhost") == 0 || (n > 10 && strcmp(name + n - 10, ".localhost") == 0))
        return 1; /* RFC 6761: always loopback, browsers do not resolve it */
    for (size_t i = 0; i < nallowed; i++) {
        const char *p = allowed[i];
        if (strncmp(p, "*.", 2) == 0) {
            size_t k = strlen(p + 1); /* ".suffix" */
            if (n > k && strcmp(name + n - k, p + 1) == 0)
                return 1;
        } else if (strcmp(name, p) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Drop every tracked connection (after evhttp_free), the sweep and the guard. */
void weir_admin_conn_fini(void)
{
    struct admin_conn *c;

    while ((c = TAILQ_FIRST(&C.conns)) != NULL)
        conn_release(c);
    if (C.sweep != NULL)
        event_free(C.sweep);
    if (C.reap != NULL)
        event_free(C.reap);
    C.sweep = C.reap = NULL;
    weir_accept_guard_free(C.guard);
    C.guard = NULL;
}
