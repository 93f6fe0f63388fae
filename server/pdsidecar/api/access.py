"""Who may call: the shared API token and a listener's allow-lists.

:class:`AccessControl` guards ``pdsidecar.v1.CredentialsService`` on one
listener's server; the observing wrapper (:mod:`pdsidecar.api.calls`) asks it
about every call before the servicer sees it:

- With an API token set, every call must carry ``authorization: Bearer
  <token>`` metadata, compared in constant time; else UNAUTHENTICATED.
  Health/Check is not checked, so probes keep working; Health/Watch and
  reflection streams are, by :mod:`pdsidecar.api.probes`.
- With allow-lists, the request's connection (the empty name is ``default``)
  and source must be listed; else PERMISSION_DENIED. ``ListAccounts`` must
  then name an allowed source, since without one it lists every app.
- A listener with ``allow_sources`` refuses ``RefreshToken(force=true)``: the
  Pipedream token belongs to the whole connection, every app included, and a
  caller limited to some apps has no business replacing it. Without ``force``
  it only reports the token's expiry (and refreshes a token that is due).

Both answer through the error table, so the status carries ``ErrorInfo``. The
token lives in a :class:`TokenHolder` that a config reload updates in place.
"""

from __future__ import annotations

import hmac
from contextvars import ContextVar
from typing import Any, Final

from google.protobuf.message import DecodeError, Message

from pdsidecar.api.validation import connection_name, shorten
from pdsidecar.credentials.budget import caller_id
from pdsidecar.errors import SidecarError
from pdsidecar.secret import Secret
from pdsidecar.settings import ListenerConfig
from pdsidecar_client.v1 import credentials_pb2 as pb

SERVICE_PREFIX: Final = "/pdsidecar.v1.CredentialsService/"

# Per method: how a raw (bytes) request is parsed, and where its connection and source are.
_REQUESTS: Final[dict[str, type[Message]]] = {
    "GetCredentials": pb.GetCredentialsRequest,
    "ValidateAccount": pb.ValidateAccountRequest,
    "RefreshToken": pb.RefreshTokenRequest,
    "ListAccounts": pb.ListAccountsRequest,
    "WatchCredentials": pb.WatchCredentialsRequest,
}


class TokenHolder:
    """The expected ``authorization`` value; None means no token is required."""

    def __init__(self, token: Secret | None = None) -> None:
        self.expected: str | None = None
        self.set(token)

    def set(self, token: Secret | None) -> None:
        self.expected = f"Bearer {token.reveal()}" if token else None

    def matches(self, authorization: Any) -> bool:
        """Whether a call's ``authorization`` value passes (always, with no token set)."""
        expected = self.expected
        return expected is None or _token_matches(authorization, expected)


class AccessControl:
    """``name`` tells listeners apart for per-caller queues and read-budget shares: the
    sidecar gives each its configured address and its place in the listener list, so two
    listeners on ``127.0.0.1:0`` are two, and a fleet started from one config names each
    listener alike on every sidecar."""

    def __init__(self, tokens: TokenHolder, listener: ListenerConfig, name: str = "") -> None:
        self._tokens = tokens
        self._listener = listener
        self.name = name or listener.address.grpc_target

    def update(self, listener: ListenerConfig) -> None:
        """New allow-lists after a reload (the address stays)."""
        self._listener = listener

    @property
    def allowed_sources(self) -> frozenset[str] | None:
        return self._listener.allow_sources

    @staticmethod
    def guards(method: str) -> bool:
        """Whether calls of ``method`` are checked (health and reflection are not)."""
        return method.startswith(SERVICE_PREFIX)

    def refusal(self, method: str, request: Any, authorization: Any) -> SidecarError | None:
        """Why this call may not proceed, or None.

        ``authorization`` is the call's metadata value (None if absent); ``request``
        may still be raw bytes.
        """
        expected = self._tokens.expected
        if expected is not None and not _token_matches(authorization, expected):
            return unauthenticated()
        if not self._listener.restricted:
            return None
        if isinstance(request, bytes):
            parse = _REQUESTS.get(method.removeprefix(SERVICE_PREFIX))
            if parse is None:
                return None
            try:
                request = parse.FromString(request)
            except DecodeError:
                return None  # the servicer reports it
        return self.check(request)

    def check(self, request: Any) -> SidecarError | None:
        """Why this listener may not serve ``request``, or None if it may."""
        listener = self._listener
        account = getattr(request, "account", None)
        connection = account.connection if account is not None else request.connection
        connection = connection_name(connection)
        allowed = listener.allow_connections
        if allowed is not None and connection not in allowed:
            shown = shorten(connection)
            return _denied(f"connection '{shown}'", {"connection": shown})
        sources = listener.allow_sources
        if sources is not None and getattr(request, "force", False):
            return _denied("RefreshToken with force=true (it allows some sources only)", {})
        source = getattr(request, "source", None)
        if sources is not None and source is not None and source not in sources:
            shown = shorten(source)
            what = f"source '{shown}'" if source else "a request without a source"
            return _denied(what, {"source": shown})
        return None


# The listener a call came in on; set per call by the call wrapper (api/calls.py).
LISTENER: ContextVar[AccessControl | None] = ContextVar("pdsidecar_listener", default=None)


def caller_key(peer: str) -> str:
    """Who is calling, for per-caller queues: the listener and the gRPC peer.

    (gRPC names every peer of a Unix socket ``unix:``: there the listener is the caller.)
    """
    listener = LISTENER.get()
    return caller_id(listener.name, peer) if listener is not None else peer


def allowed_sources() -> frozenset[str] | None:
    """The calling listener's ``allow_sources`` (None: every source)."""
    listener = LISTENER.get()
    return listener.allowed_sources if listener is not None else None


def _token_matches(given: Any, expected: str) -> bool:
    """Constant-time comparison; non-ASCII or binary values never match."""
    if not isinstance(given, str):
        return False
    try:
        return hmac.compare_digest(given, expected)
    except TypeError:  # non-ASCII text
        return False


def unauthenticated() -> SidecarError:
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
