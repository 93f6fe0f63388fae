"""Background work with an owner: one anyio task group, cancelled when its owner closes.

An object that runs work of its own (the Redis probe and event subscription, the
fleet's event reader, readiness's token priming) holds a :class:`Background`,
starts work with :meth:`Background.start_soon` and closes it when it closes. All of
it runs in one task group inside one task whose cancel scope the owner holds, so
nothing it started outlives it at reload or stop, and a crash in one piece of work
is logged, not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[object]]


class Background:
    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._send, self._receive = anyio.create_memory_object_stream[Work](math.inf)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start_soon(self, work: Work) -> None:
        """Run ``work`` in the owner's task group (started at the first call)."""
        if self._closed:  # the owner is gone, and so is its work
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._send.send_nowait(work)

    async def aclose(self) -> None:
        """Cancel everything started here and wait until it has ended."""
        self._closed = True
        self._send.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        group: TaskGroup
        async with self._receive, anyio.create_task_group() as group:
            async for work in self._receive:
                group.start_soon(self._guarded, work)

    async def _guarded(self, work: Work) -> None:
        try:
            await work()
        except Exception:  # one piece of work failing must not cancel the others
            log.exception("%s: background work failed", self._owner)
