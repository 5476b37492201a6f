/*
 * log.h - the error log (levels) and the access log (one line per request).
 *
 * The error log never makes its caller wait for the disk or a pipe: a line
 * is formatted and appended to a shared buffer (under a short mutex), and
 * a writer thread writes the buffer out, one write(2) per batch, whole
 * lines only. Floods are folded: a message identical to one written less
 * than a second ago is counted instead ("... [repeated N more times in the
 * last second]" follows), and on worker threads each call site writes at
 * most 20 lines a second (a summary line counts the rest). If the buffer (1 MiB) is full, a
 * line is dropped and counted. Before the writer starts (weir -t, start-up
 * errors) and after it stops, lines are written at once. The access log is buffered per worker
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

/* Start / stop the error log's writer thread (weir_log_open starts it and
 * registers the stop with atexit). Stop writes out everything buffered and
 * every pending repeat summary, then joins. Main thread. Start returns 0 or
 * -1 (lines are then written directly). */
int weir_log_start_writer(void);
void weir_log_stop_writer(void);

/* Give the calling thread's call sites the per-second line budget (worker
 * threads: their warnings come per request). Calling thread only. */
void weir_log_thread_budget(int on);

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

#endif
