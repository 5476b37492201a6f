"""1 GiB through weir both ways, counting bytes, while weir's RSS is sampled:
bodies stream, they are never held whole. Skipped with WEIR_SKIP_SLOW=1."""

import time

import pytest

from weirtest import ASAN, HttpConn, Sampler, pool, tf

GIB = 1 << 30
RSS_GROWTH_KIB = 16 * 1024


@pytest.fixture
def big(procs):
    o = procs.origin("big")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"upstream_response_ms": 120000})
    with HttpConn(w.port) as c:  # warm up: worker, pools, buffers
        for _ in range(5):
            assert c.get("/warm?size=1000000").status == 200
    time.sleep(0.2)
    return w, o


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [0, 1])
def test_download_1gib(big, chunked):
    w, o = big
    base = w.rss()
    s = Sampler(w.pid)
    s.start()
    n = [0]
    deadline = time.monotonic() + tf(120)

    def sink(b):
        n[0] += len(b)
        if time.monotonic() > deadline:
            raise TimeoutError("1 GiB download too slow: %d bytes" % n[0])
    t0 = time.monotonic()
    try:
        with HttpConn(w.port, timeout=tf(30)) as c:
            r = c.get("/big?size=%d&chunked=%d" % (GIB, chunked), sink=sink)
            assert r.status == 200
            if not chunked:
                assert r.header("Content-Length") == str(GIB)
            # the connection still works after 1 GiB
            assert c.get("/after").body == b"big GET /after\n"
    finally:
        s.stop()
    dt = time.monotonic() - t0
    assert n[0] == GIB, n[0]
    assert s.samples >= 5
    growth = s.max - base
    if not ASAN:  # ASan's quarantine keeps freed memory: RSS says nothing there
        assert growth < RSS_GROWTH_KIB, "RSS grew by %d KiB (base %d KiB) in %.1fs" % (growth, base, dt)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [0, 1])
def test_upload_1gib(big, chunked):
    w, o = big
    base = w.rss()
    s = Sampler(w.pid)
    s.start()
    block = bytes(range(256)) * 4096  # 1 MiB
    deadline = time.monotonic() + tf(120)
    t0 = time.monotonic()
    try:
        with HttpConn(w.port, timeout=tf(30)) as c:
            if chunked:
                head = ("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
                piece = b"%x\r\n" % len(block) + block + b"\r\n"
            else:
                head = ("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB).encode()
                piece = block
            c.send(head)
            for i in range(GIB // len(block)):
                c.send(piece)
                if time.monotonic() > deadline:
                    raise TimeoutError("1 GiB upload too slow: %d MiB" % i)
            if chunked:
                c.send(b"0\r\n\r\n")
            r = c.read_response("POST")
    finally:
        s.stop()
    dt = time.monotonic() - t0
    assert r.status == 200, r
    assert r.header("X-Received-Bytes") == str(GIB), r
    growth = s.max - base
    if not ASAN:  # ASan's quarantine keeps freed memory: RSS says nothing there
        assert growth < RSS_GROWTH_KIB, "RSS grew by %d KiB (base %d KiB) in %.1fs" % (growth, base, dt)
