"""One Pipedream token per connection for a whole fleet: a :class:`TokenSource` decorator.

:class:`FleetTokens` wraps the plain source (one Pipedream token request) for
every connection of the sidecar. A provider asks it only when its own token is
in a refresh window (the fresh path never reaches Redis):

- The fleet's token, if fresh, is taken as is (never one expiring before the
  provider's own: an older token written back is ignored).
- Otherwise one sidecar refreshes, the one that takes the token lock
  (:mod:`pdsidecar.fleet.flight`, the same single flight as accounts). It
  stores the new token sealed, and tells the fleet.
- The others, inside the advisory window, keep their current token; inside the
  mandatory window (or with none) they wait, a bounded time, for the new one,
  then fetch for themselves.
- A 401 deletes the shared token only if it still holds the rejected value
  (compare-and-delete on the stored bytes): a token another sidecar stored since
  is kept.

Redis marked down: the inner source fetches from Pipedream, as without a tier.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pdsidecar.clock import Clock, wall_to_monotonic
from pdsidecar.credentials.source import next_version
from pdsidecar.fleet.flight import single_flight, wait_until
from pdsidecar.fleet.store import FleetStore, FleetUnavailable, Lease, Read, Slot
from pdsidecar.pipedream.client import PipedreamToken
from pdsidecar.pipedream.tokens import TokenProvider, TokenSource
from pdsidecar.secret import Secret

Obtained = tuple[PipedreamToken, float | None]


@dataclass
class ConnectionTokens:
    """One connection's place in the fleet, and what this sidecar did there."""

    slot: Slot
    rejected: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    fetched: int = 0  # Pipedream requests this sidecar made
    adopted: int = 0  # tokens taken from the fleet


class FleetTokens:
    def __init__(
        self, store: FleetStore, inner: TokenSource, pipedream_url: str, clock: Clock
    ) -> None:
        self._store, self._inner, self._url, self._clock = store, inner, pipedream_url, clock
        self.connections: dict[str, ConnectionTokens] = {}

    def rejected(self, provider: TokenProvider, token: Secret) -> None:
        self._of(provider).rejected.append(token.reveal())
        self._inner.rejected(provider, token)

    async def obtain(
        self,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        *,
        force: bool,
        deadline: float | None,
    ) -> Obtained:
        mine = self._of(provider)
        seen: list[bytes | None] = []  # the stored bytes at the first look

        async def take(read: Read | None) -> Obtained | None:
            found = await self._opened(mine, read)
            if not seen:
                seen.append(found[0].blob if found is not None else None)
            if found is None:
                return None
            stored, token, lifetime = found
            current = provider.current
            if current is not None and token.expires_at_wall < current.expires_at_wall:
                return None  # older than the token held: never taken back
            # A forced refresh takes only a token stored after it began.
            if (not force or stored.blob != seen[0]) and provider.is_fresh(token):
                mine.adopted += 1
                return token, lifetime
            usable.append((token, lifetime))
            return None

        usable: list[tuple[PipedreamToken, float]] = []

        def meanwhile() -> Obtained | None:
            # Another sidecar is refreshing. In the advisory window, go on with the current
            # token, or the fleet's one while it is still usable (a sidecar just started).
            current = provider.current
            if force:
                return None
            if current is not None and provider.is_usable(current):
                return current, 0.0
            for token, lifetime in reversed(usable):
                if provider.is_usable(token):
                    mine.adopted += 1
                    return token, lifetime
            return None

        async def lead(lease: Lease, read: Read | None) -> Obtained:
            found = await take(read)  # stored while this sidecar waited for the lock?
            if found is not None:
                return found
            mine.fetched += 1
            obtained = await self._inner.obtain(provider, fetch, force=force, deadline=deadline)
            with contextlib.suppress(FleetUnavailable):
                await keep(lease, obtained)
            return obtained

        async def alone() -> Obtained:
            mine.fetched += 1
            return await self._inner.obtain(provider, fetch, force=force, deadline=deadline)

        async def keep(lease: Lease, obtained: Obtained) -> None:
            token, _ = obtained
            now_wall = self._clock.wall()
            lifetime = token.expires_at_mono - self._clock.monotonic()
            record = {"t": token.value.reveal(), "e": token.expires_at_wall, "l": lifetime}
            ttl = token.expires_at_wall - now_wall
            data = json.dumps(record).encode()
            await self._store.store_release(lease, "v", data, ttl, next_version(self._clock, 0))

        try:
            return await single_flight(
                self._store,
                self._clock,
                mine.slot,
                take=take,
                lead=lead,
                alone=alone,
                keep=keep,
                until=wait_until(self._clock, self._store, deadline),
                meanwhile=meanwhile,
            )
        except FleetUnavailable:
            mine.fetched += 1
            return await self._inner.obtain(provider, fetch, force=force, deadline=deadline)

    def _of(self, provider: TokenProvider) -> ConnectionTokens:
        connection = provider.connection
        mine = self.connections.get(connection.name)
        if mine is None or mine.slot != self._slot(provider):
            mine = self.connections[connection.name] = ConnectionTokens(self._slot(provider))
        return mine

    def _slot(self, provider: TokenProvider) -> Slot:
        connection = provider.connection
        return self._store.slot("token", self._url, connection.client_id, connection.scope)

    async def _opened(
        self, mine: ConnectionTokens, read: Read | None
    ) -> tuple[Read, PipedreamToken, float] | None:
        if read is None:
            return None
        try:
            record = json.loads(read.data)
            value, expires, lifetime = str(record["t"]), float(record["e"]), float(record["l"])
        except (ValueError, KeyError, TypeError):
            return None
        if value in mine.rejected:
            # Pipedream refused this very token: drop it for the fleet, unless replaced since.
            with contextlib.suppress(FleetUnavailable):
                await self._store.delete_if(read)
            return None
        token = PipedreamToken(Secret(value), wall_to_monotonic(self._clock, expires), expires)
        return read, token, lifetime
