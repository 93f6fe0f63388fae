"""The operating guide's TLS commands, run as written (files and port filled in), and the client
commands' old spellings."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pdsidecar_emulator import DEMO_CLIENT_ID, DEMO_NOTION_ACCOUNT_ID, Emulator

from harness.config import write_config
from harness.ports import free_port
from pdsidecar.cli import main
from tests.support import exercised
from tests.support.certs import Certs
from tests.test_demo import _grpcurl

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def tls_section() -> tuple[list[str], str]:
    """The shell lines and the Python block of docs/operating.md's TLS section."""
    text = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    found = re.search(r"^## TLS\n(.*?)(?=^## )", text, re.S | re.M)
    assert found, "docs/operating.md lost its TLS section"
    shell = re.search(r"```sh\n(.*?)```", found.group(1), re.S)
    python = re.search(r"```python\n(.*?)```", found.group(1), re.S)
    assert shell and python
    return shell.group(1).strip().splitlines(), python.group(1)


async def test_the_readme_tls_commands_work_as_written(
    emulator: Emulator, serve: Any, tmp_path: Path, certs: Certs
) -> None:
    lines, python = tls_section()
    config = write_config(tmp_path / "pdsidecar.toml", emulator.url, {"default": DEMO_CLIENT_ID})
    files = {
        "pdsidecar.toml": config,
        "server-key.pem": certs.server_key,
        "server.pem": certs.server_cert,
        "ca.pem": certs.ca,
    }
    port = str(free_port())

    def filled(text: str) -> str:
        for name, path in files.items():
            text = re.sub(rf"(?<![\w/-]){re.escape(name)}", str(path), text)
        return text.replace("50051", port)

    commands = [shlex.split(filled(line)) for line in lines]
    assert [c[:2] for c in commands] == [
        ["pdsidecar", "serve"],
        ["grpcurl", "-cacert"],
        ["pdsidecar", "health"],
        ["pdsidecar", "accounts"],
    ]
    assert "--tls-ca" in commands[2] and "--project" in commands[3]
    process = serve(*commands[0][2:])
    await process.bound()
    await process.wait_for("readiness: SERVING")

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        if command[0] == "pdsidecar":
            exercised.argv(command[1:])
            command = [sys.executable, "-m", "pdsidecar", *command[1:]]
        else:
            command = [_grpcurl(), *command[1:]]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    grpcurl, health, accounts = [await asyncio.to_thread(run, c) for c in commands[1:]]
    assert grpcurl.returncode == 0, grpcurl.stderr
    assert '"access_token": "ntn_demo_' in grpcurl.stdout
    assert health.returncode == 0 and health.stdout.strip() == "SERVING", health.stderr
    assert accounts.returncode == 0 and DEMO_NOTION_ACCOUNT_ID in accounts.stdout
    printed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", filled(python)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("ntn_demo_")


async def test_health_reads_target_and_the_old_spellings(
    sidecar: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    target = sidecar.bound[0]
    live = "--liveness"  # this sidecar holds no Pipedream token yet: not ready
    assert await asyncio.to_thread(main, ["health", live, "--target", target]) == 0
    assert await asyncio.to_thread(main, ["health", live, "--address", target]) == 0
    for env in ("PDSIDECAR_TARGET", "PDSIDECAR_HEALTH_ADDRESS"):
        monkeypatch.setenv(env, target)
        assert await asyncio.to_thread(main, ["health", live]) == 0, env
        monkeypatch.delenv(env)
    assert "PDSIDECAR_TARGET" not in os.environ
