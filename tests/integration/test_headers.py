"""Headers weir adds, rewrites and removes on the way to the origin, the
request id, and the access log line of a request."""

import re
import uuid

import pytest

from weirtest import HttpConn, pool


@pytest.fixture(scope="module")
def hw(mprocs):
    o = mprocs.origin("a")
    w = mprocs.weir(pools=[pool("p", [o])])
    return w, o


def echo(w, headers=(), host="localhost", target="/echo", method="GET", body=None):
    with HttpConn(w.port) as c:
        r = c.request(method, target, headers=list(headers), host=host, body=body)
    assert r.status == 200, r
    j = r.json()
    return r, j


def upstream_headers(j, name):
    n = name.lower()
    return [v for k, v in j["headers"] if k.lower() == n]


def test_echo_basics(hw):
    w, o = hw
    r, j = echo(hw[0], target="/echo?x=1")
    assert j["method"] == "GET"
    assert j["target"] == "/echo?x=1"
    assert j["version"] in ("HTTP/1.1", "1.1", 11)


def test_x_forwarded_for_added(hw):
    r, j = echo(hw[0])
    assert upstream_headers(j, "X-Forwarded-For") == ["127.0.0.1"], j["headers"]


def test_x_forwarded_for_appended(hw):
    r, j = echo(hw[0], headers=[("X-Forwarded-For", "1.2.3.4")])
    assert upstream_headers(j, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.1"], j["headers"]


def test_x_forwarded_for_appended_to_list(hw):
    r, j = echo(hw[0], headers=[("X-Forwarded-For", "1.2.3.4, 5.6.7.8")])
    assert upstream_headers(j, "X-Forwarded-For") == ["1.2.3.4, 5.6.7.8, 127.0.0.1"], j["headers"]


def test_x_forwarded_proto_and_host(hw):
    r, j = echo(hw[0], host="shop.example.com:8080")
    assert upstream_headers(j, "X-Forwarded-Proto") == ["http"], j["headers"]
    assert upstream_headers(j, "X-Forwarded-Host") == ["shop.example.com:8080"], j["headers"]
    # the Host header itself is passed on unchanged
    assert upstream_headers(j, "Host") == ["shop.example.com:8080"], j["headers"]


def test_via(hw):
    r, j = echo(hw[0])
    via = upstream_headers(j, "Via")
    assert len(via) == 1 and "1.1 weir" in via[0], j["headers"]
    r, j = echo(hw[0], headers=[("Via", "1.0 fred")])
    via = ", ".join(upstream_headers(j, "Via"))
    assert "1.0 fred" in via and "1.1 weir" in via, j["headers"]
    assert via.index("1.0 fred") < via.index("1.1 weir")


def test_hop_by_hop_removed(hw):
    r, j = echo(hw[0], headers=[
        ("Connection", "keep-alive, X-Custom-Hop, x-other-hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Upgrade", "h2c"),
        ("X-Custom-Hop", "secret"),
        ("X-Other-Hop", "secret2"),
        ("X-End-To-End", "kept"),
    ])
    names = [k.lower() for k, v in j["headers"]]
    for h in ("keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-custom-hop", "x-other-hop"):
        assert h not in names, (h, j["headers"])
    # weir may send its own Connection header upstream, never the client's
    for v in upstream_headers(j, "Connection"):
        assert "hop" not in v.lower(), j["headers"]
    assert upstream_headers(j, "X-End-To-End") == ["kept"]


def test_connection_header_names_in_mixed_case(hw):
    r, j = echo(hw[0], headers=[("Connection", "X-MiXeD"), ("x-mixed", "gone")])
    assert upstream_headers(j, "X-Mixed") == [], j["headers"]


def test_request_id_added(hw):
    w, o = hw
    r, j = echo(w)
    up = upstream_headers(j, "X-Request-Id")
    assert len(up) == 1 and len(up[0]) >= 8, j["headers"]
    assert r.header("X-Request-Id") == up[0], r
    # unique per request
    r2, j2 = echo(w)
    assert upstream_headers(j2, "X-Request-Id")[0] != up[0]


def test_request_id_kept(hw):
    w, o = hw
    rid = "client-" + uuid.uuid4().hex
    r, j = echo(w, headers=[("X-Request-Id", rid)])
    assert upstream_headers(j, "X-Request-Id") == [rid], j["headers"]
    assert r.header("X-Request-Id") in (None, rid), r


def test_response_hop_by_hop_not_leaked(hw):
    """The origin's own Keep-Alive / Connection tokens do not reach the client
    except weir's own Connection header."""
    w, o = hw
    with HttpConn(w.port) as c:
        r = c.get("/plain")
    assert r.header("Keep-Alive") is None, r
    assert r.header("X-Origin") == "a"
    assert r.header("Via") is None or "weir" in r.header("Via")


def test_access_log_line(hw):
    w, o = hw
    rid = "logcheck-" + uuid.uuid4().hex
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        r = c.get("/logged?status=203", headers=[("X-Request-Id", rid)])
    assert r.status == 203
    m = w.wait_log(r"[^\n]*%s[^\n]*" % re.escape(rid), timeout=3, start=start)
    assert m, "no access log line with the request id:\n" + w.stderr()[start:]
    line = m.group(0)
    assert " 203 " in line, line
    assert o.addr in line, line
    assert "/logged?status=203" in line, line


def test_target_passed_unchanged(hw):
    """weir does not normalise or decode the request target."""
    w, o = hw
    target = "/a%2Fb/../c/./d//e;p?x=%20&y=1&y=2&q=a/b?c:@!$&'()*+,="
    with HttpConn(w.port) as c:
        r = c.get(target)
        assert r.status == 200, r
    assert o.last().split(b"\r\n")[0] == ("GET %s HTTP/1.1" % target).encode()


def test_end_to_end_headers_kept_in_order_and_case(hw):
    r, j = echo(hw[0], headers=[("X-First", "1"), ("x-MiXeD-CaSe", "v"), ("X-Multi", "a"),
                                ("X-Multi", "b, c"), ("X-Empty", ""), ("X-Last", "z")])
    names = [k for k, v in j["headers"]]
    sent = ["X-First", "x-MiXeD-CaSe", "X-Multi", "X-Multi", "X-Empty", "X-Last"]
    got = [k for k in names if k.lower() in {x.lower() for x in sent}]
    assert got == sent, j["headers"]
    assert upstream_headers(j, "X-Multi") == ["a", "b, c"]
    assert upstream_headers(j, "X-Empty") == [""]


def test_request_body_headers_forwarded(hw):
    w, o = hw
    r, j = echo(w, method="POST", body=b"0123456789", headers=[("Content-Type", "text/x-test")])
    assert upstream_headers(j, "Content-Length") == ["10"], j["headers"]
    assert upstream_headers(j, "Content-Type") == ["text/x-test"]
    assert j["body_bytes"] == 10
