"""One Pipedream token per connection for a whole fleet, through the shared tier.

A :class:`SharedTokens` is a connection's
:class:`~pdsidecar.pipedream.tokens.TokenSource`; the provider asks it only when
its own token is in a refresh window (the fresh path never reaches Redis):

- The fleet's token, if fresh, is taken as is.
- Otherwise one sidecar refreshes: the one that takes the token lock (an owner
  value, a TTL, renewed while the request runs, released by compare-and-delete).
  It stores the new token sealed, and tells the fleet.
- The others, inside the advisory window, keep their current token; inside the
  mandatory window (or with none) they wait, a bounded time, for the new one.
  A holder that died costs at most the lock's TTL; after that, or when the
  wait reaches its bound, a sidecar fetches for itself.
- A 401 deletes the shared token only if it still holds the rejected value
  (compare-and-delete on the stored bytes): a token another sidecar stored since
  is kept.

Any Redis trouble: the provider fetches from Pipedream itself, as without a tier.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from pdsidecar.clock import Clock, wall_to_monotonic
from pdsidecar.errors import DeadlineExceeded
from pdsidecar.pipedream.client import PipedreamToken
from pdsidecar.pipedream.tokens import TokenProvider
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig
from pdsidecar.shared.store import Lease, Read, SharedStore, SharedUnavailable

# Between looks at the fleet's token while another sidecar refreshes it.
POLL: Final = 0.05


class SharedTokens:
    def __init__(
        self, store: SharedStore, connection: ConnectionConfig, pipedream_url: str, clock: Clock
    ) -> None:
        self._store = store
        self._clock = clock
        self._name = connection.name
        self._slot = store.slot("token", pipedream_url, connection.client_id, connection.scope)
        self._rejected: deque[str] = deque(maxlen=8)
        # Pipedream requests this source made (the rest of the fleet's tokens were adopted).
        self.fetched = 0
        self.adopted = 0

    def rejected(self, token: Secret) -> None:
        self._rejected.append(token.reveal())

    async def obtain(
        self,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        *,
        force: bool,
        deadline: float | None,
    ) -> tuple[PipedreamToken, float | None]:
        try:
            return await self._obtain(provider, fetch, force, deadline)
        except SharedUnavailable:
            self.fetched += 1
            return await fetch(), None

    async def _obtain(
        self,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        force: bool,
        deadline: float | None,
    ) -> tuple[PipedreamToken, float | None]:
        # Waiting for another sidecar ends at the deadline, or after two lock lifetimes.
        give_up = self._clock.monotonic() + 2 * self._store.config.lock_ttl
        seen: bytes | None = None
        first = True
        while True:
            found = await self._read()
            usable: tuple[PipedreamToken, float] | None = None
            if found is not None:
                stored, token, lifetime = found
                if provider.is_usable(token):
                    usable = token, lifetime
                if first:
                    seen = stored.blob
                # A forced refresh takes only a token stored after it began.
                if (not force or stored.blob != seen) and provider.is_fresh(token):
                    self.adopted += 1
                    return token, lifetime
            first = False
            lease, latest = await self._store.lock_get(self._slot, "v")
            if lease is not None:
                async with self._store.holding(lease):
                    return await self._refresh(lease, latest, provider, fetch, force, seen)
            # Another sidecar is refreshing. In the advisory window, go on with the current
            # token, or the fleet's one while it is still usable (a sidecar just started).
            current = provider.current
            if not force and current is not None and provider.is_usable(current):
                return current, 0.0
            if not force and usable is not None:
                self.adopted += 1
                return usable
            now = self._clock.monotonic()
            if deadline is not None and now >= deadline:
                raise DeadlineExceeded(
                    f"connection {self._name}: deadline reached waiting for the fleet's "
                    "token refresh",
                    metadata={"connection": self._name},
                )
            if now >= give_up:
                self.fetched += 1
                return await fetch(), None
            limit = min(give_up, deadline) if deadline is not None else give_up
            await self._store.wait(self._slot, min(POLL, limit - now))

    async def _refresh(
        self,
        lease: Lease,
        read: Read | None,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        force: bool,
        seen: bytes | None,
    ) -> tuple[PipedreamToken, float | None]:
        found = await self._opened(read)  # stored while this sidecar waited for the lock?
        if found is not None:
            stored, token, lifetime = found
            if (not force or stored.blob != seen) and provider.is_fresh(token):
                self.adopted += 1
                return token, lifetime
        self.fetched += 1
        token = await fetch()
        now_wall = self._clock.wall()
        lifetime = token.expires_at_mono - self._clock.monotonic()
        record = {"t": token.value.reveal(), "e": token.expires_at_wall, "l": lifetime}
        # On Redis trouble this sidecar has its token; the others fetch their own.
        with contextlib.suppress(SharedUnavailable):
            data = json.dumps(record).encode()
            ttl = token.expires_at_wall - now_wall
            await self._store.store_release(lease, "v", data, ttl, "w", now_wall)
        return token, None

    async def _read(self) -> tuple[Read, PipedreamToken, float] | None:
        return await self._opened(await self._store.get(self._slot, "v"))

    async def _opened(self, read: Read | None) -> tuple[Read, PipedreamToken, float] | None:
        if read is None:
            return None
        try:
            record = json.loads(read.data)
            value, expires, lifetime = str(record["t"]), float(record["e"]), float(record["l"])
        except (ValueError, KeyError, TypeError):
            return None
        if value in self._rejected:
            # Pipedream refused this very token: drop it for the fleet, unless replaced since.
            await self._store.delete_if(read)
            return None
        token = PipedreamToken(Secret(value), wall_to_monotonic(self._clock, expires), expires)
        return read, token, lifetime
