"""``pdsidecar serve`` as a process: SIGTERM drains, SIGHUP reloads, --workers share a port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pdsidecar_emulator import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_GDRIVE_ACCOUNT_ID,
    DEMO_NOTION_ACCOUNT_ID,
    DEMO_SLACK_ACCOUNT_ID,
    Emulator,
)

from harness.config import write_config
from harness.ports import free_port
from pdsidecar.cli import main
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.certs import Certs
from tests.support.requests import error_of, get_request
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
REFUSED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


async def test_sigterm_drains_calls_in_flight_and_refuses_new_ones(
    emulator: Emulator, serve: Any, tmp_path: Path, sockdir: Path
) -> None:
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    sock = f"unix:{sockdir}/pd.sock"
    process = serve("--config", str(config), "--listen", sock, "--grace", "10")
    await process.bound()
    await process.wait_for("readiness: SERVING")
    emulator.state.set_latency(1.5, route="account")
    async with grpc.aio.insecure_channel(sock) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="pdsidecar.v1.CredentialsService")
        )
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        accounts = [DEMO_NOTION_ACCOUNT_ID, DEMO_SLACK_ACCOUNT_ID, DEMO_GDRIVE_ACCOUNT_ID]
        sources = ["notion", "slack", "google_drive"]
        in_flight = [
            asyncio.ensure_future(stub.ValidateAccount(pb.ValidateAccountRequest(
                account=get_request(account, source).account, source=source
            )))
            for account, source in zip(accounts, sources, strict=True)
        ]  # fmt: skip
        await eventually(lambda: emulator.state.in_flight == len(in_flight))
        process.signal(signal.SIGTERM)
        assert (await watch.read()).status == NOT_SERVING
        # Health flips first; the server stops taking calls right after.
        async with asyncio.timeout(3):
            while True:
                try:
                    await stub.RefreshToken(pb.RefreshTokenRequest(), timeout=1)
                except grpc.aio.AioRpcError as late:
                    # Refused: the connection's GOAWAY, or a stream the closing server cancels.
                    assert late.code() in REFUSED, late
                    break
                await asyncio.sleep(0.01)
        assert not any(call.done() for call in in_flight)
        answers = await asyncio.gather(*in_flight)
        assert all(answer.account.account_id for answer in answers)
    assert await process.wait() == 0
    assert not (sockdir / "pd.sock").exists()


async def test_sighup_reload_adds_and_removes_connections(
    emulator: Emulator, serve: Any, tmp_path: Path
) -> None:
    emulator.state.add_client("second-client", DEMO_CLIENT_SECRET)
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    metrics = free_port()
    process = serve(
        "--config", str(config), "--listen", "127.0.0.1:0",
        "--metrics-listen", f"127.0.0.1:{metrics}",
    )  # fmt: skip
    (target,) = await process.bound()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        second = pb.RefreshTokenRequest(connection="second")
        assert (await error_of(stub.RefreshToken(second))).reason == "CONNECTION_NOT_FOUND"

        write_config(config, emulator.url, {"default": DEMO_CLIENT_ID, "second": "second-client"})
        emulator.state.set_latency(0.5, route="account")
        slow = asyncio.ensure_future(
            stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        )
        await asyncio.sleep(0.1)
        seen = len(process.lines())
        process.signal(signal.SIGHUP)
        await process.wait_for(r"reloaded config: connections added \['second'\]", after=seen)
        assert (await stub.RefreshToken(second)).connection == "second"
        assert (await slow).credentials, "the call in flight during the reload completed"

        write_config(config, emulator.url, {"second": "second-client"})
        seen = len(process.lines())
        process.signal(signal.SIGHUP)
        await process.wait_for(r"removed \['default'\]", after=seen)
        error = await error_of(stub.RefreshToken(pb.RefreshTokenRequest()))
        assert error.reason == "CONNECTION_NOT_FOUND"

        config.write_text("this is = not [valid toml")
        seen = len(process.lines())
        process.signal(signal.SIGHUP)
        await process.wait_for("reload failed, keeping the running config", after=seen)
        assert (await stub.RefreshToken(second)).connection == "second"
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics}/metrics")).text
    assert 'pdsidecar_config_reloads_total{result="ok"} 2.0' in text
    assert 'pdsidecar_config_reloads_total{result="failed"} 1.0' in text


def two_free_ports() -> int:
    """A loopback port that is free, and so is the next one (per-worker metrics ports)."""
    for _ in range(20):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as probe:
            probe.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two free ports in a row")


async def handled_ok(metrics_port: int, method: str) -> float:
    """A worker's count of ``method`` calls answered OK, from its /metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("pdsidecar_grpc_server_handled_total{")
        and f'grpc_method="{method}"' in line
        and 'grpc_code="OK"' in line
    )


async def reloads_ok(metrics_port: int) -> bool:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)).text
    return 'pdsidecar_config_reloads_total{result="ok"} 1.0' in text


async def test_workers_share_a_port_reload_on_sighup_and_are_replaced_when_killed(
    emulator: Emulator, serve: Any, tmp_path: Path
) -> None:
    emulator.state.add_client("second-client", DEMO_CLIENT_SECRET)
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    port, metrics = free_port(), two_free_ports()
    process = serve(
        "--config", str(config), "--listen", f"127.0.0.1:{port}", "--workers", "2",
        "--metrics-listen", f"127.0.0.1:{metrics}",
    )  # fmt: skip
    await eventually(lambda: emulator.state.requests["token"] >= 2, 20)  # each worker primes
    target = f"127.0.0.1:{port}"
    # Separate connections (no shared subchannel), so the kernel spreads them.
    options = [("grpc.use_local_subchannel_pool", 1)]

    async def call_until(done: Callable[[], Awaitable[bool]], request: Any) -> None:
        """Calls on new connections until ``done``; every one must succeed."""
        for _ in range(60):
            async with grpc.aio.insecure_channel(target, options=options) as channel:
                stub = pb_grpc.CredentialsServiceStub(channel)
                method = getattr(stub, type(request).__name__.removesuffix("Request"))
                await method(request, wait_for_ready=True, timeout=5)
            if await done():
                return
        raise AssertionError("60 calls on new connections and still not done")

    # Each worker has its own cache: two account fetches mean two workers answered.
    notion = get_request(DEMO_NOTION_ACCOUNT_ID, "notion")
    await call_until(lambda: asyncio.sleep(0, emulator.state.requests["account"] == 2), notion)

    # SIGHUP to the parent: every worker reloads, and answers for the added connection.
    write_config(config, emulator.url, {"default": DEMO_CLIENT_ID, "second": "second-client"})
    process.signal(signal.SIGHUP)
    for worker_metrics in (metrics, metrics + 1):
        await eventually(functools.partial(reloads_ok, worker_metrics), 15, every=0.1)
    second = pb.RefreshTokenRequest(connection="second")

    async def both_answered() -> bool:
        counts = [await handled_ok(m, "RefreshToken") for m in (metrics, metrics + 1)]
        return all(counts)

    await call_until(both_answered, second)

    # SIGKILL a worker: the parent starts a new one (same index), which serves on the port.
    killed = process.workers()[1]
    os.kill(killed, signal.SIGKILL)
    await eventually(lambda: process.workers().get(1) not in (None, killed), 15, every=0.1)
    await eventually(lambda: emulator.state.requests["token"] >= 5, 15)  # it primed too

    async def replacement_answered() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return await handled_ok(metrics + 1, "RefreshToken") > 0
        return False

    await call_until(replacement_answered, second)
    process.signal(signal.SIGTERM)
    assert await process.wait() == 0


async def test_workers_refuse_a_unix_socket(serve: Any, tmp_path: Path, sockdir: Path) -> None:
    config = write_config(tmp_path / "pd.toml", "http://127.0.0.1:9", {"default": "x"})
    process = serve(
        "--config", str(config), "--listen", f"unix:{sockdir}/pd.sock", "--workers", "2"
    )
    assert await process.wait() == 2
    assert "several processes cannot share one Unix socket" in "\n".join(process.lines())


async def test_serve_switches_for_sockets_binds_and_health(
    emulator: Emulator, serve: Any, tmp_path: Path, sockdir: Path
) -> None:
    """--socket-mode, --allow-insecure-bind, --health-listen and --log-format json."""
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    process = serve(
        "--config", str(config), "--log-format", "json",
        "--listen", f"unix:{sockdir}/pd.sock", "--socket-mode", "0660",
        "--listen", "0.0.0.0:0", "--allow-insecure-bind",
        "--health-listen", "127.0.0.1:0",
    )  # fmt: skip
    sock, anywhere, probe = await process.bound()
    assert stat.S_IMODE(os.stat(sockdir / "pd.sock").st_mode) == 0o660
    port = anywhere.rpartition(":")[2]
    await process.wait_for("readiness: SERVING")
    for target in (sock, f"127.0.0.1:{port}"):
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.CredentialsServiceStub(channel)
            assert (
                await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
            ).credentials
    check = ["health", "--target", probe, "--timeout", "2"]
    assert await asyncio.to_thread(main, check) == 0
    assert await asyncio.to_thread(main, [*check, "--liveness"]) == 0
    os.environ["PDSIDECAR_TARGET"] = sock
    try:
        assert await asyncio.to_thread(main, ["health"]) == 0
    finally:
        del os.environ["PDSIDECAR_TARGET"]


async def test_serve_switches_for_tls_and_text_logs(
    emulator: Emulator, serve: Any, tmp_path: Path, certs: Certs
) -> None:
    """--tls-cert, --tls-key, --tls-client-ca and --log-format text; health over mTLS,
    and in plaintext on the health-only listener (kubelet probes speak no TLS)."""
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    process = serve(
        "--config", str(config), "--log-format", "text", "--listen", "127.0.0.1:0",
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
        "--tls-client-ca", str(certs.ca), "--health-listen", "127.0.0.1:0",
    )  # fmt: skip
    target, probe = await process.bound()
    await process.wait_for("readiness: SERVING")
    assert not process.lines()[0].startswith("{"), "plain text lines"
    tls = ["--tls-ca", str(certs.ca), "--tls-server-name", "localhost"]
    client = ["--tls-cert", str(certs.client_cert), "--tls-key", str(certs.client_key)]
    assert await asyncio.to_thread(main, ["health", "--address", target, *tls, *client]) == 0
    assert await asyncio.to_thread(main, ["health", "--address", target, *tls]) == 1
    assert await asyncio.to_thread(main, ["health", "--address", probe]) == 0
