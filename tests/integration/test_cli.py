"""The command line: -v, -h, -t (config check with FILE:LINE errors), and a
bad config given to -c must not start a listener."""

import re
import subprocess

import pytest

from weirtest import WEIR_BIN, conf, free_port, pool, port_accepts, tf


def run(*args, timeout=10):
    return subprocess.run([WEIR_BIN] + list(args), capture_output=True, timeout=tf(timeout),
                          stdin=subprocess.DEVNULL)


def test_version():
    p = run("-v")
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0, out
    assert "weir" in out.lower()
    assert re.search(r"\d+\.\d+\.\d+", out), out


def test_help():
    p = run("-h")
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0, out
    assert "-c" in out and "-t" in out, out


def test_unknown_option_fails():
    p = run("--no-such-option")
    assert p.returncode != 0


def test_check_good_config(tmp_path):
    f = tmp_path / "good.conf"
    port = free_port()
    f.write_text(conf(port, [pool("api", [("127.0.0.1:9001", 1), ("127.0.0.1:9002", 3)],
                                  policy="weighted_round_robin", retries=2)]))
    p = run("-t", "-c", str(f))
    assert p.returncode == 0, p.stderr.decode()
    # -t only checks: nothing listens afterwards
    assert not port_accepts(port)


GOOD_HEAD = """workers = 1;
listen = ( { address = "127.0.0.1:%(port)d"; } );
timeouts = { connect_ms = 2000; client_header_ms = 10000; upstream_response_ms = 30000; idle_ms = 60000; };
limits = { header_bytes = 32768; max_connections = 20000; };
log = { access = "stderr"; format = "combined"; level = "info"; };
"""

# Each case: (id, text after GOOD_HEAD, 1-based line numbers that must be reported).
# GOOD_HEAD is 5 lines, so the text below starts on line 6.
BAD = [
    ("unknown_key",
     'pools = ( { name = "api"; policy = "round_robin"; servers = ( { address = "127.0.0.1:9001"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n'
     'frobnicate = 7;\n',
     [8]),
    ("unknown_key_in_pool",
     'pools = (\n'
     '  { name = "api"; policy = "round_robin";\n'
     '    colour = "blue";\n'
     '    servers = ( { address = "127.0.0.1:9001"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n',
     [8]),
    ("bad_server_address",
     'pools = ( { name = "api"; policy = "round_robin";\n'
     '  servers = ( { address = "127.0.0.1:99999"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n',
     [7]),
    ("route_to_unknown_pool",
     'pools = ( { name = "api"; policy = "round_robin"; servers = ( { address = "127.0.0.1:9001"; } ); } );\n'
     'routes = (\n'
     '  { host = "*"; path_prefix = "/"; pool = "nope"; }\n'
     ');\n',
     [8]),
    ("weight_zero",
     'pools = ( { name = "api"; policy = "weighted_round_robin"; servers = (\n'
     '  { address = "127.0.0.1:9001"; weight = 1; },\n'
     '  { address = "127.0.0.1:9002"; weight = 0; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n',
     [8]),
    ("duplicate_pool",
     'pools = (\n'
     '  { name = "api"; policy = "round_robin"; servers = ( { address = "127.0.0.1:9001"; } ); },\n'
     '  { name = "api"; policy = "round_robin"; servers = ( { address = "127.0.0.1:9002"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n',
     [8]),
    ("unknown_policy",
     'pools = ( { name = "api"; policy = "fastest"; servers = ( { address = "127.0.0.1:9001"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n',
     [6]),
    ("syntax_error",
     'pools = ( { name = "api"; policy = "round_robin"; servers = ( { address = "127.0.0.1:9001"; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api" } ) ;;; = \n',
     [7]),
    ("two_errors_both_reported",
     'pools = ( { name = "api"; policy = "round_robin"; servers = (\n'
     '  { address = "127.0.0.1:9001"; weight = 0; } ); } );\n'
     'routes = ( { host = "*"; path_prefix = "/"; pool = "api"; } );\n'
     'frobnicate = 7;\n',
     [7, 9]),
]


@pytest.mark.parametrize("name,body,lines", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config(tmp_path, name, body, lines):
    f = tmp_path / ("%s.conf" % name)
    f.write_text(GOOD_HEAD % {"port": free_port()} + body)
    p = run("-t", "-c", str(f))
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, "exit %d, stderr:\n%s" % (p.returncode, err)
    rx = re.compile(r"^%s:(\d+): \S" % re.escape(str(f)), re.M)
    reported = sorted({int(m.group(1)) for m in rx.finditer(err)})
    assert reported, "no FILE:LINE: error in stderr:\n" + err
    for ln in lines:
        assert ln in reported, "line %d not reported; got lines %r:\n%s" % (ln, reported, err)


def test_check_missing_file(tmp_path):
    p = run("-t", "-c", str(tmp_path / "does-not-exist.conf"))
    assert p.returncode == 1
    assert p.stderr.strip(), "no error message for a missing file"


def test_run_with_bad_config_does_not_start(tmp_path):
    port = free_port()
    f = tmp_path / "bad.conf"
    f.write_text(GOOD_HEAD % {"port": port} + BAD[4][1])  # weight 0
    p = subprocess.Popen([WEIR_BIN, "-c", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=tf(10))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("weir kept running with a bad config")
    assert p.returncode == 1, err.decode()
    assert re.search(r"%s:8: " % re.escape(str(f)), err.decode()), err.decode()
    assert not port_accepts(port)


def test_shipped_example_config_is_valid():
    from weirtest import REPO
    f = REPO / "conf" / "weir.conf"
    if not f.exists():
        pytest.skip("conf/weir.conf not written yet")
    p = run("-t", "-c", str(f))
    assert p.returncode == 0, p.stderr.decode()
