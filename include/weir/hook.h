/*
 * hook.h - run operator scripts (autoscale and alert hooks) from the control
 * thread without ever blocking it.
 *
 * A hook is started with posix_spawn in its own process group, with its
 * signal mask cleared and the usual signals at their default action, stdin a
 * pipe carrying one JSON document, stdout and stderr one non-blocking pipe
 * read on the control thread's event_base (the last 4 KiB are kept), and no
 * other descriptor of weir (weir's own are close-on-exec, and every
 * descriptor above 2 is closed in the child anyway). The environment is
 * weir's own plus the caller's "NAME=value" entries (which replace weir's
 * variables of the same names). A hook still running after its timeout gets
 * SIGTERM with its whole process group, then SIGKILL 2 s later, or as soon
 * as the hook itself has exited for whatever is left of its group; it is
 * reaped on
 * SIGCHLD. The completion callback runs exactly once per hook, on the
 * control thread, after the hook has been reaped (from weir_hook_shutdown
 * with `cancelled` set for the hooks still running then, so callers free
 * what they attached).
 *
 * Control thread only.
 */
#ifndef WEIR_HOOK_H
#define WEIR_HOOK_H

#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

#define WEIR_HOOK_OUTPUT_MAX 4096

struct weir_hook_result {
    pid_t pid;
    int spawn_errno; /* posix_spawn failed: the errno (the rest is 0) */
    int exited;      /* 1: exited normally with exit_status */
    int exit_status;
    int signaled; /* 1: killed by term_signal */
    int term_signal;
    int timed_out; /* 1: killed by weir at its timeout */
    int cancelled; /* 1: killed by weir_hook_shutdown (weir is stopping) */
    double duration_ms;
    size_t output_len;   /* bytes in output (the last WEIR_HOOK_OUTPUT_MAX of stdout + stderr) */
    size_t output_total; /* bytes the hook wrote */
    char output[WEIR_HOOK_OUTPUT_MAX + 1]; /* NUL-terminated */
};

typedef void (*weir_hook_done_fn)(void *arg, const struct weir_hook_result *r);

/* Install the SIGCHLD handler on the control thread's base. 0 or -1. */
int weir_hook_init(struct event_base *base);

/* Kill every running hook's process group, reap them, call their
 * callbacks with `cancelled` set, free everything. Safe when not
 * initialised. */
void weir_hook_shutdown(void);

/* Start `path` (no arguments) with env (NULL-terminated "NAME=value"
 * list, may be NULL) added to weir's environment, `input` written to its
 * stdin, killed after timeout_ms. Returns 0 with the child's pid in
 * *pid_out (may be NULL) and done() called later, or -1 with errno set
 * (nothing started, done() not called). */
int weir_hook_run(const char *path, char *const env[], const char *input, size_t input_len, int timeout_ms,
                  weir_hook_done_fn done, void *arg, pid_t *pid_out);

/* Hooks currently running. */
int weir_hook_running(void);

/* "exit 0", "exit 3", "killed by signal 9", "timed out after 30000 ms",
 * "spawn failed: ..." into buf. Returns buf. */
const char *weir_hook_describe(const struct weir_hook_result *r, int timeout_ms, char *buf, size_t size);

/* 1 when the hook succeeded (exited with status 0). */
int weir_hook_ok(const struct weir_hook_result *r);

#endif
