"""Cache statistics per route and per tier, end to end: /stats (a "cache"
object per cache route, and the tiers), /metrics
(weir_cache_requests_total{route,tier,result} and the rest, promtool-clean).
Reuses the origin, Redis and helpers of test_cache.py."""

import time

import pytest

from weirtest import HttpConn, LOOPBACK, free_port, pool, route, tf, wait_until
from test_cache import (Redis, admin, cache_conf, get, needs_redis, origin, redis,  # noqa: F401 (fixtures)
                        pytestmark)


def two_routes(o, redis=None, workers=2):
    """Route "* /a/" and route "* /" both caching, on one pool, with an admin."""
    kw = cache_conf(o, redis=redis, workers=workers)
    ra = route("p", path_prefix="/a/")
    ra["cache"] = True
    rb = route("p")
    rb["cache"] = True
    kw["routes"] = [ra, rb]
    port = free_port()
    kw["extra"] += 'admin = { address = "%s:%d"; token = "tok"; };\n' % (LOOPBACK, port)
    return kw, port


def route_cache(stats, prefix):
    for r in stats["routes"]:
        if r["path_prefix"] == prefix:
            return r.get("cache")
    raise AssertionError("no route %s in %r" % (prefix, stats["routes"]))


def metrics(ap):
    with HttpConn(ap) as c:
        r = c.request("GET", "/metrics", headers=[("Authorization", "Bearer tok")])
    assert r.status == 200
    return r.body.decode()


def sample(text, name, **labels):
    """The value of the one series `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        lab, val = line[len(name) + 1:].rsplit("} ", 1)
        if all('%s="%s"' % (k, v) in lab for k, v in labels.items()):
            found.append(float(val))
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_per_route_results_in_stats_and_metrics(procs, origin):
    origin.set("/a/x", headers=[("Cache-Control", "max-age=60")], body=b"ax")
    origin.set("/b", headers=[("Cache-Control", "max-age=60")], body=b"b")
    origin.set("/priv", headers=[("Cache-Control", "private")], body=b"p")
    kw, ap = two_routes(origin)
    w = procs.weir(**kw)
    for _ in range(4):
        get(w, "/a/x")  # 1 miss + 3 L1 hits on route /a/
    for _ in range(2):
        get(w, "/b")  # 1 miss + 1 hit on route /
    get(w, "/priv")  # miss, not storable (private) on route /
    get(w, "/priv")
    get(w, "/b", headers=[("Cache-Control", "only-if-cached")])  # a hit still
    r = get(w, "/nothere", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504

    def stats():
        st, j = admin(ap, "GET", "/stats")
        assert st == 200
        return j

    # the exchange's own stats are recorded at its end; give it a moment
    assert wait_until(lambda: route_cache(stats(), "/")["requests"] == 6, tf(5), 0.05), stats()
    j = stats()
    a, b = route_cache(j, "/a/"), route_cache(j, "/")
    assert a["results"]["l1_hit"] == 3 and a["results"]["miss"] == 1 and a["requests"] == 4
    assert a["hit_ratio"] == pytest.approx(0.75)
    assert a["tiers"]["l1"]["hit"] == 3 and a["tiers"]["l2"]["hit"] == 0
    assert a["stored"] == 1 and a["not_storable"] == 0 and a["origin_requests"] == 1
    assert b["results"]["l1_hit"] == 2 and b["results"]["miss"] == 3 and b["results"]["only_if_cached"] == 1
    # the second /priv is a miss under a young hit-for-miss mark: it passes
    # by without being judged again (hit-for-pass), so one not-storable
    assert b["stored"] == 1 and b["not_storable"] == 1 and b["not_storable_by"]["private"] == 1
    assert b["origin_requests"] == 3 == origin.count("/b") + origin.count("/priv")
    assert j["cache"]["l1"]["objects"] == 2 and j["cache"]["l1"]["bytes"] > 0
    assert j["cache"]["l2"]["state"] == "off"

    text = metrics(ap)
    assert sample(text, "weir_cache_requests_total", route="* /a/", tier="l1", result="hit") == 3
    assert sample(text, "weir_cache_requests_total", route="* /a/", tier="backend", result="miss") == 1
    assert sample(text, "weir_cache_requests_total", route="* /", tier="backend", result="miss") == 3
    assert sample(text, "weir_cache_requests_total", route="* /", tier="none", result="only_if_cached") == 1
    assert sample(text, "weir_cache_not_storable_total", route="* /", reason="private") == 1
    assert sample(text, "weir_cache_stored_total", route="* /a/") == 1
    assert sample(text, "weir_cache_origin_requests_total", route="* /") == 3
    assert "weir_cache_l1_objects 2" in text
    # the instance-wide families it replaces are gone
    assert 'weir_cache_requests_total{tier=' not in text
    from adminutil import promtool_check
    res = promtool_check(text)
    if res is not None:
        rc, out = res
        assert rc == 0, out


def test_revalidation_stale_coalescing_and_purge_counted(procs, origin):
    origin.set("/a/rv", headers=[("Cache-Control", "max-age=1"), ("ETag", '"e"')], body=b"rv")
    origin.set("/a/swr", headers=[("Cache-Control", "max-age=1, stale-while-revalidate=30")], body=b"s")
    origin.set("/a/co", headers=[("Cache-Control", "max-age=60")], body=b"c" * 1000, delay=0.5)
    kw, ap = two_routes(origin, workers=1)
    w = procs.weir(**kw)
    get(w, "/a/rv")
    get(w, "/a/swr")
    time.sleep(1.5)
    assert "fwd-status=304" in (get(w, "/a/rv").header("Cache-Status") or "")
    assert get(w, "/a/swr").body == b"s"  # stale at once, one background revalidation
    import threading
    rs = []
    ts = [threading.Thread(target=lambda: rs.append(get(w, "/a/co"))) for _ in range(5)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join(tf(10))
    assert len(rs) == 5 and origin.count("/a/co") == 1
    assert wait_until(lambda: origin.count("/a/swr") == 2, tf(5), 0.05)
    st, j = admin(ap, "POST", "/cache/purge", {"prefix": "http://%s/a/" % "127.0.0.1"})
    assert st == 200

    def cache():
        return route_cache(admin(ap, "GET", "/stats")[1], "/a/")

    assert wait_until(lambda: cache()["revalidated"]["200"] + cache()["revalidated"]["304"] == 2, tf(5), 0.05)
    c = cache()
    assert c["revalidated"]["304"] == 1, c
    assert c["results"]["revalidated"] == 1 and c["results"]["l1_stale"] == 1
    assert c["coalesced"] == 4 and c["results"]["l1_hit"] >= 4
    assert c["origin_requests"] == origin.count("/a/rv") + origin.count("/a/swr") + origin.count("/a/co")
    text = metrics(ap)
    assert sample(text, "weir_cache_revalidated_total", route="* /a/", status="304") == 1
    assert sample(text, "weir_cache_coalesced_total", route="* /a/") == 4


@needs_redis
def test_l2_tier_state_and_latency(procs, origin, redis):
    origin.set("/l2", headers=[("Cache-Control", "max-age=60")], body=b"shared")
    kw, ap = two_routes(origin, redis=redis, workers=2)
    kw2 = cache_conf(origin, redis=redis)
    a = procs.weir(**kw2)
    b = procs.weir(**kw)
    assert get(a, "/l2").body == b"shared"
    assert wait_until(lambda: "detail=l2" in (get(b, "/l2").header("Cache-Status") or ""), tf(5), 0.1)
    # the workers copy their L2 clients' counters every 250 ms
    assert wait_until(lambda: admin(ap, "GET", "/stats")[1]["cache"]["l2"]["latency"]["count"] >= 1 and
                      admin(ap, "GET", "/stats")[1]["cache"]["l2"]["state"] == "up", tf(5), 0.05)
    st, j = admin(ap, "GET", "/stats")
    c = route_cache(j, "/")
    assert c["results"]["l2_hit"] == 1 and c["tiers"]["l2"]["hit"] == 1
    l2 = j["cache"]["l2"]
    assert l2["state"] == "up" and l2["clients"] == 2 and l2["clients_up"] == 2
    assert l2["latency"]["count"] >= 1 and l2["commands"] >= 1
    text = metrics(ap)
    assert sample(text, "weir_cache_requests_total", route="* /", tier="l2", result="hit") == 1
    assert sample(text, "weir_cache_l2_clients", state="up") == 2
    assert "weir_cache_l2_up 1" in text
    assert sample(text, "weir_cache_l2_latency_seconds_bucket", le="+Inf") >= 1
    redis.kill()
    # the breaker opens after repeated failures (requests keep being answered)
    for _ in range(10):
        assert get(b, "/miss-%d" % _).status == 200
    assert wait_until(lambda: admin(ap, "GET", "/stats")[1]["cache"]["l2"]["state"] != "up", tf(10), 0.2)
    text = metrics(ap)
    assert "weir_cache_l2_up 0" in text
    assert sample(text, "weir_cache_l2_clients", state="up") < 2


def test_revalidation_through_session_counted_once(procs, origin):
    """A foreground revalidation goes through the session's upstream stage:
    a 200 that replaces the stored response counts one revalidation (200),
    one origin request; a 5xx to it counts a miss, not a revalidation."""
    origin.set("/a/r2", headers=[("Cache-Control", "max-age=1"), ("ETag", '"1"')], body=b"one")
    kw, ap = two_routes(origin, workers=1)
    w = procs.weir(**kw)
    assert get(w, "/a/r2").body == b"one"
    time.sleep(1.5)
    origin.set("/a/r2", headers=[("Cache-Control", "max-age=1"), ("ETag", '"2"')], body=b"two")
    assert get(w, "/a/r2").body == b"two"

    def cache():
        return route_cache(admin(ap, "GET", "/stats")[1], "/a/")

    c = cache()
    assert c["revalidated"]["200"] == 1 and c["revalidated"]["304"] == 0, c
    assert c["results"]["revalidated"] == 1 and c["results"]["miss"] == 1, c
    assert c["origin_requests"] == origin.count("/a/r2") == 2, c
    time.sleep(1.5)
    origin.set("/a/r2", headers=[("Cache-Control", "max-age=1")], body=b"gone", status=503)
    assert get(w, "/a/r2").status == 503
    c = cache()
    assert c["results"]["revalidated"] == 1 and c["results"]["miss"] == 2, c
    assert c["revalidated"]["200"] == 1 and c["revalidated"]["304"] == 0, c
    assert c["origin_requests"] == 3, c
