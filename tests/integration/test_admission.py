"""Admission over real processes: probes, streams, watches, the read budget, bad bytes.

Each test starts ``pdsidecar serve`` as a child process against the in-process
emulator and plays one hostile caller; what it costs is read where it lands:
the emulator's counts, the child's RSS (``/proc``), its log lines. Counts are
far past every cap but bounded, so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from pdsidecar_emulator import (
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.config import FAST_RETRIES, write_config
from harness.ports import free_port
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.requests import get_request
from tests.support.sidecars import API_TOKEN, ServeProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

GET = "/pdsidecar.v1.CredentialsService/GetCredentials"
WATCH = "/pdsidecar.v1.CredentialsService/WatchCredentials"
CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
BEARER = (("authorization", f"Bearer {API_TOKEN}"),)
# A connection of its own: channels with equal arguments share one by default.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Upstream slots in the victim's test.
SLOTS = 4


async def started(
    serve: Any, folder: Path, url: str, *args: str, **policy: Any
) -> tuple[ServeProcess, list[str]]:
    """A ``pdsidecar serve`` with the API token set, and the targets it listens on."""
    config = write_config(folder / "pdsidecar.toml", url, policy={**FAST_RETRIES, **policy})
    process: ServeProcess = serve(
        *("--config", str(config), "--log-format", "json"),
        *args,
        env={"PDSIDECAR_API_TOKEN": API_TOKEN},
    )
    return process, await process.bound()


def rss_mb(process: ServeProcess) -> float:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def codes(results: list[Any]) -> Counter[str]:
    return Counter(r.code().name if isinstance(r, grpc.RpcError) else "OK" for r in results)


def cold(account_id: str) -> bytes:
    return get_request(account_id, "notion").SerializeToString()


async def first_message(call: Any) -> Any:
    try:
        return await call.read()
    except grpc.RpcError as error:
        return error


async def test_health_watch_flood_leaves_calls_and_checks_answering(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    """1,200 Health/Watch streams (the issue's 10,000 cost this box too long; 1,200 is
    still 12 x each listener's stream cap): the API and Health/Check keep answering.
    ``python -m bench.hostile`` plays the 10,000."""
    _, (api, probe_only) = await started(
        serve, tmp_path, emulator.url, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"
    )
    channels = [
        grpc.aio.insecure_channel(target, options=OWN_CONNECTION)
        for target in [api] * 4 + [probe_only] * 2
    ]
    try:
        streams = []
        for index, channel in enumerate(channels):
            # With the token on the API listener (without it: UNAUTHENTICATED at once).
            metadata = BEARER if index < 4 else ()
            watch = channel.unary_stream(HEALTH_WATCH)
            request = health_pb2.HealthCheckRequest().SerializeToString()
            streams += [watch(request, metadata=metadata) for _ in range(200)]
        firsts = await asyncio.gather(*(first_message(s) for s in streams[:800]))
        probe_firsts = await asyncio.gather(*(first_message(s) for s in streams[800:]))
        # Each listener holds at most its cap (64; 8 a connection), refuses the rest at once.
        assert codes(firsts)["OK"] <= 4 * 8
        assert codes(firsts)["RESOURCE_EXHAUSTED"] >= 800 - 4 * 8
        assert codes(probe_firsts)["OK"] <= 2 * 8
        async with grpc.aio.insecure_channel(api, options=OWN_CONNECTION) as fresh:
            answer = await fresh.unary_unary(GET)(
                cold(DEMO_NOTION_ACCOUNT_ID), metadata=BEARER, timeout=10
            )
            assert pb.GetCredentialsResponse.FromString(answer).credentials
            for target in (api, probe_only):
                async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as probe:
                    status = await health_pb2_grpc.HealthStub(probe).Check(
                        health_pb2.HealthCheckRequest(), timeout=2
                    )
                    assert status.status == health_pb2.HealthCheckResponse.SERVING
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()


async def test_non_reading_reflection_streams_hold_bounded_memory(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    sidecar, (target,) = await started(serve, tmp_path, emulator.url, "--listen", "127.0.0.1:0")
    ask = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="pdsidecar.v1.CredentialsService"
    ).SerializeToString()
    huge = reflection_pb2.ServerReflectionRequest(
        host="h" * 60_000, list_services=""
    ).SerializeToString()
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(25)]
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            await channel.unary_unary(GET)(cold(DEMO_NOTION_ACCOUNT_ID), metadata=BEARER)
        before = rss_mb(sidecar)
        streams = [channels[i % 25].stream_stream(REFLECT)(metadata=BEARER) for i in range(200)]

        async def flood(call: Any) -> None:
            # Writes until flow control (or the sidecar's refusal) stops them; reads nothing.
            try:
                async with asyncio.timeout(1):
                    for _ in range(400):
                        await call.write(ask)
            except (TimeoutError, grpc.RpcError, asyncio.InvalidStateError):
                pass

        await asyncio.gather(*(flood(s) for s in streams))
        held = rss_mb(sidecar)
        # A huge request (a 60 KB host) is refused, not echoed.
        async with grpc.aio.insecure_channel(target) as channel:
            refused = channel.stream_stream(REFLECT)(metadata=BEARER)
            await refused.write(huge)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await refused.read()
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()
    await asyncio.sleep(0.5)  # the sidecar's side of the cancels
    after = rss_mb(sidecar)
    print(f"reflection RSS: before {before:.1f} MB, held {held:.1f} MB, after {after:.1f} MB")
    assert held - before < 64
    assert after - before < 64


async def test_a_victims_watch_is_admitted_before_an_attackers_queue_drains(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    """1,000 attacking watches on cold accounts, 4 upstream slots (the default 32 only
    makes the machine busier: the queue's order is the same), Pipedream at 0.5 s."""
    state = emulator.state
    attacker_ids = state.add_generated_accounts(1000, project_id=DEMO_PROJECT_ID)
    metrics = f"127.0.0.1:{free_port()}"
    _, (target,) = await started(
        serve,
        tmp_path,
        emulator.url,
        *("--listen", "127.0.0.1:0", "--metrics-listen", metrics),
        upstream_concurrency=SLOTS,
    )
    state.set_latency(0.5, route="account")
    opened: list[str] = []
    refused: list[str] = []
    async with (
        grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as attacker,
        grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as victim,
        httpx.AsyncClient(base_url=f"http://{metrics}") as scraper,
    ):
        await victim.channel_ready()
        watch = attacker.unary_stream(WATCH)
        attacks = [watch(cold(i), metadata=BEARER) for i in attacker_ids]
        victims_call = None

        async def attack(call: Any) -> None:
            result = await first_message(call)
            (refused if isinstance(result, grpc.RpcError) else opened).append("")

        async def all_attacks_queued() -> bool:
            text = (await scraper.get("/metrics")).text
            return "pdsidecar_watch_started_total 1000.0" in text

        attacking = [asyncio.ensure_future(attack(c)) for c in attacks]
        try:
            # Every attacking watch has reached the admission queue (on a loaded machine
            # that takes seconds): only then does the victim ask, so what follows is the
            # queue's doing, not the order in which gRPC took the calls in.
            await eventually(all_attacks_queued, timeout=120, every=0.05)
            answered_before = len(opened)
            victims_call = victim.unary_stream(WATCH)(cold(DEMO_NOTION_ACCOUNT_ID), metadata=BEARER)
            first = await first_message(victims_call)
            answered_meanwhile = len(opened) - answered_before
            waiting = len(attacks) - len(opened) - len(refused)
        finally:
            for call in (victims_call, *attacks):
                if call is not None:
                    call.cancel()
            await asyncio.gather(*attacking, return_exceptions=True)
    assert not isinstance(first, grpc.RpcError), first
    print(f"victim: {answered_meanwhile} attacker watches answered meanwhile, {waiting} waiting")
    # Fair admission: the victim's one read waits a round or two of SLOTS reads, not for
    # the attacker's queue (main served it after the whole queue, or refused it OVERLOADED).
    assert waiting >= 50
    assert answered_meanwhile <= 3 * SLOTS


async def test_random_ids_from_one_listener_leave_the_budget_to_others(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    # Two listeners on one configured address: each is a listener of its own (its place
    # in the list names it), with its own share.
    _, (hostile_target, legit_target) = await started(
        serve, tmp_path, emulator.url, "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"
    )
    state = emulator.state
    state.reset_stats()
    async with grpc.aio.insecure_channel(hostile_target, options=OWN_CONNECTION) as hostile:
        call = hostile.unary_unary(GET)
        lanes = asyncio.Semaphore(100)

        async def guess() -> Any:
            async with lanes:
                try:
                    return await call(cold(f"apn_{secrets.token_hex(6)}"), metadata=BEARER)
                except grpc.RpcError as error:
                    return error

        results = await asyncio.gather(*(guess() for _ in range(2100)))
    reads = state.requests["account"]
    async with grpc.aio.insecure_channel(legit_target, options=OWN_CONNECTION) as legit:
        answer = await legit.unary_unary(GET)(
            cold(DEMO_NOTION_ACCOUNT_ID), metadata=BEARER, timeout=10
        )
    assert pb.GetCredentialsResponse.FromString(answer).credentials
    seen = codes(results)
    print(f"random ids: {dict(seen)}, Pipedream account reads {reads}")
    # Slowed after policy.not_found_allowance (50) misses: a few more, never the budget.
    assert reads < 200
    assert seen["RESOURCE_EXHAUSTED"] > 1800


async def test_malformed_bytes_get_invalid_argument_and_no_error_line(
    serve: Any, tmp_path: Path, emulator: Emulator
) -> None:
    sidecar, (target,) = await started(serve, tmp_path, emulator.url, "--listen", "127.0.0.1:0")
    garbage = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no message decodes it
    found: list[Any] = []
    async with grpc.aio.insecure_channel(target) as channel:
        for _ in range(5):
            for method in (GET, CHECK):
                try:
                    await channel.unary_unary(method)(garbage, metadata=BEARER)
                except grpc.RpcError as error:
                    found.append(error)
            for method in (HEALTH_WATCH, WATCH):
                found.append(
                    await first_message(channel.unary_stream(method)(garbage, metadata=BEARER))
                )
            bidi = channel.stream_stream(REFLECT)(metadata=BEARER)
            await bidi.write(garbage)
            found.append(await first_message(bidi))
    assert codes(found) == {"INVALID_ARGUMENT": 25}
    records = sidecar.records()
    assert not [r for r in records if r["level"] in ("error", "critical")]
    assert not [line for line in sidecar.lines() if "Traceback" in line]
    # One line per caller per interval (the probes' services log; the API's answer only).
    malformed = [r for r in records if "malformed request" in r["message"]]
    assert len(malformed) == 1, json.dumps(malformed)
