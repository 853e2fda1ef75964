"""No input gives a traceback: property tests drive the CLI with random arguments and
configuration values and expect a documented exit code and readable errors.

Found this way before (each fixed and kept here as an example): TOML nested 5,000 deep
(RecursionError), a NUL in ``host_env`` (accepted by `check`, then `embedded null
byte`), ``--lock-wait 1e308`` (OverflowError) or ``-inf``, ``monitor --interval -5``.
Commands that change things get an unknown environment, so whatever the options say,
nothing can run; read-only commands get the real one (never deployed: nothing there).
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from apprepo import make_repo, write_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slipway.cli.main import COMMANDS, main

DOCUMENTED = {0, 1, 2, 3}
HOSTILE_TEXT = [
    "",
    " ",
    "-1",
    "0",
    "1e308",
    "-inf",
    "nan",
    "99999",
    "\x00",
    "a\x00b",
    "x\ny",
    "../../etc/passwd",
    "/",
    "é" * 300,
    "-" * 3,
    "--json",
    "${HOME}",
    "$(id)",
    "';rm -rf /",
    "\u202eevil",
]
texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
# Commands that only read: they get the real environment. The rest change things (or
# serve forever) and get an environment that does not exist.
READ_ONLY = {"audit", "check", "lock", "metrics", "releases", "schema", "status", "plan"}
# Servers (their arguments are covered by tests/test_http_hardening.py) and gates, which
# runs the app's own test suite.
SKIP = {"dashboard", "monitor", "gates"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fuzz")
    return write_config(make_repo(tmp / "repo"), tmp / "srv")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The working directory: `init` writes slipway.toml there, `--output X` writes X."""
    path = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path)
        yield path


def _commands() -> list[tuple[str, ...]]:
    """Every command path (``("backup", "list")`` for a group's), from the click tree."""
    import importlib

    found: list[tuple[str, ...]] = []
    for name, (module, _) in sorted(COMMANDS.items()):
        if name in SKIP:
            continue
        command = importlib.import_module(module).command
        if isinstance(command, click.Group):
            found += [(name, sub) for sub in sorted(command.commands)]
        else:
            found.append((name,))
    return found


COMMAND_PATHS = _commands()


def _options(path: tuple[str, ...]) -> list[click.Option]:
    import importlib

    command = importlib.import_module(COMMANDS[path[0]][0]).command
    for sub in path[1:]:
        command = command.commands[sub]
    return [p for p in command.params if isinstance(p, click.Option)]


@st.composite
def invocations(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(COMMAND_PATHS))
    argv = list(path)
    if path[0] not in ("schema", "init", "github", "release", "preflight"):
        env = "testing" if path[0] in READ_ONLY else "no-such-env"
        argv.append(draw(st.sampled_from([env, env, "", "../x", "a\x00"])))
    options = [o for o in _options(path) if o.name != "help"]
    for option in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        flag = option.opts[-1]
        if option.is_flag:
            argv.append(flag)
        else:
            value = draw(st.one_of(texts, numbers.map(str)))
            argv += [flag, value]
    return argv


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


@given(argv=invocations())
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(argv=["deploy", "testing", "--lock-wait", "1e308"])
@example(argv=["deploy", "testing", "--lock-wait", "-inf"])
@example(argv=["rollback", "testing", "--lock-wait", "nan"])
@example(argv=["recover", "no-such-env", "--lock-wait", "1e308"])
def test_any_arguments_give_a_documented_exit_code_and_no_traceback(
    argv: list[str], config: Path, capsys: pytest.CaptureFixture[str], scratch: Path
) -> None:
    code, text = _run(["--config", str(config), *argv], capsys)
    assert code in DOCUMENTED, (argv, code, text)
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    if argv[0] in ("deploy", "rollback", "recover") and "testing" in argv:
        assert code == 2, (argv, text)  # the examples: refused before anything runs


def _leaves(raw: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the configuration, tables included (a table can be replaced by
    a number too)."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(raw, dict):
        for key, value in raw.items():
            found += _leaves(value, (*prefix, key))
    elif isinstance(raw, list):
        for index, value in enumerate(raw):
            found += _leaves(value, (*prefix, index))
    return found


def _toml_value(value: Any) -> str:
    """Inline TOML for any JSON-like value (a test needs no TOML writer library)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    pairs = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
    return "{" + pairs + "}"


def _toml(raw: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in raw.items())


values = st.one_of(
    texts,
    numbers,
    st.booleans(),
    st.lists(texts, max_size=3),
    st.dictionaries(texts, st.one_of(texts, numbers), max_size=2),
)


@given(data=st.data())
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_configuration_value_is_valid_or_a_located_error(
    data: st.DataObject,
    config: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = tomllib.loads(config.read_text())
    assert tomllib.loads(_toml(raw)) == raw  # the writer round-trips the real config
    paths = _leaves(raw)
    changed = copy.deepcopy(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target = changed
        try:
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = data.draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a table on this path
    path = tmp_path_factory.mktemp("cfg") / "slipway.toml"
    path.write_text(_toml(changed))
    code, text = _run(["--config", str(path), "check"], capsys)
    assert code in (0, 2), text
    assert "Traceback" not in text and "internal error" not in text, text
    if code == 2:
        assert "configuration error" in text, text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply to read"),
        ("a = " + "{b = " * 3000 + "1" + "}" * 3000 + "\n", "nested too deeply to read"),
    ],
)
def test_deeply_nested_toml_is_a_configuration_error(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slipway.toml"
    path.write_text(text)
    code, out = _run(["--config", str(path), "check"], capsys)
    assert code == 2 and message in out and "Traceback" not in out


def test_a_nul_in_host_env_is_refused_by_check(config: Path, capsys, tmp_path: Path) -> None:
    text = config.read_text().replace("host_env = {", 'host_env = { EVIL = "a\\u0000b", ', 1)
    path = tmp_path / "slipway.toml"
    path.write_text(text)
    code, out = _run(["--config", str(path), "check"], capsys)
    assert code == 2, out
    assert "environments.testing.host_env.EVIL: contains a NUL character" in out


def test_an_unexpected_exception_is_one_line_with_exit_70(
    config: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: a bug still prints one readable error, no traceback."""
    from slipway.cli import check

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(check, "loaded_config", broken)
    code, out = _run(["--config", str(config), "check"], capsys)
    assert code == 70
    assert "error: internal error: ZeroDivisionError: boom" in out and "Traceback" not in out
    assert "--debug" in out


def test_a_malformed_ssh_key_is_a_clear_error(tmp_path: Path, capsys) -> None:
    key = tmp_path / "id_bad"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text("")
    ssh = f'[environments.testing.ssh]\nkey = "{key}"\nknown_hosts = "{known}"\n'
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv", hosts='["me@127.0.0.1:1"]', ssh=ssh)
    code, out = _run(["--config", str(config), "status", "testing"], capsys)
    assert code == 1, out
    assert f"cannot use the SSH key {key}" in out and "Traceback" not in out


def test_a_write_on_a_read_only_filesystem_reports_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp file's clean-up failed too (EROFS) and replaced the error with its own."""
    import errno
    import os

    from slipway.errors import TransportError
    from slipway.transports.local import LocalTransport

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "fsync", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(TransportError, match=r"cannot write .*: Read-only file system"):
        LocalTransport().put_bytes(b"x", str(tmp_path / "journal.json"), mode=0o600)
