/*
 * test_transport_tls.c - the TLS transport's ops (weir_xprt_tls) over a
 * non-blocking socketpair: weir's side is a struct weir_conn driven by a
 * small poll loop the way transport.c drives it (an op, then the readiness
 * the op asked for in c->want), the peer is a plain OpenSSL SSL.
 *
 * Certificates: tests/unit/tls-certs.sh (see test_tls.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "weir/conf.h"
#include "weir/core.h"
#include "weir/tls.h"
#include "weir/transport_tls.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

static char dir[64];
static char cert_path[160], key_path[160], ca_path[160];
static struct weir_tls_tickets *tickets;

static int setup_all(void **state)
{
    char cmd[512];

    signal(SIGPIPE, SIG_IGN); /* as weir does: writes to a closed socket fail with EPIPE */
    snprintf(dir, sizeof(dir), "/tmp/weir-test-xprt-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/unit/tls-certs.sh' '%s'", TEST_SRCDIR, dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/default.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/default.key", dir);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    tickets = weir_tls_tickets_new(WEIR_TLS_TICKET_ROTATE_S);
    return tickets != NULL ? 0 : -1;
}

static int teardown_all(void **state)
{
    char cmd[512];

    weir_tls_tickets_free(tickets);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int check_no_leak(void **state)
{
    assert_int_equal(weir_tls_live_objects(), 0);
    return 0;
}

/* ---- fixtures ---------------------------------------------------------------- */

static struct weir_tls_server *server_new(int tickets_on, int hs_timeout_ms, struct weir_tls_counters *cnt)
{
    static struct weir_conf_tls_cert cert;
    static struct weir_conf_listen_tls t;
    struct weir_conf_errors errs = {0};
    struct weir_tls_server *s;

    cert.cert = cert_path;
    cert.key = key_path;
    memset(&t, 0, sizeof(t));
    t.enabled = 1;
    t.certs = &cert;
    t.ncerts = 1;
    t.min_version = WEIR_TLS_1_2;
    t.session_tickets = tickets_on;
    t.handshake_timeout_ms = hs_timeout_ms;
    s = weir_tls_server_new(&t, "test.conf", tickets, cnt, &errs);
    assert_non_null(s);
    weir_conf_errors_free(&errs);
    return s;
}

struct pair {
    struct weir_conn c; /* weir's side, on fds[0] */
    int peer_fd;        /* fds[1] */
    SSL *peer;
};

static void set_nonblock(int fd)
{
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* weir's conn on one end with transport state xctx; the peer SSL (not yet
 * attached, may be NULL) on the other. */
static void pair_init(struct pair *p, void *xctx, SSL *peer)
{
    int fds[2];

    assert_non_null(xctx);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    set_nonblock(fds[0]);
    set_nonblock(fds[1]);
    memset(p, 0, sizeof(*p));
    p->c.fd = fds[0];
    p->c.xprt = &weir_xprt_tls;
    p->c.xprt_ctx = xctx;
    p->c.in = evbuffer_new();
    p->c.out = evbuffer_new();
    p->peer_fd = fds[1];
    p->peer = peer;
    if (peer != NULL)
        assert_int_equal(SSL_set_fd(peer, fds[1]), 1);
}

/* What weir_conn_free does: the close op, then the socket. */
static void pair_free(struct pair *p)
{
    p->c.xprt->close(&p->c);
    close(p->c.fd);
    evbuffer_free(p->c.in);
    evbuffer_free(p->c.out);
    if (p->peer != NULL) {
        SSL_set_shutdown(p->peer, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(p->peer);
    }
    if (p->peer_fd >= 0)
        close(p->peer_fd);
    ERR_clear_error();
}

/* Wait (bounded) until weir's socket is ready for what c->want asks. */
static void wait_want(struct pair *p)
{
    struct pollfd pf = {.fd = p->c.fd, .events = 0};

    if (p->c.want & WEIR_WANT_READ)
        pf.events |= POLLIN;
    if (p->c.want & WEIR_WANT_WRITE)
        pf.events |= POLLOUT;
    poll(&pf, 1, 5);
}

static SSL_CTX *peer_client_ctx(int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca_path, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;
}

static SSL *peer_client(SSL_CTX *ctx)
{
    SSL *s = SSL_new(ctx);

    assert_non_null(s);
    SSL_set_tlsext_host_name(s, "default.test");
    SSL_set1_host(s, "default.test");
    SSL_set_connect_state(s);
    return s;
}

/* Run both handshakes; returns weir's last handshake result. */
static int handshake(struct pair *p)
{
    int rc = WEIR_AGAIN, peer_done = 0, peer_failed = 0;

    for (int i = 0; i < 2000 && (rc == WEIR_AGAIN || (!peer_done && !peer_failed)); i++) {
        if (rc == WEIR_AGAIN)
            rc = p->c.xprt->handshake(&p->c);
        if (rc == WEIR_AGAIN)
            assert_true(p->c.want == WEIR_WANT_READ || p->c.want == WEIR_WANT_WRITE);
        if (!peer_done && !peer_failed) {
            int r = SSL_do_handshake(p->peer);
            if (r == 1) {
                peer_done = 1;
            } else {
                int e = SSL_get_error(p->peer, r);
                peer_failed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            }
        }
        if (rc == WEIR_AGAIN)
            wait_want(p);
        if (rc == WEIR_ERROR && !peer_done)
            break;
    }
    ERR_clear_error();
    return rc;
}

/* recv until `n` bytes are in c.in (bounded); returns the last op result. */
static ssize_t recv_until(struct pair *p, size_t n, size_t max)
{
    ssize_t r = 0;

    for (int i = 0; i < 5000 && evbuffer_get_length(p->c.in) < n; i++) {
        r = p->c.xprt->recv(&p->c, p->c.in, max);
        if (r == WEIR_AGAIN)
            wait_want(p);
        else if (r <= 0)
            break;
    }
    return r;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_handshake_and_data(void **state)
{
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(1, 10000, &cnt);
    SSL_CTX *cctx = peer_client_ctx(0);
    struct pair p;
    const char *version, *cipher, *sni;
    unsigned char *big, *got;
    size_t nbig = 1u << 20, have = 0;
    int again = 0;

    pair_init(&p, weir_xprt_tls_server_new(s), peer_client(cctx));
    weir_tls_server_release(s); /* the connection keeps the server alive */
    assert_int_equal(handshake(&p), WEIR_OK);
    assert_int_equal(cnt.full, 1);
    weir_tls_info(weir_xprt_tls_ssl(&p.c), &version, &cipher, &sni);
    assert_string_equal(version, "TLSv1.3");
    assert_string_equal(sni, "default.test");
    assert_string_equal(weir_xprt_tls_error(&p.c), "");
    assert_int_equal(weir_xprt_tls_fail_reason(&p.c), -1);

    /* peer -> weir */
    assert_int_equal(SSL_write(p.peer, "hello", 5), 5);
    assert_true(recv_until(&p, 5, WEIR_CONN_READ_SIZE) > 0);
    assert_int_equal(evbuffer_get_length(p.c.in), 5);
    assert_memory_equal(evbuffer_pullup(p.c.in, 5), "hello", 5);

    /* weir -> peer: 1 MiB, far more than the socket holds, so send must say
     * WEIR_AGAIN/WANT_WRITE and resume with the same first bytes. */
    big = malloc(nbig);
    got = malloc(nbig);
    for (size_t i = 0; i < nbig; i++)
        big[i] = (unsigned char)(i * 2654435761u >> 13);
    evbuffer_add(p.c.out, big, nbig);
    for (int i = 0; i < 100000 && have < nbig; i++) {
        /* Send until the socket is full, then let the peer read a little. */
        while (evbuffer_get_length(p.c.out) > 0) {
            ssize_t n = p.c.xprt->send(&p.c, p.c.out);
            if (n == WEIR_AGAIN) {
                assert_int_equal(p.c.want, WEIR_WANT_WRITE);
                again++;
                break;
            }
            assert_true(n > 0 && n <= 16384);
        }
        int r = SSL_read(p.peer, got + have, (int)(nbig - have < 50000 ? nbig - have : 50000));
        if (r > 0)
            have += (size_t)r;
    }
    assert_int_equal(have, nbig);
    assert_memory_equal(got, big, nbig);
    assert_true(again > 0);
    free(big);
    free(got);

    SSL_CTX_free(cctx);
    pair_free(&p);
}

/* Decrypted bytes beyond `max` are reported through c->pending. */
static void test_pending(void **state)
{
    struct weir_tls_server *s = server_new(1, 10000, NULL);
    SSL_CTX *cctx = peer_client_ctx(0);
    struct pair p;
    char buf[40000];
    int saw_pending = 0;
    ssize_t r;

    pair_init(&p, weir_xprt_tls_server_new(s), peer_client(cctx));
    weir_tls_server_release(s);
    assert_int_equal(handshake(&p), WEIR_OK);
    memset(buf, 'p', sizeof(buf));
    assert_int_equal(SSL_write(p.peer, buf, sizeof(buf)), (int)sizeof(buf));
    for (int i = 0; i < 5000 && evbuffer_get_length(p.c.in) < sizeof(buf); i++) {
        r = p.c.xprt->recv(&p.c, p.c.in, 1000);
        if (r == WEIR_AGAIN) {
            assert_int_equal(p.c.pending, 0);
            wait_want(&p);
            continue;
        }
        assert_true(r > 0 && r <= 1000);
        saw_pending |= p.c.pending;
    }
    assert_int_equal(evbuffer_get_length(p.c.in), sizeof(buf));
    assert_true(saw_pending);
    assert_int_equal(p.c.pending, 0); /* the last record was read to its end */

    /* A record larger than the free tail of c->in's last chunk lands in one
     * recv, across the tail and a new chunk. */
    {
        struct pollfd pf = {.fd = p.c.fd, .events = POLLIN};
        size_t before = evbuffer_get_length(p.c.in);
        struct evbuffer_iovec tail;

        assert_true(evbuffer_reserve_space(p.c.in, 1, &tail, 1) == 1);
        assert_true(tail.iov_len < 10000);
        assert_int_equal(SSL_write(p.peer, buf, 10000), 10000);
        assert_int_equal(poll(&pf, 1, 2000), 1);
        r = p.c.xprt->recv(&p.c, p.c.in, WEIR_CONN_READ_SIZE);
        assert_int_equal(r, 10000);
        assert_int_equal(evbuffer_get_length(p.c.in), before + 10000);
        assert_int_equal(p.c.pending, 0);
    }
    SSL_CTX_free(cctx);
    pair_free(&p);
}

/* shutdown sends close_notify and half-closes; the peer's close_notify and
 * a close without one are both EOF. */
static void test_shutdown_and_eof(void **state)
{
    struct weir_tls_server *s = server_new(1, 10000, NULL);
    SSL_CTX *cctx = peer_client_ctx(0);
    struct pair p;
    char b;
    int r = 0;

    pair_init(&p, weir_xprt_tls_server_new(s), peer_client(cctx));
    assert_int_equal(handshake(&p), WEIR_OK);
    assert_int_equal(p.c.xprt->shutdown(&p.c), WEIR_OK);
    for (int i = 0; i < 100; i++) {
        r = SSL_read(p.peer, &b, 1);
        if (r > 0 || SSL_get_error(p.peer, r) != SSL_ERROR_WANT_READ)
            break;
        usleep(1000);
    }
    assert_int_equal(SSL_get_error(p.peer, r), SSL_ERROR_ZERO_RETURN);
    assert_int_equal(recv(p.peer_fd, &b, 1, 0), 0); /* the socket's sending side is shut too */
    /* The peer answers with its own close_notify: EOF for weir. */
    SSL_shutdown(p.peer);
    assert_int_equal(recv_until(&p, 1, 100), 0);
    pair_free(&p);

    /* A peer that just closes the socket: EOF as well, not an error. */
    pair_init(&p, weir_xprt_tls_server_new(s), peer_client(cctx));
    assert_int_equal(handshake(&p), WEIR_OK);
    /* The peer reads everything first (tickets included): a close with
     * unread bytes would be a reset (ECONNRESET), not an EOF. */
    evbuffer_add(p.c.out, "y", 1);
    assert_int_equal(p.c.xprt->send(&p.c, p.c.out), 1);
    r = -1;
    for (int i = 0; i < 100 && r <= 0; i++) {
        r = SSL_read(p.peer, &b, 1);
        if (r <= 0)
            usleep(1000);
    }
    assert_int_equal(r, 1);
    SSL_set_shutdown(p.peer, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(p.peer);
    p.peer = NULL;
    close(p.peer_fd);
    p.peer_fd = -1;
    assert_int_equal(recv_until(&p, 1, 100), 0);
    /* Writing to it now is an error with an errno. */
    evbuffer_add(p.c.out, "x", 1);
    assert_int_equal(p.c.xprt->send(&p.c, p.c.out), WEIR_ERROR);
    assert_int_equal(p.c.err, EPIPE);
    pair_free(&p);
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
}

/* A handshake past its deadline fails with ETIMEDOUT and is counted once;
 * a connection freed mid-handshake is counted as closed or timeout. */
static void test_handshake_timeout(void **state)
{
    /* 500 ms: wide enough that a loaded machine never reaches the deadline
     * between two lines that expect to be before it. */
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(1, 500, &cnt), *slow = server_new(1, 10000, &cnt);
    struct pair p;

    pair_init(&p, weir_xprt_tls_server_new(s), NULL);
    assert_int_equal(p.c.xprt->handshake(&p.c), WEIR_AGAIN); /* nothing sent yet */
    assert_int_equal(p.c.want, WEIR_WANT_READ);
    usleep(700 * 1000);
    assert_int_equal(p.c.xprt->handshake(&p.c), WEIR_ERROR);
    assert_int_equal(p.c.err, ETIMEDOUT);
    assert_int_equal(weir_xprt_tls_fail_reason(&p.c), WEIR_TLS_FAIL_TIMEOUT);
    assert_string_equal(weir_xprt_tls_error(&p.c), "handshake timeout");
    pair_free(&p);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_TIMEOUT], 1);

    /* Freed before the deadline, nothing received: "closed". */
    pair_init(&p, weir_xprt_tls_server_new(slow), NULL);
    assert_int_equal(p.c.xprt->handshake(&p.c), WEIR_AGAIN);
    pair_free(&p);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_CLOSED], 1);
    /* Freed after it (the conn's read timeout fired first): "timeout". */
    pair_init(&p, weir_xprt_tls_server_new(s), NULL);
    assert_int_equal(p.c.xprt->handshake(&p.c), WEIR_AGAIN);
    usleep(700 * 1000);
    pair_free(&p);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_TIMEOUT], 2);
    assert_int_equal(cnt.full, 0);
    weir_tls_server_release(s);
    weir_tls_server_release(slow);
}

/* Plain HTTP to the TLS port: a clean error, counted as plain_http. */
static void test_plain_http(void **state)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(1, 10000, &cnt);
    struct pair p;
    int rc = WEIR_AGAIN;

    pair_init(&p, weir_xprt_tls_server_new(s), NULL);
    assert_int_equal(write(p.peer_fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    for (int i = 0; i < 100 && rc == WEIR_AGAIN; i++) {
        rc = p.c.xprt->handshake(&p.c);
        if (rc == WEIR_AGAIN)
            wait_want(&p);
    }
    assert_int_equal(rc, WEIR_ERROR);
    assert_int_equal(weir_xprt_tls_fail_reason(&p.c), WEIR_TLS_FAIL_PLAIN_HTTP);
    assert_non_null(strstr(weir_xprt_tls_error(&p.c), "http request"));
    assert_int_equal(ERR_peek_error(), 0);
    /* The client gets a plain 400 saying why, then a clean end of stream. */
    {
        char buf[512];
        ssize_t n, got = 0;
        while (got < (ssize_t)sizeof(buf) - 1 &&
               (n = read(p.peer_fd, buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
            got += n;
        buf[got] = '\0';
        assert_memory_equal(buf, "HTTP/1.1 400 Bad Request\r\n", 26);
        assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
        assert_non_null(strstr(buf, "\r\n\r\nThis port speaks HTTPS: use https:// in the URL.\n"));
        assert_int_equal(read(p.peer_fd, buf, 1), 0);
    }
    pair_free(&p);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_PLAIN_HTTP], 1);
    assert_int_equal(cnt.fail[WEIR_TLS_FAIL_CLOSED], 0); /* counted once */
    weir_tls_server_release(s);
}

/* weir as the client of a TLS backend (a weir server SSL as the peer). */
static void test_client_side(void **state)
{
    struct weir_tls_server *backend = server_new(1, 10000, NULL);
    struct weir_conf_pool_tls pc = {.enabled = 1, .verify = 1, .ca_file = ca_path};
    struct weir_conf_errors errs = {0};
    struct weir_tls_client *cl = weir_tls_client_new(&pc, "test.conf", &errs);
    struct pair p;
    SSL *peer;

    assert_non_null(cl);
    peer = weir_tls_server_ssl(backend);
    pair_init(&p, weir_xprt_tls_client_new(cl, "default.test", "127.0.0.1:443", 1000), peer);
    assert_int_equal(handshake(&p), WEIR_OK);
    evbuffer_add(p.c.out, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_int_equal(p.c.xprt->send(&p.c, p.c.out), 18);
    assert_int_equal(evbuffer_get_length(p.c.out), 0);
    {
        char buf[32];
        int r = -1;
        for (int i = 0; i < 100 && r <= 0; i++) {
            r = SSL_read(peer, buf, sizeof(buf));
            if (r <= 0)
                usleep(1000);
        }
        assert_int_equal(r, 18);
    }
    pair_free(&p);

    /* The backend's certificate is not for that name: refused, with why. */
    peer = weir_tls_server_ssl(backend);
    pair_init(&p, weir_xprt_tls_client_new(cl, "payments.test", "127.0.0.2:443", 1000), peer);
    assert_int_equal(handshake(&p), WEIR_ERROR);
    assert_int_equal(weir_xprt_tls_fail_reason(&p.c), WEIR_TLS_FAIL_CERT);
    assert_non_null(strstr(weir_xprt_tls_error(&p.c), "hostname mismatch"));
    assert_int_equal(p.c.err, EPROTO);
    pair_free(&p);

    weir_tls_client_release(cl);
    weir_tls_server_release(backend);
}

/* A connection freed without close_notify after a clean exchange keeps its
 * session in the server's cache (tickets off, TLS 1.2 session ids). */
static void test_close_keeps_session(void **state)
{
    struct weir_tls_counters cnt = {0};
    struct weir_tls_server *s = server_new(0, 10000, &cnt);
    SSL_CTX *cctx = peer_client_ctx(TLS1_2_VERSION);
    SSL_SESSION *sess;
    struct pair p;

    pair_init(&p, weir_xprt_tls_server_new(s), peer_client(cctx));
    assert_int_equal(handshake(&p), WEIR_OK);
    sess = SSL_get1_session(p.peer);
    pair_free(&p);

    SSL *peer = peer_client(cctx);
    SSL_set_session(peer, sess);
    pair_init(&p, weir_xprt_tls_server_new(s), peer);
    assert_int_equal(handshake(&p), WEIR_OK);
    assert_int_equal(SSL_session_reused(weir_xprt_tls_ssl(&p.c)), 1);
    pair_free(&p);
    assert_int_equal(cnt.full, 1);
    assert_int_equal(cnt.resumed, 1);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    weir_tls_server_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_handshake_and_data, check_no_leak),
        cmocka_unit_test_teardown(test_pending, check_no_leak),
        cmocka_unit_test_teardown(test_shutdown_and_eof, check_no_leak),
        cmocka_unit_test_teardown(test_handshake_timeout, check_no_leak),
        cmocka_unit_test_teardown(test_plain_http, check_no_leak),
        cmocka_unit_test_teardown(test_client_side, check_no_leak),
        cmocka_unit_test_teardown(test_close_keeps_session, check_no_leak),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
