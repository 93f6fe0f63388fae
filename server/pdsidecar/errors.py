"""The error contract: every failure the sidecar reports, in one table.

Each row of :data:`ERROR_TABLE` names a reason (the ``google.rpc.ErrorInfo``
reason, and the ``pdsidecar.v1.Reason`` enum value without its ``REASON_``
prefix), the gRPC status code it is sent with, and whether the caller gets a
``google.rpc.RetryInfo``. The servicer, the README's table and the tests all
read this table.

Exceptions form one tree, so callers can catch at any depth::

    SidecarError                  any failure with a reason
    +-- InvalidRequest            INVALID_REQUEST (with field violations)
    +-- AccountProblem            something about the account itself;
    |                             ValidateAccount reports these as data
    +-- Overloaded                OVERLOADED: the sidecar will not take more from this caller
    +-- UpstreamError             Pipedream refused or failed
        +-- UpstreamRequestRejected  UPSTREAM_REQUEST_REJECTED (HTTP 400/422; not retryable)
        +-- RateLimited           RATE_LIMITED (retry_after from Retry-After)
        +-- UpstreamUnavailable   UPSTREAM_UNAVAILABLE (retry_after)
            +-- DeadlineExceeded  DEADLINE_EXCEEDED: the caller's deadline ran out first

Messages and metadata name accounts, connections and field names, never a
credential value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import grpc

DOMAIN: Final = "pdsidecar"


@dataclass(frozen=True)
class ErrorKind:
    code: grpc.StatusCode
    retryable: bool
    meaning: str


ERROR_TABLE: Final[Mapping[str, ErrorKind]] = {
    "INVALID_REQUEST": ErrorKind(
        grpc.StatusCode.INVALID_ARGUMENT, False, "The request is malformed; see BadRequest."
    ),
    "UNAUTHENTICATED": ErrorKind(
        grpc.StatusCode.UNAUTHENTICATED, False, "The sidecar's API token is missing or wrong."
    ),
    "PERMISSION_DENIED": ErrorKind(
        grpc.StatusCode.PERMISSION_DENIED,
        False,
        "The listener's allow-list excludes this connection or source.",
    ),
    "ACCOUNT_USER_MISMATCH": ErrorKind(
        grpc.StatusCode.PERMISSION_DENIED,
        False,
        "The account belongs to another end user than external_user_id.",
    ),
    "CONNECTION_NOT_FOUND": ErrorKind(
        grpc.StatusCode.NOT_FOUND, False, "No Pipedream OAuth client has that connection name."
    ),
    "ACCOUNT_NOT_FOUND": ErrorKind(
        grpc.StatusCode.NOT_FOUND, False, "Pipedream has no such account."
    ),
    "SOURCE_NOT_SUPPORTED": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION, False, "Pipedream cannot serve this source."
    ),
    "ACCOUNT_APP_MISMATCH": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION, False, "The account is for another app."
    ),
    "CREDENTIALS_NOT_AVAILABLE": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
        "Pipedream answered the account without credentials (absent, null or empty).",
    ),
    "MISSING_REQUIRED_FIELDS": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION, False, "Required credential fields are missing."
    ),
    "ACCOUNT_DEAD": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION, False, "Pipedream marked the account dead."
    ),
    "PROVIDER_AUTH_FAILED": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
        "Pipedream refused the connection's client credentials.",
    ),
    "UPSTREAM_REQUEST_REJECTED": ErrorKind(
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
        "Pipedream refused the request as invalid (HTTP 400/422), e.g. an unknown project or "
        "environment; the message carries Pipedream's (sanitised) text.",
    ),
    "RATE_LIMITED": ErrorKind(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        True,
        "Pipedream rate limited the sidecar (RetryInfo from Retry-After, 30 s when absent).",
    ),
    "UPSTREAM_UNAVAILABLE": ErrorKind(
        grpc.StatusCode.UNAVAILABLE,
        True,
        "Pipedream failed or could not be reached after bounded retries.",
    ),
    "DEADLINE_EXCEEDED": ErrorKind(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        False,
        "The call's deadline passed before Pipedream answered; a shared fetch goes on "
        "and fills the cache.",
    ),
    "TOO_MANY_WATCHERS": ErrorKind(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        True,
        "The sidecar already holds policy.max_watchers WatchCredentials streams.",
    ),
    "SIDECAR_STOPPING": ErrorKind(
        grpc.StatusCode.UNAVAILABLE,
        True,
        "The sidecar is shutting down: a WatchCredentials stream ends; reconnect.",
    ),
    "OVERLOADED": ErrorKind(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        True,
        "The sidecar refused work before starting it, to protect Pipedream and the other "
        "callers: a fetch that could not start before the call's deadline, a caller or "
        "listener past its share of Pipedream's read budget or slowed for reads that found "
        "no account, or a listener's health/reflection pool or API call limit full.",
    ),
    "STREAM_STALLED": ErrorKind(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        True,
        "The client took no message from a server stream for policy.stream_stall_timeout: "
        "the stream ends after the message it left waiting; read streams as they are "
        "written.",
    ),
}


class SidecarError(Exception):
    """A failure with a reason from :data:`ERROR_TABLE`.

    The reason is never implied: a subclass names its own, or the caller passes one.
    """

    reason: str

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        elif not hasattr(self, "reason"):
            raise TypeError(f"{type(self).__name__} needs a reason from the error table")
        if self.reason not in ERROR_TABLE:
            raise ValueError(f"unknown error reason {self.reason!r}")
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after

    @property
    def kind(self) -> ErrorKind:
        return ERROR_TABLE[self.reason]

    @property
    def code(self) -> grpc.StatusCode:
        return self.kind.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidRequest(SidecarError):
    reason = "INVALID_REQUEST"

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"invalid request: {summary}")


class AccountProblem(SidecarError):
    """Something about the account itself; ValidateAccount reports it as a Problem."""


class AccountNotFound(AccountProblem):
    """Pipedream has no such account (HTTP 404)."""

    reason = "ACCOUNT_NOT_FOUND"


class Overloaded(SidecarError):
    """Work refused before it started, to protect Pipedream and the other callers."""

    reason = "OVERLOADED"


class UpstreamError(SidecarError):
    """Pipedream refused or failed."""


class UpstreamRequestRejected(UpstreamError):
    """Pipedream answered 400 or 422: asking again will not help."""

    reason = "UPSTREAM_REQUEST_REJECTED"


class RateLimited(UpstreamError):
    reason = "RATE_LIMITED"


class UpstreamUnavailable(UpstreamError):
    reason = "UPSTREAM_UNAVAILABLE"


class DeadlineExceeded(UpstreamUnavailable):
    """The caller's deadline ended the call before Pipedream gave a verdict.

    A kind of unavailability (stale entries may still be served for it), sent
    as DEADLINE_EXCEEDED: the status the caller's own deadline would give.
    """

    reason = "DEADLINE_EXCEEDED"


class ProviderAuthFailed(UpstreamError):
    reason = "PROVIDER_AUTH_FAILED"
