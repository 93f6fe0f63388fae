"""The sidecar process: gRPC servers, health, reflection, metrics, reload.

:class:`Sidecar` owns everything that lives as long as the process: the one
HTTP client to Pipedream, one :class:`~pdsidecar.upstream.Upstream` per
connection, the credential service, the health servicer and the servers.

There is one ``grpc.aio`` server per listener, because grpc.aio cannot tell a
handler which port a call came in on, and allow-lists belong to listeners:
each server has its own :class:`~pdsidecar.access.AccessControl`. They share
the servicer, the credential service, health and the metrics.
Every unary handler is wrapped as it registers (see
:mod:`pdsidecar.interceptors`): the wrapper sets the request id, applies the
listener's access rules (token, allow-lists), counts, times and logs the call.
Tracing, when OpenTelemetry is on, is an interceptor.
``--health-listen`` servers carry only ``grpc.health.v1`` (for kubelet gRPC
probes on the pod IP), and can therefore bind any address.

``start`` binds every listener or fails with nothing left running; ``reload``
swaps connections (see :mod:`pdsidecar.reload`); ``stop`` flips health to
NOT_SERVING, refuses new calls and lets in-flight ones finish within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from pdsidecar import reload as reloading
from pdsidecar.access import AccessControl, TokenHolder
from pdsidecar.clock import Clock, SystemClock
from pdsidecar.config import ConfigError, Settings
from pdsidecar.credentials import CredentialService
from pdsidecar.interceptors import WrappingRegistrar
from pdsidecar.listen import ListenAddress, ListenerConfig, add_port, check_unix_path
from pdsidecar.logs import REDACTOR, Redactor
from pdsidecar.metrics import CountingTransport, Observer, RpcStats, UpstreamStats
from pdsidecar.prometheus import MetricsServer, SidecarCollector
from pdsidecar.readiness import Readiness
from pdsidecar.secret import Secret
from pdsidecar.servicer import CredentialsServicer, add_to_server
from pdsidecar.tls import TlsFiles, check_bind
from pdsidecar.tracing import Tracing
from pdsidecar.upstream import Upstream, build_upstreams, make_http_client
from pdsidecar_client.v1 import credentials_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CredentialsService"].full_name


class Sidecar:
    def __init__(
        self,
        settings: Settings,
        listeners: Sequence[ListenAddress | ListenerConfig] = (),
        *,
        clock: Clock | None = None,
        tls: TlsFiles | None = None,
        allow_insecure_bind: bool = False,
        health_listeners: Sequence[ListenAddress] = (),
        metrics_listen: ListenAddress | None = None,
        reuse_port: bool = False,
        loader: Callable[[], Settings] | None = None,
        tracing: Tracing | None = None,
        prime_tokens: bool = False,
        redactor: Redactor = REDACTOR,
    ) -> None:
        flags = [x if isinstance(x, ListenerConfig) else ListenerConfig(x) for x in listeners]
        self.listeners = (*flags, *settings.listeners)
        if not self.listeners:
            raise ConfigError("at least one --listen address is needed")
        addresses = [x.address for x in self.listeners] + list(health_listeners)
        fixed = [a for a in addresses if a.kind == "unix" or a.port != 0]
        if len(set(fixed)) != len(fixed):
            raise ConfigError("a listen address is given twice")
        check_bind([x.address for x in self.listeners], tls, allow_insecure_bind)
        self.settings, self.loader, self.tls = settings, loader, tls
        self.clock = clock or SystemClock()
        self.bound: list[str] = []
        self.health_bound: list[str] = []
        self._redactor = redactor
        self._prime_tokens = prime_tokens
        self._tracing = tracing

        # Pipedream: one HTTP client (counted), one upstream per connection, the service.
        self.upstream_stats = UpstreamStats()
        self._http = make_http_client(
            settings, wrap_transport=lambda inner: CountingTransport(inner, self.upstream_stats)
        )
        self.upstreams: Mapping[str, Upstream] = build_upstreams(settings, self._http, self.clock)
        self.service = CredentialService(settings, self.upstreams, self.clock)

        # Health: liveness is the server's "" status; readiness is the service's.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.readiness = Readiness(self.health, SERVICE_NAME, lambda: self.upstreams, self.clock)

        # The servers (built by start), one per listener, sharing one servicer.
        self.rpc_stats = RpcStats()
        self.tokens = TokenHolder(settings.api_token)
        self._access = [AccessControl(self.tokens, listener) for listener in self.listeners]
        self._servicer = CredentialsServicer(self.service, self.clock)
        self._health_listeners = tuple(health_listeners)
        self._reuse_port = reuse_port
        self.servers: list[tuple[ListenerConfig, grpc.aio.Server]] = []
        self._started: list[grpc.aio.Server] = []

        # Metrics: read at scrape time from where the numbers already live.
        self.metrics: MetricsServer | None = None
        if metrics_listen is not None:
            registry = CollectorRegistry()
            for collector in (ProcessCollector, PlatformCollector, GCCollector):
                collector(registry=registry)
            registry.register(
                SidecarCollector(
                    self.rpc_stats,
                    self.upstream_stats,
                    lambda: (self.service.cache.stats, len(self.service.cache)),
                    lambda: self.upstreams,
                    self.clock.wall,
                )
            )
            self.metrics = MetricsServer(registry, metrics_listen.host, metrics_listen.port)
        self._learn_secrets()

    async def start(self) -> None:
        # What can be refused is checked before any grpc server exists: a grpc.aio
        # server dropped without ever starting can crash grpc later, in another loop.
        addresses = [x.address for x in self.listeners] + list(self._health_listeners)
        for address in addresses:
            if address.kind == "unix":
                check_unix_path(address.path)
        credentials = self.tls.server_credentials() if self.tls is not None else None
        self._build_servers()
        refused: ConfigError | None = None
        try:
            for index, (listener, server) in enumerate(self.servers):
                # Health-only listeners stay plaintext: kubelet gRPC probes speak no TLS.
                health_only = index >= len(self.listeners)
                target = add_port(server, listener, None if health_only else credentials)
                (self.health_bound if health_only else self.bound).append(target)
        except ConfigError as error:
            refused = error  # start what was built anyway, so it can be stopped cleanly
        try:
            for _, server in self.servers:
                await server.start()
                self._started.append(server)
            if refused is not None:
                raise refused
            if self.metrics is not None:
                await self.metrics.start()
        except BaseException:
            await self._close(grace=0)
            raise
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.readiness.start(prime=self._prime_tokens)
        log.info("pdsidecar listening on %s", ", ".join(self.bound + self.health_bound))

    def _build_servers(self) -> None:
        traced = [self._tracing.interceptor] if self._tracing is not None else []
        for listener, access in zip(self.listeners, self._access, strict=True):
            server = _grpc_server(traced, self._reuse_port)
            # Services register through the registrar: their handlers arrive observed
            # and guarded (cheaper per call than an interceptor; see interceptors.py).
            registrar: Any = WrappingRegistrar(server, Observer(self.rpc_stats, access).wrap)
            add_to_server(self._servicer, registrar)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, registrar)
            names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, registrar)
            self.servers.append((listener, server))
        for address in self._health_listeners:
            server = _grpc_server([], self._reuse_port)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            self.servers.append((ListenerConfig(address), server))

    async def reload(self) -> bool:
        return await reloading.reload(self)

    def apply(self, settings: Settings, upstreams: Mapping[str, Upstream]) -> None:
        """Swap in reloaded settings and upstreams (listener addresses stay as they are)."""
        self.service.replace_upstreams(settings, upstreams)
        self.settings, self.upstreams = settings, upstreams
        self.tokens.set(settings.api_token)
        from_file = self._access[len(self._access) - len(settings.listeners) :]
        for access, listener in zip(from_file, settings.listeners, strict=True):
            access.update(listener)
        self._learn_secrets()

    async def stop(self, grace: float = 10.0) -> None:
        await self.readiness.stop()
        await self.health.enter_graceful_shutdown()
        await self._close(grace)

    async def wait(self) -> None:
        await asyncio.gather(*(server.wait_for_termination() for _, server in self.servers))

    async def _close(self, grace: float) -> None:
        await asyncio.gather(*(server.stop(grace) for server in self._started))
        # Drop the servers now, in this event loop: left to the garbage collector (the
        # sidecar sits in reference cycles), a grpc.aio server may be freed later inside
        # another loop, which crashes grpc.
        self._started.clear()
        self.servers.clear()
        if self.metrics is not None:
            await self.metrics.stop()
        if self._tracing is not None:
            await self._tracing.shutdown()
        await self.service.aclose()
        await self._http.aclose()

    def _learn_secrets(self) -> None:
        """The redaction filter learns every secret this process holds, and each new token."""
        settings = self.settings
        self._redactor.remember(
            settings.api_token, *(c.client_secret for c in settings.connections.values())
        )
        for upstream in self.upstreams.values():
            upstream.tokens.on_token = self._on_token

    def _on_token(self, token: Secret) -> None:
        self._redactor.remember(token)
        self.readiness.poke()


def _grpc_server(
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]], reuse_port: bool
) -> grpc.aio.Server:
    return grpc.aio.server(
        interceptors=interceptors,
        options=[
            # Several processes on one port only with --workers; else a second
            # sidecar on the same port must fail to start, not share it.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", 1 << 20),
        ],
    )


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
