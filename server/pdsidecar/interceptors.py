"""The one pattern the server interceptors share: wrap a unary method's behavior.

A ``grpc.aio`` server interceptor sees a call before its handler is chosen
and may return another handler. To observe or check the call itself, the
handler's behavior is wrapped in a coroutine with the same ``(request,
context) -> response`` shape, so unary-unary semantics are kept. The wrapped
handler is built once per method and reused while the server hands out the
same original handler: no allocation per call. Streaming handlers (health
Watch, reflection) pass through untouched.
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


class UnaryInterceptor(_Base):
    """Base class: subclasses say how to wrap a method in :meth:`wrap`."""

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        return self.wrapped(handler, handler_call_details.method)

    def wrapped(self, handler: Handler | None, method: str) -> Handler:
        if handler is None or handler.unary_unary is None:
            return handler  # type: ignore[return-value]  # None: an unknown method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # sync-typed stub
            cached = (handler, with_behavior(handler, self.wrap(inner, method)))
            self._wrapped[method] = cached
        return cached[1]

    def wrap(self, inner: Behavior, method: str) -> Behavior:
        raise NotImplementedError
