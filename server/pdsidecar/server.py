"""The sidecar process: gRPC servers, health, reflection, metrics, reload.

:class:`Sidecar` owns everything that lives as long as the process: the one
HTTP client to Pipedream, one :class:`~pdsidecar.upstream.Upstream` per
connection, the credential service, the health servicer and the servers.

There is one ``grpc.aio`` server per listener, because grpc.aio cannot tell a
handler which port a call came in on, and allow-lists belong to listeners:
each server carries its own :class:`~pdsidecar.access.AccessInterceptor`.
They share the servicer, the credential service, health and the metrics.
Interceptors run in this order: observe (request id, counts, latency, a
debug line), trace (when OpenTelemetry is on), access (token, allow-lists).
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
import os
import signal
import socket
import stat
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from pdsidecar import reload as reloading
from pdsidecar.access import AccessInterceptor, TokenHolder
from pdsidecar.clock import Clock, SystemClock
from pdsidecar.config import ConfigError, Settings
from pdsidecar.credentials import CredentialService
from pdsidecar.listen import ListenAddress, ListenerConfig
from pdsidecar.logs import REDACTOR, Redactor
from pdsidecar.metrics import (
    CountingTransport,
    MetricsServer,
    ObservingInterceptor,
    RpcStats,
    SidecarCollector,
    UpstreamStats,
)
from pdsidecar.readiness import Readiness
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
        if len(set(addresses)) != len(addresses):
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

        # The servers, one per listener, sharing one servicer.
        self.rpc_stats = RpcStats()
        self.tokens = TokenHolder(settings.api_token)
        observe = ObservingInterceptor(self.rpc_stats)
        traced = [tracing.interceptor] if tracing is not None else []
        servicer = CredentialsServicer(self.service, self.clock)
        self._access: list[AccessInterceptor] = []
        self.servers: list[tuple[ListenerConfig, grpc.aio.Server]] = []
        for listener in self.listeners:
            access = AccessInterceptor(self.tokens, listener)
            self._access.append(access)
            server = _grpc_server([observe, *traced, access], reuse_port)
            add_to_server(servicer, server)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
            self.servers.append((listener, server))
        for address in health_listeners:
            server = _grpc_server([], reuse_port)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            self.servers.append((ListenerConfig(address), server))

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
        try:
            for index, (listener, server) in enumerate(self.servers):
                target = _add_port(server, listener, self.tls)
                health_only = index >= len(self.listeners)
                (self.health_bound if health_only else self.bound).append(target)
            for _, server in self.servers:
                await server.start()
            if self.metrics is not None:
                await self.metrics.start()
        except BaseException:
            await self._close(grace=0)
            raise
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.readiness.start(prime=self._prime_tokens)
        log.info("pdsidecar listening on %s", ", ".join(self.bound + self.health_bound))

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
        await asyncio.gather(*(server.stop(grace) for _, server in self.servers))
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
            upstream.tokens.on_token = self._redactor.remember


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


def _add_port(server: grpc.aio.Server, listener: ListenerConfig, tls: TlsFiles | None) -> str:
    """Bind one listener; returns its target (with the real port for port 0)."""
    address = listener.address
    if address.kind == "unix":
        return _add_unix_port(server, address.path, listener.socket_mode)
    try:
        if tls is not None:
            port = server.add_secure_port(address.grpc_target, tls.server_credentials())
        else:
            port = server.add_insecure_port(address.grpc_target)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {address.grpc_target}: address in use?")
    return ListenAddress("tcp", address.host, port).grpc_target


def _add_unix_port(server: grpc.aio.Server, path: str, mode: int) -> str:
    """A Unix socket created with ``mode`` (never wider, not even for a moment)."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"cannot listen on unix:{path}: a file that is not a socket is there")
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            raise ConfigError(f"cannot listen on unix:{path}: another process is serving there")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ConfigError(f"cannot listen on unix:{path}: its directory does not exist")
    previous = os.umask(0o777 & ~mode)
    try:
        server.add_insecure_port(f"unix:{path}")
    except RuntimeError:
        raise ConfigError(f"cannot listen on unix:{path}") from None
    finally:
        os.umask(previous)
    os.chmod(path, mode)
    return f"unix:{path}"


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
