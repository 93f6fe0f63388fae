"""CredentialBroker: connection rules, problems, coalescing, validation and listing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest

from pdsidecar.api.validation import RequestValidator
from pdsidecar.clock import ManualClock
from pdsidecar.credentials.broker import AccountQuery, CredentialBroker
from pdsidecar.errors import (
    AccountProblem,
    InvalidRequest,
    ProviderAuthFailed,
    RateLimited,
    SidecarError,
    UpstreamUnavailable,
)
from pdsidecar.pipedream.models import Account, AccountPage
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, Policy, Settings
from tests.support.account_fakes import (
    ACCESS,
    CLIENT_ID,
    REFRESH,
    SECRET_MARK,
    WALL_START,
    FakeUpstream,
    make_account,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

NEW_ACCESS = SECRET_MARK + "access-new-eeeeeeee"


class World:
    def __init__(self, *, require_user: bool = False) -> None:
        self.clock = ManualClock(wall_start=WALL_START)
        self.upstream = FakeUpstream("default")
        self.other = FakeUpstream("tenant-b")
        connections = {
            name: ConnectionConfig(
                name, "client", Secret("SECRET-client-secret"), require_external_user_id=req
            )
            for name, req in (("default", require_user), ("tenant-b", False))
        }
        self.settings = Settings(connections=connections, policy=Policy())
        self.service = CredentialBroker(
            self.settings,
            {"default": self.upstream, "tenant-b": self.other},
            self.clock,
        )
        self.upstream.put(make_account(expires_at=WALL_START + 3600))
        self.errors: list[SidecarError] = []

    def query(self, **changes: object) -> AccountQuery:
        base: dict[str, object] = {
            "connection": "default",
            "project_id": "proj_1",
            "account_id": "apn_1",
            "environment": "production",
            "external_user_id": None,
            "source": "notion",
        }
        base.update(changes)
        return AccountQuery(**base)  # type: ignore[arg-type]

    async def fails(self, query: AccountQuery, reason: str, **kwargs: object) -> SidecarError:
        with pytest.raises(SidecarError) as caught:
            await self.service.get_credentials(query, deadline=None, **kwargs)  # type: ignore[arg-type]
        assert caught.value.reason == reason
        self.errors.append(caught.value)
        return caught.value


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    for error in w.errors:  # no secret value in any exception we raised
        text = f"{error} {error!r} {error.metadata}"
        assert SECRET_MARK not in text, text


async def test_get_credentials_maps_fields(world: World) -> None:
    fields = ("access_token", "refresh_token", "client_id")
    result = await world.service.get_credentials(world.query(required_fields=fields), deadline=None)
    assert result.credentials == {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "client_id": CLIENT_ID,
    }
    assert result.account.id == "apn_1"
    assert result.expires_at == WALL_START + 3600
    assert SECRET_MARK not in repr(result)


async def test_unknown_connection_lists_configured_ones(world: World) -> None:
    error = await world.fails(world.query(connection="nope"), "CONNECTION_NOT_FOUND")
    assert "default, tenant-b" in str(error)
    assert world.upstream.get_calls == 0


async def test_empty_connection_means_default_filled_in_by_validation(world: World) -> None:
    # Validation is the one place the empty name becomes "default"; the broker takes names.
    assert RequestValidator().connection("account.connection", "") == "default"
    await world.service.get_credentials(world.query(connection="default"), deadline=None)
    assert world.upstream.get_calls == 1
    with pytest.raises(SidecarError) as caught:
        await world.service.get_credentials(world.query(connection=""), deadline=None)
    assert caught.value.reason == "CONNECTION_NOT_FOUND"


async def test_connection_requiring_external_user_id() -> None:
    world = World(require_user=True)
    with pytest.raises(InvalidRequest) as caught:
        await world.service.get_credentials(world.query(), deadline=None)
    assert [v.field for v in caught.value.violations] == ["account.external_user_id"]
    assert world.upstream.get_calls == 0
    ok = await world.service.get_credentials(world.query(external_user_id="user-1"), deadline=None)
    assert ok.credentials["access_token"] == ACCESS


async def test_blocked_source_fails_before_any_io(world: World) -> None:
    error = await world.fails(world.query(source="github"), "SOURCE_NOT_SUPPORTED")
    assert isinstance(error, AccountProblem)
    assert world.upstream.get_calls == 0


async def test_account_not_found(world: World) -> None:
    await world.fails(world.query(account_id="apn_missing"), "ACCOUNT_NOT_FOUND")


@pytest.mark.parametrize(
    ("account_changes", "reason"),
    [
        ({"app": "slack_v2"}, "ACCOUNT_APP_MISMATCH"),
        ({"dead": True, "error": "token revoked"}, "ACCOUNT_DEAD"),
        ({"credentials": None}, "CREDENTIALS_NOT_AVAILABLE"),
        ({"credentials": {"api_key": SECRET_MARK + "zzzzzzzz"}}, "MISSING_REQUIRED_FIELDS"),
        ({"external_id": "someone-else"}, "ACCOUNT_USER_MISMATCH"),
    ],
)
async def test_each_problem_raises_with_metadata(
    world: World, account_changes: dict[str, object], reason: str
) -> None:
    world.upstream.put(make_account(**account_changes))  # type: ignore[arg-type]
    error = await world.fails(world.query(external_user_id="user-1"), reason)
    assert isinstance(error, AccountProblem)
    assert {"account_id", "project_id", "connection", "source"} <= set(error.metadata)
    assert error.metadata["account_id"] == "apn_1"
    if reason == "MISSING_REQUIRED_FIELDS":
        assert error.metadata["missing"] == "access_token"
        assert "api_key" in error.message  # available names, never values
    if reason == "ACCOUNT_USER_MISMATCH":
        assert "someone-else" not in str(error)


async def test_user_mismatch_comes_first(world: World) -> None:
    world.upstream.put(make_account(app="slack_v2", dead=True, external_id="someone-else"))
    await world.fails(world.query(external_user_id="user-1"), "ACCOUNT_USER_MISMATCH")


async def test_user_mismatch_on_cached_account_needs_no_fetch(world: World) -> None:
    await world.service.get_credentials(world.query(), deadline=None)
    assert world.upstream.get_calls == 1
    error = await world.fails(world.query(external_user_id="intruder"), "ACCOUNT_USER_MISMATCH")
    assert world.upstream.get_calls == 1
    assert "user-1" not in str(error) and "user-1" not in str(error.metadata)


async def test_thousand_concurrent_cold_requests_make_one_fetch(world: World) -> None:
    world.upstream.gate = asyncio.Event()
    calls = [
        asyncio.create_task(world.service.get_credentials(world.query(), deadline=None))
        for _ in range(1000)
    ]
    await eventually(lambda: world.service.cache.stats.coalesced == 999)
    world.upstream.gate.set()
    results = await asyncio.gather(*calls)
    assert world.upstream.get_calls == 1
    assert {r.credentials["access_token"] for r in results} == {ACCESS}


async def test_rejected_token_refetches_once_for_a_hundred_callers(world: World) -> None:
    await world.service.get_credentials(world.query(), deadline=None)
    world.clock.advance(10)
    world.upstream.put(
        make_account(credentials={"oauth_access_token": NEW_ACCESS}, expires_at=WALL_START + 3600)
    )
    world.upstream.gate = asyncio.Event()
    calls = [
        asyncio.create_task(
            world.service.get_credentials(
                world.query(), rejected_access_token=ACCESS, deadline=None
            )
        )
        for _ in range(100)
    ]
    await eventually(lambda: world.service.cache.stats.coalesced == 99)
    world.upstream.gate.set()
    results = await asyncio.gather(*calls)
    assert world.upstream.get_calls == 2
    assert {r.credentials["access_token"] for r in results} == {NEW_ACCESS}


async def test_rejected_token_still_current_upstream_is_returned_once(world: World) -> None:
    await world.service.get_credentials(world.query(), deadline=None)
    world.clock.advance(10)
    for _ in range(3):
        result = await world.service.get_credentials(
            world.query(), rejected_access_token=ACCESS, deadline=None
        )
        assert result.credentials["access_token"] == ACCESS  # what Pipedream has now
    assert world.upstream.get_calls == 2


async def test_rejected_token_no_longer_cached_causes_no_fetch(world: World) -> None:
    await world.service.get_credentials(world.query(), deadline=None)
    world.clock.advance(10)
    result = await world.service.get_credentials(
        world.query(), rejected_access_token=SECRET_MARK + "an-older-token", deadline=None
    )
    assert result.credentials["access_token"] == ACCESS
    assert world.upstream.get_calls == 1


@pytest.mark.parametrize(
    "error",
    [RateLimited("slow", retry_after=5), UpstreamUnavailable("down"), ProviderAuthFailed("401")],
    ids=["rate-limited", "unavailable", "provider-auth"],
)
async def test_upstream_errors_propagate_on_cold_cache(world: World, error: SidecarError) -> None:
    world.upstream.fail = error
    await world.fails(world.query(), error.reason)


async def test_stale_credentials_served_when_pipedream_is_down(world: World) -> None:
    await world.service.get_credentials(world.query(), deadline=None)
    world.clock.advance(400)
    world.upstream.fail = UpstreamUnavailable("down")
    result = await world.service.get_credentials(world.query(), deadline=None)
    assert result.credentials["access_token"] == ACCESS
    assert world.service.cache.stats.stale_served == 1


async def test_validate_valid_and_unhealthy(world: World) -> None:
    ok = await world.service.validate_account(world.query(), deadline=None)
    assert ok.valid and ok.problems == () and ok.account is not None
    world.upstream.put(make_account("apn_2", healthy=False))
    warned = await world.service.validate_account(world.query(account_id="apn_2"), deadline=None)
    assert warned.valid
    assert [p.reason for p in warned.problems] == ["ACCOUNT_UNHEALTHY"]


@pytest.mark.parametrize(
    ("account_changes", "reasons"),
    [
        ({"app": "slack_v2"}, ["ACCOUNT_APP_MISMATCH"]),
        ({"dead": True}, ["ACCOUNT_DEAD"]),
        ({"credentials": None}, ["CREDENTIALS_NOT_AVAILABLE"]),
        ({"credentials": {}}, ["CREDENTIALS_NOT_AVAILABLE"]),  # an empty object: none
        (
            {"app": "slack_v2", "credentials": None},
            ["ACCOUNT_APP_MISMATCH", "CREDENTIALS_NOT_AVAILABLE"],
        ),
    ],
)
async def test_validate_reports_problems_as_data(
    world: World, account_changes: dict[str, object], reasons: list[str]
) -> None:
    world.upstream.put(make_account(**account_changes))  # type: ignore[arg-type]
    validation = await world.service.validate_account(world.query(), deadline=None)
    assert not validation.valid
    assert [p.reason for p in validation.problems] == reasons
    assert validation.account is not None


async def test_validate_not_found(world: World) -> None:
    validation = await world.service.validate_account(
        world.query(account_id="apn_gone"), deadline=None
    )
    assert not validation.valid and validation.account is None
    assert [p.reason for p in validation.problems] == ["ACCOUNT_NOT_FOUND"]


async def test_validate_blocked_source_without_io(world: World) -> None:
    validation = await world.service.validate_account(world.query(source="jira"), deadline=None)
    assert [p.reason for p in validation.problems] == ["SOURCE_NOT_SUPPORTED"]
    assert not validation.valid and world.upstream.get_calls == 0


async def test_validate_user_mismatch_hides_the_account(world: World) -> None:
    validation = await world.service.validate_account(
        world.query(external_user_id="intruder"), deadline=None
    )
    assert not validation.valid and validation.account is None
    assert [p.reason for p in validation.problems] == ["ACCOUNT_USER_MISMATCH"]


async def test_validate_raises_upstream_errors(world: World) -> None:
    world.upstream.fail = RateLimited("slow", retry_after=5)
    with pytest.raises(RateLimited):
        await world.service.validate_account(world.query(), deadline=None)
    with pytest.raises(SidecarError, match="not configured"):
        await world.service.validate_account(world.query(connection="x"), deadline=None)


async def test_refresh_token(world: World) -> None:
    status = await world.service.refresh_token("tenant-b", force=True, deadline=None)
    assert status.connection == "tenant-b" and world.other.refresh_calls == [True]
    with pytest.raises(SidecarError) as caught:
        await world.service.refresh_token("nope", force=False, deadline=None)
    assert caught.value.reason == "CONNECTION_NOT_FOUND"


async def _list(world: World, **changes: object) -> tuple[tuple[Account, ...], str]:
    args: dict[str, object] = {
        "source": "slack",
        "external_user_id": None,
        "page_size": 20,
        "page_token": None,
        "deadline": None,
    }
    args.update(changes)
    accounts, token = await world.service.list_accounts(
        "default",
        "proj_1",
        "production",
        **args,  # type: ignore[arg-type]
    )
    return accounts, token


async def test_list_maps_source_strips_values_and_pages(world: World) -> None:
    first = make_account("apn_a", app="slack_v2")
    second = make_account("apn_b", app="slack_v2", credentials=None)
    world.upstream.pages = {
        None: AccountPage((first,), "cursor-1"),
        "cursor-1": AccountPage((second,), None),
    }
    accounts, token = await _list(world)
    assert world.upstream.list_calls[0]["app"] == "slack_v2"
    [listed] = accounts
    assert listed.credential_fields == first.credential_fields
    assert listed.credentials is not None
    assert all(not s.reveal() for s in listed.credentials.values())
    assert token and "cursor-1" not in token
    accounts, token = await _list(world, page_token=token)
    assert world.upstream.list_calls[1]["after"] == "cursor-1"
    assert [a.id for a in accounts] == ["apn_b"]
    assert token == ""


async def test_list_never_returns_another_users_accounts(world: World) -> None:
    world.upstream.pages = {
        None: AccountPage((make_account("apn_a"), make_account("apn_b", external_id="u2")), None)
    }
    accounts, _ = await _list(world, source=None, external_user_id="user-1")
    assert [a.id for a in accounts] == ["apn_a"]
    assert world.upstream.list_calls[0]["app"] is None


async def test_page_token_with_other_filters_is_refused(world: World) -> None:
    world.upstream.pages = {None: AccountPage((make_account("apn_a"),), "cursor-1")}
    _, token = await _list(world)
    with pytest.raises(InvalidRequest) as caught:
        await _list(world, source="notion", page_token=token)
    assert [v.field for v in caught.value.violations] == ["page_token"]
    with pytest.raises(InvalidRequest):
        await _list(world, external_user_id="user-1", page_token=token)


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps({"v": 1, "c": "x"}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps([1, 2]).encode()).decode(),
    ],
)
async def test_malformed_page_token_is_refused(world: World, token: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await _list(world, page_token=token)
    assert [v.field for v in caught.value.violations] == ["page_token"]
    assert world.upstream.list_calls == []


async def test_tampered_page_token_is_refused(world: World) -> None:
    world.upstream.pages = {None: AccountPage((make_account("apn_a"),), "cursor-1")}
    _, token = await _list(world)
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["q"] = "0" * 16
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    with pytest.raises(InvalidRequest):
        await _list(world, page_token=forged)


async def test_list_requires_user_when_connection_does() -> None:
    world = World(require_user=True)
    with pytest.raises(InvalidRequest) as caught:
        await _list(world)
    assert [v.field for v in caught.value.violations] == ["external_user_id"]
