"""Deadlines: a short deadline ends the call on time and leaves the shared fetch alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, Emulator

from pdsidecar.observe.logs import GRPC_LOGGER, RoutineCallEnds
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.logsink import LogSink
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


async def test_answers_that_miss_the_deadline_are_not_logged_as_errors(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, log_sink: LogSink
) -> None:
    """Deadlines right around the upstream's latency: some answers come too late for
    grpc to send. That is routine, never an ERROR line with a traceback."""
    await stub.RefreshToken(pb.RefreshTokenRequest())
    emulator.state.set_latency(0.1, "account")
    first = len(log_sink.lines)
    outcomes: Counter[str] = Counter()
    # From just under the latency up to ten times it: the first ones miss on any machine,
    # the last ones make it even on a busy one, and some in between are answered too late.
    for i, account in enumerate(emulator.state.add_generated_accounts(80)):
        outcome, _ = await _timed(
            stub.GetCredentials(get_request(account, "notion"), timeout=0.09 + (i % 40) * 0.025)
        )
        outcomes[outcome.code().name if isinstance(outcome, grpc.RpcError) else "OK"] += 1
    await asyncio.sleep(0.2)
    assert outcomes["DEADLINE_EXCEEDED"] and outcomes["OK"], outcomes
    errors = [line for line in log_sink.lines[first:] if line.startswith(("ERROR", "CRITICAL"))]
    assert not errors, errors[:3]


def test_grpc_late_answer_errors_become_debug_lines() -> None:
    record = logging.LogRecord(
        GRPC_LOGGER,
        logging.ERROR,
        __file__,
        1,
        "ExecuteBatchError raised in core by servicer method [%s]",
        ("/pdsidecar.v1.CredentialsService/GetCredentials",),
        None,
    )
    RoutineCallEnds().filter(record)
    assert record.levelno == logging.DEBUG and record.exc_info is None
    assert "GetCredentials: the call ended before its answer was sent" in record.getMessage()
