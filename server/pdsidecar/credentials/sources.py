"""What each source is served by default, and the names people call sources by.

:data:`DEFAULT_FIELDS` is the one table of per-source defaults: the credential fields a
caller that names none receives. It follows the fields of Airweave's source auth configs
(``backend/airweave/platform/configs/auth.py``), with two deliberate changes:

- ``client_secret`` is in no default set. An OAuth app's client secret is the customer's,
  not the end user's; a caller gets it only by naming it (least privilege).
- Only the access credential (the OAuth access token, or the API key or token) is
  required. Airweave's refresh token and client id become optional, so an account that
  Pipedream holds without them still answers; a caller that needs them names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Fields:
    """Airweave field names: those an account must hold, and those served when held."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


# The shapes of Airweave's auth configs (their class names in the comments).
_OAUTH: Final = Fields(("access_token",))  # OAuth2AuthConfig
_OAUTH_REFRESH: Final = Fields(("access_token",), ("refresh_token",))  # OAuth2WithRefresh...
_OAUTH_BYOC: Final = Fields(("access_token",), ("refresh_token", "client_id"))  # OAuth2BYOC...
_API_KEY: Final = Fields(("api_key",))  # APIKeyAuthConfig and kin
_API_TOKEN: Final = Fields(("api_token",))

# Source -> its default fields. Sources Pipedream cannot serve (mapping.BLOCKED_SOURCES)
# and those whose auth needs more than a credential field (Trello's OAuth1 pair, Shopify's
# client credentials, databases) are left out: they get FALLBACK_FIELDS.
DEFAULT_FIELDS: Final[Mapping[str, Fields]] = {
    "airtable": _OAUTH_REFRESH,
    "apollo": _API_KEY,
    "asana": _OAUTH_REFRESH,
    "attio": _API_KEY,
    "box": _OAUTH_REFRESH,
    "calcom": _API_KEY,
    "clickup": _OAUTH,
    "coda": _API_KEY,
    "document360": _API_TOKEN,
    "dropbox": _OAUTH_BYOC,
    "excel": _OAUTH_REFRESH,
    "fireflies": _API_KEY,
    "freshdesk": _API_KEY,
    "gitlab": _OAUTH_REFRESH,
    "gmail": _OAUTH_BYOC,
    "google_calendar": _OAUTH_BYOC,
    "google_docs": _OAUTH_BYOC,
    "google_drive": _OAUTH_BYOC,
    "google_slides": _OAUTH_BYOC,
    "hubspot": _OAUTH_REFRESH,
    "intercom": _OAUTH,
    "linear": _OAUTH,
    "monday": _OAUTH,
    "notion": _OAUTH,
    "onedrive": _OAUTH_REFRESH,
    "outlook_calendar": _OAUTH_REFRESH,
    "outlook_mail": _OAUTH_REFRESH,
    "pipedrive": _API_TOKEN,
    "salesforce": _OAUTH_BYOC,
    "sharepoint": _OAUTH_REFRESH,
    "slab": _API_KEY,
    "slack": _OAUTH,
    "slite": _API_KEY,
    "stripe": _API_KEY,
    "teams": _OAUTH_REFRESH,
    "todoist": _OAUTH,
    "zoom": _OAUTH_REFRESH,
}

# Any other source: an OAuth access token, and its refresh token when Pipedream holds one.
FALLBACK_FIELDS: Final = _OAUTH_REFRESH

# Names people use for a source -> the source name, for "did you mean" (never resolved
# silently: a request names one source, and the sidecar does not guess at it).
ALIASES: Final[Mapping[str, str]] = {
    "drive": "google_drive",
    "gdrive": "google_drive",
    "googledrive": "google_drive",
    "gcal": "google_calendar",
    "gcalendar": "google_calendar",
    "googlecalendar": "google_calendar",
    "gdocs": "google_docs",
    "googledocs": "google_docs",
    "gslides": "google_slides",
    "googleslides": "google_slides",
    "googlemail": "gmail",
    "google_mail": "gmail",
    "gmail_v2": "gmail",
    "outlook": "outlook_mail",
    "msteams": "teams",
    "ms_teams": "teams",
    "microsoft_teams": "teams",
    "sfdc": "salesforce",
    "cal": "calcom",
    "cal_com": "calcom",
    "apollo_io": "apollo",
    "slack_v2": "slack",
    "one_drive": "onedrive",
    "share_point": "sharepoint",
}


def default_fields(source: str) -> Fields:
    """The fields a caller that names none receives for ``source``."""
    return DEFAULT_FIELDS.get(source, FALLBACK_FIELDS)


def alias_of(name: str) -> str | None:
    """The source a known alias (any case, ``-`` or space for ``_``) stands for."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in DEFAULT_FIELDS and key != name:
        return key
    return ALIASES.get(key) or ALIASES.get(key.replace("_", ""))
