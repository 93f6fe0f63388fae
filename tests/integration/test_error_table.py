"""Every row of the error table, through the real sidecar and the real emulator."""

from __future__ import annotations

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    Emulator,
)

from pdsidecar.errors import ERROR_TABLE
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request

pytestmark = pytest.mark.anyio


def assert_row(error: object, reason: str) -> None:
    from pdsidecar_client import CredentialsError

    assert isinstance(error, CredentialsError)
    assert error.reason == reason
    assert error.code == ERROR_TABLE[reason].code
    assert (error.retry_after is not None) == ERROR_TABLE[reason].retryable


async def test_invalid_request_lists_every_bad_field(stub: pb_grpc.CredentialsServiceStub) -> None:
    request = pb.GetCredentialsRequest(
        account=pb.AccountRef(project_id="demo", account_id="apn_ok1", environment=7),
        source="Notion!",
        required_fields=["access token"],
    )
    error = await error_of(stub.GetCredentials(request))
    assert_row(error, "INVALID_REQUEST")
    fields = {v.field for v in error.violations}
    assert fields == {
        "account.project_id",
        "account.environment",
        "source",
        "required_fields[0]",
    }
    project = next(v for v in error.violations if v.field == "account.project_id")
    assert "proj_" in project.description


async def test_missing_ids_say_what_is_expected(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(stub.GetCredentials(pb.GetCredentialsRequest()))
    assert_row(error, "INVALID_REQUEST")
    described = {v.field: v.description for v in error.violations}
    assert "apn_" in described["account.account_id"]
    assert "required" in described["source"]


async def test_too_many_fields_and_long_user_id(stub: pb_grpc.CredentialsServiceStub) -> None:
    request = get_request(
        DEMO_NOTION_ACCOUNT_ID,
        "notion",
        external_user_id="u" * 257,
        optional_fields=[f"f{i}" for i in range(33)],
    )
    error = await error_of(stub.GetCredentials(request))
    assert_row(error, "INVALID_REQUEST")
    assert {v.field for v in error.violations} == {"account.external_user_id", "optional_fields"}


async def test_connection_not_found(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(
        stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="nope"))
    )
    assert_row(error, "CONNECTION_NOT_FOUND")
    assert "default" in error.message  # names the connections that do exist


async def test_account_not_found(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(stub.GetCredentials(get_request("apn_doesNotExist", "notion")))
    assert_row(error, "ACCOUNT_NOT_FOUND")
    assert error.metadata["account_id"] == "apn_doesNotExist"


async def test_source_not_supported(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "github")))
    assert_row(error, "SOURCE_NOT_SUPPORTED")
    assert emulator.state.requests["account"] == 0  # refused before any upstream call


async def test_app_mismatch(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "slack")))
    assert_row(error, "ACCOUNT_APP_MISMATCH")
    assert "notion" in error.message and "slack_v2" in error.message


async def test_credentials_not_available(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(stub.GetCredentials(get_request(DEMO_SLACK_ACCOUNT_ID, "slack")))
    assert_row(error, "CREDENTIALS_NOT_AVAILABLE")


async def test_missing_required_fields(stub: pb_grpc.CredentialsServiceStub) -> None:
    request = get_request(
        DEMO_NOTION_ACCOUNT_ID, "notion", required_fields=["access_token", "api_key"]
    )
    error = await error_of(stub.GetCredentials(request))
    assert_row(error, "MISSING_REQUIRED_FIELDS")
    assert "api_key" in error.message
    assert "oauth_access_token" in error.message  # the fields that are available, by name


async def test_account_dead(stub: pb_grpc.CredentialsServiceStub) -> None:
    error = await error_of(stub.GetCredentials(get_request(DEMO_DEAD_ACCOUNT_ID, "notion")))
    assert_row(error, "ACCOUNT_DEAD")


async def test_account_user_mismatch(stub: pb_grpc.CredentialsServiceStub) -> None:
    ok = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_ALICE)
    )
    assert ok.credentials["access_token"]
    error = await error_of(
        stub.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id=DEMO_USER_BOB)
        )
    )
    assert_row(error, "ACCOUNT_USER_MISMATCH")
    assert DEMO_USER_ALICE not in error.message


async def test_provider_auth_failed(emulator: Emulator, settings: Settings) -> None:
    from pdsidecar.config.listen import parse_listen
    from pdsidecar.runtime.sidecar import Sidecar

    wrong = ConnectionConfig("wrong", DEMO_CLIENT_ID, Secret("not-the-secret"))
    bad = Settings(
        pipedream_url=settings.pipedream_url,
        connections={**settings.connections, "wrong": wrong},
        policy=settings.policy,
    )
    sidecar = Sidecar(bad, [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            error = await error_of(
                stub.GetCredentials(
                    get_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="wrong")
                )
            )
            assert_row(error, "PROVIDER_AUTH_FAILED")
            error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest(connection="wrong")))
            assert_row(error, "PROVIDER_AUTH_FAILED")
            assert "not-the-secret" not in error.message
    finally:
        await sidecar.stop(grace=0)


async def test_rate_limited_carries_retry_after(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    emulator.state.set_status_fault("account", 429, retry_after="7")
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_row(error, "RATE_LIMITED")
    assert error.retry_after == pytest.approx(7.0)


async def test_rate_limited_without_retry_after_defaults_to_30s(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    emulator.state.set_status_fault("account", 429)
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_row(error, "RATE_LIMITED")
    assert error.retry_after == pytest.approx(30.0)


async def test_upstream_unavailable_after_bounded_retries(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, settings: Settings
) -> None:
    emulator.state.set_status_fault("account", 503)
    error = await error_of(stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion")))
    assert_row(error, "UPSTREAM_UNAVAILABLE")
    assert emulator.state.requests["account"] == settings.policy.max_attempts


async def test_every_reason_in_the_table_is_in_the_contract() -> None:
    for reason in ERROR_TABLE:
        assert pb.Reason.Value(f"REASON_{reason}") > 0


async def test_no_error_is_unknown_for_a_project_of_another_environment(
    stub: pb_grpc.CredentialsServiceStub,
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", environment=pb.ENVIRONMENT_DEVELOPMENT)
    error = await error_of(stub.GetCredentials(request))
    assert_row(error, "ACCOUNT_NOT_FOUND")
    assert error.metadata["project_id"] == DEMO_PROJECT_ID
