"""Keep-alive: upstream connection reuse, pipelining, Connection: close,
HTTP/1.0, idle timeout."""

import time

import pytest

from weirtest import HttpConn, build_request, pool, tf, wait_until


def accepted_delta(origin, before):
    """Connections the origin accepted since `before` (a stats dict), not
    counting the connection of the stats call itself."""
    return origin.stats()["connections_accepted"] - before["connections_accepted"] - 1


def test_upstream_reuse_one_client_connection(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    s0 = o.stats()
    with HttpConn(w.port) as c:
        for i in range(200):
            r = c.get("/k/%d" % i)
            assert r.status == 200 and r.body == b"a GET /k/%d\n" % i, r
    n = accepted_delta(o, s0)
    assert 1 <= n <= 2, "origin accepted %d connections for 200 requests" % n


@pytest.mark.threaded
def test_upstream_reuse_two_workers(procs):
    """Two workers, each with its own upstream pool: 300 requests over 30
    client connections open at most 2 upstream connections per worker."""
    import threading
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], workers=2, log={"access": "off"})
    s0 = o.stats()
    errors = []

    def client(k):
        try:
            for j in range(10):
                with HttpConn(w.port) as c:
                    for i in range(10):
                        r = c.get("/t/%d/%d/%d" % (k, j, i))
                        if r.status != 200:
                            errors.append(r)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(60))
    assert not errors, errors[:3]
    n = accepted_delta(o, s0)
    # at most one upstream connection per request in flight on each worker
    assert 1 <= n <= 6, "origin accepted %d connections for 300 requests (3 concurrent clients, 2 workers)" % n


def test_upstream_reuse_fresh_client_connections(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    s0 = o.stats()
    for i in range(100):
        with HttpConn(w.port) as c:
            r = c.get("/f/%d" % i)
            assert r.status == 200 and r.body == b"a GET /f/%d\n" % i, r
    n = accepted_delta(o, s0)
    assert 1 <= n <= 2, "origin accepted %d connections for 100 client connections" % n


def test_upstream_reuse_with_bodies(procs):
    """Requests with bodies and responses with chunked bodies leave the
    upstream connection reusable too."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    s0 = o.stats()
    with HttpConn(w.port) as c:
        for i in range(30):
            r = c.request("POST", "/b?chunked=%d&size=%d" % (i % 2, 1000 + i), body=b"x" * (i * 100))
            assert r.status == 200 and r.body_len == 1000 + i, r
            assert r.header("X-Received-Bytes") == str(i * 100)
            assert "close" not in (r.header("Connection") or "").lower(), (i, r)
    n = accepted_delta(o, s0)
    assert 1 <= n <= 2, n


def test_pipelining_in_order(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        c.send(b"".join(build_request("GET", "/p%d" % i) for i in range(10)))
        for i in range(10):
            r = c.read_response()
            assert r.status == 200
            assert r.body == b"a GET /p%d\n" % i, (i, r)
        # still usable afterwards
        assert c.get("/after").body == b"a GET /after\n"


def test_pipelining_many_round_robin(procs):
    """100 pipelined requests, balanced over two origins, in one write: every
    answer in order, alternating origins."""
    a, b = procs.origin("a"), procs.origin("b")
    w = procs.weir(pools=[pool("p", [a, b])])
    with HttpConn(w.port, timeout=tf(10)) as c:
        c.send(b"".join(build_request("GET", "/m%d" % i) for i in range(100)))
        seen = []
        for i in range(100):
            r = c.read_response()
            assert r.status == 200 and r.body.endswith(b" GET /m%d\n" % i), (i, r)
            seen.append(r.origin)
    assert seen.count("a") == 50 and seen.count("b") == 50, seen
    assert all(seen[i] != seen[i + 1] for i in range(99)), seen


def test_pipelining_mixed_methods_and_bodies(procs):
    """Pipelined requests with bodies, a HEAD and different response sizes,
    sent in one write: each answer belongs to its request, in order."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    reqs = [
        ("GET", "/x1?size=5000", None),
        ("POST", "/x2", b"hello"),
        ("HEAD", "/x3?size=777", None),
        ("GET", "/x4?size=100&chunked=1", None),
        ("POST", "/x5", b"y" * 20000),
        ("GET", "/x6", None),
    ]
    with HttpConn(w.port) as c:
        c.send(b"".join(build_request(m, t, body=b) for m, t, b in reqs))
        r = c.read_response("GET")
        assert r.status == 200 and r.body_len == 5000
        r = c.read_response("POST")
        assert r.header("X-Received-Bytes") == "5" and r.body == b"a POST /x2\n"
        r = c.read_response("HEAD")
        assert r.status == 200 and r.body == b""
        r = c.read_response("GET")
        assert r.body_len == 100
        r = c.read_response("POST")
        assert r.header("X-Received-Bytes") == "20000"
        r = c.read_response("GET")
        assert r.body == b"a GET /x6\n"


def test_connection_close_honoured(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        r = c.get("/c", headers=[("Connection", "close")])
        assert r.status == 200 and r.body == b"a GET /c\n"
        assert "close" in (r.header("Connection") or "").lower(), r
        assert c.closed_by_peer(tf(2)), "weir kept the connection open after Connection: close"
        assert c.extra == b"", c.extra


def test_connection_close_stops_pipeline(procs):
    """A request after one with Connection: close in the same write is not
    processed: one answer, then the connection closes, one request reaches
    the origin."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    before = o.stats()["requests"]
    with HttpConn(w.port) as c:
        c.send(build_request("GET", "/c1", headers=[("Connection", "close")]) + build_request("GET", "/c2"))
        r = c.read_response()
        assert r.body == b"a GET /c1\n"
        assert c.closed_by_peer(tf(2))
        assert c.extra == b"", c.extra
    assert o.stats()["requests"] - before == 1


def test_http10_closes(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        r = c.request("GET", "/old", version="HTTP/1.0")
        assert r.status == 200 and r.body == b"a GET /old\n", r
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        assert c.closed_by_peer(tf(2))


def test_http10_keepalive_optional_but_framed(procs):
    """An HTTP/1.0 client asking for keep-alive: if weir keeps the connection,
    the response must carry Content-Length (a 1.0 client cannot read chunked);
    either way the body is right."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        r = c.request("GET", "/ka?size=3000&chunked=1", version="HTTP/1.0",
                      headers=[("Connection", "keep-alive")])
        assert r.status == 200 and r.body_len == 3000
        assert not r.chunked, "chunked response sent to an HTTP/1.0 client"
        if not r.close_delimited and "close" not in (r.header("Connection") or "").lower():
            r2 = c.request("GET", "/ka2", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
            assert r2.body == b"a GET /ka2\n"


def test_idle_timeout_closes(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"idle_ms": 500})
    with HttpConn(w.port) as c:
        assert c.get("/i").status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(tf(3)), "idle connection not closed"
        dt = time.monotonic() - t0
        assert 0.3 <= dt <= tf(2.0), dt
        assert c.extra == b"", c.extra


def test_many_sequential_requests_fd_stable(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        c.get("/warm")
    time.sleep(0.1)
    base = w.fds()
    for i in range(200):
        with HttpConn(w.port) as c:
            assert c.get("/s").status == 200
    assert wait_until(lambda: w.fds() <= base + 1, tf(3)), (base, w.fds())


def test_upstream_idle_timeout(procs):
    """Idle upstream keep-alive connections are closed after upstream_idle_ms."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"upstream_idle_ms": 300})
    with HttpConn(w.port) as c:
        assert c.get("/u").status == 200
        # the stats connection itself is the only one open at the origin
        assert wait_until(lambda: o.stats()["connections_open"] == 1, tf(2), 0.05), o.stats()
        # and the client connection still works (a new upstream connection)
        assert c.get("/u2").status == 200


def test_upstream_idle_per_server_limit(procs):
    """limits.upstream_idle_per_server bounds the idle connections kept."""
    import threading
    o = procs.origin("a", "--delay-ms", 200)
    w = procs.weir(pools=[pool("p", [o])], limits={"upstream_idle_per_server": 1})
    res = []

    def one():
        with HttpConn(w.port, timeout=tf(5)) as c:
            res.append(c.get("/x").status)
    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(10))
    assert res == [200] * 4
    # 4 upstream connections were needed at once; only 1 is kept idle (+1: stats)
    assert wait_until(lambda: o.stats()["connections_open"] <= 2, tf(2), 0.05), o.stats()


def test_half_closed_client_still_gets_its_answers(procs):
    """A client that sends its requests and then shuts down its sending side
    (shutdown(SHUT_WR), as `nc -N` or some HTTP/1.0 tools do) still gets the
    complete responses, in order, before weir closes the connection: weir
    keeps reading clients during an exchange, so it sees that EOF early and
    must not take it for an abort."""
    import socket
    o = procs.origin("a", "--delay-ms", "200")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        c.send(build_request("GET", "/first") + build_request("GET", "/second", body=b"", headers=[("X-Big", "1")]))
        c.sock.shutdown(socket.SHUT_WR)
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r1.status, r1.body) == (200, b"a GET /first\n"), r1
        assert (r2.status, r2.body) == (200, b"a GET /second\n"), r2
        with pytest.raises(Exception):
            c.read_response()  # then weir closes
    # and a big response is not cut either
    with HttpConn(w.port) as c:
        c.send(build_request("GET", "/big?size=3000000&delay_ms=0"))
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200 and len(r.body) == 3000000, (r.status, len(r.body))
