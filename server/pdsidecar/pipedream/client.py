"""Raw Pipedream HTTP: the token endpoint and the Connect accounts endpoints.

One :class:`PipedreamClient` serves every connection over one shared
``httpx.AsyncClient`` and maps Pipedream's answers to the error table.
Retries, deadlines and the process-wide concurrency cap live in
:mod:`pdsidecar.pipedream.retrying`; every call here is safe to repeat (GETs, and a
token POST that only mints a token), so all of them go through it.

No exception raised here carries a secret: messages name endpoints, ids and
status codes; Pipedream's error text is quoted only sanitised (valid Unicode,
token-shaped strings masked, bounded; :func:`~pdsidecar.pipedream.text.caller_text`).
Answers that do not have the documented shape are refused as upstream errors
(:class:`~pdsidecar.pipedream.models.UnexpectedAnswer`), never read as something else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx

from pdsidecar.clock import Clock
from pdsidecar.errors import (
    AccountNotFound,
    FieldViolation,
    InvalidRequest,
    ProviderAuthFailed,
    RateLimited,
    UpstreamRequestRejected,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.models import Account, AccountPage, UnexpectedAnswer
from pdsidecar.pipedream.retrying import RetryingHttp, Sleep
from pdsidecar.pipedream.text import caller_text
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy

__all__ = ["PipedreamClient", "PipedreamToken", "TokenRejected"]

# Pipedream documents one-hour tokens; used only if a response omits expires_in.
_DEFAULT_TOKEN_LIFETIME: Final = 3600.0


@dataclass(frozen=True)
class PipedreamToken:
    """A Pipedream API access token and when it expires, on both clocks."""

    value: Secret
    expires_at_mono: float
    expires_at_wall: float


class TokenRejected(Exception):
    """Pipedream answered 401 to a Pipedream token; the connection refreshes and retries once."""


class PipedreamClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        policy: Policy,
        clock: Clock,
        *,
        slots: asyncio.Semaphore | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._http = RetryingHttp(http, policy, clock, slots=slots, sleep=sleep)

    async def fetch_token(
        self, connection: ConnectionConfig, *, deadline: float | None
    ) -> PipedreamToken:
        context = {"connection": connection.name}
        body = {
            "grant_type": "client_credentials",
            "client_id": connection.client_id,
            "client_secret": connection.client_secret.reveal(),
            "scope": connection.scope,
        }
        # Expiry counts from before the request: errs on the early side.
        sent_mono, sent_wall = self._clock.monotonic(), self._clock.wall()
        what = f"token request for connection {connection.name}"
        response = await self._http.send(
            "POST", self._base + "/v1/oauth/token", what, context, deadline=deadline, json=body
        )
        status = response.status_code
        if status == 400:  # a malformed token request: the grant, the scope
            raise ProviderAuthFailed(
                f"Pipedream refused the token request of connection {connection.name} as "
                f"invalid (HTTP 400{_said(response)}); check its scope and client_id",
                metadata=context,
            )
        if status in (401, 403):
            raise ProviderAuthFailed(
                f"Pipedream refused the client credentials of connection {connection.name} "
                f"(HTTP {status}{_said(response)}); check its client_id and client secret",
                metadata=context,
            )
        self._raise_for_common(response, what, context)
        data = _json_object(response, what, context)
        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamUnavailable(f"{what}: the response has no access_token", metadata=context)
        lifetime = _positive_number(data.get("expires_in"), _DEFAULT_TOKEN_LIFETIME)
        return PipedreamToken(Secret(access_token), sent_mono + lifetime, sent_wall + lifetime)

    async def get_account(
        self,
        token: Secret,
        project_id: str,
        environment: str,
        account_id: str,
        *,
        deadline: float | None,
    ) -> Account:
        context = {"project_id": project_id, "account_id": account_id, "environment": environment}
        path = (
            f"/v1/connect/{_segment('project_id', project_id)}"
            f"/accounts/{_segment('account_id', account_id)}"
        )
        what = f"account lookup {account_id}"
        response = await self._http.send(
            "GET",
            self._base + path,
            what,
            context,
            deadline=deadline,
            headers=_auth(token, environment),
            params={"include_credentials": "true"},
        )
        if response.status_code == 404:
            raise AccountNotFound(
                f"Pipedream has no account {account_id} in project {project_id} ({environment})",
                metadata=context,
            )
        self._raise_for_common(response, what, context)
        data = _json_object(response, what, context)
        try:
            return Account.from_json(data, expected_id=account_id)
        except UnexpectedAnswer as error:
            raise UpstreamUnavailable(f"{what}: {error}", metadata=context) from None

    async def list_accounts(
        self,
        token: Secret,
        project_id: str,
        environment: str,
        *,
        app: str | None,
        external_user_id: str | None,
        limit: int,
        after: str | None,
        deadline: float | None,
    ) -> AccountPage:
        context = {"project_id": project_id, "environment": environment}
        # Credentials are asked for only to learn which fields each account holds (that
        # is how a listing tells custom-OAuth accounts from default-OAuth ones); the
        # credential service strips every value before anything leaves the sidecar.
        params = {"include_credentials": "true", "limit": str(limit)}
        optional = {"app": app, "external_user_id": external_user_id, "after": after}
        params.update({key: value for key, value in optional.items() if value})
        what = f"account list for project {project_id}"
        response = await self._http.send(
            "GET",
            f"{self._base}/v1/connect/{_segment('project_id', project_id)}/accounts",
            what,
            context,
            deadline=deadline,
            headers=_auth(token, environment),
            params=params,
        )
        self._raise_for_common(response, what, context)
        data = _json_object(response, what, context)
        rows = data.get("data")
        if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
            raise UpstreamUnavailable(f"{what}: 'data' is not a list of accounts", metadata=context)
        try:
            accounts = tuple(Account.from_json(row) for row in rows)
        except UnexpectedAnswer as error:
            raise UpstreamUnavailable(f"{what}: {error}", metadata=context) from None
        page_info = data.get("page_info")
        page_info = page_info if isinstance(page_info, Mapping) else {}
        cursor = page_info.get("end_cursor")
        # Only the cursor says whether more follow (as in Pipedream's SDK pagers): a
        # page shorter than `limit` may just mean Pipedream caps its page size lower.
        last_page = not isinstance(cursor, str) or not cursor or page_info.get("has_more") is False
        return AccountPage(accounts=accounts, next_cursor=None if last_page else cursor)

    def _raise_for_common(
        self, response: httpx.Response, what: str, context: Mapping[str, str]
    ) -> None:
        """Statuses that mean the same on every endpoint; 2xx passes."""
        status = response.status_code
        if status == 401:
            raise TokenRejected(f"{what}: Pipedream rejected the token (HTTP 401)")
        if status in (400, 422):
            raise UpstreamRequestRejected(
                f"{what}: Pipedream refused the request (HTTP {status}{_said(response)})",
                metadata=context,
            )
        if status == 403:
            raise ProviderAuthFailed(
                f"{what}: Pipedream denied access (HTTP 403)", metadata=context
            )
        if status == 429:
            raise RateLimited(
                f"{what}: Pipedream rate limited the sidecar (HTTP 429)",
                metadata=context,
                retry_after=self._http.retry_after(response),
            )
        if not 200 <= status < 300:
            raise UpstreamUnavailable(
                f"{what}: unexpected answer from Pipedream (HTTP {status})", metadata=context
            )


def _auth(token: Secret, environment: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token.reveal()}", "x-pd-environment": environment}


def _segment(field: str, value: str) -> str:
    # Quoted so an id can never address another endpoint ("/", "?", dot segments).
    if value in ("", ".", ".."):
        raise InvalidRequest([FieldViolation(field, "must be a Pipedream id")])
    return quote(value, safe="")


def _said(response: httpx.Response) -> str:
    """``: <Pipedream's error text>``, sanitised, or "" when there is none."""
    try:
        body = response.json()
    except ValueError:  # not JSON (UnicodeDecodeError included)
        body = None
    text = ""
    if isinstance(body, dict):
        text = caller_text(body.get("error") or body.get("message"))
    return f": {text}" if text else ""


def _positive_number(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def _json_object(response: httpx.Response, what: str, context: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamUnavailable(
            f"{what}: Pipedream's answer is not a JSON object", metadata=context
        )
    return data
