"""ListAccounts page tokens: Pipedream's cursor bound to the query it belongs to.

A token is URL-safe base64 (unpadded) of ``{"v": 1, "c": cursor, "q": digest}``
where ``digest`` fingerprints the filters (connection, project, environment,
app, external user). Reusing a token with other filters is refused rather
than silently paging through a different listing. The token is not signed:
it grants nothing, since every listing call still uses the filters of the
request itself, so a forged cursor can only page within the caller's own query.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Final

from pdsidecar.errors import FieldViolation, InvalidRequest

VERSION: Final = 1
FIELD: Final = "page_token"


def _digest(filters: tuple[str, ...]) -> str:
    blob = json.dumps(filters, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encode_page_token(cursor: str | None, filters: tuple[str, ...]) -> str:
    """The next_page_token for ``cursor``; empty on the last page."""
    if not cursor:
        return ""
    body = json.dumps({"v": VERSION, "c": cursor, "q": _digest(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(token: str | None, filters: tuple[str, ...]) -> str | None:
    """Pipedream's cursor from ``token``; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        data = None
    if (
        not isinstance(data, dict)
        or data.get("v") != VERSION
        or not isinstance(data.get("c"), str)
        or not data["c"]
        or not isinstance(data.get("q"), str)
    ):
        raise InvalidRequest(
            [FieldViolation(FIELD, "is not a page token from this sidecar; pass it unchanged")]
        )
    if data["q"] != _digest(filters):
        raise InvalidRequest(
            [
                FieldViolation(
                    FIELD,
                    "belongs to a listing with other filters (connection, project_id, "
                    "environment, source or external_user_id); repeat them unchanged "
                    "or start again without a page token",
                )
            ]
        )
    cursor: str = data["c"]
    return cursor
