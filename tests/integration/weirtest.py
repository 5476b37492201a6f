"""
weirtest - the harness of weir's end-to-end tests.

Everything here talks to real processes over real loopback sockets:

  * free_port()            a free TCP port on 127.0.0.1 (bind port 0, read, close)
  * Origin                 one `weir-origin` process (the test backend)
  * Weir                   one `weir -c FILE` process, its config in a temp dir,
                           its stderr kept in a file (printed when a test fails)
  * Procs                  owns every process a test (or module) started and
                           always stops them: SIGTERM, then SIGKILL, then reap
  * conf()/render()        write a weir configuration (libconfig syntax)
  * HttpConn / Response    a raw-socket HTTP/1.1 client: send exact bytes, read
                           one full response (Content-Length, chunked with
                           trailers, close-delimited, 1xx), keep-alive and
                           pipelining, "did the peer close?" checks
  * fd_count(), rss_kib()  /proc/PID/fd entries and VmRSS of a process
  * tcp_sockets()          a process's TCP sockets with addresses and states
  * Sampler                a thread sampling a process's RSS
  * fnv1a64()              the hash the origin reports in X-Received-Fnv

Binaries come from $WEIR_BIN and $WEIR_ORIGIN_BIN (default: src/weir and
src/tools/weir-origin under the repository root). With WEIR_ASAN=1 every weir
stop asserts a clean exit (status 0, no AddressSanitizer / UBSan report) and
time limits are multiplied by $WEIR_TIME_FACTOR (default 3 under ASan, else 1).
WEIR_TSAN=1 does the same for a ThreadSanitizer build (no "WARNING:
ThreadSanitizer" report allowed; time factor 5). WEIR_SKIP_SLOW=1 skips the
1 GiB streaming tests.

Every wait in this module is bounded in both iterations and wall time.
"""

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEIR_BIN = os.environ.get("WEIR_BIN", str(REPO / "src" / "weir"))
ORIGIN_BIN = os.environ.get("WEIR_ORIGIN_BIN", str(REPO / "src" / "tools" / "weir-origin"))
ASAN = os.environ.get("WEIR_ASAN", "") == "1"
TSAN = os.environ.get("WEIR_TSAN", "") == "1"
SKIP_SLOW = os.environ.get("WEIR_SKIP_SLOW", "") == "1"
TIME_FACTOR = float(os.environ.get("WEIR_TIME_FACTOR", "5" if TSAN else "3" if ASAN else "1"))

LOOPBACK = "127.0.0.1"

# Processes alive right now (the report hook in conftest.py prints their
# stderr when a test fails).
LIVE_WEIRS = []
LIVE_ORIGINS = []


def tf(seconds):
    """A time limit scaled for slow (sanitizer) builds."""
    return seconds * TIME_FACTOR


_RECENT_PORTS = collections.deque(maxlen=4096)


def free_port():
    """A loopback port nothing listens on, never one this process handed out
    recently: the kernel may give the same ephemeral port to two bind(0)
    calls in a row, and a test that asks for two ports (proxy and admin)
    must get two different ones."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _RECENT_PORTS:
            _RECENT_PORTS.append(port)
            return port
    raise RuntimeError("no fresh loopback port after 100 tries")


def port_accepts(port, timeout=0.2):
    try:
        s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    except OSError:
        return False
    s.close()
    return True


def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def tcp_sockets(pid):
    """The IPv4 TCP sockets process pid holds: list of dicts with local and
    remote (ip, port) and state name (from /proc/net/tcp)."""
    inodes = set()
    for f in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, f))
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    out = []
    with open("/proc/%d/net/tcp" % pid) as fh:
        next(fh)
        for line in fh:
            p = line.split()
            if p[9] not in inodes:
                continue

            def addr(x):
                ip, port = x.split(":")
                return (socket.inet_ntoa(bytes.fromhex(ip)[::-1]), int(port, 16))
            out.append({"local": addr(p[1]), "remote": addr(p[2]), "state": TCP_STATES.get(int(p[3], 16), p[3])})
    return out


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(pred, timeout, interval=0.02):
    """Poll pred() until it is true or `timeout` seconds pass. Returns the
    last value of pred()."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

def render(v):
    """A Python value as libconfig text: dict -> group, list -> list."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, render(x)) for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "( " + ", ".join(render(x) for x in v) + " )"
    raise TypeError(v)


def pool(name, servers, policy="round_robin", **kw):
    """servers: list of "ADDR" or (ADDR, weight) or Origin objects."""
    sv = []
    for s in servers:
        if isinstance(s, tuple):
            addr, w = s
            sv.append({"address": getattr(addr, "addr", addr), "weight": w})
        else:
            sv.append({"address": getattr(s, "addr", s)})
    d = {"name": name, "policy": policy}
    d.update(kw)
    d["servers"] = sv
    return d


def route(pool_name, host="*", path_prefix="/"):
    return {"host": host, "path_prefix": path_prefix, "pool": pool_name}


def conf(port, pools, routes=None, workers=1, timeouts=None, limits=None, log=None, extra=""):
    """A whole weir configuration; one top-level setting per line."""
    t = {"connect_ms": 2000, "client_header_ms": 10000, "upstream_response_ms": 30000, "idle_ms": 60000}
    t.update(timeouts or {})
    lim = {"header_bytes": 32768, "max_connections": 20000}
    lim.update(limits or {})
    lg = {"access": "stderr", "format": "combined", "level": "info"}
    lg.update(log or {})
    if routes is None:
        routes = [route(pools[0]["name"])]
    lines = [
        "# written by tests/integration",
        "workers = %d;" % workers,
        "listen = ( { address = \"%s:%d\"; } );" % (LOOPBACK, port),
        "timeouts = %s;" % render(t),
        "limits = %s;" % render(lim),
        "log = %s;" % render(lg),
        "pools = (",
        ",\n".join("  " + render(p) for p in pools),
        ");",
        "routes = %s;" % render(routes),
        extra,
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------

def _stop(proc, timeout):
    """SIGTERM, wait up to timeout, then SIGKILL and reap. Returns the exit
    status (negative = killed by that signal) and whether SIGKILL was needed."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return proc.returncode, True


class Origin:
    def __init__(self, workdir, name, args=(), port=None):
        self.name = name
        self.port = port or free_port()
        self.addr = "%s:%d" % (LOOPBACK, self.port)
        self.out_path = Path(workdir) / ("origin-%s-%d.out" % (name, self.port))
        cmd = [ORIGIN_BIN, "--listen", self.addr, "--name", name] + [str(a) for a in args]
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        LIVE_ORIGINS.append(self)
        ok = wait_until(lambda: self.proc.poll() is not None or b"listening" in self.out_path.read_bytes(),
                        tf(10))
        if self.proc.poll() is not None or not ok:
            text = self.out_path.read_bytes().decode(errors="replace")
            self.stop()
            raise RuntimeError("weir-origin %s did not start: %s" % (name, text))

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self in LIVE_ORIGINS:
            LIVE_ORIGINS.remove(self)
        rc = _stop(self.proc, 5)
        self.out.close()
        return rc

    def get(self, target, timeout=5):
        c = HttpConn(self.port, timeout=timeout)
        try:
            return c.request("GET", target, headers=[("Connection", "close")])
        finally:
            c.close()

    def stats(self):
        r = self.get("/_ctl/stats")
        assert r.status == 200, r
        return json.loads(r.body)

    def reset(self):
        r = self.get("/_ctl/reset")
        assert r.status == 200, r

    def set(self, **kw):
        q = "&".join("%s=%s" % (k, v) for k, v in kw.items())
        r = self.get("/_ctl/set?" + q)
        assert r.status == 200, r

    def last(self):
        """Raw head of the last non-control request the origin received."""
        r = self.get("/_ctl/last")
        assert r.status == 200, r
        return r.body


class Weir:
    def __init__(self, workdir, conf_text, port, name="weir", wait=True, extra_args=()):
        self.workdir = Path(workdir)
        self.port = port
        self.conf_path = self.workdir / ("%s-%d.conf" % (name, port))
        self.conf_path.write_text(conf_text)
        self.err_path = self.workdir / ("%s-%d.stderr" % (name, port))
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([WEIR_BIN, "-c", str(self.conf_path)] + list(extra_args),
                                     stdout=self.err, stderr=self.err, stdin=subprocess.DEVNULL)
        self.stopped = False
        self.exit_status = None
        LIVE_WEIRS.append(self)
        if wait:
            ok = wait_until(lambda: self.proc.poll() is not None or port_accepts(self.port), tf(10), 0.05)
            if self.proc.poll() is not None or not ok:
                self.stop(check=False)
                raise RuntimeError("weir did not start (exit %r):\n%s" % (self.proc.returncode, self.stderr()))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        try:
            return self.err_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines=150):
        return "\n".join(self.stderr().splitlines()[-lines:])

    def wait_log(self, pattern, timeout=3, start=0):
        """Wait until stderr (from byte offset `start`) matches the regex.
        Returns the match or None."""
        rx = re.compile(pattern)

        def find():
            return rx.search(self.stderr()[start:])
        return wait_until(find, tf(timeout), 0.05)

    def reload(self, conf_text=None):
        if conf_text is not None:
            tmp = self.conf_path.with_suffix(".tmp")
            tmp.write_text(conf_text)
            os.replace(tmp, self.conf_path)
        self.proc.send_signal(signal.SIGHUP)

    def fds(self):
        return fd_count(self.pid)

    def rss(self):
        return rss_kib(self.pid)

    def stop(self, check=None, timeout=None):
        """Stop weir (SIGTERM, SIGKILL after `timeout`). With check (default:
        WEIR_ASAN=1) assert a clean exit and no sanitizer report."""
        if check is None:
            check = ASAN or TSAN
        if self.stopped:
            return self.exit_status
        self.stopped = True
        if self in LIVE_WEIRS:
            LIVE_WEIRS.remove(self)
        rc, killed = _stop(self.proc, timeout or tf(15))
        self.err.close()
        self.exit_status = rc
        if check:
            text = self.stderr()
            bad = [l for l in text.splitlines() if "ERROR: AddressSanitizer" in l or "runtime error:" in l
                   or "ERROR: LeakSanitizer" in l or "WARNING: ThreadSanitizer" in l]
            assert not bad, "sanitizer report from weir:\n" + self.stderr_tail(300)
            assert not killed and rc == 0, "weir exit status %r after SIGTERM (killed=%s)\n%s" % (
                rc, killed, self.stderr_tail())
        return rc


class Procs:
    """Owns the processes started through it; close() stops them all."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.origins = []
        self.weirs = []

    def origin(self, name, *args, port=None):
        o = Origin(self.workdir, name, args, port=port)
        self.origins.append(o)
        return o

    def weir(self, conf_text=None, port=None, wait=True, **conf_kw):
        """weir(conf_text, port) or weir(pools=[...], routes=..., ...)."""
        port = port or free_port()
        if conf_text is None:
            conf_text = conf(port, **conf_kw)
        w = Weir(self.workdir, conf_text, port, wait=wait)
        self.weirs.append(w)
        return w

    def close(self):
        errors = []
        for w in self.weirs:
            try:
                w.stop()
            except AssertionError as e:
                errors.append(str(e))
        for o in self.origins:
            o.stop()
        self.weirs, self.origins = [], []
        if errors:
            raise AssertionError("\n".join(errors))


# --------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------

class PeerClosed(Exception):
    pass


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []  # [(name, value)] as received
        self.trailers = []
        self.body = b""
        self.body_len = 0
        self.raw_head = b""
        self.chunked = False
        self.close_delimited = False

    def header(self, name, default=None):
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return default

    def headers_all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    @property
    def origin(self):
        return self.header("X-Origin")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s headers=%r body=%r>" % (self.status, self.reason, self.headers, self.body[:200])


class HttpConn:
    """One client connection. Keeps unread bytes between responses, so
    pipelined responses are read one after the other."""

    def __init__(self, port, timeout=10, source=None, host=LOOPBACK):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, n=262144):
        """Read more bytes into buf; False on EOF (or reset)."""
        if self.eof:
            return False
        try:
            d = self.sock.recv(n)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_line(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self._fill():
                raise PeerClosed("connection closed while reading a line (have %r)" % bytes(self.buf[:200]))

    def _read_exact(self, n, sink):
        while n > 0:
            if not self.buf and not self._fill():
                raise PeerClosed("connection closed with %d body bytes missing" % n)
            k = min(n, len(self.buf))
            sink(self.buf[:k])
            del self.buf[:k]
            n -= k

    def read_head(self):
        """Read a status line and header block. Returns a Response without body."""
        r = Response()
        raw = bytearray()
        line = self._read_line()
        raw += line
        m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?\r?\n$", line)
        if not m:
            raise ValueError("bad status line %r" % line)
        r.version = m.group(1).decode()
        r.status = int(m.group(2))
        r.reason = (m.group(3) or b"").decode("latin-1")
        for _ in range(1000):
            line = self._read_line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            r.headers.append((k, v.strip()))
        else:
            raise ValueError("too many headers")
        r.raw_head = bytes(raw)
        return r

    def read_response(self, method="GET", sink=None, skip_1xx=True):
        """Read one full response. sink(bytes-like) receives body bytes
        instead of storing them in r.body. 1xx interim responses are skipped
        (returned when skip_1xx is False)."""
        for _ in range(20):
            r = self.read_head()
            if 100 <= r.status < 200 and r.status != 101 and skip_1xx:
                continue
            break
        return self.read_body(r, method, sink)

    def read_body(self, r, method="GET", sink=None):
        """Read the body that follows the head r (from read_head) into r."""
        body = bytearray()
        count = [0]

        def store(b):
            count[0] += len(b)
            if sink is not None:
                sink(b)
            else:
                body.extend(b)

        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if method == "HEAD" or 100 <= r.status < 200 or r.status in (204, 304):
            pass
        elif "chunked" in te:
            r.chunked = True
            for _ in range(1 << 30):
                line = self._read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    for _ in range(1000):
                        t = self._read_line()
                        if t in (b"\r\n", b"\n"):
                            break
                        k, _, v = t.decode("latin-1").partition(":")
                        r.trailers.append((k, v.strip()))
                    break
                self._read_exact(size, store)
                crlf = self._read_line()
                if crlf not in (b"\r\n", b"\n"):
                    raise ValueError("bad chunk end %r" % crlf)
        elif cl is not None:
            self._read_exact(int(cl), store)
        else:
            r.close_delimited = True
            while True:
                if self.buf:
                    store(self.buf)
                    self.buf = bytearray()
                if not self._fill():
                    break
        r.body = bytes(body)
        r.body_len = count[0]
        return r

    def request(self, method, target, headers=None, body=None, host="localhost", version="HTTP/1.1",
                sink=None):
        self.send(build_request(method, target, headers, body, host, version))
        return self.read_response(method, sink=sink)

    def get(self, target, **kw):
        return self.request("GET", target, **kw)

    def closed_by_peer(self, timeout=2.0):
        """True when the peer closes (EOF or RST) within timeout; any bytes
        that arrive first are kept in self.extra."""
        self.extra = bytes(self.buf)
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except ConnectionResetError:
                    return True
                if not d:
                    return True
                self.extra += d
            return False
        finally:
            self.sock.settimeout(old)


def build_request(method, target, headers=None, body=None, host="localhost", version="HTTP/1.1"):
    """Request bytes. headers is a list of (name, value); Host is added first
    unless host is None; Content-Length is added for a bytes body unless a
    Content-Length or Transfer-Encoding header is given."""
    hs = []
    if host is not None:
        hs.append(("Host", host))
    hs += list(headers or [])
    names = {k.lower() for k, _ in hs}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, target, version) + "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
    data = head.encode("latin-1")
    if body is not None:
        data += body
    return data


def read_all_until_close(sock, timeout=5, limit=1 << 24):
    """Bytes a raw socket receives until the peer closes (bounded)."""
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(data) < limit:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not d:
            break
        data += d
    return bytes(data)


def chunked_encode(pieces, trailers=()):
    out = bytearray()
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers:
        out += ("%s: %s\r\n" % (k, v)).encode()
    out += b"\r\n"
    return bytes(out)


class Sampler(threading.Thread):
    """Samples a process's RSS (KiB) every `interval` seconds; .max and .samples."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.max = 0
        self.samples = 0
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            try:
                v = rss_kib(self.pid)
            except OSError:
                break
            self.max = max(self.max, v)
            self.samples += 1
            self._stop_ev.wait(self.interval)

    def stop(self):
        self._stop_ev.set()
        self.join(5)
