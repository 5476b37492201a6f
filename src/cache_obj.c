/*
 * cache_obj.c - stored responses: creation from a response head, the body
 * growing chunk by chunk under one writer while readers send it, reference
 * counting, freshening by a 304, and the binary format kept in Redis (L2).
 * Contracts in include/weir/cache_obj.h.
 */
#include "config.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir/cache_obj.h"

#define CHUNK_FIRST 4096
#define CHUNK_MAX   (256 * 1024)

/* Registered readers (cache_obj.h): everything under mu. */
struct weir_cache_readers {
    pthread_mutex_t mu;
    struct weir_cache_reader *list;
    uint64_t base; /* offset of o->head's first byte (chunks before it dropped) */
    unsigned cut;  /* readers cut, not yet taken by the writer */
};

size_t weir_cache_heap_size(const void *p)
{
    /* the usable bytes plus the allocator's own header (glibc keeps one
     * size_t before every chunk): what the heap holds for p */
    return p != NULL ? malloc_usable_size((void *)p) + sizeof(size_t) : 0;
}

static size_t usable(const void *p)
{
    return weir_cache_heap_size(p);
}

static char *dup_mem(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void obj_free(struct weir_cache_obj *o)
{
    struct weir_cache_chunk *c = o->head, *next;

    while (c != NULL) {
        next = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
        c = next;
    }
    free(o->headers);
    free(o->hblob);
    free(o->key);
    free(o->url);
    free(o->vary_names);
    free(o->vary_values);
    free(o->tags);
    if (o->rd != NULL) {
        pthread_mutex_destroy(&o->rd->mu);
        free(o->rd);
    }
    free(o);
}

void weir_cache_obj_retain(struct weir_cache_obj *o)
{
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

void weir_cache_obj_release(struct weir_cache_obj *o)
{
    if (o != NULL && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
        obj_free(o);
}

static int stored_field(const struct weir_http_header *h)
{
    if (h->flags & (WEIR_HDR_F_HOP | WEIR_HDR_F_CONN_LISTED))
        return 0;
    return !weir_cache_header_unstored(h->name, h->name_len) &&
           !weir_span_ieq(h->name, h->name_len, "content-length");
}

/* Fields of the stored response weir sets itself on an answer from it. */
static int wire_skips(const struct weir_http_header *h)
{
    return weir_span_ieq(h->name, h->name_len, "age") || weir_span_ieq(h->name, h->name_len, "x-request-id");
}

/* The header lines every whole answer from this object sends, serialized
 * once: a hit copies one block instead of formatting each field. */
static int set_wire(struct weir_cache_obj *o)
{
    size_t i, total = 0;
    char *q;

    o->has_date = 0;
    for (i = 0; i < o->nheaders; i++) {
        if (weir_span_ieq(o->headers[i].name, o->headers[i].name_len, "date"))
            o->has_date = 1;
        if (!wire_skips(&o->headers[i]))
            total += o->headers[i].name_len + o->headers[i].value_len + 4;
    }
    q = o->wire; /* room made by set_headers, after the names and values */
    for (i = 0; i < o->nheaders; i++) {
        const struct weir_http_header *h = &o->headers[i];
        if (wire_skips(h))
            continue;
        memcpy(q, h->name, h->name_len);
        q += h->name_len;
        *q++ = ':';
        *q++ = ' ';
        memcpy(q, h->value, h->value_len);
        q += h->value_len;
        *q++ = '\r';
        *q++ = '\n';
    }
    o->wire_len = total;
    return 0;
}

/* Copy headers into one blob (NUL after each name and value). */
static int set_headers(struct weir_cache_obj *o, const struct weir_http_header *h, size_t n, int filter)
{
    size_t i, k = 0, total = 0, wtotal = 0, pos = 0;

    for (i = 0; i < n; i++) {
        if (filter && !stored_field(&h[i]))
            continue;
        total += h[i].name_len + h[i].value_len + 2;
        if (!wire_skips(&h[i]))
            wtotal += h[i].name_len + h[i].value_len + 4;
        k++;
    }
    if (k > WEIR_OBJ_MAX_HEADERS)
        return -1;
    /* one allocation: the names and values, then the wire lines (set_wire) */
    o->hblob = malloc(total + wtotal ? total + wtotal : 1);
    o->wire = o->hblob != NULL ? o->hblob + total : NULL;
    o->headers = calloc(k ? k : 1, sizeof(*o->headers));
    if (o->hblob == NULL || o->headers == NULL)
        return -1;
    for (i = 0, k = 0; i < n; i++) {
        struct weir_http_header *d;
        if (filter && !stored_field(&h[i]))
            continue;
        d = &o->headers[k++];
        memcpy(o->hblob + pos, h[i].name, h[i].name_len);
        o->hblob[pos + h[i].name_len] = '\0';
        d->name = o->hblob + pos;
        d->name_len = h[i].name_len;
        pos += h[i].name_len + 1;
        if (h[i].value_len)
            memcpy(o->hblob + pos, h[i].value, h[i].value_len);
        o->hblob[pos + h[i].value_len] = '\0';
        d->value = o->hblob + pos;
        d->value_len = h[i].value_len;
        pos += h[i].value_len + 1;
    }
    o->nheaders = k;
    return set_wire(o);
}

/* Surrogate-Key lines joined by single spaces. */
static char *collect_tags(const struct weir_http_header *h, size_t n)
{
    size_t i, total = 0, pos = 0;
    char *t;

    for (i = 0; i < n; i++)
        if (weir_span_ieq(h[i].name, h[i].name_len, "surrogate-key"))
            total += h[i].value_len + 1;
    t = malloc(total + 1);
    if (t == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (!weir_span_ieq(h[i].name, h[i].name_len, "surrogate-key"))
            continue;
        if (pos > 0)
            t[pos++] = ' ';
        memcpy(t + pos, h[i].value, h[i].value_len);
        pos += h[i].value_len;
    }
    t[pos] = '\0';
    return t;
}

/* Rules computed from the stored headers and times (new, decode, freshen). */
static void derive(struct weir_cache_obj *o)
{
    weir_cc_response(&o->cc, o->headers, o->nheaders);
    weir_cache_times_init(&o->times, o->times.request_time, o->times.response_time, o->headers, o->nheaders);
    o->lifetime = weir_cache_freshness(&o->cc, o->status, o->headers, o->nheaders, &o->times, NULL);
    o->keep = weir_cache_keep_seconds(&o->cc, o->lifetime, &o->times,
                                      weir_cache_obj_header(o, "etag") != NULL ||
                                          weir_cache_obj_header(o, "last-modified") != NULL);
}

static size_t obj_mem(const struct weir_cache_obj *o)
{
    return usable(o) + usable(o->headers) + usable(o->hblob) + usable(o->key) + usable(o->url) +
           usable(o->vary_names) + usable(o->vary_values) + usable(o->tags);
}

static struct weir_cache_obj *obj_alloc(size_t max_bytes)
{
    struct weir_cache_obj *o = calloc(1, sizeof(*o));

    if (o == NULL)
        return NULL;
    atomic_init(&o->refs, 1);
    atomic_init(&o->state, WEIR_OBJ_GROWING);
    atomic_init(&o->body_len, 0);
    atomic_init(&o->mem, 0);
    o->max_bytes = max_bytes;
    o->expected_len = UINT64_MAX;
    return o;
}

struct weir_cache_obj *weir_cache_obj_new(const char *key, const char *url,
                                          const struct weir_http_header *req, size_t nreq, int status,
                                          const struct weir_http_header *resp, size_t nresp,
                                          int64_t request_time, int64_t response_time, size_t max_bytes)
{
    struct weir_cache_obj *o = obj_alloc(max_bytes);
    int star;
    size_t i;

    if (o == NULL)
        return NULL;
    o->status = status;
    o->times.request_time = request_time;
    o->times.response_time = response_time;
    o->stored_time = (int64_t)time(NULL);
    o->key = strdup(key);
    o->url = strdup(url);
    o->vary_names = weir_cache_vary_names(resp, nresp, &star);
    o->tags = collect_tags(resp, nresp);
    if (o->key == NULL || o->url == NULL || o->vary_names == NULL || o->tags == NULL ||
        set_headers(o, resp, nresp, 1) < 0)
        goto fail;
    o->vary_values = weir_cache_vary_values(o->vary_names, req, nreq, &o->vary_values_len);
    if (o->vary_values == NULL)
        goto fail;
    for (i = 0; i < nresp; i++) {
        if (weir_span_ieq(resp[i].name, resp[i].name_len, "content-length")) {
            uint64_t v = 0;
            size_t k;
            for (k = 0; k < resp[i].value_len && k < 19; k++) {
                if (resp[i].value[k] < '0' || resp[i].value[k] > '9')
                    break;
                v = v * 10 + (uint64_t)(resp[i].value[k] - '0');
            }
            if (k == resp[i].value_len && k > 0)
                o->expected_len = v;
            break;
        }
    }
    derive(o);
    atomic_store(&o->mem, obj_mem(o));
    if (o->expected_len != UINT64_MAX && o->expected_len > max_bytes)
        atomic_store(&o->state, WEIR_OBJ_ABANDONED);
    return o;
fail:
    obj_free(o);
    return NULL;
}

/* Wake every registered reader (under rd->mu). */
static void wake_readers(struct weir_cache_obj *o)
{
    for (struct weir_cache_reader *r = o->rd->list; r != NULL; r = r->next)
        if (r->wake != NULL)
            r->wake(r->arg);
}

/* Set a final state; a passing object's readers are told (the flight that
 * woke them ended already). */
static void set_final(struct weir_cache_obj *o, int state)
{
    if (o->rd == NULL) {
        atomic_store_explicit(&o->state, state, memory_order_release);
        return;
    }
    pthread_mutex_lock(&o->rd->mu);
    int was = atomic_load_explicit(&o->state, memory_order_relaxed);
    atomic_store_explicit(&o->state, state, memory_order_release);
    if (was == WEIR_OBJ_PASSING)
        wake_readers(o);
    pthread_mutex_unlock(&o->rd->mu);
}

void weir_cache_obj_abandon(struct weir_cache_obj *o)
{
    set_final(o, WEIR_OBJ_ABANDONED);
}

int weir_cache_obj_readers_enable(struct weir_cache_obj *o)
{
    if (o->rd != NULL)
        return WEIR_OK;
    o->rd = calloc(1, sizeof(*o->rd));
    if (o->rd == NULL || pthread_mutex_init(&o->rd->mu, NULL) != 0) {
        free(o->rd);
        o->rd = NULL;
        return WEIR_ERROR;
    }
    atomic_fetch_add_explicit(&o->mem, usable(o->rd), memory_order_relaxed);
    return WEIR_OK;
}

int weir_cache_obj_reader_add(struct weir_cache_obj *o, struct weir_cache_reader *r)
{
    int rc = WEIR_DECLINED;

    if (o->rd == NULL)
        return WEIR_DECLINED;
    pthread_mutex_lock(&o->rd->mu);
    if (o->rd->base == 0 && atomic_load_explicit(&o->state, memory_order_relaxed) != WEIR_OBJ_ABANDONED) {
        r->off = 0;
        r->chunk = NULL;
        r->cbase = 0;
        r->cut = 0;
        r->attached = 1;
        r->next = o->rd->list;
        o->rd->list = r;
        rc = WEIR_OK;
    }
    pthread_mutex_unlock(&o->rd->mu);
    return rc;
}

void weir_cache_obj_reader_remove(struct weir_cache_obj *o, struct weir_cache_reader *r)
{
    if (o == NULL || o->rd == NULL)
        return;
    pthread_mutex_lock(&o->rd->mu);
    if (r->attached)
        for (struct weir_cache_reader **pp = &o->rd->list; *pp != NULL; pp = &(*pp)->next)
            if (*pp == r) {
                *pp = r->next;
                break;
            }
    r->attached = 0;
    pthread_mutex_unlock(&o->rd->mu);
}

long weir_cache_obj_read(struct weir_cache_obj *o, struct weir_cache_reader *r, char *buf, size_t max)
{
    long got = 0;

    pthread_mutex_lock(&o->rd->mu);
    if (r->cut || !r->attached) {
        pthread_mutex_unlock(&o->rd->mu);
        return -1;
    }
    uint64_t avail = weir_cache_obj_length(o);
    if (r->chunk == NULL || r->cbase < o->rd->base) {
        r->chunk = avail > o->rd->base ? o->head : NULL; /* o->head is published with the length */
        r->cbase = o->rd->base;
    }
    while (max > 0 && r->off < avail && r->chunk != NULL) {
        const struct weir_cache_chunk *c = r->chunk;
        if (r->off >= r->cbase + c->cap) {
            const struct weir_cache_chunk *n =
                atomic_load_explicit(&((struct weir_cache_chunk *)c)->next, memory_order_acquire);
            if (n == NULL)
                break;
            r->cbase += c->cap;
            r->chunk = n;
            continue;
        }
        uint64_t end = r->cbase + c->cap < avail ? r->cbase + c->cap : avail;
        size_t k = end - r->off < max ? (size_t)(end - r->off) : max;
        memcpy(buf + got, c->data + (r->off - r->cbase), k);
        got += (long)k;
        r->off += k;
        max -= k;
    }
    pthread_mutex_unlock(&o->rd->mu);
    return got;
}

unsigned weir_cache_obj_take_cut(struct weir_cache_obj *o)
{
    unsigned n;

    if (o->rd == NULL)
        return 0;
    pthread_mutex_lock(&o->rd->mu);
    n = o->rd->cut;
    o->rd->cut = 0;
    pthread_mutex_unlock(&o->rd->mu);
    return n;
}

uint64_t weir_cache_obj_base(struct weir_cache_obj *o)
{
    uint64_t b;

    if (o->rd == NULL)
        return 0;
    pthread_mutex_lock(&o->rd->mu);
    b = o->rd->base;
    pthread_mutex_unlock(&o->rd->mu);
    return b;
}

/* Passing (writer, after an append): cut the readers more than max_bytes
 * behind, drop the chunks every remaining reader has read (never the
 * tail: the writer fills it), wake them. 0, or -1 when no reader is left. */
static int pass_trim(struct weir_cache_obj *o, uint64_t len)
{
    struct weir_cache_readers *rd = o->rd;
    uint64_t low = len;
    int left;

    pthread_mutex_lock(&rd->mu);
    for (struct weir_cache_reader **pp = &rd->list; *pp != NULL;) {
        struct weir_cache_reader *r = *pp;
        if (len - r->off > o->max_bytes) {
            *pp = r->next;
            r->attached = 0;
            r->cut = 1;
            rd->cut++;
            if (r->wake != NULL)
                r->wake(r->arg); /* its next read fails */
            continue;
        }
        if (r->off < low)
            low = r->off;
        pp = &r->next;
    }
    while (o->head != o->tail && rd->base + o->head->cap <= low) {
        struct weir_cache_chunk *c = o->head;
        rd->base += c->cap;
        o->head = atomic_load_explicit(&c->next, memory_order_relaxed);
        atomic_fetch_sub_explicit(&o->mem, usable(c), memory_order_relaxed);
        free(c);
    }
    left = rd->list != NULL;
    if (left)
        wake_readers(o);
    pthread_mutex_unlock(&rd->mu);
    return left ? 0 : -1;
}

static size_t next_chunk_size(const struct weir_cache_obj *o, uint64_t len, size_t need)
{
    size_t sz;
    uint64_t limit = len <= o->max_bytes ? o->max_bytes - len : 0;

    if (o->tail == NULL)
        sz = o->expected_len != UINT64_MAX ? (size_t)o->expected_len : CHUNK_FIRST;
    else
        sz = o->tail->cap * 2 > CHUNK_MAX ? CHUNK_MAX : o->tail->cap * 2;
    if (len > o->max_bytes) { /* passing: chunks small enough to be dropped as readers go */
        size_t pass = o->max_bytes / 4 < CHUNK_FIRST ? CHUNK_FIRST : o->max_bytes / 4;
        if (sz > pass)
            sz = pass;
    }
    if (o->expected_len != UINT64_MAX && o->expected_len > len && sz > o->expected_len - len)
        sz = (size_t)(o->expected_len - len);
    if (len <= o->max_bytes && sz > limit) /* a passing object is past it */
        sz = (size_t)limit;
    if (sz < need)
        sz = need;
    return sz;
}

int weir_cache_obj_append(struct weir_cache_obj *o, const void *p, size_t n)
{
    uint64_t len = atomic_load_explicit(&o->body_len, memory_order_relaxed);
    const char *src = p;

    int state = atomic_load_explicit(&o->state, memory_order_relaxed);

    if (state != WEIR_OBJ_GROWING && state != WEIR_OBJ_PASSING)
        return WEIR_DECLINED;
    if (o->expected_len != UINT64_MAX && len + n > o->expected_len) {
        weir_cache_obj_abandon(o);
        return WEIR_DECLINED;
    }
    if (state == WEIR_OBJ_GROWING && (n > o->max_bytes || len + n > o->max_bytes)) {
        /* too big to store: abandoned, unless readers stream it */
        if (o->rd != NULL) {
            pthread_mutex_lock(&o->rd->mu);
            if (o->rd->list != NULL) {
                state = WEIR_OBJ_PASSING;
                atomic_store_explicit(&o->state, state, memory_order_release);
            }
            pthread_mutex_unlock(&o->rd->mu);
        }
        if (state != WEIR_OBJ_PASSING) {
            weir_cache_obj_abandon(o);
            return WEIR_DECLINED;
        }
    }
    while (n > 0) {
        size_t room = o->tail != NULL ? o->tail->cap - o->tail_len : 0, take;
        if (room == 0) {
            size_t sz = next_chunk_size(o, len, 1);
            struct weir_cache_chunk *c = malloc(sizeof(*c) + sz);
            if (c == NULL) {
                weir_cache_obj_abandon(o);
                return WEIR_DECLINED;
            }
            atomic_init(&c->next, NULL);
            c->cap = sz;
            atomic_fetch_add_explicit(&o->mem, usable(c), memory_order_relaxed);
            if (o->tail == NULL)
                o->head = c;
            else
                atomic_store_explicit(&o->tail->next, c, memory_order_release);
            o->tail = c;
            o->tail_len = 0;
            room = sz;
        }
        take = n < room ? n : room;
        memcpy(o->tail->data + o->tail_len, src, take);
        o->tail_len += take;
        src += take;
        n -= take;
        len += take;
        /* publish: readers see the bytes (and the chunk links) up to len */
        atomic_store_explicit(&o->body_len, len, memory_order_release);
    }
    if (state == WEIR_OBJ_PASSING) {
        if (pass_trim(o, len) < 0) { /* nobody reads it any more */
            weir_cache_obj_abandon(o);
            return WEIR_DECLINED;
        }
        return WEIR_AGAIN;
    }
    return WEIR_OK;
}

int weir_cache_obj_finish(struct weir_cache_obj *o)
{
    uint64_t len = atomic_load_explicit(&o->body_len, memory_order_relaxed);
    int state = atomic_load_explicit(&o->state, memory_order_relaxed);

    if (state == WEIR_OBJ_PASSING) {
        set_final(o, WEIR_OBJ_PASSED);
        return WEIR_DECLINED;
    }
    if (state != WEIR_OBJ_GROWING)
        return WEIR_ERROR;
    if (o->expected_len != UINT64_MAX && len != o->expected_len) {
        weir_cache_obj_abandon(o);
        return WEIR_ERROR;
    }
    /* Nobody else holds it: give back the tail's unused capacity. */
    if (o->tail != NULL && o->tail_len < o->tail->cap && atomic_load(&o->refs) == 1) {
        size_t before = usable(o->tail);
        struct weir_cache_chunk *c = realloc(o->tail, sizeof(*c) + o->tail_len);
        if (c != NULL) {
            struct weir_cache_chunk *prev = o->head;
            if (prev == o->tail) {
                o->head = c;
            } else {
                while (atomic_load_explicit(&prev->next, memory_order_relaxed) != o->tail)
                    prev = atomic_load_explicit(&prev->next, memory_order_relaxed);
                atomic_store_explicit(&prev->next, c, memory_order_release);
            }
            c->cap = o->tail_len;
            o->tail = c;
            atomic_fetch_sub_explicit(&o->mem, before, memory_order_relaxed);
            atomic_fetch_add_explicit(&o->mem, usable(c), memory_order_relaxed);
        }
    }
    set_final(o, WEIR_OBJ_COMPLETE);
    return WEIR_OK;
}

size_t weir_cache_obj_span(const struct weir_cache_obj *o, struct weir_cache_cursor *cur, uint64_t off,
                           uint64_t avail, const char **p)
{
    const struct weir_cache_chunk *c = cur->chunk;
    uint64_t base = cur->base;

    if (off >= avail)
        return 0;
    if (c == NULL || off < base) {
        c = o->head;
        base = 0;
    }
    while (c != NULL && off >= base + c->cap) {
        base += c->cap;
        c = atomic_load_explicit(&((struct weir_cache_chunk *)c)->next, memory_order_acquire);
    }
    if (c == NULL)
        return 0;
    cur->chunk = c;
    cur->base = base;
    *p = c->data + (off - base);
    {
        uint64_t end = base + c->cap < avail ? base + c->cap : avail;
        return (size_t)(end - off);
    }
}

const struct weir_http_header *weir_cache_obj_header(const struct weir_cache_obj *o, const char *lname)
{
    size_t i;
    for (i = 0; i < o->nheaders; i++)
        if (weir_span_ieq(o->headers[i].name, o->headers[i].name_len, lname))
            return &o->headers[i];
    return NULL;
}

int weir_cache_obj_has_tag(const struct weir_cache_obj *o, const char *tag)
{
    size_t tl = strlen(tag);
    const char *p = o->tags;

    if (tl == 0)
        return 0;
    while (*p != '\0') {
        size_t n;
        while (*p == ' ' || *p == '\t')
            p++;
        n = strcspn(p, " \t");
        if (n == tl && memcmp(p, tag, tl) == 0)
            return 1;
        p += n;
    }
    return 0;
}

/* A complete object with these headers (unfiltered: already stored ones)
 * and a copy of src's body. */
static struct weir_cache_obj *clone_with(const struct weir_cache_obj *src, const struct weir_http_header *h,
                                         size_t n)
{
    struct weir_cache_obj *o = obj_alloc(src->max_bytes);
    struct weir_cache_cursor cur = {NULL, 0};
    uint64_t len = weir_cache_obj_length(src), off = 0;

    if (o == NULL)
        return NULL;
    o->status = src->status;
    o->times = src->times;
    o->stored_time = (int64_t)time(NULL);
    o->key = strdup(src->key);
    o->url = strdup(src->url);
    o->vary_names = strdup(src->vary_names);
    o->tags = strdup(src->tags);
    o->vary_values = dup_mem(src->vary_values, src->vary_values_len);
    o->vary_values_len = src->vary_values_len;
    if (o->key == NULL || o->url == NULL || o->vary_names == NULL || o->tags == NULL ||
        o->vary_values == NULL || set_headers(o, h, n, 0) < 0)
        goto fail;
    atomic_store(&o->mem, obj_mem(o));
    o->expected_len = len;
    while (off < len) {
        const char *p;
        size_t k = weir_cache_obj_span(src, &cur, off, len, &p);
        if (k == 0 || weir_cache_obj_append(o, p, k) != WEIR_OK)
            goto fail;
        off += k;
    }
    if (weir_cache_obj_finish(o) != WEIR_OK)
        goto fail;
    return o;
fail:
    obj_free(o);
    return NULL;
}

struct weir_cache_obj *weir_cache_obj_freshen(const struct weir_cache_obj *o,
                                              const struct weir_http_header *fresh, size_t nfresh,
                                              int64_t request_time, int64_t response_time)
{
    struct weir_http_header merged[WEIR_OBJ_MAX_HEADERS];
    struct weir_http_header f[WEIR_OBJ_MAX_HEADERS];
    struct weir_cache_obj *n;
    size_t i, k = 0;
    int count;

    if (weir_cache_obj_state(o) != WEIR_OBJ_COMPLETE)
        return NULL;
    for (i = 0; i < nfresh && k < WEIR_OBJ_MAX_HEADERS; i++)
        if (stored_field(&fresh[i]))
            f[k++] = fresh[i];
    count = weir_cache_update_headers(o->headers, o->nheaders, f, k, merged, WEIR_OBJ_MAX_HEADERS);
    if (count < 0)
        return NULL;
    n = clone_with(o, merged, (size_t)count);
    if (n == NULL)
        return NULL;
    n->times.request_time = request_time;
    n->times.response_time = response_time;
    derive(n);
    return n;
}

/* ---- serialisation ------------------------------------------------------------ */

/* Fixed part: magic, version, status, three times, six 32-bit lengths, body length. */
#define HDR_SIZE (4 + 2 + 2 + 8 * 3 + 4 * 6 + 8)
/* Times are seconds since 1970, at most the last second of year 9999. */
#define TIME_MAX 253402300799ull

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* A fast 64-bit checksum (eight bytes per step) against corruption and
 * truncation; not a defence against a forger, who could write Redis anyway. */
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

char *weir_cache_obj_encode(const struct weir_cache_obj *o, size_t *len)
{
    size_t klen = strlen(o->key), ulen = strlen(o->url), vnl = strlen(o->vary_names), tl = strlen(o->tags);
    uint64_t blen = weir_cache_obj_length(o), off = 0;
    size_t total = HDR_SIZE + klen + ulen + vnl + o->vary_values_len + tl, i, pos;
    struct weir_cache_cursor cur = {NULL, 0};
    unsigned char *b;

    if (weir_cache_obj_state(o) != WEIR_OBJ_COMPLETE)
        return NULL;
    for (i = 0; i < o->nheaders; i++)
        total += 8 + o->headers[i].name_len + o->headers[i].value_len;
    total += (size_t)blen + 8;
    b = malloc(total);
    if (b == NULL)
        return NULL;
    put32(b, WEIR_OBJ_MAGIC);
    put16(b + 4, WEIR_OBJ_VERSION);
    put16(b + 6, (uint16_t)o->status);
    put64(b + 8, (uint64_t)o->times.request_time);
    put64(b + 16, (uint64_t)o->times.response_time);
    put64(b + 24, (uint64_t)o->stored_time);
    put32(b + 32, (uint32_t)klen);
    put32(b + 36, (uint32_t)ulen);
    put32(b + 40, (uint32_t)vnl);
    put32(b + 44, (uint32_t)o->vary_values_len);
    put32(b + 48, (uint32_t)tl);
    put32(b + 52, (uint32_t)o->nheaders);
    put64(b + 56, blen);
    pos = HDR_SIZE;
    memcpy(b + pos, o->key, klen);
    pos += klen;
    memcpy(b + pos, o->url, ulen);
    pos += ulen;
    memcpy(b + pos, o->vary_names, vnl);
    pos += vnl;
    memcpy(b + pos, o->vary_values, o->vary_values_len);
    pos += o->vary_values_len;
    memcpy(b + pos, o->tags, tl);
    pos += tl;
    for (i = 0; i < o->nheaders; i++) {
        put32(b + pos, (uint32_t)o->headers[i].name_len);
        put32(b + pos + 4, (uint32_t)o->headers[i].value_len);
        pos += 8;
        memcpy(b + pos, o->headers[i].name, o->headers[i].name_len);
        pos += o->headers[i].name_len;
        memcpy(b + pos, o->headers[i].value, o->headers[i].value_len);
        pos += o->headers[i].value_len;
    }
    while (off < blen) {
        const char *p;
        size_t k = weir_cache_obj_span(o, &cur, off, blen, &p);
        memcpy(b + pos, p, k);
        pos += k;
        off += k;
    }
    put64(b + pos, checksum(b, pos));
    *len = pos + 8;
    return (char *)b;
}

static int has_nul(const char *p, size_t n)
{
    return memchr(p, '\0', n) != NULL;
}

static int header_ok(const char *name, size_t nl, const char *value, size_t vl)
{
    size_t i;
    if (nl == 0)
        return 0;
    for (i = 0; i < nl; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c >= 0x7f || c == ':')
            return 0;
    }
    for (i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

struct weir_cache_obj *weir_cache_obj_decode(const char *buf, size_t len, size_t max_bytes, int *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    struct weir_http_header h[WEIR_OBJ_MAX_HEADERS];
    uint32_t klen, ulen, vnl, vvl, tl, nh, i;
    uint64_t blen, need;
    size_t pos;
    struct weir_cache_obj *o;
    const char *k, *u, *vn, *vv, *t;

    *err = WEIR_DECODE_TRUNCATED;
    if (len < 6)
        return NULL;
    if (get32(b) != WEIR_OBJ_MAGIC) {
        *err = WEIR_DECODE_MAGIC;
        return NULL;
    }
    if (get16(b + 4) != WEIR_OBJ_VERSION) {
        *err = WEIR_DECODE_VERSION;
        return NULL;
    }
    if (len < HDR_SIZE + 8)
        return NULL;
    klen = get32(b + 32);
    ulen = get32(b + 36);
    vnl = get32(b + 40);
    vvl = get32(b + 44);
    tl = get32(b + 48);
    nh = get32(b + 52);
    blen = get64(b + 56);
    /* every length is at most len, so these sums cannot overflow 64 bits */
    if (klen > len || ulen > len || vnl > len || vvl > len || tl > len || nh > len || blen > len)
        return NULL;
    need = (uint64_t)HDR_SIZE + klen + ulen + vnl + vvl + tl + 8ull * nh + blen + 8;
    if (need > len)
        return NULL;
    if (checksum(b, len - 8) != get64(b + len - 8)) {
        *err = WEIR_DECODE_CHECKSUM;
        return NULL;
    }
    *err = WEIR_DECODE_INVALID;
    if (nh > WEIR_OBJ_MAX_HEADERS || blen > max_bytes || get16(b + 6) < 200 || get16(b + 6) > 599 ||
        klen == 0 || ulen == 0 || get64(b + 8) > TIME_MAX || get64(b + 16) > TIME_MAX ||
        get64(b + 24) > TIME_MAX)
        return NULL;
    pos = HDR_SIZE;
    k = buf + pos;
    pos += klen;
    u = buf + pos;
    pos += ulen;
    vn = buf + pos;
    pos += vnl;
    vv = buf + pos;
    pos += vvl;
    t = buf + pos;
    pos += tl;
    if (has_nul(k, klen) || has_nul(u, ulen) || has_nul(vn, vnl) || has_nul(t, tl))
        return NULL;
    for (i = 0; i < nh; i++) {
        uint32_t nl, vl;
        if (pos + 8 > len - 8 - blen) {
            *err = WEIR_DECODE_TRUNCATED;
            return NULL;
        }
        nl = get32(b + pos);
        vl = get32(b + pos + 4);
        pos += 8;
        if (nl > len || vl > len || pos + (uint64_t)nl + vl > len - 8 - blen) {
            *err = WEIR_DECODE_TRUNCATED;
            return NULL;
        }
        h[i].name = buf + pos;
        h[i].name_len = nl;
        h[i].value = buf + pos + nl;
        h[i].value_len = vl;
        h[i].flags = 0;
        if (!header_ok(h[i].name, nl, h[i].value, vl))
            return NULL;
        pos += nl + vl;
    }
    if (pos + blen + 8 != len) {
        *err = WEIR_DECODE_TRUNCATED;
        return NULL;
    }
    *err = WEIR_DECODE_NOMEM;
    o = obj_alloc(max_bytes);
    if (o == NULL)
        return NULL;
    o->status = get16(b + 6);
    o->times.request_time = (int64_t)get64(b + 8);
    o->times.response_time = (int64_t)get64(b + 16);
    o->stored_time = (int64_t)get64(b + 24);
    o->key = dup_mem(k, klen);
    o->url = dup_mem(u, ulen);
    o->vary_names = dup_mem(vn, vnl);
    o->vary_values = dup_mem(vv, vvl);
    o->vary_values_len = vvl;
    o->tags = dup_mem(t, tl);
    if (o->key == NULL || o->url == NULL || o->vary_names == NULL || o->vary_values == NULL ||
        o->tags == NULL || set_headers(o, h, nh, 0) < 0)
        goto fail;
    derive(o);
    atomic_store(&o->mem, obj_mem(o));
    o->expected_len = blen;
    if (blen > 0 && weir_cache_obj_append(o, buf + pos, (size_t)blen) != WEIR_OK)
        goto fail;
    if (weir_cache_obj_finish(o) != WEIR_OK)
        goto fail;
    *err = WEIR_DECODE_OK;
    return o;
fail:
    obj_free(o);
    return NULL;
}

const char *weir_cache_decode_error_name(int err)
{
    static const char *const names[] = {"ok",       "magic",   "version", "truncated",
                                        "checksum", "invalid", "nomem"};
    if (err < 0 || (size_t)err >= WEIR_ARRAY_LEN(names))
        return "unknown";
    return names[err];
}
