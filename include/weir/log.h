/*
 * log.h - the error log (levels) and the access log (one line per request).
 *
 * The error log writes each line with a single write(2), so lines from
 * different threads never interleave. The access log is buffered per worker
 * (struct weir_alog, owned by the worker) and flushed when the buffer fills,
 * on a 100 ms timer and at shutdown: one syscall per many requests.
 */
#ifndef WEIR_LOG_H
#define WEIR_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "weir/conf.h"

/* Open the error log named in `c` ("stderr" or a path) and set the level.
 * Main thread, before workers start. Returns 0 or -1 (message printed). */
int weir_log_open(const struct weir_conf *c);
void weir_log_set_level(int level);

/* Log one line at `level` (enum weir_log_level). Any thread. */
void weir_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define weir_log_debug(...) weir_log(WEIR_LOG_DEBUG, __VA_ARGS__)
#define weir_log_info(...)  weir_log(WEIR_LOG_INFO, __VA_ARGS__)
#define weir_log_warn(...)  weir_log(WEIR_LOG_WARN, __VA_ARGS__)
#define weir_log_error(...) weir_log(WEIR_LOG_ERROR, __VA_ARGS__)

/* Access log target shared by all workers: opened from the config's
 * log.access ("stderr", "stdout", "off" or a path). Main thread. */
int weir_alog_open_target(const char *spec);
/* fd of the access log target, -1 when off. */
int weir_alog_fd(void);

/* A worker's access log buffer. */
struct weir_alog {
    char buf[32768];
    size_t len;
};

/* Append one formatted line (without newline handling: caller writes whole
 * lines) and flush when nearly full. Worker thread owning `a`. */
void weir_alog_append(struct weir_alog *a, const char *line, size_t n);
void weir_alog_flush(struct weir_alog *a);

/* Escape s[0..n) for a JSON string into out (size cap); returns bytes
 * written (without NUL); truncates safely. */
size_t weir_json_escape(char *out, size_t cap, const char *s, size_t n);

#endif
