"""A local stand-in for the GitHub REST API (no network reaches GitHub here).

It serves the real paths and shapes slipway uses: check runs and combined statuses of a
commit, commit statuses, compare (computed with git on a real repository, so "is this
tag on main" has real answers), releases (422 when the tag has one), issue comments
(list, create, update), deployments and deployment statuses. Every request is recorded
with its method, path, headers and JSON body. A wrong token gets 401 "Bad credentials".
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "ghs_fakeTokenForTests0123456789"


@dataclass
class FakeGitHub:
    repo_dir: Path
    repository: str = "acme/codeframe-mini"
    port: int = 0
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    releases: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    deployment_statuses: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    next_id: int = 1000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_TOKEN": TOKEN,
            "GITHUB_API_URL": self.url,
        }

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(self.repo_dir), *args], capture_output=True, text=True, check=False
        )

    def compare(self, base: str, head: str) -> tuple[int, dict[str, Any]]:
        b, h = (
            self.git("rev-parse", base).stdout.strip(),
            self.git("rev-parse", head).stdout.strip(),
        )
        if not b or not h:
            return 404, {"message": "Not Found"}
        ahead = int(self.git("rev-list", "--count", f"{b}..{h}").stdout.strip())
        behind = int(self.git("rev-list", "--count", f"{h}..{b}").stdout.strip())
        status = (
            "identical"
            if not ahead and not behind
            else "ahead" if not behind else "behind" if not ahead else "diverged"
        )
        return 200, {
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "merge_base_commit": {"sha": self.git("merge-base", b, h).stdout.strip()},
        }

    def handle(
        self, method: str, path: str, body: Any, query: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        query = query or {}
        per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))

        def paged(items: list[Any]) -> list[Any]:
            return items[(page - 1) * per_page : page * per_page]

        prefix = f"/repos/{self.repository}/"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :]
        if m := re.fullmatch(r"commits/([^/]+)/check-runs", rest):
            runs = self.check_runs.get(m[1], [])
            return 200, {"total_count": len(runs), "check_runs": paged(runs)}
        if m := re.fullmatch(r"commits/([^/]+)/status", rest):
            found = self.statuses.get(m[1], [])
            states = {s["state"] for s in found}
            state = (
                "failure"
                if states & {"failure", "error"}
                else "pending" if "pending" in states or not found else "success"
            )
            return 200, {"state": state, "statuses": found, "sha": m[1], "total_count": len(found)}
        if (m := re.fullmatch(r"statuses/([0-9a-f]{40})", rest)) and method == "POST":
            status = {"id": self.new_id(), **body}
            self.statuses.setdefault(m[1], []).insert(0, status)
            return 201, status
        if m := re.fullmatch(r"compare/(.+)\.\.\.(.+)", rest):
            return self.compare(m[1], m[2])
        if rest == "releases" and method == "POST":
            if any(r["tag_name"] == body["tag_name"] for r in self.releases):
                return 422, {
                    "message": "Validation Failed",
                    "errors": [
                        {"resource": "Release", "code": "already_exists", "field": "tag_name"}
                    ],
                }
            release = {
                "id": self.new_id(),
                **body,
                "html_url": f"https://github.com/{self.repository}/releases/tag/{body['tag_name']}",
            }
            self.releases.append(release)
            return 201, release
        if m := re.fullmatch(r"issues/(\d+)/comments", rest):
            number = int(m[1])
            if method == "GET":
                return 200, paged(self.comments.get(number, []))
            comment = {
                "id": self.new_id(),
                "body": body["body"],
                "user": {"login": "github-actions[bot]"},
            }
            self.comments.setdefault(number, []).append(comment)
            return 201, comment
        if (m := re.fullmatch(r"issues/comments/(\d+)", rest)) and method == "PATCH":
            for comments in self.comments.values():
                for comment in comments:
                    if comment["id"] == int(m[1]):
                        comment["body"] = body["body"]
                        return 200, comment
            return 404, {"message": "Not Found"}
        if rest == "deployments" and method == "POST":
            deployment = {
                "id": self.new_id(),
                **body,
                "sha": self.git("rev-parse", body["ref"]).stdout.strip(),
            }
            self.deployments.append(deployment)
            return 201, deployment
        if (m := re.fullmatch(r"deployments/(\d+)/statuses", rest)) and method == "POST":
            status = {"id": self.new_id(), "deployment_id": int(m[1]), **body}
            self.deployment_statuses.append(status)
            return 201, status
        return 404, {"message": "Not Found"}


@contextmanager
def fake_github(repo_dir: Path) -> Iterator[FakeGitHub]:
    gh = FakeGitHub(repo_dir)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            parts = urlsplit(self.path)
            path = parts.path
            query = dict(parse_qsl(parts.query))
            with lock:
                gh.requests.append((self.command, path, body))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    code, answer = 401, {"message": "Bad credentials"}
                elif self.headers.get("X-GitHub-Api-Version") != "2022-11-28":
                    code, answer = 400, {"message": "missing API version header"}
                else:
                    code, answer = gh.handle(self.command, path, body, query)
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gh.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield gh
    finally:
        server.shutdown()
        server.server_close()
