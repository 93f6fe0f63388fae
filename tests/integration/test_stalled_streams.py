"""Server streams whose client stops reading, over a real ``pdsidecar serve`` process.

The client opens its streams with a one-byte HTTP/2 window and reads nothing, so
the sidecar's first write on each stays unsent (the situation of a client that
stopped reading with its window full). With ``stream_stall_timeout`` at 0.2 s:

- a long ``stream_stall_grace``: the sidecar ends the stream (WatchCredentials, a
  reflection stream) and, meanwhile, it keeps its slot; the client that reads again
  gets the message that waited, then RESOURCE_EXHAUSTED (STREAM_STALLED); the slot is
  then free.
- a short grace: the client takes not even the end; the sidecar cancels the stream
  and a new one is admitted where the cap was full, while the stalled client still
  reads nothing. Reading again, that client sees CANCELLED.

When each step happened is read from the sidecar's metrics, never guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, Emulator

from harness.config import FAST_RETRIES, write_config
from harness.ports import free_port
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.requests import get_request
from tests.support.sidecars import API_TOKEN, ServeProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

WATCH = "/pdsidecar.v1.CredentialsService/WatchCredentials"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
BEARER = (("authorization", f"Bearer {API_TOKEN}"),)
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# A client that reads nothing: a one-byte window, no probing to widen it.
NOT_READING = [*OWN_CONNECTION, ("grpc.http2.lookahead_bytes", 1), ("grpc.http2.bdp_probe", 0)]
STALL = 0.2


class Sidecar:
    def __init__(self, process: ServeProcess, target: str, metrics: str) -> None:
        self.process, self.target, self.metrics = process, target, metrics

    async def counter(self, name: str) -> float:
        async with httpx.AsyncClient(base_url=f"http://{self.metrics}") as scraper:
            text = (await scraper.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    async def until(self, name: str, value: float) -> None:
        async def reached() -> bool:
            return await self.counter(name) >= value

        await eventually(reached, timeout=30, every=0.05)


async def started(serve: Any, folder: Path, url: str, grace: float, **policy: Any) -> Sidecar:
    metrics = f"127.0.0.1:{free_port()}"
    config = write_config(
        folder / "pdsidecar.toml",
        url,
        policy={
            **FAST_RETRIES,
            "stream_stall_timeout": STALL,
            "stream_stall_grace": grace,
            **policy,
        },
    )
    process: ServeProcess = serve(
        *("--config", str(config), "--log-format", "json"),
        *("--listen", "127.0.0.1:0", "--metrics-listen", metrics),
        env={"PDSIDECAR_API_TOKEN": API_TOKEN},
    )
    (target,) = await process.bound()
    return Sidecar(process, target, metrics)


def watch_request(account_id: str, source: str) -> bytes:
    request = get_request(account_id, source)
    return pb.WatchCredentialsRequest(
        account=request.account, source=request.source
    ).SerializeToString()


async def outcome(call: Any) -> Any:
    """The next message, or the error the stream ended with."""
    try:
        return await call.read()
    except grpc.RpcError as error:
        return error


def rich(error: Any) -> CredentialsError:
    assert isinstance(error, grpc.RpcError), error
    return CredentialsError.from_rpc_error(error)


async def test_stalled_streams_end_resource_exhausted_and_keep_their_slot_until_over(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    sidecar = await started(serve, tmp_path, emulator.url, grace=60, max_watchers=1)
    async with (
        grpc.aio.insecure_channel(sidecar.target, options=NOT_READING) as slow,
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as other,
    ):
        stalled = slow.unary_stream(WATCH)(
            watch_request(DEMO_NOTION_ACCOUNT_ID, "notion"), metadata=BEARER
        )
        await sidecar.until("pdsidecar_streams_stalled_total", 1)
        # Over for the sidecar, but its client has not taken the end: the slot is held.
        watch = other.unary_stream(WATCH)
        second = watch_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        refused = rich(await outcome(watch(second, metadata=BEARER)))
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_WATCHERS",
        )
        # The client reads again: the message that waited, then the end.
        waited = pb.WatchCredentialsResponse.FromString(await stalled.read())
        assert waited.credentials["access_token"]
        end = rich(await outcome(stalled))
        assert (end.code, end.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "STREAM_STALLED")
        assert "stream_stall_timeout" in end.message
        # The stream is over: its slot is free (once the sidecar counted it out).
        await eventually(lambda: sidecar_watchers_zero(sidecar), timeout=30, every=0.05)
        admitted_call = watch(second, metadata=BEARER)
        admitted = await outcome(admitted_call)
        assert not isinstance(admitted, grpc.RpcError), rich(admitted)
        assert pb.WatchCredentialsResponse.FromString(admitted).credentials
        admitted_call.cancel()
        # A reflection stream: the same.
        ask = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
        reflecting = slow.stream_stream(REFLECT)(metadata=BEARER)
        await reflecting.write(ask)
        await sidecar.until("pdsidecar_streams_stalled_total", 2)
        answer = reflection_pb2.ServerReflectionResponse.FromString(await reflecting.read())
        assert answer.list_services_response.service
        end = rich(await outcome(reflecting))
        assert (end.code, end.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "STREAM_STALLED")
    assert await sidecar.counter("pdsidecar_streams_cancelled_total") == 0
    assert_quiet(sidecar.process)


async def sidecar_watchers_zero(sidecar: Sidecar) -> bool:
    return await sidecar.counter("pdsidecar_watchers") == 0


async def test_a_client_that_takes_not_even_the_end_is_cut_off_and_its_slots_freed(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    """Two watches and two Health/Watch streams allowed (max_watchers, probe_streams),
    all four taken by the stalled client; past the grace they are cancelled, and new
    ones are admitted while the stalled client still reads nothing."""
    sidecar = await started(
        serve, tmp_path, emulator.url, grace=STALL, max_watchers=2, probe_streams=2
    )
    health = health_pb2.HealthCheckRequest().SerializeToString()
    notion = watch_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    async with (
        grpc.aio.insecure_channel(sidecar.target, options=NOT_READING) as slow,
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as other,
    ):
        stalled = [slow.unary_stream(WATCH)(notion, metadata=BEARER) for _ in range(2)]
        stalled += [slow.unary_stream(HEALTH_WATCH)(health, metadata=BEARER) for _ in range(2)]
        await sidecar.until("pdsidecar_streams_cancelled_total", 4)
        # Both caps were full with the stalled streams; now new ones are admitted.
        watch = other.unary_stream(WATCH)(notion, metadata=BEARER)
        first = await outcome(watch)
        assert not isinstance(first, grpc.RpcError), rich(first)
        assert pb.WatchCredentialsResponse.FromString(first).credentials
        probe = other.unary_stream(HEALTH_WATCH)(health, metadata=BEARER)
        status = health_pb2.HealthCheckResponse.FromString(await outcome(probe))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        # The stalled client reads again. A cancelled stream ends CANCELLED. grpc.aio
        # keeps a reference to one call it handled (seen: one of 5, 20 or 200), and a
        # call ends only once dropped: that stream still ends with its queued end.
        ends = [await read_to_end(call) for call in stalled]
        watch.cancel()
        probe.cancel()
    assert set(ends) <= {"CANCELLED", "STREAM_STALLED"}, ends
    assert ends.count("CANCELLED") >= len(stalled) - 1, ends
    assert await sidecar.counter("pdsidecar_streams_stalled_total") == 4
    assert_quiet(sidecar.process)


def assert_quiet(process: ServeProcess) -> None:
    """Ending streams so logs no error and no traceback (grpc.aio's included)."""
    assert not [r for r in process.records() if r["level"] in ("error", "critical")]
    assert not [line for line in process.lines() if "Traceback" in line]


async def read_to_end(call: Any) -> str:
    """How a stream ends: CANCELLED, or the reason of its rich error."""
    while not isinstance(message := await outcome(call), grpc.RpcError):
        assert message is not grpc.aio.EOF, "the stream ended OK"
    if message.code() == grpc.StatusCode.CANCELLED:
        return "CANCELLED"
    return rich(message).reason or message.code().name
