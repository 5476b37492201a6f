/*
 * test_transport.c - the connection/transport contract of transport.c, on
 * socket pairs and loopback: a transport's handshake and a send that want
 * the other readiness (what TLS does) are retried when the conn's events
 * fire; reads stop at the read limit; eager writes; half-close; a refused
 * connect is reported from the loop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "weir/transport.h"

/* A transport over the plain one: a handshake that needs `hs_bytes` bytes
 * from the peer (one per step, each step wanting READ), and a send that
 * first says "want READ" `send_blocks` times. */
struct fake {
    int hs_bytes;
    int send_blocks;
    int closed;
};

static int fake_handshake(struct weir_conn *c)
{
    struct fake *f = c->xprt_ctx;
    while (f->hs_bytes > 0) {
        char b;
        ssize_t n = read(c->fd, &b, 1);
        if (n == 1) {
            f->hs_bytes--;
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            c->want = WEIR_WANT_READ;
            return WEIR_AGAIN;
        }
        c->err = n == 0 ? ECONNRESET : errno;
        return WEIR_ERROR;
    }
    return WEIR_OK;
}

static ssize_t fake_recv(struct weir_conn *c, struct evbuffer *in, size_t max)
{
    return weir_xprt_plain.recv(c, in, max);
}

static ssize_t fake_send(struct weir_conn *c, struct evbuffer *out)
{
    struct fake *f = c->xprt_ctx;
    if (f->send_blocks > 0) {
        char b;
        if (read(c->fd, &b, 1) != 1) { /* wants the peer to speak first */
            c->want = WEIR_WANT_READ;
            return WEIR_AGAIN;
        }
        f->send_blocks--;
    }
    return weir_xprt_plain.send(c, out);
}

static void fake_close(struct weir_conn *c)
{
    ((struct fake *)c->xprt_ctx)->closed++;
}

static const struct weir_xprt_ops fake_ops = {"fake", fake_handshake, fake_recv, fake_send, NULL, fake_close};

struct seen {
    int ev[16];
    int n;
};

static void handler(struct weir_conn *c, int ev, void *ctx)
{
    struct seen *s = ctx;
    (void)c;
    if (s->n < 16)
        s->ev[s->n++] = ev;
}

static void loop_once(struct event_base *base)
{
    struct timeval tv = {0, 200000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, EVLOOP_ONCE);
}

static void test_handshake_then_data(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct fake f = {.hs_bytes = 2};
    struct seen s = {0};
    struct weir_conn *c = weir_conn_new(base, sv[0], &fake_ops, &f, handler, &s);
    assert_non_null(c);
    c->reading = 1;
    assert_int_equal(weir_conn_start(c), WEIR_OK);
    assert_true(c->handshaking);
    assert_int_equal(write(sv[1], "H", 1), 1);
    loop_once(base);
    assert_true(c->handshaking); /* one byte of two */
    assert_int_equal(write(sv[1], "Hdata", 5), 5);
    loop_once(base); /* handshake done: no event for an accepted conn */
    if (s.n == 0)
        loop_once(base); /* then the data */
    assert_false(c->handshaking);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ev[0], WEIR_CONN_READ);
    assert_int_equal(evbuffer_get_length(c->in), 4);
    assert_memory_equal(evbuffer_pullup(c->in, 4), "data", 4);
    weir_conn_free(c);
    assert_int_equal(f.closed, 1);
    close(sv[1]);
    event_base_free(base);
}

static void test_send_wanting_read(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct fake f = {.send_blocks = 1};
    struct seen s = {0};
    struct weir_conn *c = weir_conn_new(base, sv[0], &fake_ops, &f, handler, &s);
    assert_int_equal(weir_conn_start(c), WEIR_OK); /* no handshake bytes needed */
    evbuffer_add(c->out, "xyz", 3);
    assert_int_equal(weir_conn_flush(c), WEIR_AGAIN);
    assert_true(c->send_blocked);
    assert_true(c->want & WEIR_WANT_READ);
    assert_true(c->r_armed); /* armed for the send, not for reading */
    assert_int_equal(write(sv[1], "R", 1), 1);
    loop_once(base);
    assert_int_equal(evbuffer_get_length(c->out), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ev[0], WEIR_CONN_WRITE);
    char buf[8];
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "xyz", 3);
    weir_conn_free(c);
    close(sv[1]);
    event_base_free(base);
}

static void test_read_limit_and_eager_write(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct seen s = {0};
    struct weir_conn *c = weir_conn_new(base, sv[0], &weir_xprt_plain, NULL, handler, &s);
    c->reading = 1;
    c->rd_max = 100;
    weir_conn_start(c);
    char big[1000];
    memset(big, 'a', sizeof(big));
    assert_int_equal(write(sv[1], big, sizeof(big)), (ssize_t)sizeof(big));
    for (int i = 0; i < 5; i++)
        loop_once(base);
    assert_int_equal(evbuffer_get_length(c->in), 100); /* never past the limit */
    assert_false(c->r_armed);
    evbuffer_drain(c->in, 100);
    weir_conn_update(c);
    assert_true(c->r_armed);
    loop_once(base);
    assert_int_equal(evbuffer_get_length(c->in), 100);
    /* eager write: sent by the flush itself, EV_WRITE never armed */
    evbuffer_add(c->out, "hello", 5);
    assert_int_equal(weir_conn_flush(c), WEIR_OK);
    assert_false(c->w_armed);
    char buf[8];
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 5);
    /* half-close: the peer reads EOF, our side still reads */
    assert_int_equal(weir_conn_shutdown(c), WEIR_OK);
    assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);
    weir_conn_free(c);
    close(sv[1]);
    event_base_free(base);
}

static void test_connect_refused_reported_from_loop(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    /* a port with nobody listening: bind, note, close */
    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(t, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(t, (struct sockaddr *)&sa, &len), 0);
    close(t);
    struct seen s = {0};
    struct timeval tmo = {2, 0};
    struct weir_conn *c = weir_conn_connect(base, (struct sockaddr *)&sa, sizeof(sa), &weir_xprt_plain, NULL,
                                            &tmo, handler, &s);
    assert_non_null(c);
    assert_int_equal(s.n, 0); /* never from inside the call */
    for (int i = 0; i < 5 && s.n == 0; i++)
        loop_once(base);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ev[0], WEIR_CONN_ERROR);
    assert_int_equal(c->err, ECONNREFUSED);
    weir_conn_free(c);
    event_base_free(base);
}

static void test_backend_socket_options(void **st)
{
    (void)st;
    /* Backend sockets (issue 7, defect 7 and 3): TCP_NODELAY (a streamed
     * body must not meet Nagle), non-blocking, close-on-exec. */
    struct event_base *base = event_base_new();
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
    struct seen s = {0};
    struct weir_conn *c = weir_conn_connect(base, (struct sockaddr *)&sa, sizeof(sa), &weir_xprt_plain, NULL,
                                            NULL, handler, &s);
    assert_non_null(c);
    int v = 0;
    socklen_t vl = sizeof(v);
    assert_int_equal(getsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    assert_int_not_equal(v, 0);
    assert_true(fcntl(c->fd, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(c->fd, F_GETFL) & O_NONBLOCK);
    for (int i = 0; i < 5 && s.n == 0; i++)
        loop_once(base);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ev[0], WEIR_CONN_CONNECTED);
    weir_conn_free(c);
    close(l);
    event_base_free(base);
}

/* The plain transport: small reads go through a per-thread scratch buffer,
 * a read after a full one goes into reserved evbuffer space; sends cover
 * more evbuffer chunks than one sendmsg takes. Bytes arrive intact and in
 * order either way. */
static void test_plain_read_modes_and_many_chunks(void **st)
{
    (void)st;
    struct event_base *base = event_base_new();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int big = 256 * 1024;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct seen s = {0};
    struct weir_conn *c = weir_conn_new(base, sv[0], &weir_xprt_plain, NULL, handler, &s);
    c->reading = 1;
    weir_conn_start(c);
    static char pat[60000];
    for (size_t i = 0; i < sizeof(pat); i++)
        pat[i] = (char)('a' + i % 23);
    /* small: through the scratch buffer */
    assert_int_equal(write(sv[1], pat, 100), 100);
    loop_once(base);
    assert_int_equal(c->last_read, 100);
    assert_int_equal(evbuffer_get_length(c->in), 100);
    /* bulk: a full read, then reads in place */
    assert_int_equal(write(sv[1], pat + 100, sizeof(pat) - 100), (ssize_t)(sizeof(pat) - 100));
    for (int i = 0; i < 20 && evbuffer_get_length(c->in) < sizeof(pat); i++)
        loop_once(base);
    assert_int_equal(evbuffer_get_length(c->in), sizeof(pat));
    assert_memory_equal(evbuffer_pullup(c->in, -1), pat, sizeof(pat));
    /* 40 separate chunks out: more than one sendmsg's vectors */
    static char parts[40][10];
    for (int i = 0; i < 40; i++) {
        memset(parts[i], 'A' + i % 26, sizeof(parts[i]));
        evbuffer_add_reference(c->out, parts[i], sizeof(parts[i]), NULL, NULL);
    }
    assert_int_equal(weir_conn_flush(c), WEIR_OK);
    char got[400];
    size_t n = 0;
    while (n < sizeof(got)) {
        ssize_t r = read(sv[1], got + n, sizeof(got) - n);
        assert_true(r > 0);
        n += (size_t)r;
    }
    for (int i = 0; i < 40; i++)
        assert_memory_equal(got + 10 * i, parts[i], 10);
    weir_conn_free(c);
    close(sv[1]);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_then_data),
        cmocka_unit_test(test_send_wanting_read),
        cmocka_unit_test(test_read_limit_and_eager_write),
        cmocka_unit_test(test_plain_read_modes_and_many_chunks),
        cmocka_unit_test(test_connect_refused_reported_from_loop),
        cmocka_unit_test(test_backend_socket_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
