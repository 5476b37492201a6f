"""The control plane and the process's hygiene (issue 7's control-plane
part): balancers keep their position across snapshot rebuilds,
close-on-exec on every descriptor, statistics of removed servers are freed,
the admin listener's connection cap, whole-request timeout and Host check,
back-off when descriptors run out, and rate-limited warnings."""

import os
import re
import resource
import socket
import subprocess
import time

import pytest

import weirtest
from adminutil import TOKEN, Admin, admin_extra
from weirtest import (LOOPBACK, WEIR_BIN, HttpConn, conf, free_port, pool, route, tf, wait_until)


def start(procs, pools, workers=1, extra="", log=None, **kw):
    port = free_port()
    aport = free_port()
    text = conf(port, pools, workers=workers, log=log or {"access": "off"},
                extra=admin_extra(aport) + "\n" + extra, **kw)
    w = procs.weir(text, port=port)
    a = Admin(aport)
    assert a.wait_ready(), w.stderr()
    return w, a


def origin_of(port):
    with HttpConn(port) as c:
        r = c.get("/")
        assert r.status == 200, r
        return r.origin


# ------------------------------------------------- balancer position (defect 11)

def test_round_robin_continues_across_runtime_change_and_reload(procs):
    """a, b, then a server is added: the rotation goes on with c, d (before,
    every snapshot rebuild restarted round robin at the first server)."""
    o = [procs.origin(n) for n in ("a", "b", "c", "d")]
    w, a = start(procs, [pool("api", o[:3])])
    assert [origin_of(w.port) for _ in range(2)] == ["a", "b"]
    r = a.add("api", o[3].addr)
    assert r.status == 201, r
    assert [origin_of(w.port) for _ in range(3)] == ["c", "d", "a"]
    # reload from file (the file lists a, b, c): the cursor stays on b
    mark = len(w.stderr())
    w.reload()
    assert w.wait_log(r"configuration reloaded", start=mark), w.stderr_tail()
    assert [origin_of(w.port) for _ in range(3)] == ["b", "c", "a"]


# ------------------------------------------------- close-on-exec (defect 3)

O_CLOEXEC = 0o2000000


def descriptors(pid):
    """[(fd, target, flags, remote port or None)] for every descriptor > 2."""
    remote = {}
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    p = line.split()
                    remote[p[9]] = int(p[2].rsplit(":", 1)[1], 16)
        except OSError:
            pass
    out = []
    for name in os.listdir("/proc/%d/fd" % pid):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as fh:
                flags = int(re.search(r"^flags:\s+([0-7]+)", fh.read(), re.M).group(1), 8)
        except (OSError, AttributeError):
            continue  # closed meanwhile
        port = remote.get(target[8:-1]) if target.startswith("socket:[") else None
        out.append((fd, target, flags, port))
    return out


@pytest.mark.threaded
def test_every_descriptor_is_close_on_exec(procs, tmp_path):
    """Listeners, accepted client sockets, admin sockets, health-check
    sockets, log files, eventfds, epoll and libevent's internal pipes: a
    program weir starts must inherit none of them."""
    a = procs.origin("a")
    h = procs.origin("h", "--health-hang", 1)  # keeps each check's socket open
    port, aport = free_port(), free_port()
    text = conf(port, [pool("api", [a]),
                       pool("hc", [h], health={"interval_ms": 5000, "timeout_ms": 5000, "fall": 100, "rise": 1})],
                routes=[route("api")], workers=2,
                log={"access": str(tmp_path / "access.log"), "error": str(tmp_path / "error.log")},
                extra=admin_extra(aport))
    w = procs.weir(text, port=port)
    adm = Admin(aport)
    assert adm.wait_ready(), w.stderr()
    client = HttpConn(w.port)
    assert client.get("/").status == 200  # an accepted client socket, kept alive
    admin_sock = socket.create_connection((LOOPBACK, aport))
    admin_sock.sendall(b"GET /stats HTTP/1.1\r\n")  # an admin connection mid-request
    try:
        assert wait_until(lambda: h.stats()["health_checks"] > 0, tf(5))
        fds = wait_until(lambda: [d for d in descriptors(w.pid) if d[3] == h.port], tf(5)) and descriptors(w.pid)
        kinds = {"health": [d for d in fds if d[3] == h.port],
                 "admin": [d for d in fds if d[3] is not None and d[3] != a.port and d[3] != h.port],
                 "files": [d for d in fds if d[1].startswith("/")],
                 "eventfd": [d for d in fds if "eventfd" in d[1]]}
        for k, v in kinds.items():
            assert v, "no %s descriptor found: %r" % (k, fds)
        assert [d for d in fds if d[3] == a.port], "no backend descriptor found: %r" % fds
        leaking = [d for d in fds if not d[2] & O_CLOEXEC]
        assert not leaking, "descriptors without O_CLOEXEC: %r" % leaking
    finally:
        admin_sock.close()
        client.close()


# ------------------------------------------------- statistics registry (defect 5)

@pytest.mark.threaded
def test_removed_servers_free_their_statistics(procs):
    """500 servers added and removed through the runtime API, each one
    having recorded something: the registry returns to its size and RSS
    stays flat (each entity costs ~86 KB per worker that recorded into it)."""
    a = procs.origin("a")
    w, adm = start(procs, [pool("api", [a])], workers=2)
    assert origin_of(w.port) == "a"
    base = adm.stats()["stats_entities"]
    rss = []
    for batch in range(10):
        addrs = ["127.0.%d.%d:1" % (1 + batch, 2 + i) for i in range(50)]  # port 1: refused at once
        for addr in addrs:
            r = adm.add("api", addr)
            assert r.status == 201, r
        assert adm.stats()["stats_entities"] >= base + 50
        with HttpConn(w.port) as c:
            for _ in range(120):  # round robin touches every new server (connect refused, retried)
                c.get("/")
        for addr in addrs:
            r = adm.delete("api", addr)
            assert r.status == 202, r
        assert wait_until(lambda: len(adm.stats()["pools"][0]["servers"]) == 1, tf(10)), adm.stats()["pools"]
        # the workers let go of the old snapshot at their next tick (or message)
        assert wait_until(lambda: adm.stats()["stats_entities"] == base, tf(5)), (adm.stats()["stats_entities"],
                                                                                   base)
        rss.append(w.rss())
    grown = rss[-1] - rss[1]
    if weirtest.ASAN or weirtest.TSAN:
        return  # their allocators keep freed memory in quarantine: RSS says nothing here
    assert grown < 16 * 1024, "RSS grew by %d KiB over 8 batches of 50 added+removed servers: %r" % (grown, rss)


# ------------------------------------------------- runtime API bounds (defect 18)

@pytest.mark.threaded
def test_runtime_api_caps_servers_per_pool_and_adds_cheaply(procs):
    """A pool takes at most 1000 servers (README: runtime API); adding one
    to a large pool stays cheap (a rebuild is O(n log n), not O(n^2))."""
    a = procs.origin("a")
    w, adm = start(procs, [pool("api", [a])], workers=2)
    times = []
    n = 1
    for i in range(999):
        t0 = time.monotonic()
        r = adm.add("api", "127.0.%d.%d:1" % (10 + i // 200, 2 + i % 200))
        times.append(time.monotonic() - t0)
        assert r.status == 201, r
        n += 1
    r = adm.add("api", "127.0.99.1:1")
    assert r.status == 409 and "1000" in r.json()["error"], r
    assert len(adm.stats()["pools"][0]["servers"]) == 1000
    # the last 100 adds (pool of ~900-1000) cost about what the first 100 did
    first, last = sorted(times[:100])[50], sorted(times[-100:])[50]
    assert last < max(5 * first, tf(0.02)), (first, last)
    # the file obeys the same cap
    text = conf(free_port(), [pool("big", ["127.0.%d.%d:1" % (i // 200, 2 + i % 200) for i in range(1001)])])
    path = os.path.join(str(w.workdir), "big.conf")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([WEIR_BIN, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 1 and b"a pool has at most 1000" in p.stdout, p.stdout[-500:]


# ------------------------------------------------- admin endpoint (defects 13, 18)

def test_admin_checks_the_host_header(procs):
    """DNS rebinding: a browser on attacker.example (rebound to 127.0.0.1)
    must not read /stats. IP literals, localhost and admin.allowed_hosts pass."""
    o = procs.origin("a")
    port, aport = free_port(), free_port()
    text = conf(port, [pool("api", [o])], log={"access": "off"},
                extra='admin = { address = "127.0.0.1:%d"; token = "%s"; allowed_hosts = ( "ops.example", '
                      '"*.corp.example" ); };' % (aport, TOKEN))
    w = procs.weir(text, port=port)
    adm = Admin(aport)
    assert adm.wait_ready(), w.stderr()

    def status(host, path="/stats"):
        with HttpConn(aport) as c:
            return c.request("GET", path, host=host, headers=[("Connection", "close")]).status

    for host in ("127.0.0.1:%d" % aport, "127.0.0.1", "[::1]:%d" % aport, "localhost", "LOCALHOST:1",
                 "app.localhost", "ops.example", "ops.example:%d" % aport, "a.b.corp.example"):
        assert status(host) == 200, host
    for host in ("attacker.example", "attacker.example:%d" % aport, "ops.example.attacker.example",
                 "corp.example", "localhost.attacker.example"):
        assert status(host) == 421, host
        assert status(host, "/metrics") == 421, host
        assert status(host, "/dashboard") == 421, host
    r = adm.request("POST", "/reload", headers=[("Host", "evil.example")])
    assert r.status in (421, 200)  # the helper sets its own Host first; a second one may be ignored
    assert status("attacker.example", "/healthz") == 200  # liveness reveals nothing


def test_admin_caps_connections_and_times_out_trickling_requests(procs):
    """Connections trickling a request byte by byte are cut at
    admin.request_timeout_ms (the idle timer restarts on every byte, this
    one does not), and no more than admin.max_connections are ever open, so
    they cannot use up weir's descriptors."""
    o = procs.origin("a")
    port, aport = free_port(), free_port()
    text = conf(port, [pool("api", [o])], log={"access": "off"},
                extra='admin = { address = "127.0.0.1:%d"; max_connections = 4; request_timeout_ms = 1000; };'
                      % aport)
    w = procs.weir(text, port=port)
    adm = Admin(aport)
    assert adm.wait_ready(), w.stderr()
    time.sleep(0.3)  # the readiness probe's connection is gone
    base = w.fds()
    head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    socks = []
    try:
        for _ in range(12):
            s = socket.create_connection((LOOPBACK, aport))
            s.setblocking(False)
            socks.append(s)
        opened = time.monotonic()
        peak = 0
        closed = set()
        i = 0
        while time.monotonic() - opened < tf(4) and len(closed) < 4:
            for k, s in enumerate(socks):
                if k in closed:
                    continue
                try:
                    s.send(head[i % len(head):i % len(head) + 1])
                    if s.recv(4096) == b"":
                        closed.add(k)
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(k)
            peak = max(peak, w.fds() - base)
            i += 1
            time.sleep(0.05)
        elapsed = time.monotonic() - opened
        assert len(closed) >= 4, "trickling admin connections were not cut: %d closed in %.1fs" % (
            len(closed), elapsed)
        assert elapsed < tf(3), elapsed
        assert peak <= 4, "admin connections above the cap: %d descriptors more than at rest" % peak
        assert "most admin.max_connections allows" in w.stderr()
    finally:
        for s in socks:
            s.close()
    # once the slow ones are gone, a normal request is served
    assert wait_until(lambda: adm.alive(), tf(5)), w.stderr_tail()
    assert w.wait_log("most admin.max_connections allows", timeout=1)
    assert len(re.findall("most admin.max_connections allows", w.stderr())) <= 2


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_backs_off_and_logs_once(procs, tmp_path, monkeypatch):
    """With a low `ulimit -n`, connections beyond what weir can accept make
    accept() fail with EMFILE on the workers' and the admin's listeners:
    weir pauses those listeners (no busy loop, one log line per burst) and
    serves again once descriptors are free."""
    wrapper = tmp_path / "weir-ulimit"
    wrapper.write_text("#!/bin/sh\nulimit -n 48 || exit 99\nexec %s \"$@\"\n" % weirtest.WEIR_BIN)
    wrapper.chmod(0o755)
    monkeypatch.setattr(weirtest, "WEIR_BIN", str(wrapper))
    o = procs.origin("a")
    port, aport = free_port(), free_port()
    text = conf(port, [pool("api", [o])], workers=1, log={"access": "off"},
                extra='admin = { address = "127.0.0.1:%d"; max_connections = 1000; };' % aport)
    w = procs.weir(text, port=port)
    adm = Admin(aport)
    assert adm.wait_ready(), w.stderr()
    assert origin_of(w.port) == "a"
    socks = []
    try:
        for i in range(80):  # far beyond the limit; the kernel queues what weir cannot accept
            socks.append(socket.create_connection((LOOPBACK, port if i % 2 == 0 else aport), timeout=5))
        assert w.wait_log(r"worker 0: accept: Too many open files", timeout=5), w.stderr_tail()
        assert w.wait_log(r"admin: accept: Too many open files", timeout=5), w.stderr_tail()
        time.sleep(0.5)
        c0, t0 = cpu_seconds(w.pid), time.monotonic()
        time.sleep(1.5)
        used = (cpu_seconds(w.pid) - c0) / (time.monotonic() - t0)
        assert used < 0.3, "weir used %.0f%% of a CPU while out of descriptors" % (used * 100)
        err = w.stderr()
        assert len(re.findall("Too many open files", err)) <= 4, w.stderr_tail()
        assert len(err) < 64 * 1024, len(err)
    finally:
        for s in socks:
            s.close()
    # descriptors free again: both listeners serve
    assert wait_until(lambda: adm.alive(), tf(10)), w.stderr_tail()
    assert wait_until(lambda: origin_of(w.port) == "a", tf(10)), w.stderr_tail()


# ------------------------------------------------- error log floods (defect 9)

def test_failed_requests_do_not_flood_the_error_log(procs):
    """Every failed request logs a warning on a worker; repeated ones are
    folded into a count instead of one synchronous write each."""
    dead = "127.0.0.1:%d" % free_port()  # nothing listens: connect refused
    w = procs.weir(pools=[pool("api", [dead])], log={"access": "off"}, workers=1)
    mark = len(w.stderr())
    with HttpConn(w.port) as c:
        statuses = [c.get("/").status for _ in range(300)]
    assert all(s >= 500 for s in statuses), statuses[:5]
    assert w.wait_log(r"repeated \d+ more times? in the last second|more messages? like", timeout=3, start=mark), \
        w.stderr_tail()
    lines = [l for l in w.stderr()[mark:].splitlines() if dead in l]
    assert 1 <= len(lines) <= 30, "%d error-log lines for 300 failed requests:\n%s" % (
        len(lines), "\n".join(lines[:40]))


def test_check_refuses_admin_on_a_listen_address(tmp_path):
    """weir -t: the admin endpoint on a listen address is a FILE:LINE error."""
    port = free_port()
    text = conf(port, [pool("api", ["127.0.0.1:1"])],
                extra='admin = {\n  address = "%s:%d";\n};' % (LOOPBACK, port))
    path = tmp_path / "w.conf"
    path.write_text(text)
    line = text.splitlines().index('  address = "%s:%d";' % (LOOPBACK, port)) + 1
    p = subprocess.run([weirtest.WEIR_BIN, "-t", "-c", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    assert "%s:%d: admin.address '127.0.0.1:%d' overlaps listen address" % (path, line, port) in out, out
