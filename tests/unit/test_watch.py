"""When a watched account is re-read (WatchHub's schedule), on a clock the test sets."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.credentials.broker import CredentialBroker
from pdsidecar.credentials.watch import JITTER_SHARE, POLL_MAX, POLL_MIN, SETTLE, WatchHub
from pdsidecar.pipedream.models import Account
from pdsidecar.settings import Policy, Settings
from tests.support.account_fakes import WALL_START, make_account

POLICY = Policy(watch_jitter=30.0, credentials_expiry_margin=300.0, credentials_max_age=300.0)


def hub(seed: int = 1) -> tuple[WatchHub, ManualClock]:
    clock = ManualClock(wall_start=WALL_START)
    broker = CredentialBroker(Settings(policy=POLICY), {}, clock)
    return WatchHub(broker, POLICY, clock, lambda r: r, rng=random.Random(seed)), clock


def account(**times: float | None) -> Account:
    return dataclasses.replace(make_account(), **times)


def test_reread_follows_next_refresh_at_spread_over_a_quarter_of_the_lead() -> None:
    watch, _ = hub()
    # Pipedream refreshes in 40 min; the token dies 10 min after that.
    acct = account(next_refresh_at=WALL_START + 2400, expires_at=WALL_START + 3000)
    delays = [watch._delay(acct, 0) for _ in range(500)]
    low, high = 2400 + SETTLE, 2400 + SETTLE + min(POLICY.watch_jitter, 600 * JITTER_SHARE)
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > 0.8 * (high - low)  # spread, not bunched


def test_short_leads_are_spread_over_a_quarter_of_the_lead() -> None:
    watch, _ = hub()
    acct = account(next_refresh_at=WALL_START + 10, expires_at=WALL_START + 15)
    assert all(
        10 + SETTLE <= watch._delay(acct, 0) <= 10 + SETTLE + 5 * JITTER_SHARE for _ in range(200)
    )


def test_without_next_refresh_at_the_reread_comes_ahead_of_the_margin() -> None:
    watch, _ = hub()
    acct = account(next_refresh_at=None, expires_at=WALL_START + 3600)
    delays = [watch._delay(acct, 0) for _ in range(200)]
    assert all(3300 - POLICY.watch_jitter <= d <= 3300 for d in delays)


@pytest.mark.parametrize("unchanged", [0, 1, 2, 3, 10])
def test_a_late_refresh_is_polled_with_backoff_never_past_a_quarter_of_what_is_left(
    unchanged: int,
) -> None:
    watch, _ = hub()
    # next_refresh_at passed, 200 s left (inside the 300 s margin): Pipedream is late.
    acct = account(next_refresh_at=WALL_START - 5, expires_at=WALL_START + 200)
    assert watch._delay(acct, unchanged) == min(POLL_MIN * 2**unchanged, POLL_MAX, 200 / 4)


def test_api_keys_are_reread_every_max_age_or_a_little_more() -> None:
    watch, _ = hub()
    acct = account(next_refresh_at=None, expires_at=None)
    delays = [watch._delay(acct, 0) for _ in range(200)]
    assert all(300 <= d <= 300 * (1 + JITTER_SHARE) for d in delays)
