"""An autoscale rule on the cache metrics (issue 9 cache_hit_ratio /
origin_rps over issue 8's per-route cache statistics), end to end: a
dry-run rule whose scale-up breach is a high cache hit ratio decides only
while the pool's cache route answers from the cache; the /autoscale document
shows the pool's window values of both metrics."""

import json
import threading
import time

import pytest

from adminutil import Admin, admin_extra
from weirtest import HttpConn, conf, free_port, pool, route, tf, wait_until
from test_autoscale import autoscale, get_json, records, wait_record

pytestmark = pytest.mark.threaded


class Loop:
    """GET `target` in a loop from one thread (bounded in time and count)."""

    def __init__(self, port, target, seconds=20, max_requests=20000):
        self.port, self.target, self.deadline, self.left = port, target, time.monotonic() + seconds, max_requests
        self.stop_ev = threading.Event()
        self.errors = 0
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        with HttpConn(self.port) as c:
            while not self.stop_ev.is_set() and self.left > 0 and time.monotonic() < self.deadline:
                self.left -= 1
                if c.request("GET", self.target).status != 200:
                    self.errors += 1
                time.sleep(0.005)

    def stop(self):
        self.stop_ev.set()
        self.t.join(tf(10))


def test_rule_on_cache_hit_ratio(procs, tmp_path):
    o1 = procs.origin("o1")  # weir-origin: no Cache-Control unless ?cc= asks (heuristics need Last-Modified)
    port, aport = free_port(), free_port()
    rule = {"name": "hot-cache", "pool": "api", "metric": "cache_hit_ratio", "window_ms": 1000,
            "min_servers": 1, "max_servers": 3,
            "scale_up": {"above": 0.5, "for_ms": 750, "step": 1, "cooldown_ms": 60000}}
    r = route("api")
    r["cache"] = True
    text = conf(port, [pool("api", [o1])], routes=[r], log={"access": "off"},
                extra=admin_extra(aport) + "\ncache = { memory_bytes = 16777216; };\n" +
                autoscale([rule], dry_run=True))
    procs.weir(text, port)
    admin = Admin(aport)
    assert admin.wait_ready()

    # misses only: the ratio is 0, the rule holds back; origin_rps counts every request
    load = Loop(port, "/nocache")
    try:
        time.sleep(2.5)
        assert records(admin, rule="hot-cache", reason="dry_run") == [], json.dumps(records(admin, rule="hot-cache"))
        win = get_json(admin, "/autoscale")["rules"][0]["window"]
        assert win["cache_hit_ratio"] == 0.0 and win["origin_rps"] > 0
        assert win["origin_rps"] == pytest.approx(win["rps"], rel=0.25)
    finally:
        load.stop()
    assert load.errors == 0

    # an object that is cached: almost every request is an L1 hit
    load = Loop(port, "/hot?cc=max-age%3D300")  # weir-origin's cc= sets Cache-Control
    try:
        rec = wait_record(admin, 10, rule="hot-cache", action="skipped", reason="dry_run")[0]
        win = get_json(admin, "/autoscale")["rules"][0]["window"]
        assert win["cache_hit_ratio"] > 0.9 and win["origin_rps"] < 0.2 * win["rps"], win
    finally:
        load.stop()
    assert rec["value"] > 0.5 and rec["direction"] == "up" and rec["desired"] == 2
