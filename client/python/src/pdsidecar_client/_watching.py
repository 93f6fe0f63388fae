"""What the blocking and asyncio refreshable credentials share: the snapshot, the
reads, and when a stream that ended is opened again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

import grpc

from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb

# A stream that ended with one of these is opened again; any other code is the
# account's (or the caller's) problem, and ends the watch.
RECONNECT_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # sidecar restarting or stopping, Pipedream down
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # too many watchers, rate limited
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,  # by the server (we cancel only when closing)
    }
)
BACKOFF_INITIAL: Final = 0.1
BACKOFF_MAX: Final = 5.0
# How long reject() waits for a value other than the rejected one, by default.
REJECT_TIMEOUT: Final = 30.0


@dataclass(frozen=True)
class FrozenCredentials:
    """One consistent value of watched credentials (botocore's ``get_frozen_credentials``).

    Values stay out of ``repr``, so a logged snapshot leaks nothing.
    """

    access_token: str = field(repr=False)
    credentials: Mapping[str, str] = field(repr=False)
    expires_at: datetime | None  # aware, UTC; None when Pipedream reports none
    account: pb.AccountInfo = field(repr=False, compare=False)

    @classmethod
    def of(
        cls, response: pb.WatchCredentialsResponse | pb.GetCredentialsResponse
    ) -> FrozenCredentials:
        credentials = dict(response.credentials)
        expires_at = (
            response.expires_at.ToDatetime(tzinfo=UTC) if response.HasField("expires_at") else None
        )
        return cls(
            credentials.get("access_token", ""),
            MappingProxyType(credentials),
            expires_at,
            response.account,
        )

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and datetime.now(UTC) >= self.expires_at


def reconnect_delay(error: CredentialsError | None, previous: float) -> float | None:
    """Seconds before opening the stream again, or None when the error ends the watch."""
    if error is not None and error.code not in RECONNECT_CODES:
        return None
    if error is not None and error.reason == "SIDECAR_STOPPING":
        return 0.0  # wait_for_ready holds the call until the next sidecar answers
    if error is not None and error.retry_after is not None:
        return min(error.retry_after, BACKOFF_MAX * 6)
    return min(max(previous * 2, BACKOFF_INITIAL), BACKOFF_MAX)


def rejected_timeout_error(timeout: float) -> CredentialsError:
    return CredentialsError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        f"the source rejected the access token and the sidecar had no other within {timeout:g} s",
    )


def closed_error() -> CredentialsError:
    return CredentialsError(grpc.StatusCode.CANCELLED, "closed")


def no_value_error(timeout: float, last: CredentialsError | None) -> CredentialsError:
    """No first value within ``timeout``: the last retryable error, said as such."""
    if last is not None:
        return CredentialsError(
            last.code,
            f"no credentials within {timeout:g} s; last: {last.message}",
            reason=last.reason,
            metadata=last.metadata,
            retry_after=last.retry_after,
        )
    return CredentialsError(
        grpc.StatusCode.DEADLINE_EXCEEDED, f"no credentials from the sidecar within {timeout:g} s"
    )


class CurrentReads:
    """The reads both refreshable credentials share: one snapshot, no I/O, no lock."""

    _current: FrozenCredentials | None
    _error: CredentialsError | None
    _rejected: dict[str, None]  # the last few tokens reject() was given, oldest first

    def get_frozen_credentials(self) -> FrozenCredentials:
        """The current value, every field from the same message; raises the error that
        ended the watch, if one did."""
        current = self._current
        if self._error is not None or current is None:
            raise self._error or closed_error()
        return current

    @property
    def access_token(self) -> str:
        return self.get_frozen_credentials().access_token

    @property
    def token(self) -> str:
        """google-auth's name for :attr:`access_token`."""
        return self.access_token

    @property
    def credentials(self) -> Mapping[str, str]:
        """Every field under Airweave names (read-only)."""
        return self.get_frozen_credentials().credentials

    @property
    def expires_at(self) -> datetime | None:
        return self.get_frozen_credentials().expires_at

    @property
    def expiry(self) -> datetime | None:
        """google-auth's expiry: naive UTC."""
        expires_at = self.expires_at
        return expires_at.replace(tzinfo=None) if expires_at is not None else None

    @property
    def expired(self) -> bool:
        return self.get_frozen_credentials().expired

    @property
    def valid(self) -> bool:
        current = self._current
        return self._error is None and current is not None and not current.expired

    def _holds(self, token: str) -> bool:
        current = self._current
        return self._error is None and current is not None and current.access_token == token

    def _remember_rejected(self, token: str) -> None:
        self._rejected[token] = None
        while len(self._rejected) > 8:
            del self._rejected[next(iter(self._rejected))]

    def _accepts(self, value: FrozenCredentials) -> bool:
        """Whether a value from the stream may replace the current one: a rejected token
        arriving late (sent before the refetch) must not win back."""
        current = self._current
        stale = value.access_token in self._rejected
        return not (stale and current is not None and current.access_token != value.access_token)
