"""The Prometheus side of the metrics: collected at scrape time, served over HTTP.

:class:`SidecarCollector` reads the counters :mod:`pdsidecar.observe.stats` keeps,
the account cache's stats and each connection's token provider (refreshes,
expiry) only when Prometheus scrapes; nothing here runs per request.
:class:`MetricsServer` serves ``GET /metrics`` on its own port, inside the
sidecar's event loop, so collection never races the loop.

Names and labels (no label holds a secret or an account id; connection names
come from the config, so they are bounded):

- ``pdsidecar_grpc_server_handled_total{grpc_service, grpc_method, grpc_code}``
- ``pdsidecar_grpc_server_handling_seconds{grpc_service, grpc_method}`` (histogram)
- ``pdsidecar_cache_{hits,misses,coalesced_waits,stale_served,evictions}_total``,
  ``pdsidecar_cache_entries``
- ``pdsidecar_upstream_requests_total{route, status}``
- ``pdsidecar_token_refreshes_total{connection, result}``,
  ``pdsidecar_token_expiry_seconds{connection}``
- ``pdsidecar_config_reloads_total{result}``
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from pdsidecar.observe.stats import BUCKETS, HttpStats, ReloadStats, RpcStats
from pdsidecar.settings import ConfigError

log = logging.getLogger(__name__)


class CacheCounters(Protocol):
    """What the collector reads of the account cache's counters."""

    hits: int
    misses: int
    coalesced: int
    stale_served: int
    evictions: int
    refetches: int
    not_found_hits: int
    withdrawn: int


class TokenReading(NamedTuple):
    """One connection's Pipedream token, as the collector reads it."""

    refreshes_ok: int
    refreshes_failed: int
    expires_at: float | None  # Unix seconds; None: no token yet


class SidecarCollector(Collector):
    """Reads the sidecar's counters when scraped; nothing here runs per request."""

    def __init__(
        self,
        rpcs: RpcStats,
        http: HttpStats,
        reloads: ReloadStats,
        cache: Callable[[], tuple[CacheCounters, int, int]],
        tokens: Callable[[], Mapping[str, TokenReading]],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rpcs, self._http, self._reloads = rpcs, http, reloads
        self._cache, self._tokens, self._wall = cache, tokens, wall

    def collect(self) -> Iterator[Metric]:
        yield from self._rpc_metrics()
        stats, entries, refused = self._cache()
        for name, value, doc in (
            ("hits", stats.hits, "Answers from a fresh cached account."),
            ("misses", stats.misses, "Account fetches started."),
            ("coalesced_waits", stats.coalesced, "Callers that joined a fetch in flight."),
            ("stale_served", stats.stale_served, "Stale answers because Pipedream failed."),
            ("evictions", stats.evictions, "Accounts evicted for size."),
            ("refetches", stats.refetches, "Fetches forced by a rejected access token."),
            ("not_found_hits", stats.not_found_hits, "ACCOUNT_NOT_FOUND answered from memory."),
            ("withdrawn", stats.withdrawn, "Queued fetches dropped: every waiter had left."),
            ("refused", refused, "Fetches refused at once as OVERLOADED (admission control)."),
        ):
            yield CounterMetricFamily(f"pdsidecar_cache_{name}", doc, value=value)
        yield GaugeMetricFamily("pdsidecar_cache_entries", "Accounts cached.", value=entries)
        requests = CounterMetricFamily(
            "pdsidecar_upstream_requests",
            "Pipedream HTTP requests by route and status (error/timeout: no answer).",
            labels=("route", "status"),
        )
        for (route, status), count in sorted(self._http.requests.items()):
            requests.add_metric((route, status), count)
        yield requests
        yield from self._token_metrics()
        reloads = CounterMetricFamily(
            "pdsidecar_config_reloads", "Config reloads (SIGHUP) by result.", labels=("result",)
        )
        reloads.add_metric(("ok",), self._reloads.ok)
        reloads.add_metric(("failed",), self._reloads.failed)
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
            "Pipedream token requests by connection and result.",
            labels=("connection", "result"),
        )
        expiry = GaugeMetricFamily(
            "pdsidecar_token_expiry_seconds",
            "Seconds until the connection's Pipedream token expires (absent: no token).",
            labels=("connection",),
        )
        now = self._wall()
        for name, reading in sorted(self._tokens().items()):
            refreshes.add_metric((name, "ok"), reading.refreshes_ok)
            refreshes.add_metric((name, "failed"), reading.refreshes_failed)
            if reading.expires_at is not None:
                expiry.add_metric((name,), reading.expires_at - now)
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
        log.info("serving Prometheus metrics at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def _metrics(self, request: web.Request) -> web.Response:
        # The format the scraper asks for (OpenMetrics when its Accept says so), chosen
        # by prometheus_client itself, as its own exposition servers do.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(self._registry)
        return web.Response(body=body, headers={"content-type": content_type})

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
