"""Where the account cache gets an account: the :class:`AccountSource` seam.

On a miss the cache asks its source for one :class:`AccountRead`. The plain
source, :class:`PipedreamAccounts`, reads Pipedream once. A decorator (the
fleet's tier, :mod:`pdsidecar.fleet.accounts`) wraps a source and is a source
itself; the runtime chains them when it builds the cache and swaps the chain
through a :class:`SourceHolder` on reload. The cache never knows which it has.

Every answer is :class:`Fetched`: the account, its deadlines (monotonic) and a
**version**, ``max(fetched-at in microseconds, newest version held + 1)``. A
later fetch therefore always carries a greater version than any this sidecar
held, and the cache never takes (serves, pushes to watchers) a version older
than one it held for that account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from pdsidecar.clock import Clock, wall_to_monotonic
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy

# (connection, project_id, environment, account_id)
CacheKey = tuple[str, str, str, str]
Upstream = Callable[[], Awaitable[Account]]

MIN_FRESH: Final = 5.0
# How long past fresh an account without expires_at (API keys) may be served stale.
STALE_ALLOWANCE: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Fetched:
    """An account as read, with its deadlines (monotonic seconds) and version."""

    account: Account
    fetched_at: float
    fresh_until: float
    usable_until: float
    version: int


@dataclass(frozen=True, slots=True)
class AccountRead:
    """One read the cache asks of its source (shared by every caller waiting on the key)."""

    key: CacheKey
    # One Pipedream read of the account, on the connection's own timeouts.
    upstream: Upstream
    # The connection's Pipedream client id (a fleet names its shared entry with it).
    client_id: str = ""
    # A caller's source refused a credential: an answer still holding it is no good,
    # unless it was fetched after ``started_at`` (monotonic).
    rejected: Callable[[Account], bool] | None = None
    started_at: float | None = None
    # A scheduled re-read (a watcher's): only a version past this one answers it.
    newer_than: int = 0
    # The newest version this sidecar held for the key (set by the cache).
    held: int = 0
    # The deadline of the caller that started the read: bounds waits on other sidecars.
    deadline: float | None = None
    # Set by the cache: a source that waits for a read made elsewhere (another
    # sidecar's) calls it, and the fetch's local slot is lent to other fetches
    # until the source calls ``upstream`` (which takes a slot again first).
    waiting: Callable[[], None] = lambda: None
    # Who started the read (the fetch gate's caller): a fleet counts its Pipedream reads.
    caller: str = ""


class AccountSource(Protocol):
    async def read(self, request: AccountRead) -> Fetched:
        """The account ``request`` names; raises what the upstream raises."""
        ...


def next_version(clock: Clock, held: int) -> int:
    """A version greater than ``held``: fetched-at in microseconds, or held + 1."""
    return max(int(clock.wall() * 1_000_000), held + 1)


def deadlines(
    policy: Policy, clock: Clock, account: Account, fetched_at: float, version: int
) -> Fetched:
    """``account`` fetched at ``fetched_at``, fresh and usable per ``policy``."""
    fresh = fetched_at + policy.credentials_max_age
    if account.expires_at is None:
        usable = max(fresh, fetched_at + MIN_FRESH) + STALE_ALLOWANCE
    else:
        usable = wall_to_monotonic(clock, account.expires_at)
        fresh = min(fresh, usable - policy.credentials_expiry_margin)
    fresh = max(fresh, fetched_at + MIN_FRESH)
    return Fetched(account, fetched_at, fresh, usable, version)


class PipedreamAccounts:
    """The plain source: one Pipedream read, deadlines per policy, the next version."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self._policy, self._clock = policy, clock

    async def read(self, request: AccountRead) -> Fetched:
        started = self._clock.monotonic()
        account = await request.upstream()
        version = next_version(self._clock, request.held)
        return deadlines(self._policy, self._clock, account, started, version)


class SourceHolder:
    """The source reads go through now; a reload swaps it (the fleet's tier on or off)."""

    def __init__(self, source: AccountSource) -> None:
        self._source = source

    @property
    def current(self) -> AccountSource:
        return self._source

    def swap(self, source: AccountSource) -> None:
        self._source = source

    async def read(self, request: AccountRead) -> Fetched:
        return await self._source.read(request)


Stored = Callable[[CacheKey, Account], None]


class Notices:
    """Who hears of every account the cache stores: the watch hub subscribes when built.

    A list the cache owns and tells; nothing is assigned onto the cache afterwards.
    """

    def __init__(self) -> None:
        self._listeners: list[Stored] = []

    def subscribe(self, listener: Stored) -> None:
        self._listeners.append(listener)

    def stored(self, key: CacheKey, account: Account) -> None:
        for listener in self._listeners:
            listener(key, account)
