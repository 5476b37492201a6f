"""Coalesced waiters streamed a response of unknown length (issue 8): the
leader's origin answers with Transfer-Encoding: chunked and the waiters get
the head at once and the body as it arrives, framed for their own client
(chunked to HTTP/1.1, close-delimited to HTTP/1.0). A body that outgrows
cache.max_object_bytes while they stream passes through to them unstored,
weir holding about max_object_bytes of it, not the whole; a waiter that falls
further behind than that is cut.

The origin here sends its head at once and then the body in timed pieces
(or breaks off), which the shared test origin of test_cache.py cannot.
"""

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from weirtest import ASAN, LOOPBACK, TSAN, HttpConn, Sampler, free_port, rss_kib, tf
from test_cache import admin, cache_conf

pytestmark = pytest.mark.threaded


class Piece:
    def __init__(self, body, pieces, interval, cut_after=None, hold=0.0, close=False,
                 headers=(("Cache-Control", "max-age=60"),)):
        self.body, self.pieces, self.interval, self.cut_after = body, pieces, interval, cut_after
        self.close = close  # no chunked framing: the body ends with the connection
        self.hold = hold  # seconds between the first piece and the rest
        self.headers = list(headers)


class DripOrigin:
    """GET answers the Piece set for the path: the head at once, chunked, then
    the body in `pieces` chunks `interval` s apart (the second `hold` s after
    the first); cut_after: close the
    connection after that many chunks, without the last chunk."""

    def __init__(self):
        self.specs, self.counts, self.finished = {}, {}, {}
        self.lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with origin.lock:
                    origin.counts[self.path] = origin.counts.get(self.path, 0) + 1
                    spec = origin.specs[self.path]
                self.send_response(200)
                for k, v in spec.headers:
                    self.send_header(k, v)
                if spec.close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                step = max(1, -(-len(spec.body) // spec.pieces))
                try:
                    for n, i in enumerate(range(0, len(spec.body), step)):
                        if spec.cut_after is not None and n >= spec.cut_after:
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if n == 1 and spec.hold:
                            time.sleep(spec.hold)
                        elif n > 0 and spec.interval:
                            time.sleep(spec.interval)
                        part = spec.body[i:i + step]
                        self.wfile.write(part if spec.close else b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    if not spec.close:
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                finally:
                    with origin.lock:
                        origin.finished[self.path] = time.monotonic()

        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, path, spec):
        with self.lock:
            self.specs[path] = spec

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def drip():
    o = DripOrigin()
    yield o
    o.stop()


class Fetch:
    """One GET over a raw socket, timed: the head, the first body byte, the
    body decoded from its framing and whether that framing said it ended."""

    def __init__(self, port, target, version="HTTP/1.1", rcvbuf=None, stall=0.0):
        self.port, self.target, self.version, self.rcvbuf, self.stall = port, target, version, rcvbuf, stall
        self.status = self.fields = self.error = None
        self.t_start = self.t_head = self.t_first = None
        self.body, self.complete = b"", False

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            self.error = e

    def _recv(self, s):
        d = s.recv(65536)
        if d and self.t_first is None and self.t_head is not None:
            self.t_first = time.monotonic()
        return d

    def _run(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.settimeout(tf(30))
        self.t_start = time.monotonic()
        s.connect((LOOPBACK, self.port))
        try:
            s.sendall(b"GET %s %s\r\nHost: localhost\r\n\r\n" % (self.target.encode(), self.version.encode()))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise OSError("closed in the head")
                buf += d
            self.t_head = time.monotonic()
            head, rest = buf.split(b"\r\n\r\n", 1)
            if rest:
                self.t_first = self.t_head
            lines = head.decode("latin-1").split("\r\n")
            self.status = int(lines[0].split()[1])
            self.fields = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:])}
            if self.stall:
                time.sleep(self.stall)
            if self.fields.get("transfer-encoding") == "chunked":
                self._chunked(s, rest)
            elif "content-length" in self.fields:
                n = int(self.fields["content-length"])
                while len(rest) < n:
                    d = self._recv(s)
                    if not d:
                        break
                    rest += d
                self.body, self.complete = rest[:n], len(rest) >= n
            else:  # delimited by the close
                while True:
                    d = self._recv(s)
                    if not d:
                        break
                    rest += d
                self.body, self.complete = rest, True
        finally:
            s.close()

    def _chunked(self, s, buf):
        body = []
        while True:
            while b"\r\n" not in buf:
                d = self._recv(s)
                if not d:
                    self.body = b"".join(body)
                    return
                buf += d
            line, buf = buf.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(buf) < size + 2:
                d = self._recv(s)
                if not d:
                    body.append(buf[:size])
                    self.body = b"".join(body)
                    return
                buf += d
            if size == 0:
                self.body, self.complete = b"".join(body), True
                return
            body.append(buf[:size])
            buf = buf[size + 2:]


def run_all(fetches, stagger=0.0, join=60):
    ts = [threading.Thread(target=f.run) for f in fetches]
    for t in ts:
        t.start()
        if stagger:
            time.sleep(stagger)
    for t in ts:
        t.join(tf(join))
    assert not any(t.is_alive() for t in ts), "a client did not finish"


def conf_with_admin(origin, **kw):
    c = cache_conf(origin, **kw)
    port = free_port()
    c["extra"] += 'admin = { address = "%s:%d"; token = "tok"; };\n' % (LOOPBACK, port)
    return c, port


def cs(f):
    return (f.fields or {}).get("cache-status", "")


def get(w, target):
    with HttpConn(w.port) as c:
        return c.request("GET", target)


# ---------------------------------------------------------------------------

def test_waiters_stream_a_chunked_response_as_it_arrives(procs, drip):
    """24 concurrent clients for a cold key, the origin sending a chunked body
    over ~2.4 s: one backend request; every client gets the whole body,
    chunked; the waiters get the head and first bytes long before the origin
    finishes (not after the whole object completed)."""
    body = os.urandom(48 * 4096)
    drip.set("/a", Piece(body, pieces=48, interval=0.05))
    w = procs.weir(**cache_conf(drip, workers=2))
    fs = [Fetch(w.port, "/a") for _ in range(24)]
    run_all(fs)
    assert all(f.error is None for f in fs), [f.error for f in fs if f.error]
    assert drip.count("/a") == 1
    for f in fs:
        assert f.status == 200 and f.complete and f.body == body, (f.status, f.complete, len(f.body))
        assert f.fields.get("transfer-encoding") == "chunked" and "content-length" not in f.fields
    waiters = [f for f in fs if "collapsed" in cs(f)]
    assert len(waiters) == 23, sorted(cs(f) for f in fs)
    assert all(cs(f) == "weir; fwd=uri-miss; fwd-status=200; collapsed" for f in waiters), [cs(f) for f in waiters]
    end = drip.finished["/a"]
    start = min(f.t_start for f in fs)
    assert end - start >= 2.0, end - start
    for f in waiters:
        # the first bytes within ~1 s of the request, and well before the origin's end
        assert f.t_first - f.t_start < tf(1.0), f.t_first - f.t_start
        assert f.t_first < end - 0.5, (f.t_first - start, end - start)
    # it was stored: the next request is an L1 hit with a length
    r = get(w, "/a")
    assert r.status == 200 and r.body == body and r.header("Cache-Status").startswith("weir; hit")
    assert r.header("Content-Length") == str(len(body))
    assert drip.count("/a") == 1


def test_http10_waiter_gets_a_close_delimited_body(procs, drip):
    """An HTTP/1.0 waiter cannot be sent chunks: its body ends with the
    connection; an HTTP/1.1 waiter beside it gets chunks."""
    body = os.urandom(20 * 5000)
    drip.set("/v", Piece(body, pieces=20, interval=0.05))
    w = procs.weir(**cache_conf(drip, workers=2))
    lead = Fetch(w.port, "/v")
    old = Fetch(w.port, "/v", version="HTTP/1.0")
    new = Fetch(w.port, "/v")
    run_all([lead, old, new], stagger=0.15)
    for f in (lead, old, new):
        assert f.error is None and f.status == 200 and f.complete and f.body == body, (f.error, len(f.body))
    assert drip.count("/v") == 1
    assert "collapsed" in cs(old) and "collapsed" in cs(new), (cs(old), cs(new))
    assert "transfer-encoding" not in old.fields and "content-length" not in old.fields, old.fields
    assert old.fields.get("connection", "").lower() == "close"
    assert new.fields.get("transfer-encoding") == "chunked"


def test_close_delimited_origin_body_streams_to_waiters(procs, drip):
    """An origin body ended by the close (no length, no chunks) streams to
    the waiters the same way, and is stored when it ends."""
    body = os.urandom(30 * 4000)
    drip.set("/e", Piece(body, pieces=30, interval=0.05, close=True))
    w = procs.weir(**cache_conf(drip, workers=2))
    fs = [Fetch(w.port, "/e") for _ in range(8)]
    run_all(fs)
    assert drip.count("/e") == 1
    for f in fs:
        assert f.error is None and f.status == 200 and f.complete and f.body == body, (f.error, len(f.body))
    waiters = [f for f in fs if "collapsed" in cs(f)]
    assert len(waiters) == 7, sorted(cs(f) for f in fs)
    end = drip.finished["/e"]
    assert all(f.fields.get("transfer-encoding") == "chunked" for f in waiters)
    assert all(f.t_first < end - 0.5 for f in waiters), [end - f.t_first for f in waiters]
    r = get(w, "/e")
    assert r.body == body and r.header("Cache-Status").startswith("weir; hit")


def test_chunked_body_past_max_object_passes_through_unstored(procs, drip):
    """The body outgrows max_object_bytes (256 KiB) while 20 waiters stream
    it: every client still gets all 16 MiB (4 under a sanitizer), nothing is stored (the next
    request goes to the backend, a miss), and weir never holds the body."""
    # (smaller and slower under a sanitizer: the waiters, on two workers,
    # must keep within max_object_bytes of the leader or they are cut)
    body = os.urandom((4 if ASAN or TSAN else 16) << 20)
    drip.set("/big", Piece(body, pieces=len(body) >> 15, interval=tf(0.004), hold=0.3))
    kw, ap = conf_with_admin(drip, workers=2, max_object=256 << 10)
    w = procs.weir(**kw)
    base = None
    sampler = None
    if not ASAN and not TSAN:
        time.sleep(0.2)
        base = rss_kib(w.pid)
        sampler = Sampler(w.pid, 0.02)
        sampler.start()
    fs = [Fetch(w.port, "/big") for _ in range(20)]
    run_all(fs, join=120)
    if sampler is not None:
        sampler.stop()
    assert all(f.error is None for f in fs), [f.error for f in fs if f.error]
    for f in fs:
        assert f.status == 200 and f.complete and len(f.body) == len(body) and f.body == body, \
            (f.status, f.complete, len(f.body))
    assert drip.count("/big") == 1
    assert sum("collapsed" in cs(f) for f in fs) == 19, sorted(cs(f) for f in fs)
    st, j = admin(ap, "GET", "/cache")
    assert st == 200
    # no object in L1: what it holds is the hit-for-miss mark alone
    assert j["l1"]["objects"] == 0 and j["l1"]["hit_for_miss_marks"] == 1 and j["l1"]["bytes"] < 16384, j["l1"]
    assert j["requests"]["stored"] == 0 and j["requests"]["not_storable_by"]["too_big"] == 1, j["requests"]
    assert j["requests"]["stream_cut"] == 0
    # not stored: the next request goes to the backend, as a miss (the
    # hit-for-miss mark a response too big leaves)
    r = get(w, "/big")
    assert r.status == 200 and r.body == body
    s = r.header("Cache-Status")
    assert s.startswith("weir; fwd=miss;") and "detail=hit-for-miss" in s, s
    assert drip.count("/big") == 2
    if sampler is not None:
        grew = sampler.max - base
        # the whole body is 16 MiB; passing through it keeps ~max_object_bytes
        assert grew < 8 * 1024, "weir's RSS grew by %d KiB" % grew


def test_waiter_too_far_behind_is_cut(procs, drip):
    """A waiter that stops reading falls more than max_object_bytes behind a
    body passing through: it is cut (no last chunk), counted; the others and
    the leader get everything."""
    # the stalled client's socket buffers hold a few MiB: the body is
    # several times that
    body = os.urandom(24 << 20)
    drip.set("/lag", Piece(body, pieces=len(body) >> 15, interval=tf(0.001), hold=0.5))
    kw, ap = conf_with_admin(drip, workers=2, max_object=256 << 10)
    w = procs.weir(**kw)
    lead = Fetch(w.port, "/lag")
    lagging = Fetch(w.port, "/lag", rcvbuf=4096, stall=tf(8))
    others = [Fetch(w.port, "/lag") for _ in range(3)]
    run_all([lead, lagging] + others, stagger=0.05, join=120)
    for f in [lead] + others:
        assert f.error is None and f.complete and f.body == body, (f.error, f.complete, len(f.body))
    assert "collapsed" in cs(lagging)
    assert lagging.error is None and not lagging.complete and len(lagging.body) < len(body), \
        (lagging.error, lagging.complete, len(lagging.body))
    assert drip.count("/lag") == 1
    st, j = admin(ap, "GET", "/cache")
    assert j["requests"]["stream_cut"] == 1, j["requests"]
    assert "fell more than max_object_bytes" in w.stderr()


def test_backend_dies_mid_chunked_body(procs, drip):
    """The leader's backend breaks off mid-body: the waiters are cut (closed
    without the last chunk) and nothing is stored."""
    body = os.urandom(20 * 4096)
    drip.set("/d", Piece(body, pieces=20, interval=0.05, cut_after=8))
    w = procs.weir(**cache_conf(drip, workers=2))
    fs = [Fetch(w.port, "/d") for _ in range(10)]
    run_all(fs)
    assert drip.count("/d") == 1
    waiters = [f for f in fs if "collapsed" in cs(f)]
    assert len(waiters) == 9, sorted(cs(f) for f in fs)
    for f in fs:
        assert f.error is None and f.status == 200, f.error
        assert not f.complete and body.startswith(f.body) and len(f.body) < len(body), (f.complete, len(f.body))
    # nothing stored: the next request goes to the backend
    drip.set("/d", Piece(body, pieces=2, interval=0))
    r = get(w, "/d")
    assert r.status == 200 and r.body == body and not r.header("Cache-Status").startswith("weir; hit")
    assert drip.count("/d") == 2
