"""The fleet's event channel, as one sidecar sees it: one subscription, waiters, readers.

An event says that a value was written for one hash tag, with the version written:
``w:tag:version``. No id, no value. It is a hint about Redis, never about Pipedream:
whoever hears one may look at Redis and take the value if it is newer than what it
holds; anyone can publish one, so nothing else may follow from it. Every sidecar
subscribes once; an event wakes the sidecar's waiters for that tag (a fetch lock's
waiters) and is handed to each reader (:meth:`Events.listen`) through a bounded
buffer (a reader that falls behind loses hints, never blocks the subscription). The
subscription reconnects by itself; while it is down, waiters fall back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.exceptions import RedisError

from pdsidecar.fleet.commands import Subscriber

log = logging.getLogger(__name__)

_BACKOFF_FIRST: Final = 0.1
_BACKOFF_MAX: Final = 2.0
# Hints a reader may have waiting before newer ones are dropped.
READER_BUFFER: Final = 1024

# (tag, version)
Hint = tuple[str, int]


def message(tag: str, version: int) -> str:
    return f"w:{tag}:{version}"


class Expected:
    """Events about one tag, heard since :meth:`Events.expect`."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until an event was heard (at once if one was already), or ``timeout`` passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), max(timeout, 0.0))


class Events:
    def __init__(self, client: Subscriber, channel: str) -> None:
        self.channel = channel
        self._client = client
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._readers: list[MemoryObjectSendStream[Hint]] = []
        self._up = asyncio.Event()
        self.received = 0
        self.dropped = 0  # hints a reader had no room for

    def listen(self) -> MemoryObjectReceiveStream[Hint]:
        """A stream of every hint from now on (closing it unsubscribes)."""
        send, receive = anyio.create_memory_object_stream[Hint](READER_BUFFER)
        self._readers.append(send)
        return receive

    @property
    def up(self) -> bool:
        """Whether the subscription is up: events are being heard."""
        return self._up.is_set()

    @contextlib.contextmanager
    def expect(self, tag: str) -> Iterator[Expected]:
        """Hear events about ``tag`` from now until the block ends. Entered before a look
        at Redis, an event published during the look is not missed."""
        expected = Expected()
        waiters = self._waiters.setdefault(tag, set())
        waiters.add(expected.event)
        try:
            yield expected
        finally:
            waiters.discard(expected.event)
            if not waiters:
                self._waiters.pop(tag, None)

    async def subscribed(self, timeout: float) -> bool:
        """Whether the subscription is up (waits up to ``timeout``)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self._up.is_set()

    async def aclose(self) -> None:
        """After :meth:`run` was cancelled: close the readers and the connection."""
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        with contextlib.suppress(Exception):
            await self._client.aclose()

    async def run(self) -> None:
        """The subscription, reconnecting with backoff, until cancelled (by its owner)."""
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
        tag, _, version_text = rest.partition(":")
        if kind != "w" or not version_text.isdigit():
            return
        self.received += 1
        for event in self._waiters.get(tag, ()):
            event.set()
        for reader in list(self._readers):
            try:
                reader.send_nowait((tag, int(version_text)))
            except anyio.WouldBlock:
                self.dropped += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._readers.remove(reader)
