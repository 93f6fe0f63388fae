"""Config reload in-process: what changes, what stays, what needs a restart."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import grpc
import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_CODA_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    Emulator,
)

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.reload import plan
from pdsidecar.runtime.workers import check_shareable
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenerConfig, Policy, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import API_TOKEN, running
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


async def test_reload_keeps_unchanged_connections_and_swaps_the_rest(
    settings: Settings, emulator: Emulator, sockdir: Path
) -> None:
    emulator.state.add_client("other-client", DEMO_CLIENT_SECRET)
    listener = ListenerConfig(
        parse_listen(f"unix:{sockdir}/pd.sock"), allow_sources=frozenset({"notion"})
    )
    current = dataclasses.replace(settings, listeners=(listener,))
    pending: list[Settings] = []
    async with (
        running(current, loader=lambda: pending.pop()) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        await stub.GetCredentials(request)
        coda = get_request(DEMO_CODA_ACCOUNT_ID, "coda", required_fields=["api_key"])
        assert (await error_of(stub.GetCredentials(coda))).reason == "PERMISSION_DENIED"
        kept = sidecar.connections["default"]
        assert len(sidecar.service.cache) == 1

        # Same connection, a new one, a wider allow-list, an API token; the URL is ignored.
        other = ConnectionConfig("other", "other-client", Secret(DEMO_CLIENT_SECRET))
        wider = dataclasses.replace(listener, allow_sources=frozenset({"notion", "coda"}))
        pending.append(
            dataclasses.replace(
                current,
                pipedream_url="http://127.0.0.1:9",
                policy=Policy(),
                connections={**current.connections, "other": other},
                listeners=(wider,),
                api_token=Secret(API_TOKEN),
            )
        )
        assert await sidecar.reload()
        assert sidecar.connections["default"] is kept, "unchanged: same upstream, same token"
        assert len(sidecar.service.cache) == 1, "and its cached accounts stay"
        assert sidecar.settings.pipedream_url == settings.pipedream_url
        auth = (("authorization", f"Bearer {API_TOKEN}"),)
        assert (await error_of(stub.GetCredentials(request))).reason == "UNAUTHENTICATED"
        answer = await stub.RefreshToken(pb.RefreshTokenRequest(connection="other"), metadata=auth)
        assert answer.connection == "other"
        answer = await stub.GetCredentials(coda, metadata=auth)  # the wider allow-list
        assert answer.account.account_id == DEMO_CODA_ACCOUNT_ID and answer.credentials["api_key"]

        # A changed secret means a new upstream, and the connection's cache is dropped.
        rotated = ConnectionConfig("default", DEMO_CLIENT_ID, Secret("rotated-secret"))
        pending.append(
            dataclasses.replace(current, connections={"default": rotated}, listeners=(wider,))
        )
        assert await sidecar.reload()
        assert sidecar.connections["default"] is not kept
        assert len(sidecar.service.cache) == 0
        assert "other" not in sidecar.connections
        error = await error_of(stub.GetCredentials(request))
        assert error.reason == "PROVIDER_AUTH_FAILED"  # the emulator refuses the new secret


async def test_reload_without_a_config_file_changes_nothing(settings: Settings) -> None:
    async with running(settings, parse_listen("127.0.0.1:0")) as sidecar:
        before = sidecar.connections
        assert not await sidecar.reload()
        assert sidecar.connections is before


def test_workers_need_shareable_listeners() -> None:
    from pdsidecar.settings import ConfigError

    check_shareable(2, [ListenerConfig(parse_listen("127.0.0.1:50051"))])
    with pytest.raises(ConfigError, match="fixed port"):
        check_shareable(2, [ListenerConfig(parse_listen("127.0.0.1:0"))])
    with pytest.raises(ConfigError, match="Unix socket"):
        check_shareable(2, [ListenerConfig(parse_listen("unix:/run/pd.sock"))])


def test_plan_applies_allow_lists_and_names_what_needs_a_restart() -> None:
    kept = ListenerConfig(
        parse_listen("unix:/run/pd/a.sock"), allow_sources=frozenset({"notion", "slack"})
    )
    dropped = ListenerConfig(parse_listen("unix:/run/pd/b.sock"))
    old = Settings(listeners=(kept, dropped))
    tighter = dataclasses.replace(kept, allow_sources=frozenset({"notion"}), socket_mode=0o660)
    added = ListenerConfig(parse_listen("unix:/run/pd/c.sock"))
    change = plan(old, Settings(listeners=(tighter, added)))
    assert change.settings.listeners[0].allow_sources == frozenset({"notion"})
    assert change.settings.listeners[0].socket_mode == kept.socket_mode
    assert change.settings.listeners[1] == dropped
    assert change.allow_lists == ["unix:/run/pd/a.sock"]
    assert change.ignored == [
        "[[listeners]] unix:/run/pd/a.sock socket_mode",
        "[[listeners]] unix:/run/pd/b.sock removed (it serves with its old allow-lists until then)",
        "[[listeners]] unix:/run/pd/c.sock added",
    ]


def test_plan_matches_listeners_on_one_address_in_order() -> None:
    """Two listeners on 127.0.0.1:0 are two: each keeps its own allow-lists."""
    address = parse_listen("127.0.0.1:0")
    first = ListenerConfig(address, allow_sources=frozenset({"notion"}))
    second = ListenerConfig(address, allow_sources=frozenset({"slack"}))
    looser = dataclasses.replace(second, allow_sources=None)
    change = plan(Settings(listeners=(first, second)), Settings(listeners=(first, looser)))
    assert change.settings.listeners == (first, looser)
    assert change.ignored == []
    added = plan(Settings(listeners=(first,)), Settings(listeners=(first, second)))
    assert added.settings.listeners == (first,)
    assert added.ignored == ["[[listeners]] 127.0.0.1:0 added"]


async def test_reload_tightens_a_listener_while_another_is_added(
    settings: Settings, sockdir: Path
) -> None:
    listener = ListenerConfig(
        parse_listen(f"unix:{sockdir}/pd.sock"), allow_sources=frozenset({"notion", "slack"})
    )
    current = dataclasses.replace(settings, listeners=(listener,))
    tighter = dataclasses.replace(listener, allow_sources=frozenset({"notion"}))
    added = ListenerConfig(parse_listen(f"unix:{sockdir}/new.sock"))
    pending = [dataclasses.replace(current, listeners=(tighter, added))]
    async with (
        running(current, loader=lambda: pending.pop()) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        slack = get_request(DEMO_NOTION_ACCOUNT_ID, "slack")
        assert (await error_of(stub.GetCredentials(slack))).reason != "PERMISSION_DENIED"
        assert await sidecar.reload()
        assert (await error_of(stub.GetCredentials(slack))).reason == "PERMISSION_DENIED"


async def test_a_fetch_in_flight_during_a_reload_is_not_cached_for_the_new_config(
    settings: Settings, emulator: Emulator
) -> None:
    rotated = ConnectionConfig("default", DEMO_CLIENT_ID, Secret("rotated-secret"))
    pending = [dataclasses.replace(settings, connections={"default": rotated})]
    async with (
        running(settings, parse_listen("127.0.0.1:0"), loader=lambda: pending.pop()) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        await stub.RefreshToken(pb.RefreshTokenRequest())
        emulator.state.set_latency(0.5, "account")
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        started = asyncio.ensure_future(stub.GetCredentials(request))
        await eventually(lambda: emulator.state.in_flight == 1)
        assert await sidecar.reload()
        # The caller that started under the old config gets its answer ...
        assert (await started).credentials["access_token"]
        # ... but the new config's connection answers the next call itself.
        error = await error_of(stub.GetCredentials(request))
        assert error.reason == "PROVIDER_AUTH_FAILED"
