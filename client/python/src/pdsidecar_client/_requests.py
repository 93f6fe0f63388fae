"""Channel settings and listing requests shared by the blocking and async clients."""

from __future__ import annotations

import json
from typing import Final, TypedDict

import grpc

from pdsidecar_client.account import environment
from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb

DEFAULT_TIMEOUT: Final = 10.0
SERVICE: Final = "pdsidecar.v1.CredentialsService"

# gRPC's own retry machinery (client/SPEC.md, section 3): UNAVAILABLE (a dropped
# connection, a sidecar stopping) is retried with backoff, inside each call's deadline.
# Three attempts: without wait_for_ready an absent sidecar is reported in about 0.3 s.
UNARY_METHODS: Final = ("GetCredentials", "ValidateAccount", "RefreshToken", "ListAccounts")
_SERVICE_CONFIG: Final = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": SERVICE, "method": method} for method in UNARY_METHODS],
                "retryPolicy": {
                    "maxAttempts": 3,
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


class ListFilters(TypedDict, total=False):
    """What ``list_accounts`` and ``account_pages`` take besides the project, as keywords."""

    connection: str
    environment: str
    source: str
    external_user_id: str
    page_size: int


def list_accounts(project_id: str, page_token: str, filters: ListFilters) -> pb.ListAccountsRequest:
    return pb.ListAccountsRequest(
        connection=filters.get("connection", ""),
        project_id=project_id,
        environment=environment(filters.get("environment", "")),
        source=filters.get("source", ""),
        external_user_id=filters.get("external_user_id", ""),
        page_size=filters.get("page_size", 0),
        page_token=page_token,
    )
