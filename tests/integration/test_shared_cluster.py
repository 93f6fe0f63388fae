"""The shared tier on a real 3-node Redis Cluster (``cluster = true``).

Three local ``redis-server --cluster-enabled yes`` nodes joined with
``redis-cli --cluster create``; three in-process sidecars that know only the first node.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_PROJECT_ID,
    Emulator,
)

from harness.redis import RedisServer, create_cluster
from pdsidecar.fleet.sealing import Keyring
from pdsidecar.settings import Settings
from tests.support.fixtures import RedisServers
from tests.support.fleets import fleet, shared
from tests.support.requests import get_request

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def cluster(redis_servers: RedisServers) -> Iterator[list[RedisServer]]:
    with redis_servers(3, cluster=True) as servers:
        create_cluster(servers)
        yield servers


async def test_a_fleet_on_a_redis_cluster_shares_and_keeps_an_account_in_one_slot(
    settings: Settings, emulator: Emulator, cluster: list[RedisServer]
) -> None:
    config = dataclasses.replace(shared(cluster[0]), cluster=True, timeout=0.5)
    state = emulator.state
    async with fleet(settings, config, 3) as sidecars:
        request = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
        answers = await asyncio.gather(
            *(stub.GetCredentials(request) for _, stub in sidecars for _ in range(10))
        )
        assert len({a.credentials["access_token"] for a in answers}) == 1
        assert state.requests["account"] == 1 and state.tokens_issued == 1

        ids = state.add_generated_accounts(30)
        await asyncio.gather(
            *(stub.GetCredentials(get_request(i, "notion")) for _, stub in sidecars for i in ids)
        )
        assert state.requests["account"] == 31, "one read per account across the cluster"

        # A rejected token: one refetch, and the event reaches every sidecar.
        (rejected,) = {a.credentials["access_token"] for a in answers}
        new = state.rotate_access_token(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID)
        retry = get_request(DEMO_NOTION_ACCOUNT_ID, "notion", rejected_access_token=rejected)
        again = await asyncio.gather(*(stub.GetCredentials(retry) for _, stub in sidecars))
        assert {a.credentials["access_token"] for a in again} == {new}
        assert state.requests["account"] == 32
    # Value and lock of one account hash to one slot; the keys spread over the nodes.
    tag = Keyring(config.keys).tags(
        "account", settings.pipedream_url, DEMO_CLIENT_ID, DEMO_PROJECT_ID, "production", "x"
    )[0]
    admin = cluster[0].client()
    slots = {admin.execute_command("CLUSTER", "KEYSLOT", f"t:{{{tag}}}:{s}") for s in "vl"}
    assert len(slots) == 1
    holding = [server.client().dbsize() for server in cluster]
    assert sum(holding) >= 32 and sum(1 for n in holding if n) >= 2
