/*
 * main.c - command line, start-up, signals (stop, drain, reload).
 *
 * The main thread is weir's control thread: it owns the configuration
 * lifecycle and its own event_base; workers run their own loops.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "weir/admin.h"
#include "weir/autoscaler.h"
#include "weir/conf.h"
#include "weir/control.h"
#include "weir/dns.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/runtime.h"
#include "weir/stats.h"
#include "weir/tls.h"
#include "weir/worker.h"
#include "weir/cache.h"

struct weir_main {
    const char *conf_path;
    struct event_base *base;
    struct weir_worker *workers[WEIR_MAX_WORKERS];
    int nworkers;
    struct event *worker_done;
    int worker_done_fd; /* eventfd: workers write to it when their loop ends */
    _Atomic int exited;
    struct event *drain_timer;
    int stopping;
};

static struct weir_main M;

static void usage(FILE *f)
{
    fprintf(f, "usage: weir -c FILE      run with configuration FILE\n"
               "       weir -t -c FILE   check FILE and exit (0 valid, 1 invalid)\n"
               "       weir -v           print the version\n"
               "       weir -h           this help\n"
               "signals: TERM/INT stop gracefully, HUP reloads the configuration\n");
}

static void print_errors(FILE *f, const struct weir_conf_errors *errs, const char *prefix)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(f, "%s%s\n", prefix, errs->msgs[i]);
}

static void worker_exit_hook(struct weir_worker *w)
{
    uint64_t one = 1;
    atomic_fetch_add(&M.exited, 1);
    if (write(M.worker_done_fd, &one, sizeof(one)) < 0)
        weir_log_error("worker %d: cannot notify the main thread: %s", w->id, strerror(errno));
}

static void worker_done_cb(evutil_socket_t fd, short what, void *arg)
{
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        weir_log_warn("reading the workers' notification: %s", strerror(errno));
    if (atomic_load(&M.exited) >= M.nworkers)
        event_base_loopexit(M.base, NULL);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    weir_log_warn("drain timeout passed: closing the remaining connections");
    weir_control_signal_workers(WEIR_WSIG_STOP);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    if (M.stopping) {
        weir_log_warn("second signal %d: stopping now", (int)sig);
        drain_timeout_cb(-1, 0, NULL);
        return;
    }
    M.stopping = 1;
    struct weir_rt *rt = weir_rt_current();
    int drain_ms = rt->conf->timeouts.drain_ms;
    weir_rt_release(rt);
    weir_log_info("signal %d: stop accepting, finishing requests in flight (up to %d ms)", (int)sig,
                  drain_ms);
    weir_control_signal_workers(WEIR_WSIG_DRAIN);
    struct timeval tv = {drain_ms / 1000, (drain_ms % 1000) * 1000};
    M.drain_timer = evtimer_new(M.base, drain_timeout_cb, NULL);
    evtimer_add(M.drain_timer, &tv);
}

static int same_listens(const struct weir_conf *a, const struct weir_conf *b)
{
    if (a->nlistens != b->nlistens)
        return 0;
    for (size_t i = 0; i < a->nlistens; i++)
        if (strcmp(a->listens[i].addr.text, b->listens[i].addr.text) != 0)
            return 0;
    return 1;
}

/*
 * Reload the configuration from M.conf_path (SIGHUP, admin POST /reload).
 * Every TLS certificate and key is read before anything changes.
 * Returns 0, or -1 with the "FILE:LINE: message" errors in errs (none when
 * weir is stopping or out of memory). The running configuration stays on
 * failure. Control thread.
 */
static int reload_conf(void *arg, struct weir_conf_errors *errs)
{
    if (M.stopping)
        return -1;
    struct weir_conf *conf = weir_conf_load(M.conf_path, errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs->n; i++)
            weir_log_error("reload refused: %s", errs->msgs[i]);
        weir_log_error("reload refused: %zu error(s), the running configuration stays", errs->n);
        return -1;
    }
    struct weir_tls_set *tls = NULL;
    if (weir_control_tls_build(conf, &tls, errs) != 0) {
        for (size_t i = 0; i < errs->n; i++)
            weir_log_error("%s", errs->msgs[i]);
        weir_log_error("reload refused: the running configuration stays");
        weir_conf_free(conf);
        return -1;
    }
    struct weir_conf_errors warns = {0};
    weir_conf_tls_warnings(conf, time(NULL), WEIR_TLS_EXPIRY_WARN_DAYS, &warns);
    for (size_t i = 0; i < warns.n; i++)
        weir_log_warn("%s", warns.msgs[i]);
    weir_conf_errors_free(&warns);
    weir_dns_expand(conf); /* servers discovered so far stay across the reload */
    struct weir_rt *old = weir_rt_current();
    if (!same_listens(old->conf, conf))
        weir_log_warn("reload: listen addresses changed; they take effect at the next restart");
    if (conf->workers != M.nworkers)
        weir_log_warn("reload: workers changed; it takes effect at the next restart");
    if (conf->admin.enabled != old->conf->admin.enabled ||
        (conf->admin.enabled && strcmp(conf->admin.addr.text, old->conf->admin.addr.text) != 0))
        weir_log_warn("reload: the admin address changed; it takes effect at the next restart");
    weir_rt_release(old);
    if (weir_control_apply_tls(conf, tls) != WEIR_OK) {
        weir_log_error("reload refused: out of memory");
        return -1;
    }
    /* conf now belongs to the current snapshot, which only this thread replaces. */
    weir_log_set_level(conf->log.level);
    if (weir_alog_open_target(conf->log.access) != 0)
        weir_log_error("reload: cannot open the access log; keeping the previous one");
    weir_stats_set_enabled(conf->stats.enabled);
    weir_cache_reload(conf, M.workers, M.nworkers); /* new Redis settings: every L2 connection reconnects */
    weir_admin_reloaded();                          /* runtime API changes end here */
    weir_log_info("configuration reloaded from %s (%zu pools, %zu routes)", M.conf_path, conf->npools,
                  conf->nroutes);
    return 0;
}

static void reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct weir_conf_errors errs = {0};
    reload_conf(NULL, &errs);
    weir_conf_errors_free(&errs);
}

int main(int argc, char **argv)
{
    int check_only = 0, opt;
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            M.conf_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'v':
            printf("weir %s (libevent %s)\n", PACKAGE_VERSION, event_get_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (M.conf_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    struct weir_conf_errors errs = {0};
    struct weir_conf *conf = weir_conf_load(M.conf_path, &errs);
    if (conf == NULL) {
        print_errors(stderr, &errs, "");
        fprintf(stderr, "weir: %s: %zu error(s), not started\n", M.conf_path, errs.n);
        weir_conf_errors_free(&errs);
        return 1;
    }
    if (check_only) {
        /* Build the TLS contexts too: OpenSSL may still refuse what the
         * loader accepted (a key below the security level, for one). */
        struct weir_conf_errors warns = {0};
        struct weir_tls_tickets *tk = weir_tls_tickets_new(WEIR_TLS_TICKET_ROTATE_S);
        struct weir_tls_set *set = tk != NULL ? weir_tls_set_new(conf, tk, NULL, &errs) : NULL;
        int bad = set == NULL;

        weir_tls_set_free(set);
        weir_tls_tickets_free(tk);
        if (bad) {
            print_errors(stderr, &errs, "");
            fprintf(stderr, "weir: %s: %zu error(s)\n", M.conf_path, errs.n);
            weir_conf_errors_free(&errs);
            weir_conf_free(conf);
            return 1;
        }
        weir_conf_tls_warnings(conf, time(NULL), WEIR_TLS_EXPIRY_WARN_DAYS, &warns);
        print_errors(stderr, &warns, "");
        weir_conf_errors_free(&warns);
        printf("weir: configuration %s is valid\n", M.conf_path);
        weir_conf_free(conf);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    /* No evthread locking: every event_base is used by one thread only;
     * threads signal each other through eventfds. */
    if (weir_log_open(conf) != 0 || weir_alog_open_target(conf->log.access) != 0) {
        weir_conf_free(conf);
        return 1;
    }
    struct weir_conf_errors warns = {0};
    weir_conf_tls_warnings(conf, time(NULL), WEIR_TLS_EXPIRY_WARN_DAYS, &warns);
    for (size_t i = 0; i < warns.n; i++)
        weir_log_warn("%s", warns.msgs[i]);
    weir_conf_errors_free(&warns);
    M.nworkers = conf->workers;
    if (weir_stats_init(M.nworkers) != 0) {
        weir_conf_free(conf);
        return 1;
    }
    weir_stats_set_enabled(conf->stats.enabled);
    if (weir_cache_init(conf) != 0) {
        weir_log_error("cannot start the response cache: out of memory");
        return 1;
    }

    M.base = event_base_new();
    if (M.base == NULL || weir_health_start(M.base) != 0) {
        weir_log_error("cannot start the control thread's event loop");
        return 1;
    }
    weir_control_init(M.nworkers);
    struct weir_tls_set *tls = NULL;
    if (weir_control_tls_build(conf, &tls, &errs) != 0) {
        for (size_t i = 0; i < errs.n; i++)
            weir_log_error("%s", errs.msgs[i]);
        weir_log_error("%s: %zu error(s), not started", M.conf_path, errs.n);
        weir_conf_errors_free(&errs);
        weir_conf_free(conf);
        return 1;
    }
    if (weir_control_apply_tls(conf, tls) != WEIR_OK)
        return 1;
    /* conf now belongs to the current snapshot, alive until the next change. */
    if (weir_dns_start(M.base) != 0 || weir_autoscaler_start(M.base) != 0)
        return 1;
    M.worker_done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (M.worker_done_fd < 0) {
        weir_log_error("eventfd: %s", strerror(errno));
        return 1;
    }
    M.worker_done = event_new(M.base, M.worker_done_fd, EV_READ | EV_PERSIST, worker_done_cb, NULL);
    event_add(M.worker_done, NULL);
    int rc = 1, started = 0;
    for (int i = 0; i < M.nworkers; i++) {
        M.workers[i] = weir_worker_new(i, conf);
        if (M.workers[i] == NULL) {
            M.nworkers = i;
            goto out;
        }
        M.workers[i]->on_exit = worker_exit_hook;
    }
    weir_control_set_workers(M.workers, M.nworkers);
    struct event *sigs[3] = {evsignal_new(M.base, SIGTERM, stop_cb, NULL),
                             evsignal_new(M.base, SIGINT, stop_cb, NULL),
                             evsignal_new(M.base, SIGHUP, reload_cb, NULL)};
    for (int i = 0; i < 3; i++)
        event_add(sigs[i], NULL);
    for (int i = 0; i < M.nworkers; i++) {
        if (weir_worker_start(M.workers[i]) != 0) {
            weir_log_error("cannot start worker %d", i);
            /* Workers already running must be stopped before exit. */
            for (int j = 0; j < started; j++)
                weir_worker_signal(M.workers[j], WEIR_WSIG_STOP);
            M.nworkers = started;
            weir_control_set_workers(M.workers, started);
            if (started > 0)
                event_base_dispatch(M.base);
            goto out_sigs;
        }
        started++;
    }
    if (conf->admin.enabled) {
        struct weir_admin_opts ao = {
            .conf = conf, .nworkers = M.nworkers, .reload = reload_conf, .reload_arg = NULL};
        if (weir_admin_start(M.base, &ao) != 0) {
            weir_control_signal_workers(WEIR_WSIG_STOP);
            event_base_dispatch(M.base);
            goto out_sigs;
        }
    }
    char addrs[512] = "";
    for (size_t i = 0; i < conf->nlistens; i++) {
        size_t n = strlen(addrs);
        snprintf(addrs + n, sizeof(addrs) - n, "%s%s", i ? ", " : "", conf->listens[i].addr.text);
    }
    weir_log_info("weir %s started: %d worker(s), listening on %s", PACKAGE_VERSION, M.nworkers, addrs);

    event_base_dispatch(M.base);
    weir_log_info("weir stopped");
    rc = 0;
out_sigs:
    weir_admin_stop();
    for (int i = 0; i < 3; i++)
        event_free(sigs[i]);
out:
    weir_control_set_workers(NULL, 0);
    for (int i = 0; i < WEIR_MAX_WORKERS && M.workers[i] != NULL; i++) {
        if (i < started)
            pthread_join(M.workers[i]->thread, NULL);
        weir_worker_free(M.workers[i]);
    }
    if (M.drain_timer != NULL)
        event_free(M.drain_timer);
    event_free(M.worker_done);
    close(M.worker_done_fd);
    weir_autoscaler_stop(); /* its events live on M.base; kills running hooks */
    weir_dns_stop();
    weir_health_stop(); /* its events live on M.base */
    event_base_free(M.base);
    weir_rt_publish(NULL); /* drop the last snapshot */
    weir_cache_shutdown();
    weir_control_shutdown();
    weir_stats_shutdown();
    libevent_global_shutdown();
    return rc;
}
