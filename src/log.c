/* log.c - error log with levels, buffered per-worker access log. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "weir/log.h"

static int error_fd = 2;
static _Atomic int log_level = WEIR_LOG_INFO;
static int access_fd = -1; /* set once before workers start */
static _Atomic int access_on = 0;

static const char *level_names[] = {"debug", "info", "warn", "error"};

static int open_target(const char *spec)
{
    if (spec == NULL || strcmp(spec, "stderr") == 0)
        return 2;
    if (strcmp(spec, "stdout") == 0)
        return 1;
    if (strcmp(spec, "off") == 0)
        return -1;
    int fd = open(spec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        fprintf(stderr, "weir: cannot open log '%s': %s\n", spec, strerror(errno));
    return fd < 0 ? -2 : fd;
}

int weir_log_open(const struct weir_conf *c)
{
    int fd = open_target(c->log.error);
    if (fd == -2)
        return -1;
    error_fd = fd < 0 ? 2 : fd;
    weir_log_set_level(c->log.level);
    return 0;
}

void weir_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void weir_log(int level, const char *fmt, ...)
{
    if (level < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000),
                          level_names[level < 0   ? 0
                                      : level > 3 ? 3
                                                  : level]);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (k < 0)
        k = 0;
    n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    write_all(error_fd, line, n);
}

/*
 * The access log keeps one private descriptor number for the life of the
 * process; reopening (SIGHUP, log rotation) points that number at the new
 * file with dup2(), which is atomic for the workers writing to it, so no
 * worker can ever write to a closed or reused descriptor. "off" only flips
 * a flag.
 */
int weir_alog_open_target(const char *spec)
{
    int fd = open_target(spec);
    if (fd == -2)
        return -1;
    if (fd == -1) {
        atomic_store(&access_on, 0);
        return 0;
    }
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3); /* a fresh number we own, even for stdout/stderr */
    if (fd > 2)
        close(fd);
    if (nfd < 0)
        return -1;
    if (access_fd < 0) {
        access_fd = nfd; /* first open, before any worker runs */
    } else {
        if (dup3(nfd, access_fd, O_CLOEXEC) < 0) {
            close(nfd);
            return -1;
        }
        close(nfd);
    }
    atomic_store(&access_on, 1);
    return 0;
}

int weir_alog_fd(void)
{
    return atomic_load_explicit(&access_on, memory_order_relaxed) ? access_fd : -1;
}

void weir_alog_flush(struct weir_alog *a)
{
    int fd = weir_alog_fd();
    if (a->len > 0 && fd >= 0)
        write_all(fd, a->buf, a->len);
    a->len = 0;
}

void weir_alog_append(struct weir_alog *a, const char *line, size_t n)
{
    int fd = weir_alog_fd();
    if (fd < 0)
        return;
    if (a->len + n > sizeof(a->buf))
        weir_alog_flush(a);
    if (n > sizeof(a->buf)) {
        write_all(fd, line, n);
        return;
    }
    memcpy(a->buf + a->len, line, n);
    a->len += n;
}

size_t weir_json_escape(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (o + 2 > cap)
                break;
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Non-ASCII bytes are escaped too: the log stays valid JSON even
             * when a client sends invalid UTF-8 (obs-text). */
            if (o + 6 > cap)
                break;
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            if (o + 1 > cap)
                break;
            out[o++] = (char)c;
        }
    }
    return o;
}
