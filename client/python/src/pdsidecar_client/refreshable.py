"""Credentials that stay current for a whole sync, for blocking code.

:class:`RefreshableCredentials` holds one WatchCredentials stream open on a
background thread and keeps the latest value in memory. Policy (``client/SPEC.md``):

- **Reads** (``access_token``, ``token``, ``credentials``, ``expires_at``,
  :meth:`get_frozen_credentials`) cost no I/O and no lock: they read one
  immutable snapshot, replaced whole when the sidecar sends a new value, so any
  thread may read at any time. Read the snapshot once
  (:meth:`get_frozen_credentials`) when several fields must belong together.
- **Rotation** is pushed by the sidecar ahead of ``expires_at``; there is no
  refresh to call.
- **A source 401**: call :meth:`reject` with the token the source refused. It
  asks the sidecar for another value (``rejected_access_token``) and returns
  once the object holds one that differs, or raises after ``timeout``.
- **Sidecar restarts**: a stream ending UNAVAILABLE (or RESOURCE_EXHAUSTED,
  or CANCELLED by the server) is opened again with backoff, honouring
  RetryInfo; readers keep the last value meanwhile and never notice.
- **Account problems** (ACCOUNT_DEAD, ACCOUNT_USER_MISMATCH, PERMISSION_DENIED,
  ...) end the watch: every later read raises that :class:`CredentialsError`,
  so the sync stops instead of using a dead account.

The shape follows google-auth's ``Credentials`` (``token``, ``expiry``,
``expired``, ``valid``) and botocore's ``RefreshableCredentials``
(``get_frozen_credentials``). Use it as a context manager, or call
:meth:`close`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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


class WatchCall(Protocol):
    """An open WatchCredentials stream: its messages, and a way to stop it."""

    def __iter__(self) -> Iterator[pb.WatchCredentialsResponse]: ...

    def cancel(self) -> bool: ...


class RefreshableCredentials(CurrentReads):
    """Made by :meth:`CredentialsClient.refreshable_credentials`; see the module docstring.

    ``open_watch`` opens the stream (it raises ``grpc.RpcError`` when it ends badly);
    ``refetch`` is GetCredentials with a rejected access token; ``name`` names the
    account in the thread and ``repr``.
    """

    def __init__(
        self,
        open_watch: Callable[[], WatchCall],
        refetch: Callable[[str], pb.GetCredentialsResponse],
        *,
        timeout: float,
        name: str,
    ) -> None:
        self._open_watch = open_watch
        self._refetch = refetch
        self._name = name
        self._current: FrozenCredentials | None = None
        self._error: CredentialsError | None = None
        self._rejected: dict[str, None] = {}
        self._last_error: CredentialsError | None = None
        self._changed = threading.Condition()
        self._closing = threading.Event()
        self._call: WatchCall | None = None
        self.reconnects = 0
        self._thread = threading.Thread(
            target=self._run, name=f"pdsidecar-watch-{name}", daemon=True
        )
        self._thread.start()
        with self._changed:
            self._changed.wait_for(lambda: self._current is not None or self._error, timeout)
        if self._current is None:
            error = self._error or no_value_error(timeout, self._last_error)
            self.close()
            raise error

    # --- a source 401 ---

    def reject(self, token: str, *, timeout: float = REJECT_TIMEOUT) -> FrozenCredentials:
        """The source answered 401 with ``token``: wait for a different value and return it."""
        current = self.get_frozen_credentials()
        if current.access_token != token:
            return current  # already rotated past it
        self._remember_rejected(token)
        fresh = FrozenCredentials.of(self._refetch(token))
        with self._changed:
            if fresh.access_token != token and self._holds(token):
                self._install(fresh)
            self._changed.wait_for(lambda: not self._holds(token) or self._error, timeout)
        if self._holds(token):
            raise rejected_timeout_error(timeout)
        return self.get_frozen_credentials()

    # --- the stream ---

    def _run(self) -> None:
        delay = 0.0
        while not self._closing.is_set():
            call = self._open_watch()
            self._call = call
            if self._closing.is_set():
                call.cancel()
                return
            error: CredentialsError | None = None
            try:
                for response in call:
                    self._offer(FrozenCredentials.of(response))
                    delay = 0.0
            except grpc.RpcError as failure:
                if self._closing.is_set():
                    return
                error = CredentialsError.from_rpc_error(failure)
            pause = reconnect_delay(error, delay)
            if pause is None:
                assert error is not None
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            delay, self._last_error = pause, error
            self.reconnects += 1
            self._closing.wait(pause)

    def _offer(self, value: FrozenCredentials) -> None:
        with self._changed:
            if self._accepts(value):
                self._install(value)

    def _install(self, value: FrozenCredentials) -> None:
        self._current = value
        self._changed.notify_all()

    def close(self) -> None:
        self._closing.set()
        with self._changed:
            self._error = self._error or closed_error()
            self._changed.notify_all()
        call = self._call
        if call is not None:
            call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "failed" if self._error else "current" if self._current else "starting"
        return f"RefreshableCredentials({self._name}, {state})"
