/* server.c - backend server objects shared by snapshots and workers. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "weir/server.h"
#include "weir/stats.h"

static _Atomic unsigned next_server_id = 1;

struct weir_server *weir_server_new(const char *address, const struct sockaddr *sa, socklen_t salen,
                                    int weight)
{
    struct weir_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->address = strdup(address);
    if (s->address == NULL || salen > sizeof(s->addr)) {
        free(s->address);
        free(s);
        return NULL;
    }
    if (sa != NULL)
        memcpy(&s->addr, sa, salen);
    s->addrlen = salen;
    s->id = atomic_fetch_add(&next_server_id, 1);
    atomic_init(&s->weight, weight < 1 ? 1 : weight);
    atomic_init(&s->state, WEIR_SRV_UP);
    atomic_init(&s->ramp_permille, 1000);
    atomic_init(&s->active, 0);
    atomic_init(&s->refcnt, 1);
    atomic_init(&s->admin_state, 0); /* WEIR_ADMIN_READY */
    atomic_init(&s->health_state, WEIR_SRV_UP);
    atomic_init(&s->passive_fails, 0);
    atomic_init(&s->eject_until_ms, 0);
    atomic_init(&s->ejections, 0);
    atomic_init(&s->eject_level, 0);
    return s;
}

void weir_server_retain(struct weir_server *s)
{
    atomic_fetch_add_explicit(&s->refcnt, 1, memory_order_relaxed);
}

void weir_server_release(struct weir_server *s)
{
    if (s == NULL)
        return;
    if (atomic_fetch_sub_explicit(&s->refcnt, 1, memory_order_acq_rel) != 1)
        return;
    /* Idle connections hold references, so their lists are empty here; the
     * health slot is freed by its module before the last release (it holds
     * no reference); the stats slot holds a registry reference (stats.h),
     * dropped here. */
    for (int i = 0; i < WEIR_MAX_WORKERS; i++)
        free(s->idle[i]);
    weir_stats_put(s->stats); /* its statistics go with it (stats.h) */
    free(s->address);
    free(s);
}

const char *weir_server_state_name(int state)
{
    switch (state) {
    case WEIR_SRV_UP:
        return "up";
    case WEIR_SRV_DOWN:
        return "down";
    case WEIR_SRV_EJECTED:
        return "ejected";
    case WEIR_SRV_DRAINING:
        return "draining";
    case WEIR_SRV_MAINT:
        return "maint";
    }
    return "unknown";
}
