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
    """An app as Pipedream's API describes it (the fields its official SDK requires included:
    ``img_src``, ``categories``, ``featured_weight``, ``scope_profiles``)."""

    id: str
    name_slug: str
    name: str
    auth_type: str  # "oauth" | "keys" | "none"
    description: str = ""
    categories: tuple[str, ...] = ()
    featured_weight: float = 0.0
    # OAuth scopes; an OAuth app offers them as one "read_write" scope profile.
    scopes: tuple[str, ...] = ()

    @property
    def oauth_app_id(self) -> str | None:
        """Pipedream's official OAuth client of the app (None unless it uses OAuth)."""
        return "oa_pd" + self.id.removeprefix("app_") if self.auth_type == "oauth" else None

    def to_json(self) -> JSON:
        profiles = [{"name": "read_write", "scopes": list(self.scopes)}] if self.scopes else []
        return {
            "id": self.id,
            "name_slug": self.name_slug,
            "name": self.name,
            "auth_type": self.auth_type,
            "description": self.description,
            "img_src": f"https://assets.pipedream.net/s.v0/{self.id}/logo/orig",
            "custom_fields_json": "[]",
            "categories": list(self.categories),
            "featured_weight": self.featured_weight,
            "scope_profiles": profiles,
            "oauth_app_id": self.oauth_app_id,
        }


def _app(
    id: str, slug: str, name: str, auth: str, text: str, category: str, weight: float, *scopes: str
) -> App:
    return App(id, slug, name, auth, text, (category,), weight, scopes)


APPS: dict[str, App] = {
    "notion": _app(
        "app_demoNotion",
        "notion",
        "Notion",
        "oauth",
        "Notes, docs and wikis.",
        "Productivity",
        9000,
        "read_content",
    ),
    "slack_v2": _app(
        "app_demoSlack",
        "slack_v2",
        "Slack",
        "oauth",
        "Team messaging.",
        "Communication",
        9500,
        "channels:read",
        "chat:write",
    ),
    "coda": _app(
        "app_demoCoda", "coda", "Coda", "keys", "Docs that work like apps.", "Productivity", 500
    ),
    "google_calendar": _app(
        "app_demoGcal",
        "google_calendar",
        "Google Calendar",
        "oauth",
        "Calendars.",
        "Productivity",
        8800,
        "https://www.googleapis.com/auth/calendar.readonly",
    ),
    "google_drive": _app(
        "app_demoGdrive",
        "google_drive",
        "Google Drive",
        "oauth",
        "Files.",
        "File Storage",
        9200,
        "https://www.googleapis.com/auth/drive",
    ),
}


def app_for(slug: str) -> App:
    """The known demo app for a slug, or a plausible OAuth app for any other slug."""
    known = APPS.get(slug)
    if known is not None:
        return known
    app_id = "app_" + "".join(c for c in slug if c.isalnum())
    return App(app_id, slug, slug.title(), "oauth", categories=("Developer Tools",))


def fake_token(app: App, kind: str = "") -> str:
    """A random, obviously fake source-app secret (never JWT- or pd_-shaped)."""
    prefix = "ntn_demo_" if app.name_slug == "notion" else f"{app.name_slug}_demo_"
    return prefix + kind + secrets.token_urlsafe(18)


def fake_credentials(app: App, user: str, *, pipedream_oauth: bool = False) -> dict[str, Any]:
    """Fresh credentials in Pipedream's field names for a custom-OAuth or key-based app; an
    account on Pipedream's own OAuth client has no client id or secret of the customer's."""
    if app.auth_type == "keys":
        return {"api_token": fake_token(app)}
    if pipedream_oauth:
        return {"oauth_access_token": fake_token(app), "oauth_uid": f"demo-uid-{user}"}
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
    # Connected through Pipedream's own OAuth client while holding credentials: Pipedream
    # returns them only in development (its docs: end-user credentials of accounts on its
    # OAuth clients can be retrieved in development only); in production they are withheld.
    pipedream_oauth: bool = False
    # How an answer shows withheld credentials: "omit" (no key) or "null" (the API reference
    # documents the field as nullable).
    withheld_as: str = "omit"
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    last_refreshed_at: float | None = None
    next_refresh_at: float | None = None
    # The OAuth client the account was connected with; None: derived (see oauth_client).
    oauth_app_id: str | None = None
    # When set, the account routes answer this body instead (tests of odd answers).
    served_as: JSON | None = None

    def oauth_client(self) -> str | None:
        """The OAuth client id the ``oauth_app_id`` list filter matches: the explicit one, else
        the customer's own client (custom OAuth) or Pipedream's official one (default OAuth)."""
        if self.oauth_app_id is not None or self.app.auth_type != "oauth":
            return self.oauth_app_id
        if self.credentials is None or self.pipedream_oauth:
            return self.app.oauth_app_id
        return "oa_custom" + self.app.id.removeprefix("app_")

    def to_json(self, include_credentials: bool) -> JSON:
        if self.served_as is not None:
            return dict(self.served_as)
        body: JSON = {
            "id": self.id,
            "name": self.name,
            "external_id": self.external_id,
            "healthy": self.healthy,
            "dead": self.dead,
            "error": self.error,
            "app": self.app.to_json(),
            "authorized_scopes": list(self.app.scopes),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "expires_at": iso(self.expires_at),
            "last_refreshed_at": iso(self.last_refreshed_at),
            "next_refresh_at": iso(self.next_refresh_at),
        }
        if include_credentials:
            if not self.withholds_credentials():
                body["credentials"] = dict(self.credentials or {})
            elif self.withheld_as == "null":
                body["credentials"] = None
        return body

    def withholds_credentials(self) -> bool:
        """Whether Pipedream answers this account without credentials."""
        if self.credentials is None:
            return True
        return self.pipedream_oauth and self.environment != "development"


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
    message: str | None = None  # the error body's text; None: the status's phrase


@dataclass
class Fault:
    """Faults of one route. A status fault fires with ``probability`` while ``count`` lasts
    (None: until cleared), its body saying ``message``; ``latency`` delays every request; a
    stall adds ``stall`` seconds with ``stall_probability``."""

    status: int | None = None
    count: int | None = None
    probability: float = 1.0
    retry_after: str | None = None
    message: str | None = None
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
        plan = Plan(delay, self.status, self.retry_after, self.message)
        if self.count is not None:
            self.count -= 1
            if self.count == 0:  # used up: back to normal, keeping latency and stalls
                self.status, self.count, self.probability, self.retry_after = None, None, 1.0, None
                self.message = None
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
