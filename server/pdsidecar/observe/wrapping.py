"""Observing and guarding calls: wrap each unary method's behavior, once.

To observe or check a call, a method's behavior is wrapped in a coroutine of
the same ``(request, context) -> response`` shape, so unary-unary semantics
are kept. A unary-stream method written as a coroutine (it writes with
``context.write``, like WatchCredentials) has that shape too and is wrapped
when a ``wrap_stream`` is given; async-generator streams (health Watch) and
bidirectional ones (reflection) pass through.

Where it happens matters on the hot path. A ``grpc.aio`` server interceptor
runs as extra coroutines on every call, before the handler is even chosen.
So the sidecar wraps handlers when services *register* instead: a
:class:`WrappingRegistrar` stands in for the server while the servicer, health
and reflection add themselves, and hands the server already-wrapped
handlers. A call then costs one extra coroutine frame. Tracing, which is off
by default, wraps the same way, inside the access check.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

# The grpc stubs make these generic; at run time they are plain classes.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
Behavior: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"
# (original behavior, full method name) -> wrapped behavior
Wrap: TypeAlias = Callable[[Behavior, str], Behavior]
# (original handler, full method name) -> the handler to serve
HandlerWrap: TypeAlias = Callable[[Handler, str], Handler]

if TYPE_CHECKING:
    _GenericBase = grpc.GenericRpcHandler[Any, Any]
else:
    _GenericBase = grpc.GenericRpcHandler


def with_behavior(handler: Handler, behavior: Behavior) -> Handler:
    """``handler`` with another unary-unary behavior, same (de)serializers."""
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def with_stream_behavior(handler: Handler, behavior: Behavior) -> Handler:
    """``handler`` with another (coroutine) unary-stream behavior, same (de)serializers."""
    return grpc.unary_stream_rpc_method_handler(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BuiltOnce:
    """A :data:`HandlerWrap` that builds each handler's replacement once (kept by identity):
    generic handlers are asked for theirs on every call."""

    def __init__(self, build: HandlerWrap) -> None:
        self._build = build
        self._built: dict[int, tuple[Handler, Handler]] = {}

    def __call__(self, handler: Handler, method: str) -> Handler:
        if handler is None:
            return handler  # an unknown method
        built = self._built.get(id(handler))
        if built is not None and built[0] is handler:
            return built[1]
        replacement = self._build(handler, method)
        self._built[id(handler)] = (handler, replacement)
        return replacement


class Wrapped:
    """Builds wrapped unary (and coroutine unary-stream) handlers; others pass through."""

    def __init__(self, wrap: Wrap, wrap_stream: Wrap | None = None) -> None:
        self._wrap = wrap
        self._wrap_stream = wrap_stream

    def build(self, handler: Handler, method: str) -> Handler:
        if handler.unary_unary is not None:
            inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # sync-typed stub
            return with_behavior(handler, self._wrap(inner, method))
        if self._wrap_stream is not None and inspect.iscoroutinefunction(handler.unary_stream):
            inner = handler.unary_stream
            return with_stream_behavior(handler, self._wrap_stream(inner, method))
        return handler  # other streams: untouched


class _WrappedGeneric(_GenericBase):
    def __init__(self, inner: Generic, wrap_handler: HandlerWrap) -> None:
        self._inner = inner
        self._wrap_handler = wrap_handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        return self._wrap_handler(handler, handler_call_details.method)  # type: ignore[arg-type]


class HandlerRegistrar:
    """Takes service registrations in place of ``server`` (a ``grpc.aio.Server`` or
    another registrar), passing each handler through ``build`` once."""

    def __init__(self, server: Any, build: HandlerWrap) -> None:
        self._server = server
        self._wrap_handler = BuiltOnce(build)

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[Generic]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGeneric(handler, self._wrap_handler) for handler in generic_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        wrapped = {
            name: self._wrap_handler(handler, f"/{service_name}/{name}")
            for name, handler in method_handlers.items()
        }
        self._server.add_registered_method_handlers(service_name, wrapped)


class WrappingRegistrar(HandlerRegistrar):
    """Wraps unary handlers (and coroutine unary-stream handlers with ``wrap_stream``)."""

    def __init__(
        self, server: grpc.aio.Server, wrap: Wrap, wrap_stream: Wrap | None = None
    ) -> None:
        super().__init__(server, Wrapped(wrap, wrap_stream).build)
