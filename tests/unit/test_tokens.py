"""TokenProvider: one request for many callers, the advisory and mandatory windows, invalidation."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.errors import DeadlineExceeded, ProviderAuthFailed, RateLimited, UpstreamUnavailable
from pdsidecar.pipedream.tokens import TokenProvider
from pdsidecar.secret import Secret
from pdsidecar.settings import Policy
from tests.support.pipedream_fakes import (
    FAST_POLICY,
    FakePipedream,
    assert_no_secret,
    connection,
    make_client,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

LIFETIME = 3600.0
ADVISORY = FAST_POLICY.token_refresh_margin  # 300 s before expiry
MANDATORY = FAST_POLICY.token_mandatory_margin  # 60 s before expiry


def provider(
    fake: FakePipedream, clock: ManualClock, policy: Policy = FAST_POLICY
) -> TokenProvider:
    client, _ = make_client(fake, clock, policy)
    return TokenProvider(connection("tenant-a"), client, policy, clock)


async def test_a_thousand_concurrent_callers_cause_one_token_request(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    fake.gate = asyncio.Event()  # Pipedream holds its answer while the callers pile up
    callers = [asyncio.create_task(tokens.token()) for _ in range(1000)]
    await eventually(lambda: fake.in_flight > 0)
    await asyncio.sleep(0.02)  # every caller has run up to where it waits
    assert not any(caller.done() for caller in callers), "all 1000 overlap the request"
    assert fake.in_flight == 1 and fake.counts["token"] == 1
    fake.gate.set()
    values = await asyncio.gather(*callers)
    assert fake.counts["token"] == 1
    assert len(set(values)) == 1
    assert tokens.last_success_mono == clock.monotonic()


async def test_the_token_is_refreshed_at_the_advisory_margin_and_not_before(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    first = await tokens.token()
    clock.advance(LIFETIME - ADVISORY - 1)
    assert await tokens.token() == first
    assert fake.counts["token"] == 1
    clock.advance(2)
    second = await tokens.token()
    assert second != first
    assert fake.counts["token"] == 2


async def test_in_the_advisory_window_other_callers_keep_the_current_token(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    first = await tokens.token()
    clock.advance(LIFETIME - ADVISORY + 1)
    fake.gate = asyncio.Event()
    refresher = asyncio.create_task(tokens.token())
    await asyncio.sleep(0.01)  # the refresh is now waiting on Pipedream
    others = await asyncio.wait_for(asyncio.gather(*(tokens.token() for _ in range(50))), 1)
    assert set(others) == {first}
    fake.gate.set()
    assert await refresher != first
    assert fake.counts["token"] == 2


async def test_an_advisory_failure_serves_the_old_token_logs_and_backs_off(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    tokens = provider(fake, clock)
    first = await tokens.token()
    clock.advance(LIFETIME - ADVISORY + 1)
    fake.queue("token", 503, 503, 503)
    assert await tokens.token() == first
    assert fake.counts["token"] == 4  # the first fetch, then three failed attempts
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "advisory" in r.message]
    assert len(warnings) == 1
    assert "tenant-a" in warnings[0].getMessage()
    assert "SECRET" not in caplog.text
    # Within the backoff: no new request.
    assert await tokens.token() == first
    assert fake.counts["token"] == 4
    clock.advance(FAST_POLICY.backoff_max + 0.1)
    assert await tokens.token() != first
    assert fake.counts["token"] == 5


async def test_in_the_mandatory_window_errors_surface(
    fake: FakePipedream, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    tokens = provider(fake, clock)
    await tokens.token()
    clock.advance(LIFETIME - MANDATORY + 1)
    fake.queue("token", 503, 503, 503)
    with pytest.raises(UpstreamUnavailable) as info:
        await tokens.token()
    assert info.value.metadata["connection"] == "tenant-a"
    assert_no_secret(info.value, caplog)


async def test_bad_client_credentials_surface_as_provider_auth_failed(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.queue("token", 401)
    tokens = provider(fake, clock)
    with pytest.raises(ProviderAuthFailed) as info:
        await tokens.token()
    assert_no_secret(info.value)
    assert tokens.status() is None
    assert tokens.last_success_mono is None


async def test_callers_queued_behind_a_failed_refresh_share_its_failure(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    fake.queue("token", 503, 503, 503)
    results = await asyncio.gather(*(tokens.token() for _ in range(100)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, UpstreamUnavailable)]
    assert len(errors) == 100
    assert fake.counts["token"] == 3  # one refresh, with its retries
    assert all(e.retry_after is not None and e.retry_after > 0 for e in errors)
    assert len({id(e) for e in errors}) == 100  # copies: no shared tracebacks
    clock.advance(FAST_POLICY.backoff_max + 0.1)
    assert await tokens.token()
    assert fake.counts["token"] == 4


async def test_a_rate_limited_refresh_is_not_retried_before_retry_after(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    fake.queue("token", httpx.Response(429, headers={"Retry-After": "20"}))
    with pytest.raises(RateLimited):
        await tokens.token()
    clock.advance(15)
    with pytest.raises(RateLimited) as info:
        await tokens.token()
    assert info.value.retry_after == pytest.approx(5.0)
    assert fake.counts["token"] == 1
    clock.advance(6)
    assert await tokens.token()
    assert fake.counts["token"] == 2


async def test_a_refresh_cut_by_its_callers_deadline_is_not_shared(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    fake.gate = asyncio.Event()
    with pytest.raises(DeadlineExceeded):
        await tokens.token(deadline=clock.monotonic() + 0.02)
    fake.gate.set()
    assert await tokens.token()  # not the first caller's failure


async def test_waiting_for_someone_elses_refresh_respects_the_deadline(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    fake.gate = asyncio.Event()
    refresher = asyncio.create_task(tokens.token())
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded) as info:
        await tokens.token(deadline=clock.monotonic() + 0.02)
    assert "waiting for the token refresh" in info.value.message
    fake.gate.set()
    await refresher


async def test_invalidate_drops_only_the_current_token(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    first = await tokens.token()
    tokens.invalidate(Secret("SECRET-some-other-token"))
    assert await tokens.token() == first
    assert fake.counts["token"] == 1
    tokens.invalidate(first)
    second = await tokens.token()
    assert second != first
    tokens.invalidate(first)  # a late 401 for the old token keeps the new one
    assert await tokens.token() == second
    assert fake.counts["token"] == 2


async def test_refresh_reports_whether_it_fetched_and_force_fetches_once_per_interval(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    assert tokens.status() is None
    status = await tokens.refresh()
    assert (status.refreshed, status.connection) == (True, "tenant-a")
    assert status.expires_at == clock.wall() + LIFETIME
    assert (await tokens.refresh()).refreshed is False
    assert fake.counts["token"] == 1
    clock.advance(LIFETIME - ADVISORY + 1)
    assert (await tokens.refresh()).refreshed is True
    assert (await tokens.refresh(force=True)).refreshed is True
    # Forced again right after: the token the last forced refresh got is reported.
    assert (await tokens.refresh(force=True)).refreshed is False
    assert fake.counts["token"] == 3
    clock.advance(FAST_POLICY.forced_refresh_interval)
    assert (await tokens.refresh(force=True)).refreshed is True
    assert fake.counts["token"] == 4
    assert tokens.status() == status.__class__("tenant-a", clock.wall() + LIFETIME, False)
    assert fake.counts["token"] == 4


async def test_a_hundred_forced_refreshes_cost_one_token_request(
    fake: FakePipedream, clock: ManualClock
) -> None:
    tokens = provider(fake, clock)
    await tokens.token()
    results = await asyncio.gather(*(tokens.refresh(force=True) for _ in range(100)))
    assert [r.refreshed for r in results].count(True) == 1
    assert fake.counts["token"] == 2


async def test_a_short_lived_token_is_not_refreshed_on_every_call(
    fake: FakePipedream, clock: ManualClock
) -> None:
    fake.token_lifetime = 100  # shorter than both margins
    tokens = provider(fake, clock)
    first = await tokens.token()
    clock.advance(40)
    assert await tokens.token() == first
    clock.advance(20)  # 40 s left: inside the shrunk advisory window (50 s)
    assert await tokens.token() != first
    assert fake.counts["token"] == 2


async def test_an_expired_token_is_never_served(fake: FakePipedream, clock: ManualClock) -> None:
    tokens = provider(fake, clock)
    first = await tokens.token()
    clock.advance(LIFETIME + 1)
    fake.queue("token", 503, 503, 503)
    with pytest.raises(UpstreamUnavailable):
        await tokens.token()
    with pytest.raises(UpstreamUnavailable):  # within the backoff: the same failure, no request
        await tokens.token()
    assert fake.counts["token"] == 4
    clock.advance(FAST_POLICY.backoff_max + 0.1)
    assert await tokens.token() != first
