"""Hostile callers over real gRPC: memory, Pipedream requests and call slots stay bounded.

Each test plays a caller that reaches the listener and tries to exhaust the
sidecar's memory or the project's Pipedream budget; what it may cost is
counted at the emulator (requests, tokens issued) or read from the memo.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_USER_BOB,
    Emulator,
)

from pdsidecar.api.memo import ENTRY_OVERHEAD
from pdsidecar.clock import ManualClock
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import ListenerConfig, Policy, Settings
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import TEST_POLICY, demo_settings, running

pytestmark = pytest.mark.anyio

TCP = parse_listen("127.0.0.1:0")
GET = "/pdsidecar.v1.CredentialsService/GetCredentials"

# A connection of its own: channels with equal arguments share one by default.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def unknown_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field the message does not define."""
    tag = _varint(number << 3 | 2)
    return tag + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def codes(results: list[object]) -> Counter[str]:
    return Counter(
        r.code().name if isinstance(r, grpc.RpcError) else "OK"  # type: ignore[attr-defined]
        for r in results
    )


async def test_unknown_field_bytes_do_not_grow_the_answer_memo(
    sidecar: Sidecar, emulator: Emulator
) -> None:
    plain = get_request(DEMO_NOTION_ACCOUNT_ID, "notion").SerializeToString()
    memo = sidecar._servicer.memo
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        call = channel.unary_unary(GET)
        expected = await call(plain)
        for i in range(300):
            # Small and large unknown fields, different in every request.
            size = 4096 if i % 2 else 8
            hostile = plain + unknown_field(1000 + i % 7, i.to_bytes(4, "big") * size)
            assert await call(hostile) == expected
        # Another encoding of the same request (fields repeated): answered, not kept.
        assert await call(plain + plain) == expected
    assert len(memo) == 1
    assert memo.bytes <= len(plain) + len(expected) + ENTRY_OVERHEAD
    assert emulator.state.requests["account"] == 1


async def test_cancelled_callers_cost_only_the_fetches_they_started(
    emulator: Emulator,
) -> None:
    """Distinct unknown ids, each call given up after 300 ms, upstream slow (1 s):
    only the fetches that got an upstream slot reach Pipedream; the rest are refused
    at once (OVERLOADED with RetryInfo), and a legitimate cold call on another
    connection still gets its answer."""
    slots = 4
    settings = demo_settings(
        emulator.url, dataclasses.replace(TEST_POLICY, upstream_concurrency=slots)
    )
    async with running(settings, TCP) as sidecar:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            await pb_grpc.CredentialsServiceStub(channel).RefreshToken(pb.RefreshTokenRequest())
        emulator.state.set_latency(1.0, "account")
        async with (
            grpc.aio.insecure_channel(sidecar.bound[0], options=OWN_CONNECTION) as hostile_channel,
            grpc.aio.insecure_channel(sidecar.bound[0], options=OWN_CONNECTION) as legit_channel,
        ):
            hostile = pb_grpc.CredentialsServiceStub(hostile_channel)
            legit = pb_grpc.CredentialsServiceStub(legit_channel)
            await legit_channel.channel_ready()
            calls = [
                hostile.GetCredentials(get_request(f"apn_unknown{i}", "notion"), timeout=0.3)
                for i in range(200)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            cold = await legit.GetCredentials(
                get_request(DEMO_NOTION_ACCOUNT_ID, "notion"), timeout=10
            )
            assert cold.credentials["access_token"]
            await asyncio.sleep(1.2)  # whatever started upstream has finished
        # The fetches that had a slot, plus the legitimate one.
        assert emulator.state.requests["account"] <= slots + 1
        seen = codes(results)
        assert set(seen) <= {"RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, seen
        refused = [
            CredentialsError.from_rpc_error(r)  # type: ignore[arg-type]
            for r in results
            if isinstance(r, grpc.RpcError) and r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ]
        assert refused, seen
        assert all(e.reason == "OVERLOADED" and e.retry_after for e in refused)
        assert sidecar.service.cache.gate.waiting == 0


async def test_account_not_found_is_remembered_for_seconds(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    request = get_request("apn_notYetConnected", "notion")
    for _ in range(50):
        error = await error_of(timed_stub.GetCredentials(request))
        assert error.reason == "ACCOUNT_NOT_FOUND"
    assert emulator.state.requests["account"] == 1
    # Connected now: it works once not_found_ttl (seconds) has passed.
    emulator.state.add_generated_accounts(1)
    account = next(a for a in emulator.state.iter_accounts() if a.id.startswith("apn_gen"))
    emulator.state.remove_account(DEMO_PROJECT_ID, account.id)
    account.id = "apn_notYetConnected"
    emulator.state.put_account(account)
    clock.advance(TEST_POLICY.not_found_ttl)
    answer = await timed_stub.GetCredentials(request)
    assert answer.credentials["access_token"]
    assert emulator.state.requests["account"] == 2


async def test_rejected_token_calls_cost_at_most_one_read_per_interval(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, clock: ManualClock
) -> None:
    plain = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    held = (await timed_stub.GetCredentials(plain)).credentials
    assert emulator.state.requests["account"] == 1
    clock.advance(1)

    async def hundred(request: pb.GetCredentialsRequest) -> list[object]:
        calls = [timed_stub.GetCredentials(request) for _ in range(100)]
        return await asyncio.gather(*calls, return_exceptions=True)

    # Another tenant's caller, holding the right token: refused, no upstream read.
    wrong_tenant = get_request(
        DEMO_NOTION_ACCOUNT_ID,
        "notion",
        external_user_id=DEMO_USER_BOB,
        rejected_access_token=held["access_token"],
    )
    assert codes(await hundred(wrong_tenant)) == {"PERMISSION_DENIED": 100}
    # A credential that is not the access token (the non-secret client_id): no read.
    not_access = get_request(
        DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=held["client_id"]
    )
    assert codes(await hundred(not_access)) == {"OK": 100}
    assert emulator.state.requests["account"] == 1
    # The access token itself, over and over: one read per interval.
    rejected = get_request(
        DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=held["access_token"]
    )
    assert codes(await hundred(rejected)) == {"OK": 100}
    clock.advance(1)
    assert codes(await hundred(rejected)) == {"OK": 100}
    assert emulator.state.requests["account"] == 2
    clock.advance(TEST_POLICY.rejected_token_interval)
    await timed_stub.GetCredentials(rejected)
    assert emulator.state.requests["account"] == 3


async def test_a_hundred_forced_refreshes_cost_one_token_request(
    timed_stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    await timed_stub.RefreshToken(pb.RefreshTokenRequest())
    emulator.state.reset_stats()
    forced = pb.RefreshTokenRequest(force=True)
    answers = await asyncio.gather(*(timed_stub.RefreshToken(forced) for _ in range(100)))
    assert [a.refreshed for a in answers].count(True) == 1
    assert emulator.state.requests["token"] == 1


async def test_source_restricted_listener_may_not_force_a_refresh(settings: Settings) -> None:
    notion_only = ListenerConfig(TCP, allow_sources=frozenset({"notion"}))
    async with (
        running(settings, notion_only) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest(force=True)))
        assert (error.code, error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
        )
        assert (await stub.RefreshToken(pb.RefreshTokenRequest())).expires_at.seconds > 0


async def test_a_flood_gets_resource_exhausted(emulator: Emulator) -> None:
    # gRPC's limit is max_concurrent_rpcs + max_watchers: no watchers here.
    policy = dataclasses.replace(TEST_POLICY, max_concurrent_rpcs=4, max_watchers=0)
    ids = emulator.state.add_generated_accounts(16)
    emulator.state.set_latency(0.5, "account")
    async with running(demo_settings(emulator.url, policy), TCP) as sidecar:
        channels = [
            grpc.aio.insecure_channel(sidecar.bound[0], options=OWN_CONNECTION) for _ in range(4)
        ]
        try:
            stubs = [pb_grpc.CredentialsServiceStub(c) for c in channels]
            calls = [
                stubs[i % 4].GetCredentials(get_request(account, "notion"), timeout=10)
                for i, account in enumerate(ids)
            ]
            seen = codes(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            for channel in channels:
                await channel.close()
    assert seen["RESOURCE_EXHAUSTED"] >= 8, seen
    assert seen["OK"] <= 8, seen
    assert emulator.state.max_in_flight <= 4


async def test_one_connection_cannot_take_every_call_slot(emulator: Emulator) -> None:
    policy = dataclasses.replace(TEST_POLICY, max_streams_per_connection=2)
    ids = emulator.state.add_generated_accounts(10)
    emulator.state.set_latency(0.3, "account")
    async with (
        running(demo_settings(emulator.url, policy), TCP) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        await channel.channel_ready()
        await stub.RefreshToken(pb.RefreshTokenRequest())
        calls = [stub.GetCredentials(get_request(a, "notion"), timeout=10) for a in ids]
        seen = codes(await asyncio.gather(*calls, return_exceptions=True))
    assert seen["OK"] >= 1
    assert emulator.state.max_in_flight <= 2, seen


def test_the_new_policy_keys_are_documented() -> None:
    from pathlib import Path

    guide = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
    text = guide.read_text(encoding="utf-8")
    for name in (
        "memo_max_bytes",
        "not_found_ttl",
        "fetch_queue_wait",
        "rejected_token_interval",
        "forced_refresh_interval",
        "max_concurrent_rpcs",
        "max_streams_per_connection",
    ):
        assert f"{name} = " in text, name
        assert hasattr(Policy(), name)
