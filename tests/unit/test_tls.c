/*
 * test_tls.c - tls.c without sockets: weir's server and client SSL objects
 * talk over in-process memory BIO pairs.
 *
 * Certificates come from tests/unit/tls-certs.sh (the openssl command): a
 * root CA that clients trust, an intermediate that signs every leaf (so a
 * client verifies only when the server sends the chain), RSA and ECDSA
 * leaves for several names, a wildcard, an IP, a self-signed, an expired and
 * a soon-expiring certificate. Each leaf's CN is its file's base name, which
 * is how the tests see which certificate the server chose.
 */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "weir/conf.h"
#include "weir/core.h"
#include "weir/tls.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

static char dir[64];
static struct weir_tls_tickets *tickets;

static int setup_all(void **state)
{
    char cmd[512];

    snprintf(dir, sizeof(dir), "/tmp/weir-test-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/unit/tls-certs.sh' '%s'", TEST_SRCDIR, dir);
    if (system(cmd) != 0) {
        print_message("tls-certs.sh failed: see %s/openssl.log\n", dir);
        return -1;
    }
    tickets = weir_tls_tickets_new(WEIR_TLS_TICKET_ROTATE_S);
    return tickets != NULL ? 0 : -1;
}

static int teardown_all(void **state)
{
    char cmd[512];

    weir_tls_tickets_free(tickets);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Every test must leave no server or client object alive. */
static int check_no_leak(void **state)
{
    assert_int_equal(weir_tls_live_objects(), 0);
    return 0;
}

/* ---- building configurations by hand ------------------------------------------ */

#define MAXCERTS 8

struct lconf {
    struct weir_conf_listen_tls t;
    struct weir_conf_tls_cert certs[MAXCERTS];
    char paths[MAXCERTS][2][160];
};

/* A listener serving the leaves named (base names in dir), first = default. */
static struct weir_conf_listen_tls *make_listen(struct lconf *l, const char *const *names)
{
    size_t n = 0;

    memset(l, 0, sizeof(*l));
    for (; names[n] != NULL; n++) {
        assert_true(n < MAXCERTS);
        snprintf(l->paths[n][0], sizeof(l->paths[n][0]), "%s/%s.pem", dir, names[n]);
        snprintf(l->paths[n][1], sizeof(l->paths[n][1]), "%s/%s.key", dir, names[n]);
        l->certs[n].cert = l->paths[n][0];
        l->certs[n].key = l->paths[n][1];
        l->certs[n].line = l->certs[n].cert_line = l->certs[n].key_line = (int)n + 1;
    }
    l->t.enabled = 1;
    l->t.certs = l->certs;
    l->t.ncerts = n;
    l->t.min_version = WEIR_TLS_1_2;
    l->t.session_tickets = 1;
    l->t.handshake_timeout_ms = 10000;
    return &l->t;
}

static struct weir_tls_server *server_new(const struct weir_conf_listen_tls *t, struct weir_tls_tickets *tk,
                                          struct weir_tls_counters *cnt)
{
    struct weir_conf_errors errs = {0};
    struct weir_tls_server *s = weir_tls_server_new(t, "test.conf", tk, cnt, &errs);

    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(s);
    assert_int_equal(errs.n, 0);
    weir_conf_errors_free(&errs);
    return s;
}

static char path_buf[4][160];

static const char *path(int slot, const char *file)
{
    snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, file);
    return path_buf[slot];
}

/* A test client trusting only the root CA (ca.pem), verifying the name. */
static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, path(0, "ca.pem"), NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (max_version != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

static SSL *client_ssl(SSL_CTX *ctx, const char *sni)
{
    SSL *c = SSL_new(ctx);

    assert_non_null(c);
    if (sni != NULL) {
        assert_int_equal(SSL_set_tlsext_host_name(c, sni), 1);
        assert_int_equal(SSL_set1_host(c, sni), 1);
    }
    SSL_set_connect_state(c);
    return c;
}

/* ---- running a handshake over a memory BIO pair --------------------------------- */

struct result {
    int client_ok, server_ok;
    int client_reason, server_reason; /* WEIR_TLS_FAIL_* when not ok */
    char client_why[512], server_why[512];
};

static int step(SSL *ssl, int *done, int *failed, int *reason, char *why, size_t n)
{
    int r, e;

    if (*done || *failed)
        return 0;
    ERR_clear_error();
    r = SSL_do_handshake(ssl);
    if (r == 1) {
        *done = 1;
        return 1;
    }
    e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    *failed = 1;
    *reason = weir_tls_classify(ssl, e, why, n);
    return 1;
}

/* Connect cli and srv with a fresh BIO pair and run both handshakes until
 * each side is done or failed (bounded). Server outcomes are counted. */
static struct result handshake(SSL *cli, SSL *srv)
{
    struct result r;
    BIO *bc, *bs;
    int cf = 0, sf = 0;

    memset(&r, 0, sizeof(r));
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL_set_bio(cli, bc, bc);
    SSL_set_bio(srv, bs, bs);
    for (int i = 0; i < 64 && !((r.client_ok || cf) && (r.server_ok || sf)); i++) {
        int moved = step(cli, &r.client_ok, &cf, &r.client_reason, r.client_why, sizeof(r.client_why));
        moved |= step(srv, &r.server_ok, &sf, &r.server_reason, r.server_why, sizeof(r.server_why));
        if (!moved && (cf || sf)) /* one side failed, the other waits for bytes that never come */
            break;
    }
    if (r.server_ok)
        weir_tls_note_handshake(srv);
    else if (sf)
        weir_tls_note_failure(srv, r.server_reason);
    return r;
}

/* Move application bytes srv -> cli so that a TLS 1.3 client processes the
 * NewSessionTicket messages that follow the handshake. */
static void pump_app_data(SSL *cli, SSL *srv)
{
    char b = 'x', got = 0;

    assert_int_equal(SSL_write(srv, &b, 1), 1);
    assert_int_equal(SSL_read(cli, &got, 1), 1);
    assert_int_equal(got, 'x');
}

/* End a connection cleanly (close_notify both ways) and free both sides.
 * OpenSSL drops a session from the caches when its SSL is freed without a
 * shutdown: a session is only worth resuming after a clean close. */
static void close_both(SSL *cli, SSL *srv)
{
    SSL_shutdown(cli);
    SSL_shutdown(srv);
    SSL_shutdown(cli);
    ERR_clear_error();
    SSL_free(cli);
    SSL_free(srv);
}

/* CN of the certificate the server presented (the leaf's base name). */
static const char *peer_cn(SSL *cli, char *buf, size_t n)
{
    X509 *x = SSL_get1_peer_certificate(cli);

    buf[0] = '\0';
    if (x != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)n);
        X509_free(x);
    }
    return buf;
}

/* Handshake with `sni` (NULL: none) against s; returns the chosen CN. */
static const char *served_for(struct weir_tls_server *s, SSL_CTX *cctx, const char *sni,
                              const char *verify_name, char *cn, size_t n)
{
    SSL *cli = SSL_new(cctx), *srv = weir_tls_server_ssl(s);
    struct result r;

    assert_non_null(cli);
    assert_non_null(srv);
    if (sni != NULL)
        assert_int_equal(SSL_set_tlsext_host_name(cli, sni), 1);
    if (verify_name != NULL)
        assert_int_equal(SSL_set1_host(cli, verify_name), 1);
    SSL_set_connect_state(cli);
    r = handshake(cli, srv);
    if (!r.client_ok || !r.server_ok)
        print_message("sni %s: client %s / server %s\n", sni ? sni : "(none)", r.client_why, r.server_why);
    assert_true(r.client_ok && r.server_ok);
    /* Verified against the root only: the server sent the intermediate. */
    assert_int_equal(SSL_get_verify_result(cli), X509_V_OK);
    peer_cn(cli, cn, n);
    close_both(cli, srv);
    return cn;
}

/* ---- SNI ------------------------------------------------------------------------ */

static void test_sni_selection(void **state)
{
    static const char *const names[] = {"default", "a-rsa", "a-ec", "b", "c", "wild", NULL};
    struct lconf l;
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, &cnt);
    SSL_CTX *cctx = client_ctx(0);
    char cn[64];

    /* default.test, a.test (RSA + ECDSA), b.test and www.b.test (one
     * certificate: one context), c.test, *.wild.test. */
    assert_int_equal(weir_tls_server_nctx(s), 5);

    assert_string_equal(served_for(s, cctx, "b.test", "b.test", cn, sizeof(cn)), "b");
    assert_string_equal(served_for(s, cctx, "www.b.test", "www.b.test", cn, sizeof(cn)), "b");
    assert_string_equal(served_for(s, cctx, "c.test", "c.test", cn, sizeof(cn)), "c");
    assert_string_equal(served_for(s, cctx, "C.Test.", "c.test", cn, sizeof(cn)), "c"); /* case, root dot */
    assert_memory_equal(served_for(s, cctx, "a.test", "a.test", cn, sizeof(cn)), "a-", 2);
    /* Wildcard: one label only. */
    assert_string_equal(served_for(s, cctx, "api.wild.test", "api.wild.test", cn, sizeof(cn)), "wild");
    assert_string_equal(served_for(s, cctx, "x.api.wild.test", "default.test", cn, sizeof(cn)), "default");
    assert_string_equal(served_for(s, cctx, "wild.test", "default.test", cn, sizeof(cn)), "default");
    /* Unknown name and no SNI at all: the first certificate. */
    assert_string_equal(served_for(s, cctx, "unknown.test", "default.test", cn, sizeof(cn)), "default");
    assert_string_equal(served_for(s, cctx, NULL, "default.test", cn, sizeof(cn)), "default");

    assert_int_equal(cnt.full, 10);
    assert_int_equal(cnt.resumed, 0);
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
}

/* An exact name wins over a wildcard that also covers it, whatever the order. */
static void test_sni_exact_before_wildcard(void **state)
{
    static const char *const names[] = {"default", "wild", NULL};
    struct lconf l;
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, NULL);
    SSL_CTX *cctx = client_ctx(0);
    char cn[64];

    /* No exact name for a.wild.test: the wildcard serves it. */
    assert_string_equal(served_for(s, cctx, "a.wild.test", "a.wild.test", cn, sizeof(cn)), "wild");
    weir_tls_server_release(s);

    /* The wildcard first (so it is also the default), default.test exact. */
    static const char *const names2[] = {"wild", "default", NULL};
    s = server_new(make_listen(&l, names2), tickets, NULL);
    assert_string_equal(served_for(s, cctx, "default.test", "default.test", cn, sizeof(cn)), "default");
    assert_string_equal(served_for(s, cctx, "nothing.test", "x.wild.test", cn, sizeof(cn)), "wild");
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
}

/* RSA and ECDSA for one name: the client's signature algorithms choose. */
static void test_rsa_ecdsa_by_sigalgs(void **state)
{
    static const char *const names[] = {"default", "a-rsa", "a-ec", NULL};
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    struct lconf l;
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, NULL);
    char cn[64];

    for (size_t v = 0; v < WEIR_ARRAY_LEN(versions); v++) {
        SSL_CTX *ec = client_ctx(versions[v]), *rsa = client_ctx(versions[v]);

        assert_int_equal(SSL_CTX_set1_sigalgs_list(ec, "ECDSA+SHA256:ECDSA+SHA384"), 1);
        assert_int_equal(SSL_CTX_set1_sigalgs_list(rsa, "rsa_pss_rsae_sha256:RSA+SHA256"), 1);
        assert_string_equal(served_for(s, ec, "a.test", "a.test", cn, sizeof(cn)), "a-ec");
        assert_string_equal(served_for(s, rsa, "a.test", "a.test", cn, sizeof(cn)), "a-rsa");
        /* A name with an RSA certificate only: an ECDSA-only client fails
         * cleanly (no signature algorithm in common). */
        {
            SSL *cli = client_ssl(ec, "default.test"), *srv = weir_tls_server_ssl(s);
            struct result r = handshake(cli, srv);
            assert_false(r.server_ok);
            assert_int_equal(r.server_reason, WEIR_TLS_FAIL_CIPHER);
            close_both(cli, srv);
        }
        SSL_CTX_free(ec);
        SSL_CTX_free(rsa);
    }
    weir_tls_server_release(s);
}

/* ---- protocol rules --------------------------------------------------------------- */

static void test_alpn(void **state)
{
    static const char *const names[] = {"default", NULL};
    static const unsigned char h2[] = {2, 'h', '2'};
    static const unsigned char both[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    struct lconf l;
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, &cnt);
    SSL_CTX *cctx = client_ctx(0);
    const unsigned char *sel;
    unsigned int sellen;
    SSL *cli, *srv;
    struct result r;

    /* h2 only: a no_application_protocol alert, seen by both sides. */
    cli = client_ssl(cctx, "default.test");
    srv = weir_tls_server_ssl(s);
    assert_int_equal(SSL_set_alpn_protos(cli, h2, sizeof(h2)), 0);
    r = handshake(cli, srv);
    assert_false(r.server_ok);
    assert_false(r.client_ok);
    assert_int_equal(r.server_reason, WEIR_TLS_FAIL_ALPN);
    assert_int_equal(r.client_reason, WEIR_TLS_FAIL_ALPN);
    assert_non_null(strstr(r.client_why, "no application protocol"));
    close_both(cli, srv);

    /* h2 and http/1.1: http/1.1 is chosen. */
    cli = client_ssl(cctx, "default.test");
    srv = weir_tls_server_ssl(s);
    assert_int_equal(SSL_set_alpn_protos(cli, both, sizeof(both)), 0);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    SSL_get0_alpn_selected(cli, &sel, &sellen);
    assert_int_equal(sellen, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    close_both(cli, srv);

    /* No ALPN at all: served, nothing selected. */
    cli = client_ssl(cctx, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    SSL_get0_alpn_selected(cli, &sel, &sellen);
    assert_int_equal(sellen, 0);
    close_both(cli, srv);

    assert_int_equal(cnt.full, 2);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_ALPN], 1);
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
}

/* A client limited to TLS 1.0 or 1.1 (security level lowered on its side
 * so that it really offers them) is refused; a TLS 1.2 client is served
 * unless min_version is TLS1.3. */
static void test_versions(void **state)
{
    static const char *const names[] = {"default", NULL};
    static const int old[] = {TLS1_VERSION, TLS1_1_VERSION};
    struct lconf l;
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, &cnt);
    SSL *cli, *srv;
    struct result r;

    for (size_t i = 0; i < WEIR_ARRAY_LEN(old); i++) {
        SSL_CTX *cctx = client_ctx(old[i]);
        assert_int_equal(SSL_CTX_set_min_proto_version(cctx, old[i]), 1);
        assert_int_equal(SSL_CTX_set_cipher_list(cctx, "DEFAULT:@SECLEVEL=0"), 1);
        cli = client_ssl(cctx, "default.test");
        srv = weir_tls_server_ssl(s);
        r = handshake(cli, srv);
        assert_false(r.server_ok);
        assert_int_equal(r.server_reason, WEIR_TLS_FAIL_VERSION);
        close_both(cli, srv);
        SSL_CTX_free(cctx);
    }
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_VERSION], 2);

    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION);
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.server_ok && r.client_ok);
    assert_string_equal(SSL_get_version(srv), "TLSv1.2");
    close_both(cli, srv);
    weir_tls_server_release(s);

    l.t.min_version = WEIR_TLS_1_3;
    s = server_new(&l.t, tickets, &cnt);
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_false(r.server_ok);
    assert_int_equal(r.server_reason, WEIR_TLS_FAIL_VERSION);
    close_both(cli, srv);
    SSL_CTX_free(c12);
    weir_tls_server_release(s);
}

/* ciphers and ciphersuites from the configuration are the ones used. */
static void test_cipher_settings(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct lconf l;
    struct weir_tls_server *s;
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION), *c13 = client_ctx(TLS1_3_VERSION);
    SSL *cli, *srv;
    struct result r;
    char ciphers[] = "ECDHE-RSA-CHACHA20-POLY1305", suites[] = "TLS_CHACHA20_POLY1305_SHA256";

    make_listen(&l, names);
    l.t.ciphers = ciphers;
    l.t.ciphersuites = suites;
    s = server_new(&l.t, tickets, NULL);
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    assert_string_equal(SSL_get_cipher_name(cli), "ECDHE-RSA-CHACHA20-POLY1305");
    close_both(cli, srv);
    cli = client_ssl(c13, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    assert_string_equal(SSL_get_cipher_name(cli), "TLS_CHACHA20_POLY1305_SHA256");
    close_both(cli, srv);
    /* A TLS 1.2 client that has none of them: refused as "cipher". */
    assert_int_equal(SSL_CTX_set_cipher_list(c12, "ECDHE-RSA-AES128-GCM-SHA256"), 1);
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_false(r.server_ok);
    assert_int_equal(r.server_reason, WEIR_TLS_FAIL_CIPHER);
    close_both(cli, srv);
    weir_tls_server_release(s);

    /* Defaults: a TLS 1.2 client gets forward-secret AEAD suites only. */
    s = server_new(make_listen(&l, names), tickets, NULL);
    assert_int_equal(SSL_CTX_set_cipher_list(c12, "AES128-GCM-SHA256:AES256-SHA"), 1); /* RSA key exchange */
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_false(r.server_ok);
    assert_int_equal(r.server_reason, WEIR_TLS_FAIL_CIPHER);
    close_both(cli, srv);
    weir_tls_server_release(s);
    SSL_CTX_free(c12);
    SSL_CTX_free(c13);
}

/* No compression, no early data, no renegotiation. */
static void test_refused_features(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct lconf l;
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, NULL);
    SSL_CTX *c13 = client_ctx(TLS1_3_VERSION), *c12 = client_ctx(TLS1_2_VERSION);
    SSL *cli, *srv;
    SSL_SESSION *sess;
    struct result r;
    char buf[16];

    srv = weir_tls_server_ssl(s);
    assert_true(SSL_get_options(srv) & SSL_OP_NO_COMPRESSION);
    assert_true(SSL_get_options(srv) & SSL_OP_NO_RENEGOTIATION);
    assert_int_equal(SSL_get_max_early_data(srv), 0);
    SSL_free(srv);

    /* A TLS 1.3 ticket never allows 0-RTT. */
    cli = client_ssl(c13, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    pump_app_data(cli, srv);
    sess = SSL_get1_session(cli);
    assert_non_null(sess);
    assert_int_equal(SSL_SESSION_get_max_early_data(sess), 0);
    assert_null(SSL_get_current_compression(cli));
    SSL_SESSION_free(sess);
    close_both(cli, srv);

    /* TLS 1.2: the client asks to renegotiate; the server declines, the
     * renegotiation never completes and the connection is dropped. */
    cli = client_ssl(c12, "default.test");
    srv = weir_tls_server_ssl(s);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    assert_int_equal(SSL_renegotiate(cli), 1);
    int crc = 0, src = 0, done = 0;
    for (int i = 0; i < 16 && !done; i++) {
        crc = SSL_do_handshake(cli);
        src = SSL_read(srv, buf, sizeof(buf));
        done = SSL_get_error(cli, crc) == SSL_ERROR_SSL || SSL_get_error(srv, src) == SSL_ERROR_SSL;
    }
    assert_true(done);
    assert_int_equal(SSL_renegotiate_pending(cli), 1);
    ERR_clear_error();
    close_both(cli, srv);

    SSL_CTX_free(c13);
    SSL_CTX_free(c12);
    weir_tls_server_release(s);
}

/* Bytes that are not a TLS client hello, and a peer that goes away. */
static void test_failure_reasons(void **state)
{
    static const char *const names[] = {"default", NULL};
    static const struct {
        const char *bytes;
        size_t n;
        int reason;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, WEIR_TLS_FAIL_PLAIN_HTTP},
        {"POST /x HTTP/1.1\r\n\r\n", 20, WEIR_TLS_FAIL_PLAIN_HTTP},
        {"CONNECT a:443 HTTP/1.1\r\n\r\n", 26, WEIR_TLS_FAIL_PLAIN_HTTP},
        {"\x16\x09\x09\x00\x05hello", 10, WEIR_TLS_FAIL_PROTOCOL},
        {"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c", 12, WEIR_TLS_FAIL_PROTOCOL},
        {"", 0, WEIR_TLS_FAIL_CLOSED},
    };
    struct lconf l;
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, &cnt);

    for (size_t i = 0; i < WEIR_ARRAY_LEN(cases); i++) {
        SSL *srv = weir_tls_server_ssl(s);
        BIO *bc, *bs;
        char why[256];
        int rc;

        assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
        SSL_set_bio(srv, bs, bs);
        if (cases[i].n > 0)
            assert_int_equal(BIO_write(bc, cases[i].bytes, (int)cases[i].n), (int)cases[i].n);
        BIO_shutdown_wr(bc); /* EOF after the bytes */
        rc = SSL_do_handshake(srv);
        assert_true(rc <= 0);
        int reason = weir_tls_classify(srv, SSL_get_error(srv, rc), why, sizeof(why));
        if (reason != cases[i].reason)
            print_message("case %zu: got %s (%s)\n", i, weir_tls_fail_name(reason), why);
        assert_int_equal(reason, cases[i].reason);
        assert_int_equal(ERR_peek_error(), 0); /* classify clears the thread's queue */
        weir_tls_note_failure(srv, reason);
        SSL_free(srv);
        BIO_free(bc);
    }
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_PLAIN_HTTP], 3);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_PROTOCOL], 2);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_CLOSED], 1);
    assert_string_equal(weir_tls_fail_name(WEIR_TLS_FAIL_PLAIN_HTTP), "plain_http");
    assert_string_equal(weir_tls_fail_name(99), "other");
    weir_tls_server_release(s);
}

/* ---- resumption ---------------------------------------------------------------------- */

/* Full handshake on `from`, then resume on `to`; returns 1 when resumed. */
static int resumes(struct weir_tls_server *from, struct weir_tls_server *to, SSL_CTX *cctx)
{
    SSL *cli = client_ssl(cctx, "default.test"), *srv = weir_tls_server_ssl(from);
    struct result r = handshake(cli, srv);
    SSL_SESSION *sess;
    int reused;

    assert_true(r.client_ok && r.server_ok);
    assert_int_equal(SSL_session_reused(srv), 0);
    pump_app_data(cli, srv);
    sess = SSL_get1_session(cli);
    assert_non_null(sess);
    close_both(cli, srv);

    cli = client_ssl(cctx, "default.test");
    srv = weir_tls_server_ssl(to);
    assert_int_equal(SSL_set_session(cli, sess), 1);
    r = handshake(cli, srv);
    assert_true(r.client_ok && r.server_ok);
    reused = SSL_session_reused(srv);
    assert_int_equal(SSL_session_reused(cli), reused);
    SSL_SESSION_free(sess);
    close_both(cli, srv);
    return reused;
}

/* Two independently built servers (two workers, or before and after a
 * reload) share the process's ticket keys: a ticket from one resumes on
 * the other, in TLS 1.2 and 1.3, also after a key rotation. */
static void test_tickets_shared(void **state)
{
    static const char *const names[] = {"default", "b", NULL};
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    struct lconf l;
    struct weir_tls_counters ca = {0}, cb = {0};
    struct weir_tls_tickets *ring = weir_tls_tickets_new(3600), *other = weir_tls_tickets_new(3600);
    struct weir_tls_server *a = server_new(make_listen(&l, names), ring, &ca);
    struct weir_tls_server *b = server_new(&l.t, ring, &cb);
    struct weir_tls_server *stranger = server_new(&l.t, other, NULL);

    for (size_t v = 0; v < WEIR_ARRAY_LEN(versions); v++) {
        SSL_CTX *cctx = client_ctx(versions[v]);
        assert_true(resumes(a, b, cctx));
        assert_true(resumes(b, a, cctx));
        /* A ticket under the previous key still resumes (and is renewed). */
        SSL *cli = client_ssl(cctx, "default.test"), *srv = weir_tls_server_ssl(a);
        struct result r = handshake(cli, srv);
        assert_true(r.client_ok && r.server_ok);
        pump_app_data(cli, srv);
        SSL_SESSION *sess = SSL_get1_session(cli);
        close_both(cli, srv);
        assert_int_equal(weir_tls_tickets_rotate(ring), 0);
        cli = client_ssl(cctx, "default.test");
        srv = weir_tls_server_ssl(b);
        SSL_set_session(cli, sess);
        r = handshake(cli, srv);
        assert_true(r.client_ok && r.server_ok);
        assert_int_equal(SSL_session_reused(srv), 1);
        close_both(cli, srv);
        /* Two more rotations: the key that sealed it is gone: full handshake. */
        weir_tls_tickets_rotate(ring);
        weir_tls_tickets_rotate(ring);
        cli = client_ssl(cctx, "default.test");
        srv = weir_tls_server_ssl(b);
        SSL_set_session(cli, sess);
        r = handshake(cli, srv);
        assert_true(r.client_ok && r.server_ok);
        assert_int_equal(SSL_session_reused(srv), 0);
        close_both(cli, srv);
        SSL_SESSION_free(sess);
        /* Another process's keys cannot open these tickets. */
        assert_false(resumes(a, stranger, cctx));
        SSL_CTX_free(cctx);
    }
    assert_int_equal(weir_tls_tickets_rotations(ring), 6);
    /* Per server: resumed on a twice per version, on b 3 times per version. */
    assert_int_equal(ca.resumed, 2);
    assert_int_equal(cb.resumed, 4);
    weir_tls_server_release(a);
    weir_tls_server_release(b);
    weir_tls_server_release(stranger);
    weir_tls_tickets_free(ring);
    weir_tls_tickets_free(other);
}

/* The ring rotates by itself once the interval passed. */
static void test_tickets_rotate_by_age(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct lconf l;
    struct weir_tls_tickets *ring = weir_tls_tickets_new(2); /* 2 s: margin for a loaded machine */
    struct weir_tls_server *s = server_new(make_listen(&l, names), ring, NULL);
    SSL_CTX *cctx = client_ctx(TLS1_3_VERSION);

    assert_true(resumes(s, s, cctx));
    assert_int_equal(weir_tls_tickets_rotations(ring), 0);
    usleep(2200 * 1000);
    assert_true(resumes(s, s, cctx)); /* the new ticket is issued under a new key */
    assert_int_equal(weir_tls_tickets_rotations(ring), 1);
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
    weir_tls_tickets_free(ring);
}

/* session_tickets = false: the listener's session cache resumes (TLS 1.2
 * session ids, TLS 1.3 stateful tickets); it belongs to one server object. */
static void test_session_cache(void **state)
{
    static const char *const names[] = {"default", NULL};
    static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    struct lconf l;
    struct weir_tls_server *s, *other;

    make_listen(&l, names)->session_tickets = 0;
    s = server_new(&l.t, NULL, NULL);
    other = server_new(&l.t, NULL, NULL);
    for (size_t v = 0; v < WEIR_ARRAY_LEN(versions); v++) {
        SSL_CTX *cctx = client_ctx(versions[v]);
        assert_true(resumes(s, s, cctx));
        assert_false(resumes(s, other, cctx));
        SSL_CTX_free(cctx);
    }
    weir_tls_server_release(s);
    weir_tls_server_release(other);
}

/* Handshakes and resumptions from several threads at once on one server
 * (workers share the SSL_CTX, the cache and the ring). */
struct thr {
    struct weir_tls_server *s;
    int resumed;
};

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());

    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);
    for (int i = 0; i < 20; i++) {
        SSL *cli = SSL_new(cctx), *srv = weir_tls_server_ssl(t->s);
        BIO *bc, *bs;
        SSL_SESSION *sess = NULL;
        char b = 'x';

        SSL_set_connect_state(cli);
        BIO_new_bio_pair(&bc, 0, &bs, 0);
        SSL_set_bio(cli, bc, bc);
        SSL_set_bio(srv, bs, bs);
        for (int k = 0; k < 32 && (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv)); k++) {
            SSL_do_handshake(cli);
            SSL_do_handshake(srv);
        }
        if (SSL_write(srv, &b, 1) == 1 && SSL_read(cli, &b, 1) == 1)
            sess = SSL_get1_session(cli);
        close_both(cli, srv);
        if (sess == NULL)
            continue;
        cli = SSL_new(cctx);
        srv = weir_tls_server_ssl(t->s);
        SSL_set_connect_state(cli);
        SSL_set_session(cli, sess);
        BIO_new_bio_pair(&bc, 0, &bs, 0);
        SSL_set_bio(cli, bc, bc);
        SSL_set_bio(srv, bs, bs);
        for (int k = 0; k < 32 && (!SSL_is_init_finished(cli) || !SSL_is_init_finished(srv)); k++) {
            SSL_do_handshake(cli);
            SSL_do_handshake(srv);
        }
        t->resumed += SSL_session_reused(srv);
        SSL_SESSION_free(sess);
        close_both(cli, srv);
        if (i == 10)
            weir_tls_tickets_rotate(tickets);
    }
    ERR_clear_error();
    SSL_CTX_free(cctx);
    return NULL;
}

static void test_threads(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct lconf l;
    struct weir_tls_server *s = server_new(make_listen(&l, names), tickets, NULL);
    struct thr t[3];
    pthread_t th[3];

    for (int i = 0; i < 3; i++) {
        t[i].s = s;
        t[i].resumed = 0;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].resumed, 20);
    }
    weir_tls_server_release(s);
}

/* ---- reload lifetime ----------------------------------------------------------------- */

static struct weir_conf *load_conf(const char *text)
{
    char p[160];
    struct weir_conf_errors errs = {0};
    struct weir_conf *c;
    FILE *f;

    snprintf(p, sizeof(p), "%s/weir.conf", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    c = weir_conf_load(p, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(c);
    weir_conf_errors_free(&errs);
    return c;
}

#define RELOAD_CONF(cert)                                                                                    \
    "listen = ( { address = \"127.0.0.1:8443\"; tls = { certificates = ( { cert = \"" cert                   \
    ".pem\"; key = \"" cert ".key\"; }, { cert = \"soon.pem\"; key = \"soon.key\"; } ); }; },\n"             \
    "           { address = \"127.0.0.1:8080\"; } );\n"                                                      \
    "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); },\n"                      \
    "          { name = \"tls\"; servers = ( { address = \"127.0.0.1:9443\"; } );\n"                         \
    "            tls = { ca_file = \"ca.pem\"; cert = \"client.pem\"; key = \"client.key\"; }; } );\n"       \
    "routes = ( { pool = \"api\"; } );\n"

static void test_reload_keeps_old_alive(void **state)
{
    struct weir_conf *c1 = load_conf(RELOAD_CONF("default")), *c2 = load_conf(RELOAD_CONF("c"));
    struct weir_tls_counters cnt[2] = {0};
    struct weir_conf_errors errs = {0};
    struct weir_tls_set *s1 = weir_tls_set_new(c1, tickets, cnt, &errs), *s2;
    SSL_CTX *cctx = client_ctx(0);
    SSL *old_srv, *cli;
    struct result r;
    char cn[64];

    assert_non_null(s1);
    assert_int_equal(s1->nservers, 2);
    assert_non_null(s1->servers[0]);
    assert_null(s1->servers[1]);
    assert_int_equal(s1->nclients, 2);
    assert_null(s1->clients[0]);
    assert_non_null(s1->clients[1]);
    assert_int_equal(weir_tls_live_objects(), 2);
    /* Earliest expiry: the soon-expiring certificate (3 days). */
    assert_true(s1->not_after > time(NULL) + 2 * 86400 && s1->not_after <= time(NULL) + 3 * 86400);
    assert_int_equal(weir_tls_server_not_after(s1->servers[0]), s1->not_after);

    /* A connection accepted before the reload... */
    old_srv = weir_tls_server_ssl(s1->servers[0]);
    /* ...the reload builds the new set and drops the old one. */
    s2 = weir_tls_set_new(c2, tickets, cnt, &errs);
    assert_non_null(s2);
    weir_tls_set_free(s1);
    assert_int_equal(weir_tls_live_objects(), 3); /* the old server lives on for old_srv */

    cli = client_ssl(cctx, NULL);
    assert_int_equal(SSL_set_tlsext_host_name(cli, "c.test"), 1); /* asks for c.test, gets the old default */
    r = handshake(cli, old_srv);
    assert_true(r.client_ok && r.server_ok);
    assert_string_equal(peer_cn(cli, cn, sizeof(cn)), "default"); /* the old certificates */
    SSL_free(cli);
    SSL_free(old_srv);
    assert_int_equal(weir_tls_live_objects(), 2); /* the last connection freed it */

    /* New connections get the new certificate; counters carry on. */
    assert_string_equal(served_for(s2->servers[0], cctx, "c.test", "c.test", cn, sizeof(cn)), "c");
    assert_int_equal(cnt[0].full, 2);
    weir_tls_set_free(s2);
    assert_int_equal(weir_tls_live_objects(), 0);
    SSL_CTX_free(cctx);
    weir_conf_free(c1);
    weir_conf_free(c2);
}

/* A file changed after the configuration was checked: the set is refused
 * with FILE:LINE and nothing is kept. */
static void test_set_errors(void **state)
{
    struct weir_conf *c = load_conf(RELOAD_CONF("default"));
    struct weir_conf_errors errs = {0};
    char want[512];

    free(c->listens[0].tls.certs[1].key);
    c->listens[0].tls.certs[1].key = strdup(path(0, "a-rsa.key"));
    assert_null(weir_tls_set_new(c, tickets, NULL, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof(want),
             "%s/weir.conf:1: tls certificate 1: the key '%s/a-rsa.key' does not match '%s/soon.pem'", dir,
             dir, dir);
    assert_string_equal(errs.msgs[0], want);
    weir_conf_errors_free(&errs);
    assert_int_equal(weir_tls_live_objects(), 0);

    /* The pool's client key replaced by one of another certificate. */
    free(c->listens[0].tls.certs[1].key);
    c->listens[0].tls.certs[1].key = strdup(path(0, "soon.key"));
    free(c->pools[1].tls.key);
    c->pools[1].tls.key = strdup(path(0, "b.key"));
    assert_null(weir_tls_set_new(c, tickets, NULL, &errs));
    assert_int_equal(errs.n, 1);
    snprintf(want, sizeof(want), "%s/weir.conf:5: tls: cannot load the client certificate: ", dir);
    assert_memory_equal(errs.msgs[0], want, strlen(want));
    weir_conf_errors_free(&errs);
    assert_int_equal(weir_tls_live_objects(), 0);
    weir_conf_free(c);
}

/* ---- client side ------------------------------------------------------------------- */

struct pconf {
    struct weir_conf_pool_tls t;
    char ca[160], cert[160], key[160], name[64];
};

static struct weir_conf_pool_tls *make_pool(struct pconf *p, int verify, const char *server_name, int mtls)
{
    memset(p, 0, sizeof(*p));
    p->t.enabled = 1;
    p->t.verify = verify;
    snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", dir);
    p->t.ca_file = p->ca;
    if (server_name != NULL) {
        snprintf(p->name, sizeof(p->name), "%s", server_name);
        p->t.server_name = p->name;
    }
    if (mtls) {
        snprintf(p->cert, sizeof(p->cert), "%s/client.pem", dir);
        snprintf(p->key, sizeof(p->key), "%s/client.key", dir);
        p->t.cert = p->cert;
        p->t.key = p->key;
    }
    return &p->t;
}

static struct weir_tls_client *client_new(const struct weir_conf_pool_tls *t)
{
    struct weir_conf_errors errs = {0};
    struct weir_tls_client *c = weir_tls_client_new(t, "test.conf", &errs);

    for (size_t i = 0; i < errs.n; i++)
        print_message("  %s\n", errs.msgs[i]);
    assert_non_null(c);
    weir_conf_errors_free(&errs);
    return c;
}

/* weir (client) -> a backend serving `leaf`; host as configured. */
static struct result upstream(struct weir_tls_client *c, const char *host, const char *leaf, char *cn,
                              size_t n)
{
    static const char *names[2];
    struct lconf l;
    struct weir_tls_server *backend;
    SSL *cli, *srv;
    struct result r;

    names[0] = leaf;
    names[1] = NULL;
    backend = server_new(make_listen(&l, names), tickets, NULL);
    cli = weir_tls_client_ssl(c, host, NULL);
    assert_non_null(cli);
    srv = weir_tls_server_ssl(backend);
    r = handshake(cli, srv);
    if (cn != NULL)
        peer_cn(cli, cn, n);
    close_both(cli, srv);
    weir_tls_server_release(backend);
    return r;
}

static void test_client_verify(void **state)
{
    struct pconf p;
    struct weir_tls_client *c = client_new(make_pool(&p, 1, NULL, 0));
    struct result r;
    char cn[64];

    /* CA-signed, name matches (the chain comes from the backend). */
    r = upstream(c, "default.test", "default", cn, sizeof(cn));
    assert_true(r.client_ok && r.server_ok);
    /* Wildcard certificate for a name it covers. */
    r = upstream(c, "api.wild.test", "wild", NULL, 0);
    assert_true(r.client_ok);
    /* Self-signed: refused. */
    r = upstream(c, "self.test", "self", NULL, 0);
    assert_false(r.client_ok);
    assert_int_equal(r.client_reason, WEIR_TLS_FAIL_CERT);
    assert_non_null(strstr(r.client_why, "self-signed certificate"));
    /* Wrong name: refused. */
    r = upstream(c, "other.test", "default", NULL, 0);
    assert_false(r.client_ok);
    assert_int_equal(r.client_reason, WEIR_TLS_FAIL_CERT);
    assert_non_null(strstr(r.client_why, "hostname mismatch"));
    /* Wildcard: one label only. */
    r = upstream(c, "a.b.wild.test", "wild", NULL, 0);
    assert_false(r.client_ok);
    /* Expired: refused. */
    r = upstream(c, "expired.test", "expired", NULL, 0);
    assert_false(r.client_ok);
    assert_non_null(strstr(r.client_why, "certificate has expired"));
    /* An IP address: verified against IP subjectAltNames, no SNI sent. */
    r = upstream(c, "127.0.0.1", "ip", NULL, 0);
    assert_true(r.client_ok);
    r = upstream(c, "[::1]", "ip", NULL, 0);
    assert_false(r.client_ok);
    r = upstream(c, "127.0.0.1", "default", NULL, 0);
    assert_false(r.client_ok);
    weir_tls_client_release(c);

    /* server_name: the SNI sent and the name verified, whatever the host. */
    c = client_new(make_pool(&p, 1, "b.test", 0));
    {
        static const char *const names[] = {"default", "b", NULL};
        struct lconf l;
        struct weir_tls_server *backend = server_new(make_listen(&l, names), tickets, NULL);
        SSL *cli = weir_tls_client_ssl(c, "10.1.2.3", NULL), *srv = weir_tls_server_ssl(backend);
        r = handshake(cli, srv);
        assert_true(r.client_ok && r.server_ok);
        assert_string_equal(peer_cn(cli, cn, sizeof(cn)), "b");
        assert_string_equal(SSL_get_servername(srv, TLSEXT_NAMETYPE_host_name), "b.test");
        close_both(cli, srv);
        weir_tls_server_release(backend);
    }
    weir_tls_client_release(c);

    /* verify = false: anything goes (self-signed, wrong name, expired). */
    c = client_new(make_pool(&p, 0, NULL, 0));
    assert_true(upstream(c, "whatever.test", "self", NULL, 0).client_ok);
    assert_true(upstream(c, "whatever.test", "expired", NULL, 0).client_ok);
    weir_tls_client_release(c);
}

/* mTLS: a backend that demands a client certificate signed by the CA. */
static struct result mtls_to(struct weir_tls_client *c, char *peer, size_t n)
{
    static const char *const names[] = {"default", NULL};
    struct lconf l;
    struct weir_tls_server *backend = server_new(make_listen(&l, names), tickets, NULL);
    SSL *cli = weir_tls_client_ssl(c, "default.test", NULL), *srv = weir_tls_server_ssl(backend);
    X509_STORE *store = X509_STORE_new();
    struct result r;
    X509 *x;

    assert_int_equal(X509_STORE_load_file(store, path(1, "ca.pem")), 1);
    assert_int_equal(SSL_set1_verify_cert_store(srv, store), 1);
    X509_STORE_free(store);
    SSL_set_verify(srv, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    r = handshake(cli, srv);
    peer[0] = '\0';
    x = SSL_get1_peer_certificate(srv);
    if (x != NULL) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, peer, (int)n);
        X509_free(x);
    }
    if (r.server_ok) /* TLS 1.3: the client's certificate is checked after its Finished */
        pump_app_data(cli, srv);
    close_both(cli, srv);
    weir_tls_server_release(backend);
    return r;
}

static void test_client_mtls(void **state)
{
    struct pconf p;
    struct weir_tls_client *c = client_new(make_pool(&p, 1, NULL, 1));
    struct result r;
    char peer[64];

    r = mtls_to(c, peer, sizeof(peer));
    assert_true(r.client_ok && r.server_ok);
    assert_string_equal(peer, "client");
    weir_tls_client_release(c);

    c = client_new(make_pool(&p, 1, NULL, 0));
    r = mtls_to(c, peer, sizeof(peer));
    assert_false(r.server_ok);
    assert_int_equal(r.server_reason, WEIR_TLS_FAIL_CERT);
    weir_tls_client_release(c);
}

/* ALPN offered to backends: http/1.1; the access-log fields. */
static void test_client_alpn_and_info(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct pconf p;
    struct lconf l;
    struct weir_tls_client *c = client_new(make_pool(&p, 1, NULL, 0));
    struct weir_tls_server *backend = server_new(make_listen(&l, names), tickets, NULL);
    SSL *cli = weir_tls_client_ssl(c, "default.test", NULL), *srv = weir_tls_server_ssl(backend);
    const unsigned char *sel;
    unsigned int sellen;
    const char *version, *cipher, *sni;
    struct result r = handshake(cli, srv);

    assert_true(r.client_ok && r.server_ok);
    SSL_get0_alpn_selected(srv, &sel, &sellen);
    assert_int_equal(sellen, 8);
    assert_memory_equal(sel, "http/1.1", 8);
    weir_tls_info(srv, &version, &cipher, &sni);
    assert_string_equal(version, "TLSv1.3");
    assert_string_equal(cipher, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(sni, "default.test");
    assert_ptr_equal(weir_tls_server_of(srv), backend);
    assert_null(weir_tls_server_of(cli));
    close_both(cli, srv);
    weir_tls_server_release(backend);
    weir_tls_client_release(c);
}

/* Connections to backends resume their server's last session. */
static int client_resumes(struct weir_tls_client *c, struct weir_tls_server *backend, const char *key)
{
    SSL *cli = weir_tls_client_ssl(c, "default.test", key), *srv = weir_tls_server_ssl(backend);
    struct result r = handshake(cli, srv);
    int reused;

    assert_true(r.client_ok && r.server_ok);
    assert_int_equal(SSL_get_verify_result(cli), X509_V_OK);
    pump_app_data(cli, srv); /* TLS 1.3: the client takes its tickets */
    reused = SSL_session_reused(cli);
    close_both(cli, srv);
    return reused;
}

static void test_client_session_reuse(void **state)
{
    static const char *const names[] = {"default", NULL};
    struct pconf p;
    struct lconf l;
    struct weir_tls_client *c = client_new(make_pool(&p, 1, NULL, 0));
    struct weir_tls_server *backend = server_new(make_listen(&l, names), tickets, NULL);

    assert_false(client_resumes(c, backend, "10.0.0.1:443"));
    assert_true(client_resumes(c, backend, "10.0.0.1:443"));
    assert_true(client_resumes(c, backend, "10.0.0.1:443"));
    assert_false(client_resumes(c, backend, "10.0.0.2:443")); /* another server: its own session */
    assert_true(client_resumes(c, backend, "10.0.0.2:443"));
    assert_false(client_resumes(c, backend, NULL));
    assert_false(client_resumes(c, backend, NULL));
    /* More servers than the table holds: the oldest are replaced, no leak. */
    for (int i = 0; i < 300; i++) {
        char key[32];
        snprintf(key, sizeof(key), "10.1.%d.%d:443", i / 256, i % 256);
        SSL *cli = weir_tls_client_ssl(c, "default.test", key), *srv = weir_tls_server_ssl(backend);
        struct result r = handshake(cli, srv);
        assert_true(r.client_ok && r.server_ok);
        pump_app_data(cli, srv);
        close_both(cli, srv);
    }
    assert_true(client_resumes(c, backend, "10.1.1.43:443")); /* the 300th: kept */
    weir_tls_server_release(backend);
    weir_tls_client_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sni_selection, check_no_leak),
        cmocka_unit_test_teardown(test_sni_exact_before_wildcard, check_no_leak),
        cmocka_unit_test_teardown(test_rsa_ecdsa_by_sigalgs, check_no_leak),
        cmocka_unit_test_teardown(test_alpn, check_no_leak),
        cmocka_unit_test_teardown(test_versions, check_no_leak),
        cmocka_unit_test_teardown(test_cipher_settings, check_no_leak),
        cmocka_unit_test_teardown(test_refused_features, check_no_leak),
        cmocka_unit_test_teardown(test_failure_reasons, check_no_leak),
        cmocka_unit_test_teardown(test_tickets_shared, check_no_leak),
        cmocka_unit_test_teardown(test_tickets_rotate_by_age, check_no_leak),
        cmocka_unit_test_teardown(test_session_cache, check_no_leak),
        cmocka_unit_test_teardown(test_threads, check_no_leak),
        cmocka_unit_test_teardown(test_reload_keeps_old_alive, check_no_leak),
        cmocka_unit_test_teardown(test_set_errors, check_no_leak),
        cmocka_unit_test_teardown(test_client_verify, check_no_leak),
        cmocka_unit_test_teardown(test_client_mtls, check_no_leak),
        cmocka_unit_test_teardown(test_client_alpn_and_info, check_no_leak),
        cmocka_unit_test_teardown(test_client_session_reuse, check_no_leak),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
