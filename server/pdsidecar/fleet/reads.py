"""The fleet's counts of Pipedream reads, on Redis (``SharedReads`` of credentials/budget.py).

Each counter (the fleet's total, a listener, a caller) is a window of
``upstream_read_window`` seconds in :data:`~pdsidecar.credentials.budget.FLEET_BUCKETS`
buckets plus the current one: one Redis key per bucket, counted up by the read
and dropped by its TTL once out of the window. One script per read checks the
shares and counts (:meth:`~pdsidecar.fleet.store.FleetStore.take_read`), so two
sidecars cannot both take the last read of a share. All the keys share one hash
tag (one slot in a cluster); counter names are keyed hashes, like every other
name the tier writes (no address or listener appears in Redis). Buckets follow
each sidecar's wall clock: sidecars a few milliseconds apart count alike.

Redis down or slow (:class:`~pdsidecar.fleet.store.FleetUnavailable`): the read
is neither counted nor refused; the local shares still apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pdsidecar.clock import Clock
from pdsidecar.credentials.budget import FLEET_BUCKETS, FleetAsk, FleetCounts
from pdsidecar.fleet.store import FleetStore, FleetUnavailable

_RULES: Final = {1: "caller", 2: "listener", 3: "fleet", 4: "heavy"}


@dataclass
class FleetReadStats:
    counted: int = 0  # reads counted fleet-wide
    refused: int = 0  # reads a fleet-wide share refused
    unasked: int = 0  # reads made without asking: Redis down or slow


class FleetReads:
    def __init__(self, store: FleetStore, clock: Clock, window: float) -> None:
        self._store = store
        self._clock = clock
        self._width = max(window, 1e-3) / FLEET_BUCKETS
        self._slot = store.slot("reads")
        self._names: dict[str, str] = {}
        self.stats = FleetReadStats()

    @property
    def bucket(self) -> float:
        return self._width

    async def take(self, ask: FleetAsk) -> FleetCounts | None:
        current = math.floor(self._clock.wall() / self._width)
        names = ["", ask.listener, ask.caller] if ask.caller else [""]
        counters = [self._buckets(name, current) for name in names]
        limits = (ask.budget, ask.high_water, ask.caller_limit, ask.listener_limit)
        # A bucket lives while it is in the window, and one bucket more.
        ttl = self._width * (FLEET_BUCKETS + 2)
        try:
            refused, total, listener, caller = await self._store.take_read(counters, limits, ttl)
        except FleetUnavailable:
            self.stats.unasked += 1
            return None
        if refused:
            self.stats.refused += 1
        else:
            self.stats.counted += 1
        return FleetCounts(total, listener, caller, _RULES.get(refused))

    def _buckets(self, name: str, current: int) -> list[bytes]:
        digest = self._names.get(name)
        if digest is None:
            if len(self._names) >= 4096:
                self._names.clear()
            # A keyed hash of the counter's name (the total's is empty).
            digest = self._names[name] = self._store.slot("reads", name).tag[:24]
        return [
            self._slot.name(f"r:{digest}:{index}")
            for index in range(current - FLEET_BUCKETS, current + 1)
        ]
