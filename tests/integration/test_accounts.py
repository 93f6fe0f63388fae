"""ListAccounts over real gRPC against the emulator's list endpoint (cursor paging, filters)."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    DEMO_USER_ALICE,
    Emulator,
    EmulatorState,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of

pytestmark = pytest.mark.anyio

Stub = pb_grpc.CredentialsServiceStub


def listing(**fields: Any) -> pb.ListAccountsRequest:
    return pb.ListAccountsRequest(project_id=fields.pop("project_id", DEMO_PROJECT_ID), **fields)


async def every_page(stub: Stub, **fields: Any) -> list[pb.ListAccountsResponse]:
    """Follow next_page_token to the end (bounded, so a token loop fails the test)."""
    pages: list[pb.ListAccountsResponse] = []
    token = ""
    for _ in range(50):
        response = await stub.ListAccounts(listing(page_token=token, **fields))
        pages.append(response)
        token = response.next_page_token
        if not token:
            return pages
    raise AssertionError("ListAccounts never returned an empty next_page_token")


def ids(pages: list[pb.ListAccountsResponse]) -> list[str]:
    return [a.account_id for page in pages for a in page.accounts]


def held(state: EmulatorState, **match: str) -> set[str]:
    """Ids of the demo project's production accounts whose attributes match."""
    return {
        a.id
        for a in state.iter_accounts()
        if a.project_id == DEMO_PROJECT_ID
        and a.environment == "production"
        and all(
            (a.app.name_slug if key == "app" else getattr(a, key)) == value
            for key, value in match.items()
        )
    }


def credential_values(state: EmulatorState) -> set[str]:
    values = {str(v) for a in state.iter_accounts() for v in (a.credentials or {}).values()}
    assert values, "the emulator should hold credentials for this test to mean anything"
    return values


async def test_pages_through_more_accounts_than_a_page_exactly_once(
    stub: Stub, emulator: Emulator, demo_state: EmulatorState
) -> None:
    demo_state.add_generated_accounts(45)
    expected = held(demo_state)
    assert len(expected) > 40

    pages = await every_page(stub, page_size=10)

    seen = ids(pages)
    assert len(seen) == len(set(seen)), "an account was listed twice"
    assert set(seen) == expected
    assert len(pages) == -(-len(expected) // 10)
    assert all(len(page.accounts) == 10 for page in pages[:-1])
    # One upstream list call per page, no more: the sidecar does not re-fetch or prefetch.
    assert emulator.state.requests["list"] == len(pages)


async def test_source_filter_maps_to_the_pipedream_app_slug(
    stub: Stub, demo_state: EmulatorState
) -> None:
    demo_state.add_generated_accounts(23, app="notion")
    demo_state.add_generated_accounts(4, app="slack_v2")

    notion = await every_page(stub, source="notion", page_size=10)
    assert len(notion) == 3  # 3 demo + 23 generated notion accounts, 10 a page
    assert sorted(ids(notion)) == sorted(held(demo_state, app="notion"))
    assert {a.app_slug for page in notion for a in page.accounts} == {"notion"}

    slack = await every_page(stub, source="slack")  # Airweave's name, Pipedream's slack_v2
    assert set(ids(slack)) == held(demo_state, app="slack_v2")
    assert DEMO_SLACK_ACCOUNT_ID in ids(slack)
    assert {a.app_slug for page in slack for a in page.accounts} == {"slack_v2"}


async def test_external_user_filter(stub: Stub, demo_state: EmulatorState) -> None:
    demo_state.add_generated_accounts(12, external_id="user-zed")

    alice = await every_page(stub, external_user_id=DEMO_USER_ALICE)
    assert set(ids(alice)) == held(demo_state, external_id=DEMO_USER_ALICE)
    assert {a.external_id for page in alice for a in page.accounts} == {DEMO_USER_ALICE}

    zed = await every_page(stub, external_user_id="user-zed", page_size=5)
    assert len(ids(zed)) == 12 and len(zed) == 3

    both = await every_page(stub, external_user_id=DEMO_USER_ALICE, source="notion")
    assert ids(both) == [DEMO_NOTION_ACCOUNT_ID]

    nobody = await every_page(stub, external_user_id="user-nobody")
    assert ids(nobody) == [] and len(nobody) == 1


async def test_no_credential_value_in_any_answer(stub: Stub, demo_state: EmulatorState) -> None:
    demo_state.add_generated_accounts(15)
    demo_state.add_generated_accounts(3, app="coda")
    secrets = credential_values(demo_state) | demo_state.secret_values()

    answers = [
        *await every_page(stub, page_size=7),
        *await every_page(stub, source="notion", page_size=100),
        *await every_page(stub, external_user_id=DEMO_USER_ALICE),
    ]

    for answer in answers:
        raw = answer.SerializeToString()
        leaked = [s for s in secrets if s.encode() in raw]
        assert not leaked, f"{len(leaked)} credential values in a ListAccounts answer"
    # The upstream list did carry credentials: their field names (only) came through.
    notion = next(
        a for answer in answers for a in answer.accounts if a.account_id == DEMO_NOTION_ACCOUNT_ID
    )
    account = demo_state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    assert account is not None and account.credentials
    assert list(notion.credential_fields) == sorted(account.credentials)
    slack = next(a for a in answers[0].accounts if a.account_id == DEMO_SLACK_ACCOUNT_ID)
    assert list(slack.credential_fields) == []  # Pipedream's default OAuth: nothing held


def edited(token: str, **changes: str) -> str:
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body.update(changes)
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_tampered_or_foreign_page_tokens_are_invalid_arguments(
    stub: Stub, emulator: Emulator, demo_state: EmulatorState, settings: Settings
) -> None:
    demo_state.add_generated_accounts(10)
    first = await stub.ListAccounts(listing(page_size=5))
    token = first.next_page_token
    assert token
    cursor = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["c"]
    assert cursor not in {a.account_id for a in first.accounts}  # opaque, not an id

    # Another sidecar (same config, its own process key) did not mint this token.
    other = Sidecar(settings, [parse_listen("127.0.0.1:0")])
    await other.start()
    try:
        async with grpc.aio.insecure_channel(other.bound[0]) as channel:
            foreign = await error_of(
                Stub(channel).ListAccounts(listing(page_size=5, page_token=token))
            )
    finally:
        await other.stop(grace=0)

    lists_before = emulator.state.requests["list"]
    bad_tokens = [
        edited(token, c=cursor + "QQ"),  # another cursor, old signature
        edited(token, c="YXBuX2dlbjAwMDAwMDE"),  # a well-formed cursor of another account
        edited(token, s="0" * 32),
        token[:-3],
        "not-a-token",
        "x" * 3000,
    ]
    errors = [
        await error_of(stub.ListAccounts(listing(page_size=5, page_token=bad)))
        for bad in bad_tokens
    ]
    other_filters = await error_of(
        stub.ListAccounts(listing(page_size=5, page_token=token, source="notion"))
    )
    for error in [foreign, *errors, other_filters]:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "INVALID_REQUEST"
        assert [v.field for v in error.violations] == ["page_token"]
    assert "other filters" in other_filters.violations[0].description
    # Refused before Pipedream was asked with a bad cursor.
    assert emulator.state.requests["list"] == lists_before

    second = await stub.ListAccounts(listing(page_size=5, page_token=token))
    assert {a.account_id for a in second.accounts}.isdisjoint(a.account_id for a in first.accounts)


@pytest.mark.parametrize("page_size", [-1, 101, 1000])
async def test_page_size_out_of_bounds_is_refused(
    stub: Stub, emulator: Emulator, page_size: int
) -> None:
    error = await error_of(stub.ListAccounts(listing(page_size=page_size)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == ["page_size"]
    assert "1 to 100" in error.violations[0].description
    assert emulator.state.requests["list"] == 0


async def test_page_size_default_and_bounds(stub: Stub, demo_state: EmulatorState) -> None:
    demo_state.add_generated_accounts(120)
    total = len(held(demo_state))

    default = await stub.ListAccounts(listing())
    assert len(default.accounts) == 20 and default.next_page_token
    one = await stub.ListAccounts(listing(page_size=1))
    assert len(one.accounts) == 1 and one.next_page_token
    largest = await every_page(stub, page_size=100)
    assert [len(page.accounts) for page in largest] == [100, total - 100]


async def test_list_request_is_validated(stub: Stub, emulator: Emulator) -> None:
    request = pb.ListAccountsRequest(
        project_id="demo", source="Slack!", environment=9, connection="no/such"
    )
    error = await error_of(stub.ListAccounts(request))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in error.violations} == {
        "project_id",
        "source",
        "environment",
        "connection",
    }
    missing = await error_of(stub.ListAccounts(pb.ListAccountsRequest()))
    assert [v.field for v in missing.violations] == ["project_id"]
    unknown = await error_of(stub.ListAccounts(listing(connection="nope")))
    assert unknown.reason == "CONNECTION_NOT_FOUND"
    assert emulator.state.requests["list"] == 0


async def test_environment_scopes_the_listing(stub: Stub, demo_state: EmulatorState) -> None:
    development = await every_page(stub, environment=pb.ENVIRONMENT_DEVELOPMENT)
    expected = {
        a.id
        for a in demo_state.iter_accounts()
        if a.project_id == DEMO_PROJECT_ID and a.environment == "development"
    }
    assert expected and set(ids(development)) == expected
    production = await every_page(stub)
    assert set(ids(production)).isdisjoint(expected)
