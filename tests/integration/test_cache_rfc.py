"""RFC conformance of the response cache, end to end, written from the RFCs'
text: RFC 9111 (HTTP caching), RFC 9110 §13 (conditional requests) and §14
(range requests), RFC 5861 (stale-*), RFC 9211 (Cache-Status) and RFC 9213
(CDN-Cache-Control).

One weir (one worker, L1 only) in front of one origin written here, shared by
the whole module; every test uses URLs of its own (/<test>/...), so tests do
not see each other's entries. The origin answers whatever head the test
scripts for a path, byte for byte (no Date or Server added unless asked), and
records every request it gets.

Staleness is mostly made without sleeping: a response that arrives with an
Age larger than its max-age is stale on arrival (RFC 9111 §4.2.3).
"""

import email.utils
import itertools
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from weirtest import REPO, HttpConn, LOOPBACK, free_port, pool, route

pytestmark = pytest.mark.skipif(not (REPO / "include" / "weir" / "exchange.h").exists(),
                                reason="the session's request hook (exchange.h) is not in this tree")


def httpdate(t):
    return email.utils.formatdate(t, usegmt=True)


LAST_MOD = "Sun, 06 Nov 1994 08:49:37 GMT"  # a long time ago: heuristic lifetime hits its cap


# --------------------------------------------------------------------------
# the origin
# --------------------------------------------------------------------------

class Req:
    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def h(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default


class Answer:
    """status, headers, body; date=True adds Date: now unless headers have
    one; validate=True answers 304 (with the same headers, or headers304) to
    an If-None-Match naming the ETag or an If-Modified-Since equal to the
    Last-Modified; close=True drops the connection without answering;
    interim: raw 1xx heads sent first."""

    def __init__(self, status=200, headers=(), body=b"body", date=True, validate=True, headers304=None,
                 close=False, interim=b""):
        self.status, self.headers, self.body, self.date = status, list(headers), body, date
        self.validate, self.headers304, self.close, self.interim = validate, headers304, close, interim

    def hv(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class RfcOrigin:
    def __init__(self):
        self.answers = {}  # path -> Answer or callable(Req) -> Answer
        self.reqs = {}  # path -> [Req]
        self.lock = threading.Lock()
        origin = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?")[0]
                req = Req(self.command, self.path, list(self.headers.items()), body)
                with origin.lock:
                    origin.reqs.setdefault(path, []).append(req)
                    a = origin.answers.get(path)
                if callable(a):
                    a = a(req)
                if a is None:
                    a = Answer(404, body=b"no answer scripted")
                if a.close:
                    self.close_connection = True
                    return
                status, headers, body = a.status, list(a.headers), a.body
                if a.validate and self.command in ("GET", "HEAD"):
                    etag, lm = a.hv("ETag"), a.hv("Last-Modified")
                    inm, ims = req.h("If-None-Match"), req.h("If-Modified-Since")
                    tags = [t.strip().replace("W/", "") for t in (inm or "").split(",")]
                    if (etag is not None and inm is not None and etag.replace("W/", "") in tags) or \
                            (inm is None and lm is not None and ims == lm):
                        status, body = 304, b""
                        if a.headers304 is not None:
                            headers = list(a.headers304)
                names = {k.lower() for k, _ in headers}
                if a.date and "date" not in names:
                    headers.append(("Date", httpdate(time.time())))
                if status not in (204, 304) and "content-length" not in names and \
                        "transfer-encoding" not in names:
                    headers.append(("Content-Length", str(len(body))))
                head = "HTTP/1.1 %d X\r\n" % status + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
                out = a.interim + head.encode("latin-1")
                if self.command != "HEAD" and status not in (204, 304):
                    if ("transfer-encoding", "chunked") in [(k.lower(), v) for k, v in headers]:
                        out += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
                    else:
                        out += body
                self.wfile.write(out)
                self.wfile.flush()

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any

        setattr(H, "do_M-SEARCH", H._any)  # a method weir does not know
        self.port = free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.server = ThreadingHTTPServer((LOOPBACK, self.port), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, path, answer=None, **kw):
        with self.lock:
            self.answers[path] = answer if answer is not None else Answer(**kw)

    def n(self, path, method=None):
        with self.lock:
            return len([r for r in self.reqs.get(path, []) if method is None or r.method == method])

    def last(self, path):
        with self.lock:
            return self.reqs[path][-1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Cache-Status (RFC 9211): a List (RFC 8941) whose members are cache names
# (token or string) with parameters
# --------------------------------------------------------------------------

_KEY = r"[a-z*][a-z0-9_.*-]*"
_TOKEN = r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*"
_STRING = r'"(?:[^"\\\x00-\x1f\x7f]|\\["\\])*"'
_BARE = r"(?:-?[0-9]{1,15}(?:\.[0-9]{1,3})?|%s|%s|\?[01])" % (_TOKEN, _STRING)
_PARAM = r";[ ]*(%s)(?:=(%s))?" % (_KEY, _BARE)
_MEMBER = re.compile(r"(%s|%s)((?:%s)*)" % (_TOKEN, _STRING, r";[ ]*%s(?:=%s)?" % (_KEY, _BARE)))
FWD = {"bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"}


def cache_status(r):
    """Check the syntax and semantics of the response's Cache-Status and
    return weir's member's parameters as a dict."""
    lines = r.headers_all("Cache-Status")
    assert lines, "no Cache-Status on %r" % r
    v = ", ".join(lines)
    members = []
    pos = 0
    while True:
        m = _MEMBER.match(v, pos)
        assert m, "Cache-Status %r: not a structured list at %d" % (v, pos)
        members.append(m)
        pos = m.end()
        while pos < len(v) and v[pos] in " \t":
            pos += 1
        if pos == len(v):
            break
        assert v[pos] == ",", "Cache-Status %r: junk at %d" % (v, pos)
        pos += 1
        while pos < len(v) and v[pos] in " \t":
            pos += 1
    mine = members[0]  # weir is the only cache here: the first (and last) member
    assert mine.group(1) == "weir", v
    params = {}
    for pm in re.finditer(_PARAM, mine.group(2)):
        assert pm.group(1) not in params, "parameter %s twice in %r" % (pm.group(1), v)
        params[pm.group(1)] = pm.group(2) if pm.group(2) is not None else True
    assert ("hit" in params) != ("fwd" in params), "exactly one of hit / fwd: %r" % v
    if "hit" in params:
        assert params["hit"] is True and "fwd-status" not in params, v
    else:
        assert params["fwd"] in FWD, v
    if "fwd-status" in params:
        assert re.fullmatch(r"[1-5][0-9][0-9]", params["fwd-status"]), v
    if "ttl" in params:
        assert re.fullmatch(r"-?[0-9]+", params["ttl"]), v
    for flag in ("stored", "collapsed"):
        if flag in params:
            assert params[flag] is True, v
    return params


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rig(mprocs):
    o = RfcOrigin()
    r = route("p")
    r["cache"] = True
    w = mprocs.weir(pools=[pool("p", [o])], routes=[r], workers=1,
                    extra="cache = { memory_bytes = %d; max_object_bytes = %d; };\n" % (64 << 20, 1 << 20))
    yield o, w
    o.stop()


_seq = itertools.count(1)


@pytest.fixture
def u(request):
    """A path prefix no other test uses."""
    return "/%s-%d" % (request.node.name.split("[")[0].replace("test_", ""), next(_seq))


def get(w, target, headers=(), method="GET", body=None, host="localhost", check_cs=True):
    with HttpConn(w.port) as c:
        r = c.request(method, target, headers=list(headers), body=body, host=host)
    r.cs = cache_status(r) if check_cs else {}
    return r


def hit(r):
    return "hit" in r.cs


# --------------------------------------------------------------------------
# freshness (RFC 9111 §4.2.1)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cc,extra,fresh", [
    ("s-maxage=60, max-age=0", [], True),       # s-maxage wins for a shared cache
    ("s-maxage=0, max-age=60", [], False),
    ("max-age=60", [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")], True),  # max-age over Expires
    ("max-age=0", [("Expires", httpdate(time.time() + 3600))], False),
    (None, [("Expires", httpdate(time.time() + 3600))], True),
    (None, [("Expires", "0")], False),          # invalid Expires: already expired
    (None, [("Expires", "0"), ("Last-Modified", LAST_MOD)], False),  # ... and no heuristic
    ("max-age=60, max-age=120", [], False),     # conflicting: weir takes it as stale
    ("max-age=60, max-age=60", [], True),
    ('max-age="60"', [], True),                 # quoted-string argument (§5.2)
    ("MAX-AGE=60", [], True),                   # directive names are case-insensitive
    ("max-age=60, x-unknown, foo=\"a,b\"", [], True),  # unknown directives ignored
    ("max-age=-1", [], False),
    ("max-age=6x", [], False),
    ("max-age=0060", [], True),                 # leading zeros are digits
    ("max-age='60'", [], False),                # single quotes are not quoted-string
    ('x-ext="max-age=3600", max-age=0', [], False),  # a directive inside a quoted string is no directive
    ('max-age=0, x-ext="max-age=3600"', [], False),
    ('x-ext="a, b", max-age=60', [], True),
    ("max-age=3600, s-maxage=1", [("Age", "5")], False),
    ("s-maxage=1, max-age=3600", [("Age", "5")], False),
    ("max-age=1, s-maxage=3600", [("Age", "5")], True),
    ('x-ext="max-age=100", max-age="1"', [("Age", "5")], False),
    ("max-age=2147483648", [], True),           # §1.2.2: taken as 2^31
    ("max-age=99999999999", [], True),
    ("max-age=10", [("Age", "15")], False),
    ("max-age =60", [], False),                 # no whitespace around "=" (RFC 9110 §5.6.2 grammar)
    ("max-age= 60", [], False),
])
def test_freshness_lifetime(rig, u, cc, extra, fresh):
    o, w = rig
    hs = ([("Cache-Control", cc)] if cc else []) + extra + [("ETag", '"f"')]
    o.set(u, headers=hs, body=b"fresh?")
    assert get(w, u).body == b"fresh?"
    r = get(w, u)
    assert r.status == 200 and r.body == b"fresh?"
    assert hit(r) == fresh, (cc, extra, r.cs)
    assert o.n(u) == (1 if fresh else 2)


def test_expires_relative_to_date(rig, u):
    """Lifetime is Expires - Date (§4.2.1), not Expires - the cache's clock:
    an origin whose clock is 1000 s ahead, lifetime 1 s."""
    o, w = rig
    d = time.time() + 1000
    o.set(u, headers=[("Date", httpdate(d)), ("Expires", httpdate(d + 1))], body=b"skew")
    get(w, u)
    time.sleep(2.2)
    r = get(w, u)
    assert r.body == b"skew" and not hit(r) and o.n(u) == 2, r.cs


@pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", ""])
def test_invalid_age_is_ignored(rig, u, age):
    """§5.1: Age is a non-negative integer; anything else is not an age."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=3600"), ("Age", age)], body=b"age")
    get(w, u)
    r = get(w, u)
    assert hit(r) and int(r.header("Age")) < 5, r.headers


def test_two_cache_control_lines_are_one_list(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Cache-Control", "no-store")])
    get(w, u)
    assert not hit(get(w, u)) and o.n(u) == 2
    o.set(u + "/s", headers=[("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=1"), ("Age", "5"),
                             ("ETag", '"two"')])
    get(w, u + "/s")
    assert not hit(get(w, u + "/s")) and o.n(u + "/s") == 2


def test_upstream_age_counts(rig, u):
    """§4.2.3: the Age received is part of the current age; Age goes out on
    every hit and grows."""
    o, w = rig
    o.set(u + "/young", headers=[("Cache-Control", "max-age=60"), ("Age", "30")])
    o.set(u + "/old", headers=[("Cache-Control", "max-age=60"), ("Age", "90")])
    get(w, u + "/young")
    r = get(w, u + "/young")
    assert hit(r) and 30 <= int(r.header("Age")) <= 33
    time.sleep(1.1)
    r2 = get(w, u + "/young")
    assert hit(r2) and int(r2.header("Age")) >= 31
    assert len(r2.headers_all("Age")) == 1
    get(w, u + "/old")
    r = get(w, u + "/old")
    assert not hit(r) and o.n(u + "/old") == 2


def test_age_on_every_hit_and_date_kept(rig, u):
    o, w = rig
    d = httpdate(time.time() - 5)
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Date", d)])
    get(w, u)
    for _ in range(3):
        r = get(w, u)
        assert hit(r) and r.header("Date") == d
        # Date 5 s in the past: apparent age counts (§4.2.3)
        assert r.header("Age") is not None and int(r.header("Age")) >= 5


def test_date_added_when_origin_sends_none(rig, u):
    """RFC 9110 §6.6.1: a recipient with a clock adds Date to a response it
    caches or forwards when there is none."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], date=False)
    r1 = get(w, u)
    r2 = get(w, u)
    assert hit(r2)
    for what, r in (("hit", r2), ("forwarded", r1)):
        assert r.header("Date") is not None and email.utils.parsedate_to_datetime(r.header("Date")), what


# --------------------------------------------------------------------------
# statuses and heuristic freshness (§3, §4.2.2)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_storable_statuses_explicit(rig, u, status):
    o, w = rig
    body = b"" if status == 204 else b"s%d" % status
    o.set(u, status=status, headers=[("Cache-Control", "max-age=60")], body=body)
    get(w, u)
    r = get(w, u)
    assert r.status == status and r.body == body and hit(r), r.cs
    assert o.n(u) == 1


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristic_freshness_for_heuristic_statuses(rig, u, status):
    o, w = rig
    body = b"" if status == 204 else b"h"
    o.set(u, status=status, headers=[("Last-Modified", LAST_MOD)], body=body)
    get(w, u)
    r = get(w, u)
    assert r.status == status and hit(r), r.cs
    assert o.n(u) == 1


@pytest.mark.parametrize("status", [302, 307, 500, 503])
def test_no_heuristic_for_other_statuses(rig, u, status):
    o, w = rig
    o.set(u, status=status, headers=[("Last-Modified", LAST_MOD)], body=b"n")
    get(w, u)
    r = get(w, u)
    assert r.status == status and not hit(r) and o.n(u) == 2


@pytest.mark.parametrize("status", [302, 303, 307, 400, 500, 502, 503])
def test_other_statuses_with_explicit_freshness(rig, u, status):
    o, w = rig
    o.set(u, status=status, headers=[("Cache-Control", "max-age=60"), ("Location", "/elsewhere")], body=b"e")
    get(w, u)
    r = get(w, u)
    assert r.status == status and hit(r) and o.n(u) == 1


def test_heuristic_lifetime_is_a_fraction_of_the_age_of_last_modified(rig, u):
    """§4.2.2: weir uses 10% of (Date - Last-Modified), at most a day: a
    document modified 5 s ago gets no lifetime, one modified 1000 s ago
    100 s; Expires (even an invalid one) rules the heuristic out."""
    o, w = rig
    now = time.time()
    o.set(u + "/new", headers=[("Last-Modified", httpdate(now - 5))], body=b"n")
    o.set(u + "/old", headers=[("Last-Modified", httpdate(now - 1000))], body=b"o")
    o.set(u + "/exp", headers=[("Last-Modified", LAST_MOD), ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")])
    for p, fresh in (("/new", False), ("/old", True), ("/exp", False)):
        get(w, u + p)
        r = get(w, u + p)
        assert hit(r) == fresh, (p, r.cs)
        if fresh:
            assert 90 <= int(r.cs["ttl"]) <= 100, r.cs


@pytest.mark.parametrize("status", [302, 500, 599])
def test_public_allows_heuristic_freshness_for_any_status(rig, u, status):
    """§4.2.2: heuristics also apply to a response marked public."""
    o, w = rig
    o.set(u, status=status, headers=[("Cache-Control", "public"), ("Last-Modified", LAST_MOD)], body=b"pub")
    get(w, u)
    r = get(w, u)
    assert r.status == status and hit(r) and o.n(u) == 1


@pytest.mark.parametrize("status,headers,stored", [
    (299, [("Cache-Control", "max-age=60")], True),
    (599, [("Cache-Control", "max-age=60")], True),
    (499, [("Expires", httpdate(time.time() + 600))], True),
    (599, [("Last-Modified", LAST_MOD)], False),                       # no heuristics for it
    (599, [("Cache-Control", "max-age=60, must-understand")], False),  # §5.2.2.3
    (599, [("Cache-Control", "max-age=60, must-understand, no-store")], False),
    (200, [("Cache-Control", "max-age=60, must-understand, no-store")], True),
])
def test_unknown_status_codes(rig, u, status, headers, stored):
    """§3: a final status the cache does not know is storable like any
    other unless must-understand asks for understanding."""
    o, w = rig
    o.set(u, status=status, headers=headers, body=b"unk")
    get(w, u)
    r = get(w, u)
    assert r.status == status and hit(r) == stored and o.n(u) == (1 if stored else 2)


def test_no_heuristic_without_last_modified(rig, u):
    o, w = rig
    o.set(u, headers=[("ETag", '"noheur"')], body=b"n")
    get(w, u)
    r = get(w, u)
    assert not hit(r) and o.n(u) == 2


def test_206_and_304_from_origin_not_stored(rig, u):
    o, w = rig
    o.set(u + "/p", status=206, headers=[("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-3/10")],
          body=b"part")
    get(w, u + "/p")
    get(w, u + "/p")
    assert o.n(u + "/p") == 2
    # a 304 to a request the cache did not make conditional
    o.set(u + "/n", status=304, headers=[("Cache-Control", "max-age=60"), ("ETag", '"x"')], body=b"")
    assert get(w, u + "/n").status == 304
    assert get(w, u + "/n").status == 304
    assert o.n(u + "/n") == 2


def test_interim_responses_not_stored(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], body=b"final",
          interim=b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
    get(w, u)
    r = get(w, u)
    assert hit(r) and r.status == 200 and r.body == b"final"
    assert r.header("Link") is None  # a 1xx's fields are not the final response's


# --------------------------------------------------------------------------
# request directives (§5.2.1) and Pragma (§5.4)
# --------------------------------------------------------------------------

def test_request_no_cache_and_max_age_0_revalidate(rig, u):
    o, w = rig
    # Age: 2, so that max-age=0 is not met even within the first second
    # (an age of 0 would satisfy max-age=0: "less than or equal", §5.2.1.1)
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"rq"'), ("Age", "2")], body=b"rq")
    get(w, u)
    for cc in ("no-cache", "max-age=0", "max-age=1"):
        before = o.n(u)
        r = get(w, u, headers=[("Cache-Control", cc)])
        assert r.status == 200 and r.body == b"rq" and not hit(r), cc
        assert o.n(u) == before + 1
        assert o.last(u).h("If-None-Match") == '"rq"', "revalidated with the stored validator"
    assert hit(get(w, u))


def test_request_max_age_and_min_fresh(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=600"), ("Age", "30")], body=b"mm")
    get(w, u)
    assert hit(get(w, u, headers=[("Cache-Control", "max-age=60")]))
    assert not hit(get(w, u, headers=[("Cache-Control", "max-age=10")]))
    n = o.n(u)
    assert hit(get(w, u, headers=[("Cache-Control", "min-fresh=100")]))
    assert not hit(get(w, u, headers=[("Cache-Control", "min-fresh=590")]))
    assert o.n(u) == n + 1


def test_request_max_stale(rig, u):
    o, w = rig
    # 10 s stale on arrival; the ETag keeps it stored for revalidation
    o.set(u, headers=[("Cache-Control", "max-age=10"), ("Age", "20"), ("ETag", '"st"')], body=b"stale")
    get(w, u)
    r = get(w, u, headers=[("Cache-Control", "max-stale=30")])
    assert hit(r) and r.body == b"stale" and int(r.header("Age")) >= 20
    assert hit(get(w, u, headers=[("Cache-Control", "max-stale")]))
    assert o.n(u) == 1
    assert not hit(get(w, u, headers=[("Cache-Control", "max-stale=5")]))
    assert not hit(get(w, u))
    assert o.n(u) == 3


def test_only_if_cached(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], body=b"oic")
    o.set(u + "/stale", headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"o"')], body=b"s")
    r = get(w, u, headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and o.n(u) == 0
    get(w, u)
    r = get(w, u, headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 200 and r.body == b"oic" and hit(r) and o.n(u) == 1
    get(w, u + "/stale")
    r = get(w, u + "/stale", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and o.n(u + "/stale") == 1
    r = get(w, u + "/stale", headers=[("Cache-Control", "only-if-cached, max-stale=60")])
    assert r.status == 200 and hit(r) and o.n(u + "/stale") == 1


def test_request_no_store(rig, u):
    """§5.2.1.5: nothing of the response is stored. The RFC would let a
    stored response answer; weir sends the request on (its documented
    choice), unconditionally, and the stored entry stays as it was."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"ns"'), ("X-V", "1")], body=b"ns")
    r = get(w, u, headers=[("Cache-Control", "no-store")])
    assert r.body == b"ns" and "stored" not in r.cs and r.cs.get("detail") == "no-store"
    assert not hit(get(w, u)) and o.n(u) == 2
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"ns"'), ("X-V", "2")], body=b"ns")
    r = get(w, u, headers=[("Cache-Control", "no-store, max-stale")])
    assert r.body == b"ns" and not hit(r) and "stored" not in r.cs and o.n(u) == 3
    q = o.last(u)
    assert q.h("If-None-Match") is None and q.h("If-Modified-Since") is None
    r = get(w, u)
    assert hit(r) and r.header("X-V") == "1"


def test_pragma_no_cache(rig, u):
    """§5.4: Pragma: no-cache is honoured as no-cache only when the request
    has no Cache-Control (weir's choice; the RFC deprecates Pragma)."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], body=b"pr")
    get(w, u)
    assert not hit(get(w, u, headers=[("Pragma", "no-cache")]))
    assert o.n(u) == 2
    assert hit(get(w, u, headers=[("Pragma", "no-cache"), ("Cache-Control", "max-stale=5")]))
    # Pragma in a response means nothing to a cache
    o.set(u + "/r", headers=[("Cache-Control", "max-age=60"), ("Pragma", "no-cache")], body=b"r")
    get(w, u + "/r")
    assert hit(get(w, u + "/r"))


# --------------------------------------------------------------------------
# response directives (§5.2.2)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cc", ["no-store", "private", 'private="set-cookie"', "private, max-age=60",
                                "max-age=60, no-store", "NO-STORE, max-age=60"])
def test_response_not_stored(rig, u, cc):
    o, w = rig
    o.set(u, headers=[("Cache-Control", cc), ("ETag", '"ns"')], body=b"ns")
    for _ in range(3):
        r = get(w, u)
        assert r.body == b"ns" and not hit(r) and "stored" not in r.cs
    assert o.n(u) == 3


@pytest.mark.parametrize("cc", ["no-cache, max-age=60", 'no-cache="x-private", max-age=60', "no-cache"])
def test_response_no_cache_always_revalidated(rig, u, cc):
    o, w = rig
    o.set(u, headers=[("Cache-Control", cc), ("ETag", '"nc"'), ("X-Private", "p")], body=b"nc")
    r = get(w, u)
    assert r.body == b"nc"
    for i in range(2):
        r = get(w, u)
        assert r.status == 200 and r.body == b"nc" and not hit(r)
        assert o.last(u).h("If-None-Match") == '"nc"', "stored and revalidated, not refetched"
    assert o.n(u) == 3


def test_must_revalidate_never_served_stale(rig, u):
    """§5.2.2.2 / §4.2.4: not even with max-stale or stale-if-error; an origin
    error goes to the client, a lost origin gives a 5xx, never the stale copy."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1, must-revalidate, stale-if-error=60"), ("Age", "5"),
                      ("ETag", '"mr"')], body=b"mr")
    get(w, u)
    r = get(w, u, headers=[("Cache-Control", "max-stale=60")])
    assert not hit(r) and o.n(u) == 2
    o.set(u, status=500, body=b"origin error")
    r = get(w, u, headers=[("Cache-Control", "max-stale=60, stale-if-error=60")])
    assert r.status == 500 and r.body == b"origin error"
    o.set(u, close=True)
    r = get(w, u, check_cs=False)
    assert r.status in (502, 504) and r.body != b"mr", r


def test_cache_status_on_weirs_own_errors(rig, u):
    """RFC 9211 / issue 8: Cache-Status on every response of a caching route,
    including the 502 weir makes when the origin breaks off."""
    o, w = rig
    o.set(u, close=True)
    r = get(w, u, check_cs=False)
    assert r.status in (502, 504)
    cache_status(r)


@pytest.mark.parametrize("cc", ["max-age=1, proxy-revalidate", "s-maxage=1"])
def test_proxy_revalidate_and_s_maxage(rig, u, cc):
    o, w = rig
    o.set(u, headers=[("Cache-Control", cc), ("Age", "5"), ("ETag", '"pr"')], body=b"pr")
    get(w, u)
    r = get(w, u, headers=[("Cache-Control", "max-stale=60")])
    assert not hit(r) and o.n(u) == 2


def test_stale_served_with_max_stale_when_allowed(rig, u):
    """Contrast for the test above: without those directives max-stale works,
    and stale-if-error (RFC 5861) serves the stale copy when the origin fails."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1, stale-if-error=60"), ("Age", "5"), ("ETag", '"sie"')],
          body=b"sie")
    get(w, u)
    assert hit(get(w, u, headers=[("Cache-Control", "max-stale=60")]))
    o.set(u, status=500, body=b"origin error")
    r = get(w, u)
    assert r.status == 200 and r.body == b"sie"
    assert r.cs.get("fwd") == "stale" and r.cs.get("fwd-status") == "500", r.cs
    o.set(u, close=True)  # the origin breaks off without an answer
    r = get(w, u)
    assert r.status == 200 and r.body == b"sie"
    # RFC 9211 §2.3: no next-hop status to name
    assert r.cs.get("fwd") == "stale" and "fwd-status" not in r.cs and r.cs.get("detail") == "stale-if-error"


@pytest.mark.parametrize("cc", ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=1"])
def test_no_stale_on_origin_failure_when_prohibited(rig, u, cc):
    """§4.2.4: a cache MUST NOT generate a stale response when a directive
    forbids it, not even when the origin cannot be reached."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1, " + cc), ("Age", "5"), ("ETag", '"nf"')], body=b"nf")
    get(w, u)
    r = get(w, u, headers=[("Cache-Control", "only-if-cached, max-stale=60")])
    assert r.status == 504 and o.n(u) == 1
    o.set(u, close=True)
    r = get(w, u, headers=[("Cache-Control", "max-stale=60")], check_cs=False)
    assert r.status in (502, 504) and r.body != b"nf", r


@pytest.mark.parametrize("cc,shared", [
    ("max-age=60", False),
    ("public, max-age=60", True),
    ("s-maxage=60", True),
    ("max-age=60, must-revalidate", True),
    ("max-age=60, proxy-revalidate", False),
])
def test_authorization(rig, u, cc, shared):
    """§3.5."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", cc)], body=b"auth")
    get(w, u, headers=[("Authorization", "Bearer alice")])
    r = get(w, u, headers=[("Authorization", "Bearer bob")])
    assert r.body == b"auth" and hit(r) == shared, r.cs
    assert o.n(u) == (1 if shared else 2)


def test_immutable_stored_and_hit(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60, immutable")], body=b"im")
    get(w, u)
    assert hit(get(w, u))


def test_set_cookie_not_stored(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "public, max-age=60"), ("Set-Cookie", "a=b")], body=b"ck")
    get(w, u)
    r = get(w, u)
    assert not hit(r) and o.n(u) == 2


# --------------------------------------------------------------------------
# CDN-Cache-Control (RFC 9213), Surrogate-Control
# --------------------------------------------------------------------------

@pytest.mark.parametrize("headers,stored", [
    ([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")], True),
    ([("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")], False),
    ([("Cache-Control", "private"), ("CDN-Cache-Control", "max-age=60")], True),
    ([("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "max-age=abc, ,")], True),  # invalid: ignored
    ([("Cache-Control", "max-age=0"), ("CDN-Cache-Control", "max-age=60, must-revalidate")], True),
    ([("CDN-Cache-Control", "max-age=2147483648")], True),
    ([("CDN-Cache-Control", "max-age=99999999999")], True),
    ([("CDN-Cache-Control", "foobar, max-age=60")], True),
    ([("CDN-Cache-Control", "max-age=60"), ("Age", "90")], False),
    ([("CDN-Cache-Control", "max-age=0"), ("Expires", httpdate(time.time() + 3600))], False),
    ([("CDN-Cache-Control", "max-age=60"), ("Expires", "0")], True),
    ([("CDN-Cache-Control", "private"), ("Cache-Control", "max-age=60")], False),
    ([("CDN-Cache-Control", "no-cache"), ("Cache-Control", "max-age=60")], False),
    ([("CDN-Cache-Control", "max-age=60, &&&"), ("Cache-Control", "no-store")], False),  # not a dictionary
    ([("CDN-Cache-Control", 'max-age="60"'), ("Cache-Control", "no-store")], False),    # wrong type
    ([("CDN-Cache-Control", "MaX-aGe=60"), ("Cache-Control", "no-store")], False),      # keys are lower case
    ([("CDN-Cache-Control", "max-age =60"), ("Cache-Control", "max-age=0")], False),
    ([("Cache-Control", "no-store"), ("Surrogate-Control", "max-age=60")], False),
    ([("Cache-Control", "max-age=60"), ("Surrogate-Control", "no-store")], True),
])
def test_targeted_cache_control(rig, u, headers, stored):
    o, w = rig
    o.set(u, headers=headers, body=b"cdn")
    get(w, u)
    assert hit(get(w, u)) == stored and o.n(u) == (1 if stored else 2)


def test_targeted_field_forwarded(rig, u):
    """RFC 9213 §2.1: a cache that is not the last one of its kind may pass
    the field on; weir leaves it in the response (stored and forwarded)."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "max-age=60")], body=b"fw")
    assert get(w, u).header("CDN-Cache-Control") == "max-age=60"
    r = get(w, u)
    assert hit(r) and r.header("CDN-Cache-Control") == "max-age=60"


def test_targeted_expiry_ignores_expires(rig, u):
    """RFC 9213 §2.2: with a valid CDN-Cache-Control, Cache-Control and
    Expires are ignored for freshness."""
    o, w = rig
    o.set(u, headers=[("Expires", httpdate(time.time() + 3600)), ("CDN-Cache-Control", "must-revalidate"),
                      ("ETag", '"t"')], body=b"t")
    get(w, u)
    assert not hit(get(w, u))


# --------------------------------------------------------------------------
# Vary (§4.1)
# --------------------------------------------------------------------------

def test_vary_several_fields_and_normalisation(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Vary", "X-A,  accept-encoding"), ("Vary", "X-B")],
          body=b"v")
    base = [("X-A", "1"), ("Accept-Encoding", "gzip, br"), ("X-B", "b")]
    get(w, u, headers=base)
    # same values, other order of the fields, other whitespace around commas
    assert hit(get(w, u, headers=[("X-B", "b"), ("Accept-Encoding", "gzip,br"), ("X-A", "1")]))
    # one line per value is the same field value (RFC 9110 §5.3)
    assert hit(get(w, u, headers=[("X-A", "1"), ("Accept-Encoding", "gzip"), ("Accept-Encoding", "br"),
                                  ("X-B", "b")]))
    assert not hit(get(w, u, headers=[("X-A", "2"), ("Accept-Encoding", "gzip, br"), ("X-B", "b")]))
    assert not hit(get(w, u, headers=[("X-A", "1"), ("Accept-Encoding", "gzip, br")]))  # X-B absent
    assert o.n(u) == 3


def test_vary_variants_coexist(rig, u):
    """A second variant does not evict the first."""
    o, w = rig
    o.set(u, lambda q: Answer(headers=[("Cache-Control", "max-age=60"), ("Vary", "Foo")],
                              body=b"foo=" + (q.h("Foo") or "none").encode()))
    assert get(w, u, headers=[("Foo", "1")]).body == b"foo=1"
    assert get(w, u, headers=[("Foo", "2")]).body == b"foo=2"
    r = get(w, u, headers=[("Foo", "1")])
    assert hit(r) and r.body == b"foo=1"
    r = get(w, u, headers=[("Foo", "2"), ("Other", "x")])  # fields not in Vary do not matter
    assert hit(r) and r.body == b"foo=2"
    assert o.n(u) == 2


def test_query_is_part_of_the_key(rig, u):
    o, w = rig
    o.set(u, lambda q: Answer(headers=[("Cache-Control", "max-age=60")], body=q.path.encode()))
    assert get(w, u + "?a=1").body == (u + "?a=1").encode()
    r = get(w, u + "?a=2")
    assert not hit(r) and r.body == (u + "?a=2").encode()
    r = get(w, u + "?a=1")
    assert hit(r) and r.body == (u + "?a=1").encode()


def test_vary_absent_vs_empty(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Vary", "X-Flag")], body=b"ae")
    get(w, u)
    assert hit(get(w, u))
    assert not hit(get(w, u, headers=[("X-Flag", "")]))
    assert hit(get(w, u, headers=[("X-Flag", "")]))
    assert hit(get(w, u))
    assert o.n(u) == 2


def test_vary_star_never_served(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Vary", "X-A, *")], body=b"star")
    for _ in range(3):
        assert not hit(get(w, u))
    assert o.n(u) == 3


# --------------------------------------------------------------------------
# validation (§4.3) and conditional requests answered from the cache (RFC 9110 §13)
# --------------------------------------------------------------------------

def test_revalidation_304_updates_stored_headers(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"r1"'), ("X-Version", "1"),
                      ("Content-Type", "text/plain"), ("X-Kept", "k")],
          headers304=[("Cache-Control", "max-age=60"), ("ETag", '"r1"'), ("X-Version", "2"),
                      ("Content-Type", "text/plain;charset=utf-8"), ("Content-Length", "0")],
          body=b"twelve bytes")
    get(w, u)
    r = get(w, u)
    assert o.last(u).h("If-None-Match") == '"r1"'
    assert r.status == 200 and r.body == b"twelve bytes" and r.header("X-Version") == "2"
    r = get(w, u)
    assert hit(r) and r.body == b"twelve bytes" and r.header("X-Version") == "2"
    assert r.header("Content-Length") == "12" and r.header("Content-Type") == "text/plain;charset=utf-8"
    assert r.header("X-Kept") == "k"  # a field the 304 does not carry stays
    assert r.header("Cache-Control") == "max-age=60"
    assert o.n(u) == 2


@pytest.mark.xfail(strict=True, reason="a 304 that selects no stored response (other strong ETag) still "
                   "releases the stale stored one, unvalidated (cache_store.c revalidated())")
def test_304_for_another_representation_is_not_used(rig, u):
    """§4.3.4: a 304 whose strong ETag is not the stored one selects no
    stored response; the stored body must not go out with its headers."""
    o, w = rig
    state = {"n": 0}

    def answer(q):
        state["n"] += 1
        if state["n"] == 1:
            return Answer(headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"one"')], body=b"one")
        if q.h("If-None-Match") is not None:
            return Answer(304, headers=[("Cache-Control", "max-age=60"), ("ETag", '"two"')], body=b"",
                          validate=False)
        return Answer(headers=[("Cache-Control", "max-age=60"), ("ETag", '"two"')], body=b"two", validate=False)

    o.set(u, answer)
    get(w, u)
    r = get(w, u)
    # the stale "one" was not validated, so it may not go out either: a
    # full fetch of the current representation is the only right answer
    assert r.status == 200 and r.header("ETag") == '"two"' and r.body == b"two", r
    assert o.n(u) == 3 and o.last(u).h("If-None-Match") is None
    assert hit(get(w, u))


def test_revalidation_with_last_modified(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("Last-Modified", LAST_MOD)],
          headers304=[("Cache-Control", "max-age=60"), ("Last-Modified", LAST_MOD)], body=b"lm")
    get(w, u)
    r = get(w, u)
    q = o.last(u)
    assert q.h("If-Modified-Since") == LAST_MOD and q.h("If-None-Match") is None
    assert r.body == b"lm" and hit(get(w, u)) and o.n(u) == 2


def test_revalidation_gets_new_content(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"a"')], body=b"old")
    get(w, u)
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"b"')], body=b"new!")
    r = get(w, u)
    assert r.body == b"new!" and r.header("ETag") == '"b"'
    r = get(w, u)
    assert hit(r) and r.body == b"new!"


@pytest.mark.parametrize("req,status", [
    ([("If-None-Match", '"r1"')], 304),
    ([("If-None-Match", '"zz", "r1"')], 304),
    ([("If-None-Match", 'W/"r1"')], 304),                 # weak comparison
    ([("If-None-Match", "*")], 304),
    ([("If-None-Match", '"zz"')], 200),
    ([("If-Modified-Since", LAST_MOD)], 304),
    ([("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")], 200),
    ([("If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT")], 304),  # later than Last-Modified
    ([("If-Modified-Since", "not a date")], 200),
    ([("If-None-Match", '"zz"'), ("If-Modified-Since", LAST_MOD)], 200),  # If-None-Match wins
    ([("If-None-Match", '"r1"'), ("If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")], 304),
    ([("If-Match", '"r1"')], 200),
    ([("If-Match", '"zz"')], 412),
    ([("If-Match", "*")], 200),
    ([("If-Unmodified-Since", LAST_MOD)], 200),
    ([("If-Unmodified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")], 412),
    ([("If-Match", '"r1"'), ("If-Unmodified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")], 200),  # If-Match wins
])
def test_client_conditionals_from_cache(rig, u, req, status):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"r1"'), ("Last-Modified", LAST_MOD),
                      ("Vary", "X-V"), ("Content-Type", "text/plain")], body=b"cond")
    get(w, u)
    r = get(w, u, headers=req)
    assert r.status == status and hit(r), (r.status, r.cs)
    assert o.n(u) == 1
    if status == 304:
        assert r.body == b""
        # RFC 9110 §15.4.5: the fields a 200 would have carried
        for f in ("ETag", "Cache-Control", "Date", "Vary"):
            assert r.header(f) is not None, f
    elif status == 200:
        assert r.body == b"cond"


@pytest.mark.parametrize("cond", [("If-None-Match", '"cs1"'), ("If-Modified-Since", LAST_MOD)])
def test_client_conditional_on_stale_entry(rig, u, cond):
    """The stored response is stale: weir validates it with the origin, and
    the client's own precondition is then answered: 304."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"cs1"'),
                      ("Last-Modified", LAST_MOD)],
          headers304=[("Cache-Control", "max-age=60"), ("ETag", '"cs1"'), ("Last-Modified", LAST_MOD)],
          body=b"stale-cond")
    get(w, u)
    r = get(w, u, headers=[cond])
    assert o.n(u) == 2 and o.last(u).h("If-None-Match") == '"cs1"'
    assert r.status == 304 and r.body == b"" and r.header("ETag") == '"cs1"', r
    r = get(w, u)
    assert hit(r) and r.body == b"stale-cond"


def test_weak_etag_fails_if_match(rig, u):
    """If-Match compares strongly (RFC 9110 §13.1.1)."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", 'W/"w1"')], body=b"weak")
    get(w, u)
    assert get(w, u, headers=[("If-Match", 'W/"w1"')]).status == 412
    assert get(w, u, headers=[("If-None-Match", '"w1"')]).status == 304
    assert o.n(u) == 1


def test_head_from_stored_get(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"hd"'), ("Content-Type", "text/x")],
          body=b"h" * 321)
    g = get(w, u)
    r = get(w, u, method="HEAD")
    assert r.status == 200 and r.body == b"" and hit(r) and o.n(u) == 1
    assert r.header("Content-Length") == "321" and r.header("ETag") == '"hd"' and r.header("Content-Type") == "text/x"
    assert g.header("Content-Length") == "321"


# --------------------------------------------------------------------------
# invalidation (§4.4)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"])
def test_unsafe_method_invalidates(rig, u, method):
    o, w = rig
    o.set(u, lambda q: Answer(204, body=b"") if q.method != "GET" else
          Answer(headers=[("Cache-Control", "max-age=60")], body=b"inv"))
    get(w, u)
    assert hit(get(w, u))
    get(w, u, method=method, body=b"x")
    assert not hit(get(w, u))
    assert o.n(u, "GET") == 2


def test_invalidation_drops_every_variant(rig, u):
    o, w = rig
    o.set(u, lambda q: Answer(204, body=b"") if q.method != "GET" else
          Answer(headers=[("Cache-Control", "max-age=60"), ("Vary", "Foo")], body=b"v"))
    for foo in ("1", "2"):
        get(w, u, headers=[("Foo", foo)])
        assert hit(get(w, u, headers=[("Foo", foo)]))
    get(w, u, method="PUT", body=b"x")
    for foo in ("1", "2"):
        assert not hit(get(w, u, headers=[("Foo", foo)]))


def test_error_response_does_not_invalidate(rig, u):
    o, w = rig
    o.set(u, lambda q: Answer(500, body=b"no") if q.method != "GET" else
          Answer(headers=[("Cache-Control", "max-age=60")], body=b"keep"))
    get(w, u)
    get(w, u, method="POST", body=b"x")
    assert hit(get(w, u))


def test_location_and_content_location_invalidated_same_host_only(rig, u):
    o, w = rig
    for p in ("/a", "/b", "/c"):
        o.set(u + p, headers=[("Cache-Control", "max-age=60")], body=b"p")
    o.set(u + "/post", lambda q: Answer(201, headers=[("Location", u + "/a"),
                                                      ("Content-Location", "http://localhost%s/b" % u)],
                                        body=b"made"))
    o.set(u + "/post2", lambda q: Answer(200, headers=[("Location", "http://other.example%s/c" % u)], body=b""))
    for p in ("/a", "/b"):
        get(w, u + p)
    get(w, u + "/c", host="other.example")
    assert hit(get(w, u + "/c", host="other.example"))
    get(w, u + "/post", method="POST", body=b"x")
    get(w, u + "/post2", method="POST", body=b"x")
    assert not hit(get(w, u + "/a")) and not hit(get(w, u + "/b"))
    assert hit(get(w, u + "/c", host="other.example"))


# --------------------------------------------------------------------------
# ranges from the cache (RFC 9110 §14)
# --------------------------------------------------------------------------

BODY = bytes(range(256)) * 4


def test_ranges_from_cache(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"rg"'), ("Last-Modified", LAST_MOD),
                      ("Content-Type", "application/octet-stream")], body=BODY)
    get(w, u)

    def rng(spec, extra=()):
        return get(w, u, headers=[("Range", spec)] + list(extra))

    r = rng("bytes=10-19")
    assert r.status == 206 and r.body == BODY[10:20] and r.header("Content-Range") == "bytes 10-19/1024"
    assert r.header("Content-Length") == "10" and hit(r) and r.header("ETag") == '"rg"'
    r = rng("bytes=-10")
    assert r.status == 206 and r.body == BODY[-10:] and r.header("Content-Range") == "bytes 1014-1023/1024"
    r = rng("bytes=1000-")
    assert r.status == 206 and r.body == BODY[1000:] and r.header("Content-Range") == "bytes 1000-1023/1024"
    r = rng("bytes=1000-5000")
    assert r.status == 206 and r.body == BODY[1000:]
    r = rng("bytes=0-1,100-101")
    ct = r.header("Content-Type")
    assert r.status == 206 and ct.startswith("multipart/byteranges") and r.header("Content-Range") is None
    boundary = re.search(r"boundary=\"?([^\";]+)", ct).group(1).encode()
    parts = [p for p in r.body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    assert len(parts) == 2
    assert b"Content-Range: bytes 0-1/1024" in parts[0] and parts[0].endswith(b"\r\n\r\n" + BODY[0:2] + b"\r\n")
    assert b"Content-Range: bytes 100-101/1024" in parts[1]
    assert b"Content-Type: application/octet-stream" in parts[1]
    r = rng("bytes=2000-")
    assert r.status == 416 and r.header("Content-Range") == "bytes */1024" and "hit" in r.cs
    r = rng("items=0-1")
    assert r.status == 200 and r.body == BODY  # unknown unit: ignored
    r = rng("bytes=5-1")
    assert r.status == 200 and r.body == BODY  # invalid: ignored (RFC 9110 §14.2)
    r = rng("bytes=0-3", [("If-Range", '"rg"')])
    assert r.status == 206 and r.body == BODY[:4]
    r = rng("bytes=0-3", [("If-Range", '"other"')])
    assert r.status == 200 and r.body == BODY
    r = rng("bytes=0-3", [("If-Range", 'W/"rg"')])  # a weak tag never matches
    assert r.status == 200 and r.body == BODY
    r = rng("bytes=0-3", [("If-Range", LAST_MOD)])  # strong: Last-Modified well before Date
    assert r.status == 206 and r.body == BODY[:4]
    r = rng("bytes=0-3", [("If-Range", "Mon, 07 Nov 1994 08:49:37 GMT")])
    assert r.status == 200
    assert o.n(u) == 1


def test_range_on_miss_fetches_whole_object(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], body=BODY)
    r = get(w, u, headers=[("Range", "bytes=0-9")])
    assert (r.status == 206 and r.body == BODY[:10]) or (r.status == 200 and r.body == BODY)
    assert o.last(u).h("Range") is None
    r = get(w, u)
    assert hit(r) and r.body == BODY and o.n(u) == 1


# --------------------------------------------------------------------------
# fields that are not stored or not forwarded (§3.1, RFC 9110 §7.6.1)
# --------------------------------------------------------------------------

def test_hop_by_hop_and_connection_listed_fields_not_served(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("Connection", "X-Hop, keep-alive"), ("X-Hop", "secret"),
                      ("Keep-Alive", "timeout=5"), ("Proxy-Authenticate", "Basic realm=x"),
                      ("Proxy-Authentication-Info", "nextnonce=1"), ("X-End", "kept"),
                      ("Transfer-Encoding", "chunked")], body=b"chunked body")
    r1 = get(w, u)
    r2 = get(w, u)
    assert hit(r2) and r2.body == b"chunked body" and r2.header("X-End") == "kept"
    # RFC 9110 §7.6.1: Connection and the fields it names go no further
    for r in (r1, r2):
        for f in ("X-Hop", "Keep-Alive"):
            assert r.header(f) is None, (f, r)
    # §3.1: proxy-specific fields are not stored (forwarding them on a miss
    # is the session's business: RFC 9110 §11.7.1 does not forbid it)
    for f in ("Proxy-Authenticate", "Proxy-Authentication-Info"):
        assert r2.header(f) is None, (f, r2)
    assert r2.header("Transfer-Encoding") is None or r2.header("Content-Length") is None


def test_stored_request_fields_not_leaked(rig, u):
    """A hit is not influenced by the first client's own request fields."""
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60")], body=b"clean")
    get(w, u, headers=[("Cookie", "sid=alice"), ("X-Req", "1")])
    r = get(w, u)
    assert hit(r) and r.header("Cookie") is None and r.header("X-Req") is None


# --------------------------------------------------------------------------
# Cache-Status (RFC 9211) on every kind of answer
# --------------------------------------------------------------------------

def test_cache_status_everywhere(rig, u):
    o, w = rig
    o.set(u, headers=[("Cache-Control", "max-age=60"), ("ETag", '"cs"')], body=b"cache-status")
    r = get(w, u)
    assert r.cs.get("fwd") == "uri-miss" and r.cs.get("stored") is True and r.cs.get("fwd-status") == "200"
    r = get(w, u)
    assert r.cs.get("hit") is True and 55 <= int(r.cs.get("ttl", "-999")) <= 60, r.cs
    # 304, 412, 206, 416, HEAD, only-if-cached 504: cache_status() checked the syntax of each
    for hs, method, st in (([("If-None-Match", '"cs"')], "GET", 304), ([("If-Match", '"x"')], "GET", 412),
                           ([("Range", "bytes=0-1")], "GET", 206), ([("Range", "bytes=99-")], "GET", 416),
                           ([], "HEAD", 200)):
        r = get(w, u, headers=hs, method=method)
        assert r.status == st and hit(r)
    r = get(w, u + "/none", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and "fwd" in r.cs
    o.set(u + "/err", status=502, body=b"bad")
    r = get(w, u + "/err")
    assert r.cs.get("fwd-status") == "502"
