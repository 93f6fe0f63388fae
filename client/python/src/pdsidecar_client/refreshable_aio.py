"""Credentials that stay current for a whole sync, for asyncio code.

:class:`AsyncRefreshableCredentials` is
:class:`~pdsidecar_client.refreshable.RefreshableCredentials` on an asyncio
task instead of a thread, with the same policy and the same reads (no I/O);
:meth:`reject` is a coroutine. Made by
:meth:`AsyncCredentialsClient.refreshable_credentials`; ``aclose()`` it or use
``async with``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

import grpc

from pdsidecar_client._watching import (
    REJECT_TIMEOUT,
    CurrentReads,
    FrozenCredentials,
    closed_error,
    no_value_error,
    reconnect_delay,
    rejected_timeout_error,
)
from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb


class AsyncWatchCall(Protocol):
    """An open WatchCredentials stream (grpc.aio): its messages, and a way to stop it."""

    def __aiter__(self) -> AsyncIterator[pb.WatchCredentialsResponse]: ...

    def cancel(self) -> bool: ...


class AsyncRefreshableCredentials(CurrentReads):
    """``open_watch`` opens the stream, ``refetch`` is GetCredentials with a rejected
    token; :meth:`start` returns once the first value is in."""

    def __init__(
        self,
        open_watch: Callable[[], AsyncWatchCall],
        refetch: Callable[[str], Awaitable[pb.GetCredentialsResponse]],
        *,
        name: str,
    ) -> None:
        self._open_watch = open_watch
        self._refetch = refetch
        self._name = name
        self._current: FrozenCredentials | None = None
        self._error: CredentialsError | None = None
        self._last_error: CredentialsError | None = None
        self._rejected: dict[str, None] = {}
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._call: AsyncWatchCall | None = None
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def start(self, timeout: float) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._current is not None or self._error),
                    timeout,
                )
        except TimeoutError:
            pass
        if self._current is None:
            error = self._error or no_value_error(timeout, self._last_error)
            await self.aclose()
            raise error
        return self

    # --- a source 401 ---

    async def reject(self, token: str, *, timeout: float = REJECT_TIMEOUT) -> FrozenCredentials:
        """The source answered 401 with ``token``: wait for a different value and return it."""
        current = self.get_frozen_credentials()
        if current.access_token != token:
            return current
        self._remember_rejected(token)
        fresh = FrozenCredentials.of(await self._refetch(token))
        async with self._changed:
            if fresh.access_token != token and self._holds(token):
                self._install(fresh)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: not self._holds(token) or self._error),
                    timeout,
                )
        if self._holds(token):
            raise rejected_timeout_error(timeout)
        return self.get_frozen_credentials()

    # --- the stream ---

    async def _run(self) -> None:
        delay = 0.0
        while not self._closing.is_set():
            call = self._call = self._open_watch()
            error: CredentialsError | None = None
            try:
                async for response in call:
                    await self._offer(FrozenCredentials.of(response))
                    delay = 0.0
            except grpc.RpcError as failure:
                if self._closing.is_set():
                    return
                error = CredentialsError.from_rpc_error(failure)
            pause = reconnect_delay(error, delay)
            if pause is None:
                assert error is not None
                async with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            delay, self._last_error = pause, error
            self.reconnects += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), pause)

    async def _offer(self, value: FrozenCredentials) -> None:
        async with self._changed:
            if self._accepts(value):
                self._install(value)

    def _install(self, value: FrozenCredentials) -> None:
        self._current = value
        self._changed.notify_all()

    async def aclose(self) -> None:
        self._closing.set()
        self._error = self._error or closed_error()
        if self._call is not None:
            self._call.cancel()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "failed" if self._error else "current" if self._current else "starting"
        return f"AsyncRefreshableCredentials({self._name}, {state})"
