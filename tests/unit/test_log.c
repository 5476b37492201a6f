/*
 * test_log.c - the error log (log.c): repeats folded into one line with a
 * count, a per-call-site budget, and a caller that never waits for the
 * log's descriptor (a full pipe does not block it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir/conf.h"
#include "weir/log.h"

static char path[64];

static void open_log(const char *p)
{
    static struct weir_conf c;
    memset(&c, 0, sizeof(c));
    c.log.error = (char *)p;
    c.log.level = WEIR_LOG_INFO;
    assert_int_equal(weir_log_open(&c), 0);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/weir-test-log-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    weir_log_stop_writer();
    unlink(path);
    return 0;
}

static void test_repeats_folded(void **state)
{
    (void)state;
    open_log(path);
    for (int i = 0; i < 1000; i++)
        weir_log_warn("pool %s server %s: connect refused", "api", "127.0.0.1:9");
    weir_log_stop_writer(); /* writes the pending summary */
    char *t = slurp(path);
    assert_int_equal(count(t, "\n"), 2);
    assert_int_equal(count(t, "[warn] pool api server 127.0.0.1:9: connect refused\n"), 1);
    assert_int_equal(count(t,
                           "[warn] pool api server 127.0.0.1:9: connect refused [repeated 999 more times in "
                           "the last second]\n"),
                     1);
    free(t);
}

static void test_site_budget(void **state)
{
    (void)state;
    open_log(path);
    weir_log_thread_budget(1); /* as on a worker */
    for (int i = 0; i < 100; i++)
        weir_log_warn("client %d: bad request", i);
    weir_log_thread_budget(0);
    for (int i = 0; i < 30; i++) /* the control thread's lines are all kept */
        weir_log_warn("server %d: DOWN", i);
    weir_log_stop_writer();
    char *t = slurp(path);
    assert_int_equal(count(t, ": bad request\n"), 20);
    assert_int_equal(count(t, "client 19: bad request\n"), 1);
    assert_int_equal(count(t, "client 20: bad request\n"), 0);
    assert_int_equal(
        count(t, "80 more messages like \"client %d: bad request\" suppressed in the last second"), 1);
    free(t);
}

/* Once the window is over, the message is written again (with the count). */
static void test_window_ends(void **state)
{
    (void)state;
    open_log(path);
    weir_log_error("disk %s full", "a");
    weir_log_error("disk %s full", "a");
    struct timespec ts = {1, 300 * 1000000L};
    nanosleep(&ts, NULL);
    weir_log_error("disk %s full", "a");
    weir_log_stop_writer();
    char *t = slurp(path);
    assert_int_equal(count(t, "[error] disk a full\n"), 2);
    assert_int_equal(count(t, "disk a full [repeated 1 more time in the last second]\n"), 1);
    free(t);
}

/* The error log is a pipe nobody reads: logging returns at once all the
 * same (the old synchronous write(2) blocked the caller for good). */
static void test_full_pipe_does_not_block(void **state)
{
    char fifo[80];
    (void)state;
    snprintf(fifo, sizeof(fifo), "%s.fifo", path);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    assert_true(rd >= 0);
    int wr = open(fifo, O_WRONLY | O_NONBLOCK);
    assert_true(wr >= 0);
    char junk[4096];
    memset(junk, 'j', sizeof(junk));
    while (write(wr, junk, sizeof(junk)) > 0) /* fill the pipe */
        ;
    assert_int_equal(errno, EAGAIN);
    open_log(fifo);
    alarm(10); /* a blocked logger fails the test instead of hanging it */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    weir_log_thread_budget(1);
    for (int i = 0; i < 200; i++)
        weir_log_error("upstream %d: reset", i);
    weir_log_thread_budget(0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 1.0);
    /* the reader catches up: everything logged comes out */
    size_t got = 0;
    char *all = calloc(1, 1 << 20);
    assert_non_null(all);
    for (int spins = 0; spins < 2000; spins++) {
        ssize_t n = read(rd, all + got, (1 << 20) - 1 - got);
        if (n > 0)
            got += (size_t)n;
        all[got] = '\0';
        if (strstr(all, "upstream 19: reset\n") != NULL)
            break;
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
    }
    assert_non_null(strstr(all, "upstream 0: reset\n"));
    assert_non_null(strstr(all, "upstream 19: reset\n"));
    weir_log_stop_writer();
    alarm(0);
    free(all);
    close(wr);
    close(rd);
    unlink(fifo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repeats_folded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_site_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pipe_does_not_block, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
