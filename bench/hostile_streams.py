"""The rows of ``python -m bench.hostile`` about admission: probes, streams, budget, bad bytes.

Each plays one hostile caller against the ``pdsidecar serve`` child (API token set)
and reports what it cost, where it lands:

- **health_flood**: ``n`` Health/Watch streams, half without the token, half with it;
  then an authenticated GetCredentials and a Health/Check. Reported: streams the sidecar
  held open, RSS, and how the two calls fared.
- **reflection_hold**: ``n`` reflection streams (with the token) that send requests with
  a 60 KB ``host`` (``reflection_hold_small``: a 16-byte one) and never read. Reported:
  RSS before, while held, after cancel.
- **victim_watch**: ``n`` WatchCredentials on distinct cold accounts from one connection
  (Pipedream at ``latency``), then, once they all reached the sidecar's queue (its
  metrics say), one victim watch on another cold account from another connection.
  Reported: the victim's time to its first message (a timing: noisy on a shared
  machine) and the attacker's watches answered by then.
- **random_ids**: ``n`` GetCredentials for random ids on one listener, then one cold call
  on the other listener. Reported: Pipedream account reads, codes, the cold call.
- **malformed**: undecodable bytes to GetCredentials, WatchCredentials, Health/Check,
  Health/Watch and reflection, ``n`` each. Reported: codes, ERROR and traceback lines.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from pdsidecar_client.v1 import credentials_pb2 as pb

GET = "/pdsidecar.v1.CredentialsService/GetCredentials"
WATCH = "/pdsidecar.v1.CredentialsService/WatchCredentials"
CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
REFLECT = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Streams one connection opens (gRPC's default per-connection cap is higher).
PER_CONNECTION = 1000


def codes(results: Iterable[Any]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for r in results:
        name = r.code().name if isinstance(r, grpc.RpcError) else "OK"
        seen[name] = seen.get(name, 0) + 1
    return seen


def cold(account_id: str) -> bytes:
    ref = pb.AccountRef(project_id=DEMO_PROJECT_ID, account_id=account_id)
    return pb.GetCredentialsRequest(account=ref, source="notion").SerializeToString()


async def first(call: Any, timeout: float) -> Any:
    try:
        async with asyncio.timeout(timeout):
            return await call.read()
    except grpc.RpcError as error:
        return error
    except TimeoutError as error:
        return error


async def refused_at_once(call: Any, seconds: float) -> bool:
    """Whether the sidecar ended a stream that was written to (and not read) within
    ``seconds`` (a write cut by the client's own timeout cancels the call: not counted)."""
    try:
        async with asyncio.timeout(seconds):
            return bool(await call.code() != grpc.StatusCode.CANCELLED)
    except TimeoutError:
        return False


async def _call(target: str, method: str, body: bytes, bearer: Any, timeout: float) -> str:
    started = time.monotonic()
    async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as channel:
        try:
            await channel.unary_unary(method)(body, metadata=bearer, timeout=timeout)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
    return f"{code} in {time.monotonic() - started:.2f} s"


async def health_flood(sidecar: Any, n: int, bearer: Any) -> dict[str, Any]:
    target = sidecar.target
    await _call(target, GET, cold(DEMO_NOTION_ACCOUNT_ID), bearer, 10)  # warm
    before = sidecar.rss_mb()
    count = max(1, -(-n // PER_CONNECTION))
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(count)]
    request = health_pb2.HealthCheckRequest().SerializeToString()
    try:
        # Half without the token (main let them in), half with it (a caller that has one).
        streams = [
            channels[i % count].unary_stream(HEALTH_WATCH)(
                request, metadata=bearer if i % 2 else ()
            )
            for i in range(n)
        ]
        firsts = await asyncio.gather(*(first(s, 30) for s in streams))
        held_mb = sidecar.rss_mb()
        get = await _call(target, GET, cold(DEMO_NOTION_ACCOUNT_ID), bearer, 5)
        check = await _call(target, CHECK, request, (), 2)
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()
    return {
        "streams": n,
        "connections": count,
        "first_message_without_token": codes(firsts[0::2]),
        "first_message_with_token": codes(firsts[1::2]),
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(held_mb, 1),
        "get_credentials_with_token": get,
        "health_check": check,
    }


async def reflection_hold(
    sidecar: Any, n: int, bearer: Any, seconds: float, host_bytes: int
) -> dict[str, Any]:
    target = sidecar.target
    huge = reflection_pb2.ServerReflectionRequest(
        host="h" * host_bytes, file_containing_symbol="pdsidecar.v1.CredentialsService"
    ).SerializeToString()
    before = sidecar.rss_mb()
    count = max(1, n // 8)
    channels = [grpc.aio.insecure_channel(target, options=OWN_CONNECTION) for _ in range(count)]

    async def flood(call: Any) -> None:
        try:
            async with asyncio.timeout(seconds):
                for _ in range(200):
                    await call.write(huge)
        except (TimeoutError, grpc.RpcError, asyncio.InvalidStateError):
            pass

    try:
        streams = [channels[i % count].stream_stream(REFLECT)(metadata=bearer) for i in range(n)]
        await asyncio.gather(*(flood(s) for s in streams))
        held = sidecar.rss_mb()
        ended = sum(await asyncio.gather(*(refused_at_once(s, 1.0) for s in streams)))
        for stream in streams:
            stream.cancel()
    finally:
        for channel in channels:
            await channel.close()
    await asyncio.sleep(1.0)
    return {
        "streams": n,
        "request_bytes": len(huge),
        "ended_by_sidecar": ended,
        "rss_before_mb": round(before, 1),
        "rss_held_mb": round(held, 1),
        "rss_after_cancel_mb": round(sidecar.rss_mb(), 1),
    }


async def victim_watch(
    sidecar: Any, emulator: Emulator, n: int, latency: float, bearer: Any
) -> dict[str, Any]:
    state = emulator.state
    ids = state.add_generated_accounts(n + 1, project_id=DEMO_PROJECT_ID)
    victims_account = ids.pop()
    state.set_latency(latency, "account")
    async with (
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as attacker,
        grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as victim,
    ):
        await victim.channel_ready()
        attacks = [attacker.unary_stream(WATCH)(cold(i), metadata=bearer) for i in ids]
        pending = [asyncio.ensure_future(first(c, 60)) for c in attacks]
        # Every attacking watch has reached the sidecar's admission queue (on a loaded
        # machine, seconds): what the victim waits for then is the queue's doing.
        queued_in = await _until_watches_started(sidecar.metrics, n, 60)
        started = time.monotonic()
        done_before = [p.result() for p in pending if p.done()]
        call = victim.unary_stream(WATCH)(cold(victims_account), metadata=bearer)
        answer = await first(call, 60)
        took = time.monotonic() - started
        done_then = [p.result() for p in pending if p.done()]
        for c in (call, *attacks):
            c.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    state.clear_faults()
    await _idle(emulator)  # the attack's fetches in flight end before the next row counts
    name = "OK" if not isinstance(answer, BaseException) else type(answer).__name__
    if isinstance(answer, grpc.RpcError):
        name = answer.code().name
    return {
        "attacker_watches": n,
        "latency_s": latency,
        "victim_first_message": f"{name} in {took:.2f} s",
        "attackers_queued_in_s": round(queued_in, 2),
        "attackers_before_victim_asked": codes(done_before),
        "attackers_when_victim_answered": codes(done_then),
    }


async def _idle(emulator: Emulator, quiet: float = 1.0, limit: float = 120.0) -> None:
    """Until Pipedream has had nothing in flight for ``quiet`` seconds (at most ``limit``)."""
    still = 0.0
    for _ in range(int(limit / 0.05)):
        still = still + 0.05 if emulator.state.in_flight == 0 else 0.0
        if still >= quiet:
            return
        await asyncio.sleep(0.05)


async def _until_watches_started(metrics: str, n: int, limit: float) -> float:
    """Seconds until the sidecar's ``pdsidecar_watch_started_total`` reached ``n``."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://{metrics}") as scraper:
        for _ in range(int(limit / 0.05)):
            for line in (await scraper.get("/metrics")).text.splitlines():
                if (
                    line.startswith("pdsidecar_watch_started_total ")
                    and float(line.split()[1]) >= n
                ):
                    return time.monotonic() - started
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def random_ids(
    sidecar: Any, emulator: Emulator, n: int, other_target: str, bearer: Any
) -> dict[str, Any]:
    state = emulator.state
    state.reset_stats()
    lanes = asyncio.Semaphore(100)
    async with grpc.aio.insecure_channel(sidecar.target, options=OWN_CONNECTION) as hostile:
        call = hostile.unary_unary(GET)

        async def guess() -> Any:
            async with lanes:
                try:
                    return await call(cold(f"apn_{secrets.token_hex(6)}"), metadata=bearer)
                except grpc.RpcError as error:
                    return error

        results = await asyncio.gather(*(guess() for _ in range(n)))
    reads = state.requests["account"]
    (fresh,) = state.add_generated_accounts(1, project_id=DEMO_PROJECT_ID)
    legit = await _call(other_target, GET, cold(fresh), bearer, 10)
    return {
        "calls": n,
        "codes": codes(results),
        "account_requests": reads,
        "legit_cold_call_other_listener": legit,
    }


def _size(path: Path) -> int:
    return path.stat().st_size


def _tail(path: Path, offset: int) -> str:
    return path.read_bytes()[offset:].decode(errors="replace")


async def malformed(sidecar: Any, n: int, bearer: Any, log: Path) -> dict[str, Any]:
    garbage = b"\xff\xff\xff\xff\x0f"  # a truncated varint
    log_before = _size(log)
    found: list[Any] = []
    async with grpc.aio.insecure_channel(sidecar.target) as channel:
        for _ in range(n):
            for method in (GET, CHECK):
                try:
                    await channel.unary_unary(method)(garbage, metadata=bearer)
                    found.append("OK")
                except grpc.RpcError as error:
                    found.append(error)
            for method in (HEALTH_WATCH, WATCH):
                found.append(await first(channel.unary_stream(method)(garbage, metadata=bearer), 5))
            bidi = channel.stream_stream(REFLECT)(metadata=bearer)
            await bidi.write(garbage)
            found.append(await first(bidi, 5))
    await asyncio.sleep(0.5)
    text = _tail(log, log_before)
    lines = text.splitlines()
    return {
        "requests": 5 * n,
        "codes": codes(found),
        "error_lines": sum(1 for x in lines if '"error"' in x or " ERROR " in x),
        "traceback_lines": sum(1 for x in lines if "Traceback" in x),
        "log_bytes": len(text.encode()),
    }
