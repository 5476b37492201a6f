"""What an attacker or a careless client sends to the cache, end to end:
real weir, a scripted origin written here (raw bytes, so it can answer
what a well-behaved server library would never write), and a real
redis-server where L2 matters.

The principle every key-confusion test checks: the origin here answers
with what it was asked (the Host and target it received), so an answer
that reaches a client from the cache must be the one the origin gives that
client's own request. An attacker may store what it likes under its own
key; never under an honest client's.
"""

import json
import re
import socket
import socketserver
import threading
import time

import pytest

from test_cache import Redis, needs_redis
from weirtest import REPO, HttpConn, LOOPBACK, free_port, pool, route, tf, wait_until

pytestmark = pytest.mark.skipif(not (REPO / "include" / "weir" / "exchange.h").exists(),
                                reason="the session's request hook (exchange.h) is not in this tree")

MEMORY = 4 << 20  # the L1 budget of the module's weir
TOKEN = "s3cret"


# --------------------------------------------------------------------------
# the origin: raw responses, per path
# --------------------------------------------------------------------------

class Req:
    def __init__(self, head, body):
        lines = head.split(b"\r\n")
        self.method, self.target, _ = lines[0].decode("latin-1").split(" ", 2)
        self.headers = []
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.decode("latin-1").partition(":")
                self.headers.append((k, v.strip()))
        self.body = body

    def h(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def hall(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


def resp(status=200, headers=(), body=b"", chunked=False):
    head = b"HTTP/1.1 %d X\r\n" % status
    for k, v in headers:
        head += (k.encode("latin-1") if isinstance(k, str) else k) + b": " + \
            (v.encode("latin-1") if isinstance(v, str) else v) + b"\r\n"
    if chunked:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + \
            (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def echo_host(req):
    """What a careful origin does: host names compare case-insensitively
    and :80 is http's default (RFC 9110 §4.2.3); everything else (another
    port, a trailing dot, the target's bytes) may name another resource."""
    h = (req.h("Host") or "").lower()
    if h.endswith(":80"):
        h = h[:-3]
    elif h.endswith(":"):
        h = h[:-1]
    return h


def echo(req):
    return resp(headers=[("Cache-Control", "max-age=600")],
                body=("%s %s" % (echo_host(req), req.target)).encode("latin-1"))


class AttackOrigin:
    def __init__(self):
        self.answers = {}  # path -> callable(Req) -> bytes (a whole response), or None: say nothing
        self.reqs = []
        self.lock = threading.Lock()
        origin = self

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                s = self.request
                s.settimeout(10)
                buf = b""
                for _ in range(10000):
                    while b"\r\n\r\n" not in buf:
                        try:
                            d = s.recv(65536)
                        except OSError:
                            return
                        if not d:
                            return
                        buf += d
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    req = Req(head, b"")
                    n = int(req.h("Content-Length") or 0)
                    while len(buf) < n:
                        d = s.recv(65536)
                        if not d:
                            return
                        buf += d
                    req.body, buf = buf[:n], buf[n:]
                    path = req.target.split("?")[0]
                    with origin.lock:
                        origin.reqs.append(req)
                        f = origin.answers.get(path, echo)
                    out = f(req) if f is not None else None
                    if out is None:
                        return
                    try:
                        if isinstance(out, (list, tuple)):  # pieces written with pauses
                            for piece in out:
                                if piece is None:  # break off: close the connection
                                    return
                                if isinstance(piece, float):
                                    time.sleep(piece)
                                else:
                                    s.sendall(piece)
                        else:
                            s.sendall(out)
                    except OSError:
                        return

        class S(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = S((LOOPBACK, 0), H)
        self.port = self.server.server_address[1]
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, path, f):
        with self.lock:
            self.answers[path] = f

    def n(self, pred):
        with self.lock:
            return len([r for r in self.reqs if pred(r)])

    def count(self, path):
        return self.n(lambda r: r.target.split("?")[0] == path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# the rig: one origin, one Redis, one weir (two cached host routes and a
# catch-all), shared by the module; each test uses paths of its own
# --------------------------------------------------------------------------

def weir_kw(o, rd, admin_port, memory=MEMORY):
    routes = []
    for host in ("one.test", "two.test", "*"):
        r = route("p", host=host)
        r["cache"] = True
        routes.append(r)
    extra = ("cache = { memory_bytes = %d; max_object_bytes = %d; "
             'redis = { address = "%s:%d"; prefix = "t:"; timeout_ms = 200; }; };\n'
             'admin = { address = "%s:%d"; token = "%s"; };\n'
             % (memory, 1 << 20, LOOPBACK, rd.port, LOOPBACK, admin_port, TOKEN))
    return dict(pools=[pool("p", [o])], routes=routes, workers=1, extra=extra)


class Rig:
    pass


@pytest.fixture(scope="module")
def rig(mprocs):
    import shutil
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    g = Rig()
    g.o = AttackOrigin()
    g.redis = Redis()
    g.admin_port = free_port()
    g.w = mprocs.weir(**weir_kw(g.o, g.redis, g.admin_port))
    time.sleep(0.3)
    yield g
    g.o.stop()
    g.redis.kill()


_seq = [0]


@pytest.fixture
def u(request):
    _seq[0] += 1
    return "/%s-%d" % (request.node.name.split("[")[0].replace("test_", ""), _seq[0])


def raw(port, data, timeout=5, limit=1 << 22):
    """Send bytes, read until the server closes (or the timeout); the bytes."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < limit:
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            out += d
        return out


def get(w, target, headers=(), host="localhost", method="GET"):
    with HttpConn(w.port) as c:
        return c.request(method, target, headers=list(headers), host=host)


def is_hit(r):
    return (r.header("Cache-Status") or "").startswith("weir; hit")


def admin(port, method, path, body=None, token=TOKEN, raw_body=None):
    hs = [("Authorization", "Bearer " + token)] if token is not None else []
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        hs.append(("Content-Type", "application/json"))
    with HttpConn(port) as c:
        r = c.request(method, path, headers=hs, body=data)
    try:
        j = json.loads(r.body) if r.body else None
    except ValueError:
        j = None
    return r.status, j


def cache_state(g):
    st, j = admin(g.admin_port, "GET", "/cache")
    assert st == 200
    return j


# --------------------------------------------------------------------------
# cache poisoning / key confusion
# --------------------------------------------------------------------------

@pytest.mark.parametrize("attacker_host", ["victim.test:8081", "victim.test.", "victim.test:", "VICTIM.test:80"])
def test_host_forms_never_poison_the_plain_host(rig, u, attacker_host):
    """The attacker's request goes first and is stored; the honest client
    must get what the origin says to *its* Host. Equivalent forms (case,
    :80, an empty port) may share the entry (they get the same answer);
    another port or a trailing dot reaches the origin as another Host, so
    its answer is not the honest client's."""
    g = rig
    r = get(g.w, u, host=attacker_host)
    assert r.status == 200
    want = ("victim.test %s" % u).encode()
    r = get(g.w, u, host="victim.test")
    assert r.body == want, (attacker_host, r.body)
    # and the other way round: the honest entry is not served to the odd form
    r = get(g.w, u, host=attacker_host)
    assert r.body == ("%s %s" % (echo_host(Req(b"GET / HTTP/1.1\r\nHost: " + attacker_host.encode(), b"")),
                                 u)).encode()


def test_equivalent_host_forms_share_one_entry(rig, u):
    g = rig
    assert get(g.w, u, host="eq.test").status == 200
    for h in ("EQ.test", "eq.TEST:80"):
        r = get(g.w, u, host=h)
        assert is_hit(r) and r.body == ("eq.test %s" % u).encode(), (h, r.headers)
    with HttpConn(g.w.port) as c:  # absolute-form with the same authority
        r = c.request("GET", "http://eq.test" + u, host="eq.test")
    assert is_hit(r) and r.body == ("eq.test %s" % u).encode()
    assert g.o.count(u) == 1


def test_absolute_form_authority_wins_over_host(rig, u):
    """RFC 9112 §3.2.2: with an absolute-form target the Host field is
    ignored; weir forwards the authority, and must key on it."""
    g = rig
    with HttpConn(g.w.port) as c:
        r = c.request("GET", "http://victim.test" + u, host="evil.test")
    assert r.body == ("victim.test %s" % u).encode()
    assert get(g.w, u, host="evil.test").body == ("evil.test %s" % u).encode()
    assert get(g.w, u, host="victim.test").body == ("victim.test %s" % u).encode()


@pytest.mark.parametrize("odd", ["%s/../b", "%s/x/../b", "%s/./b", "%s%%2Fb", "%s%%2fb", "%s/b#frag", "%s//b",
                                 "%s/%%62"])
def test_target_forms_never_poison_the_plain_target(rig, u, odd):
    """weir keys on the target's bytes as forwarded: an odd spelling is its
    own entry (or refused), never the honest /b's."""
    g = rig
    honest = u + "/b"
    r = get(g.w, odd % u, host="t.test")
    assert r.status in (200, 400), r
    r = get(g.w, honest, host="t.test")
    assert r.status == 200 and r.body == ("t.test %s" % honest).encode(), (odd, r.body)
    # an entry stored by the odd form does not answer the honest one and vice versa
    r = get(g.w, honest, host="t.test")
    assert r.body == ("t.test %s" % honest).encode()


def test_second_host_header_is_refused_and_not_cached(rig, u):
    g = rig
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: victim.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n"
              % u.encode())
    assert out.startswith(b"HTTP/1.1 400"), out[:100]
    assert g.o.count(u) == 0
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: victim.test, evil.test\r\nConnection: close\r\n\r\n" % u.encode())
    assert out.startswith(b"HTTP/1.1 400"), out[:100]
    assert g.o.count(u) == 0
    assert get(g.w, u, host="victim.test").body == ("victim.test %s" % u).encode()


@pytest.mark.parametrize("bad_host", ["victim.test@evil.test", "evil.test/victim.test", "victim.test:80:80",
                                      "victim.test:8x", "victim test", "[::1", "victim.test:99999", ""])
def test_invalid_host_is_refused(rig, u, bad_host):
    """RFC 9112 §3.2: a Host that is not uri-host [":" port] gets a 400
    (an empty one is only allowed when the target has no authority, which
    a cached route's origin-form target never lacks... but it is valid
    syntax: then the request must not share the key of any named host)."""
    g = rig
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
              % (u.encode(), bad_host.encode()))
    if bad_host == "":
        assert out.startswith(b"HTTP/1.1 400") or b" %s" % u.encode() in out, out[:300]
        assert get(g.w, u, host="victim.test").body == ("victim.test %s" % u).encode()
        return
    assert out.startswith(b"HTTP/1.1 400"), (bad_host, out[:300])
    assert g.o.count(u) == 0


@pytest.mark.parametrize("target", ["http://evil.test@victim.test%s", "http://victim.test@evil.test%s",
                                    "http://victim.test:80%s", "HTTP://VICTIM.test%s", "http://victim.test.%s",
                                    "http://victim.test:8081%s"])
def test_absolute_form_spellings(rig, u, target):
    """userinfo in an absolute-form target is refused or keyed as forwarded;
    either way the honest client of victim.test gets its own answer."""
    g = rig
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: victim.test\r\nConnection: close\r\n\r\n"
              % (target % u).encode())
    assert out.startswith(b"HTTP/1.1 400") or out.startswith(b"HTTP/1.1 200"), out[:300]
    if "@" in target:  # userinfo is not part of an http(s) target URI (RFC 9110 §4.2.4)
        assert out.startswith(b"HTTP/1.1 400"), out[:300]
    r = get(g.w, u, host="victim.test")
    assert r.body == ("victim.test %s" % u).encode(), (target, r.body)


def test_missing_host_is_refused(rig, u):
    g = rig
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nConnection: close\r\n\r\n" % u.encode())
    assert out.startswith(b"HTTP/1.1 400"), out[:300]
    assert g.o.count(u) == 0


def test_two_host_routes_never_share_entries(rig, u):
    g = rig
    a = get(g.w, u, host="one.test")
    b = get(g.w, u, host="two.test")
    assert a.body == ("one.test %s" % u).encode() and b.body == ("two.test %s" % u).encode()
    assert is_hit(get(g.w, u, host="one.test")) and is_hit(get(g.w, u, host="two.test"))
    assert get(g.w, u, host="two.test").body == ("two.test %s" % u).encode()
    assert g.o.count(u) == 2


def test_forwarded_host_claims_are_not_a_key_backdoor(rig, u):
    """X-Forwarded-Host from a client is dropped (weir is the edge): an
    origin that builds links from it cannot be made to store the
    attacker's host under the honest key."""
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600")],
                                body=("link http://%s/" % req.h("X-Forwarded-Host")).encode()))
    r = get(g.w, u, host="xfh.test", headers=[("X-Forwarded-Host", "evil.test")])
    assert b"evil" not in r.body
    assert b"evil" not in get(g.w, u, host="xfh.test").body


def test_http_and_https_never_share_entries(procs, tmp_path):
    """The backend is told the scheme (X-Forwarded-Proto) and answers
    accordingly (a redirect to https, absolute links): what a plain-HTTP
    client had stored must not answer an HTTPS client of the same host and
    path (RFC 9111 §4.1: the key is the target URI, scheme included)."""
    import ssl
    import subprocess
    from tlsutil import tls_conf
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=victim.test"],
                   check=True, capture_output=True, timeout=tf(30))
    o = AttackOrigin()
    try:
        o.set("/s", lambda req: resp(headers=[("Cache-Control", "max-age=600")],
                                     body=("scheme=%s" % req.h("X-Forwarded-Proto")).encode()))
        r = route("p")
        r["cache"] = True
        tport, pport = free_port(), free_port()
        text = tls_conf(tport, [pool("p", [o])], {"certificates": [{"cert": str(crt), "key": str(key)}]},
                        extra_listens=[{"address": "%s:%d" % (LOOPBACK, pport)}], routes=[r],
                        extra="cache = { memory_bytes = 1048576; max_object_bytes = 65536; };\n")
        procs.weir(conf_text=text, port=tport)
        with HttpConn(pport) as c:
            assert c.request("GET", "/s", host="victim.test").body == b"scheme=http"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with HttpConn(tport) as c:
            c.sock = ctx.wrap_socket(c.sock, server_hostname="victim.test")
            r = c.request("GET", "/s", host="victim.test")
        assert r.body == b"scheme=https", (r.body, r.header("Cache-Status"))
    finally:
        o.stop()


# --------------------------------------------------------------------------
# response splitting / header injection into stored objects
# --------------------------------------------------------------------------

def head_block(data):
    return data.partition(b"\r\n\r\n")[0]


@pytest.mark.parametrize("bad", [b"X-Evil: a\r\n folded: injected", b"X-Evil: a\rSet-Cookie: x=1",
                                 b"X-Evil: a\x00b", b"X-Evil: a\r\n\tInjected: 1"])
def test_bad_bytes_in_origin_fields_never_stored_or_served(rig, u, bad):
    g = rig
    g.o.set(u, lambda req: b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\n" + bad +
            b"\r\nContent-Length: 4\r\n\r\nbody")
    for _ in range(2):  # the miss, then whatever the cache does with it
        out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: sp.test\r\nConnection: close\r\n\r\n" % u.encode())
        head = head_block(out)
        assert head.startswith(b"HTTP/1.1 "), out[:200]
        if head.startswith(b"HTTP/1.1 502"):
            continue
        assert b"\x00" not in head
        assert re.search(rb"\r(?!\n)", head) is None, head
        assert re.search(rb"\n[ \t]", head) is None, head  # no folded line goes out
        assert b"Set-Cookie" not in head


@pytest.mark.parametrize("kind", ["short-length", "cut-chunked", "bad-chunk", "two-lengths"])
def test_truncated_or_ambiguous_origin_bodies_never_stored(rig, u, kind):
    """An origin that breaks off (fewer bytes than its Content-Length, a
    chunked body without its last chunk), sends a bad chunk, or frames its
    body two ways: what reached weir is not the representation, it must
    not be served to the next client as if it were."""
    g = rig
    heads = {
        "short-length": [b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 100\r\n\r\n" + b"x" * 50],
        "cut-chunked": [b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"32\r\n" + b"x" * 50 + b"\r\n"],
        "bad-chunk": [b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nxxxxx\r\nzz\r\nyy\r\n0\r\n\r\n"],
        "two-lengths": [b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\n"
                        b"Content-Length: 7\r\n\r\nxxxxxxx"],
    }[kind]
    calls = [0]

    def once(req):
        calls[0] += 1
        if calls[0] == 1:
            return heads + [0.05, None]
        return resp(headers=[("Cache-Control", "max-age=600")], body=b"whole")

    g.o.set(u, once)
    with HttpConn(g.w.port, timeout=5) as c:
        try:
            c.request("GET", u, host="trunc.test")
        except Exception:
            pass  # the client sees the break (a cut connection or a 502)
    out = raw(g.w.port, b"GET %s HTTP/1.1\r\nHost: trunc.test\r\nConnection: close\r\n\r\n" % u.encode())
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"\r\n\r\nwhole"), (kind, out)


def test_head_miss_does_not_store_an_empty_get(rig, u):
    """A HEAD that misses: whatever weir forwards, a later GET gets the body."""
    g = rig
    g.o.set(u, lambda req: b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 9\r\n\r\n" +
            (b"" if req.method == "HEAD" else b"full body"))
    with HttpConn(g.w.port) as c:
        r = c.request("HEAD", u, host="head.test")
    assert r.status == 200 and r.header("Content-Length") == "9"
    for _ in range(2):
        r = get(g.w, u, host="head.test")
        assert r.status == 200 and r.body == b"full body", r


def test_range_miss_stores_the_whole_object(rig, u):
    """An attacker's Range request on a miss must not leave a partial
    object answering plain GETs (RFC 9111 §3.3/§3.4: a 206 is stored only
    as a part)."""
    g = rig
    body = b"0123456789" * 10

    def f(req):
        rg = req.h("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", rg or "")
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            return resp(206, headers=[("Cache-Control", "max-age=600"),
                                      ("Content-Range", "bytes %d-%d/%d" % (a, b, len(body)))], body=body[a:b + 1])
        return resp(headers=[("Cache-Control", "max-age=600")], body=body)

    g.o.set(u, f)
    r = get(g.w, u, headers=[("Range", "bytes=0-1")], host="rng.test")
    assert r.status in (200, 206)
    if r.status == 206:
        assert r.body == b"01"
    for _ in range(2):
        r = get(g.w, u, host="rng.test")
        assert r.status == 200 and r.body == body, r


def test_cache_status_and_age_never_duplicated(rig, u):
    """An origin that sends Age twice and a Cache-Status member claiming to
    be a weir hit. The miss passes the origin's fields through, weir's
    member last (RFC 9211 §2: each cache appends its own). A hit carries
    exactly one Age, computed by weir from the first member of the
    list-valued Age (RFC 9111 §5.1: use the first, discard the rest), and
    weir's own member last: the upstream members are kept as the record of
    the fetch, never taken for weir's."""
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600"), ("Age", "7"), ("Age", "9"),
                                         ("Cache-Status", "weir; hit; detail=forged")], body=b"dup"))
    r = get(g.w, u, host="dup.test")
    assert r.headers_all("Cache-Status")[-1].startswith("weir; fwd=uri-miss"), r.headers
    for _ in range(2):
        r = get(g.w, u, host="dup.test")
        assert is_hit(r), r.headers
        assert len(r.headers_all("Age")) == 1 and 7 <= int(r.header("Age")) <= 9, r.headers
        last = r.headers_all("Cache-Status")[-1]
        assert last.startswith("weir; hit;") and "forged" not in last and "ttl=59" in last, r.headers
        assert len(r.headers_all("Cache-Status")) == 2, r.headers  # the origin's line and weir's, once each


# --------------------------------------------------------------------------
# private data
# --------------------------------------------------------------------------

def whoami(extra_headers=()):
    def f(req):
        who = req.h("Authorization") or req.h("Cookie") or "anonymous"
        return resp(headers=list(extra_headers), body=("for " + who).encode())
    return f


@pytest.mark.parametrize("cc", ["max-age=600", "max-age=600, proxy-revalidate=x", "no-cache", "max-age=600, private"])
def test_authorization_answers_stay_with_their_client(rig, u, cc):
    g = rig
    g.o.set(u, whoami([("Cache-Control", cc)]))
    assert get(g.w, u, headers=[("Authorization", "Bearer alice")]).body == b"for Bearer alice"
    r = get(g.w, u, headers=[("Authorization", "Bearer bob")])
    assert r.body == b"for Bearer bob"
    assert get(g.w, u).body == b"for anonymous"


@pytest.mark.parametrize("cc", ["PRIVATE, max-age=600", "max-age=600 ,   Private", "max-age=600,private",
                                'private="x-user", max-age=600', "max-age=600, private=x-user"])
def test_private_in_odd_spellings(rig, u, cc):
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", cc), ("X-User", req.h("Cookie") or "-")],
                                body=("for " + (req.h("Cookie") or "-")).encode()))
    get(g.w, u, headers=[("Cookie", "sid=alice")])
    r = get(g.w, u, headers=[("Cookie", "sid=bob")])
    assert b"alice" not in r.body and "alice" not in (r.header("X-User") or ""), r
    r = get(g.w, u)
    assert b"alice" not in r.body and "alice" not in (r.header("X-User") or ""), r


@pytest.mark.parametrize("sc", [("Set-Cookie", "sid=alice"), ("set-cookie", "sid=alice"), ("SET-COOKIE", "sid=alice")])
def test_set_cookie_answers_never_stored(rig, u, sc):
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "public, max-age=600"), sc], body=b"cookie"))
    get(g.w, u)
    r = get(g.w, u)
    assert not is_hit(r) and not r.headers_all("Set-Cookie") == [] and g.o.count(u) == 2


def test_vary_cookie_keeps_users_apart(rig, u):
    g = rig
    g.o.set(u, whoami([("Cache-Control", "max-age=600"), ("Vary", "Cookie")]))
    assert get(g.w, u, headers=[("Cookie", "sid=alice")]).body == b"for sid=alice"
    assert get(g.w, u, headers=[("Cookie", "sid=bob")]).body == b"for sid=bob"
    assert get(g.w, u).body == b"for anonymous"
    r = get(g.w, u, headers=[("Cookie", "sid=alice")])
    assert r.body == b"for sid=alice" and is_hit(r)


def test_set_cookie_on_a_304_never_merged_into_the_stored_object(rig, u):
    """A revalidation whose 304 carries Set-Cookie (the origin logs in the
    client that triggered it): the stored headers are updated from the 304
    (RFC 9111 §4.3.4), but the cookie is that client's: it must never be
    served to the next one."""
    g = rig
    calls = [0]

    def f(req):
        calls[0] += 1
        if req.h("If-None-Match") == '"v1"':
            cookie = b"Set-Cookie: sid=alice-%d\r\n" % calls[0] if req.h("Cookie") else b""
            return b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=600\r\n" + cookie + \
                b"\r\n"
        return resp(headers=[("Cache-Control", "max-age=0"), ("ETag", '"v1"')], body=b"page")

    g.o.set(u, f)
    assert get(g.w, u).body == b"page"
    r = get(g.w, u, headers=[("Cookie", "sid=alice")])  # stale: revalidated, 304 with Set-Cookie
    assert r.body == b"page" and r.header("Set-Cookie") == "sid=alice-2", r.headers  # alice's own answer
    for _ in range(2):
        r = get(g.w, u)
        assert r.body == b"page" and not r.headers_all("Set-Cookie"), r.headers
    # the same through a background (stale-while-revalidate) revalidation
    v = u + "/swr"
    g.o.set(v, lambda req: (b"HTTP/1.1 304 Not Modified\r\nETag: \"s1\"\r\nSet-Cookie: sid=mallory\r\n"
                            b"Cache-Control: max-age=600\r\n\r\n") if req.h("If-None-Match") else
            resp(headers=[("Cache-Control", "max-age=10, stale-while-revalidate=600"), ("Age", "20"),
                          ("ETag", '"s1"')], body=b"swr"))
    assert get(g.w, v).body == b"swr"
    assert get(g.w, v).body == b"swr"  # stale, served; one background revalidation
    assert wait_until(lambda: g.o.count(v) >= 2, tf(3))
    time.sleep(0.2)
    for _ in range(2):
        r = get(g.w, v)
        assert r.body == b"swr" and not r.headers_all("Set-Cookie"), r.headers


@pytest.mark.parametrize("cc", ["max-age=10, stale-while-revalidate=600", "max-age=10", "no-cache",
                                "max-age=10, stale-if-error=600"])
def test_revalidation_for_an_authorized_client_is_not_stored_for_all(rig, u, cc):
    """A stale entry; a client with Authorization asks. The shared answer
    may serve it (RFC 9111 §3.5 restricts reusing the answer *to* an
    authenticated request), but what the origin answers it personally (no
    public / s-maxage / must-revalidate), in the foreground or in a
    stale-while-revalidate background request sent with its credentials,
    must not become the new shared copy."""
    g = rig
    def f(req):
        who = req.h("Authorization") or "anonymous"
        return resp(headers=[("Cache-Control", cc), ("Age", "20"), ("ETag", '"%s"' % who.replace(" ", "-"))],
                    body=("for " + who).encode())

    g.o.set(u, f)
    assert get(g.w, u).body == b"for anonymous"
    r = get(g.w, u, headers=[("Authorization", "Bearer alice")])
    assert r.body in (b"for Bearer alice", b"for anonymous"), (r.body, r.header("Cache-Status"))
    time.sleep(0.3)  # a background revalidation, if one was started
    for _ in range(2):
        r = get(g.w, u)
        assert b"alice" not in r.body, (r.body, r.header("Cache-Status"))


def test_no_store_only_in_second_cache_control_line(rig, u):
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "public, max-age=600"), ("Cache-Control", "no-store")],
                                body=b"ns"))
    get(g.w, u)
    assert not is_hit(get(g.w, u)) and g.o.count(u) == 2


# --------------------------------------------------------------------------
# resource exhaustion
# --------------------------------------------------------------------------

def test_vary_with_100_fields(rig, u):
    g = rig
    names = ["X-V%d" % i for i in range(100)]
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600"), ("Vary", ", ".join(names))],
                                body=b"v100"))
    hs = [(n, "1") for n in names]
    for _ in range(3):
        r = get(g.w, u, headers=hs)
        assert r.status == 200 and r.body == b"v100"
    r = get(g.w, u, headers=[(n, "2") for n in names[:50]])
    assert r.status == 200 and r.body == b"v100"
    assert g.w.alive()


def test_thousands_of_variants_stay_within_memory_bytes(rig, u):
    g = rig
    body = b"L" * 1500
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600"), ("Vary", "Accept-Language")], body=body))
    n, deadline = 0, time.monotonic() + tf(20)
    with HttpConn(g.w.port) as c:
        for n in range(5000):
            if time.monotonic() > deadline:
                break
            r = c.request("GET", u, headers=[("Accept-Language", "x-%d" % n)], host="var.test")
            assert r.status == 200 and r.body == body
    assert n > 3000, "too few variants in the time allowed: %d" % n
    st = cache_state(g)
    assert st["l1"]["bytes"] <= MEMORY, st["l1"]
    assert st["l1"]["budget_bytes"] == MEMORY
    assert st["l1"]["evicted"] > 0, st["l1"]


@pytest.mark.parametrize("n", [1890, 1950, 2100, 6000, 10000])
def test_long_urls(rig, u, n):
    """Around the 1,900-byte limit of L2 keys and past the request-line
    limit: refused or served right, each URL its own entry."""
    g = rig
    target = u + "?" + "q" * n
    r = get(g.w, target, host="long.test")
    assert r.status in (200, 414, 431, 400), r
    if n < 6000:
        assert r.status == 200, r
    if r.status == 200:
        assert r.body == ("long.test %s" % target).encode()
        r = get(g.w, target, host="long.test")
        assert r.status == 200 and r.body == ("long.test %s" % target).encode()
        # a one-byte-different long URL is another resource
        other = target[:-1] + "Q"
        assert get(g.w, other, host="long.test").body == ("long.test %s" % other).encode()
    assert g.w.alive()


def test_100_if_none_match_values(rig, u):
    g = rig
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600"), ("ETag", '"real"')], body=b"inm"))
    get(g.w, u)
    tags = ", ".join('"t%d"' % i for i in range(100))
    r = get(g.w, u, headers=[("If-None-Match", tags)])
    assert r.status == 200 and r.body == b"inm"
    r = get(g.w, u, headers=[("If-None-Match", tags + ', "real"')])
    assert r.status == 304 and r.body == b""
    r = get(g.w, u, headers=[("If-None-Match", 'W/"a", ' * 500 + '"x')])  # malformed list
    assert r.status in (200, 304, 400) and g.w.alive()


def range_bound(body_len, r):
    assert r.status in (200, 206, 416, 431), r
    if r.status == 200:
        return
    # a 206 never amplifies: at most the body once plus a bounded overhead
    assert len(r.body) <= 2 * body_len + 4096, (r.status, len(r.body))


@pytest.mark.parametrize("spec", [
    "bytes=" + ",".join("%d-%d" % (i, i) for i in range(1500)),
    "bytes=" + ",".join(["0-"] * 1000),
    "bytes=" + ",".join(["0-"] * 10000),  # 10,000 ranges in 30 KB (the head limit is 32 KiB)
    "bytes=" + ",".join(["0-999"] * 500),
    "bytes=" + ",".join(["-1000"] * 500),
    "bytes=0-999,1-999,2-999,3-999,4-999,5-999,6-999,7-999,8-999,9-999",
])
def test_range_amplification_refused(rig, u, spec):
    g = rig
    body = bytes(range(250)) * 4  # 1000 bytes
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600")], body=body))
    assert get(g.w, u).body == body
    r = get(g.w, u, headers=[("Range", spec)])
    range_bound(len(body), r)
    if r.status == 200:
        assert r.body == body


def test_slow_loris_waiter_does_not_block_the_leader(rig, u):
    """Coalesced misses: one waiter never reads its socket; the leader and
    the other waiters still get the whole body in time."""
    g = rig
    body = b"S" * (900 << 10)
    g.o.set(u, lambda req: [resp(headers=[("Cache-Control", "max-age=600")], body=body)[:1000], 0.6,
                            resp(headers=[("Cache-Control", "max-age=600")], body=body)[1000:]])
    req = b"GET %s HTTP/1.1\r\nHost: loris.test\r\n\r\n" % u.encode()
    results = []

    def client():
        t0 = time.monotonic()
        with HttpConn(g.w.port, timeout=tf(15)) as c:
            c.send(req)
            r = c.read_response()
        results.append((r.status, len(r.body), time.monotonic() - t0))

    leader = threading.Thread(target=client)
    leader.start()
    time.sleep(0.15)
    loris = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    loris.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    loris.connect((LOOPBACK, g.w.port))
    loris.sendall(req)
    time.sleep(0.1)
    others = [threading.Thread(target=client) for _ in range(3)]
    for t in others:
        t.start()
    for t in [leader] + others:
        t.join(tf(20))
    loris.close()
    assert len(results) == 4 and all(s == 200 and n == len(body) for s, n, _ in results), results
    assert max(t for _, _, t in results) < tf(8), results
    assert g.o.count(u) == 1


# --------------------------------------------------------------------------
# purge API
# --------------------------------------------------------------------------

class Monitor:
    """redis MONITOR on its own connection: every command Redis runs."""

    def __init__(self, port):
        self.s = socket.create_connection((LOOPBACK, port), timeout=5)
        self.s.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        self.data = b""
        self.s.settimeout(0.2)
        self._drain(until=b"+OK\r\n")

    def _drain(self, until=None, seconds=0.3):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                if until is None or until in self.data:
                    break
                continue
            if not d:
                break
            self.data += d

    def commands(self):
        self._drain(seconds=0.5)
        return [ln for ln in self.data.split(b"\r\n") if ln.startswith(b"+") and b"[" in ln]

    def close(self):
        self.s.close()


INJECTIONS = ["a\r\n*1\r\n$8\r\nFLUSHALL\r\n", "a\r\n*2\r\n$3\r\nDEL\r\n$6\r\ncanary\r\n", "a b canary",
              "x\nurl http://localhost/", "*", "canary\x00x", "$-1\r\n"]


def test_purge_needs_the_token(rig):
    g = rig
    assert admin(g.admin_port, "POST", "/cache/purge", {"tag": "x"}, token=None)[0] in (401, 403)
    assert admin(g.admin_port, "POST", "/cache/purge", {"tag": "x"}, token="wrong")[0] in (401, 403)
    assert admin(g.admin_port, "POST", "/cache/purge", {"tag": "x"}, token=TOKEN + "x")[0] in (401, 403)
    assert admin(g.admin_port, "POST", "/cache/purge", {"tag": "x"}, token=TOKEN[:-1])[0] in (401, 403)


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b'{"url": 5}', b'{"tag": ""}', b'{"url": "http://h/", "soft": "yes"}',
                                  b"\xff\xfe{}", b'{"tag": "' + b"x" * (2 << 20) + b'"}'])
def test_purge_bad_bodies_refused(rig, body):
    g = rig
    st, _ = admin(g.admin_port, "POST", "/cache/purge", raw_body=body)
    assert st in (400, 413), st


@pytest.mark.parametrize("field", ["url", "prefix", "tag"])
def test_purge_fields_never_inject_into_redis(rig, u, field):
    g = rig
    rd = g.redis
    rd.cmd("SET", "canary", "alive")
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", "keep")], body=b"kept"))
    get(g.w, u)
    assert is_hit(get(g.w, u))
    time.sleep(0.2)
    mon = Monitor(rd.port)
    try:
        for inj in INJECTIONS:
            value = ("http://localhost/" + inj) if field in ("url", "prefix") else inj
            st, j = admin(g.admin_port, "POST", "/cache/purge", {field: value})
            assert st in (200, 400), (inj, st)
            if st == 200:
                assert j["purged"]["l1"] == 0, (inj, j)
        cmds = mon.commands()
    finally:
        mon.close()
    assert any(b'"PUBLISH" "t:purge"' in c for c in cmds), cmds  # MONITOR saw weir's purges
    assert rd.cmd("GET", "canary") == b"$5\r\nalive\r\n"
    for c in cmds:
        assert not re.search(rb'\] "(?i:flushall|flushdb)"', c), c
        assert not re.search(rb'\] "(?i:del)" "canary"', c), c
    r = get(g.w, u)
    assert is_hit(r) and r.body == b"kept", "a purge of something else removed %s" % u


@needs_redis
def test_purge_message_cannot_be_forged_for_another_instance(procs):
    """A purge's fields go to every instance over the Redis channel: a
    value that looks like a message separator must not make instance B
    purge something else."""
    o = AttackOrigin()
    rd = Redis()
    try:
        for p, tag in (("/victim", "victim"), ("/other", "other")):
            o.set(p, (lambda t: lambda req: resp(headers=[("Cache-Control", "max-age=600"),
                                                          ("Surrogate-Key", t)], body=b"v"))(tag))
        ap = free_port()
        a = procs.weir(**weir_kw(o, rd, ap))
        b = procs.weir(**weir_kw(o, rd, free_port()))
        time.sleep(0.4)
        for p in ("/victim", "/other"):
            get(b, p)
            assert is_hit(get(b, p))
        for value in ("other victim", "other\nvictim", "other\r\ntag victim", "other\x00victim", "other,victim"):
            st, _ = admin(ap, "POST", "/cache/purge", {"tag": value})
            assert st in (200, 400)
        for value in ("http://localhost/other\nhttp://localhost/victim", "http://localhost/other http://localhost/victim"):
            st, _ = admin(ap, "POST", "/cache/purge", {"url": value})
            assert st in (200, 400)
            st, _ = admin(ap, "POST", "/cache/purge", {"prefix": value})
            assert st in (200, 400)
        time.sleep(0.5)
        r = get(b, "/victim")
        assert is_hit(r) and "detail=l1" in r.header("Cache-Status"), r.header("Cache-Status")
        # and a real purge still reaches B
        assert admin(ap, "POST", "/cache/purge", {"tag": "victim"})[0] == 200
        assert wait_until(lambda: not is_hit(get(b, "/victim")), tf(3))
    finally:
        o.stop()
        rd.kill()


# --------------------------------------------------------------------------
# L2 values that are not weir's
# --------------------------------------------------------------------------

def l2_key(u, host="localhost"):
    return "t:obj:GET http://%s%s" % (host, u)


def redis_get(rd, key):
    """The raw value of a string key (RESP bulk string)."""
    r = rd.cmd("GET", key)
    if not r.startswith(b"$") or r.startswith(b"$-1"):
        return None
    n, _, rest = r.partition(b"\r\n")
    return rest[:int(n[1:])]


def corruptions(good):
    yield "garbage", b"not a weir value at all"
    yield "empty", b""
    yield "truncated", good[:len(good) // 2]
    yield "truncated-head", good[:10]
    big = bytearray(good)
    big[56:64] = (1 << 62).to_bytes(8, "little")  # a huge declared body length
    yield "huge-length", bytes(big)
    lens = bytearray(good)
    lens[32:36] = (0xFFFFFFFF).to_bytes(4, "little")
    yield "huge-key-length", bytes(lens)
    ver = bytearray(good)
    ver[4] ^= 0x7F
    yield "other-version", bytes(ver)
    flip = bytearray(good)
    flip[-12] ^= 0x01  # a body byte: the checksum no longer matches
    yield "bit-flip", bytes(flip)


def test_l2_values_not_weirs_are_misses(rig, u):
    g = rig
    rd = g.redis
    g.o.set(u, lambda req: resp(headers=[("Cache-Control", "max-age=600")], body=b"the real one"))
    get(g.w, u)
    assert wait_until(lambda: redis_get(rd, l2_key(u)) is not None, tf(3))
    good = redis_get(rd, l2_key(u))
    garbage0 = cache_state(g)["requests"]["l2_garbage"]
    n = 0
    for name, bad in list(corruptions(good)):
        n += 1
        target = "%s?c=%s" % (u, name)
        rd.cmd("SET", l2_key(target), bad)
        r = get(g.w, target)
        assert r.status == 200 and r.body == b"the real one", (name, r)
        assert not is_hit(r), (name, r.header("Cache-Status"))
    assert cache_state(g)["requests"]["l2_garbage"] - garbage0 == n
    for kind in ("list", "hash", "set"):
        n += 1
        target = "%s?t=%s" % (u, kind)
        if kind == "list":
            rd.cmd("RPUSH", l2_key(target), "x")
        elif kind == "hash":
            rd.cmd("HSET", l2_key(target), "f", "v")
        else:
            rd.cmd("SADD", l2_key(target), "m")
        r = get(g.w, target)
        assert r.status == 200 and r.body == b"the real one" and not is_hit(r), (kind, r)
        # deleted and replaced by weir's own value
        assert wait_until(lambda: redis_get(rd, l2_key(target)) is not None, tf(3)), kind
    assert g.w.alive()
    st = cache_state(g)
    assert st["requests"]["l2_garbage"] - garbage0 == n, st["requests"]
    assert st["l2"]["state"] != "open", st["l2"]  # values it refuses do not trip the breaker


# --------------------------------------------------------------------------
# request smuggling through the cache
# --------------------------------------------------------------------------

def cached(g, path, body):
    g.o.set(path, lambda req: resp(headers=[("Cache-Control", "max-age=600")], body=body))
    get(g.w, path, host="sm.test")
    assert is_hit(get(g.w, path, host="sm.test"))


def test_cl_and_te_refused_or_chunked(rig, u):
    g = rig
    cached(g, u + "/hit", b"CACHED")
    smuggled = b"GET %s/hit HTTP/1.1\r\nHost: sm.test\r\n\r\n" % u.encode()
    data = (b"POST %s/p HTTP/1.1\r\nHost: sm.test\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" % (u.encode(), 5 + len(smuggled))) + smuggled
    out = raw(g.w.port, data)
    # either refused (400, closed) or read as chunked: then the trailing GET
    # is a request of its own and gets its own answer, never glued into the first
    assert out.startswith(b"HTTP/1.1 400") or out.count(b"HTTP/1.1 ") == 2, out[:300]
    if out.startswith(b"HTTP/1.1 400"):
        assert out.count(b"HTTP/1.1 ") == 1 and b"CACHED" not in out


def test_two_content_lengths_refused(rig, u):
    g = rig
    cached(g, u + "/hit", b"CACHED")
    out = raw(g.w.port, b"GET %s/hit HTTP/1.1\r\nHost: sm.test\r\nContent-Length: 0\r\nContent-Length: 45\r\n\r\n"
              b"GET %s/hit HTTP/1.1\r\nHost: sm.test\r\n\r\n" % (u.encode(), u.encode()))
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1 and b"CACHED" not in out


def test_get_with_body_on_cached_url(rig, u):
    """The body of a GET that is answered from the cache is a body, not the
    next request: it is consumed (or the connection closed), never parsed."""
    g = rig
    cached(g, u + "/hit", b"CACHED")
    cached(g, u + "/secret", b"SECRET")
    inner = b"GET %s/secret HTTP/1.1\r\nHost: sm.test\r\n\r\n" % u.encode()
    data = b"GET %s/hit HTTP/1.1\r\nHost: sm.test\r\nContent-Length: %d\r\n\r\n%s" % (u.encode(), len(inner), inner)
    data += b"GET %s/hit HTTP/1.1\r\nHost: sm.test\r\nConnection: close\r\n\r\n" % u.encode()
    out = raw(g.w.port, data)
    assert b"SECRET" not in out, out
    assert out.count(b"CACHED") in (1, 2), out
    if out.count(b"HTTP/1.1 ") == 2:
        assert out.count(b"CACHED") == 2


def test_pipelined_after_a_hit(rig, u):
    g = rig
    cached(g, u + "/first", b"FIRST")
    g.o.set(u + "/second", lambda req: resp(headers=[("Cache-Control", "no-store")], body=b"SECOND"))
    cached(g, u + "/third", b"THIRD")
    data = b"".join(b"GET %s/%s HTTP/1.1\r\nHost: sm.test\r\n\r\n" % (u.encode(), p)
                    for p in (b"first", b"second", b"third", b"first"))
    data += b"HEAD %s/first HTTP/1.1\r\nHost: sm.test\r\n\r\n" % u.encode()
    data += b"GET %s/third HTTP/1.1\r\nHost: sm.test\r\nConnection: close\r\n\r\n" % u.encode()
    with HttpConn(g.w.port) as c:
        c.send(data)
        got = [c.read_response().body for _ in range(4)]
        h = c.read_response(method="HEAD")
        last = c.read_response()
    assert got == [b"FIRST", b"SECOND", b"THIRD", b"FIRST"]
    assert h.status == 200 and h.body == b"" and h.header("Content-Length") == "5"
    assert last.body == b"THIRD"
