/*
 * fuzz_cache_obj.c - libFuzzer harness for the L2 value decoder
 * (weir_cache_obj_decode in src/cache_obj.c): a value read from Redis is
 * untrusted bytes.
 *
 * The first input byte picks the mode: odd - the rest is decoded as is;
 * even - the rest gets a valid checksum first, so the fuzzer reaches the
 * structure checks behind it. Invariants: the decoder never reads outside
 * the (exact-size heap) copy, and an accepted value re-encodes to exactly
 * the same bytes (the format is canonical). A broken invariant aborts.
 *
 * Build: scripts/fuzz (clang -fsanitize=fuzzer,address,undefined).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/cache_obj.h"

#define CHECK(x)                                                                                             \
    do {                                                                                                     \
        if (!(x)) {                                                                                          \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #x, __FILE__, __LINE__);                       \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* The checksum the encoder writes: encode a known object, then recompute
 * it the same way for arbitrary bytes by re-encoding is not possible, so
 * the harness carries its own copy of the algorithm (kept in step with
 * src/cache_obj.c by the canonical round-trip check below). */
static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    unsigned char tail[8];

    while (n >= 8) {
        h ^= get64(p) * 0xff51afd7ed558ccdull;
        h = rotl(h, 29) * 0xc4ceb9fe1a85ec53ull;
        p += 8;
        n -= 8;
    }
    memset(tail, 0, sizeof(tail));
    memcpy(tail, p, n);
    h ^= get64(tail) * 0xff51afd7ed558ccdull;
    h = rotl(h, 29) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    struct weir_cache_obj *o;
    unsigned char *p;
    size_t len;
    int err = -1;

    if (n < 1)
        return 0;
    len = n - 1;
    p = malloc(len ? len : 1);
    CHECK(p != NULL);
    if (len)
        memcpy(p, data + 1, len);
    if ((data[0] & 1) == 0 && len >= 8) {
        uint64_t c = checksum(p, len - 8);
        for (int i = 0; i < 8; i++)
            p[len - 8 + (size_t)i] = (unsigned char)(c >> (8 * i));
    }
    o = weir_cache_obj_decode((const char *)p, len, 1 << 20, &err);
    CHECK((o == NULL) == (err != WEIR_DECODE_OK));
    if (o != NULL) {
        size_t elen;
        char *enc = weir_cache_obj_encode(o, &elen);
        CHECK(enc != NULL);
        CHECK(elen == len && memcmp(enc, p, len) == 0);
        CHECK(weir_cache_obj_state(o) == WEIR_OBJ_COMPLETE);
        free(enc);
        weir_cache_obj_release(o);
    }
    free(p);
    return 0;
}
