/*
 * admin_cache.c - the cache's admin endpoints (admin thread):
 *
 *   POST /cache/purge  {"url": "http://host/path?q"} | {"prefix": "http://host/p/"}
 *                      | {"tag": "product-42"}, optional "soft": true
 *                      -> 200 {"purged": {"l1": N, "l2": M}}
 *                      (l2: values deleted from Redis by a URL purge; prefix and
 *                      tag purges reach L2 through the purge channel, whose
 *                      instances refuse the values stored before the purge)
 *   GET /cache         -> sizes, counts and the tiers' states
 *
 * The token check and the dispatch are in admin.c. The purge answer waits
 * for Redis' DEL (bounded by redis.timeout_ms); a client that leaves before
 * gets nothing and the late answer is dropped.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <jansson.h>

#include "weir/admin.h"
#include "weir/cache.h"
#include "weir/cache_rules.h"

struct pending {
    struct evhttp_request *req; /* NULL once its connection closed */
    struct evhttp_connection *conn;
};

static void conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct pending *p = arg;
    p->req = NULL;
}

static void purge_done(void *arg, size_t l1, size_t l2, int l2_ok)
{
    struct pending *p = arg;

    if (p->req != NULL) {
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
        weir_admin_reply_json(p->req, 200,
                              json_pack("{s:{s:I,s:I},s:b}", "purged", "l1", (json_int_t)l1, "l2",
                                        (json_int_t)l2, "l2_reached", l2_ok));
    }
    free(p);
}

/* "http://Host:80/p" -> "http://host/p" (the form URLs are stored under). */
static char *normalise_url(const char *v, int is_prefix)
{
    const char *host, *slash;

    if (strncmp(v, "http://", 7) != 0)
        return NULL;
    host = v + 7;
    slash = strchr(host, '/');
    if (slash == NULL)
        return is_prefix ? weir_cache_url("http", host, strlen(host), "", 0)
                         : weir_cache_url("http", host, strlen(host), "/", 1);
    return weir_cache_url("http", host, (size_t)(slash - host), slash, strlen(slash));
}

void weir_admin_cache_purge(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *kind = NULL, *value = NULL, *key;
    json_error_t err;
    json_t *body, *v, *soft;
    struct pending *p;
    char *norm = NULL;

    body = n ? json_loadb((const char *)evbuffer_pullup(in, -1), n, JSON_REJECT_DUPLICATES, &err) : NULL;
    if (body == NULL || !json_is_object(body)) {
        weir_admin_reply_error(req, 400,
                               "the body must be a JSON object such as {\"url\": \"http://host/path\"}");
        json_decref(body);
        return;
    }
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "soft") == 0)
            continue;
        if (strcmp(key, "url") != 0 && strcmp(key, "prefix") != 0 && strcmp(key, "tag") != 0) {
            weir_admin_reply_error(req, 400, "unknown key '%s' (allowed: url, prefix, tag, soft)", key);
            json_decref(body);
            return;
        }
        if (kind != NULL) {
            weir_admin_reply_error(req, 400, "give one of url, prefix or tag");
            json_decref(body);
            return;
        }
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 2000) {
            weir_admin_reply_error(req, 400, "'%s' must be a non-empty string of at most 2000 bytes", key);
            json_decref(body);
            return;
        }
        kind = key;
        value = json_string_value(v);
    }
    soft = json_object_get(body, "soft");
    if (kind == NULL || (soft != NULL && !json_is_boolean(soft))) {
        weir_admin_reply_error(
            req, 400, kind == NULL ? "give one of url, prefix or tag" : "'soft' must be true or false");
        json_decref(body);
        return;
    }
    if (strcmp(kind, "tag") == 0) {
        if (strpbrk(value, " \t\r\n") != NULL) {
            weir_admin_reply_error(req, 400,
                                   "a tag has no spaces (Surrogate-Key lists tags separated by spaces)");
            json_decref(body);
            return;
        }
    } else {
        norm = normalise_url(value, kind[0] == 'p');
        if (norm == NULL) {
            weir_admin_reply_error(req, 400, "'%s' must start with \"http://\" followed by the host", kind);
            json_decref(body);
            return;
        }
        value = norm;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        weir_admin_reply_error(req, 500, "out of memory");
        free(norm);
        json_decref(body);
        return;
    }
    p->req = req;
    p->conn = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(p->conn, conn_closed, p);
    weir_cache_purge(kind, value, soft != NULL && json_is_true(soft), purge_done, p);
    free(norm);
    json_decref(body);
}

void weir_admin_cache_get(struct evhttp_request *req)
{
    struct weir_cache_state st;
    json_t *o, *ns;
    int i;

    weir_cache_state(&st);
    ns = json_object();
    for (i = 0; i < WEIR_STORE_REASONS; i++)
        json_object_set_new(ns, weir_cache_store_reason_name(i),
                            json_integer((json_int_t)st.counters.not_storable_by[i]));
    json_object_set_new(ns, "too_big", json_integer((json_int_t)st.counters.not_storable_by[15]));
    o = json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o},s:I}",
                  "l1", "budget_bytes", (json_int_t)st.l1.budget, "bytes", (json_int_t)st.l1.bytes, "objects",
                  (json_int_t)st.l1.objects, "hit_for_miss_marks", (json_int_t)st.l1.marks, "evicted",
                  (json_int_t)st.l1.evicted, "expired", (json_int_t)st.l1.expired, "inserted",
                  (json_int_t)st.l1.inserted, "max_object_bytes", (json_int_t)st.max_object_bytes, "requests",
                  "hit_l1", (json_int_t)st.counters.hit_l1, "hit_l2", (json_int_t)st.counters.hit_l2, "miss",
                  (json_int_t)st.counters.miss, "stale_served", (json_int_t)st.counters.stale_served,
                  "stored", (json_int_t)st.counters.stored, "revalidated",
                  (json_int_t)st.counters.revalidated, "coalesced", (json_int_t)st.counters.coalesced,
                  "l2_garbage", (json_int_t)st.counters.l2_garbage, "not_storable",
                  (json_int_t)st.counters.not_storable, "not_storable_by", ns, "purge_generation",
                  (json_int_t)st.purge_gen);
    if (st.has_l2)
        json_object_set_new(
            o, "l2",
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "state", weir_redis_state_name(st.l2.state),
                      "commands", (json_int_t)st.l2.commands, "timeouts", (json_int_t)st.l2.timeouts,
                      "errors", (json_int_t)st.l2.errors, "breaker_opens", (json_int_t)st.l2.opens, "refused",
                      (json_int_t)st.l2.refused, "last_error", st.l2.last_error));
    else
        json_object_set_new(o, "l2", json_null());
    weir_admin_reply_json(req, 200, o);
}

/* One counter or gauge family with a single unlabelled sample. */
static void metric(struct evbuffer *out, const char *name, const char *type, const char *help, uint64_t v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                        (unsigned long long)v);
}

int weir_cache_metrics(struct evbuffer *out)
{
    struct weir_cache_state st;
    int i;

    weir_cache_state(&st);
    evbuffer_add_printf(out, "# HELP weir_cache_requests_total Requests on cache routes by tier and result.\n"
                             "# TYPE weir_cache_requests_total counter\n");
    evbuffer_add_printf(out, "weir_cache_requests_total{tier=\"l1\",result=\"hit\"} %llu\n",
                        (unsigned long long)st.counters.hit_l1);
    evbuffer_add_printf(out, "weir_cache_requests_total{tier=\"l2\",result=\"hit\"} %llu\n",
                        (unsigned long long)st.counters.hit_l2);
    evbuffer_add_printf(out, "weir_cache_requests_total{tier=\"backend\",result=\"miss\"} %llu\n",
                        (unsigned long long)st.counters.miss);
    metric(out, "weir_cache_stale_served_total", "counter",
           "Stale answers (max-stale, stale-while-revalidate, stale-if-error).", st.counters.stale_served);
    metric(out, "weir_cache_coalesced_total", "counter", "Requests answered from another request's fetch.",
           st.counters.coalesced);
    metric(out, "weir_cache_revalidated_total", "counter",
           "Revalidations that refreshed an entry (304 or 200).", st.counters.revalidated);
    metric(out, "weir_cache_stored_total", "counter", "Responses stored in L1.", st.counters.stored);
    evbuffer_add_printf(out, "# HELP weir_cache_not_storable_total Responses not stored, by reason.\n"
                             "# TYPE weir_cache_not_storable_total counter\n");
    for (i = 1; i < WEIR_STORE_REASONS; i++)
        evbuffer_add_printf(out, "weir_cache_not_storable_total{reason=\"%s\"} %llu\n",
                            weir_cache_store_reason_name(i),
                            (unsigned long long)st.counters.not_storable_by[i]);
    evbuffer_add_printf(out, "weir_cache_not_storable_total{reason=\"too_big\"} %llu\n",
                        (unsigned long long)st.counters.not_storable_by[15]);
    metric(out, "weir_cache_l1_bytes", "gauge", "Heap bytes the L1 holds.", st.l1.bytes);
    metric(out, "weir_cache_l1_budget_bytes", "gauge", "The L1 budget (cache.memory_bytes).", st.l1.budget);
    metric(out, "weir_cache_l1_objects", "gauge", "Objects in the L1.", st.l1.objects);
    metric(out, "weir_cache_l1_evicted_total", "counter", "Objects evicted from the L1 to make room.",
           st.l1.evicted);
    metric(out, "weir_cache_l2_garbage_total", "counter",
           "L2 values refused (not weir's, truncated, other version).", st.counters.l2_garbage);
    if (st.has_l2) {
        metric(out, "weir_cache_l2_up", "gauge", "1 while the admin's L2 connection's breaker is closed.",
               st.l2.state == WEIR_REDIS_UP);
        metric(out, "weir_cache_l2_timeouts_total", "counter",
               "L2 commands past redis.timeout_ms (admin connection).", st.l2.timeouts);
        metric(out, "weir_cache_l2_breaker_opens_total", "counter",
               "Times the admin connection's breaker opened.", st.l2.opens);
    }
    return 0;
}
