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

struct weir_xprt_ops;

/* Take over an accepted client socket (plain TCP). Closes fd on failure. */
void weir_session_accept(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/*
 * Take over a socket accepted on listener `listener` (index into the
 * configuration's listen list): a TLS listener's connection gets the TLS
 * transport with the current snapshot's contexts (handshake within the
 * listener's handshake_timeout_ms), a redirect_https listener's requests
 * are answered 308. Closes fd on failure.
 */
void weir_session_accept_on(struct weir_worker *w, size_t listener, evutil_socket_t fd,
                            const struct sockaddr *sa, int salen);

/* The same over another transport (transport.h), e.g. TLS: xprt_ctx is the
 * transport's per-connection state (an SSL *), owned by the connection from
 * here on (its ops->close frees it, also when this call fails). A request
 * that came over a transport other than "plain" goes up with
 * X-Forwarded-Proto: https. */
void weir_session_accept_xprt(struct weir_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                              const struct weir_xprt_ops *xprt, void *xprt_ctx);

/* Graceful stop: close idle sessions now, the others after their current
 * exchange. */
void weir_session_drain_all(struct weir_worker *w);

/* Free the calling worker thread's scratch buffers (at thread exit). */
void weir_session_thread_exit(void);

/* Drain timeout passed: abort every session. */
void weir_session_abort_all(struct weir_worker *w);

#endif
