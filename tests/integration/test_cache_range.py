"""A Range request that misses (issue 8: "a range request on a miss
fetches and stores the whole object when it is small enough"): the cache
fetches the object whole without the Range, stores it, and answers the
range from it; the next ranges are hits. What cannot be stored goes to the
backend as it came, Range and all."""

import threading

from test_cache import cache_conf, get, origin  # noqa: F401  (origin is a fixture)
from weirtest import tf

BODY = bytes(range(256)) * 40  # 10,240 bytes


def cs(r):
    return r.header("Cache-Status") or ""


def test_range_miss_fetches_whole_and_answers_the_range(procs, origin):
    origin.set("/v", headers=[("Cache-Control", "max-age=60"), ("Content-Type", "video/mp4")], body=BODY)
    w = procs.weir(**cache_conf(origin))
    r = get(w, "/v", headers=[("Range", "bytes=100-199")])
    assert r.status == 206 and r.body == BODY[100:200], (r.status, cs(r))
    assert r.header("Content-Range") == "bytes 100-199/%d" % len(BODY)
    assert cs(r) == "weir; fwd=uri-miss; fwd-status=200; stored; detail=range", cs(r)
    # the origin was asked for the whole object
    assert origin.count("/v") == 1 and "Range" not in origin.last_headers["/v"], origin.last_headers["/v"]
    # the next ranges, and the whole, come from L1
    r = get(w, "/v", headers=[("Range", "bytes=-10")])
    assert r.status == 206 and r.body == BODY[-10:] and cs(r).startswith("weir; hit"), cs(r)
    r = get(w, "/v", headers=[("Range", "bytes=0-0, 5000-5001")])
    assert r.status == 206 and r.header("Content-Type").startswith("multipart/byteranges")
    r = get(w, "/v")
    assert r.status == 200 and r.body == BODY and cs(r).startswith("weir; hit")
    r = get(w, "/v", headers=[("Range", "bytes=20000-")])
    assert r.status == 416 and r.header("Content-Range") == "bytes */%d" % len(BODY)
    assert origin.count("/v") == 1


def test_range_miss_with_if_range_that_does_not_match_gets_the_whole(procs, origin):
    origin.set("/ir", headers=[("Cache-Control", "max-age=60"), ("ETag", '"v2"')], body=BODY)
    w = procs.weir(**cache_conf(origin))
    r = get(w, "/ir", headers=[("Range", "bytes=0-9"), ("If-Range", '"v1"')])
    assert r.status == 200 and r.body == BODY, (r.status, cs(r))
    r = get(w, "/ir", headers=[("Range", "bytes=0-9"), ("If-Range", '"v2"')])
    assert r.status == 206 and r.body == BODY[:10] and cs(r).startswith("weir; hit"), cs(r)
    assert origin.count("/ir") == 1


def test_concurrent_ranges_of_a_cold_object_make_one_fetch(procs, origin):
    origin.set("/c", headers=[("Cache-Control", "max-age=60")], body=BODY, delay=0.5)
    w = procs.weir(**cache_conf(origin, workers=2))
    out = [None] * 20
    lock = threading.Lock()

    def one(i):
        r = get(w, "/c", headers=[("Range", "bytes=%d-%d" % (i * 100, i * 100 + 49))])
        with lock:
            out[i] = r

    ts = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(20))
    for i, r in enumerate(out):
        assert r is not None and r.status == 206 and r.body == BODY[i * 100:i * 100 + 50], (i, r and cs(r))
    assert origin.count("/c") == 1


def test_range_miss_not_storable_goes_as_it_came(procs, origin):
    origin.set("/p", headers=[("Cache-Control", "private, max-age=60")], body=BODY)
    w = procs.weir(**cache_conf(origin))
    r = get(w, "/p", headers=[("Range", "bytes=0-9")])
    # the fetch found it private: the request was then sent with its Range
    # (this origin ignores Range and answers 200 whole: what the client gets)
    assert r.status == 200 and r.body == BODY
    assert "detail=range-not-stored" in cs(r), cs(r)
    assert origin.count("/p") == 2 and origin.last_headers["/p"].get("Range") == "bytes=0-9"
    # a hit-for-miss mark now: straight to the backend, no fetch of its own
    r = get(w, "/p", headers=[("Range", "bytes=0-9")])
    assert "hit-for-miss" in cs(r) and origin.count("/p") == 3, cs(r)


def test_range_miss_too_big_goes_as_it_came(procs, origin):
    origin.set("/big", headers=[("Cache-Control", "max-age=60")], body=BODY * 20)  # 200 KiB
    w = procs.weir(**cache_conf(origin, max_object=64 << 10))
    r = get(w, "/big", headers=[("Range", "bytes=0-9")])
    assert r.status == 200 and r.body == BODY * 20  # this origin ignores Range
    # the fetch gave up past max_object_bytes; the request then went as it
    # came, and its response was announced too big to store
    assert cs(r) == "weir; fwd=uri-miss; fwd-status=200; detail=too-big", cs(r)
    assert origin.count("/big") == 2 and origin.last_headers["/big"].get("Range") == "bytes=0-9"
