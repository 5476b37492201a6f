/*
 * conf_tls.c - the TLS keys of the configuration: listen[].tls,
 * listen[].redirect_https (a plain boolean, stored by conf.c's table) and
 * pools[].tls.
 *
 * Beyond types and ranges, the loader reads every certificate and key file
 * named, so that an unreadable file, a file without a PEM certificate or
 * key, an encrypted key and a key that does not belong to its certificate
 * are refused with FILE:LINE when the file is loaded (at start, `weir -t`
 * and SIGHUP alike), never later when a context is built. Cipher strings
 * are checked against OpenSSL: a list that selects nothing and a name
 * OpenSSL does not know are errors (OpenSSL itself would skip unknown TLS
 * 1.3 names silently). Relative paths are taken from the configuration
 * file's directory and stored absolute.
 *
 * Expiry is not an error (an operator may have to start with a certificate
 * that is about to be replaced): weir_conf_tls_warnings() lists the
 * certificates that expired or expire soon, for `weir -t` and start-up.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf_int.h"

/* ---- files ------------------------------------------------------------------ */

/* A path relative to the configuration file's directory, made absolute. */
static void set_path(struct loader *L, char **dst, const char *v)
{
    char *full;
    size_t n;

    if (v[0] == '/' || L->dir == NULL) {
        conf_set_str(L, dst, v);
        return;
    }
    n = strlen(L->dir) + 1 + strlen(v) + 1;
    full = malloc(n);
    if (full == NULL) {
        L->oom = 1;
        return;
    }
    snprintf(full, n, "%s%s%s", L->dir, strcmp(L->dir, "/") == 0 ? "" : "/", v);
    free(*dst);
    *dst = full;
}

/* PEM password callback: encrypted keys are refused (weir starts unattended). */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* The first certificate of a PEM file, or NULL with a message in why. */
static X509 *read_cert(const char *file, char *why, size_t n)
{
    FILE *f = fopen(file, "r");
    X509 *x;

    if (f == NULL) {
        snprintf(why, n, "cannot read '%s': %s", file, strerror(errno));
        return NULL;
    }
    x = PEM_read_X509(f, NULL, no_password, NULL);
    fclose(f);
    ERR_clear_error();
    if (x == NULL)
        snprintf(why, n, "'%s' contains no PEM certificate", file);
    return x;
}

static EVP_PKEY *read_key(const char *file, char *why, size_t n)
{
    FILE *f = fopen(file, "r");
    EVP_PKEY *k;

    if (f == NULL) {
        snprintf(why, n, "cannot read '%s': %s", file, strerror(errno));
        return NULL;
    }
    k = PEM_read_PrivateKey(f, NULL, no_password, NULL);
    fclose(f);
    ERR_clear_error();
    if (k == NULL)
        snprintf(why, n, "'%s' contains no PEM private key (encrypted keys are not supported)", file);
    return k;
}

/* The key types tls.c gives a certificate slot (DSA and others are refused). */
static int key_type_ok(const EVP_PKEY *k)
{
    switch (EVP_PKEY_get_base_id(k)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
    case EVP_PKEY_EC:
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        return 1;
    default:
        return 0;
    }
}

/* Check a cert/key pair; errors at the cert or key setting of group g. */
static void check_pair(struct loader *L, const config_setting_t *g, const char *path, const char *cert,
                       const char *key)
{
    char why[1200];
    X509 *x = NULL;
    EVP_PKEY *k = NULL;

    if (cert == NULL || key == NULL)
        return;
    x = read_cert(cert, why, sizeof(why));
    if (x == NULL)
        conf_err_at(L, config_setting_get_member(g, "cert"), "%s.cert: %s", path, why);
    k = read_key(key, why, sizeof(why));
    if (k == NULL)
        conf_err_at(L, config_setting_get_member(g, "key"), "%s.key: %s", path, why);
    if (k != NULL && !key_type_ok(k))
        conf_err_at(L, config_setting_get_member(g, "key"),
                    "%s.key: '%s' is a %s key: weir takes RSA, ECDSA, Ed25519 and Ed448 keys", path, key,
                    OBJ_nid2sn(EVP_PKEY_get_base_id(k)));
    else if (x != NULL && k != NULL && X509_check_private_key(x, k) != 1)
        conf_err_at(L, config_setting_get_member(g, "key"),
                    "%s.key: the key '%s' does not match the certificate '%s'", path, key, cert);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

/* ---- cipher strings --------------------------------------------------------- */

static SSL_CTX *scratch_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());

    ERR_clear_error();
    return ctx;
}

/* ciphers: the whole list must select at least one TLS 1.2 cipher, and each
 * plain element (not !x, -x, +x or @x) must be known to OpenSSL. */
static void key_ciphers(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_listen_tls *t = obj;
    const char *v = config_setting_get_string(s);
    SSL_CTX *ctx = scratch_ctx();
    char *copy, *save = NULL, *el;

    if (ctx == NULL) {
        L->oom = 1;
        return;
    }
    if (SSL_CTX_set_cipher_list(ctx, v) != 1) {
        conf_err_at(L, s, "%s: no TLS 1.2 cipher matches \"%s\"", path, v);
        goto out;
    }
    copy = conf_strdup(L, v);
    for (el = copy ? strtok_r(copy, ":, ", &save) : NULL; el != NULL; el = strtok_r(NULL, ":, ", &save)) {
        if (strchr("!-+@", el[0]) != NULL)
            continue;
        if (SSL_CTX_set_cipher_list(ctx, el) != 1) {
            conf_err_at(L, s, "%s: unknown cipher '%s' (see `openssl ciphers -v`)", path, el);
            break;
        }
    }
    free(copy);
    if (el == NULL)
        conf_set_str(L, &t->ciphers, v);
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
}

/* 1 when `name` is a TLS 1.3 suite OpenSSL knows. */
static int known_suite(SSL_CTX *ctx, const char *name)
{
    STACK_OF(SSL_CIPHER) * sk;

    if (SSL_CTX_set_ciphersuites(ctx, name) != 1)
        return 0;
    sk = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; sk != NULL && i < sk_SSL_CIPHER_num(sk); i++) {
        if (strcmp(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i)), name) == 0)
            return 1;
    }
    return 0;
}

static void key_ciphersuites(struct loader *L, const struct key *k, const config_setting_t *s,
                             const char *path, void *obj)
{
    struct weir_conf_listen_tls *t = obj;
    const char *v = config_setting_get_string(s);
    SSL_CTX *ctx = scratch_ctx();
    char *copy, *save = NULL, *el;

    if (ctx == NULL) {
        L->oom = 1;
        return;
    }
    if (v[0] == '\0') {
        conf_err_at(L, s, "%s must name at least one TLS 1.3 suite, such as TLS_AES_128_GCM_SHA256", path);
        goto out;
    }
    copy = conf_strdup(L, v);
    for (el = copy ? strtok_r(copy, ":", &save) : NULL; el != NULL; el = strtok_r(NULL, ":", &save)) {
        if (!known_suite(ctx, el)) {
            conf_err_at(L, s,
                        "%s: unknown TLS 1.3 suite '%s' (known: TLS_AES_128_GCM_SHA256, "
                        "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, "
                        "TLS_AES_128_CCM_8_SHA256)",
                        path, el);
            break;
        }
    }
    free(copy);
    if (el == NULL)
        conf_set_str(L, &t->ciphersuites, v);
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
}

/* ---- listen[].tls ----------------------------------------------------------- */

static void key_cert_path(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                          void *obj)
{
    struct weir_conf_tls_cert *c = obj;

    set_path(L, &c->cert, config_setting_get_string(s));
    c->cert_line = conf_line(s);
}

static void key_key_path(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_tls_cert *c = obj;

    set_path(L, &c->key, config_setting_get_string(s));
    c->key_line = conf_line(s);
}

static const struct key cert_keys[] = {
    KEY_CALL("cert", K_STR, KF_REQUIRED | KF_NONEMPTY, key_cert_path),
    KEY_CALL("key", K_STR, KF_REQUIRED | KF_NONEMPTY, key_key_path),
};

static void cert_init(struct loader *L, const config_setting_t *s, void *el)
{
    struct weir_conf_tls_cert *c = el;

    c->line = conf_line(s);
}

static void key_certificates(struct loader *L, const struct key *k, const config_setting_t *s,
                             const char *path, void *obj)
{
    struct weir_conf_listen_tls *t = obj;
    char epath[PATH_LEN];

    t->certs = conf_walk_list(L, s, path, "certificate { cert = ...; key = ...; }", sizeof(*t->certs),
                              &t->ncerts, cert_keys, WEIR_ARRAY_LEN(cert_keys), cert_init);
    for (size_t i = 0; i < t->ncerts; i++) {
        snprintf(epath, sizeof(epath), "%s[%zu]", path, i);
        check_pair(L, config_setting_get_elem(s, (unsigned)i), epath, t->certs[i].cert, t->certs[i].key);
    }
}

static const struct choice tls_versions[] = {{"TLS1.2", WEIR_TLS_1_2}, {"TLS1.3", WEIR_TLS_1_3}, {NULL, 0}};

/* Offsets relative to struct weir_conf_listen_tls. */
static const struct key listen_tls_keys[] = {
    KEY_CALL("certificates", K_LIST, KF_REQUIRED, key_certificates),
    KEY_ENUM("min_version", struct weir_conf_listen_tls, min_version, tls_versions),
    KEY_CALL("ciphers", K_STR, 0, key_ciphers),
    KEY_CALL("ciphersuites", K_STR, 0, key_ciphersuites),
    KEY_BOOL("session_tickets", struct weir_conf_listen_tls, session_tickets),
    KEY_INT("handshake_timeout_ms", struct weir_conf_listen_tls, handshake_timeout_ms, 1, MS_MAX),
};

void conf_key_listen_tls(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                         void *obj)
{
    struct weir_conf_listen *l = obj;
    struct weir_conf_listen_tls *t = &l->tls;
    const config_setting_t *r = config_setting_get_member(config_setting_parent(s), "redirect_https");

    t->enabled = 1;
    t->min_version = WEIR_TLS_1_2;
    t->session_tickets = 1;
    t->handshake_timeout_ms = 10000;
    t->line = conf_line(s);
    conf_walk_group(L, s, path, listen_tls_keys, WEIR_ARRAY_LEN(listen_tls_keys), t);
    if (r != NULL && config_setting_type(r) == CONFIG_TYPE_BOOL && config_setting_get_bool(r))
        conf_err_at(L, r, "redirect_https is for a plain listener: this one has a tls group (line %d)",
                    t->line);
}

void conf_tls_listen_free(struct weir_conf_listen *l)
{
    struct weir_conf_listen_tls *t = &l->tls;

    for (size_t i = 0; i < t->ncerts; i++) {
        free(t->certs[i].cert);
        free(t->certs[i].key);
    }
    free(t->certs);
    free(t->ciphers);
    free(t->ciphersuites);
}

/* ---- pools[].tls ------------------------------------------------------------ */

static void key_ca_file(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                        void *obj)
{
    struct weir_conf_pool_tls *t = obj;
    char why[1200];
    X509 *x;

    set_path(L, &t->ca_file, config_setting_get_string(s));
    if (t->ca_file == NULL)
        return;
    x = read_cert(t->ca_file, why, sizeof(why));
    if (x == NULL)
        conf_err_at(L, s, "%s: %s", path, why);
    X509_free(x);
}

/* server_name: a host name (SNI and the name verified) or an IP address
 * (verified against the certificate's IP addresses; no SNI is sent). */
static void key_server_name(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj)
{
    struct weir_conf_pool_tls *t = obj;
    const char *v = config_setting_get_string(s);
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(v);

    ERR_clear_error();
    if (ip == NULL && !conf_is_hostname(v)) {
        conf_err_at(L, s, "%s must be a host name or an IP address (got \"%s\")", path, v);
        return;
    }
    ASN1_OCTET_STRING_free(ip);
    conf_set_str(L, &t->server_name, v);
    conf_lower(t->server_name);
}

static void key_client_cert(struct loader *L, const struct key *k, const config_setting_t *s,
                            const char *path, void *obj)
{
    struct weir_conf_pool_tls *t = obj;

    set_path(L, &t->cert, config_setting_get_string(s));
    t->cert_line = conf_line(s);
}

static void key_client_key(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                           void *obj)
{
    struct weir_conf_pool_tls *t = obj;

    set_path(L, &t->key, config_setting_get_string(s));
    t->key_line = conf_line(s);
}

/* Offsets relative to struct weir_conf_pool_tls. */
static const struct key pool_tls_keys[] = {
    KEY_BOOL("verify", struct weir_conf_pool_tls, verify),
    KEY_CALL("ca_file", K_STR, KF_NONEMPTY, key_ca_file),
    KEY_CALL("server_name", K_STR, 0, key_server_name),
    KEY_CALL("cert", K_STR, KF_NONEMPTY, key_client_cert),
    KEY_CALL("key", K_STR, KF_NONEMPTY, key_client_key),
};

void conf_key_pool_tls(struct loader *L, const struct key *k, const config_setting_t *s, const char *path,
                       void *obj)
{
    struct weir_conf_pool *p = obj;
    struct weir_conf_pool_tls *t = &p->tls;
    size_t before = L->errs->n;

    t->enabled = 1;
    t->verify = 1;
    t->line = conf_line(s);
    conf_walk_group(L, s, path, pool_tls_keys, WEIR_ARRAY_LEN(pool_tls_keys), t);
    if ((t->cert == NULL) != (t->key == NULL)) {
        conf_err_at(L, s, "%s: a client certificate needs both cert and key (only %s is set)", path,
                    t->cert != NULL ? "cert" : "key");
        return;
    }
    if (L->errs->n == before)
        check_pair(L, s, path, t->cert, t->key);
}

void conf_tls_pool_free(struct weir_conf_pool *p)
{
    free(p->tls.ca_file);
    free(p->tls.server_name);
    free(p->tls.cert);
    free(p->tls.key);
}

/* ---- expiry warnings -------------------------------------------------------- */

static void warn_add(struct weir_conf_errors *w, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void warn_add(struct weir_conf_errors *w, const char *file, int line, const char *fmt, ...)
{
    char body[1024], *m;
    char **v;
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    n = snprintf(NULL, 0, "%s:%d: warning: %s", file, line, body);
    m = malloc((size_t)n + 1);
    v = realloc(w->msgs, (w->n + 1) * sizeof(*v));
    if (v != NULL)
        w->msgs = v;
    if (m == NULL || v == NULL) {
        free(m);
        return;
    }
    snprintf(m, (size_t)n + 1, "%s:%d: warning: %s", file, line, body);
    w->msgs[w->n++] = m;
}

/* One certificate file: warn when its notAfter is before now + warn_days. */
static int warn_expiry(struct weir_conf_errors *w, const char *conf_file, int line, const char *what,
                       const char *file, time_t now, int warn_days)
{
    char why[1200], date[64];
    X509 *x = read_cert(file, why, sizeof(why));
    struct tm tm;
    time_t end;
    long long left;

    if (x == NULL)
        return 0; /* the loader refuses unreadable files; changed since: say nothing here */
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) {
        X509_free(x);
        return 0;
    }
    X509_free(x);
    end = timegm(&tm);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
    left = (long long)end - (long long)now;
    if (left < 0) {
        warn_add(w, conf_file, line, "%s: the certificate '%s' expired on %s", what, file, date);
        return 1;
    }
    if (left < (long long)warn_days * 86400) {
        warn_add(w, conf_file, line, "%s: the certificate '%s' expires in %lld day(s), on %s", what, file,
                 (left + 86399) / 86400, date);
        return 1;
    }
    return 0;
}

size_t weir_conf_tls_warnings(const struct weir_conf *c, time_t now, int warn_days,
                              struct weir_conf_errors *warns)
{
    char what[PATH_LEN];
    size_t n = 0;

    for (size_t i = 0; i < c->nlistens; i++) {
        const struct weir_conf_listen_tls *t = &c->listens[i].tls;
        for (size_t j = 0; t->enabled && j < t->ncerts; j++) {
            snprintf(what, sizeof(what), "listen[%zu].tls.certificates[%zu].cert", i, j);
            n += (size_t)warn_expiry(warns, c->file, t->certs[j].cert_line, what, t->certs[j].cert, now,
                                     warn_days);
        }
    }
    for (size_t i = 0; i < c->npools; i++) {
        const struct weir_conf_pool_tls *t = &c->pools[i].tls;
        if (!t->enabled || t->cert == NULL)
            continue;
        snprintf(what, sizeof(what), "pools[%zu].tls.cert", i);
        n += (size_t)warn_expiry(warns, c->file, t->cert_line, what, t->cert, now, warn_days);
    }
    return n;
}
