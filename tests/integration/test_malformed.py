"""Malformed requests: each gets its status, the connection is closed, and
nothing reaches the origin. weir stays up and serves the next request.

limits.header_bytes is 16384 here, so a 9000-byte request line is "too long
a request line" (414, limit 8192) and not "too big a head" (431)."""

import pytest

from weirtest import HttpConn, PeerClosed, pool, tf

H = "Host: x\r\n"
LIMIT = 16384


@pytest.fixture(scope="module")
def mw(mprocs):
    o = mprocs.origin("a")
    w = mprocs.weir(pools=[pool("p", [o])], limits={"header_bytes": LIMIT})
    return w, o


def origin_requests(o):
    return o.stats()["requests"]


def send_raw(w, data, timeout=5):
    """Send bytes, read one response. Returns (status or None, conn closed?)."""
    with HttpConn(w.port, timeout=tf(timeout)) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
            status = r.status
        except PeerClosed:
            r, status = None, None
        closed = c.closed_by_peer(tf(2))
        return status, r, closed


def good(w):
    with HttpConn(w.port) as c:
        r = c.get("/good")
    assert r.status == 200 and r.body == b"a GET /good\n", r


def post(extra_headers, body=b""):
    return ("POST /p HTTP/1.1\r\n" + H + extra_headers + "\r\n").encode("latin-1") + body


CASES = [
    # framing
    ("cl_and_te", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), {400}),
    ("te_and_cl", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"), {400}),
    ("two_differing_cl", post("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), {400}),
    ("cl_list_differing", post("Content-Length: 5, 6\r\n", b"hello!"), {400}),
    ("cl_abc", post("Content-Length: abc\r\n"), {400}),
    ("cl_negative", post("Content-Length: -1\r\n"), {400}),
    ("cl_two_numbers", post("Content-Length: 1 2\r\n", b"xyz"), {400}),
    ("cl_plus", post("Content-Length: +5\r\n", b"hello"), {400}),
    ("cl_hex", post("Content-Length: 0x5\r\n", b"hello"), {400}),
    ("cl_empty", post("Content-Length: \r\n"), {400}),
    ("cl_overflow", post("Content-Length: 99999999999999999999999\r\n"), {400, 413}),
    ("te_gzip", post("Transfer-Encoding: gzip\r\n", b"xx"), {400}),
    ("te_chunked_gzip", post("Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), {400}),
    # RFC 9112 6.1 lets a server answer an unknown coding with 501
    ("te_gzip_chunked", post("Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), {400, 501}),
    ("te_chunked_twice", post("Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), {400}),
    ("te_two_headers", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", b"0\r\n\r\n"), {400}),
    ("te_junk", post("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), {400, 501}),
    # header syntax
    ("ws_before_colon", ("GET / HTTP/1.1\r\n" + H + "X-A : b\r\n\r\n").encode(), {400}),
    ("ws_before_colon_cl", post("Content-Length : 5\r\n", b"hello"), {400}),
    ("obs_fold", ("GET / HTTP/1.1\r\n" + H + "X-A: a\r\n  b\r\n\r\n").encode(), {400}),
    ("leading_ws_first_header", ("GET / HTTP/1.1\r\n " + H + "\r\n").encode(), {400}),
    ("bare_cr_in_value", ("GET / HTTP/1.1\r\n" + H + "X-A: a\rb\r\n\r\n").encode(), {400}),
    ("bare_cr_line_end", ("GET / HTTP/1.1\r\n" + H + "X-A: a\r\rX-B: c\r\n\r\n").encode(), {400}),
    ("nul_in_value", ("GET / HTTP/1.1\r\n" + H + "X-A: a\x00b\r\n\r\n").encode(), {400}),
    ("ctl_in_value", ("GET / HTTP/1.1\r\n" + H + "X-A: a\x01b\r\n\r\n").encode(), {400}),
    ("del_in_value", ("GET / HTTP/1.1\r\n" + H + "X-A: a\x7fb\r\n\r\n").encode(), {400}),
    ("empty_header_name", ("GET / HTTP/1.1\r\n" + H + ": nothing\r\n\r\n").encode(), {400}),
    ("space_in_header_name", ("GET / HTTP/1.1\r\n" + H + "X A: b\r\n\r\n").encode(), {400}),
    ("no_colon", ("GET / HTTP/1.1\r\n" + H + "X-A b\r\n\r\n").encode(), {400}),
    # request line and target
    ("absolute_ftp", ("GET ftp://x/ HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("space_in_target", ("GET /a b HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("fragment_in_target", ("GET /a#b HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("non_ascii_target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("ctl_in_target", b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    ("relative_target", ("GET abc HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("bad_method_char", ("G(T / HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("two_spaces", ("GET  / HTTP/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("lowercase_version", ("GET / http/1.1\r\n" + H + "\r\n").encode(), {400}),
    ("bad_version", ("GET / HTTP/1.x\r\n" + H + "\r\n").encode(), {400}),
    ("missing_host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", {400}),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("http2", ("GET / HTTP/2.0\r\n" + H + "\r\n").encode(), {505}),
    ("http3", ("GET / HTTP/3.0\r\n" + H + "\r\n").encode(), {505}),
    ("long_request_line", ("GET /" + "a" * 9000 + " HTTP/1.1\r\n" + H + "\r\n").encode(), {414}),
    ("long_request_line_unfinished", ("GET /" + "a" * 9000).encode(), {414}),
    ("header_block_too_big",
     ("GET / HTTP/1.1\r\n" + H + "".join("X-Pad-%d: %s\r\n" % (i, "v" * 600) for i in range(40)) + "\r\n").encode(),
     {431}),
    ("header_block_too_big_unfinished",
     ("GET / HTTP/1.1\r\n" + H + "X-Big: " + "v" * (LIMIT + 100)).encode(), {431}),
    ("too_many_headers",
     ("GET / HTTP/1.1\r\n" + H + "".join("X-N%d: 1\r\n" % i for i in range(300)) + "\r\n").encode(), {431}),
]


@pytest.mark.parametrize("name,data,want", CASES, ids=[c[0] for c in CASES])
def test_malformed(mw, name, data, want):
    w, o = mw
    before = origin_requests(o)
    status, r, closed = send_raw(w, data)
    assert status in want, "sent %r, got %r" % (data[:120], r)
    assert closed, "connection left open after %d" % status
    assert origin_requests(o) == before, "the malformed request reached the origin"
    assert w.alive()
    good(w)


BODY_ERRORS = [
    ("chunk_size_zz", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk_size_overflow", b"fffffffffffffffffffff\r\n"),
    ("chunk_missing_crlf", b"5\r\nhelloXX0\r\n\r\n"),
    ("chunk_size_space", b"5 5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_bare_lf", b"5\nhello\n0\n\n"),
]


@pytest.mark.parametrize("name,body", BODY_ERRORS, ids=[b[0] for b in BODY_ERRORS])
def test_bad_chunked_body(mw, name, body):
    """A framing error inside a chunked body. The head may already have been
    forwarded (weir streams bodies), so the origin can see the head; the client
    must get 400 (or 502 if the error was detected after the origin answered
    nothing) or a closed connection, and the connection must close."""
    w, o = mw
    data = post("Transfer-Encoding: chunked\r\n", body)
    status, r, closed = send_raw(w, data)
    assert status in (400, 502, None), r
    assert closed
    assert w.alive()
    good(w)


def test_valid_absolute_form(mw):
    w, o = mw
    with HttpConn(w.port) as c:
        r = c.get("http://localhost/abs?q=1", host="localhost")
        assert r.status == 200, r
        assert r.body.startswith(b"a GET /abs"), r
        # the origin gets the origin-form
        assert o.last().split(b"\r\n")[0] == b"GET /abs?q=1 HTTP/1.1"
        r = c.get("HTTP://LOCALHOST:80/abs2", host="localhost")
        assert r.status == 200, r
        assert o.last().split(b"\r\n")[0] == b"GET /abs2 HTTP/1.1"


def test_head_just_under_limit_is_fine(mw):
    w, o = mw
    pad = "X-Pad: " + "v" * (LIMIT - 400) + "\r\n"
    with HttpConn(w.port) as c:
        c.send(("GET /big-head HTTP/1.1\r\n" + H + pad + "\r\n").encode())
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == b"a GET /big-head\n"


def test_request_line_just_under_limit_is_fine(mw):
    w, o = mw
    path = "/" + "b" * 8000
    with HttpConn(w.port) as c:
        r = c.get(path)
        assert r.status == 200, r
        assert r.body == ("a GET %s\n" % path).encode()


def test_malformed_after_good_on_same_connection(mw):
    """A bad request after a good one on a keep-alive connection: the good one
    is answered, the bad one gets 400 and the connection closes."""
    w, o = mw
    before = origin_requests(o)
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n")
        r1 = c.read_response()
        assert r1.status == 200 and r1.body == b"a GET /one\n"
        r2 = c.read_response()
        assert r2.status == 400
        assert c.closed_by_peer(tf(2))
    assert origin_requests(o) == before + 1


def test_smuggling_attempt_not_forwarded(mw):
    """The classic CL.TE smuggle: nothing of it reaches the origin."""
    w, o = mw
    before = origin_requests(o)
    data = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nSMUGGLED")
    status, r, closed = send_raw(w, data)
    assert status == 400 and closed
    assert origin_requests(o) == before
