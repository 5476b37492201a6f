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

/* Listener indexes with TLS counters (more listen addresses than this
 * cannot have TLS). */
#define WEIR_CONTROL_MAX_LISTENS 64

struct weir_tls_set;
struct weir_tls_counters;

/*
 * Build the TLS contexts of conf (certificates and keys read now) with the
 * process's ticket keys and counters. *out = NULL and 0 when nothing in
 * conf is TLS. Returns 0, or -1 with "FILE:LINE: message" errors in errs.
 * Control thread.
 */
int weir_control_tls_build(const struct weir_conf *conf, struct weir_tls_set **out,
                           struct weir_conf_errors *errs);

/*
 * weir_control_apply with the TLS contexts built beforehand (start-up and
 * reload from file, which refuse a bad certificate before anything changes).
 * Both are consumed. weir_control_apply itself (runtime API changes) shares
 * the current snapshot's contexts when its listeners and pools are the
 * same ones, else builds them (a failure keeps the running snapshot).
 */
int weir_control_apply_tls(struct weir_conf *conf, struct weir_tls_set *tls);

/* The TLS counters of listener index i (process lifetime), NULL past the
 * limit. Any thread (atomics). */
const struct weir_tls_counters *weir_control_tls_counters(size_t i);

/* Free the ticket keys (after the last snapshot is gone). */
void weir_control_shutdown(void);

/* Post signals (enum weir_wsig) to every worker. Control thread. */
void weir_control_signal_workers(unsigned sigs);

#endif
