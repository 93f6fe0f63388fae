"""The gRPC face of the sidecar: validate, call the credential service, map errors.

Each method reads the request, validates it (INVALID_ARGUMENT with field
violations), hands a typed query to :class:`CredentialService` and turns the
result into a response. A :class:`SidecarError` becomes its status from the
error table; anything else is a bug, logged without request values and sent as
INTERNAL with a generic message, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from pdsidecar import convert
from pdsidecar.clock import Clock
from pdsidecar.credentials import AccountQuery, CredentialService
from pdsidecar.errors import SidecarError
from pdsidecar.status import to_grpc_status
from pdsidecar.validation import Checker
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]


class CredentialsServicer(pb_grpc.CredentialsServiceServicer):
    def __init__(self, service: CredentialService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

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
            status = to_grpc_status(error)
            await context.abort(status.code, status.details, status.trailing_metadata)
            raise  # abort() raises; this line keeps the type checker honest
        except Exception:
            # Only the exception type: a message could carry upstream text.
            log.error("%s failed with an unexpected error", method, exc_info=False)
            log.debug("unexpected error detail", exc_info=True)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in pdsidecar")
            raise

    @staticmethod
    def _query(
        check: Checker,
        ref: pb.AccountRef,
        source: str,
        required: Sequence[str],
        optional: Sequence[str],
    ) -> AccountQuery:
        return AccountQuery(
            connection=check.connection("account.connection", ref.connection),
            project_id=check.project_id("account.project_id", ref.project_id),
            account_id=check.account_id("account.account_id", ref.account_id),
            environment=check.environment("account.environment", ref.environment),
            external_user_id=check.external_user_id(
                "account.external_user_id", ref.external_user_id
            ),
            source=check.source("source", source),
            required_fields=check.field_names("required_fields", required),
            optional_fields=check.field_names("optional_fields", optional),
        )

    async def GetCredentials(
        self,
        request: pb.GetCredentialsRequest,
        context: grpc.aio.ServicerContext[pb.GetCredentialsRequest, pb.GetCredentialsResponse],
    ) -> pb.GetCredentialsResponse:
        async def call() -> pb.GetCredentialsResponse:
            check = Checker()
            query = self._query(
                check,
                request.account,
                request.source,
                request.required_fields,
                request.optional_fields,
            )
            check.done()
            result = await self._service.get_credentials(
                query,
                rejected_access_token=request.rejected_access_token or None,
                deadline=self._deadline(context),
            )
            return pb.GetCredentialsResponse(
                credentials=result.credentials,
                account=convert.account_info(result.account),
                expires_at=convert.timestamp(result.expires_at),
            )

        return await self._answer("GetCredentials", context, call)

    async def ValidateAccount(
        self,
        request: pb.ValidateAccountRequest,
        context: grpc.aio.ServicerContext[pb.ValidateAccountRequest, pb.ValidateAccountResponse],
    ) -> pb.ValidateAccountResponse:
        async def call() -> pb.ValidateAccountResponse:
            check = Checker()
            query = self._query(
                check,
                request.account,
                request.source,
                request.required_fields,
                request.optional_fields,
            )
            check.done()
            validation = await self._service.validate_account(
                query,
                deadline=self._deadline(context),
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
            check = Checker()
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
            check = Checker()
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
