"""WatchCredentials in the Prometheus metrics: open streams, watched accounts, pushes."""

from __future__ import annotations

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID, Emulator

from pdsidecar.config.listen import parse_listen
from pdsidecar.settings import Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.ops.test_metrics import scrape, value
from tests.support.requests import get_request, ref
from tests.support.sidecars import running
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


async def test_watch_metrics_follow_streams_and_pushes(
    settings: Settings, emulator: Emulator
) -> None:
    request = pb.WatchCredentialsRequest(account=ref(DEMO_NOTION_ACCOUNT_ID), source="notion")
    async with (
        running(
            settings, parse_listen("127.0.0.1:0"), metrics_listen=parse_listen("127.0.0.1:0")
        ) as sidecar,
        grpc.aio.insecure_channel(sidecar.bound[0]) as channel,
    ):
        stub = pb_grpc.CredentialsServiceStub(channel)
        calls = [stub.WatchCredentials(request) for _ in range(3)]
        old = {(await call.read()).credentials["access_token"] for call in calls}.pop()
        _, samples = await scrape(sidecar)
        assert value(samples, "pdsidecar_watchers") == 3
        assert value(samples, "pdsidecar_watched_accounts") == 1
        assert value(samples, "pdsidecar_watch_started_total") == 3

        emulator.state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        await stub.GetCredentials(
            get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=old)
        )
        for call in calls:
            await call.read()
        _, samples = await scrape(sidecar)
        assert value(samples, "pdsidecar_watch_messages_total") == 3

        for call in calls:
            call.cancel()
        await eventually(lambda: len(sidecar.watchers) == 0)
        _, samples = await scrape(sidecar)
        assert value(samples, "pdsidecar_watchers") == 0
        assert value(samples, "pdsidecar_watched_accounts") == 0
