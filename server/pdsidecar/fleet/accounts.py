"""Accounts shared by a fleet: an :class:`AccountSource` that decorates another.

:class:`FleetAccounts` wraps the plain source (one Pipedream read) and is a
source itself. The cache asks it only on a local miss (a fresh local entry
never reaches Redis), and its answer carries the fleet's deadlines and version,
so every sidecar serves an account fresh, stale or not at all at the same moments.

- **Shared entries**: the account, sealed, with when it was fetched, until when
  it is fresh and usable, and its version (see credentials/source.py); Redis
  drops it when it is no longer usable.
- **Versions**: an entry older than one this sidecar held is never taken (a
  value written back into Redis is ignored). A read by the lock holder carries
  a version past both the stored one and the sidecar's own.
- **Single flight, fleet-wide** (:mod:`pdsidecar.fleet.flight`): on a miss, the
  sidecar that takes the account's lock reads Pipedream, stores the entry and
  tells the fleet; the others wait for that event and take the stored entry.
- **What reaches Pipedream**: a miss, a schedule (a watcher's re-read wants a
  version newer than its own; a later read by another sidecar answers it), or a
  caller's ``rejected_access_token`` when the shared entry still holds that
  token and predates the caller. Never an event.
- **Events** are hints: one names a version; a sidecar that holds an older one
  for that account looks at Redis and takes the entry if it is newer (the watch
  hub hears of it through the cache), else does nothing. Looks are coalesced per
  account; a forged event costs at most a Redis read.
- **Rate limits**: a 429 is recorded per (connection, project) until its
  Retry-After; meanwhile no sidecar calls Pipedream for that project: a usable
  entry is served, else RATE_LIMITED with the delay left.

Redis marked down: the inner source reads, as in one process alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio

from pdsidecar.background import Background
from pdsidecar.clock import Clock, wall_to_monotonic
from pdsidecar.credentials.cache import AccountCache
from pdsidecar.credentials.source import (
    AccountRead,
    AccountSource,
    CacheKey,
    Fetched,
)
from pdsidecar.errors import AccountNotFound, RateLimited
from pdsidecar.fleet.flight import single_flight, wait_until
from pdsidecar.fleet.store import FleetStore, FleetUnavailable, Lease, Read, Slot
from pdsidecar.pipedream.models import Account
from pdsidecar.secret import Secret
from pdsidecar.settings import Policy

log = logging.getLogger(__name__)


@dataclass
class FleetAccountStats:
    shared_hits: int = 0  # local misses answered from the fleet's entry
    fetched: int = 0  # Pipedream reads this sidecar made as lock holder
    waited: int = 0  # local misses that waited for another sidecar's read
    refetches: int = 0  # rejected-token refetches this sidecar made for the fleet
    rate_limited: int = 0  # local misses answered from a recorded 429
    fallbacks: int = 0  # reads made alone: Redis down, or the wait ran out
    looks: int = 0  # Redis reads made because an event named a newer version
    taken: int = 0  # newer entries taken from Redis on a fleet event
    ignored: int = 0  # entries refused: older than one this sidecar held


@dataclass(frozen=True)
class _Entry:
    account: Account
    fetched_at: float  # all wall seconds
    fresh_until: float
    usable_until: float
    version: int


class FleetAccounts:
    def __init__(
        self,
        store: FleetStore,
        inner: AccountSource,
        cache: AccountCache,
        policy: Policy,
        clock: Clock,
        pipedream_url: str,
    ) -> None:
        self._store, self._inner, self._cache = store, inner, cache
        self._policy, self._clock, self._url = policy, clock, pipedream_url
        # Hash tag -> its slot and the local keys it names (bounded like the cache).
        self._keys: OrderedDict[str, tuple[Slot, set[CacheKey]]] = OrderedDict()
        # (client id, project) -> monotonic time until which Pipedream said 429.
        self._limited: dict[tuple[str, str], float] = {}
        # Tags being looked at in Redis after an event; True: look once more after.
        self._looking: dict[str, bool] = {}
        # Tags this sidecar is reading now: their waiters look at Redis themselves.
        self._reading: dict[str, int] = {}
        self._background = Background("fleet accounts")
        self.stats = FleetAccountStats()

    # --- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the fleet's events, with the looks they cause, as work owned here."""
        if not self._background.running:
            hints = self._store.events.listen()
            self._background.start_soon(lambda: self._hear(hints))

    async def aclose(self) -> None:
        await self._background.aclose()

    # --- the source -------------------------------------------------------------------------
    async def read(self, request: AccountRead) -> Fetched:
        key = request.key
        slot = self._store.slot("account", self._url, request.client_id, *key[1:])
        self._remember(slot, key)
        limit = self._known_limit(request.client_id, key[1])
        if limit is not None:  # a 429 this sidecar knows of: never Pipedream, Redis or not
            entry = None
            with contextlib.suppress(FleetUnavailable):
                entry = self._decode(await self._store.get(slot, "v"))
            return self._limited_answer(entry, limit, request)
        self._reading[slot.tag] = self._reading.get(slot.tag, 0) + 1
        try:
            return await single_flight(
                self._store,
                self._clock,
                slot,
                take=lambda read: self._take(read, request),
                lead=lambda lease, read: self._lead(lease, self._decode(read), request),
                alone=lambda: self._alone(request),
                keep=self._keep,
                until=wait_until(self._clock, self._store, request.deadline),
                on_wait=lambda: self._waited(request),
            )
        except FleetUnavailable:
            self.stats.fallbacks += 1
            return await self._inner.read(request)
        finally:
            left = self._reading.pop(slot.tag, 1) - 1
            if left > 0:
                self._reading[slot.tag] = left

    def _waited(self, request: AccountRead) -> None:
        self.stats.waited += 1
        # Only waiting now: the local fetch slot serves other fetches meanwhile. A read
        # this sidecar makes after all (lead, alone, Redis down) takes one back first.
        request.waiting()

    async def _take(self, read: Read | None, request: AccountRead) -> Fetched | None:
        entry = self._decode(read)
        if entry is None or not self._serves(entry, request, fresh=True):
            return None
        self.stats.shared_hits += 1
        return self._local(entry)

    async def _alone(self, request: AccountRead) -> Fetched:
        self.stats.fallbacks += 1
        return await self._inner.read(request)

    async def _lead(self, lease: Lease, entry: _Entry | None, request: AccountRead) -> Fetched:
        """As the lock holder: one Pipedream read for the fleet, unless a 429 is recorded."""
        key = request.key
        limit = None
        with contextlib.suppress(FleetUnavailable):  # a slow look: read as if none recorded
            limit = await self._limit(request.client_id, key[1])
        if limit is not None:
            return self._limited_answer(entry, limit, request)
        replacing = entry is not None and request.rejected is not None
        replacing = replacing and request.rejected(entry.account)  # type: ignore[union-attr,misc]
        held = max(request.held, entry.version if entry is not None else 0)
        log.debug(
            "shared cache: reading account %s for the fleet (stored: %s)",
            lease.slot.tag[:8],
            entry.version if entry is not None else "none",
        )
        try:
            fetched = await self._inner.read(dataclasses.replace(request, held=held))
        except AccountNotFound:
            with contextlib.suppress(FleetUnavailable):
                await self._store.delete(lease.slot, "v")
            raise
        except RateLimited as error:
            limit = await self._record_limit(request.client_id, key[1], error)
            return self._limited_answer(entry, limit, request)
        self.stats.fetched += 1
        if replacing:
            self.stats.refetches += 1
        # From here on Redis trouble must not cost a second read: this answer stands.
        with contextlib.suppress(FleetUnavailable):
            await self._keep(lease, fetched)
        return fetched

    async def _keep(self, lease: Lease, fetched: Fetched) -> None:
        """Store ``fetched`` for the fleet, tell it (the version), release the lock."""
        record = {
            "a": _account_json(fetched.account),
            "f": _wall(self._clock, fetched.fetched_at),
            "fr": _wall(self._clock, fetched.fresh_until),
            "u": _wall(self._clock, fetched.usable_until),
            "v": fetched.version,
        }
        ttl = fetched.usable_until - self._clock.monotonic()
        data = json.dumps(record).encode()
        await self._store.store_release(lease, "v", data, ttl, fetched.version)

    def _serves(self, entry: _Entry, request: AccountRead, *, fresh: bool) -> bool:
        if entry.version < request.held:
            self.stats.ignored += 1  # older than one held: written back, or from the past
            return False
        if entry.version <= request.newer_than:
            return False  # a scheduled re-read wants a later read than the one it has
        now = self._clock.wall()
        if now >= (entry.fresh_until if fresh else entry.usable_until):
            return False
        if request.rejected is None or not request.rejected(entry.account):
            return True
        # Holds the caller's rejected token: only if fetched after the caller started.
        started = request.started_at
        return fresh and started is not None and entry.fetched_at >= _wall(self._clock, started)

    def _limited_answer(self, entry: _Entry | None, limit: float, request: AccountRead) -> Fetched:
        """Within a recorded 429: the usable entry, fresh until the limit ends; else the 429."""
        self.stats.rate_limited += 1
        if (
            entry is not None
            and self._policy.serve_stale_on_upstream_error
            and self._serves(entry, dataclasses.replace(request, newer_than=0), fresh=False)
        ):
            local = self._local(entry)
            fresh = max(local.fresh_until, min(limit, local.usable_until))
            return dataclasses.replace(local, fresh_until=fresh)
        left = max(limit - self._clock.monotonic(), 0.001)
        key = request.key
        raise RateLimited(
            "Pipedream rate limited this project's account reads; the fleet waits until "
            "its Retry-After",
            metadata={"connection": key[0], "project_id": key[1], "account_id": key[3]},
            retry_after=round(left, 3),
        )

    # --- rate limits ------------------------------------------------------------------------
    def _known_limit(self, client_id: str, project: str) -> float | None:
        """A 429 this sidecar knows of, still running (monotonic end)."""
        memo = self._limited.get((client_id, project))
        if memo is not None:
            if self._clock.monotonic() < memo:
                return memo
            del self._limited[(client_id, project)]
        return None

    async def _limit(self, client_id: str, project: str) -> float | None:
        """Until when (monotonic) the fleet must not read this project, if a 429 says so."""
        known = self._known_limit(client_id, project)
        if known is not None:
            return known
        now = self._clock.monotonic()
        read = await self._store.get(self._rate_slot(client_id, project), "v")
        if read is None:
            return None
        try:
            until = wall_to_monotonic(self._clock, float(json.loads(read.data)["u"]))
        except (ValueError, KeyError, TypeError):
            return None
        if until <= now:
            return None
        self._limited[(client_id, project)] = until
        return until

    async def _record_limit(self, client_id: str, project: str, error: RateLimited) -> float:
        pause = error.retry_after or self._policy.default_retry_after
        until = self._clock.monotonic() + pause
        self._limited[(client_id, project)] = until
        record = json.dumps({"u": self._clock.wall() + pause}).encode()
        # On Redis trouble this sidecar still knows; the others learn from their own 429.
        with contextlib.suppress(FleetUnavailable):
            await self._store.put(self._rate_slot(client_id, project), "v", record, pause)
        return until

    def _rate_slot(self, client_id: str, project: str) -> Slot:
        return self._store.slot("rate", self._url, client_id, project)

    # --- events: hints about Redis ----------------------------------------------------------
    async def _hear(self, hints: Any) -> None:
        async with hints, anyio.create_task_group() as looks:
            async for tag, version in hints:
                known = self._keys.get(tag)
                if known is None or tag in self._reading:
                    continue  # unknown here, or a read in flight will look by itself
                if all(version <= self._cache.held(key) for key in known[1]):
                    continue  # nothing newer than held: not even a Redis read
                if tag in self._looking:
                    self._looking[tag] = True
                    continue
                self._looking[tag] = False
                looks.start_soon(self._look, tag)

    async def _look(self, tag: str) -> None:
        """Read the tag's entry from Redis; offer it to the cache, which takes it if newer."""
        try:
            while True:
                known = self._keys.get(tag)
                if known is None:
                    return
                slot, keys = known
                self.stats.looks += 1
                with contextlib.suppress(FleetUnavailable):
                    entry = self._decode(await self._store.get(slot, "v"))
                    if entry is not None:
                        for key in list(keys):
                            if self._cache.offer(key, self._local(entry)):
                                self.stats.taken += 1
                if not self._looking.get(tag):
                    return
                self._looking[tag] = False
        finally:
            self._looking.pop(tag, None)

    def _remember(self, slot: Slot, key: CacheKey) -> None:
        known = self._keys.get(slot.tag)
        if known is None:
            self._keys[slot.tag] = (slot, {key})
            while len(self._keys) > max(1, self._policy.cache_max_entries):
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(slot.tag)
            known[1].add(key)

    # --- entries ----------------------------------------------------------------------------
    @staticmethod
    def _decode(read: Read | None) -> _Entry | None:
        if read is None:
            return None
        try:
            record = json.loads(read.data)
            return _Entry(
                _account_from(record["a"]),
                float(record["f"]),
                float(record["fr"]),
                float(record["u"]),
                int(record.get("v", 0)),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def _local(self, entry: _Entry) -> Fetched:
        clock = self._clock
        return Fetched(
            entry.account,
            wall_to_monotonic(clock, entry.fetched_at),
            wall_to_monotonic(clock, entry.fresh_until),
            wall_to_monotonic(clock, entry.usable_until),
            entry.version,
        )


def _wall(clock: Clock, monotonic: float) -> float:
    return clock.wall() + (monotonic - clock.monotonic())


def _account_json(account: Account) -> dict[str, Any]:
    # Not dataclasses.asdict: it would try to deep-copy the Secret values.
    data = {f.name: getattr(account, f.name) for f in dataclasses.fields(account)}
    if account.credentials is not None:
        data["credentials"] = {k: v.reveal() for k, v in account.credentials.items()}
    return data


def _account_from(data: dict[str, Any]) -> Account:
    credentials = data.get("credentials")
    if credentials is not None:
        data = {**data, "credentials": {k: Secret(str(v)) for k, v in credentials.items()}}
    return Account(**data)
