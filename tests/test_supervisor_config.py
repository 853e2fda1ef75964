"""What slipway writes for supervisor, read back by supervisor's own parser: every
argv word and environment value arrives as given, or is refused by name before
anything stops (never echoed: it may be a secret)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from slipway.errors import SlipwayError
from slipway.processes.base import AppSpec
from slipway.processes.supervisor import _unquoted, program

supervisor_options = pytest.importorskip("supervisor.options")

VALUES = [
    "a,b",
    "k=v",
    " lead",
    "trail ",
    "back\\slash",
    "x#y",
    "x;y",
    "100%",
    "%(here)s",
    "ünï",
    "",
    "it's",
    'say "hi" now',
    "tab\there",
]
ARGV = ["/bin/echo", "a b", "c;d", "e #f", "g ;h", "100%", "it's", '"q"', "x\t#y", "--", ""]


def read_back(spec: AppSpec) -> tuple[list[str], dict[str, str]]:
    parser = supervisor_options.UnhosedConfigParser()
    parser.read_string(program(spec))
    options = supervisor_options.ServerOptions()
    options.here = spec.cwd
    config = options.processes_from_section(parser, f"program:{spec.name}", spec.name)[0]
    return shlex.split(config.command), dict(config.environment or {})


def test_every_word_and_value_round_trips(tmp_path: Path) -> None:
    env = {f"K{i}": value for i, value in enumerate(VALUES)}
    argv, seen = read_back(AppSpec("app-a", ARGV, str(tmp_path), env, 3000, str(tmp_path)))
    assert argv == ARGV
    assert seen == env


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"A B": "1"}, "the variable 'A B': its name is not a plain identifier"),
        ({"TOKEN": "'quoted'"}, "the value of TOKEN: it starts or ends with a quote"),
        ({"TOKEN": 'ends"'}, "the value of TOKEN: it starts or ends with a quote"),
        ({"TITLE": "Shop #1"}, "a space before ';' or '#' starts a comment"),
        ({"TOKEN": "a\nb"}, "the value of TOKEN: it holds a line break or NUL"),
        ({"TOKEN": 'it\'s "both" ok'}, "the value of TOKEN: it holds both kinds of quote"),
    ],
)
def test_what_supervisor_would_change_is_refused_by_name(
    tmp_path: Path, env: dict[str, str], why: str
) -> None:
    with pytest.raises(SlipwayError) as info:
        program(AppSpec("app-a", ["/bin/true"], str(tmp_path), env, 3000, str(tmp_path)))
    assert why in info.value.message
    for value in env.values():
        assert value not in info.value.message or value == "1"


def test_a_complaint_is_reported_without_what_it_quoted() -> None:
    said = "ERROR: CANT_REREAD: Unexpected end of key/value pairs in value 'A=\"s3cr3t\"'\n"
    assert _unquoted(said) == "ERROR: CANT_REREAD: Unexpected end of key/value pairs in value '…'"
    assert _unquoted("") == "no output"
