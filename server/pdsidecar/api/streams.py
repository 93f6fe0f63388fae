"""Server streams a client cannot stall: a write it does not take ends the stream.

gRPC hands a stream's message to the connection only as fast as the client
reads (HTTP/2 flow control): ``context.write`` waits while the client's window
is full. A client that stops reading would hold its stream, its pool slot and
one unsent message forever. So every server stream (WatchCredentials,
Health/Watch, reflection) writes through :meth:`StreamEnds.write`:

1. A write the client has not taken within ``Policy.stream_stall_timeout``
   raises :class:`StreamStalled` into the handler, which unwinds (it produces
   nothing more), and :meth:`StreamEnds.end` queues the end of the stream:
   RESOURCE_EXHAUSTED, reason ``STREAM_STALLED``. gRPC sends a status only after
   the messages before it, so a client that reads again gets the message that
   was waiting, then this status.
2. A client that has not taken even that within ``Policy.stream_stall_grace``
   is cut off: the call is cancelled, so gRPC frees its message and the slot.
   That client sees CANCELLED (``"CANCELLED"``) after the messages it had
   received in full, when it reads again.

grpc.aio gives a handler no way to cancel its call (``abort`` queues a status
like any other; the C core's cancel is not exposed). A call is cancelled when
grpc.aio drops its last reference to it while the call is open, and grpc.aio
holds it in one task per call (``_schedule_rpc_coro``: it waits for the
client to close, then for the handler). :func:`install_call_tasks` makes the
event loop remember that task for each call in a context variable the handler
inherits; :meth:`StreamEnds.end` cancels it and the stream's own pending
writes, and the handler returns. (grpc.aio's ``maximum_concurrent_rpcs`` counts
a call until that task ends, so its slot is freed then too.) Should a grpcio
release rename that task, nothing is found to cancel: the end stays queued and
the stream holds its slot until its client reads or leaves, as before, and one
warning says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import Coroutine
from typing import Any, Final

from pdsidecar.api.status import to_grpc_status
from pdsidecar.clock import Clock
from pdsidecar.errors import SidecarError
from pdsidecar.observe.wrapping import Context

log = logging.getLogger(__name__)

# grpc.aio's per-call task (grpc/_cython/_cygrpc/aio/server.pyx.pxi): its coroutine's name.
_CALL_TASK_COROUTINE: Final = "_schedule_rpc_coro"
# One log line per caller per this many seconds for stalled streams.
STALL_LOG_INTERVAL: Final = 60.0
_STALL_CALLERS: Final = 1024

# Per call: a one-item list holding a weak reference to grpc.aio's task for the call.
_CALL_TASK: contextvars.ContextVar[list[weakref.ref[asyncio.Future[Any]]]] = contextvars.ContextVar(
    "pdsidecar_call_task"
)


class StreamStalled(Exception):
    """The client did not take a stream's message in time; ``write`` still waits for it."""

    def __init__(self, write: asyncio.Future[None]) -> None:
        super().__init__("the client did not take the stream's message in time")
        self.write = write


def stalled_error(timeout: float) -> SidecarError:
    return SidecarError(
        f"the client took no message from this stream for {timeout:g} s "
        "(policy.stream_stall_timeout); read the stream as it is written, and watch again",
        reason="STREAM_STALLED",
        retry_after=1.0,
    )


def install_call_tasks(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Let handlers find their call's grpc.aio task (see the module docstring). Idempotent;
    another task factory already set is kept, and called for every task."""
    loop = loop or asyncio.get_running_loop()
    previous: Any = loop.get_task_factory()
    if getattr(previous, "_pdsidecar_call_tasks", False):
        return

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> Any:
        if getattr(coro, "__name__", None) != _CALL_TASK_COROUTINE:
            if previous is not None:
                return previous(loop, coro, **kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)
        # Its own context, inherited by the handler's task (which it creates).
        context = (kwargs.pop("context", None) or contextvars.copy_context()).copy()
        holder: list[weakref.ref[asyncio.Future[Any]]] = []
        context.run(_CALL_TASK.set, holder)  # filled once the task exists
        task: asyncio.Future[Any]
        if previous is not None:
            task = previous(loop, coro, context=context, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, context=context, **kwargs)
        holder.append(weakref.ref(task))
        return task

    factory._pdsidecar_call_tasks = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]


def _call_task() -> asyncio.Future[Any] | None:
    holder = _CALL_TASK.get(None)
    return holder[0]() if holder else None


def _settle(task: asyncio.Future[Any]) -> None:
    """Retrieve a write's or an abort's outcome: failures there are expected, not news."""
    if not task.cancelled():
        task.exception()


class StreamEnds:
    """Stall-bounded writes for server streams, and their ends (``Policy.stream_stall_*``)."""

    def __init__(self, timeout: float, grace: float, clock: Clock) -> None:
        self.timeout = max(timeout, 1e-3)
        self.grace = max(grace, 0.0)
        self._clock = clock
        self._logged: dict[str, float] = {}
        self._warned = False
        self.stalled = 0
        self.cancelled = 0

    def stream(self, context: Context) -> Stream:
        """``context`` for one stream, its writes bounded."""
        return Stream(self, context)

    async def _write(self, context: Context, message: Any) -> None:
        write = asyncio.ensure_future(context.write(message))
        write.add_done_callback(_settle)
        try:
            await asyncio.wait((write,), timeout=self.timeout)
        except BaseException:
            write.cancel()  # the handler ends (the client left): nothing waits for it
            raise
        if not write.done():
            raise StreamStalled(write)
        write.result()

    async def end(self, context: Context, stalled: StreamStalled, method: str) -> None:
        """End a stalled stream (see the module docstring); returns when it is over for
        this handler, which then returns."""
        self.stalled += 1
        self._log(method, context.peer())
        status = to_grpc_status(stalled_error(self.timeout))
        ending = asyncio.ensure_future(
            context.abort(status.code, status.details, status.trailing_metadata)
        )
        ending.add_done_callback(_settle)
        try:
            await asyncio.wait((ending,), timeout=self.grace)
            if ending.done() or stalled.write.done():
                return  # the client took the end (or left)
            call = _call_task()
            if call is None:
                self._warn()
                await asyncio.wait((ending,))
                return
            # Cancelled while it waits for the client to close (not later: then it awaits
            # this handler); grpc.aio then drops the call, which cancels it in the core.
            self.cancelled += 1
            call.cancel()
        finally:
            for pending in (stalled.write, ending):
                pending.cancel()
            await asyncio.gather(stalled.write, ending, return_exceptions=True)

    def _log(self, method: str, peer: str) -> None:
        now = self._clock.monotonic()
        last = self._logged.get(peer)
        if last is not None and now - last < STALL_LOG_INTERVAL:
            return
        if len(self._logged) >= _STALL_CALLERS:
            self._logged.clear()
        self._logged[peer] = now
        log.warning(
            "%s: the client at %s took no message for %g s: the stream ends "
            "RESOURCE_EXHAUSTED (STREAM_STALLED), and is cancelled if the client does not "
            "take that within %g s (more from this caller are not logged for %.0f s)",
            method,
            peer,
            self.timeout,
            self.grace,
            STALL_LOG_INTERVAL,
        )

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "this grpcio does not let pdsidecar cancel a stalled stream: its end stays "
                "queued until its client reads or leaves (the stream keeps its slot meanwhile)"
            )


class Stream:
    """One stream's context, with :meth:`write` bounded by :class:`StreamEnds`; everything
    else is the grpc context's (so a handler that writes itself can be given this)."""

    def __init__(self, ends: StreamEnds, context: Context) -> None:
        self._ends = ends
        self._context = context
        self._started = False

    async def write(self, message: Any) -> None:
        """``context.write``, or :class:`StreamStalled` once the client has not taken the
        message within the timeout (the write still waits, in the exception)."""
        if not self._started:
            # The headers first, alone (headers need no flow control): the end can then be
            # queued even while the first message waits (else both would carry headers).
            self._started = True
            await self._context.send_initial_metadata(())
        await self._ends._write(self._context, message)

    async def end(self, stalled: StreamStalled, method: str) -> None:
        await self._ends.end(self._context, stalled, method)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
