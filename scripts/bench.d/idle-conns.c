/* idle-conns: open N HTTP/1.1 keep-alive connections to HOST:PORT, send one
 * request on each, read the whole response, then keep every connection idle.
 *
 *   idle-conns HOST PORT N [HOLD_S] [SETTLE_MS]
 *
 * At most INFLIGHT connections are being set up at once (connect + request +
 * response), so the proxy sees a quick ramp rather than 10,000 simultaneous
 * requests (which would make it open as many backend connections). Once all N
 * have served their request, it waits SETTLE_MS, checks that none was closed by
 * the server, prints one line
 *
 *   READY open=N failed=F closed=C ms=T
 *
 * and holds the connections until HOLD_S seconds pass (default 120) or it
 * receives SIGTERM/SIGINT. Exit 0 if all N
 * connections are open at READY, 1 otherwise.
 *
 * Part of scripts/bench (weir's benchmark); built on the fly with gcc -O2.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INFLIGHT 256
#define RBUF 4096

enum { ST_CONNECTING, ST_SENDING, ST_READING, ST_IDLE, ST_DEAD };

struct conn {
    int fd;
    int state;
    size_t sent;
    size_t got;       /* bytes of the response read so far */
    long need;        /* total response size once the header is parsed, or -1 */
    char hdr[RBUF];   /* response header accumulates here (only while reading) */
    size_t hlen;
};

static const char REQ[] = "GET /idle HTTP/1.1\r\nHost: bench\r\nUser-Agent: weir-bench-idle\r\n\r\n";
static volatile sig_atomic_t stop;

static void on_sig(int s) { (void)s; stop = 1; }

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Once hdr holds "\r\n\r\n", the size of header + body (Content-Length), or -2
 * if the response cannot be framed (no Content-Length: chunked is not expected
 * from weir-origin's small bodies; we accept "0\r\n\r\n" end of chunked too). */
static long frame(struct conn *c)
{
    char *end = memmem(c->hdr, c->hlen, "\r\n\r\n", 4);
    if (end == NULL)
        return -1;
    size_t hl = (size_t)(end - c->hdr) + 4;
    for (char *p = c->hdr; p < end; ) {
        char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (nl == NULL)
            nl = end;
        if ((size_t)(nl - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return (long)hl + strtol(p + 15, NULL, 10);
        if ((size_t)(nl - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0)
            return -3;  /* chunked: read until the terminating chunk */
        p = nl + 2;
    }
    return -2;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: idle-conns HOST PORT N [HOLD_S] [SETTLE_MS]\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int n = atoi(argv[3]);
    int hold_s = argc > 4 ? atoi(argv[4]) : 120;
    int settle_ms = argc > 5 ? atoi(argv[5]) : 1000;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || n <= 0) {
        fprintf(stderr, "idle-conns: bad address or count\n");
        return 2;
    }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    signal(SIGTERM, on_sig);
    signal(SIGINT, on_sig);
    signal(SIGPIPE, SIG_IGN);

    struct conn *cs = calloc((size_t)n, sizeof(*cs));
    int ep = epoll_create1(0);
    if (cs == NULL || ep < 0) {
        perror("idle-conns");
        return 2;
    }
    int next = 0, active = 0, idle = 0, failed = 0;
    long t0 = now_ms(), deadline = t0 + 60000;
    struct epoll_event evs[512];
    char buf[RBUF];

    while ((idle + failed) < n && !stop && now_ms() < deadline) {
        while (active < INFLIGHT && next < n) {
            struct conn *c = &cs[next];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) {
                fprintf(stderr, "idle-conns: socket #%d: %s\n", next, strerror(errno));
                c->state = ST_DEAD;
                failed++;
                next++;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->need = -1;
            if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
                close(c->fd);
                c->state = ST_DEAD;
                failed++;
                next++;
                continue;
            }
            c->state = ST_CONNECTING;
            struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN, .data.u32 = (unsigned)next };
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
            active++;
            next++;
        }
        int k = epoll_wait(ep, evs, 512, 200);
        for (int i = 0; i < k; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            int fail = 0;
            if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err != 0) {
                    fail = 1;
                } else {
                    c->state = ST_SENDING;
                }
            }
            if (!fail && c->state == ST_SENDING) {
                ssize_t w = send(c->fd, REQ + c->sent, sizeof(REQ) - 1 - c->sent, MSG_NOSIGNAL);
                if (w > 0)
                    c->sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN)
                    fail = 1;
                if (c->sent == sizeof(REQ) - 1) {
                    c->state = ST_READING;
                    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = evs[i].data.u32 };
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            } else if (!fail && c->state == ST_READING) {
                for (;;) {
                    ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
                    if (r == 0) {
                        fail = 1;
                        break;
                    }
                    if (r < 0) {
                        if (errno != EAGAIN)
                            fail = 1;
                        break;
                    }
                    if (c->need == -1) {
                        size_t take = (size_t)r < sizeof(c->hdr) - c->hlen ? (size_t)r : sizeof(c->hdr) - c->hlen;
                        memcpy(c->hdr + c->hlen, buf, take);
                        c->hlen += take;
                        long f = frame(c);
                        if (f == -2 || (f == -1 && c->hlen == sizeof(c->hdr))) {
                            fail = 1;
                            break;
                        }
                        c->need = f;
                    }
                    c->got += (size_t)r;
                    if (c->need == -3) {  /* chunked: end marker in the last bytes read */
                        if (r >= 5 && memcmp(buf + r - 5, "0\r\n\r\n", 5) == 0)
                            c->need = (long)c->got;
                    }
                    if (c->need >= 0 && (long)c->got >= c->need) {
                        if (strncmp(c->hdr, "HTTP/1.1 2", 10) != 0) {
                            fail = 1;
                            break;
                        }
                        c->state = ST_IDLE;
                        /* From now on we only watch for the server closing it. */
                        struct epoll_event ev = { .events = EPOLLRDHUP, .data.u32 = evs[i].data.u32 };
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                        idle++;
                        active--;
                        break;
                    }
                }
            } else if (c->state == ST_IDLE) {
                /* Closed by the server while we were still ramping up. */
                if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    c->state = ST_DEAD;
                    idle--;
                    failed++;
                }
                continue;
            }
            if (fail) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->state = ST_DEAD;
                failed++;
                active--;
            }
        }
    }
    long ramp_ms = now_ms() - t0;

    /* Settle, then count connections that the server closed. */
    long until = now_ms() + settle_ms;
    int closed = 0;
    while (!stop && now_ms() < until) {
        int k = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < k; i++) {
            struct conn *c = &cs[evs[i].data.u32];
            if (c->state == ST_IDLE && (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->state = ST_DEAD;
                idle--;
                closed++;
            }
        }
    }
    printf("READY open=%d failed=%d closed=%d ms=%ld\n", idle, failed + (n - next), closed, ramp_ms);
    fflush(stdout);
    int rc = idle == n ? 0 : 1;

    /* Hold until told to stop (SIGTERM) or HOLD_S passes. */
    long end = now_ms() + hold_s * 1000L;
    while (!stop && now_ms() < end)
        usleep(100000);
    return rc;
}
