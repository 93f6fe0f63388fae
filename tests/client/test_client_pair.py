"""The blocking and the async Python clients keep one surface, so they cannot drift.

The pair repeats every keyword by hand (as google-cloud's client pairs do); this test
compares them: same public methods, same parameters in the same order, same kinds and
defaults, and the same annotations once ``Awaitable``/``Iterator`` wrappers are set aside
(and an ``Async`` twin's prefix: ``RefreshableCredentials``, ``AsyncRefreshableCredentials``).
"""

from __future__ import annotations

import inspect
from typing import Any

from pdsidecar_client import AsyncCredentialsClient, CredentialsClient

# Context-manager protocols differ by design (``with`` against ``async with``).
_PROTOCOLS = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and (not name.startswith("_") or name == "__init__")
        if name not in _PROTOCOLS
    }


def _shape(function: Any) -> list[tuple[str, Any, Any, str]]:
    # A channel is grpc.Channel in one and grpc.aio.Channel in the other, by design.
    signature = inspect.signature(function)
    return [
        (p.name, p.kind, p.default, str(p.annotation).replace("grpc.aio.", "grpc."))
        for p in signature.parameters.values()
    ]


def _returns(function: Any) -> str:
    annotation = inspect.signature(function).return_annotation
    text = str(annotation)
    for wrapper in ("AsyncIterator[", "Iterator[", "Awaitable["):
        if text.startswith(wrapper):
            text = text.removeprefix(wrapper).removesuffix("]")
    # An object with a blocking and an async twin (RefreshableCredentials) counts as one.
    return text.removeprefix("Async")


def test_the_two_clients_have_the_same_methods() -> None:
    assert sorted(_public(CredentialsClient)) == sorted(_public(AsyncCredentialsClient))


def test_each_method_takes_the_same_parameters_and_returns_the_same_type() -> None:
    sync, aio = _public(CredentialsClient), _public(AsyncCredentialsClient)
    for name in sync:
        assert _shape(sync[name]) == _shape(aio[name]), name
        assert _returns(sync[name]) == _returns(aio[name]), name


def test_the_async_methods_are_coroutines_where_the_blocking_ones_block() -> None:
    sync, aio = _public(CredentialsClient), _public(AsyncCredentialsClient)
    for name in sync:
        if name == "__init__":
            continue
        blocking = inspect.iscoroutinefunction(sync[name])
        awaitable = inspect.iscoroutinefunction(aio[name]) or inspect.isasyncgenfunction(aio[name])
        assert not blocking, name
        assert awaitable or _returns(aio[name]).startswith("AsyncIterator"), name
