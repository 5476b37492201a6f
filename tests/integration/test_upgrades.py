"""Upgrades (issue 7, defect 17): h2c upgrades are never forwarded (h2c
request smuggling), and a 101 is tunnelled only when it switches to a
protocol the client asked for."""

import pytest

from scripted import Scripted
from weirtest import HttpConn, PeerClosed, pool, tf


@pytest.fixture
def backend():
    made = []

    def make(respond):
        b = Scripted(respond)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def header(head, name):
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def ok_or_switch(head, conn):
    """101 to any upgrade request (as a careless h2c-capable server would)."""
    up = header(head, b"upgrade")
    if up is not None:
        return b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + up + b"\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_h2c_upgrade_not_forwarded(procs, backend):
    b = backend(ok_or_switch)
    w = procs.weir(pools=[pool("p", [b.addr])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send("GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ok", r
        # still plain HTTP/1.1 on the same connection
        r = c.get("/after")
        assert r.status == 200 and r.body == b"ok", r
    head = b.heads[0]
    assert header(head, b"upgrade") is None, head
    assert b"h2c" not in head.lower(), head
    assert header(head, b"http2-settings") is None, head


def test_101_to_unrequested_protocol_refused(procs, backend):
    def wrong(head, conn):
        return b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    b = backend(wrong)
    w = procs.weir(pools=[pool("p", [b.addr])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        r = c.read_response()
        assert r.status == 502, r
    assert w.wait_log(r"101 .*not requested|switches to a protocol", tf(3)), w.stderr_tail()


def test_101_without_upgrade_header_refused(procs, backend):
    def bare(head, conn):
        return b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"
    b = backend(bare)
    w = procs.weir(pools=[pool("p", [b.addr])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        r = c.read_response()
        assert r.status == 502, r


def test_101_to_requested_protocol_tunnelled(procs, backend):
    """The control: a 101 for the protocol asked for is tunnelled."""
    def echo_after_switch(head, conn):
        if header(head, b"upgrade") is None:
            return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n"
                     b"hello-from-server")
        return None
    b = backend(echo_after_switch)
    w = procs.weir(pools=[pool("p", [b.addr])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: foo/2, websocket\r\n\r\n")
        r = c.read_head()
        assert r.status == 101, r
        data = b""
        for _ in range(100):
            if len(data) >= 17:
                break
            if not c.buf and not c._fill():
                break
            data += bytes(c.buf)
            c.buf.clear()
        assert data == b"hello-from-server"
