"""``slipway gates``: the design's quality gates for the app being deployed, with the
same thresholds on a laptop and in CI.

Each gate is a command from ``[gates.commands]`` (formatting, lint, types, tests with
coverage), plus the frontend build of every node process, plus the dependency
vulnerability scans of :mod:`slipway.scanning` (``[gates.security]``). Then coverage is
judged from the Cobertura XML the tests wrote: overall (80%), each critical path glob
(95%), and the lines this branch added against ``--base`` (90%, "diff coverage"). The
result is a Markdown summary (the Actions job summary, the PR comment), GitHub
annotations for failures, and JSON for the later steps.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slipway import scanning
from slipway.config.load import LoadedConfig
from slipway.config.model import GatesConfig, ProcessKind
from slipway.scanning import Runner

TAIL_LINES = 30


@dataclass
class Gate:
    name: str
    ok: bool
    seconds: float
    detail: str = ""  # the failure's output tail, or a figure
    # One row per advisory (package, version, advisory, severity, fix, verdict), for the
    # security gates: shown as a table so a reviewer sees what failed without the logs.
    findings: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Report:
    gates: list[Gate] = field(default_factory=list)
    coverage: float | None = None
    critical: dict[str, float | None] = field(default_factory=dict)
    new_code: float | None = None
    new_lines: int = 0

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gates)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        gates = [Gate(**g) for g in data.get("gates", [])]
        return cls(
            gates,
            data.get("coverage"),
            data.get("critical", {}),
            data.get("new_code"),
            int(data.get("new_lines", 0)),
        )


def run_command(name: str, argv: list[str], cwd: Path) -> Gate:
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=3600
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Gate(name, False, time.monotonic() - started, f"{argv[0]}: {exc}")
    seconds = round(time.monotonic() - started, 2)
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-TAIL_LINES:])
    return Gate(name, result.returncode == 0, seconds, "" if result.returncode == 0 else tail)


# --- coverage ----------------------------------------------------------------------------


def line_hits(xml_path: Path) -> dict[str, dict[int, int]]:
    """file -> line -> hits, from a Cobertura report (coverage.py's `--cov-report=xml`)."""
    root = ET.parse(xml_path).getroot()  # noqa: S314 - written by our own test run
    sources = [s.text or "" for s in root.iter("source")]
    files: dict[str, dict[int, int]] = {}
    for cls in root.iter("class"):
        name = cls.get("filename", "")
        path = name
        for source in sources:
            candidate = Path(source) / name
            if candidate.exists():
                path = str(candidate)
                break
        lines = files.setdefault(path, {})
        for line in cls.iter("line"):
            lines[int(line.get("number", "0"))] = int(line.get("hits", "0"))
    return files


def percent(files: dict[str, dict[int, int]]) -> float | None:
    total = sum(len(lines) for lines in files.values())
    covered = sum(1 for lines in files.values() for hits in lines.values() if hits > 0)
    return round(100.0 * covered / total, 2) if total else None


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def added_lines(base_dir: Path, base: str) -> dict[str, set[int]]:
    """Lines added on this branch since it left ``base`` (``git diff base...HEAD``)."""
    diff = subprocess.run(
        ["git", "diff", "--no-color", "--unified=0", f"{base}...HEAD"],
        cwd=base_dir,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    added: dict[str, set[int]] = {}
    current: str | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[6:] if line.startswith("+++ b/") else None
        elif line.startswith("@@") and current:
            match = re.search(r"\+(\d+)(?:,(\d+))?", line)
            if match:
                start, count = int(match[1]), int(match[2] or "1")
                added.setdefault(current, set()).update(range(start, start + count))
    return added


def judge_coverage(cfg: GatesConfig, base_dir: Path, base: str | None, report: Report) -> None:
    xml_path = base_dir / cfg.coverage_xml
    if not xml_path.exists():
        report.gates.append(Gate("coverage", False, 0.0, f"{cfg.coverage_xml} was not written"))
        return
    files = {_relative(p, base_dir): lines for p, lines in line_hits(xml_path).items()}
    report.coverage = percent(files)
    ok = report.coverage is not None and report.coverage >= cfg.coverage_min
    report.gates.append(
        Gate("coverage", ok, 0.0, f"{report.coverage}% (minimum {cfg.coverage_min:g}%)")
    )
    for pattern, minimum in cfg.critical.items():
        matched = {p: lines for p, lines in files.items() if fnmatch.fnmatch(p, pattern)}
        value = percent(matched)
        report.critical[pattern] = value
        detail = f"{pattern}: {value}% (minimum {minimum:g}%)" if matched else f"{pattern}: no file"
        report.gates.append(
            Gate(f"critical {pattern}", value is not None and value >= minimum, 0.0, detail)
        )
    if base:
        added = added_lines(base_dir, base)
        new = {
            p: {n: h for n, h in files[p].items() if n in lines}
            for p, lines in added.items()
            if p in files
        }
        report.new_lines = sum(len(lines) for lines in new.values())
        report.new_code = percent(new)
        if report.new_code is None:
            detail, ok = "no new executable lines", True
        else:
            ok = report.new_code >= cfg.new_code_min
            detail = (
                f"{report.new_code}% of {report.new_lines} new lines"
                f" (minimum {cfg.new_code_min:g}%)"
            )
        report.gates.append(Gate("new code", ok, 0.0, detail))


def run(loaded: LoadedConfig, base: str | None, scan_runner: Runner | None = None) -> Report:
    """Every gate in order; ``scan_runner`` replaces the scanners' subprocess (tests)."""
    cfg = loaded.config.gates
    base_dir = loaded.base_dir
    report = Report()
    for name, argv in cfg.commands.items():
        report.gates.append(run_command(name, list(argv), base_dir))
    if cfg.frontend_build:
        for name, process in loaded.config.processes.items():
            if process.kind is ProcessKind.NODE and process.build:
                workdir = base_dir / process.workdir
                steps = [process.install, process.build] if process.install else [process.build]
                gate = Gate(f"{name} build", True, 0.0)
                for argv in steps:
                    gate = run_command(f"{name} build", list(argv or []), workdir)
                    if not gate.ok:
                        break
                report.gates.append(gate)
    for verdict in scanning.gates(loaded, scan_runner or scanning.run_scanner):
        report.gates.append(Gate(**asdict(verdict)))
    judge_coverage(cfg, base_dir, base, report)
    return report


# --- reporting --------------------------------------------------------------------------


def markdown(report: Report, base_coverage: float | None = None) -> str:
    verdict = "passed" if report.ok else "FAILED"
    lines = [
        f"### Quality gates {verdict}",
        "",
        "| gate | result | time | detail |",
        "|---|---|---|---|",
    ]
    for g in report.gates:
        first = g.detail.splitlines()[-1] if g.detail else ""
        mark = "✅" if g.ok else "❌"
        lines.append(f"| {g.name} | {mark} | {g.seconds:.1f}s | {first.replace('|', '/')} |")
    if base_coverage is not None and report.coverage is not None:
        delta = report.coverage - base_coverage
        lines += [
            "",
            f"Coverage {report.coverage}% against {base_coverage}% on the base branch"
            f" ({delta:+.2f}).",
        ]
        if delta < 0:
            lines.append(f"> [!WARNING]\n> Coverage went down by {-delta:.2f} points.")
    for g in report.gates:
        lines += findings_table(g)
    failures = [g for g in report.gates if not g.ok and "\n" in g.detail]
    for g in failures:
        lines += [
            "",
            f"<details><summary>{g.name} output</summary>",
            "",
            "```",
            g.detail,
            "```",
            "</details>",
        ]
    return "\n".join(lines) + "\n"


FINDING_COLUMNS = ("package", "version", "advisory", "severity", "fix", "verdict")
MAX_FINDING_ROWS = 20


def findings_table(gate: Gate) -> list[str]:
    """A gate's advisories as a Markdown table (failing ones first, at most 20 rows), so
    the job summary and the PR comment name each package and advisory id."""
    if not gate.findings:
        return []
    lines = [
        "",
        f"#### {gate.name} findings",
        "",
        "| " + " | ".join(FINDING_COLUMNS) + " |",
        "|" + "---|" * len(FINDING_COLUMNS),
    ]
    for row in gate.findings[:MAX_FINDING_ROWS]:
        cells = (_cell(row.get(column, "")) for column in FINDING_COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    if len(gate.findings) > MAX_FINDING_ROWS:
        lines.append(f"\n... and {len(gate.findings) - MAX_FINDING_ROWS} more (see --output JSON)")
    return lines


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "/")


def error_annotations(report: Report) -> list[str]:
    """GitHub workflow commands that mark each failed gate in the run's summary."""
    found = []
    for g in report.gates:
        if not g.ok:
            message = (g.detail.splitlines()[-1] if g.detail else "failed").replace("%", "%25")
            message = message.replace("\r", "%0D").replace("\n", "%0A")
            found.append(f"::error title=gate {g.name} failed::{message}")
    return found
