/*
 * pool_edit.c - snapshot edits made by the control plane's own modules
 * (see pool_edit.h).
 */
#include "config.h"

#include <string.h>

#include "weir/conf_edit.h"
#include "weir/control.h"
#include "weir/health.h"
#include "weir/core.h"
#include "weir/log.h"
#include "weir/pool_edit.h"
#include "weir/runtime.h"

/* Build and publish a snapshot from `copy` (consumed) through the control
 * plane's one apply path; releases cur. */
static int publish(struct weir_conf *copy, struct weir_rt *cur)
{
    weir_rt_release(cur);
    return weir_control_apply(copy) == WEIR_OK ? 0 : -1;
}

int weir_pool_edit_add(const char *pool, const char *const *addresses, size_t n, int weight)
{
    struct weir_rt *cur = weir_rt_current();
    struct weir_conf *copy = cur ? weir_conf_dup(cur->conf) : NULL;
    struct weir_conf_pool *cp = copy ? weir_conf_find_pool(copy, pool) : NULL;
    int added = 0;

    if (cp == NULL)
        goto err;
    for (size_t i = 0; i < n; i++) {
        const char *why = "invalid";
        int rc = weir_conf_pool_add_server(cp, addresses[i], weight, &why);
        if (rc == WEIR_OK)
            added++;
        else if (rc != WEIR_DECLINED) {
            weir_log_error("pool '%s': cannot add server %s: %s", pool, addresses[i], why);
            goto err;
        }
    }
    if (added == 0) {
        weir_conf_free(copy);
        weir_rt_release(cur);
        return 0;
    }
    return publish(copy, cur) == 0 ? added : -1;
err:
    weir_conf_free(copy);
    weir_rt_release(cur);
    return -1;
}

int weir_pool_edit_remove(const char *pool, const char *address)
{
    struct weir_rt *cur = weir_rt_current();
    struct weir_conf *copy = cur ? weir_conf_dup(cur->conf) : NULL;
    struct weir_conf_pool *cp = copy ? weir_conf_find_pool(copy, pool) : NULL;
    long i = cp ? weir_conf_find_server(cp, address, NULL) : -1;

    if (i < 0) {
        weir_conf_free(copy);
        weir_rt_release(cur);
        return -1;
    }
    weir_conf_pool_remove_server(cp, (size_t)i);
    return publish(copy, cur);
}

int weir_pool_edit_set_admin(struct weir_server *s, int state, const char *pool)
{
    return weir_health_set_admin(s, state, pool);
}
