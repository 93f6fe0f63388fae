"""The sidecar process: one gRPC server, its health and reflection, its upstreams.

:class:`Sidecar` owns everything that lives as long as the process: the shared
HTTP client, one :class:`~pdsidecar.upstream.Upstream` per connection, the
credential service and the ``grpc.aio`` server. ``start`` binds every listener
or fails with nothing left running; ``stop`` flips health to NOT_SERVING,
refuses new calls and lets in-flight ones finish within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pdsidecar.clock import Clock, SystemClock
from pdsidecar.config import ConfigError, Settings
from pdsidecar.credentials import CredentialService
from pdsidecar.listen import ListenAddress
from pdsidecar.servicer import CredentialsServicer, add_to_server
from pdsidecar.upstream import build_upstreams, make_http_client
from pdsidecar_client.v1 import credentials_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CredentialsService"].full_name


class Sidecar:
    def __init__(
        self,
        settings: Settings,
        listeners: Sequence[ListenAddress],
        *,
        clock: Clock | None = None,
    ) -> None:
        if not listeners:
            raise ConfigError("at least one --listen address is needed")
        self.settings = settings
        self.listeners = tuple(listeners)
        self.clock = clock or SystemClock()
        self.bound: list[str] = []
        self._http = make_http_client(settings)
        self.upstreams = build_upstreams(settings, self._http, self.clock)
        self.service = CredentialService(settings, self.upstreams, self.clock)
        # The asyncio health servicer; the stubs of grpcio-health-checking omit the alias.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 1 << 20),
            ]
        )
        add_to_server(CredentialsServicer(self.service, self.clock), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )

    async def start(self) -> None:
        for address in self.listeners:
            port = self.server.add_insecure_port(address.grpc_target)
            if address.kind == "tcp" and port == 0:
                raise ConfigError(f"cannot listen on {address.grpc_target}: address in use?")
            self.bound.append(
                address.grpc_target
                if address.kind == "unix"
                else ListenAddress("tcp", address.host, port).grpc_target
            )
        await self.server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("pdsidecar listening on %s", ", ".join(self.bound))

    async def stop(self, grace: float = 10.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.service.aclose()
        await self._http.aclose()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def run_until_signalled(
    sidecar: Sidecar, grace: float, on_started: Callable[[Sidecar], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls within ``grace``."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await sidecar.start()
    if on_started is not None:
        on_started(sidecar)
    try:
        await stopping.wait()
        log.info("shutting down: draining in-flight calls for up to %.0f s", grace)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
        await sidecar.stop(grace)
