/*
 * admin_api.c - the runtime API of the admin endpoint: add a server, change
 * its weight or admin state, drain and remove it, reload from file.
 *
 * A change copies the running snapshot's configuration (weir_conf_dup),
 * edits the copy and builds a new snapshot from it with the current one as
 * `prev`, so every server that stays is the same object (health, counters,
 * idle connections and requests in flight are untouched); workers pick the
 * new snapshot up on their next request, and requests in flight finish on
 * the one they started with. Changes last until the next reload from file.
 *
 * DELETE first drains the server (admin state drain: no new requests), then
 * a control-thread timer polls its active count and removes it from the pool
 * once nothing is in flight.
 *
 * Control thread only: the handlers run in the admin's evhttp callbacks and
 * the poll timer on the same event_base, so snapshot edits never race.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "weir/admin.h"
#include "weir/conf_edit.h"
#include "weir/control.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/server.h"

#define POLL_MS 100

/* A server waiting for its in-flight requests before removal. */
struct pending {
    char *pool;
    char *address; /* as in the snapshot */
    unsigned server_id;
    TAILQ_ENTRY(pending) link;
};

static struct {
    struct event_base *base;
    int nworkers;
    int (*reload)(void *arg, struct weir_conf_errors *errs);
    void *reload_arg;
    struct event *poll;
    TAILQ_HEAD(, pending) pending;
    int init;
} P;

static void pending_free(struct pending *d)
{
    free(d->pool);
    free(d->address);
    free(d);
}

/* ---- helpers ---- */

static const struct weir_pool *rt_pool(const struct weir_rt *rt, const char *name)
{
    for (size_t i = 0; i < rt->npools; i++)
        if (strcmp(rt->pools[i].name, name) == 0)
            return &rt->pools[i];
    return NULL;
}

/* The server of pool p addressed as `address` (text as configured, or the
 * same socket address). */
static struct weir_server *rt_server(const struct weir_pool *p, const char *address)
{
    const struct weir_conf_pool *cp = p->conf;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    const char *why;
    long i = weir_conf_find_server(cp, address, NULL);

    if (i < 0 && weir_conf_parse_server_addr(address, &ss, &len, &why) == 0)
        i = weir_conf_find_server(cp, address, &ss);
    if (i < 0)
        return NULL;
    /* The snapshot's servers are in the conf's order. */
    for (size_t j = 0; j < p->set.n; j++)
        if (strcmp(p->set.v[j]->address, cp->servers[i].addr.text) == 0)
            return p->set.v[j];
    return NULL;
}

static struct pending *pending_find(const char *pool, const char *address)
{
    struct pending *d;
    TAILQ_FOREACH(d, &P.pending, link)
    {
        if (strcmp(d->pool, pool) == 0 && strcmp(d->address, address) == 0)
            return d;
    }
    return NULL;
}

/* Build and publish a snapshot from `conf` (consumed). 0 or -1. */
static int apply(struct weir_conf *conf)
{
    return weir_control_apply(conf) == WEIR_OK ? 0 : -1;
}

static const char *admin_state_word(int st)
{
    return st == WEIR_ADMIN_DRAIN ? "drain" : st == WEIR_ADMIN_MAINT ? "maint" : "ready";
}

static json_t *server_brief(const char *pool, const struct weir_server *s)
{
    return json_pack("{s:s,s:s,s:i,s:s,s:s,s:I}", "pool", pool, "address", s->address, "weight",
                     atomic_load(&s->weight), "state", weir_server_state_name(atomic_load(&s->state)),
                     "admin_state", admin_state_word(atomic_load(&s->admin_state)), "active",
                     (json_int_t)weir_server_active(s));
}

/*
 * Parse the request body as a JSON object whose keys are all in `allowed`
 * (NULL-terminated). The Content-Type is not checked (curl -d sends a form
 * type): the body must parse as JSON. Returns it (new reference) or replies 400 and returns
 * NULL.
 */
static json_t *read_body(struct evhttp_request *req, const char *const *allowed)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    json_error_t err;
    const char *key;
    json_t *v, *body;

    if (n == 0) {
        weir_admin_reply_error(req, 400, "missing JSON body");
        return NULL;
    }
    body = json_loadb((const char *)evbuffer_pullup(in, -1), n, JSON_REJECT_DUPLICATES, &err);
    if (body == NULL) {
        weir_admin_reply_error(req, 400, "invalid JSON body: %s (line %d, column %d)", err.text, err.line,
                               err.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        weir_admin_reply_error(req, 400, "the JSON body must be an object");
        json_decref(body);
        return NULL;
    }
    json_object_foreach(body, key, v)
    {
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (allowed[i] == NULL) {
            char list[128] = "";
            for (i = 0; allowed[i] != NULL; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
            weir_admin_reply_error(req, 400, "unknown key '%s' (allowed: %s)", key, list);
            json_decref(body);
            return NULL;
        }
    }
    return body;
}

/* Weight member: 0 when absent, the value when valid, -1 (400 sent) when bad. */
static int body_weight(struct evhttp_request *req, const json_t *body)
{
    const json_t *w = json_object_get(body, "weight");

    if (w == NULL)
        return 0;
    if (!json_is_integer(w) || json_integer_value(w) < WEIR_CONF_WEIGHT_MIN ||
        json_integer_value(w) > WEIR_CONF_WEIGHT_MAX) {
        weir_admin_reply_error(req, 400, "weight must be an integer between %d and %d", WEIR_CONF_WEIGHT_MIN,
                               WEIR_CONF_WEIGHT_MAX);
        return -1;
    }
    return (int)json_integer_value(w);
}

/* Current snapshot with pool `pool`, or NULL after replying 404/503. */
static struct weir_rt *current_with_pool(struct evhttp_request *req, const char *pool,
                                         const struct weir_pool **p)
{
    struct weir_rt *rt = weir_rt_current();

    if (rt == NULL) {
        weir_admin_reply_error(req, 503, "no configuration loaded");
        return NULL;
    }
    *p = rt_pool(rt, pool);
    if (*p == NULL) {
        weir_admin_reply_error(req, 404, "no pool named '%s'", pool);
        weir_rt_release(rt);
        return NULL;
    }
    return rt;
}

/* The current snapshot (retained) and server `address` of `pool`, or NULL
 * after answering 503/404. */
static struct weir_rt *current_with_server(struct evhttp_request *req, const char *pool, const char *address,
                                           const struct weir_pool **p, struct weir_server **s)
{
    struct weir_rt *rt = current_with_pool(req, pool, p);

    if (rt == NULL)
        return NULL;
    *s = rt_server(*p, address);
    if (*s == NULL) {
        weir_admin_reply_error(req, 404, "pool '%s' has no server %s", pool, address);
        weir_rt_release(rt);
        return NULL;
    }
    return rt;
}

/* ---- POST /pools/{pool}/servers ---- */

void weir_admin_api_add_server(struct evhttp_request *req, const char *pool)
{
    static const char *const allowed[] = {"address", "weight", NULL};
    const struct weir_pool *p;
    struct weir_rt *rt = current_with_pool(req, pool, &p);
    struct weir_conf *copy = NULL;
    json_t *body = NULL;
    const char *address, *why = "invalid";
    int weight, rc;

    if (rt == NULL)
        return;
    body = read_body(req, allowed);
    if (body == NULL)
        goto out;
    address = json_string_value(json_object_get(body, "address"));
    if (address == NULL || address[0] == '\0') {
        weir_admin_reply_error(req, 400, "address must be a non-empty string \"host:port\"");
        goto out;
    }
    weight = body_weight(req, body);
    if (weight < 0)
        goto out;
    if (weight == 0)
        weight = 1;
    if (rt_server(p, address) != NULL) {
        weir_admin_reply_error(req, 409, "pool '%s' already has server %s%s", pool, address,
                               pending_find(pool, address) ? " (being removed)" : "");
        goto out;
    }
    if (p->set.n >= WEIR_CONF_POOL_MAX_SERVERS) {
        weir_admin_reply_error(req, 409, "pool '%s' has %zu servers, the most a pool may have (%d)", pool,
                               p->set.n, WEIR_CONF_POOL_MAX_SERVERS);
        goto out;
    }
    copy = weir_conf_dup(rt->conf);
    if (copy == NULL) {
        weir_admin_reply_error(req, 500, "out of memory");
        goto out;
    }
    rc = weir_conf_pool_add_server(weir_conf_find_pool(copy, pool), address, weight, &why);
    if (rc == WEIR_DECLINED) {
        weir_admin_reply_error(req, 409, "pool '%s' already has server %s", pool, address);
        goto out;
    }
    if (rc != WEIR_OK) {
        weir_admin_reply_error(req, 400, "invalid address '%s': %s", address, why);
        goto out;
    }
    weir_rt_release(rt);
    rt = NULL;
    if (apply(copy) != 0) {
        copy = NULL;
        weir_admin_reply_error(req, 500, "out of memory building the new configuration");
        goto out;
    }
    copy = NULL;
    rt = weir_rt_current();
    p = rt_pool(rt, pool);
    struct weir_server *s = p ? rt_server(p, address) : NULL;
    weir_log_info("admin: added server %s to pool '%s' (weight %d)", address, pool, weight);
    weir_admin_reply_json(req, 201, s ? server_brief(pool, s) : json_pack("{s:s}", "address", address));
out:
    weir_conf_free(copy);
    json_decref(body);
    weir_rt_release(rt);
}

/* ---- PATCH /pools/{pool}/servers/{address} ---- */

void weir_admin_api_patch_server(struct evhttp_request *req, const char *pool, const char *address)
{
    static const char *const allowed[] = {"weight", "state", NULL};
    const struct weir_pool *p;
    struct weir_server *s;
    struct weir_rt *rt = current_with_server(req, pool, address, &p, &s);
    json_t *body = NULL;
    const json_t *jst;
    int weight, state = -1;

    if (rt == NULL)
        return;
    body = read_body(req, allowed);
    if (body == NULL)
        goto out;
    weight = body_weight(req, body);
    if (weight < 0)
        goto out;
    jst = json_object_get(body, "state");
    if (jst != NULL) {
        const char *v = json_string_value(jst);
        if (v != NULL && strcmp(v, "ready") == 0)
            state = WEIR_ADMIN_READY;
        else if (v != NULL && strcmp(v, "drain") == 0)
            state = WEIR_ADMIN_DRAIN;
        else if (v != NULL && strcmp(v, "maint") == 0)
            state = WEIR_ADMIN_MAINT;
        else {
            weir_admin_reply_error(req, 400, "state must be \"drain\", \"maint\" or \"ready\"");
            goto out;
        }
    }
    if (weight == 0 && state < 0) {
        weir_admin_reply_error(req, 400, "nothing to change: give \"weight\" and/or \"state\"");
        goto out;
    }
    if (weight > 0 && weight != atomic_load(&s->weight)) {
        struct weir_conf *copy = weir_conf_dup(rt->conf);
        struct weir_conf_pool *cp = copy ? weir_conf_find_pool(copy, pool) : NULL;
        long i = cp ? weir_conf_find_server(cp, s->address, NULL) : -1;
        if (i < 0) {
            weir_conf_free(copy);
            weir_admin_reply_error(req, 500, "out of memory");
            goto out;
        }
        cp->servers[i].weight = weight;
        weir_server_retain(s); /* keep it across the swap for the reply */
        weir_rt_release(rt);
        rt = NULL;
        if (apply(copy) != 0) {
            weir_server_release(s);
            weir_admin_reply_error(req, 500, "out of memory building the new configuration");
            goto out;
        }
        weir_log_info("admin: server %s of pool '%s' weight %d", s->address, pool, weight);
        weir_server_release(s); /* the new snapshot holds it */
    }
    if (state >= 0) {
        struct pending *d = pending_find(pool, s->address);
        if (d != NULL && state != WEIR_ADMIN_DRAIN) {
            /* A new state cancels a removal in progress. */
            TAILQ_REMOVE(&P.pending, d, link);
            pending_free(d);
            weir_log_info("admin: removal of server %s from pool '%s' cancelled", s->address, pool);
        }
        weir_health_set_admin(s, state, pool);
        weir_log_info("admin: server %s of pool '%s' admin state %s", s->address, pool,
                      admin_state_word(state));
    }
    weir_admin_reply_json(req, 200, server_brief(pool, s));
out:
    json_decref(body);
    weir_rt_release(rt);
}

/* ---- DELETE /pools/{pool}/servers/{address} ---- */

/* Remove every pending server whose active count is 0, in one snapshot. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    struct weir_rt *rt = weir_rt_current();
    struct weir_conf *copy = NULL;
    struct pending *d, *next;
    int removed = 0;

    if (rt == NULL)
        return;
    for (d = TAILQ_FIRST(&P.pending); d != NULL; d = next) {
        next = TAILQ_NEXT(d, link);
        const struct weir_pool *p = rt_pool(rt, d->pool);
        struct weir_server *s = NULL;
        for (size_t j = 0; p != NULL && j < p->set.n; j++)
            if (p->set.v[j]->id == d->server_id)
                s = p->set.v[j];
        if (s == NULL) { /* gone already (reload, pool removed) */
            TAILQ_REMOVE(&P.pending, d, link);
            pending_free(d);
            continue;
        }
        if (weir_server_active(s) > 0)
            continue;
        if (copy == NULL && (copy = weir_conf_dup(rt->conf)) == NULL)
            break; /* out of memory: try again at the next poll */
        struct weir_conf_pool *cp = weir_conf_find_pool(copy, d->pool);
        long i = cp ? weir_conf_find_server(cp, d->address, NULL) : -1;
        if (i >= 0) {
            weir_conf_pool_remove_server(cp, (size_t)i);
            removed++;
            weir_log_info("admin: server %s removed from pool '%s' (drained)", d->address, d->pool);
        }
        TAILQ_REMOVE(&P.pending, d, link);
        pending_free(d);
    }
    weir_rt_release(rt);
    if (removed > 0) {
        if (apply(copy) != 0)
            weir_log_error("admin: out of memory removing drained servers; they stay drained");
    } else {
        weir_conf_free(copy);
    }
    if (!TAILQ_EMPTY(&P.pending)) {
        struct timeval tv = {0, POLL_MS * 1000};
        evtimer_add(P.poll, &tv);
    }
}

void weir_admin_api_delete_server(struct evhttp_request *req, const char *pool, const char *address)
{
    const struct weir_pool *p;
    struct weir_server *s;
    struct weir_rt *rt = current_with_server(req, pool, address, &p, &s);
    struct pending *d;

    if (rt == NULL)
        return;
    d = pending_find(pool, s->address);
    if (d == NULL) {
        d = calloc(1, sizeof(*d));
        if (d == NULL || (d->pool = strdup(pool)) == NULL || (d->address = strdup(s->address)) == NULL) {
            if (d != NULL)
                pending_free(d);
            weir_admin_reply_error(req, 500, "out of memory");
            goto out;
        }
        d->server_id = s->id;
        TAILQ_INSERT_TAIL(&P.pending, d, link);
        weir_health_set_admin(s, WEIR_ADMIN_DRAIN, pool);
        weir_log_info("admin: draining server %s of pool '%s' before removal (%ld in flight)", s->address,
                      pool, weir_server_active(s));
    }
    if (!evtimer_pending(P.poll, NULL)) {
        struct timeval tv = {0, POLL_MS * 1000};
        evtimer_add(P.poll, &tv);
    }
    json_t *o = server_brief(pool, s);
    if (o != NULL)
        json_object_set_new(o, "status", json_string("draining"));
    weir_admin_reply_json(req, 202, o);
out:
    weir_rt_release(rt);
}

/* ---- POST /reload ---- */

void weir_admin_api_reload(struct evhttp_request *req)
{
    struct weir_conf_errors errs = {0};

    if (P.reload == NULL) {
        weir_admin_reply_error(req, 501, "reload is not available");
        return;
    }
    if (P.reload(P.reload_arg, &errs) == 0) {
        struct weir_rt *rt = weir_rt_current();
        weir_admin_reply_json(req, 200,
                              json_pack("{s:s,s:i,s:I,s:I}", "status", "reloaded", "generation",
                                        rt ? (int)rt->generation : 0, "pools",
                                        (json_int_t)(rt ? rt->npools : 0), "routes",
                                        (json_int_t)(rt ? rt->nroutes : 0)));
        weir_rt_release(rt);
    } else {
        json_t *list = json_array();
        for (size_t i = 0; list != NULL && i < errs.n; i++)
            json_array_append_new(list, json_string(errs.msgs[i]));
        weir_admin_reply_json(req, errs.n > 0 ? 400 : 503,
                              json_pack("{s:s,s:o*}", "error",
                                        errs.n > 0 ? "configuration refused; the running configuration stays"
                                                   : "reload not possible now (stopping)",
                                        "errors", list));
    }
    weir_conf_errors_free(&errs);
}

/* ---- lifecycle ---- */

int weir_admin_api_init(struct event_base *base, const struct weir_admin_opts *opts)
{
    memset(&P, 0, sizeof(P));
    TAILQ_INIT(&P.pending);
    P.base = base;
    P.nworkers = opts->nworkers;
    P.reload = opts->reload;
    P.reload_arg = opts->reload_arg;
    P.poll = evtimer_new(base, poll_cb, NULL);
    if (P.poll == NULL)
        return -1;
    P.init = 1;
    return 0;
}

static void drop_pending(int restore_ready)
{
    struct pending *d;
    struct weir_rt *rt = restore_ready ? weir_rt_current() : NULL;

    while ((d = TAILQ_FIRST(&P.pending)) != NULL) {
        TAILQ_REMOVE(&P.pending, d, link);
        const struct weir_pool *p = rt ? rt_pool(rt, d->pool) : NULL;
        for (size_t j = 0; p != NULL && j < p->set.n; j++) {
            if (p->set.v[j]->id == d->server_id) {
                /* The file lists it again: it serves as the file says. */
                weir_health_set_admin(p->set.v[j], WEIR_ADMIN_READY, d->pool);
                weir_log_info("admin: reload cancelled the removal of server %s from pool '%s'", d->address,
                              d->pool);
            }
        }
        pending_free(d);
    }
    weir_rt_release(rt);
}

void weir_admin_api_reloaded(void)
{
    if (P.init)
        drop_pending(1);
}

void weir_admin_api_fini(void)
{
    if (!P.init)
        return;
    drop_pending(0);
    event_free(P.poll);
    memset(&P, 0, sizeof(P));
}
