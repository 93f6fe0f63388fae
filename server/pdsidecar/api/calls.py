"""What happens around every call: request id, access check, counting, a debug line.

:class:`CallWrapper` wraps each unary method (and WatchCredentials, the
coroutine stream) once, as it registers (see
:mod:`pdsidecar.observe.wrapping`). Per call it sets the request id
(``x-request-id`` metadata, else generated) for the logs, applies the
listener's :class:`~pdsidecar.api.access.AccessControl` before the servicer
sees the request, counts the call by method and code and files its latency
into histogram buckets (plain integers; Prometheus reads them at scrape
time), and logs one line per call at DEBUG.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from bisect import bisect_left
from typing import Any, Final

from pdsidecar.api.access import LISTENER, AccessControl
from pdsidecar.api.status import to_grpc_status
from pdsidecar.errors import Overloaded
from pdsidecar.observe.logs import REQUEST_ID
from pdsidecar.observe.stats import BUCKETS, Histogram, RpcStats
from pdsidecar.observe.wrapping import Behavior, Context

log = logging.getLogger("pdsidecar.rpc")

_PREFIX: Final = f"{os.getpid():x}-"


class CallWrapper:
    """Wraps each unary method (see :class:`~pdsidecar.observe.wrapping.WrappingRegistrar`):
    sets the request id, applies the listener's access rules, counts and times the
    call, and logs it at DEBUG."""

    def __init__(
        self, stats: RpcStats, access: AccessControl | None = None, max_calls: int | None = None
    ) -> None:
        self._stats = stats
        self._access = access
        self._ids = itertools.count(1)
        # API calls in flight, capped here (not only by grpc's server-wide limit, which
        # health and reflection share) so they never take the probes' share.
        self._max_calls = max_calls
        self.in_flight = 0

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        return self._wrap(inner, method, timed=True)

    def wrap_stream(self, inner: Behavior, method: str) -> Behavior:
        """A coroutine server-streaming method: the same, but its (long) lifetime is not
        filed as latency."""
        return self._wrap(inner, method, timed=False)

    def _wrap(self, inner: Behavior, method: str, *, timed: bool) -> Behavior:
        handled = self._stats.handled
        histogram = self._stats.latency.setdefault(method, Histogram()) if timed else Histogram()
        counts = histogram.counts
        clock = time.perf_counter
        ids = self._ids
        access = self._access if self._access is not None and self._access.guards(method) else None
        limited = timed and access is not None and self._max_calls is not None

        async def observed(request: Any, context: Context) -> Any:
            started = clock()
            request_id = authorization = None
            for name, value in context.invocation_metadata() or ():
                if name == "authorization":
                    authorization = value
                elif name == "x-request-id":
                    request_id = str(value)[:64]
            REQUEST_ID.set(request_id or f"{_PREFIX}{next(ids)}")
            LISTENER.set(access)
            code = "UNKNOWN"
            counted = False
            try:
                if limited:
                    if self.in_flight >= self._max_calls:  # type: ignore[operator]
                        status = to_grpc_status(self._overloaded())
                        await context.abort(status.code, status.details, status.trailing_metadata)
                    self.in_flight += 1
                    counted = True
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
                if counted:
                    self.in_flight -= 1
                elapsed = clock() - started
                status_code = context.code()
                if status_code is not None:
                    code = status_code.name
                key = (method, code)
                handled[key] = handled.get(key, 0) + 1
                if timed:
                    counts[bisect_left(BUCKETS, elapsed)] += 1
                    histogram.total += elapsed
                if log.isEnabledFor(logging.DEBUG):
                    _log_rpc(method, code, elapsed, context)

        return observed

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"this listener is serving its maximum of {self._max_calls} calls "
            "(policy.max_concurrent_rpcs)",
            retry_after=0.1,
        )


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
