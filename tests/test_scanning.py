"""Dependency vulnerability scanning (``security:python``, ``security:npm``) from recorded
scanner outputs: no network, no pip-audit or npm needed. The scanner runner is injected,
so each test sees exactly the argv the gate would execute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slipway import gates, scanning
from slipway.config import validate_config
from slipway.config.load import LoadedConfig
from slipway.errors import ConfigError
from slipway.scanning import RunResult

DATA = Path(__file__).parent / "data" / "advisories"
PY_ADVISORY = "GHSA-9wx4-h78v-vm56"  # requests 2.31.0, alias CVE-2024-35195
NPM_HIGH = "GHSA-35jh-r3h4-6jhm"  # lodash, high
NPM_LOW = "GHSA-v6h2-p8h4-qcjw"  # brace-expansion, low


class Recorded:
    """A runner answering each scanner (by argv[0]) with a recorded output file."""

    def __init__(self, pip: str = "pip-audit-clean.json", npm: str = "npm-audit-high-low.json"):
        self.outputs = {"pip-audit": pip, "npm": npm}
        self.calls: list[tuple[list[str], Path]] = []

    def __call__(self, argv: list[str], cwd: Path) -> RunResult:
        self.calls.append((argv, cwd))
        name = self.outputs[argv[0]]
        # Both scanners exit 1 when they report a vulnerability (or fail), 0 when clean.
        return RunResult(0 if "clean" in name else 1, (DATA / name).read_text())


def project(tmp_path: Path, **security: Any) -> LoadedConfig:
    """A backend with a requirements lock and a frontend with a package-lock.json."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "requirements.lock").write_text("requests==2.31.0\n")
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "package-lock.json").write_text("{}")
    raw = {
        "project": {"name": "tiny"},
        "processes": {
            "backend": {
                "kind": "python",
                "requirements": "requirements.lock",
                "start": ["python", "-m", "tiny"],
                "port": "backend",
            },
            "frontend": {
                "kind": "node",
                "workdir": "web",
                "start": ["node", "server.js"],
                "port": "frontend",
            },
        },
        "environments": {"staging": {"root": "/srv/tiny"}},
        "gates": {"commands": {}, "frontend_build": False, "security": security},
    }
    return LoadedConfig(validate_config(raw), tmp_path / "slipway.toml")


def gate_named(found: list[gates.Gate], name: str) -> gates.Gate:
    (gate,) = [g for g in found if g.name == name]
    return gate


def test_high_npm_advisory_fails_at_high_and_passes_at_critical(tmp_path: Path):
    high = gate_named(scanning.gates(project(tmp_path), Recorded()), "security:npm")
    assert not high.ok and NPM_HIGH in high.detail
    verdicts = {r["advisory"]: r["verdict"] for r in high.findings}
    # minimatch's via points at brace-expansion's advisory: counted once, not twice.
    assert verdicts == {NPM_HIGH: "fails", NPM_LOW: "below high"}
    critical = gate_named(
        scanning.gates(project(tmp_path / "c", severity="critical"), Recorded()), "security:npm"
    )
    assert critical.ok and critical.findings[0]["verdict"] == "below critical"


def test_python_advisory_fails_unless_ignored_by_id_or_alias(tmp_path: Path):
    runner = Recorded(pip="pip-audit-vulnerable.json")
    failing = gate_named(scanning.gates(project(tmp_path), runner), "security:python")
    assert not failing.ok and PY_ADVISORY in failing.detail
    assert failing.findings[0] == {
        "package": "requests",
        "version": "2.31.0",
        "advisory": PY_ADVISORY,
        "severity": "unknown",
        "fix": "2.32.0",
        "verdict": "fails",
    }
    assert failing.detail.endswith("; not audited: codeframe-mini")  # skipped deps are named
    for ignored in (PY_ADVISORY, "CVE-2024-35195"):
        loaded = project(tmp_path / ignored, ignore=[ignored])
        gate = gate_named(scanning.gates(loaded, runner), "security:python")
        assert gate.ok and gate.findings[0]["verdict"] == "ignored"


def test_clean_pip_audit_passes_and_says_what_it_audited(tmp_path: Path):
    gate = gate_named(scanning.gates(project(tmp_path), Recorded()), "security:python")
    assert gate.ok and gate.detail == "no known vulnerabilities in 6 packages"


def test_missing_scanner_fails_with_the_install_hint(tmp_path: Path):
    def missing(argv: list[str], cwd: Path) -> RunResult:
        raise FileNotFoundError(argv[0])

    found = scanning.gates(project(tmp_path), missing)
    python, npm = gate_named(found, "security:python"), gate_named(found, "security:npm")
    assert not python.ok and not npm.ok
    assert python.detail == (
        "pip-audit is not installed; hint: pip install pip-audit"
        " (into the environment that runs slipway gates)"
    )
    assert npm.detail.startswith("npm is not installed; hint: install Node.js")


def test_unreachable_database_fails_with_the_scanners_words(tmp_path: Path):
    offline = scanning.gates(project(tmp_path), Recorded(npm="npm-audit-offline.json"))
    npm = gate_named(offline, "security:npm")
    assert not npm.ok and "npm audit failed: ENOTFOUND" in npm.detail
    assert "network connectivity" in npm.detail and "hint:" in npm.detail.splitlines()[-1]

    def no_json(argv: list[str], cwd: Path) -> RunResult:
        return RunResult(1, "", "ERROR:pip_audit._cli:ConnectionError: pypi.org unreachable")

    python = gate_named(scanning.gates(project(tmp_path / "p"), no_json), "security:python")
    assert not python.ok and "ConnectionError" in python.detail
    assert python.detail.splitlines()[-1].startswith("pip-audit printed no JSON report")


def test_nonzero_exit_without_findings_is_not_a_pass(tmp_path: Path):
    def odd(argv: list[str], cwd: Path) -> RunResult:
        return RunResult(2, (DATA / "pip-audit-clean.json").read_text(), "strict: skipped")

    gate = gate_named(scanning.gates(project(tmp_path), odd), "security:python")
    assert not gate.ok and "pip-audit exited 2 without naming a vulnerability" in gate.detail


def test_argv_is_a_list_naming_the_lock_and_npm_runs_in_the_frontend(tmp_path: Path):
    runner = Recorded()
    scanning.gates(project(tmp_path), runner)
    (pip_argv, pip_cwd), (npm_argv, npm_cwd) = runner.calls
    assert isinstance(pip_argv, list) and str(tmp_path / "requirements.lock") in pip_argv
    assert pip_argv[0] == "pip-audit" and pip_argv[pip_argv.index("--format") + 1] == "json"
    assert pip_cwd == tmp_path
    assert npm_argv == ["npm", "audit", "--json"] and npm_cwd == tmp_path / "web"


def test_missing_lock_fails_and_no_lock_configured_is_said_plainly(tmp_path: Path):
    loaded = project(tmp_path)
    (tmp_path / "requirements.lock").unlink()
    (tmp_path / "web" / "package-lock.json").unlink()
    runner = Recorded()
    python, npm = scanning.gates(loaded, runner)
    assert not python.ok and "requirements.lock not found" in python.detail
    assert npm.ok and npm.detail == "nothing to audit: no node process has package-lock.json"
    assert runner.calls == []


def test_disabled_security_runs_no_scanner(tmp_path: Path):
    runner = Recorded()
    assert scanning.gates(project(tmp_path, enabled=False), runner) == []
    assert runner.calls == []


def test_summary_and_pr_comment_name_each_advisory(tmp_path: Path):
    runner = Recorded(pip="pip-audit-vulnerable.json")
    report = gates.run(project(tmp_path), None, scan_runner=runner)
    # The PR comment renders the JSON written by --output: round-trip it first.
    text = gates.markdown(gates.Report.from_dict(report.as_dict()))
    assert "| security:python | ❌" in text and "| security:npm | ❌" in text
    assert "#### security:npm findings" in text
    assert f"| lodash | <4.17.21 | {NPM_HIGH} | high | lodash@4.17.21 | fails |" in text
    assert f"| requests | 2.31.0 | {PY_ADVISORY} | unknown | 2.32.0 | fails |" in text
    annotations = "\n".join(gates.error_annotations(report))
    assert f"::error title=gate security:npm failed::1 vulnerable: lodash {NPM_HIGH}" in annotations


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({"ignore": [""]}, "gates.security.ignore[0]: must be an advisory id"),
        ({"ignore": ["GHSA x"]}, "gates.security.ignore[0]: must be an advisory id"),
        ({"severity": "urgent"}, "gates.security.severity"),
        ({"enabled": "yes"}, "gates.security.enabled"),
    ],
)
def test_broken_security_settings_are_located(
    tmp_path: Path, security: dict[str, Any], expected: str
):
    with pytest.raises(ConfigError) as info:
        project(tmp_path, **security)
    assert any(expected in issue.render() for issue in info.value.issues)
