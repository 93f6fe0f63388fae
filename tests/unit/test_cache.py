"""The account cache: freshness, coalescing, stale serving, rejected tokens, bounds."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.credentials.cache import MIN_FRESH, STALE_ALLOWANCE, AccountCache, CacheKey
from pdsidecar.credentials.source import Fetched
from pdsidecar.errors import (
    AccountNotFound,
    Overloaded,
    ProviderAuthFailed,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy
from tests.support.account_fakes import ACCESS, WALL_START, make_account
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

KEY: CacheKey = ("default", "proj_1", "production", "apn_1")
POLICY = Policy(credentials_max_age=300.0, credentials_expiry_margin=300.0)


class Source:
    """A fetch function that counts calls, can be held at a gate, and can fail."""

    def __init__(self, account: Account | None = None) -> None:
        self.account = account or make_account()
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self) -> Account:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.account


def make_cache(policy: Policy = POLICY) -> tuple[AccountCache, ManualClock]:
    clock = ManualClock(wall_start=WALL_START)
    return AccountCache(policy, clock), clock


async def test_fresh_hit_does_no_io() -> None:
    cache, _ = make_cache()
    source = Source()
    first = await cache.get(KEY, source, deadline=None)
    second = await cache.get(KEY, source, deadline=None)
    assert first is second
    assert source.calls == 1
    assert (cache.stats.misses, cache.stats.hits) == (1, 1)


async def test_entry_without_expiry_lives_max_age() -> None:
    cache, clock = make_cache()
    source = Source()
    await cache.get(KEY, source, deadline=None)
    clock.advance(299.9)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 1
    clock.advance(0.1)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 2


async def test_entry_expires_at_source_expiry_minus_margin() -> None:
    cache, clock = make_cache()
    # The source token expires in 400 s: fresh until 400 - 300 = 100 s, not 300 s.
    source = Source(make_account(expires_at=WALL_START + 400))
    await cache.get(KEY, source, deadline=None)
    entry = cache.peek(KEY)
    assert entry is not None
    assert entry.fresh_until == pytest.approx(clock.monotonic() + 100)
    assert entry.usable_until == pytest.approx(clock.monotonic() + 400)
    clock.advance(99.9)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 1
    clock.advance(0.1)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 2


async def test_far_expiry_is_capped_by_max_age() -> None:
    cache, clock = make_cache()
    await cache.get(KEY, Source(make_account(expires_at=WALL_START + 7200)), deadline=None)
    entry = cache.peek(KEY)
    assert entry is not None and entry.fresh_until == pytest.approx(clock.monotonic() + 300)


async def test_token_near_expiry_is_still_cached_briefly() -> None:
    cache, clock = make_cache()
    source = Source(make_account(expires_at=WALL_START + 10))
    await cache.get(KEY, source, deadline=None)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 1
    clock.advance(MIN_FRESH)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 2


async def test_concurrent_cold_misses_share_one_fetch() -> None:
    cache, _ = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get(KEY, source, deadline=None)) for _ in range(1000)]
    await eventually(lambda: cache.stats.coalesced == 999)
    source.gate.set()
    results = await asyncio.gather(*waiters)
    assert source.calls == 1
    assert all(r is source.account for r in results)
    assert (cache.stats.misses, cache.stats.coalesced) == (1, 999)


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    cache, _ = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(KEY, source, deadline=None))
    second = asyncio.create_task(cache.get(KEY, source, deadline=None))
    await eventually(lambda: cache.stats.coalesced == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    source.gate.set()
    assert await second is source.account
    assert source.calls == 1


async def test_lone_cancelled_waiter_still_fills_the_cache() -> None:
    cache, _ = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    waiter = asyncio.create_task(cache.get(KEY, source, deadline=None))
    await eventually(lambda: source.calls == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    source.gate.set()
    await eventually(lambda: cache.peek(KEY) is not None)
    assert await cache.get(KEY, source, deadline=None) is source.account
    assert source.calls == 1


async def test_waiter_deadline_raises_unavailable_and_fetch_continues() -> None:
    cache, clock = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    with pytest.raises(UpstreamUnavailable, match="deadline"):
        await cache.get(KEY, source, deadline=clock.monotonic() + 0.01)
    source.gate.set()
    await eventually(lambda: cache.peek(KEY) is not None)
    assert source.calls == 1


async def test_expired_deadline_fails_at_once() -> None:
    cache, clock = make_cache()
    with pytest.raises(UpstreamUnavailable):
        await cache.get(KEY, Source(), deadline=clock.monotonic() - 1)


async def _stale_setup(
    error: UpstreamError, policy: Policy = POLICY, expires_in: float | None = 3600
) -> tuple[AccountCache, ManualClock, Source]:
    cache, clock = make_cache(policy)
    expires = None if expires_in is None else WALL_START + expires_in
    source = Source(make_account(expires_at=expires))
    await cache.get(KEY, source, deadline=None)
    source.fail = error
    return cache, clock, source


@pytest.mark.parametrize(
    "error",
    [UpstreamUnavailable("pipedream 503"), RateLimited("slow down", retry_after=30.0)],
    ids=["unavailable", "rate-limited"],
)
async def test_stale_served_while_usable_then_refused(error: UpstreamError) -> None:
    cache, clock, source = await _stale_setup(error)
    clock.advance(301)  # past max age, before the token's expiry
    assert await cache.get(KEY, source, deadline=None) is source.account
    assert cache.stats.stale_served == 1
    clock.advance(3600)  # past the token's own expiry
    with pytest.raises(type(error)):
        await cache.get(KEY, source, deadline=None)


async def test_stale_allowance_for_accounts_without_expiry() -> None:
    cache, clock, source = await _stale_setup(UpstreamUnavailable("down"), expires_in=None)
    clock.advance(300 + STALE_ALLOWANCE - 1)
    assert await cache.get(KEY, source, deadline=None) is source.account
    clock.advance(2)
    with pytest.raises(UpstreamUnavailable):
        await cache.get(KEY, source, deadline=None)


async def test_stale_serving_backs_off_for_retry_after() -> None:
    cache, clock, source = await _stale_setup(RateLimited("slow down", retry_after=30.0))
    clock.advance(301)
    await cache.get(KEY, source, deadline=None)
    calls = source.calls
    clock.advance(29)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == calls  # no fetch while Pipedream asked us to wait
    clock.advance(2)
    await cache.get(KEY, source, deadline=None)
    assert source.calls == calls + 1


async def test_no_stale_when_policy_says_so() -> None:
    policy = dataclasses.replace(POLICY, serve_stale_on_upstream_error=False)
    cache, clock, source = await _stale_setup(UpstreamUnavailable("down"), policy)
    clock.advance(301)
    with pytest.raises(UpstreamUnavailable):
        await cache.get(KEY, source, deadline=None)


async def test_provider_auth_failure_is_never_hidden_by_stale() -> None:
    cache, clock, source = await _stale_setup(ProviderAuthFailed("bad client"))
    clock.advance(301)
    with pytest.raises(ProviderAuthFailed):
        await cache.get(KEY, source, deadline=None)


async def test_stale_served_when_waiter_deadline_expires() -> None:
    cache, clock, source = await _stale_setup(UpstreamUnavailable("unused"))
    source.fail = None
    source.gate = asyncio.Event()
    clock.advance(301)
    got = await cache.get(KEY, source, deadline=clock.monotonic() + 0.01)
    assert got is source.account
    source.gate.set()


async def test_not_found_is_remembered_briefly_and_drops_the_entry() -> None:
    cache, clock = make_cache()
    source = Source()
    await cache.get(KEY, source, deadline=None)
    clock.advance(301)
    source.fail = AccountNotFound("gone")
    for _ in range(5):
        with pytest.raises(AccountNotFound):
            await cache.get(KEY, source, deadline=None)
    assert source.calls == 2, "the answer is remembered: one request for five calls"
    assert cache.peek(KEY) is None
    # Connected meanwhile: found once not_found_ttl has passed.
    source.fail = None
    clock.advance(POLICY.not_found_ttl)
    assert await cache.get(KEY, source, deadline=None) is source.account
    assert source.calls == 3


async def test_a_queued_fetch_nobody_waits_for_never_starts() -> None:
    cache, _clock = make_cache(dataclasses.replace(POLICY, upstream_concurrency=1))
    holder, blocked = Source(), Source()
    holder.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(KEY, holder, deadline=None))
    await eventually(lambda: holder.calls == 1)
    other = ("default", "proj_1", "production", "apn_2")
    waiter = asyncio.create_task(cache.get(other, blocked, deadline=None))
    await eventually(lambda: cache.gate.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache.gate.waiting == 0 and cache.stats.withdrawn == 1
    holder.gate.set()
    await first
    await eventually(lambda: cache.gate.busy == 0)
    assert blocked.calls == 0


async def test_a_fetch_that_cannot_start_in_time_is_refused_at_once() -> None:
    cache, clock = make_cache(dataclasses.replace(POLICY, upstream_concurrency=1))
    holder = Source()
    holder.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(KEY, holder, deadline=None))
    await eventually(lambda: holder.calls == 1)
    other = ("default", "proj_1", "production", "apn_2")
    with pytest.raises(Overloaded) as refused:
        # One fetch ahead takes about INITIAL_DURATION; 10 ms is not enough.
        await cache.get(other, Source(), deadline=clock.monotonic() + 0.01)
    assert refused.value.retry_after and refused.value.retry_after > 0
    holder.gate.set()
    await first


async def test_free_slots_go_round_robin_over_callers() -> None:
    cache, _clock = make_cache(dataclasses.replace(POLICY, upstream_concurrency=1))
    holder = Source()
    holder.gate = asyncio.Event()
    first = asyncio.create_task(cache.get(KEY, holder, deadline=None, caller="a"))
    await eventually(lambda: holder.calls == 1)
    order: list[str] = []

    def source(name: str) -> Callable[[], Coroutine[Any, Any, Account]]:
        async def fetch() -> Account:
            order.append(name)
            return make_account(name)

        return fetch

    busy = [
        asyncio.create_task(
            cache.get(("d", "p", "e", f"apn_a{i}"), source(f"a{i}"), deadline=None, caller="a")
        )
        for i in range(5)
    ]
    await eventually(lambda: cache.gate.waiting == 5)
    late = asyncio.create_task(
        cache.get(("d", "p", "e", "apn_b"), source("b"), deadline=None, caller="b")
    )
    await eventually(lambda: cache.gate.waiting == 6)
    holder.gate.set()
    await asyncio.gather(first, late, *busy)
    assert order.index("b") <= 1, order


async def test_a_fetch_detached_by_a_reload_is_not_cached() -> None:
    cache, _ = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    waiter = asyncio.create_task(cache.get(KEY, source, deadline=None))
    await eventually(lambda: source.calls == 1)
    cache.drop_connection(KEY[0])
    source.gate.set()
    assert await waiter is source.account  # the caller that waited still gets its answer
    assert cache.peek(KEY) is None
    await cache.get(KEY, source, deadline=None)
    assert source.calls == 2


def _holds(token: str) -> Callable[[Account], bool]:
    return lambda a: (
        a.credentials is not None and any(s.reveal() == token for s in a.credentials.values())
    )


async def test_rejected_token_refetches_once_for_many_callers() -> None:
    cache, clock = make_cache()
    source = Source()
    await cache.get(KEY, source, deadline=None)
    clock.advance(1)
    started = clock.monotonic()
    source.gate = asyncio.Event()

    def call() -> Coroutine[Any, Any, Account]:
        return cache.get(KEY, source, deadline=None, rejected=_holds(ACCESS), started_at=started)

    waiters = [asyncio.create_task(call()) for _ in range(100)]
    await eventually(lambda: cache.stats.coalesced == 99)
    source.gate.set()
    await asyncio.gather(*waiters)
    assert source.calls == 2
    assert cache.stats.refetches == 1
    # Pipedream still had the same token; later rejections from the same moment don't refetch.
    await call()
    assert source.calls == 2


async def test_rejected_token_no_longer_cached_causes_no_fetch() -> None:
    cache, clock = make_cache()
    source = Source()
    await cache.get(KEY, source, deadline=None)
    clock.advance(1)
    got = await cache.get(
        KEY,
        source,
        deadline=None,
        rejected=_holds("SECRET-some-older-token"),
        started_at=clock.monotonic(),
    )
    assert got is source.account
    assert source.calls == 1


async def test_rejected_token_is_not_served_stale() -> None:
    cache, clock, source = await _stale_setup(UpstreamUnavailable("down"))
    clock.advance(1)
    with pytest.raises(UpstreamUnavailable):
        await cache.get(
            KEY, source, deadline=None, rejected=_holds(ACCESS), started_at=clock.monotonic()
        )


async def test_an_offered_entry_is_taken_only_when_newer_than_any_version_held() -> None:
    # Versions (credentials/source.py): a value written back into Redis, or an old
    # event's entry, never replaces a newer read, even one evicted since.
    cache, clock = make_cache(dataclasses.replace(POLICY, cache_max_entries=1))
    heard: list[Account] = []
    cache.notices.subscribe(lambda key, account: heard.append(account))
    first = await cache.get(KEY, Source(), deadline=None)
    held = cache.held(KEY)
    assert held > 0 and heard == [first]
    now = clock.monotonic()

    def read(version: int) -> Fetched:
        return Fetched(make_account(), now, now + 60, now + 3600, version)

    assert not cache.offer(KEY, read(held - 1)), "older than held"
    assert not cache.offer(KEY, read(held)), "the same read"
    newer = read(held + 1)
    assert cache.offer(KEY, newer)
    assert cache.peek(KEY) is not None and cache.peek(KEY).account is newer.account  # type: ignore[union-attr]
    assert heard == [first, newer.account]
    # Evicted, the account's version is still remembered.
    await cache.get(("default", "proj_1", "production", "apn_2"), Source(), deadline=None)
    assert cache.peek(KEY) is None
    assert not cache.offer(KEY, read(held))
    # A later read by this cache carries a greater version than any held.
    await cache.get(KEY, Source(), deadline=None)
    entry = cache.peek(KEY)
    assert entry is not None and entry.version > held + 1


async def test_size_is_bounded_and_hit_entries_get_a_second_chance() -> None:
    cache, _ = make_cache(dataclasses.replace(POLICY, cache_max_entries=3))
    keys = [("default", "proj_1", "production", f"apn_{i}") for i in range(5)]
    for key in keys[:3]:
        await cache.get(key, Source(make_account(key[3])), deadline=None)
    for key in keys[:3]:
        entry = cache.peek(key)
        assert entry is not None
        entry.used = False  # as if a sweep had passed
    await cache.get(keys[0], Source(), deadline=None)  # a hit: apn_0 is in use
    await cache.get(keys[3], Source(make_account(keys[3][3])), deadline=None)
    await cache.get(keys[4], Source(make_account(keys[4][3])), deadline=None)
    assert len(cache) == 3
    assert cache.peek(keys[0]) is not None
    assert cache.peek(keys[1]) is None and cache.peek(keys[2]) is None
    assert cache.stats.evictions == 2


async def test_ten_thousand_accounts_fit_in_40_mb() -> None:
    cache, _ = make_cache()
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(10_000):
            # Built directly: these values are not secrets worth registering for the log scan.
            account = Account.from_json(
                {
                    "id": f"apn_{i:012d}",
                    "name": "Slack workspace",
                    "external_id": f"user-{i:08d}",
                    "app": {"name_slug": "slack_v2", "name": "Slack", "auth_type": "oauth"},
                    "expires_at": "2030-01-01T00:00:00.000Z",
                    "last_refreshed_at": "2029-12-31T23:00:00.000Z",
                    "credentials": {
                        "oauth_access_token": f"xoxb-{i:08d}-" + "a" * 180,
                        "oauth_refresh_token": f"xoxe-{i:08d}-" + "b" * 180,
                        "oauth_client_id": "123456789.123456789",
                        "oauth_uid": f"U{i:010d}",
                    },
                }
            )
            key = ("default", "proj_1", "production", account.id)
            await cache.get(key, Source(account), deadline=None)
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == 10_000
    print(f"10,000 cached accounts: {used / 1e6:.1f} MB")
    assert used < 40 * 1024 * 1024, f"{used / 1e6:.1f} MB"


async def test_aclose_cancels_fetches_in_flight() -> None:
    cache, _ = make_cache()
    source = Source()
    source.gate = asyncio.Event()
    waiter = asyncio.create_task(cache.get(KEY, source, deadline=None))
    await eventually(lambda: source.calls == 1)
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert cache.peek(KEY) is None
