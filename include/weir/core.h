/*
 * core.h - status vocabulary and small helpers shared by every module.
 *
 * One status vocabulary everywhere (nginx style): functions return WEIR_OK on
 * success, WEIR_AGAIN when more input is needed, WEIR_ERROR on failure and
 * WEIR_DECLINED when they chose not to act.
 */
#ifndef WEIR_CORE_H
#define WEIR_CORE_H

#include <stddef.h>
#include <stdint.h>

#define WEIR_OK       0
#define WEIR_ERROR    (-1)
#define WEIR_AGAIN    (-2)
#define WEIR_DECLINED (-3)
#define WEIR_DONE     (-4) /* a step finished what it had to do (session stages) */

/* Upper bound on worker threads; per-worker arrays are sized by it. */
#define WEIR_MAX_WORKERS 64

#define WEIR_VERSION_STRING PACKAGE_VERSION

#define WEIR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ASCII lower-case of one byte (locale independent). */
static inline unsigned char weir_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

/* Case-insensitive compare of a span against a NUL-terminated lower-case
 * literal. Returns 1 when equal. */
static inline int weir_span_ieq(const char *p, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (lit[i] == '\0' || weir_lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    }
    return lit[n] == '\0';
}

/* Monotonic clock in microseconds. Any thread. */
uint64_t weir_now_us(void);

#endif
