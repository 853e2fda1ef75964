"""Imports flow one way (docs/architecture.md, "Layers"): a walk over every module's
imports (top-level, inside functions, and type-only ones alike) fails on any cycle and
on any import from a lower layer up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Highest first. A module may import modules of its own layer or any layer below.
# The first layer that names a module or one of its packages places it.
LAYERS: list[list[str]] = [
    ["slipway.cli"],
    ["slipway.dashboard", "slipway.monitor", "slipway.github"],
    ["slipway.backups.restore", "slipway.backups.trial"],
    ["slipway.deploy.fleet"],
    ["slipway.deploy.engine", "slipway.deploy.rollback"],
    ["slipway.deploy.recovery"],
    ["slipway.deploy.strategies"],
    ["slipway.deploy.canary", "slipway.deploy.split"],
    ["slipway.deploy.bluegreen", "slipway.deploy.restart"],
    [
        "slipway.deploy.rehearsal",
        "slipway.deploy.steps",
        "slipway.deploy.venvs",
        "slipway.deploy.hold",
        "slipway.deploy.database",
        "slipway.deploy.incident",
    ],
    ["slipway.deploy.strategy"],
    ["slipway.deploy.context"],
    ["slipway.deploy.journal"],
    [
        "slipway.deploy.run",
        "slipway.deploy.runspec",
        "slipway.deploy.targets",
        "slipway.deploy.source",
        "slipway.deploy",
    ],
    [
        "slipway.routers",
        "slipway.processes",
        "slipway.backups",
        "slipway.health",
        "slipway.notify",
        "slipway.metrics",
        "slipway.gates",
        "slipway.scanning",
    ],
    ["slipway.state", "slipway.commands", "slipway.transports", "slipway.config"],
    ["slipway.project"],
    ["slipway.secrets", "slipway.errors", "slipway"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every slipway module ``path`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("slipway")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("slipway"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer): the longest match wins
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_goes_up_a_layer(module: str) -> None:
    upward = [m for m in sorted(GRAPH[module]) if layer_of(m) < layer_of(module)]
    assert not upward, f"{module} imports a higher layer: {upward}"


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("reader", ["slipway.monitor", "slipway.dashboard", "slipway.github"])
def test_read_only_commands_use_the_host_context_only(reader: str) -> None:
    allowed = {"slipway.deploy.context", "slipway.deploy.run", "slipway.deploy.source"}
    for module, deps in GRAPH.items():
        if module.startswith(reader):
            flows = {d for d in deps if d.startswith("slipway.deploy.")} - allowed
            assert not flows, f"{module} reaches a deploy flow: {sorted(flows)}"


def test_the_walk_sees_imports_inside_functions_and_type_checking() -> None:
    """A check that cannot fail is a defect: the walker must see a late import."""
    assert "slipway.deploy.context" in GRAPH["slipway.deploy.bluegreen"]  # TYPE_CHECKING
    assert "slipway.deploy.recovery" in GRAPH["slipway.deploy.engine"]
