"""
adminutil - helpers for the admin endpoint tests (test_admin.py,
test_metrics.py), on top of weirtest.

  * admin_extra(port, token)   the `admin = { ... };` config line
  * Admin                      a client for one weir's admin listener:
                               get/post/patch/delete with or without the
                               token, stats() as JSON, metrics() as text
  * parse_metrics(text)        Prometheus text -> {series: value}
  * promtool_check(text)       run `promtool check metrics` (None when
                               promtool is not installed)
  * Load                       client threads sending keep-alive requests
                               (a fixed count, or until stopped), counting
                               statuses and X-Origin, keeping every failure
"""

import collections
import json
import shutil
import subprocess
import threading
import time

from weirtest import LOOPBACK, HttpConn, tf, wait_until

TOKEN = "test-token-1"


def admin_extra(port, token=TOKEN, address=None):
    """The admin group for weirtest.conf(extra=...)."""
    addr = address or "%s:%d" % (LOOPBACK, port)
    if token is None:
        return 'admin = { address = "%s"; };' % addr
    return 'admin = { address = "%s"; token = "%s"; };' % (addr, token)


class Admin:
    def __init__(self, port, token=TOKEN):
        self.port = port
        self.token = token

    def request(self, method, path, body=None, token="default", headers=None, raw=None):
        """One request on a new connection. token: "default" = self.token,
        None = no Authorization header, else that token. body: a dict/list
        (sent as JSON) or raw bytes in `raw`."""
        hs = list(headers or [])
        t = self.token if token == "default" else token
        if t is not None:
            hs.append(("Authorization", "Bearer %s" % t))
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hs.append(("Content-Type", "application/json"))
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = b""
        hs.append(("Connection", "close"))
        c = HttpConn(self.port, timeout=tf(10))
        try:
            return c.request(method, path, headers=hs, body=data, host="%s:%d" % (LOOPBACK, self.port))
        finally:
            c.close()

    def alive(self):
        try:
            return self.get("/healthz", token=None).status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=5):
        """The admin listener starts just after the workers: wait for it."""
        return wait_until(self.alive, tf(timeout), 0.02)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def stats(self, query=""):
        r = self.get("/stats" + query, token=None)
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json", r
        return r.json()

    def metrics(self):
        r = self.get("/metrics", token=None)
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/plain; version=0.0.4"), r
        return r.body.decode()

    def server(self, pool, address, doc=None):
        """The server's /stats object, or None when it is not in the pool."""
        doc = doc or self.stats()
        for p in doc["pools"]:
            if p["name"] == pool:
                for s in p["servers"]:
                    if s["address"] == address:
                        return s
        return None

    def add(self, pool, address, weight=None):
        b = {"address": address}
        if weight is not None:
            b["weight"] = weight
        return self.request("POST", "/pools/%s/servers" % pool, body=b)

    def patch(self, pool, address, body):
        return self.request("PATCH", "/pools/%s/servers/%s" % (pool, address), body=body)

    def delete(self, pool, address):
        return self.request("DELETE", "/pools/%s/servers/%s" % (pool, address))

    def wait_gone(self, pool, address, timeout=5):
        return wait_until(lambda: self.server(pool, address) is None, tf(timeout), 0.05)


def parse_metrics(text):
    """{ 'name{labels}': float } for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        out[k] = float(v)
    return out


def promtool_check(text):
    """(returncode, output) of `promtool check metrics`, or None when absent."""
    exe = shutil.which("promtool")
    if exe is None:
        return None
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode(errors="replace")


class Load:
    """nthreads keep-alive clients. With `count`, each thread sends `count`
    requests then stops; otherwise they run until stop(). Every non-200 or
    exception is kept in .errors; .origins counts X-Origin values."""

    def __init__(self, port, nthreads, target="/", count=None, max_seconds=60):
        self.port = port
        self.target = target
        self.count = count
        self.origins = collections.Counter()
        self.statuses = collections.Counter()
        self.errors = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + tf(max_seconds)
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(nthreads)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def _run(self):
        c = None
        n = 0
        local = collections.Counter()
        statuses = collections.Counter()
        errors = []
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                if self.count is not None and n >= self.count:
                    break
                if c is None:
                    c = HttpConn(self.port, timeout=tf(15))
                try:
                    r = c.get(self.target)
                except Exception as e:  # noqa: BLE001 - kept for the test to report
                    errors.append(repr(e))
                    c.close()
                    c = None
                    n += 1
                    continue
                n += 1
                statuses[r.status] += 1
                if r.status != 200:
                    errors.append("%d %r" % (r.status, r.body[:200]))
                local[r.origin] += 1
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = None
        finally:
            if c is not None:
                c.close()
            with self._lock:
                self.origins.update(local)
                self.statuses.update(statuses)
                self.errors.extend(errors)
                self.sent += n

    def stop(self):
        self._stop.set()
        return self.join()

    def join(self):
        for t in self._threads:
            t.join(tf(120))
        return self
