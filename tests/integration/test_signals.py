"""Signals: SIGHUP reloads the configuration under load without failing a
request; a bad config on SIGHUP is refused (FILE:LINE logged, old config
kept); SIGTERM drains in-flight requests and exits 0."""

import collections
import re
import signal
import socket
import threading
import time

import pytest

from weirtest import HttpConn, LOOPBACK, conf, free_port, pool, port_accepts, tf, wait_until


@pytest.mark.threaded
def test_reload_under_load(procs):
    a, b, c = procs.origin("a"), procs.origin("b"), procs.origin("c")
    port = free_port()

    def cfg(servers):
        return conf(port, [pool("p", servers, policy="weighted_round_robin")], workers=2, log={"access": "off"})

    w = procs.weir(cfg([(a, 1), (b, 1)]), port=port)

    results = []  # (time, origin)
    errors = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k):
        conn = None
        i = 0
        deadline = time.monotonic() + tf(20)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if conn is None or i % 25 == 0:
                    if conn:
                        conn.close()
                    conn = HttpConn(w.port)
                i += 1
                try:
                    r = conn.get("/load/%d/%d" % (k, i))
                except Exception as e:  # noqa: BLE001
                    errors.append("client %d req %d: %r" % (k, i, e))
                    conn.close()
                    conn = None
                    continue
                if r.status != 200:
                    errors.append("client %d req %d: %r" % (k, i, r))
                if "close" in (r.header("Connection") or "").lower():
                    conn.close()
                    conn = None
                with lock:
                    results.append((time.monotonic(), r.origin))
        finally:
            if conn:
                conn.close()

    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    time.sleep(1.5)
    t_reload1 = time.monotonic()
    w.reload(cfg([(a, 1), (b, 1), (c, 2)]))
    time.sleep(1.5)
    t_reload2 = time.monotonic()
    w.reload(cfg([(a, 1), (b, 3), (c, 1)]))
    time.sleep(2.0)
    stop.set()
    for t in ts:
        t.join(tf(10))

    assert not errors, errors[:5]
    assert w.alive()
    assert len(results) > 200, len(results)
    before = collections.Counter(o for t, o in results if t < t_reload1)
    assert set(before) <= {"a", "b"}, before
    after1 = collections.Counter(o for t, o in results if t_reload1 + 0.5 < t < t_reload2)
    assert after1["c"] > 0, "new server got no request after reload: %r" % after1

    # the last weights are in force: 1:3:1 on one connection
    time.sleep(0.2)
    with HttpConn(w.port) as conn:
        seq = collections.Counter(conn.get("/w").origin for _ in range(500))
    assert abs(seq["a"] - 100) <= 10 and abs(seq["b"] - 300) <= 10 and abs(seq["c"] - 100) <= 10, seq
    assert re.search(r"reload", w.stderr(), re.I), "no log line about the reload"


@pytest.mark.threaded
def test_reload_removes_server(procs):
    a, b = procs.origin("a"), procs.origin("b")
    w = procs.weir(pools=[pool("p", [a, b])])
    with HttpConn(w.port) as c:
        assert {c.get("/x").origin for _ in range(4)} == {"a", "b"}
        w.reload(conf(w.port, [pool("p", [a])]))

        def only_a():
            with HttpConn(w.port) as c2:
                return all(c2.get("/y").origin == "a" for _ in range(6))
        assert wait_until(only_a, tf(3), 0.1), w.stderr_tail()
        # the old keep-alive connection follows the new config too
        assert all(c.get("/z").origin == "a" for _ in range(6))


@pytest.mark.threaded
def test_bad_config_on_sighup_keeps_old(procs):
    a, b = procs.origin("a"), procs.origin("b")
    w = procs.weir(pools=[pool("p", [a])])
    with HttpConn(w.port) as c:
        assert c.get("/x").origin == "a"
    start = len(w.stderr())
    good = w.conf_path.read_text()
    lines = good.splitlines()
    # break the config: an unknown key on the last line
    lines.append('extra_pools_broken = 1;')
    bad_line = len(lines)
    w.reload("\n".join(lines) + "\n")
    m = w.wait_log(r"%s:(\d+): " % re.escape(str(w.conf_path)), timeout=3, start=start)
    assert m, "no FILE:LINE error logged:\n" + w.stderr()[start:]
    assert int(m.group(1)) == bad_line, m.group(0)
    assert w.alive()
    with HttpConn(w.port) as c:
        for _ in range(5):
            r = c.get("/y")
            assert r.status == 200 and r.origin == "a", r
    # a good config afterwards is taken
    w.reload(conf(w.port, [pool("p", [b])]))
    def served_by_b():
        with HttpConn(w.port) as c:
            return c.get("/z").origin == "b"
    ok = wait_until(served_by_b, tf(3), 0.1)
    assert ok, "good reload after a bad one not applied"


@pytest.mark.threaded
def test_graceful_stop_drains(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])], timeouts={"drain_ms": 5000})
    size = 2000000
    results = {}
    started = threading.Barrier(4, timeout=tf(10))

    def long_request(k):
        try:
            with HttpConn(w.port, timeout=tf(10)) as c:
                c.send(b"GET /slow?size=%d&delay_ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n" % size)
                r = c.read_head()
                started.wait()
                got = [0]

                def sink(b):
                    got[0] += len(b)
                c.read_body(r, sink=sink)
                results[k] = (r.status, got[0])
        except Exception as e:  # noqa: BLE001
            results[k] = e

    ts = [threading.Thread(target=long_request, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    started.wait()
    time.sleep(0.2)
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    # new connections are refused soon after the stop begins
    refused = wait_until(lambda: not port_accepts(w.port, timeout=0.2), tf(1.0), 0.05)
    assert refused, "weir still accepts connections after SIGTERM"
    try:
        rc = w.proc.wait(timeout=tf(6))
    except Exception:  # noqa: BLE001
        rc = None
    dt = time.monotonic() - t0
    for t in ts:
        t.join(tf(10))
    w.stop(check=False)
    assert rc == 0, "exit status %r after %.1fs" % (rc, dt)
    assert dt <= tf(5.5), dt
    assert results == {k: (200, size) for k in range(3)}, results


@pytest.mark.threaded
def test_sigterm_idle_exits_quickly(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    c = HttpConn(w.port)
    assert c.get("/x").status == 200  # an idle keep-alive client must not hold the stop
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    try:
        rc = w.proc.wait(timeout=tf(5))
    finally:
        c.close()
    assert rc == 0
    assert time.monotonic() - t0 < tf(2), "idle keep-alive connection delayed the stop"


def test_sigterm_refuses_new(procs):
    o = procs.origin("a")
    w = procs.weir(pools=[pool("p", [o])])
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(timeout=tf(5)) == 0
    s = socket.socket()
    s.settimeout(1)
    try:
        refused = s.connect_ex((LOOPBACK, w.port)) != 0
    finally:
        s.close()
    assert refused
