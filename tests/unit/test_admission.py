"""Fetch slots lent while a fetch waits for a read made elsewhere (credentials/admission.py).

The source here stands in for the fleet's tier: for the keys in ``elsewhere`` it says it
waits (``request.waiting()``) for another sidecar's read, then either takes that read's
answer or reads Pipedream itself after all. Manual clock: no time passes.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.credentials.admission import FetchGate
from pdsidecar.credentials.budget import ReadBudget, caller_id
from pdsidecar.credentials.cache import AccountCache, CacheKey
from pdsidecar.credentials.source import AccountRead, Fetched, PipedreamAccounts
from pdsidecar.errors import Overloaded
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy
from tests.support.account_fakes import WALL_START, make_account
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

# One slot; each caller may start two reads (4 x 0.5) in the window, which never moves.
POLICY = Policy(upstream_concurrency=1, upstream_read_budget=4, caller_read_share=0.5)
A, B, C = (caller_id(f"listener_{name}", f"ipv4:{name}") for name in "abc")


def key(name: str) -> CacheKey:
    return ("default", "proj_1", "production", name)


class Elsewhere:
    """A source that, for some keys, waits for a read made elsewhere (like the fleet's)."""

    def __init__(self, clock: ManualClock) -> None:
        self._plain = PipedreamAccounts(POLICY, clock)
        # key -> that read's answer; None: it failed, read Pipedream yourself.
        self.elsewhere: dict[CacheKey, asyncio.Future[Fetched | None]] = {}
        self.lent: dict[CacheKey, asyncio.Event] = {}

    def wait_for_other(self, name: str) -> asyncio.Future[Fetched | None]:
        future = self.elsewhere[key(name)] = asyncio.get_running_loop().create_future()
        self.lent[key(name)] = asyncio.Event()
        return future

    async def read(self, request: AccountRead) -> Fetched:
        other = self.elsewhere.get(request.key)
        if other is not None:
            request.waiting()
            self.lent[request.key].set()
            answer = await other
            if answer is not None:
                return answer
        return await self._plain.read(request)


class Upstream:
    """One account's Pipedream read: recorded in ``order``, held until ``go`` is set."""

    def __init__(self, name: str, order: list[str]) -> None:
        self.name, self.order = name, order
        self.called = asyncio.Event()
        self.go = asyncio.Event()
        self.go.set()

    async def __call__(self) -> Account:
        self.order.append(self.name)
        self.called.set()
        await self.go.wait()
        return make_account(self.name)


def make_cache(policy: Policy = POLICY) -> tuple[AccountCache, Elsewhere, ManualClock]:
    clock = ManualClock(wall_start=WALL_START)
    source = Elsewhere(clock)
    return AccountCache(policy, clock, source), source, clock


async def test_a_fetch_waiting_for_a_read_elsewhere_lends_its_slot_and_queues_to_read() -> None:
    cache, source, _clock = make_cache()
    order: list[str] = []
    other = source.wait_for_other("apn_1")
    one, two, three = (Upstream(name, order) for name in ("apn_1", "apn_2", "apn_3"))
    waiting = asyncio.create_task(cache.get(key("apn_1"), one, deadline=None, caller=A))
    await eventually(source.lent[key("apn_1")].is_set)

    # The one slot is free while apn_1 only waits: B's fetch starts, it does not queue.
    two.go.clear()
    reading = asyncio.create_task(cache.get(key("apn_2"), two, deadline=None, caller=B))
    await eventually(two.called.is_set)
    assert (cache.gate.busy, cache.gate.waiting) == (1, 0)
    queued = asyncio.create_task(cache.get(key("apn_3"), three, deadline=None, caller=C))
    await eventually(lambda: cache.gate.waiting == 1)

    # The read elsewhere failed: apn_1 must read itself, through the queue, behind C.
    other.set_result(None)
    await eventually(lambda: cache.gate.waiting == 2)
    assert order == ["apn_2"]
    two.go.set()
    accounts = await asyncio.gather(waiting, reading, queued)
    assert [a.id for a in accounts] == ["apn_1", "apn_2", "apn_3"]
    assert order == ["apn_2", "apn_3", "apn_1"]
    assert (cache.gate.busy, cache.gate.waiting) == (0, 0)

    # A's read was charged once (its share is two): one more read for A still starts.
    await cache.get(key("apn_4"), Upstream("apn_4", order), deadline=None, caller=A)
    with pytest.raises(Overloaded):
        await cache.get(key("apn_5"), Upstream("apn_5", order), deadline=None, caller=A)


async def test_a_fetch_answered_by_the_read_elsewhere_takes_no_slot_again() -> None:
    cache, source, clock = make_cache()
    order: list[str] = []
    other = source.wait_for_other("apn_1")
    waiting = asyncio.create_task(
        cache.get(key("apn_1"), Upstream("apn_1", order), deadline=None, caller=A)
    )
    await eventually(source.lent[key("apn_1")].is_set)
    two = Upstream("apn_2", order)
    two.go.clear()
    reading = asyncio.create_task(cache.get(key("apn_2"), two, deadline=None, caller=B))
    await eventually(two.called.is_set)

    now = clock.monotonic()
    other.set_result(Fetched(make_account("apn_1"), now, now + 60, now + 600, 7))
    assert (await waiting).id == "apn_1"
    assert order == ["apn_2"], "no Pipedream read of apn_1 here"
    assert (cache.gate.busy, cache.gate.waiting) == (1, 0), "B's slot is still B's"
    two.go.set()
    await reading
    assert cache.gate.busy == 0


async def test_a_lent_slot_is_not_taken_back_past_the_deadline() -> None:
    clock = ManualClock(wall_start=WALL_START)
    gate = FetchGate(1, 10.0, clock, ReadBudget(POLICY, clock))
    lent = gate.admit(A, None)
    gate.lend(lent)
    holder = gate.admit(B, None)
    assert holder.started and gate.busy == 1
    assert not gate.withdraw(lent), "past the queue: nothing to withdraw"
    with pytest.raises(Overloaded):
        # One read ahead takes about INITIAL_DURATION; 10 ms is not enough.
        gate.reclaim(lent, clock.monotonic() + 0.01)
    assert gate.waiting == 0
    gate.reclaim(lent, None)
    assert gate.waiting == 1
    gate.release(holder)
    await gate.wait(lent)
    assert lent.started and gate.busy == 1
    gate.release(lent)
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_callers_of_a_fetch_whose_slot_cannot_come_back_in_time_are_refused() -> None:
    # A fetch ahead takes about INITIAL_DURATION; no caller may wait 0.1 s for a slot.
    cache, source, _clock = make_cache(dataclasses.replace(POLICY, fetch_queue_wait=0.1))
    order: list[str] = []
    other = source.wait_for_other("apn_1")
    waiting = asyncio.create_task(
        cache.get(key("apn_1"), Upstream("apn_1", order), deadline=None, caller=A)
    )
    await eventually(source.lent[key("apn_1")].is_set)
    two = Upstream("apn_2", order)
    two.go.clear()
    reading = asyncio.create_task(cache.get(key("apn_2"), two, deadline=None, caller=B))
    await eventually(two.called.is_set)
    other.set_result(None)
    with pytest.raises(Overloaded):
        await waiting
    assert order == ["apn_2"]
    assert cache.gate.refused == 1
    two.go.set()
    await reading
    assert (cache.gate.busy, cache.gate.waiting) == (0, 0)
