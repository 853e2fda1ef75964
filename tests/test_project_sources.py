"""Reading what installs each process, from the repository alone: Python dependency
sources (uv, Poetry, requirements, pyproject), node package managers and their locks,
and a Next.js app's build-time settings. The locks under ``tests/data/shapes`` were made
by the real tools (see its README), so a fresh lock here is one the tool calls fresh."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from slipway.errors import SlipwayError
from slipway.project import node, python
from slipway.project.node import NextInfo, detect_node, read_next, standalone_start
from slipway.project.python import PythonDeps, detect_python, pinned_requirements
from slipway.project.tree import DictTree, DirTree

SHAPES = Path(__file__).parent / "data" / "shapes"


def shape(name: str, under: str = "") -> dict[str, str]:
    """A fixture's files, placed under ``under`` (as a monorepo's backend/ or web-ui/)."""
    root = SHAPES / name
    prefix = f"{under}/" if under else ""
    return {
        prefix + p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def edited(files: dict[str, str], path: str, old: str, new: str) -> DictTree:
    assert old in files[path], f"{old!r} is not in {path}"
    return DictTree({**files, path: files[path].replace(old, new)})


# --- Python: detection ----------------------------------------------------------------

PYPROJECT_RANGES = (
    '[project]\nname = "x"\nversion = "1"\ndependencies = ["fastapi>=0.100", "uvicorn==0.34.0"]\n'
)


def test_detection_order_prefers_the_most_exact_pin() -> None:
    files = {
        "backend/uv.lock": "version = 1\n",
        "backend/poetry.lock": "",
        "backend/requirements.lock": "a==1\n",
        "backend/requirements.txt": "a==1\n",
        "backend/pyproject.toml": PYPROJECT_RANGES,
    }
    expected = [
        ("uv-lock", "backend/uv.lock"),
        ("poetry-lock", "backend/poetry.lock"),
        ("requirements", "backend/requirements.lock"),
        ("requirements", "backend/requirements.txt"),
        ("pyproject", "backend/pyproject.toml"),
    ]
    for kind, file in expected:
        deps = detect_python(DictTree(files), "backend")
        assert deps is not None
        assert (deps.kind, deps.file, deps.workdir) == (kind, file, "backend")
        del files[file]
    assert detect_python(DictTree(files), "backend") is None


def test_nothing_declared_is_none() -> None:
    tree = DictTree({"pyproject.toml": '[project]\nname = "x"\nversion = "1"\n', "app.py": ""})
    assert detect_python(tree, ".") is None
    assert detect_python(DictTree({}), "backend") is None


def test_the_configured_requirements_file_wins() -> None:
    files = shape("uv-app", "backend") | {"backend/requirements-prod.txt": "fastapi==0.115.6\n"}
    deps = detect_python(DictTree(files), "backend", "requirements-prod.txt")
    assert deps == PythonDeps("requirements", "backend", "backend/requirements-prod.txt", False)
    assert deps.describe() == "requirements-prod.txt (uv pip install)"


@pytest.mark.parametrize(
    ("configured", "kind"),
    [("uv.lock", "uv-lock"), ("poetry.lock", "poetry-lock"), ("pyproject.toml", "pyproject")],
)
def test_a_configured_lock_keeps_its_kind(configured: str, kind: str) -> None:
    files = shape("uv-app", "backend") | shape("poetry-app", "backend")
    files["backend/pyproject.toml"] = PYPROJECT_RANGES
    deps = detect_python(DictTree(files), "./backend/", configured)
    assert deps is not None
    assert (deps.kind, deps.file) == (kind, f"backend/{configured}")


def test_a_missing_configured_file_is_an_error_naming_it() -> None:
    with pytest.raises(SlipwayError) as caught:
        detect_python(DictTree(shape("uv-app", "backend")), "backend", "requirements.txt")
    assert "backend/requirements.txt" in str(caught.value)
    assert caught.value.hint


def test_an_invalid_pyproject_is_an_error() -> None:
    with pytest.raises(SlipwayError, match=r"backend/pyproject\.toml is not valid TOML"):
        detect_python(DictTree({"backend/pyproject.toml": "[project\n"}), "backend")


def test_describe_says_how_each_kind_installs() -> None:
    assert PythonDeps("uv-lock", ".", "uv.lock", False).describe() == "uv.lock (uv sync --frozen)"
    assert (
        PythonDeps("poetry-lock", "api", "api/poetry.lock", False).describe()
        == "poetry.lock (exported pins, uv pip install)"
    )
    assert (
        PythonDeps("requirements", "api", "api/requirements.lock", False).describe()
        == "requirements.lock (uv pip install)"
    )
    assert (
        PythonDeps("pyproject", ".", "pyproject.toml", False).describe()
        == "pyproject.toml dependencies (uv pip install)"
    )


@pytest.mark.parametrize(
    ("extra", "package"),
    [
        ("", False),
        ('\n[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n', True),
        ('\n[build-system]\nrequires = ["hatchling"]\n[tool.uv]\npackage = false\n', False),
        ("\n[tool.uv]\npackage = true\n", True),
        (
            '\n[build-system]\nrequires = ["poetry-core"]\n[tool.poetry]\npackage-mode = false\n',
            False,
        ),
        ('\n[tool.poetry]\npackages = [{ include = "app" }]\n', True),
    ],
)
def test_package_means_its_own_code_installs(extra: str, package: bool) -> None:
    tree = DictTree({"pyproject.toml": PYPROJECT_RANGES + extra, "uv.lock": ""})
    deps = detect_python(tree, ".")
    assert deps is not None and deps.package is package


def test_fixtures_are_applications_not_packages() -> None:
    for name in ("uv-app", "poetry-app", "poetry-legacy", "poetry1-app", "poetry14-app"):
        deps = detect_python(DirTree(SHAPES / name), ".")
        assert deps is not None and not deps.package, name


# --- Python: pins and warnings --------------------------------------------------------


def test_unpinned_pyproject_dependencies_warn() -> None:
    deps = detect_python(DictTree({"backend/pyproject.toml": PYPROJECT_RANGES}), "backend")
    assert deps is not None and deps.kind == "pyproject"
    assert deps.warnings == (
        'backend/pyproject.toml: dependencies not pinned with "==": fastapi>=0.100 '
        "(each deploy may install different versions; commit a lock: `uv lock`)",
    )
    assert python.stale_problems(DictTree({}), deps) == []


def test_pinned_requirements_do_not_warn_and_unpinned_ones_do() -> None:
    deps = detect_python(DirTree(SHAPES / "req-app"), ".")
    assert deps == PythonDeps("requirements", ".", "requirements.txt", False)
    text = (
        "# comment\n-r base.txt\n--index-url https://example.invalid/simple\n"
        "a==1.0 ; python_version < '3.12'\nb[x]==2 \\\n    --hash=sha256:00\n"
        "c @ https://example.invalid/c.whl\n-e .\n./local\n"
        "d>=1\ne\nf==1.*\ng==1,<2\n"
    )
    deps = detect_python(DictTree({"requirements.txt": text}), ".")
    assert deps is not None
    assert deps.warnings == (
        'requirements.txt: dependencies not pinned with "==": d>=1, e, f==1.*, g==1,<2 '
        "(each deploy may install different versions; pin each with ==, e.g. `uv pip compile`)",
    )


def test_a_long_unpinned_list_is_cut() -> None:
    deps = detect_python(DictTree({"requirements.txt": "a\nb\nc\nd\ne\nf\ng\n"}), ".")
    assert deps is not None
    assert ": a, b, c, d, e, ... (" in deps.warnings[0]


def test_pinned_requirements_of_a_pyproject_are_its_dependencies() -> None:
    tree = DictTree({"pyproject.toml": PYPROJECT_RANGES})
    deps = detect_python(tree, ".")
    assert deps is not None
    assert pinned_requirements(tree, deps) == "fastapi>=0.100\nuvicorn==0.34.0\n"


def test_poetry_constraints_without_a_lock_become_pep_440() -> None:
    pyproject = """[tool.poetry.dependencies]
python = "^3.11"
a = "^1.2.3"
b = "^0.2"
c = "~1.2.3"
d = "2.0.0"
e = ">=1,<3"
f = "*"
g = { version = "^0.0.3", extras = ["x", "y"], markers = "sys_platform == 'linux'" }
h = { version = "1.0", python = "<3.12" }
i = { version = "1.0", optional = true }
"""
    tree = DictTree({"pyproject.toml": pyproject})
    deps = detect_python(tree, ".")
    assert deps is not None and deps.kind == "pyproject"
    assert pinned_requirements(tree, deps).splitlines() == [
        "a>=1.2.3,<2",
        "b>=0.2,<0.3",
        "c>=1.2.3,<1.3",
        "d==2.0.0",
        "e>=1,<3",
        "f",
        "g[x,y]>=0.0.3,<0.0.4 ; (sys_platform == 'linux')",
        'h==1.0 ; python_version < "3.12"',
    ]
    assert "a>=1.2.3,<2" in deps.warnings[0] and "d==2.0.0" not in deps.warnings[0]


def test_a_poetry_git_dependency_without_a_lock_is_refused() -> None:
    tree = DictTree({"pyproject.toml": '[tool.poetry.dependencies]\na = { git = "https://x" }\n'})
    deps = detect_python(tree, ".")
    assert deps is not None
    with pytest.raises(SlipwayError, match=r"pyproject\.toml: \[tool\.poetry\.dependencies\] a:"):
        pinned_requirements(tree, deps)


def test_kinds_that_install_from_their_own_file_export_nothing() -> None:
    tree = DirTree(SHAPES / "uv-app")
    deps = detect_python(tree, ".")
    assert deps is not None
    with pytest.raises(ValueError):
        pinned_requirements(tree, deps)


# --- Python: uv.lock freshness (the real uv, offline) ---------------------------------


def test_a_fresh_uv_lock_has_no_problem() -> None:
    for under in ("", "backend"):
        tree = DictTree(shape("uv-app", under))
        deps = detect_python(tree, under or ".")
        assert deps is not None and deps.kind == "uv-lock"
        assert python.stale_problems(tree, deps) == []


def test_a_uv_lock_behind_its_pyproject_is_stale() -> None:
    files = shape("uv-app", "backend")
    tree = edited(
        files, "backend/pyproject.toml", '"uvicorn==0.34.0",', '"uvicorn==0.34.0", "idna==3.10",'
    )
    deps = detect_python(tree, "backend")
    assert deps is not None
    assert python.stale_problems(tree, deps) == [
        "backend/uv.lock does not match backend/pyproject.toml "
        "(run `uv lock` in backend and commit it)"
    ]


def test_a_uv_lock_at_the_root_says_so() -> None:
    tree = edited(shape("uv-app"), "pyproject.toml", '    "uvicorn==0.34.0",\n', "")
    deps = detect_python(tree, ".")
    assert deps is not None
    assert python.stale_problems(tree, deps) == [
        "uv.lock does not match pyproject.toml (run `uv lock` at the repository's root and commit it)"
    ]


def test_a_uv_workspace_copies_its_members() -> None:
    files = shape("uv-workspace", "backend")
    deps = detect_python(DictTree(files), "backend")
    assert deps is not None
    assert python.stale_problems(DictTree(files), deps) == []
    member = "backend/packages/greeting/pyproject.toml"
    tree = edited(files, member, "dependencies = []", 'dependencies = ["idna==3.10"]')
    assert python.stale_problems(tree, deps) == [
        "backend/uv.lock does not match backend/pyproject.toml "
        "(run `uv lock` in backend and commit it)"
    ]


def test_without_uv_the_check_is_a_problem_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(python, "find_uv", lambda: None)
    tree = DictTree(shape("uv-app"))
    deps = detect_python(tree, ".")
    assert deps is not None
    [problem] = python.stale_problems(tree, deps)
    assert "uv.lock" in problem and "uv is not installed" in problem and "pip install uv" in problem


def test_what_uv_cannot_check_is_said_as_uv_says_it() -> None:
    files = shape("uv-app")
    tree = edited(
        files,
        "pyproject.toml",
        'requires-python = ">=3.11"',
        'requires-python = ">=3.11"\n[tool.uv.sources]\nfastapi = { path = "../elsewhere" }',
    )
    deps = detect_python(tree, ".")
    assert deps is not None
    [problem] = python.stale_problems(tree, deps)
    assert problem.startswith("cannot check uv.lock against pyproject.toml: uv says: ")
    assert problem.endswith("(run `uv lock --check` at the repository's root to see why)")


# --- Python: poetry.lock freshness (Poetry's content-hash) ----------------------------


@pytest.mark.parametrize("name", ["poetry-app", "poetry-legacy"])
def test_the_content_hash_is_poetrys_own(name: str) -> None:
    pyproject = tomllib.loads((SHAPES / name / "pyproject.toml").read_text())
    lock = tomllib.loads((SHAPES / name / "poetry.lock").read_text())
    assert python.poetry_content_hash(pyproject) == lock["metadata"]["content-hash"]


def test_poetry_1_hashed_tool_poetry_alone() -> None:
    for name in ("poetry1-app", "poetry14-app"):
        pyproject = tomllib.loads((SHAPES / name / "pyproject.toml").read_text())
        lock = tomllib.loads((SHAPES / name / "poetry.lock").read_text())
        assert python.poetry1_content_hash(pyproject) == lock["metadata"]["content-hash"]


@pytest.mark.parametrize("name", ["poetry-app", "poetry-legacy", "poetry1-app", "poetry14-app"])
def test_a_fresh_poetry_lock_has_no_problem(name: str) -> None:
    for under in ("", "backend"):
        tree = DictTree(shape(name, under))
        deps = detect_python(tree, under or ".")
        assert deps is not None and deps.kind == "poetry-lock"
        assert python.stale_problems(tree, deps) == []


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("poetry-app", '"uvicorn==0.34.0",', '"uvicorn==0.34.0", "idna==3.10",'),
        ("poetry-app", 'dev = ["iniconfig==2.0.0"]', 'dev = ["iniconfig==2.1.0"]'),
        ("poetry-app", 'requires-python = ">=3.11"', 'requires-python = ">=3.12"'),
        ("poetry-legacy", 'idna = "3.10"', 'idna = "3.11"'),
        ("poetry-legacy", 'iniconfig = "2.0.0"', 'iniconfig = "2.1.0"'),
        ("poetry1-app", 'click = "8.1.7"', 'click = "8.1.8"'),
    ],
)
def test_a_poetry_lock_behind_its_pyproject_is_stale(name: str, old: str, new: str) -> None:
    tree = edited(shape(name, "backend"), "backend/pyproject.toml", old, new)
    deps = detect_python(tree, "backend")
    assert deps is not None
    assert python.stale_problems(tree, deps) == [
        "backend/poetry.lock does not match backend/pyproject.toml "
        "(run `poetry lock` in backend and commit it)"
    ]


def test_what_the_hash_leaves_out_does_not_make_a_lock_stale() -> None:
    tree = edited(shape("poetry-app"), "pyproject.toml", 'version = "0.1.0"', 'version = "9.9"')
    deps = detect_python(tree, ".")
    assert deps is not None
    assert python.stale_problems(tree, deps) == []


def test_poetry_before_2_3_left_dependency_groups_out_of_the_hash() -> None:
    files = shape("poetry-app")
    pyproject = tomllib.loads(files["pyproject.toml"])
    without = python.poetry_content_hash(pyproject, with_dependency_groups=False)
    lock = files["poetry.lock"].replace("Poetry 2.5.1", "Poetry 2.1.3")
    current = tomllib.loads(files["poetry.lock"])["metadata"]["content-hash"]
    tree = DictTree({**files, "poetry.lock": lock.replace(current, without)})
    deps = detect_python(tree, ".")
    assert deps is not None
    assert python.stale_problems(tree, deps) == []
    newer = DictTree({**files, "poetry.lock": files["poetry.lock"].replace(current, without)})
    assert len(python.stale_problems(newer, deps)) == 1  # 2.5.1 counts the groups


# --- Python: exported pins of a poetry.lock -------------------------------------------


def locked_names(name: str, wanted: str) -> set[str]:
    lock = tomllib.loads((SHAPES / name / "poetry.lock").read_text())
    return {p["name"] for p in lock["package"] if wanted in p.get("groups", ["main"])}


def requirement_names(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line and not line.startswith(" ")]
    return [line.split("==")[0] for line in lines]


def test_exported_pins_hold_every_main_package_and_no_dev_one() -> None:
    tree = DirTree(SHAPES / "poetry-app")
    deps = detect_python(tree, ".")
    assert deps is not None
    text = pinned_requirements(tree, deps)
    names = requirement_names(text)
    assert set(names) == locked_names("poetry-app", "main") and len(names) == len(set(names))
    assert "iniconfig" not in names and locked_names("poetry-app", "dev") == {"iniconfig"}
    assert "fastapi==0.115.6 \\\n    --hash=sha256:" in text
    assert 'tomli==2.2.1 ; python_version == "3.11" \\\n' in text
    assert text.count("--hash=sha256:") > len(names)  # every package, wheels and sdist


def test_exported_pins_of_a_poetry_1_lock_walk_the_graph() -> None:
    for name in ("poetry1-app", "poetry14-app"):
        tree = DirTree(SHAPES / name)
        deps = detect_python(tree, ".")
        assert deps is not None
        lines = [line for line in pinned_requirements(tree, deps).splitlines() if "==" in line]
        assert [line.removesuffix(" \\") for line in lines] == [
            "click==8.1.7",
            'colorama==0.4.6 ; platform_system == "Windows"',  # only through click
            "idna==3.10",
            'tomli==2.2.1 ; python_version < "3.12"',
        ], name


def test_hashes_are_all_or_nothing() -> None:
    files = shape("poetry-legacy")
    lock = tomllib.loads(files["poetry.lock"])
    idna = next(p for p in lock["package"] if p["name"] == "idna")
    hash_lines = [f'    {{file = "{f["file"]}", hash = "{f["hash"]}"}},\n' for f in idna["files"]]
    text = files["poetry.lock"]
    for line in hash_lines:
        assert line in text
        text = text.replace(line, "")
    tree = DictTree({**files, "poetry.lock": text})
    deps = detect_python(tree, ".")
    assert deps is not None
    assert (
        pinned_requirements(tree, deps) == 'colorama==0.4.6 ; sys_platform == "win32"\nidna==3.10\n'
    )


def test_git_and_private_index_packages_export_as_uv_reads_them() -> None:
    lock = """[[package]]
name = "tool"
version = "1.0"
optional = false
groups = ["main"]
files = []

[package.source]
type = "git"
url = "https://example.invalid/tool.git"
reference = "main"
resolved_reference = "abc123"

[[package]]
name = "inhouse"
version = "2.0"
optional = false
groups = ["main"]
files = []

[package.source]
type = "legacy"
url = "https://pypi.example.invalid/simple"
reference = "private"

[metadata]
lock-version = "2.1"
content-hash = "x"
"""
    tree = DictTree({"poetry.lock": lock, "pyproject.toml": "[tool.poetry]\n"})
    deps = detect_python(tree, ".")
    assert deps is not None
    assert pinned_requirements(tree, deps) == (
        "--extra-index-url https://pypi.example.invalid/simple\n"
        "tool @ git+https://example.invalid/tool.git@abc123\n"
        "inhouse==2.0\n"
    )


# --- node: detection ------------------------------------------------------------------

NPM_CI = ("npm", "ci", "--no-audit", "--no-fund")


@pytest.mark.parametrize(
    ("name", "manager", "lock", "install"),
    [
        ("npm-web", "npm", "package-lock.json", NPM_CI),
        ("pnpm-web", "pnpm", "pnpm-lock.yaml", ("pnpm", "install", "--frozen-lockfile")),
        ("pnpm8-web", "pnpm", "pnpm-lock.yaml", ("pnpm", "install", "--frozen-lockfile")),
        (
            "yarn-web",
            "yarn",
            "yarn.lock",
            ("yarn", "install", "--frozen-lockfile", "--non-interactive"),
        ),
        ("berry-web", "yarn", "yarn.lock", ("yarn", "install", "--immutable")),
    ],
)
def test_the_lock_file_tells_the_manager(
    name: str, manager: str, lock: str, install: tuple[str, ...]
) -> None:
    tree = DictTree(shape(name, "web-ui"))
    deps = detect_node(tree, "web-ui")
    assert deps == node.NodeDeps(manager, "web-ui", f"web-ui/{lock}", install)  # type: ignore[arg-type]
    assert node.stale_problems(tree, deps) == []


def test_no_package_json_is_none() -> None:
    assert detect_node(DictTree({"web-ui/index.js": ""}), "web-ui") is None


def test_the_package_manager_field_wins() -> None:
    files = shape("npm-web", "web-ui")
    tree = edited(
        files,
        "web-ui/package.json",
        '"private": true,',
        '"private": true,\n  "packageManager": "pnpm@9.1.0",',
    )
    deps = detect_node(tree, "web-ui")
    assert deps is not None
    assert (deps.manager, deps.lock) == ("pnpm", None)  # package-lock.json is not pnpm's
    assert deps.install == ("pnpm", "install", "--no-frozen-lockfile")
    assert "run `pnpm install` in web-ui and commit pnpm-lock.yaml" in deps.warnings[0]
    files = shape("yarn-web") | {"package-lock.json": "{}"}
    files["package.json"] = files["package.json"].replace(
        '"private": true,', '"packageManager": "yarn@1.22.22+sha512.abc",'
    )
    deps = detect_node(DictTree(files), ".")
    assert deps is not None
    assert (deps.manager, deps.lock, deps.warnings) == ("yarn", "yarn.lock", ())
    assert deps.install == ("yarn", "install", "--frozen-lockfile", "--non-interactive")


def test_without_a_lock_npm_installs_with_a_warning() -> None:
    deps = detect_node(DictTree({"web-ui/package.json": "{}"}), "web-ui")
    assert deps == node.NodeDeps(
        "npm",
        "web-ui",
        None,
        ("npm", "install", "--no-audit", "--no-fund"),
        (
            "web-ui/package.json has no lock file: each deploy may install different versions "
            "(run `npm install` in web-ui and commit package-lock.json)",
        ),
    )
    assert node.stale_problems(DictTree({}), deps) == []


def test_berry_without_a_lock_follows_package_manager() -> None:
    tree = DictTree({"package.json": '{"packageManager": "yarn@4.1.0"}'})
    deps = detect_node(tree, ".")
    assert deps is not None and deps.install == ("yarn", "install")


def test_several_locks_warn_and_the_specific_tool_wins() -> None:
    files = shape("pnpm-web") | {"package-lock.json": shape("npm-web")["package-lock.json"]}
    deps = detect_node(DictTree(files), ".")
    assert deps is not None and deps.manager == "pnpm"
    assert deps.warnings == (
        "several lock files (pnpm-lock.yaml, package-lock.json): pnpm-lock.yaml decides; "
        "remove the others",
    )


@pytest.mark.parametrize("name", ["npm-workspace", "pnpm-workspace"])
def test_a_workspace_member_uses_the_lock_at_the_root(name: str) -> None:
    files = shape(name)
    deps = detect_node(DictTree(files), "web-ui")
    assert deps is not None and deps.lock is not None and "/" not in deps.lock
    assert node.stale_problems(DictTree(files), deps) == []
    tree = edited(files, "web-ui/package.json", '"is-number": "7.0.0"', '"is-number": "7.0.1"')
    [problem] = node.stale_problems(tree, deps)
    assert problem.startswith(f"{deps.lock} does not match web-ui/package.json (run ")


def test_a_lock_above_that_is_no_workspace_root_is_not_used() -> None:
    files = {"package-lock.json": "{}", "package.json": "{}", "web-ui/package.json": "{}"}
    deps = detect_node(DictTree(files), "web-ui")
    assert deps is not None and deps.lock is None


def test_invalid_package_json_is_an_error() -> None:
    with pytest.raises(SlipwayError, match=r"web-ui/package\.json is not valid JSON"):
        detect_node(DictTree({"web-ui/package.json": "{"}), "web-ui")


# --- node: staleness ------------------------------------------------------------------

CHANGES = [
    ('"is-odd": "^3.0.1"', '"is-odd": "^3.0.0"'),  # a request changed
    ('"is-number": "7.0.0"', '"is-number": "7.0.0",\n    "is-even": "1.0.0"'),  # one added
]


@pytest.mark.parametrize("name", ["npm-web", "pnpm-web", "pnpm8-web", "yarn-web", "berry-web"])
@pytest.mark.parametrize(("old", "new"), CHANGES)
def test_a_lock_behind_package_json_is_stale(name: str, old: str, new: str) -> None:
    tree = edited(shape(name, "web-ui"), "web-ui/package.json", old, new)
    deps = detect_node(tree, "web-ui")
    assert deps is not None
    assert node.stale_problems(tree, deps) == [
        f"{deps.lock} does not match web-ui/package.json "
        f"(run `{deps.manager} install` in web-ui and commit it)"
    ]


def test_npm_message_names_both_files() -> None:
    tree = edited(shape("npm-web", "web-ui"), "web-ui/package.json", *CHANGES[0])
    deps = detect_node(tree, "web-ui")
    assert deps is not None
    assert node.stale_problems(tree, deps) == [
        "web-ui/package-lock.json does not match web-ui/package.json "
        "(run `npm install` in web-ui and commit it)"
    ]


def test_a_removed_dependency_makes_npm_and_pnpm_locks_stale() -> None:
    for name in ("npm-web", "pnpm-web", "pnpm8-web"):
        tree = edited(
            shape(name),
            "package.json",
            ',\n  "devDependencies": {\n    "is-odd": "^3.0.1"\n  }',
            "",
        )
        deps = detect_node(tree, ".")
        assert deps is not None
        assert len(node.stale_problems(tree, deps)) == 1, name


def test_unknown_lock_formats_are_not_judged() -> None:
    files = shape("npm-web")
    old_npm = {**files, "package-lock.json": '{"lockfileVersion": 1, "dependencies": {}}'}
    deps = detect_node(DictTree(old_npm), ".")
    assert deps is not None and node.stale_problems(DictTree(old_npm), deps) == []
    odd_yarn = {**shape("yarn-web"), "yarn.lock": "something else\n"}
    deps = detect_node(DictTree(odd_yarn), ".")
    assert deps is not None and node.stale_problems(DictTree(odd_yarn), deps) == []


def test_the_yaml_subset_reads_quoted_keys_and_empty_maps() -> None:
    text = "importers:\n\n  .: {}\n\n  'apps/web':\n    dependencies:\n      '@scope/pkg':\n        specifier: '^1.0.0'\n        version: 1.0.0(react@18.0.0)\n"
    assert node.parse_yaml(text) == {
        "importers": {
            ".": {},
            "apps/web": {
                "dependencies": {
                    "@scope/pkg": {"specifier": "^1.0.0", "version": "1.0.0(react@18.0.0)"}
                }
            },
        }
    }


# --- Next.js --------------------------------------------------------------------------

NEXT_CONFIG = """// output: 'export' was the old way; process.env.OLD_SETTING is gone
/** @type {import('next').NextConfig} */
const { API_ORIGIN, SITE_NAME: name = "x" } = process.env;
const nextConfig = {
  output: "standalone",
  async rewrites() {
    return [
      {
        source: "/api/:path*",
        destination: `http://127.0.0.1:${process.env.BACKEND_PORT}/api/:path*`,
      },
    ];
  },
  env: { BUILT_AT: process.env["BUILD_STAMP"] },
};
module.exports = nextConfig;
"""
PACKAGE_JSON = '{"dependencies": {"next": "15.1.0", "react": "19.0.0"}}'


def next_app(config: str = NEXT_CONFIG, name: str = "next.config.js") -> DictTree:
    return DictTree(
        {
            "web-ui/package.json": PACKAGE_JSON,
            f"web-ui/{name}": config,
            "web-ui/app/page.tsx": "export default () => process.env.NEXT_PUBLIC_API_URL;\n",
            "web-ui/lib/site.js": "const t = process.env.NEXT_PUBLIC_TITLE || process.env.NEXT_PUBLIC_API_URL;\n",
            "web-ui/app/old.ts": "// process.env.NEXT_PUBLIC_GONE\n",
            "web-ui/node_modules/x/index.js": "process.env.NEXT_PUBLIC_VENDORED",
            "web-ui/.next/server/page.js": "process.env.NEXT_PUBLIC_BUILT",
            "web-ui/README.md": "NEXT_PUBLIC_DOCUMENTED",
            "other/page.tsx": "process.env.NEXT_PUBLIC_OTHER_APP",
        }
    )


def test_next_settings_are_read_from_its_files() -> None:
    assert read_next(next_app(), "web-ui") == NextInfo(
        config="web-ui/next.config.js",
        standalone=True,
        build_env=("API_ORIGIN", "BACKEND_PORT", "BUILD_STAMP", "SITE_NAME"),
        public_env=("NEXT_PUBLIC_API_URL", "NEXT_PUBLIC_TITLE"),
        version="15.1.0",
    )


@pytest.mark.parametrize(
    ("config", "standalone"),
    [
        ("export default { output: 'standalone' };", True),
        ("const c = {\n  output:`standalone`,\n};", True),
        ("export default { output: 'export' };", False),
        ("export default {\n  // output: 'standalone',\n};", False),
        ("export default { /* output: 'standalone' */ };", False),
    ],
)
def test_standalone_is_the_output_setting(config: str, standalone: bool) -> None:
    info = read_next(next_app(config, "next.config.mjs"), "web-ui")
    assert info is not None and info.config == "web-ui/next.config.mjs"
    assert info.standalone is standalone


def test_an_app_without_next_is_none_and_one_without_config_still_reads() -> None:
    assert read_next(DictTree({"package.json": '{"dependencies": {"react": "19"}}'}), ".") is None
    assert read_next(DictTree({}), ".") is None
    tree = DictTree(
        {"package.json": '{"devDependencies": {"next": "^14"}}', "pages/i.jsx": "NEXT_PUBLIC_X"}
    )
    assert read_next(tree, ".") == NextInfo(None, False, (), ("NEXT_PUBLIC_X",), "^14")


def test_a_standalone_build_starts_its_own_server() -> None:
    assert standalone_start() == ("node", ".next/standalone/server.js")


def test_comments_go_but_strings_stay() -> None:
    code = "const u = 'http://x'; // gone\nconst v = \"a/*b\"; /* gone */ const w = `c//d`;"
    assert (
        node.strip_comments(code)
        == "const u = 'http://x'; \nconst v = \"a/*b\";  const w = `c//d`;"
    )


def test_an_empty_lock_or_config_still_counts() -> None:
    deps = detect_node(DictTree({"package.json": "{}", "yarn.lock": ""}), ".")
    assert deps is not None and deps.lock == "yarn.lock" and deps.install[-1] == "--immutable"
    assert node.stale_problems(DictTree({"package.json": "{}", "yarn.lock": ""}), deps) == []
    tree = DictTree({"package.json": PACKAGE_JSON, "next.config.ts": ""})
    info = read_next(tree, ".")
    assert info is not None and info.config == "next.config.ts"


def test_a_directory_too_big_to_be_a_repository_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypothesis ran ``slipway init /``: it read the whole filesystem for minutes. A
    tree with more files than a repository has is refused, and nothing is written."""
    from support import run_cli

    for i in range(12):
        (tmp_path / f"m{i}.py").write_text("x = 1\n")
    (tmp_path / "node_modules").mkdir()
    for i in range(30):
        (tmp_path / "node_modules" / f"p{i}.js").write_text("//\n")  # installs: not counted
    assert len(DirTree(tmp_path, max_files=12).paths()) == 12
    with pytest.raises(SlipwayError, match=r"more than 10 files .* an app's repository"):
        DirTree(tmp_path, max_files=10).paths()
    monkeypatch.setattr("slipway.project.tree.MAX_FILES", 10)
    code, _, err = run_cli(["init", "--dir", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path} holds more than 10 files" in err, err
    assert "Traceback" not in err and not (tmp_path / "slipway.toml").exists()
