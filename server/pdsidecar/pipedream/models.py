"""What Pipedream returns, parsed once at the edge into typed values.

Credential values are held as :class:`~pdsidecar.secret.Secret`, so an
``Account`` can be logged or put in an exception without leaking them.

The reading is strict where a wrong guess would mislead a caller: an account
must carry the id that was asked for (:class:`UnexpectedAnswer` otherwise), an
empty or all-null ``credentials`` object means no credentials, and a null
``healthy`` means unknown. Every string is valid Unicode afterwards, and free
text (name, error) is sanitised (:mod:`pdsidecar.pipedream.text`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdsidecar.pipedream.text import caller_text, json_text, unicode_text
from pdsidecar.secret import Secret


class UnexpectedAnswer(ValueError):
    """Pipedream's answer does not have the documented shape; the message says how (no values)."""


def parse_timestamp(value: Any) -> float | None:
    """Pipedream's ISO 8601 timestamps (or null) as Unix seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    external_id: str
    app_slug: str
    app_name: str
    auth_type: str
    # None when Pipedream does not say (null or absent): unknown, not unhealthy.
    healthy: bool | None
    dead: bool
    error: str
    # Unix seconds (wall clock), as Pipedream reports them; None when absent.
    expires_at: float | None
    last_refreshed_at: float | None
    next_refresh_at: float | None
    # None when Pipedream returned no credential value (see credentials_seen).
    credentials: Mapping[str, Secret] | None
    # What stood in place of credentials, for messages ("credentials: null", ...); "" when
    # there are credentials. Pipedream's reasons are not in the answer: only this is known.
    credentials_seen: str = ""

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return tuple(sorted(self.credentials)) if self.credentials else ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], expected_id: str | None = None) -> Account:
        """The account in ``data``; :class:`UnexpectedAnswer` when it has no id, or another id
        than ``expected_id``, or is wrapped in ``{"data": {...}}`` (an older documented shape,
        which the current API and SDKs do not send: refused rather than guessed at)."""
        account_id = data.get("id")
        if not isinstance(account_id, str) or not account_id:
            if "id" not in data and isinstance(data.get("data"), Mapping):
                raise UnexpectedAnswer(
                    'the account is wrapped in {"data": ...}, a shape the current API does not '
                    "send; refusing to guess"
                )
            raise UnexpectedAnswer("an account has no id")
        account_id = unicode_text(account_id)
        if expected_id is not None and account_id != expected_id:
            raise UnexpectedAnswer(f"asked for account {expected_id}, got another account")
        app = data.get("app")
        app = app if isinstance(app, Mapping) else {}
        healthy = data.get("healthy")
        return cls(
            id=account_id,
            name=caller_text(data.get("name")),
            external_id=_plain(data.get("external_id")),
            app_slug=sys.intern(_plain(app.get("name_slug"))),
            app_name=sys.intern(caller_text(app.get("name"))),
            auth_type=sys.intern(_plain(app.get("auth_type"))),
            healthy=healthy if isinstance(healthy, bool) else None,
            dead=data.get("dead") is True,
            error=caller_text(data.get("error")),
            expires_at=parse_timestamp(data.get("expires_at")),
            last_refreshed_at=parse_timestamp(data.get("last_refreshed_at")),
            next_refresh_at=parse_timestamp(data.get("next_refresh_at")),
            credentials=_credentials(data.get("credentials")),
            credentials_seen=_credentials_seen(data),
        )


def _plain(value: Any) -> str:
    """An identifier-like string as is (valid Unicode); anything else as ""."""
    return unicode_text(value) if isinstance(value, str) else ""


def _credentials(raw: Any) -> dict[str, Secret] | None:
    """None when Pipedream returned no credential value: the key absent or null, or an
    object with no value in it (``{}``, all null or empty)."""
    if not isinstance(raw, Mapping):
        return None
    # Field names repeat across thousands of cached accounts: intern them.
    credentials = {
        sys.intern(unicode_text(str(key))): Secret(json_text(value))
        for key, value in raw.items()
        if value is not None and value != ""
    }
    return credentials or None


def _credentials_seen(data: Mapping[str, Any]) -> str:
    if "credentials" not in data:
        return "no credentials field"
    raw = data["credentials"]
    if raw is None:
        return "credentials: null"
    if not isinstance(raw, Mapping):
        return "credentials that are not an object"
    if not raw:
        return "credentials: {}"
    if _credentials(raw) is None:
        return "a credentials object whose values are all null or empty"
    return ""


@dataclass(frozen=True)
class AccountPage:
    accounts: tuple[Account, ...]
    # Pipedream's cursor for the next page; None on the last page.
    next_cursor: str | None


@dataclass(frozen=True)
class TokenStatus:
    """What may be said about a connection's Pipedream token (never the token)."""

    connection: str
    # Unix seconds at which the token expires.
    expires_at: float
    # True when this call fetched a new token.
    refreshed: bool
