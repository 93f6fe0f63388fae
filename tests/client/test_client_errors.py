"""A call that never reached a sidecar says where it tried, what went wrong, and that it waited.

Both Python clients, against: nothing listening, the metrics port (HTTP/1), a TLS
listener called in plaintext. ``wait_for_ready=False`` fails before the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID, DEMO_PROJECT_ID

from harness.ports import free_port
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.tls import TlsFiles
from pdsidecar.settings import Settings
from pdsidecar_client import AsyncCredentialsClient, CredentialsClient, CredentialsError
from tests.support.certs import Certs
from tests.support.sidecars import running

pytestmark = pytest.mark.anyio


def blocking_call(target: str, **options: Any) -> CredentialsError:
    with CredentialsClient(target, **options) as client:
        try:
            client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        except CredentialsError as error:
            return error
    raise AssertionError("the call succeeded")


async def async_call(target: str, **options: Any) -> CredentialsError:
    async with AsyncCredentialsClient(target, **options) as client:
        try:
            await client.get_credentials(DEMO_PROJECT_ID, DEMO_NOTION_ACCOUNT_ID, "notion")
        except CredentialsError as error:
            return error
    raise AssertionError("the call succeeded")


async def both(target: str, **options: Any) -> list[CredentialsError]:
    blocking = await asyncio.to_thread(blocking_call, target, **options)
    return [blocking, await async_call(target, **options)]


Check = Callable[[CredentialsError], None]


async def test_nothing_listening_names_target_refusal_and_waiting() -> None:
    target = f"127.0.0.1:{free_port()}"
    for error in await both(target, timeout=1):
        assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert target in error.message
        assert "Connection refused" in error.message
        assert "wait_for_ready" in error.message
        assert "pdsidecar serve" in error.message


async def test_without_wait_for_ready_the_refusal_comes_before_the_deadline() -> None:
    target = f"127.0.0.1:{free_port()}"
    for error in await both(target, timeout=30, wait_for_ready=False):
        # UNAVAILABLE, after gRPC's own retries: the 30 s deadline was not waited for.
        assert error.code is grpc.StatusCode.UNAVAILABLE
        assert target in error.message
        assert "Connection refused" in error.message


async def test_missing_unix_socket_is_named(sockdir: Any) -> None:
    target = f"unix:{sockdir}/none.sock"
    for error in await both(target, timeout=1):
        assert target in error.message
        assert "No such file" in error.message


async def test_the_metrics_port_is_recognised_as_http1(settings: Settings) -> None:
    metrics = parse_listen("127.0.0.1:0")
    async with running(settings, parse_listen("127.0.0.1:0"), metrics_listen=metrics) as sidecar:
        assert sidecar.metrics is not None
        target = f"127.0.0.1:{sidecar.metrics.port}"
        for error in await both(target, timeout=1):
            assert error.code is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "HTTP/1" in error.message
            assert target in error.message


async def test_plaintext_against_a_tls_listener_suggests_tls(
    settings: Settings, certs: Certs
) -> None:
    tls = TlsFiles(certs.server_cert, certs.server_key)
    async with running(settings, parse_listen("127.0.0.1:0"), tls=tls) as sidecar:
        for error in await both(sidecar.bound[0], timeout=1):
            assert "tls_ca" in error.message
        # With the wrong CA (the client's own certificate is no CA): verification fails.
        wrong = {"tls_ca": certs.stranger_cert}
        for error in await both(sidecar.bound[0], timeout=1, **wrong):
            assert "CERTIFICATE_VERIFY_FAILED" in error.message
            assert "not signed by the CA" in error.message


async def test_a_sidecar_error_is_left_as_it_is(sidecar: Any) -> None:
    async with AsyncCredentialsClient(sidecar.bound[0], timeout=5) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.get_credentials(DEMO_PROJECT_ID, "apn_noSuchAccount1", "notion")
    assert caught.value.reason == "ACCOUNT_NOT_FOUND"
    assert "wait_for_ready" not in caught.value.message
