"""Purges across a fleet sharing one Redis (real weir processes, a real
redis-server): the purge log makes prefix and tag purges hold for an
instance started after them (L2 values older than the purge are misses),
and the purge generation makes an instance that was cut off from Redis
while a purge was published drop its L1 when it reconnects, whether it
knew the generation before (it moved) or not (its first read had not
completed: a failed read is retried), and only then: an instance that
listened all along keeps its L1."""

import re
import select
import socket
import threading
import time

import pytest

from test_cache import admin, admin_conf, cache_conf, get, is_hit, needs_redis, origin, redis  # noqa: F401
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
        for _ in range(50):  # the accept thread of the cut may take a moment to let go of the port
            try:
                ls.bind((LOOPBACK, self.port))
                break
            except OSError:
                time.sleep(0.05)
        else:
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
        # shutdown wakes the thread blocked in accept(): a close alone
        # leaves the socket listening (the port taken) until accept returns
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.socks = []


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
        # (said in its log) and takes /d/2 from L2 again, not from the
        # origin; /d/1 is gone from L2 too. (Whether one of the polls sees
        # the L2 answer itself or only its copy promoted to L1 depends on
        # where the drop falls between two polls: the log line is the proof.)
        assert wait_until(lambda: re.search(r"dropped \d+ L1 object", b.stderr()), tf(15), 0.2), \
            b.stderr_tail()
        r = get(b, "/d/2")  # from L2, or the origin when L2 is slow (sanitizers): never the dropped L1
        assert r.body == b"/d/2" and "detail=l1" not in cs(r), cs(r)
        r = get(b, "/d/1")
        assert not is_hit(r) and origin.count("/d/1") == 2, cs(r)
    finally:
        proxy.cut()


GEN_KEY = "t:purge:gen"  # cache_conf's prefix "t:" + "purge:gen"


def via(proxy, kw, redis):
    """The instance's Redis connections (L2 and the purge channel) go
    through the cuttable proxy."""
    kw["extra"] = kw["extra"].replace("%s:%d" % (LOOPBACK, redis.port), "%s:%d" % (LOOPBACK, proxy.port))
    return kw


def cache_state(port):
    st, j = admin(port, "GET", "/cache")
    assert st == 200, j
    return j


def gen_of(port):
    return cache_state(port)["purge_generation"]


def break_gen_key(redis):
    """The generation key holds a list: GET on it is a WRONGTYPE error, so
    every read of the generation fails until the key is repaired."""
    redis.cmd("DEL", GEN_KEY)
    assert redis.cmd("RPUSH", GEN_KEY, "not-a-number").startswith(b":1")


def test_failed_generation_read_is_retried_and_logged_once(procs, origin, redis):
    origin.set("/k/1", headers=[("Cache-Control", "max-age=600")], body=b"k1")
    break_gen_key(redis)
    bkw, bp = admin_conf(origin, redis=redis)
    b = procs.weir(**bkw)
    assert b.wait_log(r"reading the purge generation failed \(error reply: WRONGTYPE", 10), b.stderr_tail()
    assert gen_of(bp) == -1
    # B listens on the channel all along: what it stores meanwhile is trusted
    get(b, "/k/1")
    assert "detail=l1" in cs(get(b, "/k/1"))
    time.sleep(tf(1.5))  # several retries fail: logged once, not once per try
    assert b.stderr().count("reading the purge generation failed (") == 1, b.stderr_tail()
    assert "purge generation and log read after" not in b.stderr()
    assert redis.cmd("DEL", GEN_KEY).startswith(b":1")
    assert redis.cmd("SET", GEN_KEY, "5").startswith(b"+OK")
    m = b.wait_log(r"purge generation and log read after (\d+) failed attempt\(s\)", 15)
    assert m and int(m.group(1)) >= 2, b.stderr_tail()
    assert "purge generation 5 read: L1 kept" in b.stderr()
    assert gen_of(bp) == 5
    # no spurious drop: the object stored before the first good read is still in L1
    assert "detail=l1" in cs(get(b, "/k/1")) and origin.count("/k/1") == 1
    assert "dropped" not in b.stderr()


def test_cut_off_before_the_first_generation_read_drops_l1_on_reconnect(procs, origin, redis):
    for p in ("/d/1", "/d/2"):
        origin.set(p, headers=[("Cache-Control", "max-age=600")], body=p.encode())
    break_gen_key(redis)  # B never gets to know the generation before the cut
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    proxy = CuttableProxy(redis.port)
    try:
        bkw, bp = admin_conf(origin, redis=redis)
        b = procs.weir(**via(proxy, bkw, redis))
        assert b.wait_log(r"reading the purge generation failed", 10), b.stderr_tail()
        for p in ("/d/1", "/d/2"):
            get(b, p)
            assert "detail=l1" in cs(get(b, p))
        assert gen_of(bp) == -1
        proxy.cut()
        assert b.wait_log(r"redis subscriber: connection lost", 10), b.stderr_tail()
        # the key repaired and a purge published while B cannot hear it
        redis.cmd("DEL", GEN_KEY)
        st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/d/1"})
        assert st == 200 and j["purged"]["l2"] == 1, j
        assert redis.cmd("GET", GEN_KEY) == b"$1\r\n1\r\n"
        assert "detail=l1" in cs(get(b, "/d/2"))  # B cannot know yet
        proxy.restore()
        assert b.wait_log(r"the purge channel was cut before the generation was known, purges published "
                          r"meanwhile are unknown: dropped 2 L1 objects", 20), b.stderr_tail()
        assert gen_of(bp) == 1
        assert wait_until(lambda: "detail=l2" in cs(get(b, "/d/2")), tf(10), 0.2), cs(get(b, "/d/2"))
        r = get(b, "/d/1")
        assert r.body == b"/d/1" and not is_hit(r) and origin.count("/d/1") == 2, cs(r)
    finally:
        proxy.cut()


def test_continuously_connected_instance_keeps_its_l1(procs, origin, redis):
    """No spurious drops: B hears every purge (they arrive numbered), so a
    purge it received, and a cut during which nothing was published, leave
    the rest of its L1 alone."""
    for p in ("/d/1", "/d/2", "/e/1"):
        origin.set(p, headers=[("Cache-Control", "max-age=600")], body=p.encode())
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    proxy = CuttableProxy(redis.port)
    try:
        bkw, bp = admin_conf(origin, redis=redis)
        b = procs.weir(**via(proxy, bkw, redis))
        assert b.wait_log(r"purge generation 0 read: L1 kept", 10), b.stderr_tail()
        for p in ("/d/1", "/d/2", "/e/1"):
            get(b, p)
            assert "detail=l1" in cs(get(b, p))
        # a purge B hears: it takes /e/1 out and moves B's generation with it
        st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/e/1"})
        assert st == 200, j
        assert wait_until(lambda: gen_of(bp) == 1, tf(10), 0.1), cache_state(bp)
        r = get(b, "/e/1")
        assert not is_hit(r) and origin.count("/e/1") == 2, cs(r)
        for p in ("/d/1", "/d/2"):
            assert "detail=l1" in cs(get(b, p)), p
        # cut and restored with nothing published meanwhile: B reads generation 1 again and keeps its L1
        proxy.cut()
        assert b.wait_log(r"redis subscriber: connection lost", 10), b.stderr_tail()
        time.sleep(0.3)
        proxy.restore()
        assert b.wait_log(r"purge generation 1 read: L1 kept", 20), b.stderr_tail()
        for p in ("/d/1", "/d/2"):
            assert "detail=l1" in cs(get(b, p)), p
            assert origin.count(p) == 1, p
        assert "dropped" not in b.stderr(), b.stderr_tail()
        assert "dropped" not in a.stderr(), a.stderr_tail()
    finally:
        proxy.cut()


def test_purges_still_reach_instances_when_redis_refuses_scripts(procs, origin, redis):
    """A Redis that refuses EVAL (here by ACL): a purge goes out as INCR and
    an unnumbered message; the other instance still applies it, and since
    it cannot number it, it drops its L1 when it reconnects rather than
    trust it."""
    for p in ("/d/1", "/d/2"):
        origin.set(p, headers=[("Cache-Control", "max-age=600")], body=p.encode())
    kw, ap = admin_conf(origin, redis=redis)
    a = procs.weir(**kw)
    proxy = CuttableProxy(redis.port)
    try:
        bkw, bp = admin_conf(origin, redis=redis)
        b = procs.weir(**via(proxy, bkw, redis))
        assert b.wait_log(r"purge generation 0 read: L1 kept", 10), b.stderr_tail()
        for p in ("/d/1", "/d/2"):
            get(b, p)
            assert "detail=l1" in cs(get(b, p))
        assert redis.cmd("ACL", "SETUSER", "default", "-eval").startswith(b"+OK")
        st, j = admin(ap, "POST", "/cache/purge", {"url": "http://localhost/d/1"})
        assert st == 200, j
        assert a.wait_log(r"Redis refused the purge script \(error reply: NOPERM", 10), a.stderr_tail()
        assert wait_until(lambda: redis.cmd("GET", GEN_KEY) == b"$1\r\n1\r\n", tf(5), 0.1)
        # B heard it: /d/1 left its L1, /d/2 did not
        assert wait_until(lambda: not is_hit(get(b, "/d/1")), tf(10), 0.1)
        assert "detail=l1" in cs(get(b, "/d/2"))
        assert gen_of(bp) == 0  # an unnumbered message does not move what B knows
        proxy.cut()
        assert b.wait_log(r"redis subscriber: connection lost", 10), b.stderr_tail()
        time.sleep(0.3)
        proxy.restore()
        assert b.wait_log(r"purges happened while the purge channel was down \(generation 0 before\): "
                          r"dropped \d+ L1 objects", 20), b.stderr_tail()
        assert wait_until(lambda: "detail=l2" in cs(get(b, "/d/2")), tf(10), 0.2), cs(get(b, "/d/2"))
    finally:
        proxy.cut()


def test_instance_started_while_redis_unreachable_drops_its_l1_once_connected(procs, origin, redis):
    """B starts while it cannot reach Redis and serves from L1 alone; what
    was published meanwhile it cannot know, so when the purge channel comes
    up it drops that L1 once (conservatively), then tracks purges as usual."""
    origin.set("/s/1", headers=[("Cache-Control", "max-age=600")], body=b"s1")
    proxy = CuttableProxy(redis.port)
    proxy.cut()
    try:
        bkw, bp = admin_conf(origin, redis=redis)
        b = procs.weir(**via(proxy, bkw, redis))
        assert b.wait_log(r"redis subscriber: cannot connect", 10), b.stderr_tail()
        get(b, "/s/1")
        assert "detail=l1" in cs(get(b, "/s/1"))
        assert gen_of(bp) == -1
        proxy.restore()
        assert b.wait_log(r"purge generation 0 read: L1 objects were stored before the purge channel was up, "
                          r"purges published meanwhile are unknown: dropped 1 L1 objects", 20), b.stderr_tail()
        assert gen_of(bp) == 0
        r = get(b, "/s/1")
        assert not is_hit(r) and origin.count("/s/1") == 2, cs(r)
        assert "detail=l1" in cs(get(b, "/s/1"))  # stored again, and kept from now on
        assert b.stderr().count("dropped") == 1
    finally:
        proxy.cut()
