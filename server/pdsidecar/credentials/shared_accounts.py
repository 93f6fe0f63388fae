"""Accounts shared by a fleet: one Pipedream read per account per interval, however many sidecars.

:class:`SharedAccounts` sits behind each process's :class:`AccountCache`: the
cache calls it only on a local miss (a fresh local entry never reaches Redis),
and its answer carries the fleet's deadlines, so every sidecar serves an
account fresh, stale or not at all at the same moments.

- **Shared entries**: the account, sealed, with when it was fetched and until
  when it is fresh and usable; Redis drops it when it is no longer usable.
- **Single flight, fleet-wide**: on a miss, the sidecar that takes the
  account's fetch lock reads Pipedream, stores the entry and tells the fleet;
  the others wait for that event (or look again every so often) and take the
  stored entry. A holder that died costs at most the lock's TTL; a wait longer
  than two lock lifetimes ends with the sidecar reading Pipedream itself.
- **Rejected tokens**: a caller's ``rejected_access_token`` makes a refetch only
  if the shared entry still holds that token and predates the caller; the one
  sidecar that refetches tells the fleet, and every sidecar drops its local copy
  older than the new one.
- **Rate limits**: a 429 is recorded per (connection, project) until its
  Retry-After; meanwhile no sidecar calls Pipedream for that project: a usable
  entry is served, else RATE_LIMITED with the delay left.

Any Redis trouble: the read goes to Pipedream, as in one process alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from pdsidecar.clock import Clock, wall_to_monotonic
from pdsidecar.credentials.cache import AccountCache, CacheEntry, CacheKey, Fetched, deadlines
from pdsidecar.errors import AccountNotFound, RateLimited
from pdsidecar.pipedream.models import Account
from pdsidecar.secret import Secret
from pdsidecar.settings import Policy
from pdsidecar.shared.store import Lease, Read, SharedStore, SharedUnavailable, Slot

POLL_FIRST: Final = 0.05
POLL_MAX: Final = 0.5
# Invalidations older than a local entry by less than this leave it (clock conversions).
_SKEW: Final = 0.001


@dataclass
class SharedAccountStats:
    shared_hits: int = 0  # local misses answered from the fleet's entry
    fetched: int = 0  # Pipedream reads this sidecar made as lock holder
    waited: int = 0  # local misses that waited for another sidecar's fetch
    refetches: int = 0  # rejected-token refetches this sidecar made for the fleet
    rate_limited: int = 0  # local misses answered from a recorded 429
    fallbacks: int = 0  # reads that went to Pipedream because Redis failed or was too slow
    invalidated: int = 0  # local entries dropped on a fleet event


@dataclass(frozen=True)
class _Entry:
    account: Account
    fetched_at: float  # all wall seconds
    fresh_until: float
    usable_until: float


class SharedAccounts:
    def __init__(
        self,
        store: SharedStore,
        cache: AccountCache,
        policy: Policy,
        clock: Clock,
        pipedream_url: str,
    ) -> None:
        self._store, self._cache, self._policy, self._clock = store, cache, policy, clock
        self._url = pipedream_url
        # Hash tag -> the local keys it names (bounded like the cache), for fleet events.
        self._keys: OrderedDict[str, set[CacheKey]] = OrderedDict()
        # (client id, project) -> monotonic time until which Pipedream said 429.
        self._limited: dict[tuple[str, str], float] = {}
        self.stats = SharedAccountStats()
        store.add_listener(self._on_event)

    def fetcher(
        self,
        key: CacheKey,
        client_id: str,
        upstream: Callable[[], Awaitable[Account]],
        rejected: Callable[[Account], bool] | None,
        started_at: float | None,
    ) -> Callable[[], Awaitable[Account | Fetched]]:
        """The cache's fetch for ``key``: through the fleet, Pipedream when Redis fails."""

        async def fetch() -> Account | Fetched:
            slot = self._store.slot("account", self._url, client_id, key[1], key[2], key[3])
            self._remember(slot.tag, key)
            try:
                return await self._get(slot, key, client_id, upstream, rejected, started_at)
            except SharedUnavailable:
                self.stats.fallbacks += 1
                return await upstream()

        return fetch

    async def _get(
        self,
        slot: Slot,
        key: CacheKey,
        client_id: str,
        upstream: Callable[[], Awaitable[Account]],
        rejected: Callable[[Account], bool] | None,
        started_at: float | None,
    ) -> Account | Fetched:
        clock = self._clock
        started_wall = None if started_at is None else _wall(clock, started_at)
        give_up = clock.monotonic() + 2 * self._store.config.lock_ttl
        pause = POLL_FIRST
        waited = False
        while True:
            entry = self._decode(await self._store.get(slot, "v"))
            if entry is not None and self._serves(entry, rejected, started_wall, fresh=True):
                self.stats.shared_hits += 1
                return self._local(entry)
            limit = self._known_limit(client_id, key[1])
            if limit is not None:
                return self._limited_answer(entry, limit, rejected, started_wall, key)
            # The lock, and the value as it is now (stored since the read above?), at once.
            lease, read = await self._store.lock_get(slot, "v")
            entry = self._decode(read) or entry
            if entry is not None and self._serves(entry, rejected, started_wall, fresh=True):
                if lease is not None:
                    await self._store.unlock(slot, lease.owner)
                self.stats.shared_hits += 1
                return self._local(entry)
            if lease is not None:
                async with self._store.holding(lease):
                    return await self._fetch(
                        lease, entry, key, client_id, upstream, rejected, started_wall
                    )
            if not waited:
                waited = True
                self.stats.waited += 1
            now = clock.monotonic()
            if now >= give_up:
                self.stats.fallbacks += 1
                return await upstream()
            await self._store.wait(slot, min(pause, give_up - now))
            pause = min(pause * 2, POLL_MAX)

    async def _fetch(
        self,
        lease: Lease,
        entry: _Entry | None,
        key: CacheKey,
        client_id: str,
        upstream: Callable[[], Awaitable[Account]],
        rejected: Callable[[Account], bool] | None,
        started_wall: float | None,
    ) -> Account | Fetched:
        """As the lock holder: one Pipedream read for the fleet, unless a 429 is recorded."""
        slot = lease.slot
        limit = await self._limit(client_id, key[1])
        if limit is not None:
            return self._limited_answer(entry, limit, rejected, started_wall, key)
        replacing = entry is not None and rejected is not None and rejected(entry.account)
        started = self._clock.monotonic()
        try:
            account = await upstream()
        except AccountNotFound:
            with contextlib.suppress(SharedUnavailable):
                await self._store.delete(slot, "v")
                await self._store.publish("i", slot, self._clock.wall())
            raise
        except RateLimited as error:
            limit = await self._record_limit(client_id, key[1], error)
            return self._limited_answer(entry, limit, rejected, started_wall, key)
        self.stats.fetched += 1
        if replacing:
            self.stats.refetches += 1
        local = deadlines(self._policy, self._clock, account, started)
        fetched_wall = _wall(self._clock, local.fetched_at)
        record = {
            "a": _account_json(account),
            "f": fetched_wall,
            "fr": _wall(self._clock, local.fresh_until),
            "u": _wall(self._clock, local.usable_until),
        }
        ttl = local.usable_until - self._clock.monotonic()
        # From here on Redis trouble must not cost a second read: this answer stands.
        # A rejected token replaced ("i"): every sidecar drops its older copy.
        with contextlib.suppress(SharedUnavailable):
            await self._store.store_release(
                lease,
                "v",
                json.dumps(record).encode(),
                ttl,
                "i" if replacing else "w",
                fetched_wall,
            )
        return Fetched(local.account, local.fetched_at, local.fresh_until, local.usable_until)

    def _serves(
        self,
        entry: _Entry,
        rejected: Callable[[Account], bool] | None,
        started_wall: float | None,
        *,
        fresh: bool,
    ) -> bool:
        now = self._clock.wall()
        if now >= (entry.fresh_until if fresh else entry.usable_until):
            return False
        if rejected is None or not rejected(entry.account):
            return True
        # Holds the caller's rejected token: only if fetched after the caller started.
        return fresh and started_wall is not None and entry.fetched_at >= started_wall

    def _limited_answer(
        self,
        entry: _Entry | None,
        limit: float,
        rejected: Callable[[Account], bool] | None,
        started_wall: float | None,
        key: CacheKey,
    ) -> Fetched:
        """Within a recorded 429: the usable entry, fresh until the limit ends; else the 429."""
        self.stats.rate_limited += 1
        if (
            entry is not None
            and self._policy.serve_stale_on_upstream_error
            and self._serves(entry, rejected, started_wall, fresh=False)
        ):
            local = self._local(entry)
            fresh = max(local.fresh_until, min(limit, local.usable_until))
            return dataclasses.replace(local, fresh_until=fresh)
        left = max(limit - self._clock.monotonic(), 0.001)
        raise RateLimited(
            "Pipedream rate limited this project's account reads; the fleet waits until "
            "its Retry-After",
            metadata={"connection": key[0], "project_id": key[1], "account_id": key[3]},
            retry_after=round(left, 3),
        )

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
        with contextlib.suppress(SharedUnavailable):
            await self._store.put(self._rate_slot(client_id, project), "v", record, pause)
        return until

    def _rate_slot(self, client_id: str, project: str) -> Slot:
        return self._store.slot("rate", self._url, client_id, project)

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
        )

    def _remember(self, tag: str, key: CacheKey) -> None:
        keys = self._keys.get(tag)
        if keys is None:
            keys = self._keys[tag] = set()
            while len(self._keys) > max(1, self._policy.cache_max_entries):
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(tag)
        keys.add(key)

    def _on_event(self, kind: str, tag: str, stamp: float) -> None:
        if kind != "i":
            return
        newer = wall_to_monotonic(self._clock, stamp) - _SKEW

        def older(entry: CacheEntry) -> bool:
            return entry.fetched_at < newer

        for key in list(self._keys.get(tag, ())):
            if self._cache.invalidate_if(key, older):
                self.stats.invalidated += 1
                if self._cache.on_invalidated is not None:
                    self._cache.on_invalidated(key)


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
