"""Pipedream's official Python SDK (``pipedream``, pinned in the dev extra) against the emulator.

The SDK's pydantic models are Pipedream's own statement of what its API answers: every call
here must parse, with no shim between the two. The SDK is synchronous, so each test runs it
in a thread while the emulator serves on the test's event loop. ``max_retries=0`` keeps the
emulator's request counts exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from pdsidecar_emulator import (
    DEMO_ACCOUNTS,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_DEV_ACCOUNT_IDS,
    DEMO_DEV_NOTION_ACCOUNT_ID,
    DEMO_GCAL_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_UNHEALTHY_ACCOUNT_ID,
    DEMO_USER_ALICE,
    DEMO_USER_BOB,
    Emulator,
)
from pdsidecar_emulator.models import APPS
from pipedream import Pipedream
from pipedream.core.api_error import ApiError
from pipedream.errors import TooManyRequestsError, UnauthorizedError
from pipedream.types import Account

pytestmark = pytest.mark.anyio
T = TypeVar("T")


def sdk(emulator: Emulator, environment: str = "production", **options: Any) -> Pipedream:
    return Pipedream(
        client_id=options.pop("client_id", DEMO_CLIENT_ID),
        client_secret=options.pop("client_secret", DEMO_CLIENT_SECRET),
        project_id=options.pop("project_id", DEMO_PROJECT_ID),
        project_environment=environment,  # type: ignore[arg-type]
        base_url=emulator.url,
        max_retries=0,
        timeout=10,
        **options,
    )


async def run(call: Callable[[], T]) -> T:
    """The blocking SDK call in a thread, so the emulator on this loop can answer it."""
    return await asyncio.to_thread(call)


def emulated(emulator: Emulator, account_id: str, environment: str = "production") -> Any:
    account = emulator.state.get_account(DEMO_PROJECT_ID, account_id, environment)
    assert account is not None
    return account


async def test_token(emulator: Emulator) -> None:
    client = sdk(emulator)
    token = await run(
        lambda: client.oauth_tokens.create(
            client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET
        )
    )
    assert token.token_type == "Bearer"
    assert token.expires_in == emulator.state.token_lifetime
    assert emulator.state.token_valid(token.access_token)


async def test_token_with_a_wrong_secret_is_a_parsed_401(emulator: Emulator) -> None:
    client = sdk(emulator)
    with pytest.raises(UnauthorizedError) as raised:
        await run(
            lambda: client.oauth_tokens.create(client_id=DEMO_CLIENT_ID, client_secret="wrong")
        )
    assert raised.value.status_code == 401
    assert raised.value.body.error == "invalid_client"  # UnauthorizedErrorBody parsed


async def test_retrieve_custom_oauth_account_with_credentials(emulator: Emulator) -> None:
    client = sdk(emulator)
    account = await run(
        lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID, include_credentials=True)
    )
    held = emulated(emulator, DEMO_NOTION_ACCOUNT_ID)
    assert account.id == DEMO_NOTION_ACCOUNT_ID
    assert account.external_id == DEMO_USER_ALICE
    assert account.healthy is True and account.dead is False
    assert account.app is not None and account.app.name_slug == "notion"
    assert account.app.auth_type == "oauth"
    assert account.app.img_src.startswith("https://")
    assert account.app.categories and account.app.scope_profiles
    assert account.credentials is not None
    assert account.credentials.oauth_access_token == held.credentials["oauth_access_token"]
    assert account.credentials.oauth_refresh_token == held.credentials["oauth_refresh_token"]
    assert account.expires_at is not None
    assert account.expires_at.timestamp() == pytest.approx(held.expires_at, abs=0.001)


async def test_retrieve_without_include_credentials_has_none(emulator: Emulator) -> None:
    client = sdk(emulator)
    account = await run(lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID))
    assert account.credentials is None
    assert emulator.state.statuses["account"][200] == 1


async def test_retrieve_api_key_account(emulator: Emulator) -> None:
    client = sdk(emulator)
    account = await run(
        lambda: client.accounts.retrieve(DEMO_CODA_ACCOUNT_ID, include_credentials=True)
    )
    assert account.app is not None and account.app.auth_type == "keys"
    assert account.app.scope_profiles == []  # not an OAuth app
    assert account.credentials is not None
    # Key-based apps keep their own field names: extra fields of AccountCredentials.
    extra = account.credentials.model_extra or {}
    assert extra["api_token"] == emulated(emulator, DEMO_CODA_ACCOUNT_ID).credentials["api_token"]


async def test_retrieve_default_oauth_account_has_no_credentials(emulator: Emulator) -> None:
    client = sdk(emulator)
    account = await run(
        lambda: client.accounts.retrieve(DEMO_SLACK_ACCOUNT_ID, include_credentials=True)
    )
    assert account.app is not None and account.app.name_slug == "slack_v2"
    assert account.credentials is None


async def test_dead_and_unhealthy_accounts_parse(emulator: Emulator) -> None:
    client = sdk(emulator)
    dead = await run(
        lambda: client.accounts.retrieve(DEMO_DEAD_ACCOUNT_ID, include_credentials=True)
    )
    sick = await run(
        lambda: client.accounts.retrieve(DEMO_UNHEALTHY_ACCOUNT_ID, include_credentials=True)
    )
    assert dead.dead is True and dead.healthy is False and dead.error
    assert sick.dead is False and sick.healthy is False and sick.error


async def test_both_environments(emulator: Emulator) -> None:
    production, development = sdk(emulator), sdk(emulator, "development")
    dev = await run(
        lambda: development.accounts.retrieve(DEMO_DEV_NOTION_ACCOUNT_ID, include_credentials=True)
    )
    assert dev.id == DEMO_DEV_NOTION_ACCOUNT_ID and dev.credentials is not None
    with pytest.raises(ApiError) as raised:
        await run(lambda: production.accounts.retrieve(DEMO_DEV_NOTION_ACCOUNT_ID))
    assert raised.value.status_code == 404
    listed = await run(lambda: {a.id for a in development.accounts.list()})
    assert listed == DEMO_DEV_ACCOUNT_IDS


async def test_every_demo_account_parses_in_a_list_with_credentials(emulator: Emulator) -> None:
    client = sdk(emulator)
    accounts: list[Account] = await run(
        lambda: list(client.accounts.list(include_credentials=True))
    )
    production = {a for a, *_ in DEMO_ACCOUNTS if a not in DEMO_DEV_ACCOUNT_IDS}
    assert {a.id for a in accounts} == production
    slack = next(a for a in accounts if a.id == DEMO_SLACK_ACCOUNT_ID)
    assert slack.credentials is None
    gcal = next(a for a in accounts if a.id == DEMO_GCAL_ACCOUNT_ID)
    assert gcal.credentials is None  # sent as "credentials": null


async def test_list_pages_with_the_sdk_pager(emulator: Emulator) -> None:
    ids = emulator.state.add_generated_accounts(23, app="google_drive", project_id="proj_pages")
    client = sdk(emulator, project_id="proj_pages")
    emulator.state.reset_stats()
    pager = await run(lambda: client.accounts.list(limit=10, include_credentials=True))
    pages = await run(lambda: [[a.id for a in page.items or []] for page in pager.iter_pages()])
    assert [len(page) for page in pages] == [10, 10, 3]
    assert [a for page in pages for a in page] == ids  # each once, in order
    assert emulator.state.requests["list"] == 3
    assert pager.response.page_info.total_count == 23


async def test_list_filters(emulator: Emulator) -> None:
    client = sdk(emulator)

    async def listed(**filters: Any) -> set[str]:
        return await run(lambda: {a.id for a in client.accounts.list(**filters)})

    notion = APPS["notion"]
    by_slug = await listed(app="notion")
    assert by_slug == {DEMO_NOTION_ACCOUNT_ID, DEMO_DEAD_ACCOUNT_ID, DEMO_UNHEALTHY_ACCOUNT_ID}
    assert await listed(app=notion.id) == by_slug  # "the app slug or ID"
    assert await listed(external_user_id=DEMO_USER_BOB) == {
        DEMO_CODA_ACCOUNT_ID,
        DEMO_DEAD_ACCOUNT_ID,
    }
    assert await listed(app="notion", external_user_id=DEMO_USER_ALICE) == {DEMO_NOTION_ACCOUNT_ID}
    # Pipedream's official Slack client (default OAuth) against the customer's own clients.
    slack = APPS["slack_v2"]
    assert await listed(oauth_app_id=slack.oauth_app_id) == {DEMO_SLACK_ACCOUNT_ID}
    custom = emulated(emulator, DEMO_NOTION_ACCOUNT_ID).oauth_client()
    assert custom is not None and custom != notion.oauth_app_id
    assert await listed(oauth_app_id=custom) == by_slug
    assert await listed(oauth_app_id="oa_nobody") == set()


async def test_not_found(emulator: Emulator) -> None:
    client = sdk(emulator)
    with pytest.raises(ApiError) as raised:
        await run(lambda: client.accounts.retrieve("apn_missing1", include_credentials=True))
    assert raised.value.status_code == 404
    assert raised.value.body == {"error": "record not found"}


async def test_rate_limited_with_retry_after(emulator: Emulator) -> None:
    client = sdk(emulator)
    emulator.state.set_status_fault("account", 429, count=1, retry_after="7")
    with pytest.raises(TooManyRequestsError) as raised:
        await run(lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID))
    assert raised.value.status_code == 429
    assert raised.value.headers is not None and raised.value.headers["retry-after"] == "7"
    assert emulator.state.statuses["account"][429] == 1  # max_retries=0: asked once
    account = await run(lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID))
    assert account.id == DEMO_NOTION_ACCOUNT_ID  # the fault is used up


async def test_revoked_token_is_a_401(emulator: Emulator) -> None:
    client = sdk(emulator)
    await run(lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID))
    assert emulator.state.revoke_tokens() == 1
    with pytest.raises(ApiError) as raised:  # the SDK keeps its token for an hour
        await run(lambda: client.accounts.retrieve(DEMO_NOTION_ACCOUNT_ID))
    assert raised.value.status_code == 401
    assert raised.value.body == {"error": "unauthorized"}
