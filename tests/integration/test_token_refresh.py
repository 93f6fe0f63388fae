"""The Pipedream token is refreshed at the early-refresh margin, not before."""

from __future__ import annotations

import pytest
from pdsidecar_emulator import DEMO_CODA_ACCOUNT_ID, DEMO_NOTION_ACCOUNT_ID, Emulator

from pdsidecar.clock import ManualClock
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request

pytestmark = pytest.mark.anyio


async def test_refresh_happens_at_the_margin_and_not_before(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    await timed_stub.GetCredentials(request)
    assert emulator.state.requests["token"] == 1

    # Token lifetime 3600 s, margin 300 s: 301 s left is still outside the window.
    clock.advance(3600 - 301)
    await timed_stub.GetCredentials(request)  # the account is re-read (cache age)...
    assert emulator.state.requests["account"] == 2
    assert emulator.state.requests["token"] == 1  # ...with the same token

    clock.advance(2)  # 299 s left: inside the window
    await timed_stub.GetCredentials(request)
    assert emulator.state.requests["token"] == 1  # served from cache: no token needed

    other = get_request(DEMO_CODA_ACCOUNT_ID, "coda", required_fields=["api_key"])
    await timed_stub.GetCredentials(other)  # needs the token: refreshed first
    assert emulator.state.requests["token"] == 2

    status = await timed_stub.RefreshToken(pb.RefreshTokenRequest())
    assert not status.refreshed  # the new token is far from its margin
    assert emulator.state.requests["token"] == 2
