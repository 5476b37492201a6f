"""The admin endpoint: authentication, read endpoints, the runtime API
(add / patch / drain+delete servers, reload) under load."""

import os
import re
import time

from adminutil import TOKEN, Admin, Load, admin_extra
from weirtest import HttpConn, conf, free_port, pool, route, tf, wait_until


def start(procs, pools, routes=None, workers=2, token=TOKEN, bind=None, extra=""):
    """weir with an admin listener on bind:PORT (default 127.0.0.1)."""
    port = free_port()
    aport = free_port()
    address = "%s:%d" % (bind, aport) if bind else None
    text = conf(port, pools, routes=routes, workers=workers, log={"access": "off"},
                extra=admin_extra(aport, token, address) + "\n" + extra)
    w = procs.weir(text, port=port)
    a = Admin(aport, token)
    assert a.wait_ready(), w.stderr()
    return w, a


# ---------------------------------------------------------------- auth

def test_auth_loopback(procs):
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])])
    # reads are open on loopback
    for path in ("/stats", "/metrics", "/dashboard", "/healthz", "/"):
        r = a.get(path, token=None)
        assert r.status == 200, (path, r)
    # every change needs the token: 401 without, 403 wrong
    changes = [("POST", "/reload", None), ("POST", "/pools/api/servers", {"address": "127.0.0.1:1"}),
               ("PATCH", "/pools/api/servers/%s" % o.addr, {"weight": 2}),
               ("DELETE", "/pools/api/servers/%s" % o.addr, None)]
    for method, path, body in changes:
        r = a.request(method, path, body=body, token=None)
        assert r.status == 401, (method, path, r)
        assert r.header("WWW-Authenticate", "").startswith("Bearer"), r
        assert "Authorization" in r.json()["error"]
        r = a.request(method, path, body=body, token="wrong")
        assert r.status == 403, (method, path, r)
        assert r.json() == {"error": "wrong token"}
        r = a.request(method, path, body=body, headers=[("Authorization", "Basic dXNlcjpwdw==")], token=None)
        assert r.status == 401, r
    # nothing changed
    s = a.server("api", o.addr)
    assert s["weight"] == 1 and s["admin_state"] == "ready"
    r = a.request("POST", "/reload")
    assert r.status == 200, r


def test_auth_non_loopback_reads_need_token(procs):
    """Listening on every address (not loopback): reads need the token too,
    except the liveness check and the dashboard page, which holds no data
    (a browser cannot send a header when loading it; the page passes its
    ?token= on to /stats as a Bearer header)."""
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])], bind="*")
    for path in ("/stats", "/metrics", "/"):
        assert a.get(path, token=None).status == 401, path
        assert a.get(path, token="nope").status == 403, path
        assert a.get(path).status == 200, path
    assert a.get("/healthz", token=None).status == 200
    r = a.get("/dashboard", token=None)
    assert r.status == 200 and b"<html" in r.body.lower(), r
    assert "not loopback" in w.stderr()


def test_no_token_configured(procs):
    """Loopback without a token: reads work, changes are refused (403)."""
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])], token=None)
    assert a.get("/stats", token=None).status == 200
    r = a.request("POST", "/reload", token=None)
    assert r.status == 403 and "admin.token" in r.json()["error"], r
    r = a.request("POST", "/reload", token="anything")
    assert r.status == 403, r


# ---------------------------------------------------------------- reads

def test_read_endpoints(procs):
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])])
    r = a.get("/healthz", token=None)
    assert r.status == 200 and r.body == b"ok\n"
    r = a.get("/dashboard", token=None)
    assert r.status == 200
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.body.lstrip().lower().startswith(b"<!doctype html"), r.body[:100]
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "dashboard.html"), "rb") as f:
        assert r.body == f.read()  # embedded byte for byte
    r = a.request("HEAD", "/stats", token=None)
    assert r.status == 200 and r.body == b""
    r = a.get("/nope", token=None)
    assert r.status == 404 and "no such endpoint" in r.json()["error"]
    r = a.request("POST", "/stats", token=None)
    assert r.status == 405 and r.header("Allow") == "GET, HEAD"
    r = a.request("GET", "/reload")
    assert r.status == 405 and r.header("Allow") == "POST"
    r = a.get("/stats?window=5m", token=None)
    assert r.status == 400 and r.json() == {"error": "window must be 10s, 60s or all"}
    for win in ("10s", "60s", "all"):
        doc = a.stats("?window=" + win)
        assert list(doc["global"]["latency_ms"]) == [win]
        assert list(doc["pools"][0]["servers"][0]["ttfb_ms"]) == [win]
    doc = a.stats()
    assert list(doc["global"]["latency_ms"]) == ["10s", "60s", "all"]
    assert doc["version"] and doc["workers"] == 2
    assert abs(doc["time_ms"] / 1000.0 - time.time()) < 5
    assert doc["routes"] == [dict(doc["routes"][0], host="*", path_prefix="/", pool="api")]


def test_stats_counts_and_shape(procs):
    o1 = procs.origin("a")
    o2 = procs.origin("b", "--body-size", "1000")
    w, a = start(procs, [pool("p1", [o1]), pool("p2", [o2])],
                 routes=[route("p2", path_prefix="/two"), route("p1")])
    with HttpConn(w.port) as c:
        for _ in range(37):
            assert c.get("/").status == 200
        for _ in range(13):
            assert c.get("/two/x").status == 200
        assert c.get("/_ctl/nope").status == 404  # origin's 404: a 4xx through p1
    # the client closed: its connection leaves the gauges once weir saw the close
    assert wait_until(lambda: a.stats()["global"]["connections"]["client_idle"] == 0, tf(3))
    doc = a.stats()
    g = doc["global"]
    assert g["requests"] == 51
    assert g["responses"] == {"1xx": 0, "2xx": 50, "3xx": 0, "4xx": 1, "5xx": 0, "other": 0}
    assert g["upstream_errors"] == {"connect": 0, "timeout": 0, "reset": 0, "5xx": 0}
    assert g["latency_ms"]["all"]["count"] == 51
    assert g["connections"]["client_active"] == 0
    assert g["connections"]["upstream_idle"] >= 1
    p1, p2 = doc["pools"]
    assert (p1["name"], p1["requests"], p2["name"], p2["requests"]) == ("p1", 38, "p2", 13)
    s2 = p2["servers"][0]
    assert s2["address"] == o2.addr and s2["requests"] == 13
    assert s2["bytes_out"] >= 13 * 1000
    assert s2["state"] == "up" and s2["admin_state"] == "ready" and s2["active"] == 0 and s2["errors"] == 0
    assert s2["ttfb_ms"]["all"]["count"] == 13
    assert 0 < s2["ttfb_ms"]["all"]["p50"] <= s2["latency_ms"]["all"]["p50"] * 1.05
    assert set(s2["health"]) == {"checked", "last_ok", "last_status", "last_detail", "last_ms", "last_at_ms",
                                 "ejections", "slow_start_pct"}
    assert [(r["path_prefix"], r["pool"], r["requests"]) for r in doc["routes"]] == [("/two", "p2", 13),
                                                                                     ("/", "p1", 38)]
    # bytes_in counts what clients sent
    assert p2["bytes_in"] >= 13 * len("GET /two/x HTTP/1.1\r\n\r\n")


# ---------------------------------------------------------------- runtime API: errors

def test_api_bad_requests(procs):
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])])
    cases = [
        ({"address": "127.0.0.1:9", "weight": 0}, "weight must be an integer between 1 and 1000"),
        ({"address": "127.0.0.1:9", "weight": 1001}, "weight must be an integer between 1 and 1000"),
        ({"address": "127.0.0.1:9", "weight": "2"}, "weight must be an integer between 1 and 1000"),
        ({"address": "127.0.0.1:9", "weight": 1.5}, "weight must be an integer between 1 and 1000"),
        ({"weight": 2}, 'address must be a non-empty string "host:port"'),
        ({"address": 5}, 'address must be a non-empty string "host:port"'),
        ({"address": "127.0.0.1"}, "invalid address '127.0.0.1': missing port (expected host:port)"),
        ({"address": "127.0.0.1:70000"}, "invalid address '127.0.0.1:70000': port must be between 1 and 65535"),
        ({"address": "127.0.0.1:9", "color": "red"}, "unknown key 'color' (allowed: address, weight)"),
        ([1, 2], "the JSON body must be an object"),
    ]
    for body, msg in cases:
        r = a.request("POST", "/pools/api/servers", body=body)
        assert r.status == 400, (body, r)
        assert r.json() == {"error": msg}, (body, r)
    r = a.request("POST", "/pools/api/servers", raw=b'{"address": ')
    assert r.status == 400 and r.json()["error"].startswith("invalid JSON body"), r
    r = a.request("POST", "/pools/api/servers", raw=b"")
    assert r.status == 400 and r.json() == {"error": "missing JSON body"}
    r = a.request("POST", "/pools/api/servers", raw=b'{"address": "127.0.0.1:9", "address": "127.0.0.1:8"}')
    assert r.status == 400 and "duplicate" in r.json()["error"], r

    r = a.add("nope", "127.0.0.1:9")
    assert r.status == 404 and r.json() == {"error": "no pool named 'nope'"}
    r = a.add("api", o.addr)
    assert r.status == 409 and r.json() == {"error": "pool 'api' already has server %s" % o.addr}
    r = a.add("api", "localhost:%d" % o.port)  # same socket address written differently
    assert r.status in (409, 201), r  # localhost may resolve to ::1 first
    r = a.patch("api", "127.0.0.1:1", {"weight": 2})
    assert r.status == 404 and r.json() == {"error": "pool 'api' has no server 127.0.0.1:1"}
    r = a.delete("api", "127.0.0.1:1")
    assert r.status == 404
    r = a.delete("nope", o.addr)
    assert r.status == 404
    r = a.patch("api", o.addr, {"state": "off"})
    assert r.status == 400 and r.json() == {"error": 'state must be "drain", "maint" or "ready"'}
    r = a.patch("api", o.addr, {})
    assert r.status == 400 and r.json() == {"error": 'nothing to change: give "weight" and/or "state"'}
    r = a.patch("api", o.addr, {"weight": 0, "state": "maint"})
    assert r.status == 400  # nothing applied when any part is bad
    s = a.server("api", o.addr)
    assert s["weight"] == 1 and s["admin_state"] == "ready"
    r = a.request("PUT", "/pools/api/servers/%s" % o.addr, body={"weight": 2})
    assert r.status == 405 and r.header("Allow") == "PATCH, DELETE"


# ---------------------------------------------------------------- runtime API under load

def origin_requests(o):
    return o.stats()["requests"]


def test_add_server_under_load(procs):
    a1 = procs.origin("a")
    b = procs.origin("b")
    w, a = start(procs, [pool("api", [a1])])
    load = Load(w.port, 8, max_seconds=30).start()
    try:
        assert wait_until(lambda: origin_requests(a1) > 200, tf(10))
        r = a.add("api", b.addr, weight=2)
        assert r.status == 201, r
        assert r.json() == {"pool": "api", "address": b.addr, "weight": 2, "state": "up",
                            "admin_state": "ready", "active": r.json()["active"]}
        # the new server starts receiving requests from every worker
        assert wait_until(lambda: origin_requests(b) > 200, tf(10)), b.stats()
        s = a.server("api", b.addr)
        assert s is not None and s["weight"] == 2
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert load.origins["b"] > 0 and load.origins["a"] > 0
    assert "added server %s to pool 'api'" % b.addr in w.stderr()


def test_drain_and_delete_under_load(procs):
    os_ = [procs.origin(n) for n in ("a", "b", "c")]
    w, a = start(procs, [pool("api", os_)])
    load = Load(w.port, 8, max_seconds=30).start()
    try:
        assert wait_until(lambda: all(origin_requests(o) > 100 for o in os_), tf(10))
        victim = os_[1]
        r = a.delete("api", victim.addr)
        assert r.status == 202, r
        body = r.json()
        assert body["status"] == "draining" and body["address"] == victim.addr and body["admin_state"] == "drain"
        assert a.wait_gone("api", victim.addr), a.stats()
        # no new request reaches it
        n = origin_requests(victim)
        time.sleep(0.5)
        assert origin_requests(victim) == n
        r = a.delete("api", victim.addr)
        assert r.status == 404
        # the others keep serving
        m = origin_requests(os_[0])
        assert wait_until(lambda: origin_requests(os_[0]) > m + 100, tf(10))
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert "server %s removed from pool 'api' (drained)" % victim.addr in w.stderr()


def test_drain_waits_for_inflight_long_request(procs):
    """A long response in flight on the deleted server completes; no new
    request goes to it meanwhile; it is removed once that request ends."""
    x = procs.origin("x")
    y = procs.origin("y")
    w, a = start(procs, [pool("api", [x, y])], workers=1)
    size = 200000
    slow = None
    for _ in range(10):  # land the slow request on x (round robin)
        c = HttpConn(w.port, timeout=tf(20))
        c.send("GET /slow?size=%d&delay_ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        head = c.read_head()
        if head.origin == "x":
            slow = (c, head)
            break
        c.read_body(head)
        c.close()
    assert slow is not None
    c, head = slow
    t0 = time.monotonic()
    r = a.delete("api", x.addr)
    assert r.status == 202 and r.json()["active"] == 1, r
    # while the slow response streams: x stays (draining), new requests go to y
    n_x = origin_requests(x)
    with HttpConn(w.port) as c2:
        for _ in range(20):
            r2 = c2.get("/")
            assert r2.status == 200 and r2.origin == "y", r2
    assert origin_requests(x) == n_x
    s = a.server("api", x.addr)
    assert s is not None and s["state"] == "draining" and s["active"] == 1
    # the slow response completes whole
    full = c.read_body(head)
    c.close()
    assert full.body_len == size
    assert time.monotonic() - t0 >= 1.0
    assert a.wait_gone("api", x.addr, timeout=3)
    assert [s["address"] for s in a.stats()["pools"][0]["servers"]] == [y.addr]


def test_patch_weight_and_state(procs):
    a1 = procs.origin("a")
    b = procs.origin("b")
    w, a = start(procs, [pool("api", [(a1, 1), (b, 1)], policy="weighted_round_robin")], workers=1)

    def split(n=400):
        cnt = {"a": 0, "b": 0}
        with HttpConn(w.port) as c:
            for _ in range(n):
                r = c.get("/")
                assert r.status == 200
                cnt[r.origin] += 1
        return cnt

    assert split() == {"a": 200, "b": 200}
    r = a.patch("api", b.addr, {"weight": 3})
    assert r.status == 200 and r.json()["weight"] == 3, r
    assert a.server("api", b.addr)["weight"] == 3
    assert split() == {"a": 100, "b": 300}
    r = a.patch("api", b.addr, {"state": "maint"})
    assert r.status == 200 and r.json()["admin_state"] == "maint" and r.json()["state"] == "maint", r
    assert split(50) == {"a": 50, "b": 0}
    r = a.patch("api", b.addr, {"state": "ready", "weight": 1})
    assert r.status == 200 and r.json()["admin_state"] == "ready" and r.json()["weight"] == 1, r
    assert wait_until(lambda: a.server("api", b.addr)["state"] == "up", tf(5))
    got = split()
    assert got["b"] > 0, got
    r = a.patch("api", b.addr, {"state": "drain"})
    assert r.status == 200 and r.json()["state"] == "draining"
    assert split(50) == {"a": 50, "b": 0}


def test_reload_api(procs, tmp_path):
    a1 = procs.origin("a")
    b = procs.origin("b")
    w, a = start(procs, [pool("api", [a1])])
    # a runtime change...
    assert a.add("api", b.addr).status == 201
    assert a.server("api", b.addr) is not None
    # ...lasts until the next reload from file
    r = a.request("POST", "/reload")
    assert r.status == 200, r
    body = r.json()
    assert body["status"] == "reloaded" and body["pools"] == 1 and body["routes"] == 1
    assert a.server("api", b.addr) is None
    assert a.server("api", a1.addr) is not None
    # a bad file is refused with its FILE:LINE errors, the running config stays
    good = w.conf_path.read_text()
    w.conf_path.write_text(good.replace('policy = "round_robin";', 'policy = "fastest";'))
    r = a.request("POST", "/reload")
    assert r.status == 400, r
    err = r.json()
    assert err["error"] == "configuration refused; the running configuration stays"
    assert len(err["errors"]) == 1
    assert re.match(r"^%s:\d+: " % re.escape(str(w.conf_path)), err["errors"][0]), err
    assert "fastest" in err["errors"][0]
    with HttpConn(w.port) as c:
        assert c.get("/").status == 200
    w.conf_path.write_text(good)
    assert a.request("POST", "/reload").status == 200


def test_delete_cancelled_by_reload(procs):
    """A pending removal (server busy) is cancelled by a reload from file
    that still lists the server: it is ready again."""
    x = procs.origin("x")
    w, a = start(procs, [pool("api", [x])], workers=1)
    c = HttpConn(w.port, timeout=tf(20))
    c.send("GET /slow?size=1000&delay_ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
    head = c.read_head()
    assert a.delete("api", x.addr).status == 202
    assert a.request("POST", "/reload").status == 200
    c.read_body(head)
    c.close()
    time.sleep(0.5)
    s = a.server("api", x.addr)
    assert s is not None and s["admin_state"] == "ready", s
    assert "reload cancelled the removal" in w.stderr()
