"""The Pipedream API emulator, driven over loopback HTTP with httpx."""

from __future__ import annotations

import random
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from pdsidecar_emulator import (
    DEMO_ACCOUNTS,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_DEV_ACCOUNT_IDS,
    DEMO_DEV_NOTION_ACCOUNT_ID,
    DEMO_DEV_SLACK_ACCOUNT_ID,
    DEMO_GCAL_ACCOUNT_ID,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    Emulator,
    EmulatorState,
    demo_state,
    run_emulator,
)

from tests.support.clocks import FakeClock
from tests.support.logsink import SECRETS
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ACCOUNTS = f"/v1/connect/{DEMO_PROJECT_ID}/accounts"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    return demo_state(clock=clock, seed=7)


@pytest.fixture
async def emu(state: EmulatorState) -> AsyncIterator[Emulator]:
    async with Emulator(state) as emulator:
        yield emulator
    SECRETS.update(state.secret_values())  # the session fails if any of them reached a log


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.url, timeout=10) as client:
        yield client


TOKEN_BODY = {
    "grant_type": "client_credentials",
    "client_id": DEMO_CLIENT_ID,
    "client_secret": DEMO_CLIENT_SECRET,
}


async def get_token(http: httpx.AsyncClient) -> str:
    response = await http.post("/v1/oauth/token", json=TOKEN_BODY)
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def auth(token: str, env: str | None = "production") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if env is not None:
        headers["x-pd-environment"] = env
    return headers


async def get_account(
    http: httpx.AsyncClient, token: str, account_id: str, creds: bool = True, **kw: Any
) -> httpx.Response:
    params = {"include_credentials": "true" if creds else "false"}
    return await http.get(f"{ACCOUNTS}/{account_id}", params=params, headers=auth(token, **kw))


async def test_token_accepts_json_and_form(http: httpx.AsyncClient, clock: FakeClock) -> None:
    by_json = await http.post("/v1/oauth/token", json={**TOKEN_BODY, "scope": "*"})
    by_form = await http.post("/v1/oauth/token", data=TOKEN_BODY)
    assert by_json.status_code == by_form.status_code == 200
    a, b = by_json.json(), by_form.json()
    assert a["access_token"] != b["access_token"]
    assert a["token_type"] == "Bearer" and a["expires_in"] == 3600
    assert a["created_at"] == int(clock.now)
    assert not a["access_token"].startswith(("eyJ", "pd_"))


async def test_token_rejects_bad_requests(http: httpx.AsyncClient) -> None:
    wrong = await http.post("/v1/oauth/token", json={**TOKEN_BODY, "client_secret": "nope"})
    unknown = await http.post("/v1/oauth/token", data={**TOKEN_BODY, "client_id": "who"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client"})
    assert unknown.status_code == 401
    no_grant = {k: v for k, v in TOKEN_BODY.items() if k != "grant_type"}
    assert (await http.post("/v1/oauth/token", json=no_grant)).status_code == 400
    password = {**TOKEN_BODY, "grant_type": "password"}
    assert (await http.post("/v1/oauth/token", data=password)).status_code == 400
    bad_json = await http.post(
        "/v1/oauth/token", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400


async def test_account_shapes(http: httpx.AsyncClient, clock: FakeClock) -> None:
    token = await get_token(http)
    notion = (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).json()
    assert notion["app"]["name_slug"] == "notion" and notion["app"]["auth_type"] == "oauth"
    assert notion["healthy"] is True and notion["dead"] is False and notion["error"] is None
    assert set(notion["credentials"]) == {
        "oauth_access_token",
        "oauth_refresh_token",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_uid",
    }
    assert notion["credentials"]["oauth_access_token"].startswith("ntn_demo_")
    assert notion["external_id"] == "user-alice"
    for name in ("created_at", "updated_at", "expires_at", "last_refreshed_at"):
        assert ISO.match(notion[name]), name
    hour_ahead = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock.now + 3600))
    assert notion["expires_at"].startswith(hour_ahead)

    without = (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID, creds=False)).json()
    assert "credentials" not in without and without["id"] == DEMO_NOTION_ACCOUNT_ID
    slack = (await get_account(http, token, DEMO_SLACK_ACCOUNT_ID)).json()
    assert slack["app"]["name_slug"] == "slack_v2" and "credentials" not in slack
    coda = (await get_account(http, token, DEMO_CODA_ACCOUNT_ID)).json()
    assert coda["app"]["auth_type"] == "keys" and set(coda["credentials"]) == {"api_token"}
    assert coda["expires_at"] is None
    dead = (await get_account(http, token, DEMO_DEAD_ACCOUNT_ID)).json()
    assert (dead["dead"], dead["healthy"]) == (True, False) and dead["error"]
    sick = (await get_account(http, token, DEMO_UNHEALTHY_ACCOUNT_ID)).json()
    assert (sick["dead"], sick["healthy"]) == (False, False) and sick["error"]
    assert sick["credentials"]["oauth_access_token"]
    gdrive = (await get_account(http, token, DEMO_GDRIVE_ACCOUNT_ID)).json()
    assert gdrive["app"]["name_slug"] == "google_drive" and "credentials" in gdrive


async def test_account_errors_and_environments(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    missing = await get_account(http, token, "apn_nothere")
    assert (missing.status_code, missing.json()) == (404, {"error": "record not found"})
    other_project = await http.get(
        f"/v1/connect/proj_other/accounts/{DEMO_NOTION_ACCOUNT_ID}", headers=auth(token)
    )
    assert other_project.status_code == 404
    assert (await get_account(http, token, DEMO_DEV_NOTION_ACCOUNT_ID)).status_code == 404
    dev = await get_account(http, token, DEMO_DEV_NOTION_ACCOUNT_ID, env="development")
    assert dev.status_code == 200
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID, env=None)).status_code == 400
    assert (
        await get_account(http, token, DEMO_NOTION_ACCOUNT_ID, env="staging")
    ).status_code == 400
    assert (await http.get(f"{ACCOUNTS}/{DEMO_NOTION_ACCOUNT_ID}")).status_code == 401
    assert (await get_account(http, "emu_at_forged", DEMO_NOTION_ACCOUNT_ID)).status_code == 401


async def test_default_oauth_accounts_as_pipedream_documents_them(
    http: httpx.AsyncClient,
) -> None:
    """Pipedream's own OAuth client: no credentials in production (the key absent, or null,
    which its API reference allows), credentials in development (its docs: only there)."""
    token = await get_token(http)
    slack = (await get_account(http, token, DEMO_SLACK_ACCOUNT_ID)).json()
    assert "credentials" not in slack
    gcal = (await get_account(http, token, DEMO_GCAL_ACCOUNT_ID)).json()
    assert "credentials" in gcal and gcal["credentials"] is None
    dev = await get_account(http, token, DEMO_DEV_SLACK_ACCOUNT_ID, env="development")
    credentials = dev.json()["credentials"]
    assert credentials["oauth_access_token"].startswith("slack_v2_demo_")
    assert "oauth_client_secret" not in credentials  # Pipedream's client is not the customer's


async def test_tokens_expire_by_the_clock_and_can_be_revoked(
    http: httpx.AsyncClient, state: EmulatorState, clock: FakeClock
) -> None:
    assert (await http.post("/_emulator/tokens/lifetime", json={"expires_in": 60})).is_success
    response = await http.post("/v1/oauth/token", json=TOKEN_BODY)
    assert response.json()["expires_in"] == 60
    token = response.json()["access_token"]
    clock.now += 59
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 200
    clock.now += 2
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 401

    token = await get_token(http)
    assert (await http.post("/_emulator/tokens/revoke")).json() == {"revoked": 2}
    assert token in state.secret_values() and token not in state.tokens
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 401
    token = await get_token(http)
    assert state.revoke_tokens() == 1
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 401


async def list_all(
    http: httpx.AsyncClient, token: str, project: str, **params: Any
) -> tuple[list[str], int]:
    """Follow end_cursor; returns every id seen and the number of requests made."""
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        query = {**params, **({"after": cursor} if cursor else {})}
        response = await http.get(
            f"/v1/connect/{project}/accounts", params=query, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        body, pages = response.json(), pages + 1
        assert body["page_info"]["count"] == len(body["data"])
        seen += [a["id"] for a in body["data"]]
        cursor = body["page_info"]["end_cursor"]
        if cursor is None:
            return seen, pages


async def test_paging_visits_every_account_once(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    ids = state.add_generated_accounts(45, project_id="proj_paging")
    state.add_generated_accounts(5, app="coda", project_id="proj_paging")  # filtered out below
    token = await get_token(http)
    seen, pages = await list_all(http, token, "proj_paging", app="notion", limit=7)
    assert seen == sorted(ids) and pages == 7  # 6 full pages + 3, each id once

    # Backwards with `before` and start_cursor: the same accounts in the same pages.
    last = await http.get(
        "/v1/connect/proj_paging/accounts",
        params={"app": "notion", "limit": 7, "after": _cursor_of(state, ids[-4])},
        headers=auth(token),
    )
    body = last.json()
    assert [a["id"] for a in body["data"]] == ids[-3:] and body["page_info"]["end_cursor"] is None
    assert body["page_info"]["total_count"] == 45
    back: list[str] = []
    cursor = body["page_info"]["start_cursor"]
    while cursor is not None:
        page = (
            await http.get(
                "/v1/connect/proj_paging/accounts",
                params={"app": "notion", "limit": 7, "before": cursor},
                headers=auth(token),
            )
        ).json()
        back = [a["id"] for a in page["data"]] + back
        cursor = page["page_info"]["start_cursor"]
    assert back == sorted(ids)[:-3]


def _cursor_of(state: EmulatorState, account_id: str) -> str:
    page, _ = state.list_accounts("proj_paging", app="notion", limit=100)
    index = [a.id for a in page].index(account_id)
    _, info = state.list_accounts("proj_paging", app="notion", limit=index + 1)
    cursor: str = info["end_cursor"]
    return cursor


async def test_list_filters_limits_and_errors(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    token = await get_token(http)
    notion, _ = await list_all(http, token, DEMO_PROJECT_ID, app="notion")
    assert set(notion) == {DEMO_NOTION_ACCOUNT_ID, DEMO_DEAD_ACCOUNT_ID, DEMO_UNHEALTHY_ACCOUNT_ID}
    alice, _ = await list_all(http, token, DEMO_PROJECT_ID, external_user_id="user-alice")
    assert set(alice) == {DEMO_NOTION_ACCOUNT_ID, DEMO_SLACK_ACCOUNT_ID, DEMO_GDRIVE_ACCOUNT_ID}
    both, _ = await list_all(
        http, token, DEMO_PROJECT_ID, app="notion", external_user_id="user-alice"
    )
    assert both == [DEMO_NOTION_ACCOUNT_ID]
    nobody, _ = await list_all(http, token, "proj_unknown")
    assert nobody == []

    listed = await http.get(ACCOUNTS, params={"include_credentials": "true"}, headers=auth(token))
    with_creds = {a["id"] for a in listed.json()["data"] if "credentials" in a}
    assert DEMO_NOTION_ACCOUNT_ID in with_creds and DEMO_SLACK_ACCOUNT_ID not in with_creds
    listed = await http.get(ACCOUNTS, headers=auth(token))
    assert all("credentials" not in a for a in listed.json()["data"])
    production = [a for a, *_ in DEMO_ACCOUNTS if a not in DEMO_DEV_ACCOUNT_IDS]
    assert listed.json()["page_info"]["count"] == len(production)  # default limit 20

    state.add_generated_accounts(150, project_id="proj_big")
    big = await http.get(
        "/v1/connect/proj_big/accounts", params={"limit": 500}, headers=auth(token)
    )
    assert big.json()["page_info"] == {
        **big.json()["page_info"],
        "count": 100,
        "total_count": 150,
    }
    for bad in ({"limit": 0}, {"limit": "x"}, {"after": "!!"}, {"before": "bm90LWFuLWlk"}):
        assert (await http.get(ACCOUNTS, params=bad, headers=auth(token))).status_code == 400
    assert (await http.get(ACCOUNTS, headers=auth(token, env=None))).status_code == 400
    assert (await http.get(ACCOUNTS, headers=auth("forged"))).status_code == 401


async def test_status_fault_for_the_next_k_requests(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    token = await get_token(http)
    state.set_status_fault("account", 429, count=3, retry_after="7")
    for _ in range(3):
        limited = await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 200
    assert (await http.get(ACCOUNTS, headers=auth(token))).status_code == 200  # other route
    assert state.stats()["statuses"]["account"] == {"429": 3, "200": 1}


async def test_probabilistic_fault_follows_the_seeded_rng(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    fault = {"route": "account", "status": 503, "probability": 0.3, "seed": 42}
    assert (await http.post("/_emulator/faults", json=fault)).is_success
    observed = [
        (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 503
        for _ in range(200)
    ]
    rng = random.Random(42)
    assert observed == [rng.random() < 0.3 for _ in range(200)]
    assert 40 <= sum(observed) <= 80
    assert (await http.delete("/_emulator/faults", params={"route": "account"})).is_success
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 200
    stats = (await http.get("/_emulator/stats")).json()
    assert stats["statuses"]["account"]["503"] == sum(observed)
    assert (await http.post("/_emulator/faults", json={"route": "nope"})).status_code == 400


async def test_latency_is_applied_concurrently_and_gauged(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    token = await get_token(http)
    # Far longer than 50 requests take to arrive on the busiest machine: the test ends
    # the latency by clearing the fault once all 50 are waiting in it.
    latency = 120.0
    assert (
        await http.post("/_emulator/faults", json={"route": "account", "latency": latency})
    ).is_success
    codes: list[int] = []

    async def one() -> None:
        url = f"{ACCOUNTS}/{DEMO_NOTION_ACCOUNT_ID}"
        codes.append((await http.get(url, headers=auth(token), timeout=latency)).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)
        # All 50 in flight at once: the latency is applied concurrently, not serialized.
        await eventually(lambda: state.in_flight == 50, timeout=latency / 2)
        assert not codes  # the latency was applied: none answered yet
        assert (await http.delete("/_emulator/faults")).is_success
    assert codes == [200] * 50
    assert state.max_in_flight == 50 and state.in_flight == 0

    state.set_latency(0.3, route="account")
    started = time.perf_counter()
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 200
    assert time.perf_counter() - started >= 0.3
    state.clear_faults()
    state.set_stall(0.3, probability=1.0, route="account")
    started = time.perf_counter()
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 200
    assert time.perf_counter() - started >= 0.3
    state.set_stall(0.0, probability=0.0, route="account")


async def test_counters_and_reset(http: httpx.AsyncClient) -> None:
    token = await get_token(http)
    await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)
    await get_account(http, token, "apn_missing")
    await http.get(ACCOUNTS, headers=auth(token))
    await http.post("/v1/oauth/token", json={**TOKEN_BODY, "client_secret": "x"})
    stats = (await http.get("/_emulator/stats")).json()
    assert stats["requests"] == {"token": 2, "account": 2, "list": 1}
    assert stats["statuses"]["account"] == {"200": 1, "404": 1}
    assert stats["statuses"]["token"] == {"200": 1, "401": 1}
    assert stats["tokens_issued"] == 1 and stats["max_in_flight"] == 1
    reset = (await http.post("/_emulator/stats/reset")).json()
    assert reset["requests"] == {"token": 0, "account": 0, "list": 0}
    assert reset["tokens_issued"] == 0 and reset["max_in_flight"] == 0


async def test_ten_thousand_generated_accounts() -> None:
    # Its own emulator: 50,000 generated secrets would slow the suite's log scan for nothing.
    state = demo_state()
    started = time.perf_counter()
    ids = state.add_generated_accounts(10_000, app="notion", project_id="proj_load")
    assert time.perf_counter() - started < 2.0
    assert len(set(ids)) == 10_000 and all(re.fullmatch(r"apn_[A-Za-z0-9]+", i) for i in ids)
    accounts = [state.get_account("proj_load", i) for i in ids]
    tokens = {a.credentials["oauth_access_token"] for a in accounts if a and a.credentials}
    assert len(tokens) == 10_000
    account = accounts[-1]
    assert account is not None and account.credentials is not None
    async with Emulator(state) as emu, httpx.AsyncClient(base_url=emu.url) as http:
        token = await get_token(http)
        response = await http.get(
            f"/v1/connect/proj_load/accounts/{ids[-1]}",
            params={"include_credentials": "true"},
            headers=auth(token),
        )
        assert response.json()["credentials"] == account.credentials
        generated = await http.post(
            "/_emulator/accounts/generate", json={"n": 3, "app": "coda", "project_id": "proj_load"}
        )
        assert len(generated.json()["ids"]) == 3
    SECRETS.update({token, *map(str, account.credentials.values())})


async def test_accounts_and_clients_change_at_run_time(
    http: httpx.AsyncClient, state: EmulatorState
) -> None:
    token = await get_token(http)
    before = (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).json()["credentials"]
    rotated = state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    after = (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).json()["credentials"]
    assert rotated == after["oauth_access_token"] != before["oauth_access_token"]
    assert before["oauth_access_token"] in state.secret_values()  # kept for the log scan
    assert after["oauth_refresh_token"] == before["oauth_refresh_token"]
    control = f"/_emulator/accounts/{DEMO_PROJECT_ID}/{DEMO_NOTION_ACCOUNT_ID}"
    again = (await http.post(control + "/rotate")).json()["access_token"]
    assert again != rotated
    assert (
        await http.post(f"/_emulator/accounts/{DEMO_PROJECT_ID}/apn_x/rotate")
    ).status_code == 404

    patched = await http.patch(control, json={"healthy": False, "error": "refresh failed"})
    assert patched.json()["healthy"] is False
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).json()[
        "error"
    ] == "refresh failed"
    assert (await http.patch(control, json={"id": "apn_other"})).status_code == 400
    assert (await http.delete(control)).json() == {"removed": True}
    assert (await get_account(http, token, DEMO_NOTION_ACCOUNT_ID)).status_code == 404

    created = await http.post(
        "/_emulator/accounts",
        json={"id": "apn_new1", "app": "slack_v2", "external_id": "user-dan", "credentials": None},
    )
    assert created.status_code == 200
    new = (await get_account(http, token, "apn_new1")).json()
    assert new["external_id"] == "user-dan" and "credentials" not in new

    client = {"client_id": "second-client", "client_secret": "second-secret-demo"}
    assert (await http.post("/_emulator/clients", json=client)).is_success
    second = await http.post("/v1/oauth/token", json={"grant_type": "client_credentials", **client})
    second_token = second.json()["access_token"]
    assert (await get_account(http, second_token, "apn_new1")).status_code == 200
    assert (await http.delete("/_emulator/clients/second-client")).json() == {"removed": True}
    assert (await get_account(http, second_token, "apn_new1")).status_code == 401
    assert (await get_account(http, token, "apn_new1")).status_code == 200


async def test_emulator_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    emulator = Emulator(demo_state())
    with pytest.raises(RuntimeError):
        _ = emulator.url
    await emulator.start()
    try:
        url = emulator.url
        assert emulator.port > 0 and url == f"http://127.0.0.1:{emulator.port}"
        with pytest.raises(RuntimeError):
            await emulator.start()
    finally:
        await emulator.stop()
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url + "/_emulator/stats")

    out = ""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_emulator, "127.0.0.1", 0)
            while DEMO_DEV_NOTION_ACCOUNT_ID not in out:  # the last line printed
                await anyio.sleep(0.02)
                out += capsys.readouterr().out
            tg.cancel_scope.cancel()
    assert "http://127.0.0.1:" in out and DEMO_NOTION_ACCOUNT_ID in out
    assert DEMO_CLIENT_SECRET not in out
