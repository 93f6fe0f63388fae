"""From the credential service's values to protobuf messages."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from pdsidecar.pipedream.models import Account
from pdsidecar_client.v1 import credentials_pb2 as pb


def timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    # Pipedream's timestamps have millisecond precision; round to microseconds
    # so float noise does not show up as nanoseconds.
    micros = round(seconds * 1_000_000)
    whole, rest = divmod(micros, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=rest * 1000)


def account_info(account: Account) -> pb.AccountInfo:
    """An account's description; the credential field names only, never values."""
    return pb.AccountInfo(
        account_id=account.id,
        name=account.name,
        external_id=account.external_id,
        app_slug=account.app_slug,
        app_name=account.app_name,
        auth_type=account.auth_type,
        healthy=account.healthy is not False,  # unknown (None) is not unhealthy
        dead=account.dead,
        error=account.error,
        expires_at=timestamp(account.expires_at),
        last_refreshed_at=timestamp(account.last_refreshed_at),
        next_refresh_at=timestamp(account.next_refresh_at),
        credential_fields=account.credential_fields,
    )


def reason_value(reason: str) -> pb.Reason.ValueType:
    return pb.Reason.Value(f"REASON_{reason}")
