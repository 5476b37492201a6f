"""Purges across a fleet sharing one Redis (real weir processes, a real
redis-server): the purge log makes prefix and tag purges hold for an
instance started after them (L2 values older than the purge are misses),
and the purge generation makes an instance that was cut off from Redis
while a purge was published drop its L1 when it reconnects."""

import select
import socket
import threading
import time

import pytest

from test_cache import admin, admin_conf, cache_conf, get, is_hit, needs_redis, origin, redis  # noqa: F401
import weirtest
from weirtest import REPO, LOOPBACK, free_port, tf, wait_until

pytestmark = [pytest.mark.skipif(not (REPO / "include" / "weir" / "exchange.h").exists(),
                                 reason="the session's request hook (exchange.h) is not in this tree"), needs_redis]


def cs(r):
    return r.header("Cache-Status") or ""


def test_purges_hold_for_an_instance_started_later(procs, origin, redis):
    for p, tag in (("/x/1", "a"), ("/x/2", "b"), ("/t/1", "gone"), ("/y/1", "c")):
        origin.set(p, headers=[("Cache-Control", "max-age=600"), ("Surrogate-Key", tag)], body=p.encode())
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    time.sleep(0.4)
    for p in ("/x/1", "/x/2", "/t/1", "/y/1"):
        get(a, p)
    assert admin(ap, "POST", "/cache/purge", {"prefix": "http://localhost/x/"})[0] == 200
    assert admin(ap, "POST", "/cache/purge", {"tag": "gone"})[0] == 200
    time.sleep(1.1)  # B starts in a later second than the purges
    b = procs.weir(**cache_conf(origin, redis=redis))
    time.sleep(0.4)
    # the values are still in Redis, but older than the purges: misses on B
    for p in ("/x/1", "/x/2", "/t/1"):
        r = get(b, p)
        assert r.body == p.encode() and not is_hit(r), (p, cs(r))
        assert origin.count(p) == 2, p
    # what no purge touched is still shared
    assert "detail=l2" in cs(get(b, "/y/1")) and origin.count("/y/1") == 1
    assert "purge log read: 2 recent purge(s)" in b.stderr()


class CuttableProxy:
    """A TCP forwarder to Redis that the test can cut (every connection
    closed, new ones refused) and restore on the same port."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.socks = []
        self.lsock = None
        self.stopping = False
        self.restore()

    def restore(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((LOOPBACK, self.port))
        ls.listen(64)
        self.lsock = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection((LOOPBACK, self.target), timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 0.5)
                for s in r:
                    d = s.recv(65536)
                    if not d:
                        raise OSError
                    (b if s is a else a).sendall(d)
        except (OSError, ValueError):
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.socks = []


@pytest.mark.skipif(weirtest.ASAN or weirtest.TSAN,
                    reason="known race, see the issue 8 note: under sanitizer slowdowns the channel can be cut "
                    "before instance B's first purge-generation read has come back, and B, never having known "
                    "the generation, keeps its L1; the plain build runs it")
def test_instance_cut_off_during_a_purge_drops_l1_on_reconnect(procs, origin, redis):
    for p in ("/d/1", "/d/2"):
        origin.set(p, headers=[("Cache-Control", "max-age=600")], body=p.encode())
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    proxy = CuttableProxy(redis.port)
    try:
        bkw = cache_conf(origin, redis=redis)
        bkw["extra"] = bkw["extra"].replace("%s:%d" % (LOOPBACK, redis.port), "%s:%d" % (LOOPBACK, proxy.port))
        b = procs.weir(**bkw)
        time.sleep(0.5)
        for p in ("/d/1", "/d/2"):
            get(b, p)
            assert "detail=l1" in cs(get(b, p))
        proxy.cut()
        time.sleep(0.3)
        # published while B cannot hear it
        st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/d/1"})
        assert st == 200 and j["purged"]["l2"] == 1
        assert "detail=l1" in cs(get(b, "/d/2"))  # B still trusts its L1: it cannot know
        proxy.restore()
        # back on the channel, B sees the generation moved: it drops its L1
        # and takes /d/2 from L2 again; /d/1 is gone from L2 too
        assert wait_until(lambda: "detail=l2" in cs(get(b, "/d/2")), tf(15), 0.2), cs(get(b, "/d/2"))
        r = get(b, "/d/1")
        assert not is_hit(r) and origin.count("/d/1") == 2, cs(r)
    finally:
        proxy.cut()
