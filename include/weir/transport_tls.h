/*
 * transport_tls.h - the TLS transport: struct weir_xprt_ops over an OpenSSL
 * SSL (see transport.h for the contract every transport keeps).
 *
 * The transport state (c->xprt_ctx) is made before the conn, from a
 * listener's server contexts (accepted connections) or a pool's client
 * context (connections to backends), and is owned by the conn from
 * weir_conn_new()/weir_conn_connect() on: the close op frees it. If the
 * conn cannot be made, free it with weir_xprt_tls_free(). The socket is
 * attached at the first op, so a connect can create it later.
 *
 * Handshake. A deadline of handshake_timeout_ms from the state's creation:
 * a handshake op that runs after it fails with c->err = ETIMEDOUT (this
 * bounds a client that trickles its hello); the owner sets the conn's read
 * timeout to the same value during the handshake, which catches a client
 * that sends nothing. A server-side handshake is counted in its listener's
 * counters when it completes or fails (with its reason); one that never
 * finished when the conn is freed counts as "timeout" once the deadline
 * passed, "closed" before. Renegotiation is refused by the contexts; no
 * handshake happens after the first.
 *
 * Data. recv reads at most `max` bytes of plaintext into reserved space;
 * bytes OpenSSL already decrypted beyond that set c->pending. A peer's
 * close_notify, and a TCP close without one (HTTP/1.1 peers do that; HTTP
 * framing catches a truncated body), are EOF (0). send writes up to one
 * full TLS record (16 KiB) from the front of the output per call.
 * shutdown sends close_notify, then shuts the socket's sending side.
 * WANT_READ/WANT_WRITE from OpenSSL map to c->want as transport.h says.
 * Every failure clears the thread's OpenSSL error queue.
 *
 * Wiring (worker accept path; upstream connect is alike with
 * weir_xprt_tls_client_new(set->clients[pool], host, address, connect_ms)):
 *
 *     struct weir_tls_server *ts = set->servers[listener];   (NULL: plain)
 *     void *x = ts ? weir_xprt_tls_server_new(ts) : NULL;
 *     setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, ...);   (else Nagle holds a
 *         response behind the TLS 1.3 tickets, ~40 ms per new connection)
 *     c = weir_conn_new(base, fd, x ? &weir_xprt_tls : &weir_xprt_plain, x, h, ctx);
 *     if (c == NULL) weir_xprt_tls_free(x);
 *     weir_conn_set_timeouts(c, &handshake_tv, &handshake_tv);
 *     weir_conn_read(c, 1); weir_conn_start(c);
 *     ... the first WEIR_CONN_READ means the handshake is done: switch to
 *     the client_header timeout; weir_tls_info(weir_xprt_tls_ssl(c), ...)
 *     gives the access log's version, cipher and SNI.
 *
 * Worker thread only, like the conn. Targets transport.h of h-session
 * commit b5a271d.
 */
#ifndef WEIR_TRANSPORT_TLS_H
#define WEIR_TRANSPORT_TLS_H

#include <openssl/ssl.h>

#include "weir/tls.h"
#include "weir/transport.h"

extern const struct weir_xprt_ops weir_xprt_tls;

/* Transport state for a connection accepted on a TLS listener (the
 * listener's handshake_timeout_ms applies). NULL on allocation failure. */
void *weir_xprt_tls_server_new(struct weir_tls_server *s);

/* Transport state for a connection to a backend whose configured host is
 * `host` and whose address is `session_key` (see weir_tls_client_ssl),
 * with a handshake deadline of timeout_ms (the pool's connect timeout,
 * typically). NULL on failure. */
void *weir_xprt_tls_client_new(struct weir_tls_client *cl, const char *host, const char *session_key,
                               int timeout_ms);

/* Free a state that no conn took over. NULL is accepted. */
void weir_xprt_tls_free(void *xprt_ctx);

/* The SSL of a conn using weir_xprt_tls (NULL for another transport), for
 * weir_tls_info() in the access log. */
SSL *weir_xprt_tls_ssl(const struct weir_conn *c);

/* The owner's handshake timer fired (the conn's read timeout, which the
 * event loop's cached clock may run a little ahead of the deadline): a
 * handshake not done counts as "timeout" when the conn is freed. No-op for
 * another transport or a finished handshake. */
void weir_xprt_tls_timed_out(struct weir_conn *c);

/* Why the last handshake or I/O of c failed, for a log line ("certificate
 * verify failed (hostname mismatch)", "timeout"...); "" when it did not
 * fail or the conn is not TLS. */
const char *weir_xprt_tls_error(const struct weir_conn *c);

/* The WEIR_TLS_FAIL_* reason of a failed handshake, -1 when none failed. */
int weir_xprt_tls_fail_reason(const struct weir_conn *c);

#endif
