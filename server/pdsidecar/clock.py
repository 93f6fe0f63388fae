"""Time sources.

Expiry arithmetic runs on a monotonic clock, which never jumps when the
system clock is set. Wall time is only used to read and report the absolute
timestamps Pipedream sends (``expires_at``), converted to monotonic deadlines
at the moment they are received.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, wall_start: float | None = None) -> None:
        self._mono = 1000.0
        self._wall = time.time() if wall_start is None else wall_start

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        self._wall += seconds


def wall_to_monotonic(clock: Clock, wall_seconds: float) -> float:
    """The monotonic reading at which ``wall_seconds`` will be reached."""
    return clock.monotonic() + (wall_seconds - clock.wall())
