"""One connection's view of Pipedream: the only thing the credential service calls.

A :class:`PipedreamConnection` pairs the shared :class:`PipedreamClient` with the
connection's :class:`TokenProvider`. When Pipedream answers 401 to an API
token, the token is dropped, a new one fetched and the call retried exactly
once; a second 401 means the connection's client credentials are no good.

:func:`build_connections` wires one process: one HTTP client, one
``PipedreamClient`` whose semaphore caps the requests in flight across all
connections at ``policy.upstream_concurrency``, and one PipedreamConnection per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from pdsidecar import __version__
from pdsidecar.clock import Clock
from pdsidecar.errors import ProviderAuthFailed, SidecarError
from pdsidecar.pipedream.client import PipedreamClient, TokenRejected
from pdsidecar.pipedream.models import Account, AccountPage, TokenStatus
from pdsidecar.pipedream.tokens import TokenProvider, TokenSourceHolder
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy, Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class PipedreamConnection:
    def __init__(
        self,
        connection: ConnectionConfig,
        client: PipedreamClient,
        tokens: TokenProvider,
        policy: Policy,
    ) -> None:
        self.connection = connection
        self.policy = policy
        self._client = client
        self._tokens = tokens

    @classmethod
    def create(
        cls,
        connection: ConnectionConfig,
        client: PipedreamClient,
        policy: Policy,
        clock: Clock,
        *,
        tokens: TokenSourceHolder | None = None,
        learn: Callable[[Secret, float], None] | None = None,
    ) -> PipedreamConnection:
        provider = TokenProvider(connection, client, policy, clock, source=tokens, learn=learn)
        return cls(connection, client, provider, policy)

    @property
    def tokens(self) -> TokenProvider:
        return self._tokens

    async def get_account(
        self, project_id: str, environment: str, account_id: str, *, deadline: float | None
    ) -> Account:
        return await self._call(
            lambda token: self._client.get_account(
                token, project_id, environment, account_id, deadline=deadline
            ),
            deadline,
        )

    async def list_accounts(
        self,
        project_id: str,
        environment: str,
        *,
        app: str | None,
        external_user_id: str | None,
        limit: int,
        after: str | None,
        deadline: float | None,
    ) -> AccountPage:
        return await self._call(
            lambda token: self._client.list_accounts(
                token,
                project_id,
                environment,
                app=app,
                external_user_id=external_user_id,
                limit=limit,
                after=after,
                deadline=deadline,
            ),
            deadline,
        )

    async def refresh_token(self, *, force: bool, deadline: float | None) -> TokenStatus:
        return await self._tokens.refresh(force=force, deadline=deadline)

    def token_status(self) -> TokenStatus | None:
        return self._tokens.status()

    async def _call(self, request: Callable[[Secret], Awaitable[T]], deadline: float | None) -> T:
        """Run ``request`` with a token; on a 401, once more with a fresh one."""
        name = self.connection.name
        try:
            for attempt in (1, 2):
                token = await self._tokens.token(deadline)
                try:
                    return await request(token)
                except TokenRejected:
                    self._tokens.invalidate(token)
                    level = logging.INFO if attempt == 1 else logging.WARNING
                    logger.log(
                        level, "connection %s: Pipedream token got 401 (try %d)", name, attempt
                    )
        except SidecarError as error:
            error.metadata.setdefault("connection", name)
            raise
        raise ProviderAuthFailed(
            f"Pipedream rejected the token of connection {name} again after a refresh (HTTP 401)",
            metadata={"connection": name},
        )


def make_http_client(
    settings: Settings,
    *,
    wrap_transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The process's one HTTP client to Pipedream; the caller closes it.

    ``wrap_transport`` may wrap the connection pool (metrics count requests there);
    ``transport`` replaces the pool (an in-process Pipedream, for simulations).
    """
    policy = settings.policy
    # As many connections as requests may be in flight (the semaphore's cap).
    limits = httpx.Limits(
        max_connections=policy.upstream_concurrency,
        max_keepalive_connections=policy.upstream_concurrency,
    )
    if wrap_transport is not None:
        transport = wrap_transport(transport or httpx.AsyncHTTPTransport(limits=limits))
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.request_timeout, connect=policy.connect_timeout),
        limits=limits,
        transport=transport,
        headers={"user-agent": f"pdsidecar/{__version__}"},
        follow_redirects=False,
    )


def make_pipedream_client(
    settings: Settings, http_client: httpx.AsyncClient, clock: Clock
) -> PipedreamClient:
    """The process's one Pipedream client; its semaphore caps requests in flight."""
    policy = settings.policy
    return PipedreamClient(
        http_client,
        settings.pipedream_url,
        policy,
        clock,
        slots=asyncio.Semaphore(policy.upstream_concurrency),
    )


def build_connections(
    settings: Settings, http_client: httpx.AsyncClient, clock: Clock
) -> dict[str, PipedreamConnection]:
    """One connection per configured one, all behind one concurrency cap."""
    client = make_pipedream_client(settings, http_client, clock)
    return {
        name: PipedreamConnection.create(connection, client, settings.policy, clock)
        for name, connection in settings.connections.items()
    }
