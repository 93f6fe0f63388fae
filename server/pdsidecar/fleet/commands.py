"""What the fleet tier asks of Redis: the few commands :class:`FleetStore` sends.

``redis.asyncio``'s clients (plain and cluster) fit these Protocols; so does the
in-memory fake the tests use (``tests/support/fakestore.py``). One contract
suite runs against a real ``redis-server`` and the fake, so the fake keeps
Redis's semantics: ``tests/integration/test_store_contract.py``.

The compare-and-set work happens in Lua scripts sent with :meth:`Commands.eval`
(their text lives in :mod:`pdsidecar.fleet.store`); a fake runs the same
scripts' meaning in Python, keyed by their text.
"""

from __future__ import annotations

from typing import Any, Protocol


class Commands(Protocol):
    """The key-value side: values with a TTL, scripts, publishing events."""

    async def ping(self) -> Any: ...

    async def get(self, name: bytes) -> bytes | None: ...

    async def set(self, name: bytes, value: bytes, *, px: int) -> Any: ...

    async def delete(self, *names: bytes) -> int: ...

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...

    async def publish(self, channel: str, message: str) -> int: ...

    async def aclose(self) -> None: ...


class Subscription(Protocol):
    """One subscription connection (``redis.asyncio.client.PubSub``)."""

    async def subscribe(self, *channels: str) -> Any: ...

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None: ...

    async def aclose(self) -> None: ...


class Subscriber(Protocol):
    """The event side: a client that opens subscriptions."""

    def pubsub(self) -> Subscription: ...

    async def aclose(self) -> None: ...
