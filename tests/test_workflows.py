"""Every workflow file in the repository passes actionlint and the GitHub workflow schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, workflow_problems

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def test_there_are_workflows():
    assert [w.name for w in WORKFLOWS] == ["ci-tests.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_and_the_github_workflow_schema_accept(workflow: Path):
    assert workflow_problems(workflow) == []


def test_a_broken_workflow_is_caught(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: \n"
    )
    lint = subprocess.run([str(BIN / "actionlint"), str(bad)], capture_output=True, check=False)
    schema = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True,
        check=False,
    )
    assert lint.returncode != 0
    assert schema.returncode != 0
