"""Balancing policies, observed through the X-Origin header of responses."""

import collections
import threading
import time

import pytest

from weirtest import HttpConn, pool, tf


def origins(procs, names, *args):
    return [procs.origin(n, *args) for n in names]


def run_clients(port, nthreads, per_thread=None, duration=None, target="/", reconnect_every=0,
                headers=None):
    """nthreads clients, each sending sequential keep-alive requests, either
    `per_thread` of them or for `duration` seconds (bounded both ways).
    Returns (Counter of X-Origin, list of errors)."""
    counts = collections.Counter()
    errors = []
    lock = threading.Lock()
    limit = per_thread if per_thread is not None else 1000000
    stop_at = time.monotonic() + (duration if duration is not None else tf(60))

    def worker():
        local = collections.Counter()
        c = None
        try:
            for i in range(limit):
                if time.monotonic() >= stop_at:
                    break
                if c is None or (reconnect_every and i % reconnect_every == 0):
                    if c:
                        c.close()
                    c = HttpConn(port)
                r = c.get(target, headers=headers)
                if r.status != 200:
                    errors.append(r)
                    break
                local[r.origin] += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            if c:
                c.close()
            with lock:
                counts.update(local)

    ts = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(120))
    return counts, errors


def sequence(port, n, target="/", **kw):
    with HttpConn(port) as c:
        out = []
        for _ in range(n):
            r = c.get(target, **kw)
            assert r.status == 200, r
            out.append(r.origin)
        return out


def test_round_robin_cyclic(procs):
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="round_robin")])
    seq = sequence(w.port, 30)
    first = seq[:3]
    assert sorted(first) == ["a", "b", "c"], seq
    assert seq == first * 10, seq


def test_round_robin_across_connections(procs):
    """The cycle is per pool (per worker), not per client connection."""
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="round_robin")])
    seq = []
    for _ in range(12):
        with HttpConn(w.port) as c:
            seq.append(c.get("/").origin)
    assert sorted(seq[:3]) == ["a", "b", "c"] and seq == seq[:3] * 4, seq


@pytest.mark.threaded
def test_round_robin_two_workers(procs):
    """Each worker keeps its own cycle: over any number of requests each
    worker's counts differ by at most one, so the totals by at most two."""
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="round_robin")], workers=2, log={"access": "off"})
    counts, errors = run_clients(w.port, 6, per_thread=300, reconnect_every=10)
    assert not errors, errors[:3]
    assert sum(counts.values()) == 1800
    assert max(counts.values()) - min(counts.values()) <= 2, counts


@pytest.mark.threaded
def test_weighted_round_robin_two_workers(procs):
    a, b = origins(procs, ["a", "b"])
    w = procs.weir(pools=[pool("p", [(a, 1), (b, 3)], policy="weighted_round_robin")], workers=2,
                   log={"access": "off"})
    counts, errors = run_clients(w.port, 6, per_thread=400, reconnect_every=20)
    assert not errors, errors[:3]
    assert sum(counts.values()) == 2400
    assert abs(counts["b"] - 1800) <= 4, counts  # per worker: off by at most the weight sum's remainder


def test_weighted_round_robin_1_3(procs):
    a, b = origins(procs, ["a", "b"])
    w = procs.weir(pools=[pool("p", [(a, 1), (b, 3)], policy="weighted_round_robin")],
                   log={"access": "off"})
    t0 = time.monotonic()
    counts, errors = run_clients(w.port, 4, per_thread=2500)
    assert not errors, errors[:3]
    total = sum(counts.values())
    assert total == 10000, counts
    share_b = counts["b"] / total
    assert abs(share_b - 0.75) <= 0.02, (counts, time.monotonic() - t0)
    assert abs(counts["a"] / total - 0.25) <= 0.02, counts


def test_weighted_round_robin_smooth_order(procs):
    a, b, c = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", [(a, 5), (b, 1), (c, 1)], policy="weighted_round_robin")])
    seq = sequence(w.port, 21)
    assert "".join(seq) == "aabacaa" * 3, seq


def test_least_conn_prefers_fast(procs):
    slow = procs.origin("slow", "--delay-ms", 300)
    fast = procs.origin("fast")
    w = procs.weir(pools=[pool("p", [slow, fast], policy="least_conn")], log={"access": "off"})
    counts, errors = run_clients(w.port, 8, duration=2.5)
    assert not errors, errors[:3]
    total = sum(counts.values())
    assert total >= 50, counts
    assert counts["fast"] / total > 0.8, counts
    # the slow one still takes part: ties between idle servers alternate
    assert counts["slow"] >= 1, counts


def test_least_conn_idle_alternates(procs):
    """With nothing in flight every server is equally loaded: ties rotate."""
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="least_conn")])
    seq = sequence(w.port, 30)
    assert collections.Counter(seq) == {"a": 10, "b": 10, "c": 10}, seq


def test_random_two_even(procs):
    """Sequential requests: every server is idle at each pick, so the choice is
    the random draw alone and must be uniform. (With concurrent clients the
    split follows momentary load, i.e. CPU scheduling of the origins.)"""
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="random_two")], log={"access": "off"})
    counts, errors = run_clients(w.port, 1, per_thread=3000)
    assert not errors, errors[:3]
    total = sum(counts.values())
    assert total == 3000
    for n in "abc":
        assert 0.25 <= counts[n] / total <= 0.42, counts


def test_random_two_avoids_slow(procs):
    slow = procs.origin("slow", "--delay-ms", 300)
    f1, f2 = procs.origin("f1"), procs.origin("f2")
    w = procs.weir(pools=[pool("p", [slow, f1, f2], policy="random_two")], log={"access": "off"})
    counts, errors = run_clients(w.port, 8, duration=2.5)
    assert not errors, errors[:3]
    total = sum(counts.values())
    assert total >= 50, counts
    assert counts["slow"] / total < 0.2, counts
    assert counts["f1"] > 0 and counts["f2"] > 0, counts


def test_hash_uri(procs):
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="hash", hash_key="uri")])
    owner = {}
    for rnd in range(3):
        with HttpConn(w.port) as c:
            for i in range(60):
                path = "/item/%d" % i
                r = c.get(path)
                assert r.status == 200
                if rnd == 0:
                    owner[path] = r.origin
                else:
                    assert owner[path] == r.origin, (path, owner[path], r.origin)
    counts = collections.Counter(owner.values())
    assert set(counts) == {"a", "b", "c"}, counts
    assert max(counts.values()) <= 42, counts  # no server takes over 70%


def test_hash_client_ip(procs):
    """Clients bind source addresses 127.0.0.2.. (all loopback) so that
    weir sees distinct client IPs."""
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="hash", hash_key="client_ip")])
    owner = {}
    for i in range(2, 42):
        src = "127.0.0.%d" % i
        seen = set()
        for j in range(3):
            with HttpConn(w.port, source=src) as c:
                for k in range(2):
                    r = c.get("/path/%d/%d" % (j, k))  # different URIs: only the IP counts
                    assert r.status == 200
                    seen.add(r.origin)
        assert len(seen) == 1, (src, seen)
        owner[src] = seen.pop()
    counts = collections.Counter(owner.values())
    assert len(counts) >= 2, counts
    assert max(counts.values()) <= 32, counts  # no server takes over 80% of 40 addresses


def test_hash_header(procs):
    o = origins(procs, ["a", "b", "c"])
    w = procs.weir(pools=[pool("p", o, policy="hash", hash_key="header:X-User")])
    owner = {}
    for rnd in range(3):
        with HttpConn(w.port) as c:
            for i in range(60):
                user = "user-%d" % i
                # vary the URI: only the header counts; header name case does not matter
                name = "X-User" if rnd != 1 else "x-user"
                r = c.get("/r/%d/%d" % (rnd, i), headers=[(name, user)])
                assert r.status == 200
                if rnd == 0:
                    owner[user] = r.origin
                else:
                    assert owner[user] == r.origin, (user, owner[user], r.origin)
    counts = collections.Counter(owner.values())
    assert set(counts) == {"a", "b", "c"}, counts
    assert max(counts.values()) <= 42, counts
