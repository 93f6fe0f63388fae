"""PipedreamClient: requests, status mapping, Retry-After, retries, deadlines, no leaks."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

import httpx
import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.errors import (
    AccountProblem,
    DeadlineExceeded,
    InvalidRequest,
    ProviderAuthFailed,
    RateLimited,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.client import TokenRejected
from pdsidecar.pipedream.retrying import parse_retry_after
from pdsidecar.secret import Secret
from pdsidecar.settings import Policy
from tests.support.pipedream_fakes import (
    ACCOUNT,
    CLIENT_SECRET,
    CREDENTIAL,
    FAST_POLICY,
    PROJECT,
    FakePipedream,
    assert_no_secret,
    connection,
    make_client,
)

pytestmark = pytest.mark.anyio

TOKEN = Secret("SECRET-api-token-fixed")


@pytest.fixture
def fake(fake: FakePipedream) -> FakePipedream:
    """The shared fake, accepting this file's fixed API token."""
    fake.valid_tokens.add(TOKEN.reveal())
    return fake


async def test_fetch_token_posts_client_credentials_and_dates_the_expiry(
    fake: FakePipedream, clock: ManualClock
) -> None:
    client, _ = make_client(fake, clock)
    token = await client.fetch_token(connection(), deadline=None)

    request = fake.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/oauth/token")
    assert json.loads(request.content) == {
        "grant_type": "client_credentials",
        "client_id": "client-id-default",
        "client_secret": CLIENT_SECRET,
        "scope": "*",
    }
    assert token.value.reveal().startswith("SECRET-api-token-")
    assert token.expires_at_mono == clock.monotonic() + 3600
    assert token.expires_at_wall == clock.wall() + 3600
    assert "SECRET" not in repr(token)


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refused_client_credentials_are_provider_auth_failed_without_retry(
    fake: FakePipedream, clock: ManualClock, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    fake.queue("token", status)
    client, _ = make_client(fake, clock)
    with pytest.raises(ProviderAuthFailed) as info:
        await client.fetch_token(connection("tenant-a"), deadline=None)
    assert info.value.reason == "PROVIDER_AUTH_FAILED"
    assert info.value.metadata == {"connection": "tenant-a"}
    assert f"HTTP {status}" in info.value.message
    assert fake.counts["token"] == 1
    assert_no_secret(info.value, caplog)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({}, 30.0), ({"Retry-After": "soon"}, 30.0)],
)
async def test_429_is_rate_limited_with_retry_after(
    fake: FakePipedream, clock: ManualClock, headers: dict[str, str], expected: float
) -> None:
    fake.queue("token", httpx.Response(429, headers=headers))
    fake.queue("account", httpx.Response(429, headers=headers))
    client, _ = make_client(fake, clock)
    with pytest.raises(RateLimited) as token_error:
        await client.fetch_token(connection(), deadline=None)
    with pytest.raises(RateLimited) as account_error:
        await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=None)
    for error in (token_error.value, account_error.value):
        assert error.reason == "RATE_LIMITED"
        assert error.retry_after == expected
        assert_no_secret(error)
    assert fake.counts == {"token": 1, "account": 1}  # 429 is not retried here


def test_retry_after_reads_http_dates_against_the_wall_clock() -> None:
    clock = ManualClock(wall_start=1_700_000_000.0)
    date = email.utils.formatdate(clock.wall() + 42, usegmt=True)
    assert parse_retry_after(date, clock, 30.0) == pytest.approx(42.0)
    past = email.utils.formatdate(clock.wall() - 42, usegmt=True)
    assert parse_retry_after(past, clock, 30.0) == 0.0
    assert parse_retry_after("nan", clock, 30.0) == 30.0


async def test_5xx_is_retried_up_to_max_attempts_with_growing_jittered_backoff(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    fake.queue("account", 503, 502, 500, 200)
    client, sleep = make_client(fake, clock)
    with pytest.raises(UpstreamUnavailable) as info:
        await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=None)
    assert fake.counts["account"] == FAST_POLICY.max_attempts == 3
    assert info.value.reason == "UPSTREAM_UNAVAILABLE"
    assert "HTTP 500" in info.value.message
    assert info.value.retry_after == FAST_POLICY.backoff_max
    # backoff_initial, then doubled; each jittered into [ceiling / 2, ceiling].
    assert len(sleep.pauses) == 2
    assert 0.05 <= sleep.pauses[0] <= 0.1
    assert 0.1 <= sleep.pauses[1] <= 0.2
    assert_no_secret(info.value, caplog)


async def test_a_5xx_then_success_returns_the_account(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("account", httpx.Response(503, headers={"Retry-After": "1"}))
    client, _ = make_client(fake, clock)
    account = await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=None)
    assert account.id == ACCOUNT
    assert fake.counts["account"] == 2


async def test_connection_errors_are_retried_and_never_chained(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    for _ in range(3):
        fake.queue("token", httpx.ConnectError(f"refused; body had {CLIENT_SECRET}"))
    client, _ = make_client(fake, clock)
    with pytest.raises(UpstreamUnavailable) as info:
        await client.fetch_token(connection(), deadline=None)
    assert fake.counts["token"] == 3
    assert "ConnectError" in info.value.message
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert_no_secret(info.value, caplog)


async def test_retries_stop_at_the_deadline_including_backoff(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("account", 503, 503, 503)
    client, sleep = make_client(fake, clock, Policy(backoff_initial=0.1, max_attempts=10))
    deadline = clock.monotonic() + 0.25
    with pytest.raises(DeadlineExceeded) as info:
        await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=deadline)
    assert info.value.reason == "DEADLINE_EXCEEDED"
    assert 2 <= fake.counts["account"] < 10
    assert clock.monotonic() <= deadline  # no sleep ran past it
    assert sum(sleep.pauses) <= 0.25


async def test_a_hung_request_is_cut_at_the_deadline(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.gate = asyncio.Event()  # never set: Pipedream never answers
    client, _ = make_client(fake, clock, Policy(request_timeout=30.0))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await client.get_account(
            TOKEN, PROJECT, "production", ACCOUNT, deadline=clock.monotonic() + 0.05
        )
    assert time.monotonic() - started < 1.0
    assert fake.counts["account"] == 1


async def test_each_attempt_timeout_is_cut_to_the_time_left(
    fake: FakePipedream, clock: ManualClock
) -> None:
    client, _ = make_client(fake, clock, Policy(request_timeout=10.0, connect_timeout=5.0))
    await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=clock.monotonic() + 2)
    await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=None)
    cut, uncut = (request.extensions["timeout"] for request in fake.requests)
    assert cut == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}
    assert uncut == {"connect": 5.0, "read": 10.0, "write": 10.0, "pool": 10.0}


async def test_a_deadline_already_past_sends_nothing(
    fake: FakePipedream, clock: ManualClock
) -> None:
    client, _ = make_client(fake, clock)
    with pytest.raises(DeadlineExceeded):
        await client.fetch_token(connection(), deadline=clock.monotonic() - 1)
    assert fake.counts["token"] == 0


async def test_get_account_sends_token_and_environment_and_parses_the_account(
    fake: FakePipedream, clock: ManualClock
) -> None:
    client, _ = make_client(fake, clock)
    account = await client.get_account(TOKEN, PROJECT, "development", ACCOUNT, deadline=None)
    request = fake.requests[0]
    assert request.url.path == f"/v1/connect/{PROJECT}/accounts/{ACCOUNT}"
    assert request.url.params["include_credentials"] == "true"
    assert request.headers["authorization"] == f"Bearer {TOKEN.reveal()}"
    assert request.headers["x-pd-environment"] == "development"
    assert account.app_slug == "notion"
    assert account.credentials is not None
    assert account.credentials["oauth_access_token"] == Secret(CREDENTIAL)


async def test_404_is_account_not_found_with_its_coordinates(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("account", 404)
    client, _ = make_client(fake, clock)
    with pytest.raises(AccountProblem) as info:
        await client.get_account(TOKEN, PROJECT, "production", "apn_missing", deadline=None)
    assert info.value.reason == "ACCOUNT_NOT_FOUND"
    assert info.value.metadata == {
        "project_id": PROJECT,
        "account_id": "apn_missing",
        "environment": "production",
    }


async def test_401_on_an_account_is_token_rejected_without_the_token(
    fake: FakePipedream, clock: ManualClock
) -> None:
    client, _ = make_client(fake, clock)
    with pytest.raises(TokenRejected) as info:
        await client.get_account(
            Secret("SECRET-unknown-token"), PROJECT, "production", ACCOUNT, deadline=None
        )
    assert fake.counts["account"] == 1
    assert_no_secret(info.value)


async def test_ids_cannot_address_another_endpoint(fake: FakePipedream, clock: ManualClock) -> None:
    client, _ = make_client(fake, clock)
    with pytest.raises(UpstreamUnavailable, match="another account"):  # the fake's own account
        await client.get_account(TOKEN, PROJECT, "production", "../../oauth/token", deadline=None)
    assert fake.requests[0].url.raw_path.startswith(
        f"/v1/connect/{PROJECT}/accounts/..%2F..%2Foauth%2Ftoken".encode()
    )
    with pytest.raises(InvalidRequest):
        await client.get_account(TOKEN, PROJECT, "production", "..", deadline=None)
    assert fake.counts["account"] == 1


async def test_a_body_that_is_not_a_json_object_is_upstream_unavailable(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("account", httpx.Response(200, text="<html>"), httpx.Response(200, json=[1]))
    client, _ = make_client(fake, clock)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable) as info:
            await client.get_account(TOKEN, PROJECT, "production", ACCOUNT, deadline=None)
        assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("count", "page_info", "cursor"),
    [
        (2, {"end_cursor": "c2", "has_more": True}, "c2"),
        (2, {"end_cursor": "c2"}, "c2"),
        (2, {"end_cursor": "c2", "has_more": False}, None),
        (1, {"end_cursor": "c2"}, "c2"),  # a short page is not the last while a cursor follows
        (2, {}, None),
        (2, {"end_cursor": ""}, None),
    ],
)
async def test_list_accounts_pages(
    fake: FakePipedream,
    clock: ManualClock,
    count: int,
    page_info: dict[str, object],
    cursor: str | None,
) -> None:
    rows = [{"id": f"apn_{i}", "app": {"name_slug": "notion"}} for i in range(count)]
    fake.queue("account", httpx.Response(200, json={"data": rows, "page_info": page_info}))
    client, _ = make_client(fake, clock)
    page = await client.list_accounts(
        TOKEN,
        PROJECT,
        "production",
        app="notion",
        external_user_id=None,
        limit=2,
        after="c1",
        deadline=None,
    )
    assert [a.id for a in page.accounts] == [f"apn_{i}" for i in range(count)]
    assert page.next_cursor == cursor
    params = fake.requests[0].url.params
    assert dict(params) == {
        "include_credentials": "true",
        "limit": "2",
        "app": "notion",
        "after": "c1",
    }
