"""The Pipedream token of one connection, refreshed before it expires."""

from __future__ import annotations

import asyncio
import copy
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pdsidecar.clock import Clock
from pdsidecar.errors import DeadlineExceeded, RateLimited, SidecarError
from pdsidecar.pipedream.client import PipedreamClient, PipedreamToken
from pdsidecar.pipedream.models import TokenStatus
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy

logger = logging.getLogger(__name__)

# With a shared tier: while another sidecar refreshes in the advisory window, ask the
# tier again after this long (the current token serves meanwhile).
SHARED_RECHECK: Final = 1.0


class TokenSource(Protocol):
    """Where a provider gets a new token: Pipedream (:class:`PipedreamTokens`), or a
    decorator of it (the fleet's tier, :mod:`pdsidecar.fleet.tokens`), chained when built."""

    async def obtain(
        self,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        *,
        force: bool,
        deadline: float | None,
    ) -> tuple[PipedreamToken, float | None]:
        """A token, and None if ``fetch`` (one Pipedream request) made it, else the
        lifetime it was issued with (another sidecar fetched it)."""
        ...

    def rejected(self, provider: TokenProvider, token: Secret) -> None:
        """Pipedream answered 401 to ``token``."""
        ...


class PipedreamTokens:
    """The plain source: one token request to Pipedream."""

    async def obtain(
        self,
        provider: TokenProvider,
        fetch: Callable[[], Awaitable[PipedreamToken]],
        *,
        force: bool,
        deadline: float | None,
    ) -> tuple[PipedreamToken, float | None]:
        return await fetch(), None

    def rejected(self, provider: TokenProvider, token: Secret) -> None:
        return None


class TokenSourceHolder:
    """The source every provider asks now (:attr:`current`); a reload swaps it (the
    fleet's tier on or off)."""

    def __init__(self, source: TokenSource | None = None) -> None:
        self._source: TokenSource = source if source is not None else PipedreamTokens()

    @property
    def current(self) -> TokenSource:
        return self._source

    def swap(self, source: TokenSource) -> None:
        self._source = source


class _Window(enum.Enum):
    FRESH = "fresh"
    ADVISORY = "advisory"
    MANDATORY = "mandatory"


class TokenProvider:
    """Holds one connection's Pipedream token and decides when to refresh it.

    Time left before expiry is measured on the monotonic clock, in three windows:

    - **fresh** (more than ``policy.token_refresh_margin`` left): the token is
      served as is, without touching the lock.
    - **advisory** (between ``token_refresh_margin`` and
      ``token_mandatory_margin``): the first caller to notice refreshes; callers
      that arrive meanwhile keep the current, still valid token instead of
      waiting. A failed refresh is logged and the current token served; the next
      attempt waits a backoff that doubles per failure, so a failing Pipedream
      is not hammered.
    - **mandatory** (less than ``token_mandatory_margin`` left, or no token):
      every caller waits on the lock; the first refreshes, the rest re-check and
      take its token. Errors surface. Callers arriving during the backoff after
      a failure get that failure again (``retry_after`` = the backoff left)
      instead of a new request; a failure caused only by the refresher's own
      deadline is not shared that way.

    Both margins shrink for a token that lives less than twice as long as them,
    so a short-lived token is not refreshed on every call. ``refresh(force=True)``
    fetches (after a secret rotation) unless a forced refresh fetched less than
    ``forced_refresh_interval`` ago: then it reports that token, so forced
    refreshes cost at most one token request per interval whoever sends them.
    ``invalidate`` drops the token Pipedream rejected, and only that one.
    """

    def __init__(
        self,
        connection: ConnectionConfig,
        client: PipedreamClient,
        policy: Policy,
        clock: Clock,
        *,
        source: TokenSourceHolder | None = None,
        learn: Callable[[Secret, float], None] | None = None,
    ) -> None:
        self.connection = connection
        self._client = client
        self._policy = policy
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: PipedreamToken | None = None
        self._advisory_margin = policy.token_refresh_margin
        self._mandatory_margin = policy.token_mandatory_margin
        self._failures = 0  # consecutive failed refreshes
        self._last_failure: SidecarError | None = None
        self._retry_not_before = float("-inf")
        self._last_success: float | None = None
        self._last_forced: float | None = None  # when force=True last fetched
        # Token requests by outcome, read by the metrics collector.
        self.refreshes_ok = 0
        self.refreshes_failed = 0
        # Told each new token and how long it lives, in seconds (the log
        # redaction filter learns it this way).
        self._learn = learn
        # Where new tokens come from: Pipedream, or the fleet's tier around it.
        self._source = source if source is not None else TokenSourceHolder()

    @property
    def last_success_mono(self) -> float | None:
        """Monotonic time of the last successful token request (readiness)."""
        return self._last_success

    @property
    def current(self) -> PipedreamToken | None:
        return self._token

    def is_fresh(self, token: PipedreamToken) -> bool:
        """Outside both refresh windows (served as is)."""
        return self._window(token) is _Window.FRESH

    def is_usable(self, token: PipedreamToken) -> bool:
        """Outside the mandatory window (may be served while someone refreshes)."""
        return self._window(token) is not _Window.MANDATORY

    def status(self) -> TokenStatus | None:
        """The current token's expiry, never the token; None before the first one."""
        token = self._token
        return None if token is None else self._status(token, refreshed=False)

    async def token(self, deadline: float | None = None) -> Secret:
        """A valid token, refreshing it as the window requires."""
        current = self._token
        if current is not None:
            window = self._window(current)
            if window is _Window.FRESH:
                return current.value
            if window is _Window.ADVISORY:
                return await self._advisory_refresh(current, deadline)
        return (await self._mandatory_refresh(deadline)).value

    def invalidate(self, rejected: Secret) -> None:
        """Drop the token Pipedream rejected, unless another caller already replaced it."""
        self._source.current.rejected(self, rejected)
        if self._token is not None and self._token.value == rejected:
            logger.info("connection %s: Pipedream rejected its token; dropping it", self._name)
            self._token = None

    async def refresh(self, *, force: bool = False, deadline: float | None = None) -> TokenStatus:
        """Fetch a token if the current one is in a refresh window, or always with ``force``."""
        await self._acquire(deadline)
        try:
            current = self._token
            fresh = current is not None and self._window(current) is _Window.FRESH
            if current is not None and fresh and (not force or self._forced_lately()):
                return self._status(current, refreshed=False)
            token = await self._fetch_locked(deadline, force=force)
            if force:
                self._last_forced = self._clock.monotonic()
            return self._status(token, refreshed=True)
        finally:
            self._lock.release()

    async def _advisory_refresh(self, current: PipedreamToken, deadline: float | None) -> Secret:
        if self._lock.locked() or self._clock.monotonic() < self._retry_not_before:
            return current.value
        # Free, so normally taken at once. It can still wait if a mandatory refresh has just
        # handed it on; then that refresh may have replaced the token.
        async with self._lock:
            if self._token is not current:
                return current.value if self._token is None else self._token.value
            try:
                return (await self._fetch_locked(deadline)).value
            except SidecarError as error:
                logger.warning(
                    "connection %s: token refresh failed in the advisory window (%s); "
                    "serving the current token, next attempt in %.0f s",
                    self._name,
                    error.reason,
                    self._retry_not_before - self._clock.monotonic(),
                )
                return current.value

    async def _mandatory_refresh(self, deadline: float | None) -> PipedreamToken:
        await self._acquire(deadline)
        try:
            current = self._token
            if current is not None and self._window(current) is not _Window.MANDATORY:
                return current  # another caller refreshed while this one waited
            now = self._clock.monotonic()
            if self._last_failure is not None and now < self._retry_not_before:
                raise self._replay(self._last_failure, now)
            return await self._fetch_locked(deadline)
        finally:
            self._lock.release()

    async def _fetch_locked(self, deadline: float | None, force: bool = False) -> PipedreamToken:
        issued_for: float | None = None
        try:
            token, issued_for = await self._source.current.obtain(
                self,
                lambda: self._client.fetch_token(self.connection, deadline=deadline),
                force=force,
                deadline=deadline,
            )
        except SidecarError as error:
            self.refreshes_failed += 1
            self._note_failure(error)
            logger.info("connection %s: token request failed (%s)", self._name, error.reason)
            raise
        if issued_for is not None:
            return self._adopt(token, issued_for)
        now = self._clock.monotonic()
        self.refreshes_ok += 1
        if self._learn is not None:
            self._learn(token.value, token.expires_at_mono - now)
        logger.info(
            "connection %s: new Pipedream token, valid for %.0f s",
            self._name,
            token.expires_at_mono - now,
        )
        self._keep(token, now, token.expires_at_mono - now)
        return token

    def _keep(self, token: PipedreamToken, now: float, lifetime: float) -> None:
        # Shrink the margins for a short-lived token (see the class docstring).
        lifetime = max(lifetime, 0.0)
        self._advisory_margin = min(self._policy.token_refresh_margin, lifetime / 2)
        self._mandatory_margin = min(self._policy.token_mandatory_margin, lifetime / 4)
        self._token = token
        self._failures = 0
        self._last_failure = None
        self._retry_not_before = float("-inf")
        self._last_success = now

    def _adopt(self, token: PipedreamToken, lifetime: float) -> PipedreamToken:
        """A token another sidecar fetched (or the current one, while another refreshes)."""
        now = self._clock.monotonic()
        current = self._token
        if current is None or current.value != token.value:
            if self._learn is not None:
                self._learn(token.value, token.expires_at_mono - now)
            logger.debug("connection %s: using the fleet's Pipedream token", self._name)
            self._keep(token, now, lifetime)
            current = token
        if self._window(current) is not _Window.FRESH:
            # Another sidecar is refreshing it: ask the fleet again in a moment, not per call.
            self._retry_not_before = now + SHARED_RECHECK
        return current

    def _note_failure(self, error: SidecarError) -> None:
        policy = self._policy
        self._failures += 1
        # Doubling from backoff_max, capped by a quarter of the advisory window and by the
        # default Retry-After; never shorter than what a 429 asked for.
        cap = min(
            (policy.token_refresh_margin - policy.token_mandatory_margin) / 4,
            policy.default_retry_after,
        )
        pause = min(max(cap, policy.backoff_max), policy.backoff_max * 2 ** (self._failures - 1))
        if isinstance(error, RateLimited) and error.retry_after is not None:
            pause = max(pause, error.retry_after)
        self._retry_not_before = self._clock.monotonic() + pause
        # A refresh cut short by its caller's deadline says nothing about Pipedream.
        self._last_failure = None if isinstance(error, DeadlineExceeded) else error

    def _replay(self, error: SidecarError, now: float) -> SidecarError:
        # A copy: raising one instance in many tasks would chain their tracebacks together.
        replay = copy.copy(error)
        replay.metadata = dict(error.metadata)
        if error.kind.retryable:
            replay.retry_after = round(self._retry_not_before - now, 3)
        return replay

    async def _acquire(self, deadline: float | None) -> None:
        if deadline is None:
            await self._lock.acquire()
            return
        timed_out = False
        try:
            async with asyncio.timeout(max(deadline - self._clock.monotonic(), 0.0)):
                await self._lock.acquire()
        except TimeoutError:
            timed_out = True
        if timed_out:
            raise DeadlineExceeded(
                f"connection {self._name}: deadline reached waiting for the token refresh",
                metadata={"connection": self._name},
                retry_after=self._policy.backoff_max,
            )

    def _forced_lately(self) -> bool:
        last = self._last_forced
        interval = self._policy.forced_refresh_interval
        return last is not None and self._clock.monotonic() < last + interval

    def _window(self, token: PipedreamToken) -> _Window:
        left = token.expires_at_mono - self._clock.monotonic()
        if left <= self._mandatory_margin:
            return _Window.MANDATORY
        if left <= self._advisory_margin:
            return _Window.ADVISORY
        return _Window.FRESH

    def _status(self, token: PipedreamToken, *, refreshed: bool) -> TokenStatus:
        return TokenStatus(self._name, token.expires_at_wall, refreshed)

    @property
    def _name(self) -> str:
        return self.connection.name
