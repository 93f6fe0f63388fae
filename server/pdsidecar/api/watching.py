"""WatchCredentials, the stream: the gRPC face of :mod:`pdsidecar.credentials.watch`.

The request is validated as GetCredentials' is (same query, same errors), the
first message is GetCredentials' answer, and every later one is written as the
hub renders it: serialized once per group of identical watchers, so a rotation
seen by a thousand streams is serialized once, not a thousand times. Errors end
the stream with the status GetCredentials would send. The handler is a
coroutine writing with ``context.write`` (not an async generator), so the
per-call wrapper (:mod:`pdsidecar.api.calls`) wraps it as it wraps unary methods.
Writes are bounded (:mod:`pdsidecar.api.streams`): a client that takes no message
within ``Policy.stream_stall_timeout`` has its stream ended (STREAM_STALLED); the
watcher keeps its place among ``max_watchers`` until the stream is over.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from pdsidecar.api import convert
from pdsidecar.api.access import allowed_sources, caller_key
from pdsidecar.api.servicer import CredentialsServicer
from pdsidecar.api.status import to_grpc_status
from pdsidecar.api.streams import StreamEnds, StreamStalled
from pdsidecar.clock import Clock
from pdsidecar.credentials import mapping
from pdsidecar.credentials.broker import CredentialsResult
from pdsidecar.credentials.watch import WatchHub
from pdsidecar.credentials.watchers import Watcher
from pdsidecar.errors import AccountProblem, FieldViolation, InvalidRequest, SidecarError
from pdsidecar_client.v1 import credentials_pb2 as pb

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
METHOD = "WatchCredentials"


def render(result: CredentialsResult) -> bytes:
    """A WatchCredentialsResponse on the wire, made once per group of watchers."""
    return pb.WatchCredentialsResponse(
        credentials=result.credentials,
        account=convert.account_info(result.account),
        expires_at=convert.timestamp(result.expires_at),
    ).SerializeToString()


def _concealed(error: SidecarError, source: str) -> SidecarError:
    """On a source-restricted listener, an app mismatch does not name the account's app."""
    if error.reason != mapping.APP_MISMATCH or allowed_sources() is None:
        return error
    hidden = mapping.other_app(error.metadata.get("account_id", "?"), source)
    return AccountProblem(hidden.message, reason=hidden.reason, metadata=error.metadata)


def stopping() -> SidecarError:
    return SidecarError(
        "pdsidecar is shutting down; reconnect to watch again", reason="SIDECAR_STOPPING"
    )


class CredentialsWatching:
    """The WatchCredentials method, over a :class:`WatchHub`."""

    def __init__(self, hub: WatchHub, clock: Clock, ends: StreamEnds) -> None:
        self._hub = hub
        self._clock = clock
        self._ends = ends

    async def WatchCredentials(self, request: bytes, context: Context) -> None:
        watcher: Watcher | None = None
        source = ""
        try:
            try:
                parsed = pb.WatchCredentialsRequest.FromString(request)
            except DecodeError:
                violation = FieldViolation("(request)", "is not a WatchCredentialsRequest message")
                raise InvalidRequest([violation]) from None
            source = parsed.source
            query = CredentialsServicer._query(parsed)
            remaining = context.time_remaining()
            deadline = None if remaining is None else self._clock.monotonic() + remaining
            watcher = await self._hub.watch(
                query, deadline=deadline, caller=caller_key(context.peer())
            )
            stream = self._ends.stream(context)
            try:
                while True:
                    await stream.write(await watcher.next())
            except StreamStalled as stalled:
                await stream.end(stalled, METHOD)
                return
        except SidecarError as error:
            status = to_grpc_status(_concealed(error, source))
            code, details, trailers = status.code, status.details, status.trailing_metadata
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.error("%s failed with an unexpected error", METHOD, exc_info=False)
            log.debug("unexpected error detail", exc_info=True)
            code, details, trailers = grpc.StatusCode.INTERNAL, "internal error in pdsidecar", ()
        finally:
            # Before the status goes out: a caller that sees its stream end and watches
            # again at once finds the stream counted out (and its slot free).
            if watcher is not None:
                self._hub.leave(watcher)
        await context.abort(code, details, trailers)


def add_to_server(watching: CredentialsWatching, server: grpc.aio.Server) -> None:
    """Registers WatchCredentials (raw bytes in and out) beside the unary methods."""
    handlers = {METHOD: grpc.unary_stream_rpc_method_handler(watching.WatchCredentials)}
    name = pb.DESCRIPTOR.services_by_name["CredentialsService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
