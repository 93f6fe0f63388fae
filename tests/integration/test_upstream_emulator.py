"""The real PipedreamConnection (factories, HTTP client, tokens) against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
    EmulatorState,
)

from pdsidecar.clock import SystemClock
from pdsidecar.errors import ProviderAuthFailed
from pdsidecar.pipedream.connection import PipedreamConnection, build_connections, make_http_client
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy, Settings
from tests.support.logsink import SECRETS
from tests.support.sidecars import demo_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def connections(
    emulator: Emulator, demo_state: EmulatorState, policy: Policy
) -> AsyncIterator[dict[str, PipedreamConnection]]:
    wrong = ConnectionConfig("wrong", DEMO_CLIENT_ID, Secret("SECRET-not-the-demo-secret"))
    settings: Settings = demo_settings(emulator.url, policy, connections={"wrong": wrong})
    async with make_http_client(settings) as http:
        yield build_connections(settings, http, SystemClock())
    SECRETS.update(demo_state.secret_values())


def lookup(upstream: PipedreamConnection) -> asyncio.Future[object]:
    return asyncio.ensure_future(
        upstream.get_account(DEMO_PROJECT_ID, "production", DEMO_NOTION_ACCOUNT_ID, deadline=None)
    )


async def test_a_thousand_lookups_after_a_cold_start_request_one_token(
    connections: dict[str, PipedreamConnection], demo_state: EmulatorState
) -> None:
    accounts = await asyncio.gather(*(lookup(connections["default"]) for _ in range(1000)))
    assert {getattr(a, "id", None) for a in accounts} == {DEMO_NOTION_ACCOUNT_ID}
    assert demo_state.requests["token"] == 1
    assert demo_state.requests["account"] == 1000


async def test_revoked_tokens_cause_one_refresh_then_success(
    connections: dict[str, PipedreamConnection], demo_state: EmulatorState
) -> None:
    upstream = connections["default"]
    await lookup(upstream)
    demo_state.revoke_tokens()
    account = await lookup(upstream)
    assert getattr(account, "id", None) == DEMO_NOTION_ACCOUNT_ID
    assert demo_state.tokens_issued == 2
    assert demo_state.statuses["account"][401] == 1
    assert demo_state.statuses["account"][200] == 2


async def test_upstream_concurrency_is_capped_at_the_emulator(
    emulator: Emulator, demo_state: EmulatorState
) -> None:
    settings = demo_settings(emulator.url, Policy(upstream_concurrency=4))
    demo_state.set_latency(0.05, route="account")
    async with make_http_client(settings) as http:
        upstream = build_connections(settings, http, SystemClock())["default"]
        await asyncio.gather(*(lookup(upstream) for _ in range(40)))
    assert demo_state.requests["account"] == 40
    assert demo_state.max_in_flight == 4


async def test_injected_5xx_is_retried(
    connections: dict[str, PipedreamConnection], demo_state: EmulatorState
) -> None:
    demo_state.set_status_fault("account", 503, count=2)
    assert getattr(await lookup(connections["default"]), "id", None) == DEMO_NOTION_ACCOUNT_ID
    assert demo_state.statuses["account"][503] == 2


async def test_a_wrong_client_secret_is_provider_auth_failed(
    connections: dict[str, PipedreamConnection], demo_state: EmulatorState
) -> None:
    with pytest.raises(ProviderAuthFailed) as info:
        await lookup(connections["wrong"])
    assert info.value.metadata["connection"] == "wrong"
    assert "SECRET" not in repr(info.value) + str(info.value.metadata)
    assert demo_state.statuses["token"][401] == 1
