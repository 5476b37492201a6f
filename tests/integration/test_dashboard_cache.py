"""The response cache on the dashboard (issue 8 "Statistics"): the hit
ratio over time per cache route and the L2 state, in headless Chromium
(the Browser of test_dashboard.py)."""

import shutil

import pytest

import weirtest
from weirtest import tf, wait_until
from test_dashboard import (TOKEN, admin_conf, admin_get, browser, chromium, run_load,  # noqa: F401 (fixtures)
                            screenshot, wait_updates)
from test_cache import Redis

READ_CACHE_JS = r"""
(() => {
  const card = document.querySelector('[data-chart-card="cache"]');
  const c = document.getElementById('chart-cache');
  const spec = weirDashboard.charts.find(s => s.id === 'cache');
  const bigs = Array.from(card.querySelectorAll('.big')).map(b => ({value: b.getAttribute('data-value'),
    text: b.textContent, cls: b.className}));
  const col = k => (weirDashboard.history.cols.get(k) || []).filter(x => x != null);
  const h = getComputedStyle(document.documentElement).getPropertyValue(spec.series()[0].color).trim();
  const want = [1, 3, 5].map(i => parseInt(h.substr(i, 2), 16));
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let line = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i + 3] > 200 && Math.abs(d[i] - want[0]) < 30 && Math.abs(d[i + 1] - want[1]) < 30 &&
        Math.abs(d[i + 2] - want[2]) < 30) line++;
  return {hidden: card.hidden, labels: spec.series().map(s => s.label), bigs: bigs, points: +c.dataset.points,
          line: line, hot: col('cache.* /hot/'), cold: col('cache.* /'), all: col('cache.all')};
})()
"""


def cache_site(procs, redis=None):
    o = procs.origin("o")
    port, admin_port = weirtest.free_port(), weirtest.free_port()
    hot = weirtest.route("api", path_prefix="/hot/")
    hot["cache"] = True
    cold = weirtest.route("api")
    cold["cache"] = True
    cache = "cache = { memory_bytes = 16777216;%s };\n" % (
        ' redis = { address = "127.0.0.1:%d"; timeout_ms = 50; };' % redis.port if redis else "")
    text = admin_conf(port, admin_port, [weirtest.pool("api", [o])], routes=[hot, cold], workers=2) + "\n" + cache
    procs.weir(text, port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05)
    return port, admin_port


def test_dashboard_cache_hit_ratio_per_route(procs, browser):
    port, admin_port = cache_site(procs)
    browser.navigate("http://127.0.0.1:%d/dashboard?token=%s" % (admin_port, TOKEN))
    assert wait_updates(browser, 2, tf(15))
    # one object on /hot/ requested again and again (hits), /cold answers not storable (misses)
    statuses = run_load(port, [("/hot/x?cc=max-age%3D300", 150), ("/cold", 50)], threads=2, seconds=tf(4))
    assert statuses == {200: 200}, statuses
    n = wait_updates(browser, 1, tf(5))
    assert wait_updates(browser, n + 3, tf(10))
    dom = browser.eval(READ_CACHE_JS)
    assert dom["hidden"] is False, dom
    assert dom["labels"] == ["* /hot/", "* /"], dom
    # the hot route's ratio climbs near 1 (1 miss in 150), the cold one stays 0
    assert dom["hot"] and max(dom["hot"]) > 0.9, dom
    assert dom["cold"] and max(dom["cold"]) == 0, dom
    assert dom["points"] >= 3 and dom["line"] >= 3, dom  # 15 min across the canvas: a few px per second
    stats = admin_get(admin_port, "/stats").json()
    hot = [r for r in stats["routes"] if r["path_prefix"] == "/hot/"][0]["cache"]
    assert hot["requests"] == 150 and hot["hits"] == 149, hot
    ratio, l2 = dom["bigs"]
    assert 0 < float(ratio["value"]) <= 1, dom["bigs"]
    assert l2["value"] == "off" and "L2 off" in l2["text"], dom["bigs"]
    assert not browser.console_errors()
    screenshot(browser, "dashboard-cache")


def test_dashboard_without_cache_routes_hides_the_chart(procs, browser):
    o = procs.origin("o")
    port, admin_port = weirtest.free_port(), weirtest.free_port()
    procs.weir(admin_conf(port, admin_port, [weirtest.pool("api", [o])]), port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05)
    browser.navigate("http://127.0.0.1:%d/dashboard?token=%s" % (admin_port, TOKEN))
    assert wait_updates(browser, 2, tf(15))
    assert browser.eval("document.querySelector('[data-chart-card=\"cache\"]').hidden") is True
    assert not browser.console_errors()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_dashboard_l2_state(procs, browser):
    redis = Redis()
    try:
        port, admin_port = cache_site(procs, redis)
        browser.navigate("http://127.0.0.1:%d/dashboard?token=%s" % (admin_port, TOKEN))
        assert wait_updates(browser, 1, tf(15))
        run_load(port, [("/hot/l2?cc=max-age%3D300", 20)], threads=1, seconds=tf(1))

        def l2():
            return browser.eval(READ_CACHE_JS)["bigs"][1]
        assert wait_until(lambda: l2()["value"] == "up", tf(10), 0.2), l2()
        assert "2/2 up" in l2()["text"], l2()
        redis.kill()
        # requests keep failing over to L1/the backend; the breaker opens
        run_load(port, [("/hot/m%d" % i, 1) for i in range(20)], threads=1, seconds=tf(2))
        assert wait_until(lambda: l2()["value"] in ("open", "connecting", "degraded"), tf(15), 0.2), l2()
        assert "bad" in l2()["cls"] or "warn" in l2()["cls"], l2()
    finally:
        redis.kill()
