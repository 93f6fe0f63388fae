"""The per-source default fields and the aliases for source names."""

from __future__ import annotations

import pytest

from pdsidecar.credentials import sources
from pdsidecar.credentials.mapping import BLOCKED_SOURCES


def test_no_default_set_holds_the_client_secret() -> None:
    for fields in (*sources.DEFAULT_FIELDS.values(), sources.FALLBACK_FIELDS):
        assert "client_secret" not in (*fields.required, *fields.optional)
        assert len(fields.required) == 1, "only the access credential is required"


def test_blocked_sources_have_no_defaults() -> None:
    assert not set(sources.DEFAULT_FIELDS) & BLOCKED_SOURCES


@pytest.mark.parametrize(
    ("source", "required"),
    [("notion", "access_token"), ("coda", "api_key"), ("document360", "api_token")],
)
def test_defaults_follow_airweaves_auth_configs(source: str, required: str) -> None:
    assert sources.default_fields(source).required == (required,)
    assert sources.default_fields("a_source_nobody_knows") == sources.FALLBACK_FIELDS


@pytest.mark.parametrize(
    ("name", "meant"),
    [("gdrive", "google_drive"), ("Google-Drive", "google_drive"), ("notion", None)],
)
def test_alias_of(name: str, meant: str | None) -> None:
    assert sources.alias_of(name) == meant
