"""Checks request fields before anything else happens.

Every problem found becomes a ``google.rpc.BadRequest`` field violation whose
description says what was wrong and what is expected, so a person can fix the
call without reading the server's code.

Every id has a length cap (Pipedream's own ids are far shorter): ``project_id``
and ``account_id`` 64 characters, connection, source and field names 64,
``external_user_id`` 256, ``page_token`` 2048. A status never carries more of
what the caller sent than a short prefix (:func:`shorten`), and at most
``MAX_VIOLATIONS`` violations, so it always fits gRPC's 8 KiB metadata limit
with its ErrorInfo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from pdsidecar.errors import FieldViolation, InvalidRequest
from pdsidecar.settings import DEFAULT_CONNECTION
from pdsidecar_client.v1 import credentials_pb2 as pb

MAX_ID: Final = 64
_PROJECT_ID: Final = re.compile(r"proj_[A-Za-z0-9]{1,59}")
_ACCOUNT_ID: Final = re.compile(r"apn_[A-Za-z0-9]{1,60}")
_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")
_CONNECTION: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_FIELDS: Final = 32
MAX_EXTERNAL_USER_ID: Final = 256
MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_TOKEN: Final = 2048
MAX_VIOLATIONS: Final = 8
# How much of a caller's value an error message shows.
SHOWN_PREFIX: Final = 40

# Sent to Pipedream as x-pd-environment; UNSPECIFIED means production.
_ENVIRONMENT_NAMES: Final[dict[int, str]] = {
    pb.ENVIRONMENT_UNSPECIFIED: "production",
    pb.ENVIRONMENT_PRODUCTION: "production",
    pb.ENVIRONMENT_DEVELOPMENT: "development",
}


def connection_name(value: str) -> str:
    """The connection a request names: the empty name is ``default`` (filled in here only)."""
    return value or DEFAULT_CONNECTION


class RequestValidator:
    """Collects violations, then raises them all at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(FieldViolation(field, description))
        elif len(self.violations) == MAX_VIOLATIONS:
            self.violations.append(FieldViolation("(request)", "has more invalid fields"))

    def done(self) -> None:
        if self.violations:
            raise InvalidRequest(self.violations)

    def connection(self, field: str, value: str) -> str:
        if value and not _CONNECTION.fullmatch(value):
            self.fail(
                field,
                f"{_shown(value)} is not a connection name: use 1 to 64 letters, digits, "
                "'_', '.' or '-', or leave it empty for 'default'",
            )
        return connection_name(value)

    def project_id(self, field: str, value: str) -> str:
        if not value:
            self.fail(field, "is required: the Pipedream project id, like 'proj_abc123'")
        elif not _PROJECT_ID.fullmatch(value):
            self.fail(
                field,
                f"{_shown(value)} is not a project id: expected 'proj_' + letters/digits, "
                f"at most {MAX_ID} characters",
            )
        return value

    def account_id(self, field: str, value: str) -> str:
        if not value:
            self.fail(field, "is required: the connected account id, like 'apn_abc123'")
        elif not _ACCOUNT_ID.fullmatch(value):
            self.fail(
                field,
                f"{_shown(value)} is not an account id: expected 'apn_' + letters/digits, "
                f"at most {MAX_ID} characters",
            )
        return value

    def environment(self, field: str, value: int) -> str:
        name = _ENVIRONMENT_NAMES.get(value)
        if name is None:
            self.fail(
                field,
                f"{value} is not a known Environment: use ENVIRONMENT_PRODUCTION (1) "
                "or ENVIRONMENT_DEVELOPMENT (2)",
            )
            return "production"
        return name

    def external_user_id(self, field: str, value: str) -> str:
        if len(value) > MAX_EXTERNAL_USER_ID:
            self.fail(field, f"is {len(value)} characters long; at most {MAX_EXTERNAL_USER_ID}")
        return value

    def source(self, field: str, value: str, *, required: bool = True) -> str:
        if not value:
            if required:
                self.fail(field, "is required: the source short name, like 'notion' or 'slack'")
        elif not _NAME.fullmatch(value):
            self.fail(
                field, f"{_shown(value)} is not a source name: use 1 to 64 of a-z, 0-9 and '_'"
            )
        return value

    def field_names(self, field: str, values: Sequence[str]) -> tuple[str, ...]:
        if len(values) > MAX_FIELDS:
            self.fail(field, f"has {len(values)} entries; at most {MAX_FIELDS}")
            return ()
        for index, value in enumerate(values):
            if not _NAME.fullmatch(value):
                self.fail(
                    f"{field}[{index}]",
                    f"{_shown(value)} is not a field name: use 1 to 64 of a-z, 0-9 and '_'",
                )
        return tuple(dict.fromkeys(values))

    def page_size(self, field: str, value: int) -> int:
        if value == 0:
            return DEFAULT_PAGE_SIZE
        if not 1 <= value <= MAX_PAGE_SIZE:
            self.fail(field, f"{value} is out of range: use 1 to {MAX_PAGE_SIZE}, or 0 for 20")
        return value

    def page_token(self, field: str, value: str) -> str:
        if len(value) > MAX_PAGE_TOKEN:
            self.fail(field, "is too long to be a page token from this sidecar")
        return value


def shorten(value: str) -> str:
    """At most a short prefix of a caller's value, for a message or ErrorInfo metadata."""
    if len(value) <= SHOWN_PREFIX:
        return value
    return f"{value[: SHOWN_PREFIX - 3]}... ({len(value)} characters)"


def _shown(value: str) -> str:
    """A user-supplied value, quoted and cut short, for an error message."""
    return repr(shorten(value))
