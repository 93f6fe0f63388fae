"""A real emulator and a real sidecar on loopback, per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from pdsidecar.clock import ManualClock
from pdsidecar.config import ConnectionConfig, Policy, Settings
from pdsidecar.emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, EmulatorState
from pdsidecar.emulator import demo_state as make_demo_state
from pdsidecar.listen import parse_listen
from pdsidecar.secret import Secret
from pdsidecar.server import Sidecar
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.conftest import SECRETS


@pytest.fixture
def demo_state() -> EmulatorState:
    return make_demo_state(seed=7)


@pytest.fixture
async def emulator(demo_state: EmulatorState) -> AsyncIterator[Emulator]:
    async with Emulator(demo_state) as emu:
        yield emu
        # Revoked tokens and rotated values included: none may reach a log line.
        SECRETS.update(demo_state.secret_values())


@pytest.fixture
def policy() -> Policy:
    """Overridden by tests that need another policy."""
    return Policy(backoff_initial=0.01, backoff_max=0.05)


def demo_settings(url: str, policy: Policy, **connections: ConnectionConfig) -> Settings:
    demo = ConnectionConfig("default", DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET))
    return Settings(pipedream_url=url, connections={"default": demo, **connections}, policy=policy)


@pytest.fixture
def settings(emulator: Emulator, policy: Policy) -> Settings:
    return demo_settings(emulator.url, policy)


@pytest.fixture
async def sidecar(settings: Settings) -> AsyncIterator[Sidecar]:
    sidecar = Sidecar(settings, [parse_listen("127.0.0.1:0")])
    await sidecar.start()
    yield sidecar
    await sidecar.stop(grace=0)


@pytest.fixture
async def channel(sidecar: Sidecar) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.CredentialsServiceStub:
    return pb_grpc.CredentialsServiceStub(channel)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def timed_stub(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[pb_grpc.CredentialsServiceStub]:
    sidecar = Sidecar(settings, [parse_listen("127.0.0.1:0")], clock=clock)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            yield pb_grpc.CredentialsServiceStub(channel)
    finally:
        await sidecar.stop(grace=0)
