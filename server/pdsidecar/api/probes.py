"""Health and reflection on a listener: a pool of their own, the token for streams, bad bytes.

grpc.aio has one ``maximum_concurrent_rpcs`` per server, and a server per port,
so on a listener the API, health and reflection share one limit. Each gets its
own share of it here instead, enforced before that limit is reached:

- :class:`ProbePool`: at most ``Policy.probe_calls`` Health/Check calls at once,
  and ``Policy.probe_streams`` Health/Watch and reflection streams
  (``probe_streams_per_connection`` from one connection: one peer; on a Unix
  socket every peer is ``unix:``, so the cap is the listener's). Past them, the
  call ends at once with RESOURCE_EXHAUSTED (OVERLOADED), holding no slot.
  API calls have their cap in the call wrapper (:mod:`pdsidecar.api.calls`) and
  the server's limit is the sum, so a flood of one kind never refuses another.
- With an API token set, Health/Watch and reflection need it like the API does
  (UNAUTHENTICATED): a stream is held open, a Check is not. Health/Check stays
  open for probes; a ``--health-listen`` listener (health only, no token) is the
  probe-only listener for what cannot send one.
- Requests arrive as bytes and are parsed here: undecodable ones, and ones past
  :data:`MAX_PROBE_REQUEST_BYTES` (health and reflection requests are names),
  end with INVALID_ARGUMENT (INVALID_REQUEST), not grpc's UNKNOWN and a
  traceback, and are logged once per caller per :data:`MALFORMED_LOG_INTERVAL`.

Streams hold little: health and reflection write one message at a time, through
:class:`~pdsidecar.api.streams.StreamEnds`, so a client that does not read
holds one unsent message per stream, within its pool's cap, and only until
``Policy.stream_stall_timeout`` (then the stream ends, see
:mod:`pdsidecar.api.streams`); the stream keeps its slot until it is over.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from pdsidecar.api.access import TokenHolder, unauthenticated
from pdsidecar.api.status import to_grpc_status
from pdsidecar.api.streams import StreamEnds, StreamStalled
from pdsidecar.clock import Clock
from pdsidecar.errors import FieldViolation, InvalidRequest, Overloaded, SidecarError
from pdsidecar.observe.wrapping import Context, Handler
from pdsidecar.settings import Policy

log = logging.getLogger(__name__)

# Health and reflection requests are a service or symbol name: far below this.
MAX_PROBE_REQUEST_BYTES: Final = 2048
# One log line per caller per this many seconds for malformed requests.
MALFORMED_LOG_INTERVAL: Final = 60.0
# Callers remembered for that; the memory is cleared past it.
_MALFORMED_CALLERS: Final = 1024

Deserializer = Callable[[bytes], Any]


class ProbePool:
    """Health and reflection's share of one listener's server (``Policy.probe_*``)."""

    def __init__(self, policy: Policy) -> None:
        self._max_calls = max(1, policy.probe_calls)
        self._max_streams = max(1, policy.probe_streams)
        self._max_per_connection = max(1, policy.probe_streams_per_connection)
        self.calls = 0
        self.streams = 0
        self._per_connection: dict[str, int] = {}
        self.refused = 0

    def enter_call(self) -> None:
        if self.calls >= self._max_calls:
            self.refused += 1
            raise Overloaded(
                f"this listener is answering its maximum of {self._max_calls} health checks "
                "(policy.probe_calls)",
                retry_after=1.0,
            )
        self.calls += 1

    def leave_call(self) -> None:
        self.calls -= 1

    def enter_stream(self, peer: str) -> None:
        held = self._per_connection.get(peer, 0)
        if held >= self._max_per_connection or self.streams >= self._max_streams:
            self.refused += 1
            which = (
                f"{self._max_per_connection} from one connection "
                "(policy.probe_streams_per_connection)"
                if held >= self._max_per_connection
                else f"{self._max_streams} (policy.probe_streams)"
            )
            raise Overloaded(
                f"this listener holds its maximum of health and reflection streams: {which}",
                retry_after=5.0,
            )
        self._per_connection[peer] = held + 1
        self.streams += 1

    def leave_stream(self, peer: str) -> None:
        self.streams -= 1
        held = self._per_connection.get(peer, 1) - 1
        if held > 0:
            self._per_connection[peer] = held
        else:
            self._per_connection.pop(peer, None)


class MalformedLog:
    """A WARNING for an undecodable request, at most once per caller per interval."""

    def __init__(self, clock: Clock, interval: float = MALFORMED_LOG_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}
        self.seen = 0

    def report(self, method: str, peer: str) -> None:
        self.seen += 1
        now = self._clock.monotonic()
        last = self._last.get(peer)
        if last is not None and now - last < self._interval:
            return
        if len(self._last) >= _MALFORMED_CALLERS:
            self._last.clear()
        self._last[peer] = now
        log.warning(
            "%s: a malformed request from %s, answered INVALID_ARGUMENT "
            "(more from this caller are not logged for %.0f s)",
            method,
            peer,
            self._interval,
        )


async def _abort(context: Context, error: SidecarError) -> None:
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


class ProbeGuard:
    """Wraps health and reflection handlers for one listener (a ``HandlerWrap`` for
    :class:`~pdsidecar.observe.wrapping.HandlerRegistrar`).

    ``tokens`` None: a probe-only listener, streams need no token. Every stream is
    served by a coroutine that writes through ``ends``, whatever the inner handler's
    style (one that writes itself is given a context whose writes are bounded).
    """

    def __init__(
        self,
        pool: ProbePool,
        malformed: MalformedLog,
        ends: StreamEnds,
        tokens: TokenHolder | None = None,
    ) -> None:
        self._pool = pool
        self._malformed = malformed
        self._ends = ends
        self._tokens = tokens

    def handler(self, handler: Handler, method: str) -> Handler:
        """``handler`` guarded (built once per handler by the registrar)."""
        parse: Deserializer = handler.request_deserializer or bytes
        respond = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, parse), response_serializer=respond
            )
        if handler.unary_stream is not None:
            if inspect.iscoroutinefunction(handler.unary_stream):
                behavior: Any = self._stream(handler.unary_stream, method, parse)
            else:
                behavior = self._generator(handler.unary_stream, method, parse)
            return grpc.unary_stream_rpc_method_handler(behavior, response_serializer=respond)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(handler.stream_stream, method, parse), response_serializer=respond
            )
        return handler  # client streaming: health and reflection have none

    async def _parse(self, parse: Deserializer, raw: bytes, method: str, context: Context) -> Any:
        if len(raw) > MAX_PROBE_REQUEST_BYTES:
            self._malformed.report(method, context.peer())
            violation = FieldViolation(
                "(request)", f"is larger than {MAX_PROBE_REQUEST_BYTES} bytes ({len(raw)})"
            )
            await _abort(context, InvalidRequest([violation]))
        try:
            return parse(raw)
        except DecodeError:
            self._malformed.report(method, context.peer())
            name = method.rpartition("/")[2]
            violation = FieldViolation("(request)", f"is not a valid {name} request message")
            await _abort(context, InvalidRequest([violation]))

    async def _admit_stream(self, context: Context) -> str:
        """Checks the token and takes a stream slot (aborts if either refuses); the peer."""
        tokens = self._tokens
        if tokens is not None and tokens.expected is not None:
            given = dict(context.invocation_metadata() or ()).get("authorization")
            if not tokens.matches(given):
                await _abort(context, unauthenticated())
        peer = context.peer()
        try:
            self._pool.enter_stream(peer)
        except Overloaded as error:
            await _abort(context, error)
        return peer

    def _unary(self, inner: Any, method: str, parse: Deserializer) -> Any:
        pool = self._pool

        async def behavior(raw: bytes, context: Context) -> Any:
            request = await self._parse(parse, raw, method, context)
            try:
                pool.enter_call()
            except Overloaded as error:
                await _abort(context, error)
            try:
                return await inner(request, context)
            finally:
                pool.leave_call()

        return behavior

    def _stream(self, inner: Any, method: str, parse: Deserializer) -> Any:
        async def behavior(raw: bytes, context: Context) -> None:
            request = await self._parse(parse, raw, method, context)
            peer = await self._admit_stream(context)
            stream = self._ends.stream(context)
            try:
                await inner(request, stream)
            except StreamStalled as stalled:
                await stream.end(stalled, method)
            finally:
                self._pool.leave_stream(peer)

        return behavior

    def _generator(self, inner: Any, method: str, parse: Deserializer) -> Any:
        async def behavior(raw: bytes, context: Context) -> None:
            request = await self._parse(parse, raw, method, context)
            peer = await self._admit_stream(context)
            try:
                await self._relay(inner(request, context), context, method)
            finally:
                self._pool.leave_stream(peer)

        return behavior

    def _bidi(self, inner: Any, method: str, parse: Deserializer) -> Any:
        async def requests(raw_requests: Any, context: Context) -> AsyncIterator[Any]:
            async for raw in raw_requests:
                yield await self._parse(parse, raw, method, context)

        async def behavior(raw_requests: Any, context: Context) -> None:
            peer = await self._admit_stream(context)
            try:
                responses = inner(requests(raw_requests, context), context)
                await self._relay(responses, context, method)
            finally:
                self._pool.leave_stream(peer)

        return behavior

    async def _relay(self, responses: AsyncIterator[Any], context: Context, method: str) -> None:
        """Writes what an async-generator handler yields, each write bounded."""
        stream = self._ends.stream(context)
        try:
            async for response in responses:
                await stream.write(response)
        except StreamStalled as stalled:
            await responses.aclose()  # type: ignore[attr-defined]
            await stream.end(stalled, method)
