"""The Python clients over TLS and mutual TLS: ``tls_ca``, ``tls_cert``/``tls_key``."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.tls import TlsFiles
from pdsidecar.settings import Settings
from pdsidecar_client import AsyncCredentialsClient, CredentialsClient, CredentialsError
from tests.support.certs import Certs
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio


def blocking_token(target: str, **tls: object) -> str:
    with CredentialsClient(target, timeout=5, **tls) as client:  # type: ignore[arg-type]
        response = client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        return response.credentials["access_token"]


async def async_token(target: str, timeout: float = 5, **tls: object) -> str:
    async with AsyncCredentialsClient(target, timeout=timeout, **tls) as client:  # type: ignore[arg-type]
        response = await client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        return response.credentials["access_token"]


async def test_tls_ca_reaches_a_tls_listener(settings: Settings, certs: Certs) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    # 0.0.0.0 (allowed with TLS), so that 127.0.0.2, which the certificate does not name,
    # reaches it too.
    async with running(settings, parse_listen("0.0.0.0:0"), tls=tls) as sidecar:
        target = "127.0.0.1:" + sidecar.bound[0].rpartition(":")[2]
        assert (await asyncio.to_thread(blocking_token, target, tls_ca=certs.ca)).startswith(
            "ntn_demo_"
        )
        # A path as str, PEM bytes, and a name override for an address the cert does not name.
        assert (await async_token(target, tls_ca=str(certs.ca))).startswith("ntn_demo_")
        port = target.rpartition(":")[2]
        pem = certs.ca.read_bytes()
        by_name = await async_token(f"127.0.0.2:{port}", tls_ca=pem, tls_server_name="localhost")
        assert by_name.startswith("ntn_demo_")
        with pytest.raises(CredentialsError):
            await async_token(f"127.0.0.2:{port}", tls_ca=pem, timeout=1)


async def test_mutual_tls_sends_the_client_certificate(settings: Settings, certs: Certs) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key, certs.ca)
    mine: dict[str, Any] = {"tls_ca": certs.ca}
    mine |= {"tls_cert": certs.client_cert, "tls_key": certs.client_key}
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        target = sidecar.bound[0]
        assert (await asyncio.to_thread(blocking_token, target, **mine)).startswith("ntn_demo_")
        assert (await async_token(target, **mine)).startswith("ntn_demo_")
        with pytest.raises(CredentialsError) as caught:
            await AsyncCredentialsClient(target, timeout=1, tls_ca=certs.ca).refresh_token()
        assert caught.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "tls_cert/tls_key" in caught.value.message


def test_tls_arguments_are_checked(certs: Certs) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        CredentialsClient(tls_ca=certs.ca, tls_cert=certs.client_cert)
    with pytest.raises(ValueError, match=r"tls_ca='/nonexistent/ca\.pem'"):
        CredentialsClient(tls_ca="/nonexistent/ca.pem")
