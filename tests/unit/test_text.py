"""Text from Pipedream before a caller sees it (pdsidecar.pipedream.text)."""

from __future__ import annotations

from pdsidecar.observe.logs import REDACTOR
from pdsidecar.pipedream.text import caller_text, json_text, unicode_text


def test_lone_surrogates_become_replacement_characters() -> None:
    text = unicode_text("a\ud800b\udfffc")
    assert text == "a\ufffdb\ufffdc"
    text.encode("utf-8")  # would raise with a surrogate left


def test_caller_text_masks_tokens_before_cutting() -> None:
    token = "ntn_" + "x1" * 20
    # The cut falls inside the token: masked first, no fragment of it survives.
    text = caller_text("failed: " + token, limit=20)
    assert "x1x1" not in text
    assert text.startswith("failed: [REDACTED]")
    assert len(caller_text("y " * 400)) == 300


def test_caller_text_takes_strings_only() -> None:
    assert caller_text(None) == "" and caller_text({"error": "x"}) == ""


def test_json_text() -> None:
    assert json_text("as is") == "as is"
    assert json_text(False) == "false" and json_text(None) == "null"
    assert json_text({"b": 1, "a": "\u00e9"}) == '{"a":"\u00e9","b":1}'


def test_caller_text_masks_secrets_the_process_holds_even_without_a_token_shape() -> None:
    # A client secret of plain letters matches no token pattern; only its registration masks it.
    secret = "plainlettersecretvalue"
    assert caller_text(f"bad client {secret}") == f"bad client {secret}"
    REDACTOR.remember(secret)
    assert secret not in caller_text(f"bad client {secret}")
