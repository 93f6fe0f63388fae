"""Admission under the fleet's tier: a fetch slot (and the read budget) only around a
Pipedream read, never while a caller waits for another sidecar's read or for Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from types import SimpleNamespace

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.credentials.budget import caller_id
from pdsidecar.credentials.cache import AccountCache, CacheKey
from pdsidecar.credentials.source import PipedreamAccounts, SourceHolder
from pdsidecar.errors import Overloaded
from pdsidecar.fleet.accounts import FleetAccounts, _account_json
from pdsidecar.fleet.store import FleetUnavailable, Read, Slot
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy
from tests.support.account_fakes import WALL_START, make_account
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

# One slot and a short queue: a third caller holding or queueing for it is refused at
# once; and a read budget of one read per caller.
POLICY = Policy(
    upstream_concurrency=1, fetch_queue_wait=0.5, upstream_read_budget=2, caller_read_share=0.5
)


class LockedElsewhere:
    """Redis as sidecar B sees it while sidecar A holds every account's lock and reads.

    ``publish`` is A's read arriving: its entries are stored and the waiters' events fire.
    ``down`` makes every command fail as a Redis outage does.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.config = SimpleNamespace(lock_ttl=1.0)
        self.clock = clock
        self.values: dict[str, bytes] = {}
        self.event = asyncio.Event()
        self.down = False

    def slot(self, *parts: str) -> Slot:
        return Slot("t", ("|".join(parts),))

    async def get(self, slot: Slot, suffix: str) -> Read | None:
        if self.down:
            raise FleetUnavailable
        data = self.values.get(slot.tag)
        return None if data is None else Read(data, b"", b"")

    async def lock_get(self, slot: Slot, suffix: str) -> tuple[None, Read | None]:
        return None, await self.get(slot, suffix)  # A holds the lock

    async def wait(self, slot: Slot, timeout: float) -> None:
        await self.event.wait()  # the manual clock stands still: no waiter gives up

    def publish(self, tags: list[str], account: Account) -> None:
        now = self.clock.wall()
        record = {"a": _account_json(account), "f": now, "fr": now + 300, "u": now + 600}
        for tag in tags:
            self.values[tag] = json.dumps({**record, "v": 1}).encode()
        self.event.set()


def sidecar_b(policy: Policy = POLICY) -> tuple[AccountCache, FleetAccounts, LockedElsewhere]:
    clock = ManualClock(wall_start=WALL_START)
    plain = PipedreamAccounts(policy, clock)
    holder = SourceHolder(plain)
    cache = AccountCache(policy, clock, holder)
    store = LockedElsewhere(clock)
    fleet = FleetAccounts(store, plain, cache, policy, clock, "http://pd")  # type: ignore[arg-type]
    holder.swap(fleet)
    return cache, fleet, store


class Pipedream:
    """The upstream read: counts calls, held until ``release`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> Account:
        self.calls += 1
        await self.release.wait()
        return make_account("own-read")


def key(index: int) -> CacheKey:
    return ("default", "proj_1", "production", f"apn_{index}")


async def test_callers_waiting_for_another_sidecars_read_hold_no_slot_and_are_not_refused() -> None:
    cache, fleet, store = sidecar_b()
    pipedream = Pipedream()
    callers = [
        asyncio.create_task(
            cache.get(key(i), pipedream, deadline=None, caller=caller_id("l", f"peer{i % 7}"))
        )
        for i in range(60)
    ]
    await eventually(lambda: fleet.stats.waited == 60)
    gate = cache.gate
    assert (gate.busy, gate.waiting, gate.refused) == (0, 0, 0), "waiting is not reading"
    assert not any(task.done() for task in callers), "no caller was refused"

    # Each caller waits for about 9 accounts on a budget of 1 read: none was charged.
    tags = [store.slot("account", "http://pd", "", *key(i)[1:]).tag for i in range(60)]
    store.publish(tags, make_account("a-read"))
    answers = await asyncio.gather(*callers)
    assert {a.id for a in answers} == {"a-read"}
    assert pipedream.calls == 0 and gate.refused == 0 and gate.busy == 0


async def test_a_read_the_fleet_makes_takes_its_slot_only_while_reading() -> None:
    cache, _fleet, store = sidecar_b()
    store.down = True  # Redis down: each miss reads Pipedream alone, through admission
    pipedream = Pipedream()
    first = asyncio.create_task(cache.get(key(1), pipedream, deadline=None, caller="l a"))
    await eventually(lambda: pipedream.calls == 1)
    assert cache.gate.busy == 1, "a Pipedream read holds a slot"
    second = asyncio.create_task(cache.get(key(2), pipedream, deadline=None, caller="m b"))
    await eventually(lambda: cache.gate.waiting == 1)
    assert pipedream.calls == 1, "the second read waits for the one slot"
    pipedream.release.set()
    await asyncio.gather(first, second)
    assert (cache.gate.busy, pipedream.calls) == (0, 2)
    with pytest.raises(Overloaded, match="share of the Pipedream read budget"):
        await cache.get(key(3), pipedream, deadline=None, caller="l a")  # the read was charged


async def test_a_read_that_cannot_start_in_time_is_refused_with_a_retry_delay() -> None:
    # Admission refuses where the read is asked for, inside the fetch: its callers get
    # OVERLOADED with RetryInfo, as when admission came before the fetch.
    cache, _fleet, store = sidecar_b(dataclasses.replace(POLICY, fetch_queue_wait=0.1))
    store.down = True
    pipedream = Pipedream()
    first = asyncio.create_task(cache.get(key(1), pipedream, deadline=None, caller="l a"))
    await eventually(lambda: pipedream.calls == 1)
    with pytest.raises(Overloaded) as refused:
        await cache.get(key(2), pipedream, deadline=None, caller="m b")
    assert refused.value.retry_after and refused.value.retry_after > 0
    pipedream.release.set()
    await first
