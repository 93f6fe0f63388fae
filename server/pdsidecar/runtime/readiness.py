"""Readiness: the ``grpc.health.v1`` status of ``pdsidecar.v1.CredentialsService``.

Liveness is the overall status (service ``""``): SERVING while the server runs.
The credentials service is SERVING when at least one connection holds an
unexpired Pipedream token, or a token request succeeded within
``RECENT`` seconds; else NOT_SERVING. At start (and for connections a reload
adds) each connection's token is requested in the background, so readiness
turns SERVING within a round trip to Pipedream; a failure is logged and the
server keeps running. The status is re-evaluated every ``interval`` seconds
and after each of those requests. Shutdown turns everything NOT_SERVING
(``HealthServicer.enter_graceful_shutdown``), after which nothing here can
set it back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from grpc_health.v1 import health_pb2

from pdsidecar.background import Background
from pdsidecar.clock import Clock
from pdsidecar.errors import SidecarError
from pdsidecar.pipedream.connection import PipedreamConnection

log = logging.getLogger(__name__)

RECENT: Final = 300.0
SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(
        self,
        health: Any,
        service_name: str,
        connections: Callable[[], Mapping[str, PipedreamConnection]],
        clock: Clock,
        *,
        interval: float = 1.0,
        prime_timeout: float = 10.0,
    ) -> None:
        self._health = health
        self._service_name = service_name
        self._connections = connections
        self._clock = clock
        self._interval = interval
        self._prime_timeout = prime_timeout
        self._background = Background("readiness")
        self._priming = False
        self._running = False
        self.ready: bool | None = None

    def is_ready(self) -> bool:
        now_wall, now = self._clock.wall(), self._clock.monotonic()
        for upstream in self._connections().values():
            status = upstream.token_status()
            if status is not None and status.expires_at > now_wall:
                return True
            last = upstream.tokens.last_success_mono
            if last is not None and now - last < RECENT:
                return True
        return False

    async def start(self, *, prime: bool = True) -> None:
        self._priming = prime
        self._running = True
        await self.update()
        self.prime(self._connections())
        self._background.start_soon(self._tick)

    def prime(self, names: Iterable[str]) -> None:
        """Request these connections' tokens in the background (when priming is on)."""
        if not self._priming:
            return
        connections = self._connections()
        for name in names:
            if name in connections:
                self._background.start_soon(functools.partial(self._prime, name, connections[name]))

    def poke(self) -> None:
        """Re-evaluate soon (a token just arrived); a no-op outside a running server."""
        if self._running:
            self._background.start_soon(self.update)

    async def update(self) -> None:
        ready = self.is_ready()
        if ready != self.ready:
            log.info("readiness: %s", "SERVING" if ready else "NOT_SERVING")
            self.ready = ready
        await self._health.set(self._service_name, SERVING if ready else NOT_SERVING)

    async def stop(self) -> None:
        self._running = False
        await self._background.aclose()

    async def _prime(self, name: str, upstream: PipedreamConnection) -> None:
        deadline = self._clock.monotonic() + self._prime_timeout
        try:
            await upstream.refresh_token(force=False, deadline=deadline)
        except SidecarError as error:
            log.warning("connection %s: first token request failed (%s)", name, error.reason)
        await self.update()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.update()
            except Exception as error:  # keep ticking; the next update may work
                log.warning("readiness update failed: %s", type(error).__name__)
