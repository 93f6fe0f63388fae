"""1,000 watchers on 100 accounts: one upstream read per account per rotation.

Each account rotates on the emulator's schedule; ten streams watch each one
(five with the default fields, five asking for the access token alone: two
groups per feed). Counted at the emulator: while every watcher receives two
rotations, the account route is read at most once per rotation.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from pdsidecar_emulator import DEMO_PROJECT_ID, Emulator

from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Policy
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import ref
from tests.support.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ACCOUNTS, PER_ACCOUNT = 100, 10
LIFETIME, LEAD = 6.0, 2.0  # a rotation every 4 s
ROTATIONS = 2


@pytest.fixture
def policy() -> Policy:
    # The stall bound (policy.stream_stall_timeout) is not under test: a thousand first
    # messages on one connection to a client in this busy process can wait past it.
    return Policy(
        backoff_initial=0.01,
        backoff_max=0.05,
        max_watchers=ACCOUNTS * PER_ACCOUNT,
        stream_stall_timeout=300.0,
    )


async def test_thousand_watchers_cost_one_read_per_account_per_rotation(
    emulator: Emulator, sidecar: Sidecar
) -> None:
    state = emulator.state
    ids = state.add_generated_accounts(ACCOUNTS, app="notion")
    for account_id in ids:
        state.rotations.start(state.get_account(DEMO_PROJECT_ID, account_id), LIFETIME, LEAD)
    requests = [
        pb.WatchCredentialsRequest(
            account=ref(account_id),
            source="notion",
            required_fields=["access_token"] if n % 2 else [],
        )
        for account_id in ids
        for n in range(PER_ACCOUNT)
    ]
    hub = sidecar.watchers.stats

    async def settled() -> tuple[int, int]:
        """(re-reads begun, rotations) at a moment every re-read begun has been answered.

        The schedule runs on while the test counts: on a busy machine the last watcher
        gets its token after some feeds began their next re-read. Such moments recur
        between rotations. Reads beyond the first one per account are re-reads.
        """
        counts: list[tuple[int, int]] = []

        def answered() -> bool:
            if state.requests["account"] != ACCOUNTS + hub.rereads:
                return False
            counts.append(
                (hub.rereads, sum(s.rotations for s in state.rotations.schedules.values()))
            )
            return True

        await eventually(answered, timeout=3 * (LIFETIME - LEAD))
        return counts[0]

    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        calls = [stub.WatchCredentials(request) for request in requests]
        try:
            firsts = await asyncio.gather(*(call.read() for call in calls))
            assert len(sidecar.watchers) == ACCOUNTS * PER_ACCOUNT
            assert sidecar.watchers.feeds == ACCOUNTS
            rereads_before, rotations_before = await settled()

            async def follow(index: int, call: grpc.aio.UnaryStreamCall) -> set[str]:  # type: ignore[type-arg]
                tokens = {firsts[index].credentials["access_token"]}
                for _ in range(ROTATIONS):
                    message = await asyncio.wait_for(call.read(), LIFETIME * 3)
                    tokens.add(message.credentials["access_token"])
                return tokens

            seen = await asyncio.gather(*(follow(i, call) for i, call in enumerate(calls)))
            rereads, rotations = await settled()
        finally:
            # A failure must not leave a thousand calls to a loop that is closing.
            for call in calls:
                call.cancel()

    assert all(len(tokens) == ROTATIONS + 1 for tokens in seen)
    rotations -= rotations_before
    # Every watcher saw ROTATIONS new tokens; on a slow start, the first may predate the count.
    assert rotations >= ACCOUNTS * (ROTATIONS - 1)
    # Every rotation was read at most once, by the one feed of its account, for all ten
    # watchers: rotation is lazy, per read, so a second read of a rotation (or a read
    # before one was due) finds no new token and would make reads outnumber rotations.
    # (Not equal: a read a busy machine delays past the next due time applies both.)
    assert 0 < rereads - rereads_before <= rotations, (state.stats(), sidecar.watchers.stats)
