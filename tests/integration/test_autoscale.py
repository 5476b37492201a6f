"""
End-to-end tests of autoscaling and alerting (issue 9): real weir, real
origins whose latency grows with their load (loadorigin.py), the real hooks
of scripts/hooks/, real process groups and signals.

  * the whole loop: a load step makes p95 cross its limit -> the scale-up
    hook starts an origin and registers it -> it passes its health check and
    takes traffic -> load drops -> weir drains one origin, the scale-down
    hook stops it, weir removes it -> 0 failed requests (figures printed)
  * a hook that hangs is killed with its process group at hook_timeout_ms
  * a hook that fails records hook_failed (and the rule's alert fires)
  * dry_run decides and records, runs nothing
  * a reload keeps cooldowns and alert states
  * not_capacity_bound: slow but idle servers are not scaled
  * hooks: environment, stdin document, no inherited descriptor
  * configuration errors with FILE:LINE; /metrics is promtool-clean
  * scripts/hooks/ are shellcheck-clean; the Kubernetes / AWS / webhook
    hooks call their tools as documented (fake kubectl / aws on PATH, a real
    HTTP receiver for the webhook)
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from healthutil import Load as PausedLoad
from adminutil import TOKEN, Admin, Load, admin_extra, parse_metrics, promtool_check
from weirtest import LOOPBACK, REPO, WEIR_BIN, HttpConn, conf, free_port, pool, route, tf, wait_until

HERE = Path(__file__).resolve().parent
HOOKS = REPO / "scripts" / "hooks"
LOADORIGIN = HERE / "loadorigin.py"

pytestmark = pytest.mark.threaded


def lc(v):
    """A Python value as libconfig text (floats keep a decimal point)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, lc(x)) for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "( " + ", ".join(lc(x) for x in v) + " )"
    raise TypeError(v)


def autoscale(rules=(), alerts=(), **kw):
    d = {"interval_ms": 250, "hook_timeout_ms": 10000}
    d.update(kw)
    if rules:
        d["rules"] = list(rules)
    if alerts:
        d["alerts"] = list(alerts)
    return "autoscale = %s;" % lc(d)


class LoadOrigin:
    """One loadorigin.py process (2 workers, 40 ms per request, FIFO queue)."""

    def __init__(self, workdir, slots=2, service_ms=40, name=""):
        self.out_path = Path(workdir) / ("loadorigin-%d.out" % time.monotonic_ns())
        self.out = open(self.out_path, "wb")
        cmd = [sys.executable, str(LOADORIGIN), "--listen", "%s:0" % LOOPBACK, "--slots", str(slots),
               "--service-ms", str(service_ms)] + (["--name", name] if name else [])
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def addr():
            m = re.search(r"listening on (\S+)", self.out_path.read_text())
            return m.group(1) if m else None
        assert wait_until(addr, tf(10)), "loadorigin did not start: %s" % self.out_path.read_text()
        self.addr = addr()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.out.close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Hook settings in weir's environment; kills whatever the local hooks
    started (by the pids they recorded) at the end."""
    state = tmp_path / "hookstate"
    state.mkdir()
    monkeypatch.setenv("WEIR_HOOK_STATE", str(state))
    monkeypatch.setenv("WEIR_HOOK_ORIGIN", "%s %s --slots 2 --service-ms 40" % (sys.executable, LOADORIGIN))
    started = []
    yield {"state": state, "started": started}
    for pf in state.glob("*.pid"):
        try:
            os.kill(int(pf.read_text().strip()), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    for o in started:
        o.stop()


def write_hook(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def get_json(admin, path):
    r = admin.get(path)
    assert r.status == 200, r
    return r.json()


def records(admin, **match):
    return [d for d in get_json(admin, "/autoscale")["decisions"]
            if all(d.get(k) == v for k, v in match.items())]


def wait_record(admin, timeout, **match):
    found = wait_until(lambda: records(admin, **match), tf(timeout), 0.1)
    assert found, "no decision %r; decisions: %s" % (match, json.dumps(get_json(admin, "/autoscale")["decisions"],
                                                                       indent=1)[-4000:])
    return found


def pool_servers(admin, name="api"):
    doc = admin.stats()
    for p in doc["pools"]:
        if p["name"] == name:
            return p["servers"]
    raise AssertionError("no pool %s" % name)


def alert(admin, name):
    """The alert's entry in GET /alerts ({"state": "missing"} before weir's
    first tick has read the configuration)."""
    for a in get_json(admin, "/alerts")["alerts"]:
        if a["name"] == name:
            return a
    return {"name": name, "state": "missing"}


def base_conf(port, aport, servers, asc, health=True, policy="round_robin", **kw):
    p = pool("api", servers, policy=policy, retries=2)
    if health:
        p["health"] = {"type": "http", "path": "/health", "interval_ms": 200, "timeout_ms": 150, "rise": 1,
                       "fall": 2}
    return conf(port, [p], log={"access": "off"}, extra=admin_extra(aport) + "\n" + asc, **kw)


# --------------------------------------------------------------------------
# the whole loop
# --------------------------------------------------------------------------

def test_scale_up_then_down_zero_failed(procs, env, tmp_path):
    o1 = LoadOrigin(tmp_path, name="o1")
    env["started"].append(o1)
    # the local hooks may stop it too, like the origins they start themselves
    (env["state"] / ("%s.pid" % o1.addr)).write_text("%d\n" % o1.proc.pid)
    port, aport = free_port(), free_port()
    rule = {
        "name": "api-latency", "pool": "api", "metric": "p95_ms", "window_ms": 2000,
        "min_servers": 1, "max_servers": 2, "warmup_ms": 15000, "drain_ms": 5000,
        "scale_up": {"above": 120.0, "for_ms": 1500, "step": 1, "cooldown_ms": 2000,
                     "hook": str(HOOKS / "local-scale-up")},
        "scale_down": {"below": 60.0, "for_ms": 3000, "step": 1, "cooldown_ms": 2000,
                       "hook": str(HOOKS / "local-scale-down")},
    }
    # least_conn: closed-loop clients keep saturated servers saturated, and
    # round robin would leave the queue where it was when the server came
    w = procs.weir(base_conf(port, aport, [o1.addr], autoscale([rule]), policy="least_conn"), port)
    admin = Admin(aport)
    assert admin.wait_ready()

    # 8 closed-loop clients on one origin: ~8 * 40 / 2 = 160 ms per request, 80 ms on two
    t_load = time.time()
    load = Load(port, 8, max_seconds=90).start()
    try:
        up = wait_record(admin, 20, action="scale_up")[0]
        t_decision = up["time_ms"] / 1000.0
        assert up["direction"] == "up" and up["servers_before"] == 1 and up["desired"] == 2
        assert up["value"] > 120 and up["threshold"] == 120
        assert all(v is None or v > 120 for v in up["values"]) and len(up["values"]) >= 4  # 1.5 s of 250 ms ticks
        assert up["inflight_per_server"] >= 1

        def new_server_serving():
            ss = [s for s in pool_servers(admin) if s["address"] != o1.addr]
            return ss and ss[0]["requests"] > 0 and ss[0]
        assert wait_until(new_server_serving, tf(20), 0.05), pool_servers(admin)
        t_serving = time.time()
        done = wait_record(admin, 20, action="scale_up", result="completed")[0]
        assert done["servers_after"] == 2 and done["hook"]["ok"] and done["hook"]["exit_code"] == 0
        assert "verified" in done["result_detail"]
        new_addr = [s["address"] for s in pool_servers(admin) if s["address"] != o1.addr][0]
        # the latency falls with two servers
        assert wait_until(lambda: (lambda r: r["value"] is not None and r["value"] < 120)(
            get_json(admin, "/autoscale")["rules"][0]), tf(15), 0.1), json.dumps(admin.stats("?window=10s"))
    finally:
        load.stop()
    failed_up = list(load.errors)
    n_up = load.sent

    # light load: two clients, ~40 ms, below 60 for 3 s -> scale down
    t_light = time.time()
    load2 = Load(port, 2, max_seconds=90).start()
    try:
        down = wait_record(admin, 30, action="scale_down")[0]
        assert down["servers_before"] == 2 and down["desired"] == 1
        done_down = wait_record(admin, 20, action="scale_down", result="completed")[0]
        assert done_down["servers_after"] == 1 and done_down["hook"]["ok"]
        victim = done_down["server"]
        assert wait_until(lambda: [s["address"] for s in pool_servers(admin)] != [o1.addr, new_addr],
                          tf(5), 0.05)
        assert len(pool_servers(admin)) == 1
        time.sleep(1.0)  # requests keep flowing on the remaining server
    finally:
        load2.stop()
    assert failed_up == [], failed_up[:5]
    # the first slow answers come after ~160 ms, then the breach must hold
    # for_ms (1.5 s), checked every 250 ms tick: target for_ms + 2 ticks
    # (+ the first answers); 1.5 s more of margin for a loaded machine
    assert t_decision - t_load < tf(2.2 + 1.5)
    assert load2.errors == [], load2.errors[:5]
    assert load2.sent > 50
    # the scale-down hook stopped exactly the drained server's origin (when it was the hook's own)
    if victim == new_addr:
        assert not (env["state"] / ("%s.pid" % victim)).exists()
    t_down = done_down["duration_ms"] / 1000.0
    figures = {
        "load_step_to_scale_up_hook_s": round(t_decision - t_load, 2),
        "scale_up_hook_to_new_server_serving_s": round(t_serving - t_decision, 2),
        "scale_up_requests": n_up, "scale_up_failed": len(failed_up),
        "light_load_to_scale_down_decision_s": round(down["time_ms"] / 1000.0 - t_light, 2),
        "scale_down_drain_hook_remove_s": round(t_down, 2),
        "scale_down_requests": load2.sent, "scale_down_failed": len(load2.errors),
    }
    print("\nautoscale figures: %s" % json.dumps(figures))
    (tmp_path.parent / "autoscale-figures.json").write_text(json.dumps(figures))
    # one error-log line per decision, with the numbers
    log = w.stderr()
    assert re.search(r"autoscale: rule 'api-latency' pool 'api': scale_up decision \d+: p95_ms [\d.]+ > 120", log)
    assert re.search(r"scale_down decision \d+: p95_ms [\d.]+ < 60", log)
    m = parse_metrics(admin.metrics())
    assert m['weir_autoscale_decisions_total{rule="api-latency",action="scale_up"}'] == 1
    assert m['weir_autoscale_decisions_total{rule="api-latency",action="scale_down"}'] == 1


# --------------------------------------------------------------------------
# hooks that hang, fail; dry run
# --------------------------------------------------------------------------

def always_up_rule(hook, **kw):
    """A rule whose scale-up breach always holds (rps > -1)."""
    r = {"name": "always", "pool": "api", "metric": "rps", "window_ms": 1000, "min_servers": 1,
         "max_servers": 3, "warmup_ms": 3000,
         "scale_up": {"above": -1.0, "for_ms": 500, "step": 1, "cooldown_ms": 60000, "hook": hook}}
    r.update(kw)
    return r


def test_hook_timeout_kills_process_group(procs, env, tmp_path):
    o1 = procs.origin("o1")
    pidfile = tmp_path / "child.pid"
    hook = write_hook(tmp_path / "hang", "sleep 300 &\necho $! > %s\necho hanging\nwait\n" % pidfile)
    port, aport = free_port(), free_port()
    procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)], hook_timeout_ms=1000),
                         health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    rec = wait_record(admin, 15, action="scale_up", result="failed")[0]
    assert "timed out after 1000 ms" in rec["hook"]["status"], rec
    assert 900 <= rec["hook"]["duration_ms"] < tf(2900)  # SIGTERM ends it: no 2 s grace needed
    assert "hanging" in rec["hook"]["output"]
    # the hook's child (same process group) was killed too
    child = int(pidfile.read_text())
    assert wait_until(lambda: not Path("/proc/%d" % child).exists() or
                      Path("/proc/%d/stat" % child).read_text().split()[2] == "Z", tf(5))
    # the rule's alert fires on the next tick
    assert wait_until(lambda: alert(admin, "always:hook_failed")["state"] == "firing", tf(3), 0.05)
    assert alert(admin, "always:hook_failed")["severity"] == "critical"


def test_hook_timeout_sigkill_after_grace(procs, env, tmp_path):
    """A hook (and its child) ignoring SIGTERM is killed 2 s later."""
    o1 = procs.origin("o1")
    pidfile = tmp_path / "child.pid"
    hook = write_hook(tmp_path / "stubborn", "trap '' TERM\nsleep 300 &\necho $! > %s\nwait\n" % pidfile)
    port, aport = free_port(), free_port()
    procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)], hook_timeout_ms=1000),
                         health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    rec = wait_record(admin, 15, action="scale_up", result="failed")[0]
    assert "timed out after 1000 ms" in rec["hook"]["status"] and "signal 9" not in rec["hook"]["status"], rec
    assert 2900 <= rec["hook"]["duration_ms"] < tf(6000), rec["hook"]
    child = int(pidfile.read_text())
    assert wait_until(lambda: not Path("/proc/%d" % child).exists() or
                      Path("/proc/%d/stat" % child).read_text().split()[2] == "Z", tf(5))


def test_scale_down_without_hook_drains_and_removes(procs, env):
    """No scale_down hook: weir picks (most recently added of the idle
    servers), drains and removes the server itself; nothing fails."""
    o1, o2, o3 = procs.origin("o1"), procs.origin("o2"), procs.origin("o3")
    rule = {"name": "idle", "pool": "api", "metric": "rps", "window_ms": 1000, "min_servers": 2,
            "max_servers": 5, "drain_ms": 3000,
            "scale_down": {"below": 1000000.0, "for_ms": 1000, "cooldown_ms": 60000}}
    port, aport = free_port(), free_port()
    procs.weir(base_conf(port, aport, [o1, o2, o3], autoscale([rule])), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    load = Load(port, 2, max_seconds=30).start()
    try:
        rec = wait_record(admin, 15, action="scale_down", result="completed")[0]
        assert rec["servers_before"] == 3 and rec["servers_after"] == 2 and rec["desired"] == 2
        assert "(no scale_down hook)" in rec["result_detail"] and "hook" not in rec, rec
        assert len(pool_servers(admin)) == 2 and rec["server"] not in [s["address"] for s in pool_servers(admin)]
        # then at_min (min_servers 2): recorded once, nothing more removed
        assert len(wait_record(admin, 10, action="skipped", reason="at_min")) == 1
        time.sleep(1.5)
        assert len(pool_servers(admin)) == 2
    finally:
        load.stop()
    assert load.errors == [] and load.sent > 50


def test_reload_removes_the_pool_while_its_hook_runs(procs, env, tmp_path):
    """A reload takes the pool (and the rule) away while a scale-up hook
    runs: the action ends as failed, the hook finishes, nothing is touched
    after it is gone (the ASan run checks it), weir keeps serving."""
    o1 = procs.origin("o1")
    hook = write_hook(tmp_path / "slow", "sleep 1.5\necho done\n")
    port, aport = free_port(), free_port()
    w = procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)]), health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    assert w.wait_log(r"scale_up hook .*/slow started", 10)
    other = conf(port, [pool("web", [o1])], log={"access": "off"}, extra=admin_extra(aport))
    start = len(w.stderr())
    w.reload(other)
    assert w.wait_log(r"configuration reloaded", 5, start)
    rec = wait_record(admin, 5, action="scale_up", result="failed")[0]
    assert "pool is gone" in rec["result_detail"], rec
    time.sleep(2.0)  # the hook ends after its action
    assert w.alive()
    assert get_json(admin, "/autoscale")["rules"] == []
    with HttpConn(port) as c:
        assert c.get("/").status == 200


def test_hook_failure_records_hook_failed(procs, env, tmp_path):
    o1 = procs.origin("o1")
    hook = write_hook(tmp_path / "fail", "echo 'no capacity left' >&2\nexit 3\n")
    port, aport = free_port(), free_port()
    w = procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)]), health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    rec = wait_record(admin, 15, action="scale_up", result="failed")[0]
    assert rec["hook"]["exit_code"] == 3 and rec["hook"]["ok"] is False
    assert "no capacity left" in rec["hook"]["output"]
    assert "hook_failed" in w.stderr()
    # no cooldown after a failure: it tries again
    assert len(wait_until(lambda: len(records(admin, action="scale_up")) >= 2 and
                          records(admin, action="scale_up"), tf(10), 0.1)) >= 2
    assert wait_until(lambda: alert(admin, "always:hook_failed")["state"] == "firing", tf(3), 0.05)
    m = parse_metrics(admin.metrics())
    assert m['weir_autoscale_decisions_total{rule="always",action="hook_failed"}'] >= 1
    assert m['weir_alert_state{alert="always:hook_failed",severity="critical"}'] == 2


def test_dry_run_runs_nothing(procs, env, tmp_path):
    o1 = procs.origin("o1")
    marker = tmp_path / "ran"
    hook = write_hook(tmp_path / "mark", "touch %s\n" % marker)
    port, aport = free_port(), free_port()
    procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)], dry_run=True), health=False),
               port)
    admin = Admin(aport)
    assert admin.wait_ready()
    rec = wait_record(admin, 10, action="skipped", reason="dry_run")[0]
    assert rec["desired"] == 2 and rec["dry_run"] is True
    time.sleep(1.5)
    assert not marker.exists()
    assert records(admin, action="scale_up") == []
    # recorded once, not on every tick
    assert len(records(admin, reason="dry_run")) == 1


def test_reload_keeps_cooldown_and_alerts(procs, env, tmp_path):
    o1 = procs.origin("o1")
    hook = write_hook(tmp_path / "ok", "exit 0\n")
    port, aport = free_port(), free_port()
    # without health checks a new server proves itself by answering; none
    # comes here, so use min/max to finish at once: max 1 -> at_max instead.
    rule = always_up_rule(hook, max_servers=1)
    al = {"name": "busy", "pool": "api", "metric": "healthy_servers", "window_ms": 1000, "below": True,
          "warning": 2.0, "for_ms": 0, "keep_firing_for_ms": 0}
    text = base_conf(port, aport, [o1], autoscale([rule], [al]), health=False)
    w = procs.weir(text, port)
    admin = Admin(aport)
    assert admin.wait_ready()
    assert wait_until(lambda: alert(admin, "busy")["state"] == "firing", tf(10), 0.1)
    assert wait_until(lambda: alert(admin, "always:at_max")["state"] == "firing", tf(10), 0.1)
    since = alert(admin, "busy")["since_ms"]
    n_rec = len(get_json(admin, "/autoscale")["decisions"])
    start = len(w.stderr())
    w.reload(text)
    assert w.wait_log(r"configuration reloaded", 5, start)
    time.sleep(1.0)
    # same alert episode: still firing, not re-fired, its age kept growing
    a = alert(admin, "busy")
    assert a["state"] == "firing" and a["since_ms"] >= since
    assert len([d for d in get_json(admin, "/autoscale")["decisions"] if d.get("alert") == "busy"]) == 1
    assert len(get_json(admin, "/autoscale")["decisions"]) == n_rec


def test_reload_keeps_cooldown(procs, env, tmp_path):
    o1 = procs.origin("o1")
    port, aport = free_port(), free_port()
    hook = write_hook(tmp_path / "ok", "exit 0\n")
    rule = always_up_rule(hook)
    text = base_conf(port, aport, [o1], autoscale([rule]), health=False)
    w = procs.weir(text, port)
    admin = Admin(aport)
    assert admin.wait_ready()
    # Traffic makes a newly added server prove itself: the hook adds a
    # server through the runtime API, so the action completes.
    hook2 = write_hook(tmp_path / "add", 'curl -fsS -X POST -H "Authorization: Bearer $WEIR_ADMIN_TOKEN" '
                       '-d "{\\"address\\": \\"%s\\"}" "$WEIR_ADMIN_URL/pools/$WEIR_POOL/servers"\n'
                       % procs.origin("o2").addr)
    rule = always_up_rule(hook2)
    text = base_conf(port, aport, [o1], autoscale([rule]), health=False)
    w.reload(text)
    load = Load(port, 2, max_seconds=30).start()
    try:
        wait_record(admin, 15, action="scale_up", result="completed")
        r = get_json(admin, "/autoscale")["rules"][0]
        assert r["scale_up"]["cooldown_left_ms"] > 50000
        start = len(w.stderr())
        w.reload(text)
        assert w.wait_log(r"configuration reloaded", 5, start)
        time.sleep(0.6)
        r = get_json(admin, "/autoscale")["rules"][0]
        assert r["scale_up"]["cooldown_left_ms"] > 45000
        assert wait_record(admin, 5, action="skipped", reason="cooldown")
    finally:
        load.stop()
    assert load.errors == []


# --------------------------------------------------------------------------
# latency without load
# --------------------------------------------------------------------------

def test_not_capacity_bound(procs, env, tmp_path):
    o1 = procs.origin("o1", "--delay-ms", "300")
    marker = tmp_path / "ran"
    hook = write_hook(tmp_path / "mark", "touch %s\n" % marker)
    alert_log = tmp_path / "alerts.log"
    ahook = write_hook(tmp_path / "alert", 'echo "$WEIR_EVENT $WEIR_ALERT $WEIR_SEVERITY" >> %s\n' % alert_log)
    port, aport = free_port(), free_port()
    rule = {"name": "lat", "pool": "api", "metric": "p95_ms", "window_ms": 2000, "min_servers": 1,
            "max_servers": 4, "alert_hook": ahook,
            "scale_up": {"above": 100.0, "for_ms": 1000, "hook": hook}}
    procs.weir(base_conf(port, aport, [o1], autoscale([rule]), health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    # one client pausing 0.5 s between requests: p95 ~300 ms, ~0.4 in flight per server
    load = PausedLoad(port, conns=1, pause=0.5, limit=tf(30), path="/").start()
    try:
        rec = wait_record(admin, 15, action="skipped", reason="not_capacity_bound")[0]
        assert rec["value"] > 100 and rec["inflight_per_server"] < 1
        assert wait_until(lambda: alert(admin, "lat:not_capacity_bound")["state"] == "firing", tf(5), 0.1)
        assert wait_until(lambda: alert_log.exists() and "alert_firing lat:not_capacity_bound warning"
                          in alert_log.read_text(), tf(5), 0.1)
    finally:
        load.stop()
    assert not marker.exists()


# --------------------------------------------------------------------------
# what a hook gets
# --------------------------------------------------------------------------

def test_hook_environment_stdin_and_fds(procs, env, tmp_path):
    o1 = procs.origin("o1")
    out = tmp_path / "hook.out"
    hook = write_hook(tmp_path / "inspect",
                      "env | grep '^WEIR_' | sort > {o}.env\n"
                      "cat > {o}.stdin\n"
                      "ls /proc/self/fd > {o}.fds\n"
                      "ps -o pgid= -p $$ > {o}.pgid\n"
                      "exit 1\n".format(o=out))
    port, aport = free_port(), free_port()
    w = procs.weir(base_conf(port, aport, [o1], autoscale([always_up_rule(hook)]), health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    wait_record(admin, 10, action="scale_up", result="failed")
    envs = dict(l.split("=", 1) for l in Path(str(out) + ".env").read_text().splitlines())
    assert envs["WEIR_EVENT"] == "scale_up" and envs["WEIR_RULE"] == "always" and envs["WEIR_POOL"] == "api"
    assert envs["WEIR_METRIC"] == "rps" and envs["WEIR_THRESHOLD"] == "-1.000"
    assert envs["WEIR_SERVERS"] == "1" and envs["WEIR_DESIRED"] == "2"
    assert envs["WEIR_ADMIN_URL"] == "http://%s:%d" % (LOOPBACK, aport)
    assert envs["WEIR_ADMIN_TOKEN"] == TOKEN
    assert re.match(r"^\d+-\d+$", envs["WEIR_DECISION_ID"])
    doc = json.loads(Path(str(out) + ".stdin").read_text())
    assert doc["event"] == "scale_up" and doc["desired"] == 2 and doc["decision_id"] == envs["WEIR_DECISION_ID"]
    assert "rps" in doc["window"] and "p95_ms" in doc["window"]
    # what a child of the hook sees: stdin/stdout/stderr and ls's own
    # directory handle, no descriptor of weir (sockets, eventfds, logs)
    fds = sorted(int(x) for x in Path(str(out) + ".fds").read_text().split())
    assert fds == [0, 1, 2, 3], fds
    # own process group, not weir's
    assert int(Path(str(out) + ".pgid").read_text()) != os.getpgid(w.pid)


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------

BAD = [
    ({"pool": "nope"}, r"unknown pool 'nope' in autoscale\.rules\[0\]\.pool"),
    ({"metric": "latency"}, r"autoscale\.rules\[0\]\.metric must be one of rps, rps_per_server"),
    ({"scale_down": {"below": 500.0}}, r"scale_up\.above \(250\) must be greater than scale_down\.below \(500\)"),
    ({"min_servers": 5, "max_servers": 2}, r"min_servers \(5\) is above max_servers \(2\)"),
    ({"scale_up": {"above": 250.0, "hook": "/etc/passwd"}}, r"hook '/etc/passwd' is not an executable file"),
    ({"target": 100.0}, r"target mode and above/below thresholds exclude each other"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[b[1][:30] for b in BAD])
def test_config_errors(tmp_path, change, message):
    rule = {"name": "r", "pool": "api", "metric": "p95_ms", "scale_up": {"above": 250.0},
            "scale_down": {"below": 80.0}}
    rule.update(change)
    text = conf(free_port(), [pool("api", ["127.0.0.1:1"])], extra=autoscale([rule]))
    path = tmp_path / "bad.conf"
    path.write_text(text)
    p = subprocess.run([WEIR_BIN, "-t", "-c", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    line = len(text[:text.index("autoscale =")].splitlines()) + 1
    assert re.search(r"%s:%d: .*%s" % (re.escape(str(path)), line, message), out), out


def test_config_valid_and_metrics_promtool(procs, env, tmp_path):
    o1 = procs.origin("o1")
    hook = write_hook(tmp_path / "ok", "exit 0\n")
    port, aport = free_port(), free_port()
    rule = {"name": "tgt", "pool": "api", "metric": "rps_per_server", "target": 1000.0, "min_servers": 1,
            "max_servers": 4, "scale_up": {"for_ms": 1000, "step_pct": 50, "hook": hook},
            "scale_down": {"for_ms": 2000, "hook": hook}}
    al = {"name": "errors", "pool": "api", "metric": "error_rate", "window_ms": 5000, "warning": 0.01,
          "critical": 0.05, "for_ms": 1000, "keep_firing_for_ms": 3000}
    procs.weir(base_conf(port, aport, [o1], autoscale([rule], [al]), health=False), port)
    admin = Admin(aport)
    assert admin.wait_ready()
    time.sleep(1.0)
    doc = get_json(admin, "/autoscale")
    assert doc["enabled"] and doc["role"] == "standalone" and doc["rules"][0]["mode"] == "target"
    assert alert(admin, "errors")["state"] == "ok"
    text = admin.metrics()
    assert 'weir_autoscale_desired_servers{rule="tgt"}' in text
    assert 'weir_alert_state{alert="errors",severity="critical"} 0' in text
    res = promtool_check(text)
    if res is None:
        pytest.skip("promtool not installed")
    rc, out = res
    assert rc == 0, out


# --------------------------------------------------------------------------
# the shipped hooks
# --------------------------------------------------------------------------

def test_hooks_shellcheck_clean():
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not installed (scripts/debian-packages.txt lists it)")
    hooks = sorted(str(p) for p in HOOKS.iterdir())
    assert len(hooks) >= 7
    p = subprocess.run([exe, "--severity=style"] + hooks + [str(REPO / "scripts" / "demo")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert p.returncode == 0, p.stdout.decode()


def fake_tool(bindir, name, log):
    p = bindir / name
    p.write_text('#!/bin/sh\necho "%s $*" >> %s\n'
                 'case "$*" in *jsonpath*) echo pod-7;; *describe-instances*) echo i-0abc;; esac\n' % (name, log))
    p.chmod(0o755)


def run_hook(name, env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([str(HOOKS / name)], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          input=b'{"event":"x"}', timeout=30)


def test_k8s_and_aws_hooks_call_their_tools(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    fake_tool(bindir, "kubectl", log)
    fake_tool(bindir, "aws", log)
    path = "%s:%s" % (bindir, os.environ["PATH"])
    common = {"PATH": path, "WEIR_DESIRED": "5", "WEIR_SERVER": "10.1.2.3:8080", "WEIR_POOL": "api"}
    assert run_hook("k8s-scale-up", dict(common, WEIR_K8S_DEPLOYMENT="api", WEIR_K8S_NAMESPACE="prod")).returncode == 0
    assert run_hook("k8s-scale-down", dict(common, WEIR_K8S_DEPLOYMENT="api")).returncode == 0
    assert run_hook("aws-scale-up", dict(common, WEIR_AWS_ASG="api-asg")).returncode == 0
    assert run_hook("aws-scale-down", dict(common, WEIR_AWS_ASG="api-asg")).returncode == 0
    calls = log.read_text().splitlines()
    assert "kubectl --namespace prod scale deployment/api --replicas=5" in calls
    assert any("status.podIP=10.1.2.3" in c for c in calls)
    assert "kubectl --namespace default annotate --overwrite pod/pod-7 " \
           "controller.kubernetes.io/pod-deletion-cost=-1000000" in calls
    assert "aws autoscaling set-desired-capacity --auto-scaling-group-name api-asg --desired-capacity 5 " \
           "--honor-cooldown" in calls
    assert "aws autoscaling terminate-instance-in-auto-scaling-group --instance-id i-0abc " \
           "--should-decrement-desired-capacity" in calls
    # a missing setting is a clear failure, not a call
    r = run_hook("k8s-scale-up", dict(common))
    assert r.returncode != 0 and b"WEIR_K8S_DEPLOYMENT" in r.stdout


def test_alert_webhook_posts_the_document():
    got = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            got.append((self.headers.get("Content-Type"), self.headers.get("Authorization"), self.rfile.read(n)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer((LOOPBACK, 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://%s:%d/hook" % (LOOPBACK, srv.server_address[1])
        r = run_hook("alert-webhook", {"WEIR_ALERT_WEBHOOK_URL": url, "WEIR_ALERT_WEBHOOK_TOKEN": "s3",
                                       "WEIR_ALERT": "api-errors", "WEIR_EVENT": "alert_firing",
                                       "WEIR_SEVERITY": "critical"})
        assert r.returncode == 0, r.stdout
    finally:
        srv.shutdown()
        srv.server_close()
    assert got == [("application/json", "Bearer s3", b'{"event":"x"}')]


# --------------------------------------------------------------------------
# several instances: the Redis leader lease
# --------------------------------------------------------------------------

@pytest.fixture
def redis(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (scripts/debian-packages.txt lists it)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    from weirtest import port_accepts
    assert wait_until(lambda: port_accepts(port), tf(10), 0.05)
    yield {"port": port, "proc": proc}
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_redis_lease_one_instance_runs_hooks(procs, env, tmp_path, redis):
    o1 = procs.origin("o1")
    runs = tmp_path / "runs.log"
    hook = write_hook(tmp_path / "count", 'echo "$WEIR_ADMIN_URL" >> %s\n' % runs)
    rule = always_up_rule(hook, warmup_ms=500)
    al = {"name": "busy", "pool": "api", "metric": "healthy_servers", "window_ms": 1000, "below": True,
          "warning": 2.0}
    red = {"address": "%s:%d" % (LOOPBACK, redis["port"]), "lease_ms": 1000, "key": "weir:test:lease"}
    weirs, admins = [], []
    for _ in range(2):
        port, aport = free_port(), free_port()
        weirs.append(procs.weir(base_conf(port, aport, [o1], autoscale([rule], [al], redis=red), health=False),
                                port))
        admins.append(Admin(aport))
        assert admins[-1].wait_ready()

    def roles():
        return sorted(get_json(a, "/autoscale")["role"] for a in admins)
    assert wait_until(lambda: roles() == ["follower", "leader"], tf(5), 0.1), roles()
    assert wait_until(lambda: runs.exists() and len(runs.read_text().splitlines()) >= 3, tf(15), 0.1)
    lines = runs.read_text().splitlines()
    assert len(set(lines)) == 1, lines  # exactly one instance ran the hook, several times
    leader = [a for a in admins if get_json(a, "/autoscale")["role"] == "leader"][0]
    follower = [a for a in admins if a is not leader][0]
    assert lines[0] == "http://%s:%d" % (LOOPBACK, leader.port)
    assert records(follower, reason="follower") and records(follower, action="scale_up") == []

    # the leader goes away: the follower takes the lease once it expires
    procs.weirs[admins.index(leader)].stop()
    assert wait_until(lambda: get_json(follower, "/autoscale")["role"] == "leader", tf(5), 0.1)
    assert wait_until(lambda: "http://%s:%d" % (LOOPBACK, follower.port) in runs.read_text(), tf(10), 0.1)

    # Redis gone: nobody runs scale hooks; alerts still fire locally
    redis["proc"].kill()
    redis["proc"].wait(10)
    assert wait_until(lambda: get_json(follower, "/autoscale")["role"] == "redis_unreachable", tf(5), 0.1)
    time.sleep(0.5)  # a hook started just before may still be finishing
    n = len(runs.read_text().splitlines())
    time.sleep(2.0)
    assert len(runs.read_text().splitlines()) == n
    assert alert(follower, "busy")["state"] == "firing"
    w = procs.weirs[1 - admins.index(leader)]
    assert w.stderr().count("unreachable for the leader lease") == 1
