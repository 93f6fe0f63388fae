"""One suite for the shared tier's store, run against a real redis-server and the fake.

Every test drives :class:`FleetStore` (sealing, the Lua scripts, events) over
both backends, so ``tests/support/fakestore.py`` cannot drift from Redis: a
meaning the fake gets wrong fails here on the fake, one the scripts get wrong
fails on Redis. Two stores on one backend are two sidecars.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest

from harness.redis import PASSWORD, USER, RedisMissing, RedisServer, redis_binary, redis_servers
from pdsidecar.clock import ManualClock, SystemClock
from pdsidecar.credentials.budget import FleetAsk
from pdsidecar.fleet.reads import FleetReads
from pdsidecar.fleet.store import FleetStore, Slot
from pdsidecar.secret import Secret
from pdsidecar.settings import FleetConfig
from tests.support.ci import missing
from tests.support.fakestore import FakeSharedStore
from tests.support.logsink import LogSink
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

LOCK_TTL = 5.0


@dataclasses.dataclass
class Backend:
    """Stores (sidecars) on one backend, and the test's own looks at it."""

    config: FleetConfig
    client: Callable[[], Any]  # the Commands for a new store; None: a real Redis client
    pttl: Callable[[bytes], int]
    raw_delete: Callable[[bytes], None]
    raw_set: Callable[[bytes, bytes], None]  # no TTL
    opened: list[FleetStore] = dataclasses.field(default_factory=list)

    async def store(self) -> FleetStore:
        commands = self.client()
        store = FleetStore(self.config, SystemClock(), client=commands, subscriber=commands)
        self.opened.append(store)
        store.start()
        assert await store.subscribed(5.0)
        return store


@pytest.fixture(scope="module")
def redis_for_suite(log_sink: LogSink) -> Iterator[RedisServer]:
    """One server for the module (each test has its own namespace); skipped like the
    ``redis_servers`` fixture where redis-server cannot be had."""
    try:
        redis_binary()
    except RedisMissing as error:
        missing(str(error))
    with redis_servers(1, dump_to=log_sink.lines) as servers:
        yield servers[0]


@pytest.fixture(params=["redis", "fake"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    key = Secret(base64.b64encode(os.urandom(32)).decode())
    namespace = f"c{uuid.uuid4().hex[:8]}"  # one module-wide server: a namespace per test
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_for_suite")
        admin = server.client()
        config = FleetConfig(
            url=server.url,
            keys=(key,),
            username=USER,
            password=Secret(PASSWORD),
            namespace=namespace,
            timeout=1.0,
            lock_ttl=LOCK_TTL,
        )

        def raw_delete(name: bytes) -> None:
            admin.delete(name)

        def raw_set(name: bytes, data: bytes) -> None:
            admin.set(name, data)

        found = Backend(
            config, lambda: None, lambda name: int(admin.pttl(name)), raw_delete, raw_set
        )
    else:
        fake = FakeSharedStore()
        config = FleetConfig(
            url="redis://fake", keys=(key,), namespace=namespace, timeout=1.0, lock_ttl=LOCK_TTL
        )

        def forget(name: bytes) -> None:
            fake.forge(name, b"", 0)  # expired at once: gone

        found = Backend(config, lambda: fake, fake.pttl, forget, fake.forge)
    yield found
    for store in found.opened:
        await store.aclose()


def hints(store: FleetStore) -> Callable[[], list[tuple[str, int]]]:
    """The hints ``store`` heard since this call, read without waiting."""
    stream = store.events.listen()
    heard: list[tuple[str, int]] = []

    def read() -> list[tuple[str, int]]:
        with contextlib.suppress(anyio.WouldBlock):
            while True:
                heard.append(stream.receive_nowait())
        return heard

    return read


def slot_of(store: FleetStore) -> Slot:
    return store.slot("account", "contract", uuid.uuid4().hex)


async def test_a_value_is_read_back_sealed_with_its_ttl(backend: Backend) -> None:
    store = await backend.store()
    slot = slot_of(store)
    assert await store.get(slot, "v") is None
    written = await store.put(slot, "v", b"payload", ttl=30)
    read = await store.get(slot, "v")
    assert read is not None and read.data == b"payload" and read.blob == written.blob
    assert b"payload" not in read.blob  # sealed
    assert 25_000 < backend.pttl(slot.name("v")) <= 30_000


async def test_another_store_with_the_same_keys_reads_it(backend: Backend) -> None:
    one, two = await backend.store(), await backend.store()
    slot = slot_of(one)
    await one.put(slot, "v", b"shared", ttl=30)
    read = await two.get(slot, "v")
    assert read is not None and read.data == b"shared"


async def test_delete_if_removes_the_value_it_read(backend: Backend) -> None:
    store = await backend.store()
    slot = slot_of(store)
    await store.put(slot, "v", b"rejected", ttl=30)
    read = await store.get(slot, "v")
    assert read is not None
    assert await store.delete_if(read) is True
    assert await store.get(slot, "v") is None


async def test_delete_if_spares_a_value_stored_between_the_read_and_the_delete(
    backend: Backend,
) -> None:
    # Sidecar A reads a token a caller saw rejected; sidecar B stores a new token; A's
    # compare-and-delete must leave B's token (a plain DEL would drop it for the fleet).
    one, two = await backend.store(), await backend.store()
    slot = slot_of(one)
    await one.put(slot, "v", b"old token", ttl=30)
    stale = await one.get(slot, "v")
    assert stale is not None
    await two.put(slot, "v", b"new token", ttl=30)
    assert await one.delete_if(stale) is False
    kept = await one.get(slot, "v")
    assert kept is not None and kept.data == b"new token"


async def test_delete_removes_the_value(backend: Backend) -> None:
    store = await backend.store()
    slot = slot_of(store)
    await store.put(slot, "v", b"gone", ttl=30)
    await store.delete(slot, "v")
    assert await store.get(slot, "v") is None


async def test_the_lock_is_taken_once_with_its_ttl_and_the_value_read_with_it(
    backend: Backend,
) -> None:
    one, two = await backend.store(), await backend.store()
    slot = slot_of(one)
    lease, read = await one.lock_get(slot, "v")
    assert lease is not None and read is None
    assert 0 < backend.pttl(slot.name("l")) <= LOCK_TTL * 1000
    await one.put(slot, "v", b"value", ttl=30)
    other, read = await two.lock_get(slot, "v")
    assert other is None
    assert read is not None and read.data == b"value"


async def test_a_lock_without_ttl_gets_the_lock_ttl_and_is_not_taken(backend: Backend) -> None:
    # A squatted lock key: SET NX does not take it, and it cannot outlive lock_ttl.
    store = await backend.store()
    slot = slot_of(store)
    backend.raw_set(slot.name("l"), b"squatter")
    assert backend.pttl(slot.name("l")) == -1
    lease, _ = await store.lock_get(slot, "v")
    assert lease is None
    assert 0 < backend.pttl(slot.name("l")) <= LOCK_TTL * 1000


async def test_store_release_stores_tells_the_fleet_and_frees_the_lock(backend: Backend) -> None:
    one, two = await backend.store(), await backend.store()
    heard = hints(two)
    slot = slot_of(one)
    lease, _ = await one.lock_get(slot, "v")
    assert lease is not None
    await one.store_release(lease, "v", b"fetched", 30, 1234)
    assert lease.released
    read = await two.get(slot, "v")
    assert read is not None and read.data == b"fetched"
    assert 25_000 < backend.pttl(slot.name("v")) <= 30_000
    await eventually(lambda: heard() == [(slot.tag, 1234)])
    lease, _ = await two.lock_get(slot, "v")
    assert lease is not None  # freed


async def test_store_release_without_data_writes_nothing_but_tells_and_frees(
    backend: Backend,
) -> None:
    one, two = await backend.store(), await backend.store()
    heard = hints(two)
    slot = slot_of(one)
    lease, _ = await one.lock_get(slot, "v")
    assert lease is not None
    await one.store_release(lease, "v", None, 30, 7)
    assert await two.get(slot, "v") is None
    await eventually(lambda: heard() == [(slot.tag, 7)])
    assert backend.pttl(slot.name("l")) == -2


async def test_store_release_leaves_the_lock_of_the_next_holder(backend: Backend) -> None:
    one, two, three = await backend.store(), await backend.store(), await backend.store()
    slot = slot_of(one)
    late, _ = await one.lock_get(slot, "v")
    assert late is not None
    backend.raw_delete(slot.name("l"))  # one's lock expired while it fetched
    current, _ = await two.lock_get(slot, "v")
    assert current is not None
    await one.store_release(late, "v", b"late", 30, 1)
    read = await three.get(slot, "v")
    assert read is not None and read.data == b"late"
    taken, _ = await three.lock_get(slot, "v")
    assert taken is None  # two still holds it


async def test_renew_and_unlock_act_only_for_the_owner(backend: Backend) -> None:
    one, two = await backend.store(), await backend.store()
    slot = slot_of(one)
    lease, _ = await one.lock_get(slot, "v")
    assert lease is not None
    assert await two.renew(slot, "not-the-owner", 60) is False
    assert await one.renew(slot, lease.owner, 60) is True
    assert LOCK_TTL * 1000 < backend.pttl(slot.name("l")) <= 60_000
    await two.unlock(slot, "not-the-owner")
    assert backend.pttl(slot.name("l")) > 0
    await one.unlock(slot, lease.owner)
    assert backend.pttl(slot.name("l")) == -2
    assert await one.renew(slot, lease.owner) is False  # gone: nothing to renew


async def test_events_arrive_in_the_order_they_were_published(backend: Backend) -> None:
    one, two = await backend.store(), await backend.store()
    heard = hints(two)
    slot = slot_of(one)
    sent = [(slot.tag, n) for n in (5, 3, 9, 1, 2, 8, 4, 6)]
    for _, version in sent:
        await one.publish(slot, version)
    await eventually(lambda: len(heard()) >= len(sent))
    assert heard() == sent


async def test_a_waiter_wakes_on_its_slots_event(backend: Backend) -> None:
    one, two = await backend.store(), await backend.store()
    slot = slot_of(one)
    clock = SystemClock()
    assert two.hearing
    with two.expect(slot) as news:
        started = clock.monotonic()
        waiting = asyncio.create_task(news.wait(10.0))
        await asyncio.sleep(0)
        await one.publish(slot, 1)
        await asyncio.wait_for(waiting, 5.0)
        assert clock.monotonic() - started < 5.0


async def test_an_event_heard_during_the_look_wakes_the_wait_after_it(backend: Backend) -> None:
    # The waiter expects the slot's event before it looks at Redis: the holder's event,
    # published while the waiter looked (and found nothing yet), is not missed.
    one, two = await backend.store(), await backend.store()
    slot, other = slot_of(one), one.slot("another")
    with two.expect(other) as unrelated, two.expect(slot) as news:
        await one.publish(slot, 1)  # during the look
        await eventually(lambda: two.events.received >= 1)
        clock = SystemClock()
        started = clock.monotonic()
        await news.wait(10.0)
        assert clock.monotonic() - started < 1.0
        assert not unrelated.event.is_set()


async def test_counted_reads_are_pooled_and_refused_by_the_first_share_they_pass(
    backend: Backend,
) -> None:
    """Two sidecars count into one window: a caller's, a listener's, the fleet's total,
    and past the high water the heaviest caller first (credentials/budget.py)."""
    clock = ManualClock()
    one = FleetReads(await backend.store(), clock, 300.0)
    two = FleetReads(await backend.store(), clock, 300.0)

    async def take(reads: FleetReads, caller: str, listener: str) -> str | None:
        counts = await reads.take(FleetAsk(caller, listener, 3, 5, 8, 6))
        assert counts is not None
        return counts.refused

    assert [await take(one, "x", "L") for _ in range(3)] == [None] * 3
    assert await take(two, "x", "L") == "caller"  # the other sidecar sees the three
    assert [await take(two, "y", "L") for _ in range(2)] == [None, None]
    assert await take(one, "y", "L") == "listener"  # L: five
    # Total five of eight; past six, a caller with what is left of the budget or more waits.
    assert [await take(one, "z", "M") for _ in range(3)] == [None, None, "heavy"]
    assert await take(two, "w", "M") is None  # w had read nothing: total eight
    assert await take(two, "v", "N") == "fleet"
    # A read no caller asked for (a watcher's) is counted, never refused.
    counted = await one.take(FleetAsk("", "", 3, 5, 8, 6))
    assert counted is not None and counted.refused is None and counted.total == 8
    # The window moves on: the reads leave it.
    clock.advance(300.0 + one.bucket)
    assert await take(two, "x", "L") is None
