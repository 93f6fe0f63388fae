"""Deadlines: a short deadline ends the call on time and leaves the shared fetch alone."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, Emulator

from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request

pytestmark = pytest.mark.anyio

STALL = 1.0  # the upstream stall; the short call's deadline is 50 ms


async def _timed(call: grpc.aio.UnaryUnaryCall) -> tuple[object, float]:  # type: ignore[type-arg]
    started = time.perf_counter()
    try:
        outcome: object = await call
    except grpc.aio.AioRpcError as error:
        outcome = error
    return outcome, time.perf_counter() - started


async def test_50ms_deadline_on_a_stalled_upstream_leaves_the_shared_fetch_running(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    # Warm the API token so the stall below only hits the account request.
    await stub.RefreshToken(pb.RefreshTokenRequest())
    emulator.state.set_stall(STALL, 1.0, "account")

    # The short call starts the fetch; the patient one joins it a moment later.
    short = asyncio.ensure_future(_timed(stub.GetCredentials(request, timeout=0.05)))
    await asyncio.sleep(0.01)
    patient = asyncio.ensure_future(_timed(stub.GetCredentials(request, timeout=10)))
    (short_outcome, short_elapsed), (patient_outcome, _) = await asyncio.gather(short, patient)

    assert isinstance(short_outcome, grpc.aio.AioRpcError)
    assert short_outcome.code() == grpc.StatusCode.DEADLINE_EXCEEDED, short_outcome.details()
    # About 50 ms; the bound is generous because machines are shared.
    assert short_elapsed < 0.5
    assert not isinstance(patient_outcome, grpc.aio.AioRpcError), patient_outcome
    # One fetch, started by the short call and finished for the patient one.
    assert emulator.state.requests["account"] == 1
    assert emulator.state.statuses["account"][200] == 1


async def test_after_the_deadline_the_fetched_account_is_cached_for_the_next_caller(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    await stub.RefreshToken(pb.RefreshTokenRequest())
    emulator.state.set_stall(0.3, 1.0, "account")
    outcome, _ = await _timed(stub.GetCredentials(request, timeout=0.05))
    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert outcome.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The abandoned fetch completes on its own and fills the cache.
    for _ in range(100):
        if emulator.state.statuses["account"][200] == 1:
            break
        await asyncio.sleep(0.02)
    emulator.state.clear_faults()
    response = await stub.GetCredentials(request, timeout=5)
    assert response.credentials["access_token"]
    assert emulator.state.requests["account"] == 1
