"""The read budget pooled across a fleet (credentials/budget.py, fleet/reads.py).

One caller that spreads its reads over two sidecars still spends at most its share
of the one project budget, counted at Pipedream (the emulator) or at the source
under the fleet's decorator; another caller keeps reading. First on the in-memory
store with a manual clock (deterministic), then on a real Redis with two sidecars.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_PROJECT_ID, Emulator
from redis.exceptions import ConnectionError as RedisConnectionError

from harness.redis import RedisServer
from pdsidecar.clock import ManualClock
from pdsidecar.config.listen import parse_listen
from pdsidecar.credentials.budget import FleetBudgeted
from pdsidecar.credentials.source import AccountRead, Fetched
from pdsidecar.errors import AccountNotFound, Overloaded
from pdsidecar.fleet.reads import FleetReads
from pdsidecar.fleet.store import FleetStore
from pdsidecar.secret import Secret
from pdsidecar.settings import FleetConfig, Policy, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.fakestore import FakeSharedStore
from tests.support.fleets import shared
from tests.support.requests import get_request
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

BUDGET = 40
SHARES = {"upstream_read_budget": BUDGET, "caller_read_share": 0.5, "listener_read_share": 0.75}
# Listener names as the runtime makes them (runtime/sidecar.py: listener_name).
HOSTILE, OTHER = "127.0.0.1:0#0", "127.0.0.1:0#1"


class Pipedream:
    """The source under the decorator: counts the reads that reach it (random ids: 404)."""

    def __init__(self) -> None:
        self.reads = 0

    async def read(self, request: AccountRead) -> Fetched:
        self.reads += 1
        raise AccountNotFound(f"no account {request.key[3]}")


async def read(source: FleetBudgeted, caller: str) -> str:
    key = ("default", DEMO_PROJECT_ID, "production", f"apn_{secrets.token_hex(6)}")
    try:
        await source.read(AccountRead(key, _never, caller=caller))
    except AccountNotFound:
        return "read"
    except Overloaded:
        return "refused"
    raise AssertionError("random ids are never found")


async def _never() -> Any:
    raise AssertionError("the test's source does not call upstream")


def sidecar_on(fake: FakeSharedStore, clock: ManualClock, site: str) -> tuple[Any, Pipedream]:
    key = Secret(base64.b64encode(bytes(range(32))).decode())
    config = FleetConfig(url="redis://fake", keys=(key,), namespace="b", timeout=1.0)
    connection = fake.connect()
    store = FleetStore(config, clock, client=connection, subscriber=connection)
    pipedream = Pipedream()
    policy = Policy(**SHARES)  # type: ignore[arg-type]
    reads = FleetReads(store, clock, policy.upstream_read_window)
    return FleetBudgeted(pipedream, policy, reads, site), pipedream


async def test_one_caller_on_two_sidecars_spends_one_share_of_the_fleets_budget() -> None:
    clock = ManualClock()
    fake = FakeSharedStore(now=clock.monotonic)
    (one, first), (two, second) = (sidecar_on(fake, clock, "host-a") for _ in range(2))
    # One client host, a connection to each sidecar (two peers, one port each).
    outcomes = [await read(one, f"{HOSTILE} ipv4:127.0.0.1:40001") for _ in range(30)]
    outcomes += [await read(two, f"{HOSTILE} ipv4:127.0.0.1:40002") for _ in range(30)]
    assert outcomes.count("read") == BUDGET // 2  # caller_read_share of the one budget
    assert first.reads + second.reads == BUDGET // 2
    # Another listener's caller still reads; so does the same loopback address on
    # another host (another pod's local caller), on the hostile listener.
    assert await read(two, f"{OTHER} ipv4:127.0.0.1:40003") == "read"
    (elsewhere, _) = sidecar_on(fake, clock, "host-b")
    assert await read(elsewhere, f"{HOSTILE} ipv4:127.0.0.1:40004") == "read"
    # A refusal says which share and when to retry.
    with pytest.raises(Overloaded, match="caller_read_share") as refused:
        await one.read(
            AccountRead(
                ("d", "p", "production", "apn_x"), _never, caller=f"{HOSTILE} ipv4:127.0.0.1:1"
            )
        )
    assert refused.value.retry_after
    # Redis unreachable: nothing refused for it (the local shares still apply).
    fake.failure = RedisConnectionError("connection refused")
    assert await read(one, f"{HOSTILE} ipv4:127.0.0.1:40001") == "read"


async def test_a_caller_hammering_two_sidecars_leaves_the_budget_to_a_cold_call(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    """Two sidecars on one Redis, each with two listeners. One client sends random ids
    to the first listener of both; a cold call on the other listener of the second
    still answers OK. Pipedream's budget is the sidecars' (40 reads): without pooling,
    each sidecar gave the caller its half (40 reads) and the cold call got RATE_LIMITED."""
    state = emulator.state
    state.set_read_budget(BUDGET, 300.0)
    # Random ids are slowed by their not-found misses too; only the shares count here.
    policy = dataclasses.replace(settings.policy, not_found_allowance=10_000, **SHARES)
    fleet_settings = dataclasses.replace(settings, policy=policy, fleet=shared(redis_server))
    listen = (parse_listen("127.0.0.1:0"), parse_listen("127.0.0.1:0"))
    async with (
        running(fleet_settings, *listen) as one,
        running(fleet_settings, *listen) as two,
    ):
        (fresh,) = state.add_generated_accounts(1, project_id=DEMO_PROJECT_ID)
        state.reset_stats()
        lanes = asyncio.Semaphore(20)

        async def hammer(target: str) -> list[str]:
            async with grpc.aio.insecure_channel(target, options=OWN_CONNECTION) as channel:
                call = channel.unary_unary(GET)

                async def guess() -> str:
                    request = get_request(f"apn_{secrets.token_hex(6)}", "notion")
                    async with lanes:
                        try:
                            await call(request.SerializeToString())
                        except grpc.RpcError as error:
                            return error.code().name
                    return "OK"

                return await asyncio.gather(*(guess() for _ in range(60)))

        codes = await hammer(one.bound[0]) + await hammer(two.bound[0])
        reads = state.requests["account"]
        async with grpc.aio.insecure_channel(two.bound[1], options=OWN_CONNECTION) as legit:
            answer = await legit.unary_unary(GET)(
                get_request(fresh, "notion").SerializeToString(), timeout=10
            )
        assert pb.GetCredentialsResponse.FromString(answer).account.account_id == fresh
        refused = sum(s.fleet.reads.stats.refused for s in (one, two) if s.fleet)
    print(f"fleet budget: {codes.count('NOT_FOUND')} reads, {refused} refused by the fleet")
    assert reads == codes.count("NOT_FOUND") <= BUDGET // 2  # the caller's one share
    assert codes.count("RESOURCE_EXHAUSTED") >= 120 - BUDGET // 2
    assert refused > 0, "the second sidecar refused on the fleet's count"


GET = "/pdsidecar.v1.CredentialsService/GetCredentials"
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
