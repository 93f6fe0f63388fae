"""State and logic of the Pipedream API emulator, without HTTP.

``app.py`` maps requests onto these methods; tests and benchmarks drive the same methods directly
or through the ``/_emulator/`` HTTP routes. Only touch the state from the server's event loop.

List paging (Pipedream-like, and what the official SDK pagers expect): accounts are ordered by
id. ``page_info.end_cursor`` is the cursor of the page's last account when more accounts follow
it, else null, so "pass end_cursor as ``after`` until it is null" visits every account once (the
SDK pagers stop on a null or empty end_cursor). ``start_cursor`` mirrors it for ``before``: the
first account's cursor when accounts precede it, else null. ``total_count`` counts every account
matching the filters; ``count`` is the page's length. Cursors are opaque (base64url of the id).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, Literal

from .models import (
    DEFAULT_PROJECT_ID,
    ENVIRONMENTS,
    JSON,
    ROUTES,
    Account,
    Client,
    Fault,
    IssuedToken,
    Plan,
    Route,
    app_for,
    decode_cursor,
    encode_cursor,
    fake_credentials,
    fake_token,
)
from .rotation import Rotations

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
SOURCE_TOKEN_LIFETIME = 3600  # Pipedream-held source tokens (e.g. Notion) live an hour
# Pipedream's budget: account reads per project per window; beyond it, 429 with Retry-After.
READ_BUDGET = 2000
READ_WINDOW = 300.0
RouteSpec = Route | Literal["all"]


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError("probability must be within [0, 1]")


class EmulatorState:
    """Clients, tokens, accounts, counters, the concurrency gauge and faults of one emulator."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        token_lifetime: int = 3600,
        read_budget: int | None = READ_BUDGET,
        read_window: float = READ_WINDOW,
    ) -> None:
        self.clock = clock  # wall seconds; tests swap it to expire tokens without sleeping
        self.rng = random.Random(seed)
        self.token_lifetime = token_lifetime
        self.clients: dict[str, Client] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.faults: dict[Route, Fault] = {r: Fault() for r in ROUTES}
        # Set when a route's faults are cleared: the delays in progress end then.
        self._cleared: dict[Route, asyncio.Event] = {}
        self._accounts: dict[tuple[str, str], dict[str, Account]] = {}
        self._sorted_ids: dict[tuple[str, str], list[str]] = {}  # cache, dropped on change
        self._generated = 0
        self._retired: set[str] = set()  # revoked tokens and replaced credential values
        self.requests: Counter[Route] = Counter()
        self.statuses: dict[Route, Counter[int]] = {r: Counter() for r in ROUTES}
        self.tokens_issued = 0
        self.in_flight = 0  # account and list requests being served (delays included)
        self.max_in_flight = 0
        # None: no budget. Reads are counted per project in a sliding window.
        self.read_budget = read_budget
        self.read_window = read_window
        self._reads: dict[str, deque[float]] = {}
        # Scheduled source-token rotation and the fake source API's check (rotation.py).
        self.rotations = Rotations(lambda: self.clock(), self._retired.update)

    # --- clients and tokens ---
    def add_client(self, client_id: str, client_secret: str) -> Client:
        """Add or replace an OAuth client (a sidecar "connection")."""
        client = Client(client_id, client_secret)
        self.clients[client_id] = client
        return client

    def remove_client(self, client_id: str) -> bool:
        """Forget a client; the tokens it was issued stop working too."""
        kept = {k: t for k, t in self.tokens.items() if t.client_id != client_id}
        self._retired.update(self.tokens.keys() - kept.keys())
        self.tokens = kept
        client = self.clients.pop(client_id, None)
        if client is not None:
            self._retired.add(client.client_secret)
        return client is not None

    def issue_token(self, client_id: str, client_secret: str) -> IssuedToken | None:
        """A new token for valid client credentials, else None."""
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(
            client.client_secret.encode(), client_secret.encode()
        ):
            return None
        token = IssuedToken(
            "emu_at_" + secrets.token_urlsafe(24), client_id, self.clock(), self.token_lifetime
        )
        self.tokens[token.access_token] = token
        self.tokens_issued += 1
        return token

    def token_valid(self, access_token: str) -> bool:
        token = self.tokens.get(access_token)
        return token is not None and self.clock() < token.expires_at

    def revoke_tokens(self) -> int:
        """Revoke every issued token (the next account call answers 401); returns how many."""
        count = len(self.tokens)
        self._retired.update(self.tokens)
        self.tokens.clear()
        return count

    def set_token_lifetime(self, seconds: int) -> None:
        """``expires_in`` of tokens issued from now on."""
        if seconds < 1:
            raise ValueError("token lifetime must be at least 1 second")
        self.token_lifetime = seconds

    # --- accounts ---
    def put_account(self, account: Account) -> Account:
        """Add or replace an account (keyed by project, environment and id)."""
        if account.environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {ENVIRONMENTS}")
        key = (account.project_id, account.environment)
        bucket = self._accounts.setdefault(key, {})
        previous = bucket.get(account.id)
        if previous is None:
            self._sorted_ids.pop(key, None)
        elif previous is not account:
            self._retire(previous.credentials)
        bucket[account.id] = account
        return account

    def get_account(
        self, project_id: str, account_id: str, environment: str = "production"
    ) -> Account | None:
        account = self._accounts.get((project_id, environment), {}).get(account_id)
        self.rotations.advance(account)
        return account

    def iter_accounts(self) -> Iterator[Account]:
        """Every account of every project and environment."""
        for bucket in self._accounts.values():
            yield from bucket.values()

    def _require(self, project_id: str, account_id: str, environment: str) -> Account:
        account = self.get_account(project_id, account_id, environment)
        if account is None:
            raise KeyError(f"no account {account_id} in {project_id}/{environment}")
        return account

    def remove_account(
        self, project_id: str, account_id: str, environment: str = "production"
    ) -> bool:
        key = (project_id, environment)
        account = self._accounts.get(key, {}).pop(account_id, None)
        if account is None:
            return False
        self._retire(account.credentials)
        self._sorted_ids.pop(key, None)
        return True

    def update_account(
        self, project_id: str, account_id: str, environment: str = "production", **changes: Any
    ) -> Account:
        """Change fields in place, e.g. ``healthy=False, error="..."``. KeyError if unknown."""
        account = self._require(project_id, account_id, environment)
        unknown = set(changes) - {f.name for f in fields(Account)}
        if unknown or {"id", "project_id", "environment"} & set(changes):
            raise ValueError(f"cannot update {sorted(changes)}")
        if "credentials" in changes:
            self._retire(account.credentials)
        for name, value in changes.items():
            setattr(account, name, value)
        account.updated_at = self.clock()
        return account

    def rotate_access_token(
        self, project_id: str, account_id: str, environment: str = "production"
    ) -> str:
        """Give the account a fresh access token (as Pipedream's refresh would); returns it.
        Key-based accounts get a new value for their first credential field."""
        account = self._require(project_id, account_id, environment)
        if not account.credentials:
            raise ValueError(f"account {account_id} has no credentials to rotate")
        name = "oauth_access_token"
        if name not in account.credentials:
            name = next(iter(account.credentials))
        value, now = fake_token(account.app), self.clock()
        self._retire({name: account.credentials[name]})
        account.credentials = {**account.credentials, name: value}
        account.updated_at = account.last_refreshed_at = now
        if account.app.auth_type == "oauth":
            account.expires_at = now + SOURCE_TOKEN_LIFETIME
            account.next_refresh_at = now + SOURCE_TOKEN_LIFETIME - 600
        return value

    def add_generated_accounts(
        self,
        n: int,
        app: str = "notion",
        project_id: str = DEFAULT_PROJECT_ID,
        environment: str = "production",
        external_id: str | None = None,
    ) -> list[str]:
        """Add ``n`` healthy accounts with credentials (custom OAuth, or keys for key-based
        apps), each with its own access token; returns their ids. Ids sort in creation order."""
        spec, now, ids = app_for(app), self.clock(), []
        oauth = spec.auth_type == "oauth"
        for _ in range(n):
            self._generated += 1
            account_id = f"apn_gen{self._generated:07d}"
            user = external_id or f"user-gen-{self._generated}"
            account = Account(account_id, spec, user, f"{spec.name} {user}", project_id)
            account.environment = environment
            account.credentials = fake_credentials(spec, user)
            account.created_at = account.updated_at = now
            if oauth:
                account.last_refreshed_at = now
                account.expires_at = now + SOURCE_TOKEN_LIFETIME
                account.next_refresh_at = now + SOURCE_TOKEN_LIFETIME - 600
            self.put_account(account)
            ids.append(account_id)
        return ids

    def list_accounts(
        self,
        project_id: str,
        environment: str = "production",
        *,
        app: str | None = None,
        external_user_id: str | None = None,
        oauth_app_id: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        before: str | None = None,
    ) -> tuple[list[Account], JSON]:
        """One page and its page_info (see the module docstring). ValueError on a bad cursor or
        a limit below 1; limits above MAX_PAGE_SIZE are clamped. Filters apply before paging:
        ``app`` matches the app's slug or id, ``oauth_app_id`` the account's OAuth client."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE_SIZE)
        key = (project_id, environment)
        bucket = self._accounts.get(key, {})
        ids = self._sorted_ids.get(key)
        if ids is None:
            ids = self._sorted_ids[key] = sorted(bucket)
        matches = [
            a
            for a in map(bucket.__getitem__, ids)
            if (app is None or app in (a.app.name_slug, a.app.id))
            and (external_user_id is None or a.external_id == external_user_id)
            and (oauth_app_id is None or a.oauth_client() == oauth_app_id)
        ]
        lo, hi = 0, len(matches)
        if after is not None:
            lo = bisect.bisect_right(matches, decode_cursor(after), key=lambda a: a.id)
        if before is not None:
            hi = max(lo, bisect.bisect_left(matches, decode_cursor(before), key=lambda a: a.id))
        # Only `before` alone pages backwards: the page ends right before that cursor.
        start = max(lo, hi - limit) if before is not None and after is None else lo
        end = min(hi, start + limit)
        page = matches[start:end]
        for account in page:
            self.rotations.advance(account)
        page_info: JSON = {
            "count": len(page),
            "total_count": len(matches),
            "start_cursor": encode_cursor(page[0].id) if page and start > 0 else None,
            "end_cursor": encode_cursor(page[-1].id) if page and end < len(matches) else None,
        }
        return page, page_info

    # --- secrets (for the test suite's log scan) ---
    def _retire(self, credentials: dict[str, Any] | None) -> None:
        self._retired.update(str(v) for v in (credentials or {}).values())

    def secret_values(self) -> set[str]:
        """Every secret the emulator holds or ever held: client secrets, issued tokens
        (revoked ones too) and credential values (rotated or removed ones too)."""
        values = {c.client_secret for c in self.clients.values()} | set(self.tokens)
        for account in self.iter_accounts():
            values.update(str(v) for v in (account.credentials or {}).values())
        return values | self._retired

    # --- faults ---
    def _routes(self, route: RouteSpec) -> tuple[Route, ...]:
        if route == "all":
            return ROUTES
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES} or 'all'")
        return (route,)

    def set_status_fault(
        self,
        route: RouteSpec,
        status: int,
        *,
        count: int | None = None,
        probability: float = 1.0,
        retry_after: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer ``status`` for the next ``count`` requests (None: until cleared), each with
        ``probability``; ``retry_after`` becomes the Retry-After header, ``message`` the
        body's ``error`` text."""
        if not 100 <= status <= 599 or (count is not None and count < 1):
            raise ValueError("status must be 100-599 and count at least 1")
        _check_probability(probability)
        for r in self._routes(route):
            fault = self.faults[r]
            fault.status, fault.count = status, count
            fault.probability, fault.retry_after = probability, retry_after
            fault.message = message

    def set_latency(self, seconds: float, route: RouteSpec = "all") -> None:
        """Delay every request on the route by ``seconds`` (concurrently, never serialized)."""
        if seconds < 0:
            raise ValueError("latency must not be negative")
        for r in self._routes(route):
            self.faults[r].latency = seconds

    def set_stall(self, seconds: float, probability: float = 1.0, route: RouteSpec = "all") -> None:
        """Add ``seconds`` more delay to a request with ``probability``."""
        if seconds < 0:
            raise ValueError("stall must not be negative")
        _check_probability(probability)
        for r in self._routes(route):
            self.faults[r].stall, self.faults[r].stall_probability = seconds, probability

    def clear_faults(self, route: RouteSpec = "all") -> None:
        """No more faults on the route; requests waiting out its latency or stall go on now."""
        for r in self._routes(route):
            self.faults[r] = Fault()
            cleared = self._cleared.pop(r, None)
            if cleared is not None:
                cleared.set()

    async def delay(self, route: Route, seconds: float) -> None:
        """One request's injected delay: ``seconds``, or until the route's faults are cleared."""
        cleared = self._cleared.setdefault(route, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cleared.wait(), seconds)

    def reseed(self, seed: int | None) -> None:
        self.rng.seed(seed)

    def plan(self, route: Route) -> Plan:
        """Decide one request's faults in arrival order."""
        return self.faults[route].plan(self.rng)

    def faults_json(self) -> JSON:
        return {r: vars(self.faults[r]).copy() for r in ROUTES}

    # --- Pipedream's read budget ---
    def set_read_budget(self, reads: int | None, window: float = READ_WINDOW) -> None:
        """``reads`` account reads per project per ``window`` seconds; None turns it off."""
        if (reads is not None and reads < 1) or window <= 0:
            raise ValueError("the budget needs at least 1 read and a positive window")
        self.read_budget, self.read_window = reads, window
        self._reads.clear()

    def take_read(self, project_id: str) -> float | None:
        """Count one account read; the seconds to wait instead when the budget is spent."""
        if self.read_budget is None:
            return None
        now = self.clock()
        reads = self._reads.setdefault(project_id, deque())
        while reads and reads[0] <= now - self.read_window:
            reads.popleft()
        if len(reads) >= self.read_budget:
            return max(reads[0] + self.read_window - now, 0.001)
        reads.append(now)
        return None

    # --- counters and the concurrency gauge ---
    def record(self, route: Route, status: int) -> None:
        self.requests[route] += 1
        self.statuses[route][status] += 1

    def enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def reset_stats(self) -> None:
        """Zero the counters; the gauge's maximum restarts from the requests in flight now."""
        self.requests.clear()
        for counter in self.statuses.values():
            counter.clear()
        self.tokens_issued = 0
        self.max_in_flight = self.in_flight

    def stats(self) -> JSON:
        return {
            "requests": {r: self.requests[r] for r in ROUTES},
            "statuses": {r: {str(s): n for s, n in self.statuses[r].items()} for r in ROUTES},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "tokens_issued": self.tokens_issued,
        }
