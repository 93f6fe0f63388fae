"""Hostile input over real gRPC: never INTERNAL, never an oversized status, nothing told
about what the caller may not see."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    Emulator,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.settings import ListenerConfig, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request, validate_request
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio

# What a status may carry of the caller's input, at most (message and metadata).
ECHO_LIMIT = 2048


def _token(body: object) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FOREIGN_PAGE_TOKENS = [
    _token(b"[" * 1500),  # nested deeper than the JSON parser's recursion limit
    _token(b'{"v": 2, "c": {"a": [[[[1]]]]}, "q": 1, "s": 2}'),
    _token({"v": 2, "c": "abc", "q": "\u00e9\u00e9", "s": "\u00fc" * 32}),  # non-ASCII tag
    _token({"v": 2, "c": "abc", "q": "0" * 16, "s": "\u2603"}),
    _token({"v": 2, "c": "abc", "q": ["x"], "s": "0" * 32}),
    _token(b"\xff\xfe\x00garbage"),
    "\u00e9" * 40,  # not base64 at all
    "!!!!",
]


@pytest.mark.parametrize("token", FOREIGN_PAGE_TOKENS, ids=range(len(FOREIGN_PAGE_TOKENS)))
async def test_page_tokens_not_ours_are_invalid_argument(
    stub: pb_grpc.CredentialsServiceStub, token: str
) -> None:
    request = pb.ListAccountsRequest(project_id=DEMO_PROJECT_ID, page_token=token)
    error = await error_of(stub.ListAccounts(request))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert [v.field for v in error.violations] == ["page_token"]


def _status_size(error: grpc.aio.AioRpcError) -> int:
    size = len((error.details() or "").encode())
    for key, value in error.trailing_metadata() or ():
        size += len(key) + len(value if isinstance(value, bytes) else value.encode())
    return size


async def _raw_error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("size", [65, 4000, 60_000])  # under the 64 KiB request cap
async def test_long_ids_are_refused_with_a_short_echo(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator, size: int
) -> None:
    account_id = "apn_" + "a" * (size - 4)
    project_id = "proj_" + "b" * (min(size, 4000) - 5)
    request = get_request(account_id, "notion", project_id=project_id)
    error = await error_of(stub.GetCredentials(request))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert {v.field for v in error.violations} == {"account.account_id", "account.project_id"}
    raw = await _raw_error(stub.GetCredentials(request))
    assert _status_size(raw) < ECHO_LIMIT
    assert emulator.state.requests["account"] == 0


async def test_every_field_wrong_at_its_largest_still_fits_in_a_status(
    stub: pb_grpc.CredentialsServiceStub,
) -> None:
    junk = "Z" * 800  # 69 fields: under the 64 KiB request cap
    request = pb.GetCredentialsRequest(
        account=pb.AccountRef(
            connection=junk, project_id=junk, account_id=junk, external_user_id=junk
        ),
        source=junk,
        required_fields=[junk + str(i) for i in range(32)],
        optional_fields=[junk + str(i) for i in range(33)],
    )
    error = await error_of(stub.GetCredentials(request))
    assert error.reason == "INVALID_REQUEST", "ErrorInfo made it: the status fit"
    raw = await _raw_error(stub.GetCredentials(request))
    assert _status_size(raw) < 8 * 1024


async def test_a_refused_long_source_is_echoed_short(settings: Settings) -> None:
    notion_only = ListenerConfig(parse_listen("127.0.0.1:0"), allow_sources=frozenset({"notion"}))
    async with (
        running(settings, notion_only) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "x" * 4000)
        error = await error_of(stub.GetCredentials(request))
        assert error.reason == "PERMISSION_DENIED"
        assert _status_size(await _raw_error(stub.GetCredentials(request))) < ECHO_LIMIT


async def test_a_source_restricted_listener_reveals_nothing_of_other_apps(
    settings: Settings,
) -> None:
    notion_only = ListenerConfig(parse_listen("127.0.0.1:0"), allow_sources=frozenset({"notion"}))
    async with (
        running(settings, notion_only) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        answer = await stub.ValidateAccount(validate_request(DEMO_SLACK_ACCOUNT_ID, "notion"))
        assert not answer.valid and not answer.HasField("account")
        assert [p.reason for p in answer.problems] == [pb.REASON_ACCOUNT_APP_MISMATCH]
        assert "slack_v2" not in str(answer) and "user-alice" not in str(answer)
        raw = await _raw_error(stub.GetCredentials(get_request(DEMO_SLACK_ACCOUNT_ID, "notion")))
        assert raw.code() == grpc.StatusCode.FAILED_PRECONDITION
        told = (raw.details() or "") + str(raw.trailing_metadata())
        assert "slack_v2" not in told and "user-alice" not in told
        # Its own app's accounts are described as before.
        mine = await stub.ValidateAccount(validate_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        assert mine.valid and mine.account.name


async def test_dead_account_error_text_is_redacted(
    stub: pb_grpc.CredentialsServiceStub, emulator: Emulator
) -> None:
    leaked = "ya29.a0AfH6SMBleakedleakedleaked"
    emulator.state.update_account(
        DEMO_PROJECT_ID,
        DEMO_DEAD_ACCOUNT_ID,
        error=f"refresh failed: access_token={leaked}; authorization: Bearer sekr3tsekr3tsekr3t",
    )
    answer = await stub.ValidateAccount(validate_request(DEMO_DEAD_ACCOUNT_ID, "notion"))
    dead = next(p for p in answer.problems if p.reason == pb.REASON_ACCOUNT_DEAD)
    assert "refresh failed" in dead.message
    assert leaked not in dead.message and "sekr3t" not in dead.message
    raw = await _raw_error(stub.GetCredentials(get_request(DEMO_DEAD_ACCOUNT_ID, "notion")))
    assert leaked not in (raw.details() or "") and "sekr3t" not in (raw.details() or "")


async def test_a_source_restricted_listener_watch_reveals_nothing_of_other_apps(
    settings: Settings,
) -> None:
    notion_only = ListenerConfig(parse_listen("127.0.0.1:0"), allow_sources=frozenset({"notion"}))
    async with (
        running(settings, notion_only) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = pb.WatchCredentialsRequest(
            account=pb.AccountRef(project_id=DEMO_PROJECT_ID, account_id=DEMO_SLACK_ACCOUNT_ID),
            source="notion",
        )
        raw = await _raw_error(stub.WatchCredentials(request).read())
        assert raw.code() == grpc.StatusCode.FAILED_PRECONDITION
        told = (raw.details() or "") + str(raw.trailing_metadata())
        assert "slack_v2" not in told and "user-alice" not in told
