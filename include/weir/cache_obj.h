/*
 * cache_obj.h - a stored response: status, headers, body as a list of
 * chunks, the times it is judged by, its key, Vary and Surrogate-Key tags.
 *
 * Life cycle: weir_cache_obj_new() when a storable response head arrives;
 * weir_cache_obj_append() for each piece of body as it streams (one
 * writer); weir_cache_obj_finish() at the end of the body, or
 * weir_cache_obj_abandon() when it cannot be stored (too big, upstream
 * error). While it grows, readers on any thread may send what is already
 * there: weir_cache_obj_length() publishes the body length with release
 * ordering and weir_cache_obj_span() never reads past it, so one writer and
 * many readers need no lock. Everything but the body progress is immutable
 * after weir_cache_obj_new().
 *
 * Ownership: reference-counted. new() returns one reference; retain/release
 * from any thread; the last release frees everything, so a cache can drop
 * an object (eviction, purge) while clients are still being sent it.
 *
 * Memory: obj->mem is the sum of malloc_usable_size() of every allocation
 * the object owns (struct, strings, header array, chunks): what the heap
 * really holds, not an estimate. It grows as chunks are added (atomic).
 */
#ifndef WEIR_CACHE_OBJ_H
#define WEIR_CACHE_OBJ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "weir/cache_rules.h"
#include "weir/http_parse.h"

/* obj->state values */
#define WEIR_OBJ_GROWING   0 /* body still arriving */
#define WEIR_OBJ_COMPLETE  1 /* whole body stored */
#define WEIR_OBJ_ABANDONED 2 /* will never be complete: readers must not wait for more */
#define WEIR_OBJ_PASSING   3 /* grew past max_bytes while readers stream it: never stored (below) */
#define WEIR_OBJ_PASSED    4 /* a passing object's body ended: complete for its readers only */

#define WEIR_OBJ_MAX_HEADERS 256

struct weir_cache_chunk {
    struct weir_cache_chunk *_Atomic next;
    size_t cap;
    char data[];
};

struct weir_cache_obj {
    atomic_uint refs;
    atomic_int state;          /* WEIR_OBJ_* */
    _Atomic uint64_t body_len; /* bytes readable (release/acquire) */
    atomic_size_t mem;         /* bytes the heap holds for this object */

    /* immutable after new() */
    int status;
    struct weir_http_header *headers; /* spans into hblob; flags 0 */
    size_t nheaders;
    char *hblob;
    char *wire;        /* (in hblob) the headers but Age and X-Request-Id as "Name: value\r\n" lines, */
    size_t wire_len;   /* ready to send with a whole answer */
    int has_date;      /* the stored response has a Date (else answers add one from times.date) */
    char *key;         /* "GET http://host/path" */
    char *url;         /* "http://host/path" */
    char *vary_names;  /* "" when the response had no Vary */
    char *vary_values; /* weir_cache_vary_values() of the request that fetched it */
    size_t vary_values_len;
    char *tags;            /* Surrogate-Key value, "" when absent: space-separated tags */
    uint64_t expected_len; /* Content-Length announced, UINT64_MAX when unknown */
    size_t max_bytes;      /* body limit: past it the object is abandoned */
    struct weir_cache_times times;
    struct weir_cc cc;   /* the response's directives */
    int64_t lifetime;    /* freshness lifetime (s) */
    int64_t keep;        /* seconds after response_time it stays useful */
    int64_t stored_time; /* wall clock when created */

    /* writer's cursor (the writer thread only) */
    struct weir_cache_chunk *head, *tail;
    size_t tail_len;

    struct weir_cache_readers *rd; /* weir_cache_obj_readers_enable(), else NULL */
};

/*
 * A new growing object for a response. key and url as built by
 * weir_cache_key/weir_cache_url; req/nreq the request (for the Vary
 * values), status and resp/nresp the response head; times in wall-clock
 * seconds; max_bytes the body limit. Hop-by-hop fields, fields named by
 * Connection, Content-Length and Transfer-Encoding are not stored (the
 * sender frames the body itself). Returns NULL on allocation failure or
 * when there are more than WEIR_OBJ_MAX_HEADERS fields to store.
 */
/* What the heap holds for the allocation p (0 for NULL): its usable size
 * plus the allocator's chunk header. Every L1 byte count is a sum of these. */
size_t weir_cache_heap_size(const void *p);

struct weir_cache_obj *weir_cache_obj_new(const char *key, const char *url,
                                          const struct weir_http_header *req, size_t nreq, int status,
                                          const struct weir_http_header *resp, size_t nresp,
                                          int64_t request_time, int64_t response_time, size_t max_bytes);

/* Add body bytes (writer only). Returns WEIR_OK, or WEIR_DECLINED when the
 * body would pass max_bytes or memory ran out: the object is then
 * abandoned (readers keep what they have; nothing more is added); or, with
 * registered readers past max_bytes, WEIR_AGAIN: the object is passing
 * (see readers below), not storable, and takes more for its readers. */
int weir_cache_obj_append(struct weir_cache_obj *o, const void *p, size_t n);

/* The body is complete (writer only). WEIR_ERROR when the object was
 * abandoned or fewer bytes than Content-Length arrived (then abandoned);
 * WEIR_DECLINED for a passing object (now WEIR_OBJ_PASSED: not storable). */
int weir_cache_obj_finish(struct weir_cache_obj *o);

void weir_cache_obj_abandon(struct weir_cache_obj *o);

void weir_cache_obj_retain(struct weir_cache_obj *o);
void weir_cache_obj_release(struct weir_cache_obj *o);

static inline uint64_t weir_cache_obj_length(const struct weir_cache_obj *o)
{
    return atomic_load_explicit(&((struct weir_cache_obj *)o)->body_len, memory_order_acquire);
}

static inline int weir_cache_obj_state(const struct weir_cache_obj *o)
{
    return atomic_load_explicit(&((struct weir_cache_obj *)o)->state, memory_order_acquire);
}

/*
 * Readers: the contiguous body bytes at offset off, up to `avail` (a value
 * of weir_cache_obj_length() read earlier). *p is set and the count
 * returned (0 when off >= avail). The bytes stay valid while the caller
 * holds a reference. A cursor (chunk, offset of its first byte) makes
 * sequential reads O(1); set *cur to NULL to start.
 */
struct weir_cache_cursor {
    const struct weir_cache_chunk *chunk;
    uint64_t base;
};
size_t weir_cache_obj_span(const struct weir_cache_obj *o, struct weir_cache_cursor *cur, uint64_t off,
                           uint64_t avail, const char **p);

/*
 * Registered readers: a body of unknown length that may outgrow max_bytes
 * while clients are streamed it (coalesced waiters). The writer calls
 * weir_cache_obj_readers_enable() before anyone reads; each reader then
 * registers (weir_cache_obj_reader_add) and reads only through
 * weir_cache_obj_read(), which copies under the object's reader lock and
 * records how far the reader got. When an append would pass max_bytes and
 * readers are registered, the object is not abandoned but turns
 * WEIR_OBJ_PASSING: it is never stored (finish() makes it WEIR_OBJ_PASSED,
 * not COMPLETE) and keeps taking appends, while every append drops the
 * chunks that all registered readers have read, so it holds about
 * max_bytes at most: a reader more than max_bytes behind the writer is
 * cut (r->cut; its reads fail) instead of making it grow without bound.
 * Once passing, the writer wakes readers itself (r->wake, called under the
 * reader lock: it must not call back into the object) on every append and
 * at the end. A passing object left without readers is abandoned.
 */
struct weir_cache_reader {
    struct weir_cache_reader *next;       /* the object's readers (under its lock) */
    const struct weir_cache_chunk *chunk; /* read cursor: a chunk and the offset of its first byte */
    uint64_t cbase;
    uint64_t off;            /* body bytes read */
    int attached;            /* in the object's list */
    int cut;                 /* dropped by the writer: fell behind */
    void (*wake)(void *arg); /* passing object: more body, or its end (may be NULL) */
    void *arg;
};

/* Writer, before the object is published to readers. WEIR_OK or WEIR_ERROR. */
int weir_cache_obj_readers_enable(struct weir_cache_obj *o);
/* Register r (zeroed but for wake/arg) at offset 0. WEIR_OK, or
 * WEIR_DECLINED (no reader support, prefix already dropped, abandoned). */
int weir_cache_obj_reader_add(struct weir_cache_obj *o, struct weir_cache_reader *r);
/* Unregister r (any thread; harmless when cut or never added). */
void weir_cache_obj_reader_remove(struct weir_cache_obj *o, struct weir_cache_reader *r);
/* Copy up to max body bytes at r->off into buf and advance r->off: the
 * count (0: nothing new yet), or -1 when r was cut. */
long weir_cache_obj_read(struct weir_cache_obj *o, struct weir_cache_reader *r, char *buf, size_t max);
/* Readers cut since the last call (writer: to count and log them). */
unsigned weir_cache_obj_take_cut(struct weir_cache_obj *o);
/* Offset of the first body byte still held (0 unless passing dropped some). */
uint64_t weir_cache_obj_base(struct weir_cache_obj *o);

/* First header named lname (lower-case), or NULL. */
const struct weir_http_header *weir_cache_obj_header(const struct weir_cache_obj *o, const char *lname);

/* 1 when tag is one of the object's Surrogate-Key tags. */
int weir_cache_obj_has_tag(const struct weir_cache_obj *o, const char *tag);

/*
 * A copy of a complete object freshened by a 304 (RFC 9111 §4.3.4): its
 * headers updated with the 304's, its times those of the validation
 * exchange, the body shared byte for byte. The original is unchanged
 * (others may be reading it). NULL on allocation failure or when o is not
 * complete.
 */
struct weir_cache_obj *weir_cache_obj_freshen(const struct weir_cache_obj *o,
                                              const struct weir_http_header *fresh, size_t nfresh,
                                              int64_t request_time, int64_t response_time);

/* ---- L2 serialisation ------------------------------------------------------ */

#define WEIR_OBJ_MAGIC   0x57434f42u /* "WCOB" */
#define WEIR_OBJ_VERSION 1

enum weir_obj_decode_error {
    WEIR_DECODE_OK = 0,
    WEIR_DECODE_MAGIC,     /* not a weir object */
    WEIR_DECODE_VERSION,   /* a weir object of another format version */
    WEIR_DECODE_TRUNCATED, /* shorter or longer than its lengths say */
    WEIR_DECODE_CHECKSUM,  /* bytes changed */
    WEIR_DECODE_INVALID,   /* fields out of range */
    WEIR_DECODE_NOMEM,
};

/*
 * Encode a complete object as one binary-safe value: magic, version,
 * status, times, lengths, key, url, Vary, tags, headers, body, and a
 * 64-bit checksum of all that precedes it (little-endian throughout).
 * Returns a malloc()ed buffer (*len set) or NULL (allocation failure or
 * object not complete).
 */
char *weir_cache_obj_encode(const struct weir_cache_obj *o, size_t *len);

/*
 * Decode a value made by weir_cache_obj_encode. Returns a complete object
 * (one reference) or NULL with *err set. max_bytes is the body limit of
 * the new object (a longer body is WEIR_DECODE_INVALID). Never reads
 * outside buf[0..len).
 */
struct weir_cache_obj *weir_cache_obj_decode(const char *buf, size_t len, size_t max_bytes, int *err);

const char *weir_cache_decode_error_name(int err);

#endif
