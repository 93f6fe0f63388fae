"""Who may call: the shared API token and a listener's allow-lists.

:class:`AccessControl` guards ``pdsidecar.v1.CredentialsService`` on one
listener's server (the observing interceptor applies it, saving an
interceptor hop per call):

- With an API token set, every call must carry ``authorization: Bearer
  <token>`` metadata, compared in constant time; else UNAUTHENTICATED.
  Health and reflection are not checked, so probes and tools keep working.
- With allow-lists, the request's connection (the empty name is ``default``)
  and source must be listed; else PERMISSION_DENIED. ``ListAccounts`` must
  then name an allowed source, since without one it lists every app.

Both answer through the error table, so the status carries ``ErrorInfo``. The
token lives in a :class:`TokenHolder` that a config reload updates in place.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from google.protobuf.message import DecodeError, Message

from pdsidecar.config import DEFAULT_CONNECTION
from pdsidecar.errors import SidecarError
from pdsidecar.interceptors import Behavior, Context, Handler, Wrapped, with_behavior
from pdsidecar.listen import ListenerConfig
from pdsidecar.secret import Secret
from pdsidecar.status import to_grpc_status
from pdsidecar_client.v1 import credentials_pb2 as pb

SERVICE_PREFIX: Final = "/pdsidecar.v1.CredentialsService/"

# Per method: how a raw (bytes) request is parsed, and where its connection and source are.
_REQUESTS: Final[dict[str, type[Message]]] = {
    "GetCredentials": pb.GetCredentialsRequest,
    "ValidateAccount": pb.ValidateAccountRequest,
    "RefreshToken": pb.RefreshTokenRequest,
    "ListAccounts": pb.ListAccountsRequest,
}


class TokenHolder:
    """The expected ``authorization`` value; None means no token is required."""

    def __init__(self, token: Secret | None = None) -> None:
        self.expected: bytes | None = None
        self.set(token)

    def set(self, token: Secret | None) -> None:
        self.expected = f"Bearer {token.reveal()}".encode() if token else None


class AccessControl:
    def __init__(self, tokens: TokenHolder, listener: ListenerConfig) -> None:
        self._tokens = tokens
        self._listener = listener
        self._refusals: dict[str, Handler] = {}
        self._checked = Wrapped(self._wrap)

    def update(self, listener: ListenerConfig) -> None:
        """New allow-lists after a reload (the address stays)."""
        self._listener = listener

    def admit(self, handler: Handler, method: str, metadata: Any) -> Handler:
        """``handler``, one that checks the allow-lists first, or one that refuses."""
        if not method.startswith(SERVICE_PREFIX):
            return handler
        expected = self._tokens.expected
        if expected is not None and not _token_matches(metadata, expected):
            refusal = self._refusals.get(method)
            if refusal is None:
                refusal = self._refusals[method] = _refusal(handler, _unauthenticated())
            return refusal
        if not self._listener.restricted:
            return handler
        return self._checked.get(handler, method)

    def _wrap(self, inner: Behavior, method: str) -> Behavior:
        parse = _REQUESTS.get(method.removeprefix(SERVICE_PREFIX))

        async def checked(request: Any, context: Context) -> Any:
            message = request
            if isinstance(request, bytes) and parse is not None:
                try:
                    message = parse.FromString(request)
                except DecodeError:
                    return await inner(request, context)  # the servicer reports it
            refusal = self.check(message)
            if refusal is not None:
                status = to_grpc_status(refusal)
                await context.abort(status.code, status.details, status.trailing_metadata)
            return await inner(request, context)

        return checked

    def check(self, request: Any) -> SidecarError | None:
        """Why this listener may not serve ``request``, or None if it may."""
        listener = self._listener
        account = getattr(request, "account", None)
        connection = account.connection if account is not None else request.connection
        connection = connection or DEFAULT_CONNECTION
        allowed = listener.allow_connections
        if allowed is not None and connection not in allowed:
            return _denied(f"connection '{connection}'", {"connection": connection})
        sources = listener.allow_sources
        source = getattr(request, "source", None)
        if sources is not None and source is not None and source not in sources:
            what = f"source '{source}'" if source else "a request without a source"
            return _denied(what, {"source": source})
        return None


def _token_matches(metadata: Any, expected: bytes) -> bool:
    for key, value in metadata or ():
        if key == "authorization":
            given = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(given, expected)
    return False


def _unauthenticated() -> SidecarError:
    return SidecarError(
        "This sidecar requires 'authorization: Bearer <token>' metadata with its API token",
        reason="UNAUTHENTICATED",
    )


def _denied(what: str, metadata: dict[str, str]) -> SidecarError:
    return SidecarError(
        f"This listener does not serve {what}; see its allow-lists",
        reason="PERMISSION_DENIED",
        metadata=metadata,
    )


def _refusal(handler: Handler, error: SidecarError) -> Handler:
    status = to_grpc_status(error)

    async def refuse(request: Any, context: Context) -> Any:
        await context.abort(status.code, status.details, status.trailing_metadata)

    return with_behavior(handler, refuse)
