"""The emulator keeps Pipedream's budget: account reads per project per window, then 429."""

from __future__ import annotations

import httpx
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
    demo_state,
)
from pdsidecar_emulator.state import READ_BUDGET, READ_WINDOW

pytestmark = pytest.mark.anyio


async def test_reads_beyond_the_budget_get_429_with_retry_after() -> None:
    now = [1_000_000.0]
    state = demo_state(clock=lambda: now[0])
    assert (state.read_budget, state.read_window) == (READ_BUDGET, READ_WINDOW) == (2000, 300)
    async with Emulator(state) as emulator, httpx.AsyncClient(base_url=emulator.url) as http:
        budget = await http.post("/_emulator/budget", json={"reads": 3, "window": 60})
        assert budget.json() == {"reads": 3, "window": 60.0}
        token = (
            await http.post(
                "/v1/oauth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": DEMO_CLIENT_ID,
                    "client_secret": DEMO_CLIENT_SECRET,
                },
            )
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}", "x-pd-environment": "production"}
        path = f"/v1/connect/{DEMO_PROJECT_ID}/accounts/{DEMO_NOTION_ACCOUNT_ID}"
        statuses = [(await http.get(path, headers=headers)).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        now[0] += 20
        limited = await http.get(path, headers=headers)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "40"
        other = await http.get("/v1/connect/proj_other/accounts/x", headers=headers)
        assert other.status_code == 404, "the budget is per project"
        now[0] += 41
        assert (await http.get(path, headers=headers)).status_code == 200
        assert state.statuses["account"][429] == 1
