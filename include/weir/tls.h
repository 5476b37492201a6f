/*
 * tls.h - OpenSSL 3 contexts: one server side per TLS listener, one client
 * side per TLS pool, the process's session-ticket keys and the TLS counters.
 *
 * Server side (struct weir_tls_server, from listen[].tls):
 *  - Several certificates; the client's SNI chooses: the exact name, then a
 *    wildcard ("*.example.com" covers "a.example.com", not "example.com"
 *    nor "a.b.example.com"), then the default (the first certificate).
 *    Names are the certificate's DNS subjectAltNames (its CN when it has
 *    none). Certificates of different key types for the same names (RSA and
 *    ECDSA) share one SSL_CTX, so OpenSSL serves the one the client's
 *    signature algorithms allow; for one name and one key type, the first
 *    certificate listed wins. Each certificate is served with the chain that
 *    follows it in its file.
 *  - TLS 1.2 (unless min_version is TLS1.3) and 1.3 only; no compression,
 *    no renegotiation (a client's request is refused with an alert), no
 *    0-RTT early data. ALPN: "http/1.1" is the only protocol; a client that
 *    offers ALPN without it (h2 only) gets a no_application_protocol alert.
 *    A client that offers no ALPN at all is served HTTP/1.1.
 *  - Resumption: stateless tickets (TLS 1.2 and 1.3) encrypted with the
 *    process's ticket keys (struct weir_tls_tickets), so a ticket issued by
 *    any worker, or before a reload, resumes on any other; plus the server
 *    session cache of the listener's SSL_CTX (shared by every worker; the
 *    only mechanism when session_tickets = false).
 *
 * Client side (struct weir_tls_client, from pools[].tls): verify on or off,
 * the trust store (ca_file or the system's), the name sent as SNI and
 * verified (server_name, or each server's host), an optional client
 * certificate (mTLS); TLS 1.2 minimum, no renegotiation, ALPN http/1.1;
 * sessions resumed per server (nginx's proxy_ssl_session_reuse).
 *
 * Lifetimes. Server and client objects are reference-counted. An SSL made
 * by weir_tls_server_ssl() or weir_tls_client_ssl() holds a reference on
 * its object until SSL_free(), so a connection keeps the contexts it
 * started with. A reload builds a new struct weir_tls_set from the new
 * configuration and frees the old set; each old object is freed when the
 * last connection using it goes. Ticket keys and counters outlive sets
 * (they belong to the process), so tickets and counts survive reloads.
 *
 * Threads.
 *  - weir_tls_tickets_new/free, weir_tls_set_new/free, weir_tls_server_new,
 *    weir_tls_client_new: control (main) thread.
 *  - weir_tls_tickets_rotate: any thread (the key ring has its own lock);
 *    meant for a control-thread timer. The ring also rotates by itself when
 *    a ticket is issued after the interval passed.
 *  - weir_tls_server_ssl, weir_tls_client_ssl, the SSL objects, the note_*
 *    and classify functions: the worker that owns the connection. OpenSSL
 *    makes SSL_new on a shared SSL_CTX and its session cache thread-safe;
 *    the ticket callback takes the ring's lock for a key copy only.
 *  - retain/release and the counters (atomics): any thread.
 *  - Every function that fails leaves OpenSSL's per-thread error queue
 *    empty, so one connection's error never shows up in another's.
 */
#ifndef WEIR_TLS_H
#define WEIR_TLS_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

#include "weir/conf.h"

/* Why a handshake failed (counted per listener; names in weir_tls_fail_name). */
enum weir_tls_fail {
    WEIR_TLS_FAIL_VERSION = 0, /* "version": no protocol version in common (TLS 1.0/1.1 client) */
    WEIR_TLS_FAIL_CIPHER,      /* "cipher": no cipher suite, group or signature algorithm in common */
    WEIR_TLS_FAIL_ALPN,        /* "alpn": the client offers ALPN without http/1.1 (h2 only) */
    WEIR_TLS_FAIL_PLAIN_HTTP,  /* "plain_http": an HTTP request sent to a TLS port */
    WEIR_TLS_FAIL_PROTOCOL,    /* "protocol": bytes that are not a valid TLS handshake */
    WEIR_TLS_FAIL_CERT,        /* "certificate": the peer's certificate failed verification */
    WEIR_TLS_FAIL_ALERT,       /* "peer_alert": the peer aborted with a fatal alert */
    WEIR_TLS_FAIL_TIMEOUT,     /* "timeout": not done within handshake_timeout_ms */
    WEIR_TLS_FAIL_CLOSED,      /* "closed": the peer closed or reset mid-handshake */
    WEIR_TLS_FAIL_OTHER,       /* "other": anything else (out of memory, internal error) */
    WEIR_TLS_FAIL_N
};

/* Counters of one listener. Live as long as the process (pass the same
 * array to every set). Atomic, relaxed: read by /stats and /metrics. */
struct weir_tls_counters {
    _Atomic unsigned long long full;    /* handshakes completed without resumption */
    _Atomic unsigned long long resumed; /* handshakes that resumed a session (ticket or cache) */
    _Atomic unsigned long long fail[WEIR_TLS_FAIL_N];
};

/* "version", "cipher", ... for a reason; "other" for an unknown value. */
const char *weir_tls_fail_name(int reason);

/* ---- session-ticket keys (one ring for the process) ----------------------- */

struct weir_tls_tickets;

/* Default rotation interval; tickets are accepted for up to three intervals
 * (the current key and the two before it) and issued with a lifetime of one. */
#define WEIR_TLS_TICKET_ROTATE_S 3600

/* A ring with a fresh random key. rotate_s >= 1. NULL on failure. */
struct weir_tls_tickets *weir_tls_tickets_new(int rotate_s);
void weir_tls_tickets_free(struct weir_tls_tickets *t);

/* Make a new current key now; the previous ones still decrypt (marked for
 * renewal) until they fall off the ring. Returns 0 or -1 (no change). */
int weir_tls_tickets_rotate(struct weir_tls_tickets *t);

/* How many rotations happened so far (explicit or by age). */
unsigned long weir_tls_tickets_rotations(struct weir_tls_tickets *t);

/* ---- server side ------------------------------------------------------------ */

struct weir_tls_server;

/*
 * Contexts of one listener from its configuration (conf->enabled must be
 * 1). tickets: the process's ring (required when conf->session_tickets).
 * counters: where this listener counts (may be NULL: not counted).
 * conf_file: for messages. Returns a server with one reference, or NULL
 * with "FILE:LINE: message" errors appended to errs.
 */
struct weir_tls_server *weir_tls_server_new(const struct weir_conf_listen_tls *conf, const char *conf_file,
                                            struct weir_tls_tickets *tickets,
                                            struct weir_tls_counters *counters,
                                            struct weir_conf_errors *errs);
void weir_tls_server_retain(struct weir_tls_server *s);
void weir_tls_server_release(struct weir_tls_server *s);

/* A new SSL in accept state (no BIO attached), retaining s until SSL_free.
 * NULL on allocation failure. */
SSL *weir_tls_server_ssl(struct weir_tls_server *s);

/* The earliest notAfter of the certificates served (leaves and chains). */
time_t weir_tls_server_not_after(const struct weir_tls_server *s);
int weir_tls_server_handshake_timeout_ms(const struct weir_tls_server *s);
/* The server an SSL of weir_tls_server_ssl() belongs to (NULL otherwise). */
struct weir_tls_server *weir_tls_server_of(const SSL *ssl);
/* Number of distinct SSL_CTXs built (certificate sets after grouping). */
size_t weir_tls_server_nctx(const struct weir_tls_server *s);

/* ---- client side ------------------------------------------------------------ */

struct weir_tls_client;

/* Client context of a pool (conf->enabled must be 1). NULL with errors in
 * errs ("FILE:LINE: message") on failure. One reference. */
struct weir_tls_client *weir_tls_client_new(const struct weir_conf_pool_tls *conf, const char *conf_file,
                                            struct weir_conf_errors *errs);
void weir_tls_client_retain(struct weir_tls_client *c);
void weir_tls_client_release(struct weir_tls_client *c);

/*
 * A new SSL in connect state for a server whose configured host (the host
 * part of its address: a name or an IP literal, without port or brackets)
 * is `host`. The name used is conf->server_name when set, else host: a
 * name is sent as SNI and (verify on) must match the certificate; an IP
 * address is not sent (RFC 6066) and must match an IP subjectAltName.
 * session_key names the server (its address, "10.0.0.5:443"): the last
 * session of a connection with the same key is offered for resumption, and
 * the session this one gets is kept for the next (one per server, up to
 * 256 servers per pool); NULL: no resumption. Retains c until SSL_free.
 * NULL on failure.
 */
SSL *weir_tls_client_ssl(struct weir_tls_client *c, const char *host, const char *session_key);

/* ---- a whole configuration's contexts ---------------------------------------- */

struct weir_tls_set {
    struct weir_tls_server **servers; /* [conf->nlistens]; NULL for a plain listener */
    size_t nservers;
    struct weir_tls_client **clients; /* [conf->npools]; NULL for a plain pool */
    size_t nclients;
    time_t not_after; /* earliest certificate expiry (served and client); 0 = no certificate */
};

/*
 * Build every context of conf. counters: array of conf->nlistens (may be
 * NULL). Returns the set, or NULL with errors in errs (nothing built is
 * kept). Control thread.
 */
struct weir_tls_set *weir_tls_set_new(const struct weir_conf *conf, struct weir_tls_tickets *tickets,
                                      struct weir_tls_counters *counters, struct weir_conf_errors *errs);
/* Drop the set's references (connections keep theirs). NULL is accepted. */
void weir_tls_set_free(struct weir_tls_set *set);

/* ---- connections -------------------------------------------------------------- */

/* Count a completed handshake of a server SSL (full or resumed). */
void weir_tls_note_handshake(SSL *ssl);
/* Count a failed handshake of a server SSL with the given reason. */
void weir_tls_note_failure(SSL *ssl, int reason);

/*
 * Classify a failed SSL call: ret and SSL_get_error(ssl, ret) as `err`.
 * Reads the thread's OpenSSL error queue, writes a one-line reason (for a
 * log) into why (may be NULL), and clears the queue. Returns a
 * WEIR_TLS_FAIL_* value.
 */
int weir_tls_classify(SSL *ssl, int err, char *why, size_t whylen);

/* For the access log: protocol ("TLSv1.3"), cipher and SNI (NULL when the
 * client sent none) of an established connection. */
void weir_tls_info(const SSL *ssl, const char **version, const char **cipher, const char **sni);

/* Objects alive (servers + clients), for tests of the reload lifetime. */
long weir_tls_live_objects(void);

#endif
