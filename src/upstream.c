/* upstream.c - backend connections and per-worker keep-alive pools. */
#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "weir/log.h"
#include "weir/stats.h"
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
    bufferevent_free(c->bev);
    weir_server_release(c->server);
    free(c);
}

/* Anything happening on an idle connection ends it: data the server sent
 * unasked, its close, an error or the idle timeout. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    struct weir_upconn *c = arg;
    unlink_idle(c);
    weir_up_close(c);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    idle_read_cb(bev, arg);
}

struct weir_upconn *weir_up_take_idle(struct weir_worker *w, struct weir_server *s, uint64_t max_idle_us)
{
    struct weir_server_idle *si = s->idle[w->id];
    if (si == NULL || si->n == 0)
        return NULL;
    struct weir_upconn *c = TAILQ_FIRST(&si->list);
    if (max_idle_us != 0 && weir_now_us() - c->idle_since_us > max_idle_us)
        return NULL;
    unlink_idle(c);
    return c;
}

struct weir_upconn *weir_up_connect(struct weir_worker *w, struct weir_server *s, bufferevent_data_cb rd,
                                    bufferevent_data_cb wr, bufferevent_event_cb ev, void *ctx)
{
    struct weir_upconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->server = s;
    weir_server_retain(s);
    bufferevent_setcb(c->bev, rd, wr, ev, ctx);
    /* libevent applies the write timeout to the connect itself */
    bufferevent_set_timeouts(c->bev, NULL, w->tv_connect);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) != 0) {
        /* An immediate failure (e.g. no route) is reported through the event
         * callback by libevent only for some errors; return NULL for the
         * rest so the caller retries elsewhere. */
        weir_up_close(c);
        return NULL;
    }
    return c;
}

void weir_up_release_idle(struct weir_upconn *c, size_t max_idle)
{
    struct weir_worker *w = c->w;
    struct weir_server_idle *si = idle_of(w, c->server);
    if (si == NULL || w->draining || si->n >= max_idle ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) != 0) {
        weir_up_close(c);
        return;
    }
    c->idle_since_us = weir_now_us();
    bufferevent_setcb(c->bev, idle_read_cb, NULL, idle_event_cb, c);
    bufferevent_set_timeouts(c->bev, w->tv_up_idle, NULL);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
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
