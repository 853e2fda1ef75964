"""Fixtures shared by slipway's tests and the example app's tests.

In CI (``CI=true``) an integration test must not be skipped: a missing system package
there is a broken CI setup, not a reason to pass. Outside CI such tests skip with the
reason, so a laptop without nginx or sshd can still run the rest.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "codeframe-mini"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The deployer's own state (the audit heads it has seen) stays inside the test run.
os.environ["SLIPWAY_STATE_HOME"] = tempfile.mkdtemp(prefix="slipway-state-")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if "integration" in r.keywords]
    if skipped:
        names = ", ".join(r.nodeid for r in skipped)
        reporter.write_line(f"CI=true: {len(skipped)} integration test(s) skipped: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
