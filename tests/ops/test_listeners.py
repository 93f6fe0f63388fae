"""Listeners: Unix sockets and their file mode, several at once, the loopback rule."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_NOTION_ACCOUNT_ID

from harness.config import write_config
from pdsidecar.config.listen import parse_listen
from pdsidecar.runtime.sidecar import Sidecar
from pdsidecar.settings import ConfigError, ListenerConfig, Settings
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support.requests import get_request
from tests.support.sidecars import demo_settings, running

pytestmark = pytest.mark.anyio

# Never contacted: the tests using it fail before any call to Pipedream.
UNUSED_URL = "http://127.0.0.1:9"


def mode_of(path: Path) -> int:
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    return stat.S_IMODE(info.st_mode)


async def answers(target: str) -> bool:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        response = await stub.GetCredentials(get_request(DEMO_NOTION_ACCOUNT_ID, "notion"))
        return bool(response.credentials)


async def test_unix_socket_is_0600_by_default_and_serves(settings: Settings, sockdir: Path) -> None:
    path = sockdir / "pd.sock"
    async with running(settings, parse_listen(f"unix:{path}")) as sidecar:
        assert sidecar.bound == [f"unix:{path}"]
        assert mode_of(path) == 0o600
        assert await answers(f"unix:{path}")
    assert not path.exists(), "the socket file is removed at shutdown"


async def test_socket_mode_widens_and_several_listeners_serve_at_once(
    settings: Settings, sockdir: Path
) -> None:
    group = ListenerConfig(parse_listen(f"unix:{sockdir}/group.sock"), socket_mode=0o660)
    private = parse_listen(f"unix:{sockdir}/private.sock")
    async with running(settings, group, private, parse_listen("127.0.0.1:0")) as sidecar:
        assert mode_of(sockdir / "group.sock") == 0o660
        assert mode_of(sockdir / "private.sock") == 0o600
        assert len(sidecar.bound) == 3
        for target in sidecar.bound:
            assert await answers(target)


async def test_refuses_a_file_a_live_socket_or_a_missing_folder(
    settings: Settings, sockdir: Path
) -> None:
    regular = sockdir / "file.sock"
    regular.write_text("not a socket")
    with pytest.raises(ConfigError, match="not a socket"):
        await Sidecar(settings, [parse_listen(f"unix:{regular}")]).start()
    assert regular.read_text() == "not a socket"
    live = sockdir / "live.sock"
    async with running(settings, parse_listen(f"unix:{live}")):
        with pytest.raises(ConfigError, match="another process is serving"):
            await Sidecar(settings, [parse_listen(f"unix:{live}")]).start()
    with pytest.raises(ConfigError, match="directory does not exist"):
        await Sidecar(settings, [parse_listen(f"unix:{sockdir}/no/such.sock")]).start()


async def test_a_stale_socket_file_is_replaced(settings: Settings, sockdir: Path) -> None:
    stale = sockdir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left_over:
        left_over.bind(str(stale))  # bound, never listening: what a crash leaves behind
    async with running(settings, parse_listen(f"unix:{stale}")) as sidecar:
        assert await answers(sidecar.bound[0])


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "192.0.2.1:50051"])
async def test_non_loopback_tcp_is_refused_without_tls(address: str) -> None:
    with pytest.raises(ConfigError, match=r"refusing to listen .* without TLS"):
        Sidecar(demo_settings(UNUSED_URL), [parse_listen(address)])


async def test_allow_insecure_bind_lets_it_listen(settings: Settings) -> None:
    async with running(settings, parse_listen("0.0.0.0:0"), allow_insecure_bind=True) as sidecar:
        port = sidecar.bound[0].rpartition(":")[2]
        assert await answers(f"127.0.0.1:{port}")


async def test_serve_command_refuses_non_loopback(serve: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path / "pd.toml", UNUSED_URL, {"default": "x"})
    process = serve("--config", str(config), "--listen", "0.0.0.0:50051")
    assert await process.wait() == 2
    assert "--allow-insecure-bind" in "\n".join(process.lines())


def test_listen_address_parsing() -> None:
    cases: dict[str, Any] = {
        "127.0.0.1:1": ("tcp", "127.0.0.1", 1, True),
        "[::1]:2": ("tcp", "::1", 2, True),
        "localhost:3": ("tcp", "localhost", 3, True),
        "10.1.2.3:4": ("tcp", "10.1.2.3", 4, False),
        "unix:/run/pd.sock": ("unix", "", 0, True),
    }
    for text, (kind, host, port, loopback) in cases.items():
        address = parse_listen(text)
        assert (address.kind, address.host, address.port, address.is_loopback) == (
            kind,
            host,
            port,
            loopback,
        )
    for bad in ("unix:", "50051", "example.com:1", "127.0.0.1:99999"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
