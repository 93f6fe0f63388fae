"""The fleet's model (issue 18's items 1-8) in-process: sidecars in one loop, a real Redis.

Pipedream reads are counted at the emulator. Each test names the item it guards;
the processes' view (3 sidecars under CPU load, WRONGPASS at start) is in
tests/ops/test_fleet.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.redis import RedisServer
from pdsidecar.clock import ManualClock, SystemClock
from pdsidecar.fleet.sealing import Keyring
from pdsidecar.fleet.store import FleetStore
from pdsidecar.settings import FleetConfig, Policy, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from tests.support.fleets import fleet, shared
from tests.support.requests import get_request
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

REQUEST = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
WATCH = pb.WatchCredentialsRequest(account=REQUEST.account, source="notion")


def reads(emulator: Emulator) -> int:
    return int(emulator.state.requests["account"])


def account_name(config: FleetConfig, settings: Settings, suffix: str) -> str:
    """The Redis key of the demo Notion account's value (``v``) or lock (``l``)."""
    ids = (DEMO_CLIENT_ID, DEMO_PROJECT_ID, "production", DEMO_NOTION_ACCOUNT_ID)
    tag = Keyring(config.keys).tags("account", settings.pipedream_url, *ids)[0]
    return f"{config.namespace}:{{{tag}}}:{suffix}"


def key_of_notion() -> tuple[str, str, str, str]:
    return ("default", DEMO_PROJECT_ID, "production", DEMO_NOTION_ACCOUNT_ID)


def tag_of(name: str | bytes) -> str:
    text = name.decode() if isinstance(name, bytes) else name
    return text.split("{", 1)[1].split("}", 1)[0]


async def test_item1_a_rejected_token_with_watchers_on_two_sidecars_costs_one_read_not_a_loop(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    # Before: each sidecar's watch re-read took the other's entry with the same credentials
    # for a rejected one, read Pipedream and told the fleet: ~5 reads a second, forever.
    async with fleet(settings, shared(redis_server), 2) as [(_, one), (two, stub_two)]:
        calls = [one.WatchCredentials(WATCH), stub_two.WatchCredentials(WATCH)]
        tokens = {(await call.read()).credentials["access_token"] for call in calls}
        assert len(tokens) == 1 and reads(emulator) == 1
        (token,) = tokens
        # Pipedream still holds the same token: the refetch finds it unchanged.
        await one.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=token)
        )
        assert reads(emulator) == 2
        assert two.fleet is not None
        await eventually(lambda: two.fleet is not None and two.fleet.accounts.stats.taken >= 1, 5)
        await asyncio.sleep(1.5)  # an observation window: the loop made ~7 reads in it
        assert reads(emulator) == 2
        assert not any(call.done() for call in calls)
        for call in calls:
            call.cancel()


async def test_item2_a_value_written_back_into_redis_is_never_served_again(
    settings: Settings, emulator: Emulator, redis_server: RedisServer, clock: ManualClock
) -> None:
    config = shared(redis_server)
    admin = redis_server.client()
    value = account_name(config, settings, "v")
    # One entry: another account's read evicts this one (its version is remembered).
    small = dataclasses.replace(settings.policy, cache_max_entries=1)
    settings = dataclasses.replace(settings, policy=small)
    async with fleet(settings, config, 1, clock=clock) as [(sidecar, stub)]:
        call = stub.WatchCredentials(WATCH)
        old = (await call.read()).credentials["access_token"]
        written_back = admin.get(value)
        assert written_back is not None
        new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        clock.advance(1)  # the caller started after the first read
        retry = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
        assert (await stub.GetCredentials(retry)).credentials["access_token"] == new
        assert (await call.read()).credentials["access_token"] == new
        # Someone who can write to Redis, without the key: the old sealed value, and an
        # event that names a version past anything stored.
        admin.set(value, written_back, px=600_000)
        admin.publish(f"{config.namespace}:events", f"w:{tag_of(value)}:{10**18}")
        assert sidecar.fleet is not None
        accounts = sidecar.fleet.accounts.stats
        await eventually(lambda: accounts.looks >= 1, 5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(call.read(), 0.3)  # the watcher was pushed nothing old
        # Evicted here, still fresh in Redis by its own dates: the older version is refused.
        await stub.GetCredentials(get_request(DEMO_GDRIVE_ACCOUNT_ID, "google_drive"))
        assert sidecar.service.cache.peek(key_of_notion()) is None
        assert (await stub.GetCredentials(REQUEST)).credentials["access_token"] == new
        assert accounts.ignored >= 1
        call.cancel()


async def test_item3_forged_events_cost_no_pipedream_read(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    config = shared(redis_server)
    ids = emulator.state.add_generated_accounts(3)
    admin = redis_server.client()
    async with fleet(settings, config, 2) as sidecars:
        for account_id in ids:
            for _, stub in sidecars:
                await stub.GetCredentials(get_request(account_id, "notion"))
        before = reads(emulator)
        assert before == 3
        tags = [tag_of(key) for key in admin.keys("t:{*}:v")]
        forged = 2000
        pipe = admin.pipeline(transaction=False)
        for index in range(forged):
            version = 10**18 + index if index % 2 else index  # from the future, or the past
            pipe.publish(f"{config.namespace}:events", f"w:{tags[index % len(tags)]}:{version}")
        pipe.execute()
        stores = [s.fleet for s, _ in sidecars if s.fleet is not None]
        await eventually(lambda: all(f.store.events.received >= forged for f in stores), 10)
        await eventually(lambda: all(not f.accounts._looking for f in stores), 5)
        assert reads(emulator) == before, "an event is never a reason to read Pipedream"
        for fleet_ in stores:
            assert fleet_.accounts.stats.looks < forged / 4, "looks are coalesced per account"
            assert fleet_.accounts.stats.taken == 0


async def test_item5_overloaded_rereads_keep_the_streams(
    emulator: Emulator, settings: Settings, redis_server: RedisServer
) -> None:
    # One Pipedream slot and a short queue: re-reads after a reload are refused OVERLOADED.
    policy = dataclasses.replace(
        settings.policy, upstream_concurrency=1, fetch_queue_wait=0.05, watch_jitter=0.1
    )
    tight = dataclasses.replace(settings, policy=policy)
    ids = emulator.state.add_generated_accounts(6)
    async with fleet(tight, shared(redis_server), 1) as [(sidecar, stub)]:
        calls = []
        for account_id in ids:  # one at a time: the single slot admits them in turn
            account = get_request(account_id, "notion").account
            watch = pb.WatchCredentialsRequest(account=account, source="notion")
            calls.append(stub.WatchCredentials(watch))
            await calls[-1].read()
        emulator.state.set_latency(1.0, "account")
        sidecar.watchers.reread_connections({"default"})
        await eventually(lambda: sidecar.service.cache.gate.refused >= 1, 10)
        emulator.state.set_latency(0, "account")
        assert not any(call.done() for call in calls), "no stream ended on OVERLOADED"
        assert sidecar.watchers.stats.watchers == len(ids)
        for call in calls:
            call.cancel()


async def test_item6_a_lock_without_ttl_stalls_no_caller(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    config = shared(redis_server)  # lock_ttl 1 s
    admin = redis_server.client()
    lock = account_name(config, settings, "l")
    async with fleet(settings, config, 1) as [(_, stub)]:
        admin.set(lock, "squatter")  # no TTL: set by hand, or by a squatter
        started = time.monotonic()
        answer = await stub.GetCredentials(REQUEST, timeout=5)
        elapsed = time.monotonic() - started
    assert answer.account.account_id == DEMO_NOTION_ACCOUNT_ID
    assert elapsed < 5, "within the caller's deadline"
    assert not admin.exists(lock), "the squatted lock got a TTL and expired"
    assert admin.exists(account_name(config, settings, "v")), "the read was stored for the fleet"
    assert reads(emulator) == 1


async def test_item7_the_probe_follows_redis_without_traffic(
    settings: Settings, emulator: Emulator, redis_server: RedisServer
) -> None:
    async with fleet(settings, shared(redis_server), 1) as [(sidecar, _)]:
        assert sidecar.fleet is not None
        stats = sidecar.fleet.store.stats
        redis_server.kill()
        await eventually(lambda: not stats.up, 5)
        redis_server.start()
        await eventually(lambda: stats.up, 5)
    assert reads(emulator) == 0


async def test_item8_delete_if_keeps_a_token_stored_between_the_read_and_the_delete(
    redis_server: RedisServer,
) -> None:
    store = FleetStore(shared(redis_server), SystemClock())
    try:
        slot = store.slot("token", "https://pipedream.test", "client", "*")
        await store.put(slot, "v", b"rejected token", 60)
        read = await store.get(slot, "v")
        assert read is not None
        await store.put(slot, "v", b"new token", 60)  # another sidecar, meanwhile
        assert not await store.delete_if(read)
        kept = await store.get(slot, "v")
        assert kept is not None and kept.data == b"new token"
        assert await store.delete_if(kept)
        assert await store.get(slot, "v") is None
    finally:
        await store.aclose()


@pytest.fixture
def policy() -> Policy:
    return Policy(backoff_initial=0.01, backoff_max=0.05, watch_jitter=0.2)
