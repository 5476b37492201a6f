/*
 * admin.h - the admin endpoint: its own HTTP listener on the control thread
 * (evhttp on the control thread's event_base) serving
 *
 *   GET  /stats[?window=10s|60s|all]  statistics as JSON (shape: DESIGN notes in admin.c)
 *   GET  /metrics                     Prometheus text exposition
 *   GET  /dashboard                   the HTML dashboard (embedded at build time)
 *   GET  /healthz                     weir's own liveness: 200 "ok"
 *   POST   /pools/{pool}/servers            add a server       (token)
 *   PATCH  /pools/{pool}/servers/{address}  weight and/or state (token)
 *   DELETE /pools/{pool}/servers/{address}  drain, then remove  (token)
 *   POST   /reload                          reload from file like SIGHUP (token)
 *
 * Every request that changes something needs "Authorization: Bearer TOKEN"
 * (401 without, 403 with a wrong one); on a non-loopback listen address the
 * reads need it too (except /healthz). Runtime API changes build a new
 * snapshot from a copy of the running configuration; they last until the
 * next reload from file.
 *
 * Everything here runs on the control thread (the one that owns `base`),
 * the same thread as health checks and reloads, so snapshot edits never race.
 */
#ifndef WEIR_ADMIN_H
#define WEIR_ADMIN_H

#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "weir/conf.h"
#include "weir/histogram.h"
#include "weir/runtime.h"
#include "weir/stats.h"

struct weir_admin_opts {
    const struct weir_conf *conf; /* admin.addr is bound at start; the token is read from the
                                     current snapshot on every request (reloads change it) */
    int nworkers;                 /* for weir_rt_build */
    /* Reload from file like SIGHUP: returns 0, or -1 with errs filled
     * ("FILE:LINE: message" each). NULL: POST /reload answers 501. */
    int (*reload)(void *arg, struct weir_conf_errors *errs);
    void *reload_arg;
};

/* Bind conf->admin.addr and serve on `base`. Returns 0, or -1 after logging
 * why (address in use...). Control thread. */
int weir_admin_start(struct event_base *base, const struct weir_admin_opts *opts);

/* Close the listener and every admin connection; drop pending removals.
 * Control thread, before base is freed. Safe when not started. */
void weir_admin_stop(void);

/* Tell the admin that the configuration was reloaded from file: pending
 * server removals are cancelled (the file is the truth again). Control
 * thread; a no-op when not started. */
void weir_admin_reloaded(void);

/* ---- rendering (pure apart from reading stats/health; unit tested) ---- */

/* Windows selector for weir_admin_stats_json: one enum weir_win, or -1 for
 * all three ("10s", "60s", "all"). */
#define WEIR_ADMIN_ALL_WINDOWS (-1)

/* LAT object of a (private) histogram: count, p50, p90, p95, p99, p999,
 * max, mean; times in ms rounded to the microsecond. New reference. */
json_t *weir_admin_lat_json(const struct weir_hist *h);

/* Add the COUNTERS keys of `st` to object `o` (requests, responses,
 * upstream_errors, retries, bytes_in, bytes_out, rps, latency_ms, ttfb_ms).
 * Returns 0, or -1 on allocation failure. */
int weir_admin_add_counters(json_t *o, const struct weir_stats *st, uint64_t now_s, int windows);

/* The whole GET /stats document for snapshot rt. New reference, NULL on
 * allocation failure. wall_ms is the "time_ms" to report. */
json_t *weir_admin_stats_json(const struct weir_rt *rt, int windows, uint64_t now_s, long long wall_ms);

/* Append the GET /metrics text for snapshot rt to out. Returns 0 or -1. */
int weir_admin_metrics(struct evbuffer *out, const struct weir_rt *rt, uint64_t now_s);

/*
 * 1 when a request with this Host header value (NULL: none) may reach the
 * admin endpoint: an IP literal, localhost or *.localhost, or a name in
 * `allowed` (lower-case; "name" or "*.suffix"). A port is ignored. Any other
 * name could be an attacker's domain rebound to this address (DNS
 * rebinding), reaching the admin from a browser. Pure.
 */
int weir_admin_host_allowed(const char *host, const char *const *allowed, size_t nallowed);

/* ---- shared by admin.c and admin_api.c (control thread) ---- */

/* Reply with a JSON body (steals `body`; NULL gives 500). */
void weir_admin_reply_json(struct evhttp_request *req, int code, json_t *body);
/* Reply {"error": message} with `code`. */
__attribute__((format(printf, 3, 4))) void weir_admin_reply_error(struct evhttp_request *req, int code,
                                                                  const char *fmt, ...);

/* Connections (admin_conn.c): cap, per-request deadline, EMFILE back-off.
 * init before the listener exists; weir_admin_conn_bev is evhttp's bevcb;
 * weir_admin_conn_listener takes the listener under the guard;
 * weir_admin_conn_request on every request (renews its deadline);
 * weir_admin_conn_stop_accepting before evhttp_free, weir_admin_conn_fini
 * after it (closes what evhttp left to us). */
int weir_admin_conn_init(struct event_base *base);
struct bufferevent *weir_admin_conn_bev(struct event_base *base, void *arg);
struct evconnlistener;
void weir_admin_conn_listener(struct evconnlistener *l);
void weir_admin_conn_request(struct evhttp_request *req);
void weir_admin_conn_stop_accepting(void);
void weir_admin_conn_fini(void);

/* Runtime API handlers (admin_api.c); they reply themselves. */
int weir_admin_api_init(struct event_base *base, const struct weir_admin_opts *opts);
void weir_admin_api_fini(void);
void weir_admin_api_reloaded(void);
void weir_admin_api_add_server(struct evhttp_request *req, const char *pool);
void weir_admin_api_patch_server(struct evhttp_request *req, const char *pool, const char *address);
void weir_admin_api_delete_server(struct evhttp_request *req, const char *pool, const char *address);
void weir_admin_api_reload(struct evhttp_request *req);

#endif
