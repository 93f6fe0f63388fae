"""The serialized-answer memo on GetCredentials: reused only while the cache entry is current."""

from __future__ import annotations

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from pdsidecar.clock import ManualClock
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request

pytestmark = pytest.mark.anyio


async def test_repeated_calls_are_answered_without_upstream_reads(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    first = await timed_stub.GetCredentials(request)
    answers = [await timed_stub.GetCredentials(request) for _ in range(20)]
    assert all(a == first for a in answers)
    assert emulator.state.requests["account"] == 1


async def test_reused_answer_expires_with_the_cache_entry(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    before = await timed_stub.GetCredentials(request)
    rotated = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    clock.advance(299)  # inside credentials_max_age (300 s): still the cached answer
    assert (await timed_stub.GetCredentials(request)) == before
    clock.advance(2)
    after = await timed_stub.GetCredentials(request)
    assert after.credentials["access_token"] == rotated
    assert emulator.state.requests["account"] == 2


async def test_a_rejected_token_replaces_the_reused_answer(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    plain = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    old = (await timed_stub.GetCredentials(plain)).credentials["access_token"]
    new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    clock.advance(1)  # the rejection comes after the fetch that cached `old`
    rejected = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
    assert (await timed_stub.GetCredentials(rejected)).credentials["access_token"] == new
    # The plain request's reused answer held the old token; it must not come back.
    assert (await timed_stub.GetCredentials(plain)).credentials["access_token"] == new


async def test_undecodable_request_bytes_are_invalid_argument(sidecar: Sidecar) -> None:
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        call = channel.unary_unary("/pdsidecar.v1.CredentialsService/GetCredentials")
        error = await error_of(call(b"\xff\xff\xff"))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
