"""The fleet's event channel, as one sidecar sees it: one subscription, waiters, listeners.

Events say that a value was written (``w``) or that older copies are dead (``i``), for
one hash tag, with the writer's wall-clock stamp: ``kind:tag:stamp``. No id, no value.
Every sidecar subscribes once; an event wakes the sidecar's waiters for that tag (a
fetch lock's waiters) and tells its listeners (the account cache drops dead copies).
The subscription reconnects by itself; while it is down, waiters fall back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from redis.exceptions import RedisError

from pdsidecar.shared.commands import Subscriber

log = logging.getLogger(__name__)

_BACKOFF_FIRST: Final = 0.1
_BACKOFF_MAX: Final = 2.0

# (kind, tag, stamp)
Listener = Callable[[str, str, float], None]


def message(kind: str, tag: str, stamp: float) -> str:
    return f"{kind}:{tag}:{stamp:.6f}"


class Events:
    def __init__(self, client: Subscriber, channel: str) -> None:
        self.channel = channel
        self._client = client
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self.received = 0

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def wait(self, tag: str, timeout: float) -> None:
        """Until an event about ``tag`` arrives, or ``timeout`` passes."""
        event = asyncio.Event()
        waiters = self._waiters.setdefault(tag, set())
        waiters.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(timeout, 0.0))
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(tag, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._subscribe())

    async def subscribed(self, timeout: float) -> bool:
        """Whether the subscription is up (waits up to ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self._up.is_set()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def _subscribe(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._up.set()
                backoff = _BACKOFF_FIRST
                while True:
                    got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if got is not None and got.get("type") == "message":
                        self._deliver(got["data"])
            except (RedisError, OSError) as error:
                self._up.clear()
                log.debug("shared cache: event subscription lost (%s)", type(error).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _deliver(self, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        kind, _, rest = text.partition(":")
        tag, _, stamp_text = rest.partition(":")
        try:
            stamp = float(stamp_text)
        except ValueError:
            return
        self.received += 1
        for event in self._waiters.get(tag, ()):
            event.set()
        for listener in self._listeners:
            try:
                listener(kind, tag, stamp)
            except Exception:  # a listener's bug must not end the subscription
                log.exception("shared cache: event listener failed")
