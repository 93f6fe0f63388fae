"""The blocking client; :mod:`pdsidecar_client.aio` has the asyncio twin.

Both send every call with a deadline (``timeout``, 10 s by default) and
``wait_for_ready``, so a call made while the sidecar restarts waits for it
instead of failing at once; UNAVAILABLE is retried by gRPC's retry policy
inside that deadline. Failures raise :class:`CredentialsError`; one whose
channel never connected names the target and gRPC's last connection error.
``wait_for_ready=False`` fails fast when the sidecar is not there.
``tls_ca`` (and ``tls_cert``/``tls_key`` for mutual TLS) connect to a TLS listener.

Calls about one account take an :class:`~pdsidecar_client.account.AccountRef`, or
``project_id, account_id, source`` and its keywords (``environment=``, ...).
The behaviour every language shares is in ``client/SPEC.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self, Unpack

import grpc

from pdsidecar_client import _requests as rq
from pdsidecar_client import channels as ch
from pdsidecar_client.account import AccountRef, RefFields, account_ref
from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.refreshable import RefreshableCredentials
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc


class CredentialsClient:
    """For sync workers: ``with CredentialsClient("unix:/run/pdsidecar.sock") as c: ...``."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = rq.DEFAULT_TIMEOUT,
        api_token: str | None = None,
        wait_for_ready: bool = True,
        tls_ca: ch.Pem | None = None,
        tls_cert: ch.Pem | None = None,
        tls_key: ch.Pem | None = None,
        tls_server_name: str | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        credentials = ch.tls_credentials(tls_ca, tls_cert, tls_key)
        options = ch.options(rq.CHANNEL_OPTIONS, tls_server_name)
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials, options)
                if credentials is not None
                else grpc.insecure_channel(target, options)
            )
        self._channel = channel
        self._stub = pb_grpc.CredentialsServiceStub(self._channel)
        self._target, self._tls = target, credentials is not None
        self._timeout = timeout
        self._wait_for_ready = wait_for_ready
        self._metadata = rq.metadata(api_token)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Callable[..., Any], request: object, timeout: float | None) -> Any:
        seconds = timeout or self._timeout
        try:
            return method(
                request,
                timeout=seconds,
                metadata=self._metadata,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise self._error(CredentialsError.from_rpc_error(error), seconds) from None

    def _error(self, failure: CredentialsError, seconds: float) -> CredentialsError:
        """``failure``, or when the channel never connected, an error that says so and why."""
        if not rq.maybe_unconnected(failure):
            return failure
        if failure.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            if self._ready():
                return failure  # connected: the sidecar was slow, which the message says
            last_error = self._last_error()
            if last_error is None:
                return failure
        else:
            last_error = ch.last_error(failure.message)
        message = ch.not_connected(
            self._target, seconds, last_error, self._tls, self._wait_for_ready
        )
        return CredentialsError(failure.code, message, connection_error=last_error, hint=message)

    def _ready(self) -> bool:
        future = grpc.channel_ready_future(self._channel)
        try:
            future.result(timeout=0.1)
            return True
        except grpc.FutureTimeoutError:
            return False
        finally:
            future.cancel()

    def _last_error(self) -> str | None:
        """gRPC's last connection error ("" while connecting), or None once connected."""
        probe = self._channel.unary_unary(ch.PROBE_METHOD, None, None)
        try:
            probe(b"", timeout=ch.PROBE_TIMEOUT)
        except grpc.RpcError as error:
            failed = CredentialsError.from_rpc_error(error)
            if failed.code is grpc.StatusCode.UNAVAILABLE:
                return ch.last_error(failed.message)
            return "" if failed.code is grpc.StatusCode.DEADLINE_EXCEEDED else None
        return None

    def get_credentials(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        rejected_access_token: str = "",
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> pb.GetCredentialsResponse:
        ref = account_ref(account, account_id, source, fields)
        response: pb.GetCredentialsResponse = self._call(
            self._stub.GetCredentials, ref.get_request(rejected_access_token), timeout
        )
        return response

    def validate_account(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> pb.ValidateAccountResponse:
        ref = account_ref(account, account_id, source, fields)
        response: pb.ValidateAccountResponse = self._call(
            self._stub.ValidateAccount, ref.validate_request(), timeout
        )
        return response

    def refresh_token(
        self, connection: str = "", *, force: bool = False, timeout: float | None = None
    ) -> pb.RefreshTokenResponse:
        request = pb.RefreshTokenRequest(connection=connection, force=force)
        response: pb.RefreshTokenResponse = self._call(self._stub.RefreshToken, request, timeout)
        return response

    def list_accounts(
        self,
        project_id: str,
        *,
        page_token: str = "",
        timeout: float | None = None,
        **filters: Unpack[rq.ListFilters],
    ) -> pb.ListAccountsResponse:
        """One page (filters: ``connection``, ``environment``, ``source``,
        ``external_user_id``, ``page_size``); :meth:`account_pages` follows the tokens."""
        response: pb.ListAccountsResponse = self._call(
            self._stub.ListAccounts, rq.list_accounts(project_id, page_token, filters), timeout
        )
        return response

    def account_pages(
        self,
        project_id: str,
        *,
        timeout: float | None = None,
        **filters: Unpack[rq.ListFilters],
    ) -> Iterator[pb.ListAccountsResponse]:
        """Every page of accounts, each fetched only when the previous one is used up."""
        request = rq.list_accounts(project_id, "", filters)
        while True:
            page: pb.ListAccountsResponse = self._call(self._stub.ListAccounts, request, timeout)
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    def watch_credentials(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> Iterator[pb.WatchCredentialsResponse]:
        """The raw WatchCredentials stream: GetCredentials' answer now, then each new value.

        Ends by raising :class:`CredentialsError` (UNAVAILABLE when the sidecar stops:
        open it again). No deadline unless ``timeout`` is given. For a sync,
        :meth:`refreshable_credentials` does the reconnecting for you.
        """
        ref = account_ref(account, account_id, source, fields)
        call = self._open_watch(ref, timeout)
        try:
            yield from call
        except grpc.RpcError as error:
            raise CredentialsError.from_rpc_error(error) from None
        finally:
            call.cancel()

    def refreshable_credentials(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> RefreshableCredentials:
        """Credentials kept current for a whole sync (see :mod:`pdsidecar_client.refreshable`).

        Returns once the first value is in (raises :class:`CredentialsError` if
        it cannot be had within ``timeout``); ``close()`` it, or use ``with``.
        """
        ref = account_ref(account, account_id, source, fields)
        return RefreshableCredentials(
            lambda: self._open_watch(ref),
            lambda rejected: self.get_credentials(ref, rejected_access_token=rejected),
            timeout=timeout or self._timeout,
            name=ref.account_id,
        )

    def _open_watch(self, ref: AccountRef, timeout: float | None = None) -> Any:
        return self._stub.WatchCredentials(
            ref.watch_request(),
            timeout=timeout,
            metadata=self._metadata,
            wait_for_ready=self._wait_for_ready,
        )
