"""The fleet's single flight (fleet/flight.py): slow Redis is no reason to read alone; waits
are bounded by the lock's lifetime and by a share of the caller's deadline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.fleet.flight import WAIT_SHARE, single_flight, wait_until
from pdsidecar.fleet.store import FleetSlow

pytestmark = pytest.mark.anyio


class HeldElsewhere:
    """Another sidecar holds the lock; its value arrives with its event (or never)."""

    def __init__(self, clock: ManualClock, *, slow_first: bool, stores: bool) -> None:
        self.config = SimpleNamespace(lock_ttl=1.0)
        self.clock, self.slow_first, self.stores = clock, slow_first, stores
        self.value: str | None = None
        self.gets = 0

    async def get(self, slot: Any, suffix: str) -> str | None:
        self.gets += 1
        if self.slow_first and self.gets == 1:
            raise FleetSlow
        return self.value

    async def lock_get(self, slot: Any, suffix: str) -> tuple[None, str | None]:
        return None, self.value

    hearing = True  # the fleet's events are heard

    @contextlib.contextmanager
    def expect(self, slot: Any) -> Iterator[Any]:
        yield SimpleNamespace(wait=self.wait)

    async def wait(self, timeout: float) -> None:
        self.clock.advance(timeout)
        if self.stores:
            self.value = "the holder's read"


async def run(store: HeldElsewhere, clock: ManualClock) -> tuple[str, list[str]]:
    alone: list[str] = []

    async def take(read: str | None) -> str | None:
        return read

    async def read_alone() -> str:
        alone.append("read")
        return "own read"

    async def never(*_: Any) -> Any:
        raise AssertionError("no lock was taken")

    got = await single_flight(
        store,  # type: ignore[arg-type]
        clock,
        None,  # type: ignore[arg-type]
        take=take,
        lead=never,
        alone=read_alone,
        keep=never,
        until=wait_until(clock, store, None),  # type: ignore[arg-type]
    )
    return got, alone


async def test_a_slow_reply_keeps_the_waiter_waiting_for_the_holders_event() -> None:
    clock = ManualClock()
    got, alone = await run(HeldElsewhere(clock, slow_first=True, stores=True), clock)
    assert got == "the holder's read" and alone == []


async def test_a_holder_that_never_stores_costs_at_most_two_lock_lifetimes() -> None:
    clock = ManualClock()
    started = clock.monotonic()
    got, alone = await run(HeldElsewhere(clock, slow_first=False, stores=False), clock)
    assert got == "own read" and alone == ["read"]
    assert clock.monotonic() - started <= 2 * 1.0 + 1e-9


def test_a_waiter_waits_at_most_a_share_of_its_callers_deadline() -> None:
    clock = ManualClock()
    store: Any = SimpleNamespace(config=SimpleNamespace(lock_ttl=5.0))
    now = clock.monotonic()
    assert wait_until(clock, store, None) == now + 10.0
    assert wait_until(clock, store, now + 5.0) == now + 5.0 * WAIT_SHARE
    # A live holder is waited for past two lock lifetimes when the caller can afford it.
    assert wait_until(clock, store, now + 60.0) == now + 60.0 * WAIT_SHARE
