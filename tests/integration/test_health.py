"""Health: active checks (http status / body / hang, tcp), passive ejection
(connect errors, 5xx, growth of the eject time, max_ejected_pct), slow start,
failover under load, 503 + Retry-After when every server is down, panic mode.

States are observed through weir's error log (every transition is one line
with a millisecond timestamp), through which origin answers (X-Origin) and
through the origins' own /_ctl/stats counters. Time limits follow the
configured intervals: "down within interval x fall + one interval", "back
within interval x rise + one interval", each with a small scheduling margin
(scaled by WEIR_TIME_FACTOR for sanitizer builds).
"""

import re
import time

from healthutil import Load, find_events, log_events, shares, wait_event
from weirtest import LOOPBACK, HttpConn, conf, free_port, pool, route, tf

MARGIN = 0.2  # s: scheduling slack on top of a configured bound


def bound(seconds):
    return tf(seconds + MARGIN)


def addr_rx(o):
    return re.escape(o.addr if hasattr(o, "addr") else o)


def origins_hit(port, n, path="/x"):
    """X-Origin of n sequential requests on one keep-alive connection."""
    out = []
    with HttpConn(port) as c:
        for i in range(n):
            r = c.get("%s/%d" % (path, i))
            assert r.status == 200, r
            out.append(r.origin)
    return out


# ---------------------------------------------------------------------------
# failover under load
# ---------------------------------------------------------------------------

def test_kill_one_under_load(procs):
    """kill -9 one of three origins under steady load: no GET fails, the dead
    server is ejected in under a second and gets no request after that, it is
    DOWN by checks within interval x fall + interval; restarted, it is UP
    within interval x rise + interval and its share ramps up over slow start."""
    IV, FALL, RISE, SS = 500, 3, 2, 4000
    a, b, c = procs.origin("a"), procs.origin("b"), procs.origin("c")
    p = pool("p", [a, b, c], policy="weighted_round_robin", retries=2,
             health={"interval_ms": IV, "timeout_ms": 250, "fall": FALL, "rise": RISE},
             passive={"consecutive_failures": 3, "eject_ms": 30000, "max_eject_ms": 60000},
             slow_start_ms=SS)
    w = procs.weir(pools=[p], workers=2, log={"access": "off"})
    baddr = addr_rx(b)

    with Load(w.port, conns=4, pause=0.002, limit=tf(30)) as load:
        time.sleep(1.0)
        before = {o: load.count(origin=o) for o in "abc"}
        assert all(v > 50 for v in before.values()), before

        t_kill = time.time()
        b.proc.kill()
        b.proc.wait(5)
        ej = wait_event(w, r"server %s EJECTED" % baddr, bound(1.0), since=t_kill - 0.05)
        assert ej is not None, "no passive ejection"
        assert ej[0] - t_kill < tf(1.0), "ejected %.3f s after the kill" % (ej[0] - t_kill)

        down = wait_event(w, r"server %s DOWN" % baddr, bound(IV * (FALL + 1) / 1000.0), since=t_kill)
        assert down is not None, "not DOWN by checks"
        assert down[0] - t_kill <= tf(IV * (FALL + 1) / 1000.0 + MARGIN)

        # After the ejection no request is sent to the dead server: every
        # attempt would be logged as a failed connect (50 ms for attempts
        # already started when the ejection happened).
        late = find_events(w, r"server %s: (connect failed|connection reset)" % baddr, since=ej[0] + 0.05)
        assert not late, late[:5]

        time.sleep(0.5)
        t_restart = time.time()
        b = procs.origin("b", port=b.port)
        up = wait_event(w, r"server %s UP after %d passed checks" % (baddr, RISE),
                        bound(IV * (RISE + 1) / 1000.0), since=t_restart)
        assert up is not None, "not back UP"
        assert up[0] - t_restart <= tf(IV * (RISE + 1) / 1000.0 + MARGIN)
        time.sleep(SS / 1000.0 + 1.3)

    results, errors = load.snapshot()
    assert not errors, errors[:10]
    assert len(results) > 2000
    sh = shares(results, "b", up[0], up[0] + SS / 1000.0 + 1.0, 1.0)
    frac = [s for _, s, _ in sh]
    assert all(n > 100 for _, _, n in sh), sh
    # a ramp, not a jump: ~6 %, 16 %, 24 %, 30 % in the four slow-start
    # seconds (weights r/(2+r)), then a full third
    assert frac[0] < 0.12, sh
    assert frac[3] > frac[0] + 0.1, sh
    for i in range(1, 4):
        assert frac[i] >= frac[i - 1] - 0.04, sh
    assert 0.26 < frac[4] < 0.41, sh


# ---------------------------------------------------------------------------
# active checks
# ---------------------------------------------------------------------------

def two_origin_weir(procs, health, **kw):
    a, b = procs.origin("a"), procs.origin("b")
    w = procs.weir(pools=[pool("p", [a, b], health=health, **kw)], log={"access": "off"})
    return w, a, b


def test_health_500_taken_out_and_back(procs):
    IV, FALL, RISE = 300, 2, 2
    w, a, b = two_origin_weir(procs, {"interval_ms": IV, "timeout_ms": 150, "fall": FALL, "rise": RISE})
    assert set(origins_hit(w.port, 10)) == {"a", "b"}
    t0 = time.time()
    b.set(health_status=500)
    down = wait_event(w, r"server %s DOWN after %d failed checks: status 500 not in 200-399" % (addr_rx(b), FALL),
                      bound(IV * (FALL + 1) / 1000.0), since=t0)
    assert down is not None
    assert down[0] - t0 <= tf(IV * (FALL + 1) / 1000.0 + MARGIN)
    served = b.stats()["requests"]
    assert origins_hit(w.port, 20) == ["a"] * 20
    assert b.stats()["requests"] == served  # it still serves, but gets nothing
    assert b.stats()["health_checks"] > 0

    t1 = time.time()
    b.set(health_status=200)
    up = wait_event(w, r"server %s UP after %d passed checks" % (addr_rx(b), RISE),
                    bound(IV * (RISE + 1) / 1000.0), since=t1)
    assert up is not None
    assert up[0] - t1 <= tf(IV * (RISE + 1) / 1000.0 + MARGIN)
    assert "b" in origins_hit(w.port, 10)
    # one line per transition
    assert len(find_events(w, r"server %s DOWN" % addr_rx(b))) == 1
    assert len(find_events(w, r"server %s UP" % addr_rx(b))) == 1


def test_health_hang_times_out(procs):
    IV, FALL = 300, 2
    w, a, b = two_origin_weir(procs, {"interval_ms": IV, "timeout_ms": 150, "fall": FALL, "rise": 1})
    t0 = time.time()
    b.set(health_hang=1)
    down = wait_event(w, r"server %s DOWN after %d failed checks: timeout after 150 ms" % (addr_rx(b), FALL),
                      bound(IV * (FALL + 1) / 1000.0 + 0.15), since=t0)
    assert down is not None, w.stderr_tail()
    assert origins_hit(w.port, 10) == ["a"] * 10
    b.set(health_hang=0)
    assert wait_event(w, r"server %s UP after 1 passed checks" % addr_rx(b), bound(2 * IV / 1000.0), since=t0)


def test_expect_body_mismatch(procs):
    IV = 300
    w, a, b = two_origin_weir(procs, {"interval_ms": IV, "timeout_ms": 150, "fall": 1, "rise": 1,
                                      "expect_body": "ok"})
    time.sleep(2.5 * IV / 1000.0)
    assert not find_events(w, r"DOWN")  # "ok\n" is the origins' default body
    t0 = time.time()
    b.set(health_body="sick")
    down = wait_event(w, r"server %s DOWN after 1 failed checks: status 200, body mismatch" % addr_rx(b),
                      bound(2 * IV / 1000.0), since=t0)
    assert down is not None
    assert origins_hit(w.port, 10) == ["a"] * 10
    b.set(health_body="all+ok")
    assert wait_event(w, r"server %s UP" % addr_rx(b), bound(2 * IV / 1000.0), since=t0)


def test_tcp_check(procs):
    """A tcp check passes against a port that does not speak HTTP (an http
    check against the same port fails), and fails when nothing listens."""
    IV = 200
    t = procs.origin("t", "--tcp")
    web = procs.origin("web")
    pools = [
        pool("tcp", [t, web], health={"type": "tcp", "interval_ms": IV, "timeout_ms": 100, "fall": 2, "rise": 1}),
        pool("http", [t, web], health={"type": "http", "interval_ms": IV, "timeout_ms": 100, "fall": 2, "rise": 1}),
    ]
    w = procs.weir(pools=pools, routes=[route("tcp", path_prefix="/t/"), route("http")], log={"access": "off"})
    assert wait_event(w, r"pool http server %s DOWN after 2 failed checks" % addr_rx(t), bound(3 * IV / 1000.0))
    time.sleep(2 * IV / 1000.0)
    assert not find_events(w, r"pool tcp server .* DOWN")
    t0 = time.time()
    t.proc.kill()
    t.proc.wait(5)
    assert wait_event(w, r"pool tcp server %s DOWN after 2 failed checks: connect refused" % addr_rx(t),
                      bound(3 * IV / 1000.0), since=t0)
    t0 = time.time()
    procs.origin("t", "--tcp", port=t.port)
    assert wait_event(w, r"pool tcp server %s UP after 1 passed checks: connected" % addr_rx(t),
                      bound(2 * IV / 1000.0), since=t0)
    assert not find_events(w, r"pool http server %s UP" % addr_rx(t))


# ---------------------------------------------------------------------------
# passive ejection
# ---------------------------------------------------------------------------

def ejection_timeline(w):
    """[(t, addr, 'ejected'|'readmitted', ms)] in log order."""
    out = []
    for t, _, msg in log_events(w.stderr()):
        m = re.search(r"server (\S+) EJECTED for (\d+) ms", msg)
        if m:
            out.append((t, m.group(1), "ejected", int(m.group(2))))
        m = re.search(r"server (\S+) re-admitted", msg)
        if m:
            out.append((t, m.group(1), "readmitted", 0))
    return out


def test_5xx_ejection_growth_and_cap(procs):
    """Two of three origins answer 5xx to everything. Each is ejected after 3
    consecutive 5xx, re-admitted after eject_ms, ejected twice as long the
    next time; never more than max_ejected_pct (50 % of 3 = 1) at once.
    With count_5xx off a 5xx-only server is never ejected."""
    EJ = 600
    a = procs.origin("a")
    b = procs.origin("b", "--fail-pct", 100, "--fail-status", 503)
    c = procs.origin("c", "--fail-pct", 100, "--fail-status", 500)
    d = procs.origin("d", "--fail-pct", 100, "--fail-status", 500)
    passive = {"consecutive_failures": 3, "count_5xx": True, "eject_ms": EJ, "max_eject_ms": 4 * EJ,
               "max_ejected_pct": 50}
    pools = [pool("p", [a, b, c], passive=passive),
             pool("n", [d], passive=dict(passive, count_5xx=False))]
    w = procs.weir(pools=pools, routes=[route("n", path_prefix="/n/"), route("p")], log={"access": "off"})
    with Load(w.port, conns=2, pause=0.005, limit=tf(20)):
        wait_event(w, r"EJECTED for %d ms" % (2 * EJ), tf(8))
        time.sleep(0.3)
    with HttpConn(w.port) as conn:
        for i in range(20):
            assert conn.get("/n/%d" % i).status == 500
    tl = ejection_timeline(w)
    assert tl, w.stderr_tail()
    # never two ejected at once
    out = set()
    for t, addr, kind, ms in tl:
        if kind == "ejected":
            out.add(addr)
            assert len(out) <= 1, tl
        else:
            out.discard(addr)
    assert {addr for _, addr, _, _ in tl} <= {b.addr, c.addr}
    assert find_events(w, r"not ejected after \d+ consecutive failures .*1 of 3 servers already ejected")
    # growth: first ejection of a server eject_ms, the second one 2 x eject_ms,
    # re-admitted when that time is over (100 ms control tick)
    for o in (b, c):
        ej = [(t, ms) for t, addr, kind, ms in tl if addr == o.addr and kind == "ejected"]
        re_ = [t for t, addr, kind, _ in tl if addr == o.addr and kind == "readmitted"]
        if len(ej) >= 2:
            assert ej[0][1] == EJ and ej[1][1] == 2 * EJ, ej
        for (t, ms), tr in zip(ej, re_):
            assert ms / 1000.0 - 0.02 <= tr - t <= tf(ms / 1000.0 + 0.25), (o.name, t, ms, tr)
    assert any(len([1 for _, addr, k, _ in tl if addr == o.addr and k == "ejected"]) >= 2 for o in (b, c)), tl
    assert not find_events(w, r"server %s EJECTED" % addr_rx(d))
    assert not find_events(w, r"server %s EJECTED" % addr_rx(a))


def test_connect_failures_eject_without_checks(procs):
    """Passive only (no active checks): a dead server is ejected after
    consecutive_failures connect errors, re-admitted after eject_ms, ejected
    again at once (for twice as long) while it is still dead; no GET fails."""
    a = procs.origin("a")
    dead = "%s:%d" % (LOOPBACK, free_port())
    p = pool("p", [a, dead], retries=1,
             passive={"consecutive_failures": 2, "eject_ms": 400, "max_eject_ms": 10000})
    w = procs.weir(pools=[p], log={"access": "off"})
    with Load(w.port, conns=2, pause=0.005, limit=tf(10)) as load:
        assert wait_event(w, r"server %s EJECTED for 800 ms" % re.escape(dead), tf(3))
    results, errors = load.snapshot()
    assert not errors, errors[:5]
    assert {o for _, _, _, o in results} == {"a"}


# ---------------------------------------------------------------------------
# every server down
# ---------------------------------------------------------------------------

def test_all_down_503_retry_after(procs):
    IV = 200
    a = procs.origin("a", "--health-status", 500)
    b = procs.origin("b", "--health-status", 500)
    p = pool("p", [a, b], panic=False, health={"interval_ms": IV, "timeout_ms": 100, "fall": 1, "rise": 1})
    w = procs.weir(pools=[p], log={"access": "off"})
    for o in (a, b):
        assert wait_event(w, r"server %s DOWN" % addr_rx(o), bound(2 * IV / 1000.0))
    with HttpConn(w.port) as c:
        for i in range(5):
            t0 = time.monotonic()
            r = c.get("/x/%d" % i)
            dt = time.monotonic() - t0
            assert r.status == 503, r
            assert r.header("Retry-After") == "1", r
            assert dt < tf(0.05), dt
            if "close" in (r.header("Connection") or "").lower():
                break
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 0
    assert wait_event(w, r"pool p: every server is down and panic mode is off", tf(1))
    assert len(find_events(w, r"pool p: every server is down")) == 1


def test_panic_mode(procs):
    IV = 200
    a = procs.origin("a", "--health-status", 500)
    b = procs.origin("b", "--health-status", 500)
    p = pool("p", [a, b], health={"interval_ms": IV, "timeout_ms": 100, "fall": 1, "rise": 1})
    w = procs.weir(pools=[p], log={"access": "off"})
    assert wait_event(w, r"pool p: every server is down, entering panic mode", bound(3 * IV / 1000.0))
    # every request is served, by both servers
    seen = origins_hit(w.port, 20)
    assert set(seen) == {"a", "b"}, seen
    time.sleep(0.5)
    assert len(find_events(w, r"entering panic mode")) == 1
    t0 = time.time()
    a.set(health_status=200)
    assert wait_event(w, r"pool p: leaving panic mode, 1 of 2 servers up", bound(3 * IV / 1000.0), since=t0)
    assert origins_hit(w.port, 10) == ["a"] * 10
    assert len(find_events(w, r"leaving panic mode")) == 1


# ---------------------------------------------------------------------------
# reload
# ---------------------------------------------------------------------------

def test_reload_keeps_state_and_stops_removed(procs):
    """A server kept by a reload keeps its state (a DOWN server stays down,
    no new rise/fall run from scratch); a server removed by a reload is no
    longer checked."""
    IV = 200
    a, b, c = procs.origin("a"), procs.origin("b"), procs.origin("c")
    hc = {"interval_ms": IV, "timeout_ms": 100, "fall": 1, "rise": 3}
    port = free_port()

    def cfg(servers):
        return conf(port, [pool("p", servers, health=hc)], log={"access": "off"})

    w = procs.weir(cfg([a, b]), port=port)
    b.set(health_status=500)
    assert wait_event(w, r"server %s DOWN" % addr_rx(b), bound(2 * IV / 1000.0))
    t0 = time.time()
    w.reload(cfg([a, b, c]))
    assert wait_event(w, r"configuration reloaded", tf(3), since=t0)
    assert set(origins_hit(w.port, 12)) == {"a", "c"}  # b still down after the reload
    b.set(health_status=200)
    up = wait_event(w, r"server %s UP after 3 passed checks" % addr_rx(b), bound(4 * IV / 1000.0), since=t0)
    assert up is not None
    assert len(find_events(w, r"server %s (UP|DOWN)" % addr_rx(b))) == 2

    t1 = time.time()
    w.reload(cfg([a, c]))
    assert wait_event(w, r"configuration reloaded", tf(3), since=t1)
    time.sleep(0.1)
    n = b.stats()["health_checks"]
    time.sleep(3 * IV / 1000.0)
    assert b.stats()["health_checks"] == n  # no longer checked
    assert c.stats()["health_checks"] > 0
