"""A short soak: 100 concurrent callers while Pipedream fails, stalls and rate limits.

The long version (60 s, ghz next to the checking client, RSS and descriptors sampled) is in
the benchmark: ``python -m bench.run --soak 60``. Both judge answers with harness/checker.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator

from harness.checker import Tally, checked_load
from harness.emulator_proc import MixedFaultState
from pdsidecar.config.listen import parse_listen
from pdsidecar.credentials import source as account_source
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import Policy
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.logsink import SECRETS, LogSink
from tests.support.sidecars import demo_settings

pytestmark = pytest.mark.anyio

SECONDS = 3.0
ACCOUNTS = 200


@pytest.fixture
async def faulty() -> AsyncIterator[Emulator]:
    # API token refreshed every ~2 s; no read budget: this test is about faults, not 429s.
    state = MixedFaultState(seed=11, token_lifetime=4, read_budget=None)
    state.add_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    state.add_generated_accounts(ACCOUNTS)
    async with Emulator(state) as emulator:
        yield emulator
        SECRETS.update(state.secret_values())


def tokens_of(state: MixedFaultState) -> dict[str, str]:
    out = {}
    for account in state.iter_accounts():
        assert account.credentials is not None
        out[account.id] = str(account.credentials["oauth_access_token"])
    assert len(set(out.values())) == len(out)  # every account its own token
    return out


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_soak_with_faults_answers_right_or_retryably(
    faulty: Emulator, monkeypatch: pytest.MonkeyPatch, log_sink: LogSink
) -> None:
    # Cached accounts go stale within a second, so upstream is hit all the time.
    monkeypatch.setattr(account_source, "MIN_FRESH", 0.3)
    policy = Policy(
        credentials_max_age=0.5,
        backoff_initial=0.01,
        backoff_max=0.1,
        request_timeout=3.0,
    )
    state = faulty.state
    assert isinstance(state, MixedFaultState)
    tokens = tokens_of(state)
    sidecar = Sidecar(demo_settings(faulty.url, policy), [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    fds_before = open_fds()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            state.mixed = [(500, 0.10, None), (429, 0.02, "1")]
            state.mixed_stall, state.mixed_stall_probability = 0.5, 0.01
            tally = await checked_load(
                stub, tokens, sorted(tokens), concurrency=100, duration=SECONDS, timeout=5.0
            )
            state.mixed, state.mixed_stall_probability = [], 0.0

            # Still up, and right, once Pipedream is well again.
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            after = await checked_load(
                stub, tokens, sorted(tokens)[:20], concurrency=5, duration=0.5, tally=Tally()
            )
    finally:
        await sidecar.stop(grace=0)

    summary = tally.summary()
    print("soak:", summary, dict(state.statuses["account"]), state.tokens_issued)
    assert tally.ok > 100, summary
    assert tally.wrong == 0, summary
    assert not tally.unexpected, summary  # never UNKNOWN, INTERNAL, ...
    assert tally.missing_retry_info == 0, summary
    assert after.ok == after.calls and after.wrong == 0, after.summary()
    # The faults did happen, on both routes.
    assert state.statuses["account"][500] > 0 and state.statuses["account"][429] > 0
    # Entries went stale under load and were read again (the premise above holds): more
    # successful reads than accounts. (Not a multiple: a busy machine serves fewer calls.)
    assert state.statuses["account"][200] > ACCOUNTS
    assert state.tokens_issued > 1  # the API token was refreshed under fire
    assert not [line for line in log_sink.lines if "unexpected error" in line]
    # Connections to Pipedream are pooled, not leaked (a generous bound).
    assert open_fds() <= fds_before + 64
