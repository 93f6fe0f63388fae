"""``pdsidecar serve --workers N``: N server processes sharing one TCP port.

The parent runs no server. It starts N copies of its own command line, each
marked with ``PDSIDECAR_WORKER=<index>``; a worker binds the same TCP
port(s) with ``SO_REUSEPORT`` (grpc option ``grpc.so_reuseport``), so the
kernel spreads new connections across them. Each worker has its own cache,
Pipedream tokens and metrics port (``--metrics-listen`` port + index).

The parent forwards SIGTERM/SIGINT (then waits for the workers to drain) and
SIGHUP (each worker reloads). A worker that dies is restarted after a
second; one that fails with exit code 2 (a config error) stops them all. A
worker whose parent disappears stops itself.

Unix sockets cannot be shared this way: ``--workers`` above 1 with a Unix
listener, or with port 0, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

from pdsidecar.settings import ConfigError, ListenerConfig

log = logging.getLogger(__name__)

WORKER_ENV: Final = "PDSIDECAR_WORKER"
RESTART_DELAY: Final = 1.0
CONFIG_ERROR: Final = 2


def worker_index() -> int | None:
    """This process's worker index when it is a worker of ``--workers``, else None."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value and value.isdigit() else None


def check_shareable(count: int, listeners: Sequence[ListenerConfig]) -> None:
    for listener in listeners:
        address = listener.address
        if address.kind == "unix":
            raise ConfigError(
                f"--workers {count} cannot serve unix:{address.path}: several processes "
                "cannot share one Unix socket. Use TCP listeners (like 127.0.0.1:50051) with "
                "--workers, or run one process per socket"
            )
        if address.port == 0:
            raise ConfigError(
                f"--workers {count} needs a fixed port: {address.grpc_target} would give "
                "each worker a different one"
            )


async def supervise(count: int, argv: Sequence[str], grace: float) -> int:
    """Run ``count`` workers of ``argv`` until SIGTERM/SIGINT; the exit code."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    workers: dict[int, asyncio.subprocess.Process] = {}
    failure: list[int] = []

    def forward(signum: int) -> None:
        if signum != signal.SIGHUP:
            stopping.set()
        for process in workers.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, forward, signum)

    async def keep(index: int) -> None:
        while not stopping.is_set():
            env = {**os.environ, WORKER_ENV: str(index)}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pdsidecar", *argv, env=env
            )
            workers[index] = process
            code = await process.wait()
            if stopping.is_set():
                return
            if code == CONFIG_ERROR:
                log.error("worker %d: configuration error; stopping all workers", index)
                failure.append(code)
                forward(signal.SIGTERM)
                return
            log.warning(
                "worker %d exited with %s; restarting in %.0f s", index, code, RESTART_DELAY
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RESTART_DELAY)

    log.info("starting %d workers", count)
    keepers = [loop.create_task(keep(index)) for index in range(count)]
    try:
        await stopping.wait()
        try:
            async with asyncio.timeout(grace + 5):
                await asyncio.gather(*keepers)
        except TimeoutError:
            for process in workers.values():
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await asyncio.gather(*keepers, return_exceptions=True)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
    return failure[0] if failure else 0


async def watch_parent(interval: float = 1.0) -> None:
    """SIGTERM this worker once its supervising parent is gone."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 (no event exists for this)
        await asyncio.sleep(interval)
    log.warning("the supervising process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
