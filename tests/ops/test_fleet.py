"""A fleet: 5 real ``pdsidecar serve`` processes, one real Redis, one emulator.

Every count is the emulator's: Pipedream token and account requests made by the
whole fleet. Callers run in this process, spread over the 5 sidecars.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator
from prometheus_client.parser import text_string_to_metric_families

from harness.config import FAST_RETRIES, write_config
from harness.ports import free_port
from harness.redis import RedisServer, make_key_file
from harness.sidecar import READY_TIMEOUT
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request
from tests.support.sidecars import ServeProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Stub = pb_grpc.CredentialsServiceStub


def fleet_config(
    tmp_path: Path,
    emulator: Emulator,
    redis: RedisServer,
    keys: list[Path],
    *,
    policy: Mapping[str, Any] = FAST_RETRIES,
    **extra: Any,
) -> Path:
    # The default Redis timeout: the loop's lag under load must not count as Redis time.
    table = redis.config_toml(keys, namespace="fleet", **extra)
    return write_config(
        tmp_path / "fleet.toml", emulator.url, {"default": DEMO_CLIENT_ID}, table, policy=policy
    )


@contextlib.asynccontextmanager
async def stubs_for(processes: list[ServeProcess]) -> AsyncIterator[list[Stub]]:
    async with contextlib.AsyncExitStack() as stack:
        stubs = []
        for process in processes:
            target = (await process.bound())[0]
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
            stubs.append(pb_grpc.CredentialsServiceStub(channel))
        yield stubs


async def start_fleet(
    serve: Callable[..., ServeProcess], config: Path, n: int
) -> list[ServeProcess]:
    processes = [
        serve(
            *("--config", str(config), "--listen", "127.0.0.1:0", "--log-level", "debug"),
            *("--metrics-listen", "127.0.0.1:0"),
        )
        for _ in range(n)
    ]
    for process in processes:
        # Generous: on a loaded machine a Python process takes seconds just to import.
        await process.wait_for(r"readiness: SERVING", timeout=60)
    return processes


async def fleet_counts(processes: list[ServeProcess]) -> str:
    """Each sidecar's shared-tier counters (from its /metrics), for a failed count's
    message: whose a surplus read was, and why (a wait that ran out, Redis trouble)."""
    wanted = ("accounts_fetched", "accounts_fallbacks", "accounts_waited", "cache_errors")
    lines = []
    async with httpx.AsyncClient() as http:
        for i, process in enumerate(processes):
            logged = await process.wait_for(r"Prometheus metrics at http://\S+/metrics")
            text = (await http.get(logged.removeprefix("Prometheus metrics at "))).text
            samples = {
                sample.name.removeprefix("pdsidecar_shared_").removesuffix("_total"): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
            lines.append(f"sidecar {i}: " + ", ".join(f"{k} {samples.get(k)}" for k in wanted))
    return "\n".join(lines)


def access_token(response: pb.GetCredentialsResponse) -> str:
    return str(response.credentials["access_token"])


def answered(results: list[Any]) -> list[Any]:
    """The answers, once none of the calls failed (else the status codes of all)."""
    failed = [r for r in results if isinstance(r, BaseException)]
    codes = Counter(r.code().name if isinstance(r, grpc.RpcError) else repr(r) for r in failed)
    assert not failed, f"{len(failed)} of {len(results)} calls failed: {dict(codes)}"
    return results


async def test_a_thousand_cold_callers_on_five_sidecars_make_one_read(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # 200 fetches queue on each sidecar's 32 slots, and on a busy machine the admission's
    # estimate of their start passes the default fetch_queue_wait (10 s); a sidecar waits
    # for another's read half of its caller's time left. This test is about single flight,
    # so the calls have a minute: on a busy machine 200 reads by an emulator sharing this
    # process with the thousand calls took more than 10 s.
    policy = {**FAST_RETRIES, "fetch_queue_wait": 60.0}
    deadline = 60
    # Nor is it about telling a slow Redis from a dead one (the Redis-killed and CPU-load
    # tests below keep the default 250 ms timeout): in a stress run, beside two CPU burners
    # and the conformance drivers' JVMs starting on two cores, redis-server answered one
    # sidecar nothing for over a second, which rightly judged it down for 2.4 s and read
    # 109 accounts alone.
    keys = [make_key_file(tmp_path, "k1")]
    config = fleet_config(tmp_path, emulator, redis_server, keys, policy=policy, timeout_ms=2000)
    processes = await start_fleet(serve, config, 5)
    state = emulator.state
    assert state.tokens_issued == 1, "one Pipedream token for the fleet"
    async with stubs_for(processes) as stubs:
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        answers = answered(
            await asyncio.gather(
                *(stubs[i % 5].GetCredentials(request, timeout=deadline) for i in range(1000)),
                return_exceptions=True,  # every call over before a failure is reported
            )
        )
        assert len({access_token(a) for a in answers}) == 1
        assert state.requests["account"] == 1
        assert state.tokens_issued == 1

        ids = state.add_generated_accounts(200)
        answers = answered(
            await asyncio.gather(
                *(
                    stubs[(i + k) % 5].GetCredentials(
                        get_request(account_id, "notion"), timeout=deadline
                    )
                    for i, account_id in enumerate(ids)
                    for k in range(5)
                ),
                return_exceptions=True,
            )
        )
        assert len(answers) == 1000
        assert state.requests["account"] == 1 + 200, await fleet_counts(processes)
        assert state.tokens_issued == 1
    # What Redis holds is sealed: the suite's secret scan reads every key and value
    # (harness/redis.py); no key names an account or the project.
    keys = [k.decode() for k in redis_server.client().keys("*")]
    assert keys and not any(DEMO_PROJECT_ID in k or "apn_" in k for k in keys)


async def test_a_rejected_token_from_three_sidecars_is_refetched_once(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = fleet_config(tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")])
    processes = await start_fleet(serve, config, 5)
    state = emulator.state
    async with stubs_for(processes) as stubs:
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        old = {access_token(await stub.GetCredentials(request)) for stub in stubs}
        assert len(old) == 1 and state.requests["account"] == 1
        (rejected,) = old
        new = state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        retry = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=rejected)
        answers = await asyncio.gather(*(stub.GetCredentials(retry) for stub in stubs[:3]))
        assert [access_token(a) for a in answers] == [new] * 3
        assert state.requests["account"] == 2, "one refetch for the fleet"

        # The fleet-wide invalidation reached the two sidecars that were not asked.
        async def all_new() -> bool:
            tokens = {access_token(await stub.GetCredentials(request)) for stub in stubs}
            return tokens == {new}

        await eventually(all_new, timeout=10, every=0.1)
        assert state.requests["account"] == 2


async def test_redis_killed_and_restarted_mid_run_fails_no_call(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = fleet_config(tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")])
    processes = await start_fleet(serve, config, 5)
    state = emulator.state
    # Misses all along (a fresh local entry never asks Redis, so it would not notice):
    # each sidecar walks its own accounts. This test is not about the read budget.
    state.set_read_budget(None)
    per_sidecar = 300
    ids = state.add_generated_accounts(5 * per_sidecar)
    failures: list[BaseException] = []
    async with stubs_for(processes) as stubs:
        stop = asyncio.Event()

        async def load(index: int) -> int:
            calls = 0
            while not stop.is_set():
                account_id = ids[index * per_sidecar + calls % per_sidecar]
                try:
                    await stubs[index].GetCredentials(get_request(account_id, "notion"), timeout=10)
                except grpc.aio.AioRpcError as error:
                    failures.append(error)
                calls += 1
                await asyncio.sleep(0.005)
            return calls

        workers = [asyncio.ensure_future(load(i)) for i in range(5)]
        await asyncio.sleep(0.5)
        redis_server.kill()
        await asyncio.sleep(1.5)
        redis_server.start()  # empty, as after a restart without persistence
        await asyncio.sleep(1.5)
        stop.set()
        calls = sum(await asyncio.gather(*workers))
        assert calls > 100 and not failures

        # Sharing resumed: a new account asked on all 5 sidecars at once is read once.
        await asyncio.sleep(1.2)  # past the store's retry pause in every sidecar
        (fresh,) = state.add_generated_accounts(1)
        before = state.requests["account"]
        await asyncio.gather(
            *(stub.GetCredentials(get_request(fresh, "notion"), timeout=10) for stub in stubs)
        )
        assert state.requests["account"] - before == 1
    # Logged once per change of state: down, then back; never once per failed call.
    for process in processes:
        messages = [r.get("message", "") for r in process.records()]
        down = sum("shared cache: Redis failed" in m for m in messages)
        back = sum("shared cache: Redis answers again" in m for m in messages)
        assert down >= 1 and down - back in (0, 1), (down, back)


async def test_a_fetch_lock_holder_killed_mid_fetch_costs_at_most_the_lock_ttl(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = fleet_config(
        tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")], lock_ttl_ms=1000
    )
    holder, other = await start_fleet(serve, config, 2)
    state = emulator.state
    async with stubs_for([holder, other]) as (holder_stub, other_stub):
        state.set_latency(60, "account")
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        stuck = asyncio.ensure_future(holder_stub.GetCredentials(request, timeout=60))
        await eventually(lambda: state.in_flight == 1, timeout=10)
        waiting = asyncio.ensure_future(other_stub.GetCredentials(request, timeout=20))
        await asyncio.sleep(0.2)
        assert not waiting.done(), "the other sidecar waits for the lock holder"
        holder.signal(signal.SIGKILL)
        state.set_latency(0, "account")
        answer = await waiting
        assert answer.account.account_id == DEMO_NOTION_ACCOUNT_ID
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stuck


async def test_a_bad_key_file_stops_the_sidecar_with_exit_2(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    short = tmp_path / "short-key"
    short.write_text("c2hvcnQ=\n", encoding="utf-8")  # 5 bytes
    config = fleet_config(tmp_path, emulator, redis_server, [short])
    process = serve("--config", str(config), "--listen", "127.0.0.1:0")
    assert await process.wait() == 2
    assert any("AES-256 needs 32" in line for line in process.lines())


async def test_workers_share_through_the_tier(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    config = fleet_config(tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")])
    port = free_port()
    serve("--config", str(config), "--listen", f"127.0.0.1:{port}", "--workers", "3")
    state = emulator.state
    # Three workers start at once and one stores the fleet's token: on a busy machine
    # that takes longer than one start (READY_TIMEOUT); a stress run saw 20 s pass.
    stored = lambda: len(redis_server.client().keys("fleet:*:v")) >= 1  # noqa: E731
    await eventually(stored, 2 * READY_TIMEOUT)
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    # Separate connections (no shared subchannel), so the kernel spreads them over workers.
    options = [("grpc.use_local_subchannel_pool", 1)]
    for _ in range(30):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            await stub.GetCredentials(request, wait_for_ready=True, timeout=10)
    # Without the tier this costs 3 tokens and up to 3 reads (see test_process.py).
    assert state.tokens_issued == 1
    assert state.requests["account"] == 1


async def test_a_wrong_redis_password_at_start_is_a_config_error_exit_2(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # Before: the sidecar started, stayed SERVING and shared nothing, silently.
    redis_server.password_file.write_text("not-the-password\n", encoding="utf-8")
    config = fleet_config(tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")])
    process = serve("--config", str(config), "--listen", "127.0.0.1:0")
    assert await process.wait() == 2
    refusal = [line for line in process.lines() if "Redis refused this sidecar" in line]
    assert refusal, process.lines()
    assert emulator.state.tokens_issued == 0


@contextlib.contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU (this machine has few cores)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(timeout=10)


async def test_three_sidecars_under_cpu_load_read_each_account_exactly_once(
    serve: Callable[..., ServeProcess],
    emulator: Emulator,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    # Before (50 ms timeout, loop lag counted): 2 runs in 9 took a busy loop for a Redis
    # outage and read Pipedream alone: 49 and 59 reads where 30 is right.
    config = fleet_config(tmp_path, emulator, redis_server, [make_key_file(tmp_path, "k1")])
    state = emulator.state
    ids = state.add_generated_accounts(30)
    processes = await start_fleet(serve, config, 3)
    with cpu_burners(2):
        async with stubs_for(processes) as stubs:

            async def caller(index: int) -> None:
                # 10 accounts each, from its own offset: every account is asked by 15
                # callers over the 3 sidecars, most of them at once.
                order = (ids[index % 30 :] + ids[: index % 30])[:10]
                for account_id in order:
                    request = get_request(account_id, "notion")
                    await stubs[index % 3].GetCredentials(request, timeout=30)

            await asyncio.gather(*(caller(i) for i in range(45)))
    assert state.requests["account"] == 30, await fleet_counts(processes)
    for process in processes:
        messages = [r.get("message", "") for r in process.records()]
        assert not any("Redis failed" in m for m in messages)
