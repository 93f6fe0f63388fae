"""A settable wall clock for the emulator, which reads time through a callable."""

from __future__ import annotations


class FakeClock:
    """Unix seconds that move only when a test sets ``now``."""

    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now
