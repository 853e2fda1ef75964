"""Notifications: contents, native formats and their limits, delivery with retries and
deadlines against a local stand-in for Slack and Discord, and the deploy engine's use."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from apprepo import make_repo, write_config, write_env_file
from fakehooks import fake_webhooks
from support import TOOLS_BIN, require_binary, run_cli, stop_pm2

from slipway.config import load_config
from slipway.config.model import NotifyChannel, NotifyEvent, SlipwayConfig
from slipway.errors import ConfigError, DeployFailed, SlipwayError
from slipway.health.checks import CheckResult
from slipway.notify import Notifier, formats, message
from slipway.notify.send import webhook_url
from slipway.secrets import MASK, Masker

SECRET_TOKEN = "T0KEN-s3cr3t-webhook-9f8e"


def channel(kind: str, env: str = "HOOK_URL", **kw) -> NotifyChannel:
    return NotifyChannel.model_validate({"kind": kind, "url_env": env, **kw})


def success_note(**changes: Any) -> message.Notification:
    values: dict[str, Any] = {
        "project": "codeframe-mini",
        "env": "production",
        "release": "20261127-abc",
        "commit": "0123456789abcdef0123",
        "message": "feat: faster agents\n\nbody",
        "actor": "alice",
        "seconds": 12.34,
        "checks": [CheckResult("api", True, 3.2), CheckResult("database", True, 4.5)],
        "url": "https://codeframe.example.com",
    }
    return message.deployed(**{**values, **changes})


def failure_note(error: str = "line 1\nline 2\nTraceback: boom") -> message.Notification:
    return message.deploy_failed(
        project="codeframe-mini",
        env="production",
        release="20261127-def",
        commit="fedcba9876543210",
        actor="bob",
        step="health",
        error=error,
        rolled_back=True,
        rollback="20261127-abc serves again",
        url="https://codeframe.example.com",
    )


# --- contents and formats ---------------------------------------------------------------


def test_success_message_has_what_the_design_lists():
    text = success_note().text()
    for expected in [
        "production",
        "20261127-abc",
        "0123456789ab feat: faster agents",
        "alice",
        "12.3s",
        "ok   api",
        "ok   database",
        "https://codeframe.example.com",
    ]:
        assert expected in text, expected
    assert "body" not in text  # the commit subject only


def test_failure_message_has_step_error_tail_rollback_and_next_steps():
    error = "\n".join(f"output line {i}" for i in range(40))
    note = failure_note(error)
    text = note.text()
    assert "FAILED at health" in note.title
    assert "output line 39" in text and "output line 25" in text
    assert "output line 24" not in text  # only the last 15 lines
    assert "rolled back, the previous release serves: 20261127-abc serves again" in text
    assert "Next: fix the cause and deploy again" in text
    incomplete = message.deploy_failed(
        project="p",
        env="e",
        release="r",
        commit="c",
        actor="a",
        step="start",
        error="x",
        rolled_back=False,
        rollback="",
        url=None,
    )
    assert "ROLLBACK INCOMPLETE" in incomplete.text() and "slipway rollback e" in incomplete.text()


def test_slack_payload_is_block_kit_within_limits():
    note = failure_note("x" * 10_000)
    payload = formats.slack(note)
    assert payload["text"] == note.title
    header, fields = payload["blocks"][0], payload["blocks"][1]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert 1 <= len(fields["fields"]) <= 10
    assert {"type": "mrkdwn", "text": "*Failed step*\nhealth"} in fields["fields"]
    for block in payload["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    assert payload["blocks"][2]["text"]["text"].endswith("x\n```")  # the error's tail kept
    long_title = message.alert(
        project="p" * 200,
        env="e",
        name="disk",
        firing=True,
        value="1%",
        threshold="<10%",
        since="now",
        url=None,
    )
    assert len(formats.slack(long_title)["blocks"][0]["text"]["text"]) == 150


def test_mentions_in_commit_subjects_and_actors_reach_slack_as_text():
    """`<!here>` in a commit subject, `<!channel>` in an actor: shown, never a ping."""
    note = success_note(
        message="fix: <!here> ping & <@U123>",
        actor="<!channel> mallory",
        url="https://codeframe.example.com/?a=1&b=2",
    )
    payload = formats.slack(note)
    sent = json.dumps(payload)
    assert "<!" not in sent and "<@" not in sent
    texts = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert any("&lt;!here&gt; ping &amp; &lt;@U123&gt;" in t for t in texts), texts
    assert any("&lt;!channel&gt; mallory" in t for t in texts), texts
    assert payload["blocks"][-1]["elements"][0]["text"].endswith("?a=1&amp;b=2")
    assert formats.discord(note)["allowed_mentions"] == {"parse": []}


def test_discord_payload_is_one_embed_within_limits():
    payload = formats.discord(failure_note("y" * 10_000))
    assert payload["allowed_mentions"] == {"parse": []}  # nobody pinged by an error text
    (embed,) = payload["embeds"]
    assert embed["color"] == formats.RED
    assert len(embed["description"]) <= 4096
    total = (
        len(embed["title"])
        + len(embed["description"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    )
    assert total <= 6000
    assert {"name": "Failed step", "value": "health", "inline": True} in embed["fields"]
    assert formats.discord(success_note())["embeds"][0]["color"] == formats.GREEN


# --- configuration -------------------------------------------------------------------------


def base_config(notify: list[dict]) -> dict:
    return {
        "project": {"name": "app"},
        "processes": {"backend": {"kind": "python", "start": ["x"], "port": "backend"}},
        "environments": {
            "staging": {"database": "a.db", "ports": {"backend": 1, "frontend": 2}, "root": "/s"}
        },
        "notify": notify,
    }


def test_a_webhook_url_in_the_config_is_refused_with_the_way_out():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"a webhook URL is a secret.*url_env"):
        SlipwayConfig.model_validate(
            base_config([{"kind": "slack", "url": "https://hooks.slack.com/services/T/B/X"}])
        )
    with pytest.raises(ValidationError, match="exactly one of url_env or url_file"):
        SlipwayConfig.model_validate(base_config([{"kind": "slack"}]))
    with pytest.raises(ValidationError, match="unknown environments: prod"):
        SlipwayConfig.model_validate(
            base_config([{"kind": "discord", "url_env": "D", "environments": ["prod"]}])
        )


def test_config_error_names_the_notify_entry(tmp_path: Path):
    path = tmp_path / "slipway.toml"
    path.write_text(
        '[project]\nname = "app"\n[processes.backend]\nkind = "python"\nstart = ["x"]\n'
        'port = "backend"\n[environments.staging]\nroot = "/srv/app"\n'
        '[[notify]]\nkind = "teams"\nurl_env = "X"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "notify[0].kind: must be 'slack', 'discord' or 'apprise'" in str(info.value)


def test_webhook_url_sources(tmp_path: Path):
    with pytest.raises(SlipwayError, match=r"\$HOOK_URL is not set"):
        webhook_url(channel("slack"), environ={})
    assert webhook_url(channel("slack"), environ={"HOOK_URL": " u "}).reveal() == "u"
    secret_file = tmp_path / "hook"
    secret_file.write_text("https://hooks.example/abc\n")
    secret_file.chmod(0o644)
    file_channel = NotifyChannel(kind="slack", url_file=str(secret_file))
    with pytest.raises(SlipwayError, match=r"readable by others \(mode 0644") as info:
        webhook_url(file_channel)
    assert info.value.hint == f"chmod 600 {secret_file}"
    secret_file.chmod(0o600)
    assert webhook_url(file_channel).reveal() == "https://hooks.example/abc"
    with pytest.raises(SlipwayError, match="cannot read"):
        webhook_url(NotifyChannel(kind="slack", url_file=str(tmp_path / "none")))


# --- delivery ---------------------------------------------------------------------------


def notifier(channels: list[NotifyChannel], environ: dict[str, str], env: str = "staging"):
    return Notifier(channels, env, Masker(), environ=environ)


def test_slack_and_discord_receive_their_native_payloads():
    with fake_webhooks() as hooks:
        n = notifier(
            [channel("slack", "SLACK_URL"), channel("discord", "DISCORD_URL")],
            {"SLACK_URL": hooks.url("/slack/a"), "DISCORD_URL": hooks.url("/discord/b")},
        )
        deliveries = n.send(success_note())
        assert [(d.ok, d.attempts, d.status) for d in deliveries] == [
            (True, 1, 200),
            (True, 1, 204),
        ]
        (slack,) = hooks.bodies("/slack")
        (discord,) = hooks.bodies("/discord")
    assert slack == formats.slack(success_note())
    assert discord == formats.discord(success_note())
    assert deliveries[0].channel == "slack via $SLACK_URL"


def test_rate_limits_are_honoured_then_retried():
    with fake_webhooks() as hooks:
        n = notifier(
            [channel("slack", "S"), channel("discord", "D")],
            {"S": hooks.url("/slack/ratelimit"), "D": hooks.url("/discord/ratelimit")},
        )
        started = time.monotonic()
        slack, discord = n.send(success_note())
        elapsed = time.monotonic() - started
    assert (slack.ok, slack.attempts, discord.ok, discord.attempts) == (True, 2, True, 2)
    assert elapsed >= 1.0  # Slack's Retry-After: 1 was waited out


def test_server_errors_are_retried_until_the_deadline_and_bad_payloads_are_not():
    with fake_webhooks() as hooks:
        n = notifier(
            [channel("slack", "A", timeout_seconds=1.5), channel("slack", "B")],
            {"A": hooks.url("/slack/broken"), "B": hooks.url("/slack/invalid")},
        )
        broken, invalid = n.send(failure_note())
    assert not broken.ok and broken.attempts >= 3 and broken.status == 500
    assert broken.seconds <= 2.0
    assert not invalid.ok and invalid.attempts == 1
    assert invalid.error == "HTTP 400: invalid_payload"


def test_a_slow_receiver_cannot_hold_the_caller_past_the_deadline():
    with fake_webhooks() as hooks:
        n = notifier(
            [channel("slack", "SLOW", timeout_seconds=1), channel("discord", "OK")],
            {"SLOW": hooks.url("/slack/slow"), "OK": hooks.url("/discord/fine")},
        )
        started = time.monotonic()
        slow, fine = n.send(success_note())
        elapsed = time.monotonic() - started
    assert elapsed < 2.5
    assert not slow.ok and "Timeout" in (slow.error or "")
    assert fine.ok  # one slow channel does not hold the others


def test_webhook_url_never_appears_in_a_delivery():
    from support import free_port

    url = f"http://127.0.0.1:{free_port()}/hooks/{SECRET_TOKEN}"
    n = notifier([channel("slack", "S", timeout_seconds=0.5)], {"S": url})
    (delivery,) = n.send(success_note())
    assert not delivery.ok
    assert SECRET_TOKEN not in json.dumps(delivery.as_dict())
    assert n.masker(f"error at {url}") == f"error at {MASK}"


def test_no_part_of_a_webhook_url_reaches_an_error_when_the_receiver_echoes_it():
    """`HTTP 404: no such hook /<secret part>` once reached the output and the audit
    log: only the whole URL was masked."""
    with fake_webhooks() as hooks:
        url = hooks.url("/nohook/T0ABC123/B0DEF456/XyZsecret%2FPart99?token=qwerty123&x=1")
        n = notifier([channel("slack", "S")], {"S": url})
        (delivery,) = n.send(success_note())
    assert not delivery.ok and delivery.error is not None
    assert delivery.error.startswith("HTTP 404: no such hook /nohook/")  # said, but masked
    for part in ("T0ABC123", "B0DEF456", "XyZsecret", "Part99", "qwerty123"):
        assert part not in delivery.error, delivery.error
    assert "/nohook/" in delivery.error  # the service's own words stay readable


def test_url_secret_parts_cover_path_query_user_and_their_encodings():
    from slipway.secrets import url_secret_parts

    parts = url_secret_parts(
        "https://u:pa55word@hooks.slack.com/services/T0ABC/B0X9/a%2Fb?k=v%20wxyz&format=json#frag"
    )
    assert {"T0ABC", "B0X9", "a%2Fb", "a/b", "pa55word", "v%20wxyz", "v wxyz", "frag"} <= set(parts)
    assert "services" not in parts and "hooks.slack.com" not in parts
    assert "json" not in parts  # a setting, not a token: "json" stays readable everywhere
    # Apprise puts tokens in the host part; ntfy topics are lowercase words.
    telegram = url_secret_parts("tgram://123456789:AAHtok3nValue/chat-42")
    assert {"123456789", "AAHtok3nValue", "chat-42"} <= set(telegram)
    assert "acme-deploys" in url_secret_parts("https://ntfy.sh/acme-deploys")
    assert "v1" not in url_secret_parts("https://example.com/api/v1/hooks/Zq8s9d")


def test_events_and_environments_filter_channels():
    with fake_webhooks() as hooks:
        env = {"A": hooks.url("/slack/a"), "B": hooks.url("/slack/b")}
        only_failures = channel("slack", "A", events=["failure"])
        only_prod = channel("slack", "B", environments=["production"])
        assert notifier([only_failures, only_prod], env).send(success_note()) == []
        assert len(notifier([only_failures], env).send(failure_note())) == 1
        assert len(notifier([only_prod], env, env="production").send(success_note())) == 1
    assert NotifyEvent.ALERT in channel("slack").events


def test_apprise_url_delivers_markdown_through_apprise():
    with fake_webhooks() as hooks:
        n = notifier(
            [channel("apprise", "APPRISE_URL")],
            {"APPRISE_URL": f"json://127.0.0.1:{hooks.port}/apprise/x"},
        )
        (delivery,) = n.send(failure_note())
        (body,) = hooks.bodies("/apprise")
    assert delivery.ok
    assert body["title"] == failure_note().title
    assert "**Failed step:** health" in body["message"]
    unknown = notifier([channel("apprise", "U")], {"U": "notaservice://x"}).send(success_note())
    assert not unknown[0].ok and unknown[0].error == "Apprise does not understand this URL"


# --- the CLI and the deploy engine --------------------------------------------------------


def test_cli_notify_test(tmp_path: Path, capsys, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    config = write_config(repo, tmp_path / "srv")
    with config.open("a") as f:
        f.write(
            '\n[[notify]]\nkind = "slack"\nurl_env = "SLIPWAY_TEST_SLACK"\n'
            'environments = ["testing"]\n'
        )
    monkeypatch.chdir(repo)
    monkeypatch.delenv("SLIPWAY_TEST_SLACK", raising=False)
    code, out, _ = run_cli(["notify", "test", "testing"], capsys)
    assert code == 1 and "FAILED slack via $SLIPWAY_TEST_SLACK" in out
    assert "$SLIPWAY_TEST_SLACK is not set" in out
    with fake_webhooks() as hooks:
        monkeypatch.setenv("SLIPWAY_TEST_SLACK", hooks.url(f"/slack/{SECRET_TOKEN}"))
        code, out, _ = run_cli(["notify", "test", "testing", "--json"], capsys)
        (body,) = hooks.bodies("/slack")
    assert code == 0
    assert json.loads(out)[0]["ok"] is True and SECRET_TOKEN not in out
    assert body["text"] == "codeframe-mini: test notification for testing"
    code, _, err = run_cli(["notify", "test", "development"], capsys)
    assert code == 2 and "no notification channel is set up for 'development'" in err


@pytest.mark.integration
def test_deploys_and_rollbacks_notify_and_a_dead_channel_costs_only_its_deadline(
    tmp_path: Path, monkeypatch, capsys
):
    require_binary("pm2", path=str(TOOLS_BIN))
    from slipway.deploy.engine import Deployer
    from slipway.deploy.rollback import manual_rollback
    from slipway.state import records
    from slipway.transports.local import LocalTransport

    repo = make_repo(tmp_path / "repo")
    root = tmp_path / "srv"
    config = write_config(repo, root)
    with config.open("a") as f:
        f.write(
            '\n[[notify]]\nkind = "slack"\nurl_env = "SLIPWAY_T_SLACK"\n'
            '\n[[notify]]\nkind = "discord"\nurl_env = "SLIPWAY_T_DISCORD"\n'
            '\n[[notify]]\nkind = "slack"\nurl_env = "SLIPWAY_T_SLOW"\ntimeout_seconds = 1\n'
        )
    write_env_file(root, "API_TOKEN=notify-secret-4242\nCODEFRAME_MINI_VARIANT_IGNORED=1\n")
    loaded = load_config(config)
    try:
        with fake_webhooks() as hooks:
            monkeypatch.setenv("SLIPWAY_T_SLACK", hooks.url("/slack/deploys"))
            monkeypatch.setenv("SLIPWAY_T_DISCORD", hooks.url("/discord/deploys"))
            monkeypatch.setenv("SLIPWAY_T_SLOW", hooks.url("/slack/slow"))

            def deployer() -> Deployer:
                return Deployer(loaded, "testing", LocalTransport(), actor="carol")

            first = deployer().deploy("v1")
            second = deployer().deploy("v2")
            with pytest.raises(DeployFailed):
                deployer().deploy("broken/health500")
            failed_release = records.deployments(LocalTransport(), deployer().layout)[0]["release"]
            with pytest.raises(SlipwayError, match="is not healthy"):
                manual_rollback(deployer(), failed_release)  # kept for inspection, unhealthy
            manual_rollback(deployer())
            slack = hooks.bodies("/slack/deploys")
            discord = hooks.bodies("/discord/deploys")
        titles = [body["text"] for body in slack]
        assert titles == [
            f"codeframe-mini: {first.release} deployed to testing",
            f"codeframe-mini: {second.release} deployed to testing",
            titles[2],
            f"codeframe-mini: rollback of testing to {failed_release} FAILED",
            f"codeframe-mini: testing rolled back to {first.release}",
        ]
        assert "FAILED at health" in titles[2]
        assert "is not healthy" in json.dumps(slack[3])  # the failed rollback's error
        failure = json.dumps(slack[2])
        assert "rolled back, the previous release serves" in failure
        assert "Next:* fix the cause and deploy again" in failure
        assert "notify-secret-4242" not in json.dumps(slack + discord)
        success_fields = json.dumps(slack[1]["blocks"][1]["fields"])
        assert second.commit[:12] in success_fields and "carol" in success_fields
        assert "ok   api" in json.dumps(slack[1])  # the gate's check results
        assert [e["embeds"][0]["color"] for e in discord] == [
            formats.GREEN,
            formats.GREEN,
            formats.RED,
            formats.RED,
            formats.GREEN,
        ]
        events = records.audit_log(LocalTransport(), deployer().layout, limit=200)
        failed = [e for e in events if e["event"] == "notify.failed"]
        sent = [e for e in events if e["event"] == "notify.sent"]
        assert len(sent) == 10 and len(failed) == 5
        assert all(
            json.loads(e["detail"])["channel"] == "slack via $SLIPWAY_T_SLOW" for e in failed
        )
        assert all(json.loads(e["detail"])["seconds"] <= 2.0 for e in failed)
        # Each message carries the audit chain's head as it was, off the host: the last
        # one's head is still in the log, unchanged (`audit --verify --head`).
        head_text = [
            f["text"] for f in slack[-1]["blocks"][1]["fields"] if "Audit head" in f["text"]
        ]
        assert len(head_text) == 1, slack[-1]["blocks"][1]["fields"]
        row, digest = head_text[0].split()[-1].split(":")
        layout = deployer().layout
        report = records.verify(LocalTransport(), layout, {"id": int(row), "hash": digest})
        assert report["ok"], report["problems"]
        code, _, err = run_cli(
            ["--config", str(config), "audit", "testing", "--verify", "--head", f"{row}:{digest}"],
            capsys,
        )
        assert code == 0, err
    finally:
        stop_pm2(root / "pm2")
        os.environ.pop("SLIPWAY_T_SLOW", None)
