"""What a worker sees: credentials, mappings, validation and refresh, over real gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    Emulator,
)

from pdsidecar.clock import ManualClock
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request, validate_request
from tests.support.sidecars import TEST_POLICY

pytestmark = pytest.mark.anyio

# A connection of its own: channels with equal arguments share one by default.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def pipedream_credentials(emulator: Emulator, account_id: str) -> dict[str, str]:
    account = emulator.state.get_account(DEMO_PROJECT_ID, account_id)
    assert account is not None and account.credentials is not None
    return {k: str(v) for k, v in account.credentials.items()}


async def test_notion_credentials_under_airweave_names(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    held = pipedream_credentials(emulator, DEMO_NOTION_ACCOUNT_ID)
    every = ["access_token", "refresh_token", "client_id", "client_secret"]
    response = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", required_fields=every)
    )
    assert dict(response.credentials) == {
        "access_token": held["oauth_access_token"],
        "refresh_token": held["oauth_refresh_token"],
        "client_id": held["oauth_client_id"],
        "client_secret": held["oauth_client_secret"],
    }
    assert response.credentials["access_token"].startswith("ntn_demo_")
    assert response.account.app_slug == "notion"
    assert set(response.account.credential_fields) == set(held)
    assert response.HasField("expires_at") and response.expires_at.seconds > 0


async def test_coda_api_key_reads_pipedream_api_token(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    held = pipedream_credentials(emulator, DEMO_CODA_ACCOUNT_ID)
    response = await stub.GetCredentials(
        get_request(DEMO_CODA_ACCOUNT_ID, "coda", required_fields=["api_key"])
    )
    assert dict(response.credentials) == {"api_key": held["api_token"]}


async def test_missing_optional_fields_are_skipped(stub: pb_grpc.CredentialsServiceStub) -> None:
    response = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", optional_fields=["refresh_token", "base_url"])
    )
    assert set(response.credentials) == {"access_token", "refresh_token"}


async def test_validate_reports_problems_as_data(stub: pb_grpc.CredentialsServiceStub) -> None:
    ok = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert ok.valid and not ok.problems and ok.account.account_id == DEMO_NOTION_ACCOUNT_ID

    dead = await stub.ValidateAccount(validate_request(DEMO_DEAD_ACCOUNT_ID, "notion"))
    assert not dead.valid
    assert pb.REASON_ACCOUNT_DEAD in [p.reason for p in dead.problems]

    slack = await stub.ValidateAccount(validate_request(DEMO_SLACK_ACCOUNT_ID, "slack"))
    assert not slack.valid
    assert [p.reason for p in slack.problems] == [pb.REASON_CREDENTIALS_NOT_AVAILABLE]

    missing = await stub.ValidateAccount(validate_request("apn_nothing1", "notion"))
    assert not missing.valid and not missing.HasField("account")
    assert [p.reason for p in missing.problems] == [pb.REASON_ACCOUNT_NOT_FOUND]

    mismatch = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "slack"))
    assert [p.reason for p in mismatch.problems] == [pb.REASON_ACCOUNT_APP_MISMATCH]

    blocked = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "jira"))
    assert [p.reason for p in blocked.problems] == [pb.REASON_SOURCE_NOT_SUPPORTED]

    unhealthy = await stub.ValidateAccount(validate_request(DEMO_UNHEALTHY_ACCOUNT_ID, "notion"))
    assert unhealthy.valid
    assert [p.reason for p in unhealthy.problems] == [pb.REASON_ACCOUNT_UNHEALTHY]


async def test_thousand_cold_callers_cause_one_token_and_one_account_request(
    sidecar: Sidecar, emulator: Emulator
) -> None:
    emulator.state.set_latency(0.05)  # keep the first fetch in flight while the others arrive
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    # Four connections: one may have at most max_streams_per_connection (512) calls open.
    channels = [
        grpc.aio.insecure_channel(sidecar.bound[0], options=OWN_CONNECTION) for _ in range(4)
    ]
    try:
        stubs = [pb_grpc.CredentialsServiceStub(channel) for channel in channels]
        calls = (stubs[i % 4].GetCredentials(request) for i in range(1000))
        responses = await asyncio.gather(*calls)
    finally:
        for channel in channels:
            await channel.close()
    assert {r.credentials["access_token"] for r in responses} == {
        pipedream_credentials(emulator, DEMO_NOTION_ACCOUNT_ID)["oauth_access_token"]
    }
    assert emulator.state.requests["token"] == 1
    assert emulator.state.requests["account"] == 1


async def test_cold_callers_for_many_accounts_share_one_token_request(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    """Distinct accounts: the account cache coalesces nothing here, so only the token
    lock keeps 100 cold callers to one token request."""
    accounts = emulator.state.add_generated_accounts(100)
    emulator.state.set_latency(0.2, route="token")  # out while the other callers arrive
    emulator.state.set_latency(0.02, route="account")
    responses = await asyncio.gather(
        *(stub.GetCredentials(get_request(account, "notion")) for account in accounts)
    )
    assert all(r.credentials["access_token"] for r in responses)
    assert emulator.state.requests["token"] == 1
    assert emulator.state.requests["account"] == len(accounts)
    # The callers overlapped: having waited for the one token together, their account
    # requests went out together (the emulator's gauge counts them in flight).
    assert emulator.state.max_in_flight > 1


async def test_revoked_pipedream_token_means_one_refresh_and_one_retry(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    emulator.state.revoke_tokens()
    emulator.state.reset_stats()
    response = await stub.GetCredentials(
        get_request(DEMO_CODA_ACCOUNT_ID, "coda", required_fields=["api_key"])
    )
    assert response.credentials["api_key"]
    assert emulator.state.requests["token"] == 1
    assert emulator.state.statuses["account"][401] == 1
    assert emulator.state.statuses["account"][200] == 1


async def test_rejected_access_token_gets_what_pipedream_has_now(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    first = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    old = first.credentials["access_token"]
    new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    cached = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert cached.credentials["access_token"] == old  # still served from cache

    emulator.state.reset_stats()
    emulator.state.set_latency(0.05)
    rejected = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
    answers = await asyncio.gather(*(stub.GetCredentials(rejected) for _ in range(100)))
    assert {a.credentials["access_token"] for a in answers} == {new}
    assert emulator.state.requests["account"] == 1


async def test_refresh_token_rpc(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    first = await timed_stub.RefreshToken(pb.RefreshTokenRequest())
    assert first.connection == "default" and first.refreshed
    assert first.expires_at.seconds > 0
    again = await timed_stub.RefreshToken(pb.RefreshTokenRequest())
    assert not again.refreshed  # far from the early-refresh window
    forced = await timed_stub.RefreshToken(pb.RefreshTokenRequest(force=True))
    assert forced.refreshed
    again = await timed_stub.RefreshToken(pb.RefreshTokenRequest(force=True))
    assert not again.refreshed, "forced refreshes: one token request per interval"
    clock.advance(TEST_POLICY.forced_refresh_interval)
    assert (await timed_stub.RefreshToken(pb.RefreshTokenRequest(force=True))).refreshed
    assert emulator.state.requests["token"] == 3
