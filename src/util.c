/* util.c - small helpers shared by every module. */
#include "config.h"

#include <time.h>

#include "weir/core.h"

uint64_t weir_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
