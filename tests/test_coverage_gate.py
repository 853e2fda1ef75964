"""The per-module coverage gate fails when a critical module is under 95%."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT

SCRIPT = ROOT / "scripts" / "check_module_coverage.py"


def report(tmp_path: Path, filename: str, hits: list[int]) -> Path:
    lines = "".join(f'<line number="{i}" hits="{h}"/>' for i, h in enumerate(hits, 1))
    xml = (
        "<coverage><packages><package><classes>"
        f'<class name="x" filename="{filename}"><lines>{lines}</lines></class>'
        "</classes></package></packages></coverage>"
    )
    path = tmp_path / "coverage.xml"
    path.write_text(xml)
    return path


def gate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True)


def test_gate_fails_below_95_on_deploy_modules(tmp_path: Path):
    result = gate(report(tmp_path, "src/slipway/deploy/engine.py", [1] * 90 + [0] * 10))
    assert result.returncode == 1
    assert "src/slipway/deploy/engine.py" in result.stdout and "BELOW 95%" in result.stdout


def test_gate_passes_at_95_and_ignores_other_modules(tmp_path: Path):
    assert (
        gate(report(tmp_path, "src/slipway/deploy/rollback.py", [1] * 95 + [0] * 5)).returncode == 0
    )
    assert gate(report(tmp_path, "src/slipway/config/load.py", [0] * 10)).returncode == 0
