"""Config reload in-process: what changes, what stays, what needs a restart."""

from __future__ import annotations

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
from pdsidecar.runtime.workers import check_shareable
from pdsidecar.secret import Secret
from pdsidecar.settings import ConnectionConfig, ListenerConfig, Policy, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import API_TOKEN, running

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
