"""The access log: "combined" (Apache combined + weir's key=value fields) on
stderr, and "json" (one object per line) to a file."""

import json
import os
import re
import threading
import time
import uuid

import pytest

from weirtest import HttpConn, pool, tf, wait_until

COMBINED = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>[^"]*)" "(?P<ua>[^"]*)"(?P<rest>.*)$')


def test_combined_format(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], log={"format": "combined"})
    rid = "comb-" + uuid.uuid4().hex
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        r = c.get("/logme?size=1234&status=201", headers=[("X-Request-Id", rid), ("Referer", "http://ref.test/"),
                                                           ("User-Agent", "weir-test/1.0")])
        assert r.status == 201 and r.body_len == 1234
    m = w.wait_log(r"(?m)^.*%s.*$" % re.escape(rid), timeout=3, start=start)
    assert m, "no access log line:\n" + w.stderr()[start:]
    line = m.group(0)
    f = COMBINED.match(line)
    assert f, "not combined format: %r" % line
    assert f["client"] == "127.0.0.1"
    assert re.match(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}$", f["time"]), f["time"]
    assert f["req"] == "GET /logme?size=1234&status=201 HTTP/1.1"
    assert f["status"] == "201"
    assert int(f["bytes"]) >= 1234, line
    assert f["referer"] == "http://ref.test/"
    assert f["ua"] == "weir-test/1.0"
    rest = f["rest"]
    assert o.addr in rest, line
    assert rid in rest, line
    times = re.findall(r"\w*time=(\d+\.\d+)", rest)
    assert times, "no timing field: %r" % line
    assert all(0 <= float(t) < 10 for t in times), line


def test_combined_logs_errors_too(procs):
    """A 404 (no route) and a 400 are logged with their status."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], routes=[{"host": "only.test", "path_prefix": "/", "pool": "p"}])
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        assert c.get("/nowhere-404", host="other.test").status == 404
    with HttpConn(w.port) as c:
        c.send(b"GET /bad-400 HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n")
        assert c.read_response().status == 400
    assert w.wait_log(r'"GET /nowhere-404 HTTP/1.1" 404 ', 3, start), w.stderr()[start:]
    assert w.wait_log(r'" 400 ', 3, start), w.stderr()[start:]


def test_json_format(procs, tmp_path):
    o = procs.origin("a")
    path = tmp_path / "access.json"
    w = procs.weir(pools=[pool("p", [o])], log={"format": "json", "access": str(path)})
    rids = []
    with HttpConn(w.port) as c:
        for i in range(20):
            rid = "json-%d-%s" % (i, uuid.uuid4().hex)
            rids.append(rid)
            r = c.get("/j/%d?size=%d" % (i, 100 + i),
                      headers=[("X-Request-Id", rid), ("User-Agent", 'ua "with quotes" \\ and \xe9')])
            assert r.status == 200, r

    def records():
        try:
            text = path.read_text()
        except OSError:
            return []
        return text.splitlines()
    assert wait_until(lambda: len(records()) >= 20, tf(3)), records()
    recs = []
    for line in records():
        recs.append(json.loads(line))  # every line is one JSON object
    assert all(isinstance(x, dict) for x in recs)
    by_rid = {x.get("request_id"): x for x in recs}
    for i, rid in enumerate(rids):
        x = by_rid.get(rid)
        assert x is not None, (rid, recs[:2])
        assert x["status"] == 200
        assert x["method"] == "GET"
        assert x["uri"].startswith("/j/%d?" % i), x
        assert x["upstream"] == o.addr, x
        assert int(x["bytes"]) >= 100 + i, x
        assert x["user_agent"].startswith('ua "with quotes" \\ and '), x
        assert isinstance(x["total_time"], (int, float)) and 0 <= x["total_time"] < 10, x
    # nothing but access records in the file
    assert len(recs) == 20, len(recs)


def test_access_log_off(procs, tmp_path):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], log={"access": "off"})
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        for _ in range(5):
            assert c.get("/silent-path").status == 200
    assert w.wait_log("silent-path", 0.5, start) is None


@pytest.mark.threaded
def test_access_log_reopened_on_reload(procs, tmp_path):
    """Log rotation: after the file is renamed and weir gets SIGHUP, new
    lines go to a new file at the configured path; every request is logged
    exactly once across the two files."""
    o = procs.origin("a")
    path = tmp_path / "access.log"
    w = procs.weir(pools=[pool("p", [o])], log={"access": str(path)})
    with HttpConn(w.port) as c:
        for i in range(10):
            assert c.get("/before/%d" % i).status == 200
    assert wait_until(lambda: path.exists() and path.read_text().count("/before/") == 10, tf(3))
    os.rename(path, tmp_path / "access.log.1")
    start = len(w.stderr())
    w.reload()
    assert w.wait_log("reloaded", 3, start), w.stderr()[start:]
    with HttpConn(w.port) as c:
        for i in range(10):
            assert c.get("/after/%d" % i).status == 200
    assert wait_until(lambda: path.exists() and path.read_text().count("/after/") == 10, tf(3)), \
        path.read_text() if path.exists() else "no new file"
    old = (tmp_path / "access.log.1").read_text()
    assert old.count("/before/") == 10 and "/after/" not in old


@pytest.mark.threaded
def test_access_log_complete_across_reloads_under_load(procs, tmp_path):
    """Requests logged while the configuration (and the access log) is
    reloaded again and again: not one line lost or garbled."""
    o = procs.origin("a")
    path = tmp_path / "access.log"
    w = procs.weir(pools=[pool("p", [o])], workers=2, log={"access": str(path), "format": "json"})
    done = [0]
    errors = []
    stop = threading.Event()

    def client(k):
        try:
            with HttpConn(w.port) as c:
                for i in range(100000):
                    if stop.is_set():
                        break
                    r = c.get("/l/%d/%d" % (k, i))
                    if r.status != 200:
                        errors.append(r)
                    done[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for _ in range(10):
        time.sleep(0.15)
        w.reload()
    stop.set()
    for t in ts:
        t.join(tf(10))
    assert not errors, errors[:3]

    def lines():
        return path.read_text().splitlines() if path.exists() else []
    assert wait_until(lambda: len(lines()) >= done[0], tf(3)), (len(lines()), done[0])
    recs = [json.loads(x) for x in lines()]
    uris = [x["uri"] for x in recs]
    assert len(uris) == done[0] and len(set(uris)) == done[0], (len(uris), len(set(uris)), done[0])


def test_json_log_escapes_forged_request_id(procs, tmp_path):
    """Issue 7, defect 2: a client-chosen X-Request-Id (or User-Agent) cannot
    add keys to a JSON access log line or end it."""
    o = procs.origin("a")
    path = tmp_path / "access.json"
    w = procs.weir(pools=[pool("p", [o])], log={"format": "json", "access": str(path)})
    forged = 'a","status":999,"client":"10.9.9.9'
    with HttpConn(w.port) as c:
        r = c.get("/forge", headers=[("X-Request-Id", forged), ("User-Agent", 'x"}\t{"status":1')])
        assert r.status == 200, r

    def lines():
        try:
            return path.read_text().splitlines()
        except OSError:
            return []
    assert wait_until(lambda: len(lines()) >= 1, tf(3)), lines()
    assert len(lines()) == 1, lines()
    line = lines()[0]
    # json.loads keeps the last of duplicate keys: count them in the text
    assert line.count('"status":') == 1, line
    assert line.count('"client":') == 1, line
    x = json.loads(line)
    assert x["status"] == 200 and x["client"] == "127.0.0.1", x
    assert x["request_id"] == forged, x
    assert x["user_agent"] == 'x"}\t{"status":1', x


def test_combined_log_escapes_client_fields(procs):
    """Issue 7, defect 2: in the combined format quotes, backslashes, control
    and non-ASCII bytes of client fields are written as \\xHH (as nginx), and
    the request id cannot add a key=value field."""
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], log={"format": "combined"})
    tag = uuid.uuid4().hex
    start = len(w.stderr())
    with HttpConn(w.port) as c:
        r = c.get("/c-" + tag, headers=[("X-Request-Id", "r-%s status=999 pool=evil" % tag),
                                        ("User-Agent", 'ua" 200 "x\\y\xe9'), ("Referer", 'ref"')])
        assert r.status == 200, r
    m = w.wait_log(r"(?m)^.*/c-%s.*$" % tag, timeout=3, start=start)
    assert m, w.stderr()[start:]
    line = m.group(0)
    f = COMBINED.match(line)
    assert f, line
    assert f["status"] == "200", line
    assert f["ua"] == 'ua\\x22 200 \\x22x\\x5Cy\\xE9', line
    assert f["referer"] == 'ref\\x22', line
    assert " pool=p " in line and "pool=evil" not in line.replace("\\x20pool=evil", ""), line
    assert ("rid=r-%s\\x20status=999\\x20pool=evil" % tag) in line, line
