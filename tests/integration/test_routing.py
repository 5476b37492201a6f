"""Routing: host (exact, "*.suffix", "*") and path_prefix; first match wins;
Host with a port is matched without it; no matching route gives 404."""

import pytest

from weirtest import HttpConn, pool, route


@pytest.fixture(scope="module")
def rt(mprocs):
    o = {n: mprocs.origin(n) for n in ("A", "B", "C", "D")}
    pools = [pool(n.lower(), [o[n]]) for n in ("A", "B", "C", "D")]
    routes = [
        route("b", host="api.example.com", path_prefix="/v2/"),
        route("a", host="api.example.com", path_prefix="/"),
        route("c", host="*.example.com", path_prefix="/"),
        route("a", host="shadow.example.com", path_prefix="/"),  # shadowed by the line above
        route("d", host="*", path_prefix="/catch/"),
    ]
    w = mprocs.weir(pools=pools, routes=routes)
    return w, o


CASES = [
    ("api.example.com", "/v2/items", "B"),
    ("api.example.com", "/v1/items", "A"),
    ("api.example.com", "/", "A"),
    ("api.example.com:8080", "/v2/x", "B"),  # port stripped
    ("API.Example.COM", "/v1/x", "A"),  # host names are case-insensitive
    ("www.example.com", "/v2/items", "C"),
    ("a.b.example.com", "/x", "C"),
    ("www.example.com:443", "/x", "C"),
    ("shadow.example.com", "/x", "C"),  # first match wins
    ("other.test", "/catch/x", "D"),
    ("api.example.com", "/catch/x", "A"),  # first match wins over the later "*" route
    ("www.example.com", "/catch/x", "C"),
]


@pytest.mark.parametrize("host,path,want", CASES, ids=["%s%s" % (c[0], c[1]) for c in CASES])
def test_route(rt, host, path, want):
    w, o = rt
    with HttpConn(w.port) as c:
        r = c.get(path, host=host)
    assert r.status == 200, r
    assert r.origin == want, r
    assert r.body == ("%s GET %s\n" % (want, path)).encode(), r


@pytest.mark.parametrize("host,path", [
    ("other.test", "/x"),
    ("other.test", "/catch"),  # prefix "/catch/" does not match "/catch"
    ("example.org", "/"),
    ("notexample.com", "/v2/"),  # "*.example.com" is a suffix match on a label boundary
])
def test_no_route_is_404(rt, host, path):
    w, o = rt
    before = {n: x.stats()["requests"] for n, x in o.items()}
    with HttpConn(w.port) as c:
        r = c.get(path, host=host)
        assert r.status == 404, r
        assert r.origin is None
        # the connection stays usable after a 404
        r2 = c.get("/v1/ok", host="api.example.com")
        assert r2.status == 200 and r2.origin == "A"
    after = {n: x.stats()["requests"] for n, x in o.items()}
    # only the follow-up request reached an origin (A); stats calls are not counted
    assert {n: after[n] - before[n] for n in o} == {"A": 1, "B": 0, "C": 0, "D": 0}


def test_keepalive_connection_routes_each_request(rt):
    """Each request on one connection is routed on its own Host/path."""
    w, o = rt
    seq = [("api.example.com", "/v2/a", "B"), ("api.example.com", "/v1/a", "A"),
           ("x.example.com", "/a", "C"), ("zzz", "/catch/a", "D"), ("api.example.com", "/v2/b", "B")]
    with HttpConn(w.port) as c:
        for host, path, want in seq:
            r = c.get(path, host=host)
            assert (r.status, r.origin) == (200, want), (host, path, r)


def test_absolute_form_authority_routes(rt):
    """RFC 9112 3.2.2: with an absolute-form target the host of the target is
    used, not the Host header."""
    w, o = rt
    with HttpConn(w.port) as c:
        r = c.get("http://www.example.com/v2/x", host="api.example.com")
    assert r.status == 200, r
    assert r.origin == "C", r
