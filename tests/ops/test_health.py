"""Health: liveness, readiness from the Pipedream token, the health-only listener, the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, Emulator

from pdsidecar.cli import main
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import SERVICE_NAME, Sidecar
from pdsidecar.settings import ConfigError, Settings
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import error_of, get_request
from tests.support.sidecars import running
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def status(target: str, service: str = SERVICE_NAME) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
        return int(answer.status)


async def health_becomes(target: str, wanted: int, service: str = SERVICE_NAME) -> None:
    async def reached() -> bool:
        return await status(target, service) == wanted

    await eventually(reached)


def health_command(*args: str) -> int:
    return main(["health", *args])


async def test_readiness_follows_the_pipedream_token(
    settings: Settings, emulator: Emulator
) -> None:
    emulator.state.set_status_fault("token", 401)  # the client credentials are refused
    async with running(settings, parse_listen("127.0.0.1:0"), prime_tokens=True) as sidecar:
        target = sidecar.bound[0]
        assert await status(target, "") == SERVING  # alive
        await asyncio.sleep(0.2)  # the first token request has failed by now
        assert await status(target) == NOT_SERVING
        assert await asyncio.to_thread(health_command, "--address", target) == 1
        assert await asyncio.to_thread(health_command, "--address", target, "--liveness") == 0
        emulator.state.clear_faults()
        async with grpc.aio.insecure_channel(target) as channel:
            await pb_grpc.CredentialsServiceStub(channel).RefreshToken(pb.RefreshTokenRequest())
        await health_becomes(target, SERVING)
        assert await asyncio.to_thread(health_command, "--address", target) == 0


async def test_tokens_are_primed_at_start(settings: Settings, emulator: Emulator) -> None:
    async with running(settings, parse_listen("127.0.0.1:0"), prime_tokens=True) as sidecar:
        await health_becomes(sidecar.bound[0], SERVING)
        assert emulator.state.requests["token"] == 1  # no call was made: the start did it


async def test_a_failed_prime_does_not_stop_the_server(
    settings: Settings, emulator: Emulator
) -> None:
    emulator.state.set_status_fault("token", 503)
    async with running(settings, parse_listen("127.0.0.1:0"), prime_tokens=True) as sidecar:
        await asyncio.sleep(0.3)
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            error = await error_of(
                stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
            )
            assert error.reason == "UPSTREAM_UNAVAILABLE"
        assert await status(sidecar.bound[0]) == NOT_SERVING


async def test_health_listener_serves_only_health(settings: Settings, sockdir: Path) -> None:
    health_address = parse_listen("127.0.0.1:0")
    socket = parse_listen(f"unix:{sockdir}/pd.sock")
    async with running(settings, socket, health_listeners=[health_address]) as sidecar:
        (probe,) = sidecar.health_bound
        assert await status(probe, "") == SERVING
        async with grpc.aio.insecure_channel(probe) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest()))
            assert error.code is grpc.StatusCode.UNIMPLEMENTED
        # The health there is the sidecar's: it turns SERVING once a token is held.
        async with grpc.aio.insecure_channel(sidecar.bound[0]) as channel:
            await pb_grpc.CredentialsServiceStub(channel).RefreshToken(pb.RefreshTokenRequest())
        await health_becomes(probe, SERVING)


async def test_health_listener_may_bind_any_address(settings: Settings) -> None:
    """Plaintext on 0.0.0.0 is refused for the API without --allow-insecure-bind, but fine
    for a health-only listener: it carries no credentials."""
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0"):
        Sidecar(settings, [parse_listen("0.0.0.0:0")])
    sidecar = Sidecar(
        settings, [parse_listen("127.0.0.1:0")], health_listeners=[parse_listen("0.0.0.0:0")]
    )
    await sidecar.start()
    try:
        (probe,) = sidecar.health_bound
        host, _, port = probe.rpartition(":")
        assert host == "0.0.0.0"
        assert await status(f"127.0.0.1:{port}", "") == SERVING
    finally:
        await sidecar.stop(grace=0)


def test_health_command_reports_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    assert health_command("--address", "127.0.0.1:9", "--timeout", "0.5") == 1
    assert "127.0.0.1:9" in capsys.readouterr().err
