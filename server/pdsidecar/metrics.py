"""Metrics: cheap counting on the hot path, Prometheus text at scrape time.

The hot path only bumps plain integers: :class:`ObservingInterceptor` counts
each RPC by method and code into an :class:`RpcStats` and files its latency
into histogram buckets; :class:`CountingTransport` counts Pipedream requests
by route and status. Everything else (cache counters, token refreshes and
expiry) is read where it already lives, by :class:`SidecarCollector`, only
when Prometheus scrapes. :class:`MetricsServer` serves ``/metrics`` over HTTP
on its own port, inside the sidecar's event loop (so collection never races
the loop).

The interceptor also gives every RPC a request id (``x-request-id`` metadata,
else generated) for the logs, and logs one line per RPC at DEBUG.

No label carries a secret or an account id: labels are gRPC method and code,
Pipedream route and HTTP status, and configured connection names.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import httpx
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pdsidecar.account_cache import CacheStats
from pdsidecar.config import ConfigError
from pdsidecar.interceptors import Behavior, Context, Continuation, Handler, UnaryInterceptor
from pdsidecar.logs import REQUEST_ID
from pdsidecar.upstream import Upstream

log = logging.getLogger("pdsidecar.rpc")

# Seconds; the cached path answers in well under a millisecond.
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_PREFIX: Final = f"{os.getpid():x}-"


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0


@dataclass
class RpcStats:
    # (full method, code name) -> calls
    handled: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)


@dataclass
class UpstreamStats:
    # (route, HTTP status or "error"/"timeout") -> requests
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    reloads: dict[str, int] = field(default_factory=dict)  # "ok" / "failed"


class ObservingInterceptor(UnaryInterceptor):
    """Counts and times unary RPCs, sets the request id, logs each RPC at DEBUG."""

    def __init__(self, stats: RpcStats) -> None:
        super().__init__()
        self._stats = stats
        self._ids = itertools.count(1)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        request_id = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "x-request-id":
                request_id = str(value)[:64]
                break
        REQUEST_ID.set(request_id or f"{_PREFIX}{next(self._ids)}")
        return self.wrapped(handler, handler_call_details.method)

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        handled = self._stats.handled
        histogram = self._stats.latency.setdefault(method, Histogram())
        counts = histogram.counts
        clock = time.perf_counter

        async def observed(request: Any, context: Context) -> Any:
            started = clock()
            code = "UNKNOWN"
            try:
                response = await inner(request, context)
                code = "OK"
                return response
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                elapsed = clock() - started
                status = context.code()
                if status is not None:
                    code = status.name
                key = (method, code)
                handled[key] = handled.get(key, 0) + 1
                counts[bisect_left(BUCKETS, elapsed)] += 1
                histogram.total += elapsed
                if log.isEnabledFor(logging.DEBUG):
                    _log_rpc(method, code, elapsed, context)

        return observed


def _log_rpc(method: str, code: str, elapsed: float, context: Context) -> None:
    log.debug(
        "%s %s in %.2f ms",
        method,
        code,
        elapsed * 1000,
        extra={
            "grpc_method": method,
            "grpc_code": code,
            "duration_ms": round(elapsed * 1000, 3),
            "peer": context.peer(),
        },
    )


def route_of(url: httpx.URL) -> str:
    """The Pipedream endpoint a URL calls: token, account, list or other (bounded)."""
    path = url.path.rstrip("/")
    if path.endswith("/oauth/token"):
        return "token"
    if path.endswith("/accounts"):
        return "list"
    if "/accounts/" in path:
        return "account"
    return "other"


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts each Pipedream request by route and outcome; logs failures at INFO."""

    def __init__(self, inner: httpx.AsyncBaseTransport, stats: UpstreamStats) -> None:
        self._inner = inner
        self._stats = stats

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = route_of(request.url)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TimeoutException:
            self._count(route, "timeout")
            raise
        except httpx.TransportError as error:
            self._count(route, "error", type(error).__name__)
            raise
        self._count(route, str(response.status_code))
        return response

    def _count(self, route: str, status: str, detail: str = "") -> None:
        key = (route, status)
        self._stats.requests[key] = self._stats.requests.get(key, 0) + 1
        if not status.startswith("2"):
            log_upstream.info("Pipedream %s request: %s %s", route, status, detail)

    async def aclose(self) -> None:
        await self._inner.aclose()


log_upstream = logging.getLogger("pdsidecar.upstream.http")


class SidecarCollector(Collector):
    """Reads the sidecar's counters when scraped; nothing here runs per request."""

    def __init__(
        self,
        rpcs: RpcStats,
        upstream: UpstreamStats,
        cache: Callable[[], tuple[CacheStats, int]],
        upstreams: Callable[[], Mapping[str, Upstream]],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rpcs, self._upstream = rpcs, upstream
        self._cache, self._upstreams, self._wall = cache, upstreams, wall

    def collect(self) -> Iterator[Metric]:
        yield from self._rpc_metrics()
        stats, entries = self._cache()
        for name, value, doc in (
            ("hits", stats.hits, "Answers from a fresh cached account."),
            ("misses", stats.misses, "Account fetches started."),
            ("coalesced_waits", stats.coalesced, "Callers that joined a fetch in flight."),
            ("stale_served", stats.stale_served, "Stale answers because Pipedream failed."),
            ("evictions", stats.evictions, "Accounts evicted for size."),
        ):
            yield CounterMetricFamily(f"pdsidecar_cache_{name}", doc, value=value)
        yield GaugeMetricFamily("pdsidecar_cache_entries", "Accounts cached.", value=entries)
        requests = CounterMetricFamily(
            "pdsidecar_upstream_requests",
            "Pipedream HTTP requests by route and status (error/timeout: no answer).",
            labels=("route", "status"),
        )
        for (route, status), count in sorted(self._upstream.requests.items()):
            requests.add_metric((route, status), count)
        yield requests
        yield from self._token_metrics()
        reloads = CounterMetricFamily(
            "pdsidecar_config_reloads", "Config reloads (SIGHUP) by result.", labels=("result",)
        )
        for result in ("ok", "failed"):
            reloads.add_metric((result,), self._upstream.reloads.get(result, 0))
        yield reloads

    def _rpc_metrics(self) -> Iterator[Metric]:
        handled = CounterMetricFamily(
            "pdsidecar_grpc_server_handled",
            "RPCs completed, by method and gRPC status code.",
            labels=("grpc_service", "grpc_method", "grpc_code"),
        )
        for (method, code), count in sorted(self._rpcs.handled.items()):
            handled.add_metric((*_split(method), code), count)
        yield handled
        latency = HistogramMetricFamily(
            "pdsidecar_grpc_server_handling_seconds",
            "RPC latency in the server, by method.",
            labels=("grpc_service", "grpc_method"),
        )
        for method, histogram in sorted(self._rpcs.latency.items()):
            running, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
            latency.add_metric(list(_split(method)), buckets, histogram.total)
        yield latency

    def _token_metrics(self) -> Iterator[Metric]:
        refreshes = CounterMetricFamily(
            "pdsidecar_token_refreshes",
            "Pipedream API token requests by connection and result.",
            labels=("connection", "result"),
        )
        expiry = GaugeMetricFamily(
            "pdsidecar_token_expiry_seconds",
            "Seconds until the connection's Pipedream API token expires (absent: no token).",
            labels=("connection",),
        )
        now = self._wall()
        for name, upstream in sorted(self._upstreams().items()):
            tokens = upstream.tokens
            refreshes.add_metric((name, "ok"), tokens.refreshes_ok)
            refreshes.add_metric((name, "failed"), tokens.refreshes_failed)
            status = upstream.token_status()
            if status is not None:
                expiry.add_metric((name,), status.expires_at - now)
        yield refreshes
        yield expiry


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class MetricsServer:
    """``GET /metrics`` on its own HTTP port, in the sidecar's event loop."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise ConfigError(
                f"--metrics-listen {self.host}:{self.port}: cannot listen ({error.strerror})"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
