"""Virtual time: an asyncio event loop whose clock jumps to the next timer, and a Clock on it.

:class:`VirtualTimeLoop` is a selector event loop that never waits: when nothing is
ready, its selector moves the loop's time to the next scheduled timer at once
(FoundationDB's simulated time, in asyncio). ``asyncio.sleep``, ``asyncio.timeout``,
``loop.call_later`` and :class:`SimClock` all read that one time, so an hour of
fleet life runs in milliseconds, and the same schedule runs the same way every time.
No real I/O may happen on it: a task waiting on a socket would never be woken, and
a loop with nothing scheduled at all is a deadlock (:class:`Deadlock`).
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Final

# Wall time at the loop's zero: a fixed date, so schedules do not depend on today.
EPOCH: Final = 1_795_000_000.0


class Deadlock(RuntimeError):
    """The simulated loop had nothing ready and nothing scheduled: every task waits forever."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        # No fd is ever ready: nothing here does real I/O (the loop's own wake-up pipe
        # serves call_soon_threadsafe, and no thread calls it).
        if timeout == 0:
            return []
        if timeout is None:
            raise Deadlock("the simulation has no timer left and nothing ready")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


class SimClock:
    """The sidecars' :class:`~pdsidecar.clock.Clock` on the loop's virtual time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        return self._loop.time()

    def wall(self) -> float:
        return EPOCH + self._loop.time()
