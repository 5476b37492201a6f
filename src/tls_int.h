/*
 * tls_int.h - what tls.c (server contexts, sets, connection helpers)
 * shares with tls_client.c (pool contexts) and tls_tickets.c (the
 * session-ticket key ring). Not a public header:
 * the contract of both is weir/tls.h.
 */
#ifndef WEIR_TLS_INT_H
#define WEIR_TLS_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

#include "weir/conf.h"
#include "weir/tls.h"

/* SSL ex_data indices, set once by tls_lib_init(): a client SSL's
 * struct weir_tls_client (a reference, released by SSL_free) and its
 * session key (a string, freed with the SSL). */
extern int tls_cli_idx, tls_key_idx;
/* Live contexts and sets (weir_tls_live_objects). */
extern _Atomic long tls_live_objects;
/* ALPN wire form of "http/1.1", the only protocol offered or accepted. */
extern const unsigned char tls_alpn_http11[9];

/* Initialise OpenSSL's indices once. Returns 0 or -1. Any thread. */
int tls_lib_init(void);
/* Append "FILE:LINE: message" to errs (dropped when out of memory). */
__attribute__((format(printf, 4, 5))) void tls_add_err(struct weir_conf_errors *errs, const char *file,
                                                       int line, const char *fmt, ...);
/* OpenSSL's last error as text into buf (cleared from its queue). */
const char *tls_err_text(char *buf, size_t n);
/* An ASN1_TIME as time_t (0 when unreadable). */
time_t tls_asn1_time(const ASN1_TIME *t);
/* *acc = the earlier of *acc and t, where 0 means none. */
void tls_min_time(time_t *acc, time_t t);
/* When the client certificate of c expires (0: none). */
time_t tls_client_not_after(const struct weir_tls_client *c);

/* ---- session tickets (tls_tickets.c, with tls_tickets_of in tls.c) ---- */

/* AES-256-CBC, fetched once by tls_lib_init (process lifetime). */
extern EVP_CIPHER *tls_ticket_cipher;
/* The ring of the listener whose context the SSL uses (NULL: none). */
struct weir_tls_tickets *tls_tickets_of(SSL *ssl);
/* The ring's rotation period in seconds (fixed at creation). */
int tls_tickets_rotate_s(const struct weir_tls_tickets *t);
/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb). */
int tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                  EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

#endif
