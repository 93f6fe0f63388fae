"""The fleet store's timeout counts Redis time: not the event loop's lag, not the wait for
one of its own connections (fleet/store.py)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

from pdsidecar.clock import SystemClock
from pdsidecar.fleet.store import _STORE_RELEASE, MAX_CONNECTIONS, FleetStore, _within
from pdsidecar.settings import FleetConfig
from tests.support.fakestore import FakeSharedStore
from tests.support.fleets import new_key

pytestmark = pytest.mark.anyio


async def _reply_during_a_stall(stall: float, reply_after: float) -> str:
    """A reply due ``reply_after`` s from now, while the loop is blocked for ``stall`` s.

    The reply is read one loop turn after it is due, as libuv (uvloop) polls sockets
    after it runs the timers that came due meanwhile.
    """
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()

    def arrive() -> None:
        if not reply.done():  # a caller that timed out has cancelled it
            reply.set_result("PONG")

    loop.call_later(reply_after, loop.call_soon, arrive)
    loop.call_soon(time.sleep, stall)  # a busy loop: CPU contention, a throttled pod
    return await reply


async def test_a_reply_that_arrived_while_the_loop_was_busy_is_not_a_timeout() -> None:
    # Plain asyncio.timeout(0.05) fails here: its deadline passes during the stall.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await _reply_during_a_stall(0.2, 0.01)
    assert await _within(0.05, lambda: _reply_during_a_stall(0.2, 0.01)) == "PONG"


async def test_a_reply_that_does_not_come_is_a_timeout_after_the_budget() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _within(0.05, lambda: asyncio.sleep(10))
    assert time.monotonic() - started < 5  # the budget, far below the sleep


class Pooled:
    """Commands through ``MAX_CONNECTIONS`` connections, as redis-py's
    BlockingConnectionPool sends them: a command waits for a free one inside the call."""

    def __init__(self, inner: FakeSharedStore) -> None:
        self._inner = inner
        self._free = asyncio.Semaphore(MAX_CONNECTIONS)

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(command):
            return command

        async def pooled(*args: Any, **kwargs: Any) -> Any:
            async with self._free:
                return await command(*args, **kwargs)

        return pooled


async def test_a_burst_of_more_commands_than_connections_waits_its_turn_without_a_timeout() -> None:
    # Each command takes 0.1 s of Redis time, within the 0.25 s timeout; four connections'
    # worth at once: the last wait 0.3 s for a connection. That wait is the sidecar's own
    # queue: judged as Redis time, a cold burst marked a healthy Redis slow, then down.
    fake = FakeSharedStore()
    fake.stall = 0.1
    config = FleetConfig(url="redis://fake", keys=(new_key(),), namespace="t", timeout=0.25)
    store = FleetStore(config, SystemClock(), client=Pooled(fake), subscriber=fake)
    try:
        slot = store.slot("account", "cold")
        reads = await asyncio.gather(*(store.get(slot, "v") for _ in range(4 * MAX_CONNECTIONS)))
        assert reads == [None] * (4 * MAX_CONNECTIONS)
        assert (store.stats.errors, store.stats.up) == (0, True)
    finally:
        await store.aclose()


class StoreLostOnce:
    """The first store-and-release gets no reply in time and is never applied (cancelled
    before Redis ran it); everything else as ``inner``."""

    def __init__(self, inner: FakeSharedStore) -> None:
        self._inner = inner
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        if script == _STORE_RELEASE and not self.lost:
            self.lost += 1
            await asyncio.sleep(10)  # the store's timeout cancels it first
        return await self._inner.eval(script, numkeys, *keys_and_args)


async def test_a_store_whose_reply_is_late_is_made_again_while_the_lock_is_still_held() -> None:
    fake = FakeSharedStore()
    client = StoreLostOnce(fake)
    config = FleetConfig(url="redis://fake", keys=(new_key(),), namespace="t", timeout=0.05)
    store = FleetStore(config, SystemClock(), client=client, subscriber=fake)
    try:
        slot = store.slot("account", "read once")
        lease, _ = await store.lock_get(slot, "v")
        assert lease is not None
        await store.store_release(lease, "v", b"the fleet's read", 60.0, 1)
        assert client.lost == 1
        read = await store.get(slot, "v")
        assert read is not None and read.data == b"the fleet's read"
        again, _ = await store.lock_get(slot, "v")
        assert again is not None, "the lock was released"
    finally:
        await store.aclose()
