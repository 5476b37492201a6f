/*
 * control.h - the control plane's one way to change the running
 * configuration: build a snapshot, publish it, re-sync what depends on it.
 *
 * Every change of the running configuration goes through
 * weir_control_apply: start-up, reload from file (SIGHUP, POST /reload), the
 * runtime API (add/patch/remove a server) and, later, autoscaling and DNS
 * discovery. It builds the new snapshot with the current one as `prev` (so
 * servers that stay are the same objects: health, counters, idle
 * connections and requests in flight are untouched), publishes it, hands it
 * to the health checker, and tells every worker through its message queue so
 * each picks it up at once (and lets go of the old one) instead of on its
 * next request or tick.
 *
 * Thread: the control thread only (the one running the control event_base:
 * signals, admin endpoint, health checks), so two changes never race and the
 * "copy the current conf, edit the copy, apply" sequence is atomic.
 */
#ifndef WEIR_CONTROL_H
#define WEIR_CONTROL_H

#include "weir/conf.h"
#include "weir/runtime.h"

struct weir_worker;

/*
 * Set the worker count snapshots are built for (before the first apply) and,
 * once the workers exist, the workers to notify (NULL/0 before that).
 * Control thread.
 */
void weir_control_init(int nworkers);
void weir_control_set_workers(struct weir_worker *const *workers, int n);

/*
 * Build a snapshot from `conf`, publish it and re-sync the health checks and
 * the workers. `conf` is consumed in every case: owned by the new snapshot
 * on success, freed on failure.
 * Returns WEIR_OK, or WEIR_ERROR when out of memory (logged; the running
 * snapshot stays current and unchanged).
 * Control thread.
 */
int weir_control_apply(struct weir_conf *conf);

/* Post signals (enum weir_wsig) to every worker. Control thread. */
void weir_control_signal_workers(unsigned sigs);

#endif
