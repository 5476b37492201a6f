/*
 * accept_guard.h - what a listener does when accept() fails for want of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): instead of
 * spinning on a readable listening socket and logging every failure, every
 * listener of the guard stops accepting for a short pause (100 ms, doubling
 * up to 1 s while the failures go on), a timer turns them back on, and one
 * line is logged per burst (a burst ends after a second without failure;
 * the next line says how many failures the previous burst had).
 *
 * A guard lives on one event_base and is used by the thread that runs it
 * (a worker for its listeners, the control thread for the admin listener).
 */
#ifndef WEIR_ACCEPT_GUARD_H
#define WEIR_ACCEPT_GUARD_H

#include <stddef.h>

#include <event2/event.h>
#include <event2/listener.h>

#define WEIR_ACCEPT_GUARD_MAX 16 /* listeners per guard */

struct weir_accept_guard {
    char who[64]; /* "worker 2", "admin": the log lines' subject */
    struct evconnlistener *ls[WEIR_ACCEPT_GUARD_MAX];
    size_t n;
    struct event *resume; /* timer: re-enable the listeners */
    int pause_ms;         /* current pause; 0 when accepting */
    int paused;           /* the listeners are disabled by the back-off */
    int held;             /* the owner holds them disabled (weir_accept_guard_hold) */
    unsigned long burst_errors, prev_burst_errors;
    long long last_error_ms; /* monotonic */
};

/* A guard for listeners on `base`, named `who` in the log. NULL when out of
 * memory. */
struct weir_accept_guard *weir_accept_guard_new(struct event_base *base, const char *who);
/* Add a listener (up to WEIR_ACCEPT_GUARD_MAX). 0 or -1. */
int weir_accept_guard_add(struct weir_accept_guard *g, struct evconnlistener *l);
/* Forget every listener (before they are freed) and cancel the timer. */
void weir_accept_guard_clear(struct weir_accept_guard *g);
void weir_accept_guard_free(struct weir_accept_guard *g);

/*
 * Handle the accept error `err` (errno value) of one of the guard's
 * listeners: for out-of-descriptor/memory errors pause them all and return
 * 1; for anything else log it (rate limited as well) and return 0.
 */
int weir_accept_guard_error(struct weir_accept_guard *g, int err);

/* Hold the listeners disabled (on = 1: e.g. a connection cap is reached)
 * or release them (on = 0: they accept again unless a back-off pause runs). */
void weir_accept_guard_hold(struct weir_accept_guard *g, int on);

/* 1 for the errors that pause accepting (EMFILE, ENFILE, ENOBUFS, ENOMEM). Pure. */
int weir_accept_error_is_resource(int err);

#endif
