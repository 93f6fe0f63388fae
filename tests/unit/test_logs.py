"""The log redactor: every form of secret it must catch, and a cost that does not grow."""

from __future__ import annotations

import pytest

from pdsidecar.observe.logs import MASK, TOKEN_AFTERLIFE, Redactor

FORMS = {
    "url-encoded": (
        "grant_type=client_credentials&client_secret%3Dabc123DEF456ghi",
        "abc123DEF456ghi",
    ),
    "escaped JSON": ('{\\"client_secret\\": \\"s3cr3t-value-here\\"}', "s3cr3t-value-here"),
    "basic auth": ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    "password in URL": ("GET https://svc-user:hunter2pw@api.example.com/v1", "hunter2pw"),
    "x-api-key": ("x-api-key: k3y-value-123", "k3y-value-123"),
    "X-Api-Key=": ("X-Api-Key=k3y-value-456", "k3y-value-456"),
    "api-key header": ('"api-key": "k3y-value-789"', "k3y-value-789"),
}


@pytest.mark.parametrize("line,secret", FORMS.values(), ids=list(FORMS))
def test_each_form_is_redacted(line: str, secret: str) -> None:
    text = Redactor().redact(line)
    assert secret not in text and MASK in text


def test_configured_secrets_outlive_any_number_of_tokens() -> None:
    redactor = Redactor(capacity=64)
    redactor.remember("configured-client-secret")
    for i in range(5000):
        redactor.remember_token(f"tok{i:05d}xyzxyzxyz", 3600)
    assert "configured-client-secret" not in redactor.redact("x configured-client-secret y")
    assert redactor.known_tokens == 64
    assert "tok04999xyzxyzxyz" not in redactor.redact("got tok04999xyzxyzxyz back")


def test_tokens_do_not_recompile_the_pattern() -> None:
    redactor = Redactor()
    redactor.remember("configured-client-secret")
    redactor.redact("warm up")
    pattern = redactor._pattern
    for i in range(100):
        redactor.remember_token(f"tok{i:05d}abcabcabc", 3600)
        redactor.redact("a line")
    assert redactor._pattern is pattern


def test_a_token_is_found_wherever_it_stands() -> None:
    redactor = Redactor()
    token = "plainlowercasetoken"  # no digits: no generic pattern would catch it
    redactor.remember_token(token, 3600)
    for line in (
        token,
        f"t={token}",
        f'"{token}"',
        f"/path/{token}/x",
        f"{token}.",
        f"a {token}, b",
    ):
        assert token not in redactor.redact(line), line


def test_expired_tokens_may_leave() -> None:
    redactor = Redactor()
    redactor.remember_token("longexpiredtokenvalue", -TOKEN_AFTERLIFE - 1)
    redactor.remember_token("currenttokenvalueabc", 3600)
    assert redactor.known_tokens == 1
