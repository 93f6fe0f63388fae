"""The account cache: fresh hits without I/O, one shared fetch per key.

Policy (values from :class:`~pdsidecar.settings.Policy`):

- An entry is *fresh* until ``min(fetched + credentials_max_age, expires_at -
  credentials_expiry_margin)``, but at least ``MIN_FRESH`` seconds: an account
  whose source token is already near expiry (Pipedream has not refreshed it
  yet) is then re-read every few seconds, not on every request.
- An entry is *usable* until the source token's own ``expires_at``; an account
  without one (API keys) is usable ``STALE_ALLOWANCE`` past fresh. When a
  fetch fails with RateLimited/UpstreamUnavailable and
  ``serve_stale_on_upstream_error`` is set, a usable entry is served instead
  (static stability) and kept fresh for the error's retry_after (or
  ``STALE_RETRY``), so a hot key does not hammer a failing upstream.
- Misses are coalesced: one ``asyncio.Task`` per key, which callers await
  through ``asyncio.shield``; a caller that times out or is cancelled leaves
  the fetch running for the others. The fetch itself runs without any one
  caller's deadline (the upstream's own timeouts and retry budget bound it).
- Fetches are admitted by a :class:`~pdsidecar.credentials.admission.FetchGate`
  (fair per caller; refused at once with OVERLOADED when they could not start
  in time). A fetch still queued there when its last waiting caller leaves is
  withdrawn: a cancelled caller's work never reaches Pipedream unless it had
  already started. A fetch whose source only waits for a read made elsewhere
  (another sidecar's) lends its slot meanwhile and takes one again, through its
  caller's queue, only when it calls Pipedream after all.
- ``fetched_at`` is when the fetch *started*: the data is at least that new.
- ACCOUNT_NOT_FOUND is remembered for ``not_found_ttl`` seconds (3 by
  default; at most ``cache_max_entries`` ids): repeated lookups of an unknown
  id cost one request, and an account connected meanwhile works once that
  short time has passed. It also drops any cached entry for the key (the
  account was deleted).
- ``rejected_access_token`` refetches a fresh entry at most once per
  ``rejected_token_interval`` per account while the rejected value is the same
  (see :meth:`AccountCache.get`).
- Each fetch belongs to its connection's config generation: a reload that
  drops a connection's accounts (:meth:`AccountCache.drop_connection`) also
  detaches its fetches in flight, whose results are then given to the callers
  that waited for them and never cached. It keeps the versions held: an older
  value offered after the reload is still refused.
- Size is bounded by ``cache_max_entries`` with second-chance (CLOCK)
  eviction: a hit only sets a flag; eviction skips flagged entries once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from pdsidecar.clock import Clock
from pdsidecar.credentials.admission import FetchGate, Ticket
from pdsidecar.credentials.budget import ReadBudget
from pdsidecar.credentials.recall import Recall
from pdsidecar.credentials.source import (
    MIN_FRESH,
    STALE_ALLOWANCE,
    AccountRead,
    AccountSource,
    CacheKey,
    Fetched,
    Notices,
    PipedreamAccounts,
    Upstream,
)
from pdsidecar.errors import (
    AccountNotFound,
    DeadlineExceeded,
    Overloaded,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy

log = logging.getLogger(__name__)

__all__ = ["MIN_FRESH", "STALE_ALLOWANCE", "AccountCache", "CacheEntry", "CacheKey"]

# Backoff after a failed refresh served stale, when the error names no retry_after.
STALE_RETRY: Final = 5.0


@dataclass(slots=True)
class CacheEntry:
    account: Account
    fetched_at: float  # monotonic
    fresh_until: float  # monotonic
    usable_until: float  # monotonic
    version: int  # see credentials/source.py: never lower than one held before
    # Second-chance bit: set on every hit, and on a new entry so eviction
    # never drops the entry just fetched for waiting callers.
    used: bool = True


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0  # fetches started
    coalesced: int = 0  # callers that joined a fetch already in flight
    stale_served: int = 0  # answers from a stale entry because the upstream failed
    refetches: int = 0  # fetches forced by a rejected token
    evictions: int = 0
    not_found_hits: int = 0  # ACCOUNT_NOT_FOUND answered from memory
    withdrawn: int = 0  # queued fetches dropped because every waiter left


class AccountCache:
    def __init__(
        self,
        policy: Policy,
        clock: Clock,
        source: AccountSource | None = None,
        notices: Notices | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._source = source if source is not None else PipedreamAccounts(policy, clock)
        self.notices = notices if notices is not None else Notices()
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._inflight: dict[CacheKey, asyncio.Task[Account]] = {}
        self._tickets: dict[asyncio.Task[Account], Ticket] = {}
        self._waiters: dict[CacheKey, int] = {}
        self._recall = Recall(policy, clock)  # unknown ids, rejected tokens
        self._generations: dict[str, int] = {}
        self.gate = FetchGate(
            policy.upstream_concurrency, policy.fetch_queue_wait, clock, ReadBudget(policy, clock)
        )
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: CacheKey) -> CacheEntry | None:
        """The entry for ``key``, fresh or not, without counting or fetching."""
        return self._entries.get(key)

    async def get(
        self,
        key: CacheKey,
        upstream: Upstream,
        *,
        deadline: float | None,
        caller: str = "",
        rejected: Callable[[Account], bool] | None = None,
        rejected_value: bytes | None = None,
        started_at: float | None = None,
        newer_than: int = 0,
        client_id: str = "",
    ) -> Account:
        """The account for ``key``: cached while fresh, else read once for all callers.

        ``upstream`` is one Pipedream read; the cache's source decides whether it
        runs (see credentials/source.py). ``caller`` names who asks, for the fetch
        gate's fair queues. ``newer_than`` and ``client_id``: see :class:`AccountRead`.

        ``rejected``/``started_at``: the caller's source refused a credential.
        If the cached account still holds it (``rejected`` is true) and was
        fetched before ``started_at``, it is fetched again, however fresh; a
        hundred such callers share that one fetch and get what Pipedream has
        now. With ``rejected_value`` (a digest of the refused value) that
        refetch happens at most once per ``rejected_token_interval``: inside it,
        the same value gets what Pipedream said a moment ago. A stale copy is
        never served to them on upstream errors.
        """
        missing = self._recall.missing(key)
        if missing is not None:
            self.stats.not_found_hits += 1
            raise missing
        now = self._clock.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now < entry.fresh_until:
            recall = self._recall
            if (
                rejected is None
                or not self._must_refetch(entry, rejected, started_at)
                or (key not in self._inflight and recall.refetched_lately(key, rejected_value))
            ):
                entry.used = True
                self.stats.hits += 1
                return entry.account
            if key not in self._inflight:
                self.stats.refetches += 1
        request = AccountRead(
            key,
            upstream,
            client_id,
            rejected,
            started_at,
            newer_than,
            deadline=deadline,
            caller=caller,
        )
        return await self._wait(key, request, deadline, rejected, caller)

    @staticmethod
    def _must_refetch(
        entry: CacheEntry, rejected: Callable[[Account], bool], started_at: float | None
    ) -> bool:
        return (started_at is None or entry.fetched_at < started_at) and rejected(entry.account)

    def is_current(self, key: CacheKey, entry: CacheEntry) -> bool:
        """Whether ``entry`` is still the fresh entry for ``key``; counted as a hit if so.

        Lets a caller that kept an answer derived from ``entry`` reuse it without
        looking the account up again, and drop it once the entry is replaced,
        invalidated or no longer fresh.
        """
        if self._entries.get(key) is entry and self._clock.monotonic() < entry.fresh_until:
            entry.used = True
            self.stats.hits += 1
            return True
        return False

    def drop_connection(self, connection: str) -> int:
        """Forget every cached account of ``connection`` (config reload); how many.

        Fetches in flight for it are detached: their callers still get their
        answer, but it is not cached, and the next caller fetches anew.
        """
        self._generations[connection] = self._generations.get(connection, 0) + 1
        for key in [key for key in self._inflight if key[0] == connection]:
            del self._inflight[key]
        self._recall.forget_connection(connection)
        keys = [key for key in self._entries if key[0] == connection]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def held(self, key: CacheKey) -> int:
        """The newest version this cache held for ``key`` (0: none it remembers)."""
        return self._recall.held(key)

    def offer(self, key: CacheKey, fetched: Fetched) -> bool:
        """Take ``fetched`` (read by another sidecar) if newer than any version held and
        still usable; tells the listeners. Whether it was taken."""
        if fetched.version <= self.held(key) or self._clock.monotonic() >= fetched.usable_until:
            return False
        self._put(key, _entry(fetched))
        return True

    async def aclose(self) -> None:
        """Cancel fetches still in flight (at shutdown, after the server has drained)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait(
        self,
        key: CacheKey,
        request: AccountRead,
        deadline: float | None,
        rejected: Callable[[Account], bool] | None,
        caller: str,
    ) -> Account:
        task = self._inflight.get(key)
        if task is None:
            try:
                ticket = self.gate.admit(caller, deadline)
            except Overloaded:
                stale = self._stale_for(key, rejected)
                if stale is None:
                    raise
                self.stats.stale_served += 1
                return stale.account
            self.stats.misses += 1
            generation = self._generations.get(key[0], 0)
            task = asyncio.get_running_loop().create_task(
                self._fetch(key, request, ticket, generation)
            )
            self._inflight[key] = task
            self._tickets[task] = ticket
            task.add_done_callback(lambda done: self._fetch_done(key, done))
        else:
            self.stats.coalesced += 1
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            if deadline is None:
                return await asyncio.shield(task)
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(asyncio.shield(task), remaining)
        except (RateLimited, UpstreamUnavailable, Overloaded, TimeoutError) as error:
            # (Overloaded: a fetch that lent its slot could not get one back in time, or
            # the fleet refused the read, see credentials/budget.py.)
            stale = self._stale_for(key, rejected)
            if stale is None:
                if isinstance(error, TimeoutError):
                    raise DeadlineExceeded(
                        "deadline exceeded while waiting for Pipedream", metadata=_ids(key)
                    ) from None
                raise
            self.stats.stale_served += 1
            log.info(
                "serving cached account %s (connection %s, project %s) past its max age: %s",
                key[3],
                key[0],
                key[1],
                "deadline exceeded" if isinstance(error, TimeoutError) else error.reason,
            )
            return stale.account
        finally:
            self._leave(key, task)

    def _leave(self, key: CacheKey, task: asyncio.Task[Account]) -> None:
        """One caller stopped waiting; the last one withdraws a fetch still queued."""
        left = self._waiters.get(key, 1) - 1
        if left > 0:
            self._waiters[key] = left
            return
        self._waiters.pop(key, None)
        ticket = self._tickets.get(task)
        if task.done() or ticket is None or self._inflight.get(key) is not task:
            return
        if self.gate.withdraw(ticket):
            self.stats.withdrawn += 1
            del self._inflight[key]  # now: a caller arriving next must not join it
            task.cancel()

    def _stale_for(
        self, key: CacheKey, rejected: Callable[[Account], bool] | None
    ) -> CacheEntry | None:
        entry = self._entries.get(key)
        if (
            entry is None
            or not self._policy.serve_stale_on_upstream_error
            or self._clock.monotonic() >= entry.usable_until
            or (rejected is not None and rejected(entry.account))
        ):
            return None
        return entry

    async def _fetch(
        self, key: CacheKey, request: AccountRead, ticket: Ticket, generation: int
    ) -> Account:
        await self.gate.wait(ticket)
        try:
            request = dataclasses.replace(
                request,
                held=self.held(key),
                upstream=self._slotted(ticket, request),
                waiting=lambda: self.gate.lend(ticket),
            )
            try:
                result = await self._source.read(request)
            except AccountNotFound as error:
                self.gate.not_found(ticket)
                if self._generations.get(key[0], 0) == generation:
                    self._entries.pop(key, None)
                    self._recall.not_found(key, error)
                raise
            except UpstreamError as error:
                self._back_off(key, error)
                raise
            # Detached by a reload: the callers that waited get it, the cache does not.
            current = self._generations.get(key[0], 0) == generation
            if result.version < self.held(key):
                # Older than what this sidecar held (a source's bug): never taken.
                entry = self._entries.get(key)
                return entry.account if entry is not None else result.account
            if current:
                self._put(key, _entry(result))
            return result.account
        finally:
            self.gate.release(ticket)

    def _slotted(self, ticket: Ticket, request: AccountRead) -> Upstream:
        """The Pipedream read, which takes back a slot the fetch lent while it waited."""

        async def read() -> Account:
            self.gate.reclaim(ticket, request.deadline)
            await self.gate.wait(ticket)
            return await request.upstream()

        return read

    def _fetch_done(self, key: CacheKey, task: asyncio.Task[Account]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        self._tickets.pop(task, None)
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning if nobody waited

    def _back_off(self, key: CacheKey, error: UpstreamError) -> None:
        """Keep a usable entry fresh a little longer so callers stop re-fetching it."""
        entry = self._entries.get(key)
        if not isinstance(error, (RateLimited, UpstreamUnavailable)) or entry is None:
            return
        now = self._clock.monotonic()
        if self._policy.serve_stale_on_upstream_error and now < entry.usable_until:
            pause = error.retry_after if error.retry_after else STALE_RETRY
            entry.fresh_until = max(entry.fresh_until, min(now + pause, entry.usable_until))

    def _put(self, key: CacheKey, entry: CacheEntry) -> None:
        self._entries.pop(key, None)  # re-insert at the young end
        self._recall.found(key)
        self._recall.hold(key, entry.version)
        self._entries[key] = entry
        self._evict()
        self.notices.stored(key, entry.account)

    def _evict(self) -> None:
        entries = self._entries
        limit = max(1, self._policy.cache_max_entries)
        while len(entries) > limit:
            key, entry = entries.popitem(last=False)
            if entry.used:
                entry.used = False
                entries[key] = entry  # second chance: back to the young end
            else:
                self.stats.evictions += 1


def _entry(fetched: Fetched) -> CacheEntry:
    return CacheEntry(
        fetched.account,
        fetched.fetched_at,
        fetched.fresh_until,
        fetched.usable_until,
        fetched.version,
    )


def _ids(key: CacheKey) -> dict[str, str]:
    return {"connection": key[0], "project_id": key[1], "account_id": key[3]}
