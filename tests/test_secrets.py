"""Secrets never print, and a Masker scrubs their values from any text."""

from __future__ import annotations

from slipway.secrets import MASK, Masker, Secret


def test_secret_is_masked_in_str_repr_and_fstrings():
    secret = Secret("sk-ant-123456")
    assert str(secret) == MASK
    assert repr(secret) == "Secret('*****')"
    assert f"key={secret}" == "key=*****"
    assert secret.reveal() == "sk-ant-123456"
    assert secret == Secret("sk-ant-123456")
    assert secret != "sk-ant-123456"
    assert len({secret, Secret("sk-ant-123456")}) == 1
    assert bool(Secret("")) is False


def test_masker_scrubs_every_value_longest_first():
    masker = Masker(["hunter22", "hunter22-extended"])
    masker.add(Secret("tok_abcdef"))
    text = "a=hunter22-extended b=hunter22 c=tok_abcdef d=plain"
    assert masker(text) == "a=***** b=***** c=***** d=plain"
    assert len(masker) == 3


def test_masker_ignores_values_too_short_to_be_secrets():
    masker = Masker(["on", "1"])
    assert masker("on 1 online") == "on 1 online"
    assert Masker()("anything") == "anything"


def test_masker_escapes_regex_characters():
    masker = Masker(["a.b*c(d)"])
    assert masker("x a.b*c(d) axbbc") == "x ***** axbbc"
