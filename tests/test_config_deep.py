"""`slipway check --deep`: the configuration against the repository's files (in
memory here; tests/test_onboarding.py runs it on real repositories)."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLE_APP, run_cli

from slipway.config import validate_config
from slipway.config.deep import (
    deep_report,
    lock_issues,
    next_route_exists,
    refuse_stale_locks,
    todo_lines,
)
from slipway.config.model import SlipwayConfig
from slipway.errors import SlipwayError
from slipway.project.tree import DictTree

BASE = tomllib.loads((EXAMPLE_APP / "slipway.toml").read_text())
SHAPES = Path(__file__).resolve().parent / "data" / "shapes"

BACKEND = """
from fastapi import FastAPI, WebSocket

app = FastAPI()


@app.get("/health")
def health():
    return {"status": "ok"}


@app.websocket("/ws")
async def ws(socket: WebSocket):
    await socket.send_text("pong")
"""
PACKAGE = {"name": "web", "dependencies": {"next": "14.2.35", "react": "18.3.1"}}


def lock_for(package: dict[str, Any]) -> str:
    deps = package.get("dependencies", {})
    return json.dumps(
        {"name": "web", "lockfileVersion": 3, "packages": {"": {"dependencies": deps}}}
    )


def files(**overrides: str) -> dict[str, str]:
    found = {
        "requirements.lock": "fastapi==0.115.6\nuvicorn==0.34.0\n",
        "codeframe_mini/__init__.py": "",
        "codeframe_mini/server.py": BACKEND,
        "web-ui/package.json": json.dumps(PACKAGE),
        "web-ui/package-lock.json": lock_for(PACKAGE),
        "web-ui/next.config.js": "module.exports = {};\n",
        "web-ui/app/page.js": "export default function P() { return <main/>; }\n",
        "web-ui/app/api/health/route.js": "export function GET() {}\n",
    }
    found.update(overrides)
    return found


def config(edit: Any = None) -> SlipwayConfig:
    raw = copy.deepcopy(BASE)
    raw["health"]["comprehensive"] = [
        c for c in raw["health"]["comprehensive"] if c["name"] in ("api", "frontend")
    ]
    if edit is not None:
        edit(raw)
    return validate_config(raw)


def messages(issues: list[Any]) -> list[str]:
    return [issue.render() for issue in issues]


def test_a_configuration_that_fits_has_no_errors() -> None:
    report = deep_report(config(), DictTree(files()))
    assert messages(report.errors) == []


def test_a_check_on_a_route_the_backend_lacks_is_named_with_the_file() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["health"]["comprehensive"].append({"name": "db", "path": "/api/health/db"})

    report = deep_report(config(edit), DictTree(files()))
    assert messages(report.errors) == [
        "health.comprehensive[db]: /api/health/db is not a route of the backend"
        " (codeframe_mini/server.py)"
    ]


def test_a_frontend_check_on_a_page_next_does_not_have_is_an_error() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["health"]["basic"].append({"name": "gone", "process": "frontend", "path": "/nope"})

    report = deep_report(config(edit), DictTree(files()))
    assert messages(report.errors) == [
        "health.basic[gone]: /nope is not a route of the Next.js app (web-ui)"
    ]


def test_a_variable_next_config_reads_at_build_time_must_be_in_build_env() -> None:
    rewrites = "module.exports = { env: { port: process.env.BACKEND_PORT } };\n"
    tree = DictTree(files(**{"web-ui/next.config.js": rewrites}))
    report = deep_report(config(), tree)
    assert [i.location for i in report.errors] == ["processes.frontend.build_env"]
    assert "web-ui/next.config.js reads BACKEND_PORT at build time" in report.errors[0].message

    def edit(raw: dict[str, Any]) -> None:
        raw["processes"]["frontend"]["build_env"]["BACKEND_PORT"] = "{backend_port}"

    assert deep_report(config(edit), tree).errors == []


def test_a_public_variable_nothing_sets_is_a_warning() -> None:
    page = "export default function P() { return <p>{process.env.NEXT_PUBLIC_SENTRY}</p>; }\n"
    report = deep_report(config(), DictTree(files(**{"web-ui/app/page.js": page})))
    assert report.errors == []
    assert any("NEXT_PUBLIC_SENTRY" in w.message for w in report.warnings)


def test_a_websocket_check_on_a_path_that_is_not_a_websocket_route_is_an_error() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["health"]["websocket"]["path"] = "/socket"

    report = deep_report(config(edit), DictTree(files()))
    assert messages(report.errors) == [
        "health.websocket.path: /socket is not a WebSocket route of the backend"
        " (its WebSocket routes: /ws)"
    ]


def test_a_missing_workdir_and_a_missing_requirements_file_are_errors() -> None:
    def edit(raw: dict[str, Any]) -> None:
        raw["processes"]["frontend"]["workdir"] = "frontend"

    tree = files()
    del tree["requirements.lock"]
    report = deep_report(config(edit), DictTree(tree))
    text = "\n".join(messages(report.errors))
    assert "processes.frontend.workdir: frontend/ is not in the repository" in text
    assert "processes.backend" in text and "requirements.lock" in text


def test_a_stale_npm_lock_is_refused_before_a_deploy_changes_anything() -> None:
    stale = {**PACKAGE, "dependencies": {**PACKAGE["dependencies"], "zod": "3.23.8"}}
    tree = DictTree(files(**{"web-ui/package.json": json.dumps(stale)}))
    issues = lock_issues(config(), tree)
    assert len(issues) == 1 and issues[0].location == "processes.frontend"
    assert "web-ui/package-lock.json" in issues[0].message
    with pytest.raises(SlipwayError) as info:
        refuse_stale_locks(config(), tree, "v2")
    assert info.value.message.startswith("v2: the release's dependencies cannot be installed")
    assert "npm install" in info.value.message


def test_a_stale_uv_lock_is_found_by_uv_itself() -> None:
    lock = (SHAPES / "uv-app" / "uv.lock").read_text()
    pyproject = (SHAPES / "uv-app" / "pyproject.toml").read_text()
    grown = pyproject.replace('"uvicorn==0.34.0",', '"uvicorn==0.34.0",\n    "six==1.16.0",')

    def edit(raw: dict[str, Any]) -> None:
        del raw["processes"]["backend"]["requirements"]

    fresh = files(**{"uv.lock": lock, "pyproject.toml": pyproject})
    assert lock_issues(config(edit), DictTree(fresh)) == []
    stale = lock_issues(config(edit), DictTree({**fresh, "pyproject.toml": grown}))
    assert len(stale) == 1
    assert "uv.lock does not match pyproject.toml" in stale[0].message
    assert "uv lock" in stale[0].message


@pytest.mark.parametrize(
    ("paths", "path", "found"),
    [
        (["web/app/page.tsx"], "/", True),
        (["web/app/(shop)/cart/page.js"], "/cart", True),
        (["web/app/api/health/route.ts"], "/api/health", True),
        (["web/app/items/[id]/page.js"], "/items/42", True),
        (["web/pages/index.js"], "/", True),
        (["web/src/pages/about.jsx"], "/about", True),
        (["web/public/robots.txt"], "/robots.txt", True),
        (["web/app/page.js"], "/api/health", False),
        (["web/app/api/health/helpers.js"], "/api/health", False),
    ],
)
def test_next_routes_are_read_from_the_app_and_pages_directories(
    paths: list[str], path: str, found: bool
) -> None:
    assert next_route_exists(DictTree({p: "" for p in paths}), "web", path) is found


def test_todo_markers_are_listed_with_their_line() -> None:
    text = "a = 1\n# TODO(slipway): set the start command\nb = 2  # TODO(slipway) check it\n"
    assert todo_lines(text) == [(2, "set the start command"), (3, "check it")]


def test_check_deep_through_the_cli_reports_at_the_ref(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(
        ["--config", str(EXAMPLE_APP / "slipway.toml"), "check", "--deep", "--ref", "no-such"],
        capsys,
    )
    assert code == 2 and "cannot resolve 'no-such'" in err
