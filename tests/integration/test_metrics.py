"""Statistics end to end: a known load through weir, then /stats and
/metrics (checked by promtool) must report it exactly; error kinds, retries,
connection gauges, rates and the stats on/off switch."""

import time

import pytest

from adminutil import Admin, Load, admin_extra, parse_metrics, promtool_check
from weirtest import TIME_FACTOR, HttpConn, conf, free_port, pool, route, tf, wait_until


def start(procs, pools, routes=None, workers=2, extra="", timeouts=None):
    port = free_port()
    aport = free_port()
    text = conf(port, pools, routes=routes, workers=workers, log={"access": "off"}, timeouts=timeouts,
                extra=admin_extra(aport) + "\n" + extra)
    w = procs.weir(text, port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    return w, a


def within(x, want, pct):
    return abs(x - want) <= want * pct / 100.0


# p50 tolerance: 10 % of the added latency; sanitizer builds (WEIR_TIME_FACTOR
# > 1) add milliseconds of their own per request under load, so it scales.
P50_PCT = 10 * TIME_FACTOR


@pytest.fixture(scope="module")
def known_load(mprocs):
    """1,000 requests to an origin adding 20 ms, 1,000 to one adding 80 ms
    (one pool each), 25 concurrent keep-alive clients per pool."""
    fast = mprocs.origin("fast", "--delay-ms", "20")
    slow = mprocs.origin("slow", "--delay-ms", "80")
    port, aport = free_port(), free_port()
    text = conf(port, [pool("fast", [fast]), pool("slow", [slow])],
                routes=[route("fast", path_prefix="/fast"), route("slow")], workers=2, log={"access": "off"},
                extra=admin_extra(aport))
    w = mprocs.weir(text, port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    loads = [Load(w.port, 25, target="/fast/x", count=40).start(),
             Load(w.port, 25, target="/slow/x", count=40).start()]
    for ld in loads:
        ld.join()
        assert ld.errors == [], ld.errors[:5]
        assert ld.sent == 1000
    return w, a, fast, slow


def test_stats_exact_counts_and_p50(known_load):
    w, a, fast, slow = known_load
    doc = a.stats()
    for o, added in ((fast, 20.0), (slow, 80.0)):
        s = a.server(o.name, o.addr, doc)
        assert s["requests"] == 1000, s
        assert s["responses"]["2xx"] == 1000
        assert s["errors"] == 0
        for key in ("latency_ms", "ttfb_ms"):
            for win in ("10s", "60s", "all"):
                lat = s[key][win]
                assert lat["count"] == 1000, (key, win, lat)
                assert within(lat["p50"], added, P50_PCT), (o.name, key, win, lat)
                assert lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
                assert lat["mean"] >= added * 0.98, lat  # (its upper side is at the mercy of machine load)
    assert doc["global"]["requests"] == 2000
    assert doc["global"]["latency_ms"]["all"]["count"] == 2000
    assert [p["requests"] for p in doc["pools"]] == [1000, 1000]
    assert [r["requests"] for r in doc["routes"]] == [1000, 1000]


def test_metrics_promtool_and_histogram_counts(known_load):
    w, a, fast, slow = known_load
    text = a.metrics()
    res = promtool_check(text)
    if res is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    rc, out = res
    assert rc == 0, out + "\n" + text[:3000]
    m = parse_metrics(text)
    for o, added in ((fast, 0.020), (slow, 0.080)):
        lab = 'pool="%s",server="%s"' % (o.name, o.addr)
        assert m["weir_requests_total{%s}" % lab] == 1000
        assert m['weir_responses_total{%s,class="2xx"}' % lab] == 1000
        for h in ("weir_request_duration_seconds", "weir_upstream_ttfb_seconds"):
            assert m["%s_count{%s}" % (h, lab)] == 1000
            assert m['%s_bucket{%s,le="+Inf"}' % (h, lab)] == 1000
            assert m["%s_sum{%s}" % (h, lab)] / 1000 >= added * 0.98
            # cumulative and monotone; the bucket above the added latency holds most
            les = [(float(k.split('le="')[1].rstrip('"}')), v) for k, v in m.items()
                   if k.startswith("%s_bucket{%s," % (h, lab)) and "+Inf" not in k]
            les.sort()
            assert all(les[i][1] <= les[i + 1][1] for i in range(len(les) - 1)), les
            below = max(v for le, v in les if le < added * 0.9)
            above = min(v for le, v in les if le >= added * 1.3)
            assert below < 100 and above > 800, les
        assert m["weir_server_up{%s}" % lab] == 1
        assert m["weir_server_weight{%s}" % lab] == 1
        assert m["weir_server_active_requests{%s}" % lab] == 0
    assert m["weir_proxy_requests_total"] == 2000
    assert m['weir_pool_requests_total{pool="fast"}'] == 1000
    assert m['weir_connections{side="client",state="active"}'] == 0
    assert m['weir_connections{side="upstream",state="idle"}'] >= 2


def test_rates(known_load):
    w, a, fast, slow = known_load
    # the load ran in the last few seconds: the 60 s rate is its average
    g = a.stats()["global"]
    assert g["rps"]["60s"] > 0, g["rps"]
    assert g["rps"]["10s"] >= g["rps"]["60s"] * 0.99 or g["rps"]["10s"] > 0


def test_rps_1s_under_steady_load(procs):
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])])
    load = Load(w.port, 4, max_seconds=20).start()
    try:
        time.sleep(2.2)
        g = a.stats()["global"]
        n0 = g["requests"]
        time.sleep(1.0)
        g = a.stats()["global"]
        per_s = g["requests"] - n0
        assert g["rps"]["1s"] > 0
        assert 0.5 * per_s <= g["rps"]["1s"] <= 2 * per_s, (g["rps"], per_s)
    finally:
        load.stop()
    assert load.errors == []


def test_upstream_errors_and_retries(procs):
    ok = procs.origin("ok")
    fail = procs.origin("fail", "--fail-pct", "100", "--fail-status", "503")
    slow = procs.origin("slow", "--delay-ms", "3000")
    dead = "127.0.0.1:%d" % free_port()  # nothing listens
    w, a = start(procs, [pool("dead", [dead, ok], retries=1), pool("fail", [fail], retries=0),
                         pool("slow", [slow], retries=0)],
                 routes=[route("fail", path_prefix="/fail"), route("slow", path_prefix="/late"), route("dead")],
                 workers=1, timeouts={"upstream_response_ms": 300})
    with HttpConn(w.port) as c:
        for _ in range(10):
            r = c.get("/")
            assert r.status == 200 and r.origin == "ok"  # the dead server's attempt was retried
        for _ in range(5):
            assert c.get("/fail").status == 503
    with HttpConn(w.port, timeout=tf(10)) as c:
        assert c.get("/late").status == 504
    doc = a.stats()
    d = a.server("dead", dead, doc)
    assert d["upstream_errors"]["connect"] >= 1 and d["errors"] == d["upstream_errors"]["connect"]
    pdead = doc["pools"][0]
    assert pdead["requests"] == 10 and pdead["retries"] >= 1
    assert pdead["upstream_errors"]["connect"] == d["upstream_errors"]["connect"]
    f = a.server("fail", fail.addr, doc)
    assert f["upstream_errors"]["5xx"] == 5 and f["responses"]["5xx"] == 5 and f["errors"] == 5
    s = a.server("slow", slow.addr, doc)
    assert s["upstream_errors"]["timeout"] == 1 and s["responses"]["5xx"] == 1
    g = doc["global"]
    assert g["upstream_errors"]["5xx"] == 5 and g["upstream_errors"]["timeout"] == 1
    m = parse_metrics(a.metrics())
    assert m['weir_upstream_errors_total{pool="fail",server="%s",kind="5xx"}' % fail.addr] == 5
    assert m['weir_upstream_errors_total{pool="slow",server="%s",kind="timeout"}' % slow.addr] == 1


def test_connection_gauges(procs):
    o = procs.origin("a", "--delay-ms", "1500")
    w, a = start(procs, [pool("api", [o])], workers=2)
    idle = [HttpConn(w.port) for _ in range(5)]
    busy = [HttpConn(w.port) for _ in range(3)]
    try:
        for c in idle:
            c.send("GET /_ctl/stats HTTP/1.1\r\nHost: t\r\n\r\n")  # answered at once
            assert c.read_response().status == 200
        for c in busy:
            c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # answered after 1.5 s
        assert wait_until(lambda: a.stats()["global"]["connections"]["client_active"] == 3, tf(3))
        conns = a.stats()["global"]["connections"]
        assert conns == dict(conns, client_active=3, client_idle=5, upstream_active=3), conns
        for c in busy:
            assert c.read_response().status == 200
        conns = a.stats()["global"]["connections"]
        assert conns["client_active"] == 0 and conns["client_idle"] == 8 and conns["upstream_active"] == 0
        assert conns["upstream_idle"] >= 3
    finally:
        for c in idle + busy:
            c.close()
    assert wait_until(lambda: a.stats()["global"]["connections"]["client_idle"] == 0, tf(3))


def test_stats_switched_off(procs):
    o = procs.origin("a")
    w, a = start(procs, [pool("api", [o])], extra="stats = { enabled = false; };")
    with HttpConn(w.port) as c:
        for _ in range(20):
            assert c.get("/").status == 200
    doc = a.stats()
    assert doc["global"]["requests"] == 0
    assert a.server("api", o.addr)["requests"] == 0
    # turning it on by reload starts counting
    w.reload(w.conf_path.read_text().replace("enabled = false", "enabled = true"))
    assert w.wait_log("configuration reloaded")
    with HttpConn(w.port) as c:
        for _ in range(7):
            assert c.get("/").status == 200
    assert a.server("api", o.addr)["requests"] == 7
