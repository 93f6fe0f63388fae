"""An in-memory Redis for the shared tier: the commands it sends, with Redis's meaning.

:class:`FakeSharedStore` fits :class:`pdsidecar.fleet.commands.Commands` and
:class:`~pdsidecar.shared.commands.Subscriber`: pass it as both ``client`` and
``subscriber`` of a :class:`~pdsidecar.fleet.store.FleetStore`. The store's Lua
scripts run here as Python, looked up by their text: a script this fake does not
know fails loudly (a new script needs its meaning written here, and the contract
suite, ``tests/integration/test_store_contract.py``, checks that meaning against a
real ``redis-server``).

- TTLs run on the ``now`` callable (monotonic seconds): a manual clock expires values
  without sleeping.
- Events are delivered to every subscription of the channel, in publish order.
- Fault knobs: :attr:`stall` (every command waits that long first, on the event
  loop's clock), :attr:`failure` (every command raises it), :attr:`drop_events`
  (publishes reach nobody), :meth:`cut_subscriptions` (subscribers see the
  connection drop), :meth:`flush` (an empty restart), and, for an attacker with
  write access but no key, :meth:`forge` (write raw bytes), :meth:`history` and
  :meth:`replay` (write an older value back) and :meth:`inject` (publish anything).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from pdsidecar.fleet import store as _store


@dataclass
class _Value:
    data: bytes
    expires_at: float | None  # monotonic seconds; None: no TTL


def _bytes(value: Any) -> bytes:
    """What Redis stores for an argument: bytes as they are, anything else as its text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return str(value).encode()


class FakeSharedStore:
    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._values: dict[bytes, _Value] = {}
        self._history: dict[bytes, list[bytes]] = {}
        # A dict, not a set: delivery order must not depend on object addresses.
        self._subscriptions: dict[_FakePubSub, None] = {}
        self._scripts: dict[str, Callable[[list[bytes], list[bytes]], Any]] = {
            _store._DELETE_IF: self._delete_if,
            _store._LOCK_GET: self._lock_get,
            _store._STORE_RELEASE: self._store_release,
            _store._RENEW_IF: self._renew_if,
            _store._TAKE_READ: self._take_read,
        }
        # Fault knobs (see the module docstring).
        self.stall = 0.0
        self.failure: BaseException | None = None
        self.drop_events = False
        # Commands answered, by name ("eval" counted by the script's job).
        self.commands: Counter[str] = Counter()
        self.published: list[tuple[str, bytes]] = []

    # --- the Commands protocol ---
    async def ping(self) -> bool:
        await self._enter("ping")
        return True

    async def get(self, name: bytes) -> bytes | None:
        await self._enter("get")
        return self._get(_bytes(name))

    async def set(self, name: bytes, value: bytes, *, px: int) -> bool:
        await self._enter("set")
        self._set(_bytes(name), _bytes(value), px)
        return True

    async def delete(self, *names: bytes) -> int:
        await self._enter("delete")
        return sum(self._del(_bytes(n)) for n in names)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        run = self._scripts.get(script)
        if run is None:
            raise NotImplementedError(
                "FakeSharedStore does not know this Lua script: write its meaning in "
                "tests/support/fakestore.py and cover it in test_store_contract.py"
            )
        await self._enter(run.__name__.lstrip("_"))
        values = [_bytes(v) for v in keys_and_args]
        return run(values[:numkeys], values[numkeys:])

    async def publish(self, channel: str, message: str) -> int:
        await self._enter("publish")
        return self._publish(_bytes(channel), _bytes(message))

    async def aclose(self) -> None:
        return None

    # --- the Subscriber protocol ---
    def pubsub(self) -> _FakePubSub:
        return _FakePubSub(self)

    def connect(self) -> FakeConnection:
        """One client's connection to this store, which a test can sever (a crash)."""
        return FakeConnection(self)

    # --- fault knobs and looks, for tests (no stall, no failure) ---
    def flush(self) -> None:
        """An empty restart: every value and lock gone, subscriptions cut."""
        self._values.clear()
        self.cut_subscriptions()

    def cut_subscriptions(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.cut()

    def forge(self, name: bytes, data: bytes, px: int | None = None) -> None:
        """Write raw bytes under ``name`` (an attacker without the key)."""
        self._set(name, data, px)

    def history(self, name: bytes) -> list[bytes]:
        """Every value ever written under ``name``, oldest first."""
        return list(self._history.get(name, ()))

    def replay(self, name: bytes, index: int, px: int | None = None) -> None:
        """Write back an older value of ``name`` (``history(name)[index]``): a rollback."""
        self._set(name, self._history[name][index], px)

    def inject(self, channel: str, message: str) -> int:
        """Publish ``message`` as if a sidecar had (a forged or replayed event)."""
        return self._publish(_bytes(channel), _bytes(message))

    def peek(self, name: bytes) -> bytes | None:
        return self._get(name)

    def pttl(self, name: bytes) -> int:
        """Redis's PTTL: -2 absent, -1 no TTL, else milliseconds left."""
        value = self._values.get(name)
        if value is None or self._expired(value):
            return -2
        if value.expires_at is None:
            return -1
        return round((value.expires_at - self._now()) * 1000)

    def names(self) -> list[bytes]:
        return [n for n in list(self._values) if self._get(n) is not None]

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    # --- Redis's meaning ---
    async def _enter(self, command: str) -> None:
        if self.stall > 0:
            await asyncio.sleep(self.stall)
        if self.failure is not None:
            raise self.failure
        self.commands[command] += 1

    def _expired(self, value: _Value) -> bool:
        return value.expires_at is not None and self._now() >= value.expires_at

    def _get(self, name: bytes) -> bytes | None:
        value = self._values.get(name)
        if value is None:
            return None
        if self._expired(value):
            del self._values[name]
            return None
        return value.data

    def _set(self, name: bytes, data: bytes, px: int | None) -> None:
        expires = None if px is None else self._now() + int(px) / 1000
        self._values[name] = _Value(data, expires)
        self._history.setdefault(name, []).append(data)

    def _del(self, name: bytes) -> int:
        present = self._get(name) is not None
        self._values.pop(name, None)
        return int(present)

    def _publish(self, channel: bytes, message: bytes) -> int:
        self.published.append((channel.decode(), message))
        if self.drop_events:
            return 0
        reached = [s for s in self._subscriptions if channel in s.channels]
        for subscription in reached:
            subscription.deliver(channel, message)
        return len(reached)

    # The Lua scripts of pdsidecar.shared.store, one function each (same order of effects).
    def _delete_if(self, keys: list[bytes], args: list[bytes]) -> int:
        if self._get(keys[0]) == args[0]:
            return self._del(keys[0])
        return 0

    def _lock_get(self, keys: list[bytes], args: list[bytes]) -> list[Any]:
        held = self._values.get(keys[0]) if self._get(keys[0]) is not None else None
        if held is None:
            self._set(keys[0], args[0], int(args[1]))
        elif held.expires_at is None:  # PEXPIRE NX: a lock without a TTL gets one
            held.expires_at = self._now() + int(args[1]) / 1000
        return [0 if held else 1, self._get(keys[1])]

    def _store_release(self, keys: list[bytes], args: list[bytes]) -> int:
        blob, millis, channel, text, owner = args
        if blob != b"":
            self._set(keys[0], blob, int(millis))
        self._publish(channel, text)
        if self._get(keys[1]) == owner:
            self._del(keys[1])
        return 1

    def _renew_if(self, keys: list[bytes], args: list[bytes]) -> int:
        value = self._values.get(keys[0])
        if value is None or self._get(keys[0]) != args[0]:
            return 0
        value.expires_at = self._now() + int(args[1]) / 1000
        return 1

    def _take_read(self, keys: list[bytes], args: list[bytes]) -> list[int]:
        per = int(args[0])
        groups = [keys[i : i + per] for i in range(0, len(keys), per)]
        counts = [sum(int(self._get(k) or 0) for k in group) for group in groups]
        total, listener, caller = [*counts, 0, 0][:3]
        budget, high, caller_limit, listener_limit = (float(a) for a in args[1:5])
        refused = 0
        if len(groups) == 3:
            if caller + 1 > caller_limit:
                refused = 1
            elif listener + 1 > listener_limit:
                refused = 2
            elif total + 1 > budget:
                refused = 3
            elif total + 1 > high and caller >= budget - total:
                refused = 4
        if refused == 0:
            for group in groups:
                key = group[-1]
                self._set(key, str(int(self._get(key) or 0) + 1).encode(), int(args[5]))
        return [refused, total, listener, caller]


class FakeConnection:
    """One sidecar's view of the store: the same commands, until :meth:`sever`."""

    def __init__(self, store: FakeSharedStore) -> None:
        self._store = store
        self._subscriptions: list[_FakePubSub] = []
        self.severed = False

    def sever(self) -> None:
        """Every command fails from now on and subscriptions drop (the process died)."""
        self.severed = True
        for subscription in self._subscriptions:
            subscription.cut()

    def _check(self) -> FakeSharedStore:
        if self.severed:
            raise RedisConnectionError("connection severed")
        return self._store

    async def get(self, name: bytes) -> bytes | None:
        return await self._check().get(name)

    async def set(self, name: bytes, value: bytes, *, px: int) -> bool:
        return await self._check().set(name, value, px=px)

    async def delete(self, *names: bytes) -> int:
        return await self._check().delete(*names)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._check().eval(script, numkeys, *keys_and_args)

    async def ping(self) -> bool:
        return await self._check().ping()

    async def publish(self, channel: str, message: str) -> int:
        return await self._check().publish(channel, message)

    def pubsub(self) -> _FakePubSub:
        subscription = _FakePubSub(self._store)
        if self.severed:
            subscription.cut()
        self._subscriptions = [s for s in self._subscriptions if not s.is_cut]
        self._subscriptions.append(subscription)
        return subscription

    async def aclose(self) -> None:
        return None


class _FakePubSub:
    """One subscription connection: messages queued in order until read."""

    def __init__(self, store: FakeSharedStore) -> None:
        self._store = store
        self.channels: set[bytes] = set()
        self._queue: deque[dict[str, Any]] = deque()
        self._arrived = asyncio.Event()
        self._cut = False

    async def subscribe(self, *channels: str) -> None:
        await self._store._enter("subscribe")
        if self._cut:
            raise RedisConnectionError("connection closed")
        self.channels.update(_bytes(c) for c in channels)
        self._store._subscriptions[self] = None
        for channel in channels:
            self._queue.append({"type": "subscribe", "channel": _bytes(channel), "data": 1})
        self._arrived.set()

    async def get_message(
        self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0
    ) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        until = None if timeout is None else loop.time() + timeout
        while True:
            if self._cut:
                raise RedisConnectionError("connection closed by the server")
            while self._queue:
                message = self._queue.popleft()
                if ignore_subscribe_messages and message["type"] != "message":
                    continue
                return message
            self._arrived.clear()
            left = None if until is None else until - loop.time()
            if left is not None and left <= 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return None

    async def aclose(self) -> None:
        self._store._subscriptions.pop(self, None)

    def deliver(self, channel: bytes, message: bytes) -> None:
        self._queue.append({"type": "message", "channel": channel, "data": message})
        self._arrived.set()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        self._cut = True
        self._store._subscriptions.pop(self, None)
        self._arrived.set()
