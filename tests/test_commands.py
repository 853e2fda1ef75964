"""Pure command builders, PM2 documents, env files, refs: exact outputs, hostile inputs."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.commands import build, host, pm2
from slipway.deploy.engine import parse_env_file
from slipway.deploy.source import check_ref, resolve
from slipway.deploy.venvs import installs_local_code
from slipway.errors import UsageError
from slipway.processes.base import AppSpec
from slipway.processes.pm2 import ecosystem, parse_jlist
from slipway.transports.ssh import remote_command


def test_host_commands_are_exact_argv():
    assert host.mkdir_p("/a", "/b c") == ["mkdir", "-p", "--", "/a", "/b c"]
    assert host.extract_tar("/r/x.tar", "/r/x") == ["tar", "-x", "-f", "/r/x.tar", "-C", "/r/x"]
    assert host.symlink_temp("/r/rel", "/r/current") == ["ln", "-sfn", "/r/rel", "/r/current.new"]
    assert host.rename_over("/r/current.new", "/r/current") == [
        "mv",
        "-T",
        "--",
        "/r/current.new",
        "/r/current",
    ]
    assert host.remove_tree("/r/old") == ["rm", "-rf", "--", "/r/old"]
    assert host.hardlink_copy("/a", "/b") == ["cp", "-al", "--", "/a", "/b"]
    assert host.lock_holder("/l") == [
        "flock",
        "-n",
        "-E",
        "75",
        "/l",
        "sh",
        "-c",
        'echo "locked $$"; exec cat >/dev/null',
    ]
    assert host.lock_holder("/l", 2.5)[:3] == ["flock", "-w", "2.5"]
    assert host.kill_process(42) == ["kill", "-TERM", "42"]
    assert host.chmod("600", "/e") == ["chmod", "600", "--", "/e"]


def test_build_commands_and_placeholders():
    assert build.uv_venv("/r/.venv") == ["uv", "venv", "--quiet", "--allow-existing", "/r/.venv"]
    assert build.uv_install("/r/.venv", "requirements.lock") == [
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        "/r/.venv/bin/python",
        "-r",
        "requirements.lock",
    ]
    rendered = build.render(
        ["{python}", "-m", "app", "--port", "{port}"], {"python": "/p y", "port": "1"}
    )
    assert rendered == ["/p y", "-m", "app", "--port", "1"]
    # A value with shell characters stays one word.
    assert build.render(["{x}"], {"x": "a; rm -rf /"}) == ["a; rm -rf /"]


def test_pm2_never_names_all_or_ids():
    assert pm2.delete("app-staging-backend") == ["pm2", "delete", "app-staging-backend"]
    for bad in ("all", "", "0", "12"):
        with pytest.raises(ValueError, match="refusing"):
            pm2.delete(bad)
    assert pm2.start("/e.json") == ["pm2", "start", "/e.json"]
    assert pm2.save() == ["pm2", "save", "--force"]
    assert pm2.jlist() == ["pm2", "jlist"]


def test_ecosystem_document():
    spec = AppSpec(
        "p-s-backend", ["/r/.venv/bin/python", "-m", "app"], "/r", {"A": "1"}, 8000, "/logs"
    )
    doc = ecosystem([spec])
    assert doc == {
        "apps": [
            {
                "name": "p-s-backend",
                "namespace": "slipway",
                "script": "/r/.venv/bin/python",
                "args": ["-m", "app"],
                "interpreter": "none",
                "cwd": "/r",
                "env": {"A": "1"},
                "kill_timeout": 8000,
                "autorestart": True,
                "max_restarts": 3,
                "min_uptime": 3000,
                "restart_delay": 500,
                "out_file": "/logs/p-s-backend.out.log",
                "error_file": "/logs/p-s-backend.err.log",
                "time": True,
            }
        ]
    }


def test_parse_jlist_skips_daemon_noise_and_marks_missing():
    text = (
        "[PM2] Spawning PM2 daemon\n"
        '[{"name": "a", "pid": 7, "pm2_env": {"status": "online", "restart_time": 2}},'
        ' {"name": "other", "pid": 8, "pm2_env": {"status": "online"}}]'
    )
    states = parse_jlist(text, ["a", "b"])
    assert states["a"].online and states["a"].pid == 7 and states["a"].restarts == 2
    assert states["b"].status == "missing" and not states["b"].online
    assert "other" not in states
    assert parse_jlist("", ["a"])["a"].status == "missing"
    with pytest.raises(Exception, match="not JSON"):
        parse_jlist('[{"oops', ["a"])


def test_parse_env_file():
    text = "# comment\n\nexport A=1\nB='two words'\nC=\"x=y\"\nnot a pair\nD=\n"
    assert parse_env_file(text) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}


def test_remote_command_quotes_every_word():
    line = remote_command(["echo", "$(id)", "a b"], {"K": "v; rm"}, "/d ir")
    assert shlex.split(line) == ["env", "-C", "/d ir", "K=v; rm", "echo", "$(id)", "a b"]
    assert remote_command(["ls"]) == "ls"


HOSTILE = st.lists(
    st.sampled_from([*list("abc /;$()`'\"\n\\.-~^|&<>*?"), "..", "$(id)", "`id`", "v1"]),
    min_size=1,
    max_size=12,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(HOSTILE)
def test_hostile_refs_are_rejected_or_harmless(ref: str):
    try:
        check_ref(ref)
    except UsageError:
        return
    # Accepted refs contain none of the characters a shell or git option would act on.
    assert not ref.startswith("-")
    assert ".." not in ref
    assert not set(ref) & set(" ;$()`'\"\n\\|&<>*?")


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_remote_command_round_trips_any_word(word: str):
    if "\x00" in word:
        return
    assert shlex.split(remote_command(["printf", "%s", word])) == ["printf", "%s", word]


def test_resolve_refuses_unknown_and_option_like_refs(tmp_path: Path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with pytest.raises(UsageError, match="invalid git ref"):
        resolve(tmp_path, "--upload-pack=touch /tmp/x")
    with pytest.raises(UsageError, match="cannot resolve"):
        resolve(tmp_path, "nope")


def test_source_resolves_commits_trees_and_archives(tmp_path: Path, monkeypatch):
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "web").mkdir()
    (repo / "web" / "a.txt").write_text("a")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first line\n\nbody"], check=True)
    source = resolve(repo, "main")
    assert len(source.commit) == 40 and source.message == "first line"
    assert source.tree("web") is not None and source.tree("missing") is None
    archive = source.archive()
    try:
        listing = subprocess.run(
            ["tar", "-tf", str(archive)], capture_output=True, text=True, check=True
        )
        assert "web/a.txt" in listing.stdout.split()
    finally:
        archive.unlink()
    from slipway.deploy.source import release_id

    assert release_id(source, now=0).startswith("19700101000000-")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError) as info:
        resolve(repo, "main")
    assert info.value.hint == "git is not installed on this machine"


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("fastapi==0.115.0\nuvicorn==0.30.0 \\\n    --hash=sha256:abc\n", False),
        ("# -e . is not here\nhttpx==0.27.0\n", False),
        ("-e .\n", True),
        ("--editable ./backend\n", True),
        ("./wheels/app-1.0-py3-none-any.whl\n", True),
        ("app @ file:///srv/app\n", True),
        ("/abs/path/pkg\n", True),
        ("-r base.txt\nhttpx==0.27.0\n", True),  # base.txt's changes would not show
        ("--constraint constraints.txt\n", True),
    ],
)
def test_a_lock_installing_the_release_own_code_gets_its_own_environment(
    text: str, local: bool
) -> None:
    """Such a lock installs code that differs per release: its venv is never shared."""
    assert installs_local_code(text) is local
