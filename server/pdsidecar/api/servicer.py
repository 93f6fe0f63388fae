"""The gRPC face of the sidecar: validate, call the credential service, map errors.

Each method reads the request, validates it (INVALID_ARGUMENT with field
violations), hands a typed query to :class:`CredentialBroker` and turns the
result into a response. A :class:`SidecarError` becomes its status from the
error table; anything else is a bug, logged without request values and sent as
INTERNAL with a generic message, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from pdsidecar.api import convert
from pdsidecar.api.access import allowed_sources, caller_key
from pdsidecar.api.memo import ResponseMemo, canonical
from pdsidecar.api.status import to_grpc_status
from pdsidecar.api.validation import RequestValidator
from pdsidecar.clock import Clock
from pdsidecar.credentials.broker import AccountQuery, CredentialBroker
from pdsidecar.errors import FieldViolation, InvalidRequest, SidecarError
from pdsidecar.settings import Policy
from pdsidecar_client.v1 import credentials_pb2 as pb

log = logging.getLogger(__name__)

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]


class CredentialsServicer:
    """The four unary methods of ``pdsidecar.v1.CredentialsService``, whose fifth, the
    WatchCredentials stream, is :mod:`pdsidecar.api.watching`'s; :func:`add_to_server`
    registers these four (GetCredentials on raw bytes, see :meth:`GetCredentialsRaw`)."""

    def __init__(
        self, service: CredentialBroker, clock: Clock, memo_max_bytes: int = Policy.memo_max_bytes
    ) -> None:
        self._service = service
        self._clock = clock
        self.memo = ResponseMemo(memo_max_bytes)

    async def GetCredentialsRaw(self, request: bytes, context: Context) -> bytes:
        """GetCredentials on the wire format: the hot path for cached accounts.

        The answer for a cached account does not change while its cache entry
        is current, so the serialized response is kept, keyed by the request's
        own bytes, and sent again without parsing or building a message. Only
        canonical requests are kept (see :mod:`pdsidecar.api.memo`).
        """
        reused = self.memo.get(request)
        if reused is not None:
            return reused
        parsed = await _parse(pb.GetCredentialsRequest, request, context)
        response, still_current = await self._get_credentials(parsed, context)
        serialized = response.SerializeToString()
        if not parsed.rejected_access_token and canonical(request, parsed):
            self.memo.put(request, serialized, still_current)
        return serialized

    def _deadline(self, context: Context) -> float | None:
        # Python does not propagate deadlines by itself: pass what is left down.
        remaining = context.time_remaining()
        return None if remaining is None else self._clock.monotonic() + remaining

    async def _answer(
        self,
        method: str,
        context: Context,
        call: Callable[[], Awaitable[Response]],
    ) -> Response:
        try:
            return await call()
        except SidecarError as error:
            await _abort(context, error)
            raise  # abort() raises; this line keeps the type checker honest
        except Exception:
            # Only the exception type: a message could carry upstream text.
            log.error("%s failed with an unexpected error", method, exc_info=False)
            log.debug("unexpected error detail", exc_info=True)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in pdsidecar")
            raise

    @staticmethod
    def _query(
        request: pb.GetCredentialsRequest | pb.ValidateAccountRequest | pb.WatchCredentialsRequest,
    ) -> AccountQuery:
        """The validated query of a GetCredentials or ValidateAccount request."""
        check = RequestValidator()
        ref = request.account
        query = AccountQuery(
            connection=check.connection("account.connection", ref.connection),
            project_id=check.project_id("account.project_id", ref.project_id),
            account_id=check.account_id("account.account_id", ref.account_id),
            environment=check.environment("account.environment", ref.environment),
            external_user_id=check.external_user_id(
                "account.external_user_id", ref.external_user_id
            ),
            source=check.source("source", request.source),
            required_fields=check.field_names("required_fields", request.required_fields),
            optional_fields=check.field_names("optional_fields", request.optional_fields),
        )
        check.done()
        return query

    async def _get_credentials(
        self, request: pb.GetCredentialsRequest, context: Context
    ) -> tuple[pb.GetCredentialsResponse, Callable[[], bool]]:
        async def call() -> tuple[pb.GetCredentialsResponse, Callable[[], bool]]:
            query = self._query(request)
            result = await self._service.get_credentials(
                query,
                rejected_access_token=request.rejected_access_token or None,
                deadline=self._deadline(context),
                caller=caller_key(context.peer()),
                allowed_sources=allowed_sources(),
            )
            response = pb.GetCredentialsResponse(
                credentials=result.credentials,
                account=convert.account_info(result.account),
                expires_at=convert.timestamp(result.expires_at),
            )
            return response, result.still_current

        return await self._answer("GetCredentials", context, call)

    async def ValidateAccount(
        self,
        request: pb.ValidateAccountRequest,
        context: grpc.aio.ServicerContext[pb.ValidateAccountRequest, pb.ValidateAccountResponse],
    ) -> pb.ValidateAccountResponse:
        async def call() -> pb.ValidateAccountResponse:
            query = self._query(request)
            validation = await self._service.validate_account(
                query,
                deadline=self._deadline(context),
                caller=caller_key(context.peer()),
                allowed_sources=allowed_sources(),
            )
            return pb.ValidateAccountResponse(
                valid=validation.valid,
                problems=[
                    pb.Problem(reason=convert.reason_value(p.reason), message=p.message)
                    for p in validation.problems
                ],
                account=(convert.account_info(validation.account) if validation.account else None),
            )

        return await self._answer("ValidateAccount", context, call)

    async def RefreshToken(
        self,
        request: pb.RefreshTokenRequest,
        context: grpc.aio.ServicerContext[pb.RefreshTokenRequest, pb.RefreshTokenResponse],
    ) -> pb.RefreshTokenResponse:
        async def call() -> pb.RefreshTokenResponse:
            check = RequestValidator()
            connection = check.connection("connection", request.connection)
            check.done()
            status = await self._service.refresh_token(
                connection,
                force=request.force,
                deadline=self._deadline(context),
            )
            return pb.RefreshTokenResponse(
                connection=status.connection,
                expires_at=convert.timestamp(status.expires_at),
                refreshed=status.refreshed,
            )

        return await self._answer("RefreshToken", context, call)

    async def ListAccounts(
        self,
        request: pb.ListAccountsRequest,
        context: grpc.aio.ServicerContext[pb.ListAccountsRequest, pb.ListAccountsResponse],
    ) -> pb.ListAccountsResponse:
        async def call() -> pb.ListAccountsResponse:
            check = RequestValidator()
            connection = check.connection("connection", request.connection)
            project_id = check.project_id("project_id", request.project_id)
            environment = check.environment("environment", request.environment)
            source = check.source("source", request.source, required=False)
            external_user_id = check.external_user_id("external_user_id", request.external_user_id)
            page_size = check.page_size("page_size", request.page_size)
            page_token = check.page_token("page_token", request.page_token)
            check.done()
            accounts, next_page_token = await self._service.list_accounts(
                connection,
                project_id,
                environment,
                source=source or None,
                external_user_id=external_user_id or None,
                page_size=page_size,
                page_token=page_token or None,
                deadline=self._deadline(context),
            )
            return pb.ListAccountsResponse(
                accounts=[convert.account_info(a) for a in accounts],
                next_page_token=next_page_token,
            )

        return await self._answer("ListAccounts", context, call)


async def _abort(context: Context, error: SidecarError) -> None:
    """Ends the call with the error's rich status (always raises)."""
    status = to_grpc_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def _parsing(
    message: type[Request], method: Callable[[Request, Context], Awaitable[Response]]
) -> Callable[[bytes, Context], Awaitable[Response]]:
    """``method`` on raw request bytes, so undecodable bytes get INVALID_ARGUMENT.

    (grpc's own deserializer failure would reach the caller as UNKNOWN.)
    """

    async def behavior(request: bytes, context: Context) -> Response:
        return await method(await _parse(message, request, context), context)

    return behavior


async def _parse(message: type[Request], request: bytes, context: Context) -> Request:
    try:
        return message.FromString(request)
    except DecodeError:
        violation = FieldViolation("(request)", f"is not a {message.__name__} message")
        await _abort(context, InvalidRequest([violation]))
        raise


def add_to_server(servicer: CredentialsServicer, server: grpc.aio.Server) -> None:
    """Registers the service. Requests arrive as bytes and are parsed here; GetCredentials
    also answers in bytes (see GetCredentialsRaw)."""
    handlers = {
        "GetCredentials": grpc.unary_unary_rpc_method_handler(servicer.GetCredentialsRaw),
        "ValidateAccount": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.ValidateAccountRequest, servicer.ValidateAccount),
            response_serializer=pb.ValidateAccountResponse.SerializeToString,
        ),
        "RefreshToken": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.RefreshTokenRequest, servicer.RefreshToken),
            response_serializer=pb.RefreshTokenResponse.SerializeToString,
        ),
        "ListAccounts": grpc.unary_unary_rpc_method_handler(
            _parsing(pb.ListAccountsRequest, servicer.ListAccounts),
            response_serializer=pb.ListAccountsResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["CredentialsService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
