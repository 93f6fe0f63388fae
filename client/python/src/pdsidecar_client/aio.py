"""The asyncio client: the same surface as :class:`~pdsidecar_client.client.CredentialsClient`.

Both send every call with a deadline (``timeout``, 10 s by default) and
``wait_for_ready``, so a call made while the sidecar restarts waits for it
instead of failing at once; UNAVAILABLE is retried by gRPC's retry policy
inside that deadline. Failures raise :class:`CredentialsError`; one whose
channel never connected names the target and gRPC's last connection error.
``wait_for_ready=False`` fails fast when the sidecar is not there.
``tls_ca`` (and ``tls_cert``/``tls_key`` for mutual TLS) connect to a TLS listener.
Calls take an :class:`~pdsidecar_client.account.AccountRef` or its values, as in the
blocking client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self, Unpack

import grpc

from pdsidecar_client import _requests as rq
from pdsidecar_client import channels as ch
from pdsidecar_client.account import AccountRef, RefFields, account_ref
from pdsidecar_client.errors import CredentialsError
from pdsidecar_client.refreshable_aio import AsyncRefreshableCredentials
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc


class AsyncCredentialsClient:
    """For asyncio code: ``async with AsyncCredentialsClient(target) as client: ...``."""

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
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        credentials = ch.tls_credentials(tls_ca, tls_cert, tls_key)
        options = ch.options(rq.CHANNEL_OPTIONS, tls_server_name)
        if channel is None:
            channel = (
                grpc.aio.secure_channel(target, credentials, options)
                if credentials is not None
                else grpc.aio.insecure_channel(target, options)
            )
        self._channel = channel
        self._stub = pb_grpc.CredentialsServiceStub(self._channel)
        self._target, self._tls = target, credentials is not None
        self._timeout = timeout
        self._wait_for_ready = wait_for_ready
        self._metadata = rq.metadata(api_token)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def _call(
        self, method: Callable[..., Any], request: object, timeout: float | None
    ) -> Any:
        seconds = timeout or self._timeout
        try:
            return await method(
                request,
                timeout=seconds,
                metadata=self._metadata,
                wait_for_ready=self._wait_for_ready,
            )
        except grpc.RpcError as error:
            raise await self._error(CredentialsError.from_rpc_error(error), seconds) from None

    async def _error(self, failure: CredentialsError, seconds: float) -> CredentialsError:
        """``failure``, or when the channel never connected, an error that says so and why."""
        if not rq.maybe_unconnected(failure):
            return failure
        if failure.code is grpc.StatusCode.DEADLINE_EXCEEDED:
            if self._channel.get_state() is grpc.ChannelConnectivity.READY:
                return failure  # connected: the sidecar was slow, which the message says
            last_error = await self._last_error()
            if last_error is None:
                return failure
        else:
            last_error = ch.last_error(failure.message)
        message = ch.not_connected(
            self._target, seconds, last_error, self._tls, self._wait_for_ready
        )
        return CredentialsError(failure.code, message, connection_error=last_error, hint=message)

    async def _last_error(self) -> str | None:
        """gRPC's last connection error ("" while connecting), or None once connected."""
        probe = self._channel.unary_unary(ch.PROBE_METHOD, None, None)
        try:
            await probe(b"", timeout=ch.PROBE_TIMEOUT)
        except grpc.RpcError as error:
            failed = CredentialsError.from_rpc_error(error)
            if failed.code is grpc.StatusCode.UNAVAILABLE:
                return ch.last_error(failed.message)
            return "" if failed.code is grpc.StatusCode.DEADLINE_EXCEEDED else None
        return None

    async def get_credentials(
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
        response: pb.GetCredentialsResponse = await self._call(
            self._stub.GetCredentials, ref.get_request(rejected_access_token), timeout
        )
        return response

    async def validate_account(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> pb.ValidateAccountResponse:
        ref = account_ref(account, account_id, source, fields)
        response: pb.ValidateAccountResponse = await self._call(
            self._stub.ValidateAccount, ref.validate_request(), timeout
        )
        return response

    async def refresh_token(
        self, connection: str = "", *, force: bool = False, timeout: float | None = None
    ) -> pb.RefreshTokenResponse:
        request = pb.RefreshTokenRequest(connection=connection, force=force)
        response: pb.RefreshTokenResponse = await self._call(
            self._stub.RefreshToken, request, timeout
        )
        return response

    async def list_accounts(
        self,
        project_id: str,
        *,
        page_token: str = "",
        timeout: float | None = None,
        **filters: Unpack[rq.ListFilters],
    ) -> pb.ListAccountsResponse:
        """One page (filters: ``connection``, ``environment``, ``source``,
        ``external_user_id``, ``page_size``); :meth:`account_pages` follows the tokens."""
        response: pb.ListAccountsResponse = await self._call(
            self._stub.ListAccounts, rq.list_accounts(project_id, page_token, filters), timeout
        )
        return response

    async def account_pages(
        self,
        project_id: str,
        *,
        timeout: float | None = None,
        **filters: Unpack[rq.ListFilters],
    ) -> AsyncIterator[pb.ListAccountsResponse]:
        """Every page of accounts (``async for``), each fetched only when it is reached."""
        request = rq.list_accounts(project_id, "", filters)
        while True:
            page: pb.ListAccountsResponse = await self._call(
                self._stub.ListAccounts, request, timeout
            )
            yield page
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def watch_credentials(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> AsyncIterator[pb.WatchCredentialsResponse]:
        """The raw WatchCredentials stream (``async for``); see
        :meth:`CredentialsClient.watch_credentials`."""
        ref = account_ref(account, account_id, source, fields)
        call = self._open_watch(ref, timeout)
        try:
            async for response in call:
                yield response
        except grpc.RpcError as error:
            raise CredentialsError.from_rpc_error(error) from None
        finally:
            call.cancel()

    async def refreshable_credentials(
        self,
        account: AccountRef | str,
        account_id: str = "",
        source: str = "",
        *,
        timeout: float | None = None,
        **fields: Unpack[RefFields],
    ) -> AsyncRefreshableCredentials:
        """Credentials kept current for a whole sync (see
        :mod:`pdsidecar_client.refreshable_aio`); returns once the first value is in."""
        ref = account_ref(account, account_id, source, fields)

        async def refetch(rejected: str) -> pb.GetCredentialsResponse:
            return await self.get_credentials(ref, rejected_access_token=rejected)

        watched = AsyncRefreshableCredentials(
            lambda: self._open_watch(ref), refetch, name=ref.account_id
        )
        return await watched.start(timeout or self._timeout)

    def _open_watch(self, ref: AccountRef, timeout: float | None = None) -> Any:
        return self._stub.WatchCredentials(
            ref.watch_request(),
            timeout=timeout,
            metadata=self._metadata,
            wait_for_ready=self._wait_for_ready,
        )
