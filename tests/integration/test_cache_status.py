"""Cache-Status (RFC 9211) on the responses of a caching route that come
from the backend: the session lets the cache's response filter add the
field to the server's head before it goes to the client."""

import os
import socket
import threading
import time

import pytest

from test_cache import cache_conf, get, origin  # noqa: F401  (origin is a fixture)
from weirtest import LOOPBACK, REPO, free_port, pool, route, tf, wait_until

pytestmark = pytest.mark.skipif(not (REPO / "include" / "weir" / "exchange.h").exists(),
                                reason="the session's request hook (exchange.h) is not in this tree")


def cs(r):
    return r.header("Cache-Status") or ""


def test_forwarded_responses_say_why(procs, origin):
    origin.set("/m", headers=[("Cache-Control", "max-age=60")], body=b"m")
    origin.set("/p", headers=[("Cache-Control", "private")], body=b"p")
    origin.set("/e", headers=[("Cache-Control", "max-age=1"), ("ETag", '"v1"')], body=b"e")
    w = procs.weir(**cache_conf(origin))

    r = get(w, "/m")
    assert r.body == b"m" and cs(r) == "weir; fwd=uri-miss; fwd-status=200; stored", cs(r)
    assert cs(get(w, "/m")).startswith("weir; hit")
    # a response that may not be stored: no "stored"; the next one is a hit-for-miss
    assert cs(get(w, "/p")) == "weir; fwd=uri-miss; fwd-status=200"
    assert cs(get(w, "/p")) == "weir; fwd=miss; fwd-status=200; detail=hit-for-miss"
    # HEAD on a miss, unsafe and other methods, a request that forbids storing
    assert cs(get(w, "/h", method="HEAD")) == "weir; fwd=uri-miss; fwd-status=200"
    assert cs(get(w, "/x", method="POST", body=b"1")) == "weir; fwd=method; fwd-status=200"
    assert cs(get(w, "/x", method="OPTIONS")).startswith("weir; fwd=method; fwd-status=")
    r = get(w, "/n", headers=[("Cache-Control", "no-store")])
    assert cs(r) == "weir; fwd=uri-miss; fwd-status=200; detail=no-store", cs(r)
    # a stored response that is stale (revalidated, changed meanwhile), and
    # one the request refuses (no-cache)
    get(w, "/e")
    time.sleep(tf(2.2))
    origin.set("/e", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v2"')], body=b"e2")
    r = get(w, "/e")
    assert r.body == b"e2" and cs(r).startswith("weir; fwd=stale; fwd-status=200; stored"), cs(r)
    r = get(w, "/m", headers=[("Cache-Control", "no-cache")])
    assert cs(r).startswith("weir; fwd=request; fwd-status=200; stored"), cs(r)
    # the backend's own error status is named
    origin.set("/err", status=503, body=b"down")
    assert cs(get(w, "/err")) == "weir; fwd=uri-miss; fwd-status=503"


def test_collapsed_waiters_say_so(procs, origin):
    origin.set("/c", headers=[("Cache-Control", "max-age=60")], body=b"c" * 10000, delay=0.5)
    w = procs.weir(**cache_conf(origin))
    results = []
    lock = threading.Lock()

    def one():
        r = get(w, "/c")
        with lock:
            results.append(r)

    ts = [threading.Thread(target=one) for _ in range(5)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join(tf(10))
    assert len(results) == 5 and all(r.body == b"c" * 10000 for r in results)
    assert origin.count("/c") == 1
    statuses = sorted(cs(r) for r in results)
    assert statuses.count("weir; fwd=uri-miss; fwd-status=200; stored") == 1, statuses
    assert statuses.count("weir; fwd=uri-miss; fwd-status=200; collapsed") == 4, statuses


def test_no_cache_status_without_cache(procs, origin):
    origin.set("/z", headers=[("Cache-Control", "max-age=60")], body=b"z")
    w = procs.weir(pools=[pool("p", [origin])], routes=[route("p")], workers=1)
    assert get(w, "/z").header("Cache-Status") is None


def _timed_get(port, target, out, i):
    """GET over a raw socket: (status line, Cache-Status, body, time of the
    first body byte)."""
    s = socket.create_connection((LOOPBACK, port), timeout=tf(20))
    try:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise OSError("closed in the head")
            buf += d
        head, body = buf.split(b"\r\n\r\n", 1)
        fields = dict(l.split(b": ", 1) for l in head.split(b"\r\n")[1:])
        n = int(fields[b"Content-Length"])
        while not body:
            d = s.recv(65536)
            if not d:
                raise OSError("closed before the body")
            body += d
        first = time.monotonic()
        while len(body) < n:
            d = s.recv(65536)
            if not d:
                break
            body += d
        out[i] = (head.split(b"\r\n")[0], fields.get(b"Cache-Status", b"").decode(), body, first)
    except Exception as e:  # noqa: BLE001
        out[i] = e
    finally:
        s.close()


def test_waiters_streamed_as_the_response_arrives(procs, origin):
    """50 concurrent requests for a cold key, the origin streaming its
    answer slowly: the backend sees one request, every client gets the
    whole body, and the waiters' first bytes arrive before the origin
    finished sending."""
    body = os.urandom(300000)
    # the head after 1 s (well inside the 5 s a waiter waits for one), then
    # the body over 1 s more
    origin.set("/slow", headers=[("Cache-Control", "max-age=60")], body=body, delay=1.0, chunks=20, length=True)
    w = procs.weir(**cache_conf(origin, workers=2))
    out = [None] * 50
    ts = [threading.Thread(target=_timed_get, args=(w.port, "/slow", out, i)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(30))
    assert all(not isinstance(r, Exception) and r is not None for r in out), out
    assert all(r[0].endswith(b" 200 OK") and r[2] == body for r in out)
    assert origin.count("/slow") == 1
    end = origin.finished["/slow"]
    collapsed = [r for r in out if "collapsed" in r[1]]
    assert len(collapsed) == 49, sorted(r[1] for r in out)
    early = [r for r in collapsed if r[3] < end]
    assert len(early) == 49, "%d of 49 waiters got their first byte before the origin finished" % len(early)



def test_revalidation_goes_through_the_session(procs, origin):
    """A stale entry with a validator is revalidated by the session's own
    upstream stage (logged with its server and try, counted in its
    statistics): the 304 updates the stored response and the client gets
    it whole, or a 304 of its own when its precondition holds."""
    origin.set("/rs", headers=[("Cache-Control", "max-age=1"), ("ETag", '"e1"')], body=b"rs-body")
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/rs").body == b"rs-body"
    time.sleep(tf(1.6))
    origin.set("/rs", headers=[("Cache-Control", "max-age=1"), ("ETag", '"e1"'), ("X-V", "2")], body=b"rs-body")
    # the client's own validator is replaced by the stored one's
    r = get(w, "/rs", headers=[("If-None-Match", '"other"')])
    assert r.status == 200 and r.body == b"rs-body" and r.header("X-V") == "2", (r.status, cs(r))
    assert cs(r) == "weir; fwd=stale; fwd-status=304; stored; detail=revalidated", cs(r)
    assert origin.last_headers["/rs"].get("If-None-Match") == '"e1"'
    time.sleep(tf(1.6))
    r = get(w, "/rs", headers=[("If-None-Match", '"e1"')])
    assert r.status == 304 and "fwd-status=304" in cs(r), (r.status, cs(r))
    assert origin.not_modified.get("/rs") == 2 and origin.count("/rs") == 3
    # the session's upstream stage did it: its access log names the server and the try
    def lines():
        return [l for l in w.stderr().splitlines() if '"GET /rs HTTP/1.1"' in l]
    assert wait_until(lambda: len(lines()) == 3, tf(3)), lines()
    lines = lines()
    assert len(lines) == 3 and all(("upstream=%s" % origin.addr) in l and "tries=1" in l for l in lines), lines


def test_waiters_of_a_leader_that_breaks_off(procs, origin):
    """The origin closes in the middle of a known-length body: the leader's
    client and the waiters streaming it are all cut (a short body is never
    passed off as whole), nothing is stored, and the next request goes to
    the origin again."""
    body = os.urandom(100000)
    origin.set("/cut", headers=[("Cache-Control", "max-age=60")], body=body, delay=1.0, chunks=10, length=True,
               cut_after=5)
    w = procs.weir(**cache_conf(origin))
    out = [None] * 5
    ts = [threading.Thread(target=_timed_get, args=(w.port, "/cut", out, i)) for i in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(20))
    assert origin.count("/cut") == 1
    for r in out:
        assert not isinstance(r, Exception) and r is not None, out
        assert 0 < len(r[2]) < len(body) and body.startswith(r[2]), (r[1], len(r[2]))
    assert sum("collapsed" in r[1] for r in out) == 4, [r[1] for r in out]
    origin.set("/cut", headers=[("Cache-Control", "max-age=60")], body=b"whole")
    r = get(w, "/cut")
    assert r.body == b"whole" and cs(r).startswith("weir; fwd=uri-miss"), cs(r)
    assert origin.count("/cut") == 2


def test_errors_weir_answers_itself_say_so(procs, origin):
    """A caching route where no server answers: the error weir gives
    itself (503 no server accepted, 504 timeout, 502 broken answer) still
    carries a Cache-Status, without a fwd-status (no server sent one) and
    with the failure in detail; nothing is stored and nothing waits."""
    origin.set("/slow", headers=[("Cache-Control", "max-age=60")], body=b"s", delay=3.0)
    d = dict(cache_conf(origin))
    d["timeouts"] = {"upstream_response_ms": 500}
    w = procs.weir(**d)
    r = get(w, "/slow")
    assert r.status == 504 and cs(r) == "weir; fwd=uri-miss; detail=upstream-timeout", (r.status, cs(r))
    r = get(w, "/slow", method="HEAD")
    assert r.status == 504 and cs(r) == "weir; fwd=uri-miss; detail=upstream-timeout", (r.status, cs(r))
    r = get(w, "/slow", method="DELETE")
    assert r.status == 504 and cs(r) == "weir; fwd=method; detail=upstream-timeout", (r.status, cs(r))

    dead = free_port()  # nothing listens there: every connect is refused
    d = dict(cache_conf(origin))
    d["pools"] = [pool("p", ["%s:%d" % (LOOPBACK, dead)])]
    w2 = procs.weir(**d)
    r = get(w2, "/x")
    assert r.status == 503 and cs(r) == "weir; fwd=uri-miss; detail=no-server", (r.status, cs(r))
    r = get(w2, "/x")  # not a hit-for-miss: a failing server says nothing about the resource
    assert r.status == 503 and cs(r) == "weir; fwd=uri-miss; detail=no-server", (r.status, cs(r))
    assert r.header("Retry-After") is not None


def test_young_hit_for_miss_mark_passes_then_stores_again(procs, origin):
    """A hit-for-miss mark lives 10 s. In its first half the responses go
    by without a store filter (hit-for-pass: the cost of a cache route on an
    uncacheable URL stays near the route without cache); in its second half
    the store filter runs again, so a URL that became cacheable is stored
    within 5 s."""
    origin.set("/hp", headers=[("Cache-Control", "private")], body=b"p")
    w = procs.weir(**cache_conf(origin))
    assert cs(get(w, "/hp")) == "weir; fwd=uri-miss; fwd-status=200"
    origin.set("/hp", headers=[("Cache-Control", "max-age=60")], body=b"now cacheable")
    r = get(w, "/hp")
    assert r.body == b"now cacheable" and cs(r) == "weir; fwd=miss; fwd-status=200; detail=hit-for-miss", cs(r)
    assert not cs(get(w, "/hp")).startswith("weir; hit")
    time.sleep(5.3)  # the mark's second half (its times are whole seconds)
    r = get(w, "/hp")
    assert cs(r) == "weir; fwd=miss; fwd-status=200; stored; detail=hit-for-miss", cs(r)
    assert cs(get(w, "/hp")).startswith("weir; hit")
