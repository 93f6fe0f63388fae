"""The fleet store's timeout counts Redis time, not the event loop's lag (fleet/store.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from pdsidecar.fleet.store import _within

pytestmark = pytest.mark.anyio


async def _reply_during_a_stall(stall: float, reply_after: float) -> str:
    """A reply due ``reply_after`` s from now, while the loop is blocked for ``stall`` s.

    The reply is read one loop turn after it is due, as libuv (uvloop) polls sockets
    after it runs the timers that came due meanwhile.
    """
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()

    def arrive() -> None:
        if not reply.done():  # a caller that timed out has cancelled it
            reply.set_result("PONG")

    loop.call_later(reply_after, loop.call_soon, arrive)
    loop.call_soon(time.sleep, stall)  # a busy loop: CPU contention, a throttled pod
    return await reply


async def test_a_reply_that_arrived_while_the_loop_was_busy_is_not_a_timeout() -> None:
    # Plain asyncio.timeout(0.05) fails here: its deadline passes during the stall.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await _reply_during_a_stall(0.2, 0.01)
    assert await _within(0.05, lambda: _reply_during_a_stall(0.2, 0.01)) == "PONG"


async def test_a_reply_that_does_not_come_is_a_timeout_after_the_budget() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _within(0.05, lambda: asyncio.sleep(10))
    assert time.monotonic() - started < 5  # the budget, far below the sleep
