"""The one pattern the server interceptors share: wrap a unary method's behavior.

A ``grpc.aio`` server interceptor sees a call before its handler is chosen
and may return another handler. To observe or check the call itself, the
handler's behavior is wrapped in a coroutine with the same ``(request,
context) -> response`` shape, so unary-unary semantics are kept. The wrapped
handler is built once per original handler and reused: no allocation per
call. Streaming handlers (health Watch, reflection) pass through untouched.

grpc.aio runs each interceptor as a coroutine of its own on every call, so the
sidecar keeps their number down: one observing interceptor that also applies
the access rules (:mod:`pdsidecar.metrics`, :mod:`pdsidecar.access`), plus
tracing only when it is on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

# The grpc stubs make these generic; at run time they are plain classes.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Behavior: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]


def with_behavior(handler: Handler, behavior: Behavior) -> Handler:
    """``handler`` with another unary-unary behavior, same (de)serializers."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


if TYPE_CHECKING:
    _Base = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Base = grpc.aio.ServerInterceptor


class Wrapped:
    """Wrapped handlers, built once per original handler (kept by identity)."""

    def __init__(self, wrap: Callable[[Behavior, str], Behavior]) -> None:
        self._wrap = wrap
        self._built: dict[int, tuple[Handler, Handler]] = {}

    def get(self, handler: Handler, method: str) -> Handler:
        built = self._built.get(id(handler))
        if built is None or built[0] is not handler:
            inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # sync-typed stub
            built = (handler, with_behavior(handler, self._wrap(inner, method)))
            self._built[id(handler)] = built
        return built[1]


class UnaryInterceptor(_Base):
    """Base class: subclasses say how to wrap a method in :meth:`wrap`."""

    def __init__(self) -> None:
        self._wrapped = Wrapped(self.wrap)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # None: an unknown method
        return self._wrapped.get(handler, handler_call_details.method)

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        raise NotImplementedError
