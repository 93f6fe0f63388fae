"""TLS and mutual TLS handshakes with certificates the test makes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID

from pdsidecar.cli import main
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.runtime.tls import TlsFiles, tls_from_flags
from pdsidecar.settings import ConfigError, Settings
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.certs import Certs
from tests.support.requests import get_request
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio


def credentials(
    certs: Certs, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


async def call(target: str, creds: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.aio.secure_channel(target, creds) if creds else grpc.aio.insecure_channel(target)
    async with channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        try:
            await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"), timeout=3)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK


def health(*args: str) -> int:
    """``pdsidecar health`` in a thread (it runs its own event loop)."""
    return main(["health", *args])


async def test_tls_handshake_and_plaintext_refused(settings: Settings, certs: Certs) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        target = sidecar.bound[0]
        port = target.rpartition(":")[2]
        assert await call(f"localhost:{port}", credentials(certs)) is grpc.StatusCode.OK
        assert await call(target, credentials(certs)) is grpc.StatusCode.OK  # IP SAN
        assert await call(target, None) is grpc.StatusCode.UNAVAILABLE
        ca = ["--tls-ca", str(certs.ca)]
        assert await asyncio.to_thread(health, "--address", target, *ca) == 0
        assert await asyncio.to_thread(health, "--address", target, "--timeout", "1") == 1


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    settings: Settings, certs: Certs
) -> None:
    tls = tls_from_flags(certs.server_cert, certs.server_key, certs.ca)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        target = sidecar.bound[0]
        mine = credentials(certs, certs.client_cert, certs.client_key)
        assert await call(target, mine) is grpc.StatusCode.OK
        assert await call(target, credentials(certs)) is grpc.StatusCode.UNAVAILABLE
        stranger = credentials(certs, certs.stranger_cert, certs.stranger_key)
        assert await call(target, stranger) is grpc.StatusCode.UNAVAILABLE
        client = ["--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
        args = ["--address", target, "--tls-ca", str(certs.ca), "--tls-server-name", "localhost"]
        assert await asyncio.to_thread(health, *args, *client) == 0
        assert await asyncio.to_thread(health, *args, "--timeout", "1") == 1


async def test_tls_lets_a_non_loopback_listener_start(settings: Settings, certs: Certs) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    async with running(settings, parse_listen("0.0.0.0:0"), tls=tls) as sidecar:
        port = sidecar.bound[0].rpartition(":")[2]
        assert await call(f"127.0.0.1:{port}", credentials(certs)) is grpc.StatusCode.OK


async def test_tls_flags_are_checked(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        tls_from_flags(tmp_path / "cert.pem", None, None)
    with pytest.raises(ConfigError, match="needs --tls-cert"):
        tls_from_flags(None, None, tmp_path / "ca.pem")
    missing = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem")
    with pytest.raises(ConfigError, match="--tls-key"):
        await Sidecar(settings, [parse_listen("127.0.0.1:0")], tls=missing).start()
