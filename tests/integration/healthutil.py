"""
healthutil - helpers for the health-check end-to-end tests and for
scripts/failover-bench (standard library only; builds on weirtest).

  * Load          steady, bounded load: N client threads, each on its own
                  keep-alive connection, each request recorded as
                  (monotonic time, wall time, status, X-Origin) or as an error
  * log_events()  weir's error-log lines as (epoch seconds, level, message)
  * wait_event()  wait for a log line matching a regex, return its timestamp
  * shares()      per-window share of the responses that came from one origin
"""

import calendar
import math
import re
import threading
import time

from weirtest import HttpConn, wait_until

_LOG_RX = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z \[(\w+)\] (.*)$")


def log_events(text):
    """[(epoch_seconds, level, message)] for every error-log line of text."""
    out = []
    for line in text.splitlines():
        m = _LOG_RX.match(line)
        if not m:
            continue
        y, mo, d, h, mi, s, ms = (int(m.group(i)) for i in range(1, 8))
        t = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + ms / 1000.0
        out.append((t, m.group(8), m.group(9)))
    return out


def find_events(weir, pattern, since=0.0):
    # log timestamps are cut to the millisecond: a line written in the same
    # millisecond as `since` carries a timestamp up to 1 ms before it
    since = math.floor(since * 1000) / 1000.0
    rx = re.compile(pattern)
    return [(t, msg) for t, _, msg in log_events(weir.stderr()) if t >= since and rx.search(msg)]


def wait_event(weir, pattern, timeout, since=0.0, interval=0.02):
    """Wait until weir's error log has a line matching pattern (with a
    timestamp >= since, epoch seconds). Returns (timestamp, message) or None."""
    found = wait_until(lambda: find_events(weir, pattern, since), timeout, interval)
    return found[0] if found else None


class Load:
    """Steady load: `conns` threads, each sending GETs on its own keep-alive
    connection with `pause` seconds between requests, until stop() or
    `limit` seconds. A failure is any status other than 200 or any exception
    (the connection is then opened again)."""

    def __init__(self, port, conns=4, pause=0.002, limit=60.0, path="/load"):
        self.port = port
        self.conns = conns
        self.pause = pause
        self.limit = limit
        self.path = path
        self.results = []  # (mono, wall, status, origin)
        self.errors = []  # (mono, wall, text)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def _run(self, k):
        conn = None
        i = 0
        deadline = time.monotonic() + self.limit
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                i += 1
                try:
                    if conn is None:
                        conn = HttpConn(self.port, timeout=10)
                    r = conn.get("%s/%d/%d" % (self.path, k, i))
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    with self.lock:
                        self.errors.append((time.monotonic(), time.time(), "conn %d req %d: %r" % (k, i, e)))
                    if conn is not None:
                        conn.close()
                    conn = None
                    continue
                with self.lock:
                    self.results.append((time.monotonic(), time.time(), r.status, r.origin))
                    if r.status != 200:
                        self.errors.append((time.monotonic(), time.time(), "conn %d req %d: %d from %s" % (
                            k, i, r.status, r.origin)))
                if "close" in (r.header("Connection") or "").lower():
                    conn.close()
                    conn = None
                if self.pause:
                    time.sleep(self.pause)
        finally:
            if conn is not None:
                conn.close()

    def snapshot(self):
        with self.lock:
            return list(self.results), list(self.errors)

    def count(self, since_wall=0.0, origin=None):
        with self.lock:
            return sum(1 for _, w, _, o in self.results if w >= since_wall and (origin is None or o == origin))


def shares(results, origin, t0, t1, step):
    """[(window start offset, share of `origin`, requests)] over wall-time
    windows [t0 + k*step, t0 + (k+1)*step) up to t1."""
    out = []
    k = 0
    while t0 + (k + 1) * step <= t1 + 1e-9:
        a, b = t0 + k * step, t0 + (k + 1) * step
        win = [o for _, w, _, o in results if a <= w < b]
        n = len(win)
        out.append((k * step, (sum(1 for o in win if o == origin) / n) if n else 0.0, n))
        k += 1
    return out
