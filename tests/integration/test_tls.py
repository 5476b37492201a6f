"""TLS on weir's listeners, end to end: SNI, RSA and ECDSA, resumption across
workers, old versions refused, X-Forwarded-Proto and the access log,
pipelining, WebSocket, plain HTTP and garbage to the TLS port, stalled
handshakes, redirect_https, certificates swapped by SIGHUP under load,
/stats and /metrics. Clients: Python's ssl, `openssl s_client` and `curl`
(Debian packages openssl and curl); certificates from tests/unit/tls-certs.sh."""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from adminutil import Admin, admin_extra, parse_metrics, promtool_check
from test_websocket import frame, handshake, read_message
from tlsutil import TlsConn, client_ctx, make_certs, make_leaf, s_client, served_cn, tls_conf, tls_group
from weirtest import ASAN, LOOPBACK, HttpConn, Sampler, free_port, pool, tf, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def start(procs, certs, workers=1, tls=None, extra_listens=(), timeouts=None, log=None, origin_args=()):
    o = procs.origin("o", *origin_args)
    port, aport = free_port(), free_port()
    text = tls_conf(port, [pool("p", [o])], tls or tls_group(certs), workers=workers,
                    extra_listens=extra_listens, timeouts=timeouts, log=log, extra=admin_extra(aport))
    w = procs.weir(text, port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    return w, a, o


def counters(a, reason=None):
    m = parse_metrics(a.metrics())
    lab = 'listen="%s:%%d"' % LOOPBACK
    out = {}
    for k, v in m.items():
        mm = re.match(r'weir_tls_(handshakes_total|handshake_failures_total)\{listen="[^"]+",(kind|reason)="(\w+)"\}',
                      k)
        if mm:
            out[mm.group(3)] = out.get(mm.group(3), 0) + v
    return out


def test_sni_chooses_among_three_names_and_default(procs, certs):
    w, a, o = start(procs, certs)
    for name, cn in [("a.test", "a-"), ("b.test", "b"), ("www.b.test", "b"), ("c.test", "c"),
                     ("unknown.test", "default"), (None, "default")]:
        args = ["-CAfile", str(certs / "ca.pem"), "-verify_return_error"]
        args += ["-servername", name] if name else ["-noservername"]
        if name and name.endswith(("a.test", "b.test", "c.test")) and name != "unknown.test":
            args += ["-verify_hostname", name]
        rc, out = s_client(w.port, *args, stdin=b"Q\n")
        got = served_cn(out)
        assert got is not None and got.startswith(cn), (name, got, out[-2000:])
        if name and name != "unknown.test":
            assert "Verify return code: 0 (ok)" in out, out[-2000:]
    # and real requests on each name, through curl with verification
    for name in ("a.test", "b.test", "c.test"):
        p = subprocess.run(["curl", "-sS", "--cacert", str(certs / "ca.pem"), "--resolve",
                            "%s:%d:%s" % (name, w.port, LOOPBACK), "https://%s:%d/sni" % (name, w.port)],
                           capture_output=True, timeout=tf(20))
        assert p.returncode == 0 and p.stdout == b"o GET /sni\n", p


def test_rsa_and_ecdsa_side_by_side(procs, certs):
    w, a, o = start(procs, certs)
    base = ["-servername", "a.test", "-CAfile", str(certs / "ca.pem"), "-verify_return_error"]
    for v in ("-tls1_3", "-tls1_2"):
        if v == "-tls1_3":
            rc, out = s_client(w.port, v, "-sigalgs", "ecdsa_secp256r1_sha256", *base, stdin=b"Q\n")
        else:
            rc, out = s_client(w.port, v, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", *base, stdin=b"Q\n")
        assert served_cn(out) == "a-ec", out[-2000:]
        assert re.search(r"Server public key is 256 bit", out), out[-2000:]
        if v == "-tls1_3":
            rc, out = s_client(w.port, v, "-sigalgs", "rsa_pss_rsae_sha256", *base, stdin=b"Q\n")
        else:
            rc, out = s_client(w.port, v, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", *base, stdin=b"Q\n")
        assert served_cn(out) == "a-rsa", out[-2000:]
        assert re.search(r"Server public key is 2048 bit", out), out[-2000:]


def test_chain_served_whole(procs, certs):
    w, a, o = start(procs, certs)
    rc, out = s_client(w.port, "-servername", "b.test", "-showcerts", stdin=b"Q\n")
    assert out.count("-----BEGIN CERTIFICATE-----") == 2, out[-3000:]
    assert "weir test intermediate CA" in out


@pytest.mark.threaded
@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_resumption_across_workers(procs, certs, tmp_path, version):
    w, a, o = start(procs, certs, workers=2)
    sess = tmp_path / "sess.pem"
    req = b"GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    rc, out = s_client(w.port, version, "-servername", "a.test", "-sess_out", str(sess), "-ign_eof", stdin=req)
    assert "HTTP/1.1 200" in out, out[-2000:]
    assert sess.exists() and sess.stat().st_size > 0
    reused = 0
    tries = 12
    for _ in range(tries):
        rc, out = s_client(w.port, version, "-servername", "a.test", "-sess_in", str(sess), "-ign_eof",
                           stdin=req)
        assert "HTTP/1.1 200" in out, out[-2000:]
        if re.search(r"(?m)^Reused, TLSv1\.[23]", out):
            reused += 1
    # Every try resumes, whichever of the two workers accepted it.
    assert reused == tries, reused
    c = counters(a)
    assert c["resumed"] >= tries and c["full"] >= 1, c


def test_tls10_and_tls11_refused(procs, certs):
    w, a, o = start(procs, certs)
    for v in ("-tls1", "-tls1_1"):
        rc, out = s_client(w.port, v, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.test", stdin=b"Q\n")
        assert rc != 0, out[-2000:]
        assert "Cipher is (NONE)" in out or "no protocols available" in out or "alert" in out, out[-2000:]
    c = counters(a)
    assert c.get("version", 0) >= 2, c
    # TLS 1.2 and 1.3 work
    for v in ("-tls1_2", "-tls1_3"):
        rc, out = s_client(w.port, v, "-servername", "a.test", stdin=b"Q\n")
        assert re.search(r"Protocol\s*:\s*TLSv1\.[23]|New, TLSv1\.[23]", out), out[-2000:]


def test_min_version_tls13(procs, certs):
    w, a, o = start(procs, certs, tls=tls_group(certs, min_version="TLS1.3"))
    rc, out = s_client(w.port, "-tls1_2", "-servername", "a.test", stdin=b"Q\n")
    assert rc != 0, out[-2000:]
    rc, out = s_client(w.port, "-tls1_3", "-servername", "a.test", stdin=b"Q\n")
    assert "TLSv1.3" in out, out[-2000:]


def test_alpn_http11_only(procs, certs):
    w, a, o = start(procs, certs)
    rc, out = s_client(w.port, "-alpn", "h2", "-servername", "a.test", stdin=b"Q\n")
    assert rc != 0 and "no application protocol" in out, out[-2000:]
    rc, out = s_client(w.port, "-alpn", "h2,http/1.1", "-servername", "a.test", stdin=b"Q\n")
    assert "ALPN protocol: http/1.1" in out, out[-2000:]
    assert counters(a).get("alpn", 0) >= 1


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_forwarded_proto_and_access_log(procs, certs, fmt):
    w, a, o = start(procs, certs, log={"format": fmt})
    start_at = len(w.stderr())
    with TlsConn(w.port, certs, "b.test") as c:
        r = c.get("/logged-%s" % fmt, headers=[("X-Forwarded-Proto", "http")])
        assert r.status == 200, r
    last = o.last().decode()
    assert re.search(r"(?mi)^x-forwarded-proto: https\r?$", last), last
    assert len(re.findall(r"(?mi)^x-forwarded-proto:", last)) == 1, last  # the client's is replaced
    m = w.wait_log(r"(?m)^.*/logged-%s.*$" % fmt, timeout=3, start=start_at)
    assert m, w.stderr()[start_at:]
    line = m.group(0)
    if fmt == "json":
        d = json.loads(line)
        assert d["tls_version"] in ("TLSv1.3", "TLSv1.2") and d["tls_cipher"] and d["tls_sni"] == "b.test", d
    else:
        assert re.search(r" tls=TLSv1\.[23] cipher=\S+ sni=b\.test$", line), line


def test_pipelining_over_tls(procs, certs):
    w, a, o = start(procs, certs)
    with TlsConn(w.port, certs, "a.test") as c:
        c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i for i in range(50)))
        for i in range(50):
            r = c.read_response()
            assert r.status == 200 and r.body == b"o GET /p%d\n" % i, (i, r)
        # bodies pipelined too
        c.send(b"".join(b"POST /q%d HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello" % i
                        for i in range(20)))
        for i in range(20):
            r = c.read_response("POST")
            assert r.status == 200 and r.header("X-Received-Bytes") == "5", (i, r)


def test_websocket_over_tls(procs, certs):
    w, a, o = start(procs, certs)
    with TlsConn(w.port, certs, "a.test", timeout=tf(5)) as c:
        key, r = handshake(c)
        assert r.status == 101, r
        c.send(frame(1, b"over tls"))
        assert read_message(c) == (1, b"over tls")
        for n in (0, 126, 65536, 300000):
            data = os.urandom(n)
            c.send(frame(2, data))
            assert read_message(c) == (2, data)


def test_plain_http_and_garbage_to_tls_port(procs, certs):
    w, a, o = start(procs, certs)
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert c.closed_by_peer(tf(3))
        assert c.extra.startswith(b"HTTP/1.1 400 ") and b"https://" in c.extra, c.extra
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(os.urandom(3000))
        assert c.closed_by_peer(tf(3))
    # a TLS record holding a ClientHello that is nonsense
    with HttpConn(w.port, timeout=tf(5)) as c:
        c.send(b"\x16\x03\x01\x00\x08" + b"\x01\x00\x00\x04" + b"\xff" * 4)
        assert c.closed_by_peer(tf(3))
    assert wait_until(lambda: counters(a).get("plain_http", 0) >= 1 and counters(a).get("protocol", 0) >= 2,
                      tf(3)), counters(a)
    # and the port still serves TLS
    with TlsConn(w.port, certs, "a.test") as c:
        assert c.get("/after").status == 200
    assert w.alive()


def test_stalled_handshakes_do_not_block_others(procs, certs):
    w, a, o = start(procs, certs, tls=tls_group(certs, handshake_timeout_ms=1500))
    silent = [socket.create_connection((LOOPBACK, w.port)) for _ in range(20)]
    # half a ClientHello: a record header promising more than is sent
    partial = []
    for _ in range(20):
        s = socket.create_connection((LOOPBACK, w.port))
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16)
        partial.append(s)
    try:
        t0 = time.monotonic()
        for i in range(20):
            with TlsConn(w.port, certs, "c.test", timeout=tf(3)) as c:
                assert c.get("/ok%d" % i).status == 200
        assert time.monotonic() - t0 < tf(5)
        # the stalled ones are closed after handshake_timeout_ms and counted
        def all_closed():
            for s in silent + partial:
                s.settimeout(0.01)
                try:
                    if s.recv(100) != b"":
                        return False
                except socket.timeout:
                    return False
                except OSError:
                    pass
            return True
        assert wait_until(all_closed, tf(6)), "stalled handshakes still open"
        assert counters(a).get("timeout", 0) >= 40, counters(a)
    finally:
        for s in silent + partial:
            s.close()


def test_redirect_https(procs, certs):
    hport = free_port()
    w, a, o = start(procs, certs, extra_listens=[{"address": "%s:%d" % (LOOPBACK, hport), "redirect_https": True}])
    with HttpConn(hport) as c:
        r = c.get("/some/path?q=1", host="www.example.com:%d" % hport)
        assert r.status == 308, r
        assert r.header("Location") == "https://www.example.com:%d/some/path?q=1" % w.port, r
        # keep-alive: a second request on the same connection
        r = c.get("/x", host="Example.COM")
        assert r.status == 308 and r.header("Location") == "https://example.com:%d/x" % w.port, r
        r = c.request("HEAD", "/h", host="h.test")
        assert r.status == 308 and r.body == b"", r
    with HttpConn(hport) as c:
        r = c.request("POST", "/form", body=b"abc", host="h.test")
        assert r.status == 308 and r.header("Connection") == "close", r
    with HttpConn(hport) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
        assert c.read_response().status == 400
    # curl follows to the TLS listener
    p = subprocess.run(["curl", "-sS", "-L", "--cacert", str(certs / "ca.pem"), "--resolve",
                        "a.test:%d:%s" % (hport, LOOPBACK), "--resolve", "a.test:%d:%s" % (w.port, LOOPBACK),
                        "http://a.test:%d/followed" % hport], capture_output=True, timeout=tf(20))
    assert p.returncode == 0 and p.stdout == b"o GET /followed\n", p


def test_stats_and_metrics(procs, certs):
    w, a, o = start(procs, certs)
    with TlsConn(w.port, certs, "a.test") as c:
        assert c.get("/m").status == 200
    s_client(w.port, "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", stdin=b"Q\n")
    text = a.metrics()
    m = parse_metrics(text)
    lab = '%s:%d' % (LOOPBACK, w.port)
    assert m['weir_tls_handshakes_total{listen="%s",kind="full"}' % lab] >= 1, text
    assert m['weir_tls_handshake_failures_total{listen="%s",reason="version"}' % lab] >= 1, text
    exp = m["weir_tls_cert_expiry_seconds"]
    assert 29 * 86400 < exp <= 30 * 86400 + 60, exp
    res = promtool_check(text)
    if res is not None:
        assert res[0] == 0, res[1]
    st = a.stats()
    t = st["tls"]
    assert t["listeners"][0]["address"] == lab and t["listeners"][0]["handshakes"]["full"] >= 1, t
    assert t["listeners"][0]["failures"]["version"] >= 1, t
    assert 29 <= t["cert_expiry_days"] <= 30, t


def _load(port, certs, stop, results, names):
    ctx = client_ctx(certs)
    i = 0
    while not stop.is_set() and i < 100000:
        i += 1
        name = names[i % len(names)]
        try:
            if i % 3 == 0:  # new connection each time
                with TlsConn(port, certs, name, ctx=ctx, timeout=tf(5)) as c:
                    r = c.get("/l%d" % i, host=name)
                    results["ok" if r.status == 200 else "bad"] += 1
            else:  # keep-alive, several requests
                with TlsConn(port, certs, name, ctx=ctx, timeout=tf(5)) as c:
                    for j in range(10):
                        r = c.get("/k%d" % j, host=name)
                        results["ok" if r.status == 200 else "bad"] += 1
        except Exception as e:  # noqa: BLE001 - any failure counts
            results["bad"] += 1
            results.setdefault("errors", []).append(repr(e))


@pytest.mark.threaded
def test_sighup_swaps_certificate_under_load(procs, certs, tmp_path):
    # the served file for "c.test" is a copy, replaced by another certificate
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs / "c.pem", live_pem)
    shutil.copy(certs / "c.key", live_key)
    tls = {"certificates": [{"cert": str(certs / "default.pem"), "key": str(certs / "default.key")},
                            {"cert": str(live_pem), "key": str(live_key)}]}
    w, a, o = start(procs, certs, workers=2, tls=tls)
    rc, out = s_client(w.port, "-servername", "c.test", stdin=b"Q\n")
    assert served_cn(out) == "c"
    # an open connection keeps its session across the swap
    keep = TlsConn(w.port, certs, "c.test")
    assert keep.get("/before").status == 200
    results = {"ok": 0, "bad": 0}
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(w.port, certs, stop, results, ["c.test", "default.test"]))
               for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        # swap: c.test's files now hold a new certificate (ECDSA, CN "c2") for
        # c.test and x.c2.test, signed by the same CA: clients keep verifying
        start_at = len(w.stderr())
        new_pem, new_key = make_leaf(certs, tmp_path, "c2", "DNS:c.test,DNS:x.c2.test")
        shutil.copy(new_pem, live_pem)
        shutil.copy(new_key, live_key)
        w.reload()
        assert w.wait_log(r"configuration reloaded", timeout=5, start=start_at), w.stderr()[start_at:]
        time.sleep(1.0)
        # a broken key at the next reload is refused with FILE:LINE; the running certificates stay
        start_at = len(w.stderr())
        live_key.write_text("not a key\n")
        w.reload()
        m = w.wait_log(r"%s:\d+: .*" % re.escape(str(w.conf_path)), timeout=5, start=start_at)
        assert m, w.stderr()[start_at:]
        assert w.wait_log(r"reload refused", timeout=5, start=start_at)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(tf(30))
    assert results["bad"] == 0, (results["bad"], results.get("errors", [])[:5])
    assert results["ok"] > 50, results
    for name in ("c.test", "x.c2.test"):
        rc, out = s_client(w.port, "-servername", name, stdin=b"Q\n")
        assert served_cn(out) == "c2", out[-2000:]
    assert keep.get("/after").status == 200  # still on its old session
    keep.close()
    assert w.alive()


@pytest.mark.parametrize("size", [pytest.param(256 << 20, id="256MiB"),
                                  pytest.param(1 << 30, id="1GiB", marks=pytest.mark.slow)])
def test_big_stream_both_ways_bounded_memory(procs, certs, size):
    w, a, o = start(procs, certs, timeouts={"upstream_response_ms": 120000})
    with TlsConn(w.port, certs, "a.test", timeout=tf(30)) as c:
        for _ in range(3):
            assert c.get("/warm?size=1000000").status == 200
    time.sleep(0.2)
    base = w.rss()
    s = Sampler(w.pid)
    s.start()
    deadline = time.monotonic() + tf(180)
    n = [0]

    def sink(b):
        n[0] += len(b)
        if time.monotonic() > deadline:
            raise TimeoutError("download too slow: %d bytes" % n[0])
    try:
        with TlsConn(w.port, certs, "a.test", timeout=tf(30)) as c:
            r = c.get("/big?size=%d" % size, sink=sink)
            assert r.status == 200 and n[0] == size, (r, n[0])
            block = bytes(range(256)) * 4096
            c.send(("POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n" % size).encode())
            for i in range(size // len(block)):
                c.send(block)
                if time.monotonic() > deadline:
                    raise TimeoutError("upload too slow: %d MiB" % i)
            r = c.read_response("POST")
            assert r.status == 200 and r.header("X-Received-Bytes") == str(size), r
    finally:
        s.stop()
    growth = s.max - base
    if not ASAN:
        assert growth < 16 * 1024, "RSS grew by %d KiB (base %d KiB)" % (growth, base)
