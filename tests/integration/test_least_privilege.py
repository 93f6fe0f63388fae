"""A caller gets what it names and nothing else, or its source's default set; the OAuth
app's client secret only when named; every demo account answers with its source's
defaults. Over real gRPC, for GetCredentials and WatchCredentials alike."""

from __future__ import annotations

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_ACCOUNTS,
    DEMO_DEV_ACCOUNT_IDS,
    DEMO_GCAL_ACCOUNT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from pdsidecar.credentials import mapping
from pdsidecar.credentials.sources import default_fields
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request, ref

pytestmark = pytest.mark.anyio

# What a demo account with no usable credentials answers, with its source's defaults.
REFUSED = {
    "apn_demoSlack1": "CREDENTIALS_NOT_AVAILABLE",
    DEMO_GCAL_ACCOUNT_ID: "CREDENTIALS_NOT_AVAILABLE",
    "apn_demoDead1": "ACCOUNT_DEAD",
}


def held(emulator: Emulator, account_id: str) -> dict[str, str]:
    account = emulator.state.get_account(DEMO_PROJECT_ID, account_id)
    assert account is not None and account.credentials
    return {k: str(v) for k, v in account.credentials.items()}


def watch(account_id: str, source: str, **fields: list[str]) -> pb.WatchCredentialsRequest:
    return pb.WatchCredentialsRequest(account=ref(account_id), source=source, **fields)


async def first_watched(stub: pb_grpc.CredentialsServiceStub, request: object) -> set[str]:
    call = stub.WatchCredentials(request)
    try:
        message = await call.read()
        return set(message.credentials)
    finally:
        call.cancel()


async def test_named_fields_are_all_a_caller_gets(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    secret = held(emulator, DEMO_NOTION_ACCOUNT_ID)["oauth_client_secret"]
    only = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", required_fields=["access_token"])
    )
    assert set(only.credentials) == {"access_token"}
    assert secret not in str(only)
    plus = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", optional_fields=["client_secret"])
    )
    assert dict(plus.credentials)["client_secret"] == secret  # named: served
    assert set(plus.credentials) == {"access_token", "client_secret"}
    named = watch(DEMO_NOTION_ACCOUNT_ID, "notion", required_fields=["access_token"])
    assert await first_watched(stub, named) == {"access_token"}


async def test_defaults_never_hold_the_client_secret(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    # The Google Drive account holds all four OAuth fields; its default set is three.
    assert "oauth_client_secret" in held(emulator, DEMO_GDRIVE_ACCOUNT_ID)
    response = await stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
    assert set(response.credentials) == {"access_token", "refresh_token", "client_id"}
    assert set(response.account.credential_fields) >= {"oauth_client_secret"}  # names only
    request = watch(DEMO_GDRIVE_ACCOUNT_ID, "google_drive")
    assert await first_watched(stub, request) == {"access_token", "refresh_token", "client_id"}
    notion = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert set(notion.credentials) == {"access_token"}  # Airweave's Notion config


async def test_every_demo_account_answers_with_its_sources_defaults(
    stub: pb_grpc.CredentialsServiceStub,
) -> None:
    for account_id, app, _, _ in DEMO_ACCOUNTS:
        source = mapping.sources_for(app)[0]
        development = account_id in DEMO_DEV_ACCOUNT_IDS
        environment = pb.ENVIRONMENT_DEVELOPMENT if development else pb.ENVIRONMENT_PRODUCTION
        request = get_request(account_id, source, environment=environment)
        if account_id in REFUSED:
            error = await error_of(stub.GetCredentials(request))
            assert (error.code, error.reason) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                REFUSED[account_id],
            ), account_id
            continue
        response = await stub.GetCredentials(request)
        defaults = default_fields(source)
        assert set(defaults.required) <= set(response.credentials), (account_id, source)
        assert set(response.credentials) <= {*defaults.required, *defaults.optional}


async def test_no_credentials_says_what_pipedream_sent(
    stub: pb_grpc.CredentialsServiceStub,
) -> None:
    error = await error_of(
        stub.GetCredentials(get_request(DEMO_GCAL_ACCOUNT_ID, "google_calendar"))
    )
    assert error.reason == "CREDENTIALS_NOT_AVAILABLE"
    assert "credentials: null" in error.message
    assert "it uses Pipedream's default OAuth client" not in error.message
