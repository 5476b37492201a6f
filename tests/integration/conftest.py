"""
pytest glue for weir's end-to-end tests (the harness itself is weirtest.py).

Fixtures:
  procs   function scope: a weirtest.Procs that starts origins / weir and
          stops every one of them when the test ends.
  mprocs  the same with module scope, for a file whose tests share processes.

When a test fails, the tail of the stderr of every weir still running is added
to the report (weir's error log and, by default, its access log).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import weirtest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: 1 GiB streaming tests, skipped with WEIR_SKIP_SLOW=1")
    config.addinivalue_line("markers", "threaded: exercises weir's threads (several workers, control "
                            "thread); -m threaded runs just these for a quick TSan pass")


def pytest_collection_modifyitems(config, items):
    for item in items:
        needed = [weirtest.WEIR_BIN]
        if os.path.basename(str(item.fspath)) != "test_cli.py":
            needed.append(weirtest.ORIGIN_BIN)
        missing = [p for p in needed if not os.access(p, os.X_OK)]
        if missing:
            item.add_marker(pytest.mark.skip(reason="binary not built: " + ", ".join(missing)))
        elif weirtest.SKIP_SLOW and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.skip(reason="WEIR_SKIP_SLOW=1"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for w in list(weirtest.LIVE_WEIRS):
            rep.sections.append(("weir pid %d stderr (%s)" % (w.pid, w.err_path), w.stderr_tail()))


@pytest.fixture
def procs(tmp_path):
    p = weirtest.Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def mprocs(tmp_path_factory):
    p = weirtest.Procs(tmp_path_factory.mktemp("m"))
    try:
        yield p
    finally:
        p.close()
