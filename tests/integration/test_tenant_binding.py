"""Tenant binding over real gRPC: one end user cannot read another's account.

When a request names ``external_user_id`` and the account's ``external_id``
differs, GetCredentials answers PERMISSION_DENIED / ACCOUNT_USER_MISMATCH and
ValidateAccount a single problem with ``valid=false``; neither carries a
credential value or says whose account it is. A connection configured with
``require_external_user_id`` refuses requests that do not name a user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    Emulator,
    EmulatorState,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Settings
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request, validate_request

pytestmark = pytest.mark.anyio

Stub = pb_grpc.CredentialsServiceStub


def notion_secrets(state: EmulatorState) -> set[str]:
    account = state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials
    return {str(v) for v in account.credentials.values()}


async def raw_error_of(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded; an error was expected")


def assert_nothing_leaks(error: grpc.aio.AioRpcError, secrets: set[str]) -> None:
    """No credential value, and not the owner's id, anywhere in the status."""
    blobs = [(error.details() or "").encode()]
    for key, value in error.trailing_metadata() or ():
        blobs.append(value if isinstance(value, bytes) else f"{key}={value}".encode())
    for secret in {*secrets, DEMO_USER_ALICE}:
        assert not any(secret.encode() in blob for blob in blobs), "the refusal says too much"


def assert_mismatch(error: CredentialsError) -> None:
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "ACCOUNT_USER_MISMATCH"
    assert error.metadata["account_id"] == DEMO_NOTION_ACCOUNT_ID
    assert DEMO_NOTION_ACCOUNT_ID in error.message


async def test_get_credentials_for_another_user_is_refused(
    stub: Stub, emulator: Emulator, demo_state: EmulatorState
) -> None:
    secrets = notion_secrets(demo_state)
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_BOB)

    raw = await raw_error_of(stub.GetCredentials(request))
    assert_mismatch(CredentialsError.from_rpc_error(raw))
    assert_nothing_leaks(raw, secrets)
    assert emulator.state.requests["account"] == 1

    # Asked again: refused from the cached account, without another upstream read.
    again = await raw_error_of(stub.GetCredentials(request))
    assert_mismatch(CredentialsError.from_rpc_error(again))
    assert_nothing_leaks(again, secrets)
    assert emulator.state.requests["account"] == 1

    # The owner still gets the credentials, from that same cached read.
    owner = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_ALICE)
    )
    assert owner.credentials["access_token"] in secrets
    assert emulator.state.requests["account"] == 1


async def test_cached_account_is_checked_against_the_user(
    stub: Stub, emulator: Emulator, demo_state: EmulatorState
) -> None:
    owner = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_ALICE)
    )
    assert owner.account.external_id == DEMO_USER_ALICE
    reads = emulator.state.requests["account"]
    assert reads == 1

    # A cache hit must not skip the check: another user gets nothing.
    raw = await raw_error_of(
        stub.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id="user-mallory")
        )
    )
    assert_mismatch(CredentialsError.from_rpc_error(raw))
    assert_nothing_leaks(raw, notion_secrets(demo_state))
    validation = await stub.ValidateAccount(
        validate_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id="user-mallory")
    )
    assert not validation.valid
    assert emulator.state.requests["account"] == reads


async def test_validate_account_for_another_user_is_a_problem(
    stub: Stub, emulator: Emulator, demo_state: EmulatorState
) -> None:
    secrets = notion_secrets(demo_state)
    request = validate_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_BOB)
    for _ in range(2):
        response = await stub.ValidateAccount(request)
        assert not response.valid
        assert [p.reason for p in response.problems] == [pb.REASON_ACCOUNT_USER_MISMATCH]
        # Nothing about another user's account: no description, no owner, no values.
        assert not response.HasField("account")
        raw = response.SerializeToString()
        assert DEMO_USER_ALICE.encode() not in raw
        assert not any(s.encode() in raw for s in secrets)
    assert emulator.state.requests["account"] == 1

    owner = await stub.ValidateAccount(
        validate_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_ALICE)
    )
    assert owner.valid and owner.account.account_id == DEMO_NOTION_ACCOUNT_ID


async def test_user_mismatch_is_reported_before_any_other_problem(stub: Stub) -> None:
    # The account is for notion, not slack: a stranger must not learn even that.
    error = await error_of(
        stub.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "slack", external_user_id=DEMO_USER_BOB)
        )
    )
    assert error.reason == "ACCOUNT_USER_MISMATCH"
    assert "for app" not in error.message and "slack_v2" not in error.message
    response = await stub.ValidateAccount(
        validate_request(DEMO_NOTION_ACCOUNT_ID, "slack", external_user_id=DEMO_USER_BOB)
    )
    assert [p.reason for p in response.problems] == [pb.REASON_ACCOUNT_USER_MISMATCH]


async def test_without_external_user_id_there_is_no_binding(stub: Stub) -> None:
    # The default connection does not require the field; without it, no user check.
    response = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert response.credentials["access_token"]


@pytest.fixture
async def strict_stub(emulator: Emulator, settings: Settings) -> AsyncIterator[Stub]:
    """A sidecar with a second connection, "strict", that requires external_user_id."""
    strict = ConnectionConfig(
        "strict", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), require_external_user_id=True
    )
    two = Settings(
        pipedream_url=settings.pipedream_url,
        connections={**settings.connections, "strict": strict},
        policy=settings.policy,
    )
    sidecar = Sidecar(two, [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            yield Stub(channel)
    finally:
        await sidecar.stop(grace=0)


def assert_user_required(error: CredentialsError, field: str) -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert [v.field for v in error.violations] == [field]
    assert "strict" in error.violations[0].description


async def test_require_external_user_id_refuses_requests_without_it(
    strict_stub: Stub, emulator: Emulator
) -> None:
    get = await error_of(
        strict_stub.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="strict")
        )
    )
    assert_user_required(get, "account.external_user_id")
    validate = await error_of(
        strict_stub.ValidateAccount(
            validate_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="strict")
        )
    )
    assert_user_required(validate, "account.external_user_id")
    listed = await error_of(
        strict_stub.ListAccounts(
            pb.ListAccountsRequest(connection="strict", project_id=DEMO_PROJECT_ID)
        )
    )
    assert_user_required(listed, "external_user_id")
    # Refused before Pipedream was asked anything about accounts.
    assert emulator.state.requests["account"] == 0
    assert emulator.state.requests["list"] == 0


async def test_require_external_user_id_serves_the_owner_and_refuses_others(
    strict_stub: Stub, emulator: Emulator
) -> None:
    owner = await strict_stub.GetCredentials(
        get_request(
            DEMO_NOTION_ACCOUNT_ID, "notion", connection="strict", external_user_id=DEMO_USER_ALICE
        )
    )
    assert owner.credentials["access_token"]
    stranger = await error_of(
        strict_stub.GetCredentials(
            get_request(
                DEMO_NOTION_ACCOUNT_ID,
                "notion",
                connection="strict",
                external_user_id=DEMO_USER_BOB,
            )
        )
    )
    assert_mismatch(stranger)
    listed = await strict_stub.ListAccounts(
        pb.ListAccountsRequest(
            connection="strict", project_id=DEMO_PROJECT_ID, external_user_id=DEMO_USER_BOB
        )
    )
    assert listed.accounts and {a.external_id for a in listed.accounts} == {DEMO_USER_BOB}
    # The other connection of the same sidecar keeps its own rule.
    relaxed = await strict_stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert relaxed.credentials["access_token"] == owner.credentials["access_token"]
