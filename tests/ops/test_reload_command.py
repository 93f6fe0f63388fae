"""``pdsidecar reload``: finds the running sidecar in /proc and sends it SIGHUP, with no
``kill`` binary needed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator

from harness.config import write_config
from pdsidecar.commands.reload import Server, check_pid, choose, find_servers, is_serve
from pdsidecar_client.v1 import credentials_pb2 as pb
from pdsidecar_client.v1 import credentials_pb2_grpc as pb_grpc
from tests.support import exercised
from tests.support.requests import error_of

pytestmark = pytest.mark.anyio


def reload_command(*args: str) -> subprocess.CompletedProcess[str]:
    # PATH without coreutils: the command must not shell out to kill.
    env = {**os.environ, "PATH": "/nonexistent"}
    exercised.argv(["reload", *args])
    return subprocess.run(
        [sys.executable, "-m", "pdsidecar", "reload", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


async def test_reload_finds_the_sidecar_by_its_config_and_it_reloads(
    emulator: Emulator, serve: Any, tmp_path: Path
) -> None:
    emulator.state.add_client("second-client", DEMO_CLIENT_SECRET)
    config = write_config(tmp_path / "pd.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    process = serve("--config", str(config), "--listen", "127.0.0.1:0")
    (target,) = await process.bound()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.CredentialsServiceStub(channel)
        second = pb.RefreshTokenRequest(connection="second")
        assert (await error_of(stub.RefreshToken(second))).reason == "CONNECTION_NOT_FOUND"
        write_config(config, emulator.url, {"default": DEMO_CLIENT_ID, "second": "second-client"})
        seen = len(process.lines())
        done = await asyncio.to_thread(reload_command, "--config", str(config))
        assert done.returncode == 0, done.stderr
        assert f"pid {process.proc.pid}" in done.stderr
        await process.wait_for(r"reloaded config: connections added \['second'\]", after=seen)
        assert (await stub.RefreshToken(second)).connection == "second"

        # --pid names it outright.
        write_config(config, emulator.url, {"second": "second-client"})
        seen = len(process.lines())
        done = await asyncio.to_thread(reload_command, "--pid", str(process.proc.pid))
        assert done.returncode == 0, done.stderr
        assert "serve --config" in done.stderr, "it says what it signalled"
        await process.wait_for(r"removed \['default'\]", after=seen)
    assert process.proc.poll() is None, "SIGHUP did not stop it"


def test_reload_refuses_what_it_cannot_pin_down(tmp_path: Path) -> None:
    done = reload_command("--config", str(tmp_path / "nobody.toml"))
    assert done.returncode == 1 and "no 'pdsidecar serve --config" in done.stderr
    # A process that is not a sidecar is never sent SIGHUP (it would end most programs).
    done = reload_command("--pid", str(os.getpid()))
    assert done.returncode == 1 and "is not a 'pdsidecar serve'" in done.stderr


def fake_process(proc: Path, pid: int, ppid: int, argv: list[str]) -> None:
    folder = proc / str(pid)
    folder.mkdir()
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (folder / "stat").write_text(f"{pid} (py thon) S {ppid} 1 1 0")
    os.symlink("/srv", folder / "cwd")


def test_find_servers_reads_proc_and_leaves_workers_to_their_parent(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    fake_process(proc, 1, 0, ["/opt/pdsidecar/bin/python", "/opt/pdsidecar/bin/pdsidecar",
                              "serve", "--config", "etc/pd.toml", "--workers", "2"])  # fmt: skip
    fake_process(proc, 7, 1, ["/usr/bin/python3", "-m", "pdsidecar", "serve", "--workers", "2"])
    fake_process(proc, 9, 1, ["/bin/sh", "-c", "echo pdsidecar serve"])
    fake_process(proc, 12, 0, ["python", "-m", "pdsidecar", "serve", "--config=/b.toml"])
    (proc / "self").mkdir()
    servers = find_servers(proc, uid=os.getuid())
    assert [s.pid for s in servers] == [1, 12]
    assert servers[0].config == "/srv/etc/pd.toml"
    assert choose(servers, Path("/b.toml")) == servers[1]
    several = choose(servers, None)
    assert isinstance(several, str) and "pid 1" in several and "--config FILE or --pid" in several


def test_a_pid_must_serve_the_config_given(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    fake_process(proc, 12, 0, ["python", "-m", "pdsidecar", "serve", "--config=/b.toml"])
    fake_process(proc, 13, 0, ["python", "-m", "pdsidecar", "serve", "--emulator"])
    fake_process(proc, 14, 0, ["sleep", "100"])
    served = check_pid(12, Path("/b.toml"), proc)
    assert isinstance(served, Server) and served.pid == 12
    assert (
        check_pid(12, Path("/a.toml"), proc)
        == "pid 12 serves --config /b.toml, not --config /a.toml"
    )
    assert (
        check_pid(13, Path("/a.toml"), proc)
        == "pid 13 serves no --config file, not --config /a.toml"
    )
    assert check_pid(14, None, proc) == "pid 14 is not a 'pdsidecar serve': sleep 100"
    assert check_pid(15, None, proc) is None  # unreadable: the signal decides


@pytest.mark.parametrize(
    ("argv", "serving"),
    [
        (("pdsidecar", "serve"), True),
        (("/venv/bin/python", "/venv/bin/pdsidecar", "serve", "--emulator"), True),
        (("python3", "-m", "pdsidecar", "serve"), True),
        (("python3", "-m", "pdsidecar", "reload"), False),
        (("vim", "pdsidecar", "serve"), False),
    ],
)
def test_is_serve(argv: tuple[str, ...], serving: bool) -> None:
    assert is_serve(argv) is serving


def test_a_server_describes_itself() -> None:
    assert Server(3, 1, ("pdsidecar", "serve"), "/").describe() == "pid 3 (pdsidecar serve)"
