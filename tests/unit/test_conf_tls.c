/*
 * test_conf_tls.c - the TLS keys of the configuration (conf_tls.c):
 * listen[].tls, listen[].redirect_https, pools[].tls. Values and defaults,
 * one test per kind of error with its exact "FILE:LINE: message", expiry
 * warnings, and the deep copy of the new pointer fields.
 *
 * Certificates are made by tests/unit/tls-certs.sh (the openssl command)
 * into a temporary directory, once for the whole file; each configuration
 * is written into that directory too, so relative paths resolve there.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir/conf.h"
#include "weir/conf_edit.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

static char dir[64];

static int setup_certs(void **state)
{
    char cmd[512];

    snprintf(dir, sizeof(dir), "/tmp/weir-test-conf-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/unit/tls-certs.sh' '%s'", TEST_SRCDIR, dir);
    if (system(cmd) != 0) {
        print_message("tls-certs.sh failed: see %s/openssl.log\n", dir);
        return -1;
    }
    return 0;
}

static int teardown_certs(void **state)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Line 1: */
#define POOLS  "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } ); } );\n"
#define ROUTES "routes = ( { pool = \"api\"; } );\n"

struct loaded {
    char path[128];
    struct weir_conf *c;
    struct weir_conf_errors errs;
};

static void load_text(struct loaded *ld, const char *text)
{
    FILE *f;

    memset(ld, 0, sizeof(*ld));
    snprintf(ld->path, sizeof(ld->path), "%s/weir.conf", dir);
    f = fopen(ld->path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
    ld->c = weir_conf_load(ld->path, &ld->errs);
}

static void unload(struct loaded *ld)
{
    weir_conf_free(ld->c);
    weir_conf_errors_free(&ld->errs);
}

static void dump_errors(const struct loaded *ld)
{
    for (size_t i = 0; i < ld->errs.n; i++)
        print_message("  error[%zu]: %s\n", i, ld->errs.msgs[i]);
}

static struct weir_conf *load_ok(struct loaded *ld, const char *text)
{
    load_text(ld, text);
    if (ld->c == NULL)
        dump_errors(ld);
    assert_non_null(ld->c);
    assert_int_equal(ld->errs.n, 0);
    return ld->c;
}

/* Expect the file refused with exactly one error: "<conf>:" + suffix, where
 * "@" in suffix stands for the certificate directory. */
static void expect_one_error_impl(const char *text, const char *suffix, const char *file, int line)
{
    struct loaded ld;
    char want[2048];

    snprintf(want, sizeof(want), "%s/weir.conf:", dir);
    for (const char *p = suffix; *p != '\0'; p++) {
        size_t n = strlen(want);
        if (*p == '@')
            snprintf(want + n, sizeof(want) - n, "%s", dir);
        else if (n + 1 < sizeof(want))
            want[n] = *p, want[n + 1] = '\0';
    }
    load_text(&ld, text);
    if (ld.c != NULL || ld.errs.n != 1 || strcmp(ld.errs.msgs[0], want) != 0) {
        print_message("expected exactly one error: %s\n", want);
        dump_errors(&ld);
        unload(&ld);
        _fail(file, line);
    }
    unload(&ld);
}
#define expect_one_error(text, suffix) expect_one_error_impl((text), (suffix), __FILE__, __LINE__)

/* A TLS listener written on lines 1-3 with `extra` inside its tls group on line 2. */
#define TLS_LISTEN(extra)                                                                                    \
    "listen = ( { address = \"127.0.0.1:8443\";\n"                                  /* 1 */                  \
    "  tls = { certificates = ( { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; } ); " /* 2 */                  \
        extra " };\n"                                                                                        \
    "} );\n" /* 3 */

/* ---- values and defaults -------------------------------------------------- */

static void test_listen_tls_values(void **state)
{
    struct loaded ld;
    char want[256];
    struct weir_conf *c =
        load_ok(&ld, "listen = (\n"
                     "  { address = \"127.0.0.1:8443\";\n"
                     "    tls = {\n"
                     "      certificates = (\n"
                     "        { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; },\n" /* 5 */
                     "        { cert = \"a-ec.pem\"; key = \"a-ec.key\"; }\n"    /* 6 */
                     "      );\n"
                     "      min_version = \"TLS1.3\";\n"
                     "      ciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aNULL\";\n"
                     "      ciphersuites = \"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256\";\n"
                     "      session_tickets = false;\n"
                     "      handshake_timeout_ms = 2500;\n"
                     "    }; },\n"
                     "  { address = \"127.0.0.1:8080\"; redirect_https = true; }\n"
                     ");\n" POOLS ROUTES);

    assert_int_equal(c->nlistens, 2);
    const struct weir_conf_listen_tls *t = &c->listens[0].tls;
    assert_int_equal(t->enabled, 1);
    assert_int_equal(c->listens[0].redirect_https, 0);
    assert_int_equal(t->ncerts, 2);
    snprintf(want, sizeof(want), "%s/a-rsa.pem", dir); /* relative to the configuration's directory */
    assert_string_equal(t->certs[0].cert, want);
    snprintf(want, sizeof(want), "%s/a-ec.key", dir);
    assert_string_equal(t->certs[1].key, want);
    assert_int_equal(t->certs[0].cert_line, 5);
    assert_int_equal(t->certs[1].key_line, 6);
    assert_int_equal(t->min_version, WEIR_TLS_1_3);
    assert_string_equal(t->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aNULL");
    assert_string_equal(t->ciphersuites, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
    assert_int_equal(t->session_tickets, 0);
    assert_int_equal(t->handshake_timeout_ms, 2500);

    assert_int_equal(c->listens[1].tls.enabled, 0);
    assert_int_equal(c->listens[1].redirect_https, 1);
    assert_int_equal(c->pools[0].tls.enabled, 0);
    unload(&ld);
}

static void test_listen_tls_defaults(void **state)
{
    struct loaded ld;
    char want[256];
    struct weir_conf *c = load_ok(&ld, TLS_LISTEN("") POOLS ROUTES);
    const struct weir_conf_listen_tls *t = &c->listens[0].tls;

    assert_int_equal(t->enabled, 1);
    assert_int_equal(t->ncerts, 1);
    snprintf(want, sizeof(want), "%s/a-rsa.key", dir);
    assert_string_equal(t->certs[0].key, want);
    assert_int_equal(t->min_version, WEIR_TLS_1_2);
    assert_null(t->ciphers);
    assert_null(t->ciphersuites);
    assert_int_equal(t->session_tickets, 1);
    assert_int_equal(t->handshake_timeout_ms, 10000);
    assert_int_equal(c->listens[0].redirect_https, 0);
    unload(&ld);
}

static void test_pool_tls_values(void **state)
{
    struct loaded ld;
    char want[256];
    struct weir_conf *c =
        load_ok(&ld, "listen = ( { address = \"127.0.0.1:8080\"; } );\n"
                     "pools = (\n"
                     "  { name = \"pay\"; servers = ( { address = \"127.0.0.1:9443\"; } );\n"
                     "    tls = { verify = true; ca_file = \"ca.pem\"; server_name = \"Payments.Internal\";\n"
                     "            cert = \"client.pem\"; key = \"client.key\"; }; },\n"
                     "  { name = \"loose\"; servers = ( { address = \"127.0.0.1:9444\"; } );\n"
                     "    tls = { verify = false; }; },\n"
                     "  { name = \"byip\"; servers = ( { address = \"127.0.0.1:9445\"; } );\n"
                     "    tls = { server_name = \"127.0.0.1\"; }; },\n"
                     "  { name = \"plain\"; servers = ( { address = \"127.0.0.1:9001\"; } ); }\n"
                     ");\n"
                     "routes = ( { pool = \"pay\"; } );\n");
    const struct weir_conf_pool_tls *t = &c->pools[0].tls;

    assert_int_equal(t->enabled, 1);
    assert_int_equal(t->verify, 1);
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(t->ca_file, want);
    assert_string_equal(t->server_name, "payments.internal");
    snprintf(want, sizeof(want), "%s/client.pem", dir);
    assert_string_equal(t->cert, want);
    snprintf(want, sizeof(want), "%s/client.key", dir);
    assert_string_equal(t->key, want);

    t = &c->pools[1].tls;
    assert_int_equal(t->enabled, 1);
    assert_int_equal(t->verify, 0);
    assert_null(t->ca_file);
    assert_null(t->server_name);
    assert_null(t->cert);
    assert_null(t->key);
    assert_int_equal(c->pools[2].tls.verify, 1); /* default */
    assert_string_equal(c->pools[2].tls.server_name, "127.0.0.1");
    assert_int_equal(c->pools[3].tls.enabled, 0);
    unload(&ld);
}

/* The runtime API's copy owns its own copies of every TLS string. */
static void test_dup(void **state)
{
    struct loaded ld;
    struct weir_conf *c = load_ok(
        &ld, "listen = ( { address = \"127.0.0.1:8443\"; tls = { certificates = (\n"
             "  { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; }, { cert = \"b.pem\"; key = \"b.key\"; } );\n"
             "  ciphers = \"HIGH:!aNULL\"; ciphersuites = \"TLS_AES_256_GCM_SHA384\"; }; } );\n"
             "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
             "  tls = { ca_file = \"ca.pem\"; server_name = \"x.test\"; cert = \"client.pem\";\n"
             "          key = \"client.key\"; }; } );\n" ROUTES);
    struct weir_conf *d = weir_conf_dup(c);
    char want[256];

    assert_non_null(d);
    assert_ptr_not_equal(d->listens[0].tls.certs, c->listens[0].tls.certs);
    assert_ptr_not_equal(d->listens[0].tls.certs[1].cert, c->listens[0].tls.certs[1].cert);
    assert_ptr_not_equal(d->listens[0].tls.ciphers, c->listens[0].tls.ciphers);
    assert_ptr_not_equal(d->pools[0].tls.ca_file, c->pools[0].tls.ca_file);
    assert_ptr_not_equal(d->pools[0].tls.key, c->pools[0].tls.key);
    unload(&ld); /* the copy must survive the original */

    assert_int_equal(d->listens[0].tls.ncerts, 2);
    snprintf(want, sizeof(want), "%s/b.key", dir);
    assert_string_equal(d->listens[0].tls.certs[1].key, want);
    assert_string_equal(d->listens[0].tls.ciphers, "HIGH:!aNULL");
    assert_string_equal(d->listens[0].tls.ciphersuites, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(d->pools[0].tls.server_name, "x.test");
    snprintf(want, sizeof(want), "%s/client.pem", dir);
    assert_string_equal(d->pools[0].tls.cert, want);
    snprintf(want, sizeof(want), "%s/client.key", dir);
    assert_string_equal(d->pools[0].tls.key, want);
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(d->pools[0].tls.ca_file, want);
    weir_conf_free(d);
}

/* ---- errors ----------------------------------------------------------------- */

static void test_error_cert_files(void **state)
{
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"nope.pem\"; key = \"a-rsa.key\"; } ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates[0].cert: cannot read '@/nope.pem': No such file or directory");
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"a-rsa.pem\";\n"
        "                             key = \"/nonexistent/k.key\"; } ); }; } );\n" POOLS ROUTES,
        "3: listen[0].tls.certificates[0].key: cannot read '/nonexistent/k.key': No such file or "
        "directory");
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"garbage.pem\"; key = \"a-rsa.key\"; } ); }; } );\n" POOLS
            ROUTES,
        "2: listen[0].tls.certificates[0].cert: '@/garbage.pem' contains no PEM certificate");
    /* A certificate file given as the key, and an encrypted key. */
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"a-rsa.pem\"; key = \"a-rsa.pem\"; } ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates[0].key: '@/a-rsa.pem' contains no PEM private key (encrypted "
        "keys are not supported)");
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"a-ec.pem\"; key = \"enc.key\"; } ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates[0].key: '@/enc.key' contains no PEM private key (encrypted "
        "keys are not supported)");
}

static void test_error_mismatch(void **state)
{
    /* Same key type (RSA), different key: the second certificate is wrong. */
    expect_one_error("listen = ( { address = \"127.0.0.1:8443\";\n"
                     "  tls = { certificates = (\n"
                     "    { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; },\n"
                     "    { cert = \"c.pem\";\n"
                     "      key = \"a-rsa.key\"; } ); }; } );\n" POOLS ROUTES,
                     "5: listen[0].tls.certificates[1].key: the key '@/a-rsa.key' does not match the "
                     "certificate '@/c.pem'");
    /* A DSA key: no slot for it in OpenSSL's server contexts. */
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"dsa.pem\"; key = \"dsa.key\"; } ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates[0].key: '@/dsa.key' is a DSA key: weir takes RSA, ECDSA, Ed25519 "
        "and Ed448 keys");
    /* RSA certificate, ECDSA key. */
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( { cert = \"a-rsa.pem\"; key = \"a-ec.key\"; } ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates[0].key: the key '@/a-ec.key' does not match the certificate "
        "'@/a-rsa.pem'");
}

static void test_error_listen_keys(void **state)
{
    expect_one_error(
        "listen = ( { address = \"127.0.0.1:8443\";\n"
        "  tls = { certificates = ( ); }; } );\n" POOLS ROUTES,
        "2: listen[0].tls.certificates is empty: at least one certificate { cert = ...; key = ...; } "
        "is required");
    expect_one_error("listen = ( { address = \"127.0.0.1:8443\";\n"
                     "  tls = { min_version = \"TLS1.2\"; }; } );\n" POOLS ROUTES,
                     "2: missing required key 'certificates' in listen[0].tls");
    expect_one_error("listen = ( { address = \"127.0.0.1:8443\";\n"
                     "  tls = { certificates = ( { cert = \"a-rsa.pem\"; } ); }; } );\n" POOLS ROUTES,
                     "2: missing required key 'key' in listen[0].tls.certificates[0]");
    expect_one_error(TLS_LISTEN("min_version = \"TLS1.1\";") POOLS ROUTES,
                     "2: listen[0].tls.min_version must be one of TLS1.2, TLS1.3 (got \"TLS1.1\")");
    expect_one_error(TLS_LISTEN("ciphers = \"NO-SUCH-CIPHER\";") POOLS ROUTES,
                     "2: listen[0].tls.ciphers: no TLS 1.2 cipher matches \"NO-SUCH-CIPHER\"");
    expect_one_error(TLS_LISTEN("ciphers = \"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA265\";")
                         POOLS ROUTES,
                     "2: listen[0].tls.ciphers: unknown cipher 'ECDHE-RSA-AES128-GCM-SHA265' (see `openssl "
                     "ciphers -v`)");
    expect_one_error(TLS_LISTEN("ciphersuites = \"TLS_AES_128_GCM_SHA256:TLS_AES_512\";") POOLS ROUTES,
                     "2: listen[0].tls.ciphersuites: unknown TLS 1.3 suite 'TLS_AES_512' (known: "
                     "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, "
                     "TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256)");
    expect_one_error(TLS_LISTEN("handshake_timeout_ms = 0;") POOLS ROUTES,
                     "2: listen[0].tls.handshake_timeout_ms must be between 1 and 86400000 (got 0)");
    expect_one_error(TLS_LISTEN("session_tickets = \"yes\";") POOLS ROUTES,
                     "2: listen[0].tls.session_tickets must be a boolean (true or false) (got the string "
                     "\"yes\")");
    expect_one_error(TLS_LISTEN("sni = true;") POOLS ROUTES, "2: unknown key 'sni' in listen[0].tls");
    expect_one_error("listen = ( { address = \"127.0.0.1:8443\"; tls = \"on\"; } );\n" POOLS ROUTES,
                     "1: listen[0].tls must be a group { ... } (got the string \"on\")");
    expect_one_error("listen = ( { address = \"127.0.0.1:8443\";\n"
                     "  tls = { certificates = ( { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; } ); };\n"
                     "  redirect_https = true; } );\n" POOLS ROUTES,
                     "3: redirect_https is for a plain listener: this one has a tls group (line 2)");
    expect_one_error("listen = ( { address = \"127.0.0.1:8080\"; redirect_https = 1; } );\n" POOLS ROUTES,
                     "1: listen[0].redirect_https must be a boolean (true or false) (got the integer 1)");
}

#define POOL_TLS(extra)                                                                                      \
    "listen = ( { address = \"127.0.0.1:8080\"; } );\n"                              /* 1 */                 \
    "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n" /* 2 */                 \
    "  tls = { " extra " }; } );\n" ROUTES                                           /* 3 */

static void test_error_pool_keys(void **state)
{
    expect_one_error(POOL_TLS("cert = \"client.pem\";"),
                     "3: pools[0].tls: a client certificate needs both cert and key (only cert is set)");
    expect_one_error(POOL_TLS("key = \"client.key\";"),
                     "3: pools[0].tls: a client certificate needs both cert and key (only key is set)");
    expect_one_error(POOL_TLS("cert = \"client.pem\"; key = \"b.key\";"),
                     "3: pools[0].tls.key: the key '@/b.key' does not match the certificate '@/client.pem'");
    expect_one_error(POOL_TLS("cert = \"missing.pem\"; key = \"client.key\";"),
                     "3: pools[0].tls.cert: cannot read '@/missing.pem': No such file or directory");
    expect_one_error(POOL_TLS("ca_file = \"garbage.pem\";"),
                     "3: pools[0].tls.ca_file: '@/garbage.pem' contains no PEM certificate");
    expect_one_error(POOL_TLS("ca_file = \"\";"), "3: pools[0].tls.ca_file must not be empty");
    expect_one_error(POOL_TLS("server_name = \"bad name\";"),
                     "3: pools[0].tls.server_name must be a host name or an IP address (got \"bad name\")");
    expect_one_error(POOL_TLS("verify = \"no\";"),
                     "3: pools[0].tls.verify must be a boolean (true or false) (got the string \"no\")");
    expect_one_error(POOL_TLS("min_version = \"TLS1.2\";"), "3: unknown key 'min_version' in pools[0].tls");
}

/* All errors of a file are reported in one run. */
static void test_error_several(void **state)
{
    struct loaded ld;

    load_text(&ld, "listen = ( { address = \"127.0.0.1:8443\";\n"
                   "  tls = { certificates = ( { cert = \"nope.pem\"; key = \"a-rsa.key\"; },\n"
                   "                           { cert = \"c.pem\"; key = \"b.key\"; } );\n"
                   "          min_version = \"SSL3\"; }; } );\n" POOLS ROUTES);
    assert_null(ld.c);
    assert_int_equal(ld.errs.n, 3);
    unload(&ld);
}

/* ---- expiry warnings (weir -t) ----------------------------------------------- */

static void test_expiry_warnings(void **state)
{
    struct loaded ld;
    struct weir_conf_errors w = {0};
    char want[512];
    struct weir_conf *c =
        load_ok(&ld, "listen = ( { address = \"127.0.0.1:8443\"; tls = { certificates = (\n"
                     "  { cert = \"a-rsa.pem\"; key = \"a-rsa.key\"; },\n"       /* 2: valid 30 days */
                     "  { cert = \"soon.pem\"; key = \"soon.key\"; },\n"         /* 3: 3 days left */
                     "  { cert = \"expired.pem\"; key = \"expired.key\"; } );\n" /* 4: 2020 */
                     "  }; } );\n"
                     "pools = ( { name = \"api\"; servers = ( { address = \"127.0.0.1:9001\"; } );\n"
                     "  tls = { cert = \"client.pem\"; key = \"client.key\"; }; } );\n" ROUTES);
    time_t now = time(NULL);

    /* An expired certificate is accepted by the loader: only a warning. */
    assert_int_equal(weir_conf_tls_warnings(c, now, 14, &w), 2);
    assert_int_equal(w.n, 2);
    snprintf(want, sizeof(want),
             "%s:3: warning: listen[0].tls.certificates[1].cert: the certificate '%s/soon.pem' "
             "expires in 3 day(s), on ",
             ld.path, dir);
    assert_memory_equal(w.msgs[0], want, strlen(want));
    snprintf(want, sizeof(want),
             "%s:4: warning: listen[0].tls.certificates[2].cert: the certificate '%s/expired.pem' expired on "
             "2020-02-01 00:00:00 UTC",
             ld.path, dir);
    assert_string_equal(w.msgs[1], want);
    weir_conf_errors_free(&w);

    /* Within 2 days only the expired one; 40 days ahead every certificate. */
    assert_int_equal(weir_conf_tls_warnings(c, now, 2, &w), 1);
    weir_conf_errors_free(&w);
    assert_int_equal(weir_conf_tls_warnings(c, now + 40 * 86400, 14, &w), 4);
    snprintf(want, sizeof(want),
             "%s:7: warning: pools[0].tls.cert: the certificate '%s/client.pem' expired on ", ld.path, dir);
    assert_memory_equal(w.msgs[3], want, strlen(want));
    weir_conf_errors_free(&w);
    unload(&ld);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_tls_values), cmocka_unit_test(test_listen_tls_defaults),
        cmocka_unit_test(test_pool_tls_values),   cmocka_unit_test(test_dup),
        cmocka_unit_test(test_error_cert_files),  cmocka_unit_test(test_error_mismatch),
        cmocka_unit_test(test_error_listen_keys), cmocka_unit_test(test_error_pool_keys),
        cmocka_unit_test(test_error_several),     cmocka_unit_test(test_expiry_warnings),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
