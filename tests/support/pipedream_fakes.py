"""A scripted Pipedream behind ``httpx.MockTransport``, for the client, token and upstream tests.

It counts requests per endpoint and the largest number in flight at once. Every answer
yields to the event loop first, and ``gate`` holds answers until the test opens it, so
concurrent callers really overlap. By default it
issues a new token per token request, and answers account requests for valid tokens (401
otherwise); ``script`` queues answers (a status code or a Response) that are used first.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.errors import SidecarError
from pdsidecar.pipedream.client import PipedreamClient
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy
from tests.support.logsink import SECRETS

BASE_URL = "https://pipedream.test"
PROJECT = "proj_1"
ACCOUNT = "apn_1"
# Every secret here carries this mark, so one substring check finds any leak.
MARK = "SECRET"
CLIENT_SECRET = f"{MARK}-client-secret-0001"
TOKEN_PREFIX = f"{MARK}-api-token-"
CREDENTIAL = f"{MARK}-source-access-token-0002"
SECRETS.update({CLIENT_SECRET, CREDENTIAL})

FAST_POLICY = Policy(backoff_initial=0.1, backoff_max=0.4, max_attempts=3)

Answer = int | httpx.Response | Exception


@pytest.fixture
def clock() -> ManualClock:
    """A manual clock whose wall time is fixed, so dated expiries are the same every run."""
    return ManualClock(wall_start=1_700_000_000.0)


@pytest.fixture
def fake() -> FakePipedream:
    return FakePipedream()


def connection(name: str = "default") -> ConnectionConfig:
    return ConnectionConfig(name, f"client-id-{name}", Secret(CLIENT_SECRET))


def account_json(account_id: str = ACCOUNT) -> dict[str, Any]:
    return {
        "id": account_id,
        "name": "Notion",
        "external_id": "user-1",
        "healthy": True,
        "dead": False,
        "app": {"name_slug": "notion", "name": "Notion", "auth_type": "oauth"},
        "credentials": {"oauth_access_token": CREDENTIAL},
    }


class FakePipedream:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.script: dict[str, deque[Answer]] = {"token": deque(), "account": deque()}
        self.valid_tokens: set[str] = set()
        self.token_lifetime = 3600
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0  # real seconds each answer takes
        self.gate: asyncio.Event | None = None  # when set, answers wait for it

    def queue(self, endpoint: str, *answers: Answer) -> None:
        self.script[endpoint].extend(answers)

    def revoke(self) -> None:
        self.valid_tokens.clear()

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        endpoint = "token" if request.url.path == "/v1/oauth/token" else "account"
        self.counts[endpoint] += 1
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            # Real HTTP yields to the event loop while a request is out; so does the fake,
            # or no two callers would ever be in flight at once.
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script[endpoint]:
                return _answer(self.script[endpoint].popleft())
            return self._token() if endpoint == "token" else self._account(request)
        finally:
            self.in_flight -= 1

    def _token(self) -> httpx.Response:
        value = f"{TOKEN_PREFIX}{self.counts['token']:04d}"
        SECRETS.add(value)
        self.valid_tokens.add(value)
        body = {"access_token": value, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return httpx.Response(200, json=body)

    def _account(self, request: httpx.Request) -> httpx.Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.valid_tokens:
            return httpx.Response(401, json={"error": "invalid token"})
        if request.url.path.endswith("/accounts"):
            return httpx.Response(200, json={"data": [account_json()], "page_info": {}})
        return httpx.Response(200, json=account_json(request.url.path.rsplit("/", 1)[-1]))


def _answer(answer: Answer) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    return answer if isinstance(answer, httpx.Response) else httpx.Response(answer)


class FakeSleep:
    """Backoff sleeps that move the ManualClock instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


def make_client(
    fake: FakePipedream, clock: ManualClock, policy: Policy = FAST_POLICY
) -> tuple[PipedreamClient, FakeSleep]:
    sleep = FakeSleep(clock)
    http = httpx.AsyncClient(transport=fake.transport)
    return PipedreamClient(http, BASE_URL, policy, clock, sleep=sleep), sleep


def assert_no_secret(error: BaseException, caplog: pytest.LogCaptureFixture | None = None) -> None:
    """No secret in the error, its chain, its attributes, or the captured logs."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts: Iterable[Any] = (str(current), repr(current), *current.args)
        if isinstance(current, SidecarError):
            texts = (*texts, current.message, *current.metadata.values(), current.retry_after)
        for text in texts:
            assert MARK not in str(text), f"secret in {type(current).__name__}: {text!r}"
        for value in vars(current).values():
            assert not isinstance(value, (httpx.Request, httpx.Response)), "HTTP object attached"
        current = current.__cause__ or current.__context__
    if caplog is not None:
        assert MARK not in caplog.text
