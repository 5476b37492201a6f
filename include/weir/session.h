/*
 * session.h - one client connection and the request/response exchange on it.
 *
 * A session reads a request head, routes it, picks a server, forwards the
 * head and streams the body with backpressure, then streams the response
 * back; keep-alive and pipelined requests are answered in order, one at a
 * time. Worker thread only.
 */
#ifndef WEIR_SESSION_H
#define WEIR_SESSION_H

#include <sys/socket.h>

#include <event2/util.h>

struct weir_worker;

/* Take over an accepted client socket. Closes fd on failure. */
void weir_session_accept(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Graceful stop: close idle sessions now, the others after their current
 * exchange. */
void weir_session_drain_all(struct weir_worker *w);

/* Free the calling worker thread's scratch buffers (at thread exit). */
void weir_session_thread_exit(void);

/* Drain timeout passed: abort every session. */
void weir_session_abort_all(struct weir_worker *w);

#endif
