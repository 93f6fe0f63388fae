"""Plain data of the Pipedream API emulator: apps, accounts, clients, tokens, faults, cursors."""

from __future__ import annotations

import base64
import binascii
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Route = Literal["token", "account", "list"]
ROUTES: tuple[Route, ...] = ("token", "account", "list")
ENVIRONMENTS = ("production", "development")
DEFAULT_PROJECT_ID = "proj_demo"
JSON = dict[str, Any]


def iso(ts: float | None) -> str | None:
    """Pipedream's timestamp format: ISO 8601 UTC with milliseconds and a Z."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class App:
    id: str
    name_slug: str
    name: str
    auth_type: str  # "oauth" | "keys" | "none"
    description: str = ""

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "name_slug": self.name_slug,
            "name": self.name,
            "auth_type": self.auth_type,
            "description": self.description,
        }


APPS: dict[str, App] = {
    "notion": App("app_demoNotion", "notion", "Notion", "oauth", "Notes, docs and wikis."),
    "slack_v2": App("app_demoSlack", "slack_v2", "Slack", "oauth", "Team messaging."),
    "coda": App("app_demoCoda", "coda", "Coda", "keys", "Docs that work like apps."),
    "google_drive": App("app_demoGdrive", "google_drive", "Google Drive", "oauth", "Files."),
}


def app_for(slug: str) -> App:
    """The known demo app for a slug, or a plausible OAuth app for any other slug."""
    known = APPS.get(slug)
    if known is not None:
        return known
    return App("app_" + "".join(c for c in slug if c.isalnum()), slug, slug.title(), "oauth")


def fake_token(app: App, kind: str = "") -> str:
    """A random, obviously fake source-app secret (never JWT- or pd_-shaped)."""
    prefix = "ntn_demo_" if app.name_slug == "notion" else f"{app.name_slug}_demo_"
    return prefix + kind + secrets.token_urlsafe(18)


def fake_credentials(app: App, user: str) -> dict[str, Any]:
    """Fresh credentials in Pipedream's field names for a custom-OAuth or key-based app."""
    if app.auth_type == "keys":
        return {"api_token": fake_token(app)}
    return {
        "oauth_access_token": fake_token(app),
        "oauth_refresh_token": fake_token(app, "refresh_"),
        "oauth_client_id": f"demo-{app.name_slug}-oauth-client",
        "oauth_client_secret": "demo_secret_" + secrets.token_urlsafe(12),
        "oauth_uid": f"demo-uid-{user}",
    }


@dataclass
class Account:
    id: str
    app: App
    external_id: str
    name: str | None = None
    project_id: str = DEFAULT_PROJECT_ID
    environment: str = "production"
    healthy: bool = True
    dead: bool = False
    error: str | None = None
    # None means Pipedream's default OAuth client: the "credentials" key is omitted entirely.
    credentials: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    last_refreshed_at: float | None = None
    next_refresh_at: float | None = None

    def to_json(self, include_credentials: bool) -> JSON:
        body: JSON = {
            "id": self.id,
            "name": self.name,
            "external_id": self.external_id,
            "healthy": self.healthy,
            "dead": self.dead,
            "error": self.error,
            "app": self.app.to_json(),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "last_refreshed_at": iso(self.last_refreshed_at),
            "next_refresh_at": iso(self.next_refresh_at),
        }
        if include_credentials and self.credentials is not None:
            body["credentials"] = dict(self.credentials)
        return body


@dataclass(frozen=True)
class Client:
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    client_id: str
    created_at: float
    expires_in: int

    @property
    def expires_at(self) -> float:
        return self.created_at + self.expires_in


@dataclass(frozen=True)
class Plan:
    """What the server does with one request: wait ``delay`` seconds, then answer ``status``
    (an injected fault) or serve it normally (status None)."""

    delay: float = 0.0
    status: int | None = None
    retry_after: str | None = None


@dataclass
class Fault:
    """Faults of one route. A status fault fires with ``probability`` while ``count`` lasts
    (None: until cleared); ``latency`` delays every request; a stall adds ``stall`` seconds
    with ``stall_probability``."""

    status: int | None = None
    count: int | None = None
    probability: float = 1.0
    retry_after: str | None = None
    latency: float = 0.0
    stall: float = 0.0
    stall_probability: float = 0.0

    def plan(self, rng: random.Random) -> Plan:
        """Decide one request. RNG draws happen only for probabilities below 1, so a seeded
        RNG gives the same sequence of outcomes for the same sequence of requests."""
        delay = self.latency
        if self.stall_probability > 0 and rng.random() < self.stall_probability:
            delay += self.stall
        if self.status is None or (self.probability < 1.0 and rng.random() >= self.probability):
            return Plan(delay)
        plan = Plan(delay, self.status, self.retry_after)
        if self.count is not None:
            self.count -= 1
            if self.count == 0:  # used up: back to normal, keeping latency and stalls
                self.status, self.count, self.probability, self.retry_after = None, None, 1.0, None
        return plan


def encode_cursor(account_id: str) -> str:
    return base64.urlsafe_b64encode(account_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        account_id = raw.decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if not account_id.startswith("apn_"):
        raise ValueError("invalid cursor")
    return account_id
