/*
 * tls_client.c - OpenSSL client contexts for pools with `tls`: verification
 * (chain, name or IP), SNI, ALPN http/1.1, an optional client certificate,
 * and the last session of each server kept for resumption. The contract is
 * in weir/tls.h; what it shares with tls.c is in tls_int.h.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls_int.h"
#include "weir/core.h"
#include "weir/tls.h"

/* Sessions kept for resumption, per pool: the last one of each server. */
#define CLIENT_SESSIONS 256

struct client_session {
    char *key; /* the server, as given to weir_tls_client_ssl */
    SSL_SESSION *sess;
};

struct weir_tls_client {
    _Atomic unsigned refs;
    SSL_CTX *ctx;
    char *server_name; /* NULL = each server's host */
    int verify;
    time_t not_after;   /* of the client certificate; 0 = none */
    pthread_mutex_t mu; /* guards sessions (workers store and take them) */
    struct client_session sessions[CLIENT_SESSIONS];
    size_t nsessions, evict; /* evict: next slot replaced when full */
};

static void client_free(struct weir_tls_client *c)
{
    SSL_CTX_free(c->ctx);
    free(c->server_name);
    for (size_t i = 0; i < c->nsessions; i++) {
        free(c->sessions[i].key);
        SSL_SESSION_free(c->sessions[i].sess);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
    atomic_fetch_sub(&tls_live_objects, 1);
}

static struct client_session *session_find(struct weir_tls_client *c, const char *key)
{
    for (size_t i = 0; i < c->nsessions; i++) {
        if (strcmp(c->sessions[i].key, key) == 0)
            return &c->sessions[i];
    }
    return NULL;
}

/* OpenSSL's new-session callback (client side): keep the newest session
 * of each server. Returns 1 when the reference was taken. */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct weir_tls_client *c = SSL_get_ex_data(ssl, tls_cli_idx);
    const char *key = SSL_get_ex_data(ssl, tls_key_idx);
    struct client_session *cs;
    char *k = NULL;

    if (c == NULL || key == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    pthread_mutex_lock(&c->mu);
    cs = session_find(c, key);
    if (cs == NULL && (k = strdup(key)) != NULL) {
        if (c->nsessions < CLIENT_SESSIONS) {
            cs = &c->sessions[c->nsessions++];
        } else {
            cs = &c->sessions[c->evict];
            c->evict = (c->evict + 1) % CLIENT_SESSIONS;
            free(cs->key);
            SSL_SESSION_free(cs->sess);
        }
        cs->key = k;
        cs->sess = NULL;
    }
    if (cs != NULL) {
        SSL_SESSION_free(cs->sess);
        cs->sess = sess;
    }
    pthread_mutex_unlock(&c->mu);
    return cs != NULL;
}

void weir_tls_client_retain(struct weir_tls_client *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void weir_tls_client_release(struct weir_tls_client *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        client_free(c);
}

struct weir_tls_client *weir_tls_client_new(const struct weir_conf_pool_tls *conf, const char *conf_file,
                                            struct weir_conf_errors *errs)
{
    struct weir_tls_client *c;
    char ebuf[256];
    int line = conf != NULL ? conf->line : 0;
    const char *what = "cannot build the pool's context";

    if (tls_lib_init() != 0 || conf == NULL || !conf->enabled) {
        tls_add_err(errs, conf_file, line, "tls: nothing to build");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        tls_add_err(errs, conf_file, line, "tls: out of memory");
        return NULL;
    }
    atomic_fetch_add(&tls_live_objects, 1);
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    c->verify = conf->verify;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL || (conf->server_name != NULL && (c->server_name = strdup(conf->server_name)) == NULL))
        goto err;
    SSL_CTX_set_options(c->ctx,
                        SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_alpn_protos(c->ctx, tls_alpn_http11, sizeof(tls_alpn_http11)) != 0)
        goto err;
    SSL_CTX_set_verify(c->ctx, conf->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, client_new_session);
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(c->ctx), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (conf->verify) {
        if (conf->ca_file != NULL) {
            what = "cannot load ca_file";
            if (SSL_CTX_load_verify_locations(c->ctx, conf->ca_file, NULL) != 1)
                goto err;
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            what = "cannot load the system's trust store";
            goto err;
        }
    }
    if (conf->cert != NULL) {
        what = "cannot load the client certificate";
        if (SSL_CTX_use_certificate_chain_file(c->ctx, conf->cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(c->ctx, conf->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ctx) != 1)
            goto err;
        tls_min_time(&c->not_after, tls_asn1_time(X509_get0_notAfter(SSL_CTX_get0_certificate(c->ctx))));
    }
    return c;
err:
    tls_add_err(errs, conf_file, line, "tls: %s: %s", what, tls_err_text(ebuf, sizeof(ebuf)));
    client_free(c);
    return NULL;
}

SSL *weir_tls_client_ssl(struct weir_tls_client *c, const char *host, const char *session_key)
{
    const char *name = c->server_name != NULL ? c->server_name : host;
    char buf[256];
    size_t n;
    ASN1_OCTET_STRING *ip;
    SSL *ssl;
    int ok = 1;

    if (name == NULL)
        return NULL;
    n = strlen(name);
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']') { /* "[::1]" */
        if (n - 2 >= sizeof(buf))
            return NULL;
        memcpy(buf, name + 1, n - 2);
        buf[n - 2] = '\0';
        name = buf;
    }
    ssl = SSL_new(c->ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    ip = a2i_IPADDRESS(name);
    if (ip != NULL) {
        if (c->verify)
            ok = X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), ASN1_STRING_get0_data(ip),
                                           (size_t)ASN1_STRING_length(ip)) == 1;
        ASN1_OCTET_STRING_free(ip);
    } else {
        ok = SSL_set_tlsext_host_name(ssl, name) == 1 && (!c->verify || SSL_set1_host(ssl, name) == 1);
    }
    if (ok) {
        weir_tls_client_retain(c);
        if (SSL_set_ex_data(ssl, tls_cli_idx, c) != 1) {
            weir_tls_client_release(c);
            ok = 0;
        }
    }
    if (ok && session_key != NULL) {
        char *k = strdup(session_key);
        struct client_session *cs;

        if (k == NULL || SSL_set_ex_data(ssl, tls_key_idx, k) != 1) {
            free(k);
            ok = 0;
        } else {
            pthread_mutex_lock(&c->mu);
            cs = session_find(c, session_key);
            if (cs != NULL && cs->sess != NULL)
                ok = SSL_set_session(ssl, cs->sess) == 1;
            pthread_mutex_unlock(&c->mu);
        }
    }
    ERR_clear_error();
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

time_t tls_client_not_after(const struct weir_tls_client *c)
{
    return c->not_after;
}
