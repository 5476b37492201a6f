"""Redis AUTH (issue 8, Faults: "AUTH failure: a clear error at start or
reload, and weir serves with L1 only"), against a real redis-server that
requires a password."""

from test_cache import Redis, admin, cache_conf, get, is_hit, needs_redis, origin  # noqa: F401
from weirtest import LOOPBACK, free_port, tf, wait_until

pytestmark = needs_redis


def conf(o, r, password, admin_port):
    kw = cache_conf(o)
    pw = ' password = "%s";' % password if password else ""
    kw["extra"] = ('cache = { memory_bytes = %d; max_object_bytes = %d; redis = { address = "%s:%d";%s '
                   'prefix = "t:"; timeout_ms = 100; }; };\n'
                   'admin = { address = "%s:%d"; token = "tok"; };\n'
                   % (64 << 20, 8 << 20, LOOPBACK, r.port, pw, LOOPBACK, admin_port))
    return kw


def auth_errors(w):
    return [l for l in w.stderr().splitlines() if "authentication failed" in l]


def test_wrong_password_is_a_clear_error_and_l1_still_serves(procs, origin):
    r = Redis()
    try:
        assert b"OK" in r.cmd("CONFIG", "SET", "requirepass", "s3cret")
        origin.set("/a", headers=[("Cache-Control", "max-age=60")], body=b"a")
        ap = free_port()
        w = procs.weir(**conf(origin, r, "wrong", ap))
        assert wait_until(lambda: auth_errors(w), tf(5)), w.stderr_tail()
        # the whole time: no request fails, L1 works
        for _ in range(3):
            assert get(w, "/a").status == 200
        assert is_hit(get(w, "/a")) and origin.count("/a") == 1
        st, j = admin(ap, "GET", "/cache")
        assert st == 200 and j["l2"]["state"] != "up", j["l2"]
        assert "auth" in (j["l2"]["last_error"] or "").lower() or "pass" in (j["l2"]["last_error"] or "").lower(), \
            j["l2"]
        # nothing was written to Redis
        assert r.cmd("AUTH", "s3cret").startswith(b"+OK")
    finally:
        r.kill()


def test_right_password_shares_l2_and_a_reload_with_a_wrong_one_falls_back_to_l1(procs, origin):
    r = Redis()
    try:
        assert b"OK" in r.cmd("CONFIG", "SET", "requirepass", "s3cret")
        origin.set("/s", headers=[("Cache-Control", "max-age=60")], body=b"shared")
        a = procs.weir(**conf(origin, r, "s3cret", free_port()))
        b_admin = free_port()
        b_kw = conf(origin, r, "s3cret", b_admin)
        b = procs.weir(**b_kw)
        assert get(a, "/s").body == b"shared"

        def from_l2():
            resp = get(b, "/s")
            return "detail=l2" in (resp.header("Cache-Status") or "")
        assert wait_until(from_l2, tf(5)) and origin.count("/s") == 1
        assert not auth_errors(a) and not auth_errors(b)
        # reload B with a wrong password: the error is said, B keeps serving
        from weirtest import conf as full_conf
        kw = conf(origin, r, "wrong", b_admin)
        b.reload(full_conf(b.port, **kw))
        assert wait_until(lambda: auth_errors(b), tf(5)), b.stderr_tail()
        origin.set("/t", headers=[("Cache-Control", "max-age=60")], body=b"t")
        assert get(b, "/t").status == 200 and is_hit(get(b, "/t"))
        st, j = admin(b_admin, "GET", "/cache")
        assert j["l2"]["state"] != "up", j["l2"]
        # the right password again: B reconnects and reads what A stores
        b.reload(full_conf(b.port, **conf(origin, r, "s3cret", b_admin)))
        assert wait_until(lambda: admin(b_admin, "GET", "/cache")[1]["l2"]["state"] == "up", tf(5))
        origin.set("/u", headers=[("Cache-Control", "max-age=60")], body=b"u")
        assert get(a, "/u").body == b"u"

        def u_from_l2():
            resp = get(b, "/u")
            return "detail=l2" in (resp.header("Cache-Status") or "")
        assert wait_until(u_from_l2, tf(5)) and origin.count("/u") == 1
    finally:
        r.kill()


def test_reload_moves_l2_to_another_redis(procs, origin):
    r1, r2 = Redis(), Redis()
    try:
        origin.set("/m", headers=[("Cache-Control", "max-age=60")], body=b"moved")
        ap = free_port()
        w = procs.weir(**conf(origin, r1, "", ap))
        assert get(w, "/m").body == b"moved"
        assert wait_until(lambda: int(r1.cmd("DBSIZE").strip()[1:] or 0) > 0, tf(5))
        from weirtest import conf as full_conf
        w.reload(full_conf(w.port, **conf(origin, r2, "", ap)))
        assert wait_until(lambda: "L2 reconnects to" in w.stderr(), tf(5)), w.stderr_tail()
        origin.set("/n", headers=[("Cache-Control", "max-age=60")], body=b"new")
        assert get(w, "/n").body == b"new"
        # stored in the new Redis now
        assert wait_until(lambda: b"/n" in r2.cmd("KEYS", "*"), tf(5)), r2.cmd("KEYS", "*")
        assert b"/n" not in r1.cmd("KEYS", "*")
    finally:
        r1.kill()
        r2.kill()
