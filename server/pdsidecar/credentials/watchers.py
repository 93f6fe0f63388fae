"""What :mod:`pdsidecar.credentials.watch` keeps per stream, per question and per account.

A :class:`Watcher` is one stream's place; a :class:`Group` the watchers of one account
asking the same question (source, fields, user), answered and rendered once for all;
a :class:`Feed` one watched account with its groups and its re-read timer. The hub
(watch.py) owns them and does all the changing; a watcher only waits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import anyio

from pdsidecar.credentials.broker import AccountQuery, CredentialsResult
from pdsidecar.credentials.cache import CacheKey
from pdsidecar.errors import SidecarError
from pdsidecar.pipedream.models import Account


@dataclass(slots=True)
class WatchStats:
    watchers: int = 0  # open now
    started: int = 0
    refused: int = 0  # over max_watchers
    rereads: int = 0  # scheduled re-reads begun (each joins or starts one cache fetch)
    messages: int = 0  # values handed to watchers after their first


class Watcher:
    """One stream's place in its group; :meth:`next` waits for a value it has not sent."""

    __slots__ = ("_sent", "_stats", "_waiter", "error", "group")

    def __init__(self, stats: WatchStats, group: Group) -> None:
        self._stats = stats
        self.group = group
        self._sent: object = None
        self._waiter: asyncio.Future[None] | None = None
        self.error: SidecarError | None = None

    async def next(self) -> Any:
        """The next rendered value (the first at once); raises the error that ends the stream."""
        while True:
            if self.error is not None:
                raise self.error
            payload = self.group.payload
            if payload is not None and payload is not self._sent:
                if self._sent is not None:
                    self._stats.messages += 1
                self._sent = payload
                return payload
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Group:
    """Watchers of one feed with the same query: one answer, rendered once."""

    __slots__ = ("payload", "query", "result", "watchers")

    def __init__(self, query: AccountQuery) -> None:
        self.query = query
        self.watchers: set[Watcher] = set()
        self.result: CredentialsResult | None = None
        self.payload: Any = None


class Feed:
    """One watched account: its latest copy, its groups, its re-read timer and the cancel
    scope of its re-read (which runs in the hub's task group)."""

    __slots__ = ("account", "failures", "groups", "key", "reading", "timer", "unchanged")

    def __init__(self, key: CacheKey) -> None:
        self.key = key
        self.groups: dict[AccountQuery, Group] = {}
        self.account: Account | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.reading: Reread | None = None
        self.unchanged = 0  # re-reads in a row that found the same credentials
        self.failures = 0  # re-reads in a row that failed upstream

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.reading is not None:
            self.reading.cancel()
            self.reading = None


class Reread:
    """A feed's re-read from when it falls due until it ends (it runs in the hub's task
    group); cancelled before it began, it never begins."""

    __slots__ = ("cancelled", "scope")

    def __init__(self) -> None:
        self.cancelled = False
        self.scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()
