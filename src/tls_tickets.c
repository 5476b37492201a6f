/*
 * tls_tickets.c - the process's session-ticket key ring and OpenSSL's
 * ticket callback. The ring holds three keys (AES-256-CBC + HMAC-SHA256, the
 * format OpenSSL's ticket callback expects): the newest encrypts, all three
 * decrypt, a ticket under an older key is accepted and replaced. Every
 * listener's contexts, in every worker and across reloads, use the same
 * ring, so a ticket resumes wherever the client lands. The newest key is
 * replaced when it is older than the rotation period (checked when a ticket
 * is issued) or on demand (weir_tls_tickets_rotate).
 *
 * Depends on: weir/tls.h (the contract), tls_int.h (the cipher fetched by
 * tls_lib_init, and tls_tickets_of, which finds the ring of an SSL's
 * listener in tls.c).
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls_int.h"
#include "weir/core.h"
#include "weir/tls.h"

/* ---- session-ticket key ring --------------------------------------------------- */

#define TICKET_KEYS 3

struct tkey {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

struct weir_tls_tickets {
    pthread_mutex_t mu;
    struct tkey keys[TICKET_KEYS]; /* [0] encrypts; [0..n) decrypt */
    int n;
    int rotate_s;
    uint64_t born_us; /* when keys[0] was made (monotonic) */
    unsigned long rotations;
};

static int rotate_locked(struct weir_tls_tickets *t)
{
    struct tkey k;

    if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1) {
        ERR_clear_error();
        return -1;
    }
    memmove(&t->keys[1], &t->keys[0], (TICKET_KEYS - 1) * sizeof(t->keys[0]));
    t->keys[0] = k;
    OPENSSL_cleanse(&k, sizeof(k));
    if (t->n < TICKET_KEYS)
        t->n++;
    t->born_us = weir_now_us();
    t->rotations++;
    return 0;
}

struct weir_tls_tickets *weir_tls_tickets_new(int rotate_s)
{
    struct weir_tls_tickets *t;

    if (rotate_s < 1)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->rotate_s = rotate_s;
    if (rotate_locked(t) != 0) {
        weir_tls_tickets_free(t);
        return NULL;
    }
    t->rotations = 0;
    return t;
}

void weir_tls_tickets_free(struct weir_tls_tickets *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    free(t);
}

int weir_tls_tickets_rotate(struct weir_tls_tickets *t)
{
    int rc;

    pthread_mutex_lock(&t->mu);
    rc = rotate_locked(t);
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int tls_tickets_rotate_s(const struct weir_tls_tickets *t)
{
    return t->rotate_s; /* set once by weir_tls_tickets_new */
}

unsigned long weir_tls_tickets_rotations(struct weir_tls_tickets *t)
{
    unsigned long n;

    pthread_mutex_lock(&t->mu);
    n = t->rotations;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* OpenSSL's ticket callback: 1 = keys set, 2 = decrypted and a new ticket
 * is to be issued, 0 = unknown key (full handshake), -1 = error. */
int tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                  EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    struct weir_tls_tickets *t = tls_tickets_of(ssl);
    struct tkey k;
    OSSL_PARAM params[3];
    int i, rc, found = 1;

    if (t == NULL)
        return -1;
    pthread_mutex_lock(&t->mu);
    if (enc) {
        if (weir_now_us() - t->born_us >= (uint64_t)t->rotate_s * 1000000u)
            rotate_locked(t); /* on failure the current key stays */
        k = t->keys[0];
        i = 0;
    } else {
        for (i = 0; i < t->n; i++) {
            if (memcmp(t->keys[i].name, key_name, sizeof(k.name)) == 0)
                break;
        }
        found = i < t->n;
        if (found)
            k = t->keys[i];
    }
    pthread_mutex_unlock(&t->mu);
    if (!found)
        return 0;

    /* Decrypted: renew (2) under an older key, and always in TLS 1.3, where
     * a client uses each ticket once: without a new one its next
     * connection would be a full handshake. */
    rc = enc ? 1 : (i == 0 && SSL_version(ssl) != TLS1_3_VERSION) ? 1 : 2;
    if (enc) {
        memcpy(key_name, k.name, sizeof(k.name));
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex(cctx, tls_ticket_cipher, NULL, k.aes, iv) != 1)
            rc = -1;
    } else if (EVP_DecryptInit_ex(cctx, tls_ticket_cipher, NULL, k.aes, iv) != 1) {
        rc = -1;
    }
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    if (rc > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}
