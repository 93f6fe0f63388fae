"""Scheduled source-token rotation and the fake source API, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pdsidecar_emulator import (
    DEMO_CODA_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    Emulator,
    EmulatorState,
    demo_state,
)

from tests.support.clocks import FakeClock
from tests.support.logsink import SECRETS

pytestmark = pytest.mark.anyio

ME = "/source/v1/users/me"
ROTATION = f"/_emulator/accounts/{DEMO_PROJECT_ID}/{DEMO_NOTION_ACCOUNT_ID}/rotation"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    return demo_state(clock=clock, seed=3)


@pytest.fixture
async def http(state: EmulatorState) -> AsyncIterator[httpx.AsyncClient]:
    async with Emulator(state) as emulator, httpx.AsyncClient(base_url=emulator.url) as client:
        yield client
    SECRETS.update(state.secret_values())


def notion_token(state: EmulatorState) -> str:
    account = state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials
    token: str = account.credentials["oauth_access_token"]
    return token


async def status_for(http: httpx.AsyncClient, token: str) -> int:
    return (await http.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code


async def test_rotation_replaces_the_token_on_schedule_and_the_old_one_dies_at_expiry(
    http: httpx.AsyncClient, state: EmulatorState, clock: FakeClock
) -> None:
    started = (await http.post(ROTATION, json={"lifetime": 15, "lead": 5})).json()
    first = started["credentials"]["oauth_access_token"]
    assert started["next_refresh_at"] is not None
    account = state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None
    assert (account.expires_at, account.next_refresh_at) == (clock.now + 15, clock.now + 10)
    assert await status_for(http, first) == 200

    clock.now += 10  # next_refresh_at: a new token, the first still works for 5 s
    second = notion_token(state)
    assert second != first
    assert await status_for(http, first) == 200
    assert await status_for(http, second) == 200

    clock.now += 5  # the first token's expires_at: dead at once
    assert await status_for(http, first) == 401
    assert await status_for(http, second) == 200

    clock.now += 100  # ten more rotations due (12 in all), each applied when it was due
    account = state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.last_refreshed_at == clock.now - 5
    assert await status_for(http, second) == 401
    assert await status_for(http, notion_token(state)) == 200
    stats = (await http.get("/_emulator/source/stats")).json()
    assert stats["source"] == {"200": 5, "401": 2}
    assert stats["late_by"][0] == 0.0  # the first token, presented at its expires_at
    assert stats["rotations"] == {f"{DEMO_PROJECT_ID}/production/{DEMO_NOTION_ACCOUNT_ID}": 12}


async def test_without_lead_only_the_current_token_works(
    http: httpx.AsyncClient, state: EmulatorState, clock: FakeClock
) -> None:
    await http.post(ROTATION, json={"lifetime": 10})
    first = notion_token(state)
    clock.now += 10
    assert await status_for(http, first) == 401
    assert await status_for(http, notion_token(state)) == 200


async def test_stopping_keeps_the_last_token(
    http: httpx.AsyncClient, state: EmulatorState, clock: FakeClock
) -> None:
    await http.post(ROTATION, json={"lifetime": 10, "lead": 2})
    assert (await http.delete(ROTATION)).json() == {"stopped": True}
    last = notion_token(state)
    clock.now += 30
    assert notion_token(state) == last


async def test_accounts_without_a_schedule_are_accepted_with_their_current_value(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    old = notion_token(state)
    assert await status_for(http, old) == 200
    coda = state.get_account(DEMO_PROJECT_ID, DEMO_CODA_ACCOUNT_ID)
    assert coda is not None and coda.credentials
    assert await status_for(http, coda.credentials["api_token"]) == 200
    state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert await status_for(http, old) == 401
    assert (await http.get(ME)).status_code == 401


async def test_bad_schedules_are_refused(http: httpx.AsyncClient) -> None:
    assert (await http.post(ROTATION, json={"lifetime": 10, "lead": 10})).status_code == 400
    assert (await http.post(ROTATION, json={})).status_code == 400
    slack = f"/_emulator/accounts/{DEMO_PROJECT_ID}/{DEMO_SLACK_ACCOUNT_ID}/rotation"
    assert (await http.post(slack, json={"lifetime": 10})).status_code == 400  # no credentials
    missing = f"/_emulator/accounts/{DEMO_PROJECT_ID}/apn_nope/rotation"
    assert (await http.post(missing, json={"lifetime": 10})).status_code == 404


def test_demo_state_has_no_schedules() -> None:
    assert demo_state().rotations.schedules == {}
