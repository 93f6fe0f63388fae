"""What Pipedream returns, parsed once at the edge into typed values.

Credential values are held as :class:`~pdsidecar.secret.Secret`, so an
``Account`` can be logged or put in an exception without leaking them.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdsidecar.secret import Secret


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
    healthy: bool
    dead: bool
    error: str
    # Unix seconds (wall clock), as Pipedream reports them; None when absent.
    expires_at: float | None
    last_refreshed_at: float | None
    next_refresh_at: float | None
    # None when Pipedream returned no ``credentials`` key (default OAuth).
    credentials: Mapping[str, Secret] | None

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return tuple(sorted(self.credentials)) if self.credentials else ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Account:
        app = data.get("app") or {}
        raw_credentials = data.get("credentials")
        credentials: dict[str, Secret] | None = None
        if isinstance(raw_credentials, Mapping):
            # Field and app names repeat across thousands of cached accounts: intern them.
            credentials = {
                sys.intern(str(key)): Secret(str(value))
                for key, value in raw_credentials.items()
                if value is not None and value != ""
            }
        return cls(
            id=str(data.get("id") or ""),
            name=str(data.get("name") or ""),
            external_id=str(data.get("external_id") or ""),
            app_slug=sys.intern(str(app.get("name_slug") or "")),
            app_name=sys.intern(str(app.get("name") or "")),
            auth_type=sys.intern(str(app.get("auth_type") or "")),
            healthy=bool(data.get("healthy", True)),
            dead=bool(data.get("dead", False)),
            error=str(data.get("error") or ""),
            expires_at=parse_timestamp(data.get("expires_at")),
            last_refreshed_at=parse_timestamp(data.get("last_refreshed_at")),
            next_refresh_at=parse_timestamp(data.get("next_refresh_at")),
            credentials=credentials,
        )


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
