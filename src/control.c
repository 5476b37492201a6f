/* control.c - build, publish and re-sync a configuration snapshot (control.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/control.h"
#include "weir/core.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/tls.h"
#include "weir/worker.h"

static struct {
    int nworkers;
    struct weir_worker *const *workers;
    int nnotify;
    /* TLS state of the process: one ticket-key ring (tickets survive
     * reloads and resume on any worker) and one counter block per listener
     * index (listeners only change at a restart). */
    struct weir_tls_tickets *tickets;
    struct weir_tls_counters counters[WEIR_CONTROL_MAX_LISTENS];
} C;

void weir_control_init(int nworkers)
{
    C.nworkers = nworkers;
    C.workers = NULL;
    C.nnotify = 0;
}

void weir_control_set_workers(struct weir_worker *const *workers, int n)
{
    C.workers = workers;
    C.nnotify = workers != NULL ? n : 0;
}

void weir_control_signal_workers(unsigned sigs)
{
    for (int i = 0; i < C.nnotify; i++)
        if (C.workers[i] != NULL)
            weir_worker_signal(C.workers[i], sigs);
}

__attribute__((format(printf, 2, 3))) static void add_err(struct weir_conf_errors *errs, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **v = realloc(errs->msgs, (errs->n + 1) * sizeof(*v));
    if (v == NULL)
        return;
    errs->msgs = v;
    if ((v[errs->n] = strdup(buf)) != NULL)
        errs->n++;
}

static int has_tls(const struct weir_conf *conf)
{
    for (size_t i = 0; i < conf->nlistens; i++)
        if (conf->listens[i].tls.enabled)
            return 1;
    for (size_t i = 0; i < conf->npools; i++)
        if (conf->pools[i].tls.enabled)
            return 1;
    return 0;
}

int weir_control_tls_build(const struct weir_conf *conf, struct weir_tls_set **out,
                           struct weir_conf_errors *errs)
{
    *out = NULL;
    if (!has_tls(conf))
        return 0;
    if (conf->nlistens > WEIR_CONTROL_MAX_LISTENS) {
        add_err(errs, "%s: at most %d listen addresses with TLS", conf->file, WEIR_CONTROL_MAX_LISTENS);
        return -1;
    }
    if (C.tickets == NULL && (C.tickets = weir_tls_tickets_new(WEIR_TLS_TICKET_ROTATE_S)) == NULL) {
        add_err(errs, "%s: tls: cannot create the session-ticket keys", conf->file);
        return -1;
    }
    *out = weir_tls_set_new(conf, C.tickets, C.counters, errs);
    return *out != NULL ? 0 : -1;
}

/* A change that is not a reload from file (runtime API): the pools and
 * listeners are the current ones, so the new snapshot shares the current
 * contexts (new references) instead of reading the files again. */
static struct weir_tls_set *share_set(const struct weir_tls_set *cur, const struct weir_conf *conf)
{
    if (cur == NULL || cur->nservers != conf->nlistens || cur->nclients != conf->npools)
        return NULL;
    struct weir_tls_set *set = calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    set->servers = calloc(cur->nservers ? cur->nservers : 1, sizeof(*set->servers));
    set->clients = calloc(cur->nclients ? cur->nclients : 1, sizeof(*set->clients));
    if (set->servers == NULL || set->clients == NULL) {
        weir_tls_set_free(set);
        return NULL;
    }
    for (size_t i = 0; i < cur->nservers; i++) {
        if ((set->servers[i] = cur->servers[i]) != NULL)
            weir_tls_server_retain(set->servers[i]);
    }
    for (size_t i = 0; i < cur->nclients; i++) {
        if ((set->clients[i] = cur->clients[i]) != NULL)
            weir_tls_client_retain(set->clients[i]);
    }
    set->nservers = cur->nservers;
    set->nclients = cur->nclients;
    set->not_after = cur->not_after;
    return set;
}

int weir_control_apply_tls(struct weir_conf *conf, struct weir_tls_set *tls)
{
    struct weir_rt *cur = weir_rt_current();
    struct weir_rt *rt = weir_rt_build(conf, cur, C.nworkers);

    weir_rt_release(cur);
    if (rt == NULL) {
        weir_log_error("out of memory building a configuration snapshot; the running one stays");
        weir_conf_free(conf);
        weir_tls_set_free(tls);
        return WEIR_ERROR;
    }
    rt->tls = tls;
    for (size_t i = 0; tls != NULL && i < rt->npools && i < tls->nclients; i++)
        rt->pools[i].tls = tls->clients[i];
    weir_rt_publish(rt); /* takes our reference; rt stays valid: the current one */
    weir_health_sync(rt);
    weir_control_signal_workers(WEIR_WSIG_SNAPSHOT);
    return WEIR_OK;
}

int weir_control_apply(struct weir_conf *conf)
{
    struct weir_tls_set *tls = NULL;
    if (has_tls(conf)) {
        struct weir_rt *cur = weir_rt_current();
        tls = share_set(cur != NULL ? cur->tls : NULL, conf);
        weir_rt_release(cur);
        if (tls == NULL) {
            struct weir_conf_errors errs = {0};
            if (weir_control_tls_build(conf, &tls, &errs) != 0) {
                for (size_t i = 0; i < errs.n; i++)
                    weir_log_error("%s", errs.msgs[i]);
                weir_log_error("the TLS contexts cannot be built; the running configuration stays");
                weir_conf_errors_free(&errs);
                weir_conf_free(conf);
                return WEIR_ERROR;
            }
            weir_conf_errors_free(&errs);
        }
    }
    return weir_control_apply_tls(conf, tls);
}

const struct weir_tls_counters *weir_control_tls_counters(size_t listener)
{
    return listener < WEIR_CONTROL_MAX_LISTENS ? &C.counters[listener] : NULL;
}

void weir_control_shutdown(void)
{
    weir_tls_tickets_free(C.tickets);
    C.tickets = NULL;
}
