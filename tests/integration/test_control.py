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
