"""The response cache end to end: real weir processes, a real Redis
(redis-server started on a free loopback port, killed by PID), and an origin
written here (http.server in a thread) whose every response head the test
chooses and whose requests it counts.

Needs the cache stage (src/cache.c) wired into the session's request hook
(include/weir/exchange.h, from the session branch, plus
docs/cache-integration.patch); skipped in a tree without that interface.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from weirtest import REPO, HttpConn, free_port, pool, port_accepts, route, tf, wait_until, LOOPBACK

pytestmark = pytest.mark.skipif(not (REPO / "include" / "weir" / "exchange.h").exists(),
                                reason="the session's request hook (exchange.h) is not in this tree")


# --------------------------------------------------------------------------
# an origin whose answers the test writes
# --------------------------------------------------------------------------

class Spec:
    def __init__(self, status=200, headers=(), body=b"hello", delay=0.0, chunks=1, length=False, cut_after=None):
        """chunks > 1: the body in that many writes, chunked, or with a
        Content-Length when length is true; cut_after: close the connection
        after that many writes (a server that breaks off)."""
        self.status, self.headers, self.body, self.delay, self.chunks = status, list(headers), body, delay, chunks
        self.length, self.cut_after = length, cut_after


class Origin:
    """GET/HEAD/POST on any path: answers the Spec set for the path (default
    200 "hello" with no caching headers) and counts requests per path."""

    def __init__(self):
        self.specs = {}
        self.counts = {}
        self.not_modified = {}
        self.last_headers = {}
        self.finished = {}  # path -> monotonic time its last response was written
        self.lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, head_only):
                path = self.path
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                with origin.lock:
                    origin.counts[path] = origin.counts.get(path, 0) + 1
                    origin.last_headers[path] = dict(self.headers)
                    spec = origin.specs.get(path.split("?")[0], Spec())
                if spec.delay:
                    time.sleep(spec.delay)
                etag = dict((k.lower(), v) for k, v in spec.headers).get("etag")
                inm = self.headers.get("If-None-Match")
                if etag is not None and inm is not None and spec.status == 200 and \
                        etag.replace("W/", "") in [t.strip().replace("W/", "") for t in inm.split(",")]:
                    with origin.lock:
                        origin.not_modified[path] = origin.not_modified.get(path, 0) + 1
                    self.send_response(304)
                    for k, v in spec.headers:
                        self.send_header(k, v)
                    self.end_headers()
                    return
                self.send_response(spec.status)
                for k, v in spec.headers:
                    self.send_header(k, v)
                if spec.chunks > 1:
                    if spec.length:
                        self.send_header("Content-Length", str(len(spec.body)))
                    else:
                        self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if head_only:
                        return
                    step = max(1, len(spec.body) // spec.chunks)
                    for n, i in enumerate(range(0, len(spec.body), step)):
                        part = spec.body[i:i + step]
                        if spec.cut_after is not None and n >= spec.cut_after:
                            self.close_connection = True
                            return
                        if i > 0:
                            time.sleep(spec.delay / spec.chunks if spec.delay else 0)
                        self.wfile.write(part if spec.length else b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    if not spec.length:
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    with origin.lock:
                        origin.finished[path] = time.monotonic()
                    return
                self.send_header("Content-Length", str(len(spec.body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(spec.body)

            def do_GET(self):
                self._answer(False)

            def do_HEAD(self):
                self._answer(True)

            def do_POST(self):
                self._answer(False)

            def do_PUT(self):
                self._answer(False)

            def do_DELETE(self):
                self._answer(False)

        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, path, **kw):
        with self.lock:
            self.specs[path] = Spec(**kw)

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------

class Redis:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", "/tmp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: port_accepts(self.port), tf(5)), "redis-server did not start"

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def cmd(self, *args):
        """One command over a raw socket (RESP); returns the raw reply bytes."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        with socket.create_connection((LOOPBACK, self.port), timeout=5) as s:
            s.sendall(b"".join(parts))
            time.sleep(0.05)
            s.settimeout(1)
            data = b""
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    data += d
                    if data.endswith(b"\r\n") and (data[:1] != b"$" or len(data) > 5):
                        break
            except socket.timeout:
                pass
            return data


needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.kill()


def cache_conf(o, extra="", workers=1, memory=64 << 20, max_object=8 << 20, redis=None):
    text = "cache = { memory_bytes = %d; max_object_bytes = %d;" % (memory, max_object)
    if redis is not None:
        text += ' redis = { address = "%s:%d"; prefix = "t:"; timeout_ms = 100; };' % (LOOPBACK, redis.port)
    text += " };\n" + extra
    r = route("p")
    r["cache"] = True
    return dict(pools=[pool("p", [o])], routes=[r], workers=workers, extra=text)


def get(w, target, headers=(), method="GET", body=None):
    with HttpConn(w.port) as c:
        return c.request(method, target, headers=list(headers), body=body)


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_miss_then_hit_with_age_and_cache_status(procs, origin):
    origin.set("/a", headers=[("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")], body=b"A" * 1000)
    w = procs.weir(**cache_conf(origin))
    r1 = get(w, "/a")
    assert r1.status == 200 and r1.body == b"A" * 1000
    r2 = get(w, "/a")
    assert r2.status == 200 and r2.body == b"A" * 1000
    assert origin.count("/a") == 1
    cs = r2.header("Cache-Status")
    assert cs is not None and cs.startswith("weir; hit") and "detail=l1" in cs, cs
    assert r2.header("Age") is not None and 0 <= int(r2.header("Age")) <= 2
    assert r2.header("Content-Type") == "text/plain"
    assert r2.header("Content-Length") == "1000"


def test_head_served_from_get(procs, origin):
    origin.set("/h", headers=[("Cache-Control", "max-age=60")], body=b"x" * 123)
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/h").status == 200
    with HttpConn(w.port) as c:
        r = c.request("HEAD", "/h")
    assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "123"
    assert origin.count("/h") == 1


def test_conditional_client_gets_304_from_cache(procs, origin):
    origin.set("/e", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v1"'),
                              ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")], body=b"etagged")
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/e").status == 200
    r = get(w, "/e", headers=[("If-None-Match", 'W/"v1"')])
    assert r.status == 304 and r.body == b"" and r.header("ETag") == '"v1"'
    r = get(w, "/e", headers=[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")])
    assert r.status == 304
    r = get(w, "/e", headers=[("If-None-Match", '"v2"')])
    assert r.status == 200 and r.body == b"etagged"
    assert origin.count("/e") == 1


def test_range_from_cache(procs, origin):
    body = bytes(range(256)) * 4
    origin.set("/r", headers=[("Cache-Control", "max-age=60"), ("Content-Type", "application/octet-stream")],
               body=body)
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/r").status == 200
    r = get(w, "/r", headers=[("Range", "bytes=10-19")])
    assert r.status == 206 and r.body == body[10:20]
    assert r.header("Content-Range") == "bytes 10-19/1024"
    r = get(w, "/r", headers=[("Range", "bytes=0-1, 100-101")])
    assert r.status == 206 and r.header("Content-Type").startswith("multipart/byteranges; boundary=")
    assert body[0:2] in r.body and body[100:102] in r.body and b"Content-Range: bytes 100-101/1024" in r.body
    r = get(w, "/r", headers=[("Range", "bytes=5000-")])
    assert r.status == 416 and r.header("Content-Range") == "bytes */1024"
    assert origin.count("/r") == 1


@pytest.mark.parametrize("headers,req", [
    ([("Cache-Control", "max-age=60"), ("Set-Cookie", "sid=secret")], []),
    ([("Cache-Control", "private, max-age=60")], []),
    ([("Cache-Control", "no-store")], []),
    ([("Cache-Control", "max-age=60")], [("Authorization", "Bearer alice")]),
])
def test_never_shared(procs, origin, headers, req):
    origin.set("/p", headers=headers, body=b"for one client")
    w = procs.weir(**cache_conf(origin))
    for _ in range(3):
        r = get(w, "/p", headers=req)
        assert r.status == 200
        cs = r.header("Cache-Status") or ""
        assert not cs.startswith("weir; hit"), cs
    assert origin.count("/p") == 3


def test_authorization_public_is_shared(procs, origin):
    origin.set("/pub", headers=[("Cache-Control", "public, max-age=60")], body=b"shared")
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/pub", headers=[("Authorization", "Bearer alice")]).status == 200
    r = get(w, "/pub", headers=[("Authorization", "Bearer bob")])
    assert r.body == b"shared" and is_hit(r)
    assert origin.count("/pub") == 1


def test_vary(procs, origin):
    origin.set("/v", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], body=b"varies")
    w = procs.weir(**cache_conf(origin))
    get(w, "/v", headers=[("Accept-Language", "en")])
    get(w, "/v", headers=[("Accept-Language", "fr")])
    r = get(w, "/v", headers=[("Accept-Language", "EN")])  # normalised
    assert is_hit(r)
    r = get(w, "/v", headers=[("Accept-Language", "fr")])
    assert is_hit(r)
    assert origin.count("/v") == 2


def test_expired_refetched(procs, origin):
    # 3 s: the two first requests must fall within it even on a loaded machine
    origin.set("/x", headers=[("Cache-Control", "max-age=3")], body=b"short")
    w = procs.weir(**cache_conf(origin))
    get(w, "/x")
    get(w, "/x")
    assert origin.count("/x") == 1
    time.sleep(4.2)
    get(w, "/x")
    assert origin.count("/x") == 2


def test_request_no_cache_and_only_if_cached(procs, origin):
    origin.set("/n", headers=[("Cache-Control", "max-age=60")], body=b"n")
    w = procs.weir(**cache_conf(origin))
    r = get(w, "/other", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and origin.count("/other") == 0
    get(w, "/n")
    get(w, "/n", headers=[("Cache-Control", "no-cache")])
    assert origin.count("/n") == 2
    r = get(w, "/n", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 200 and r.body == b"n"


def test_unsafe_method_invalidates(procs, origin):
    origin.set("/i", headers=[("Cache-Control", "max-age=60")], body=b"v1")
    w = procs.weir(**cache_conf(origin))
    get(w, "/i")
    get(w, "/i")
    assert origin.count("/i") == 1
    r = get(w, "/i", method="POST", body=b"change")
    assert r.status == 200
    get(w, "/i")
    assert origin.count("/i") == 3  # GET, POST, GET again


def test_too_big_streams_not_stored(procs, origin):
    body = os.urandom(300000)
    origin.set("/big", headers=[("Cache-Control", "max-age=60")], body=body, chunks=10)
    w = procs.weir(**cache_conf(origin, max_object=100000, memory=1 << 20))
    for _ in range(2):
        r = get(w, "/big")
        assert r.status == 200 and r.body == body
    assert origin.count("/big") == 2


def test_memory_bound_with_evictions(procs, origin):
    origin.set("/m", headers=[("Cache-Control", "max-age=600")], body=b"z" * 20000)
    w = procs.weir(**cache_conf(origin, memory=1 << 20, max_object=100000))
    n = 150  # 150 x ~20 KiB = 3 MiB through a 1 MiB cache
    for i in range(n):
        assert get(w, "/m?i=%d" % i).status == 200
    # the most recent are hits, the oldest were evicted
    assert is_hit(get(w, "/m?i=%d" % (n - 1)))
    before = origin.count("/m?i=0")
    get(w, "/m?i=0")
    assert origin.count("/m?i=0") == before + 1


def test_coalescing_50_concurrent(procs, origin):
    body = os.urandom(200000)
    origin.set("/c", headers=[("Cache-Control", "max-age=60")], body=body, delay=0.5, chunks=4)
    w = procs.weir(**cache_conf(origin, workers=2))
    results = [None] * 50

    def one(i):
        try:
            results[i] = get(w, "/c")
        except Exception as e:  # noqa: BLE001
            results[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(20))
    assert all(not isinstance(r, Exception) and r is not None for r in results), results
    assert all(r.status == 200 and r.body == body for r in results)
    assert origin.count("/c") == 1


def test_not_storable_releases_waiters(procs, origin):
    origin.set("/ns", headers=[("Cache-Control", "no-store")], body=b"each", delay=0.3)
    w = procs.weir(**cache_conf(origin))
    results = []
    ts = [threading.Thread(target=lambda: results.append(get(w, "/ns"))) for _ in range(5)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(10))
    assert len(results) == 5 and all(r.status == 200 and r.body == b"each" for r in results)
    assert origin.count("/ns") == 5
    assert time.monotonic() - t0 < tf(3)


@needs_redis
def test_two_instances_share_l2(procs, origin, redis):
    origin.set("/s", headers=[("Cache-Control", "max-age=60")], body=b"shared body")
    a = procs.weir(**cache_conf(origin, redis=redis))
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.3)
    assert get(a, "/s").body == b"shared body"
    time.sleep(0.2)  # the SET is asynchronous
    r = get(b, "/s")
    assert r.body == b"shared body"
    assert "detail=l2" in (r.header("Cache-Status") or ""), r.header("Cache-Status")
    assert origin.count("/s") == 1
    r = get(b, "/s")  # promoted to B's L1
    assert "detail=l1" in (r.header("Cache-Status") or "")


@needs_redis
def test_garbage_in_redis_is_a_miss(procs, origin, redis):
    origin.set("/g", headers=[("Cache-Control", "max-age=60")], body=b"good")
    w = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.3)
    redis.cmd("SET", "t:obj:GET http://localhost/g", "not a weir value")
    r = get(w, "/g")
    assert r.status == 200 and r.body == b"good"
    assert origin.count("/g") == 1
    assert wait_until(lambda: redis.cmd("GET", "t:obj:GET http://localhost/g") != b"$16\r\nnot a weir value\r\n",
                      tf(2))


@needs_redis
def test_redis_killed_under_load_then_back(procs, origin, redis):
    origin.set("/k", headers=[("Cache-Control", "max-age=60")], body=b"k")
    w = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.3)
    failures, done = [], []
    stop = threading.Event()

    def load():
        i = 0
        while not stop.is_set() and i < 2000:
            try:
                r = get(w, "/k?i=%d" % (i % 50))
                if r.status != 200:
                    failures.append(r.status)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))
            i += 1
        done.append(i)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.5)
    redis.kill()
    time.sleep(1.0)
    redis.start()
    time.sleep(1.0)
    stop.set()
    t.join(tf(20))
    assert failures == []
    assert done and done[0] > 50
    # L2 in use again: a new key stored through weir appears in Redis
    origin.set("/back", headers=[("Cache-Control", "max-age=60")], body=b"back")
    assert wait_until(lambda: get(w, "/back").status == 200 and
                      redis.cmd("EXISTS", "t:obj:GET http://localhost/back") == b":1\r\n", tf(15), 0.5)
    assert "L2 available again" in w.stderr()


@needs_redis
def test_purge_reaches_other_instance(procs, origin, redis):
    origin.set("/pg", headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", "product-42")], body=b"p")
    a = procs.weir(**cache_conf(origin, redis=redis))
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.3)
    get(a, "/pg")
    time.sleep(0.2)
    get(b, "/pg")
    get(b, "/pg")
    assert origin.count("/pg") == 1
    # an unsafe request through A invalidates the URL everywhere
    get(a, "/pg", method="DELETE")
    time.sleep(0.3)
    r = get(b, "/pg")
    assert not is_hit(r)
    assert origin.count("/pg") == 3


def test_revalidation_304_freshens(procs, origin):
    origin.set("/rv", headers=[("Cache-Control", "max-age=1"), ("ETag", '"r1"'), ("X-Gen", "1")], body=b"body-r1")
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/rv").body == b"body-r1"
    time.sleep(1.5)
    origin.set("/rv", headers=[("Cache-Control", "max-age=60"), ("ETag", '"r1"'), ("X-Gen", "2")], body=b"body-r1")
    r = get(w, "/rv")
    assert r.status == 200 and r.body == b"body-r1"
    assert "fwd-status=304" in (r.header("Cache-Status") or ""), r.header("Cache-Status")
    assert r.header("X-Gen") == "2"  # headers updated from the 304 (RFC 9111 4.3.4)
    assert origin.not_modified.get("/rv") == 1
    assert origin.last_headers["/rv"].get("If-None-Match") == '"r1"'
    r = get(w, "/rv")  # fresh again for 60 s
    assert is_hit(r) and origin.count("/rv") == 2


def test_stale_while_revalidate_one_background_fetch(procs, origin):
    origin.set("/swr", headers=[("Cache-Control", "max-age=1, stale-while-revalidate=30")], body=b"old")
    w = procs.weir(**cache_conf(origin, workers=2))
    assert get(w, "/swr").body == b"old"
    time.sleep(1.5)
    origin.set("/swr", headers=[("Cache-Control", "max-age=60")], body=b"new", delay=2.0)
    t0 = time.monotonic()
    results = []
    ts = [threading.Thread(target=lambda: results.append(get(w, "/swr"))) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(10))
    # all answered at once with the stale copy, while one revalidation runs
    assert len(results) == 10 and all(r.body == b"old" for r in results)
    assert time.monotonic() - t0 < tf(1.5)  # the revalidation alone takes 2 s
    assert wait_until(lambda: get(w, "/swr").body == b"new", tf(5), 0.1)
    assert origin.count("/swr") == 2


def test_stale_if_error_killed_backend(procs, origin):
    origin.set("/sie", headers=[("Cache-Control", "max-age=1, stale-if-error=60")], body=b"keep me")
    w = procs.weir(**cache_conf(origin))
    assert get(w, "/sie").body == b"keep me"
    time.sleep(1.5)
    origin.stop()  # connection refused from now on
    r = get(w, "/sie")
    assert r.status == 200 and r.body == b"keep me"
    assert "stale-if-error" in (r.header("Cache-Status") or ""), r.header("Cache-Status")
    assert int(r.header("Age")) >= 1


def test_stale_if_error_5xx_but_not_without_it(procs, origin):
    origin.set("/s5", headers=[("Cache-Control", "max-age=1, stale-if-error=60")], body=b"good")
    origin.set("/n5", headers=[("Cache-Control", "max-age=1")], body=b"good")
    w = procs.weir(**cache_conf(origin))
    get(w, "/s5")
    get(w, "/n5")
    time.sleep(1.5)
    origin.set("/s5", status=503, body=b"down")
    origin.set("/n5", status=503, body=b"down")
    r = get(w, "/s5")
    assert r.status == 200 and r.body == b"good" and "fwd-status=503" in (r.header("Cache-Status") or "")
    r = get(w, "/n5")
    assert r.status == 503 and r.body == b"down"


# --------------------------------------------------------------------------
# admin: POST /cache/purge, GET /cache
# --------------------------------------------------------------------------

def admin_conf(o, redis=None):
    kw = cache_conf(o, redis=redis)
    port = free_port()
    kw["extra"] += 'admin = { address = "%s:%d"; token = "tok"; };\n' % (LOOPBACK, port)
    return kw, port


def admin(port, method, path, body=None, token="tok"):
    hs = [("Authorization", "Bearer " + token)] if token else []
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        hs.append(("Content-Type", "application/json"))
    with HttpConn(port) as c:
        r = c.request(method, path, headers=hs, body=data)
    return r.status, (json.loads(r.body) if r.body else None)


def is_hit(r):
    """A hit (RFC 9211: the "hit" parameter), not a forward whose detail says hit-for-miss."""
    return (r.header("Cache-Status") or "").startswith("weir; hit")


def test_admin_purge_and_state(procs, origin):
    origin.set("/a/1", headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", "t1 all")], body=b"1")
    origin.set("/a/2", headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", "t2 all")], body=b"2")
    origin.set("/b/1", headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", "t3")], body=b"3")
    kw, ap = admin_conf(origin)
    w = procs.weir(**kw)
    for p in ("/a/1", "/a/2", "/b/1"):
        get(w, p)
        assert is_hit(get(w, p))
    st, j = admin(ap, "GET", "/cache")
    assert st == 200 and j["l1"]["objects"] == 3 and j["requests"]["hit_l1"] == 3 and j["l2"] is None
    st, j = admin(ap, "POST", "/cache/purge", {"url": "http://LOCALHOST:80/a/1"})
    assert st == 200 and j["purged"] == {"l1": 1, "l2": 0}
    assert not is_hit(get(w, "/a/1"))
    st, j = admin(ap, "POST", "/cache/purge", {"tag": "all"})
    assert st == 200 and j["purged"]["l1"] == 2
    st, j = admin(ap, "POST", "/cache/purge", {"prefix": "http://localhost/b/"})
    assert st == 200 and j["purged"]["l1"] == 1
    assert not is_hit(get(w, "/b/1"))
    # errors
    assert admin(ap, "POST", "/cache/purge", {"url": "/a/1"})[0] == 400
    assert admin(ap, "POST", "/cache/purge", {"url": "http://h/", "tag": "x"})[0] == 400
    assert admin(ap, "POST", "/cache/purge", {"nope": 1})[0] == 400
    assert admin(ap, "POST", "/cache/purge", {"tag": "x"}, token="bad")[0] in (401, 403)
    assert admin(ap, "GET", "/cache/purge")[0] == 405


def test_admin_soft_purge_keeps_stale_serving(procs, origin):
    origin.set("/soft", headers=[("Cache-Control", "max-age=600, stale-while-revalidate=60")], body=b"s1")
    kw, ap = admin_conf(origin)
    w = procs.weir(**kw)
    get(w, "/soft")
    st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/soft", "soft": True})
    assert st == 200 and j["purged"]["l1"] == 1
    origin.set("/soft", headers=[("Cache-Control", "max-age=600")], body=b"s2")
    r = get(w, "/soft")
    assert r.body == b"s1" and is_hit(r)  # stale, answered at once
    assert wait_until(lambda: get(w, "/soft").body == b"s2", tf(5), 0.1)
    assert origin.count("/soft") == 2


@needs_redis
def test_admin_purge_reaches_other_instances_and_l2(procs, origin, redis):
    for p, tag in (("/x/1", "k1"), ("/x/2", "k2"), ("/y/1", "k3")):
        origin.set(p, headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", tag)], body=p.encode())
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.4)
    for p in ("/x/1", "/x/2", "/y/1"):
        get(a, p)
    time.sleep(0.2)
    for p in ("/x/1", "/x/2", "/y/1"):
        assert "detail=l2" in (get(b, p).header("Cache-Status") or "")
        assert is_hit(get(b, p))
    st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/x/1"})
    assert st == 200 and j["purged"] == {"l1": 1, "l2": 1}
    st, j = admin(ap, "POST", "/cache/purge", {"prefix": "http://localhost/x/"})
    assert st == 200
    st, j = admin(ap, "POST", "/cache/purge", {"tag": "k3"})
    assert st == 200
    time.sleep(0.3)
    # B's L1 lost them, and the values still in Redis predate the purges: refused
    for p in ("/x/1", "/x/2", "/y/1"):
        r = get(b, p)
        assert not is_hit(r), (p, r.header("Cache-Status"))
    assert origin.count("/x/2") == 2 and origin.count("/y/1") == 2
    st, j = admin(ap, "GET", "/cache")
    assert j["l2"]["state"] == "up" and j["purge_generation"] >= 3


@needs_redis
def test_lease_one_fetch_across_instances(procs, origin, redis):
    origin.set("/lz", headers=[("Cache-Control", "max-age=60")], body=b"L" * 5000, delay=0.6)
    a = procs.weir(**cache_conf(origin, redis=redis))
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.4)
    results = []

    def one(w):
        results.append(get(w, "/lz"))

    ts = [threading.Thread(target=one, args=(a if i % 2 == 0 else b,)) for i in range(10)]
    for t in ts:
        t.start()
        time.sleep(0.01)
    for t in ts:
        t.join(tf(10))
    assert len(results) == 10 and all(r.status == 200 and r.body == b"L" * 5000 for r in results)
    assert origin.count("/lz") == 1


@needs_redis
def test_lease_not_storable_releases_other_instance(procs, origin, redis):
    origin.set("/lp", headers=[("Cache-Control", "private")], body=b"mine", delay=0.3)
    a = procs.weir(**cache_conf(origin, redis=redis))
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.4)
    results = []
    t0 = time.monotonic()
    ts = [threading.Thread(target=lambda w=w: results.append(get(w, "/lp"))) for w in (a, b)]
    for t in ts:
        t.start()
        time.sleep(0.05)
    for t in ts:
        t.join(tf(10))
    assert all(r.body == b"mine" for r in results) and origin.count("/lp") == 2
    assert time.monotonic() - t0 < tf(2.4)  # below the 3 s lease: released by "pass"


def test_metrics_and_promtool(procs, origin):
    from adminutil import promtool_check

    origin.set("/mt", headers=[("Cache-Control", "max-age=60")], body=b"m")
    origin.set("/mp", headers=[("Cache-Control", "private")], body=b"p")
    kw, ap = admin_conf(origin)
    w = procs.weir(**kw)
    for _ in range(3):
        get(w, "/mt")
    get(w, "/mp")
    with HttpConn(ap) as c:
        r = c.request("GET", "/metrics", headers=[("Authorization", "Bearer tok")])
    text = r.body.decode()
    assert 'weir_cache_requests_total{route="* /",tier="l1",result="hit"} 2' in text
    assert 'weir_cache_requests_total{route="* /",tier="backend",result="miss"} 2' in text
    assert 'weir_cache_not_storable_total{route="* /",reason="private"} 1' in text
    assert "weir_cache_l1_objects 1" in text
    res = promtool_check(text)
    if res is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    rc, out = res
    assert rc == 0, out
