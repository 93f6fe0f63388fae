"""The process's life under signals: serve until SIGTERM or SIGINT, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from pdsidecar.runtime.sidecar import Sidecar

log = logging.getLogger(__name__)


async def run_until_signalled(
    sidecar: Sidecar, grace: float, on_started: Callable[[Sidecar], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls within ``grace``.

    SIGHUP reloads the config (one reload at a time) and keeps serving.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    reloads: set[asyncio.Task[bool]] = set()
    lock = asyncio.Lock()

    async def reload() -> bool:
        async with lock:
            return await sidecar.reload()

    def on_hangup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await sidecar.start()
        if on_started is not None:
            on_started(sidecar)
        await stopping.wait()
        log.info("shutting down: draining in-flight calls for up to %.0f s", grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
    await sidecar.stop(grace)
