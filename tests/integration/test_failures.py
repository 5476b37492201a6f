"""Dead, resetting and slow backends, and stalled clients: the right status,
retries where they are safe, and no file descriptor leaked.

One weir for the whole module (tests run in file order; the last one checks
the fd count against the baseline taken at start):
  /mixed/...   pool "mixed": a dead server and a live one, round_robin, retries 2
  /dead/...    pool "dead": two dead servers
  /reset...    pool "single": one live origin (its /reset answers with a RST)
  /timeout/... pool "slow": an origin with --delay-ms 1000, retries 0
timeouts: upstream_response_ms 300, client_header_ms 500.
"""

import os
import socket
import time

import pytest

from weirtest import HttpConn, LOOPBACK, PeerClosed, free_port, pool, route, tcp_sockets, tf, wait_until


@pytest.fixture(scope="module")
def fw(mprocs):
    live = mprocs.origin("live")
    single = mprocs.origin("single")
    slow = mprocs.origin("slow", "--delay-ms", 1000)
    dead1, dead2, dead3 = ("%s:%d" % (LOOPBACK, free_port()) for _ in range(3))
    pools = [
        pool("mixed", [dead1, live], retries=2),
        pool("dead", [dead2, dead3], retries=2),
        pool("single", [single], retries=2),
        pool("slow", [slow], retries=0),
    ]
    routes = [
        route("mixed", path_prefix="/mixed/"),
        route("dead", path_prefix="/dead/"),
        route("single", path_prefix="/reset"),
        route("slow", path_prefix="/timeout/"),
    ]
    w = mprocs.weir(pools=pools, routes=routes,
                    timeouts={"upstream_response_ms": 300, "client_header_ms": 500})
    # warm up the live path, then take the fd baseline
    with HttpConn(w.port) as c:
        for i in range(4):
            assert c.get("/mixed/warm").status == 200
    time.sleep(0.2)
    state = {"base_fds": w.fds()}
    return w, {"live": live, "single": single, "slow": slow}, state


def test_dead_server_get_retried(fw):
    w, o, st = fw
    with HttpConn(w.port) as c:
        for i in range(20):
            r = c.get("/mixed/g%d" % i)
            assert r.status == 200, (i, r)
            assert r.origin == "live"
    # also on fresh connections
    for i in range(10):
        with HttpConn(w.port) as c:
            assert c.get("/mixed/f%d" % i).status == 200


def test_dead_server_post_retried(fw):
    """A connect failure means no byte was sent, so even a POST is retried."""
    w, o, st = fw
    data = os.urandom(50000)
    for i in range(8):
        with HttpConn(w.port) as c:
            r = c.request("POST", "/mixed/p%d" % i, body=data)
            assert r.status == 200, (i, r)
            assert r.header("X-Received-Bytes") == str(len(data))


def test_all_dead_503(fw):
    """Issue 7, defect 10: when no server accepts the connection the request
    reached no server: 503 with Retry-After (HAProxy, Envoy), not 502."""
    w, o, st = fw
    t0 = time.monotonic()
    with HttpConn(w.port) as c:
        r = c.get("/dead/x")
        assert r.status == 503, r
        assert r.header("Retry-After") == "1", r
        assert 0 < len(r.body) < 512, r
        assert r.header("Content-Length") == str(len(r.body))
        # the client connection survives a 503
        r = c.get("/mixed/after")
        assert r.status == 200
    assert time.monotonic() - t0 < tf(3)


def test_all_dead_post_503(fw):
    w, o, st = fw
    with HttpConn(w.port) as c:
        r = c.request("POST", "/dead/p", body=b"x" * 1000)
        assert r.status == 503, r
        assert r.header("Retry-After") == "1", r


def test_reset_gives_502(fw):
    w, o, st = fw
    before = o["single"].stats()["requests"]
    t0 = time.monotonic()
    with HttpConn(w.port) as c:
        r = c.get("/reset")
        assert r.status == 502, r
    assert time.monotonic() - t0 < tf(3)
    n = o["single"].stats()["requests"] - before
    assert 1 <= n <= 3, "origin saw %d attempts (retries = 2)" % n
    # the server is still usable for ordinary requests
    with HttpConn(w.port) as c:
        r = c.get("/reset-not?x=1")
        assert r.status == 200 and r.origin == "single"


def test_reset_post_not_retried(fw):
    """A POST whose bytes reached the server is not retried."""
    w, o, st = fw
    before = o["single"].stats()["requests"]
    with HttpConn(w.port) as c:
        r = c.request("POST", "/reset", body=b"y" * 100)
        assert r.status == 502, r
    assert o["single"].stats()["requests"] - before == 1


def test_upstream_timeout_504(fw):
    w, o, st = fw
    t0 = time.monotonic()
    with HttpConn(w.port) as c:
        r = c.get("/timeout/x")
        dt = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.25 <= dt <= tf(0.9), dt
        assert 0 < len(r.body) < 512
    # a request under the limit passes
    with HttpConn(w.port) as c:
        r = c.get("/timeout/fast?delay_ms=0")
        assert r.status == 200, r


def send_and_wait_close(port, data, limit):
    """Send data on a new connection and read until weir closes it or
    `limit` seconds pass: (bytes received, seconds until the close)."""
    s = socket.create_connection((LOOPBACK, port), timeout=tf(5))
    try:
        s.sendall(data)
        t0 = time.monotonic()
        got = b""
        while time.monotonic() - t0 < limit:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        return got, time.monotonic() - t0
    finally:
        s.close()


def test_stalled_client_header_closed(fw):
    w, o, st = fw
    data, dt = send_and_wait_close(w.port, b"GET /mixed/x HTTP/1.1\r\nHost: x\r\n", tf(3))
    assert dt < tf(2.0), "stalled client not closed after %.2fs" % dt
    assert dt >= 0.4, "closed too early: %.2fs" % dt
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]


def test_silent_connection_closed(procs):
    """A connection that never sends a byte is closed by a timeout (weir may
    apply client_header_ms or idle_ms to it; both are short here)."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"client_header_ms": 500, "idle_ms": 1000})
    s = socket.create_connection((LOOPBACK, w.port), timeout=tf(5))
    try:
        t0 = time.monotonic()
        try:
            d = s.recv(100)
        except ConnectionResetError:
            d = b""
        except socket.timeout:
            d = None
        dt = time.monotonic() - t0
    finally:
        s.close()
    assert d is not None, "silent connection still open after %.1fs" % dt
    assert d == b"" or d.startswith(b"HTTP/1.1 408"), d
    assert dt < tf(1.6), dt


def test_client_gone_mid_response(fw):
    """Clients that disconnect in the middle of a big download or before the
    upstream answers leave nothing behind (checked by the fd test below)."""
    w, o, st = fw
    for i in range(5):
        s = socket.create_connection((LOOPBACK, w.port), timeout=tf(5))
        s.sendall(b"GET /mixed/big?size=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()
    for i in range(5):
        s = socket.create_connection((LOOPBACK, w.port), timeout=tf(5))
        s.sendall(b"GET /timeout/gone?delay_ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    for i in range(5):
        s = socket.create_connection((LOOPBACK, w.port), timeout=tf(5))
        s.sendall(b"POST /mixed/half HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 5000)
        s.close()
    assert w.alive()
    with HttpConn(w.port) as c:
        assert c.get("/mixed/ok").status == 200


def test_client_body_stall(procs):
    """A client that stops sending its body for longer than client_body_ms:
    weir gives up (408 or close) and the origin connection is not left
    half-fed; other clients are served."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"client_body_ms": 500})
    data, dt = send_and_wait_close(
        w.port, b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", tf(4))
    assert dt < tf(2.5), "body stall not cut after %.1fs" % dt
    assert data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 400"), data[:100]
    with HttpConn(w.port) as c:
        r = c.request("POST", "/after", body=b"x" * 10)
        assert r.status == 200 and r.header("X-Received-Bytes") == "10", r


def test_dead_server_in_hash_pool(procs):
    """hash: keys of a dead server go to the others; every GET succeeds and
    each key keeps going to one server."""
    a, b = procs.origin("a"), procs.origin("b")
    dead = "%s:%d" % (LOOPBACK, free_port())
    w = procs.weir(pools=[pool("p", [dead, a, b], policy="hash", hash_key="uri", retries=2)])
    owner = {}
    for rnd in range(2):
        with HttpConn(w.port) as c:
            for i in range(30):
                r = c.get("/k/%d" % i)
                assert r.status == 200, r
                assert owner.setdefault(i, r.origin) == r.origin
    assert set(owner.values()) == {"a", "b"}


def test_stale_pooled_connection_retried(procs):
    """The origin restarts (same port) while weir holds an idle keep-alive
    connection to it: the next GET must not fail on the dead connection."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o], retries=2)])
    with HttpConn(w.port) as c:
        assert c.get("/one").status == 200
        port = o.port
        o.stop()
        procs.origin("a2", port=port)
        time.sleep(0.2)
        for i in range(3):
            r = c.get("/two%d" % i)
            assert r.status == 200 and r.origin == "a2", r


def test_origin_dies_mid_response(procs):
    """The origin is killed while streaming a body: the client connection is
    closed (the body cannot be completed), never left hanging; weir lives."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(b"GET /slow?size=1000000&delay_ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_head()
        assert r.status == 200
        time.sleep(0.3)
        o.proc.kill()
        t0 = time.monotonic()
        n = [0]
        try:
            c.read_body(r, sink=lambda b: n.__setitem__(0, n[0] + len(b)))
            complete = True
        except Exception:  # noqa: BLE001 - PeerClosed expected
            complete = False
        assert not complete, "a truncated body was presented as complete"
        assert time.monotonic() - t0 < tf(2)
        assert n[0] < 1000000
    assert w.alive()


def test_max_connections(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], limits={"max_connections": 5})
    # the start-up probe connection counts until weir has seen it close
    time.sleep(tf(0.3))
    held = [HttpConn(w.port) for _ in range(5)]
    try:
        for c in held:
            assert c.get("/h").status == 200
        start = len(w.stderr())
        extra = HttpConn(w.port, timeout=tf(3))
        try:
            try:
                r = extra.get("/over")
                served = r.status == 200
            except (PeerClosed, OSError):
                r, served = None, False
            assert not served, "connection over max_connections was served"
            # issue 7, defect 18: refused with a 503, logged and counted
            assert r is not None and r.status == 503 and r.header("Retry-After") == "1", r
        finally:
            extra.close()
        assert w.wait_log(r"max_connections \(5\) reached: 1 connection\(s\) refused", tf(3), start), \
            w.stderr()[start:]
        assert w.wait_log(r'"- - HTTP/1.1" 503 0 .*rid=max_connections', tf(3), start), w.stderr()[start:]
        held.pop().close()
        time.sleep(0.2)

        def one_ok():
            try:
                with HttpConn(w.port, timeout=tf(2)) as c:
                    return c.get("/again").status == 200
            except (PeerClosed, OSError):
                return False
        assert wait_until(one_ok, tf(3), 0.1), "slot not freed after a client left"
    finally:
        for c in held:
            c.close()


def test_fds_back_to_baseline(fw):
    """After everything above: no client socket left, no upstream socket the
    server already closed (CLOSE_WAIT), no socket to a dead server, and every
    other fd is accounted for (baseline + idle upstream keep-alive)."""
    w, o, st = fw
    base = st["base_fds"]
    origin_ports = {x.port for x in o.values()}

    def check():
        socks = tcp_sockets(w.pid)
        clients = [x for x in socks if x["local"][1] == w.port and x["state"] != "LISTEN"]
        upstream = [x for x in socks if x["remote"][1] in origin_ports]
        other = [x for x in socks if x not in clients and x not in upstream and x["state"] != "LISTEN"]
        bad_up = [x for x in upstream if x["state"] != "ESTABLISHED"]
        return (not clients and not other and not bad_up and w.fds() <= base + len(upstream)), socks
    ok = wait_until(lambda: check()[0], tf(5), 0.1)
    socks = check()[1]
    assert ok, "weir holds %d fds (baseline %d), sockets: %r" % (w.fds(), base, socks)
    # idle upstream connections are bounded by the concurrency the tests used
    per_port = {}
    for x in socks:
        if x["remote"][1] in origin_ports:
            per_port[x["remote"][1]] = per_port.get(x["remote"][1], 0) + 1
    assert all(n <= 6 for n in per_port.values()), per_port
    assert w.alive()
