"""``rollback --to``: every way a user names a release, and every way it goes wrong."""

from __future__ import annotations

import pytest

from slipway.deploy.targets import KeptRelease, resolve
from slipway.errors import UsageError

C1 = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
C2 = "ffee0011223344556677889900aabbccddeeff00"
KEPT = [
    KeptRelease("20261101090000-a1b2c3d4", "v0.1.0", C1),
    KeptRelease("20261102090000-ffee0011", "v0.2.0", C2),
    KeptRelease("20261103090000-a1b2c3d4", "v0.1.0", C1),  # v0.1.0 deployed again
]


@pytest.mark.parametrize(
    ("asked", "release", "how"),
    [
        ("20261102090000-ffee0011", "20261102090000-ffee0011", "release id"),
        ("20261102", "20261102090000-ffee0011", "prefix"),
        ("v0.2.0", "20261102090000-ffee0011", "tag or branch"),
        ("v0.1.0", "20261103090000-a1b2c3d4", "tag or branch"),  # the newest of the tag
        ("a1b2c3d", "20261103090000-a1b2c3d4", "commit"),
        (C2.upper(), "20261102090000-ffee0011", "commit"),
    ],
)
def test_a_release_is_found_by_id_prefix_tag_or_commit(asked: str, release: str, how: str) -> None:
    found = resolve(asked, KEPT, "production")
    assert (found.release, found.how) == (release, how)
    assert release in found.describe(asked)


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ("v0.3.0", "no release of production matches --to 'v0.3.0'"),
        ("20261102090000-ffee0012", "no release of production matches"),  # one-character typo
        ("2026110", "matches 3 releases of production"),
        ("../../../outside", "is not a release id, tag or commit"),
        ("v1/../../x", "is not a release id, tag or commit"),
        ("/etc/passwd", "is not a release id, tag or commit"),
        ("a b", "is not a release id, tag or commit"),
        ("", "is not a release id, tag or commit"),
    ],
)
def test_unknown_ambiguous_or_unsafe_targets_are_usage_errors(asked: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve(asked, KEPT, "production")
    assert message in str(info.value)
    assert info.value.exit_code == 2
    if "matches 3" not in message:
        assert info.value.hint is not None and "20261101090000-a1b2c3d4 (v0.1.0" in info.value.hint


def test_an_environment_with_no_releases_says_so() -> None:
    with pytest.raises(UsageError) as info:
        resolve("v1", [], "staging")
    assert info.value.hint == "no releases are kept on this host"
