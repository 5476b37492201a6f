/* log.c - error log with levels (buffered, written by its own thread, repeats folded), buffered
 * per-worker access log. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/*
 * The error log writer (see log.h). Lines go into `buf` under `lock`; the
 * writer thread swaps it out and writes it with one write(2) per batch, so
 * no worker ever waits for the disk or a pipe. Before the thread starts
 * (start-up, weir -t) and after it stops, lines are written at once.
 *
 * Repeats are folded under the same lock: a message identical to one logged
 * less than a second ago is counted, not written, and one line
 * "... [repeated N more times in the last second]" follows when that second
 * is over; and each call site (format string) gets at most SITE_BUDGET lines
 * a second, the rest summed up the same way.
 */
#define LOG_BUF_CAP  (1u << 20)
#define WINDOW_MS    1000
#define DEDUP_SLOTS  256
#define SITE_SLOTS   128
#define SITE_BUDGET  20
#define SUMMARY_TEXT 160

struct dedup_slot {
    uint64_t hash; /* 0: free */
    long long start_ms;
    unsigned suppressed;
    int level;
    char text[SUMMARY_TEXT];
};

struct site_slot {
    const char *fmt; /* NULL: free */
    long long start_ms;
    unsigned count, suppressed;
    int level;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *buf, *spare; /* LOG_BUF_CAP each while the writer runs */
    size_t len;
    unsigned long dropped;
    int running, stop;
    pthread_t thread;
    struct dedup_slot dedup[DEDUP_SLOTS];
    struct site_slot site[SITE_SLOTS];
} LW = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Set on worker threads (weir_log_thread_budget): their call sites get the
 * per-second budget; the control thread's lines (health transitions,
 * admin changes) are each worth keeping and only get exact-repeat folding. */
static _Thread_local int thread_budgeted;

void weir_log_thread_budget(int on)
{
    thread_budgeted = on;
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

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *level_name(int level)
{
    return level_names[level < 0 ? 0 : level > 3 ? 3 : level];
}

/* "TIMESTAMP [level] " into line; returns its length. */
static size_t line_prefix(char *line, size_t cap, int level)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, cap - n, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000), level_name(level));
    return n;
}

/* Emit one whole line (lock held): into the buffer, or into *direct for the
 * caller to write after unlocking when the writer does not run. */
static void emit_locked(const char *line, size_t n, char *direct, size_t *dlen, size_t dcap)
{
    if (!LW.running) {
        if (*dlen + n <= dcap) {
            memcpy(direct + *dlen, line, n);
            *dlen += n;
        }
        return;
    }
    if (LW.len + n > LOG_BUF_CAP) {
        LW.dropped++;
        return;
    }
    int was_empty = LW.len == 0;
    memcpy(LW.buf + LW.len, line, n);
    LW.len += n;
    if (was_empty) /* the writer may be asleep; when it is busy it comes back anyway */
        pthread_cond_signal(&LW.cond);
}

static void emit_fmt_locked(int level, char *direct, size_t *dlen, size_t dcap, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void emit_fmt_locked(int level, char *direct, size_t *dlen, size_t dcap, const char *fmt, ...)
{
    char line[512];
    size_t n = line_prefix(line, sizeof(line), level);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    n += k < 0 ? 0 : (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    emit_locked(line, n, direct, dlen, dcap);
}

static void summarize_dedup(struct dedup_slot *d, char *direct, size_t *dlen, size_t dcap)
{
    if (d->suppressed > 0)
        emit_fmt_locked(d->level, direct, dlen, dcap, "%s [repeated %u more time%s in the last second]",
                        d->text, d->suppressed, d->suppressed == 1 ? "" : "s");
    d->suppressed = 0;
}

static void summarize_site(struct site_slot *st, char *direct, size_t *dlen, size_t dcap)
{
    if (st->suppressed > 0)
        emit_fmt_locked(
            st->level, direct, dlen, dcap,
            "%u more message%s like \"%.80s\" suppressed in the last second (at most %d a second)",
            st->suppressed, st->suppressed == 1 ? "" : "s", st->fmt, SITE_BUDGET);
    st->suppressed = 0;
}

/* Summaries of the windows that are over (lock held); every one when all.
 * Scans at most every 100 ms unless all. */
static void flush_windows_locked(long long now, int all, char *direct, size_t *dlen, size_t dcap)
{
    static long long last_scan;
    if (!all && now - last_scan < 100)
        return;
    last_scan = now;
    for (size_t i = 0; i < DEDUP_SLOTS; i++) {
        struct dedup_slot *d = &LW.dedup[i];
        if (d->hash != 0 && d->suppressed > 0 && (all || now - d->start_ms >= WINDOW_MS))
            summarize_dedup(d, direct, dlen, dcap);
    }
    for (size_t i = 0; i < SITE_SLOTS; i++) {
        struct site_slot *st = &LW.site[i];
        if (st->fmt != NULL && st->suppressed > 0 && (all || now - st->start_ms >= WINDOW_MS))
            summarize_site(st, direct, dlen, dcap);
    }
    if (LW.dropped > 0 && LW.running && LW.len + 256 <= LOG_BUF_CAP) {
        unsigned long n = LW.dropped;
        LW.dropped = 0;
        emit_fmt_locked(WEIR_LOG_ERROR, direct, dlen, dcap,
                        "%lu log line%s dropped: the error log could not keep up", n, n == 1 ? "" : "s");
    }
}

static uint64_t fnv64(const char *s, size_t n, int level)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)level;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ? h : 1;
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&LW.lock);
    for (;;) {
        if (LW.len == 0 && !LW.stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250 * 1000000L; /* summaries of ended windows go out within 250 ms */
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&LW.cond, &LW.lock, &ts);
        }
        size_t dummy = 0;
        flush_windows_locked(mono_ms(), LW.stop, NULL, &dummy, 0);
        if (LW.len > 0) {
            char *out = LW.buf;
            size_t n = LW.len;
            LW.buf = LW.spare;
            LW.spare = out;
            LW.len = 0;
            pthread_mutex_unlock(&LW.lock);
            write_all(error_fd, out, n); /* outside the lock: loggers go on meanwhile */
            pthread_mutex_lock(&LW.lock);
            continue;
        }
        if (LW.stop)
            break;
    }
    pthread_mutex_unlock(&LW.lock);
    return NULL;
}

int weir_log_start_writer(void)
{
    pthread_mutex_lock(&LW.lock);
    if (LW.running) {
        pthread_mutex_unlock(&LW.lock);
        return 0;
    }
    LW.buf = malloc(LOG_BUF_CAP);
    LW.spare = malloc(LOG_BUF_CAP);
    LW.len = 0;
    LW.stop = 0;
    if (LW.buf == NULL || LW.spare == NULL || pthread_create(&LW.thread, NULL, writer_main, NULL) != 0) {
        free(LW.buf);
        free(LW.spare);
        LW.buf = LW.spare = NULL;
        pthread_mutex_unlock(&LW.lock);
        return -1; /* lines keep being written directly */
    }
    LW.running = 1;
    pthread_mutex_unlock(&LW.lock);
    return 0;
}

void weir_log_stop_writer(void)
{
    char direct[4096];
    size_t dlen = 0;

    pthread_mutex_lock(&LW.lock);
    if (!LW.running) {
        flush_windows_locked(mono_ms(), 1, direct, &dlen, sizeof(direct));
        pthread_mutex_unlock(&LW.lock);
        write_all(error_fd, direct, dlen);
        return;
    }
    LW.stop = 1;
    pthread_cond_signal(&LW.cond);
    pthread_mutex_unlock(&LW.lock);
    pthread_join(LW.thread, NULL);
    pthread_mutex_lock(&LW.lock);
    LW.running = 0;
    free(LW.buf);
    free(LW.spare);
    LW.buf = LW.spare = NULL;
    pthread_mutex_unlock(&LW.lock);
}

static void stop_writer_at_exit(void)
{
    weir_log_stop_writer();
}

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
    static int registered;
    int fd = open_target(c->log.error);
    if (fd == -2)
        return -1;
    error_fd = fd < 0 ? 2 : fd;
    weir_log_set_level(c->log.level);
    if (!registered) {
        atexit(stop_writer_at_exit); /* every line is out before the process ends */
        registered = 1;
    }
    weir_log_start_writer();
    return 0;
}

void weir_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

void weir_log(int level, const char *fmt, ...)
{
    if (level < atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    char line[4096], direct[5120];
    size_t dlen = 0;
    size_t n = line_prefix(line, sizeof(line), level), m0 = n;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (k < 0)
        k = 0;
    n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    uint64_t h = fnv64(line + m0, n - m0, level);
    line[n++] = '\n';
    long long now = mono_ms();

    pthread_mutex_lock(&LW.lock);
    flush_windows_locked(now, 0, direct, &dlen, sizeof(direct) - sizeof(line));
    struct dedup_slot *d = &LW.dedup[h % DEDUP_SLOTS];
    if (d->hash == h && now - d->start_ms < WINDOW_MS) {
        d->suppressed++;
        goto out;
    }
    if (d->hash != 0)
        summarize_dedup(d, direct, &dlen, sizeof(direct) - sizeof(line));
    d->hash = h;
    d->start_ms = now;
    d->level = level;
    snprintf(d->text, sizeof(d->text), "%.*s", (int)(n - 1 - m0), line + m0);

    struct site_slot *st = &LW.site[((uintptr_t)fmt >> 3) % SITE_SLOTS];
    if (!thread_budgeted) {
        /* no budget on this thread */
    } else if (st->fmt == fmt && now - st->start_ms < WINDOW_MS) {
        if (st->count >= SITE_BUDGET) {
            st->suppressed++;
            goto out;
        }
        st->count++;
    } else {
        if (st->fmt != NULL)
            summarize_site(st, direct, &dlen, sizeof(direct) - sizeof(line));
        st->fmt = fmt;
        st->start_ms = now;
        st->count = 1;
        st->level = level;
    }
    emit_locked(line, n, direct, &dlen, sizeof(direct));
out:
    pthread_mutex_unlock(&LW.lock);
    if (dlen > 0)
        write_all(error_fd, direct, dlen);
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
