"""ListAccounts page tokens: Pipedream's cursor, bound to its query and signed.

A token is URL-safe base64 (unpadded) of ``{"v": 2, "c": cursor, "q": digest,
"s": tag}``. ``digest`` fingerprints the filters (connection, project,
environment, app, external user): reusing a token with other filters is
refused rather than silently paging through a different listing. ``tag`` is
an HMAC of the rest under a key that lives as long as the process, so a token
this sidecar did not mint (edited, invented, or minted before a restart) is
refused as INVALID_ARGUMENT on ``page_token`` before Pipedream is asked,
instead of coming back from Pipedream as a bad cursor that looks like an
outage. The token grants nothing: every listing call still uses the filters of
the request itself. Whatever a caller sends as a token (nested JSON, odd types,
non-ASCII text) is either one of ours or INVALID_ARGUMENT, never an internal
error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any, Final

from pdsidecar.errors import FieldViolation, InvalidRequest

VERSION: Final = 2
FIELD: Final = "page_token"
_TAG_BYTES: Final = 16


def _digest(filters: tuple[str, ...]) -> str:
    blob = json.dumps(filters, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _refused(description: str) -> InvalidRequest:
    return InvalidRequest([FieldViolation(FIELD, description)])


class PageTokens:
    """Mints and reads page tokens under one key (random per process by default)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _tag(self, cursor: str, digest: str) -> str:
        blob = json.dumps([VERSION, cursor, digest], separators=(",", ":")).encode()
        return hmac.new(self._key, blob, hashlib.sha256).hexdigest()[: 2 * _TAG_BYTES]

    def encode(self, cursor: str | None, filters: tuple[str, ...]) -> str:
        """The next_page_token for ``cursor``; empty on the last page."""
        if not cursor:
            return ""
        digest = _digest(filters)
        body = {"v": VERSION, "c": cursor, "q": digest, "s": self._tag(cursor, digest)}
        raw = json.dumps(body, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, token: str | None, filters: tuple[str, ...]) -> str | None:
        """Pipedream's cursor from ``token``; None for the first page."""
        if not token:
            return None
        data = _parse(token)
        if data is None:
            raise _refused("is not a page token from this sidecar; pass it unchanged")
        cursor: str = data["c"]
        # Bytes: compare_digest refuses non-ASCII str, and a caller may send any text.
        given = data["s"].encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(self._tag(cursor, data["q"]).encode(), given):
            raise _refused(
                "was not issued by this sidecar process (it was changed, or the sidecar "
                "restarted since); start again without a page token"
            )
        if data["q"] != _digest(filters):
            raise _refused(
                "belongs to a listing with other filters (connection, project_id, "
                "environment, source or external_user_id); repeat them unchanged "
                "or start again without a page token"
            )
        return cursor


def _parse(token: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError, TypeError):
        return None  # ValueError covers non-ASCII text and bad UTF-8 as well
    if (
        not isinstance(data, dict)
        or data.get("v") != VERSION
        or not isinstance(data.get("c"), str)
        or not data["c"]
        or not isinstance(data.get("q"), str)
        or not isinstance(data.get("s"), str)
    ):
        return None
    return data
