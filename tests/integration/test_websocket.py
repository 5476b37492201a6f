"""WebSocket (RFC 6455) through weir to the origin's /ws echo endpoint."""

import base64
import hashlib
import os
import re
import signal
import struct
import time

import pytest

from weirtest import HttpConn, PeerClosed, pool, tf, wait_until

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True, mask=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, key)
    return hdr + key + masked


def _mask_fast(payload, key):
    n = len(payload)
    k = int.from_bytes((key * ((n + 3) // 4))[:n], "big")
    return (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")


def read_frame(c):
    """(fin, opcode, payload) of one server frame; asserts it is unmasked."""
    def need(n):
        while len(c.buf) < n:
            if not c._fill():
                raise PeerClosed("closed inside a frame")
        d = bytes(c.buf[:n])
        del c.buf[:n]
        return d
    b0, b1 = need(2)
    assert not (b1 & 0x80), "server frames must not be masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", need(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", need(8))[0]
    return bool(b0 & 0x80), b0 & 0x0F, need(n)


def read_message(c):
    """Reassemble one data message (skipping pings), returns (opcode, payload)."""
    op0, data = None, b""
    for _ in range(10000):
        fin, op, p = read_frame(c)
        if op in (9, 10):
            continue
        if op0 is None:
            op0 = op
        data += p
        if fin:
            return op0, data
    raise AssertionError("message never finished")


def handshake(c, key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key)
    r = c.read_head()
    return key, r


def test_websocket_echo(procs):
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        key, r = handshake(c)
        assert r.status == 101, r
        assert (r.header("Upgrade") or "").lower() == "websocket", r
        assert "upgrade" in (r.header("Connection") or "").lower(), r
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert r.header("Sec-WebSocket-Accept") == want, r

        c.send(frame(1, "héllo wörld".encode()))
        assert read_message(c) == (1, "héllo wörld".encode())

        for n in (0, 125, 126, 65535, 65536, 300000):
            data = os.urandom(n)
            c.send(frame(2, data))
            op, got = read_message(c)
            assert op == 2 and got == data, (n, len(got))

        # a fragmented text message
        c.send(frame(1, b"frag-", fin=False) + frame(0, b"ment", fin=True))
        assert read_message(c) == (1, b"frag-ment")

        # several frames in one write
        c.send(b"".join(frame(1, b"m%d" % i) for i in range(20)))
        for i in range(20):
            assert read_message(c) == (1, b"m%d" % i)

        # ping -> pong with the same payload
        c.send(frame(9, b"pp"))
        fin, op, p = read_frame(c)
        assert (op, p) == (10, b"pp")

        c.send(frame(8, struct.pack("!H", 1000) + b"bye"))
        fin, op, p = read_frame(c)
        assert op == 8, (op, p)
        assert p[:2] == struct.pack("!H", 1000), p
        assert c.closed_by_peer(tf(3)), "TCP not closed after the close handshake"


def test_websocket_many_sessions_fd_stable(procs):
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        c.get("/warm")
    base = w.fds()
    for i in range(20):
        with HttpConn(w.port, timeout=tf(5)) as c:
            key, r = handshake(c)
            assert r.status == 101
            c.send(frame(1, b"x%d" % i))
            assert read_message(c) == (1, b"x%d" % i)
            if i % 2:
                c.send(frame(8, struct.pack("!H", 1000)))
                read_frame(c)
                assert c.closed_by_peer(tf(3))
        # even i: client just drops the TCP connection
    assert wait_until(lambda: w.fds() <= base + 1, tf(5)), (base, w.fds())


def test_websocket_then_plain_http_on_other_connection(procs):
    """A non-upgrade request to /ws or elsewhere is still ordinary HTTP."""
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        r = c.get("/plain")
        assert r.status == 200 and r.body == b"ws GET /plain\n"


def test_upgrade_refused_by_origin_stays_http(procs):
    """An upgrade request the origin answers with a plain 200 (not 101): the
    connection stays ordinary HTTP and serves the next request."""
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send("GET /not-ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"ws GET /not-ws\n", r
        r = c.get("/next")
        assert r.status == 200 and r.body == b"ws GET /next\n", r


@pytest.mark.threaded
def test_sigterm_with_open_websocket(procs):
    """An open WebSocket session does not keep weir alive past drain_ms."""
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"drain_ms": 1000})
    with HttpConn(w.port, timeout=tf(5)) as c:
        key, r = handshake(c)
        assert r.status == 101
        c.send(frame(1, b"hi"))
        assert read_message(c) == (1, b"hi")
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        rc = w.proc.wait(timeout=tf(5))
        dt = time.monotonic() - t0
        assert rc == 0
        assert dt < tf(2.0), dt
        assert c.closed_by_peer(tf(2))


def test_tunnel_logged_and_counted(procs):
    """Issue 7, defect 4: a WebSocket tunnel gets an access log line (status
    101, bytes sent to the client) when it ends, and is counted in /stats."""
    from adminutil import Admin, admin_extra
    from weirtest import conf, free_port
    o = procs.origin("ws")
    port, aport = free_port(), free_port()
    w = procs.weir(conf(port, [pool("p", [o])], extra=admin_extra(aport)), port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    before = a.stats()["global"]["requests"]
    start = len(w.stderr())
    with HttpConn(w.port, timeout=tf(5)) as c:
        key, r = handshake(c)
        assert r.status == 101
        c.send(frame(2, b"z" * 5000))
        assert read_message(c) == (2, b"z" * 5000)
        assert wait_until(lambda: a.stats()["global"]["requests"] == before + 1, tf(3)), a.stats()["global"]
        c.send(frame(8, struct.pack("!H", 1000)))
        read_frame(c)
        assert c.closed_by_peer(tf(3))
    m = w.wait_log(r'"GET /ws HTTP/1.1" 101 (\d+) ', tf(3), start)
    assert m, w.stderr()[start:]
    assert int(m.group(1)) >= 5000, m.group(0)


def test_tunnel_does_not_hold_server_delete(procs):
    """Defect 4: an open tunnel does not count as an active request of its
    server, so an admin DELETE of that server finishes."""
    from adminutil import Admin, admin_extra
    from weirtest import conf, free_port
    o = procs.origin("ws")
    o2 = procs.origin("ws")
    port, aport = free_port(), free_port()
    w = procs.weir(conf(port, [pool("p", [o, o2])], extra=admin_extra(aport)), port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    conns = []
    try:
        for _ in range(2):  # one tunnel on each server (round robin)
            c = HttpConn(w.port, timeout=tf(5))
            conns.append(c)
            key, r = handshake(c)
            assert r.status == 101
        r = a.delete("p", o.addr)
        assert r.status in (200, 202), r
        assert a.wait_gone("p", o.addr, timeout=3), a.stats()
        # the tunnels still work
        for c in conns:
            c.send(frame(1, b"still"))
            assert read_message(c) == (1, b"still")
    finally:
        for c in conns:
            c.close()


def test_tunnel_closed_and_logged_at_drain_deadline(procs):
    """Defect 4: at the drain deadline an open tunnel is closed and logged."""
    o = procs.origin("ws")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"drain_ms": 800})
    start = len(w.stderr())
    with HttpConn(w.port, timeout=tf(5)) as c:
        key, r = handshake(c)
        assert r.status == 101
        c.send(frame(1, b"hi"))
        assert read_message(c) == (1, b"hi")
        w.proc.send_signal(signal.SIGTERM)
        assert c.closed_by_peer(tf(3))
        assert w.proc.wait(timeout=tf(5)) == 0
    assert re.search(r'"GET /ws HTTP/1.1" 101 ', w.stderr()[start:]), w.stderr()[start:]
