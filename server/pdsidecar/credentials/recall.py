"""What the account cache remembers besides accounts: unknown ids and rejected tokens.

Both memories are keyed like the cache, bounded by ``Policy.cache_max_entries``
(the oldest go first) and forgotten per connection on reload:

- :meth:`Recall.missing`: an ACCOUNT_NOT_FOUND answer is replayed for
  ``Policy.not_found_ttl`` seconds, so lookups of an id Pipedream does not know
  cost one request per few seconds, whoever sends them.
- :meth:`Recall.refetched_lately`: a ``rejected_access_token`` refetches an
  account at most once per ``Policy.rejected_token_interval`` while the
  rejected value (a digest of it) stays the same.
- :meth:`Recall.held`: the newest version held per account, kept past the
  entry's eviction, so an older copy (a value written back into Redis) is never
  taken again (see credentials/source.py).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

from pdsidecar.clock import Clock
from pdsidecar.errors import AccountNotFound
from pdsidecar.settings import Policy

# (connection, project_id, environment, account_id), as in the cache.
Key = tuple[str, str, str, str]
V = TypeVar("V")


class _Bounded(OrderedDict[Key, V], Generic[V]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = max(1, limit)

    def put(self, key: Key, value: V) -> None:
        self.pop(key, None)
        self[key] = value
        while len(self) > self._limit:
            self.popitem(last=False)


class Recall:
    def __init__(self, policy: Policy, clock: Clock) -> None:
        self._policy = policy
        self._clock = clock
        self._missing: _Bounded[tuple[float, AccountNotFound]] = _Bounded(policy.cache_max_entries)
        self._rejections: _Bounded[tuple[bytes, float]] = _Bounded(policy.cache_max_entries)
        # Twice the cache's bound: an evicted account's version outlives its entry.
        self._versions: _Bounded[int] = _Bounded(2 * policy.cache_max_entries)

    def missing(self, key: Key) -> AccountNotFound | None:
        """A fresh copy of the remembered ACCOUNT_NOT_FOUND for ``key``, or None."""
        found = self._missing.get(key)
        if found is None:
            return None
        until, error = found
        if self._clock.monotonic() >= until:
            del self._missing[key]
            return None
        # A new instance: raising one in many tasks would chain their tracebacks.
        return AccountNotFound(error.message, metadata=error.metadata)

    def not_found(self, key: Key, error: AccountNotFound) -> None:
        if self._policy.not_found_ttl > 0:
            self._missing.put(key, (self._clock.monotonic() + self._policy.not_found_ttl, error))

    def found(self, key: Key) -> None:
        self._missing.pop(key, None)

    def refetched_lately(self, key: Key, value: bytes | None) -> bool:
        """Whether ``value`` caused a refetch of ``key`` within the interval; else note one."""
        if value is None:
            return False
        now = self._clock.monotonic()
        last = self._rejections.get(key)
        interval = self._policy.rejected_token_interval
        if last is not None and last[0] == value and now < last[1] + interval:
            return True
        self._rejections.put(key, (value, now))
        return False

    def held(self, key: Key) -> int:
        return self._versions.get(key, 0)

    def hold(self, key: Key, version: int) -> None:
        if version > self._versions.get(key, 0):
            self._versions.put(key, version)

    def forget_connection(self, connection: str) -> None:
        """What a reloaded connection's new credentials must learn again: unknown ids and
        rejections. Not the versions held: they are times, and a value older than one this
        sidecar served (written back to Redis, heard of by an event) stays refused."""
        held: _Bounded[Any]
        for held in (self._missing, self._rejections):
            for key in [key for key in held if key[0] == connection]:
                del held[key]
