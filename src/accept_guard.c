/* accept_guard.c - back off listeners on EMFILE/ENFILE instead of spinning. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir/accept_guard.h"
#include "weir/log.h"

#define PAUSE_MIN_MS 100
#define PAUSE_MAX_MS 1000
#define BURST_GAP_MS 1000

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int weir_accept_error_is_resource(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_accept_guard *g = arg;

    (void)fd;
    (void)what;
    g->paused = 0;
    if (!g->held)
        for (size_t i = 0; i < g->n; i++)
            evconnlistener_enable(g->ls[i]);
}

void weir_accept_guard_hold(struct weir_accept_guard *g, int on)
{
    if (g->held == !!on)
        return;
    g->held = !!on;
    for (size_t i = 0; i < g->n; i++) {
        if (on)
            evconnlistener_disable(g->ls[i]);
        else if (!g->paused)
            evconnlistener_enable(g->ls[i]);
    }
}

struct weir_accept_guard *weir_accept_guard_new(struct event_base *base, const char *who)
{
    struct weir_accept_guard *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    snprintf(g->who, sizeof(g->who), "%s", who);
    g->resume = evtimer_new(base, resume_cb, g);
    if (g->resume == NULL) {
        free(g);
        return NULL;
    }
    return g;
}

int weir_accept_guard_add(struct weir_accept_guard *g, struct evconnlistener *l)
{
    if (g->n == WEIR_ACCEPT_GUARD_MAX)
        return -1;
    g->ls[g->n++] = l;
    return 0;
}

void weir_accept_guard_clear(struct weir_accept_guard *g)
{
    if (g == NULL)
        return;
    evtimer_del(g->resume);
    g->n = 0;
    g->paused = 0;
}

void weir_accept_guard_free(struct weir_accept_guard *g)
{
    if (g == NULL)
        return;
    event_free(g->resume);
    free(g);
}

int weir_accept_guard_error(struct weir_accept_guard *g, int err)
{
    long long now = mono_ms();
    int resource = weir_accept_error_is_resource(err);

    if (now - g->last_error_ms > BURST_GAP_MS) {
        /* A new burst: one line, with the size of the previous one. */
        g->prev_burst_errors = g->burst_errors;
        g->burst_errors = 0;
        g->pause_ms = 0;
        if (g->prev_burst_errors > 1)
            weir_log_error("%s: accept: %s%s (the previous burst had %lu failures)", g->who, strerror(err),
                           resource ? "; pausing accepts until descriptors free up" : "",
                           g->prev_burst_errors);
        else
            weir_log_error("%s: accept: %s%s", g->who, strerror(err),
                           resource ? "; pausing accepts until descriptors free up" : "");
    }
    g->burst_errors++;
    g->last_error_ms = now;
    if (!resource)
        return 0;
    g->pause_ms = g->pause_ms == 0 ? PAUSE_MIN_MS : g->pause_ms * 2;
    if (g->pause_ms > PAUSE_MAX_MS)
        g->pause_ms = PAUSE_MAX_MS;
    for (size_t i = 0; i < g->n; i++)
        evconnlistener_disable(g->ls[i]);
    g->paused = 1;
    struct timeval tv = {g->pause_ms / 1000, (g->pause_ms % 1000) * 1000};
    evtimer_add(g->resume, &tv);
    return 1;
}
