"""The credential service: between the servicer and the connections.

It resolves a connection, checks the request against the connection's rules,
reads accounts through the :class:`~pdsidecar.credentials.cache.AccountCache`
and applies Airweave's mapping (:mod:`pdsidecar.credentials.mapping`). Requests arrive
validated in format; every failure leaves as a :class:`SidecarError`. Data
flows one way: this layer calls the connections, nothing here is called back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pdsidecar.clock import Clock
from pdsidecar.credentials import mapping, paging
from pdsidecar.credentials.cache import AccountCache, CacheKey
from pdsidecar.credentials.mapping import Problem
from pdsidecar.credentials.source import Upstream
from pdsidecar.errors import (
    AccountNotFound,
    AccountProblem,
    FieldViolation,
    InvalidRequest,
    SidecarError,
)
from pdsidecar.pipedream.connection import PipedreamConnection
from pdsidecar.pipedream.models import Account, TokenStatus
from pdsidecar.secret import Secret
from pdsidecar.settings import Settings

_NO_VALUE: Final = Secret("")
# The fetch gate's caller for watchers' re-reads: a fair queue of their own.
WATCHERS: Final = "(watchers)"


def _never() -> bool:
    return False


@dataclass(frozen=True)
class AccountQuery:
    connection: str
    project_id: str
    account_id: str
    environment: str
    external_user_id: str | None
    source: str
    required_fields: tuple[str, ...] = ()
    optional_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class CredentialsResult:
    # Airweave field name -> value. Kept out of repr so a logged result leaks nothing.
    credentials: dict[str, str] = field(repr=False)
    account: Account
    # Unix seconds at which the source token expires, when Pipedream says.
    expires_at: float | None
    # True while the cached account this answer was made from is still current and
    # fresh: the same request would get the same answer, so it may be reused.
    still_current: Callable[[], bool] = field(default=_never, repr=False, compare=False)


@dataclass(frozen=True)
class Validation:
    valid: bool
    problems: tuple[Problem, ...]
    # None when the account was not found, not looked up, or belongs to another user.
    account: Account | None


class CredentialBroker:
    def __init__(
        self,
        settings: Settings,
        connections: Mapping[str, PipedreamConnection],
        clock: Clock,
        cache: AccountCache | None = None,
    ) -> None:
        self._settings = settings
        self._connections = connections
        self._clock = clock
        self.cache = cache if cache is not None else AccountCache(settings.policy, clock)
        self._page_tokens = paging.PageTokens()

    async def get_credentials(
        self,
        query: AccountQuery,
        *,
        rejected_access_token: str | None = None,
        deadline: float | None,
        caller: str = "",
        allowed_sources: frozenset[str] | None = None,
    ) -> CredentialsResult:
        started_at = self._clock.monotonic()
        upstream = self._connection(query.connection)
        self._require_user(query.connection, query.external_user_id, "account.external_user_id")
        if mapping.is_blocked(query.source):
            raise AccountProblem(
                _unsupported(query.source),
                reason="SOURCE_NOT_SUPPORTED",
                metadata=_metadata(query),
            )
        key = _key(query)
        client_id = self._client_id(query.connection)
        account = await self.cache.get(
            key, _read(key, upstream), deadline=deadline, caller=caller, client_id=client_id
        )
        if (
            _belongs(account, query)
            and allowed_sources is not None
            and not mapping.serves_app(allowed_sources, account.app_slug)
        ):
            hidden = mapping.other_app(account.id, query.source)
            raise AccountProblem(hidden.message, reason=hidden.reason, metadata=_metadata(query))
        if rejected_access_token and _belongs(account, query):
            # Only after the tenant check: another user's caller learns nothing by timing,
            # and costs no upstream read. Compared with the access credential only.
            rejected = _holds_access(rejected_access_token, query.source)
            account = await self.cache.get(
                key,
                _read(key, upstream),
                deadline=deadline,
                caller=caller,
                rejected=rejected,
                rejected_value=_digest(rejected_access_token),
                started_at=started_at,
                client_id=client_id,
            )
        return self.result_for(query, account)

    def result_for(self, query: AccountQuery, account: Account) -> CredentialsResult:
        """What ``query`` gets from ``account`` (raises its blocking AccountProblem)."""
        check = self._check(account, query)
        problem = check.blocking
        if problem is not None:
            metadata = _metadata(query)
            if check.missing:
                metadata["missing"] = ",".join(check.missing)
            raise AccountProblem(problem.message, reason=problem.reason, metadata=metadata)
        assert check.credentials is not None  # a check without a blocking problem has them
        return CredentialsResult(
            check.credentials, account, account.expires_at, self._currency(_key(query), account)
        )

    async def reread(self, query: AccountQuery, replaces: Account) -> Account:
        """A scheduled re-read (for watchers, see watch.py): an account newer than
        ``replaces``, through the cache's single flight.

        Newer means a later *read* (a greater version), whatever it holds: the same
        credentials read again are an answer, never a rejection. The cache's own
        newer copy answers at once; else its source reads (a fleet first looks for
        another sidecar's later read).
        """
        upstream = self._connection(query.connection)
        key, started_at = _key(query), self._clock.monotonic()
        entry = self.cache.peek(key)
        newer_than = entry.version if entry is not None and entry.account is replaces else 0
        return await self.cache.get(
            key,
            _read(key, upstream),
            deadline=None,
            caller=WATCHERS,
            rejected=lambda cached: cached is replaces,
            started_at=started_at,
            newer_than=newer_than,
            client_id=self._client_id(query.connection),
        )

    def _currency(self, key: CacheKey, account: Account) -> Callable[[], bool]:
        entry = self.cache.peek(key)
        if entry is None or entry.account is not account:
            return _never  # served stale, or already replaced: not reusable
        return functools.partial(self.cache.is_current, key, entry)

    async def validate_account(
        self,
        query: AccountQuery,
        *,
        deadline: float | None,
        caller: str = "",
        allowed_sources: frozenset[str] | None = None,
    ) -> Validation:
        """Account problems come back as data; connection and upstream errors raise."""
        upstream = self._connection(query.connection)
        self._require_user(query.connection, query.external_user_id, "account.external_user_id")
        if mapping.is_blocked(query.source):
            # Nothing to learn from the account: the source cannot be served at all.
            problem = Problem("SOURCE_NOT_SUPPORTED", _unsupported(query.source))
            return Validation(False, (problem,), None)
        try:
            key = _key(query)
            account = await self.cache.get(
                key,
                _read(key, upstream),
                deadline=deadline,
                caller=caller,
                client_id=self._client_id(query.connection),
            )
        except AccountNotFound as error:
            return Validation(False, (Problem(error.reason, error.message),), None)
        check = self._check(account, query)
        if any(p.reason == mapping.USER_MISMATCH for p in check.problems):
            return Validation(False, check.problems, None)
        if allowed_sources is not None and not mapping.serves_app(
            allowed_sources, account.app_slug
        ):
            # A source-restricted listener says nothing about other apps' accounts.
            return Validation(False, (mapping.other_app(account.id, query.source),), None)
        return Validation(check.blocking is None, check.problems, account)

    async def refresh_token(
        self, connection: str, *, force: bool, deadline: float | None
    ) -> TokenStatus:
        return await self._connection(connection).refresh_token(force=force, deadline=deadline)

    async def list_accounts(
        self,
        connection: str,
        project_id: str,
        environment: str,
        *,
        source: str | None,
        external_user_id: str | None,
        page_size: int,
        page_token: str | None,
        deadline: float | None,
    ) -> tuple[tuple[Account, ...], str]:
        """One page of accounts, never with credential values, and the next page token."""
        upstream = self._connection(connection)
        self._require_user(connection, external_user_id, "external_user_id")
        app = mapping.app_slug(source) if source else None
        filters = (
            connection,
            project_id,
            environment,
            app or "",
            external_user_id or "",
        )
        cursor = self._page_tokens.decode(page_token, filters)
        page = await upstream.list_accounts(
            project_id,
            environment,
            app=app,
            external_user_id=external_user_id,
            limit=page_size,
            after=cursor,
            deadline=deadline,
        )
        accounts = tuple(
            _without_values(a)
            for a in page.accounts
            # Defence in depth: never list another user's account, whatever upstream sent.
            if not external_user_id or a.external_id == external_user_id
        )
        return accounts, self._page_tokens.encode(page.next_cursor, filters)

    def replace_connections(
        self, settings: Settings, connections: Mapping[str, PipedreamConnection]
    ) -> None:
        """Swap in a reloaded configuration; calls in flight finish on the old connections.

        Cached accounts of connections that are gone or were rebuilt
        are dropped: the new client may belong to another Pipedream project.
        """
        for name, old in self._connections.items():
            if connections.get(name) is not old:
                self.cache.drop_connection(name)
        self._settings, self._connections = settings, connections

    async def aclose(self) -> None:
        await self.cache.aclose()

    def _client_id(self, connection: str) -> str:
        """The connection's Pipedream client id (names the account in a fleet's tier)."""
        config = self._settings.connections.get(connection)
        return config.client_id if config is not None else ""

    def _connection(self, name: str) -> PipedreamConnection:
        found = self._connections.get(name)
        if found is None:
            configured = ", ".join(sorted(self._connections)) or "none"
            raise SidecarError(
                f"Connection '{name}' is not configured; configured connections: {configured}",
                reason="CONNECTION_NOT_FOUND",
                metadata={"connection": name},
            )
        return found

    def _require_user(self, connection: str, external_user_id: str | None, where: str) -> None:
        config = self._settings.connections.get(connection)
        if config is not None and config.require_external_user_id and not external_user_id:
            raise InvalidRequest(
                [FieldViolation(where, f"is required: connection '{connection}' requires it")]
            )

    @staticmethod
    def _check(account: Account, query: AccountQuery) -> mapping.Check:
        return mapping.check_account(
            account,
            source=query.source,
            required_fields=query.required_fields,
            optional_fields=query.optional_fields,
            external_user_id=query.external_user_id,
        )


def _read(key: CacheKey, upstream: PipedreamConnection) -> Upstream:
    def read() -> Awaitable[Account]:
        # The read is shared by every waiter, so it runs on the upstream's own
        # timeouts, not on one caller's deadline (see credentials/cache.py).
        return upstream.get_account(key[1], key[2], key[3], deadline=None)

    return read


def key_of(query: AccountQuery) -> CacheKey:
    """The cache key of the account ``query`` names."""
    return _key(query)


def _key(query: AccountQuery) -> CacheKey:
    return (
        query.connection,
        query.project_id,
        query.environment,
        query.account_id,
    )


def _metadata(query: AccountQuery) -> dict[str, str]:
    return {
        "account_id": query.account_id,
        "project_id": query.project_id,
        "connection": query.connection,
        "source": query.source,
    }


def _unsupported(source: str) -> str:
    return f"Source '{source}' cannot be served through Pipedream Connect"


def _belongs(account: Account, query: AccountQuery) -> bool:
    """Whether the tenant check lets this query see ``account``."""
    return not query.external_user_id or account.external_id == query.external_user_id


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _holds_access(token: str, source: str) -> Callable[[Account], bool]:
    """Whether an account still holds ``token`` as its access credential.

    Only the fields a source is called with (the OAuth access token, or the API
    key of a key-based app) count: a refused ``client_id`` or refresh token
    says nothing about the access token.
    """
    wanted = token.encode()
    fields = mapping.access_fields(source)

    def holds(account: Account) -> bool:
        held = account.credentials or {}
        values = [held[name] for name in fields if name in held]
        return any(hmac.compare_digest(v.reveal().encode(), wanted) for v in values)

    return holds


def _without_values(account: Account) -> Account:
    if not account.credentials:
        return account
    return dataclasses.replace(account, credentials=dict.fromkeys(account.credentials, _NO_VALUE))
