"""Fleet-wide single flight: one sidecar reads Pipedream for a slot, the others wait for it.

Used alike for tokens (:mod:`pdsidecar.fleet.tokens`) and accounts
(:mod:`pdsidecar.fleet.accounts`); each says what a stored value is worth
(``take``), what the lock holder does (``lead``), and what a waiter may use
meanwhile (``meanwhile``).

- Look at the stored value; if it answers, done (one Redis round trip).
- Else take the slot's lock and read the value again, at once. The holder
  ``lead``s (reads Pipedream, stores, tells the fleet) while the lock is renewed.
- The others wait for the holder's event (heard from before their look; while events
  are heard they look again once a second, else backing off from 50 ms) until
  ``wait_until``: ``WAIT_SHARE`` of what is left of the caller's deadline (two lock
  lifetimes for a caller without one). Then they read Pipedream themselves
  (``alone``) and store the result if the lock is free by then. A holder that died
  is not waited for that long: its lock expires after one lifetime, and the next
  waiter to look takes it and leads. A holder that is alive but slow (a slow
  Pipedream, a busy machine) is waited for: giving up on it at a fixed time would
  send every waiter of the fleet to Pipedream just when it is slow.
- A slow Redis reply (:class:`FleetSlow`) is no answer yet: the waiter keeps
  waiting for the holder's event. Only a Redis marked down (:class:`FleetUnavailable`)
  ends the flight at once; the caller then goes on as one process alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from pdsidecar.clock import Clock
from pdsidecar.fleet.store import FleetSlow, FleetStore, FleetUnavailable, Lease, Read, Slot

T = TypeVar("T")

# Looks at Redis while waiting, backing off, when the fleet's events are not heard...
POLL_FIRST: Final = 0.05
POLL_MAX: Final = 0.5
# ... and while they are: the holder's event wakes a waiter (it is heard from before the
# waiter's look), so a look only makes up for an event lost in a reconnect, or a holder
# that stored nothing (failed, or died: its lock expires). A cold burst of N waiters then
# costs Redis a few commands each, not a look every 50-500 ms each.
HEARD_LOOK_EVERY: Final = 1.0
# A waiter spends at most this share of its caller's time left waiting for another sidecar.
WAIT_SHARE: Final = 0.5


def wait_until(clock: Clock, store: FleetStore, deadline: float | None) -> float:
    """Until when a waiter waits for another sidecar's read (monotonic)."""
    now = clock.monotonic()
    if deadline is None:
        return now + 2 * store.config.lock_ttl
    return now + max(deadline - now, 0.0) * WAIT_SHARE


async def single_flight(
    store: FleetStore,
    clock: Clock,
    slot: Slot,
    *,
    take: Callable[[Read | None], Awaitable[T | None]],
    lead: Callable[[Lease, Read | None], Awaitable[T]],
    alone: Callable[[], Awaitable[T]],
    keep: Callable[[Lease, T], Awaitable[None]],
    until: float,
    meanwhile: Callable[[], T | None] = lambda: None,
    on_wait: Callable[[], None] = lambda: None,
) -> T:
    pause = POLL_FIRST
    waited = False
    while True:
        with store.expect(slot) as news:  # before the look: its event is not missed
            try:
                found = await take(await store.get(slot, "v"))
                if found is not None:
                    return found
                lease, read = await store.lock_get(slot, "v")
            except FleetSlow:
                lease, read = None, None  # no answer yet; the holder's event may still come
            else:
                found = await take(read)
                if found is not None:
                    if lease is not None:
                        await store.unlock(slot, lease.owner)
                    return found
                if lease is not None:
                    async with store.holding(lease):
                        return await lead(lease, read)
                instead = meanwhile()
                if instead is not None:
                    return instead
            if not waited:
                waited = True
                on_wait()
            now = clock.monotonic()
            if now >= until:
                result = await alone()
                # The lock free by now: store what was read, so the next miss need not read.
                with contextlib.suppress(FleetUnavailable):
                    lease, _ = await store.lock_get(slot, "v")
                    if lease is not None:
                        async with store.holding(lease):
                            await keep(lease, result)
                return result
            look_in = max(pause, HEARD_LOOK_EVERY) if store.hearing else pause
            await news.wait(min(look_in, until - now))
        pause = min(pause * 2, POLL_MAX)
