/* control.c - build, publish and re-sync a configuration snapshot (control.h). */
#include "config.h"

#include "weir/control.h"
#include "weir/core.h"
#include "weir/health.h"
#include "weir/log.h"
#include "weir/worker.h"

static struct {
    int nworkers;
    struct weir_worker *const *workers;
    int nnotify;
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

int weir_control_apply(struct weir_conf *conf)
{
    struct weir_rt *cur = weir_rt_current();
    struct weir_rt *rt = weir_rt_build(conf, cur, C.nworkers);

    weir_rt_release(cur);
    if (rt == NULL) {
        weir_log_error("out of memory building a configuration snapshot; the running one stays");
        weir_conf_free(conf);
        return WEIR_ERROR;
    }
    weir_rt_publish(rt); /* takes our reference; rt stays valid: the current one */
    weir_health_sync(rt);
    weir_control_signal_workers(WEIR_WSIG_SNAPSHOT);
    return WEIR_OK;
}
