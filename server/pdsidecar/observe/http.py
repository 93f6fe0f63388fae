"""Counting Pipedream HTTP requests by route and outcome, as an ``httpx`` transport."""

from __future__ import annotations

import logging

import httpx

from pdsidecar.observe.stats import HttpStats

log = logging.getLogger("pdsidecar.upstream.http")


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

    def __init__(self, inner: httpx.AsyncBaseTransport, stats: HttpStats) -> None:
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
            log.info("Pipedream %s request: %s %s", route, status, detail)

    async def aclose(self) -> None:
        await self._inner.aclose()
