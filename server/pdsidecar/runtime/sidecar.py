"""The sidecar process: gRPC servers, health, reflection, metrics, reload.

:class:`Sidecar` owns everything that lives as long as the process: the one
HTTP client to Pipedream and the :class:`~pdsidecar.pipedream.client.PipedreamClient`
over it, one :class:`~pdsidecar.pipedream.connection.PipedreamConnection` per
configured connection, the credential service, the health servicer and the servers.

There is one ``grpc.aio`` server per listener, because grpc.aio cannot tell a
handler which port a call came in on, and allow-lists belong to listeners:
each server has its own :class:`~pdsidecar.api.access.AccessControl`. They share
the servicer, the credential service, health and the metrics.
Every unary handler is wrapped as it registers (see
:mod:`pdsidecar.api.calls`): the wrapper sets the request id, applies the
listener's access rules (token, allow-lists), counts, times and logs the call.
Tracing, when OpenTelemetry is on, wraps the handler inside that: a span is
made only for calls the access check let through, so a caller without the API
token cannot create spans under trace ids of its choosing.
``--health-listen`` servers carry only ``grpc.health.v1`` (for kubelet gRPC
probes on the pod IP), and can therefore bind any address.

``start`` binds every listener or fails with nothing left running; ``reload``
re-reads the config and applies :func:`pdsidecar.runtime.reload.plan`; ``stop``
flips health to NOT_SERVING, refuses new calls and lets in-flight ones finish
within the grace.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from pdsidecar.api import watching
from pdsidecar.api.access import AccessControl, TokenHolder
from pdsidecar.api.calls import CallWrapper
from pdsidecar.api.probes import MalformedLog, ProbeGuard, ProbePool
from pdsidecar.api.reflection import enable_reflection
from pdsidecar.api.servicer import CredentialsServicer, add_to_server
from pdsidecar.api.streams import StreamEnds, install_call_tasks
from pdsidecar.clock import Clock, SystemClock
from pdsidecar.credentials.broker import CredentialBroker
from pdsidecar.credentials.cache import AccountCache
from pdsidecar.credentials.watch import WatchHub
from pdsidecar.observe.http import CountingTransport
from pdsidecar.observe.logs import REDACTOR, Redactor, install_grpc_filter
from pdsidecar.observe.prometheus import MetricsServer, SidecarCollector, TokenReading
from pdsidecar.observe.stats import HttpStats, ReloadStats, RpcStats
from pdsidecar.observe.tracing import Tracing
from pdsidecar.observe.watch_metrics import StreamCollector, WatchCollector
from pdsidecar.observe.wrapping import HandlerRegistrar, Wrap, WrappingRegistrar
from pdsidecar.pipedream.connection import (
    PipedreamConnection,
    make_http_client,
    make_pipedream_client,
)
from pdsidecar.runtime import fleet as fleets
from pdsidecar.runtime import reload as reloading
from pdsidecar.runtime.listeners import (
    add_port,
    check_tcp_port,
    check_unix_path,
    world_accessible,
)
from pdsidecar.runtime.readiness import Readiness
from pdsidecar.runtime.tls import TlsFiles, check_bind
from pdsidecar.secret import Secret
from pdsidecar.settings import (
    ConfigError,
    ConnectionConfig,
    ListenAddress,
    ListenerConfig,
    Policy,
    Settings,
)
from pdsidecar_client.v1 import credentials_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CredentialsService"].full_name
MAX_REQUEST_BYTES = 64 * 1024


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
        pipedream_transport: httpx.AsyncBaseTransport | None = None,
        redis: fleets.Connect | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``pipedream_transport``, ``redis`` and ``rng`` replace the network and chance
        (tests/simulation runs whole fleets in one process on them)."""
        flags = [x if isinstance(x, ListenerConfig) else ListenerConfig(x) for x in listeners]
        self.listeners = (*flags, *settings.listeners)
        if not self.listeners:
            raise ConfigError("at least one --listen address is needed")
        addresses = [x.address for x in self.listeners] + list(health_listeners)
        fixed = [a for a in addresses if a.kind == "unix" or a.port != 0]
        if len(set(fixed)) != len(fixed):
            raise ConfigError("a listen address is given twice")
        check_bind([x.address for x in self.listeners], tls, allow_insecure_bind)
        _check_open_sockets(self.listeners, settings.api_token)
        self.settings, self.loader, self.tls = settings, loader, tls
        self.clock = clock or SystemClock()
        self.bound: list[str] = []
        self.health_bound: list[str] = []
        self._redactor = redactor
        self._prime_tokens = prime_tokens
        self._tracing = tracing

        # Pipedream: one HTTP client (counted), one connection per config entry, the service.
        self.http_stats = HttpStats()
        self.reload_stats = ReloadStats()
        self._http = make_http_client(
            settings,
            wrap_transport=lambda inner: CountingTransport(inner, self.http_stats),
            transport=pipedream_transport,
        )
        self._pipedream = make_pipedream_client(settings, self._http, self.clock)
        # Accounts and tokens are read through holders; with a [fleet] table the fleet's
        # tier on Redis is swapped in there, around the plain sources (runtime/fleet.py).
        self.sources = fleets.Sources.plain(settings, self.clock)
        self.connections: Mapping[str, PipedreamConnection] = {
            name: self._connect(config) for name, config in settings.connections.items()
        }
        cache = AccountCache(settings.policy, self.clock, self.sources.accounts)
        self.service = CredentialBroker(settings, self.connections, self.clock, cache)
        self._redis = redis
        self.fleet = fleets.Fleet.create(settings, self.clock, cache, self.sources, redis)
        self.sources.use(self.fleet)

        # Health: liveness is the server's "" status; readiness is the service's.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.readiness = Readiness(self.health, SERVICE_NAME, lambda: self.connections, self.clock)

        # The servers (built by start), one per listener, sharing one servicer.
        self.rpc_stats = RpcStats()
        self.tokens = TokenHolder(settings.api_token)
        # One per listener, by position: two listeners on one address (port 0) are two.
        self._access = [
            AccessControl(self.tokens, x, listener_name(x, index))
            for index, x in enumerate(self.listeners)
        ]
        self._flag_listeners = len(flags)
        self._malformed = MalformedLog(self.clock)
        # Every server stream's writes: a client that stops reading has its stream ended.
        policy = settings.policy
        self.stream_ends = StreamEnds(
            policy.stream_stall_timeout, policy.stream_stall_grace, self.clock
        )
        self._servicer = CredentialsServicer(
            self.service, self.clock, settings.policy.memo_max_bytes
        )
        # WatchCredentials streams: one hub per process, fed by the account cache.
        self.watchers = WatchHub(
            self.service, settings.policy, self.clock, watching.render, rng=rng
        )
        self._watching = watching.CredentialsWatching(self.watchers, self.clock, self.stream_ends)
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
                    self.http_stats,
                    self.reload_stats,
                    lambda: (
                        self.service.cache.stats,
                        len(self.service.cache),
                        self.service.cache.gate.refused,
                    ),
                    self._token_readings,
                )
            )
            registry.register(WatchCollector(lambda: (self.watchers.stats, self.watchers.feeds)))
            registry.register(StreamCollector(lambda: self.stream_ends))
            registry.register(fleets.FleetCollector(lambda: self.fleet))
            self.metrics = MetricsServer(registry, metrics_listen.host, metrics_listen.port)
        self._learn_secrets()

    async def start(self) -> None:
        # What can be refused is checked before any grpc server exists: a grpc.aio
        # server dropped without ever starting can crash grpc later, in another loop.
        addresses = [x.address for x in self.listeners] + list(self._health_listeners)
        for address in addresses:
            if address.kind == "unix":
                check_unix_path(address.path)
            check_tcp_port(address, self._reuse_port)
        if self.fleet is not None:
            await self.fleet.check()  # a refused password or ACL: ConfigError (exit 2)
        credentials = self.tls.server_credentials() if self.tls is not None else None
        install_grpc_filter()
        install_call_tasks()  # so a stalled stream can be cancelled (api/streams.py)
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
        if self.fleet is not None:
            self.fleet.start()
        await self.readiness.start(prime=self._prime_tokens)
        log.info("pdsidecar listening on %s", ", ".join(self.bound + self.health_bound))
        if self.settings.api_token is None:
            log.warning(
                "no API token is set: every local process that can reach %s can read every "
                "credential this sidecar serves (set PDSIDECAR_API_TOKEN or api_token_file)",
                ", ".join(self.bound),
            )

    def _build_servers(self) -> None:
        policy = self.settings.policy
        for listener, access in zip(self.listeners, self._access, strict=True):
            server = _grpc_server(self._reuse_port, policy, _call_limit(policy, api=True))
            # Services register through the registrar: their handlers arrive observed
            # and guarded (cheaper per call than an interceptor; see observe/wrapping.py).
            wrapper = CallWrapper(self.rpc_stats, access, policy.max_concurrent_rpcs)
            registrar: Any = WrappingRegistrar(server, self._wrap_for(wrapper), wrapper.wrap_stream)
            add_to_server(self._servicer, registrar)
            watching.add_to_server(self._watching, registrar)
            # Health and reflection: a pool of their own, the token for streams (api/probes.py).
            guard = ProbeGuard(ProbePool(policy), self._malformed, self.stream_ends, self.tokens)
            probes = HandlerRegistrar(registrar, guard.handler)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, probes)
            # v1 and v1alpha, answering for methods too (ghz, grpcurl describe).
            enable_reflection((SERVICE_NAME, health.SERVICE_NAME), probes)
            self.servers.append((listener, server))
        for address in self._health_listeners:
            server = _grpc_server(self._reuse_port, policy, _call_limit(policy, api=False))
            # The probe-only listener: Health/Watch without the token, in its own pool.
            guard = ProbeGuard(ProbePool(policy), self._malformed, self.stream_ends)
            health_pb2_grpc.add_HealthServicer_to_server(
                self.health, HandlerRegistrar(server, guard.handler)
            )
            self.servers.append((ListenerConfig(address), server))

    def _wrap_for(self, wrapper: CallWrapper) -> Wrap:
        """The call wrapper, with tracing inside it: a span only for calls it lets through."""
        if self._tracing is None:
            return wrapper.wrap
        trace = self._tracing.wrapper.wrap
        return lambda inner, method: wrapper.wrap(trace(inner, method), method)

    async def reload(self) -> bool:
        """Re-read the config and apply it; False (and nothing changed) if it does not load."""
        if self.loader is None:
            log.info("reload: no config file to read again (settings came from flags)")
            return False
        try:
            new = self.loader()
            _check_open_sockets(self.listeners, new.api_token)
        except ConfigError as error:
            self.reload_stats.failed += 1
            log.error("reload failed, keeping the running config: %s", error)
            return False
        change = reloading.plan(self.settings, new)
        rebuilt = set(change.added + change.changed)
        connections = {
            name: self._connect(config) if name in rebuilt else self.connections[name]
            for name, config in change.settings.connections.items()
        }
        self._apply(change.settings, connections)
        self.fleet = fleets.refit(
            self.fleet, self.settings, self.clock, self.service.cache, self.sources, self._redis
        )
        self.readiness.prime(change.added + change.changed)
        self.reload_stats.ok += 1
        log.info(
            "reloaded config: connections added %s, changed %s, removed %s",
            change.added or "none",
            change.changed or "none",
            change.removed or "none",
        )
        if change.allow_lists:
            log.info("reload: new allow-lists on %s", ", ".join(change.allow_lists))
        if change.ignored:
            log.warning("reload: restart to apply: %s", "; ".join(change.ignored))
        return True

    def _connect(self, config: ConnectionConfig) -> PipedreamConnection:
        return PipedreamConnection.create(
            config,
            self._pipedream,
            self.settings.policy,
            self.clock,
            tokens=self.sources.tokens,
            learn=self._on_token,
        )

    def _apply(self, settings: Settings, connections: Mapping[str, PipedreamConnection]) -> None:
        """Swap in reloaded settings and connections (listener addresses stay as they are)."""
        replaced = {n for n, c in self.connections.items() if connections.get(n) is not c}
        self.service.replace_connections(settings, connections)
        self.settings, self.connections = settings, connections
        self.watchers.reread_connections(replaced)
        self.tokens.set(settings.api_token)
        # The config's listeners follow the flags' (reload.plan keeps their order).
        for index, listener in enumerate(settings.listeners):
            self._access[self._flag_listeners + index].update(listener)
        self._learn_secrets()

    def _token_readings(self) -> dict[str, TokenReading]:
        readings = {}
        for name, connection in self.connections.items():
            status = connection.token_status()
            tokens = connection.tokens
            expires_at = status.expires_at if status is not None else None
            readings[name] = TokenReading(tokens.refreshes_ok, tokens.refreshes_failed, expires_at)
        return readings

    async def stop(self, grace: float = 10.0) -> None:
        await self.readiness.stop()
        await self.health.enter_graceful_shutdown()
        # Watch streams would hold the grace period open: end them now, UNAVAILABLE,
        # so their clients reconnect (to the next sidecar).
        self.watchers.close(watching.stopping())
        await self._close(grace)

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
        await self.watchers.aclose()
        await self.service.aclose()
        if self.fleet is not None:
            await self.fleet.aclose()
        await fleets.close_retired()
        await self._http.aclose()

    def _learn_secrets(self) -> None:
        """The redaction filter learns every secret this process holds, and each new token."""
        settings = self.settings
        self._redactor.remember(
            settings.api_token, *(c.client_secret for c in settings.connections.values())
        )

    def _on_token(self, token: Secret, lifetime: float) -> None:
        self._redactor.remember_token(token, lifetime)
        self.readiness.poke()


def listener_name(listener: ListenerConfig, index: int) -> str:
    """A listener's name for admission and read-budget shares: its configured address and
    its place among the listeners (``127.0.0.1:0#1``), the same on every sidecar of a fleet
    started from one config."""
    return f"{listener.address.grpc_target}#{index}"


def _check_open_sockets(listeners: Sequence[ListenerConfig], api_token: Secret | None) -> None:
    """Refuse Unix sockets any local user may open while no API token guards them."""
    open_sockets = world_accessible(listeners)
    if open_sockets and api_token is None:
        raise ConfigError(
            f"{', '.join(open_sockets)} lets every local user connect, and no API token is "
            "set: use socket mode 0600 or 0660, or set PDSIDECAR_API_TOKEN / api_token_file"
        )


def _call_limit(policy: Policy, *, api: bool) -> int:
    """A server's limit: the sum of its pools' caps, which are enforced before it.

    The API's calls (CallWrapper), watchers (WatchHub), health and reflection
    (ProbePool) each refuse past their own cap, so this backstop is never reached by
    one kind alone; the probes' call share is counted twice, room for calls refused
    at once that gRPC still counts for a moment.
    """
    probes = 2 * policy.probe_calls + policy.probe_streams
    api_share = policy.max_concurrent_rpcs + policy.max_watchers if api else 0
    return max(1, api_share + probes)


def _grpc_server(reuse_port: bool, policy: Policy, limit: int) -> grpc.aio.Server:
    return grpc.aio.server(
        # A flood gets RESOURCE_EXHAUSTED from gRPC itself instead of a slow death. gRPC
        # counts streams too (see _call_limit).
        maximum_concurrent_rpcs=limit,
        options=[
            # Several processes on one port only with --workers; else a second
            # sidecar on the same port must fail to start, not share it.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            # Requests are a few hundred bytes; this leaves room for every field at its cap
            # and bounds what calls in flight hold (the call limit x this).
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            # Requests are small: no probing to widen what a stream may send ahead of the
            # handler (its window stays 64 KiB), so streams that are refused or never
            # read cannot park megabytes each in gRPC's buffers.
            ("grpc.http2.bdp_probe", 0),
            # One client connection cannot take every call slot: its streams past this
            # are refused (REFUSED_STREAM; clients see UNAVAILABLE).
            ("grpc.max_concurrent_streams", max(1, policy.max_streams_per_connection)),
            # Calls arriving faster than the server takes them wait in a queue that
            # grpc cancels past 1,000 (CANCELLED): too few for a fleet of watchers
            # reconnecting at once after a restart.
            ("grpc.server.max_pending_requests", 20_000),
            ("grpc.server.max_pending_requests_hard_limit", 40_000),
        ],
    )
