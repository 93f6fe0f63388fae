"""Static stability, end to end: when Pipedream fails, what the sidecar holds keeps working.

A ManualClock drives the sidecar (cache ages, token windows); the emulator keeps real time,
so the tokens it issued stay valid while the sidecar's clock moves hours ahead.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from pdsidecar.clock import ManualClock
from pdsidecar.errors import ERROR_TABLE
from pdsidecar.settings import Policy
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request

pytestmark = pytest.mark.anyio

MAX_AGE = 300.0
SOURCE_TOKEN_LIFETIME = 3600.0  # the emulator's source tokens (seed data) live an hour


@pytest.fixture
def policy() -> Policy:
    return Policy(
        credentials_max_age=MAX_AGE,
        backoff_initial=0.01,
        backoff_max=0.05,
        max_attempts=2,
        request_timeout=2.0,
    )


@pytest.fixture
def stub(timed_stub: pb_grpc.CredentialsServiceStub) -> pb_grpc.CredentialsServiceStub:
    """The sidecar on a ManualClock: these tests move time without sleeping."""
    return timed_stub


def held_token(emulator: Emulator) -> str:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials is not None
    return str(account.credentials["oauth_access_token"])


@pytest.mark.parametrize(
    ("status", "retry_after"), [(500, None), (503, None), (429, "7")], ids=["500", "503", "429"]
)
async def test_stale_credentials_are_served_while_pipedream_fails(
    stub: pb_grpc.CredentialsServiceStub,
    emulator: Emulator,
    clock: ManualClock,
    log_lines: Callable[[], list[str]],
    status: int,
    retry_after: str | None,
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    first = await stub.GetCredentials(request)
    emulator.state.set_status_fault("account", status, retry_after=retry_after)
    clock.advance(MAX_AGE + 60)  # past credentials_max_age; the source token is still valid

    stale = await stub.GetCredentials(request)

    assert stale.credentials["access_token"] == first.credentials["access_token"]
    assert stale.credentials["access_token"] == held_token(emulator)
    assert emulator.state.statuses["account"][status] >= 1  # it did ask Pipedream first
    assert any("past its max age" in line for line in log_lines())
    # Served stale, the entry backs off: the next call does not hammer Pipedream again.
    asked = emulator.state.requests["account"]
    await stub.GetCredentials(request)
    assert emulator.state.requests["account"] == asked


async def test_stale_credentials_are_not_served_past_the_source_tokens_expiry(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    await stub.GetCredentials(request)
    emulator.state.set_status_fault("account", 503)
    clock.advance(SOURCE_TOKEN_LIFETIME + 60)  # the cached source token has expired

    error = await error_of(stub.GetCredentials(request))

    assert error.reason == "UPSTREAM_UNAVAILABLE"
    assert error.code == ERROR_TABLE["UPSTREAM_UNAVAILABLE"].code
    assert error.retry_after is not None


async def test_fresh_data_replaces_the_stale_copy_once_pipedream_recovers(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    await stub.GetCredentials(request)
    emulator.state.set_status_fault("account", 500)
    clock.advance(MAX_AGE + 60)
    await stub.GetCredentials(request)  # stale
    rotated = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.clear_faults()
    clock.advance(60)  # past the stale entry's back-off

    fresh = await stub.GetCredentials(request)

    assert fresh.credentials["access_token"] == rotated


async def test_advisory_window_uses_the_current_pipedream_token_while_the_refresh_fails(
    stub: pb_grpc.CredentialsServiceStub,
    emulator: Emulator,
    clock: ManualClock,
    policy: Policy,
    log_lines: Callable[[], list[str]],
) -> None:
    await stub.RefreshToken(pb.RefreshTokenRequest())  # Pipedream token, valid 3600 s
    assert emulator.state.requests["token"] == 1
    emulator.state.set_status_fault("token", 500)
    # 200 s before the Pipedream token expires: inside the advisory window (300 s), outside the
    # mandatory one (60 s). The account's cache entry is stale too, so a call needs upstream.
    clock.advance(3600 - 200)
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")

    served = await stub.GetCredentials(request)

    assert served.credentials["access_token"] == held_token(emulator)
    assert emulator.state.statuses["token"][500] == policy.max_attempts  # the refresh was tried
    assert any("advisory window" in line for line in log_lines())
    # The next caller does not retry the refresh at once: it backs off.
    tried = emulator.state.requests["token"]
    await stub.ValidateAccount(pb.ValidateAccountRequest(account=request.account, source="notion"))
    assert emulator.state.requests["token"] == tried


async def test_mandatory_window_blocks_callers_until_a_token_is_had(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    await stub.RefreshToken(pb.RefreshTokenRequest())
    emulator.state.set_status_fault("token", 503)
    clock.advance(3600 - 30)  # 30 s left: inside the mandatory window (60 s)
    request = get_request("apn_neverSeen1", "notion")  # not cached: needs the Pipedream token

    error = await error_of(stub.GetCredentials(request))

    assert error.reason == "UPSTREAM_UNAVAILABLE"
    assert error.retry_after is not None
    assert emulator.state.requests["account"] == 0  # nothing was sent with the old token

    emulator.state.clear_faults()
    clock.advance(10)  # past the failure's back-off
    ok = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    assert ok.credentials["access_token"] == held_token(emulator)
    assert emulator.state.tokens_issued == 2
