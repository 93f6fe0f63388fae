"""Airweave's rules for reading a Pipedream account as a source's credentials.

The rules are data (the tables below) plus one pure function,
:func:`check_account`, which compares an account with what the caller asked
for and returns every problem found, in a fixed order, and the credentials
under Airweave's field names when the account can serve them.

Messages name accounts, apps and field names, never a credential value. The
error text Pipedream attaches to a dead or unhealthy account is redacted like a
log line first (it may quote a token) and cut short.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pdsidecar.credentials.sources import DEFAULT_FIELDS, Fields, alias_of, default_fields
from pdsidecar.observe.logs import REDACTOR
from pdsidecar.pipedream.models import Account

# Source short name -> Pipedream app slug, where they differ.
APP_SLUGS: Final[Mapping[str, str]] = {
    "apollo": "apollo_io",
    "outlook_mail": "outlook",
    "outlook_calendar": "outlook",
    "slack": "slack_v2",
    "powerpoint": "microsoft_onedrive",
    "calcom": "cal_com",
}

# Sources Pipedream cannot serve.
BLOCKED_SOURCES: Final = frozenset(
    {"ctti", "github", "jira", "confluence", "bitbucket", "onenote", "word", "servicenow"}
)

# Airweave field name -> Pipedream credentials key; other names map to themselves.
FIELD_NAMES: Final[Mapping[str, str]] = {
    "access_token": "oauth_access_token",
    "refresh_token": "oauth_refresh_token",
    "client_id": "oauth_client_id",
    "client_secret": "oauth_client_secret",
    "api_key": "api_key",
    "api_token": "api_key",
    "personal_access_token": "oauth_access_token",
}

# Sources whose Pipedream app stores its key as ``api_token``: both Airweave names
# read it (without the second row, ``api_token`` would look for ``api_key``).
SOURCE_FIELD_OVERRIDES: Final[Mapping[str, Mapping[str, str]]] = {
    "coda": {"api_key": "api_token", "api_token": "api_token"},
    "slab": {"api_key": "api_token", "api_token": "api_token"},
}

# Airweave source names, for a "did you mean" when a request names an unknown one.
# Not an allow-list: any other name passes through as its own Pipedream app slug.
KNOWN_SOURCES: Final = frozenset(
    {*DEFAULT_FIELDS, *APP_SLUGS, *BLOCKED_SOURCES, *SOURCE_FIELD_OVERRIDES}
    | {"shopify", "trello", "zendesk"}  # Airweave sources without a default set here
)

# Reasons a check can report; all but ACCOUNT_UNHEALTHY make the account unusable.
USER_MISMATCH: Final = "ACCOUNT_USER_MISMATCH"
APP_MISMATCH: Final = "ACCOUNT_APP_MISMATCH"
DEAD: Final = "ACCOUNT_DEAD"
NO_CREDENTIALS: Final = "CREDENTIALS_NOT_AVAILABLE"
MISSING_FIELDS: Final = "MISSING_REQUIRED_FIELDS"
UNHEALTHY: Final = "ACCOUNT_UNHEALTHY"
WARNINGS: Final = frozenset({UNHEALTHY})

# Pipedream's error text goes into messages; keep a runaway one readable.
_MAX_ERROR_TEXT: Final = 300


def app_slug(source: str) -> str:
    return APP_SLUGS.get(source, source)


def sources_for(slug: str) -> list[str]:
    """The source names whose Pipedream app is ``slug``."""
    return sorted(s for s, app in APP_SLUGS.items() if app == slug) or [slug]


def app_mismatch_message(account_id: str, account_app: str, source: str) -> str:
    """What was asked, what the account is, and the nearest source name for a typo."""
    expected = app_slug(source)
    asked = f"source '{source}'"
    if expected != source:
        asked += f" (Pipedream app '{expected}')"
    fits = sources_for(account_app)
    text = f"The request asked for {asked}, but account {account_id} is for Pipedream app "
    text += f"'{account_app}'"
    if fits != [account_app]:
        text += " (source " + " or ".join(f"'{name}'" for name in fits) + ")"
    if source not in KNOWN_SOURCES:
        text += f"; '{source}' is not a source name pdsidecar knows"
        near = suggestion(source, fits)
        if near:
            text += f": did you mean '{near}'?"
    return text


def suggestion(source: str, fits: Sequence[str] = ()) -> str | None:
    """The source an unknown name most likely meant: a known alias first (``gdrive`` is
    ``google_drive``, not the nearer spelling ``onedrive``), else the nearest spelling."""
    alias = alias_of(source)
    if alias is not None:
        return alias
    near = difflib.get_close_matches(source, KNOWN_SOURCES | set(fits), n=1, cutoff=0.7)
    return near[0] if near else None


def requested_fields(
    source: str, required_fields: Sequence[str], optional_fields: Sequence[str]
) -> Fields:
    """What a caller is served: the fields it names (required, then optional) and nothing
    else; when it names none, the source's default set. A field named in both lists is
    required."""
    if not required_fields and not optional_fields:
        return default_fields(source)
    required = tuple(dict.fromkeys(required_fields)) or default_fields(source).required
    optional = tuple(n for n in dict.fromkeys(optional_fields) if n not in required)
    return Fields(required, optional)


def is_blocked(source: str) -> bool:
    return source in BLOCKED_SOURCES


def pipedream_field(source: str, name: str) -> str:
    override = SOURCE_FIELD_OVERRIDES.get(source)
    if override is not None and name in override:
        return override[name]
    return FIELD_NAMES.get(name, name)


def access_fields(source: str) -> tuple[str, ...]:
    """The Pipedream fields a source is called with: its access token or API key."""
    return tuple(
        dict.fromkeys(pipedream_field(source, n) for n in ("access_token", "api_key", "api_token"))
    )


def serves_app(sources: frozenset[str], app: str) -> bool:
    """Whether any of ``sources`` reads accounts of the Pipedream app ``app``."""
    return any(app_slug(source) == app for source in sources)


def other_app(account_id: str, source: str) -> Problem:
    """An app mismatch told without naming the account's app."""
    return Problem(APP_MISMATCH, f"Account {account_id} is not an account of '{app_slug(source)}'")


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    message: str

    @property
    def is_warning(self) -> bool:
        return self.reason in WARNINGS


@dataclass(frozen=True, slots=True)
class Check:
    """What :func:`check_account` found."""

    problems: tuple[Problem, ...]
    # Airweave field name -> revealed value; None unless the account is usable.
    credentials: dict[str, str] | None = field(default=None, repr=False)
    # Airweave names of missing required fields (for error metadata).
    missing: tuple[str, ...] = ()

    @property
    def blocking(self) -> Problem | None:
        """The first problem that makes the account unusable, if any."""
        return next((p for p in self.problems if not p.is_warning), None)


def check_account(
    account: Account,
    *,
    source: str,
    required_fields: Sequence[str] = (),
    optional_fields: Sequence[str] = (),
    external_user_id: str | None = None,
) -> Check:
    """Every problem with ``account`` for ``source``, and the credentials if usable.

    Order: user mismatch, app mismatch, dead, credentials not available,
    missing required fields, unhealthy (a warning). A user mismatch is reported
    alone: nothing else about another user's account is described.
    """
    if external_user_id and account.external_id != external_user_id:
        return Check(
            (
                Problem(
                    USER_MISMATCH,
                    f"Account {account.id} does not belong to the given external_user_id",
                ),
            )
        )
    problems: list[Problem] = []
    if account.app_slug != app_slug(source):
        problems.append(
            Problem(APP_MISMATCH, app_mismatch_message(account.id, account.app_slug, source))
        )
    if account.dead:
        detail = _detail(account.error)
        problems.append(
            Problem(DEAD, f"Account {account.id} is dead and must be reconnected{detail}")
        )
    credentials: dict[str, str] | None = None
    missing: tuple[str, ...] = ()
    if not account.credentials:  # absent, or nothing in it
        problems.append(Problem(NO_CREDENTIALS, no_credentials_message(account)))
    else:
        held = account.credentials
        wanted = requested_fields(source, required_fields, optional_fields)
        required, optional = wanted.required, wanted.optional
        missing = tuple(n for n in required if pipedream_field(source, n) not in held)
        if missing:
            available = ", ".join(sorted(held)) or "none"
            problems.append(
                Problem(
                    MISSING_FIELDS,
                    f"Missing required auth fields for account {account.id}: "
                    f"{', '.join(missing)}; available Pipedream fields: {available}",
                )
            )
        elif not problems:
            credentials = {}
            for name in (*required, *optional):
                secret = held.get(pipedream_field(source, name))
                if secret is not None:  # a missing optional field is skipped
                    credentials[name] = secret.reveal()
    if account.healthy is False:  # None: Pipedream did not say
        detail = _detail(account.error)
        problems.append(
            Problem(UNHEALTHY, f"Pipedream reports account {account.id} unhealthy{detail}")
        )
    return Check(tuple(problems), credentials, missing)


def no_credentials_message(account: Account) -> str:
    """What Pipedream sent in place of credentials, and Pipedream's documented reason for
    it, as documentation: the sidecar cannot see which OAuth client an account uses."""
    seen = account.credentials_seen or "no credentials"
    return (
        f"Pipedream answered account {account.id} with {seen}, so there is no credential "
        "to serve. Pipedream returns no credentials for OAuth accounts connected through "
        "its own OAuth client (outside development); an account connected with your own "
        "OAuth app, or a key-based app, has them"
    )


def _detail(error: str) -> str:
    """Pipedream's error text for a message: redacted, then cut short."""
    if not error:
        return ""
    text = REDACTOR.redact(error[: _MAX_ERROR_TEXT * 4])
    return ": " + (text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "...")
