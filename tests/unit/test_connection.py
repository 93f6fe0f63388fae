"""PipedreamConnection: 401 -> one refresh and one retry, the shared cap, the factories."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.errors import AccountProblem, ProviderAuthFailed
from pdsidecar.pipedream.connection import PipedreamConnection, build_connections, make_http_client
from pdsidecar.settings import Policy, Settings
from tests.support.pipedream_fakes import (
    ACCOUNT,
    BASE_URL,
    FAST_POLICY,
    PROJECT,
    FakePipedream,
    assert_no_secret,
    connection,
    make_client,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


def upstream(
    fake: FakePipedream, clock: ManualClock, policy: Policy = FAST_POLICY
) -> PipedreamConnection:
    client, _ = make_client(fake, clock, policy)
    return PipedreamConnection.create(connection("tenant-a"), client, policy, clock)


async def test_a_thousand_concurrent_lookups_after_a_cold_start_fetch_one_token(
    fake: FakePipedream, clock: ManualClock
) -> None:
    up = upstream(fake, clock)
    fake.gate = asyncio.Event()  # the token request is held while the lookups pile up
    lookups = [
        asyncio.create_task(up.get_account(PROJECT, "production", ACCOUNT, deadline=None))
        for _ in range(1000)
    ]
    await eventually(lambda: fake.in_flight > 0)
    await asyncio.sleep(0.02)  # every lookup has run up to where it waits
    assert not any(lookup.done() for lookup in lookups), "all 1000 overlap the token request"
    assert fake.in_flight == 1 and fake.counts == {"token": 1}
    fake.gate.set()
    accounts = await asyncio.gather(*lookups)
    assert {a.id for a in accounts} == {ACCOUNT}
    assert fake.counts == {"token": 1, "account": 1000}


async def test_a_401_drops_the_token_refreshes_once_and_retries_once(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    up = upstream(fake, clock)
    await up.refresh_token(force=False, deadline=None)
    fake.revoke()  # Pipedream forgot the token early
    account = await up.get_account(PROJECT, "production", ACCOUNT, deadline=None)
    assert account.id == ACCOUNT
    assert fake.counts == {"token": 2, "account": 2}
    assert "tenant-a" in caplog.text and "401" in caplog.text
    assert "SECRET" not in caplog.text


async def test_concurrent_401s_for_one_stale_token_cause_one_refresh(
    fake: FakePipedream, clock: ManualClock
) -> None:
    up = upstream(fake, clock)
    await up.refresh_token(force=False, deadline=None)
    fake.revoke()
    fake.delay = 0.005  # all fifty requests are in flight with the stale token
    await asyncio.gather(
        *(up.get_account(PROJECT, "production", ACCOUNT, deadline=None) for _ in range(50))
    )
    assert fake.counts["token"] == 2
    assert fake.counts["account"] == 100


async def test_two_401s_are_provider_auth_failed(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    fake.queue("account", 401, 401, 401)
    up = upstream(fake, clock)
    with pytest.raises(ProviderAuthFailed) as info:
        await up.get_account(PROJECT, "production", ACCOUNT, deadline=None)
    assert info.value.reason == "PROVIDER_AUTH_FAILED"
    assert info.value.metadata == {"connection": "tenant-a"}
    assert fake.counts == {"token": 2, "account": 2}  # exactly one retry
    assert_no_secret(info.value, caplog)


async def test_list_accounts_also_retries_once_after_a_401(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("account", 401)
    up = upstream(fake, clock)
    page = await up.list_accounts(
        PROJECT,
        "production",
        app=None,
        external_user_id="user-1",
        limit=10,
        after=None,
        deadline=None,
    )
    assert [a.id for a in page.accounts] == [ACCOUNT]
    assert page.next_cursor is None
    assert fake.counts == {"token": 2, "account": 2}


async def test_errors_name_the_connection(fake: FakePipedream, clock: ManualClock) -> None:
    fake.queue("account", 404)
    up = upstream(fake, clock)
    with pytest.raises(AccountProblem) as info:
        await up.get_account(PROJECT, "production", "apn_gone", deadline=None)
    assert info.value.reason == "ACCOUNT_NOT_FOUND"
    assert info.value.metadata["connection"] == "tenant-a"
    assert info.value.metadata["account_id"] == "apn_gone"


async def test_the_concurrency_cap_holds_across_connections(
    fake: FakePipedream, clock: ManualClock
) -> None:
    policy = Policy(upstream_concurrency=4)
    settings = Settings(
        pipedream_url=BASE_URL,
        connections={"a": connection("a"), "b": connection("b")},
        policy=policy,
    )
    fake.delay = 0.005
    connections = build_connections(settings, httpx.AsyncClient(transport=fake.transport), clock)
    assert set(connections) == {"a", "b"}
    await asyncio.gather(
        *(
            up.get_account(PROJECT, "production", f"apn_{i}", deadline=None)
            for i in range(40)
            for up in connections.values()
        )
    )
    assert fake.counts == {"token": 2, "account": 80}
    assert fake.max_in_flight == 4


async def test_token_status_and_forced_refresh(fake: FakePipedream, clock: ManualClock) -> None:
    up = upstream(fake, clock)
    assert up.token_status() is None
    forced = await up.refresh_token(force=True, deadline=None)
    assert forced.refreshed and forced.connection == "tenant-a"
    assert up.token_status() == forced.__class__("tenant-a", forced.expires_at, False)
    assert not (await up.refresh_token(force=True, deadline=None)).refreshed  # just forced
    clock.advance(Policy().forced_refresh_interval)
    assert (await up.refresh_token(force=True, deadline=None)).refreshed
    assert fake.counts["token"] == 2


async def test_make_http_client_sets_explicit_timeouts() -> None:
    policy = Policy(connect_timeout=1.5, request_timeout=7.0)
    async with make_http_client(Settings(policy=policy)) as http:
        assert http.timeout.connect == 1.5
        assert http.timeout.read == 7.0
        assert http.headers["user-agent"].startswith("pdsidecar/")
        assert http.follow_redirects is False
