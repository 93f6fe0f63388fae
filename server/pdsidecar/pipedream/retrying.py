"""One HTTP exchange with Pipedream, retried within a budget and a deadline.

- 5xx answers, timeouts and connection errors are retried up to
  ``policy.max_attempts`` with jittered exponential backoff
  (``backoff_initial`` doubling up to ``backoff_max``), then
  :class:`~pdsidecar.errors.UpstreamUnavailable` with a ``retry_after`` hint
  (the last ``Retry-After``, else ``backoff_max``). Only requests that are safe
  to repeat may be sent through here.
- A deadline (absolute, on ``clock.monotonic()``; None = only the policy's
  timeouts) bounds everything: each attempt's timeouts are cut to the time
  left, and no backoff sleep starts that would end past it
  (:class:`DeadlineExceeded`).
- Each attempt holds one slot of a semaphore shared by all connections, so the
  process never has more than ``policy.upstream_concurrency`` requests in flight.
  Backoff sleeps hold no slot.

httpx exceptions are never chained into ours: their request carries the
Authorization header or the client secret.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import Any

import httpx

from pdsidecar.clock import Clock
from pdsidecar.errors import DeadlineExceeded, UpstreamUnavailable
from pdsidecar.settings import Policy

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class RetryingHttp:
    def __init__(
        self,
        http: httpx.AsyncClient,
        policy: Policy,
        clock: Clock,
        *,
        slots: asyncio.Semaphore | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self._http = http
        self._slots = asyncio.Semaphore(policy.upstream_concurrency) if slots is None else slots
        self._sleep = sleep

    async def send(
        self,
        method: str,
        url: str,
        what: str,
        context: Mapping[str, str],
        *,
        deadline: float | None,
        **request: Any,
    ) -> httpx.Response:
        """The first non-5xx response. ``what`` and ``context`` name the call in errors."""
        policy = self.policy
        hint = policy.backoff_max
        failure = "no attempt"
        attempt = 0
        while attempt < policy.max_attempts:
            attempt += 1
            outcome = await self._attempt(method, url, deadline, request)
            if isinstance(outcome, httpx.Response):
                if outcome.status_code < 500:
                    return outcome
                failure = f"HTTP {outcome.status_code}"
                if "retry-after" in outcome.headers:
                    hint = self.retry_after(outcome)
            elif outcome is None:
                break  # the deadline ran out during the attempt
            else:
                failure = outcome
            if attempt == policy.max_attempts:
                raise UpstreamUnavailable(
                    f"{what} failed after {attempt} attempts ({failure})",
                    metadata=context,
                    retry_after=hint,
                )
            pause = self._backoff(attempt)
            if deadline is not None and self.clock.monotonic() + pause >= deadline:
                break
            logger.info("%s failed (%s); retry %d in %.2fs", what, failure, attempt + 1, pause)
            await self._sleep(pause)
        raise DeadlineExceeded(
            f"{what}: deadline reached on attempt {attempt} (last failure: {failure})",
            metadata=context,
            retry_after=hint,
        )

    def retry_after(self, response: httpx.Response) -> float:
        return parse_retry_after(
            response.headers.get("retry-after"), self.clock, self.policy.default_retry_after
        )

    async def _attempt(
        self, method: str, url: str, deadline: float | None, request: Mapping[str, Any]
    ) -> httpx.Response | str | None:
        """One exchange: the response, why there was none, or None if the deadline passed."""
        remaining = None if deadline is None else deadline - self.clock.monotonic()
        if remaining is not None and remaining <= 0:
            return None
        timeout = httpx.Timeout(
            _cut(self.policy.request_timeout, remaining),
            connect=_cut(self.policy.connect_timeout, remaining),
        )
        failure = ""
        try:
            # The httpx timeouts bound each phase; asyncio.timeout bounds the whole attempt,
            # including the wait for a concurrency slot.
            async with asyncio.timeout(remaining), self._slots:
                return await self._http.request(method, url, timeout=timeout, **request)
        except httpx.TimeoutException:
            failure = "timed out"
        except httpx.RequestError as exc:
            failure = type(exc).__name__
        except TimeoutError:
            return None
        return failure

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, clock: Clock, default: float) -> float:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value or not value.strip():
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - clock.wall()
    return max(0.0, seconds) if math.isfinite(seconds) else default


def _cut(limit: float, remaining: float | None) -> float:
    return limit if remaining is None else max(0.001, min(limit, remaining))
