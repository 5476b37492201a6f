"""Message bodies both ways: chunked (with trailers), Content-Length,
Expect: 100-continue, HEAD, 204 and 304."""

import os
import random
import socket
import time

import pytest

from weirtest import ASAN, HttpConn, build_request, chunked_encode, fnv1a64, pool, tf


@pytest.fixture(scope="module")
def bw(mprocs):
    o = mprocs.origin("a")
    w = mprocs.weir(pools=[pool("p", [o])])
    return w, o


def received(r):
    return int(r.header("X-Received-Bytes")), int(r.header("X-Received-Fnv"), 16)


def test_chunked_upload_with_trailers(bw):
    w, o = bw
    rnd = random.Random(1)
    data = os.urandom(300000)
    pieces, i = [], 0
    while i < len(data):
        n = rnd.choice([1, 7, 100, 4096, 65536, 70000])
        pieces.append(data[i:i + n])
        i += n
    body = chunked_encode(pieces, trailers=[("X-Checksum", "abc"), ("X-More", "1")])
    with HttpConn(w.port) as c:
        head = build_request("POST", "/up", headers=[("Transfer-Encoding", "chunked")])
        c.send(head)
        # send in odd-sized slices so chunk lines are split across reads
        for k in range(0, len(body), 9973):
            c.send(body[k:k + 9973])
        r = c.read_response("POST")
        assert r.status == 200, r
        assert received(r) == (len(data), fnv1a64(data)), r
        # the connection stays usable
        assert c.get("/next").body == b"a GET /next\n"


def test_chunked_upload_with_extensions(bw):
    w, o = bw
    body = b"5;ext=1\r\nhello\r\n6;a=b;c=\"d\"\r\n world\r\n0\r\n\r\n"
    with HttpConn(w.port) as c:
        c.send(build_request("POST", "/ext", headers=[("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response("POST")
        assert r.status == 200, r
        assert received(r) == (11, fnv1a64(b"hello world"))


def direct(o, target):
    with HttpConn(o.port) as c:
        r = c.get(target)
    assert r.status == 200
    return r.body


@pytest.mark.parametrize("size", [0, 1, 65536, 1000003])
def test_chunked_response_with_trailer(bw, size):
    w, o = bw
    t = "/cr?size=%d&chunked=1&trailer=1" % size
    want = direct(o, t)
    assert len(want) == size
    with HttpConn(w.port) as c:
        r = c.get(t)
        assert r.status == 200, r
        assert r.body == want
        assert r.header("Content-Length") is None or int(r.header("Content-Length")) == size
        if r.chunked:
            # a chunked response is passed on as is, trailer fields included
            assert r.trailers == [("X-Trailer", "done")], r.trailers
        assert c.get("/next").body == b"a GET /next\n"


def test_chunked_response_to_http10_client_is_dechunked(bw):
    w, o = bw
    t = "/d10?size=70000&chunked=1"
    want = direct(o, t)
    with HttpConn(w.port) as c:
        r = c.request("GET", t, version="HTTP/1.0")
        assert r.status == 200
        assert not r.chunked, "chunked coding sent to an HTTP/1.0 client"
        assert r.body == want


@pytest.mark.parametrize("size", [0, 10, 100000, 3000000])
def test_content_length_upload(bw, size):
    w, o = bw
    data = os.urandom(size)
    with HttpConn(w.port, timeout=tf(5)) as c:
        r = c.request("POST", "/cl", body=data)
        assert r.status == 200, r
        assert received(r) == (size, fnv1a64(data))
        assert "close" not in (r.header("Connection") or "").lower(), "keep-alive lost: %r" % r
        r = c.request("PUT", "/cl2", body=data[:5])
        assert received(r) == (min(5, size), fnv1a64(data[:5]))


@pytest.mark.parametrize("size", [0, 1, 100000, 5000000])
def test_content_length_download(bw, size):
    w, o = bw
    t = "/dl?size=%d" % size
    want = direct(o, t)
    with HttpConn(w.port, timeout=tf(5)) as c:
        r = c.get(t)
        assert r.status == 200
        assert r.header("Content-Length") == str(size), r
        assert r.body == want
        assert c.get("/next").body == b"a GET /next\n"


def test_expect_100_continue(bw):
    w, o = bw
    data = os.urandom(1000)
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(build_request("POST", "/e", headers=[("Expect", "100-continue"),
                                                    ("Content-Length", str(len(data)))]))
        interim = c.read_head()
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1"
        c.send(data)
        r = c.read_response("POST")
        assert r.status == 200, r
        assert received(r) == (1000, fnv1a64(data))
        assert c.get("/next").body == b"a GET /next\n"


def test_expect_100_continue_chunked(bw):
    w, o = bw
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(build_request("POST", "/e2", headers=[("Expect", "100-continue"),
                                                     ("Transfer-Encoding", "chunked")]))
        assert c.read_head().status == 100
        c.send(chunked_encode([b"abc", b"defg"]))
        r = c.read_response("POST")
        assert received(r) == (7, fnv1a64(b"abcdefg"))


def test_head_has_no_body(bw):
    w, o = bw
    with HttpConn(w.port) as c:
        r = c.request("HEAD", "/h?size=12345")
        assert r.status == 200
        assert r.header("Content-Length") in (None, "12345"), r
        # no body bytes may follow: the next response must start right away
        r2 = c.get("/after-head")
        assert r2.status == 200 and r2.body == b"a GET /after-head\n", r2
        r = c.request("HEAD", "/h?size=5000&chunked=1")
        assert r.status == 200
        r2 = c.get("/after-head2")
        assert r2.body == b"a GET /after-head2\n", r2


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(bw, status):
    w, o = bw
    with HttpConn(w.port) as c:
        r = c.get("/n?status=%d" % status)
        assert r.status == status, r
        assert r.header("Transfer-Encoding") is None, r
        # nothing else is on the wire before the next response
        r2 = c.get("/after")
        assert r2.status == 200 and r2.body == b"a GET /after\n", r2


@pytest.mark.parametrize("status", [201, 404, 500, 503])
def test_other_statuses_pass_through(bw, status):
    w, o = bw
    with HttpConn(w.port) as c:
        r = c.get("/s?status=%d" % status)
        assert r.status == status, r
        assert r.origin == "a"
        assert c.get("/after").status == 200


def test_zero_length_response_keeps_connection(bw):
    """A 200 with Content-Length: 0 completes the exchange: the next request
    on the connection is answered."""
    w, o = bw
    with HttpConn(w.port, timeout=tf(3)) as c:
        for i in range(3):
            r = c.get("/z%d?size=0" % i)
            assert r.status == 200 and r.body == b"" and r.header("Content-Length") == "0", r
        assert c.get("/next").body == b"a GET /next\n"


def test_zero_length_request_body_keeps_connection(bw):
    """POST with Content-Length: 0 is a complete request: weir keeps the
    client connection open."""
    w, o = bw
    with HttpConn(w.port, timeout=tf(3)) as c:
        for i in range(3):
            r = c.request("POST", "/p%d" % i, body=b"")
            assert r.status == 200 and r.header("X-Received-Bytes") == "0", r
            assert "close" not in (r.header("Connection") or "").lower(), r
        assert c.get("/next").body == b"a GET /next\n"


def test_empty_chunked_request_body(bw):
    w, o = bw
    with HttpConn(w.port, timeout=tf(3)) as c:
        c.send(build_request("POST", "/ec", headers=[("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n")
        r = c.read_response("POST")
        assert r.status == 200 and received(r) == (0, fnv1a64(b"")), r
        assert c.get("/next").body == b"a GET /next\n"


def test_head_dribbled_byte_by_byte(bw):
    """A request arriving one byte per write (well within client_header_ms)
    is parsed across reads."""
    w, o = bw
    data = build_request("POST", "/dribble?x=1", headers=[("X-A", "b" * 50)], body=b"hello")
    with HttpConn(w.port, timeout=tf(5)) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            if i % 10 == 0:
                time.sleep(0.002)
        r = c.read_response("POST")
        assert r.status == 200, r
        assert received(r) == (5, fnv1a64(b"hello"))


def test_slow_reading_client_backpressure(bw):
    """A client that does not read while a 200 MB response is produced: weir
    stops reading from the origin (RSS stays bounded) and the body is whole
    when the client reads again."""
    w, o = bw
    from weirtest import Sampler
    size = 200 * 1000 * 1000
    base = w.rss()
    smp = Sampler(w.pid)
    smp.start()
    try:
        with HttpConn(w.port, timeout=tf(30)) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(build_request("GET", "/bp?size=%d" % size))
            time.sleep(1.5)  # not reading
            n = [0]
            r = c.read_response(sink=lambda b: n.__setitem__(0, n[0] + len(b)))
            assert r.status == 200 and n[0] == size
    finally:
        smp.stop()
    if not ASAN:  # ASan's quarantine keeps freed memory: RSS says nothing there
        assert smp.max - base < 16 * 1024, "RSS grew by %d KiB" % (smp.max - base)
