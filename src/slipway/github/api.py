"""The GitHub REST calls slipway makes, over httpx.

Why httpx and not PyGithub or ghapi: slipway already depends on httpx; the calls are a
dozen, each a few lines here with its real path and fields; and a base URL from
``GITHUB_API_URL`` (set by Actions, and by GitHub Enterprise) is all it takes to point
the same code at a stand-in in tests. Errors become :class:`GitHubError` with GitHub's
own message; the token is a :class:`~slipway.secrets.Secret` and is masked everywhere.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from slipway.errors import SlipwayError
from slipway.secrets import Secret

API_VERSION = "2022-11-28"


class GitHubError(SlipwayError):
    """A GitHub API call failed (status and GitHub's message)."""


class GitHub:
    def __init__(
        self, repository: str, token: Secret, api_url: str = "https://api.github.com"
    ) -> None:
        if repository.count("/") != 1:
            raise SlipwayError(f"GitHub repository must be owner/name, not {repository!r}")
        self.repository = repository
        self.token = token
        self.client = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "slipway",
                "Authorization": f"Bearer {token.reveal()}",
            },
            timeout=20,
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> GitHub:
        """From the variables Actions sets: GITHUB_REPOSITORY, GITHUB_TOKEN, GITHUB_API_URL."""
        env = environ if environ is not None else dict(os.environ)
        missing = [k for k in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(k)]
        if missing:
            raise SlipwayError(
                f"{' and '.join(missing)} not set",
                hint="in Actions they are set for you (pass secrets.GITHUB_TOKEN as GITHUB_TOKEN);"
                " on a laptop export them (a token with repo scope)",
            )
        return cls(
            env["GITHUB_REPOSITORY"],
            Secret(env["GITHUB_TOKEN"]),
            env.get("GITHUB_API_URL", "https://api.github.com"),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = path if path.startswith("/") else f"/repos/{self.repository}/{path}"
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise GitHubError(f"GitHub {method} {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", "")
            except ValueError:
                detail = response.text[:200]
            raise GitHubError(f"GitHub {method} {url}: {response.status_code} {detail}".rstrip())
        return response.json() if response.content else None

    def paged(self, path: str, key: str | None = None) -> list[Any]:
        """Every item of a listed resource (follows pages of 100)."""
        items: list[Any] = []
        page = 1
        while True:
            data = self.request("GET", path, params={"per_page": 100, "page": page})
            batch = data[key] if key else data
            items += batch
            if len(batch) < 100:
                return items
            page += 1

    # --- the calls ----------------------------------------------------------------------

    def check_runs(self, sha: str) -> list[dict[str, Any]]:
        return self.paged(f"commits/{sha}/check-runs", key="check_runs")

    def combined_status(self, sha: str) -> dict[str, Any]:
        status: dict[str, Any] = self.request("GET", f"commits/{sha}/status")
        return status

    def compare(self, base: str, head: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"compare/{base}...{head}")
        return found

    def create_release(self, tag: str, name: str, body: str) -> dict[str, Any]:
        payload = {"tag_name": tag, "name": name, "body": body, "draft": False}
        created: dict[str, Any] = self.request("POST", "releases", json=payload)
        return created

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        return self.paged(f"issues/{number}/comments")

    def create_comment(self, number: int, body: str) -> dict[str, Any]:
        created: dict[str, Any] = self.request(
            "POST", f"issues/{number}/comments", json={"body": body}
        )
        return created

    def update_comment(self, comment_id: int, body: str) -> dict[str, Any]:
        updated: dict[str, Any] = self.request(
            "PATCH", f"issues/comments/{comment_id}", json={"body": body}
        )
        return updated

    def create_status(self, sha: str, state: str, context: str, description: str) -> None:
        payload = {"state": state, "context": context, "description": description[:140]}
        self.request("POST", f"statuses/{sha}", json=payload)

    def create_deployment(self, ref: str, environment: str, description: str) -> dict[str, Any]:
        payload = {
            "ref": ref,
            "environment": environment,
            "description": description[:140],
            "auto_merge": False,
            "required_contexts": [],  # slipway preflight has checked CI already
            "production_environment": environment == "production",
        }
        created: dict[str, Any] = self.request("POST", "deployments", json=payload)
        return created

    def create_deployment_status(
        self, deployment_id: int, state: str, description: str, log_url: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"state": state, "description": description[:140]}
        if log_url:
            payload["log_url"] = log_url
        created: dict[str, Any] = self.request(
            "POST", f"deployments/{deployment_id}/statuses", json=payload
        )
        return created


def report_deployment(gh: GitHub, ref: str, environment: str, state: str, description: str) -> int:
    """A finished deployment in one go (a rollback's): created, then given its state."""
    deployment = gh.create_deployment(ref, environment, description)
    gh.create_deployment_status(int(deployment["id"]), state, description)
    return int(deployment["id"])
