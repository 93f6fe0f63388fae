"""Watchers of accounts' credentials: one feed per account, one re-read per refresh.

:class:`WatchHub` holds every WatchCredentials stream of the process. Watchers
of the same account share one :class:`Feed` (keyed like the account cache),
and watchers asking the same question (source, fields, user) share one
:class:`Group` inside it (both in watchers.py), so an answer is checked and rendered once for all
of them, however many there are.

When a feed's account changes, in whatever way the cache learnt it, every
group is answered again and its watchers are woken if their credentials (or
their ``expires_at``) changed. The cache tells the hub of every account it
stores (it subscribes to the cache's :class:`~pdsidecar.credentials.source.Notices`),
so a ``rejected_access_token`` refetch by any caller, or a newer read another
sidecar of the fleet stored, reaches the watchers at once.

Schedule (one timer per feed, never per watcher):

- Pipedream names ``next_refresh_at``: re-read just after it (``SETTLE``),
  plus a random share of what is left until ``expires_at`` (at most
  ``policy.watch_jitter``), so a thousand accounts Pipedream refreshed in the
  same second are not re-read in the same second.
- Otherwise, ahead of ``expires_at`` by ``credentials_expiry_margin`` (jittered
  earlier); inside that margin (Pipedream is late), every ``POLL_MIN`` seconds,
  doubling while the answer does not change, never past a quarter of the time left.
- No ``expires_at`` (API keys): every ``credentials_max_age``.

Re-reads go through :meth:`CredentialBroker.reread`, the cache's single
flight: one upstream read per account, joined by any concurrent GetCredentials
miss. Upstream trouble (rate limits, outages, OVERLOADED) keeps the last good
value and tries again later; an account problem (dead, not found, another user's, ...)
ends the group's streams with the same error GetCredentials would raise.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable
from typing import Any, Final

from pdsidecar.clock import Clock
from pdsidecar.credentials.broker import (
    AccountQuery,
    CredentialBroker,
    CredentialsResult,
    key_of,
)
from pdsidecar.credentials.cache import CacheKey
from pdsidecar.credentials.watchers import Feed, Group, Watcher, WatchStats
from pdsidecar.errors import (
    AccountProblem,
    Overloaded,
    RateLimited,
    SidecarError,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy

log = logging.getLogger(__name__)

# Seconds after next_refresh_at before the first re-read: Pipedream's refresh takes a moment.
SETTLE: Final = 0.5
# At most this share of the time between next_refresh_at and expires_at is jitter.
JITTER_SHARE: Final = 0.25
# Polling while Pipedream's refresh is due but not seen yet, and after upstream errors.
POLL_MIN: Final = 1.0
POLL_MAX: Final = 30.0
# Never re-read more often than this.
MIN_DELAY: Final = 0.2

Render = Callable[[CredentialsResult], Any]


class WatchHub:
    def __init__(
        self,
        broker: CredentialBroker,
        policy: Policy,
        clock: Clock,
        render: Render,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._broker = broker
        self._policy = policy
        self._clock = clock
        self._render = render
        self._rng = rng or random.Random()
        self._feeds: dict[CacheKey, Feed] = {}
        self._stopping: SidecarError | None = None
        self.stats = WatchStats()
        broker.cache.notices.subscribe(self._stored)

    def __len__(self) -> int:
        return self.stats.watchers

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    async def watch(
        self, query: AccountQuery, *, deadline: float | None, caller: str = ""
    ) -> Watcher:
        """A watcher whose first value is what GetCredentials answers now, read through
        ``caller``'s admission queue as GetCredentials' is.

        Raises what GetCredentials would raise, TOO_MANY_WATCHERS past
        ``policy.max_watchers``, or SIDECAR_STOPPING once :meth:`close` ran.
        """
        if self._stopping is not None:
            raise self._stopping
        if self.stats.watchers >= self._policy.max_watchers:
            self.stats.refused += 1
            raise SidecarError(
                f"This sidecar already holds its maximum of {self._policy.max_watchers} "
                "WatchCredentials streams (policy.max_watchers)",
                reason="TOO_MANY_WATCHERS",
                retry_after=POLL_MAX,
            )
        key = key_of(query)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(key)
        group = feed.groups.get(query)
        if group is None:
            group = feed.groups[query] = Group(query)
        # Joined before the first read, so a value stored meanwhile is not missed.
        watcher = Watcher(self.stats, group)
        group.watchers.add(watcher)
        self.stats.watchers += 1
        self.stats.started += 1
        try:
            result = await self._broker.get_credentials(query, deadline=deadline, caller=caller)
        except BaseException:
            self.leave(watcher)
            raise
        if group.result is None and watcher.error is None:
            self._offer(group, result)
        if feed.account is None:
            feed.account = result.account
            self._schedule(feed)
        return watcher

    def leave(self, watcher: Watcher) -> None:
        """Forget a watcher whose stream ended (once per watcher from :meth:`watch`)."""
        self.stats.watchers -= 1
        group = watcher.group
        group.watchers.discard(watcher)
        if group.watchers:
            return
        feed = self._feeds.get(key_of(group.query))
        if feed is None or feed.groups.get(group.query) is not group:
            return
        del feed.groups[group.query]
        if not feed.groups:
            feed.cancel()
            del self._feeds[feed.key]

    def reread_connections(self, names: set[str]) -> None:
        """Re-read soon every account watched through these connections (a reload
        replaced or removed them: the answer may differ, or be an error now)."""
        for feed in list(self._feeds.values()):
            if feed.key[0] in names:
                self._schedule(feed, self._rng.uniform(0, POLL_MIN))

    def close(self, error: SidecarError) -> None:
        """End every stream with ``error`` and refuse new ones (at shutdown)."""
        self._stopping = error
        for feed in list(self._feeds.values()):
            self._fail(feed, error)

    # --- values in ---

    def _stored(self, key: CacheKey, account: Account) -> None:
        feed = self._feeds.get(key)
        if feed is not None and account is not feed.account:
            if feed.account is None or account.credentials != feed.account.credentials:
                feed.unchanged = 0
            self._apply(feed, account)
            self._schedule(feed)

    def _apply(self, feed: Feed, account: Account) -> None:
        if account is feed.account:
            return
        feed.account = account
        for group in list(feed.groups.values()):
            try:
                result = self._broker.result_for(group.query, account)
            except AccountProblem as error:
                self._fail_group(feed, group, error)
                continue
            self._offer(group, result)
        if not feed.groups:
            feed.cancel()
            self._feeds.pop(feed.key, None)

    def _offer(self, group: Group, result: CredentialsResult) -> None:
        """Wakes the group's watchers if the caller-visible credentials changed."""
        last = group.result
        group.result = result
        if (
            last is not None
            and last.credentials == result.credentials
            and last.expires_at == result.expires_at
        ):
            return
        group.payload = self._render(result)
        for watcher in group.watchers:
            watcher.wake()

    def _fail_group(self, feed: Feed, group: Group, error: SidecarError) -> None:
        for watcher in group.watchers:
            watcher.error = error
            watcher.wake()
        feed.groups.pop(group.query, None)

    def _fail(self, feed: Feed, error: SidecarError) -> None:
        for group in list(feed.groups.values()):
            self._fail_group(feed, group, error)
        feed.cancel()
        self._feeds.pop(feed.key, None)

    # --- the schedule ---

    def _schedule(self, feed: Feed, delay: float | None = None) -> None:
        if feed.account is None or self._feeds.get(feed.key) is not feed:
            return
        if feed.timer is not None:
            feed.timer.cancel()
        if delay is None:
            delay = self._delay(feed.account, feed.unchanged)
        loop = asyncio.get_running_loop()
        # A fresh context: the re-read belongs to no one call (its logs carry no request id).
        feed.timer = loop.call_later(
            max(MIN_DELAY, delay), self._due, feed, context=contextvars.Context()
        )

    def _delay(self, account: Account, unchanged: int) -> float:
        """Seconds until the feed's next re-read (see the module docstring)."""
        policy, now = self._policy, self._clock.wall()
        expires, refresh = account.expires_at, account.next_refresh_at
        spread = policy.watch_jitter
        if refresh is not None and refresh > now and (expires is None or refresh < expires):
            window = (expires - refresh) * JITTER_SHARE if expires is not None else spread
            return refresh - now + SETTLE + self._rng.uniform(0, min(spread, window))
        if expires is None:
            return policy.credentials_max_age * (1 + self._rng.uniform(0, JITTER_SHARE))
        ahead = expires - policy.credentials_expiry_margin - now
        if ahead > 0:
            return ahead - self._rng.uniform(0, min(spread, ahead * JITTER_SHARE))
        # Pipedream's refresh is due (or late, or the token expired): poll, backing off.
        poll = min(POLL_MIN * 2.0 ** min(unchanged, 8), POLL_MAX)
        left = expires - now
        return min(poll, left / 4) if left > 4 * POLL_MIN else poll

    def _due(self, feed: Feed) -> None:
        feed.timer = None
        if self._feeds.get(feed.key) is not feed or feed.task is not None:
            return
        feed.task = asyncio.get_running_loop().create_task(self._reread(feed))

    async def _reread(self, feed: Feed) -> None:
        before = feed.account
        assert before is not None
        query = next(iter(feed.groups))
        self.stats.rereads += 1
        try:
            account = await self._broker.reread(query, before)
        except (RateLimited, UpstreamUnavailable, Overloaded) as error:
            # Upstream trouble, or this sidecar's own admission full: the watchers keep
            # their value; try again later.
            feed.failures += 1
            pause = error.retry_after or min(POLL_MIN * 2.0 ** min(feed.failures, 8), POLL_MAX)
            log.info(
                "watched account %s (connection %s): re-read failed (%s); again in %.0f s",
                feed.key[3],
                feed.key[0],
                error.reason,
                pause,
            )
            feed.task = None
            self._schedule(feed, pause * (1 + self._rng.uniform(0, JITTER_SHARE)))
            return
        except SidecarError as error:
            feed.task = None
            self._fail(feed, error)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.error("watched account %s: re-read failed unexpectedly", feed.key[3])
            log.debug("unexpected error detail", exc_info=True)
            feed.task = None
            self._schedule(feed, POLL_MAX)
            return
        feed.task = None
        feed.failures = 0
        same = account is before or account.credentials == before.credentials
        feed.unchanged = feed.unchanged + 1 if same else 0
        self._apply(feed, account)
        self._schedule(feed)
