/* stats.c - TEMPORARY placeholder while the stats module is written. */
#include "config.h"

#include <stddef.h>

#include "weir/stats.h"

struct weir_stats *weir_stats_get(int kind, const char *key)
{
    return NULL;
}
struct weir_stats *weir_stats_global(void)
{
    return NULL;
}
int weir_stats_init(int nworkers)
{
    return 0;
}
void weir_stats_shutdown(void)
{
}
void weir_stats_record(struct weir_stats *st, int worker, const struct weir_stats_sample *s)
{
}
void weir_stats_upstream_error(struct weir_stats *st, int worker, int kind)
{
}
void weir_stats_gauge_add(int worker, int gauge, long delta)
{
}
