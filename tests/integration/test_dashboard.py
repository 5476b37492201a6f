"""
The live dashboard (GET /dashboard on the admin listener) in a real browser.

Headless Chromium (Debian's `chromium`, /usr/bin/chromium) is driven over the
Chrome DevTools Protocol with --remote-debugging-pipe: Chromium reads
NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4,
so the test needs no websocket, no open debugging port and no pip package -
only the standard library (class Browser below).

The test starts origins with different latencies and weir with an admin
listener, opens /dashboard, sends a known load while the page polls /stats,
stops the load and then checks that

  * the page loaded, polled /stats (body[data-updates]) and shows no
    "disconnected" banner;
  * every chart drew points and its canvas has non-blank pixels;
  * the table numbers (data-value attributes) match /stats fetched at the same
    moment: requests exactly, latency percentiles within a tolerance;
  * a screenshot is written to tests/integration/artifacts/ (path printed);
  * when weir stops the page shows "disconnected" and keeps retrying, and
    when weir comes back on the same port it is live again (counters reset).

A second test shows a pool of 60 servers (the table scrolls in its own box,
the page does not widen) and then, with polling paused, feeds the page 40
minutes of snapshots: the history stays at 5 minutes of points, the DOM node
count and the JS heap stay flat, and the rates computed from the counter
deltas are right.

When Chromium is missing the test tries to install it (root + apt-get) and
is skipped, with the reason, only when that fails.
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

import weirtest
from weirtest import HttpConn, wait_until, tf

ARTIFACTS = weirtest.REPO / "tests" / "integration" / "artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


# --------------------------------------------------------------------------
# Chromium over the DevTools protocol (pipe transport)
# --------------------------------------------------------------------------

class CDPError(Exception):
    pass


class Browser:
    """One headless Chromium process and one page, driven over
    --remote-debugging-pipe. Every call is bounded in time."""

    def __init__(self, exe, width=1400, height=1000, timeout=30):
        self.exe = exe
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="weir-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        self._log = open(self.log_path, "wb")
        # fd 3: commands to Chromium; fd 4: replies and events from Chromium.
        # The child's ends are first moved to fds >= 10 (never 3 or 4), then a
        # bash puts them on 3 and 4 and execs Chromium (no preexec_fn, which
        # is unsafe in a process with threads).
        cmd_r, self._cmd_w = self._pipe_high()
        self._ev_r, ev_w = self._pipe_high()
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                "--no-default-browser-check", "--disable-dev-shm-usage",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--window-size=%d,%d" % (width, height),
                "--user-data-dir=" + self.profile, "--remote-debugging-pipe", "about:blank"]
        script = 'exec "$0" "$@" 3<&%d 4>&%d %d<&- %d>&-' % (cmd_r, ev_w, cmd_r, ev_w)
        self.proc = subprocess.Popen(["/bin/bash", "-c", script] + args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, pass_fds=(cmd_r, ev_w), start_new_session=True)
        os.close(cmd_r)
        os.close(ev_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._replies = {}
        self._events = []
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session = None
        try:
            self.version = self.call("Browser.getVersion")
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.page("Page.enable")
            self.page("Runtime.enable")
            self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except Exception:
            self.close()
            raise

    # -- transport --------------------------------------------------------

    @staticmethod
    def _pipe_high():
        r, w = os.pipe()
        hr = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10)
        hw = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(r)
        os.close(w)
        return hr, hw

    def _read_loop(self):
        buf = bytearray()
        while True:
            try:
                d = os.read(self._ev_r, 1 << 20)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
            while True:
                i = buf.find(b"\0")
                if i < 0:
                    break
                msg = json.loads(bytes(buf[:i]))
                del buf[:i + 1]
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self._events.append(msg)
                        del self._events[:-1000]  # bounded
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method, session=None, timeout=None, **params):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:
                n = os.write(self._cmd_w, data)
                data = data[n:]
        except OSError as e:
            raise CDPError("%s: cannot write to Chromium: %s\n%s" % (method, e, self.log_tail()))
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CDPError("%s: %s\n%s" % (method, "Chromium exited" if self._closed else "no reply",
                                                    self.log_tail()))
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError("%s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    def page(self, method, timeout=None, **params):
        return self.call(method, session=self.session, timeout=timeout, **params)

    def events(self, method=None):
        with self._cond:
            return [e for e in self._events if method is None or e.get("method") == method]

    # -- page helpers -----------------------------------------------------

    def navigate(self, url, timeout=None):
        r = self.page("Page.navigate", url=url)
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        ok = wait_until(lambda: self.eval("document.readyState") == "complete", timeout or self.timeout, 0.05)
        if not ok:
            raise CDPError("navigate %s: page did not finish loading" % url)

    def eval(self, expr, await_promise=False, timeout=None):
        r = self.page("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=await_promise,
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError("JS exception in %r: %s" % (expr[:200], d.get("exception", {}).get("description")
                                                       or d.get("text")))
        return r["result"].get("value")

    def screenshot(self, path, full_page=False):
        params = {"format": "png"}
        if full_page:
            m = self.page("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.page("Page.captureScreenshot", timeout=60, **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def console_errors(self):
        out = []
        for e in self.events("Runtime.exceptionThrown"):
            d = e["params"]["exceptionDetails"]
            out.append(d.get("exception", {}).get("description") or d.get("text"))
        for e in self.events("Runtime.consoleAPICalled"):
            if e["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in e["params"]["args"]))
        return out

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self):
        try:
            if self.proc.poll() is None and not self._closed:
                try:
                    self.call("Browser.close", timeout=5)
                except CDPError:
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, 9)
                except OSError:
                    pass
                self.proc.wait(timeout=10)
        finally:
            for fd in (self._cmd_w, self._ev_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._reader.join(5)
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# --------------------------------------------------------------------------
# finding (or installing) Chromium
# --------------------------------------------------------------------------

def _find_chromium():
    env = os.environ.get("WEIR_CHROMIUM")
    for c in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if c and os.access(c, os.X_OK):
            return c
    return None


def _install_chromium():
    """apt-get install chromium (as CI does from scripts/debian-packages.txt).
    Returns None on success, else why it failed."""
    if os.geteuid() != 0:
        return "not root, cannot apt-get install chromium"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "chromium", "fonts-dejavu-core"]
    try:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=600)
            r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "apt-get install chromium: %s" % e
    if r.returncode != 0:
        return "apt-get install chromium failed: %s" % r.stderr.decode(errors="replace")[-500:]
    return None


@pytest.fixture(scope="module")
def chromium():
    exe = _find_chromium()
    if exe is None:
        print("\ntest_dashboard: chromium not found, trying apt-get install chromium ...")
        why = _install_chromium()
        exe = _find_chromium()
        if exe is None:
            why = why or "chromium still not found after installing it"
            print("test_dashboard: SKIP: " + why)
            pytest.skip("headless Chromium not available: " + why)
    return exe


@pytest.fixture
def browser(chromium):
    b = Browser(chromium, width=1400, height=1000, timeout=tf(30))
    try:
        yield b
    finally:
        b.close()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

TOKEN = "change-me"


def admin_conf(port, admin_port, pools, routes=None, **kw):
    extra = 'admin = { address = "127.0.0.1:%d"; token = "%s"; };' % (admin_port, TOKEN)
    return weirtest.conf(port, pools, routes=routes, extra=extra, **kw)


def admin_get(admin_port, target, timeout=5):
    c = HttpConn(admin_port, timeout=timeout)
    try:
        return c.request("GET", target, headers=[("Authorization", "Bearer " + TOKEN), ("Connection", "close")])
    finally:
        c.close()


def get_stats(admin_port):
    r = admin_get(admin_port, "/stats")
    assert r.status == 200, r
    return r.json()


def run_load(port, plan, threads=4, seconds=4.0):
    """Send every (path, count) of plan over `threads` keep-alive connections,
    spread over about `seconds`. Returns {status: count}."""
    jobs = [p for p, n in plan for _ in range(n)]
    per = [jobs[i::threads] for i in range(threads)]
    statuses = {}
    lock = threading.Lock()
    errors = []

    def worker(paths):
        gap = seconds / max(1, len(paths))
        c = None
        try:
            for path in paths:
                t = time.monotonic()
                for attempt in range(3):
                    try:
                        if c is None:
                            c = HttpConn(port, timeout=tf(10))
                        r = c.request("GET", path)
                        break
                    except (OSError, weirtest.PeerClosed, ValueError):
                        if c:
                            c.close()
                        c = None
                        if attempt == 2:
                            raise
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.header("Connection", "").lower() == "close":
                    c.close()
                    c = None
                left = gap - (time.monotonic() - t)
                if left > 0:
                    time.sleep(left)
        except Exception as e:  # reported by the test
            errors.append(repr(e))
        finally:
            if c:
                c.close()

    ts = [threading.Thread(target=worker, args=(p,), daemon=True) for p in per]
    for t in ts:
        t.start()
    for t in ts:
        t.join(tf(120))
    assert not errors, errors
    return statuses


def wait_updates(b, n, timeout):
    """Wait until the page has polled /stats successfully `n` times in total."""
    ok = wait_until(lambda: int(b.eval("document.body.dataset.updates || 0")) >= n, timeout, 0.1)
    return int(b.eval("document.body.dataset.updates || 0")) if ok else ok


# Everything the test compares, read from the DOM in one go.
READ_DOM_JS = r"""
(() => {
  const v = e => e ? e.getAttribute('data-value') : null;
  const cells = tr => {
    const o = {};
    tr.querySelectorAll('td[data-field]').forEach(td => {
      o[td.dataset.field] = {value: td.getAttribute('data-value'), text: td.textContent.trim(),
                             window: td.getAttribute('data-window')};
    });
    return o;
  };
  const rows = sel => { const o = {}; document.querySelectorAll(sel).forEach(tr => {
      o[tr.dataset.server || tr.dataset.pool || tr.dataset.route] = cells(tr); }); return o; };
  const canvases = {};
  const rgb = name => {   // a theme colour (#rrggbb) as [r, g, b]
    const h = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return [1, 3, 5].map(i => parseInt(h.substr(i, 2), 16));
  };
  document.querySelectorAll('canvas[data-chart]').forEach(c => {
    let painted = 0, series = 0;
    const spec = weirDashboard.charts.find(s => s.id === c.dataset.chart);
    const want = rgb(spec.series()[0].color);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 0) painted++;
      if (d[i + 3] > 200 && Math.abs(d[i] - want[0]) < 30 && Math.abs(d[i + 1] - want[1]) < 30 &&
          Math.abs(d[i + 2] - want[2]) < 30) series++;
    }
    const colours = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) if (d[i + 3] > 200) colours.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
    canvases[c.dataset.chart] = {points: +c.dataset.points, draws: +c.dataset.draws, painted: painted, series: series,
                                 colours: colours.size, width: c.width, height: c.height};
  });
  const banner = document.getElementById('banner');
  return {
    updates: +document.body.dataset.updates, state: document.body.dataset.state,
    statsTime: +document.body.dataset.statsTime, banner: !banner.hidden,
    version: v(document.getElementById('version')), workers: v(document.getElementById('workers')),
    uptime: v(document.getElementById('uptime')),
    g: {requests: v(document.getElementById('g-requests')), rps: v(document.getElementById('g-rps')),
        error_rate: v(document.getElementById('g-error-rate')),
        client_active: v(document.getElementById('g-client-active')), client_idle: v(document.getElementById('g-client-idle')),
        upstream_active: v(document.getElementById('g-upstream-active')),
        upstream_idle: v(document.getElementById('g-upstream-idle'))},
    pools: rows('tr[data-pool]'), servers: rows('tr[data-server]'), routes: rows('tr[data-route]'),
    canvases: canvases,
    rpsMax: Math.max(0, ...(weirDashboard.history.cols.get('rps.total') || []).filter(x => x != null)),
    latPoints: (weirDashboard.history.cols.get('lat.p99') || []).filter(x => x != null).length,
    docWidth: document.documentElement.scrollWidth, viewWidth: document.documentElement.clientWidth,
  };
})()
"""


def close_enough(shown, real, rel=0.02, abs_ms=0.05):
    return abs(shown - real) <= max(abs_ms, rel * abs(real))


def screenshot(b, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / ("%s-%s.png" % (name, time.strftime("%Y%m%d-%H%M%S")))
    b.screenshot(str(path), full_page=True)
    print("\ndashboard screenshot: %s" % path)
    return path


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------

def test_dashboard_live(procs, browser):
    fast = procs.origin("fast")
    mid = procs.origin("mid", "--delay-ms", "4", "--jitter-ms", "4")
    slow = procs.origin("slow", "--delay-ms", "25", "--jitter-ms", "10")
    port, admin_port = weirtest.free_port(), weirtest.free_port()
    hc = {"type": "http", "path": "/health", "interval_ms": 300, "timeout_ms": 200}
    pools = [weirtest.pool("api", [fast, mid], health=hc),
             weirtest.pool("slow", [slow], policy="least_conn")]
    routes = [weirtest.route("slow", path_prefix="/slow/"), weirtest.route("api")]
    text = admin_conf(port, admin_port, pools, routes, workers=2)
    w = procs.weir(text, port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05), "admin port not listening"

    # the page weir serves is this repository's src/dashboard.html
    r = admin_get(admin_port, "/dashboard")
    assert r.status == 200, r
    assert (r.header("Content-Type") or "").startswith("text/html"), r
    page = (weirtest.REPO / "src" / "dashboard.html").read_bytes()
    assert r.body == page, "weir serves another dashboard.html than src/dashboard.html: rebuild src/weir"
    for bad in (b"<script src", b"<link ", b"@import", b"url(http", b"src=\"http", b"href=\"http"):
        assert bad not in page.lower(), "the page loads something from outside: %r" % bad

    browser.navigate("http://127.0.0.1:%d/dashboard" % admin_port)
    assert browser.eval("document.title").startswith("weir"), "page did not load"
    assert wait_updates(browser, 2, tf(15)), "the page did not poll /stats:\n%s" % browser.eval(
        "document.body.outerHTML.slice(0, 2000)")
    assert browser.eval("document.body.dataset.state") == "live"

    # known load while the page polls: 300 to api, 60 to slow, over ~4 s
    plan = [("/", 150), ("/users/1", 150), ("/slow/report", 60)]
    statuses = run_load(port, plan, threads=4, seconds=tf(4))
    sent = sum(n for _, n in plan)
    assert statuses == {200: sent}, statuses

    # load stopped: the counters stay put; let the page take >= 2 more polls
    before = get_stats(admin_port)
    assert before["global"]["requests"] >= sent, before["global"]
    n0 = int(browser.eval("document.body.dataset.updates"))
    assert wait_updates(browser, n0 + 2, tf(10)), "page stopped polling"

    dom = browser.eval(READ_DOM_JS)
    stats = get_stats(admin_port)
    errors = browser.console_errors()
    assert not errors, "JavaScript errors on the page: %s" % errors
    shot = screenshot(browser, "dashboard")
    assert shot.stat().st_size > 20000, "screenshot suspiciously small: %s" % shot

    # header
    assert dom["state"] == "live" and not dom["banner"], dom
    assert dom["version"] == stats["version"]
    assert int(dom["workers"]) == stats["workers"] == 2
    assert int(dom["g"]["requests"]) == stats["global"]["requests"]
    assert abs(float(dom["uptime"]) - stats["uptime_s"]) < 5
    for k in ("client_active", "client_idle", "upstream_active", "upstream_idle"):
        assert dom["g"][k] is not None and int(dom["g"][k]) >= 0, (k, dom["g"])
    assert float(dom["g"]["error_rate"]) == 0.0, dom["g"]

    # charts: drawn, with points and visible pixels in several colours
    for name in ("rps", "latency", "errors"):
        c = dom["canvases"].get(name)
        assert c, "chart %s missing: %s" % (name, dom["canvases"])
        assert c["width"] > 200 and c["height"] > 100, c
        assert c["draws"] >= 3 and c["points"] >= 3, (name, c)
        assert c["painted"] > 2000 and c["colours"] >= 2, (name, c)
        assert c["series"] >= 6, "no line of the first series on chart %s: %s" % (name, c)
    assert dom["rpsMax"] > 10, "requests/s chart never saw the load: %s" % dom["rpsMax"]
    assert dom["latPoints"] >= 2, dom["latPoints"]

    # table: every pool and server of /stats, numbers equal to /stats
    assert set(dom["pools"]) == {p["name"] for p in stats["pools"]}
    want_servers = {"%s/%s" % (p["name"], s["address"]): (p, s) for p in stats["pools"] for s in p["servers"]}
    assert set(dom["servers"]) == set(want_servers), (sorted(dom["servers"]), sorted(want_servers))

    def check_row(label, cells, c):
        assert int(cells["requests"]["value"]) == c["requests"], (label, cells["requests"], c["requests"])
        for q in ("p50", "p95", "p99"):
            win = cells[q]["window"]
            lat = c["latency_ms"][win]
            if lat["count"] == 0:
                assert cells[q]["value"] == "" and cells[q]["text"] == "–", (label, q, cells[q])
            else:
                shown = float(cells[q]["value"])
                assert close_enough(shown, lat[q]), (label, q, win, shown, lat[q])
                assert cells[q]["text"].endswith("ms") or cells[q]["text"].endswith("s"), cells[q]

    total = 0
    for p in stats["pools"]:
        check_row(p["name"], dom["pools"][p["name"]], p)
        total += p["requests"]
    assert total == stats["global"]["requests"]
    for key, (p, s) in want_servers.items():
        cells = dom["servers"][key]
        check_row(key, cells, s)
        assert cells["state"]["value"] == s["state"], (key, cells["state"], s["state"])
        assert cells["admin_state"]["value"] == s["admin_state"], key
        assert int(cells["weight"]["value"]) == s["weight"], key
        assert int(cells["active"]["value"]) == s["active"], key
        assert int(cells["errors"]["value"]) == s["errors"], key
        h = s["health"]
        if h["checked"]:
            assert cells["health"]["value"] == ("ok" if h["last_ok"] else "fail"), (key, cells["health"], h)
            assert h["last_detail"] in cells["health"]["text"], (key, cells["health"], h)
    # the api servers were health-checked and pass; both pools took their share
    for o in (fast, mid):
        cells = dom["servers"]["api/" + o.addr]
        assert cells["state"]["value"] == "up" and cells["health"]["value"] == "ok", cells
    assert int(dom["pools"]["api"]["requests"]["value"]) == 300
    assert int(dom["pools"]["slow"]["requests"]["value"]) == 60
    # the slow pool's latency is visibly the slow origin's
    assert float(dom["pools"]["slow"]["p50"]["value"]) >= 20, dom["pools"]["slow"]["p50"]
    for r in stats["routes"]:
        cells = dom["routes"]["%s %s" % (r["host"], r["path_prefix"])]
        assert int(cells["requests"]["value"]) == r["requests"], (r["path_prefix"], cells["requests"])

    # the page fits the window (the wide table scrolls inside its box)
    assert dom["docWidth"] <= dom["viewWidth"] + 1, (dom["docWidth"], dom["viewWidth"])

    # weir goes away: "disconnected" banner, polling goes on; weir comes
    # back on the same ports: live again, counters from zero
    w.stop()
    assert wait_until(lambda: browser.eval("document.body.dataset.state") == "disconnected", tf(10), 0.1), \
        "no disconnected state after weir stopped"
    assert browser.eval("!document.getElementById('banner').hidden")
    fails0 = int(browser.eval("document.body.dataset.failures || 0"))
    assert wait_until(lambda: int(browser.eval("document.body.dataset.failures || 0")) >= fails0 + 2, tf(10), 0.1), \
        "the page stopped retrying"
    screenshot(browser, "dashboard-disconnected")
    n1 = int(browser.eval("document.body.dataset.updates"))
    procs.weir(text, port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05)
    assert wait_updates(browser, n1 + 2, tf(15)), "no reconnect after weir came back"
    dom = browser.eval(READ_DOM_JS)
    assert dom["state"] == "live" and not dom["banner"]
    assert int(dom["g"]["requests"]) == get_stats(admin_port)["global"]["requests"] < sent
    assert not browser.console_errors()


def test_dashboard_many_servers_and_bounded_memory(procs, browser):
    """A pool of 60 servers (59 down: nothing listens there), then 40 minutes
    of snapshots fed to the page: history, DOM and heap stay bounded, and the
    rates computed from the counter deltas are right."""
    port, admin_port = weirtest.free_port(), weirtest.free_port()
    o = procs.origin("one")
    dead = set()
    for _ in range(1000):  # distinct free ports (free_port() may repeat one)
        if len(dead) == 59:
            break
        p = weirtest.free_port()
        if p not in (port, admin_port, o.port):
            dead.add(p)
    dead = ["127.0.0.1:%d" % p for p in sorted(dead)]
    pools = [weirtest.pool("big", [o] + dead, health={"type": "tcp", "interval_ms": 500})]
    procs.weir(admin_conf(port, admin_port, pools), port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05)
    browser.navigate("http://127.0.0.1:%d/dashboard" % admin_port)
    assert wait_updates(browser, 3, tf(15))
    dom = browser.eval(READ_DOM_JS)
    assert len(dom["servers"]) == 60, len(dom["servers"])
    assert dom["docWidth"] <= dom["viewWidth"] + 1
    # the server table scrolls inside its own box instead of stretching the page
    box = browser.eval("(() => { const b = document.querySelector('#pools-card .table-box');"
                       " return [b.scrollHeight, b.clientHeight]; })()")
    assert box[0] > box[1], box
    screenshot(browser, "dashboard-many-servers")

    # stop polling, then feed 10 + 30 minutes of snapshots, 1 per second
    browser.eval("weirDashboard.pause()")
    time.sleep(tf(1.5))
    base = get_stats(admin_port)
    browser.eval("window.__base = %s" % json.dumps(base))
    nodes0 = browser.eval("document.getElementsByTagName('*').length")
    feed = r"""
    (() => {
      const s = JSON.parse(JSON.stringify(window.__base));
      const t0 = s.time_ms;
      for (let i = 1; i <= %d; i++) {
        s.time_ms = t0 + i * 1000; s.uptime_s += 1;
        s.global.requests += 100; s.global.responses['2xx'] += 95; s.global.responses['5xx'] += 5;
        s.global.latency_ms['10s'] = {count: 1000, p50: 5 + (i %% 7), p90: 9, p95: 12, p99: 20 + (i %% 13), p999: 30, max: 40, mean: 6};
        s.pools[0].requests += 100;
        weirDashboard.ingest(structuredClone(s));
      }
      const h = weirDashboard.history;
      let longest = 0; h.cols.forEach(a => { longest = Math.max(longest, a.length); });
      return {points: h.t.length, cols: h.cols.size, longest: longest,
              span: h.t[h.t.length - 1] - h.t[0], nodes: document.getElementsByTagName('*').length};
    })()
    """
    r1 = browser.eval(feed % 600, timeout=tf(120))
    browser.page("HeapProfiler.collectGarbage")
    heap1 = browser.page("Runtime.getHeapUsage")["usedSize"]
    t = time.monotonic()
    r2 = browser.eval(feed % 1800, timeout=tf(300))
    print("1800 snapshots rendered in %.1f s" % (time.monotonic() - t))
    browser.page("HeapProfiler.collectGarbage")
    heap2 = browser.page("Runtime.getHeapUsage")["usedSize"]
    limits = browser.eval("weirDashboard.limits")
    print("\nafter 10 min: %s heap %d KiB; after 40 min: %s heap %d KiB" % (r1, heap1 // 1024, r2, heap2 // 1024))
    for r in (r1, r2):
        assert r["points"] <= limits["HISTORY_MS"] / 1000 + 5, r
        assert r["longest"] == r["points"], r
        assert r["span"] <= limits["HISTORY_MS"] + 3000, r
    assert r2["cols"] == r1["cols"], (r1, r2)
    assert r2["nodes"] == r1["nodes"] == nodes0, (nodes0, r1, r2)
    assert heap2 < heap1 + 2 * 1024 * 1024, (heap1, heap2)
    # each fed second had 100 requests, 5 of them 5xx
    assert float(browser.eval("document.getElementById('g-rps').dataset.value")) == pytest.approx(100)
    assert float(browser.eval("document.getElementById('g-error-rate').dataset.value")) == pytest.approx(0.05)
    assert browser.eval("document.querySelector('#chart-rps').dataset.points") != "0"
    assert not browser.console_errors()


def test_dashboard_autoscale_panel_markers_and_history(procs, browser, tmp_path):
    """Autoscale on the page (issue 9): the rules and alerts panel, markers
    on the request and latency charts at scale actions and alert
    transitions, and the history weir keeps (GET /history) replayed when the
    page opens, so the charts are not empty after traffic the page missed."""
    o = procs.origin("one", "--delay-ms", "2")
    port, admin_port = weirtest.free_port(), weirtest.free_port()
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\necho scaled\nexit 0\n")
    hook.chmod(0o755)
    # a rule whose scale-up breach always holds (rps > -1): its hook adds no
    # server, so each action fails after warmup_ms and is tried again; an
    # alert firing at once (healthy_servers < 2)
    asc = ('autoscale = { interval_ms = 250; rules = ( { name = "always"; pool = "api"; metric = "rps"; '
           'window_ms = 1000; min_servers = 1; max_servers = 3; warmup_ms = 500; '
           'scale_up = { above = -1.0; for_ms = 500; cooldown_ms = 1000; hook = "%s"; }; } ); '
           'alerts = ( { name = "few-servers"; pool = "api"; metric = "healthy_servers"; window_ms = 1000; '
           'below = true; warning = 2.0; critical = 0.5; } ); };' % hook)
    text = admin_conf(port, admin_port, [weirtest.pool("api", [o])]) + "\n" + asc + "\n"
    procs.weir(text, port=port)
    assert wait_until(lambda: weirtest.port_accepts(admin_port), tf(10), 0.05)
    # traffic before the page is open
    statuses = run_load(port, [("/", 200)], threads=2, seconds=tf(4))
    assert statuses == {200: 200}, statuses
    # one point a second: the last one has all the requests within ~1 s
    assert wait_until(lambda: admin_get(admin_port, "/history").json()["points"][-1]["global"]["requests"] >= 200,
                      tf(3), 0.1)
    hist = admin_get(admin_port, "/history").json()
    assert hist["interval_ms"] == 1000 and len(hist["points"]) >= 4, hist

    browser.navigate("http://127.0.0.1:%d/dashboard" % admin_port)
    assert wait_updates(browser, 1, tf(15))
    seeded = int(browser.eval("document.body.dataset.historyPoints || 0"))
    assert seeded >= 4, seeded
    # the replayed points carry the load the page never polled
    rps_max = browser.eval("Math.max(0, ...weirDashboard.history.cols.get('rps.total').filter(v => v != null))")
    assert rps_max > 0.5 * 200 / tf(4), rps_max  # 200 requests spread over tf(4) s
    assert wait_until(lambda: int(browser.eval("document.body.dataset.autoscaleUpdates || 0")) >= 1, tf(10), 0.1)
    assert wait_until(lambda: int(browser.eval("document.querySelector('#chart-rps').dataset.markers || 0")) >= 2,
                      tf(10), 0.1)
    panel = browser.eval(r"""
    (() => {
      const row = sel => { const tr = document.querySelector(sel); if (!tr) return null; const o = {};
        tr.querySelectorAll('td[data-field]').forEach(td => { o[td.dataset.field] = {text: td.textContent.trim(),
          value: td.getAttribute('data-value')}; }); return o; };
      return {hidden: document.getElementById('as-card').hidden, rule: row('tr[data-rule="always"]'),
              alert: row('tr[data-alert="few-servers"]'),
              decisions: Array.from(document.querySelectorAll('#as-decisions li')).map(li => li.textContent),
              markers: weirDashboard.markers().map(m => m.kind),
              latMarkers: +document.querySelector('#chart-latency').dataset.markers,
              errMarkers: document.querySelector('#chart-errors').dataset.markers};
    })()""")
    assert panel["hidden"] is False, panel
    assert panel["rule"]["pool"]["text"] == "api" and panel["rule"]["metric"]["text"] == "rps", panel
    assert panel["rule"]["servers"]["text"].startswith("1 → "), panel
    assert panel["alert"]["state"]["value"] == "firing" and "warning" in panel["alert"]["state"]["text"], panel  # 1 < 2, not < 0.5
    assert any("scale_up" in d for d in panel["decisions"]), panel["decisions"]
    assert "alert_firing" in panel["markers"] and "scale_up" in panel["markers"], panel["markers"]
    assert panel["latMarkers"] >= 2 and panel["errMarkers"] == "0", panel
    assert not browser.console_errors()
    screenshot(browser, "dashboard-autoscale")
