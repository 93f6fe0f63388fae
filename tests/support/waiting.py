"""Waiting without sleeping blind: bounded polls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, every: float = 0.01
) -> None:
    """Wait, bounded, until ``condition()`` holds (it may be a coroutine function).

    Other tasks run between polls, so it also serves to let a fake's callers settle.
    """
    async with asyncio.timeout(timeout):
        while True:
            held = condition()
            if held if isinstance(held, bool) else await held:
                return
            await asyncio.sleep(every)
