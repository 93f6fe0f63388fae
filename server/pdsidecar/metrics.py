"""Metrics: cheap counting on the hot path, Prometheus text at scrape time.

The hot path only bumps plain integers: :class:`Observer` counts
each RPC by method and code into an :class:`RpcStats` and files its latency
into histogram buckets; :class:`CountingTransport` counts Pipedream requests
by route and status. Everything else (cache counters, token refreshes and
expiry) is read where it already lives, only when Prometheus scrapes (see
:mod:`pdsidecar.prometheus`).

The observer also gives every RPC a request id (``x-request-id`` metadata,
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
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from pdsidecar.access import AccessControl
from pdsidecar.interceptors import Behavior, Context
from pdsidecar.logs import REQUEST_ID
from pdsidecar.status import to_grpc_status

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


class Observer:
    """Wraps each unary method (see :class:`~pdsidecar.interceptors.WrappingRegistrar`):
    sets the request id, applies the listener's access rules, counts and times the
    call, and logs it at DEBUG."""

    def __init__(self, stats: RpcStats, access: AccessControl | None = None) -> None:
        self._stats = stats
        self._access = access
        self._ids = itertools.count(1)

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        handled = self._stats.handled
        histogram = self._stats.latency.setdefault(method, Histogram())
        counts = histogram.counts
        clock = time.perf_counter
        ids = self._ids
        access = self._access if self._access is not None and self._access.guards(method) else None

        async def observed(request: Any, context: Context) -> Any:
            started = clock()
            request_id = authorization = None
            for name, value in context.invocation_metadata() or ():
                if name == "authorization":
                    authorization = value
                elif name == "x-request-id":
                    request_id = str(value)[:64]
            REQUEST_ID.set(request_id or f"{_PREFIX}{next(ids)}")
            code = "UNKNOWN"
            try:
                if access is not None:
                    refusal = access.refusal(method, request, authorization)
                    if refusal is not None:
                        status = to_grpc_status(refusal)
                        await context.abort(status.code, status.details, status.trailing_metadata)
                response = await inner(request, context)
                code = "OK"
                return response
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                elapsed = clock() - started
                status_code = context.code()
                if status_code is not None:
                    code = status_code.name
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
