/* health.c - TEMPORARY placeholder while the health module is written. */
#include "config.h"

#include "weir/health.h"

int weir_health_start(struct event_base *control_base)
{
    return 0;
}
void weir_health_sync(const struct weir_rt *rt)
{
}
void weir_health_stop(void)
{
}
void weir_health_report(const struct weir_pool *pool, struct weir_server *s, int outcome)
{
}
int weir_health_pool_all_down(const struct weir_pool *pool)
{
    return 0;
}
int weir_health_set_admin(struct weir_server *s, int admin_state, const char *pool_name)
{
    return 0;
}
int weir_health_view(const struct weir_server *s, struct weir_health_view *out)
{
    return -1;
}
