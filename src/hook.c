/*
 * hook.c - posix_spawn runner for operator hooks (see hook.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weir/core.h"
#include "weir/hook.h"
#include "weir/log.h"

extern char **environ;

#define KILL_GRACE_MS 2000

struct hook {
    pid_t pid;
    int out_fd; /* read end of stdout+stderr, -1 once closed */
    struct event *out_ev;
    struct event *timer;
    uint64_t start_us;
    int timeout_ms;
    weir_hook_done_fn done;
    void *arg;
    struct weir_hook_result res;
    LIST_ENTRY(hook) link;
};

static struct {
    struct event_base *base;
    struct event *sigchld;
    LIST_HEAD(, hook) running;
    int n;
} H;

static void keep_output(struct hook *h, const char *p, size_t n)
{
    struct weir_hook_result *r = &h->res;

    r->output_total += n;
    if (n >= WEIR_HOOK_OUTPUT_MAX) {
        memcpy(r->output, p + n - WEIR_HOOK_OUTPUT_MAX, WEIR_HOOK_OUTPUT_MAX);
        r->output_len = WEIR_HOOK_OUTPUT_MAX;
    } else {
        if (r->output_len + n > WEIR_HOOK_OUTPUT_MAX) {
            size_t drop = r->output_len + n - WEIR_HOOK_OUTPUT_MAX;
            memmove(r->output, r->output + drop, r->output_len - drop);
            r->output_len -= drop;
        }
        memcpy(r->output + r->output_len, p, n);
        r->output_len += n;
    }
    r->output[r->output_len] = '\0';
}

static void close_output(struct hook *h)
{
    if (h->out_ev != NULL) {
        event_free(h->out_ev);
        h->out_ev = NULL;
    }
    if (h->out_fd >= 0) {
        close(h->out_fd);
        h->out_fd = -1;
    }
}

/* Read what is there; 1 at EOF (or error), 0 when it would block. */
static int drain_output(struct hook *h)
{
    char buf[4096];

    for (int i = 0; i < 64; i++) {
        ssize_t n = read(h->out_fd, buf, sizeof(buf));
        if (n > 0) {
            keep_output(h, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return 1;
    }
    return 0;
}

static void output_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hook *h = arg;

    if (drain_output(h))
        close_output(h); /* EOF: the child (and its children) closed it */
}

static void hook_free(struct hook *h)
{
    close_output(h);
    if (h->timer != NULL)
        event_free(h->timer);
    free(h);
}

/* At the timeout the hook's process group gets SIGTERM (a script can clean
 * up), and SIGKILL KILL_GRACE_MS later if anything of it is still there. */
static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hook *h = arg;

    if (!h->res.timed_out) {
        struct timeval tv = {KILL_GRACE_MS / 1000, (KILL_GRACE_MS % 1000) * 1000};
        h->res.timed_out = 1;
        weir_log_warn("hook pid %d still running after %d ms: terminating its process group", (int)h->pid,
                      h->timeout_ms);
        if (kill(-h->pid, SIGTERM) != 0)
            kill(h->pid, SIGTERM);
        evtimer_add(h->timer, &tv);
        return;
    }
    weir_log_warn("hook pid %d: process group still there %d ms after SIGTERM: killing it", (int)h->pid,
                  KILL_GRACE_MS);
    if (kill(-h->pid, SIGKILL) != 0)
        kill(h->pid, SIGKILL);
}

static void finish(struct hook *h, int have_status, int status)
{
    struct weir_hook_result *r = &h->res;

    LIST_REMOVE(h, link);
    H.n--;
    /* What the hook wrote before exiting is in the pipe; anything its
     * background children write later is not its output. */
    if (h->out_fd >= 0)
        drain_output(h);
    close_output(h);
    r->duration_ms = (double)(weir_now_us() - h->start_us) / 1000.0;
    if (r->timed_out) /* what is left of its process group goes with it */
        kill(-h->pid, SIGKILL);
    if (!have_status) {
        /* reaped by someone else: the outcome is unknown, not a success */
        r->signaled = 1;
    } else if (WIFEXITED(status)) {
        r->exited = 1;
        r->exit_status = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->signaled = 1;
        r->term_signal = WTERMSIG(status);
    }
    if (h->done != NULL)
        h->done(h->arg, r);
    hook_free(h);
}

static void reap(void)
{
    struct hook *h, *next;

    for (h = LIST_FIRST(&H.running); h != NULL; h = next) {
        int status;
        next = LIST_NEXT(h, link);
        pid_t p = waitpid(h->pid, &status, WNOHANG);
        if (p == h->pid)
            finish(h, 1, status);
        else if (p < 0 && errno == ECHILD)
            finish(h, 0, 0);
    }
}

static void sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    reap();
}

int weir_hook_init(struct event_base *base)
{
    if (H.base != NULL)
        return 0;
    LIST_INIT(&H.running);
    H.sigchld = evsignal_new(base, SIGCHLD, sigchld_cb, NULL);
    if (H.sigchld == NULL || event_add(H.sigchld, NULL) != 0) {
        if (H.sigchld != NULL)
            event_free(H.sigchld);
        H.sigchld = NULL;
        return -1;
    }
    H.base = base;
    return 0;
}

void weir_hook_shutdown(void)
{
    struct hook *h;

    if (H.base == NULL)
        return;
    while ((h = LIST_FIRST(&H.running)) != NULL) {
        int status;
        LIST_REMOVE(h, link);
        if (kill(-h->pid, SIGKILL) != 0)
            kill(h->pid, SIGKILL);
        while (waitpid(h->pid, &status, 0) < 0 && errno == EINTR)
            ;
        H.n--;
        h->res.cancelled = 1;
        h->res.signaled = 1;
        h->res.term_signal = SIGKILL;
        if (h->done != NULL)
            h->done(h->arg, &h->res);
        hook_free(h);
    }
    event_free(H.sigchld);
    memset(&H, 0, sizeof(H));
}

int weir_hook_running(void)
{
    return H.n;
}

/* weir's environment minus the names set in env, plus env. */
static char **build_env(char *const env[])
{
    size_t n = 0, m = 0, k = 0;

    while (environ != NULL && environ[n] != NULL)
        n++;
    while (env != NULL && env[m] != NULL)
        m++;
    char **out = calloc(n + m + 1, sizeof(*out));
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < m && !replaced; j++)
            replaced = strncmp(env[j], environ[i], len) == 0 && env[j][len] == '=';
        if (!replaced)
            out[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        out[k++] = env[j];
    out[k] = NULL;
    return out;
}

int weir_hook_run(const char *path, char *const env[], const char *input, size_t input_len, int timeout_ms,
                  weir_hook_done_fn done, void *arg, pid_t *pid_out)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, rc, e;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, defs;
    char *argv[] = {(char *)path, NULL};
    char **envp = NULL;
    struct hook *h = NULL;

    if (H.base == NULL) {
        errno = EINVAL;
        return -1;
    }
    h = calloc(1, sizeof(*h));
    envp = build_env(env);
    if (h == NULL || envp == NULL) {
        free(h);
        free(envp);
        errno = ENOMEM;
        return -1;
    }
    h->out_fd = -1;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        e = errno;
        goto fail_fds;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, out[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigemptyset(&defs);
    int sigs[] = {SIGPIPE, SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < WEIR_ARRAY_LEN(sigs); i++)
        sigaddset(&defs, sigs[i]);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &defs);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    h->start_us = weir_now_us();
    rc = posix_spawn(&h->pid, path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    envp = NULL;
    if (rc != 0) {
        e = rc;
        goto fail_fds;
    }
    close(in[0]);
    close(out[1]);
    /* The document is small (a few KiB): it fits the pipe; a hook that
     * does not read it loses nothing it wanted. */
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    if (input != NULL && input_len > 0 && write(in[1], input, input_len) < 0 && errno != EAGAIN)
        weir_log_debug("hook %s: writing its stdin: %s", path, strerror(errno));
    close(in[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    h->out_fd = out[0];
    h->res.pid = h->pid;
    h->timeout_ms = timeout_ms;
    h->done = done;
    h->arg = arg;
    h->out_ev = event_new(H.base, h->out_fd, EV_READ | EV_PERSIST, output_cb, h);
    h->timer = evtimer_new(H.base, timeout_cb, h);
    if (h->out_ev != NULL)
        event_add(h->out_ev, NULL);
    if (h->timer != NULL) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(h->timer, &tv);
    }
    LIST_INSERT_HEAD(&H.running, h, link);
    H.n++;
    if (pid_out != NULL)
        *pid_out = h->pid;
    return 0;
fail_fds:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    free(envp);
    free(h);
    errno = e;
    return -1;
}

int weir_hook_ok(const struct weir_hook_result *r)
{
    return r->spawn_errno == 0 && r->exited && r->exit_status == 0 && !r->timed_out && !r->cancelled;
}

const char *weir_hook_describe(const struct weir_hook_result *r, int timeout_ms, char *buf, size_t size)
{
    if (r->spawn_errno != 0)
        snprintf(buf, size, "spawn failed: %s", strerror(r->spawn_errno));
    else if (r->cancelled)
        snprintf(buf, size, "killed: weir is stopping");
    else if (r->timed_out)
        snprintf(buf, size, "timed out after %d ms (process group terminated)", timeout_ms);
    else if (r->exited)
        snprintf(buf, size, "exit %d", r->exit_status);
    else if (r->signaled)
        snprintf(buf, size, "killed by signal %d", r->term_signal);
    else
        snprintf(buf, size, "ended");
    return buf;
}
