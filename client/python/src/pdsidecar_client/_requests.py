"""Channel settings and listing requests shared by the blocking and async clients."""

from __future__ import annotations

import json
from typing import Final

import grpc

from pdsidecar_client.account import environment
from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb

DEFAULT_TIMEOUT: Final = 10.0
SERVICE: Final = "pdsidecar.v1.CredentialsService"

# gRPC's own retry machinery: UNAVAILABLE (the sidecar restarting, a dropped
# connection) is retried with backoff, inside each call's deadline.
_SERVICE_CONFIG: Final = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: Final = (
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _SERVICE_CONFIG),
    # Reconnect quickly after a sidecar restart.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def maybe_unconnected(failure: CredentialsError) -> bool:
    """Whether ``failure`` may come from a channel that never connected (no sidecar answer)."""
    if failure.reason:
        return False  # the sidecar answered
    if failure.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return True
    return failure.code is grpc.StatusCode.UNAVAILABLE and failure.message.startswith(
        "failed to connect to all addresses"
    )


def metadata(api_token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_token}"),) if api_token else ()


def list_accounts(
    project_id: str,
    *,
    connection: str,
    environment_name: str,
    source: str,
    external_user_id: str,
    page_size: int,
    page_token: str,
) -> pb.ListAccountsRequest:
    return pb.ListAccountsRequest(
        connection=connection,
        project_id=project_id,
        environment=environment(environment_name),
        source=source,
        external_user_id=external_user_id,
        page_size=page_size,
        page_token=page_token,
    )
