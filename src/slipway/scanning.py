"""Dependency vulnerability scanning, the ``security:python`` and ``security:npm`` gates.

A known-vulnerable dependency is as much a reason to stop a release as a failing test,
so the locked dependencies are audited with the ecosystems' own scanners: ``pip-audit``
over each python process's requirements lock and ``npm audit`` in each node process's
directory that has a ``package-lock.json``.

The rule, in one place (:func:`verdict`): an advisory listed in ``[gates.security]
ignore`` (by its id or an alias such as its CVE) never fails; otherwise it fails when its
severity is at or above ``severity``. npm reports a severity per advisory; pip-audit
reports none, and an unknown severity cannot be shown to be below the threshold, so every
known Python vulnerability fails unless ignored.

A scanner that is missing, times out, cannot reach its database or prints something we
cannot read fails its gate with the reason and a hint: a scan that did not happen must
never look like a clean one.

The scanner is run through a :data:`Runner` (argv list in, exit code and output out) so
tests feed recorded outputs without a network or the scanners installed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway.config.load import LoadedConfig
from slipway.config.model import ProcessKind, SecurityConfig

SEVERITIES = ("info", "low", "moderate", "high", "critical")
TAIL_LINES = 30  # of a scanner's output, in a failed gate's detail
SCAN_TIMEOUT = 600.0
MAX_IDS_IN_DETAIL = 3

PIP_AUDIT_HINT = "pip install pip-audit (into the environment that runs slipway gates)"
NPM_HINT = "install Node.js with npm 7 or newer (npm audit --json)"
NETWORK_HINT = "the scanner needs network access to its vulnerability database"


@dataclass
class Verdict:
    """A security gate's result; :mod:`slipway.gates` shows it like any other gate
    (this module sits below it, so it names no type of it)."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""
    findings: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RunResult:
    """What a scanner run returned: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str = ""


Runner = Callable[[list[str], Path], RunResult]


def run_scanner(argv: list[str], cwd: Path) -> RunResult:
    """Run a scanner without a shell; a missing binary raises FileNotFoundError."""
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=SCAN_TIMEOUT
    )
    return RunResult(result.returncode, result.stdout, result.stderr)


@dataclass(frozen=True)
class Finding:
    """One advisory against one package, in the scanner-neutral shape the table shows."""

    package: str
    version: str
    advisory: str
    severity: str
    fix: str
    aliases: tuple[str, ...] = ()


@dataclass
class Audit:
    """A scanner's parsed answer: the findings, how many packages it audited, and the
    names of those it could not (named in the gate's detail, so a gap is visible)."""

    findings: list[Finding] = field(default_factory=list)
    packages: int = 0
    not_audited: list[str] = field(default_factory=list)


class ScanError(Exception):
    """The scan did not happen or its answer is unreadable; ``reason`` names why and
    what to do, ``output`` is the scanner's own words (for the details block)."""

    def __init__(self, reason: str, output: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output

    def detail(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-TAIL_LINES:])
        return f"{tail}\n{self.reason}" if tail else self.reason


# --- the rule ----------------------------------------------------------------------------


def verdict(finding: Finding, cfg: SecurityConfig) -> str:
    """ "ignored", "fails" or "below <threshold>" (see the module docstring)."""
    if {finding.advisory, *finding.aliases} & set(cfg.ignore):
        return "ignored"
    if finding.severity not in SEVERITIES:
        return "fails"  # pip-audit gives no severity: unknown is never "below"
    if SEVERITIES.index(finding.severity) >= SEVERITIES.index(cfg.severity):
        return "fails"
    return f"below {cfg.severity}"


# --- parsing -----------------------------------------------------------------------------


def _load_json(stdout: str, scanner: str) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except ValueError:
        raise ScanError(f"{scanner} printed no JSON report; hint: {NETWORK_HINT}") from None
    if not isinstance(data, dict):
        raise ScanError(f"{scanner} printed JSON of an unexpected shape (not an object)")
    return data


def _text(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def parse_pip_audit(stdout: str) -> Audit:
    """pip-audit's ``--format json``: {"dependencies": [{"name", "version", "vulns"}]}."""
    dependencies = _load_json(stdout, "pip-audit").get("dependencies")
    if not isinstance(dependencies, list):
        raise ScanError("pip-audit's JSON has no 'dependencies' list (pip-audit 2 or newer?)")
    audit = Audit()
    for dep in (d for d in dependencies if isinstance(d, dict)):
        name = _text(dep.get("name"), "?")
        if "skip_reason" in dep:
            audit.not_audited.append(name)  # e.g. the app itself: not on PyPI
            continue
        audit.packages += 1
        for vuln in (v for v in dep.get("vulns") or [] if isinstance(v, dict)):
            fixes = [str(f) for f in vuln.get("fix_versions") or []]
            audit.findings.append(
                Finding(
                    package=name,
                    version=_text(dep.get("version"), "?"),
                    advisory=_text(vuln.get("id"), "?"),
                    severity="unknown",
                    fix=", ".join(fixes) or "none",
                    aliases=tuple(str(a) for a in vuln.get("aliases") or []),
                )
            )
    return audit


def _npm_advisory(via: dict[str, Any]) -> str:
    """The GHSA id from the advisory URL, else npm's numeric source id."""
    url = _text(via.get("url"))
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("GHSA-") else f"npm-{via.get('source', '?')}"


def _npm_fix(available: object) -> str:
    if isinstance(available, dict):
        major = " (semver major)" if available.get("isSemVerMajor") else ""
        return f"{available.get('name', '?')}@{available.get('version', '?')}{major}"
    return "npm audit fix" if available is True else "none"


def _npm_error(data: dict[str, Any]) -> ScanError:
    error = data["error"] if isinstance(data["error"], dict) else {}
    code = _text(error.get("code"), "error")
    summary = _text(error.get("summary")).splitlines()[:1]
    detail = _text(error.get("detail"))
    hint = "npm audit needs package-lock.json and " + NETWORK_HINT
    return ScanError(f"npm audit failed: {code} {' '.join(summary)}; hint: {hint}", detail)


def parse_npm_audit(stdout: str) -> Audit:
    """npm 7+ ``audit --json``: one finding per advisory object in a package's ``via``
    (string entries only point at another package's advisory, so they are not counted
    twice)."""
    data = _load_json(stdout, "npm audit")
    if "error" in data:
        raise _npm_error(data)
    vulnerabilities = data.get("vulnerabilities")
    if not isinstance(vulnerabilities, dict):
        raise ScanError("npm audit's JSON has no 'vulnerabilities'; hint: " + NPM_HINT)
    found: dict[tuple[str, str], Finding] = {}
    for name, entry in vulnerabilities.items():
        if not isinstance(entry, dict):
            continue
        for via in (v for v in entry.get("via") or [] if isinstance(v, dict)):
            finding = Finding(
                package=_text(via.get("name"), name),
                version=_text(via.get("range"), _text(entry.get("range"), "?")),
                advisory=_npm_advisory(via),
                severity=_text(via.get("severity"), _text(entry.get("severity"), "unknown")),
                fix=_npm_fix(entry.get("fixAvailable")),
            )
            found.setdefault((finding.package, finding.advisory), finding)
    return Audit(list(found.values()), _npm_total(data.get("metadata")))


def _npm_total(metadata: object) -> int:
    """How many packages npm audited (metadata.dependencies.total), 0 when absent."""
    deps = metadata.get("dependencies") if isinstance(metadata, dict) else None
    total = deps.get("total") if isinstance(deps, dict) else 0
    return total if isinstance(total, int) else 0


# --- running -----------------------------------------------------------------------------


def pip_audit_argv(lock: Path) -> list[str]:
    """The lock is already the full pinned closure: ``--no-deps --disable-pip`` audit
    exactly its lines instead of pip-installing them into a temporary venv (which would
    run the packages' build code)."""
    return [
        "pip-audit",
        "-r",
        str(lock),
        "--no-deps",
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]


def npm_audit_argv() -> list[str]:
    return ["npm", "audit", "--json"]


def audit(
    argv: list[str], cwd: Path, runner: Runner, parse: Callable[[str], Audit], hint: str
) -> Audit:
    """Run one scanner and parse it; every way it can fail becomes a ScanError."""
    try:
        result = runner(argv, cwd)
    except FileNotFoundError:
        raise ScanError(f"{argv[0]} is not installed; hint: {hint}") from None
    except subprocess.TimeoutExpired:
        reason = f"{argv[0]} took more than {SCAN_TIMEOUT:g}s"
        raise ScanError(f"{reason}; hint: {NETWORK_HINT}") from None
    except OSError as exc:
        raise ScanError(f"{argv[0]} could not run: {exc}; hint: {hint}") from None
    try:
        parsed = parse(result.stdout)
    except ScanError as exc:
        raise ScanError(exc.reason, exc.output or result.stderr) from None
    if result.returncode != 0 and not parsed.findings:
        reason = f"{argv[0]} exited {result.returncode} without naming a vulnerability"
        raise ScanError(f"{reason}; hint: {NETWORK_HINT}", result.stderr)
    return parsed


def _rows(findings: list[Finding], cfg: SecurityConfig) -> list[dict[str, str]]:
    rows = [
        {
            "package": f.package,
            "version": f.version,
            "advisory": f.advisory,
            "severity": f.severity,
            "fix": f.fix,
            "verdict": verdict(f, cfg),
        }
        for f in findings
    ]
    return sorted(rows, key=lambda r: (r["verdict"] != "fails", r["package"], r["advisory"]))


def judge(name: str, audits: list[Audit], cfg: SecurityConfig, seconds: float) -> Verdict:
    """One gate from one or more audits: fails when any finding's verdict is "fails"."""
    findings = [f for a in audits for f in a.findings]
    rows = _rows(findings, cfg)
    failing = [r for r in rows if r["verdict"] == "fails"]
    packages = sum(a.packages for a in audits)
    skipped = [s for a in audits for s in a.not_audited]
    if failing:
        ids = ", ".join(f"{r['package']} {r['advisory']}" for r in failing[:MAX_IDS_IN_DETAIL])
        more = (
            f" and {len(failing) - MAX_IDS_IN_DETAIL} more"
            if len(failing) > MAX_IDS_IN_DETAIL
            else ""
        )
        detail = f"{len(failing)} vulnerable: {ids}{more}"
    elif rows:
        detail = f"{len(rows)} advisories, none failing (ignored or below {cfg.severity})"
    else:
        detail = f"no known vulnerabilities in {packages} packages"
    if skipped:
        detail += f"; not audited: {', '.join(skipped)}"
    return Verdict(name, not failing, round(seconds, 2), detail, findings=rows)


def python_locks(loaded: LoadedConfig) -> list[Path]:
    """Each python process's requirements lock (relative to its workdir, as deploys use it)."""
    return [
        loaded.base_dir / p.workdir / p.requirements
        for p in loaded.config.processes.values()
        if p.kind is ProcessKind.PYTHON and p.requirements
    ]


def npm_dirs(loaded: LoadedConfig) -> list[Path]:
    """Each node process's directory, whether or not it has a package-lock.json."""
    return [
        loaded.base_dir / p.workdir
        for p in loaded.config.processes.values()
        if p.kind is ProcessKind.NODE
    ]


def python_gate(loaded: LoadedConfig, cfg: SecurityConfig, runner: Runner) -> Verdict:
    name, started = "security:python", time.monotonic()
    locks = python_locks(loaded)
    if not locks:
        return Verdict(name, True, 0.0, "nothing to audit: no python process names requirements")
    audits = []
    try:
        for lock in locks:
            if not lock.is_file():
                raise ScanError(f"{lock} not found (processes.*.requirements)")
            argv = pip_audit_argv(lock)
            audits.append(audit(argv, loaded.base_dir, runner, parse_pip_audit, PIP_AUDIT_HINT))
    except ScanError as exc:
        return Verdict(name, False, round(time.monotonic() - started, 2), exc.detail())
    return judge(name, audits, cfg, time.monotonic() - started)


def npm_gate(loaded: LoadedConfig, cfg: SecurityConfig, runner: Runner) -> Verdict:
    name, started = "security:npm", time.monotonic()
    dirs = [d for d in npm_dirs(loaded) if (d / "package-lock.json").is_file()]
    if not dirs:
        return Verdict(name, True, 0.0, "nothing to audit: no node process has package-lock.json")
    try:
        audits = [audit(npm_audit_argv(), d, runner, parse_npm_audit, NPM_HINT) for d in dirs]
    except ScanError as exc:
        return Verdict(name, False, round(time.monotonic() - started, 2), exc.detail())
    return judge(name, audits, cfg, time.monotonic() - started)


def gates(loaded: LoadedConfig, runner: Runner = run_scanner) -> list[Verdict]:
    """The security gates for ``slipway gates``; none when ``[gates.security]`` is off."""
    cfg = loaded.config.gates.security
    if not cfg.enabled:
        return []
    return [python_gate(loaded, cfg, runner), npm_gate(loaded, cfg, runner)]
