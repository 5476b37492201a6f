"""TLS from weir to backends (pools[].tls): verification on (a CA-signed
server accepted, a self-signed one and a wrong name refused, the attempt
retried elsewhere as a connect error and logged with the reason),
server_name, mTLS to a backend that demands a client certificate, keep-alive
reuse only for the same context, health checks over TLS, and a TLS listener
in front of a TLS backend. The backends are tls_origin.py (Python's ssl)."""

import re
import shutil
import time

import pytest

from healthutil import wait_event
from tlsutil import TlsConn, TlsOrigin, make_certs, tls_conf, tls_group
from weirtest import HttpConn, pool, tf, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def origins(tmp_path):
    started = []

    def make(certs, name, leaf, client_ca=None):
        o = TlsOrigin(tmp_path, certs, name, leaf, client_ca=client_ca)
        started.append(o)
        return o
    yield make
    for o in started:
        o.stop()


def ptls(certs, **kw):
    d = {"verify": True, "ca_file": str(certs / "ca.pem")}
    d.update(kw)
    return d


def test_verified_backend_and_forwarded_proto(procs, certs, origins):
    # "ip" has an IP subjectAltName 127.0.0.1: the server's host is verified
    o = origins(certs, "ip", "ip")
    w = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs))])
    with HttpConn(w.port) as c:
        for i in range(5):
            r = c.get("/v%d" % i)
            assert r.status == 200 and r.body == b"ip GET /v%d\n" % i, r
            assert r.header("X-Forwarded-Proto-Seen") == "http", r  # plain client side


def test_server_name_sent_and_verified(procs, certs, origins):
    o = origins(certs, "b", "b")
    w = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs, server_name="www.b.test"))])
    with HttpConn(w.port) as c:
        assert c.get("/n").status == 200


def test_wrong_name_refused_with_reason(procs, certs, origins):
    o = origins(certs, "b", "b")
    w = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs, server_name="other.test"), retries=0)])
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        r = c.get("/wrong")
        assert r.status == 503, r
    m = w.wait_log(r"pool p server %s: TLS handshake failed: .*(hostname mismatch|verify failed).*" %
                   re.escape(o.addr), timeout=3, start=start)
    assert m, w.stderr()[start:]


def test_self_signed_refused_and_retried_elsewhere(procs, certs, origins):
    bad = origins(certs, "self", "self")
    good = origins(certs, "good", "ip")
    w = procs.weir(pools=[pool("p", [bad.addr, good.addr], tls=ptls(certs), retries=2)])
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        for i in range(6):
            r = c.get("/r%d" % i)
            assert r.status == 200 and r.header("X-Origin") == "good", r
    m = w.wait_log(r"pool p server %s: TLS handshake failed: .*certificate verify failed.*" % re.escape(bad.addr),
                   timeout=3, start=start)
    assert m, w.stderr()[start:]


def test_verify_off_accepts_self_signed(procs, certs, origins):
    o = origins(certs, "self", "self")
    w = procs.weir(pools=[pool("p", [o.addr], tls={"verify": False})])
    with HttpConn(w.port) as c:
        assert c.get("/off").status == 200


def test_mtls_backend_demands_client_certificate(procs, certs, origins):
    o = origins(certs, "m", "ip", client_ca=certs / "ca.pem")
    # without a client certificate: refused
    w1 = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs), retries=0)])
    with HttpConn(w1.port) as c:
        r = c.get("/nocert")
        assert r.status in (502, 503), r
    # with one: accepted, and the backend saw it
    w2 = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs, cert=str(certs / "client.pem"),
                                                          key=str(certs / "client.key")))])
    with HttpConn(w2.port) as c:
        r = c.get("/cert")
        assert r.status == 200 and r.header("X-Client-Cert") == "client", r


def _origin_conns(o):
    # established TCP connections accepted by the origin process
    from weirtest import tcp_sockets
    return [s for s in tcp_sockets(o.proc.pid) if s.get("state") == "ESTABLISHED"]


def test_keepalive_reused_for_same_context_only(procs, certs, origins):
    o = origins(certs, "ip", "ip")
    w = procs.weir(pools=[pool("a", [o.addr], tls=ptls(certs)), pool("b", [o.addr], tls=ptls(certs))],
                   routes=[{"host": "a.test", "path_prefix": "/", "pool": "a"},
                           {"host": "*", "path_prefix": "/", "pool": "b"}])

    def ports():
        return {s["remote"][1] for s in _origin_conns(o)}
    with HttpConn(w.port) as c:
        for i in range(10):
            assert c.get("/ka%d" % i, host="a.test").status == 200
    pa = ports()
    assert len(pa) == 1, pa  # ten requests, one TLS connection
    with HttpConn(w.port) as c:
        for i in range(10):
            assert c.get("/kb%d" % i, host="b.test").status == 200
    both = ports()
    assert len(both) == 2 and pa < both, both  # pool b did not take pool a's connection
    pb = both - pa
    # a reload makes new contexts: pool b's old connection is not reused
    start = len(w.stderr())
    w.reload()
    assert w.wait_log(r"configuration reloaded", timeout=5, start=start)
    with HttpConn(w.port) as c:
        for i in range(3):
            assert c.get("/kr%d" % i, host="b.test").status == 200
    assert wait_until(lambda: not (ports() & pb) and len(ports() - pa) == 1, tf(3)), (ports(), pa, pb)


def test_health_checks_speak_tls(procs, certs, origins):
    good = origins(certs, "good", "ip")
    selfs = origins(certs, "self", "self")
    w = procs.weir(pools=[pool("p", [good.addr, selfs.addr], tls=ptls(certs),
                               health={"type": "http", "interval_ms": 300, "timeout_ms": 300, "fall": 2,
                                       "rise": 1})])
    down = wait_event(w, r"server %s DOWN after 2 failed checks: TLS handshake failed: .*verify failed"
                      % re.escape(selfs.addr), tf(5))
    assert down, w.stderr()
    time.sleep(0.6)
    assert not re.search(r"server %s DOWN" % re.escape(good.addr), w.stderr()), w.stderr()
    with HttpConn(w.port) as c:
        for i in range(6):
            r = c.get("/h%d" % i)
            assert r.status == 200 and r.header("X-Origin") == "good", r


def test_tls_both_sides(procs, certs, origins):
    o = origins(certs, "ip", "ip")
    from weirtest import free_port
    port = free_port()
    text = tls_conf(port, [pool("p", [o.addr], tls=ptls(certs))], tls_group(certs))
    w = procs.weir(text, port=port)
    with TlsConn(w.port, certs, "a.test") as c:
        for i in range(5):
            r = c.get("/both%d" % i)
            assert r.status == 200 and r.header("X-Forwarded-Proto-Seen") == "https", r
        r = c.request("POST", "/post", body=b"x" * 100000)
        assert r.status == 200, r


def test_upgrade_tunnel_over_tls_to_backend_and_client(procs, certs, origins):
    o = origins(certs, "ip", "ip")
    from weirtest import free_port
    port = free_port()
    text = tls_conf(port, [pool("p", [o.addr], tls=ptls(certs))], tls_group(certs))
    w = procs.weir(text, port=port)
    with TlsConn(w.port, certs, "a.test", timeout=tf(5)) as c:
        c.send(b"GET /tunnel HTTP/1.1\r\nHost: a.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
        r = c.read_head()
        assert r.status == 101, r
        for n in (1, 1000, 100000):
            data = bytes((i * 7) & 0xFF for i in range(n))
            c.send(data)
            got = bytearray(c.buf)
            c.buf.clear()
            while len(got) < n:
                d = c.sock.recv(65536)
                assert d, "tunnel closed"
                got += d
            assert bytes(got) == data


def test_runtime_api_shares_contexts_reload_rereads(procs, certs, origins, tmp_path):
    """A runtime API change keeps the running TLS contexts (it reads no file);
    a reload reads them all again and is refused, with FILE:LINE, when one
    is gone."""
    from adminutil import Admin, admin_extra
    from weirtest import free_port
    o1 = origins(certs, "one", "ip")
    o2 = origins(certs, "two", "ip")
    ca = tmp_path / "ca-copy.pem"
    shutil.copy(certs / "ca.pem", ca)
    port, aport = free_port(), free_port()
    text = tls_conf(port, [pool("p", [o1.addr], tls=ptls(certs, ca_file=str(ca)))], tls_group(certs),
                    extra=admin_extra(aport))
    w = procs.weir(text, port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    ca.unlink()
    r = a.add("p", o2.addr)
    assert r.status in (200, 201), r
    seen = set()
    with TlsConn(w.port, certs, "a.test") as c:
        for i in range(6):
            r = c.get("/api%d" % i)
            assert r.status == 200, r
            seen.add(r.header("X-Origin"))
    assert seen == {"one", "two"}, seen
    start = len(w.stderr())
    r = a.request("POST", "/reload")
    assert r.status != 200, r
    assert w.wait_log(r"%s:\d+: .*ca-copy\.pem" % re.escape(str(w.conf_path)), timeout=3, start=start), \
        w.stderr()[start:]
    with TlsConn(w.port, certs, "a.test") as c:
        assert c.get("/still").status == 200


def test_cache_over_a_tls_pool_revalidates_through_the_session(procs, certs, origins):
    """The cache's own background fetch speaks plain HTTP: for a pool
    reached over TLS a stale entry is revalidated through the session while
    the client waits (stale-while-revalidate and stale-if-error included),
    never left stale for its whole window."""
    from weirtest import route
    o = origins(certs, "ip", "ip")
    r = route("p")
    r["cache"] = True
    w = procs.weir(pools=[pool("p", [o.addr], tls=ptls(certs))], routes=[r],
                   extra="cache = { memory_bytes = 16777216; };\n")
    for cc in ("max-age%3D1%2C%20stale-while-revalidate%3D60", "max-age%3D1%2C%20stale-if-error%3D60"):
        path = "/c?cc=" + cc
        with HttpConn(w.port) as c:
            first = c.get(path)
            assert first.status == 200 and "stored" in (first.header("Cache-Status") or ""), first
            assert (c.get(path).header("Cache-Status") or "").startswith("weir; hit")
        time.sleep(tf(2.2))
        with HttpConn(w.port) as c:
            r2 = c.get(path)
            cs = r2.header("Cache-Status") or ""
            assert r2.status == 200 and r2.body == first.body, r2
            assert cs == "weir; fwd=stale; fwd-status=304; stored; detail=revalidated", cs
            assert (c.get(path).header("Cache-Status") or "").startswith("weir; hit")
