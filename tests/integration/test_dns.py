"""
DNS discovery end to end (issue 9): real weir resolving a name with evdns
against a DNS stub run by the test (dnsstub.py), origins on 127.0.0.2,
127.0.0.3... (one port, several loopback addresses, like pods behind a
headless service).

  * each address of the answer becomes a server that takes traffic
  * a new address joins; a vanished one is drained and removed with 0
    failed requests under load
  * A and AAAA answers: IPv4 and IPv6 servers
  * the TTL is honoured (a 1 s TTL is re-asked before the 5 s interval)
  * a failing lookup keeps the servers; a reload keeps the discovered ones
  * a server a scale-down removed is not re-added while DNS still lists it
  * host names without `resolve` are refused by `weir -t` (never looked up)
"""

import subprocess
import time

import pytest

from adminutil import Admin, Load, admin_extra
from dnsstub import DnsStub
from weirtest import WEIR_BIN, conf, free_port, pool, route, tf, wait_until

pytestmark = pytest.mark.threaded


@pytest.fixture
def stub():
    s = DnsStub().start()
    yield s
    s.stop()


def dns_conf(port, aport, stub, oport, interval_ms=5000, extra=""):
    p = {"name": "api", "policy": "round_robin", "retries": 2,
         "health": {"type": "http", "path": "/health", "interval_ms": 200, "timeout_ms": 150, "rise": 1, "fall": 2},
         "servers": [{"address": "API.test:%d" % oport, "resolve": True, "resolve_interval_ms": interval_ms}]}
    return conf(port, [p], log={"access": "off"},
                extra=admin_extra(aport) + '\nresolvers = ( "%s" );\n' % stub.addr + extra)


def servers(admin):
    return sorted(s["address"] for s in admin.stats()["pools"][0]["servers"])


def test_discovery_add_drain_remove_zero_failed(procs, stub):
    oport = free_port()
    procs.origin("a", port=oport)  # 127.0.0.1:oport
    stub.set("api.test", ["127.0.0.1"], ttl=30)
    port, aport = free_port(), free_port()
    w = procs.weir(dns_conf(port, aport, stub, oport, interval_ms=300), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    assert wait_until(lambda: servers(admin) == ["127.0.0.1:%d" % oport], tf(5), 0.05), servers(admin)
    assert stub.queries["api.test"] >= 1
    load = Load(port, 4, max_seconds=60).start()
    try:
        # a second address joins and takes traffic
        ob = start_alias_origin(procs, "b", "127.0.0.2", oport)
        stub.set("api.test", ["127.0.0.1", "127.0.0.2"], ttl=30)
        assert wait_until(lambda: servers(admin) == ["127.0.0.1:%d" % oport, "127.0.0.2:%d" % oport], tf(5), 0.05)
        assert wait_until(lambda: load.origins.get("b", 0) > 0 or served_by(admin, "127.0.0.2:%d" % oport) > 0,
                          tf(5), 0.05)
        # the first vanishes: drained, then removed, nothing fails
        stub.set("api.test", ["127.0.0.2"], ttl=30)
        assert wait_until(lambda: servers(admin) == ["127.0.0.2:%d" % oport], tf(8), 0.05), servers(admin)
        assert w.wait_log(r"dns: api.test:%d no longer lists 127.0.0.1:%d: draining" % (oport, oport), 2)
        assert w.wait_log(r"dns: server 127.0.0.1:%d removed from pool 'api' \(drained\)" % oport, 2)
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert load.sent > 100
    ob.stop()


def served_by(admin, addr):
    for s in admin.stats()["pools"][0]["servers"]:
        if s["address"] == addr:
            return s["requests"]
    return 0


def start_alias_origin(procs, name, ip, port):
    from weirtest import ORIGIN_BIN

    class Alias:
        def __init__(self):
            self.addr = ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)
            self.out = open(procs.workdir / ("origin-%s.out" % name), "wb")
            self.proc = subprocess.Popen([ORIGIN_BIN, "--listen", self.addr, "--name", name], stdout=self.out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            import socket

            def up():
                try:
                    socket.create_connection((ip, port), 0.2).close()
                    return True
                except OSError:
                    return False
            assert wait_until(up, tf(5), 0.02)

        def stop(self):
            if self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(10)
            self.out.close()

    o = Alias()
    procs.origins.append(o)
    return o


def test_ttl_failures_and_reload(procs, stub):
    oport = free_port()
    start_alias_origin(procs, "a", "127.0.0.2", oport)
    stub.set("api.test", ["127.0.0.2"], ttl=1)
    port, aport = free_port(), free_port()
    text = dns_conf(port, aport, stub, oport, interval_ms=5000)
    w = procs.weir(text, port)
    admin = Admin(aport)
    assert admin.wait_ready()
    assert wait_until(lambda: servers(admin) == ["127.0.0.2:%d" % oport], tf(5), 0.05)
    n0 = stub.queries["api.test"]
    time.sleep(2.6)
    # TTL 1 s < interval 5 s: asked again about every second (min 0.5 s)
    assert stub.queries["api.test"] - n0 >= 2, stub.queries
    # SERVFAIL: the server stays, the failure is logged once
    stub.fail("api.test")
    assert w.wait_log(r"dns: cannot resolve api.test \(pool 'api'\)", 5)
    time.sleep(1.5)
    assert servers(admin) == ["127.0.0.2:%d" % oport]
    assert w.stderr().count("dns: cannot resolve api.test") == 1
    # a reload keeps the discovered server (the file only names the host)
    start = len(w.stderr())
    w.reload(text)
    assert w.wait_log(r"configuration reloaded", 5, start)
    assert servers(admin) == ["127.0.0.2:%d" % oport]
    r = admin.get("/stats")
    assert r.status == 200
    stub.set("api.test", ["127.0.0.2"], ttl=1)
    assert w.wait_log(r"dns: api.test \(pool 'api'\) resolves again", 5)


def test_ipv4_and_ipv6_answers(procs, stub):
    """A and AAAA records of one name: a server for each address, the IPv6
    one written [::1]:port; both take traffic."""
    oport = free_port()
    procs.origin("v4", port=oport)
    start_alias_origin(procs, "v6", "::1", oport)
    stub.set("api.test", ["127.0.0.1", "::1"], ttl=30)
    port, aport = free_port(), free_port()
    procs.weir(dns_conf(port, aport, stub, oport, interval_ms=300), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    want = sorted(["127.0.0.1:%d" % oport, "[::1]:%d" % oport])
    assert wait_until(lambda: servers(admin) == want, tf(5), 0.05), servers(admin)
    assert stub.queries["api.test/AAAA"] >= 1
    load = Load(port, 2, count=50).start().join()
    assert load.errors == [] and load.sent == 100
    assert served_by(admin, "[::1]:%d" % oport) > 0 and served_by(admin, "127.0.0.1:%d" % oport) > 0


def test_scale_down_of_a_discovered_server_sticks(procs, stub):
    """A scale-down removes a discovered server while DNS still lists it
    (DNS lags behind a terminating instance): discovery does not add it
    back; once DNS stops listing it and lists it again, it is a new server."""
    oport = free_port()
    procs.origin("a", port=oport)
    start_alias_origin(procs, "b", "127.0.0.2", oport)
    stub.set("api.test", ["127.0.0.1", "127.0.0.2"], ttl=1)
    port, aport = free_port(), free_port()
    asc = ('autoscale = { interval_ms = 250; rules = ( { name = "idle"; pool = "api"; metric = "rps"; '
           'window_ms = 1000; min_servers = 1; max_servers = 4; drain_ms = 2000; '
           'scale_down = { below = 1000000.0; for_ms = 1000; cooldown_ms = 600000; }; } ); };')
    w = procs.weir(dns_conf(port, aport, stub, oport, interval_ms=300, extra=asc), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    both = ["127.0.0.1:%d" % oport, "127.0.0.2:%d" % oport]
    assert wait_until(lambda: servers(admin) == both, tf(5), 0.05), servers(admin)
    assert wait_until(lambda: len(servers(admin)) == 1, tf(15), 0.05), servers(admin)
    gone = [a for a in both if a not in servers(admin)][0]
    n0 = stub.queries["api.test"]
    assert wait_until(lambda: stub.queries["api.test"] >= n0 + 3, tf(5), 0.05)  # re-asked, still listed
    assert len(servers(admin)) == 1 and gone not in servers(admin), servers(admin)
    # DNS drops it, then lists it again (a new instance on that address)
    stub.set("api.test", [a.split(":")[0] for a in both if a != gone], ttl=1)
    n1 = stub.queries["api.test"]
    assert wait_until(lambda: stub.queries["api.test"] >= n1 + 2, tf(5), 0.05)
    stub.set("api.test", ["127.0.0.1", "127.0.0.2"], ttl=1)
    assert wait_until(lambda: servers(admin) == both, tf(5), 0.05), servers(admin)
    assert "dns: api.test:%d resolves to %s: added" % (oport, gone) in w.stderr()


def test_host_names_need_resolve(tmp_path):
    path = tmp_path / "w.conf"
    text = conf(free_port(), [pool("api", ["api.example.invalid:80"])])
    path.write_text(text)
    p = subprocess.run([WEIR_BIN, "-t", "-c", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 1
    assert "invalid address 'api.example.invalid:80'" in out and "resolve = true" in out, out
    # localhost needs no lookup
    path.write_text(conf(free_port(), [pool("api", ["localhost:80"])]))
    p = subprocess.run([WEIR_BIN, "-t", "-c", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, p.stdout
    # resolvers must be IP addresses
    path.write_text(conf(free_port(), [pool("api", ["127.0.0.1:80"])], extra='resolvers = ( "dns.example" );'))
    p = subprocess.run([WEIR_BIN, "-t", "-c", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 1 and b"invalid address 'dns.example' in resolvers[0]" in p.stdout, p.stdout
