/*
 * tls.c - OpenSSL 3 contexts for listeners (server side) and pools (client
 * side), SNI and ALPN callbacks, failure classification and counters. The
 * contract is in weir/tls.h.
 *
 * SNI: every certificate's names (DNS subjectAltNames, or the CN) become
 * patterns; each pattern keeps the first certificate of each key type that
 * carries it. Patterns with the same certificates share one SSL_CTX (so an
 * RSA and an ECDSA certificate for the same names sit in one context and
 * OpenSSL picks by the client's signature algorithms). The servername
 * callback switches the SSL to the context of the exact name, else of the
 * wildcard for the name's parent, else leaves the default (the context of
 * the first certificate's first name). Lookups are binary searches in two
 * sorted tables built once; the tables are read-only after construction.
 *
 * The session-ticket key ring and OpenSSL's ticket callback are in
 * tls_tickets.c; what the parts share is declared in tls_int.h.
 *
 * Depends on: weir/tls.h (the contract), weir/conf.h (listener and pool
 * sections), tls_int.h (shared with tls_client.c and tls_tickets.c).
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls_int.h"
#include "weir/core.h"
#include "weir/tls.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "weir's TLS needs OpenSSL 3.0 or later"
#endif

/* TLS 1.2 ciphers when the configuration names none: forward-secret AEAD
 * suites only, ECDSA first (cheaper handshakes), then RSA. */
#define DEFAULT_CIPHERS                                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"               \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

const unsigned char tls_alpn_http11[9] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

/* ---- process-wide: ex_data indices, object count --------------------------------- */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int srv_idx = -1; /* SSL -> struct weir_tls_server (a reference, released by SSL_free) */
int tls_cli_idx = -1;    /* SSL -> struct weir_tls_client (likewise) */
static int ctx_idx = -1; /* SSL_CTX -> struct weir_tls_server (no reference: the server owns the ctx) */
int tls_key_idx = -1;    /* client SSL -> its session key (a string, freed with the SSL) */
_Atomic long tls_live_objects;
/* Fetched once: an implicit fetch (EVP_aes_256_cbc()) per ticket costs a
 * name lookup in OpenSSL 3. Never freed (process lifetime). */
EVP_CIPHER *tls_ticket_cipher;

static void free_srv_ref(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    if (ptr != NULL)
        weir_tls_server_release(ptr);
}

static void free_cli_ref(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    if (ptr != NULL)
        weir_tls_client_release(ptr);
}

static void free_key(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void init_once(void)
{
    srv_idx = SSL_get_ex_new_index(0, "weir server", NULL, NULL, free_srv_ref);
    tls_cli_idx = SSL_get_ex_new_index(0, "weir client", NULL, NULL, free_cli_ref);
    ctx_idx = SSL_CTX_get_ex_new_index(0, "weir server", NULL, NULL, NULL);
    tls_key_idx = SSL_get_ex_new_index(0, "weir session key", NULL, NULL, free_key);
    tls_ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

int tls_lib_init(void)
{
    pthread_once(&once, init_once);
    return srv_idx >= 0 && tls_cli_idx >= 0 && ctx_idx >= 0 && tls_key_idx >= 0 && tls_ticket_cipher != NULL
               ? 0
               : -1;
}

long weir_tls_live_objects(void)
{
    return atomic_load(&tls_live_objects);
}

static const char *const fail_names[WEIR_TLS_FAIL_N] = {
    [WEIR_TLS_FAIL_VERSION] = "version",   [WEIR_TLS_FAIL_CIPHER] = "cipher",
    [WEIR_TLS_FAIL_ALPN] = "alpn",         [WEIR_TLS_FAIL_PLAIN_HTTP] = "plain_http",
    [WEIR_TLS_FAIL_PROTOCOL] = "protocol", [WEIR_TLS_FAIL_CERT] = "certificate",
    [WEIR_TLS_FAIL_ALERT] = "peer_alert",  [WEIR_TLS_FAIL_TIMEOUT] = "timeout",
    [WEIR_TLS_FAIL_CLOSED] = "closed",     [WEIR_TLS_FAIL_OTHER] = "other",
};

const char *weir_tls_fail_name(int reason)
{
    return reason >= 0 && reason < WEIR_TLS_FAIL_N ? fail_names[reason] : "other";
}

/* "FILE:LINE: message" appended to errs (dropped when out of memory). */
void tls_add_err(struct weir_conf_errors *errs, const char *file, int line, const char *fmt, ...)
{
    char body[1024], *m;
    char **v;
    va_list ap;
    int n;

    if (errs == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    n = snprintf(NULL, 0, "%s:%d: %s", file ? file : "?", line, body);
    m = malloc((size_t)n + 1);
    v = realloc(errs->msgs, (errs->n + 1) * sizeof(*v));
    if (v != NULL)
        errs->msgs = v;
    if (m == NULL || v == NULL) {
        free(m);
        return;
    }
    snprintf(m, (size_t)n + 1, "%s:%d: %s", file ? file : "?", line, body);
    errs->msgs[errs->n++] = m;
}

/* The first error of the thread's OpenSSL queue as text; clears the queue. */
const char *tls_err_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_error();

    if (e == 0)
        snprintf(buf, n, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

time_t tls_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

void tls_min_time(time_t *acc, time_t t)
{
    if (t != 0 && (*acc == 0 || t < *acc))
        *acc = t;
}

/* ---- server side -------------------------------------------------------------- */

/* Key types that get their own certificate slot in an SSL_CTX. */
enum { SLOT_RSA = 0, SLOT_RSA_PSS, SLOT_EC, SLOT_ED25519, SLOT_ED448, NSLOTS };

struct cert_item {
    X509 *x;
    STACK_OF(X509) * chain;
    EVP_PKEY *pkey;
    int slot;
    char **names; /* lower-case DNS names, wildcards as written ("*.example.com") */
    size_t nnames;
};

/* A name (or wildcard) and the certificate of each key type that has it. */
struct pattern {
    const char *name;  /* points into a cert_item */
    int certs[NSLOTS]; /* index into items, -1 = none */
    size_t ctx;
};

struct name_ent {
    char *name; /* exact name, or the suffix after "*." for a wildcard */
    size_t ctx;
};

struct weir_tls_server {
    struct weir_tls_tickets *tickets; /* the process's ring (NULL = no tickets) */
    _Atomic unsigned refs;
    SSL_CTX **ctxs; /* [0] = default */
    size_t nctx;
    struct name_ent *exact, *wild;
    size_t nexact, nwild;
    struct weir_tls_counters *counters;
    time_t not_after;
    int hs_timeout_ms;
};

/* The ring of the listener whose context the SSL uses (any of its SNI
 * contexts: each carries the server in its ex_data). */
struct weir_tls_tickets *tls_tickets_of(SSL *ssl)
{
    struct weir_tls_server *s = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx);

    return s != NULL ? s->tickets : NULL;
}

struct weir_tls_server *weir_tls_server_of(const SSL *ssl)
{
    return srv_idx >= 0 ? SSL_get_ex_data(ssl, srv_idx) : NULL;
}

static void items_free(struct cert_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        X509_free(items[i].x);
        sk_X509_pop_free(items[i].chain, X509_free);
        EVP_PKEY_free(items[i].pkey);
        for (size_t j = 0; j < items[i].nnames; j++)
            free(items[i].names[j]);
        free(items[i].names);
    }
    free(items);
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static int add_name(struct cert_item *it, const unsigned char *p, int len)
{
    char *s, **v;

    if (len <= 0 || len > 253 || memchr(p, '\0', (size_t)len) != NULL)
        return 0; /* not a usable DNS name: ignored */
    for (size_t i = 0; i < it->nnames; i++) {
        if (strlen(it->names[i]) == (size_t)len &&
            strncasecmp(it->names[i], (const char *)p, (size_t)len) == 0)
            return 0;
    }
    s = malloc((size_t)len + 1);
    v = realloc(it->names, (it->nnames + 1) * sizeof(*v));
    if (v != NULL)
        it->names = v;
    if (s == NULL || v == NULL) {
        free(s);
        return -1;
    }
    for (int i = 0; i < len; i++)
        s[i] = (char)weir_lower(p[i]);
    s[len] = '\0';
    if (len > 1 && s[len - 1] == '.')
        s[len - 1] = '\0';
    it->names[it->nnames++] = s;
    return 0;
}

/* DNS subjectAltNames, or the CN when there is none. */
static int cert_names(struct cert_item *it)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(it->x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;

    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS &&
            add_name(it, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName)) != 0)
            rc = -1;
    }
    GENERAL_NAMES_free(gens);
    if (it->nnames == 0 && rc == 0) {
        X509_NAME *subj = X509_get_subject_name(it->x);
        int pos = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        unsigned char *cn = NULL;
        int len;

        if (pos >= 0) {
            len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, pos)));
            if (len > 0)
                rc = add_name(it, cn, len);
            OPENSSL_free(cn);
        }
    }
    ERR_clear_error();
    return rc;
}

static int key_slot(const EVP_PKEY *k)
{
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA:
        return SLOT_RSA;
    case EVP_PKEY_RSA_PSS:
        return SLOT_RSA_PSS;
    case EVP_PKEY_EC:
        return SLOT_EC;
    case EVP_PKEY_ED25519:
        return SLOT_ED25519;
    case EVP_PKEY_ED448:
        return SLOT_ED448;
    default:
        return -1;
    }
}

/* Load certs[i]: leaf, chain, key, names. Errors name the cert's line. */
static int load_item(struct cert_item *it, const struct weir_conf_tls_cert *cc, const char *conf_file,
                     size_t i, struct weir_conf_errors *errs)
{
    char ebuf[256];
    BIO *b = BIO_new_file(cc->cert, "r");
    X509 *x;

    if (b == NULL) {
        tls_add_err(errs, conf_file, cc->cert_line, "tls certificate %zu: cannot read '%s': %s", i, cc->cert,
                    tls_err_text(ebuf, sizeof(ebuf)));
        return -1;
    }
    it->x = PEM_read_bio_X509(b, NULL, no_password, NULL);
    it->chain = sk_X509_new_null();
    while (it->x != NULL && it->chain != NULL &&
           (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        if (!sk_X509_push(it->chain, x)) {
            X509_free(x);
            break;
        }
    }
    ERR_clear_error(); /* the end of the file reads as "no start line" */
    BIO_free(b);
    if (it->x == NULL || it->chain == NULL) {
        tls_add_err(errs, conf_file, cc->cert_line, "tls certificate %zu: '%s' contains no PEM certificate",
                    i, cc->cert);
        return -1;
    }
    b = BIO_new_file(cc->key, "r");
    if (b != NULL)
        it->pkey = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
    BIO_free(b);
    if (it->pkey == NULL) {
        tls_add_err(errs, conf_file, cc->key_line, "tls certificate %zu: cannot load the key '%s': %s", i,
                    cc->key, tls_err_text(ebuf, sizeof(ebuf)));
        return -1;
    }
    if (X509_check_private_key(it->x, it->pkey) != 1) {
        ERR_clear_error();
        tls_add_err(errs, conf_file, cc->key_line, "tls certificate %zu: the key '%s' does not match '%s'", i,
                    cc->key, cc->cert);
        return -1;
    }
    it->slot = key_slot(it->pkey);
    if (it->slot < 0) {
        tls_add_err(errs, conf_file, cc->key_line,
                    "tls certificate %zu: '%s' has an unsupported key type (RSA, ECDSA, Ed25519, Ed448)", i,
                    cc->key);
        return -1;
    }
    if (cert_names(it) != 0) {
        tls_add_err(errs, conf_file, cc->cert_line, "out of memory");
        return -1;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct name_ent *)a)->name, ((const struct name_ent *)b)->name);
}

/* Index of the context for `name` (lower-case, no trailing dot): exact,
 * then the wildcard of its parent domain, then 0 (the default). */
static size_t lookup_ctx(const struct weir_tls_server *s, const char *name)
{
    struct name_ent key;
    const struct name_ent *e;
    const char *dot;

    key.name = (char *)name;
    e = s->nexact ? bsearch(&key, s->exact, s->nexact, sizeof(*e), name_cmp) : NULL;
    if (e != NULL)
        return e->ctx;
    dot = strchr(name, '.');
    if (dot != NULL && dot != name && dot[1] != '\0' && s->nwild > 0) {
        key.name = (char *)(dot + 1);
        e = bsearch(&key, s->wild, s->nwild, sizeof(*e), name_cmp);
        if (e != NULL)
            return e->ctx;
    }
    return 0;
}

/* servername callback: switch to the context of the client's SNI. Called
 * with or without SNI; never fails the handshake (unknown names get the
 * default certificate). */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct weir_tls_server *s = weir_tls_server_of(ssl);
    const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char name[256];
    size_t n, i;

    if (s == NULL || sn == NULL)
        return SSL_TLSEXT_ERR_OK;
    n = strlen(sn);
    if (n == 0 || n >= sizeof(name))
        return SSL_TLSEXT_ERR_OK;
    for (i = 0; i < n; i++)
        name[i] = (char)weir_lower((unsigned char)sn[i]);
    name[n] = '\0';
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    i = lookup_ctx(s, name);
    if (s->ctxs[i] != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, s->ctxs[i]) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: http/1.1 or a fatal no_application_protocol alert. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    unsigned int i = 0;

    while (i < inlen) {
        unsigned int len = in[i];
        if (len == 0 || i + 1 + len > inlen)
            break;
        if (len == tls_alpn_http11[0] && memcmp(in + i + 1, tls_alpn_http11 + 1, len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Settings every context of a listener shares. */
static int configure_server_ctx(SSL_CTX *ctx, const struct weir_conf_listen_tls *conf,
                                struct weir_tls_server *s, const unsigned char *sid, unsigned sidlen)
{
    /* IGNORE_UNEXPECTED_EOF: a TCP close without close_notify reads as EOF
     * and leaves the SSL usable, so a half-closed client still gets its
     * responses (HTTP framing, not TLS, detects a truncated message). */
    uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                    SSL_OP_IGNORE_UNEXPECTED_EOF;

    if (!conf->session_tickets)
        opts |= SSL_OP_NO_TICKET; /* TLS 1.3 then issues stateful tickets (the session cache) */
    SSL_CTX_set_options(ctx, opts);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (SSL_CTX_set_min_proto_version(ctx, conf->min_version == WEIR_TLS_1_3 ? TLS1_3_VERSION
                                                                             : TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        return -1;
    if (SSL_CTX_set_cipher_list(ctx, conf->ciphers != NULL ? conf->ciphers : DEFAULT_CIPHERS) != 1)
        return -1;
    if (conf->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, conf->ciphersuites) != 1)
        return -1;
    SSL_CTX_set_dh_auto(ctx, 1);
    if (SSL_CTX_set_max_early_data(ctx, 0) != 1) /* no 0-RTT */
        return -1;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_set_session_id_context(ctx, sid, sidlen) != 1)
        return -1;
    SSL_CTX_set_timeout(ctx, s->tickets != NULL ? (long)tls_tickets_rotate_s(s->tickets)
                                                : WEIR_TLS_TICKET_ROTATE_S);
    if (conf->session_tickets && SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb) != 1)
        return -1;
    if (SSL_CTX_set_ex_data(ctx, ctx_idx, s) != 1)
        return -1;
    return 0;
}

static int pattern_find(const struct pattern *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(p[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

static int add_ent(struct name_ent **v, size_t *n, const char *name, size_t ctx)
{
    struct name_ent *nv = realloc(*v, (*n + 1) * sizeof(**v));
    char *d = strdup(name);

    if (nv != NULL)
        *v = nv;
    if (nv == NULL || d == NULL) {
        free(d);
        return -1;
    }
    nv[*n].name = d;
    nv[*n].ctx = ctx;
    (*n)++;
    return 0;
}

static void server_free(struct weir_tls_server *s)
{
    for (size_t i = 0; i < s->nctx; i++)
        SSL_CTX_free(s->ctxs[i]);
    free(s->ctxs);
    for (size_t i = 0; i < s->nexact; i++)
        free(s->exact[i].name);
    for (size_t i = 0; i < s->nwild; i++)
        free(s->wild[i].name);
    free(s->exact);
    free(s->wild);
    free(s);
    atomic_fetch_sub(&tls_live_objects, 1);
}

void weir_tls_server_retain(struct weir_tls_server *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void weir_tls_server_release(struct weir_tls_server *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        server_free(s);
}

/* The context holding exactly the certificates `certs` (one per slot);
 * made when no pattern before needed it. Returns its index or -1, with
 * *bad set to the certificate OpenSSL refused (-1: not a certificate). */
static long ctx_for(struct weir_tls_server *s, struct pattern *pats, size_t npats, const int *certs,
                    const struct cert_item *items, const struct weir_conf_listen_tls *conf,
                    const unsigned char *sid, unsigned sidlen, int *bad)
{
    SSL_CTX *ctx, **v;

    for (size_t i = 0; i < npats; i++) {
        if (pats[i].ctx != (size_t)-1 && memcmp(pats[i].certs, certs, sizeof(pats[i].certs)) == 0)
            return (long)pats[i].ctx;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return -1;
    v = realloc(s->ctxs, (s->nctx + 1) * sizeof(*v));
    if (v == NULL) {
        SSL_CTX_free(ctx);
        return -1;
    }
    s->ctxs = v;
    s->ctxs[s->nctx++] = ctx;
    if (configure_server_ctx(ctx, conf, s, sid, sidlen) != 0)
        return -1;
    for (int k = 0; k < NSLOTS; k++) {
        const struct cert_item *it;
        if (certs[k] < 0)
            continue;
        it = &items[certs[k]];
        if (SSL_CTX_use_cert_and_key(ctx, it->x, it->pkey, it->chain, 1) != 1) {
            *bad = certs[k];
            return -1;
        }
    }
    return (long)(s->nctx - 1);
}

struct weir_tls_server *weir_tls_server_new(const struct weir_conf_listen_tls *conf, const char *conf_file,
                                            struct weir_tls_tickets *tickets,
                                            struct weir_tls_counters *counters, struct weir_conf_errors *errs)
{
    struct weir_tls_server *s = NULL;
    struct cert_item *items = NULL;
    struct pattern *pats = NULL;
    size_t npats = 0, i, j;
    int bad = -1;
    unsigned char sid[32];
    unsigned sidlen = 0;
    EVP_MD_CTX *md = NULL;
    char ebuf[256];

    if (tls_lib_init() != 0 || conf == NULL || !conf->enabled || conf->ncerts == 0) {
        tls_add_err(errs, conf_file, conf ? conf->line : 0, "tls: nothing to build (no certificate)");
        return NULL;
    }
    if (conf->session_tickets && tickets == NULL) {
        tls_add_err(errs, conf_file, conf->line, "tls: session tickets need the process's ticket keys");
        return NULL;
    }
    items = calloc(conf->ncerts, sizeof(*items));
    s = calloc(1, sizeof(*s));
    if (items == NULL || s == NULL)
        goto oom;
    atomic_fetch_add(&tls_live_objects, 1);
    atomic_init(&s->refs, 1);
    s->tickets = conf->session_tickets ? tickets : NULL;
    s->counters = counters;
    s->hs_timeout_ms = conf->handshake_timeout_ms;

    /* Certificates, their names, and the session id context: a digest of
     * the leaves, so a session resumes only where the same certificates
     * are served (this listener, before or after a reload that kept them). */
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto oom;
    for (i = 0; i < conf->ncerts; i++) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned dlen = 0;

        if (load_item(&items[i], &conf->certs[i], conf_file, i, errs) != 0)
            goto err;
        if (X509_digest(items[i].x, EVP_sha256(), d, &dlen) != 1 || EVP_DigestUpdate(md, d, dlen) != 1)
            goto oom;
        tls_min_time(&s->not_after, tls_asn1_time(X509_get0_notAfter(items[i].x)));
        for (j = 0; j < (size_t)sk_X509_num(items[i].chain); j++)
            tls_min_time(&s->not_after,
                         tls_asn1_time(X509_get0_notAfter(sk_X509_value(items[i].chain, (int)j))));
    }
    if (EVP_DigestFinal_ex(md, sid, &sidlen) != 1)
        goto oom;
    if (sidlen > SSL_MAX_SID_CTX_LENGTH)
        sidlen = SSL_MAX_SID_CTX_LENGTH;

    /* Patterns: each name with the first certificate of each key type. */
    for (i = 0; i < conf->ncerts; i++) {
        for (j = 0; j < items[i].nnames; j++) {
            int p = pattern_find(pats, npats, items[i].names[j]);
            if (p < 0) {
                struct pattern *v = realloc(pats, (npats + 1) * sizeof(*v));
                if (v == NULL)
                    goto oom;
                pats = v;
                p = (int)npats++;
                pats[p].name = items[i].names[j];
                pats[p].ctx = (size_t)-1;
                for (int k = 0; k < NSLOTS; k++)
                    pats[p].certs[k] = -1;
            }
            if (pats[p].certs[items[i].slot] < 0)
                pats[p].certs[items[i].slot] = (int)i;
        }
    }

    /* The default context first: the first certificate's first name (or
     * the first certificate alone when it has no name). */
    {
        int certs[NSLOTS];
        long c;
        int p = items[0].nnames ? pattern_find(pats, npats, items[0].names[0]) : -1;

        for (int k = 0; k < NSLOTS; k++)
            certs[k] = p >= 0 ? pats[p].certs[k] : -1;
        if (p < 0)
            certs[items[0].slot] = 0;
        c = ctx_for(s, pats, npats, certs, items, conf, sid, sidlen, &bad);
        if (c < 0)
            goto ssl_err;
        if (p >= 0)
            pats[p].ctx = (size_t)c;
    }
    for (i = 0; i < npats; i++) {
        long c = ctx_for(s, pats, npats, pats[i].certs, items, conf, sid, sidlen, &bad);
        if (c < 0)
            goto ssl_err;
        pats[i].ctx = (size_t)c;
        if (strncmp(pats[i].name, "*.", 2) == 0) {
            if (add_ent(&s->wild, &s->nwild, pats[i].name + 2, pats[i].ctx) != 0)
                goto oom;
        } else if (add_ent(&s->exact, &s->nexact, pats[i].name, pats[i].ctx) != 0) {
            goto oom;
        }
    }
    if (s->nexact > 0)
        qsort(s->exact, s->nexact, sizeof(*s->exact), name_cmp);
    if (s->nwild > 0)
        qsort(s->wild, s->nwild, sizeof(*s->wild), name_cmp);
    EVP_MD_CTX_free(md);
    free(pats);
    items_free(items, conf->ncerts);
    return s;

ssl_err:
    if (bad >= 0) /* e.g. "ee key too small": below OpenSSL's security level */
        tls_add_err(errs, conf_file, conf->certs[bad].cert_line,
                    "tls certificate %d: OpenSSL refuses '%s': %s", bad, conf->certs[bad].cert,
                    tls_err_text(ebuf, sizeof(ebuf)));
    else
        tls_add_err(errs, conf_file, conf->line, "tls: cannot build the listener's context: %s",
                    tls_err_text(ebuf, sizeof(ebuf)));
    goto err;
oom:
    tls_add_err(errs, conf_file, conf->line, "tls: out of memory");
err:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    free(pats);
    if (items != NULL)
        items_free(items, conf->ncerts);
    if (s != NULL)
        server_free(s);
    return NULL;
}

SSL *weir_tls_server_ssl(struct weir_tls_server *s)
{
    SSL *ssl = SSL_new(s->ctxs[0]);

    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    weir_tls_server_retain(s);
    if (SSL_set_ex_data(ssl, srv_idx, s) != 1) {
        weir_tls_server_release(s);
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

time_t weir_tls_server_not_after(const struct weir_tls_server *s)
{
    return s->not_after;
}

int weir_tls_server_handshake_timeout_ms(const struct weir_tls_server *s)
{
    return s->hs_timeout_ms;
}

size_t weir_tls_server_nctx(const struct weir_tls_server *s)
{
    return s->nctx;
}

/* ---- sets ------------------------------------------------------------------- */

void weir_tls_set_free(struct weir_tls_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->nservers; i++)
        weir_tls_server_release(set->servers[i]);
    for (size_t i = 0; i < set->nclients; i++)
        weir_tls_client_release(set->clients[i]);
    free(set->servers);
    free(set->clients);
    free(set);
}

struct weir_tls_set *weir_tls_set_new(const struct weir_conf *conf, struct weir_tls_tickets *tickets,
                                      struct weir_tls_counters *counters, struct weir_conf_errors *errs)
{
    struct weir_tls_set *set = calloc(1, sizeof(*set));
    size_t before = errs->n;

    if (set == NULL)
        goto oom;
    set->servers = calloc(conf->nlistens ? conf->nlistens : 1, sizeof(*set->servers));
    set->clients = calloc(conf->npools ? conf->npools : 1, sizeof(*set->clients));
    if (set->servers == NULL || set->clients == NULL)
        goto oom;
    set->nservers = conf->nlistens;
    set->nclients = conf->npools;
    for (size_t i = 0; i < conf->nlistens; i++) {
        if (!conf->listens[i].tls.enabled)
            continue;
        set->servers[i] = weir_tls_server_new(&conf->listens[i].tls, conf->file, tickets,
                                              counters != NULL ? &counters[i] : NULL, errs);
        if (set->servers[i] != NULL)
            tls_min_time(&set->not_after, set->servers[i]->not_after);
    }
    for (size_t i = 0; i < conf->npools; i++) {
        if (!conf->pools[i].tls.enabled)
            continue;
        set->clients[i] = weir_tls_client_new(&conf->pools[i].tls, conf->file, errs);
        if (set->clients[i] != NULL)
            tls_min_time(&set->not_after, tls_client_not_after(set->clients[i]));
    }
    if (errs->n == before)
        return set;
    weir_tls_set_free(set);
    return NULL;
oom:
    tls_add_err(errs, conf->file, 0, "tls: out of memory");
    weir_tls_set_free(set);
    return NULL;
}

/* ---- connections ---------------------------------------------------------------- */

void weir_tls_note_handshake(SSL *ssl)
{
    struct weir_tls_server *s = weir_tls_server_of(ssl);

    if (s == NULL || s->counters == NULL)
        return;
    if (SSL_session_reused(ssl))
        atomic_fetch_add_explicit(&s->counters->resumed, 1, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&s->counters->full, 1, memory_order_relaxed);
}

void weir_tls_note_failure(SSL *ssl, int reason)
{
    struct weir_tls_server *s = weir_tls_server_of(ssl);

    if (s == NULL || s->counters == NULL)
        return;
    if (reason < 0 || reason >= WEIR_TLS_FAIL_N)
        reason = WEIR_TLS_FAIL_OTHER;
    atomic_fetch_add_explicit(&s->counters->fail[reason], 1, memory_order_relaxed);
}

static int classify_reason(int r)
{
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return WEIR_TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return WEIR_TLS_FAIL_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
    case SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL:
        return WEIR_TLS_FAIL_ALPN;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return WEIR_TLS_FAIL_PLAIN_HTTP;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return WEIR_TLS_FAIL_CERT;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return WEIR_TLS_FAIL_CLOSED;
    default:
        return r >= SSL_AD_REASON_OFFSET ? WEIR_TLS_FAIL_ALERT : WEIR_TLS_FAIL_PROTOCOL;
    }
}

int weir_tls_classify(SSL *ssl, int err, char *why, size_t whylen)
{
    unsigned long e = ERR_peek_error();
    int reason;

    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && e == 0)) {
        reason = WEIR_TLS_FAIL_CLOSED;
        if (why != NULL)
            snprintf(why, whylen, "the peer closed the connection during the handshake");
    } else if (e == 0) {
        reason = WEIR_TLS_FAIL_OTHER;
        if (why != NULL)
            snprintf(why, whylen, "TLS error %d", err);
    } else if (ERR_GET_LIB(e) != ERR_LIB_SSL) {
        reason = WEIR_TLS_FAIL_OTHER;
    } else {
        reason = classify_reason(ERR_GET_REASON(e));
    }
    if (why != NULL && e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        if (reason == WEIR_TLS_FAIL_CERT && ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK)
            snprintf(why, whylen, "%s (%s)", buf, X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        else
            snprintf(why, whylen, "%s", buf);
    }
    ERR_clear_error();
    return reason;
}

void weir_tls_info(const SSL *ssl, const char **version, const char **cipher, const char **sni)
{
    if (version != NULL)
        *version = SSL_get_version(ssl);
    if (cipher != NULL)
        *cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    if (sni != NULL)
        *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}
