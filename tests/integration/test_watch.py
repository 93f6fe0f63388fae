"""WatchCredentials against the emulator: first value, pushes, errors, limits, shutdown.

Rotation is the emulator's schedule (a token lives ``LIFETIME`` s and is
replaced ``LEAD`` s before it expires); upstream reads are counted at the
emulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_DEAD_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    Emulator,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.credentials.watch import REREAD
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenerConfig, Policy, Settings
from pdsidecar_client import CredentialsError
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request, ref
from tests.support.sidecars import API_TOKEN, TEST_POLICY, demo_settings, running
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

LIFETIME, LEAD = 3.0, 1.0  # a new token every 2 s; the old one dies 1 s later


@pytest.fixture
def policy() -> Policy:
    return Policy(backoff_initial=0.01, backoff_max=0.05, watch_jitter=0.2, max_watchers=50)


def watch_request(account_id: str, source: str, **fields: Any) -> pb.WatchCredentialsRequest:
    account = {k: fields.pop(k) for k in ("external_user_id", "connection") if k in fields}
    return pb.WatchCredentialsRequest(account=ref(account_id, **account), source=source, **fields)


NOTION = watch_request(DEMO_NOTION_ACCOUNT_ID, "notion")


def token_of(message: Any) -> str:
    token: str = message.credentials["access_token"]
    return token


def current_token(emulator: Emulator, account_id: str = DEMO_NOTION_ACCOUNT_ID) -> str:
    account = emulator.state.get_account(DEMO_PROJECT_ID, account_id)
    assert account is not None and account.credentials
    token: str = account.credentials["oauth_access_token"]
    return token


async def error_after(call: Any, messages: int = 0) -> CredentialsError:
    """Reads ``messages`` messages, then the error that ends the stream."""
    for _ in range(messages + 1):
        try:
            message = await call.read()
        except grpc.RpcError as error:
            return CredentialsError.from_rpc_error(error)
        if message is grpc.aio.EOF:
            raise AssertionError("the stream ended without an error")
    raise AssertionError(f"more than {messages} messages before the error")


@pytest.fixture
def rotating(emulator: Emulator) -> Emulator:
    account = emulator.state.get_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    emulator.state.rotations.start(account, LIFETIME, LEAD)
    return emulator


async def test_first_message_is_what_get_credentials_answers(
    stub: pb_grpc.CredentialsServiceStub,
) -> None:
    got = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
    call = stub.WatchCredentials(NOTION)
    first = await call.read()
    call.cancel()
    assert dict(first.credentials) == dict(got.credentials)
    assert first.account == got.account
    assert first.expires_at == got.expires_at


async def test_rotations_are_pushed_before_the_old_token_dies(
    rotating: Emulator, stub: pb_grpc.CredentialsServiceStub
) -> None:
    call = stub.WatchCredentials(NOTION)
    seen = [token_of(await call.read())]
    for _ in range(3):
        message = await asyncio.wait_for(call.read(), LIFETIME * 2)
        # Pushed while the token it replaces still works: the new one is the current one.
        assert token_of(message) == current_token(rotating)
        seen.append(token_of(message))
    call.cancel()
    assert len(set(seen)) == 4


async def test_watchers_of_one_account_share_one_read_per_rotation(
    rotating: Emulator, stub: pb_grpc.CredentialsServiceStub, sidecar: Sidecar
) -> None:
    calls = [stub.WatchCredentials(NOTION) for _ in range(20)]
    firsts = {token_of(await call.read()) for call in calls}
    assert len(firsts) == 1
    rotating.state.reset_stats()
    for _ in range(2):
        tokens = {token_of(await asyncio.wait_for(call.read(), LIFETIME * 2)) for call in calls}
        assert tokens == {current_token(rotating)}
    for call in calls:
        call.cancel()
    # Two rotations, twenty watchers: two upstream reads (none coalesced away: no other callers).
    assert rotating.state.requests["account"] == 2
    assert sidecar.watchers.feeds <= 1


async def test_a_rejected_token_refetch_reaches_every_watcher_at_once(
    emulator: Emulator, stub: pb_grpc.CredentialsServiceStub
) -> None:
    calls = [stub.WatchCredentials(NOTION) for _ in range(5)]
    old = {token_of(await call.read()) for call in calls}.pop()
    new = emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
    answer = await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
    )
    assert answer.credentials["access_token"] == new
    pushed = [token_of(await asyncio.wait_for(call.read(), 2)) for call in calls]
    assert pushed == [new] * 5
    for call in calls:
        call.cancel()


async def test_account_marked_dead_ends_the_stream_with_get_credentials_status(
    emulator: Emulator, stub: pb_grpc.CredentialsServiceStub
) -> None:
    call = stub.WatchCredentials(NOTION)
    old = token_of(await call.read())
    emulator.state.update_account(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, dead=True, healthy=False)
    await stub.GetCredentials(
        get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
    ).code()
    error = await error_after(call)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_DEAD")


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (watch_request(DEMO_DEAD_ACCOUNT_ID, "notion"), "FAILED_PRECONDITION", "ACCOUNT_DEAD"),
        (
            watch_request(DEMO_SLACK_ACCOUNT_ID, "slack"),
            "FAILED_PRECONDITION",
            "CREDENTIALS_NOT_AVAILABLE",
        ),
        (watch_request("apn_noSuchAccount1", "notion"), "NOT_FOUND", "ACCOUNT_NOT_FOUND"),
        (
            watch_request(DEMO_NOTION_ACCOUNT_ID, "notion", external_user_id="someone-else"),
            "PERMISSION_DENIED",
            "ACCOUNT_USER_MISMATCH",
        ),
        (watch_request("nope", "notion"), "INVALID_ARGUMENT", "INVALID_REQUEST"),
    ],
)
async def test_problems_end_the_stream_as_get_credentials_fails(
    stub: pb_grpc.CredentialsServiceStub,
    sidecar: Sidecar,
    request_: pb.WatchCredentialsRequest,
    code: str,
    reason: str,
) -> None:
    error = await error_after(stub.WatchCredentials(request_))
    assert (error.code.name, error.reason) == (code, reason)
    get = pb.GetCredentialsRequest(account=request_.account, source=request_.source)
    try:
        await stub.GetCredentials(get)
    except grpc.RpcError as failure:
        same = CredentialsError.from_rpc_error(failure)
        assert (same.code, same.reason, same.message) == (error.code, error.reason, error.message)
    else:
        raise AssertionError("GetCredentials succeeded")
    await eventually(lambda: len(sidecar.watchers) == 0)


async def test_undecodable_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    method = channel.unary_stream("/pdsidecar.v1.CredentialsService/WatchCredentials")
    error = await error_after(method(b"\xff\xff"))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")


async def test_upstream_outage_keeps_the_stream_and_the_next_value_arrives(
    rotating: Emulator, stub: pb_grpc.CredentialsServiceStub
) -> None:
    call = stub.WatchCredentials(NOTION)
    first = token_of(await call.read())
    rotating.state.set_status_fault("account", 503)
    rotating.state.reset_stats()
    await eventually(lambda: rotating.state.statuses["account"][503] >= 2, timeout=LIFETIME * 3)
    rotating.state.clear_faults()
    # The stream stayed open through the failed re-reads and carries the next value.
    message = await asyncio.wait_for(call.read(), LIFETIME * 4)
    assert token_of(message) not in (first, None)
    call.cancel()


async def test_watchers_past_the_maximum_get_resource_exhausted(
    stub: pb_grpc.CredentialsServiceStub, sidecar: Sidecar, policy: Policy
) -> None:
    calls = [stub.WatchCredentials(NOTION) for _ in range(policy.max_watchers)]
    for call in calls:
        await call.read()
    error = await error_after(stub.WatchCredentials(NOTION))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS")
    assert error.retry_after is not None
    calls.pop().cancel()
    await eventually(lambda: len(sidecar.watchers) == policy.max_watchers - 1)
    again = stub.WatchCredentials(NOTION)
    await again.read()
    for call in [*calls, again]:
        call.cancel()
    await eventually(lambda: len(sidecar.watchers) == 0)


async def test_stop_ends_streams_with_unavailable(settings: Settings) -> None:
    sidecar = Sidecar(settings, [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        call = pb_grpc.CredentialsServiceStub(channel).WatchCredentials(NOTION)
        await call.read()
        stopping = asyncio.ensure_future(sidecar.stop(grace=30))
        error = await asyncio.wait_for(error_after(call), 5)
        await asyncio.wait_for(stopping, 5)  # not held for the 30 s grace
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "SIDECAR_STOPPING")


@pytest.fixture
async def guarded(emulator: Emulator) -> AsyncIterator[pb_grpc.CredentialsServiceStub]:
    listener = ListenerConfig(parse_listen("127.0.0.1:0"), allow_sources=frozenset({"notion"}))
    settings = demo_settings(emulator.url, TEST_POLICY, api_token=Secret(API_TOKEN))
    async with (
        running(settings, listener) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        yield pb_grpc.CredentialsServiceStub(channel)


async def test_streams_are_guarded_like_unary_calls(
    guarded: pb_grpc.CredentialsServiceStub,
) -> None:
    bearer = (("authorization", f"Bearer {API_TOKEN}"),)
    error = await error_after(guarded.WatchCredentials(NOTION))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    coda = watch_request("apn_demoCoda1", "coda", required_fields=["api_key"])
    error = await error_after(guarded.WatchCredentials(coda, metadata=bearer))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    call = guarded.WatchCredentials(NOTION, metadata=bearer)
    assert token_of(await call.read())
    call.cancel()


async def test_streams_are_counted_by_method_and_code(
    stub: pb_grpc.CredentialsServiceStub, sidecar: Sidecar
) -> None:
    await error_after(stub.WatchCredentials(watch_request(DEMO_DEAD_ACCOUNT_ID, "notion")))
    method = "/pdsidecar.v1.CredentialsService/WatchCredentials"
    await eventually(lambda: (method, "FAILED_PRECONDITION") in sidecar.rpc_stats.handled)
    assert method not in sidecar.rpc_stats.latency or not any(
        sidecar.rpc_stats.latency[method].counts
    )


async def watch_on_both_connections(stub: pb_grpc.CredentialsServiceStub) -> tuple[Any, Any]:
    """A stream on the default connection and one on "other", each past its first value."""
    kept = stub.WatchCredentials(NOTION)
    gone = stub.WatchCredentials(
        watch_request(DEMO_NOTION_ACCOUNT_ID, "notion", connection="other")
    )
    await kept.read()
    await gone.read()
    return kept, gone


async def test_a_reload_that_removes_the_connection_ends_its_streams(emulator: Emulator) -> None:
    other = ConnectionConfig("other", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    before = demo_settings(emulator.url, TEST_POLICY, connections={"other": other})
    after = demo_settings(emulator.url, TEST_POLICY)
    async with (
        running(before, parse_listen("127.0.0.1:0"), loader=lambda: after) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        kept, gone = await watch_on_both_connections(stub)
        assert await sidecar.reload()
        error = await asyncio.wait_for(error_after(gone), 5)
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONNECTION_NOT_FOUND")
        assert len(sidecar.watchers) == 1  # the default connection's stream goes on
        kept.cancel()


def watch_tasks() -> list[asyncio.Task[Any]]:
    """The event loop's tasks that belong to a watch hub (its task group names them)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("watch hub")]


async def test_no_watch_work_outlives_a_dropped_connection_or_the_hub(emulator: Emulator) -> None:
    other = ConnectionConfig("other", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    before = demo_settings(emulator.url, TEST_POLICY, connections={"other": other})
    after = demo_settings(emulator.url, TEST_POLICY)
    sidecar = Sidecar(before, [parse_listen("127.0.0.1:0")], loader=lambda: after)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            kept, gone = await watch_on_both_connections(stub)
            assert await sidecar.reload()
            await asyncio.wait_for(error_after(gone), 5)
            # The dropped connection's feed is gone with its timer and re-read.
            await eventually(lambda: not any(t.get_name() == REREAD for t in watch_tasks()))
            assert sidecar.watchers.feeds == 1

            # A re-read in flight (Pipedream slow) runs in the hub's task group ...
            emulator.state.set_latency(5.0, "account")
            sidecar.watchers.reread_connections({"default"})
            await eventually(lambda: any(t.get_name() == REREAD for t in watch_tasks()))
            # ... and ends with the hub: stop cancels it and waits for it.
            await sidecar.stop(grace=0)
            assert watch_tasks() == [], "nothing of the hub outlives it"
            assert sidecar.watchers.feeds == 0
            kept.cancel()
    finally:
        emulator.state.set_latency(0, "account")
        await sidecar.stop(grace=0)
