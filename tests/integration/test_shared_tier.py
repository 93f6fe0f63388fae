"""The shared tier in-process: several sidecars in one event loop, one real Redis, one emulator.

Counts come from the emulator (Pipedream requests) and the sidecars' own counters;
the processes' view (5 real sidecars) is in tests/ops/test_fleet.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.redis import RedisServer
from pdsidecar.clock import ManualClock
from pdsidecar.config.listen import parse_listen
from pdsidecar.fleet.sealing import Keyring
from pdsidecar.fleet.store import RETRY_AFTER
from pdsidecar.pipedream.tokens import SHARED_RECHECK
from pdsidecar.runtime.sidecar import SERVICE_NAME
from pdsidecar.settings import Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.certs import Certs
from tests.support.fixtures import RedisServers
from tests.support.fleets import fleet, new_key, shared
from tests.support.requests import get_request
from tests.support.sidecars import running
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


async def test_sidecars_share_one_token_and_one_read_per_account(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    async with fleet(settings, shared(redis_server), 3) as sidecars:
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        answers = await asyncio.gather(
            *(stub.GetCredentials(request) for _, stub in sidecars for _ in range(20))
        )
        assert len({a.credentials["access_token"] for a in answers}) == 1
        assert emulator.state.requests["account"] == 1
        assert emulator.state.tokens_issued == 1
        fleets = [s.fleet for s, _ in sidecars]
        assert sum(f.accounts.stats.fetched for f in fleets if f and f.accounts) == 1
        # The hot path (a fresh local entry, a fresh token) sends Redis nothing.
        reads = [f.store.stats.reads for f in fleets if f]
        for _, stub in sidecars:
            for _ in range(10):
                await stub.GetCredentials(request)
        assert [f.store.stats.reads for f in fleets if f] == reads


async def test_a_value_tampered_with_or_moved_is_not_served(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    config = shared(redis_server)
    client = redis_server.client()
    async with fleet(settings, config, 1) as [(_, stub)]:
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        await stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
    keyring = Keyring(config.keys)
    url, ids = settings.pipedream_url, (DEMO_CLIENT_ID, DEMO_PROJECT_ID, "production")
    notion_key, gdrive_key = (
        "t:{%s}:v" % keyring.tags("account", url, *ids, account)[0]  # noqa: UP031
        for account in (DEMO_NOTION_ACCOUNT_ID, DEMO_GDRIVE_ACCOUNT_ID)
    )
    assert client.exists(notion_key) and client.exists(gdrive_key)
    gdrive_blob = client.get(gdrive_key)
    assert gdrive_blob is not None
    # Moved: Drive's sealed value under Notion's key. Tampered: one bit flipped.
    client.set(notion_key, gdrive_blob, px=60_000)
    tampered = bytearray(gdrive_blob)
    tampered[-1] ^= 1
    client.set(gdrive_key, bytes(tampered), px=60_000)
    before = emulator.state.requests["account"]
    async with fleet(settings, config, 1) as [(second, stub)]:
        notion = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        gdrive = await stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
        assert second.fleet is not None
        assert second.fleet.store.stats.unreadable >= 2
    assert emulator.state.requests["account"] - before == 2, "both read again from Pipedream"
    assert notion.account.account_id == DEMO_NOTION_ACCOUNT_ID
    assert gdrive.account.account_id == DEMO_GDRIVE_ACCOUNT_ID


async def test_rotated_keys_read_what_the_old_key_wrote(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    old, new = new_key(), new_key()
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    async with fleet(settings, shared(redis_server, old), 1) as [(_, stub)]:
        first = await stub.GetCredentials(request)
    async with fleet(settings, shared(redis_server, new, old), 1) as [(sidecar, stub)]:
        second = await stub.GetCredentials(request)
        assert sidecar.fleet is not None and sidecar.fleet.accounts is not None
        assert sidecar.fleet.accounts.stats.shared_hits == 1
    assert second.credentials == first.credentials
    assert emulator.state.requests["account"] == 1
    assert emulator.state.tokens_issued == 1, "the token written under the old key too"
    # A fleet with only the new key cannot read the old values: a miss, not an error.
    async with fleet(settings, shared(redis_server, new), 1) as [(_, stub)]:
        await stub.GetCredentials(request)
    assert emulator.state.requests["account"] == 2


async def test_redis_gone_costs_no_call_and_sharing_resumes(
    settings: Settings, emulator: Emulator, redis_server: RedisServer, clock: ManualClock
) -> None:
    emulator.state.add_generated_accounts(6)
    ids = [a.id for a in emulator.state.iter_accounts() if a.id.startswith("apn_gen")]
    async with fleet(settings, shared(redis_server), 2, clock=clock) as sidecars:
        (one, stub_one), (two, stub_two) = sidecars
        await stub_one.GetCredentials(get_request(ids[0], "notion"))
        redis_server.kill()
        # Both sidecars answer on their own while Redis is gone.
        for account_id in ids[1:3]:
            await stub_one.GetCredentials(get_request(account_id, "notion"))
            await stub_two.GetCredentials(get_request(account_id, "notion"))
        assert one.fleet is not None and two.fleet is not None
        assert not one.fleet.store.stats.up and one.fleet.store.stats.outages == 1
        # Readiness follows Pipedream, not Redis.
        health = await one.health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), None)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        redis_server.start()  # empty
        clock.advance(RETRY_AFTER)  # the store's retry pause: over
        assert await one.fleet.store.subscribed(5.0) and await two.fleet.store.subscribed(5.0)
        before = emulator.state.requests["account"]
        for account_id in ids[3:6]:
            await stub_one.GetCredentials(get_request(account_id, "notion"))
            await stub_two.GetCredentials(get_request(account_id, "notion"))
        assert emulator.state.requests["account"] - before == 3, "shared again"
        assert one.fleet.store.stats.up and two.fleet.store.stats.up


async def test_a_429_stops_the_whole_fleet_until_retry_after(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    async with fleet(settings, shared(redis_server), 2) as [(_, one), (_, two)]:
        await one.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))  # the token
        emulator.state.set_status_fault("account", 429, retry_after="30")
        before = emulator.state.requests["account"]
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await one.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
        made = emulator.state.requests["account"] - before
        assert made >= 1
        with pytest.raises(grpc.aio.AioRpcError) as second:
            await two.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
        assert emulator.state.requests["account"] - before == made, "the second sidecar waits"
        for error in (first.value, second.value):
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The cached account is still served from the shared entry by the other sidecar.
        served = await two.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        assert served.account.account_id == DEMO_NOTION_ACCOUNT_ID


def test_nothing_in_redis_names_an_account(tmp_path: Path) -> None:
    from pdsidecar.fleet.sealing import Keyring, Unreadable

    keyring = Keyring([new_key()])
    tags = keyring.tags("account", "https://api.pipedream.com", "client", "proj_x", "apn_1")
    assert "apn_1" not in tags[0] and "proj_x" not in tags[0]
    sealed = keyring.seal(b"ns:{a}:v", b"the value")
    assert b"the value" not in sealed
    assert keyring.open(b"ns:{a}:v", sealed) == b"the value"
    with pytest.raises(Unreadable):
        keyring.open(b"ns:{b}:v", sealed)


async def test_a_revoked_token_is_replaced_once_for_the_fleet(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    async with fleet(settings, shared(redis_server), 3) as sidecars:
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        for _, stub in sidecars:
            await stub.GetCredentials(request)
        assert emulator.state.tokens_issued == 1
        emulator.state.revoke_tokens()
        # Every sidecar gets a 401 on its next read; the fleet fetches one new token.
        await asyncio.gather(
            *(
                stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
                for _, stub in sidecars
            )
        )
        assert emulator.state.tokens_issued == 2
        assert emulator.state.statuses["account"][401] >= 1


async def test_reload_replaces_the_tier_or_turns_it_off(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    old, new = new_key(), new_key()
    first = dataclasses.replace(settings, fleet=shared(redis_server, old))
    pending = [
        dataclasses.replace(settings, fleet=None),
        dataclasses.replace(settings, fleet=shared(redis_server, new, old)),
    ]
    async with (
        running(first, parse_listen("127.0.0.1:0"), loader=pending.pop) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        before = sidecar.fleet
        assert await sidecar.reload()
        assert sidecar.fleet is not None and sidecar.fleet is not before
        assert sidecar.fleet.config.keys == (new, old)
        assert sidecar.sources.tokens.current is sidecar.fleet.tokens
        assert sidecar.sources.accounts.current is sidecar.fleet.accounts
        await stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
        written = Keyring([new]).tags(
            "account",
            settings.pipedream_url,
            DEMO_CLIENT_ID,
            DEMO_PROJECT_ID,
            "production",
            DEMO_GDRIVE_ACCOUNT_ID,
        )[0]
        assert redis_server.client().exists(f"t:{{{written}}}:v"), "written with the new key"
        assert await sidecar.reload()
        assert sidecar.fleet is None
        assert sidecar.sources.tokens.current is sidecar.sources.plain_tokens
        assert sidecar.sources.accounts.current is sidecar.sources.plain_accounts
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))


async def test_metrics_show_the_tier(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    with_tier = dataclasses.replace(settings, fleet=shared(redis_server))
    metrics = parse_listen("127.0.0.1:0")
    async with (
        running(with_tier, parse_listen("127.0.0.1:0"), metrics_listen=metrics) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        assert sidecar.metrics is not None
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{sidecar.metrics.port}/metrics")).text
    assert "pdsidecar_shared_cache_up 1.0" in text
    assert "pdsidecar_shared_accounts_fetched_total 1.0" in text
    assert 'pdsidecar_shared_tokens_total{connection="default",source="fetched"} 1.0' in text


async def test_the_fleet_refreshes_its_token_once_per_window(
    settings: Settings, emulator: Emulator, redis_server: RedisServer, clock: ManualClock
) -> None:
    with_tier = dataclasses.replace(settings, fleet=shared(redis_server))
    ids = emulator.state.add_generated_accounts(8)
    async with contextlib.AsyncExitStack() as stack:
        stubs = []
        for _ in range(3):
            sidecar = await stack.enter_async_context(
                running(with_tier, parse_listen("127.0.0.1:0"), clock=clock)
            )
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(sidecar.bound[0]))
            stubs.append(pb_grpc.CredentialsServiceStub(channel))
        await asyncio.gather(*(s.GetCredentials(get_request(ids[0], "notion")) for s in stubs))
        assert emulator.state.tokens_issued == 1
        # Into the advisory window (5 min before the hour is up): one sidecar refreshes.
        clock.advance(3600 - 200)
        await asyncio.gather(
            *(s.GetCredentials(get_request(ids[1 + i], "notion")) for i, s in enumerate(stubs))
        )
        await eventually(lambda: emulator.state.tokens_issued == 2, timeout=5)
        clock.advance(SHARED_RECHECK + 1)
        await asyncio.gather(
            *(s.GetCredentials(get_request(ids[4 + i], "notion")) for i, s in enumerate(stubs))
        )
        assert emulator.state.tokens_issued == 2, "the others took the new one"
        # Past the mandatory margin of a token nobody refreshed: the fleet waits for one.
        emulator.state.revoke_tokens()
        clock.advance(3600)
        await asyncio.gather(*(s.GetCredentials(get_request(ids[7], "notion")) for s in stubs))
        assert emulator.state.tokens_issued == 3


async def test_redis_out_of_memory_or_stalled_costs_no_call(
    settings: Settings, emulator: Emulator, redis_server: RedisServer, clock: ManualClock
) -> None:
    ids = emulator.state.add_generated_accounts(4)
    admin = redis_server.client()
    config = shared(redis_server, timeout=0.1)
    async with fleet(settings, config, 1, clock=clock) as [(sidecar, stub)]:
        assert sidecar.fleet is not None
        stats = sidecar.fleet.store.stats
        await stub.GetCredentials(get_request(ids[0], "notion"))
        # Out of memory: every write (and the lock) is refused with an OOM error.
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        answer = await stub.GetCredentials(get_request(ids[1], "notion"))
        assert answer.account.account_id == ids[1]
        assert stats.errors >= 1 and not stats.up
        admin.config_set("maxmemory", "0")
        clock.advance(RETRY_AFTER)  # the store's retry pause: over
        # Stalled (SIGSTOP): commands time out; three in a row mark Redis down.
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            for account_id in ids[2:]:
                answer = await stub.GetCredentials(get_request(account_id, "notion"))
                assert answer.account.account_id == account_id
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        assert stats.errors >= 2
    assert emulator.state.requests["account"] == 4


async def test_the_tier_over_tls(
    settings: Settings, emulator: Emulator, certs: Certs, redis_servers: RedisServers
) -> None:
    with redis_servers(1, tls=certs) as [server]:
        assert server.url.startswith("rediss://")
        async with fleet(settings, shared(server), 2) as sidecars:
            request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
            await asyncio.gather(*(stub.GetCredentials(request) for _, stub in sidecars))
            assert emulator.state.requests["account"] == 1
            assert emulator.state.tokens_issued == 1
            assert all(s.fleet and s.fleet.store.stats.errors == 0 for s, _ in sidecars)
        names = server.client().keys()
        # The token and the account, and the read counted for the fleet (its total, its
        # caller's and its listener's current buckets).
        assert len([n for n in names if b":r:" not in n]) == 2
        assert len([n for n in names if b":r:" in n]) == 3


async def test_a_refetch_on_one_sidecar_reaches_the_watchers_of_the_others(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    watch = pb.WatchCredentialsRequest(account=request.account, source="notion")
    async with fleet(settings, shared(redis_server), 2) as [(_, one), (_, two)]:
        call = two.WatchCredentials(watch)
        old = (await call.read()).credentials["access_token"]
        new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        retry = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
        assert (await one.GetCredentials(retry)).credentials["access_token"] == new
        # The fleet's invalidation makes the other sidecar re-read (from Redis) and push.
        pushed = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        assert pushed.credentials["access_token"] == new
        assert emulator.state.requests["account"] == 2
