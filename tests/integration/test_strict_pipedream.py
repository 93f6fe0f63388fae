"""The sidecar reads Pipedream strictly: odd answers, over real gRPC, from the real emulator.

Each case makes the emulator answer something Pipedream might (a 400/422 with text, an
account without its id or with another's, the old ``{"data": {...}}`` shape, empty or null
credentials, ``healthy: null``, non-string credential values, invalid Unicode, token-shaped
text) and checks what a caller of the sidecar gets.
"""

from __future__ import annotations

from typing import Any

import pytest
from pdsidecar_emulator import (
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    Emulator,
)

from pdsidecar.errors import ERROR_TABLE
from pdsidecar.settings import ConnectionConfig, Settings
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request, validate_request
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

# Token-shaped text, as an upstream error message might quote it.
LEAKY = "refresh failed: access_token=ntn_leakyLeaky1234567890 (Bearer eyJhbGciOi.eyJzdWIiOi.sg)"
LEAKED = ("ntn_leakyLeaky1234567890", "eyJhbGciOi.eyJzdWIiOi.sg")


def assert_reason(error: CredentialsError, reason: str) -> None:
    assert error.reason == reason
    assert error.code == ERROR_TABLE[reason].code
    assert (error.retry_after is not None) == ERROR_TABLE[reason].retryable


def change(emulator: Emulator, account_id: str = DEMO_NOTION_ACCOUNT_ID, **changes: Any) -> None:
    emulator.state.update_account(DEMO_PROJECT_ID, account_id, **changes)


def notion_json(emulator: Emulator) -> dict[str, Any]:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None
    return account.to_json(include_credentials=True)


@pytest.mark.parametrize("status", [400, 422])
async def test_a_400_or_422_is_rejected_not_unavailable(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, status: int
) -> None:
    emulator.state.set_status_fault("account", status, message=f"bad environment; {LEAKY}")
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_reason(error, "UPSTREAM_REQUEST_REJECTED")  # no RetryInfo: callers stop
    assert f"HTTP {status}" in error.message and "bad environment" in error.message
    assert "[REDACTED]" in error.message
    assert not any(secret in error.message for secret in LEAKED)
    assert emulator.state.requests["account"] == 1  # not retried either


async def test_a_400_on_the_list_is_rejected(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    emulator.state.set_status_fault("list", 400, message="unknown project")
    request = pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID)
    error = await error_of(stub.ListAccounts(request))
    assert_reason(error, "UPSTREAM_REQUEST_REJECTED")
    assert "unknown project" in error.message


@pytest.mark.parametrize(
    ("served", "says"),
    [
        (lambda account: {k: v for k, v in account.items() if k != "id"}, "has no id"),
        (lambda account: {**account, "id": ""}, "has no id"),
        (lambda account: {**account, "id": "apn_someoneElse1"}, "another account"),
        (lambda account: {"data": account}, 'wrapped in {"data"'),
    ],
    ids=["no-id", "empty-id", "other-id", "data-wrapped"],
)
async def test_an_account_of_the_wrong_shape_is_an_upstream_error(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, served: Any, says: str
) -> None:
    change(emulator, served_as=served(notion_json(emulator)))
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_reason(error, "UPSTREAM_UNAVAILABLE")
    assert says in error.message
    assert "apn_someoneElse1" not in error.message
    validation = await error_of(
        stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    )
    assert validation.reason == "UPSTREAM_UNAVAILABLE"  # never "valid", never an account ""


async def test_a_list_row_without_an_id_fails_the_list(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    account = notion_json(emulator)
    del account["id"]
    change(emulator, served_as=account)
    error = await error_of(stub.ListAccounts(pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID)))
    assert_reason(error, "UPSTREAM_UNAVAILABLE")
    assert "has no id" in error.message


@pytest.mark.parametrize(
    "credentials",
    [{}, {"oauth_access_token": None, "oauth_refresh_token": None}, {"oauth_access_token": ""}],
    ids=["empty", "all-null", "empty-string"],
)
async def test_empty_credentials_are_not_available(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, credentials: dict[str, Any]
) -> None:
    change(emulator, credentials=credentials)
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_reason(error, "CREDENTIALS_NOT_AVAILABLE")
    listed = await stub.ListAccounts(pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID))
    row = next(a for a in listed.accounts if a.account_id == DEMO_NOTION_ACCOUNT_ID)
    assert list(row.credential_fields) == []


async def test_healthy_null_is_unknown_not_unhealthy(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    change(emulator, healthy=None)
    validation = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert validation.valid
    assert [p.reason for p in validation.problems] == []  # no ACCOUNT_UNHEALTHY warning
    assert validation.account.healthy
    # Against an account Pipedream does say is unhealthy: the warning comes.
    sick = await stub.ValidateAccount(validate_request(DEMO_UNHEALTHY_ACCOUNT_ID, "notion"))
    assert [p.reason for p in sick.problems] == [pb.REASON_ACCOUNT_UNHEALTHY]
    assert not sick.account.healthy


async def test_non_string_credential_values_are_json_text(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    change(
        emulator,
        credentials={
            "oauth_access_token": "ntn_plain_value_1",
            "settings": {"region": "eu", "ids": [1, 2]},
            "scopes": ["read", "write"],
            "port": 5432,
            "ratio": 0.5,
            "sandbox": True,
        },
    )
    request = get_request(
        DEMO_NOTION_ACCOUNT_ID,
        "notion",
        optional_fields=["settings", "scopes", "port", "ratio", "sandbox"],
    )
    answer = await stub.GetCredentials(request)
    assert dict(answer.credentials) == {
        "access_token": "ntn_plain_value_1",
        "settings": '{"ids":[1,2],"region":"eu"}',
        "scopes": '["read","write"]',
        "port": "5432",
        "ratio": "0.5",
        "sandbox": "true",
    }


async def test_invalid_unicode_never_becomes_internal(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    # Lone surrogates are valid JSON escapes but not Unicode text: protobuf cannot encode them.
    change(
        emulator,
        name="Notion \ud800 team",
        error="refresh failed \udfff",
        healthy=False,
        external_id="user-\ud83d",
        credentials={"oauth_access_token": "ntn_surrogate_\udc00_value"},
    )
    validation = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert validation.account.name == "Notion \ufffd team"
    assert validation.account.external_id == "user-\ufffd"
    [warning] = validation.problems
    assert warning.reason == pb.REASON_ACCOUNT_UNHEALTHY
    assert "refresh failed \ufffd" in warning.message
    answer = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert answer.credentials["access_token"] == "ntn_surrogate_\ufffd_value"
    listed = await stub.ListAccounts(pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID))
    assert "Notion \ufffd team" in {a.name for a in listed.accounts}


async def test_token_shaped_text_is_redacted(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    change(emulator, DEMO_DEAD_ACCOUNT_ID, error=LEAKY, name=f"Notion {LEAKED[1]}")
    error = await error_of(stub.GetCredentials(get_request(DEMO_DEAD_ACCOUNT_ID, "notion")))
    assert_reason(error, "ACCOUNT_DEAD")
    assert "refresh failed" in error.message and "[REDACTED]" in error.message
    validation = await stub.ValidateAccount(validate_request(DEMO_DEAD_ACCOUNT_ID, "notion"))
    shown = [error.message, validation.account.error, validation.account.name]
    shown += [p.message for p in validation.problems]
    assert not any(secret in text for secret in LEAKED for text in shown)
    assert validation.account.name == "Notion [REDACTED]"


async def test_token_endpoint_400_and_401_say_different_things(
    emulator: Emulator, settings: Settings
) -> None:
    from pdsidecar.config.listen import parse_listen
    from pdsidecar.secret import Secret

    wrong = ConnectionConfig("wrong", "demo-client-id", Secret("not-the-secret"))
    both = Settings(**{**vars(settings), "connections": {**settings.connections, "wrong": wrong}})
    async with running(both, parse_listen("127.0.0.1:0")) as sidecar:
        import grpc

        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            refused = await error_of(stub.RefreshToken(pb.RefreshTokenRequest(connection="wrong")))
            assert_reason(refused, "PROVIDER_AUTH_FAILED")
            assert "client credentials" in refused.message and "HTTP 401" in refused.message
            emulator.state.set_status_fault("token", 400, message="invalid_scope")
            malformed = await error_of(
                stub.RefreshToken(pb.RefreshTokenRequest(connection="default", force=True))
            )
            assert_reason(malformed, "PROVIDER_AUTH_FAILED")
            assert "HTTP 400: invalid_scope" in malformed.message
            assert "scope" in malformed.message and "client credentials" not in malformed.message
