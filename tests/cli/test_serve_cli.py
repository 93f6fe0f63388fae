"""``pdsidecar serve`` as a newcomer meets it: its failures, its help, its startup banner."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def serve_stderr(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdsidecar", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("flag", ["--listen", "--health-listen"])
def test_a_busy_port_prints_only_the_sidecars_own_message(flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--listen", "127.0.0.1:0"] if flag == "--health-listen" else []
        done = serve_stderr("--emulator", *args, flag, f"127.0.0.1:{port}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"pdsidecar: cannot listen on 127.0.0.1:{port}: Address already in use (another "
        "process, perhaps another pdsidecar, listens there; choose another port, or stop it)"
    ], done.stderr
