"""Bounds a client cannot push weir past (issue 7): pipelined requests
without reading the answers, interim responses to a client that does not
read, slow readers; and how weir ends exchanges it refuses or gives up on."""

import socket
import time

import pytest

from weirtest import ASAN, TSAN, HttpConn, Sampler, build_request, pool, tf, wait_until

ROUTES = [{"host": "only.test", "path_prefix": "/", "pool": "p"}]


def _push(sock, data, seconds):
    """Send as much of data as the peer takes within `seconds`; returns bytes sent."""
    sock.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + seconds
    view = memoryview(data)
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(view[sent:sent + 65536])
        except socket.timeout:
            continue
        except OSError:
            break
    return sent


def test_pipelined_local_answers_not_read_bounded(procs):
    """Defect 1: 16 MiB of pipelined requests answered locally (404) by a
    client that reads nothing: weir stops reading the client once its answers
    back up, so its memory stays bounded (it grew by 90 MiB before)."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], routes=ROUTES)
    req = b"GET /nope HTTP/1.1\r\nHost: other.test\r\n\r\n"
    data = req * (16 * 1024 * 1024 // len(req))
    base = w.rss()
    smp = Sampler(w.pid)
    smp.start()
    try:
        with HttpConn(w.port, timeout=tf(10)) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sent = _push(c.sock, data, tf(4))
            time.sleep(0.3)
            grown = w.rss() - base
            # the connection still works: the answers come in order
            c.settimeout(tf(10))
            for _ in range(50):
                r = c.read_response()
                assert r.status == 404, r
    finally:
        smp.stop()
    assert sent < len(data), "weir took all %d bytes without the answers being read" % sent
    if not (ASAN or TSAN):
        assert smp.max - base < 12 * 1024, "RSS grew by %d KiB (%d KiB at the end)" % (smp.max - base, grown)
    assert w.alive()


def test_pipelined_proxied_answers_not_read_bounded(procs):
    """Defect 1, proxied answers: the same through a server."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    req = b"GET /x?size=2000 HTTP/1.1\r\nHost: a.test\r\n\r\n"
    data = req * (8 * 1024 * 1024 // len(req))
    base = w.rss()
    smp = Sampler(w.pid)
    smp.start()
    try:
        with HttpConn(w.port, timeout=tf(10)) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sent = _push(c.sock, data, tf(4))
            c.settimeout(tf(10))
            for _ in range(20):
                r = c.read_response()
                assert r.status == 200 and r.body_len == 2000, r
    finally:
        smp.stop()
    assert sent < len(data)
    if not (ASAN or TSAN):
        assert smp.max - base < 12 * 1024, "RSS grew by %d KiB" % (smp.max - base)
    assert w.alive()


def test_interim_flood_to_non_reading_client_bounded(procs):
    """Defect 14: a server sending endless 100 Continue heads to a client
    that does not read: weir stops reading the server while the client's
    output is full (RSS went from 2.8 to 117 MB before)."""
    from scripted import Scripted
    block = b"HTTP/1.1 100 Continue\r\n\r\n" * 2600  # ~64 KiB
    pushed = [0]

    def flood(head, conn):
        conn.settimeout(0.2)
        deadline = time.monotonic() + tf(3)
        while time.monotonic() < deadline and pushed[0] < 128 * 1024 * 1024:
            try:
                pushed[0] += conn.send(block)
            except socket.timeout:
                continue
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    b = Scripted(flood)
    try:
        w = procs.weir(pools=[pool("p", [b.addr])])
        base = w.rss()
        smp = Sampler(w.pid)
        smp.start()
        try:
            with HttpConn(w.port, timeout=tf(10)) as c:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                c.send(build_request("GET", "/flood"))
                time.sleep(tf(3.5))
                r = c.read_head()
                assert r.status == 100, r
        finally:
            smp.stop()
        assert pushed[0] < 128 * 1024 * 1024, "weir read every interim head without backpressure"
        if not (ASAN or TSAN):
            assert smp.max - base < 12 * 1024, "RSS grew by %d KiB" % (smp.max - base)
        assert w.alive()
    finally:
        b.stop()


def test_expect_100_to_silent_server_gives_504(procs):
    """Defect 16: upstream_response_ms runs from the moment the head went
    upstream. A request with Expect: 100-continue to a server that never
    answers was cut at client_body_ms and logged as 499; it is a 504 at the
    upstream timeout."""
    from scripted import Scripted
    b = Scripted(lambda head, conn: None)
    try:
        w = procs.weir(pools=[pool("p", [b.addr], retries=0)],
                       timeouts={"upstream_response_ms": 500, "client_body_ms": 5000})
        start = len(w.stderr())
        t0 = time.monotonic()
        with HttpConn(w.port, timeout=tf(10)) as c:
            c.send("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            r = c.read_response()
            dt = time.monotonic() - t0
        assert r.status == 504, r
        assert 0.4 < dt < tf(3), dt
        assert w.wait_log(r'"POST /up HTTP/1.1" 504 ', tf(3), start), w.stderr()[start:]
    finally:
        b.stop()


def test_slow_upload_not_cut_by_upstream_timeout(procs):
    """The other side of defect 16: a body that keeps flowing up for longer
    than upstream_response_ms is not a server timeout."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o], retries=0)],
                   timeouts={"upstream_response_ms": 400, "client_body_ms": 5000})
    with HttpConn(w.port, timeout=tf(10)) as c:
        n = 12
        c.send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n)
        for _ in range(n):
            time.sleep(0.1)
            c.send(b"x")
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("X-Received-Bytes") == str(n), r


def test_nagle_backend_split_writes_not_delayed(procs):
    """Defect 12: a backend with Nagle on that writes its head and body in
    two writes waits for the ACK of the head; with delayed ACKs that is 40 ms
    per request on a reused connection. weir acknowledges backend data at
    once (TCP_QUICKACK re-armed while a response is incomplete)."""
    from scripted import Scripted
    body = b"b" * 300

    def split(head, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.002)  # two segments, the second held by Nagle until the ACK
        conn.sendall(body)
        return None
    b = Scripted(split)
    try:
        w = procs.weir(pools=[pool("p", [b.addr])])
        times = []
        with HttpConn(w.port, timeout=tf(5)) as c:
            for i in range(25):
                t0 = time.monotonic()
                r = c.get("/n%d" % i)
                times.append(time.monotonic() - t0)
                assert r.status == 200 and r.body == body, r
        times = sorted(times[5:])  # after the connection left TCP's initial quick-ack mode
        median = times[len(times) // 2]
        assert median < 0.025, "median %.1f ms per request: %s" % (median * 1000, [round(t * 1000) for t in times])
    finally:
        b.stop()


def test_timeouts_stay_real_after_many_reloads(procs):
    """Defect 8: libevent has 256 "common timeouts" per event base and every
    reload with new values adds some. One that cannot be created silently
    became no timeout at all; it must still be a timeout."""
    o = procs.origin("a")
    from weirtest import conf
    port = w_port = None
    w = procs.weir(pools=[pool("p", [o])])
    port = w.port

    def cfg(i, header_ms):
        return conf(port, [pool("p", [o])],
                    timeouts={"client_header_ms": header_ms, "idle_ms": 60000 + i, "client_body_ms": 30000 + i,
                              "upstream_response_ms": 30000 + i, "connect_ms": 2000 + i,
                              "upstream_idle_ms": 20000 + i})
    for i in range(1, 52):  # 51 reloads x 6 new durations > 256
        start = len(w.stderr())
        w.reload(cfg(i, 5000 + i))
        assert w.wait_log(r"configuration reloaded", tf(3), start), w.stderr_tail()
        with HttpConn(port, timeout=tf(5)) as c:  # the worker takes the snapshot at accept
            assert c.get("/r%d" % i).status == 200
    start = len(w.stderr())
    w.reload(cfg(99, 400))
    assert w.wait_log(r"configuration reloaded", tf(3), start)
    with HttpConn(port, timeout=tf(5)) as c:
        assert c.get("/sync").status == 200
    t0 = time.monotonic()
    with HttpConn(port, timeout=tf(5)) as c:
        c.send(b"GET / HTTP/1.1\r\n")  # a head that never completes
        assert c.closed_by_peer(tf(3)), "no header timeout after many reloads"
    assert time.monotonic() - t0 < tf(2.5)
    assert w.alive()


def test_499_only_for_clients_that_left(procs):
    """Defect 18: 499 is logged only when the client went away; a body
    timeout weir enforced is a 408 (answered), a request cut at the drain
    deadline a 503."""
    import signal
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"client_body_ms": 400, "drain_ms": 600})
    start = len(w.stderr())
    # the client resets its connection while the server is slow: 499 (a
    # plain close cannot be told from a half-close until weir writes)
    import struct
    s = socket.create_connection(("127.0.0.1", w.port), timeout=tf(5))
    s.sendall(b"GET /left?delay_ms=600 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    assert w.wait_log(r'"GET /left\?delay_ms=600 HTTP/1.1" 499 ', tf(3), start), w.stderr()[start:]
    # the body stalls: weir answers 408 and logs 408
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
        r = c.read_response()
        assert r.status == 408, r
        assert r.header("Connection") == "close", r
    assert w.wait_log(r'"POST /stall HTTP/1.1" 408 ', tf(3), start), w.stderr()[start:]
    # a request still waiting for its server at the drain deadline: 503
    c = HttpConn(w.port, timeout=tf(5))
    try:
        c.send(b"GET /draincut?delay_ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        w.proc.send_signal(signal.SIGTERM)
        assert w.proc.wait(timeout=tf(5)) == 0
    finally:
        c.close()
    text = w.stderr()[start:]
    assert '"GET /draincut?delay_ms=5000 HTTP/1.1" 503 ' in text, text
    assert " 499 " not in text.split("POST /stall")[1], text


def test_431_then_lingering_close_not_reset(procs):
    """Defect 18: a client still sending when weir refuses its head (431)
    gets the answer and a clean close: weir shuts its side, reads and drops
    what keeps coming for a while, then closes (a close with unread data
    sends a reset, which can destroy the answer before the client reads it)."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], limits={"header_bytes": 8192})
    results = []
    for attempt in range(3):
        s = socket.create_connection(("127.0.0.1", w.port), timeout=tf(5))
        try:
            # one burst: weir answers 431 while more of it is still arriving
            burst = b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"X-More: " + b"b" * 8000 + b"\r\n") * 40
            s.settimeout(0.5)
            try:
                s.sendall(burst)
            except OSError:
                pass
            s.settimeout(tf(5))
            got = b""
            err = None
            for _ in range(100):
                try:
                    d = s.recv(65536)
                except ConnectionResetError as e:
                    err = e
                    break
                if not d:
                    break
                got += d
            results.append((got[:40], err))
        finally:
            s.close()
    for got, err in results:
        assert got.startswith(b"HTTP/1.1 431 "), results
        assert err is None, results
    assert w.alive()


def test_slow_readers_memory_bounded(procs):
    """Defect 18: a client reading a big response slowly costs weir a bounded
    amount of memory (about 780 KiB before; HAProxy ~54 KiB): both buffers
    of the exchange stop at 16 KiB and the kernel's socket buffers hold the
    rest."""
    if ASAN or TSAN:
        pytest.skip("sanitizer builds: shadow memory and quarantine make RSS meaningless")
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    with HttpConn(w.port) as c:
        assert c.get("/warm?size=100000").status == 200
    time.sleep(0.3)
    n = 50
    base = w.rss()
    conns = []
    try:
        for i in range(n):
            c = HttpConn(w.port, timeout=tf(10))
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(build_request("GET", "/slow%d?size=50000000" % i))
            conns.append(c)
        time.sleep(tf(2))
        per = (w.rss() - base) / n
        # every one of them is still being served
        for c in conns[:5]:
            r = c.read_head()
            assert r.status == 200, r
    finally:
        for c in conns:
            c.close()
    assert per < 90, "%.1f KiB per slow-reading connection" % per


def test_idle_keepalive_connection_under_1kib(procs):
    """Performance target of issue 7: an idle keep-alive client connection
    costs weir at most 1 KiB (2.9 KiB before; nginx 0.6, HAProxy 1.1): the
    exchange's state is freed between requests, the buffers hold nothing."""
    if ASAN or TSAN:
        pytest.skip("sanitizer builds: shadow memory and redzones make RSS meaningless")
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], log={"access": "off"})
    with HttpConn(w.port) as c:
        assert c.get("/warm").status == 200
    time.sleep(0.3)
    n = 800
    base = w.rss()
    conns = []
    try:
        for i in range(n):
            c = HttpConn(w.port, timeout=tf(10))
            assert c.get("/i?size=100").status == 200
            conns.append(c)
        time.sleep(0.3)
        per = (w.rss() - base) / n
        # they are all still usable
        for c in conns[::100]:
            assert c.get("/again").status == 200
    finally:
        for c in conns:
            c.close()
    assert per <= 1.0, "%.2f KiB per idle keep-alive connection" % per
